"""Pod phase from container states: kubelet getPhase (v1.31) rules."""

from __future__ import annotations

import pytest

from nodeagent.api.types import (
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodSpec,
)
from nodeagent.pods.status import WorkerView, compute_phase


def running() -> ContainerState:
    return ContainerState(running=ContainerStateRunning("2026-01-01T00:00:00Z"))


def exited(code: int) -> ContainerState:
    return ContainerState(terminated=ContainerStateTerminated(exit_code=code))


def waiting(reason: str = "ContainerCreating") -> ContainerState:
    return ContainerState(waiting=ContainerStateWaiting(reason))


def st(name: str, state: ContainerState, last: ContainerState | None = None, restarts: int = 0) -> ContainerStatus:
    return ContainerStatus(name=name, state=state, last_state=last or ContainerState(), restart_count=restarts)


def pod(policy: str, apps: int = 1, inits: tuple[str | None, ...] = ()) -> Pod:
    return Pod(spec=PodSpec(
        restart_policy=policy,
        containers=[Container(name=f"c{i}") for i in range(apps)],
        init_containers=[Container(name=f"i{i}", restart_policy=rp) for i, rp in enumerate(inits)]))


@pytest.mark.parametrize("policy, states, phase", [
    ("Always", [running()], "Running"),
    ("Always", [waiting()], "Pending"),
    ("Always", [exited(0)], "Running"),  # will be restarted
    ("Never", [exited(0)], "Succeeded"),
    ("Never", [exited(1)], "Failed"),
    ("OnFailure", [exited(0)], "Succeeded"),
    ("OnFailure", [exited(2)], "Running"),
    ("Never", [exited(0), exited(3)], "Failed"),
    ("Never", [exited(0), running()], "Running"),
])
def test_phase_from_app_containers(policy: str, states: list[ContainerState], phase: str) -> None:
    p = pod(policy, apps=len(states))
    app = [st(f"c{i}", s) for i, s in enumerate(states)]
    assert compute_phase(p, [], app, WorkerView()) == phase


def test_crashlooping_container_keeps_the_pod_running() -> None:
    p = pod("Always")
    app = [st("c0", waiting("CrashLoopBackOff"), last=exited(1), restarts=3)]
    assert compute_phase(p, [], app, WorkerView()) == "Running"


def test_init_containers_keep_the_pod_pending_and_a_failed_one_fails_never_pods() -> None:
    assert compute_phase(pod("Always", inits=(None,)), [st("i0", running())],
                         [st("c0", waiting("PodInitializing"))], WorkerView()) == "Pending"
    assert compute_phase(pod("Never", inits=(None,)), [st("i0", exited(1))],
                         [st("c0", waiting("PodInitializing"))], WorkerView()) == "Failed"
    assert compute_phase(pod("Always", inits=(None,)), [st("i0", waiting("CrashLoopBackOff"), exited(1), 1)],
                         [st("c0", waiting("PodInitializing"))], WorkerView()) == "Pending"


def test_sidecar_counts_as_pending_only_before_its_first_start() -> None:
    p = pod("Never", inits=("Always",))
    assert compute_phase(p, [st("i0", waiting())], [st("c0", waiting("PodInitializing"))], WorkerView()) == "Pending"
    assert compute_phase(p, [st("i0", running())], [st("c0", running())], WorkerView()) == "Running"
    # The app finished; the still-running sidecar does not keep the pod alive.
    assert compute_phase(p, [st("i0", running())], [st("c0", exited(0))], WorkerView()) == "Succeeded"


def test_terminal_phase_is_sticky() -> None:
    view = WorkerView(terminal_phase="Failed")
    assert compute_phase(pod("Always"), [], [st("c0", running())], view) == "Failed"
