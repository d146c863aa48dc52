"""/metrics/probes: the prober's families (k/k pkg/kubelet/prober/prober_manager.go).

For the prober: after every probe call

    from nodeagent.metrics.probes import observe_probe
    observe_probe("Readiness", "successful", seconds=0.012, container="main",
                  pod="web-node1", namespace="default", pod_uid=uid)

probe_type is Liveness|Readiness|Startup, result successful|failed|unknown.
As in the kubelet, the duration is recorded for successful and unknown
results only. When a probe worker stops, call `forget_probe(...)` with the
same labels so a gone pod's series disappear.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.process_collector import ProcessCollector

import nodeagent.metrics  # noqa: F401  (disables _created series)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # the kubelet's probe registry has process_start_time_seconds

PROBE_TYPES = ("Liveness", "Readiness", "Startup")
RESULTS = ("successful", "failed", "unknown")

PROBE_TOTAL = Counter(
    "prober_probe", "Cumulative number of a liveness, readiness or startup probe for a container "
    "by result.", ["probe_type", "result", "container", "pod", "namespace", "pod_uid"],
    registry=REGISTRY)
PROBE_DURATION = Histogram(
    "prober_probe_duration_seconds", "Duration in seconds for a probe response.",
    ["probe_type", "container", "pod", "namespace"], registry=REGISTRY)


def observe_probe(probe_type: str, result: str, *, seconds: float, container: str, pod: str,
                  namespace: str, pod_uid: str) -> None:
    """Count one probe result; record its duration unless it failed."""
    if probe_type not in PROBE_TYPES:
        raise ValueError(f"probe_type must be one of {PROBE_TYPES}, not {probe_type!r}")
    if result not in RESULTS:
        raise ValueError(f"result must be one of {RESULTS}, not {result!r}")
    PROBE_TOTAL.labels(probe_type, result, container, pod, namespace, pod_uid).inc()
    if result != "failed":
        PROBE_DURATION.labels(probe_type, container, pod, namespace).observe(seconds)


def forget_probe(probe_type: str, *, container: str, pod: str, namespace: str,
                 pod_uid: str) -> None:
    """Drop a stopped probe worker's series (kubelet worker.stop deletes them)."""
    for result in RESULTS:
        try:
            PROBE_TOTAL.remove(probe_type, result, container, pod, namespace, pod_uid)
        except KeyError:
            pass
    try:
        PROBE_DURATION.remove(probe_type, container, pod, namespace)
    except KeyError:
        pass
