"""Event recorder: the kubelet's Events (Unhealthy, Killing, FailedPostStartHook,
NodeReady …).

Events are logged with structlog and the recent ones kept in memory; the
API-server sink attaches with `add_sink` (kube/events.py turns an Event into
a core/v1 Event). Callers only ever use `record_event` (pods) or
`record_node_event` (the node).
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
    """One occurrence about a pod (or one of its containers) or, with kind
    "Node", about the node: then `pod` holds the node's name and `pod_uid`
    the kubelet's node reference uid (the node's name too)."""
    namespace: str
    pod: str
    pod_uid: str
    container: str  # "" for the pod itself (fieldPath spec.containers{name} otherwise)
    type: str  # Normal | Warning
    reason: str
    message: str
    timestamp: float  # time.time()
    kind: str = "Pod"
    field_path: str = ""  # when not spec.containers{container}: spec.initContainers{name}
    unix_nano: int = 0  # the same instant in ns (the API event's name); 0: from timestamp

    @property
    def name(self) -> str:
        """The involved object's name."""
        return self.pod


EventSink = Callable[[Event], None]


class EventRecorder:
    def __init__(self, keep: int = RECENT_EVENTS) -> None:
        self.recent: collections.deque[Event] = collections.deque(maxlen=keep)
        self._sinks: list[EventSink] = []
        self._log: structlog.typing.FilteringBoundLogger | None = None

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def record(self, *, namespace: str, pod: str, pod_uid: str, container: str, type: str,
               reason: str, message: str, field_path: str = "") -> Event:
        ns = time.time_ns()
        event = Event(namespace, pod, pod_uid, container, type, reason, message, ns / 1e9,
                      field_path=field_path, unix_nano=ns)
        return self._emit(event, pod=f"{namespace}/{pod}", pod_uid=pod_uid, container=container or None)

    def record_node(self, *, node: str, type: str, reason: str, message: str) -> Event:
        """An event about the node: the kubelet's nodeRef (kind Node, uid = name)."""
        ns = time.time_ns()
        event = Event("", node, node, "", type, reason, message, ns / 1e9, kind="Node", unix_nano=ns)
        return self._emit(event, node=node)

    def _emit(self, event: Event, **where: object) -> Event:
        self.recent.append(event)
        if self._log is None:  # bound once, after logging is configured: cheap per event
            self._log = log.bind()
        logger = self._log.warning if event.type == WARNING else self._log.info
        logger("event", event_type=event.type, reason=event.reason, message=event.message, **where)
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
                 reason: str, message: str, field_path: str = "") -> Event:
    return recorder.record(namespace=namespace, pod=pod, pod_uid=pod_uid, container=container,
                           type=type, reason=reason, message=message, field_path=field_path)


def record_node_event(*, node: str, type: str, reason: str, message: str) -> Event:
    return recorder.record_node(node=node, type=type, reason=reason, message=message)
