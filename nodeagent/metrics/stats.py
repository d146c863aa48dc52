"""Resource usage of the node, its pods and containers, cached briefly.

One snapshot serves /metrics/resource, /metrics/cadvisor and /stats/summary.
It costs two CRI calls (ListPodSandboxStats, which carries each pod's
containers and network, and ListContainers for start times and images) plus
the root cgroup's cpuacct/memory files; a snapshot younger than `max_age` is
reused, and concurrent scrapes share one refresh (the kubelet's stats come
from a cache refreshed by housekeeping too).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import structlog

from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.pods.observe import POD_UID_LABEL

log = structlog.get_logger("nodeagent.metrics")

CGROUP = Path("/sys/fs/cgroup")
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"


@dataclass(frozen=True)
class Usage:
    """CPU and memory at one instant (`timestamp`, seconds since the epoch)."""
    timestamp: float
    cpu_seconds: float | None = None
    memory_working_set: int | None = None
    memory_usage: int | None = None
    memory_rss: int | None = None
    page_faults: int | None = None
    major_page_faults: int | None = None


@dataclass(frozen=True)
class ContainerStats:
    id: str
    name: str
    image: str
    start_time: float
    usage: Usage


@dataclass(frozen=True)
class Interface:
    name: str
    rx_bytes: int
    tx_bytes: int
    rx_errors: int
    tx_errors: int


@dataclass(frozen=True)
class PodStats:
    name: str
    namespace: str
    uid: str
    sandbox_id: str
    start_time: float
    usage: Usage
    containers: list[ContainerStats] = field(default_factory=list)
    interfaces: list[Interface] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    timestamp: float
    node: Usage
    pods: list[PodStats]
    error: str | None = None  # the CRI part failed; node values are still there


def _usage(cpu: pb.CpuUsage, memory: pb.MemoryUsage, has_cpu: bool, has_mem: bool) -> Usage:
    ts = (cpu.timestamp if has_cpu and cpu.timestamp else memory.timestamp) / 1e9 or time.time()
    return Usage(
        timestamp=ts,
        cpu_seconds=cpu.usage_core_nano_seconds.value / 1e9
        if has_cpu and cpu.HasField("usage_core_nano_seconds") else None,
        memory_working_set=memory.working_set_bytes.value
        if has_mem and memory.HasField("working_set_bytes") else None,
        memory_usage=memory.usage_bytes.value if has_mem and memory.HasField("usage_bytes") else None,
        memory_rss=memory.rss_bytes.value if has_mem and memory.HasField("rss_bytes") else None,
        page_faults=memory.page_faults.value if has_mem and memory.HasField("page_faults") else None,
        major_page_faults=memory.major_page_faults.value
        if has_mem and memory.HasField("major_page_faults") else None)


def node_usage(cgroup: Path = CGROUP) -> Usage:
    """The root cgroup's CPU time and working set (usage - inactive_file), as the
    kubelet's node stats; /proc figures where cgroup v1 files are missing."""
    now = time.time()
    cpu: float | None
    try:
        cpu = int(_first_existing(cgroup, ("cpuacct/cpuacct.usage", "cpu,cpuacct/cpuacct.usage"))) / 1e9
    except (OSError, ValueError):
        cpu = sum(getattr(psutil.cpu_times(), m, 0.0) for m in
                  ("user", "system", "nice", "irq", "softirq", "steal"))
    try:
        usage = int((cgroup / "memory/memory.usage_in_bytes").read_text())
        stat = _memory_stat(cgroup / "memory/memory.stat")
        inactive = stat.get("total_inactive_file", 0)
        working = max(usage - inactive, 0)
        rss = stat.get("total_rss")
        faults, major = stat.get("total_pgfault"), stat.get("total_pgmajfault")
    except (OSError, ValueError):
        vm = psutil.virtual_memory()
        usage, working, rss, faults, major = vm.total - vm.free, vm.total - vm.available, None, None, None
    return Usage(now, cpu, working, usage, rss, faults, major)


def _first_existing(root: Path, names: tuple[str, ...]) -> str:
    for name in names:
        try:
            return (root / name).read_text()
        except FileNotFoundError:
            continue
    raise FileNotFoundError(names[0])


def _memory_stat(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        out[key] = int(value)
    return out


class StatsProvider:
    """The latest snapshot, refreshed when older than `max_age` seconds."""

    def __init__(self, cri: CRIClient, *, max_age: float = 1.0, executor: Any = None) -> None:
        self.cri = cri
        self.max_age = max_age
        self.executor = executor
        self._snapshot: Snapshot | None = None
        self.previous: Snapshot | None = None  # the one before: rates (usageNanoCores)
        self._refreshing: asyncio.Future[Snapshot] | None = None

    async def get(self) -> Snapshot:
        snap = self._snapshot
        if snap is not None and time.monotonic() - snap.timestamp < self.max_age:
            return snap
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(self._refreshed)
        return await asyncio.shield(self._refreshing)

    def _refreshed(self, future: asyncio.Future[Snapshot]) -> None:
        self._refreshing = None
        if not future.cancelled() and future.exception() is None:
            self.previous, self._snapshot = self._snapshot, future.result()

    async def _refresh(self) -> Snapshot:
        loop = asyncio.get_running_loop()
        node_future = loop.run_in_executor(self.executor, node_usage)
        started = time.monotonic()
        error = None
        pods: list[PodStats] = []
        try:
            sandbox_stats, containers, sandboxes = await asyncio.gather(
                self.cri.list_pod_sandbox_stats(),
                self.cri.list_containers(pb.ContainerFilter(
                    state=pb.ContainerStateValue(state=pb.ContainerState.CONTAINER_RUNNING))),
                self.cri.list_pod_sandbox(pb.PodSandboxFilter(
                    state=pb.PodSandboxStateValue(state=pb.PodSandboxState.SANDBOX_READY))))
        except CRIError as exc:
            log.warning("resource stats unavailable", error=str(exc))
            error = str(exc)
        else:
            pods = _pods(sandbox_stats, containers, sandboxes)
        return Snapshot(started, await node_future, pods, error)


def _pods(sandbox_stats: list[pb.PodSandboxStats], containers: list[pb.Container],
          sandboxes: list[pb.PodSandbox]) -> list[PodStats]:
    by_id = {c.id: c for c in containers}
    started = {s.id: s.created_at / 1e9 for s in sandboxes}
    pods = []
    for stats in sandbox_stats:
        attrs = stats.attributes
        if attrs.id not in started:
            continue  # not ready any more
        linux = stats.linux
        cstats = []
        for c in linux.containers:
            info = by_id.get(c.attributes.id)
            if info is None:
                continue  # exited since
            cstats.append(ContainerStats(
                id=c.attributes.id,
                name=info.labels.get(CONTAINER_NAME_LABEL, c.attributes.metadata.name),
                image=info.image.image or info.image_ref, start_time=info.created_at / 1e9,
                usage=_usage(c.cpu, c.memory, c.HasField("cpu"), c.HasField("memory"))))
        net = linux.network
        interfaces = [Interface(i.name, i.rx_bytes.value, i.tx_bytes.value, i.rx_errors.value,
                                i.tx_errors.value)
                      for i in ([net.default_interface] if net.HasField("default_interface") else [])
                      + list(net.interfaces) if i.name]
        seen: set[str] = set()
        interfaces = [i for i in interfaces if not (i.name in seen or seen.add(i.name))]
        meta = attrs.metadata
        pods.append(PodStats(
            name=attrs.labels.get(POD_NAME_LABEL, meta.name),
            namespace=attrs.labels.get(POD_NAMESPACE_LABEL, meta.namespace),
            uid=attrs.labels.get(POD_UID_LABEL, meta.uid), sandbox_id=attrs.id,
            start_time=started[attrs.id],
            usage=_usage(linux.cpu, linux.memory, linux.HasField("cpu"), linux.HasField("memory")),
            containers=cstats, interfaces=interfaces))
    return pods
