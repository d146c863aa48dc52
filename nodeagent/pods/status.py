"""Pod status computed from observed runtime state, as the kubelet does.

Never remembered separately: each sync recomputes the status from the spec,
what CRI reports, and the worker's waiting reasons (image pulls, backoff,
config errors), which CRI cannot know. Rules: kubelet v1.31
kubelet_pods.go getPhase / convertToAPIContainerStatuses, status/generate.go.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.api.times import from_cri
from nodeagent.api.types import (
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
)
from nodeagent.cgroups.qos import pod_qos_class
from nodeagent.pods.observe import CREATED, EXITED, RUNNING, ContainerInfo, ObservedPod

PENDING, RUNNING_PHASE, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"

# Reasons the runtime reports for a container that could not start at all;
# shown as the kubelet/docker reason a kubelet user searches for.
_START_FAILURE_REASONS = {"StartError": "ContainerCannotRun"}


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass
class WorkerView:
    """What only the worker knows: why a container is not running (yet)."""
    waiting: dict[str, Waiting] = field(default_factory=dict)
    ready: dict[str, bool] = field(default_factory=dict)  # readiness probes (issue: probes)
    started: dict[str, bool] = field(default_factory=dict)  # startup probes
    terminal_phase: str = ""  # set once the pod reached Succeeded/Failed
    messages: dict[str, str] = field(default_factory=dict)  # container id -> termination message
    reason: str = ""
    message: str = ""
    conditions: list[PodCondition] = field(default_factory=list)  # e.g. DisruptionTarget on eviction


def is_sidecar(container: Container) -> bool:
    return container.restart_policy == "Always"


def _terminated(c: ContainerInfo, runtime: str, view: WorkerView) -> ContainerStateTerminated:
    reason = _START_FAILURE_REASONS.get(c.reason, c.reason) or ("Completed" if c.exit_code == 0 else "Error")
    return ContainerStateTerminated(
        exit_code=c.exit_code, reason=reason, message=view.messages.get(c.id) or c.message,
        started_at=from_cri(c.started_at) or from_cri(c.created_at), finished_at=from_cri(c.finished_at),
        container_id=f"{runtime}://{c.id}")


def container_status(spec: Container, observed: ObservedPod, view: WorkerView, runtime: str,
                     default_waiting: str = "ContainerCreating") -> ContainerStatus:
    instances = observed.instances(spec.name)
    latest = instances[0] if instances else None
    status = ContainerStatus(name=spec.name, image=spec.image)
    if latest is not None:
        status.restart_count = latest.attempt
        status.image = latest.image or spec.image
        status.image_id = latest.image_ref
        status.container_id = f"{runtime}://{latest.id}"
    waiting = view.waiting.get(spec.name)
    if latest is not None and latest.state == RUNNING:
        status.state = ContainerState(running=ContainerStateRunning(started_at=from_cri(latest.started_at)))
        status.started = view.started.get(spec.name, True)
        status.ready = view.ready.get(spec.name, True) and status.started
        if len(instances) > 1 and instances[1].state == EXITED:
            status.last_state = ContainerState(terminated=_terminated(instances[1], runtime, view))
    elif latest is not None and latest.state == EXITED:
        terminated = _terminated(latest, runtime, view)
        status.started = False
        if waiting:  # about to restart: waiting now, the exit is the last state
            status.state = ContainerState(waiting=ContainerStateWaiting(waiting.reason, waiting.message))
            status.last_state = ContainerState(terminated=terminated)
        else:
            status.state = ContainerState(terminated=terminated)
            if len(instances) > 1 and instances[1].state == EXITED:
                status.last_state = ContainerState(terminated=_terminated(instances[1], runtime, view))
    else:
        reason = waiting or Waiting(default_waiting)
        status.state = ContainerState(waiting=ContainerStateWaiting(reason.reason, reason.message))
        status.started = False
        previous = instances[1] if latest is not None and latest.state == CREATED and len(instances) > 1 else None
        if previous is not None and previous.state == EXITED:
            status.last_state = ContainerState(terminated=_terminated(previous, runtime, view))
        if latest is None:
            status.image_id = ""
    return status


def compute_phase(pod: Pod, init: list[ContainerStatus], app: list[ContainerStatus],
                  view: WorkerView) -> str:
    """kubelet getPhase (v1.31)."""
    if view.terminal_phase:
        return view.terminal_phase
    specs = {c.name: c for c in pod.spec.init_containers}
    pending_init = failed_init = 0
    for s in init:
        sidecar = is_sidecar(specs[s.name])
        if sidecar:
            if s.state.waiting and not s.last_state.terminated and s.restart_count == 0:
                pending_init += 1
            continue
        if s.state.running:
            pending_init += 1
        elif s.state.terminated and s.state.terminated.exit_code != 0:
            failed_init += 1
        elif s.state.waiting:
            if s.last_state.terminated and s.last_state.terminated.exit_code != 0:
                failed_init += 1
            elif not s.last_state.terminated:
                pending_init += 1
    unknown = running = waiting = stopped = succeeded = 0
    for s in app:
        if s.state.running:
            running += 1
        elif s.state.terminated:
            stopped += 1
            if s.state.terminated.exit_code == 0:
                succeeded += 1
        elif s.state.waiting:
            if s.last_state.terminated:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    policy = pod.spec.restart_policy
    if failed_init and policy == "Never":
        return FAILED
    if pending_init or (failed_init and not running and not stopped):
        return PENDING
    if waiting:
        return PENDING
    if running and not unknown:
        return RUNNING_PHASE
    if running + stopped == len(app) and app:
        if policy == "Always":
            return RUNNING_PHASE
        if stopped == succeeded:
            return SUCCEEDED
        if policy == "Never":
            return FAILED
        return RUNNING_PHASE
    return PENDING


def _condition(kind: str, ok: bool, reason: str = "", message: str = "") -> PodCondition:
    return PodCondition(type=kind, status="True" if ok else "False",
                        reason="" if ok else reason, message="" if ok else message)


def _carry_last_state(statuses: list[ContainerStatus], before: list[ContainerStatus]) -> None:
    """Dead instances are garbage-collected; like the kubelet, keep showing the
    last termination from the previous status once the runtime forgot it."""
    old = {s.name: s for s in before}
    for s in statuses:
        prev = old.get(s.name)
        if prev is None or s.restart_count == 0 or s.last_state.terminated is not None:
            continue
        if prev.state.terminated is not None and prev.container_id != s.container_id:
            s.last_state = ContainerState(terminated=prev.state.terminated)
        elif prev.last_state.terminated is not None:
            s.last_state = ContainerState(terminated=prev.last_state.terminated)


def compute_status(pod: Pod, observed: ObservedPod, view: WorkerView, *, runtime: str,
                   node_ips: tuple[str, ...], start_time: str | None,
                   previous: PodStatus | None, now: str) -> PodStatus:
    inits_done = _inits_done(pod, observed)
    init = [container_status(c, observed, view, runtime) for c in pod.spec.init_containers]
    app = [container_status(c, observed, view, runtime,
                            "ContainerCreating" if inits_done else "PodInitializing")
           for c in pod.spec.containers]
    if previous is not None:
        _carry_last_state(init, previous.init_container_statuses)
        _carry_last_state(app, previous.container_statuses)
    phase = compute_phase(pod, init, app, view)

    sandbox = observed.sandbox
    sandbox_ready = sandbox is not None and sandbox.ready
    incomplete = [s.name for s in init
                  if not (s.state.terminated and s.state.terminated.exit_code == 0)
                  and not (s.state.running and is_sidecar(_spec(pod.spec.init_containers, s.name)))]
    any_app_started = any(s.state.running or s.state.terminated or s.last_state.terminated for s in app)
    initialized = not incomplete or any_app_started
    # kubelet 1.29+: sidecars (restartable init containers) count for readiness too
    unready = [s.name for s in init if not s.ready and is_sidecar(_spec(pod.spec.init_containers, s.name))]
    unready += [s.name for s in app if not s.ready]
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready),
        _condition("Initialized", initialized or phase == SUCCEEDED, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(incomplete)}]"),
        _condition("Ready", not unready and phase == RUNNING_PHASE, "ContainersNotReady",
                   f"containers with unready status: [{' '.join(unready)}]"),
        _condition("ContainersReady", not unready and phase == RUNNING_PHASE, "ContainersNotReady",
                   f"containers with unready status: [{' '.join(unready)}]"),
        _condition("PodScheduled", True),
    ]
    if phase == SUCCEEDED:  # kubelet: a completed pod is initialized, and not ready
        conditions[1] = PodCondition(type="Initialized", status="True", reason="PodCompleted")
        for i in (2, 3):
            conditions[i] = PodCondition(type=conditions[i].type, status="False", reason="PodCompleted")
    conditions += view.conditions
    _carry_transition_times(conditions, previous, now)

    if pod.spec.host_network:
        pod_ips = node_ips
    else:
        pod_ips = sandbox.ips if sandbox_ready else ()
    return PodStatus(
        phase=phase, conditions=conditions, reason=view.reason, message=view.message,
        host_ip=node_ips[0] if node_ips else "", host_ips=[PodIP(ip) for ip in node_ips],
        pod_ip=pod_ips[0] if pod_ips else "", pod_ips=[PodIP(ip) for ip in pod_ips],
        start_time=start_time, init_container_statuses=init, container_statuses=app,
        qos_class=pod_qos_class(pod))


def _spec(containers: list[Container], name: str) -> Container:
    return next(c for c in containers if c.name == name)


def _inits_done(pod: Pod, observed: ObservedPod) -> bool:
    sandbox = observed.sandbox
    if sandbox is None:
        return not pod.spec.init_containers
    for c in pod.spec.init_containers:
        latest = observed.latest(c.name, sandbox.id)
        if latest is None:
            return False
        if is_sidecar(c):
            if latest.state != RUNNING:
                return False
        elif not (latest.state == EXITED and latest.exit_code == 0):
            return False
    return True


def _carry_transition_times(conditions: list[PodCondition], previous: PodStatus | None, now: str) -> None:
    before = {c.type: c for c in previous.conditions} if previous else {}
    for c in conditions:
        old = before.get(c.type)
        c.last_transition_time = old.last_transition_time if old and old.status == c.status else now
