"""Pod QoS class, as the kubelet computes it (k8s pkg/apis/core/v1/helper/qos).

The class decides the pod's cgroup tier (kubepods/, burstable/, besteffort/)
and its containers' oom_score_adj, so it must agree with the kubelet's
exactly. Only cpu and memory count; init containers count like app
containers; a resource is "guaranteed" in a container when its request
equals its (non-zero) limit. Call on a defaulted pod: the API server's
"requests default to limits" step is what makes limits-only pods Guaranteed.
"""

from __future__ import annotations

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import Pod, ResourceRequirements

GUARANTEED = "Guaranteed"
BURSTABLE = "Burstable"
BEST_EFFORT = "BestEffort"
QOS_CLASSES = (GUARANTEED, BURSTABLE, BEST_EFFORT)

# supportedQoSComputeResources: ephemeral-storage, hugepages and extended
# resources never affect the class.
QOS_COMPUTE_RESOURCES = ("cpu", "memory")

_ZERO = Quantity("0")


def pod_qos_class(pod: Pod) -> str:
    """GetPodQOS: the class recorded in status if any, else computed.

    The class is immutable once recorded, so a recorded one wins even if
    resources were changed in place since.
    """
    if pod.status.qos_class:
        return pod.status.qos_class
    return compute_pod_qos(pod)


def compute_pod_qos(pod: Pod) -> str:
    """ComputePodQOS: the class from the containers' cpu/memory resources."""
    pod_class = ""
    for container in [*pod.spec.init_containers, *pod.spec.containers]:
        cls = resource_qos(container.resources)
        if cls == BURSTABLE:
            return BURSTABLE
        if not pod_class:
            pod_class = cls
        elif pod_class != cls:
            return BURSTABLE  # some containers BestEffort, others Guaranteed
    return pod_class or BEST_EFFORT


def resource_qos(resources: ResourceRequirements) -> str:
    """The class of one container's requirements (resourceQOS upstream)."""
    if not resources.requests and not resources.limits:
        return BEST_EFFORT
    cls = ""
    for name in QOS_COMPUTE_RESOURCES:
        request = resources.requests.get(name, _ZERO)
        limit = resources.limits.get(name, _ZERO)
        if request != limit:
            return BURSTABLE  # unequal: at least one is set, so neither extreme
        best_effort = request.is_zero()
        if not cls:
            cls = BEST_EFFORT if best_effort else GUARANTEED
        elif best_effort != (cls == BEST_EFFORT):
            return BURSTABLE  # e.g. cpu guaranteed but memory unset
    return cls
