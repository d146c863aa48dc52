"""QoS classes exactly as the kubelet computes them (kubelet.md 1.1)."""

from __future__ import annotations

import pytest

from nodeagent.api.codec import decode
from nodeagent.api.defaults import apply_defaults
from nodeagent.api.types import Pod, ResourceRequirements
from nodeagent.cgroups.qos import (
    BEST_EFFORT,
    BURSTABLE,
    GUARANTEED,
    QOS_CLASSES,
    compute_pod_qos,
    pod_qos_class,
    resource_qos,
)


def make_pod(*resources: dict, init: tuple[dict, ...] = (), defaults: bool = True) -> Pod:
    def ctr(i: int, res: dict, prefix: str) -> dict:
        return {"name": f"{prefix}{i}", "image": "busybox:1.36", "resources": res}

    pod = decode(Pod, {"metadata": {"name": "p"}, "spec": {
        "containers": [ctr(i, r, "c") for i, r in enumerate(resources)],
        "initContainers": [ctr(i, r, "i") for i, r in enumerate(init)]}})
    if defaults:
        apply_defaults(pod)
    return pod


FULL = {"limits": {"cpu": "1", "memory": "1Gi"}}
EQUAL = {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "0.5", "memory": "256Mi"}}


def test_constants() -> None:
    assert (GUARANTEED, BURSTABLE, BEST_EFFORT) == ("Guaranteed", "Burstable", "BestEffort")
    assert set(QOS_CLASSES) == {GUARANTEED, BURSTABLE, BEST_EFFORT}


@pytest.mark.parametrize(("containers", "expected"), [
    # nothing set anywhere
    (({},), BEST_EFFORT),
    (({}, {}), BEST_EFFORT),
    # limits only: requests default to limits -> Guaranteed
    ((FULL,), GUARANTEED),
    ((FULL, FULL), GUARANTEED),
    # equal amounts written differently (500m == 0.5)
    ((EQUAL,), GUARANTEED),
    # requests below limits
    (({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}},), BURSTABLE),
    # only one of cpu / memory
    (({"limits": {"cpu": "1"}},), BURSTABLE),
    (({"limits": {"memory": "1Gi"}},), BURSTABLE),
    (({"requests": {"memory": "1Gi"}},), BURSTABLE),
    # one container guaranteed, another best effort
    ((FULL, {}), BURSTABLE),
    # ephemeral-storage, hugepages and extended resources never count
    (({"limits": {"ephemeral-storage": "1Gi"}},), BEST_EFFORT),
    (({"limits": {"example.com/fpga": "1"}},), BEST_EFFORT),
    (({"limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi",
                  "hugepages-2Mi": "2Mi", "example.com/fpga": "1"}},), GUARANTEED),
    # explicit zeros are the same as unset
    (({"limits": {"cpu": "0", "memory": "0"}},), BEST_EFFORT),
    (({"requests": {"cpu": "0"}},), BEST_EFFORT),
    (({"limits": {"cpu": "1", "memory": "0"}},), BURSTABLE),
])
def test_pod_qos(containers: tuple[dict, ...], expected: str) -> None:
    assert compute_pod_qos(make_pod(*containers)) == expected
    assert pod_qos_class(make_pod(*containers)) == expected


@pytest.mark.parametrize(("init", "app", "expected"), [
    ((FULL,), (FULL,), GUARANTEED),
    (({},), (FULL,), BURSTABLE),      # a best-effort init container spoils Guaranteed
    ((FULL,), ({},), BURSTABLE),
    (({},), ({},), BEST_EFFORT),
    (({"limits": {"cpu": "2"}},), ({},), BURSTABLE),
])
def test_init_containers_count(init: tuple[dict, ...], app: tuple[dict, ...], expected: str) -> None:
    assert compute_pod_qos(make_pod(*app, init=init)) == expected


def test_limits_only_pod_needs_defaulting_to_be_guaranteed() -> None:
    # Without the API server's "requests default to limits" step the kubelet
    # would see request (0) != limit: Burstable. Defaults must come first.
    assert compute_pod_qos(make_pod(FULL, defaults=False)) == BURSTABLE
    assert compute_pod_qos(make_pod(FULL)) == GUARANTEED


def test_recorded_status_class_wins_over_computation() -> None:
    pod = make_pod(FULL)
    pod.status.qos_class = BURSTABLE
    assert pod_qos_class(pod) == BURSTABLE
    assert compute_pod_qos(pod) == GUARANTEED


def test_pod_without_containers_is_best_effort() -> None:
    assert compute_pod_qos(Pod()) == BEST_EFFORT


def test_resource_qos_single_container() -> None:
    assert resource_qos(ResourceRequirements()) == BEST_EFFORT
    pod = make_pod(EQUAL)
    assert resource_qos(pod.spec.containers[0].resources) == GUARANTEED
