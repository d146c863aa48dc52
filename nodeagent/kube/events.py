"""client-go's event pipeline without the HTTP: recorder events become core/v1
Events, and the EventCorrelator (tools/record/events_cache.go) decides what
reaches the API server.

For every event, in client-go's order: the aggregator folds more than 10
events that differ only in their message within 10 minutes into one
"(combined from similar events): …" event; the logger turns a repeat of an
event already sent into a PATCH of that event (count + 1, lastTimestamp,
message); the spam filter, a token bucket per source and involved object
(25 at once, then one per 5 minutes), drops the rest. Caches are LRUs of
4096 entries, as client-go's.

The sink (kube/) sends a `CreateEvent` as POST, a `PatchEvent` as a
strategic-merge PATCH (falling back to POST of `event` when the server no
longer has it), both rate limited by eventRecordQPS/eventBurst, retried up to
MAX_TRIES_PER_EVENT times SLEEP_BETWEEN_TRIES apart on transport errors, and
hands the server's answer to `EventCorrelator.update_state`.
"""

from __future__ import annotations

import collections
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from nodeagent import events
from nodeagent.api.codec import encode
from nodeagent.api.event import Event, EventSource, ObjectReference
from nodeagent.api.times import format_time
from nodeagent.api.types import ObjectMeta
from nodeagent.kube.client import TokenBucket

COMPONENT = "kubelet"
NAMESPACE_DEFAULT = "default"

LRU_CACHE_SIZE = 4096
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL = 600.0
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
AGGREGATE_PREFIX = "(combined from similar events): "

MAX_TRIES_PER_EVENT = 12      # recordToSink
SLEEP_BETWEEN_TRIES = 10.0    # the first sleep is a random part of it

K = TypeVar("K")
V = TypeVar("V")


# -- building the API event ----------------------------------------------------------------

def involved_object(ev: events.Event) -> ObjectReference:
    """The kubelet's references: a pod (apiVersion v1, fieldPath for a
    container) or its nodeRef (kind Node, uid = node name, no apiVersion)."""
    if ev.kind == "Node":
        return ObjectReference(kind="Node", name=ev.name, uid=ev.pod_uid)
    field_path = ev.field_path or (f"spec.containers{{{ev.container}}}" if ev.container else "")
    return ObjectReference(kind=ev.kind, namespace=ev.namespace, name=ev.name, uid=ev.pod_uid,
                           api_version="v1", field_path=field_path)


def to_api_event(ev: events.Event, node_name: str) -> Event:
    """recorder.makeEvent: name `<object>.<UnixNano in hex>`, namespace of the
    object or `default`, count 1, source and reporting instance the node."""
    ref = involved_object(ev)
    nanos = ev.unix_nano or round(ev.timestamp * 1e9)
    stamp = format_time(nanos / 1e9)
    return Event(
        metadata=ObjectMeta(name=f"{ref.name}.{nanos:x}", namespace=ref.namespace or NAMESPACE_DEFAULT),
        involved_object=ref, reason=ev.reason, message=ev.message,
        source=EventSource(component=COMPONENT, host=node_name),
        first_timestamp=stamp, last_timestamp=stamp, count=1, type=ev.type,
        reporting_component=COMPONENT, reporting_instance=node_name)


# -- what the sink does --------------------------------------------------------------------

@dataclass(frozen=True)
class CreateEvent:
    """POST /api/v1/namespaces/{namespace}/events with `body`."""
    event: Event

    @property
    def namespace(self) -> str:
        return self.event.metadata.namespace

    @property
    def body(self) -> dict[str, Any]:
        return encode(self.event)


@dataclass(frozen=True)
class PatchEvent:
    """PATCH (application/strategic-merge-patch+json) of namespace/name with
    `patch`; on 404 POST `event` instead (its resourceVersion cleared)."""
    namespace: str
    name: str
    patch: dict[str, Any]
    event: Event


@dataclass(frozen=True)
class Drop:
    reason: str


Action = CreateEvent | PatchEvent | Drop


# -- the correlator ------------------------------------------------------------------------

class LRU(Generic[K, V]):
    """groupcache/lru: a get refreshes an entry, the least recent one goes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: collections.OrderedDict[K, V] = collections.OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def add(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def event_key(e: Event) -> str:
    """getEventKey: the same event (source, object, type, reason, message)."""
    o = e.involved_object
    return "".join((e.source.component, e.source.host, o.kind, o.namespace, o.name, o.field_path, o.uid,
                    o.api_version, e.type, e.reason, e.message))


def spam_key(e: Event) -> str:
    """getSpamKey: source and involved object (not the field path)."""
    o = e.involved_object
    return "".join((e.source.component, e.source.host, o.kind, o.namespace, o.name, o.uid, o.api_version))


def aggregate_key(e: Event) -> str:
    """EventAggregatorByReasonFunc: everything but the message."""
    o = e.involved_object
    return "".join((e.source.component, e.source.host, o.kind, o.namespace, o.name, o.uid, o.api_version,
                    e.type, e.reason, e.reporting_component, e.reporting_instance))


@dataclass
class _Aggregate:
    messages: dict[str, None]  # insertion-ordered set of the distinct messages seen
    last: float


@dataclass(frozen=True)
class _Seen:
    count: int
    first_timestamp: str | None
    name: str
    resource_version: str


class EventCorrelator:
    """EventCorrelate: aggregate, then count repeats, then filter spam."""

    def __init__(self, *, clock: Callable[[], float] = time.time, cache_size: int = LRU_CACHE_SIZE,
                 burst: int = SPAM_BURST, qps: float = SPAM_QPS,
                 max_events: int = AGGREGATE_MAX_EVENTS, max_interval: float = AGGREGATE_INTERVAL) -> None:
        self.clock = clock
        self.burst, self.qps = burst, qps
        self.max_events, self.max_interval = max_events, max_interval
        self._aggregates: LRU[str, _Aggregate] = LRU(cache_size)
        self._seen: LRU[str, _Seen] = LRU(cache_size)
        self._spam: LRU[str, TokenBucket] = LRU(cache_size)

    def correlate(self, event: Event) -> Action:
        now = self.clock()
        aggregated, key = self._aggregate(event, now)
        observed, patch = self._observe(aggregated, key)
        if not self._accept(observed, now):
            o = observed.involved_object
            return Drop(f"spam filter: more than {self.burst} events about {o.kind} "
                        f"{o.namespace + '/' if o.namespace else ''}{o.name} from {observed.source.host} "
                        f"(one more allowed every {round(1 / self.qps)} s)")
        if patch is not None:
            return PatchEvent(observed.metadata.namespace, observed.metadata.name, patch, observed)
        return CreateEvent(observed)

    def update_state(self, event: Event) -> None:
        """The server's copy after a create or patch (its name, count, resourceVersion)."""
        self._seen.add(event_key(event), _Seen(event.count, event.first_timestamp, event.metadata.name,
                                               event.metadata.resource_version))

    def _aggregate(self, event: Event, now: float) -> tuple[Event, str]:
        """EventAggregate: the event itself and its key, or the combined event
        and the aggregate key once max_events distinct messages were seen."""
        akey = aggregate_key(event)
        record = self._aggregates.get(akey)
        if record is None or now - record.last > self.max_interval:
            record = _Aggregate({}, now)
        record.messages[event.message] = None
        record.last = now
        self._aggregates.add(akey, record)
        if len(record.messages) < self.max_events:
            return event, event_key(event)
        del record.messages[next(iter(record.messages))]  # Go pops any one; we pop the oldest
        stamp = format_time(now)
        combined = Event(
            metadata=ObjectMeta(name=f"{event.involved_object.name}.{round(now * 1e9):x}",
                                namespace=event.metadata.namespace),
            involved_object=copy.deepcopy(event.involved_object), reason=event.reason,
            message=AGGREGATE_PREFIX + event.message, source=copy.deepcopy(event.source),
            first_timestamp=stamp, last_timestamp=stamp, count=1, type=event.type)
        return combined, akey

    def _observe(self, event: Event, key: str) -> tuple[Event, dict[str, Any] | None]:
        """eventObserve: a repeat becomes a patch of the first occurrence."""
        event = copy.deepcopy(event)
        last = self._seen.get(key)
        patch = None
        if last is not None and last.count > 0:
            event.metadata.name = last.name
            event.metadata.resource_version = last.resource_version
            event.first_timestamp = last.first_timestamp
            event.count = last.count + 1
            # CreateTwoWayMergePatch against the same event with count 0,
            # lastTimestamp at the epoch and no message.
            patch = {"count": event.count}
            if event.last_timestamp != "1970-01-01T00:00:00Z":
                patch["lastTimestamp"] = event.last_timestamp
            if event.message:
                patch["message"] = event.message
        self._seen.add(key, _Seen(event.count, event.first_timestamp, event.metadata.name,
                                  event.metadata.resource_version))
        return event, patch

    def _accept(self, event: Event, now: float) -> bool:
        key = spam_key(event)
        bucket = self._spam.get(key)
        if bucket is None:
            bucket = TokenBucket(self.qps, self.burst, now)
        accepted = bucket.try_accept(now)
        self._spam.add(key, bucket)
        return accepted


class EventPipeline:
    """Recorder events in, sink actions out: `recorder.add_sink(lambda ev:
    queue.put_nowait(pipeline.action(ev)))` or similar in the lead's sink."""

    def __init__(self, node_name: str, correlator: EventCorrelator | None = None) -> None:
        self.node_name = node_name
        self.correlator = correlator or EventCorrelator()

    def action(self, ev: events.Event) -> Action:
        return self.correlator.correlate(to_api_event(ev, self.node_name))
