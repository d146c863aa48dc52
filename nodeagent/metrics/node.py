"""Node series from psutil on /metrics (node_exporter-like names, a small set;
memory in snake case, e.g. node_memory_available_bytes, which promtool wants):
cpu time per mode, memory, load, the filesystems of the agent's dirs, network.

The kubelet gets these from cAdvisor's machine stats; node_exporter names
make existing dashboards work. Each scrape reads a few /proc files (~1 ms).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


MEMORY_FIELDS = ("total", "available", "free", "buffers", "cached")


class NodeCollector(Collector):
    def __init__(self, paths: Sequence[str] = ()) -> None:
        self.paths = list(paths)  # the filesystems holding these are reported

    def describe(self) -> Iterator[Metric]:
        """The families without reading anything: registering the collector
        (on the event loop) would otherwise run collect(), with its /proc
        reads and statvfs calls, there."""
        yield from _families().values()

    def collect(self) -> Iterator[Metric]:
        f = _families()
        for n, times in enumerate(psutil.cpu_times(percpu=True)):
            for mode, value in times._asdict().items():
                f["cpu"].add_metric([str(n), mode], value)
        vm = psutil.virtual_memory()
        for name in MEMORY_FIELDS:
            f[name].add_metric([], getattr(vm, name, 0))
        for minutes, value in zip((1, 5, 15), os.getloadavg()):
            f[f"load{minutes}"].add_metric([], value)
        seen = set()
        for path in self.paths:
            try:
                mount = _mountpoint(path)
                if mount in seen:
                    continue
                usage = psutil.disk_usage(mount)
            except OSError:
                continue
            seen.add(mount)
            f["size"].add_metric([mount], usage.total)
            f["avail"].add_metric([mount], usage.free)
        for device, counters in psutil.net_io_counters(pernic=True).items():
            f["rx"].add_metric([device], counters.bytes_recv)
            f["tx"].add_metric([device], counters.bytes_sent)
        yield from f.values()


def _families() -> dict[str, Metric]:
    """Empty families, in exposition order; collect() fills them."""
    families: dict[str, Metric] = {
        "cpu": CounterMetricFamily("node_cpu_seconds", "Seconds the CPUs spent in each mode.",
                                   labels=["cpu", "mode"])}
    for name in MEMORY_FIELDS:
        families[name] = GaugeMetricFamily(f"node_memory_{name}_bytes", f"Memory {name} in bytes "
                                           "(/proc/meminfo).", labels=[])
    for minutes in (1, 5, 15):
        families[f"load{minutes}"] = GaugeMetricFamily(f"node_load{minutes}", f"{minutes}m load average.",
                                                       labels=[])
    families["size"] = GaugeMetricFamily("node_filesystem_size_bytes", "Filesystem size in bytes.",
                                         labels=["mountpoint"])
    families["avail"] = GaugeMetricFamily("node_filesystem_avail_bytes", "Filesystem space available to "
                                          "non-root users in bytes.", labels=["mountpoint"])
    families["rx"] = CounterMetricFamily("node_network_receive_bytes", "Network device statistic "
                                         "receive_bytes.", labels=["device"])
    families["tx"] = CounterMetricFamily("node_network_transmit_bytes", "Network device statistic "
                                         "transmit_bytes.", labels=["device"])
    return families


def _mountpoint(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path
