"""/metrics/resource and /metrics/cadvisor from one stats snapshot.

/metrics/resource is what metrics-server scrapes (kubectl top): names, labels
and explicit sample timestamps as k/k pkg/kubelet/metrics/collectors/
resource_metrics.go. /metrics/cadvisor carries the cheap cAdvisor series: per
container cpu/memory/start time with cAdvisor's labels (id, name, image,
container, pod, namespace), the pod netns' network counters, machine size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

import nodeagent.metrics  # noqa: F401  (disables _created series)
from nodeagent import hostinfo
from nodeagent.metrics.stats import Snapshot

CPL = ["container", "pod", "namespace"]
PL = ["pod", "namespace"]


class _Families:
    """A collector-shaped wrapper so prometheus_client can render a list of families."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def render(families: Iterable[Metric]) -> bytes:
    return generate_latest(_Families(families))  # type: ignore[arg-type]


def resource_families(snap: Snapshot) -> Iterator[Metric]:
    node_cpu = CounterMetricFamily("node_cpu_usage_seconds", "Cumulative cpu time consumed by "
                                   "the node in core-seconds")
    node_mem = GaugeMetricFamily("node_memory_working_set_bytes",
                                 "Current working set of the node in bytes")
    node = snap.node
    if node.cpu_seconds is not None:
        node_cpu.add_metric([], node.cpu_seconds, timestamp=node.timestamp)
    if node.memory_working_set is not None:
        node_mem.add_metric([], node.memory_working_set, timestamp=node.timestamp)
    c_cpu = CounterMetricFamily("container_cpu_usage_seconds", "Cumulative cpu time consumed by "
                                "the container in core-seconds", labels=CPL)
    c_mem = GaugeMetricFamily("container_memory_working_set_bytes",
                              "Current working set of the container in bytes", labels=CPL)
    c_start = GaugeMetricFamily("container_start_time_seconds",
                                "Start time of the container since unix epoch in seconds",
                                labels=CPL)
    p_cpu = CounterMetricFamily("pod_cpu_usage_seconds", "Cumulative cpu time consumed by the "
                                "pod in core-seconds", labels=PL)
    p_mem = GaugeMetricFamily("pod_memory_working_set_bytes",
                              "Current working set of the pod in bytes", labels=PL)
    for pod in snap.pods:
        if pod.usage.cpu_seconds is not None:
            p_cpu.add_metric([pod.name, pod.namespace], pod.usage.cpu_seconds,
                             timestamp=pod.usage.timestamp)
        if pod.usage.memory_working_set is not None:
            p_mem.add_metric([pod.name, pod.namespace], pod.usage.memory_working_set,
                             timestamp=pod.usage.timestamp)
        for c in pod.containers:
            labels = [c.name, pod.name, pod.namespace]
            u = c.usage
            if u.cpu_seconds is not None:
                c_cpu.add_metric(labels, u.cpu_seconds, timestamp=u.timestamp)
            if u.memory_working_set is not None:
                c_mem.add_metric(labels, u.memory_working_set, timestamp=u.timestamp)
            c_start.add_metric(labels, c.start_time, timestamp=u.timestamp)
    error = 1 if snap.error else 0
    scrape = GaugeMetricFamily("scrape_error", "1 if there was an error while getting container "
                               "metrics, 0 otherwise (deprecated, use resource_scrape_error)",
                               value=error)
    resource_scrape = GaugeMetricFamily("resource_scrape_error", "1 if there was an error while "
                                        "getting container metrics, 0 otherwise", value=error)
    yield from (node_cpu, node_mem, c_cpu, c_mem, c_start, p_cpu, p_mem, scrape, resource_scrape)


CADVISOR = ["container", "id", "image", "name", "namespace", "pod"]


def cadvisor_families(snap: Snapshot, cgroup_prefix: str = "") -> Iterator[Metric]:
    cpu = CounterMetricFamily("container_cpu_usage_seconds", "Cumulative cpu time consumed in "
                              "seconds.", labels=[*CADVISOR, "cpu"])
    ws = GaugeMetricFamily("container_memory_working_set_bytes", "Current working set in bytes.",
                           labels=CADVISOR)
    usage = GaugeMetricFamily("container_memory_usage_bytes", "Current memory usage in bytes, "
                              "including all memory regardless of when it was accessed",
                              labels=CADVISOR)
    rss = GaugeMetricFamily("container_memory_rss", "Size of RSS in bytes.", labels=CADVISOR)
    start = GaugeMetricFamily("container_start_time_seconds", "Start time of the container "
                              "since unix epoch in seconds.", labels=CADVISOR)
    net_labels = [*CADVISOR, "interface"]
    rx = CounterMetricFamily("container_network_receive_bytes", "Cumulative count of bytes "
                             "received", labels=net_labels)
    tx = CounterMetricFamily("container_network_transmit_bytes", "Cumulative count of bytes "
                             "transmitted", labels=net_labels)
    rx_err = CounterMetricFamily("container_network_receive_errors", "Cumulative count of "
                                 "errors encountered while receiving", labels=net_labels)
    tx_err = CounterMetricFamily("container_network_transmit_errors", "Cumulative count of "
                                 "errors encountered while transmitting", labels=net_labels)
    for pod in snap.pods:
        for c in pod.containers:
            labels = [c.name, f"{cgroup_prefix}/{c.id}", c.image, c.id, pod.namespace, pod.name]
            u = c.usage
            if u.cpu_seconds is not None:
                cpu.add_metric([*labels, "total"], u.cpu_seconds, timestamp=u.timestamp)
            for family, value in ((ws, u.memory_working_set), (usage, u.memory_usage),
                                  (rss, u.memory_rss)):
                if value is not None:
                    family.add_metric(labels, value, timestamp=u.timestamp)
            start.add_metric(labels, c.start_time, timestamp=u.timestamp)
        # cAdvisor reports the pod's network on its sandbox ("POD") container.
        labels = ["POD", pod.sandbox_id, "", pod.sandbox_id, pod.namespace, pod.name]
        for i in pod.interfaces:
            for family, value in ((rx, i.rx_bytes), (tx, i.tx_bytes), (rx_err, i.rx_errors),
                                  (tx_err, i.tx_errors)):
                family.add_metric([*labels, i.name], value, timestamp=pod.usage.timestamp)
    yield from (cpu, ws, usage, rss, start, rx, tx, rx_err, tx_err)
    yield GaugeMetricFamily("machine_cpu_cores", "Number of logical CPU cores.",
                            value=hostinfo.cpu_capacity_millis() // 1000)
    yield GaugeMetricFamily("machine_memory_bytes", "Amount of memory installed on the machine.",
                            value=hostinfo.memory_capacity_bytes())
