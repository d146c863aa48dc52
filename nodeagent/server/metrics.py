"""HTTP handlers for /metrics, /metrics/{resource,cadvisor,probes,slis} and
/stats/summary, added to the read-only and the authenticated listeners.

Rendering runs in the executor: the process and node collectors read /proc.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import psutil
from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from nodeagent.api.times import format_time
from nodeagent.metrics import kubelet, probes
from nodeagent.metrics.resource import Family, cadvisor_families, labels, render, resource_families
from nodeagent.metrics.stats import PodStats, Snapshot, StatsProvider, Usage
from nodeagent.server.local import HealthCheck


class MetricsRoutes:
    def __init__(self, stats: StatsProvider, *, node_name: str, executor: Any = None,
                 checks: Callable[[], list[HealthCheck]] | None = None) -> None:
        self.stats = stats
        self.node_name = node_name
        self.executor = executor
        self.checks = checks
        self._bodies: dict[str, tuple[Snapshot, bytes]] = {}
        self._check_counts: dict[tuple[str, str], int] = {}

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/metrics/probes", self._probes)
        app.router.add_get("/metrics/resource", self._resource)
        app.router.add_get("/metrics/cadvisor", self._cadvisor)
        app.router.add_get("/metrics/slis", self._slis)
        app.router.add_get("/stats/summary", self._summary)
        app.router.add_get("/stats/summary/", self._summary)

    async def _render(self, fn: Any, *args: Any) -> web.Response:
        body = await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def _metrics(self, request: web.Request) -> web.Response:
        return await self._render(generate_latest, kubelet.REGISTRY)

    async def _probes(self, request: web.Request) -> web.Response:
        return await self._render(generate_latest, probes.REGISTRY)

    async def _resource(self, request: web.Request) -> web.Response:
        return await self._snapshot_text("resource", resource_families)

    async def _cadvisor(self, request: web.Request) -> web.Response:
        return await self._snapshot_text("cadvisor", cadvisor_families)

    async def _snapshot_text(self, kind: str, families: Any) -> web.Response:
        """Rendered once per snapshot: scrapes within the cache's age cost nothing more."""
        snap = await self.stats.get()
        cached = self._bodies.get(kind)
        if cached is None or cached[0] is not snap:
            body = await asyncio.get_running_loop().run_in_executor(  # cadvisor reads net/dev
                self.executor, lambda: render(families(snap)))
            cached = (snap, body)
            self._bodies[kind] = cached
        return web.Response(body=cached[1], headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def _slis(self, request: web.Request) -> web.Response:
        """component-base's SLI metrics over the healthz checks (evaluated per scrape)."""
        checks = [HealthCheck("ping", True), *(self.checks() if self.checks else [])]
        gauge = Family("kubernetes_healthcheck", "gauge",
                       "[STABLE] This metric records the result of a single healthcheck.")
        total = Family("kubernetes_healthchecks_total", "counter",
                       "[STABLE] This metric records the results of all healthcheck.")
        for check in checks:
            status = "success" if check.ok else "error"
            key = (check.name, status)
            self._check_counts[key] = self._check_counts.get(key, 0) + 1
            gauge.add(labels(("name", "type"), (check.name, "healthz")), 1 if check.ok else 0)
        for (name, status), count in sorted(self._check_counts.items()):
            total.add(labels(("name", "status", "type"), (name, status, "healthz")), count)
        return web.Response(body=render([gauge, total]),
                            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def _summary(self, request: web.Request) -> web.Response:
        snap = await self.stats.get()
        body = await asyncio.get_running_loop().run_in_executor(
            self.executor, summary, snap, self.stats.previous, self.node_name)
        return web.Response(text=json.dumps(body, separators=(",", ":")),
                            content_type="application/json")



def _nano_cores(now: Usage, before: Usage | None) -> int | None:
    if before is None or now.cpu_seconds is None or before.cpu_seconds is None:
        return None
    elapsed = now.timestamp - before.timestamp
    if elapsed <= 0:
        return None
    return max(int((now.cpu_seconds - before.cpu_seconds) / elapsed * 1e9), 0)


def _cpu(u: Usage, before: Usage | None) -> dict[str, Any]:
    out: dict[str, Any] = {"time": format_time(u.timestamp)}
    cores = _nano_cores(u, before)
    if cores is not None:
        out["usageNanoCores"] = cores
    if u.cpu_seconds is not None:
        out["usageCoreNanoSeconds"] = int(u.cpu_seconds * 1e9)
    return out


def _memory(u: Usage, available: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"time": format_time(u.timestamp)}
    for key, value in (("availableBytes", available), ("usageBytes", u.memory_usage),
                       ("workingSetBytes", u.memory_working_set), ("rssBytes", u.memory_rss),
                       ("pageFaults", u.page_faults), ("majorPageFaults", u.major_page_faults)):
        if value is not None:
            out[key] = value
    return out


def summary(snap: Snapshot, previous: Snapshot | None, node_name: str) -> dict[str, Any]:
    """The Summary API (k8s.io/kubelet/pkg/apis/stats/v1alpha1) as metrics-server reads it."""
    before_pods: dict[str, PodStats] = {p.uid: p for p in previous.pods} if previous else {}
    before_containers = {c.id: c.usage for p in before_pods.values() for c in p.containers}
    pods = []
    for pod in snap.pods:
        prior = before_pods.get(pod.uid)
        entry: dict[str, Any] = {
            "podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "startTime": format_time(pod.start_time),
            "containers": [{"name": c.name, "startTime": format_time(c.start_time),
                            "cpu": _cpu(c.usage, before_containers.get(c.id)),
                            "memory": _memory(c.usage)} for c in pod.containers],
            "cpu": _cpu(pod.usage, prior.usage if prior else None),
            "memory": _memory(pod.usage),
        }
        interfaces = pod.interfaces  # reads the netns' counters: once
        if interfaces:
            ifaces = [{"name": i.name, "rxBytes": i.rx_bytes, "rxErrors": i.rx_errors,
                       "txBytes": i.tx_bytes, "txErrors": i.tx_errors} for i in interfaces]
            entry["network"] = {"time": format_time(pod.usage.timestamp), **ifaces[0],
                                "interfaces": ifaces}
        pods.append(entry)
    node = snap.node
    vm = psutil.virtual_memory()
    return {"node": {"nodeName": node_name, "systemContainers": [],
                     "startTime": format_time(psutil.boot_time()),
                     "cpu": _cpu(node, previous.node if previous else None),
                     "memory": _memory(node, available=max(vm.total - (node.memory_working_set or 0), 0))},
            "pods": pods}
