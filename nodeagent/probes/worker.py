"""One probe worker per (container, probe type): kubelet prober/worker.go.

It ticks every periodSeconds (the first tick after a random fraction of a
period, so hundreds of pods do not probe in lockstep), runs the probe only
when the kubelet would (container running, past initialDelaySeconds,
startup gating), and changes the cached result only after failureThreshold
failures / successThreshold successes in a row.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import TYPE_CHECKING

import structlog

from nodeagent.api.types import Container, Probe
from nodeagent.events import WARNING, record_event
from nodeagent.probes import handlers
from nodeagent.probes.handlers import Outcome, Result
from nodeagent.probes.metrics import metrics

if TYPE_CHECKING:
    from nodeagent.probes.manager import ContainerView, PodProbes

log = structlog.get_logger("nodeagent.probes")

LIVENESS, READINESS, STARTUP = "Liveness", "Readiness", "Startup"
# What the cache holds for a new container before any probe decided.
INITIAL = {LIVENESS: Result.SUCCESS, READINESS: Result.FAILURE, STARTUP: Result.UNKNOWN}


# A period has this many start slots: the jittered first tick is rounded to one,
# so the workers of one slot wake the agent once and run together (their gRPC
# and HTTP completions then share wake-ups too: ~2 probes a slot cost 10 %
# less CPU each than lone ones, ~8 a slot 30 % less; docs/bench.md), while
# the pods still spread over 20 phases and never probe in lockstep.
SLOTS_PER_PERIOD = 20


def first_tick(now: float, period: float) -> float:
    """The kubelet's random initial delay (up to one period), on the slot grid."""
    slot = period / SLOTS_PER_PERIOD
    return math.ceil((now + random.random() * period) / slot) * slot


async def sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """asyncio.sleep to an absolute loop time: workers of one slot get timers
    with the same deadline, which the loop runs in one pass."""
    woken = loop.create_future()
    timer = loop.call_at(when, _wake, woken)
    try:
        await woken
    finally:
        timer.cancel()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ProbeWorker:
    def __init__(self, owner: PodProbes, kind: str, container: Container, probe: Probe) -> None:
        self.owner = owner
        self.kind = kind
        self.container = container
        self.probe = probe
        self.container_id = ""
        self.on_hold = False  # after a liveness/startup verdict, until a new container
        self.last_result: Result | None = None
        self.result_run = 0
        self._log = log.bind(pod=owner.pod_full_name, pod_uid=owner.pod_uid,
                             container=container.name, probe=kind)
        self.series = metrics.series(probe_type=kind, container=container.name, pod=owner.pod_name,
                                     namespace=owner.namespace, pod_uid=owner.pod_uid)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        period = float(self.probe.period_seconds or 10)
        due = first_tick(loop.time(), period)
        while True:
            if due > loop.time():
                await sleep_until(loop, due)
            try:
                keep = await self.tick(lateness=loop.time() - due)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not stop probing the pod
                self._log.exception("probe worker failed", error=repr(exc))
                keep = True
            if not keep:
                return
            due += period
            now = loop.time()
            if due < now:  # the probe outlasted its period: skip the missed ticks, like a Go ticker
                due += period * ((now - due) // period + 1)

    async def tick(self, lateness: float = 0.0) -> bool:
        """kubelet doProbe; False stops the worker."""
        owner = self.owner
        if owner.terminal:
            return False
        c = owner.containers.get(self.container.name)
        if c is None:
            return True
        if c.id != self.container_id:
            if self.container_id:
                owner.cache(self.kind).pop(self.container_id, None)
            self.container_id = c.id
            owner.cache(self.kind)[c.id] = INITIAL[self.kind]
            self.on_hold = False
            self.last_result, self.result_run = None, 0
        if self.on_hold:
            return True
        if not c.running:
            owner.set_result(self.kind, self.container.name, c.id, Result.FAILURE)
            return True
        if time.time() - c.started_at < self.probe.initial_delay_seconds:
            return True
        started = owner.started(self.container.name, c.id)
        if (self.kind == STARTUP) == started:
            return True  # startup runs only until started; the others only after
        metrics.observe_lateness(lateness)
        begin = time.monotonic()
        outcome = await self.execute(c)
        self.report(outcome, time.monotonic() - begin)
        if outcome.result == Result.UNKNOWN:
            return True  # the prober could not run: the result is thrown away
        if outcome.result == self.last_result:
            self.result_run += 1
        else:
            self.last_result, self.result_run = outcome.result, 1
        if ((outcome.result == Result.FAILURE and self.result_run < self.probe.failure_threshold)
                or (outcome.result == Result.SUCCESS
                    and self.result_run < self.probe.success_threshold)):
            return True
        owner.set_result(self.kind, self.container.name, c.id, outcome.result)
        if self.kind in (LIVENESS, STARTUP) and outcome.result == Result.FAILURE:
            self.on_hold = True
            self.result_run = 0
        return True

    async def execute(self, c: ContainerView) -> Outcome:
        probe, timeout = self.probe, float(self.probe.timeout_seconds or 1)
        pod_ip = self.owner.pod_ip
        try:
            if probe.exec is not None:
                return await handlers.run_exec(self.owner.cri, c.id, probe.exec.command, timeout)
            if probe.grpc is not None:
                if not pod_ip:
                    return Outcome(Result.UNKNOWN, "pod has no IP yet")
                return await handlers.run_grpc(pod_ip, probe.grpc.port, probe.grpc.service or "",
                                               timeout)
            if probe.http_get is not None:
                action = probe.http_get
                host = action.host or pod_ip
                if not host:
                    return Outcome(Result.UNKNOWN, "pod has no IP yet")
                port = handlers.resolve_port(action.port, self.container)
                url = handlers.build_url(action, host, port)
                return await handlers.run_http(url, handlers.request_headers(action), timeout)
            if probe.tcp_socket is not None:
                host = probe.tcp_socket.host or pod_ip
                if not host:
                    return Outcome(Result.UNKNOWN, "pod has no IP yet")
                port = handlers.resolve_port(probe.tcp_socket.port, self.container)
                return await handlers.run_tcp(host, port, timeout)
        except handlers.PortError as exc:
            return Outcome(Result.UNKNOWN, str(exc))
        return Outcome(Result.UNKNOWN, "missing probe handler")

    def report(self, outcome: Outcome, seconds: float) -> None:
        """Metrics, the debug log and the kubelet's events for one probe run."""
        self.series.observe(outcome.result.value, seconds)
        self._log.debug("probe", result=outcome.result.value, ms=round(seconds * 1000, 1))
        if outcome.result == Result.FAILURE:
            self._event("Unhealthy", f"{self.kind} probe failed: {outcome.message}")
        elif outcome.result == Result.UNKNOWN:
            self._event("Unhealthy", f"{self.kind} probe errored: {outcome.message}")
        elif outcome.warning:
            self._event("ProbeWarning", f"{self.kind} probe warning: {outcome.message}")

    def _event(self, reason: str, message: str) -> None:
        owner = self.owner
        record_event(namespace=owner.namespace, pod=owner.pod_name, pod_uid=owner.pod_uid,
                     container=self.container.name, type=WARNING, reason=reason, message=message)
