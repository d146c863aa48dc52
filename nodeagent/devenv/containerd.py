"""A private containerd for tests and the demo: own socket, root, state and CNI dirs.

The config is the one measured to work on cgroup-v1 VMs without systemd as
PID 1 (docs/devenv.md): cgroupfs driver, a local sandbox image, and
`restrict_oom_score_adj` when this process cannot lower oom_score_adj.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nodeagent.cri.client import CRIClient
from nodeagent.hostinfo import can_lower_oom_score_adj

CONTAINERD_BIN = "/usr/bin/containerd"
RUNC_BIN = "/usr/sbin/runc"
CNI_PLUGIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
# Plugins the dev network needs; containerd always runs `loopback` itself.
DEV_CNI_PLUGINS = ("loopback", "bridge", "host-local")

T = TypeVar("T")


class HarnessError(RuntimeError):
    """The dev environment could not be brought up; the message says how to fix it."""


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from blocking harness code, also when the
    caller (an async test) already has a loop running in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@dataclass(frozen=True)
class ContainerdPaths:
    base: Path

    @property
    def config(self) -> Path: return self.base / "config.toml"
    @property
    def root(self) -> Path: return self.base / "root"
    @property
    def state(self) -> Path: return self.base / "state"
    @property
    def socket(self) -> Path: return self.base / "containerd.sock"
    @property
    def log(self) -> Path: return self.base / "containerd.log"
    @property
    def cni_bin(self) -> Path: return self.base / "cni" / "bin"
    @property
    def cni_conf(self) -> Path: return self.base / "cni" / "net.d"
    @property
    def cni_ipam(self) -> Path: return self.base / "cni" / "ipam"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"


def render_config(paths: ContainerdPaths, *, sandbox_image: str, restrict_oom_score_adj: bool) -> str:
    """containerd 1.6 config (version 2). Every path stays under `paths.base`
    except shim sockets (/run/containerd/s/<hash of our address>) and cgroups."""
    q = json.dumps  # TOML basic strings accept JSON string escaping
    return f"""\
version = 2
root = {q(str(paths.root))}
state = {q(str(paths.state))}
oom_score = 0

[grpc]
  address = {q(str(paths.socket))}
  uid = 0
  gid = 0

[ttrpc]
  address = {q(str(paths.socket) + ".ttrpc")}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {q(str(paths.base / "opt"))}

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = {q(sandbox_image)}
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_apparmor = true
    restrict_oom_score_adj = {str(restrict_oom_score_adj).lower()}
    systemd_cgroup = false
    disable_cgroup = false
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    netns_mounts_under_state_dir = true
    max_container_log_line_size = 16384

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = {q(str(paths.cni_bin))}
      conf_dir = {q(str(paths.cni_conf))}
      max_conf_num = 1
      conf_template = ""

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      disable_snapshot_annotations = true

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = {q(RUNC_BIN)}
          SystemdCgroup = false
          Root = {q(str(paths.base / "runc"))}

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""
"""


def dev_cni_conflist(paths: ContainerdPaths, *, network: str, bridge: str, subnet: str) -> dict:
    """A minimal pod network from Debian's reference plugins, until nodeagent
    ships its own plugin: the harness gives the bridge its address; the plugin
    sets no gateway (so no ip_forward change) and no masquerade."""
    return {
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": False,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": subnet}]],
                "dataDir": str(paths.cni_ipam),
            },
        }],
    }


class Containerd:
    """One containerd process with its own config; start() waits until CRI answers."""

    def __init__(self, paths: ContainerdPaths, *, sandbox_image: str, network: str, bridge: str,
                 subnet: str) -> None:
        self.paths = paths
        self.network = network
        self.sandbox_image = sandbox_image
        self.bridge = bridge
        self.subnet = subnet
        self.restrict_oom_score_adj = not can_lower_oom_score_adj()
        self.process: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        for tool in (CONTAINERD_BIN, RUNC_BIN):
            if not os.access(tool, os.X_OK):
                raise HarnessError(f"{tool} is missing: run hack/install-deps")
        p = self.paths
        for d in (p.base, p.cni_bin, p.cni_conf, p.cni_ipam):
            d.mkdir(parents=True, exist_ok=True)
        for plugin in DEV_CNI_PLUGINS:
            src = CNI_PLUGIN_DIR / plugin
            if not src.exists():
                raise HarnessError(f"CNI plugin {src} is missing: run hack/install-deps")
            link = p.cni_bin / plugin
            if not link.exists():
                link.symlink_to(src)
        self._ensure_bridge()
        # The conf must exist before the first RunPodSandbox: without one,
        # containerd 1.6 leaves a NOTREADY sandbox that cannot be removed.
        conf = p.cni_conf / "10-nodeagent-dev.conflist"
        conf.write_text(json.dumps(dev_cni_conflist(
            p, network=self.network, bridge=self.bridge, subnet=self.subnet), indent=2))
        p.config.write_text(render_config(p, sandbox_image=self.sandbox_image,
                                          restrict_oom_score_adj=self.restrict_oom_score_adj))

    def _ensure_bridge(self) -> None:
        """The bridge with the subnet's first address, so the host reaches pod
        IPs directly (no gateway for pods, no forwarding, no iptables)."""
        if Path(f"/sys/class/net/{self.bridge}").exists():
            return
        network = ipaddress.ip_network(self.subnet)
        for cmd in (["ip", "link", "add", "name", self.bridge, "type", "bridge"],
                    ["ip", "addr", "add", f"{network.network_address + 1}/{network.prefixlen}",
                     "dev", self.bridge],
                    ["ip", "link", "set", self.bridge, "up"]):
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise HarnessError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")

    def start(self, timeout: float = 30.0) -> None:
        self.prepare()
        log = open(self.paths.log, "ab")
        try:
            self.process = subprocess.Popen(
                [CONTAINERD_BIN, "--config", str(self.paths.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            log.close()
        try:
            run_coroutine(lambda: self._wait_ready(timeout))
        except Exception as exc:
            self.stop()
            raise HarnessError(f"containerd did not become ready: {exc}\n"
                               f"--- last lines of {self.paths.log} ---\n{self.log_tail()}") from exc

    async def _wait_ready(self, timeout: float) -> None:
        async with CRIClient(self.paths.endpoint) as client:
            deadline = time.monotonic() + timeout
            await client.wait_ready(timeout)
            # CNI conf is loaded asynchronously; wait until NetworkReady too.
            while True:
                status = await client.status()
                if all(c.status for c in status.status.conditions):
                    return
                if time.monotonic() > deadline:
                    raise HarnessError(f"runtime not ready: {status.status}")
                await asyncio.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.paths.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def kill(self) -> None:
        """SIGKILL, as a crash would: shims and containers keep running."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)
