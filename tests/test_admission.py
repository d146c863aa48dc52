"""Resource admission (kubelet noderesources Fits) on typed pods."""

from __future__ import annotations

from nodeagent.api.codec import decode
from nodeagent.api.defaults import apply_defaults
from nodeagent.api.types import Pod
from nodeagent.node.capacity import NodeResources
from nodeagent.pods.admission import fits

NODE = NodeResources(cpu=2000, memory=4 << 30, ephemeral_storage=20 << 30, pods=110, pid=4096,
                     hugepages={"hugepages-2Mi": 8 << 20})


def pod(name: str, *, requests: dict | None = None, init: dict | None = None, priority_class: str = "") -> Pod:
    spec: dict = {"containers": [{"name": "main", "image": "busybox:1",
                                  "resources": {"requests": requests or {}}}]}
    if init is not None:
        spec["initContainers"] = [{"name": "init", "image": "busybox:1", "resources": {"requests": init}}]
    if priority_class:
        spec["priorityClassName"] = priority_class
    p = decode(Pod, {"metadata": {"name": name, "namespace": "default", "uid": name}, "spec": spec})
    apply_defaults(p)
    return p


def test_pods_that_fit_are_admitted() -> None:
    admitted = [pod("a", requests={"cpu": "500m", "memory": "1Gi"})]
    assert fits(pod("b", requests={"cpu": "1500m", "memory": "3Gi"}), admitted, NODE) is None
    assert fits(pod("best-effort"), admitted * 50, NODE) is None
    assert fits(pod("no-node-yet", requests={"cpu": "64"}), [], None) is None


def test_the_first_shortage_is_reported_in_the_kubelets_words() -> None:
    admitted = [pod("a", requests={"cpu": "500m", "memory": "1Gi"})]
    verdict = fits(pod("b", requests={"cpu": "1600m", "memory": "8Gi"}), admitted, NODE)
    assert verdict is not None and not verdict.admit
    assert verdict.reason == "OutOfcpu"
    assert verdict.message == "Node didn't have enough resource: cpu, requested: 1600, used: 500, capacity: 2000"
    assert verdict.status_message.startswith("Pod was rejected: Node didn't have enough resource: cpu")
    memory = fits(pod("c", requests={"memory": "3200Mi"}), admitted, NODE)
    assert memory is not None and memory.reason == "OutOfmemory"
    assert memory.message == (f"Node didn't have enough resource: memory, requested: {3200 << 20}, "
                              f"used: {1 << 30}, capacity: {4 << 30}")
    huge = fits(pod("h", requests={"hugepages-2Mi": "10Mi", "memory": "10Mi"}), [], NODE)
    assert huge is not None and huge.reason == "OutOfhugepages-2Mi"


def test_init_containers_count_as_the_kubelet_counts_them() -> None:
    # An init container larger than the app containers: the pod needs the larger.
    assert fits(pod("i", requests={"cpu": "100m"}, init={"cpu": "2100m"}), [], NODE).reason == "OutOfcpu"
    assert fits(pod("j", requests={"cpu": "100m"}, init={"cpu": "1900m"}), [], NODE) is None


def test_critical_pods_are_admitted_regardless() -> None:
    full = [pod("a", requests={"cpu": "2"})]
    assert fits(pod("etcd", requests={"cpu": "1"}, priority_class="system-node-critical"), full, NODE) is None
