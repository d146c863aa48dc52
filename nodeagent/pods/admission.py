"""Resource admission (the kubelet's predicate admit handler, noderesources
Fits): a pod whose requests do not fit what the admitted pods leave of the
node's allocatable is refused with OutOf<resource>, before anything of it
runs. The scheduler makes the same check; the kubelet repeats it because
static pods and races bypass the scheduler."""

from __future__ import annotations

from collections.abc import Iterable

from nodeagent.api.types import Pod
from nodeagent.cgroups.values import pod_requests
from nodeagent.eviction.manager import AdmitResult
from nodeagent.eviction.ranking import is_critical
from nodeagent.node.capacity import NodeResources


def insufficient(resource: str, requested: int, used: int, capacity: int) -> AdmitResult:
    """InsufficientResourceError as the kubelet reports it."""
    return AdmitResult(False, f"OutOf{resource}",
                       f"Node didn't have enough resource: {resource}, requested: {requested}, "
                       f"used: {used}, capacity: {capacity}")


def fits(pod: Pod, admitted: Iterable[Pod], allocatable: NodeResources | None) -> AdmitResult | None:
    """None when the pod fits (or is critical: the kubelet would preempt for
    it, nodeagent admits it; docs/decisions.md); the first shortage otherwise,
    in the kubelet's order: cpu, memory, ephemeral-storage, hugepages."""
    if allocatable is None or is_critical(pod):
        return None
    wanted = pod_requests(pod)
    if not any(wanted.values()):
        return None
    used: dict[str, int] = {}
    for other in admitted:
        for name, amount in pod_requests(other).items():
            used[name] = used.get(name, 0) + amount
    capacity = {"cpu": allocatable.cpu, "memory": allocatable.memory,
                "ephemeral-storage": allocatable.ephemeral_storage, **allocatable.hugepages}
    for name in ("cpu", "memory", "ephemeral-storage", *sorted(allocatable.hugepages)):
        requested = wanted.get(name, 0)
        if requested and requested > capacity[name] - used.get(name, 0):
            return insufficient(name, requested, used.get(name, 0), capacity[name])
    return None
