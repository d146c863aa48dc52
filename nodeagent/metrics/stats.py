"""Resource usage of the node, its pods and containers, cached briefly.

One snapshot serves /metrics/resource, /metrics/cadvisor and /stats/summary.
Fast path (cgroup v1 files, what cAdvisor reads): ListPodSandbox and
ListContainers, then per container cpuacct.usage and memory.usage_in_bytes/
memory.stat of its cgroup; a pod is the sum of its containers, and its
network is read from the sandbox's /proc/<pid>/net/dev only when asked
(cadvisor, summary). Cgroup paths and pids come from verbose
PodSandboxStatus/ContainerStatus once per object (they never change).
containerd 1.6's ListPodSandboxStats costs ~60 ms per pod here, far too slow
for 110 pods in 50 ms; it is the fallback when the cgroup files cannot be
read (cgroup v2, another runtime's layout). A snapshot younger than `max_age`
after it was taken is reused, and concurrent scrapes share one refresh.
"""

from __future__ import annotations

import asyncio
import json
import os
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
    _interfaces: list[Interface] | None = None  # from CRI stats; else read on demand
    pid: int = 0  # the sandbox's process: its netns' /proc/<pid>/net/dev

    @property
    def interfaces(self) -> list[Interface]:
        """The pod netns' interfaces (blocking read when not given: call from an executor)."""
        if self._interfaces is not None:
            return self._interfaces
        return net_dev(self.pid) if self.pid else []


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
        self._cgroups: dict[str, str] = {}  # container id -> cgroup path
        self._sandboxes: dict[str, int] = {}  # sandbox id -> pid
        self._cgroup_files_work = True
        self._refreshing: asyncio.Future[Snapshot] | None = None
        self._taken = 0.0

    async def get(self) -> Snapshot:
        snap = self._snapshot
        if snap is not None and time.monotonic() - self._taken < self.max_age:
            return snap
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(self._refreshed)
        return await asyncio.shield(self._refreshing)

    def _refreshed(self, future: asyncio.Future[Snapshot]) -> None:
        self._refreshing = None
        if not future.cancelled() and future.exception() is None:
            self.previous, self._snapshot = self._snapshot, future.result()
            self._taken = time.monotonic()

    async def _refresh(self) -> Snapshot:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            containers, sandboxes = await asyncio.gather(
                self.cri.list_containers(pb.ContainerFilter(
                    state=pb.ContainerStateValue(state=pb.ContainerState.CONTAINER_RUNNING))),
                self.cri.list_pod_sandbox(pb.PodSandboxFilter(
                    state=pb.PodSandboxStateValue(state=pb.PodSandboxState.SANDBOX_READY))))
            if self._cgroup_files_work:
                await self._learn(containers, sandboxes)
                pods = await loop.run_in_executor(self.executor, self._read_cgroups,
                                                  containers, sandboxes)
                if pods is not None:
                    return Snapshot(started, await loop.run_in_executor(self.executor, node_usage),
                                    pods)
                self._cgroup_files_work = False
                log.info("container cgroup files not readable; resource stats from CRI "
                         "ListPodSandboxStats")
            sandbox_stats = await self.cri.list_pod_sandbox_stats()
        except CRIError as exc:
            log.warning("resource stats unavailable", error=str(exc))
            return Snapshot(started, await loop.run_in_executor(self.executor, node_usage), [],
                            str(exc))
        return Snapshot(started, await loop.run_in_executor(self.executor, node_usage),
                        _pods(sandbox_stats, containers, sandboxes))

    async def _learn(self, containers: list[pb.Container], sandboxes: list[pb.PodSandbox]) -> None:
        """Cgroup paths and pids of objects not seen before (verbose status, once each)."""
        live = {c.id for c in containers} | {s.id for s in sandboxes}
        for cache in (self._cgroups, self._sandboxes):
            for gone in cache.keys() - live:
                del cache[gone]
        sem = asyncio.Semaphore(16)

        async def container(cid: str) -> None:
            async with sem:
                info = json.loads((await self.cri.container_status(cid, verbose=True)).info["info"])
            self._cgroups[cid] = info["runtimeSpec"]["linux"]["cgroupsPath"]

        async def sandbox(sid: str) -> None:
            async with sem:
                info = json.loads((await self.cri.pod_sandbox_status(sid, verbose=True)).info["info"])
            self._sandboxes[sid] = int(info.get("pid") or 0)

        try:
            await asyncio.gather(*(container(c.id) for c in containers if c.id not in self._cgroups),
                                 *(sandbox(s.id) for s in sandboxes if s.id not in self._sandboxes),
                                 return_exceptions=False)
        except (KeyError, ValueError, TypeError):
            pass  # no verbose info from this runtime: _read_cgroups will say so

    def _read_cgroups(self, containers: list[pb.Container],
                      sandboxes: list[pb.PodSandbox]) -> list[PodStats] | None:
        """Blocking file reads; None when a running container's files are missing."""
        by_sandbox: dict[str, list[pb.Container]] = {}
        for c in containers:
            by_sandbox.setdefault(c.pod_sandbox_id, []).append(c)
        pods = []
        for s in sandboxes:
            if s.id not in self._sandboxes:
                return None
            pid = self._sandboxes[s.id]
            cstats = []
            for c in by_sandbox.get(s.id, []):
                path = self._cgroups.get(c.id)
                usage = cgroup_usage(path) if path else None
                if usage is None:
                    if _gone(c.id, path):
                        continue  # exited since the list
                    return None
                cstats.append(ContainerStats(
                    id=c.id, name=c.labels.get(CONTAINER_NAME_LABEL, c.metadata.name),
                    image=c.image.image or c.image_ref, start_time=c.created_at / 1e9, usage=usage))
            meta = s.metadata
            pods.append(PodStats(
                name=s.labels.get(POD_NAME_LABEL, meta.name),
                namespace=s.labels.get(POD_NAMESPACE_LABEL, meta.namespace),
                uid=s.labels.get(POD_UID_LABEL, meta.uid), sandbox_id=s.id,
                start_time=s.created_at / 1e9, usage=sum_usage([c.usage for c in cstats]),
                containers=cstats, pid=pid))
        return pods


def _gone(container_id: str, path: str | None) -> bool:
    return path is not None and not (CGROUP / "memory" / path.lstrip("/")).exists()


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _stat_value(data: bytes, key: bytes) -> int | None:
    """One `key value` line of memory.stat, found without splitting the whole file."""
    at = data.find(b"\n" + key + b" ")
    if at < 0:
        return None
    start = at + len(key) + 2
    end = data.find(b"\n", start)
    return int(data[start:end if end >= 0 else None])


def cgroup_usage(path: str, cgroup: Path = CGROUP) -> Usage | None:
    """A cgroup v1 group's CPU time and memory, as cAdvisor computes them.
    Plain os.read and bytes.find: ~700 of these reads per scrape of 110 pods."""
    rel = path.lstrip("/")
    root = str(cgroup)
    try:
        cpu = int(_read(f"{root}/cpuacct/{rel}/cpuacct.usage")) / 1e9
        usage = int(_read(f"{root}/memory/{rel}/memory.usage_in_bytes"))
        stat = b"\n" + _read(f"{root}/memory/{rel}/memory.stat")
        inactive = _stat_value(stat, b"total_inactive_file") or 0
        return Usage(time.time(), cpu, max(usage - inactive, 0), usage,
                     _stat_value(stat, b"total_rss"), _stat_value(stat, b"total_pgfault"),
                     _stat_value(stat, b"total_pgmajfault"))
    except (OSError, ValueError):
        return None


def sum_usage(usages: list[Usage]) -> Usage:
    """A pod's usage as the sum of its containers' (the pause container's few
    hundred KiB are left out: one memory.stat read less per pod)."""
    def total(attr: str) -> int | float | None:
        values = [getattr(u, attr) for u in usages]
        return sum(values) if values and None not in values else None  # type: ignore[arg-type]

    return Usage(max((u.timestamp for u in usages), default=time.time()), total("cpu_seconds"),
                 total("memory_working_set"), total("memory_usage"), total("memory_rss"),
                 total("page_faults"), total("major_page_faults"))


def net_dev(pid: int) -> list[Interface]:
    """The pod netns' interfaces from its sandbox process (not lo)."""
    try:
        lines = _read(f"/proc/{pid}/net/dev").decode().splitlines()[2:]
    except OSError:
        return []
    out = []
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        f = rest.split()
        if name == "lo" or len(f) < 11:
            continue
        out.append(Interface(name, int(f[0]), int(f[8]), int(f[2]), int(f[10])))
    return out


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
            containers=cstats, _interfaces=interfaces))
    return pods
