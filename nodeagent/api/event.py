"""core/v1 Event as client-go's recorder posts it (the kubelet's events).

`eventTime` is a zero metav1.MicroTime in these events and Go prints it as
`null`; `reportingComponent`/`reportingInstance` have no omitempty.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.api.types import ObjectMeta, f


@dataclass
class ObjectReference:
    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    api_version: str = ""
    resource_version: str = ""
    field_path: str = ""


@dataclass
class EventSource:
    component: str = ""
    host: str = ""


@dataclass
class Event:
    api_version: str = f("v1", keep=True)
    kind: str = f("Event", keep=True)
    metadata: ObjectMeta = f(factory=ObjectMeta, keep=True)
    involved_object: ObjectReference = f(factory=ObjectReference, keep=True)
    reason: str = ""
    message: str = ""
    source: EventSource = f(factory=EventSource, keep=True)
    first_timestamp: str | None = f(keep=True)
    last_timestamp: str | None = f(keep=True)
    count: int = 0
    type: str = ""
    event_time: str | None = f(keep=True)
    reporting_component: str = f("", keep=True)
    reporting_instance: str = f("", keep=True)
