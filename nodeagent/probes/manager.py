"""A pod's probe workers and their results (kubelet prober_manager + results cache).

The pod worker tells it what runs (`update`, after each sync) and asks it
what the probes decided: ready and started per container instance for the
status, and which containers failed liveness/startup and must be killed.
A changed verdict wakes the pod worker through `on_change`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from nodeagent.api.types import Container, Pod
from nodeagent.cri.client import CRIClient
from nodeagent.probes.handlers import Result
from nodeagent.probes.metrics import metrics
from nodeagent.probes.worker import LIVENESS, READINESS, STARTUP, ProbeWorker


@dataclass(frozen=True)
class ContainerView:
    """The latest instance of a spec container, as the prober needs it."""
    id: str
    running: bool
    started_at: float  # seconds since the epoch


@dataclass(frozen=True)
class KillVerdict:
    """A container the probes condemned: kubelet computePodActions' message."""
    kind: str  # Liveness | Startup
    message: str
    grace_seconds: int | None  # probe-level terminationGracePeriodSeconds


def has_probes(pod: Pod) -> bool:
    return any(c.liveness_probe or c.readiness_probe or c.startup_probe
               for c in [*pod.spec.init_containers, *pod.spec.containers])


class PodProbes:
    def __init__(self, pod: Pod, cri: CRIClient, on_change: Callable[[], None]) -> None:
        self.cri = cri
        self.pod_uid = pod.metadata.uid
        self.pod_name = pod.metadata.name
        self.namespace = pod.metadata.namespace
        self.pod_full_name = pod.full_name
        self.restart_policy = pod.spec.restart_policy
        self.on_change = on_change
        self.containers: dict[str, ContainerView] = {}
        self.pod_ip = ""
        self.terminal = False
        self._results: dict[str, dict[str, Result]] = {LIVENESS: {}, READINESS: {}, STARTUP: {}}
        self._specs: dict[str, Container] = {}
        self.workers: list[ProbeWorker] = []
        for c in [*pod.spec.init_containers, *pod.spec.containers]:
            for kind, probe in ((LIVENESS, c.liveness_probe), (READINESS, c.readiness_probe),
                                (STARTUP, c.startup_probe)):
                if probe is not None:
                    self._specs[c.name] = c
                    self.workers.append(ProbeWorker(self, kind, c, probe))
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(w.run()) for w in self.workers]

    async def stop(self) -> None:
        """Stop probing (pod terminating or gone); its metric series go too."""
        self.terminal = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        metrics.forget_pod(self.namespace, self.pod_name, self.pod_uid)

    def update(self, containers: dict[str, ContainerView], pod_ip: str) -> None:
        self.containers = containers
        self.pod_ip = pod_ip

    # -- results ------------------------------------------------------------

    def cache(self, kind: str) -> dict[str, Result]:
        return self._results[kind]

    def set_result(self, kind: str, name: str, container_id: str, result: Result) -> None:
        cache = self._results[kind]
        if cache.get(container_id) != result:
            cache[container_id] = result
            self.on_change()

    def started(self, name: str, container_id: str) -> bool:
        """containerStatus.started: true once running when there is no startup probe."""
        spec = self._specs.get(name)
        if spec is None or spec.startup_probe is None:
            return True
        return self._results[STARTUP].get(container_id) == Result.SUCCESS

    def ready(self, name: str, container_id: str) -> bool:
        spec = self._specs.get(name)
        if spec is None or spec.readiness_probe is None:
            return True
        return self._results[READINESS].get(container_id, Result.FAILURE) == Result.SUCCESS

    def kill_verdict(self, name: str, container_id: str) -> KillVerdict | None:
        spec = self._specs.get(name)
        if spec is None:
            return None
        restart = "" if self.restart_policy == "Never" and spec.restart_policy != "Always" \
            else ", will be restarted"
        if self._results[LIVENESS].get(container_id) == Result.FAILURE and spec.liveness_probe:
            return KillVerdict(LIVENESS, f"Container {name} failed liveness probe{restart}",
                               spec.liveness_probe.termination_grace_period_seconds)
        if self._results[STARTUP].get(container_id) == Result.FAILURE and spec.startup_probe:
            return KillVerdict(STARTUP, f"Container {name} failed startup probe{restart}",
                               spec.startup_probe.termination_grace_period_seconds)
        return None
