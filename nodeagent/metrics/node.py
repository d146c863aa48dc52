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


class NodeCollector(Collector):
    def __init__(self, paths: Sequence[str] = ()) -> None:
        self.paths = list(paths)  # the filesystems holding these are reported

    def collect(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily("node_cpu_seconds", "Seconds the CPUs spent in each mode.",
                                  labels=["cpu", "mode"])
        for n, times in enumerate(psutil.cpu_times(percpu=True)):
            for mode, value in times._asdict().items():
                cpu.add_metric([str(n), mode], value)
        yield cpu
        vm = psutil.virtual_memory()
        for name, value in (("total", vm.total), ("available", vm.available), ("free", vm.free),
                            ("buffers", getattr(vm, "buffers", 0)),
                            ("cached", getattr(vm, "cached", 0))):
            yield GaugeMetricFamily(f"node_memory_{name}_bytes", f"Memory {name} in bytes "
                                    "(/proc/meminfo).", value=value)
        for minutes, value in zip((1, 5, 15), os.getloadavg()):
            yield GaugeMetricFamily(f"node_load{minutes}", f"{minutes}m load average.", value=value)
        size = GaugeMetricFamily("node_filesystem_size_bytes", "Filesystem size in bytes.",
                                 labels=["mountpoint"])
        avail = GaugeMetricFamily("node_filesystem_avail_bytes", "Filesystem space available to "
                                  "non-root users in bytes.", labels=["mountpoint"])
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
            size.add_metric([mount], usage.total)
            avail.add_metric([mount], usage.free)
        yield size
        yield avail
        rx = CounterMetricFamily("node_network_receive_bytes", "Network device statistic "
                                 "receive_bytes.", labels=["device"])
        tx = CounterMetricFamily("node_network_transmit_bytes", "Network device statistic "
                                 "transmit_bytes.", labels=["device"])
        for device, counters in psutil.net_io_counters(pernic=True).items():
            rx.add_metric([device], counters.bytes_recv)
            tx.add_metric([device], counters.bytes_sent)
        yield rx
        yield tx


def _mountpoint(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path
