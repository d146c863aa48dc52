"""The agent's network manager: sets the pod network up on start and serves
the CNI plugin's requests.

Start: iptables backend check -> bridge with the gateway address -> our
iptables chains (hostPort rules rebuilt from the IPAM state on disk) ->
request socket -> plugin and `loopback` into the runtime's CNI bin dir ->
conflist into its conf dir -> wait until the runtime has loaded the conflist
(containerd 1.6 watches the conf dir; its CRI Status lists the loaded
networks). Until then `network_ready()` is False with the kubelet's reason
`NetworkPluginNotReady`, for node status.

The plugin's requests run PodNetwork (synchronous netlink, IPAM files,
iptables-restore) in the agent's executor; the event loop only moves bytes.
A periodic GC releases addresses of sandboxes the runtime no longer has.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from nodeagent.api.times import format_time
from nodeagent.config import AgentConfig
from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError
from nodeagent.metrics import kubelet as metrics
from nodeagent.netns import iptables, links
from nodeagent.netns.network import NetworkSettings, PodNetwork, handle

# The kubelet's operation types for pod network calls.
_OPERATION = {"ADD": "set_up_pod", "DEL": "tear_down_pod", "CHECK": "get_pod_network_status",
              "VERSION": "version"}

log = structlog.get_logger("nodeagent.netns")

PLUGIN_NAME = "nodeagent"
LOOPBACK_SOURCES = (Path("/usr/lib/cni/loopback"), Path("/opt/cni/bin/loopback"))
GC_PERIOD = 60.0
GC_GRACE = 120.0  # a sandbox appears in ListPodSandbox only after its ADD finished
READY_TIMEOUT = 30.0
MAX_REQUEST = 1 << 20
MAX_UNIX_PATH = 100  # sun_path holds 108 bytes
MTU_PROBE_ADDRESS = "192.0.2.255"  # a route lookup only; no packet is sent
SYSTEM_PYTHON = "/usr/bin/python3"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


class NetworkSetupError(Exception):
    """The pod network could not be set up; the message says what to fix."""


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""
    message: str = ""


class NetworkManager:
    def __init__(self, settings: NetworkSettings, *, cni_bin_dir: Path, cni_conf_dir: Path,
                 cri: CRIClient, executor: Any = None) -> None:
        self.settings = settings
        self.cni_bin_dir = cni_bin_dir
        self.cni_conf_dir = cni_conf_dir
        self.cri = cri
        self.executor = executor
        self.network = PodNetwork(settings)
        self.backend = ""
        self._readiness = Readiness(False, "NetworkPluginNotReady", "nodeagent network not set up yet")
        self._ready_since = time.time()
        self._server: asyncio.AbstractServer | None = None
        self._gc_task: asyncio.Task[None] | None = None

    @property
    def conflist_path(self) -> Path:
        # Sorts before other configs: containerd uses the first (max_conf_num = 1).
        return self.cni_conf_dir / f"00-{self.settings.name}.conflist"

    def network_ready(self) -> Readiness:
        return self._readiness

    def _set_readiness(self, value: Readiness) -> None:
        if value.ready != self._readiness.ready:
            self._ready_since = time.time()
        self._readiness = value

    def condition(self) -> dict[str, str]:
        """NetworkUnavailable as network plugins write it on the Node (the
        kubelet does not: calico and flannel do, with reason <Name>IsUp)."""
        r = self._readiness
        since = format_time(self._ready_since)
        if r.ready:
            return {"type": "NetworkUnavailable", "status": "False", "reason": "NodeagentIsUp",
                    "message": "nodeagent has set up the pod network", "lastTransitionTime": since}
        return {"type": "NetworkUnavailable", "status": "True", "reason": r.reason or "NetworkPluginNotReady",
                "message": r.message, "lastTransitionTime": since}

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def start(self) -> None:
        try:
            if not self.settings.mtu:
                mtu = await self._run(links.interface_mtu_for, MTU_PROBE_ADDRESS)
                self.settings = dataclasses.replace(self.settings, mtu=mtu)
                self.network = PodNetwork(self.settings)
            s = self.settings
            self.backend = await self._run(iptables.backend)
            bridge = await self._run(links.ensure_bridge, s.bridge, s.gateway, s.mtu)
            await self._run(iptables.ensure_base, s.chains, s.subnet)
            await self._run(self.network.sync_hostports)
            await self._serve()
            await self._run(self._install)
        except (iptables.IptablesError, links.LinkError, links.NetlinkError, OSError,
                NetworkSetupError) as exc:
            self._set_readiness(Readiness(False, "NetworkPluginNotReady",
                                          f"pod network setup failed: {exc}"))
            if self._server is not None:
                self._server.close()
            raise NetworkSetupError(self._readiness.message) from exc
        if Path(IP_FORWARD).read_text().strip() != "1":
            log.warning("net.ipv4.ip_forward is 0: pods reach each other and this node, but "
                        "replies from outside the node are not forwarded back to pods "
                        "(kubeadm requires ip_forward=1 on every node)")
        log.info("pod network set up", bridge=bridge.name, pod_cidr=str(s.subnet),
                 gateway=str(s.gateway.ip), mtu=s.mtu, iptables_backend=self.backend,
                 chains=s.chains.tag, conflist=str(self.conflist_path))
        await self._wait_runtime_loaded()
        self._gc_task = asyncio.ensure_future(self._gc_loop())

    def _install(self) -> None:
        """Plugin executable, `loopback` (containerd always runs it) and conflist,
        each written whole then renamed, so the runtime never reads half a file."""
        self.cni_bin_dir.mkdir(parents=True, exist_ok=True)
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.cni_bin_dir / PLUGIN_NAME, plugin_source(), 0o755)
        loopback = self.cni_bin_dir / "loopback"
        if not loopback.exists():
            found = next((p for p in LOOPBACK_SOURCES if p.exists()), None)
            if found is None:
                raise NetworkSetupError(
                    "no `loopback` CNI plugin: install Debian's containernetworking-plugins "
                    f"or put one into {self.cni_bin_dir}")
            shutil.copy2(found, loopback)
        _atomic_write(self.conflist_path, json.dumps(self.settings.conflist(), indent=2), 0o644)

    async def _wait_runtime_loaded(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                status = await self.cri.status(verbose=True)
                net = next((c for c in status.status.conditions if c.type == "NetworkReady"), None)
                loaded = self.settings.name in status.info.get("cniconfig", "")
                if net is not None and net.status and loaded:
                    self._set_readiness(Readiness(True))
                    log.info("runtime loaded the pod network config", network=self.settings.name)
                    return
                message = (net.message if net is not None and not net.status
                           else f"runtime has not loaded network {self.settings.name} yet")
            except CRIError as exc:
                message = f"runtime status: {exc}"
            self._set_readiness(Readiness(False, "NetworkPluginNotReady", message))
            if time.monotonic() > deadline:
                log.error("runtime did not load the pod network config", message=message)
                return
            await asyncio.sleep(0.05)

    # -- the plugin's requests ---------------------------------------------

    async def _serve(self) -> None:
        path = self.settings.agent_socket
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._client, path=str(path))
        os.chmod(path, 0o600)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = b""
            while len(data) <= MAX_REQUEST:  # the plugin half-closes after its request
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
            try:
                request = json.loads(data)
                env = {str(k): str(v) for k, v in request["env"].items()}
                stdin = str(request["stdin"])
            except (ValueError, KeyError, TypeError, AttributeError):
                reply = {"exit": 1, "stdout": json.dumps(
                    {"cniVersion": "1.0.0", "code": 6, "msg": "malformed request to nodeagent"})}
            else:
                started = time.monotonic()
                code, out, err = await self._run(handle, env, stdin)
                elapsed = time.monotonic() - started
                self._log_request(env, code, out, err, elapsed)
                # kubelet_network_plugin_operations_duration_seconds{operation_type}
                metrics.observe_network_operation(_OPERATION.get(env.get("CNI_COMMAND", ""), "other"),
                                                  elapsed, error=code != 0)
                reply = {"exit": code, "stdout": out, "stderr": err}
            writer.write(json.dumps(reply).encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _log_request(env: dict[str, str], code: int, out: str, err: str, seconds: float) -> None:
        args = dict(a.partition("=")[::2] for a in env.get("CNI_ARGS", "").split(";") if "=" in a)
        fields = {"command": env.get("CNI_COMMAND"), "sandbox": env.get("CNI_CONTAINERID", "")[:13],
                  "pod": f"{args.get('K8S_POD_NAMESPACE', '')}/{args.get('K8S_POD_NAME', '')}",
                  "ms": round(seconds * 1000, 1)}
        if code == 0:
            log.debug("cni request", **fields)
        else:
            log.warning("cni request failed", error=out, traceback=err or None, **fields)

    # -- garbage collection --------------------------------------------------

    async def garbage_collect(self, grace: float = GC_GRACE) -> int:
        """Release what sandboxes the runtime no longer has; returns how many."""
        sandboxes = await self.cri.list_pod_sandbox()
        live = {s.id for s in sandboxes}
        released = await self._run(self.network.garbage_collect, live, grace)
        for alloc in released:
            log.info("released address of a vanished sandbox", ip=alloc.ip,
                     sandbox=alloc.container_id[:13])
        return len(released)

    async def _gc_loop(self) -> None:
        while True:
            try:
                await self.garbage_collect()
            except CRIError as exc:
                log.warning("network GC skipped: runtime unavailable", error=str(exc))
            except Exception as exc:  # GC must never stop the agent
                log.error("network GC failed", error=repr(exc))
            await asyncio.sleep(GC_PERIOD)

    async def stop(self) -> None:
        """Stop serving; pods, bridge, rules and the conflist stay (the plugin falls
        back to in-process work until the agent is back)."""
        if self._gc_task is not None:
            self._gc_task.cancel()
            await asyncio.gather(self._gc_task, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self.settings.agent_socket.unlink(missing_ok=True)


def network_settings(config: AgentConfig) -> NetworkSettings:
    """The pod network from the agent's config; state under the root dir."""
    state = Path(config.root_dir).resolve() / "network"
    socket_path = state / "cni.sock"
    if len(str(socket_path)) > MAX_UNIX_PATH:
        socket_path = Path("/run") / f"nodeagent-{links.instance_tag(config.pod_bridge)}.sock"
    return NetworkSettings(
        name=f"nodeagent-{config.pod_bridge}", bridge=config.pod_bridge,
        subnet=ipaddress.IPv4Network(config.pod_cidr),
        mtu=config.pod_mtu,  # 0: resolved in start()
        state_dir=state, agent_socket=socket_path, python=sys.executable)


def plugin_source() -> str:
    """The CNI plugin executable (also written by `nodeagent install`)."""
    source = Path(__file__).with_name("plugin.py").read_text()
    if not os.access(SYSTEM_PYTHON, os.X_OK):  # the plugin needs only the stdlib
        source = source.replace(f"#!{SYSTEM_PYTHON} ", f"#!{sys.executable} ", 1)
    return source


def _atomic_write(path: Path, content: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
