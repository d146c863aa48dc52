"""Probe metrics as the kubelet's /metrics/probes names them (kubelet.md 9.3).

Kept here as plain counters so the metrics endpoint (prometheus-client)
can be wired in without this package depending on it: `samples()` yields
every series. Lateness (actual start - scheduled start) is kept for the
benchmark and the debug log, not exported.
"""

from __future__ import annotations

import bisect
import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass

import structlog

from nodeagent.metrics import probes as exported  # /metrics/probes (prometheus-client)

log = structlog.get_logger("nodeagent.probes")

PROBE_TOTAL = "prober_probe_total"
PROBE_DURATION = "prober_probe_duration_seconds"
# prometheus-client's default buckets (the kubelet uses the library default too).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

Labels = tuple[tuple[str, str], ...]
LATENESS_LOG_PERIOD = 30.0  # seconds between "probe lateness" summaries in the log


@dataclass(frozen=True)
class Sample:
    """One exposition line: name{labels} value."""
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class _Histogram:
    buckets: list[int]
    total: float = 0.0
    count: int = 0


class ProbeMetrics:
    def __init__(self, lateness_window: int = 20000) -> None:
        self.totals: dict[Labels, int] = {}
        self.durations: dict[Labels, _Histogram] = {}
        self.lateness: collections.deque[float] = collections.deque(maxlen=lateness_window)
        self._window: list[float] = []
        self._window_start = time.monotonic()

    def observe(self, *, probe_type: str, result: str, container: str, pod: str, namespace: str,
                pod_uid: str, seconds: float) -> None:
        """One probe run. Duration is observed for successful and unknown runs
        only, as the kubelet does."""
        key: Labels = (("probe_type", probe_type), ("result", result), ("container", container),
                       ("pod", pod), ("namespace", namespace), ("pod_uid", pod_uid))
        self.totals[key] = self.totals.get(key, 0) + 1
        exported.observe_probe(probe_type, result, seconds=seconds, container=container, pod=pod,
                               namespace=namespace, pod_uid=pod_uid)
        if result != "failed":
            dkey: Labels = (("probe_type", probe_type), ("container", container), ("pod", pod),
                            ("namespace", namespace))
            hist = self.durations.get(dkey)
            if hist is None:
                hist = self.durations[dkey] = _Histogram([0] * len(DURATION_BUCKETS))
            index = bisect.bisect_left(DURATION_BUCKETS, seconds)
            if index < len(DURATION_BUCKETS):
                hist.buckets[index] += 1
            hist.total += seconds
            hist.count += 1

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

    def forget_pod(self, namespace: str, pod: str) -> None:
        """The kubelet deletes a pod's series when its probe workers stop."""
        def keep(labels: Labels) -> bool:
            d = dict(labels)
            return not (d["pod"] == pod and d["namespace"] == namespace)
        for labels in [k for k in self.totals if not keep(k)]:
            d = dict(labels)
            exported.forget_probe(d["probe_type"], container=d["container"], pod=pod,
                                  namespace=namespace, pod_uid=d["pod_uid"])
        self.totals = {k: v for k, v in self.totals.items() if keep(k)}
        self.durations = {k: v for k, v in self.durations.items() if keep(k)}

    def samples(self) -> Iterator[Sample]:
        for labels, value in self.totals.items():
            yield Sample(PROBE_TOTAL, dict(labels), float(value))
        for labels, hist in self.durations.items():
            base = dict(labels)
            cumulative = 0
            for bound, n in zip(DURATION_BUCKETS, hist.buckets, strict=True):
                cumulative += n
                yield Sample(f"{PROBE_DURATION}_bucket", {**base, "le": f"{bound:g}"}, float(cumulative))
            yield Sample(f"{PROBE_DURATION}_bucket", {**base, "le": "+Inf"}, float(hist.count))
            yield Sample(f"{PROBE_DURATION}_sum", base, hist.total)
            yield Sample(f"{PROBE_DURATION}_count", base, float(hist.count))

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
