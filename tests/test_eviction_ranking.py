"""The kubelet's eviction order and message texts."""

from __future__ import annotations

from typing import Any

from nodeagent.api.codec import decode
from nodeagent.api.quantity import Quantity
from nodeagent.api.types import Pod
from nodeagent.eviction.messages import eviction_message, format_bytes, format_quantity
from nodeagent.eviction.ranking import (
    PodUsage, is_critical, pod_priority, pod_request, rank_disk, rank_memory, rank_pids,
)

MiB = 2**20


def make_pod(name: str, *, requests: dict[str, str] | None = None,
             limits: dict[str, str] | None = None, priority: int | None = None,
             priority_class: str = "", init: list[dict[str, Any]] | None = None) -> Pod:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox",
                                            "resources": resources}]}
    if priority is not None:
        spec["priority"] = priority
    if priority_class:
        spec["priorityClassName"] = priority_class
    if init:
        spec["initContainers"] = init
    return decode(Pod, {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
                        "spec": spec})


def names(pods: list[Pod]) -> list[str]:
    return [p.metadata.name for p in pods]


def test_memory_ranking_exceeding_requests_then_priority_then_usage_above_request() -> None:
    pods = {
        "guaranteed": make_pod("guaranteed", requests={"memory": "100Mi"}, limits={"memory": "100Mi"}),
        "burstable-under": make_pod("burstable-under", requests={"memory": "200Mi"}),
        "burstable-over": make_pod("burstable-over", requests={"memory": "10Mi"}),
        "besteffort": make_pod("besteffort"),
        "besteffort-high": make_pod("besteffort-high", priority=1000),
        "nostats": make_pod("nostats", requests={"memory": "1Gi"}, priority=5000),
    }
    usage = {"guaranteed": 90, "burstable-under": 150, "burstable-over": 60, "besteffort": 20,
             "besteffort-high": 500}
    stats = {p.metadata.uid: PodUsage(memory_working_set_bytes=usage[n] * MiB)
             for n, p in pods.items() if n in usage}
    ranked = rank_memory(list(pods.values()), lambda p: stats.get(p.metadata.uid))
    # no stats first; then the pods above their request (priority 0 before 1000; among
    # equal priority the one furthest above its request: 60-10 > 20-0); then the rest
    # by priority and usage - request (90-100 > 150-200).
    assert names(ranked) == ["nostats", "burstable-over", "besteffort", "besteffort-high",
                             "guaranteed", "burstable-under"]


def test_disk_and_pid_ranking() -> None:
    a = make_pod("a", requests={"ephemeral-storage": "1Gi"})
    b = make_pod("b")
    c = make_pod("c", priority=-10)
    stats = {"uid-a": PodUsage(ephemeral_storage_bytes=2000 * MiB, process_count=3),
             "uid-b": PodUsage(ephemeral_storage_bytes=100 * MiB, process_count=50),
             "uid-c": PodUsage(ephemeral_storage_bytes=10 * MiB, process_count=1)}
    get = stats.get

    assert names(rank_disk([a, b, c], lambda p: get(p.metadata.uid))) == ["c", "a", "b"]
    # pid: priority, then most processes.
    assert names(rank_pids([a, b, c], lambda p: get(p.metadata.uid))) == ["c", "b", "a"]


def test_requests_count_init_containers_and_sidecars() -> None:
    pod = make_pod("p", requests={"memory": "100Mi"}, init=[
        {"name": "sidecar", "image": "x", "restartPolicy": "Always",
         "resources": {"requests": {"memory": "50Mi"}}},
        {"name": "setup", "image": "x", "resources": {"requests": {"memory": "300Mi"}}},
    ])
    # max(100 + 50 sidecar, 300 + 50 sidecar running during it)
    assert pod_request(pod, "memory") == 350 * MiB
    assert pod_request(make_pod("q"), "memory") == 0


def test_critical_pods_by_priority_or_builtin_class() -> None:
    assert is_critical(make_pod("a", priority=2_000_001_000))
    assert is_critical(make_pod("b", priority_class="system-node-critical"))
    assert pod_priority(make_pod("c", priority_class="system-cluster-critical")) == 2_000_000_000
    assert not is_critical(make_pod("d", priority=1_999_999_999))
    assert not is_critical(make_pod("e", priority_class="high"))


def test_quantities_print_like_go() -> None:
    assert format_bytes(52428800) == "50Mi"
    assert format_bytes(52428801) == "52428801"
    assert format_bytes(1023) == "1023"
    assert format_bytes(1024) == "1Ki"
    assert format_bytes(0) == "0"
    assert format_bytes(123000, binary=False) == "123k"
    assert format_bytes(1500, binary=False) == "1500"
    assert format_quantity(Quantity("100M")) == "100M"
    assert format_quantity(Quantity("0.5Gi")) == "512Mi"
    assert format_quantity(Quantity("500m")) == "500m"
    assert format_quantity(None) == "0"


def test_eviction_message_names_signal_threshold_and_containers() -> None:
    pod = make_pod("web", requests={"memory": "10Mi"})
    message, annotations = eviction_message("memory", pod, 100 * MiB, 51200 * 1024 + 1, True,
                                            {"c": 12 * MiB})
    assert message == ("The node was low on resource: memory. Threshold quantity: 100Mi, "
                       "available: 52428801. Container c was using 12Mi, request is 10Mi, "
                       "has larger consumption of memory. ")
    assert annotations == {"offending_containers": "c", "offending_containers_usage": "12Mi",
                           "starved_resource": "memory"}
    message, _ = eviction_message("memory", make_pod("be"), 100 * MiB, 50 * MiB, True,
                                  {"c": 12 * MiB})
    assert message.endswith("Container c was using 12Mi, request is 0, has larger consumption "
                            "of memory. ")
    # Below its request: not named.
    message, _ = eviction_message("memory", pod, 100 * MiB, 50 * MiB, True, {"c": 5 * MiB})
    assert message == "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
