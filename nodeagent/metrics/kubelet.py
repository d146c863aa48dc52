"""The /metrics families (k/k pkg/kubelet/metrics/metrics.go) and the calls
that feed them.

Other modules import the hook they need and call it; nothing here knows the
callers:
  * `observe_cri_call(method, seconds, error)`: a `CRIClient` observer.
  * `observe_pod_worker(operation_type, seconds)`: one pod sync (create/update/sync).
  * `observe_pod_start(seconds, pulling_seconds)`: first seen -> running.
  * `observe_cgroup_operation(operation_type, seconds)`: cgroups manager
    (operation_type create/update/destroy, as the kubelet).
  * `observe_network_operation(operation_type, seconds, error)`: CNI
    (operation_type add/del/check/status).
  * `record_eviction(signal)`: the eviction manager.
  * `set_runtime_counts(counts)`: the relister's running pods/containers.
  * `observe_rest_request(verb, host, code, seconds)`: a `KubeClient` observer
    (client-go's rest_client_* families).
  * `observe_pod_status_sync(seconds)`: one pod status PATCH.
  * `observe_pleg_relist(seconds, interval)`: one relist, and the time since
    the one before.

One deviation: Prometheus' client appends `_total` to counters, so the
kubelet's `kubelet_evictions` is `kubelet_evictions_total` here (promtool
refuses counters without it; see docs/decisions.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

import nodeagent.metrics  # noqa: F401  (disables _created series)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

# kubelet metrics.go buckets
POD_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360,
                     480, 600, 900, 1200, 1800, 2700, 3600)
RUNTIME_OP_BUCKETS = tuple(0.005 * 2.5 ** i for i in range(14))  # ExponentialBuckets(.005, 2.5, 14)
DEF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

NODE_NAME = Gauge("kubelet_node_name", "The node's name. The count is always 1.", ["node"],
                  registry=REGISTRY)
POD_START = Histogram(
    "kubelet_pod_start_duration_seconds",
    "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
    buckets=POD_START_BUCKETS, registry=REGISTRY)
POD_START_SLI = Histogram(
    "kubelet_pod_start_sli_duration_seconds",
    "Duration in seconds to start a pod, excluding time to pull images and run init containers, "
    "measured from pod creation timestamp to when all its containers are reported as started "
    "and observed via watch",
    buckets=POD_START_BUCKETS, registry=REGISTRY)
POD_WORKER = Histogram(
    "kubelet_pod_worker_duration_seconds",
    "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
    ["operation_type"], buckets=DEF_BUCKETS, registry=REGISTRY)
RUNTIME_OPS = Counter("kubelet_runtime_operations_total",
                      "Cumulative number of runtime operations by operation type.",
                      ["operation_type"], registry=REGISTRY)
RUNTIME_OP_DURATION = Histogram(
    "kubelet_runtime_operations_duration_seconds",
    "Duration in seconds of runtime operations. Broken down by operation type.",
    ["operation_type"], buckets=RUNTIME_OP_BUCKETS, registry=REGISTRY)
RUNTIME_OP_ERRORS = Counter(
    "kubelet_runtime_operations_errors_total",
    "Cumulative number of runtime operation errors by operation type.",
    ["operation_type"], registry=REGISTRY)
EVICTIONS = Counter("kubelet_evictions",
                    "Cumulative number of pod evictions by eviction signal",
                    ["eviction_signal"], registry=REGISTRY)
OOM_SCORE_ADJ_RESTRICTED = Gauge(
    "nodeagent_oom_score_adj_restricted",
    "1 when this host cannot set negative oom_score_adj (no CAP_SYS_RESOURCE): Guaranteed and "
    "node-critical containers then get 0 instead of -997.", registry=REGISTRY)
CGROUP_OPS = Histogram(
    "kubelet_cgroup_manager_duration_seconds",
    "Duration in seconds for cgroup manager operations. Broken down by method.",
    ["operation_type"], buckets=DEF_BUCKETS, registry=REGISTRY)
NETWORK_OPS = Histogram(
    "kubelet_network_plugin_operations_duration_seconds",
    "Latency in seconds of network plugin operations. Broken down by operation type.",
    ["operation_type"], buckets=DEF_BUCKETS, registry=REGISTRY)
NETWORK_OP_ERRORS = Counter(
    "kubelet_network_plugin_operations_errors_total",
    "Cumulative number of network plugin operation errors by operation type.",
    ["operation_type"], registry=REGISTRY)
DEBUG_CALLS = Counter(
    "nodeagent_cri_debug_socket_requests_total",
    "Calls forwarded by the CRI debug socket, by method and gRPC status code.",
    ["method", "code"], registry=REGISTRY)
DEBUG_CALL_DURATION = Histogram(
    "nodeagent_cri_debug_socket_request_duration_seconds",
    "Duration in seconds of calls forwarded by the CRI debug socket (runtime time included).",
    ["method"], buckets=RUNTIME_OP_BUCKETS, registry=REGISTRY)

REST_REQUESTS = Counter(
    "rest_client_requests",
    "Number of HTTP requests, partitioned by status code, method, and host.",
    ["code", "method", "host"], registry=REGISTRY)
REST_DURATION = Histogram(
    "rest_client_request_duration_seconds",
    "Request latency in seconds. Broken down by verb, and host.",
    ["verb", "host"], buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0),
    registry=REGISTRY)
POD_STATUS_SYNC = Histogram(
    "kubelet_pod_status_sync_duration_seconds",
    "Duration in seconds to sync a pod status update. Measures time from detection of a change to "
    "pod status until the API is successfully updated for that pod, even if multiple intevening "
    "changes to pod status occur.",
    buckets=(0.010, 0.050, 0.100, 0.500, 1, 5, 10, 20, 30, 45, 60), registry=REGISTRY)
PLEG_RELIST = Histogram(
    "kubelet_pleg_relist_duration_seconds", "Duration in seconds for relisting pods in PLEG.",
    buckets=DEF_BUCKETS, registry=REGISTRY)
PLEG_RELIST_INTERVAL = Histogram(
    "kubelet_pleg_relist_interval_seconds",
    "Interval in seconds between relisting in PLEG.", buckets=DEF_BUCKETS, registry=REGISTRY)
PLEG_LAST_SEEN = Gauge(
    "kubelet_pleg_last_seen_seconds", "Timestamp in seconds when PLEG was last seen active.",
    registry=REGISTRY)

# The kubelet's instrumented runtime service names operations in snake case
# (k/k pkg/kubelet/kuberuntime/instrumented_services.go).
_OPERATION_NAMES = {
    "RunPodSandbox": "run_podsandbox", "StopPodSandbox": "stop_podsandbox",
    "RemovePodSandbox": "remove_podsandbox", "PodSandboxStatus": "podsandbox_status",
    "ListPodSandbox": "list_podsandbox", "UpdateContainerResources": "update_container",
    "PodSandboxStats": "podsandbox_stats", "ListPodSandboxStats": "list_podsandbox_stats",
}


def operation_type(method: str) -> str:
    """CRI method name -> the kubelet's operation_type label (ListContainers -> list_containers)."""
    name = _OPERATION_NAMES.get(method)
    if name is None:
        name = _OPERATION_NAMES[method] = re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()
    return name


# CRI method -> its (operations, duration) series: every CRI call lands here
# (each exec probe, each relist), so the label lookups are done once.
_cri_series: dict[str, tuple[Any, Any]] = {}


def observe_cri_call(method: str, seconds: float, error: str | None) -> None:
    """A `CRIClient` observer (nodeagent.cri.client.CallObserver)."""
    series = _cri_series.get(method)
    if series is None:
        op = operation_type(method)
        series = _cri_series[method] = (RUNTIME_OPS.labels(op), RUNTIME_OP_DURATION.labels(op))
    series[0].inc()
    series[1].observe(seconds)
    if error is not None:
        RUNTIME_OP_ERRORS.labels(operation_type(method)).inc()


def observe_pod_worker(operation: str, seconds: float) -> None:
    POD_WORKER.labels(operation).observe(seconds)


def observe_pleg_relist(seconds: float, interval: float) -> None:
    PLEG_RELIST.observe(seconds)
    PLEG_RELIST_INTERVAL.observe(interval)
    PLEG_LAST_SEEN.set(time.time())


def observe_pod_start(seconds: float, pulling_seconds: float = 0.0) -> None:
    """A pod ran for the first time `seconds` after the agent first saw it;
    the SLI leaves out the time spent pulling images."""
    POD_START.observe(seconds)
    POD_START_SLI.observe(max(seconds - pulling_seconds, 0.0))


def observe_cgroup_operation(operation: str, seconds: float) -> None:
    CGROUP_OPS.labels(operation).observe(seconds)


def observe_network_operation(operation: str, seconds: float, error: bool = False) -> None:
    NETWORK_OPS.labels(operation).observe(seconds)
    if error:
        NETWORK_OP_ERRORS.labels(operation).inc()


def set_oom_score_adj_restricted(restricted: bool) -> None:
    OOM_SCORE_ADJ_RESTRICTED.set(1 if restricted else 0)


def record_eviction(signal: str) -> None:
    EVICTIONS.labels(signal).inc()


def observe_debug_call(method: str, code: str, seconds: float) -> None:
    DEBUG_CALLS.labels(method, code).inc()
    DEBUG_CALL_DURATION.labels(method).observe(seconds)


def set_node_name(node: str) -> None:
    NODE_NAME.labels(node).set(1)


CONTAINER_STATES = ("created", "running", "exited", "unknown")


class RuntimeCounts(Collector):
    """kubelet_running_pods / kubelet_running_containers, read at scrape time
    from a provider (the relister's last view: no CRI call per scrape)."""

    def __init__(self, provider: Callable[[], tuple[int, dict[str, int]]]) -> None:
        self.provider = provider

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pods, containers = self.provider()
        yield GaugeMetricFamily("kubelet_running_pods",
                                "Number of pods that have a running pod sandbox", value=pods)
        family = GaugeMetricFamily("kubelet_running_containers",
                                   "Number of containers currently running",
                                   labels=["container_state"])
        for state in CONTAINER_STATES:
            family.add_metric([state], containers.get(state, 0))
        yield family


_runtime_counts: RuntimeCounts | None = None


def set_runtime_counts(provider: Callable[[], tuple[int, dict[str, int]]]) -> None:
    """Where kubelet_running_pods/containers come from (set once by the agent)."""
    global _runtime_counts
    if _runtime_counts is None:
        _runtime_counts = RuntimeCounts(provider)
        REGISTRY.register(_runtime_counts)
    else:
        _runtime_counts.provider = provider


def observe_rest_request(verb: str, host: str, code: str, seconds: float) -> None:
    """A `KubeClient` observer: client-go's request metrics."""
    REST_REQUESTS.labels(code, verb, host).inc()
    REST_DURATION.labels(verb, host).observe(seconds)


def observe_pod_status_sync(seconds: float) -> None:
    POD_STATUS_SYNC.observe(seconds)
