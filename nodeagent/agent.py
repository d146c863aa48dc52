"""Composition root: builds the managers, starts them in order, stops them.

Start: runtime (wait until it answers CRI v1) → pod manager and relister →
static pod source → local API. Stop (SIGTERM/SIGINT): the reverse, leaving
pods running, as the kubelet does: a restarted agent adopts them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
from pathlib import Path
from typing import Any

import structlog

from nodeagent import hostinfo
from nodeagent.config import AgentConfig
from nodeagent.cri.client import CRIClient
from nodeagent.cri.debugsocket import DebugSocket, DebugSocketError
from nodeagent.cri.errors import CRIError, NotCRIEndpoint, UnsupportedRuntime
from nodeagent.metrics import kubelet as metrics
from nodeagent.observability import Observability
from nodeagent.oci.puller import ImagePuller
from nodeagent.pods.crispec import NodeContext
from nodeagent.pods.manager import PodManager
from nodeagent.pods.relist import Relister
from nodeagent.pods.worker import WorkerDeps
from nodeagent.server.local import HealthCheck, LocalServer
from nodeagent.sources.static import StaticPodSource, StaticSnapshot

log = structlog.get_logger("nodeagent.agent")

STATIC_SOURCE = "file"


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.cri = CRIClient(config.container_runtime_endpoint,
                             config.image_service_endpoint or None,
                             request_timeout=config.runtime_request_timeout)
        self.cri.observers.append(metrics.observe_cri_call)
        self.executor = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="nodeagent-io")
        self.manager: PodManager | None = None
        self.relister: Relister | None = None
        self.server: LocalServer | None = None
        self.source: StaticPodSource | None = None
        self.static_snapshot: StaticSnapshot | None = None
        self.debug_socket: DebugSocket | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        config = self.config
        node_name = config.node_name
        log.info("starting nodeagent", node=node_name, runtime=config.container_runtime_endpoint,
                 static_pod_path=config.static_pod_path or None)
        metrics.set_node_name(node_name)
        node_ips = (config.node_ip,) if config.node_ip else (hostinfo.default_node_ip(),)
        observability = Observability(self.cri, node_name, config, self.executor, self._runtime_counts,
                                      self._health_checks)
        secure = observability.secure_listener(self._pods_with_status, node_ips)  # checks TLS files
        await self._start_debug_socket()  # before the runtime answers: crictl then says why not
        version = await self._wait_for_runtime()
        node = NodeContext(
            node_name=node_name, node_ips=node_ips,
            allocatable_cpu_millis=hostinfo.cpu_capacity_millis(),
            allocatable_memory_bytes=hostinfo.memory_capacity_bytes(),
            pod_logs_dir=Path(config.pod_logs_dir), root_dir=Path(config.root_dir))
        deps = WorkerDeps(cri=self.cri, images=ImagePuller(self.cri, serialize=config.serialize_image_pulls),
                          node=node, runtime_name=version.runtime_name, cgroup_root=config.cgroup_root,
                          on_status=lambda uid, status: None, resync_period=config.sync_frequency,
                          executor=self.executor)
        sources = [STATIC_SOURCE] if config.static_pod_path else []
        self.manager = manager = PodManager(deps, max_pods=config.max_pods, sources=sources)
        self.relister = Relister(self.cri, manager.runtime_changed)
        manager.runtime_state = self.relister.state_of
        # Adopt what runs before the first relist event arrives.
        self._spawn(self.relister.run(), manager.housekeeping(), observability.rotator.run())
        if config.static_pod_path:
            self.source = StaticPodSource(Path(config.static_pod_path), node_name, self._on_static,
                                          resync_period=config.file_check_frequency)
            self._spawn(self.source.run())
        self.server = LocalServer(address=config.address, healthz_port=config.healthz_port,
                                  read_only_port=config.read_only_port,
                                  healthz_address=config.healthz_bind_address,
                                  pods=manager.pod_objects, checks=self._health_checks,
                                  extra=self._manifest_report, routes=[observability.routes.add_to],
                                  secure=secure)
        await self.server.start()
        log.info("nodeagent ready", node=node_name, node_ips=list(node_ips),
                 healthz_port=self.server.bound_ports.healthz,
                 read_only_port=self.server.bound_ports.read_only,
                 port=self.server.bound_ports.secure)
        try:
            await self._stop.wait()
        finally:
            await self._shutdown()

    async def _wait_for_runtime(self):
        while True:
            try:
                return await self.cri.wait_ready(timeout=60)
            except (NotCRIEndpoint, UnsupportedRuntime):
                raise
            except CRIError as exc:
                log.error("container runtime not ready; still waiting", error=str(exc))

    def _runtime_counts(self) -> tuple[int, dict[str, int]]:
        relister = self.relister
        return (relister.running_pods, relister.container_states) if relister else (0, {})

    def _pods_with_status(self) -> list[Any]:
        return self.manager.pods_with_status() if self.manager else []

    async def _start_debug_socket(self) -> None:
        """A debugging aid: when it cannot be served the agent runs on without it."""
        if not self.config.cri_debug_socket:
            return
        sock = DebugSocket(self.config.cri_debug_socket, self.config.container_runtime_endpoint,
                           self.config.image_service_endpoint or None,
                           observe=lambda method, s, code: metrics.observe_debug_call(method, code, s))
        try:
            await sock.start()
            self.debug_socket = sock
        except DebugSocketError as exc:
            log.error("CRI debug socket not served", path=self.config.cri_debug_socket, error=str(exc))

    def _spawn(self, *coros: Any) -> None:
        for coro in coros:
            task = asyncio.ensure_future(coro)
            task.add_done_callback(self._task_done)
            self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("agent task failed", error=repr(task.exception()))
            self._stop.set()

    def _on_static(self, snapshot: StaticSnapshot) -> None:
        self.static_snapshot = snapshot
        assert self.manager is not None
        self.manager.set_pods(STATIC_SOURCE, snapshot.pods)

    def _manifest_report(self) -> dict[str, Any]:
        snapshot = self.static_snapshot
        report = snapshot.report() if snapshot else {"errors": [], "warnings": []}
        return {"staticPodPath": self.config.static_pod_path, **report}

    def _health_checks(self) -> list[HealthCheck]:
        if self.relister is None:
            return []
        ok, message = self.relister.healthy()
        return [HealthCheck("syncloop", ok, message)]

    async def _shutdown(self) -> None:
        log.info("stopping nodeagent; pods keep running")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()
        if self.manager is not None:
            await self.manager.shutdown()
        if self.debug_socket is not None:
            await self.debug_socket.stop()
        await self.cri.close()
        self.executor.shutdown(wait=False)


async def run_agent(config: AgentConfig) -> None:
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    await agent.run()
