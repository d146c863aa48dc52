"""Resource values the kubelet derives from a pod: pod cgroup settings, CRI
container resources and oom_score_adj (cm/helpers_linux.go,
kuberuntime_container_linux.go, qos/policy.go).

Capacity planning carries over from the kubelet only if these numbers are the
same, so each function mirrors one upstream function and says which.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import Container, Pod
from nodeagent.cgroups.qos import BEST_EFFORT, BURSTABLE, GUARANTEED, pod_qos_class
from nodeagent.cri.pb import api_pb2 as pb

MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
MILLI_CPU_TO_CPU = 1000
QUOTA_PERIOD = 100000  # µs, cpuCFSQuotaPeriod default 100ms
MIN_QUOTA_PERIOD = 1000  # µs

GUARANTEED_OOM_SCORE_ADJ = -997
BEST_EFFORT_OOM_SCORE_ADJ = 1000
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
SYSTEM_NODE_CRITICAL = "system-node-critical"
CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"


def milli_cpu_to_shares(milli_cpu: int) -> int:
    """MilliCPUToShares: 1024 per core, clamped to [2, 262144]."""
    if milli_cpu == 0:
        return MIN_SHARES
    return max(MIN_SHARES, min(MAX_SHARES, milli_cpu * SHARES_PER_CPU // MILLI_CPU_TO_CPU))


def milli_cpu_to_quota(milli_cpu: int, period: int = QUOTA_PERIOD) -> int:
    """MilliCPUToQuota: 0 means no limit; otherwise at least 1ms per period."""
    if milli_cpu == 0:
        return 0
    return max(MIN_QUOTA_PERIOD, milli_cpu * period // MILLI_CPU_TO_CPU)


def shares_to_weight(shares: int) -> int:
    """cgroup v2 cpu.weight from v1 shares, the formula current runc/crun use
    (runc PR #4785): log-quadratic, so 1024 shares map to exactly 100, the
    v2 default, and 2 / 262144 to the range ends 1 / 10000."""
    if shares == 0:
        return 0
    if shares <= MIN_SHARES:
        return 1
    if shares >= MAX_SHARES:
        return 10000
    exponent = math.log2(shares)
    return math.ceil(10 ** ((exponent * exponent + 125 * exponent) / 612.0 - 7.0 / 34.0))


@dataclass(frozen=True)
class ResourceConfig:
    """What a cgroup is limited to; None leaves the file as the kernel made it."""
    cpu_shares: int | None = None
    cpu_quota: int | None = None  # µs per period; -1 = unlimited
    cpu_period: int | None = None
    memory_limit: int | None = None  # bytes
    pids_limit: int | None = None


@dataclass(frozen=True)
class ResourcePolicy:
    """Node settings that shape every pod's numbers."""
    memory_capacity: int  # bytes, the machine's (OOM score denominator)
    cpu_cfs_quota: bool = True  # cpuCFSQuota
    cpu_cfs_quota_period: int = QUOTA_PERIOD  # µs
    pod_pids_limit: int = -1  # podPidsLimit; <= 0: no pod-level pids.max
    # The lowest oom_score_adj this host lets the runtime set: 0 without
    # CAP_SYS_RESOURCE (a process cannot lower its score below its own), else -1000.
    oom_score_adj_floor: int = -1000


# -- pod requests and limits (k8s.io/component-helpers resource.PodRequests) ---------

def _is_sidecar(container: Container) -> bool:
    return container.restart_policy == "Always"


def _add(total: dict[str, int], values: dict[str, int]) -> dict[str, int]:
    out = dict(total)
    for k, v in values.items():
        out[k] = out.get(k, 0) + v
    return out


def _max(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: max(a.get(k, 0), b.get(k, 0)) for k in {*a, *b}}


def _amounts(values: dict[str, Quantity]) -> dict[str, int]:
    """cpu in millicores, everything else in base units."""
    return {k: (q.milli_value() if k == "cpu" else q.value()) for k, q in values.items()}


def _pod_total(pod: Pod, which: str) -> dict[str, int]:
    """PodRequests/PodLimits: app containers plus sidecars, or the largest init
    container (with the sidecars started before it), whichever is more."""
    total: dict[str, int] = {}
    for c in pod.spec.containers:
        total = _add(total, _amounts(getattr(c.resources, which)))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for c in pod.spec.init_containers:
        own = _amounts(getattr(c.resources, which))
        if _is_sidecar(c):
            total = _add(total, own)
            sidecars = _add(sidecars, own)
            current = sidecars
        else:
            current = _add(own, sidecars)
        init_peak = _max(init_peak, current)
    return _max(total, init_peak)


def pod_requests(pod: Pod) -> dict[str, int]:
    return _pod_total(pod, "requests")


def pod_limits(pod: Pod) -> dict[str, int]:
    return _pod_total(pod, "limits")


def _all_containers(pod: Pod) -> Iterable[Container]:
    return [*pod.spec.init_containers, *pod.spec.containers]


def pod_resource_config(pod: Pod, policy: ResourcePolicy) -> ResourceConfig:
    """ResourceConfigForPod: shares from the summed requests; a CFS quota only
    when every container has a cpu limit, a memory limit only when every
    container has one; pids.max from podPidsLimit."""
    qos = pod_qos_class(pod)
    pids = policy.pod_pids_limit if policy.pod_pids_limit > 0 else None
    if qos == BEST_EFFORT:
        return ResourceConfig(cpu_shares=MIN_SHARES, pids_limit=pids)
    requests, limits = pod_requests(pod), pod_limits(pod)
    cpu_limits_declared = all(not _zero(c.resources.limits.get("cpu")) for c in _all_containers(pod))
    memory_limits_declared = all(not _zero(c.resources.limits.get("memory")) for c in _all_containers(pod))
    shares = milli_cpu_to_shares(requests.get("cpu", 0))
    period = policy.cpu_cfs_quota_period
    quota: int | None = milli_cpu_to_quota(limits.get("cpu", 0), period)
    if not policy.cpu_cfs_quota:
        quota = -1
    memory: int | None = limits.get("memory", 0)
    if qos == BURSTABLE:
        if not cpu_limits_declared:
            quota, period = None, None  # type: ignore[assignment]
        if not memory_limits_declared:
            memory = None
    return ResourceConfig(cpu_shares=shares, cpu_quota=quota, cpu_period=period,
                          memory_limit=memory or None, pids_limit=pids)


def _zero(q: Quantity | None) -> bool:
    return q is None or q.is_zero()


# -- containers (calculateLinuxResources, GetContainerOOMScoreAdjust) ------------------

def is_node_critical(pod: Pod) -> bool:
    """IsNodeCriticalPod: critical (static, or system priority) and in the
    system-node-critical class."""
    static = pod.metadata.annotations.get(CONFIG_SOURCE_ANNOTATION, "api") != "api"
    critical = static or (pod.spec.priority or 0) >= SYSTEM_CRITICAL_PRIORITY
    return critical and pod.spec.priority_class_name == SYSTEM_NODE_CRITICAL


def _burstable_adj(memory_request: int, memory_capacity: int) -> int:
    return 1000 - (1000 * memory_request) // memory_capacity if memory_capacity > 0 else 999


def _clamp_burstable(adj: int) -> int:
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    if adj == BEST_EFFORT_OOM_SCORE_ADJ:
        return BEST_EFFORT_OOM_SCORE_ADJ - 1
    return adj


def oom_score_adj_policy(pod: Pod, container: Container, memory_capacity: int) -> int:
    """GetContainerOOMScoreAdjust, before any host clamp."""
    if is_node_critical(pod):
        return GUARANTEED_OOM_SCORE_ADJ
    qos = pod_qos_class(pod)
    if qos == GUARANTEED:
        return GUARANTEED_OOM_SCORE_ADJ
    if qos == BEST_EFFORT:
        return BEST_EFFORT_OOM_SCORE_ADJ
    request = _memory_request(container)
    adj = _burstable_adj(request, memory_capacity)
    if _is_sidecar(container) and container in pod.spec.init_containers:
        # A sidecar must not be killed before the containers it serves: at most
        # the score of the regular container with the smallest memory request.
        if pod.spec.containers:
            smallest = min(_memory_request(c) for c in pod.spec.containers)
            adj = min(adj, _burstable_adj(smallest, memory_capacity))
    return _clamp_burstable(adj)


def _memory_request(container: Container) -> int:
    q = container.resources.requests.get("memory")
    return q.value() if q is not None else 0


def oom_score_adj(pod: Pod, container: Container, policy: ResourcePolicy) -> int:
    """The value sent to the runtime: the policy, raised to what the host
    allows (a negative score needs CAP_SYS_RESOURCE)."""
    return max(oom_score_adj_policy(pod, container, policy.memory_capacity), policy.oom_score_adj_floor)


def container_resources(pod: Pod, container: Container, policy: ResourcePolicy) -> pb.LinuxContainerResources:
    """calculateLinuxResources: cpu shares from the request (from the limit when
    only a limit is set), CFS quota from the limit, memory limit, OOM score."""
    res = container.resources
    request = res.requests.get("cpu")
    limit = res.limits.get("cpu")
    limit_milli = limit.milli_value() if limit is not None else 0
    request_milli = request.milli_value() if request is not None else 0
    shares = milli_cpu_to_shares(limit_milli if request_milli == 0 and limit_milli else request_milli)
    memory = res.limits.get("memory")
    out = pb.LinuxContainerResources(
        cpu_shares=shares, memory_limit_in_bytes=memory.value() if memory is not None else 0,
        oom_score_adj=oom_score_adj(pod, container, policy))
    if policy.cpu_cfs_quota:  # quota 0 = unlimited; the period is always sent
        out.cpu_period = policy.cpu_cfs_quota_period
        out.cpu_quota = milli_cpu_to_quota(limit_milli, policy.cpu_cfs_quota_period)
    return out
