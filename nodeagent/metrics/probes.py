"""/metrics/probes: the prober's families (k/k pkg/kubelet/prober/prober_manager.go).

For the prober: one `ProbeSeries` per probe worker, then after every probe call

    series = ProbeSeries("Readiness", container="main", pod="web-node1",
                         namespace="default", pod_uid=uid)
    series.observe("successful", 0.012)

probe_type is Liveness|Readiness|Startup, result successful|failed|unknown.
As in the kubelet, the duration is recorded for successful and unknown
results only. When the worker stops, `series.forget()` removes its series.
The label lookups (a lock and a dict per family) happen once per worker and
result, not once per probe.
"""

from __future__ import annotations

from typing import Any

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


class ProbeSeries:
    """One probe worker's series, its children looked up once; created lazily,
    so a result never seen has no series."""

    __slots__ = ("probe_type", "container", "pod", "namespace", "pod_uid", "_totals", "_duration",
                 "_live")

    def __init__(self, probe_type: str, *, container: str, pod: str, namespace: str,
                 pod_uid: str) -> None:
        if probe_type not in PROBE_TYPES:
            raise ValueError(f"probe_type must be one of {PROBE_TYPES}, not {probe_type!r}")
        self.probe_type, self.container, self.pod = probe_type, container, pod
        self.namespace, self.pod_uid = namespace, pod_uid
        self._totals: dict[str, Any] = {}
        self._duration: Any = None
        self._live = True
        key = (probe_type, container, pod, namespace)
        _duration_users[key] = _duration_users.get(key, 0) + 1

    def observe(self, result: str, seconds: float) -> None:
        """Count one probe result; record its duration unless it failed."""
        total = self._totals.get(result)
        if total is None:
            if result not in RESULTS:
                raise ValueError(f"result must be one of {RESULTS}, not {result!r}")
            total = self._totals[result] = PROBE_TOTAL.labels(
                self.probe_type, result, self.container, self.pod, self.namespace, self.pod_uid)
        total.inc()
        if result != "failed":
            if self._duration is None:
                self._duration = PROBE_DURATION.labels(self.probe_type, self.container, self.pod,
                                                       self.namespace)
            self._duration.observe(seconds)

    def forget(self) -> None:
        """Drop the series. The duration series has no pod_uid: a recreated pod
        of the same name may share it, so it goes with its last user."""
        if not self._live:
            return
        for result in self._totals:
            try:
                PROBE_TOTAL.remove(self.probe_type, result, self.container, self.pod,
                                   self.namespace, self.pod_uid)
            except KeyError:
                pass
        self._totals, self._duration, self._live = {}, None, False
        key = (self.probe_type, self.container, self.pod, self.namespace)
        _duration_users[key] -= 1
        if not _duration_users[key]:
            del _duration_users[key]
            try:
                PROBE_DURATION.remove(*key)
            except KeyError:
                pass


# Live ProbeSeries per duration label set.
_duration_users: dict[tuple[str, str, str, str], int] = {}
