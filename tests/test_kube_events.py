"""client-go's event pipeline as pure logic: recorder events become core/v1
Events; aggregation, de-duplication and the spam filter with an injected clock."""

from __future__ import annotations

import re

from nodeagent.api.codec import decode, encode
from nodeagent.api.event import Event
from nodeagent.api.times import format_time
from nodeagent.events import EventRecorder
from nodeagent.kube.events import (
    AGGREGATE_PREFIX, CreateEvent, Drop, EventCorrelator, EventPipeline, PatchEvent, to_api_event,
)

NODE = "node-a"
T0 = 1_760_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def recorded() -> EventRecorder:
    rec = EventRecorder()
    rec.record(namespace="shop", pod="web-1", pod_uid="u-1", container="app", type="Warning",
               reason="Unhealthy", message="Liveness probe failed: sick")
    rec.record(namespace="shop", pod="web-1", pod_uid="u-1", container="init-db", type="Normal",
               reason="Pulled", message="pulled", field_path="spec.initContainers{init-db}")
    rec.record(namespace="shop", pod="web-1", pod_uid="u-1", container="", type="Normal",
               reason="Scheduled", message="whole pod")
    rec.record_node(node=NODE, type="Normal", reason="NodeReady", message=f"Node {NODE} status is now: NodeReady")
    return rec


def api_event(reason: str = "BackOff", message: str = "Back-off restarting failed container",
              pod: str = "web-1", at: float = T0) -> Event:
    rec = EventRecorder()
    ev = rec.record(namespace="shop", pod=pod, pod_uid=f"uid-{pod}", container="app", type="Warning",
                    reason=reason, message=message)
    api = to_api_event(ev, NODE)
    # The recorder stamps real time; tests move it to their clock.
    api.first_timestamp = api.last_timestamp = time_text(at)
    return api


def time_text(at: float) -> str:
    return format_time(at)


def test_recorder_events_as_the_kubelet_posts_them() -> None:
    probe, init, pod, node = recorded().recent
    body = encode(to_api_event(probe, NODE))
    assert re.fullmatch(r"web-1\.[0-9a-f]{16}", body["metadata"]["name"])
    assert body["metadata"]["name"] == f"web-1.{probe.unix_nano:x}"
    assert body == {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": body["metadata"]["name"], "namespace": "shop", "creationTimestamp": None},
        "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "u-1",
                           "apiVersion": "v1", "fieldPath": "spec.containers{app}"},
        "reason": "Unhealthy", "message": "Liveness probe failed: sick",
        "source": {"component": "kubelet", "host": NODE},
        "firstTimestamp": time_text(probe.timestamp), "lastTimestamp": time_text(probe.timestamp),
        "count": 1, "type": "Warning", "eventTime": None,
        "reportingComponent": "kubelet", "reportingInstance": NODE}
    assert to_api_event(init, NODE).involved_object.field_path == "spec.initContainers{init-db}"
    assert "fieldPath" not in encode(to_api_event(pod, NODE))["involvedObject"]
    # The kubelet's nodeRef: kind Node, uid = the node's name, no namespace and no
    # apiVersion; the event goes to the default namespace.
    node_body = encode(to_api_event(node, NODE))
    assert node_body["involvedObject"] == {"kind": "Node", "name": NODE, "uid": NODE}
    assert node_body["metadata"]["namespace"] == "default"
    assert node_body["metadata"]["name"] == f"{NODE}.{node.unix_nano:x}"
    assert decode(Event, node_body) == to_api_event(node, NODE)


def test_repeats_become_patches_of_the_first() -> None:
    clock = Clock()
    corr = EventCorrelator(clock=clock)
    first = corr.correlate(api_event(at=T0))
    assert isinstance(first, CreateEvent) and first.event.count == 1
    assert first.namespace == "shop" and first.body["count"] == 1
    # The server answers with its resourceVersion; the correlator remembers it.
    served = decode(Event, {**first.body, "metadata": {**first.body["metadata"], "resourceVersion": "901"}})
    corr.update_state(served)
    clock.now += 30
    second = corr.correlate(api_event(at=T0 + 30))
    assert isinstance(second, PatchEvent)
    assert (second.namespace, second.name) == ("shop", first.event.metadata.name)
    assert second.patch == {"count": 2, "lastTimestamp": time_text(T0 + 30),
                            "message": "Back-off restarting failed container"}
    assert second.event.first_timestamp == time_text(T0) and second.event.count == 2
    assert second.event.metadata.resource_version == "901"
    clock.now += 30
    third = corr.correlate(api_event(at=T0 + 60))
    assert isinstance(third, PatchEvent) and third.patch["count"] == 3
    # Another object, or another message for the same object: a new event.
    assert isinstance(corr.correlate(api_event(pod="web-2")), CreateEvent)
    assert isinstance(corr.correlate(api_event(message="other")), CreateEvent)


def test_similar_events_are_combined() -> None:
    """More than 10 events differing only in their message within 10 minutes:
    the 10th distinct one becomes one combined event, later ones patch it."""
    clock = Clock()
    corr = EventCorrelator(clock=clock)
    actions = []
    for i in range(1, 10):
        actions.append(corr.correlate(api_event(reason="Failed", message=f"pull failed #{i}")))
        clock.now += 10
    assert all(isinstance(a, CreateEvent) and not a.event.message.startswith(AGGREGATE_PREFIX)
               for a in actions)
    tenth = corr.correlate(api_event(reason="Failed", message="pull failed #10"))
    assert isinstance(tenth, CreateEvent)
    assert tenth.event.message == AGGREGATE_PREFIX + "pull failed #10"
    assert tenth.event.metadata.name == f"web-1.{round(clock.now * 1e9):x}"
    assert tenth.event.first_timestamp == time_text(clock.now) and tenth.event.count == 1
    assert tenth.event.reporting_component == "" and tenth.body["reportingComponent"] == ""  # as client-go
    assert tenth.event.involved_object.name == "web-1" and tenth.event.reason == "Failed"
    clock.now += 10
    eleventh = corr.correlate(api_event(reason="Failed", message="pull failed #11"))
    assert isinstance(eleventh, PatchEvent) and eleventh.name == tenth.event.metadata.name
    assert eleventh.patch["count"] == 2 and eleventh.patch["message"] == AGGREGATE_PREFIX + "pull failed #11"
    # Another reason is another group.
    assert not corr.correlate(api_event(reason="BackOff", message="x")).event.message.startswith("(")
    # After 10 quiet minutes the group starts afresh.
    clock.now += 601
    fresh = corr.correlate(api_event(reason="Failed", message="pull failed #12"))
    assert isinstance(fresh, CreateEvent) and fresh.event.message == "pull failed #12"


def test_spam_filter_per_object() -> None:
    """25 events about one object at once, then one per 5 minutes; repeats
    still count while dropped, so the next patch carries the true count."""
    clock = Clock()
    corr = EventCorrelator(clock=clock)
    actions = [corr.correlate(api_event()) for _ in range(25)]
    assert isinstance(actions[0], CreateEvent) and all(isinstance(a, PatchEvent) for a in actions[1:])
    dropped = corr.correlate(api_event())
    assert isinstance(dropped, Drop) and "spam filter" in dropped.reason and "web-1" in dropped.reason
    assert isinstance(corr.correlate(api_event(reason="Other", message="m")), Drop)  # same object
    assert isinstance(corr.correlate(api_event(pod="web-2")), CreateEvent)          # another object
    clock.now += 299
    assert isinstance(corr.correlate(api_event()), Drop)
    clock.now += 1
    allowed = corr.correlate(api_event())
    assert isinstance(allowed, PatchEvent) and allowed.patch["count"] == 28  # 2 dropped repeats counted
    assert isinstance(corr.correlate(api_event()), Drop)
    clock.now += 600  # two tokens back
    assert isinstance(corr.correlate(api_event()), PatchEvent)
    assert isinstance(corr.correlate(api_event()), PatchEvent)
    assert isinstance(corr.correlate(api_event()), Drop)


def test_caches_are_bounded_lrus() -> None:
    clock = Clock()
    corr = EventCorrelator(clock=clock, cache_size=2)
    assert isinstance(corr.correlate(api_event(pod="a")), CreateEvent)
    assert isinstance(corr.correlate(api_event(pod="b")), CreateEvent)
    assert isinstance(corr.correlate(api_event(pod="a")), PatchEvent)  # refreshes "a"
    assert isinstance(corr.correlate(api_event(pod="c")), CreateEvent)  # evicts "b"
    assert isinstance(corr.correlate(api_event(pod="a")), PatchEvent)
    assert isinstance(corr.correlate(api_event(pod="b")), CreateEvent)  # forgotten: created again


def test_pipeline_from_the_recorder() -> None:
    rec = EventRecorder()
    pipeline = EventPipeline(NODE)
    actions = []
    rec.add_sink(lambda ev: actions.append(pipeline.action(ev)))
    for _ in range(3):
        rec.record_node(node=NODE, type="Normal", reason="NodeNotReady",
                        message=f"Node {NODE} status is now: NodeNotReady")
    assert isinstance(actions[0], CreateEvent)
    assert [type(a) for a in actions[1:]] == [PatchEvent, PatchEvent]
    assert actions[2].patch["count"] == 3 and actions[2].namespace == "default"
    assert actions[2].name == actions[0].event.metadata.name
