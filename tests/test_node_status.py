"""Node registration, status, events and Lease, computed as the kubelet does:
real CRI status and images from the test containerd, real node facts,
injected clocks for the heartbeat/transition and report timing rules."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nodeagent.api.codec import decode, encode
from nodeagent.api.node import (
    DISK_PRESSURE, MEMORY_PRESSURE, PID_PRESSURE, READY, Lease, Node, NodeCondition, NodeStatus,
    NodeSystemInfo, Taint,
)
from nodeagent.api.times import format_micro_time, format_time
from nodeagent.api.quantity import Quantity
from nodeagent.cri.client import CRIClient
from nodeagent.devenv.env import DevEnv
from nodeagent.events import EventRecorder
from nodeagent.netns.manager import Readiness
from nodeagent.node.capacity import NodeResources, machine_capacity
from nodeagent.node.info import NodeFacts, read_node_facts
from nodeagent.node.status import (
    NodeConfigError, NodeStatusBuilder, ReportSchedule, RuntimeState, aggregate_message, initial_node,
    lease, lease_renew_interval, node_images, node_recorder, parse_node_labels, parse_taints,
    record_starting, renew_lease, status_changed, status_frequencies,
)
from nodeagent.oci.layout import ImageSpec, build_layout
from nodeagent.pods.relist import Relister

T0 = 1_760_000_000.0  # 2025-10-09T08:53:20Z


class Clock:
    """Wall and monotonic time a test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def facts() -> NodeFacts:
    return read_node_facts(node_name="node-a", runtime_name="containerd", runtime_version="v1.6.20",
                           node_ip="192.0.2.10")


@pytest.fixture(scope="module")
def capacity(tmp_path_factory: pytest.TempPathFactory) -> NodeResources:
    return machine_capacity(tmp_path_factory.mktemp("root"), max_pods=110)


class Events(list[tuple[str, str, str]]):
    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self]


def builder(facts: NodeFacts, capacity: NodeResources | None, runtime: RuntimeState, clock: Clock,
            events: Events, pressure: set[str] | None = None, **kw: Any) -> NodeStatusBuilder:
    pressure = pressure if pressure is not None else set()
    return NodeStatusBuilder(node_name="node-a", facts=facts, port=10250, capacity=lambda: capacity,
                             allocatable=lambda: capacity, runtime=runtime,
                             under_pressure=lambda c: c in pressure,
                             record=lambda *e: events.append(e), clock=clock, **kw)


def cond(status: NodeStatus, ctype: str) -> NodeCondition:
    found = status.condition(ctype)
    assert found is not None, ctype
    return found


# -- conditions and their times ---------------------------------------------------------------

async def test_conditions_follow_the_real_runtime_and_keep_transition_times(
        cri: CRIClient, facts: NodeFacts, capacity: NodeResources) -> None:
    wall, mono = Clock(), Clock(5000.0)
    runtime = RuntimeState(clock=mono)
    events, pressure = Events(), set[str]()
    b = builder(facts, capacity, runtime, wall, events, pressure)

    first = b.build(None)
    # Kubelet order, Ready last; new pressure conditions start Unknown, so their
    # first value is a transition with its event; a new Ready has none.
    assert [c.type for c in first.conditions] == [MEMORY_PRESSURE, DISK_PRESSURE, PID_PRESSURE, READY]
    assert [(c.status, c.reason) for c in first.conditions[:3]] == [
        ("False", "KubeletHasSufficientMemory"), ("False", "KubeletHasNoDiskPressure"),
        ("False", "KubeletHasSufficientPID")]
    assert events.reasons() == ["NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID"]
    assert events[0] == ("Normal", "NodeHasSufficientMemory", "Node node-a status is now: NodeHasSufficientMemory")
    ready = cond(first, READY)
    assert (ready.status, ready.reason) == ("False", "KubeletNotReady")
    assert ready.message == ("[container runtime status check may not have completed yet, "
                             "network state unknown]")
    assert {c.last_transition_time for c in first.conditions} == {format_time(T0)}

    # The real runtime's Status, as updateRuntimeUp takes it every 5 s.
    status = await cri.status()
    runtime.observe_status(status)
    crinet = next(c for c in status.status.conditions if c.type == "NetworkReady")
    events.clear()
    wall.now += 10
    second = b.build(first)
    ready = cond(second, READY)
    if crinet.status:
        assert (ready.status, ready.reason, ready.message) == ("True", "KubeletReady",
                                                               "kubelet is posting ready status")
        assert events == [("Normal", "NodeReady", "Node node-a status is now: NodeReady")]
    else:  # what the kubelet says for the runtime's own NetworkReady=false
        assert ready.message == (f"container runtime network not ready: NetworkReady=false "
                                 f"reason:{crinet.reason} message:{crinet.message}")
        assert events == []
    # Heartbeats move every computation; pressure transitions stay put.
    assert {c.last_heartbeat_time for c in second.conditions} == {format_time(T0 + 10)}
    assert {cond(second, t).last_transition_time for t in (MEMORY_PRESSURE, DISK_PRESSURE, PID_PRESSURE)} \
        == {format_time(T0)}
    assert status_changed(first, second) is bool(crinet.status)

    # Nothing new: only heartbeats move, which is no change.
    events.clear()
    wall.now += 10
    third = b.build(second)
    assert events == [] and not status_changed(second, third)
    assert cond(third, READY).last_heartbeat_time == format_time(T0 + 20)
    assert cond(third, READY).last_transition_time == cond(second, READY).last_transition_time

    # Memory pressure from the eviction manager.
    pressure.add(MEMORY_PRESSURE)
    wall.now += 10
    fourth = b.build(third)
    mem = cond(fourth, MEMORY_PRESSURE)
    assert (mem.status, mem.reason, mem.message) == ("True", "KubeletHasInsufficientMemory",
                                                     "kubelet has insufficient memory available")
    assert mem.last_transition_time == format_time(T0 + 30)
    assert events == [("Normal", "NodeHasInsufficientMemory", "Node node-a status is now: NodeHasInsufficientMemory")]
    assert status_changed(third, fourth)


async def test_not_ready_reasons_in_the_kubelets_words(cri: CRIClient, facts: NodeFacts,
                                                       capacity: NodeResources) -> None:
    wall, mono = Clock(), Clock(100.0)
    relister = Relister(cri, lambda uid, key: None)
    await relister.relist()
    network = Readiness(True)
    runtime = RuntimeState(clock=mono, network_ready=lambda: network)
    runtime.add_health_check("PLEG", relister.healthy)
    runtime.observe_status(await cri.status())
    crinet = next(c for c in (await cri.status()).status.conditions if c.type == "NetworkReady")
    events = Events()
    b = builder(facts, capacity, runtime, wall, events)
    ready_status = b.build(None)
    if crinet.status:
        assert cond(ready_status, READY).status == "True"
        # The agent's own pod network, not yet loaded by the runtime.
        network = Readiness(False, "NetworkPluginNotReady", "runtime has not loaded network nodeagent yet")
        assert cond(b.build(ready_status), READY).message == (
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
            "message:runtime has not loaded network nodeagent yet")
        network = Readiness(True)

    # The runtime stops answering: 30 s after its last good Status it is "down";
    # a PLEG that has not relisted for more than 3 min is unhealthy too.
    mono.now += 30
    relister.last_relist -= 200  # as if the last relist was 200 s ago
    wall.now += 30
    events.clear()
    down = b.build(ready_status)
    ready = cond(down, READY)
    pleg_ok, pleg_why = relister.healthy()
    assert not pleg_ok
    expected = ["container runtime is down", f"PLEG is not healthy: {pleg_why}"]
    if not crinet.status:
        expected.append(f"container runtime network not ready: NetworkReady=false "
                        f"reason:{crinet.reason} message:{crinet.message}")
    assert (ready.status, ready.reason) == ("False", "KubeletNotReady")
    assert ready.message == "[" + ", ".join(expected) + "]"
    if crinet.status:
        assert ready.last_transition_time == format_time(T0 + 30)
        assert events == [("Normal", "NodeNotReady", "Node node-a status is now: NodeNotReady")]

    # A runtime that answers but is not ready: the kubelet's own text.
    status = await cri.status()
    del status.status.conditions[:]
    status.status.conditions.add(type="RuntimeReady", status=False, reason="ContainerdNotReady",
                                 message="shim failed")
    fresh = RuntimeState(clock=mono)
    fresh.observe_status(status)
    assert fresh.runtime_errors() == [
        "container runtime status check may not have completed yet",
        "container runtime not ready: RuntimeReady=false reason:ContainerdNotReady message:shim failed"]
    assert fresh.network_errors() == ["container runtime network not ready: <nil>"]
    # The message every kubeadm user has seen before installing a CNI plugin.
    status = await cri.status()
    for c in status.status.conditions:
        if c.type == "NetworkReady":
            c.status, c.reason = False, "NetworkPluginNotReady"
            c.message = "Network plugin returns error: cni plugin not initialized"
    fresh.observe_status(status)
    assert fresh.runtime_errors() == []
    assert fresh.network_errors() == [
        "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
        "message:Network plugin returns error: cni plugin not initialized"]
    assert cond(builder(facts, capacity, fresh, wall, Events()).build(None), READY).message == \
        fresh.network_errors()[0]


def test_missing_capacity_and_aggregation(facts: NodeFacts) -> None:
    runtime = RuntimeState(clock=Clock(0))
    b = builder(facts, None, runtime, Clock(), Events())
    message = cond(b.build(None), READY).message
    assert message.endswith("missing node capacity for resources: cpu, memory, pods, ephemeral-storage]")
    # utilerrors.NewAggregate: one message bare, duplicates once, several bracketed.
    assert aggregate_message(["a"]) == "a"
    assert aggregate_message(["a", "a"]) == "a"
    assert aggregate_message(["a", "b", "a"]) == "[a, b]"


def test_foreign_conditions_stay_and_ready_keeps_its_place(facts: NodeFacts, capacity: NodeResources) -> None:
    """Setters run on the Node from the API: others' conditions (a network
    plugin's NetworkUnavailable) are left as they are."""
    previous = NodeStatus(conditions=[
        NodeCondition("NetworkUnavailable", "False", None, format_time(T0 - 50), "CalicoIsUp", "Calico is up"),
        NodeCondition(READY, "True", format_time(T0 - 40), format_time(T0 - 100), "KubeletReady",
                      "kubelet is posting ready status"),
    ])
    events = Events()
    runtime = RuntimeState(clock=Clock(0))
    status = builder(facts, capacity, runtime, Clock(), events).build(previous)
    assert [c.type for c in status.conditions] == ["NetworkUnavailable", READY, MEMORY_PRESSURE,
                                                   DISK_PRESSURE, PID_PRESSURE]
    assert status.conditions[0] == previous.conditions[0]
    ready = cond(status, READY)
    assert ready.status == "False" and ready.last_transition_time == format_time(T0)
    assert "NodeNotReady" in events.reasons()
    assert previous.conditions[1].status == "True"  # the input is not modified


def test_status_fields_and_reboot_event(facts: NodeFacts, capacity: NodeResources) -> None:
    events = Events()
    b = builder(facts, capacity, RuntimeState(clock=Clock(0)), Clock(), events)
    previous = NodeStatus(node_info=NodeSystemInfo(boot_id="3f1c0e4e-1111-2222-3333-444455556666"),
                          capacity={"example.com/dongle": Quantity("4")},
                          allocatable={"example.com/dongle": Quantity("3"), "example.com/gone": Quantity("1")})
    status = b.build(previous)
    assert ("Warning", "NodeRebooted", f"Node node-a has been rebooted, boot id: {facts.boot_id}") in events
    assert status.node_info == facts.system_info()
    assert status.daemon_endpoints.kubelet_endpoint.port == 10250
    assert status.addresses == list(facts.addresses)
    ours = {k: Quantity(v) for k, v in capacity.as_quantities().items()}
    # Extended resources someone advertised stay in capacity; allocatable follows capacity.
    assert status.capacity == {**ours, "example.com/dongle": Quantity("4")}
    assert status.allocatable == {**ours, "example.com/dongle": Quantity("4")}
    again = Events()
    builder(facts, capacity, RuntimeState(clock=Clock(0)), Clock(), again).build(status)
    assert "NodeRebooted" not in again.reasons()


def test_schedulable_events(facts: NodeFacts) -> None:
    events = Events()
    b = builder(facts, None, RuntimeState(), Clock(), events)
    node = Node()
    b.observe_spec(node.spec)
    assert events == []
    node.spec.unschedulable = True
    b.observe_spec(node.spec)
    b.observe_spec(node.spec)
    node.spec.unschedulable = False
    b.observe_spec(node.spec)
    assert events.reasons() == ["NodeNotSchedulable", "NodeSchedulable"]


def test_node_events_go_through_the_recorder() -> None:
    rec = EventRecorder()
    record = node_recorder("node-a", rec)
    record_starting(record)
    record("Normal", "NodeReady", "Node node-a status is now: NodeReady")
    assert [(e.kind, e.name, e.pod_uid, e.namespace, e.reason, e.message) for e in rec.recent] == [
        ("Node", "node-a", "node-a", "", "Starting", "Starting kubelet."),
        ("Node", "node-a", "node-a", "", "NodeReady", "Node node-a status is now: NodeReady")]
    assert rec.recent[0].unix_nano > 0


# -- images ------------------------------------------------------------------------------------

async def test_images_from_the_real_runtime(cri: CRIClient, devenv: DevEnv, tmp_path: Path) -> None:
    """One image pulled under 6 tags has 7 names; 5 are reported, digest first."""
    spec = ImageSpec("node-status-images", "t0", cmd=("true",))
    built = build_layout(spec, tmp_path / "layout")
    refs = [devenv.registry.push_layout(tmp_path / "layout", built.ref, spec.name, f"t{i}") for i in range(6)]
    await cri.pull_image(devenv.busybox)
    try:
        for ref in refs:
            await cri.pull_image(ref)
        listed = await cri.list_images()
        images = node_images(listed)
        sizes = [i.size_bytes for i in images]
        assert sizes == sorted(sizes, reverse=True) and len(images) == len(listed)
        for shown, image in zip(images, sorted(listed, key=lambda i: (i.size, i.id), reverse=True)):
            assert shown.size_bytes == image.size
            assert shown.names == [*image.repo_digests, *image.repo_tags][:5]
        tagged = next(i for i in listed if refs[0] in i.repo_tags)
        assert len(tagged.repo_tags) == 6
        shown = next(i for i in images if refs[0] in i.names or tagged.repo_digests[0] in i.names)
        assert len(shown.names) == 5 and shown.names[0] == tagged.repo_digests[0]
        assert any(devenv.busybox in i.names for i in images)
        assert len(node_images(listed, max_images=1)) == 1
        assert node_images(listed, max_images=1)[0].size_bytes == max(i.size for i in listed)
        assert len(node_images(listed, max_images=-1)) == len(listed)
    finally:
        await cri.remove_image(refs[0])  # removes the image with all its tags
    assert not [i for i in await cri.list_images() if set(i.repo_tags) & set(refs)]


def test_images_in_the_status(facts: NodeFacts) -> None:
    fake = [SimpleNamespace(id=f"sha256:{n:064x}", size=n * 1000, repo_tags=[f"r/{n}:latest"],
                            repo_digests=[f"r/{n}@sha256:{n:064x}"]) for n in range(1, 61)]
    b = builder(facts, None, RuntimeState(), Clock(), Events(), images=lambda: fake)
    images = b.build(None).images
    assert len(images) == 50 and images[0].size_bytes == 60_000 and images[-1].size_bytes == 11_000
    assert images[0].names == ["r/60@sha256:" + f"{60:064x}", "r/60:latest"]


# -- change detection and report timing -----------------------------------------------------------

def test_status_changed_ignores_heartbeats_only() -> None:
    base = NodeStatus(capacity={"memory": Quantity("1Gi")}, conditions=[
        NodeCondition(READY, "True", "2025-01-01T00:00:00Z", "2024-12-31T00:00:00Z", "KubeletReady", "ok"),
        NodeCondition(MEMORY_PRESSURE, "False", "2025-01-01T00:00:00Z", "2024-12-31T00:00:00Z", "r", "m")])
    later = copy.deepcopy(base)
    for c in later.conditions:
        c.last_heartbeat_time = "2025-01-01T00:05:00Z"
    later.conditions.reverse()  # order does not matter either
    later.capacity["memory"] = Quantity("1024Mi")  # the same amount, printed otherwise
    assert not status_changed(base, later)
    moved = copy.deepcopy(later)
    moved.conditions[0].last_transition_time = "2025-01-01T00:05:00Z"
    assert status_changed(base, moved)
    msg = copy.deepcopy(later)
    msg.conditions[1].message = "other"
    assert status_changed(base, msg)
    fewer = copy.deepcopy(later)
    fewer.conditions.pop()
    assert status_changed(base, fewer)
    addr = copy.deepcopy(later)
    addr.capacity["memory"] = Quantity("2Gi")
    assert status_changed(base, addr)
    assert status_changed(None, base) and not status_changed(None, None)


def test_report_schedule() -> None:
    rolls = iter([0.9, 0.1])
    sched = ReportSchedule(report_frequency=300, rng=lambda: next(rolls))
    assert sched.should_patch(False, 1000)  # first report after start
    sched.reported(True, 1000)               # a change: next unchanged post waits 300 + 120
    assert sched.delay == pytest.approx(120)
    assert not sched.should_patch(False, 1419)
    assert sched.should_patch(False, 1420)
    assert sched.should_patch(True, 1001)    # a change goes out at once
    sched.reported(False, 1420)              # a plain report: back to the bare frequency
    assert sched.delay == 0
    assert not sched.should_patch(False, 1719) and sched.should_patch(False, 1720)
    sched.reported(True, 1720)
    assert sched.delay == pytest.approx(-120)
    assert sched.should_patch(False, 1900)
    assert status_frequencies() == (10.0, 300.0)
    assert status_frequencies(update=20.0) == (20.0, 20.0)   # report follows an explicit update
    assert status_frequencies(update=20.0, report=60.0) == (20.0, 60.0)


# -- registration ---------------------------------------------------------------------------------

def test_node_labels() -> None:
    assert parse_node_labels("role=db, node.kubernetes.io/pool=a,,kubelet.kubernetes.io/x=1,"
                             "topology.kubernetes.io/zone=z1,team.node.kubernetes.io/t=y,empty=") == {
        "role": "db", "node.kubernetes.io/pool": "a", "kubelet.kubernetes.io/x": "1",
        "topology.kubernetes.io/zone": "z1", "team.node.kubernetes.io/t": "y", "empty": ""}
    with pytest.raises(NodeConfigError) as refused:
        parse_node_labels("node-role.kubernetes.io/worker=,foo.k8s.io/a=b,kubernetes.io/custom=x")
    text = str(refused.value)
    assert text.startswith("unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: "
                           "[foo.k8s.io/a kubernetes.io/custom node-role.kubernetes.io/worker]")
    assert "allowed prefix (kubelet.kubernetes.io, node.kubernetes.io)" in text
    with pytest.raises(NodeConfigError, match="malformed pair 'novalue', expect string=string"):
        parse_node_labels("a=b,novalue")
    with pytest.raises(NodeConfigError, match="invalid node labels: '-bad' - name part must consist"):
        parse_node_labels("-bad=x")
    with pytest.raises(NodeConfigError, match="invalid node labels: 'a b' - a valid label must be"):
        parse_node_labels({"ok": "a b"})


def test_taints() -> None:
    assert [str(t) for t in parse_taints("dedicated=db:NoSchedule,gpu:NoExecute,spot=true:PreferNoSchedule")] \
        == ["dedicated=db:NoSchedule", "gpu:NoExecute", "spot=true:PreferNoSchedule"]
    assert parse_taints("") == [] and parse_taints([Taint("a", "b", "NoSchedule")])[0].value == "b"
    for bad, message in [
        ("gpu", "invalid taint spec: gpu, a node taint needs an effect"),
        ("gpu:Never", "invalid taint effect: Never, unsupported taint effect"),
        ("a:b:NoSchedule", "invalid taint spec: a:b:NoSchedule"),
        ("a=b=c:NoSchedule", "invalid taint spec: a=b=c:NoSchedule"),
        ("a=b c:NoSchedule", "invalid taint spec: a=b c:NoSchedule, a valid label must be"),
        ("=x:NoSchedule", "invalid taint spec: =x:NoSchedule, name part must be non-empty"),
        ("a:NoSchedule,a=other:NoSchedule",
         "invalid taint spec: a=other:NoSchedule, taints must be unique by key and effect pair"),
    ]:
        with pytest.raises(NodeConfigError) as err:
            parse_taints(bad)
        assert str(err.value).startswith(message), (bad, str(err.value))


def test_initial_node(facts: NodeFacts, capacity: NodeResources) -> None:
    config = SimpleNamespace(node_name="node-a", pod_cidr="10.244.3.0/24", port=10250)
    node = initial_node(config, facts, capacity, capacity, node_labels="node.kubernetes.io/pool=a,role=db",
                        register_with_taints="dedicated=db:NoSchedule", register_schedulable=False)
    body = encode(node)
    assert body["metadata"]["labels"] == {
        "kubernetes.io/hostname": "node-a", "kubernetes.io/os": "linux",
        "kubernetes.io/arch": facts.architecture, "node.kubernetes.io/pool": "a", "role": "db"}
    assert body["metadata"]["annotations"] == {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}
    assert body["spec"] == {
        "podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24"], "unschedulable": True,
        "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}
    assert body["status"]["capacity"] == capacity.as_quantities()
    assert body["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert body["status"]["nodeInfo"]["bootID"] == facts.boot_id
    assert decode(Node, body) == node
    # With the builder's first status, that is what registers.
    status = builder(facts, capacity, RuntimeState(clock=Clock(0)), Clock(), Events()).build(None)
    plain = initial_node(SimpleNamespace(node_name="node-a", pod_cidr="", port=10250), facts, capacity,
                         capacity, status=status)
    assert plain.status is status and plain.spec.pod_cidr == "" and plain.spec.taints == []
    assert "spec" in encode(plain) and encode(plain)["spec"] == {}
    with pytest.raises(NodeConfigError):
        initial_node(config, facts, capacity, capacity, node_labels="node-role.kubernetes.io/master=")


# -- the Lease --------------------------------------------------------------------------------------

def test_lease() -> None:
    fresh = lease("node-a", "5d0e3f0c-aaaa-bbbb-cccc-ddddeeeeffff", now=T0 + 0.1234567)
    assert encode(fresh) == {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "node-a", "namespace": "kube-node-lease", "creationTimestamp": None,
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-a",
                                          "uid": "5d0e3f0c-aaaa-bbbb-cccc-ddddeeeeffff"}]},
        "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40,
                 "renewTime": "2025-10-09T08:53:20.123456Z"}}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", fresh.spec.renew_time or "")
    assert lease_renew_interval() == 10.0 and lease_renew_interval(60) == 15.0
    # Before the Node's uid is known: no owner; a renewal adds it and keeps the rest.
    early = lease("node-a", now=T0)
    assert early.metadata.owner_references == []
    early.metadata.resource_version = "812"
    early.spec.acquire_time = format_micro_time(T0 - 5)
    renewed = renew_lease(early, "node-a", "uid-1", now=T0 + 10)
    assert renewed.spec.renew_time == "2025-10-09T08:53:30.000000Z"
    assert renewed.metadata.resource_version == "812" and renewed.spec.acquire_time == early.spec.acquire_time
    assert [o.uid for o in renewed.metadata.owner_references] == ["uid-1"]
    assert early.spec.renew_time == "2025-10-09T08:53:20.000000Z"  # the input is not modified
    assert decode(Lease, encode(renewed)) == renewed


# -- codec --------------------------------------------------------------------------------------------

API_NODE = {  # as `kubectl get node -o json` prints a v1.31 kubelet's Node (trimmed)
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "worker-1", "uid": "0b3c1f4e-6c1a-4f7e-9a55-1d2a3b4c5d6e", "resourceVersion": "4711",
                 "creationTimestamp": "2025-01-02T03:04:05Z",
                 "labels": {"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": "worker-1",
                            "kubernetes.io/os": "linux"},
                 "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
             "taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute",
                         "timeAdded": "2025-01-02T03:04:10Z"}]},
    "status": {
        "capacity": {"cpu": "4", "ephemeral-storage": "101430960Ki", "hugepages-2Mi": "0",
                     "memory": "16318412Ki", "pods": "110"},
        "allocatable": {"cpu": "4", "ephemeral-storage": "93478772582", "hugepages-2Mi": "0",
                        "memory": "16216012Ki", "pods": "110"},
        "conditions": [
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": "2025-01-02T03:10:00Z",
             "lastTransitionTime": "2025-01-02T03:04:05Z", "reason": "KubeletHasSufficientMemory",
             "message": "kubelet has sufficient memory available"},
            {"type": "Ready", "status": "True", "lastHeartbeatTime": "2025-01-02T03:10:00Z",
             "lastTransitionTime": "2025-01-02T03:04:20Z", "reason": "KubeletReady",
             "message": "kubelet is posting ready status"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}, {"type": "Hostname", "address": "worker-1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"machineID": "3d1219c7c4c5404aaa1f6d2a48adfda4", "systemUUID": "", "bootID": "b1",
                     "kernelVersion": "6.1.0-18-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)",
                     "containerRuntimeVersion": "containerd://1.7.13", "kubeletVersion": "v1.31.0",
                     "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
                     "swap": {"capacity": 0}},
        "images": [{"names": ["registry.k8s.io/pause@sha256:7031c1b2", "registry.k8s.io/pause:3.10"],
                    "sizeBytes": 320368}],
        "runtimeHandlers": [{"name": "runc", "features": {"recursiveReadOnlyMounts": True,
                                                          "userNamespaces": False}}]},
}


def test_codec_round_trips(facts: NodeFacts, capacity: NodeResources) -> None:
    node = decode(Node, API_NODE)
    assert encode(node) == API_NODE
    assert node.status.condition(READY) is not None and node.spec.taints[0].time_added == "2025-01-02T03:04:10Z"
    assert node.status.allocatable["ephemeral-storage"] == Quantity("93478772582")
    built = builder(facts, capacity, RuntimeState(clock=Clock(0)), Clock(), Events()).build(None)
    assert decode(NodeStatus, encode(built)) == built
    body = encode(built)
    assert body["nodeInfo"]["systemUUID"] == facts.system_uuid  # printed even when empty
    assert "images" not in body and "runtimeHandlers" not in body  # omitempty
    empty = encode(NodeCondition(type=READY, status="Unknown"))
    assert empty == {"type": "Ready", "status": "Unknown", "lastHeartbeatTime": None, "lastTransitionTime": None}
