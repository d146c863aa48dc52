"""CrashLoopBackOff and image backoff: the kubelet's numbers, from the container's annotations."""

from __future__ import annotations

from nodeagent.pods.backoff import ImageBackoff, crashloop_decision
from nodeagent.pods.observe import BACKOFF_ANNOTATION, BACKOFF_SINCE_ANNOTATION, EXITED, ContainerInfo

S = 1_000_000_000  # ns


def exited(finished_s: float, armed: float = 0, since_s: float = 0, started_s: float | None = None) -> ContainerInfo:
    annotations = {BACKOFF_ANNOTATION: f"{armed:g}", BACKOFF_SINCE_ANNOTATION: str(int(since_s * S))} if armed else {}
    return ContainerInfo(id="c", name="main", sandbox_id="s", attempt=0, state=EXITED, created_at=0,
                         started_at=int((started_s if started_s is not None else finished_s - 1) * S),
                         finished_at=int(finished_s * S), exit_code=1, reason="Error", message="",
                         image="", image_ref="", annotations=annotations)


def test_first_exit_restarts_at_once_and_arms_ten_seconds() -> None:
    d = crashloop_decision(exited(100), now_ns=100 * S)
    assert d.wait == 0 and d.delay == 10
    assert d.annotations == {BACKOFF_ANNOTATION: "10", BACKOFF_SINCE_ANNOTATION: str(100 * S)}


def test_later_exits_wait_the_armed_delay_then_double_it() -> None:
    d = crashloop_decision(exited(200, armed=10, since_s=100), now_ns=203 * S)
    assert (round(d.wait, 3), d.delay, d.annotations) == (7, 10, {})
    d = crashloop_decision(exited(200, armed=10, since_s=100), now_ns=210 * S)
    assert d.wait == 0 and d.delay == 20 and d.annotations[BACKOFF_SINCE_ANNOTATION] == str(200 * S)


def test_delay_sequence_is_capped_at_five_minutes() -> None:
    armed, since, now, waits = 0.0, 0.0, 0.0, []
    for _ in range(9):
        finished = now + 1  # each run lasts 1 s
        d = crashloop_decision(exited(finished, armed, since), now_ns=int(finished * S))
        waits.append(round(d.wait))
        now = finished + d.wait
        d = crashloop_decision(exited(finished, armed, since), now_ns=int(now * S))
        armed, since = float(d.annotations[BACKOFF_ANNOTATION]), finished
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_backoff_resets_after_ten_minutes_of_running() -> None:
    d = crashloop_decision(exited(1000, armed=300, since_s=300, started_s=350), now_ns=1000 * S)
    assert d.wait == 0 and d.delay == 10


def test_image_backoff_doubles_to_five_minutes_and_clears_on_success() -> None:
    b = ImageBackoff()
    assert b.remaining("img", now=0) == 0
    assert [b.failed("img", now=t) for t in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert b.remaining("img", now=6) == 300
    b.succeeded("img")
    assert b.remaining("img", now=7) == 0 and b.failed("img", now=8) == 10
