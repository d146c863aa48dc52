"""Event recorder: the kubelet's Events (Unhealthy, Killing, FailedPostStartHook …).

There is no API server sink yet: events are logged with structlog and the
recent ones kept in memory. The API-server work attaches a sink with
`add_sink` and posts them; callers only ever use `record_event`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("nodeagent.events")

NORMAL, WARNING = "Normal", "Warning"
RECENT_EVENTS = 1000


@dataclass(frozen=True)
class Event:
    """One occurrence; `obj` is the involved object as `namespace/pod[/container]`."""
    namespace: str
    pod: str
    pod_uid: str
    container: str  # "" for the pod itself (fieldPath spec.containers{name} otherwise)
    type: str  # Normal | Warning
    reason: str
    message: str
    timestamp: float  # time.time()


EventSink = Callable[[Event], None]


class EventRecorder:
    def __init__(self, keep: int = RECENT_EVENTS) -> None:
        self.recent: collections.deque[Event] = collections.deque(maxlen=keep)
        self._sinks: list[EventSink] = []
        self._log: structlog.typing.FilteringBoundLogger | None = None

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def record(self, *, namespace: str, pod: str, pod_uid: str, container: str, type: str,
               reason: str, message: str) -> Event:
        event = Event(namespace, pod, pod_uid, container, type, reason, message, time.time())
        self.recent.append(event)
        if self._log is None:  # bound once, after logging is configured: cheap per event
            self._log = log.bind()
        logger = self._log.warning if type == WARNING else self._log.info
        logger("event", event_type=type, reason=reason, message=message,
               pod=f"{namespace}/{pod}", pod_uid=pod_uid, container=container or None)
        for sink in self._sinks:
            try:
                sink(event)
            except Exception as exc:  # a sink must never break the caller
                log.warning("event sink failed", error=repr(exc))
        return event

    def for_pod(self, pod_uid: str) -> list[Event]:
        return [e for e in self.recent if e.pod_uid == pod_uid]


# The agent's one recorder (the kubelet's EventRecorder).
recorder = EventRecorder()


def record_event(*, namespace: str, pod: str, pod_uid: str, container: str = "", type: str,
                 reason: str, message: str) -> Event:
    return recorder.record(namespace=namespace, pod=pod, pod_uid=pod_uid, container=container,
                           type=type, reason=reason, message=message)
