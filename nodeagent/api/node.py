"""core/v1 Node and coordination.k8s.io/v1 Lease as the agent sends them.

Same conventions as `types.py`: snake_case fields, JSON names camelCase
unless `json=` says otherwise, Go's omitempty unless `keep=True`. Go prints
a struct-valued field even with omitempty (`daemonEndpoints`, `nodeInfo`) and
a zero metav1.Time as `null`, so those are `keep=True`; NodeSystemInfo has no
omitempty at all (an unreadable systemUUID prints as "").
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import ObjectMeta, f

# Condition types and statuses the kubelet writes.
READY = "Ready"
MEMORY_PRESSURE = "MemoryPressure"
DISK_PRESSURE = "DiskPressure"
PID_PRESSURE = "PIDPressure"
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

INTERNAL_IP = "InternalIP"
HOSTNAME = "Hostname"

NO_SCHEDULE, PREFER_NO_SCHEDULE, NO_EXECUTE = "NoSchedule", "PreferNoSchedule", "NoExecute"
TAINT_EFFECTS = (NO_SCHEDULE, PREFER_NO_SCHEDULE, NO_EXECUTE)

NODE_LEASE_NAMESPACE = "kube-node-lease"


# -- spec ------------------------------------------------------------------------

@dataclass
class Taint:
    key: str = f("", keep=True)
    value: str = ""
    effect: str = f("", keep=True)
    time_added: str | None = None

    def __str__(self) -> str:
        """The kubectl / --register-with-taints form: key[=value]:Effect."""
        head = f"{self.key}={self.value}" if self.value else self.key
        return f"{head}:{self.effect}" if self.effect else head


@dataclass
class NodeSpec:
    pod_cidr: str = f("", json="podCIDR")
    pod_cidrs: list[str] = f(factory=list, json="podCIDRs")
    provider_id: str = f("", json="providerID")
    unschedulable: bool = False
    taints: list[Taint] = f(factory=list)


# -- status ----------------------------------------------------------------------

@dataclass
class NodeCondition:
    type: str = f("", keep=True)
    status: str = f("", keep=True)
    last_heartbeat_time: str | None = f(keep=True)
    last_transition_time: str | None = f(keep=True)
    reason: str = ""
    message: str = ""


@dataclass
class NodeAddress:
    type: str = f("", keep=True)
    address: str = f("", keep=True)


@dataclass
class DaemonEndpoint:
    port: int = f(0, json="Port", keep=True)  # the API's one capitalised JSON name


@dataclass
class NodeDaemonEndpoints:
    kubelet_endpoint: DaemonEndpoint = f(factory=DaemonEndpoint, keep=True)


@dataclass
class NodeSwapStatus:
    capacity: int | None = None


@dataclass
class NodeSystemInfo:
    machine_id: str = f("", json="machineID", keep=True)
    system_uuid: str = f("", json="systemUUID", keep=True)
    boot_id: str = f("", json="bootID", keep=True)
    kernel_version: str = f("", keep=True)
    os_image: str = f("", keep=True)
    container_runtime_version: str = f("", keep=True)
    kubelet_version: str = f("", keep=True)
    kube_proxy_version: str = f("", keep=True)
    operating_system: str = f("", keep=True)
    architecture: str = f("", keep=True)
    swap: NodeSwapStatus | None = None


@dataclass
class ContainerImage:
    names: list[str] = f(factory=list, keep=True)
    size_bytes: int = 0


@dataclass
class NodeRuntimeHandlerFeatures:
    recursive_read_only_mounts: bool | None = None
    user_namespaces: bool | None = None


@dataclass
class NodeRuntimeHandler:
    name: str = f("", keep=True)
    features: NodeRuntimeHandlerFeatures | None = None


@dataclass
class NodeStatus:
    capacity: dict[str, Quantity] = f(factory=dict)
    allocatable: dict[str, Quantity] = f(factory=dict)
    conditions: list[NodeCondition] = f(factory=list)
    addresses: list[NodeAddress] = f(factory=list)
    daemon_endpoints: NodeDaemonEndpoints = f(factory=NodeDaemonEndpoints, keep=True)
    node_info: NodeSystemInfo = f(factory=NodeSystemInfo, keep=True)
    images: list[ContainerImage] = f(factory=list)
    volumes_in_use: list[str] = f(factory=list)
    runtime_handlers: list[NodeRuntimeHandler] = f(factory=list)

    def condition(self, ctype: str) -> NodeCondition | None:
        return next((c for c in self.conditions if c.type == ctype), None)


@dataclass
class Node:
    api_version: str = f("v1", keep=True)
    kind: str = f("Node", keep=True)
    metadata: ObjectMeta = f(factory=ObjectMeta, keep=True)
    spec: NodeSpec = f(factory=NodeSpec, keep=True)
    status: NodeStatus = f(factory=NodeStatus, keep=True)


# -- coordination.k8s.io/v1 ----------------------------------------------------------

@dataclass
class LeaseSpec:
    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: str | None = None  # MicroTime
    renew_time: str | None = None    # MicroTime
    lease_transitions: int | None = None


@dataclass
class Lease:
    api_version: str = f("coordination.k8s.io/v1", keep=True)
    kind: str = f("Lease", keep=True)
    metadata: ObjectMeta = f(factory=ObjectMeta, keep=True)
    spec: LeaseSpec = f(factory=LeaseSpec, keep=True)
