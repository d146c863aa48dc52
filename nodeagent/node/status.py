"""What the Node object and its status say, computed without any HTTP.

The kubelet's registration (`initialNode`), its status setters
(pkg/kubelet/nodestatus/setters.go), its runtime state
(pkg/kubelet/runtime.go), `nodeStatusHasChanged` and the report cadence
(kubelet_node_status.go), and the node Lease it renews (pkg/kubelet/nodelease).
The reporters in `nodeagent/kube/` send what this module computes.

Transitions are computed against the status the API server holds (the
kubelet's setters run on the Node it GETs), so an event fires when the
status it describes is first computed, and again only after a change.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nodeagent.api.node import (
    DISK_PRESSURE, FALSE, MEMORY_PRESSURE, NO_SCHEDULE, NODE_LEASE_NAMESPACE, PID_PRESSURE, READY,
    TAINT_EFFECTS, TRUE, UNKNOWN, ContainerImage, DaemonEndpoint, Lease, LeaseSpec, Node,
    NodeCondition, NodeDaemonEndpoints, NodeRuntimeHandler, NodeRuntimeHandlerFeatures, NodeSpec,
    NodeStatus, Taint,
)
from nodeagent.api.times import format_micro_time, format_time
from nodeagent.api.quantity import Quantity
from nodeagent.api.types import ObjectMeta, OwnerReference
from nodeagent.api.validation import is_label_value, is_qualified_name
from nodeagent.events import NORMAL, WARNING
from nodeagent.node.capacity import NodeResources
from nodeagent.node.info import NodeFacts

# -- registration -------------------------------------------------------------------------

LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_OS = "kubernetes.io/os"
LABEL_ARCH = "kubernetes.io/arch"
ANNOTATION_ATTACH_DETACH = "volumes.kubernetes.io/controller-managed-attach-detach"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

# NodeRestriction: the labels a kubelet may set on its own Node
# (k8s.io/kubelet/pkg/apis/well_known_labels.go).
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "kubernetes.io/os", "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
})
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


class NodeConfigError(ValueError):
    """--node-labels / --register-with-taints the kubelet would refuse; the
    message says which value and why."""


def _label_namespace(key: str) -> str:
    prefix, sep, _ = key.partition("/")
    return prefix if sep else ""


def _is_kubernetes_label(key: str) -> bool:
    ns = _label_namespace(key)
    return ns in ("kubernetes.io", "k8s.io") or ns.endswith((".kubernetes.io", ".k8s.io"))


def is_kubelet_label(key: str) -> bool:
    """A label NodeRestriction lets a kubelet set on its own Node."""
    if key in KUBELET_LABELS:
        return True
    ns = _label_namespace(key)
    return any(ns == allowed or ns.endswith("." + allowed) for allowed in KUBELET_LABEL_NAMESPACES)


def parse_node_labels(value: str | Mapping[str, str]) -> dict[str, str]:
    """--node-labels `k=v,k2=v2` (or the map already parsed), checked as the
    kubelet's ValidateKubeletFlags checks it."""
    if isinstance(value, str):
        labels: dict[str, str] = {}
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, val = item.partition("=")
            if not sep:
                raise NodeConfigError(f"--node-labels: malformed pair {item!r}, expect string=string")
            labels[key.strip()] = val.strip()
    else:
        labels = dict(value)
    unknown = sorted(k for k in labels if _is_kubernetes_label(k) and not is_kubelet_label(k))
    if unknown:
        raise NodeConfigError(
            f"unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: "
            f"[{' '.join(unknown)}]\n--node-labels in the 'kubernetes.io' namespace must begin with "
            f"an allowed prefix ({', '.join(KUBELET_LABEL_NAMESPACES)}) or be in the specifically "
            f"allowed set ({', '.join(sorted(KUBELET_LABELS))})")
    invalid = []
    for key, val in labels.items():
        if errs := is_qualified_name(key):
            invalid.append(f"'{key}' - {', '.join(errs)}")
        if errs := is_label_value(val):
            invalid.append(f"'{val}' - {', '.join(errs)}")
    if invalid:
        raise NodeConfigError(f"invalid node labels: {'; '.join(invalid)}")
    return labels


def parse_taint(spec: str) -> Taint:
    """`key=value:Effect` or `key:Effect` (pkg/util/taints parseTaint). A taint
    without an effect is refused here: the API server would refuse the Node."""
    parts = spec.split(":")
    if len(parts) == 1:
        raise NodeConfigError(f"invalid taint spec: {spec}, a node taint needs an effect "
                              f"(key[=value]:{'|'.join(TAINT_EFFECTS)})")
    if len(parts) != 2:
        raise NodeConfigError(f"invalid taint spec: {spec}")
    head, effect = parts
    if effect not in TAINT_EFFECTS:
        raise NodeConfigError(f"invalid taint effect: {effect}, unsupported taint effect "
                              f"(in {spec}; supported: {', '.join(TAINT_EFFECTS)})")
    kv = head.split("=")
    if len(kv) > 2:
        raise NodeConfigError(f"invalid taint spec: {spec}")
    key, value = kv[0], kv[1] if len(kv) == 2 else ""
    if len(kv) == 2 and (errs := is_label_value(value)):
        raise NodeConfigError(f"invalid taint spec: {spec}, {'; '.join(errs)}")
    if errs := is_qualified_name(key):
        raise NodeConfigError(f"invalid taint spec: {spec}, {'; '.join(errs)}")
    return Taint(key=key, value=value, effect=effect)


def parse_taints(value: str | Iterable[str | Taint]) -> list[Taint]:
    """--register-with-taints `key=value:Effect,key:Effect` (or registerWithTaints
    from the config file); a key/effect pair may appear once, as the API requires."""
    if isinstance(value, str) and not value.strip():
        return []
    items: Iterable[str | Taint] = value.split(",") if isinstance(value, str) else value
    taints = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        taint = parse_taint(item.strip() if isinstance(item, str) else str(item))
        if (taint.key, taint.effect) in seen:
            raise NodeConfigError(f"invalid taint spec: {taint}, taints must be unique by key and effect pair")
        seen.add((taint.key, taint.effect))
        taints.append(taint)
    return taints


def _quantities(resources: NodeResources) -> dict[str, Quantity]:
    return {k: Quantity(v) for k, v in resources.as_quantities().items()}


def initial_node(config: Any, facts: NodeFacts, capacity: NodeResources | None,
                 allocatable: NodeResources | None, *, node_labels: str | Mapping[str, str] = "",
                 register_with_taints: str | Iterable[str | Taint] = (),
                 register_schedulable: bool = True, status: NodeStatus | None = None) -> Node:
    """The Node the kubelet creates when it registers (kubelet_node_status.go
    initialNode). `config` gives node_name, pod_cidr and port; `status` is the
    builder's first status (the kubelet registers with a full status), else the
    facts, capacity and allocatable without conditions.
    Raises NodeConfigError for labels or taints the kubelet would refuse."""
    labels = {LABEL_HOSTNAME: facts.hostname, LABEL_OS: facts.operating_system,
              LABEL_ARCH: facts.architecture}
    labels.update(parse_node_labels(node_labels))
    taints = parse_taints(register_with_taints)
    if not register_schedulable and not any(t.key == TAINT_UNSCHEDULABLE and t.effect == NO_SCHEDULE
                                            for t in taints):
        taints.append(Taint(key=TAINT_UNSCHEDULABLE, effect=NO_SCHEDULE))
    pod_cidr = getattr(config, "pod_cidr", "") or ""
    if status is None:
        status = NodeStatus(
            capacity=_quantities(capacity) if capacity else {},
            allocatable=_quantities(allocatable) if allocatable else {},
            addresses=list(copy.deepcopy(facts.addresses)),
            daemon_endpoints=NodeDaemonEndpoints(DaemonEndpoint(int(getattr(config, "port", 10250)))),
            node_info=facts.system_info())
    return Node(
        metadata=ObjectMeta(name=config.node_name, labels=labels,
                            annotations={ANNOTATION_ATTACH_DETACH: "true"}),
        spec=NodeSpec(pod_cidr=pod_cidr.split(",")[0] if pod_cidr else "",
                      pod_cidrs=[c.strip() for c in pod_cidr.split(",")] if pod_cidr else [],
                      unschedulable=not register_schedulable, taints=taints),
        status=status)


# -- runtime state (pkg/kubelet/runtime.go) ----------------------------------------------------

BASE_RUNTIME_SYNC_THRESHOLD = 30.0  # maxWaitForContainerRuntime
RUNTIME_STATUS_PERIOD = 5.0         # updateRuntimeUp runs every 5 s
NETWORK_UNKNOWN = "network state unknown"

HealthCheck = Callable[[], tuple[bool, str]]


class _RuntimeCondition(Protocol):
    type: str
    status: bool
    reason: str
    message: str


class _NetworkReadiness(Protocol):
    ready: bool
    reason: str
    message: str


def _condition_text(cond: _RuntimeCondition | None) -> str:
    """kubecontainer.RuntimeCondition.String(), `<nil>` for a missing one."""
    if cond is None:
        return "<nil>"
    return f"{cond.type}={'true' if cond.status else 'false'} reason:{cond.reason} message:{cond.message}"


class RuntimeState:
    """The kubelet's runtimeState: what the last CRI Status said, and when the
    runtime was last seen ready. Feed it every RUNTIME_STATUS_PERIOD with
    `observe_status(await cri.status())` (a failed call: nothing; the state
    then ages into "container runtime is down")."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 threshold: float = BASE_RUNTIME_SYNC_THRESHOLD,
                 network_ready: Callable[[], _NetworkReadiness] | None = None) -> None:
        self.clock = clock
        self.threshold = threshold
        self.network_ready = network_ready  # the agent's own pod network, when it runs one
        self.last_sync: float | None = None
        self.runtime_error: str | None = None
        self.network_error: str | None = NETWORK_UNKNOWN
        self.handlers: list[NodeRuntimeHandler] = []
        self._checks: list[tuple[str, HealthCheck]] = []

    def add_health_check(self, name: str, check: HealthCheck) -> None:
        """`check()` -> (healthy, why not); the PLEG's is ("PLEG", relister.healthy)."""
        self._checks.append((name, check))

    def observe_status(self, status: Any) -> None:
        """updateRuntimeUp with a CRI StatusResponse."""
        conds = {c.type: c for c in status.status.conditions}
        network = conds.get("NetworkReady")
        self.network_error = (None if network is not None and network.status
                              else f"container runtime network not ready: {_condition_text(network)}")
        runtime = conds.get("RuntimeReady")
        if runtime is None or not runtime.status:
            self.runtime_error = f"container runtime not ready: {_condition_text(runtime)}"
            return
        self.runtime_error = None
        self.handlers = [NodeRuntimeHandler(h.name, NodeRuntimeHandlerFeatures(
            recursive_read_only_mounts=h.features.recursive_read_only_mounts,
            user_namespaces=h.features.user_namespaces)) for h in status.runtime_handlers]
        self.last_sync = self.clock()

    def runtime_errors(self) -> list[str]:
        errs = []
        if self.last_sync is None:
            errs.append("container runtime status check may not have completed yet")
        elif self.last_sync + self.threshold <= self.clock():
            errs.append("container runtime is down")
        for name, check in self._checks:
            ok, why = check()
            if not ok:
                errs.append(f"{name} is not healthy: {why}")
        if self.runtime_error:
            errs.append(self.runtime_error)
        return errs

    def network_errors(self) -> list[str]:
        if self.network_error:
            return [self.network_error]
        if self.network_ready is not None:
            r = self.network_ready()
            if not r.ready:
                return [f"container runtime network not ready: NetworkReady=false "
                        f"reason:{r.reason} message:{r.message}"]
        return []


def aggregate_message(errors: Sequence[str]) -> str:
    """utilerrors.NewAggregate(errs).Error(): one message as is, several
    deduplicated and joined as `[a, b]`."""
    unique = list(dict.fromkeys(errors))
    if len(errors) == 1 or len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


# -- the status -----------------------------------------------------------------------------

NODE_STATUS_MAX_IMAGES = 50
MAX_NAMES_PER_IMAGE = 5
REQUIRED_CAPACITY = ("cpu", "memory", "pods", "ephemeral-storage")

# (condition, under pressure) -> (status, reason, message, event)
_PRESSURE = {
    (MEMORY_PRESSURE, True): (TRUE, "KubeletHasInsufficientMemory",
                              "kubelet has insufficient memory available", "NodeHasInsufficientMemory"),
    (MEMORY_PRESSURE, False): (FALSE, "KubeletHasSufficientMemory",
                               "kubelet has sufficient memory available", "NodeHasSufficientMemory"),
    (DISK_PRESSURE, True): (TRUE, "KubeletHasDiskPressure", "kubelet has disk pressure", "NodeHasDiskPressure"),
    (DISK_PRESSURE, False): (FALSE, "KubeletHasNoDiskPressure", "kubelet has no disk pressure",
                             "NodeHasNoDiskPressure"),
    (PID_PRESSURE, True): (TRUE, "KubeletHasInsufficientPID", "kubelet has insufficient PID available",
                           "NodeHasInsufficientPID"),
    (PID_PRESSURE, False): (FALSE, "KubeletHasSufficientPID", "kubelet has sufficient PID available",
                            "NodeHasSufficientPID"),
}

RecordFunc = Callable[[str, str, str], None]  # (type, reason, message)


class _Image(Protocol):
    id: str
    size: int
    repo_tags: Sequence[str]
    repo_digests: Sequence[str]


def node_images(images: Iterable[_Image], max_images: int = NODE_STATUS_MAX_IMAGES) -> list[ContainerImage]:
    """status.images from CRI ListImages: largest first (ties: larger id first,
    the kubelet's ByImageSize), at most `max_images` (-1: all), each with at
    most 5 names, digests before tags."""
    ordered = sorted(images, key=lambda i: (i.size, i.id), reverse=True)
    if max_images > -1:
        ordered = ordered[:max_images]
    return [ContainerImage(names=[*i.repo_digests, *i.repo_tags][:MAX_NAMES_PER_IMAGE], size_bytes=i.size)
            for i in ordered]


class NodeStatusBuilder:
    """Computes the Node's status every nodeStatusUpdateFrequency from what the
    agent knows, against the status the API server has (`previous`).

    capacity/allocatable: the node's resources (None while unknown: Ready then
        says which are missing). runtime: the RuntimeState. under_pressure:
        EvictionManager.under_pressure. images: the runtime's images (CRI
        ListImages, cached by the caller; the kubelet refreshes every 30 s).
    record: (type, reason, message) for the node's events (`node_recorder`).
    """

    def __init__(self, *, node_name: str, facts: NodeFacts, port: int,
                 capacity: Callable[[], NodeResources | None],
                 allocatable: Callable[[], NodeResources | None],
                 runtime: RuntimeState,
                 under_pressure: Callable[[str], bool] = lambda condition: False,
                 images: Callable[[], Iterable[_Image]] = lambda: (),
                 record: RecordFunc = lambda type_, reason, message: None,
                 clock: Callable[[], float] = time.time,
                 max_images: int = NODE_STATUS_MAX_IMAGES,
                 apparmor_enabled: bool = False,
                 shutdown_errors: Callable[[], list[str]] = lambda: []) -> None:
        self.node_name = node_name
        self.shutdown_errors = shutdown_errors  # "node is shutting down" while pods are terminated
        self.facts = facts
        self.port = port
        self.capacity = capacity
        self.allocatable = allocatable
        self.runtime = runtime
        self.under_pressure = under_pressure
        self.images = images
        self.record = record
        self.clock = clock
        self.max_images = max_images
        self.apparmor_enabled = apparmor_enabled
        self._last_unschedulable = False

    def _status_event(self, type_: str, reason: str) -> None:
        """recordNodeStatusEvent."""
        self.record(type_, reason, f"Node {self.node_name} status is now: {reason}")

    def build(self, previous: NodeStatus | None = None) -> NodeStatus:
        """The status to report: `previous` with every kubelet-owned field set
        (conditions of other writers stay as they are)."""
        now = format_time(self.clock())
        status = copy.deepcopy(previous) if previous is not None else NodeStatus()
        self._machine_info(status)
        status.addresses = list(copy.deepcopy(self.facts.addresses))
        status.daemon_endpoints = NodeDaemonEndpoints(DaemonEndpoint(self.port))
        status.images = node_images(self.images(), self.max_images)
        status.runtime_handlers = list(copy.deepcopy(self.runtime.handlers))
        for ctype in (MEMORY_PRESSURE, DISK_PRESSURE, PID_PRESSURE):
            self._pressure_condition(status, ctype, now)
        self._ready_condition(status, now)
        return status

    def _machine_info(self, status: NodeStatus) -> None:
        info = self.facts.system_info()
        old_boot = status.node_info.boot_id
        if old_boot and old_boot != info.boot_id:
            self.record(WARNING, "NodeRebooted",
                        f"Node {self.node_name} has been rebooted, boot id: {info.boot_id}")
        status.node_info = info
        capacity = self.capacity()
        if capacity is not None:  # keep what others advertised (extended resources)
            status.capacity.update(_quantities(capacity))
        allocatable = self.allocatable()
        status.allocatable = {k: v for k, v in status.capacity.items()}
        if allocatable is not None:
            status.allocatable.update(
                {k: v for k, v in _quantities(allocatable).items() if k in status.capacity})

    def _pressure_condition(self, status: NodeStatus, ctype: str, now: str) -> None:
        """Memory/Disk/PIDPressureCondition: a new one starts Unknown, so its
        first value is a transition (with its event)."""
        cond = status.condition(ctype)
        if cond is None:
            cond = NodeCondition(type=ctype, status=UNKNOWN)
            status.conditions.append(cond)
        cond.last_heartbeat_time = now
        value, reason, message, event = _PRESSURE[(ctype, bool(self.under_pressure(ctype)))]
        if cond.status != value:
            cond.status, cond.reason, cond.message = value, reason, message
            cond.last_transition_time = now
            self._status_event(NORMAL, event)

    def ready_errors(self, capacity: Mapping[str, Any]) -> list[str]:
        """What keeps the node NotReady, in the kubelet's order."""
        errs = [*self.runtime.runtime_errors(), *self.runtime.network_errors(), *self.shutdown_errors()]
        missing = [r for r in REQUIRED_CAPACITY if r not in capacity]
        if missing:
            errs.append(f"missing node capacity for resources: {', '.join(missing)}")
        return errs

    def _ready_condition(self, status: NodeStatus, now: str) -> None:
        """ReadyCondition: replaced in place (Ready stays where it is, last when new)."""
        errs = self.ready_errors(status.capacity)
        if errs:
            new = NodeCondition(type=READY, status=FALSE, reason="KubeletNotReady",
                                message=aggregate_message(errs), last_heartbeat_time=now)
        else:
            message = "kubelet is posting ready status"
            if self.apparmor_enabled:
                message += ". AppArmor enabled"
            new = NodeCondition(type=READY, status=TRUE, reason="KubeletReady", message=message,
                                last_heartbeat_time=now)
        for i, cond in enumerate(status.conditions):
            if cond.type == READY:
                if cond.status == new.status:
                    new.last_transition_time = cond.last_transition_time
                else:
                    new.last_transition_time = now
                    self._status_event(NORMAL, "NodeReady" if new.status == TRUE else "NodeNotReady")
                status.conditions[i] = new
                return
        new.last_transition_time = now
        status.conditions.append(new)

    def observe_spec(self, spec: NodeSpec) -> None:
        """recordNodeSchedulableEvent: NodeNotSchedulable / NodeSchedulable when
        spec.unschedulable changes (cordon / uncordon)."""
        if spec.unschedulable != self._last_unschedulable:
            self._status_event(NORMAL, "NodeNotSchedulable" if spec.unschedulable else "NodeSchedulable")
            self._last_unschedulable = spec.unschedulable


def node_recorder(node_name: str, recorder: Any = None) -> RecordFunc:
    """The builder's `record`, posting through the agent's event recorder."""
    if recorder is None:
        from nodeagent.events import recorder as default_recorder
        recorder = default_recorder
    return lambda type_, reason, message: recorder.record_node(
        node=node_name, type=type_, reason=reason, message=message)


def record_starting(record: RecordFunc) -> None:
    """The kubelet's BirthCry, once at start."""
    record(NORMAL, "Starting", "Starting kubelet.")


# -- when to report (kubelet_node_status.go) -------------------------------------------------

NODE_STATUS_UPDATE_FREQUENCY = 10.0   # compute
NODE_STATUS_REPORT_FREQUENCY = 300.0  # post even when nothing changed


def status_frequencies(update: float | None = None, report: float | None = None) -> tuple[float, float]:
    """(nodeStatusUpdateFrequency, nodeStatusReportFrequency) with the kubelet's
    defaults: report defaults to update when update was set explicitly."""
    if report is None or report == 0:
        report = update if update else NODE_STATUS_REPORT_FREQUENCY
    return update or NODE_STATUS_UPDATE_FREQUENCY, report


def _conditions_changed(old: Sequence[NodeCondition], new: Sequence[NodeCondition]) -> bool:
    if len(old) != len(new):
        return True

    def key(c: NodeCondition) -> tuple[str, str, str | None, str, str]:
        return (c.type, c.status, c.last_transition_time, c.reason, c.message)
    return sorted(map(key, old), key=lambda k: k[0]) != sorted(map(key, new), key=lambda k: k[0])


def status_changed(old: NodeStatus | None, new: NodeStatus | None) -> bool:
    """nodeStatusHasChanged: any difference but the conditions' heartbeat times."""
    if old is None or new is None:
        return old is not new
    if _conditions_changed(old.conditions, new.conditions):
        return True
    a, b = copy.copy(old), copy.copy(new)
    a.conditions = b.conditions = []
    return a != b


@dataclass
class ReportSchedule:
    """Whether a computed status is posted (tryUpdateNodeStatus): at once when
    it changed, else once nodeStatusReportFrequency has passed since the last
    post. After a posted change the next unchanged post waits an extra random
    [-0.5, 0.5) × frequency, so nodes restarted together spread out."""
    report_frequency: float = NODE_STATUS_REPORT_FREQUENCY
    rng: Callable[[], float] = random.random
    last_report: float | None = None  # monotonic seconds of the last successful post
    delay: float = 0.0

    def should_patch(self, changed: bool, now: float) -> bool:
        if changed or self.last_report is None:  # first report after start: always
            return True
        return now - self.last_report >= self.report_frequency + self.delay

    def reported(self, changed: bool, now: float) -> None:
        """After a successful PATCH."""
        self.delay = self.report_frequency * (-0.5 + self.rng()) if changed else 0.0
        self.last_report = now


# -- the Lease (pkg/kubelet/nodelease) ---------------------------------------------------------

NODE_LEASE_DURATION = 40
RENEW_INTERVAL_FRACTION = 0.25


def lease_renew_interval(duration: int = NODE_LEASE_DURATION) -> float:
    """0.25 × nodeLeaseDurationSeconds (10 s by default)."""
    return duration * RENEW_INTERVAL_FRACTION


def _owner(node_name: str, node_uid: str) -> list[OwnerReference]:
    return [OwnerReference(api_version="v1", kind="Node", name=node_name, uid=node_uid)] if node_uid else []


def lease(node_name: str, node_uid: str = "", duration: int = NODE_LEASE_DURATION,
          now: float | None = None) -> Lease:
    """A new kube-node-lease/<node> Lease, renewed now. The owner reference to
    the Node needs its uid: without one (Node not known yet) it is left out and
    `renew_lease` adds it later, as the kubelet retries every renewal."""
    return Lease(
        metadata=ObjectMeta(name=node_name, namespace=NODE_LEASE_NAMESPACE,
                            owner_references=_owner(node_name, node_uid)),
        spec=LeaseSpec(holder_identity=node_name, lease_duration_seconds=duration,
                       renew_time=format_micro_time(time.time() if now is None else now)))


def renew_lease(existing: Lease, node_name: str, node_uid: str = "", now: float | None = None) -> Lease:
    """The existing Lease with renewTime now (the kubelet keeps everything
    else, and sets the owner reference while it has none)."""
    renewed = copy.deepcopy(existing)
    renewed.spec.renew_time = format_micro_time(time.time() if now is None else now)
    if not renewed.metadata.owner_references:
        renewed.metadata.owner_references = _owner(node_name, node_uid)
    return renewed

