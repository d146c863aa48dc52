"""kubectl-compatible pod table: STATUS/READY/RESTARTS/AGE as `kubectl get pods` prints them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from nodeagent.podtable import format_pod_table, human_duration, parse_time, pod_row

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def running(name: str = "app", ready: bool = True, restarts: int = 0,
            last_finished: str | None = None) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": name, "ready": ready, "restartCount": restarts,
                          "state": {"running": {"startedAt": ts(60)}}, "lastState": {}}
    if last_finished:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                          "finishedAt": last_finished}}
    return cs


def waiting(name: str, reason: str, restarts: int = 0,
            last_finished: str | None = None) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": name, "ready": False, "restartCount": restarts,
                          "state": {"waiting": {"reason": reason}}, "lastState": {}}
    if last_finished:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                          "finishedAt": last_finished}}
    return cs


def terminated(name: str, exit_code: int = 0, reason: str = "", signal: int = 0) -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": exit_code, "startedAt": ts(100), "finishedAt": ts(90)}
    if reason:
        term["reason"] = reason
    if signal:
        term["signal"] = signal
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": term},
            "lastState": {}}


def pod(name: str = "web", *, containers: int = 1, init: list[dict[str, Any]] | None = None,
        statuses: list[dict[str, Any]] | None = None,
        init_statuses: list[dict[str, Any]] | None = None, phase: str = "Running",
        created: float = 300, ip: str = "10.88.0.5", conditions: list[dict[str, str]] | None = None,
        **meta: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "containerStatuses": statuses or [],
                              "initContainerStatuses": init_statuses or [],
                              "conditions": conditions or []}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ts(created),
                     **meta},
        "spec": {"containers": [{"name": f"c{i}"} for i in range(containers)],
                 "initContainers": init or []},
        "status": status,
    }


def test_running_one_of_one() -> None:
    row = pod_row(pod(statuses=[running()]), NOW)
    assert (row.namespace, row.name, row.ready, row.status, row.restarts, row.age, row.ip) == \
        ("default", "web", "1/1", "Running", "0", "5m", "10.88.0.5")


def test_crashloopbackoff_with_restarts_ago() -> None:
    p = pod(statuses=[waiting("app", "CrashLoopBackOff", restarts=4, last_finished=ts(42))])
    row = pod_row(p, NOW)
    assert row.status == "CrashLoopBackOff"
    assert row.ready == "0/1"
    assert row.restarts == "4 (42s ago)"


def test_restarts_without_last_state_have_no_ago() -> None:
    row = pod_row(pod(statuses=[running(restarts=2)]), NOW)
    assert row.restarts == "2"


def test_init_progress() -> None:
    init = [{"name": "i1"}, {"name": "i2"}]
    p = pod(init=init, phase="Pending",
            init_statuses=[{"name": "i1", "restartCount": 0, "ready": False,
                            "state": {"running": {"startedAt": ts(5)}}},
                           {"name": "i2", "restartCount": 0, "ready": False,
                            "state": {"waiting": {"reason": "PodInitializing"}}}],
            statuses=[waiting("app", "PodInitializing")])
    row = pod_row(p, NOW)
    assert row.status == "Init:0/2"
    assert row.ready == "0/1"


def test_init_second_of_two() -> None:
    init = [{"name": "i1"}, {"name": "i2"}]
    p = pod(init=init, phase="Pending",
            init_statuses=[terminated("i1", 0, "Completed"),
                           {"name": "i2", "restartCount": 0, "ready": False,
                            "state": {"running": {"startedAt": ts(5)}}}])
    assert pod_row(p, NOW).status == "Init:1/2"


def test_init_crashloopbackoff() -> None:
    init = [{"name": "i1"}]
    p = pod(init=init, phase="Pending",
            init_statuses=[waiting("i1", "CrashLoopBackOff", restarts=3, last_finished=ts(200))],
            statuses=[waiting("app", "PodInitializing")])
    row = pod_row(p, NOW)
    assert row.status == "Init:CrashLoopBackOff"
    assert row.restarts == "3 (3m20s ago)"


def test_init_error_exit_code_and_signal() -> None:
    init = [{"name": "i1"}]
    assert pod_row(pod(init=init, phase="Pending", init_statuses=[terminated("i1", 1, "Error")]),
                   NOW).status == "Init:Error"
    assert pod_row(pod(init=init, phase="Pending", init_statuses=[terminated("i1", 3)]),
                   NOW).status == "Init:ExitCode:3"
    assert pod_row(pod(init=init, phase="Pending",
                       init_statuses=[terminated("i1", 137, signal=9)]), NOW).status == \
        "Init:Signal:9"


def test_sidecar_counts_in_ready_and_does_not_block() -> None:
    init = [{"name": "proxy", "restartPolicy": "Always"}]
    sidecar = running("proxy")
    sidecar["started"] = True
    p = pod(init=init, init_statuses=[sidecar], statuses=[running()],
            conditions=[{"type": "Initialized", "status": "True"}])
    row = pod_row(p, NOW)
    assert (row.ready, row.status) == ("2/2", "Running")


def test_completed() -> None:
    p = pod(phase="Succeeded", statuses=[terminated("app", 0, "Completed")], ip="")
    row = pod_row(p, NOW)
    assert (row.status, row.ready, row.ip) == ("Completed", "0/1", "<none>")


def test_completed_with_running_container_is_running_or_notready() -> None:
    statuses = [running("a"), terminated("b", 0, "Completed")]
    ready = pod(containers=2, statuses=statuses, conditions=[{"type": "Ready", "status": "True"}])
    assert pod_row(ready, NOW).status == "Running"
    assert pod_row(pod(containers=2, statuses=statuses), NOW).status == "NotReady"


def test_error_exit_code_signal() -> None:
    assert pod_row(pod(phase="Failed", statuses=[terminated("app", 2, "Error")]),
                   NOW).status == "Error"
    assert pod_row(pod(statuses=[terminated("app", 2)]), NOW).status == "ExitCode:2"
    assert pod_row(pod(statuses=[terminated("app", 143, signal=15)]), NOW).status == "Signal:15"


def test_first_container_reason_wins() -> None:
    p = pod(containers=2,
            statuses=[waiting("a", "ErrImagePull"), waiting("b", "ContainerCreating")])
    assert pod_row(p, NOW).status == "ErrImagePull"


def test_err_image_pull() -> None:
    p = pod(phase="Pending", statuses=[waiting("app", "ErrImagePull")], ip="")
    row = pod_row(p, NOW)
    assert (row.status, row.ready, row.ip) == ("ErrImagePull", "0/1", "<none>")


def test_terminating() -> None:
    p = pod(statuses=[running()], deletionTimestamp=ts(1))
    assert pod_row(p, NOW).status == "Terminating"
    done = pod(phase="Succeeded", statuses=[terminated("app", 0, "Completed")],
               deletionTimestamp=ts(1))
    assert pod_row(done, NOW).status == "Completed"


def test_pending_and_container_creating() -> None:
    assert pod_row(pod(phase="Pending", ip=""), NOW).status == "Pending"
    p = pod(phase="Pending", statuses=[waiting("app", "ContainerCreating")], ip="")
    assert pod_row(p, NOW).status == "ContainerCreating"


def test_status_reason_overrides_phase() -> None:
    p = pod(phase="Failed", statuses=[], ip="")
    p["status"]["reason"] = "Evicted"
    assert pod_row(p, NOW).status == "Evicted"


def test_age_falls_back_to_start_time_then_unknown() -> None:
    p = pod(statuses=[running()])
    del p["metadata"]["creationTimestamp"]
    assert pod_row(p, NOW).age == "<unknown>"
    p["status"]["startTime"] = ts(4 * 3600 + 30 * 60)
    assert pod_row(p, NOW).age == "4h30m"


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (182, "3m2s"), (600, "10m"),
    (179 * 60, "179m"), (3 * 3600, "3h"), (2 * 3600 + 5 * 60, "125m"), (7 * 3600 + 5 * 60, "7h5m"),
    (30 * 3600, "30h"), (3 * 86400, "3d"), (3 * 86400 + 4 * 3600, "3d4h"), (10 * 86400, "10d"),
    (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y"), (-1, "0s"), (-5, "<invalid>"),
])
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


def test_parse_time_nanoseconds_and_offsets() -> None:
    assert parse_time("2025-06-01T11:59:59.123456789Z") == \
        datetime(2025, 6, 1, 11, 59, 59, 123456, tzinfo=timezone.utc)
    assert parse_time("2025-06-01T13:00:00+01:00") == NOW
    assert parse_time("garbage") is None
    assert parse_time(None) is None


def test_table_layout_and_invalid_manifests() -> None:
    pods = [pod("web", statuses=[running()]),
            pod("db-with-a-long-name", phase="Pending", statuses=[waiting("app", "ErrImagePull")],
                ip="", created=3 * 86400)]
    table = format_pod_table(pods, NOW, ["/etc/kubernetes/manifests/bad.yaml: document 0: boom"])
    assert table == (
        "NAMESPACE   NAME                  READY   STATUS         RESTARTS   AGE   IP\n"
        "default     web                   1/1     Running        0          5m    10.88.0.5\n"
        "default     db-with-a-long-name   0/1     ErrImagePull   0          3d    <none>\n"
        "\n"
        "INVALID MANIFESTS:\n"
        "/etc/kubernetes/manifests/bad.yaml: document 0: boom\n"
    )


def test_empty_table_has_header_only() -> None:
    assert format_pod_table([], NOW) == \
        "NAMESPACE   NAME   READY   STATUS   RESTARTS   AGE   IP\n"
