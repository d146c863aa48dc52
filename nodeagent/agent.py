"""Composition root: builds the managers, starts them in order, stops them.

Start: runtime (wait until it answers CRI v1) → pod manager and relister →
static pod source → local API. Stop (SIGTERM/SIGINT): the reverse, leaving
pods running, as the kubelet does: a restarted agent adopts them.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from nodeagent import hostinfo, reload
from nodeagent.cgroups import names as cgroup_names
from nodeagent.cgroups.detect import (
    CgroupSetupError, check_setup, detect_host, driver_from_runtime_config, driver_from_status_info,
)
from nodeagent.cgroups.fs import CgroupError, CgroupV1, CgroupV2
from nodeagent.cgroups.manager import CgroupManager
from nodeagent.cgroups.values import ResourcePolicy
from nodeagent.config import AgentConfig, ConfigError, field_label
from nodeagent.cri.client import CRIClient
from nodeagent.cri.debugsocket import DebugSocket, DebugSocketError
from nodeagent.cri.errors import CRIError, NotCRIEndpoint, UnsupportedRuntime
from nodeagent.eviction.manager import EvictionManager
from nodeagent.eviction.signals import SignalReader
from nodeagent.eviction.thresholds import eviction_config, hard_eviction_reservation
from nodeagent.executors import Executors
from nodeagent.kube.cluster import Cluster
from nodeagent.kube.podsource import API_SOURCE
from nodeagent.node.capacity import (
    NodeResources, ReservationError, allocatable, machine_capacity, parse_reservation, pods_cgroup_budget,
)
from nodeagent.node.info import NodeAddressError, read_node_facts
from nodeagent.node.podusage import pod_usage
from nodeagent.node.shutdown import NodeShutdownManager, ShutdownGroup, shutdown_groups, systemd_is_stopping
from nodeagent.netns.manager import NetworkManager, NetworkSetupError, network_settings
from nodeagent.metrics import kubelet as metrics
from nodeagent.observability import Observability
from nodeagent.oci.puller import ImagePuller
from nodeagent.pods.crispec import NodeContext
from nodeagent.pods.manager import PodManager
from nodeagent.pods.relist import Relister
from nodeagent.pods.worker import WorkerDeps
from nodeagent.sdnotify import SystemdReporter, first_sync
from nodeagent.server.local import HealthCheck, LocalServer
from nodeagent.sources.static import StaticPodSource, StaticSnapshot

log = structlog.get_logger("nodeagent.agent")

STATIC_SOURCE = "file"
SHUTDOWN_WAIT = 10.0  # seconds the agent's tasks get to end after SIGTERM
STATUS_FLUSH_WAIT = 5.0  # seconds for the last pod statuses after a node shutdown
RUNTIME_SILENCE = 10.0  # seconds without a successful relist before the systemd watchdog stops


class Agent:
    def __init__(self, config: AgentConfig, load: Callable[[], AgentConfig] | None = None) -> None:
        self.config = config
        self._load = load  # reads --config and the flags again (SIGHUP)
        self._reloading = asyncio.Lock()
        self._reloads: set[asyncio.Task[None]] = set()
        self.observability: Observability | None = None
        self.cri = CRIClient(config.container_runtime_endpoint,
                             config.image_service_endpoint or None,
                             request_timeout=config.runtime_request_timeout)
        self.cri.observers.append(metrics.observe_cri_call)
        # Threads started here, never from the loop later; cgroupfs work in a pool of its own (executors.py).
        self.executors = Executors.start()
        self.executor = self.executors.io
        self.manager: PodManager | None = None
        self.relister: Relister | None = None
        self.server: LocalServer | None = None
        self.source: StaticPodSource | None = None
        self.static_snapshot: StaticSnapshot | None = None
        self.network: NetworkManager | None = None
        self.debug_socket: DebugSocket | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.cgroups: CgroupManager | None = None
        self.node_capacity: NodeResources | None = None
        self.node_allocatable: NodeResources | None = None
        self.oom_score_adj_restricted = False
        self.reserved_memory = 0
        self.eviction: EvictionManager | None = None
        self.cluster: Cluster | None = None
        self.runtime_version = ""
        self.node_shutdown: NodeShutdownManager | None = None
        self._sigterm = False
        self.systemd = SystemdReporter.from_env(status=self._systemd_status, healthy=self._runtime_answering)

    def stop(self, sigterm: bool = False) -> None:
        """SIGTERM may mean the node goes down (graceful node shutdown);
        SIGINT (Ctrl-C) only ever stops the agent."""
        self._sigterm = self._sigterm or sigterm
        self._stop.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, stop. A signal during start-up
        (waiting for the runtime, say) ends it there."""
        starting = asyncio.ensure_future(self._start())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                log.info("stopped while starting")
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                return
            starting.result()  # start-up errors (bad TLS files, a cgroup driver mismatch) propagate
            await stopped
            if self._sigterm and await self._node_going_down():
                await self._shutdown_node()
        finally:
            for task in (starting, stopped):
                task.cancel()
            await self._shutdown()

    async def _start(self) -> None:
        config = self.config
        node_name = config.node_name
        log.info("starting nodeagent", node=node_name, runtime=config.container_runtime_endpoint,
                 static_pod_path=config.static_pod_path or None)
        metrics.set_node_name(node_name)
        node_ips = (config.node_ip,) if config.node_ip else (hostinfo.default_node_ip(),)
        self.observability = observability = Observability(
            self.cri, node_name, config, self.executor, self._runtime_counts, self._health_checks)
        if config.kubeconfig:  # a bad kubeconfig stops the agent here, naming the file
            self.cluster = Cluster(config)
        secure = observability.secure_listener(  # checks TLS files
            self._pods_with_status, node_ips, self.cluster.webhook_auth() if self.cluster else None)
        self._spawn(self.systemd.watchdog())  # pings while starting, too: TimeoutStartSec= bounds that
        await self._start_debug_socket()  # before the runtime answers: crictl then says why not
        version = await self._wait_for_runtime()
        self.runtime_version = f"{version.runtime_name} {version.runtime_version}"
        cgroups = await self._setup_cgroups()
        allocatable_now = self.node_allocatable
        assert allocatable_now is not None
        node = NodeContext(
            node_name=node_name, node_ips=node_ips,
            allocatable_cpu_millis=allocatable_now.cpu,
            allocatable_memory_bytes=allocatable_now.memory,
            allocatable_ephemeral_storage_bytes=allocatable_now.ephemeral_storage,
            pod_logs_dir=Path(config.pod_logs_dir), root_dir=Path(config.root_dir),
            resources=cgroups.policy,
            cluster_dns=config.cluster_dns, cluster_domain=config.cluster_domain)
        if config.pod_cidr:  # before any pod: the runtime needs our CNI config first
            self.network = NetworkManager(network_settings(config), cni_bin_dir=Path(config.cni_bin_dir),
                                          cni_conf_dir=Path(config.cni_conf_dir), cri=self.cri,
                                          executor=self.executor)
            try:
                await self.network.start()
            except NetworkSetupError as exc:  # pods wait; healthz and the log say why
                log.error("pod network unavailable", error=str(exc))
        deps = WorkerDeps(cri=self.cri, images=ImagePuller(self.cri, serialize=config.serialize_image_pulls),
                          node=node, runtime_name=version.runtime_name, cgroups=cgroups,
                          on_status=lambda uid, status: None, resync_period=config.sync_frequency,
                          executor=self.executor,
                          config_objects=self.cluster.config_objects if self.cluster is not None else None)
        sources = ([STATIC_SOURCE] if config.static_pod_path else []) + ([API_SOURCE] if config.kubeconfig else [])
        self.manager = manager = PodManager(deps, max_pods=config.max_pods, sources=sources)
        self.eviction = EvictionManager(
            eviction_config(config), active_pods=manager.active_pods,
            pod_stats=lambda pod: pod_usage(pod, cgroups, self.cri),
            evict=manager.evict, pod_cleaned_up=manager.pod_cleaned_up,
            signals=SignalReader(imagefs_path=await self._imagefs_path()),
            reserved_memory=self.reserved_memory, monitoring_interval=config.eviction_monitoring_period)
        self.node_shutdown = NodeShutdownManager(self._shutdown_groups(), active_pods=manager.active_pods,
                                                 kill=manager.evict)
        eviction, node_shutdown = self.eviction, self.node_shutdown
        manager.admit = lambda pod: node_shutdown.admit(pod) or eviction.admit(pod)
        manager.allocatable = lambda: self.node_allocatable
        self.relister = Relister(self.cri, manager.runtime_changed)
        manager.runtime_state = self.relister.state_of
        try:
            await self.relister.relist()  # know the running pods before any source reports
        except CRIError as exc:
            log.warning("first relist failed; running pods are adopted when it succeeds", error=str(exc))
        # Adopt what runs before the first relist event arrives.
        self._spawn(self.relister.run(), manager.housekeeping(), cgroups.run_periodic(), self.eviction.run(),
                    observability.rotator.run())
        if self.cluster is not None:
            await self._attach_cluster(manager, version)
        if config.static_pod_path:
            self.source = StaticPodSource(Path(config.static_pod_path), node_name, self._on_static,
                                          resync_period=config.file_check_frequency)
            self._spawn(self.source.run())
        self.server = LocalServer(address=config.address, healthz_port=config.healthz_port,
                                  read_only_port=config.read_only_port,
                                  healthz_address=config.healthz_bind_address,
                                  pods=manager.pod_objects, checks=self._health_checks,
                                  extra=self._manifest_report, node=self._node_report,
                                  routes=[observability.routes.add_to], secure=secure)
        await self.server.start()
        log.info("nodeagent ready", node=node_name, node_ips=list(node_ips),
                 healthz_port=self.server.bound_ports.healthz,
                 read_only_port=self.server.bound_ports.read_only,
                 port=self.server.bound_ports.secure)
        self._spawn(self.systemd.report(lambda: first_sync(
            lambda: manager.sources_ready, lambda: self.relister.last_relist if self.relister else 0.0)))

    async def _setup_cgroups(self) -> CgroupManager:
        """Detect the host's cgroups, refuse a driver mismatch, create kubepods
        and the QoS tiers limited to what the pods may use."""
        config = self.config
        loop = asyncio.get_running_loop()
        host = await loop.run_in_executor(self.executor, detect_host)
        check_setup(config.cgroup_driver, host, await self._runtime_cgroup_driver())
        try:
            root = cgroup_names.parse_root(config.cgroup_root, config.cgroup_driver)
            system_reserved = parse_reservation("systemReserved", config.system_reserved)
            kube_reserved = parse_reservation("kubeReserved", config.kube_reserved)
        except (cgroup_names.CgroupNameError, ReservationError) as exc:
            raise CgroupSetupError(str(exc)) from None
        capacity = await loop.run_in_executor(self.executor, machine_capacity,
                                              Path(config.root_dir), config.max_pods)
        self.node_capacity = capacity
        hard = hard_eviction_reservation(eviction_config(config), {
            "memory": capacity.memory, "ephemeral-storage": capacity.ephemeral_storage})
        self.node_allocatable = allocatable(capacity, system_reserved, kube_reserved, hard)
        self.reserved_memory = system_reserved.get("memory", 0) + kube_reserved.get("memory", 0)
        self.oom_score_adj_restricted = not hostinfo.can_lower_oom_score_adj()
        metrics.set_oom_score_adj_restricted(self.oom_score_adj_restricted)
        if self.oom_score_adj_restricted:
            log.warning("this host cannot set negative oom_score_adj (no CAP_SYS_RESOURCE): "
                        "Guaranteed and node-critical pods get 0 instead of -997",
                        oom_score_adj_floor=0)
        policy = ResourcePolicy(
            memory_capacity=capacity.memory, cpu_cfs_quota=config.cpu_cfs_quota,
            cpu_cfs_quota_period=int(round(config.cpu_cfs_quota_period * 1_000_000)),
            pod_pids_limit=config.pod_pids_limit,
            oom_score_adj_floor=0 if self.oom_score_adj_restricted else -1000)
        backend = CgroupV2() if host.version == 2 else CgroupV1()
        manager = CgroupManager(backend, driver=config.cgroup_driver, root=root, policy=policy,
                                pods_budget=pods_cgroup_budget(capacity, system_reserved, kube_reserved),
                                executor=self.executors.cgroup)
        try:
            await manager.start()
        except CgroupError as exc:
            raise CgroupSetupError(f"cannot set up the pod cgroups under {config.cgroup_root}: {exc}") from None
        self.cgroups = manager
        return manager

    async def _imagefs_path(self) -> str | None:
        """Where the runtime keeps images (CRI ImageFsInfo), for imagefs.* signals."""
        try:
            info = await self.cri.image_fs_info()
        except CRIError as exc:
            log.warning("runtime did not report its image filesystem; imagefs signals off", error=str(exc))
            return None
        for fs in info.image_filesystems:
            if fs.fs_id.mountpoint:
                return fs.fs_id.mountpoint
        return None

    async def _runtime_cgroup_driver(self) -> str | None:
        """RuntimeConfig (CRI 1.28+), else containerd's verbose Status."""
        try:
            return driver_from_runtime_config(await self.cri.runtime_config())
        except CRIError:
            pass
        try:
            return driver_from_status_info(dict((await self.cri.status(verbose=True)).info))
        except CRIError:
            return None

    def _node_report(self) -> dict[str, Any]:
        """GET /nodeagent/node: what node status will carry once an API server is configured."""
        capacity, alloc, cgroups = self.node_capacity, self.node_allocatable, self.cgroups
        return {
            "capacity": capacity.as_quantities() if capacity else {},
            "allocatable": alloc.as_quantities() if alloc else {},
            "cgroupDriver": self.config.cgroup_driver,
            "cgroupVersion": cgroups.backend.version if cgroups else None,
            "oomScoreAdjRestricted": self.oom_score_adj_restricted,
            "conditions": ([c.to_json() for c in self.eviction.conditions()] if self.eviction else [])
            + ([self.network.condition()] if self.network else []),
            "apiServer": self.cluster.report() if self.cluster else None,
        }

    async def _attach_cluster(self, manager: PodManager, version: Any) -> None:
        assert self.cluster is not None and self.eviction is not None and self.relister is not None
        loop = asyncio.get_running_loop()
        try:
            facts = await loop.run_in_executor(self.executor, functools.partial(
                read_node_facts, node_name=self.config.node_name, runtime_name=version.runtime_name,
                runtime_version=version.runtime_version, node_ip=self.config.node_ip))
        except NodeAddressError as exc:  # the kubelet refuses to start without a node address
            raise ConfigError(f"node address: {exc} (set --node-ip)") from None
        self._spawn(*self.cluster.attach(
            manager, cri=self.cri, facts=facts, capacity=lambda: self.node_capacity,
            allocatable=lambda: self.node_allocatable, under_pressure=self.eviction.under_pressure,
            pleg_health=self.relister.healthy,
            network_ready=self.network.network_ready if self.network is not None else None,
            port=self.config.port,
            shutdown_errors=self.node_shutdown.errors if self.node_shutdown is not None else lambda: []))

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
        checks = [HealthCheck("syncloop", ok, message)]
        if self.network is not None:
            net = self.network.network_ready()
            checks.append(HealthCheck("network", net.ready, f"{net.reason}: {net.message}"))
        return checks

    def _runtime_answering(self) -> bool:
        """The systemd watchdog's health: the loop runs and the runtime answered
        a relist lately (stricter than /healthz's 3-minute PLEG threshold)."""
        relister = self.relister
        if relister is None:
            return True  # still starting: TimeoutStartSec= governs
        return relister.healthy()[0] and time.monotonic() - relister.last_relist < RUNTIME_SILENCE

    def _systemd_status(self) -> str:
        """The one line `systemctl status nodeagent` shows."""
        pods = self.relister.running_pods if self.relister else 0
        runtime = f"runtime {self.runtime_version or 'not answering yet'}"
        if self.relister is not None and not self._runtime_answering():
            runtime += " not answering"
        api = "standalone"
        if self.cluster is not None:
            api = "connected" if self.cluster.report().get("connected") else "unreachable"
        net = "" if self.network is None or self.network.network_ready().ready else "; pod network not ready"
        return f"{pods} pods running; {runtime}; API server {api}{net}"

    def request_reload(self) -> None:
        task = asyncio.ensure_future(self._reload_guarded())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_guarded(self) -> None:
        try:
            await self.reload()
        except Exception:  # a reload must never stop the agent
            log.exception("configuration reload failed; the running one stays")

    async def reload(self) -> None:
        """SIGHUP: read the configuration again, take over what can change
        while pods run (nodeagent/reload.py), name what waits for a restart,
        and rescan the manifest directory. A bad file changes nothing."""
        if self._load is None or self.manager is None or self.observability is None:
            log.warning("SIGHUP before the agent finished starting; nothing reloaded")
            return
        async with self._reloading:
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(self.executor, self._load)
            except ConfigError as exc:
                log.error("configuration not reloaded; the running one stays", error=str(exc))
                return
            before = {name: getattr(self.config, name) for name in reload.LIVE}
            applied, later = reload.take_live(self.config, new)
            try:
                await loop.run_in_executor(self.executor, self.observability.reload)
            except ConfigError as exc:
                for name, value in before.items():
                    setattr(self.config, name, value)
                log.error("configuration not reloaded; the running one stays", error=str(exc))
                return
            if self.eviction is not None and reload.EVICTION.intersection(applied):
                self.eviction.config = eviction_config(self.config)
            if self.node_shutdown is not None and reload.SHUTDOWN.intersection(applied):
                self.node_shutdown.groups = self._shutdown_groups()
            log.info("configuration reloaded", applied=[field_label(n) for n in applied])
            if later:
                log.warning("changed settings take effect at the next restart",
                            fields=[field_label(n) for n in later])
            if self.source is not None:
                await self.source.sync()

    def _shutdown_groups(self) -> list[ShutdownGroup]:
        c = self.config
        return shutdown_groups(c.shutdown_grace_period, c.shutdown_grace_period_critical_pods,
                               c.shutdown_grace_period_by_pod_priority)

    async def _node_going_down(self) -> bool:
        if self.node_shutdown is None or not self.node_shutdown.enabled:
            return False
        stopping = await systemd_is_stopping()
        if stopping is False:
            log.info("SIGTERM while systemd is not shutting down: agent restart, pods keep running")
        return stopping is not False

    async def _shutdown_node(self) -> None:
        """Graceful node shutdown: pods terminated by priority group, the node
        reported NotReady first and their final statuses last."""
        assert self.node_shutdown is not None
        self.systemd.stopping("node shutting down; terminating pods")
        jobs = [self.node_shutdown.shutdown()]
        if self.cluster is not None:
            jobs.append(self.cluster.node_shutting_down())
        await asyncio.gather(*jobs)
        if self.cluster is not None:
            await self.cluster.flush_pod_statuses(STATUS_FLUSH_WAIT)

    async def _shutdown(self) -> None:
        if self.node_shutdown is None or not self.node_shutdown.shutting_down:
            log.info("stopping nodeagent; pods keep running")
            self.systemd.stopping()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=SHUTDOWN_WAIT)
            for task in stuck:  # a task that ignores cancellation must not keep the agent up
                log.error("agent task did not stop; leaving it", task=repr(task.get_coro()))
        if self.server is not None:
            await self.server.stop()
        if self.manager is not None:
            await self.manager.shutdown()
        if self.network is not None:
            await self.network.stop()
        if self.debug_socket is not None:
            await self.debug_socket.stop()
        if self.cluster is not None:
            await self.cluster.close()
        await self.cri.close()
        self.systemd.close()
        self.executors.shutdown()


async def run_agent(config: AgentConfig, load: Callable[[], AgentConfig] | None = None) -> None:
    """Raises CgroupSetupError when the node cannot run pods as configured.
    `load` reads the configuration again, for SIGHUP."""
    agent = Agent(config, load)
    loop = asyncio.get_running_loop()
    agent.executors.install(loop)
    loop.add_signal_handler(signal.SIGHUP, agent.request_reload)
    loop.add_signal_handler(signal.SIGTERM, agent.stop, True)
    loop.add_signal_handler(signal.SIGINT, agent.stop)
    await agent.run()
