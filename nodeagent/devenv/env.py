"""The whole dev/test environment: registry + test images + private containerd.

`DevEnv.up()` brings it up in about a second when packages are installed;
`DevEnv.down()` removes every trace: pods (through CRI first, because killing
containerd leaves shims and containers running), processes, mounts, netns,
cgroups, the bridge and the files. `leaks()` lists whatever survived, so the
test suite can fail on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError, NotFoundError
from nodeagent.devenv.containerd import Containerd, ContainerdPaths, HarnessError, run_coroutine
from nodeagent.devenv.registry import Registry
from nodeagent.netns import iptables
from nodeagent.netns.links import instance_tag, links_with_prefix
from nodeagent.oci.layout import BUSYBOX, PAUSE, ImageSpec, build_layout

log = structlog.get_logger("nodeagent.devenv")

CGROUP_MOUNT = Path("/sys/fs/cgroup")
# Dirs containerd 1.6 creates outside its root/state whatever the config says:
# libcni's result cache and the shim socket dir. Children before parents.
LIBCNI_RESULTS = Path("/var/lib/cni/results")
NAMED_NETNS = Path("/run/netns")  # `ip netns add` names
HOST_DIRS = (LIBCNI_RESULTS, Path("/var/lib/cni"),
             Path("/run/containerd/s"), Path("/run/containerd"))
# An image no test pulls as a side effect, so a pull test starts from "absent".
PULL_TEST = ImageSpec("pull-test", "1", cmd=("echo", "pulled"))


@dataclass(frozen=True)
class PushedImage:
    spec: ImageSpec
    ref: str  # what PullImage/CreateContainer are given: localhost:<port>/<name>:<tag>
    manifest_digest: str


class DevEnv:
    def __init__(self, base: Path | None = None, *, name: str = "dev",
                 share_images_from: DevEnv | None = None, registry_port: int | None = None) -> None:
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix=f"na-{name}-"))
        self.base = self.base.resolve()
        digest = hashlib.sha256(str(self.base).encode()).hexdigest()
        self.id = digest[:6]
        # Names that live outside `base` carry the id so parallel envs don't meet.
        self.cgroup_root = f"nodeagent-{name}-{self.id}"
        self.bridge = f"nad{self.id}"
        self.network = f"nodeagent-{name}-{self.id}"
        self.subnet = f"10.88.{int(digest[6:8], 16) % 200 + 20}.0/24"
        # The agent's own pod network (nodeagent/netns), beside the plain one
        # that tests driving CRI without an agent use (docs/decisions.md).
        self.agent_bridge = f"nap{self.id}"
        self.agent_subnet = f"10.89.{int(digest[6:8], 16) % 200 + 20}.0/24"
        self.agent_network = f"nodeagent-{self.agent_bridge}"
        self._net_leaks: list[str] = []
        # A second env (e.g. one whose containerd a test kills) reuses the
        # first one's registry and images instead of starting its own.
        self._owns_registry = share_images_from is None
        self.registry = (share_images_from.registry if share_images_from
                         else Registry(self.base / "registry", registry_port))
        self.images: dict[str, PushedImage] = dict(share_images_from.images) if share_images_from else {}
        self.containerd: Containerd | None = None
        self._host_dirs_created = [d for d in HOST_DIRS if not d.exists()]
        self._swept_host_files: list[Path] = []

    @property
    def endpoint(self) -> str:
        assert self.containerd, "DevEnv.up() first"
        return self.containerd.paths.endpoint

    @property
    def busybox(self) -> str:
        return self.images["busybox"].ref

    @property
    def pause(self) -> str:
        return self.images["pause"].ref

    @property
    def pod_log_root(self) -> Path:
        return self.base / "pods"

    def agent_network_flags(self) -> list[str]:
        """`nodeagent run` flags that put its pods on the agent's own network here."""
        assert self.containerd, "DevEnv.up() first"
        paths = self.containerd.paths
        return ["--pod-cidr", self.agent_subnet, "--pod-bridge", self.agent_bridge,
                "--cni-bin-dir", str(paths.cni_bin), "--cni-conf-dir", str(paths.cni_conf)]

    def cgroup_parent(self, leaf: str) -> str:
        """A cgroupfs-driver cgroup_parent inside this env's own subtree."""
        return f"/{self.cgroup_root}/{leaf}"

    # -- lifecycle --------------------------------------------------------

    def up(self) -> DevEnv:
        started = time.monotonic()
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            if self._owns_registry:
                self.registry.start()
                layout = self.base / "images"
                for spec in (BUSYBOX, PAUSE, PULL_TEST):
                    built = build_layout(spec, layout)
                    ref = self.registry.push_layout(layout, built.ref, spec.name, spec.tag)
                    self.images[spec.name] = PushedImage(spec, ref, built.manifest_digest)
            self.containerd = Containerd(
                ContainerdPaths(self.base / "containerd"), sandbox_image=self.pause,
                network=self.network, bridge=self.bridge, subnet=self.subnet)
            self.containerd.start()
        except BaseException:
            self.down()
            raise
        log.info("dev environment up", base=str(self.base), endpoint=self.endpoint,
                 registry=self.registry.host, seconds=round(time.monotonic() - started, 2),
                 restrict_oom_score_adj=self.containerd.restrict_oom_score_adj)
        return self

    def down(self) -> None:
        if self.containerd and self.containerd.process and self.containerd.process.poll() is None:
            try:
                run_coroutine(lambda: remove_all_pods(self.endpoint))
            except CRIError as exc:
                log.warning("could not remove pods through CRI", error=str(exc))
            self.containerd.stop()
        # Per-pod network objects left now are leaks; the shared ones go in _sweep.
        self._net_leaks = agent_network_leftovers(self.agent_bridge)
        if self._owns_registry:
            self.registry.stop()
        self._sweep()

    def reset(self, workdir: Path | None = None) -> None:
        """Between tests: no pods in the runtime, no pod cgroups, no mounts
        left under `workdir` (an agent's root dir holds tmpfs emptyDirs).
        A containerd that died during the test is started again for the next
        tests, and the test fails with its exit status and log."""
        proc = self.containerd.process
        died = proc is not None and (proc.poll() is not None or not self.containerd.paths.socket.exists())
        if died:
            assert proc is not None
            status = proc.returncode if proc.poll() is not None else "running, socket gone"
            tail = self.containerd.log_tail(40)
            self.containerd.stop()
            self.containerd.start()
        run_coroutine(lambda: remove_all_pods(self.endpoint))
        self._drop_agent_conflists()
        if workdir is not None:
            _unmount_all(_mounts_under(workdir.resolve()))
        for cgroup in self._own_cgroups():
            for child in [p for p in cgroup.iterdir() if p.is_dir()]:
                _rmdir_tree(child)
        if died:
            raise HarnessError(f"containerd exited during the test (status {status}); "
                               f"restarted for the next tests. Its log ended:\n{tail}")

    def __enter__(self) -> DevEnv:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- leftovers --------------------------------------------------------

    def _own_processes(self) -> list[tuple[int, str]]:
        found = []
        needle = str(self.base).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if needle in cmdline:
                found.append((int(entry), cmdline.replace(b"\0", b" ").decode(errors="replace").strip()))
        return found

    def _own_mounts(self) -> list[str]:
        return _mounts_under(self.base)

    def _own_cgroups(self) -> list[Path]:
        found = []
        for hierarchy in sorted(CGROUP_MOUNT.iterdir()):
            candidate = hierarchy / self.cgroup_root
            if candidate.is_dir():
                found.append(candidate)
        return found

    def _task_host_files(self) -> list[Path]:
        """Files a task leaves outside `base` when its shim is killed: the shim
        socket (/run/containerd/s/<hash>, recorded in the bundle's `address`)
        and libcni's cached results (<network>-<sandbox id>-<ifname>)."""
        bundles = self.base / "containerd" / "state" / "io.containerd.runtime.v2.task"
        files = []
        for bundle in bundles.glob("*/*"):
            address = bundle / "address"
            if address.exists() and (text := address.read_text().strip()).startswith("unix://"):
                files.append(Path(text[len("unix://"):]))
            files += LIBCNI_RESULTS.glob(f"*-{bundle.name}-*")
        return files + sorted(LIBCNI_RESULTS.glob(f"{self.network}-*")) + sorted(
            LIBCNI_RESULTS.glob(f"{self.agent_network}-*"))

    def _sweep(self) -> None:
        """Remove what a crash or a failed test may have left, in dependency order."""
        host_files = self._task_host_files()
        for pid, _ in self._own_processes():  # shims of pods CRI could not remove
            _kill(pid)
        for path in host_files:  # a killed shim cleans up nothing
            path.unlink(missing_ok=True)
        self._swept_host_files += host_files
        for cgroup in self._own_cgroups():  # container processes outside any shim
            for procs in cgroup.rglob("cgroup.procs"):
                for pid in procs.read_text().split():
                    _kill(int(pid))
        _unmount_all(self._own_mounts())
        for cgroup in self._own_cgroups():
            _rmdir_tree(cgroup)
        for bridge in (self.bridge, self.agent_bridge):
            if Path(f"/sys/class/net/{bridge}").exists():
                subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        remove_agent_network(self.agent_bridge)
        if self.base.exists():
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], capture_output=True)
        for d in self._host_dirs_created:
            try:
                d.rmdir()
            except OSError:
                pass  # gone already, or in use by another containerd on this host

    def leaks(self) -> list[str]:
        found = [f"process {pid}: {cmd}" for pid, cmd in self._own_processes()]
        found += [f"mount {m}" for m in self._own_mounts()]
        found += [f"cgroup {c}" for c in self._own_cgroups()]
        for bridge in (self.bridge, self.agent_bridge):
            if Path(f"/sys/class/net/{bridge}").exists():
                found.append(f"link {bridge}")
        found += self._net_leaks + agent_network_leftovers(self.agent_bridge, shared=True)
        # Network namespaces tests create carry the env id in their names.
        if NAMED_NETNS.is_dir():
            found += [f"netns {n}" for n in os.listdir(NAMED_NETNS) if self.id in n]
        if self.base.exists():
            found.append(f"directory {self.base}")
        found += [f"directory {d}" for d in self._host_dirs_created if d.exists()]
        found += [f"file {p}" for p in self._swept_host_files if p.exists()]
        for network in (self.network, self.agent_network):
            found += [f"CNI cache {p}" for p in LIBCNI_RESULTS.glob(f"{network}-*")]
        return found

    def _drop_agent_conflists(self) -> None:
        """An agent's conflist outlives the agent (as the kubelet's CNI config
        does); the next test without an agent needs the plain network again."""
        if self.containerd is None:
            return
        dropped = [p for p in self.containerd.paths.cni_conf.glob("00-*.conflist")]
        for path in dropped:
            path.unlink()
        if dropped:
            run_coroutine(lambda: wait_cni_loaded(self.endpoint, self.network))


async def remove_all_pods(endpoint: str) -> None:
    """Stop and remove every sandbox (and so every container) the runtime has."""
    async with CRIClient(endpoint, request_timeout=60) as client:
        for sandbox in await client.list_pod_sandbox():
            for step in (client.stop_pod_sandbox, client.remove_pod_sandbox):
                try:
                    await step(sandbox.id)
                except NotFoundError:
                    pass


async def wait_cni_loaded(endpoint: str, network: str, timeout: float = 10.0) -> None:
    """Until the runtime's Status lists `network` (containerd watches its conf dir)."""
    async with CRIClient(endpoint) as client:
        deadline = time.monotonic() + timeout
        while network not in (await client.status(verbose=True)).info.get("cniconfig", ""):
            if time.monotonic() > deadline:
                raise HarnessError(f"containerd did not load CNI network {network}")
            await asyncio.sleep(0.02)


def agent_network_leftovers(bridge: str, *, shared: bool = False) -> list[str]:
    """Per-pod objects of the agent network on `bridge` (host veths, hostPort
    rules); with `shared`, also its chains (which _sweep removes)."""
    tag = instance_tag(bridge)
    found = [f"link {name}" for name in links_with_prefix(f"v{tag}")]
    rules = iptables.saved_rules(tag)
    hostport = iptables.Chains(tag).hostport
    found += [f"iptables {r}" for r in rules if r.startswith(f"-A {hostport} ")]
    if shared:
        found += [f"iptables {r}" for r in rules if not r.startswith(f"-A {hostport} ")]
        sock = Path("/run") / f"nodeagent-{tag}.sock"
        if sock.exists():
            found.append(f"socket {sock}")
    return found


def remove_agent_network(bridge: str) -> None:
    tag = instance_tag(bridge)
    for name in links_with_prefix(f"v{tag}"):
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    iptables.remove_all(iptables.Chains(tag))
    (Path("/run") / f"nodeagent-{tag}.sock").unlink(missing_ok=True)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _unmount_all(mounts: list[str]) -> None:
    """Deepest first; lazily, so a busy mount cannot stop the cleanup."""
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _rmdir_tree(root: Path, attempts: int = 50) -> None:
    """cgroup dirs can only be removed leaf first, and only once their tasks are gone."""
    for _ in range(attempts):
        dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                      reverse=True) + [root]
        busy = False
        for d in dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                busy = True
        if not busy:
            return
        time.sleep(0.1)
    raise HarnessError(f"cgroup {root} still busy after cleanup")
