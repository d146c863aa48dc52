"""Probe metrics as the kubelet's /metrics/probes names them (kubelet.md 9.3).

The series live once, in the prometheus-client families of
nodeagent.metrics.probes (what /metrics/probes serves); this keeps which
series belong to which pod and lets `samples()` read them back. A probe
worker observes through its own `ProbeSeries` (labels looked up once).
Lateness (actual start - scheduled start) is kept for the benchmark and the
debug log, not exported.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass

import structlog

from nodeagent.metrics import probes as exported  # /metrics/probes (prometheus-client)
from nodeagent.metrics.probes import ProbeSeries

log = structlog.get_logger("nodeagent.probes")

PROBE_TOTAL = "prober_probe_total"
PROBE_DURATION = "prober_probe_duration_seconds"

LATENESS_LOG_PERIOD = 30.0  # seconds between "probe lateness" summaries in the log
# (probe_type, container, pod, namespace, pod_uid)
SeriesKey = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Sample:
    """One exposition line: name{labels} value."""
    name: str
    labels: dict[str, str]
    value: float


class ProbeMetrics:
    def __init__(self, lateness_window: int = 20000) -> None:
        self._series: dict[SeriesKey, ProbeSeries] = {}
        self.lateness: collections.deque[float] = collections.deque(maxlen=lateness_window)
        self._window: list[float] = []
        self._window_start = time.monotonic()

    def series(self, *, probe_type: str, container: str, pod: str, namespace: str,
               pod_uid: str) -> ProbeSeries:
        """A probe worker's series (the same object for the same labels)."""
        key = (probe_type, container, pod, namespace, pod_uid)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = ProbeSeries(probe_type, container=container, pod=pod,
                                                    namespace=namespace, pod_uid=pod_uid)
        return found

    def observe_lateness(self, seconds: float) -> None:
        """How late a probe started against its schedule; summarised in the log
        every 30 s, so a benchmark (or an operator) can see the prober keep time."""
        self.lateness.append(seconds)
        self._window.append(seconds)
        now = time.monotonic()
        if now - self._window_start >= LATENESS_LOG_PERIOD:
            data = sorted(self._window)
            log.info("probe lateness", probes=len(data),
                     p50_ms=round(data[len(data) // 2] * 1000, 2),
                     p99_ms=round(data[min(len(data) - 1, int(0.99 * len(data)))] * 1000, 2),
                     max_ms=round(data[-1] * 1000, 2))
            self._window = []
            self._window_start = now

    def forget_pod(self, namespace: str, pod: str, pod_uid: str | None = None) -> None:
        """The kubelet deletes a pod's series when its probe workers stop
        (only that instance's when pod_uid is given)."""
        for key in [k for k in self._series
                    if k[2] == pod and k[3] == namespace and pod_uid in (None, k[4])]:
            self._series.pop(key).forget()

    def samples(self) -> Iterator[Sample]:
        """This instance's series, read back from the exported families."""
        owned = set(self._series)
        durations = {k[:4] for k in owned}
        for family, keys, uid in ((exported.PROBE_TOTAL, owned, True),
                                  (exported.PROBE_DURATION, durations, False)):
            for metric in family.collect():
                for s in metric.samples:
                    labels = s.labels
                    key = (labels["probe_type"], labels["container"], labels["pod"],
                           labels["namespace"], *((labels["pod_uid"],) if uid else ()))
                    if key in keys and not s.name.endswith("_created"):
                        yield Sample(s.name, dict(labels), float(s.value))

    def lateness_quantiles(self, *qs: float) -> list[float]:
        data = sorted(self.lateness)
        if not data:
            return [0.0 for _ in qs]
        return [data[min(len(data) - 1, int(q * len(data)))] for q in qs]


# The agent's one set of probe metrics.
metrics = ProbeMetrics()


def samples() -> Iterator[Sample]:
    """Every probe series, for the /metrics/probes endpoint."""
    return metrics.samples()
