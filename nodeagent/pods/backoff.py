"""Restart and image-pull backoff with the kubelet's numbers and semantics.

CrashLoopBackOff follows client-go flowcontrol.Backoff as the kubelet uses it
(kuberuntime doBackOff): the first exit restarts at once and arms a 10 s
delay; each later exit waits the armed delay and doubles it, up to 300 s; an
exit more than 600 s (2 × max) after the previous one starts over. The state
lives in the annotations of the container that a delay let start, so it
survives agent restarts without a database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nodeagent.pods.observe import BACKOFF_ANNOTATION, BACKOFF_SINCE_ANNOTATION, ContainerInfo

INITIAL_CRASHLOOP_BACKOFF = 10.0
MAX_CRASHLOOP_BACKOFF = 300.0
IMAGE_BACKOFF_INITIAL = 10.0
IMAGE_BACKOFF_MAX = 300.0


@dataclass(frozen=True)
class RestartDecision:
    wait: float  # seconds until a restart is allowed (0: now)
    delay: float  # the armed delay, as the kubelet prints it in "back-off 20s …"
    annotations: dict[str, str]  # carried by the next container instance


def crashloop_decision(exited: ContainerInfo, now_ns: int | None = None,
                       initial: float = INITIAL_CRASHLOOP_BACKOFF,
                       maximum: float = MAX_CRASHLOOP_BACKOFF) -> RestartDecision:
    now_ns = now_ns if now_ns is not None else time.time_ns()
    armed = float(exited.annotations.get(BACKOFF_ANNOTATION, "0") or 0)
    since = int(exited.annotations.get(BACKOFF_SINCE_ANNOTATION, "0") or 0)
    finished = exited.finished_at or now_ns
    expired = armed == 0 or (finished - since) / 1e9 > 2 * maximum
    if not expired:
        wait = armed - (now_ns - finished) / 1e9
        if wait > 0:
            return RestartDecision(wait, armed, {})
        next_delay = min(armed * 2, maximum)
    else:
        next_delay = initial
    return RestartDecision(0.0, next_delay, {BACKOFF_ANNOTATION: f"{next_delay:g}",
                                             BACKOFF_SINCE_ANNOTATION: str(finished)})


class ImageBackoff:
    """Per (pod, image) pull backoff, in memory as in the kubelet."""

    def __init__(self, initial: float = IMAGE_BACKOFF_INITIAL,
                 maximum: float = IMAGE_BACKOFF_MAX) -> None:
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[str, tuple[float, float]] = {}  # image -> (delay, failed at)

    def remaining(self, image: str, now: float | None = None) -> float:
        entry = self._entries.get(image)
        if entry is None:
            return 0.0
        delay, failed_at = entry
        return max(0.0, delay - ((now or time.monotonic()) - failed_at))

    def failed(self, image: str, now: float | None = None) -> float:
        delay, _ = self._entries.get(image, (0.0, 0.0))
        delay = self.initial if delay == 0 else min(delay * 2, self.maximum)
        self._entries[image] = (delay, now or time.monotonic())
        return delay

    def succeeded(self, image: str) -> None:
        self._entries.pop(image, None)
