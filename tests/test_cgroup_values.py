"""Pod cgroup values, container resources and OOM scores against the kubelet's
rules (reference: shared/reference/kubelet.md sections 1 and 2)."""

from __future__ import annotations

import pytest

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import Container, ObjectMeta, Pod, PodSpec, ResourceRequirements
from nodeagent.cgroups import values
from nodeagent.cgroups.values import ResourceConfig, ResourcePolicy

GI = 2**30
MI = 2**20
CAPACITY = 4 * GI
POLICY = ResourcePolicy(memory_capacity=CAPACITY)


def res(limits: dict[str, str] | None = None, requests: dict[str, str] | None = None) -> ResourceRequirements:
    # The API server defaults requests to limits; these pods are written defaulted.
    req = {**(limits or {}), **(requests or {})}
    return ResourceRequirements(limits={k: Quantity(v) for k, v in (limits or {}).items()},
                                requests={k: Quantity(v) for k, v in req.items()})


def ctr(name: str = "app", limits: dict[str, str] | None = None,
        requests: dict[str, str] | None = None, **kw: object) -> Container:
    return Container(name=name, image="busybox", resources=res(limits, requests), **kw)  # type: ignore[arg-type]


def pod(*containers: Container, init: list[Container] | None = None, **meta: object) -> Pod:
    return Pod(metadata=ObjectMeta(name="p", namespace="default", uid="u-1", **meta),  # type: ignore[arg-type]
               spec=PodSpec(containers=list(containers), init_containers=init or []))


def test_cpu_conversions() -> None:
    assert values.milli_cpu_to_shares(0) == 2
    assert values.milli_cpu_to_shares(1) == 2
    assert values.milli_cpu_to_shares(100) == 102
    assert values.milli_cpu_to_shares(1000) == 1024
    assert values.milli_cpu_to_shares(10**9) == 262144
    assert values.milli_cpu_to_quota(0) == 0
    assert values.milli_cpu_to_quota(5) == 1000
    assert values.milli_cpu_to_quota(250) == 25000
    assert values.milli_cpu_to_quota(250, 50000) == 12500


@pytest.mark.parametrize(("shares", "weight"), [
    (0, 0), (2, 1), (1, 1), (1024, 100), (262144, 10000), (300000, 10000),
    # runc PR #4785 / opencontainers/cgroups ConvertCPUSharesToCgroupV2Value
    (102, 17), (512, 59), (2048, 174), (4096, 303),
])
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert values.shares_to_weight(shares) == weight


# -- pod totals and the pod cgroup ------------------------------------------------------

def test_pod_requests_init_and_sidecars() -> None:
    p = pod(ctr("a", requests={"cpu": "100m", "memory": "64Mi"}),
            ctr("b", requests={"cpu": "200m"}),
            init=[ctr("big-init", requests={"cpu": "1", "memory": "16Mi"}),
                  ctr("side", requests={"cpu": "50m", "memory": "32Mi"}, restart_policy="Always"),
                  ctr("late-init", requests={"memory": "100Mi"})])
    # apps + sidecar = 350m / 96Mi; init peak: big-init 1000m, late-init 100Mi + 32Mi sidecar.
    assert values.pod_requests(p) == {"cpu": 1000, "memory": 132 * MI}


@pytest.mark.parametrize(("containers", "init", "expected"), [
    # Guaranteed: shares from requests, quota from limits, memory limit.
    ([ctr(limits={"cpu": "500m", "memory": "128Mi"})], [],
     ResourceConfig(cpu_shares=512, cpu_quota=50000, cpu_period=100000, memory_limit=128 * MI)),
    # Burstable with every limit declared: quota and memory too.
    ([ctr(limits={"cpu": "1", "memory": "256Mi"}, requests={"cpu": "250m", "memory": "64Mi"})], [],
     ResourceConfig(cpu_shares=256, cpu_quota=100000, cpu_period=100000, memory_limit=256 * MI)),
    # Burstable, one container without a cpu limit: no quota; memory limits all set.
    ([ctr("a", limits={"cpu": "1", "memory": "64Mi"}, requests={"cpu": "100m"}),
      ctr("b", limits={"memory": "64Mi"}, requests={"cpu": "100m"})], [],
     ResourceConfig(cpu_shares=204, memory_limit=128 * MI)),
    # Burstable, requests only: shares only.
    ([ctr(requests={"cpu": "300m", "memory": "10Mi"})], [], ResourceConfig(cpu_shares=307)),
    # Burstable whose init container has no limits: neither quota nor memory limit.
    ([ctr(limits={"cpu": "1", "memory": "64Mi"})], [ctr("init", requests={"cpu": "10m"})],
     ResourceConfig(cpu_shares=1024)),
    # BestEffort.
    ([ctr()], [], ResourceConfig(cpu_shares=2)),
])
def test_pod_resource_config(containers: list[Container], init: list[Container],
                             expected: ResourceConfig) -> None:
    assert values.pod_resource_config(pod(*containers, init=init), POLICY) == expected


def test_pod_resource_config_policy() -> None:
    g = pod(ctr(limits={"cpu": "2", "memory": "1Gi"}))
    no_quota = ResourcePolicy(memory_capacity=CAPACITY, cpu_cfs_quota=False, pod_pids_limit=100)
    assert values.pod_resource_config(g, no_quota) == ResourceConfig(
        cpu_shares=2048, cpu_quota=-1, cpu_period=100000, memory_limit=GI, pids_limit=100)
    short = ResourcePolicy(memory_capacity=CAPACITY, cpu_cfs_quota_period=50000)
    assert values.pod_resource_config(g, short).cpu_quota == 100000
    assert values.pod_resource_config(pod(ctr()), no_quota) == ResourceConfig(cpu_shares=2, pids_limit=100)


# -- OOM scores ---------------------------------------------------------------------------

@pytest.mark.parametrize(("p", "expected"), [
    (pod(ctr(limits={"cpu": "1", "memory": "1Gi"})), -997),
    (pod(ctr()), 1000),
    (pod(ctr(requests={"memory": "1Gi"})), 750),  # 1000 - 1000*1Gi/4Gi
    (pod(ctr(requests={"memory": "4Gi"})), 3),  # clamped up to 3
    (pod(ctr(requests={"memory": "8Gi"})), 3),
    (pod(ctr(requests={"cpu": "100m"})), 999),  # no memory request: 1000 -> 999
    (pod(ctr(requests={"memory": "1"})), 999),
    # node-critical static pod: -997 whatever its class
    (pod(ctr(), annotations={"kubernetes.io/config.source": "file"}), 1000),
])
def test_oom_policy(p: Pod, expected: int) -> None:
    assert values.oom_score_adj_policy(p, p.spec.containers[0], CAPACITY) == expected


def test_oom_node_critical() -> None:
    static = pod(ctr(), annotations={"kubernetes.io/config.source": "file"})
    static.spec.priority_class_name = "system-node-critical"
    assert values.oom_score_adj_policy(static, static.spec.containers[0], CAPACITY) == -997
    api = pod(ctr())
    api.spec.priority_class_name = "system-node-critical"
    assert values.oom_score_adj_policy(api, api.spec.containers[0], CAPACITY) == 1000  # no priority yet
    api.spec.priority = 2_000_001_000
    assert values.oom_score_adj_policy(api, api.spec.containers[0], CAPACITY) == -997


def test_oom_sidecar_not_above_smallest_app() -> None:
    side = ctr("side", requests={"memory": "64Mi"}, restart_policy="Always")
    p = pod(ctr("a", requests={"memory": "1Gi"}), ctr("b", requests={"memory": "2Gi"}), init=[side])
    assert values.oom_score_adj_policy(p, side, CAPACITY) == 750  # as container a, not 985
    assert values.oom_score_adj_policy(p, p.spec.containers[1], CAPACITY) == 500


def test_oom_floor_on_restricted_hosts() -> None:
    restricted = ResourcePolicy(memory_capacity=CAPACITY, oom_score_adj_floor=0)
    g = pod(ctr(limits={"cpu": "1", "memory": "1Gi"}))
    assert values.oom_score_adj(g, g.spec.containers[0], restricted) == 0
    assert values.oom_score_adj(g, g.spec.containers[0], POLICY) == -997
    b = pod(ctr(requests={"memory": "1Gi"}))
    assert values.oom_score_adj(b, b.spec.containers[0], restricted) == 750


# -- container resources -------------------------------------------------------------------

@pytest.mark.parametrize(("limits", "requests", "shares", "quota", "memory"), [
    ({}, {}, 2, 0, 0),
    ({}, {"cpu": "100m"}, 102, 0, 0),
    ({"cpu": "250m"}, {"cpu": "0"}, 256, 25000, 0),  # request unset but limit set: from limit
    ({"cpu": "250m"}, {"cpu": "100m"}, 102, 25000, 0),
    ({"memory": "128Mi"}, {"memory": "64Mi"}, 2, 0, 128 * MI),
])
def test_container_resources(limits: dict[str, str], requests: dict[str, str],
                             shares: int, quota: int, memory: int) -> None:
    c = ctr(limits=limits, requests=requests)
    c.resources.requests = {k: Quantity(v) for k, v in requests.items()}
    r = values.container_resources(pod(c), c, POLICY)
    assert (r.cpu_shares, r.cpu_quota, r.cpu_period, r.memory_limit_in_bytes) == (shares, quota, 100000, memory)


def test_container_resources_without_cfs_quota() -> None:
    c = ctr(limits={"cpu": "1", "memory": "1Gi"})
    r = values.container_resources(pod(c), c, ResourcePolicy(memory_capacity=CAPACITY, cpu_cfs_quota=False))
    assert (r.cpu_quota, r.cpu_period, r.oom_score_adj) == (0, 0, -997)
