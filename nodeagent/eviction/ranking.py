"""Which pod goes first: the kubelet's eviction ranking
(pkg/kubelet/eviction/helpers.go rankMemoryPressure, rankDiskPressureFunc,
rankPIDPressure).

* memory: pods whose working set exceeds their memory request, then lower
  priority, then larger (usage − request);
* disk: the same with ephemeral storage (inodes for the inodesFree signals);
* pid: lower priority, then more processes.

A pod without stats ranks before every pod with stats, as upstream.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nodeagent.api.types import Pod
from nodeagent.cgroups.values import pod_requests
from nodeagent.eviction.thresholds import (
    IMAGEFS_AVAILABLE, IMAGEFS_INODES_FREE, MEMORY_AVAILABLE, NODEFS_AVAILABLE,
    NODEFS_INODES_FREE, PID_AVAILABLE,
)

# pkg/apis/scheduling: SystemCriticalPriority, and the two built-in classes.
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
BUILTIN_PRIORITY_CLASSES = {
    "system-node-critical": SYSTEM_CRITICAL_PRIORITY + 1000,
    "system-cluster-critical": SYSTEM_CRITICAL_PRIORITY,
}


@dataclass(frozen=True)
class ContainerUsage:
    """One container's usage, for the eviction message ("Container x was using ...")."""
    name: str
    memory_working_set_bytes: int | None = None
    ephemeral_storage_bytes: int | None = None  # rootfs + logs


@dataclass(frozen=True)
class PodUsage:
    """A pod's usage as the stats provider measured it (None: not measured)."""
    memory_working_set_bytes: int | None = None
    ephemeral_storage_bytes: int | None = None  # rootfs + logs + local volumes
    process_count: int | None = None
    inodes_used: int | None = None
    containers: tuple[ContainerUsage, ...] = ()


StatsFunc = Callable[[Pod], "PodUsage | None"]


def pod_priority(pod: Pod) -> int:
    """corev1helpers.PodPriority; a pod naming a built-in critical class without
    a priority (no API server ran the Priority admission) gets the class's value."""
    if pod.spec.priority is not None:
        return pod.spec.priority
    return BUILTIN_PRIORITY_CLASSES.get(pod.spec.priority_class_name, 0)


def is_critical(pod: Pod) -> bool:
    """Never evicted, always admitted. The kubelet also counts every static pod;
    in standalone mode every pod is static, so only priority counts here."""
    return pod_priority(pod) >= SYSTEM_CRITICAL_PRIORITY


def pod_request(pod: Pod, resource: str) -> int:
    """PodRequests (component-helpers) of one resource, in bytes (memory, storage)."""
    return pod_requests(pod).get(resource, 0)


def _cmp(a: int | bool, b: int | bool) -> int:
    return (a > b) - (a < b)


def _cmp_bool(a: bool, b: bool) -> int:
    """true first (cmpBool)."""
    return 0 if a == b else (-1 if a else 1)


Cmp = Callable[[Pod, Pod], int]


def _priority(p1: Pod, p2: Pod) -> int:
    return _cmp(pod_priority(p1), pod_priority(p2))  # lower priority first


def _with_stats(stats: StatsFunc, key: Callable[[Pod, PodUsage], int | bool],
                *, bool_first: bool) -> Cmp:
    """A comparator on a usage-derived key; pods without stats first."""
    def cmp(p1: Pod, p2: Pod) -> int:
        s1, s2 = stats(p1), stats(p2)
        if s1 is None or s2 is None:
            return _cmp_bool(s1 is None, s2 is None)
        k1, k2 = key(p1, s1), key(p2, s2)
        return _cmp_bool(bool(k1), bool(k2)) if bool_first else _cmp(k2, k1)  # larger first
    return cmp


def _memory(_: Pod, s: PodUsage) -> int:
    return s.memory_working_set_bytes or 0


def memory_exceeds_request(pod: Pod, s: PodUsage) -> bool:
    return _memory(pod, s) > pod_request(pod, "memory")


def _disk_usage(resource: str) -> Callable[[Pod, PodUsage], int]:
    if resource == "inodes":
        return lambda _, s: s.inodes_used or 0
    return lambda _, s: s.ephemeral_storage_bytes or 0


def _ordered(pods: Sequence[Pod], cmps: list[Cmp]) -> list[Pod]:
    def cmp(p1: Pod, p2: Pod) -> int:
        for c in cmps:
            r = c(p1, p2)
            if r:
                return r
        return 0
    return sorted(pods, key=functools.cmp_to_key(cmp))


def rank_memory(pods: Sequence[Pod], stats: StatsFunc) -> list[Pod]:
    return _ordered(pods, [
        _with_stats(stats, memory_exceeds_request, bool_first=True),
        _priority,
        _with_stats(stats, lambda p, s: _memory(p, s) - pod_request(p, "memory"), bool_first=False),
    ])


def rank_disk(pods: Sequence[Pod], stats: StatsFunc, resource: str = "ephemeral-storage") -> list[Pod]:
    usage = _disk_usage(resource)
    # Upstream subtracts the ephemeral-storage request for inodes too (helpers.go disk()).
    return _ordered(pods, [
        _with_stats(stats, lambda p, s: usage(p, s) > pod_request(p, resource), bool_first=True),
        _priority,
        _with_stats(stats, lambda p, s: usage(p, s) - pod_request(p, "ephemeral-storage"),
                    bool_first=False),
    ])


def rank_pids(pods: Sequence[Pod], stats: StatsFunc) -> list[Pod]:
    return _ordered(pods, [
        _priority,
        _with_stats(stats, lambda _, s: s.process_count or 0, bool_first=False),
    ])


# signal -> (the resource it starves, its ranking), buildSignalToRankFunc for one filesystem.
RESOURCE = {
    MEMORY_AVAILABLE: "memory",
    NODEFS_AVAILABLE: "ephemeral-storage", IMAGEFS_AVAILABLE: "ephemeral-storage",
    NODEFS_INODES_FREE: "inodes", IMAGEFS_INODES_FREE: "inodes",
    PID_AVAILABLE: "pids",
}


def rank(signal: str, pods: Sequence[Pod], stats: StatsFunc) -> list[Pod]:
    resource = RESOURCE[signal]
    if resource == "memory":
        return rank_memory(pods, stats)
    if resource == "pids":
        return rank_pids(pods, stats)
    return rank_disk(pods, stats, resource)
