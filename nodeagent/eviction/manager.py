"""The eviction manager: watches the node's signals, reports pressure
conditions, refuses pods the node cannot take, and evicts one pod at a time
when a threshold is crossed (k8s pkg/kubelet/eviction/eviction_manager.go).

The manager decides; the caller carries out: `evict(pod, result)` terminates
the pod and writes its status (phase Failed, reason and message from the
result), `reclaim(signal)` frees node-level disk (image and container GC).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from nodeagent.api.times import format_time
from nodeagent.api.types import Pod, PodCondition, Toleration
from nodeagent.cgroups.qos import BEST_EFFORT, pod_qos_class
from nodeagent.eviction import ranking
from nodeagent.eviction.messages import REASON, admission_message, eviction_message
from nodeagent.eviction.ranking import PodUsage, StatsFunc, is_critical
from nodeagent.eviction.signals import Observation, SignalReader
from nodeagent.eviction.thresholds import (
    IMAGEFS_AVAILABLE, IMAGEFS_INODES_FREE, MEMORY_AVAILABLE, NODEFS_AVAILABLE,
    NODEFS_INODES_FREE, PID_AVAILABLE, EvictionConfig, Threshold,
)
from nodeagent.metrics import kubelet as metrics

log = structlog.get_logger("nodeagent.eviction")

MONITORING_INTERVAL = 10.0          # kubelet: evictionMonitoringPeriod
HARD_EVICTION_GRACE_SECONDS = 1     # immediateEvictionGracePeriodSeconds
POD_CLEANUP_TIMEOUT = 30.0          # podCleanupTimeout
POD_CLEANUP_POLL = 1.0              # podCleanupPollFreq

MEMORY_PRESSURE = "MemoryPressure"
DISK_PRESSURE = "DiskPressure"
PID_PRESSURE = "PIDPressure"
CONDITION_TYPES = (MEMORY_PRESSURE, DISK_PRESSURE, PID_PRESSURE)

SIGNAL_CONDITION = {
    MEMORY_AVAILABLE: MEMORY_PRESSURE,
    NODEFS_AVAILABLE: DISK_PRESSURE, NODEFS_INODES_FREE: DISK_PRESSURE,
    IMAGEFS_AVAILABLE: DISK_PRESSURE, IMAGEFS_INODES_FREE: DISK_PRESSURE,
    PID_AVAILABLE: PID_PRESSURE,
}
DISK_SIGNALS = (NODEFS_AVAILABLE, NODEFS_INODES_FREE, IMAGEFS_AVAILABLE, IMAGEFS_INODES_FREE)
_BINARY_SIGNALS = (MEMORY_AVAILABLE, NODEFS_AVAILABLE, IMAGEFS_AVAILABLE)

# pkg/kubelet/nodestatus/setters.go: (status, reason, message) per condition.
_CONDITION_TEXT = {
    (MEMORY_PRESSURE, False): ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    (MEMORY_PRESSURE, True): ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
    (DISK_PRESSURE, False): ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    (DISK_PRESSURE, True): ("KubeletHasDiskPressure", "kubelet has disk pressure"),
    (PID_PRESSURE, False): ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    (PID_PRESSURE, True): ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
}

MEMORY_PRESSURE_TAINT = "node.kubernetes.io/memory-pressure"

def eviction_samples() -> list[tuple[dict[str, str], int]]:
    """Samples of kubelet_evictions (served on /metrics), one per signal that evicted a pod."""
    return [({"eviction_signal": s.labels["eviction_signal"]}, int(s.value))
            for family in metrics.EVICTIONS.collect() for s in family.samples if s.name.endswith("_total")]


@dataclass(frozen=True)
class EvictionResult:
    """What the caller writes into the evicted pod's status."""
    signal: str
    reason: str                 # "Evicted": status.reason, with phase Failed
    message: str                # status.message
    grace_seconds: int          # termination grace period override
    condition: PodCondition     # DisruptionTarget, reason TerminationByKubelet
    annotations: dict[str, str] = field(default_factory=dict)  # the kubelet's event annotations


@dataclass(frozen=True)
class AdmitResult:
    admit: bool
    reason: str = ""
    message: str = ""

    @property
    def status_message(self) -> str:
        """The rejected pod's status.message (kubelet rejectPod)."""
        return f"Pod was rejected: {self.message}"


@dataclass(frozen=True)
class NodeCondition:
    type: str
    status: str
    reason: str
    message: str
    last_heartbeat_time: str
    last_transition_time: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "status": self.status,
                "lastHeartbeatTime": self.last_heartbeat_time,
                "lastTransitionTime": self.last_transition_time,
                "reason": self.reason, "message": self.message}


def thresholds_met(thresholds: Sequence[Threshold], observations: dict[str, Observation],
                   enforce_min_reclaim: bool) -> list[Threshold]:
    """thresholdsMet: signal < value (+ min reclaim while reclaiming)."""
    met = []
    for t in thresholds:
        obs = observations.get(t.signal)
        if obs is None:
            continue
        quantity = t.value.resolve(obs.capacity)
        if enforce_min_reclaim and t.min_reclaim is not None:
            quantity += t.min_reclaim.resolve(obs.capacity)
        if quantity > obs.available:
            met.append(t)
    return met


def _tolerates_memory_pressure(tolerations: Sequence[Toleration]) -> bool:
    for t in tolerations:
        if t.effect and t.effect != "NoSchedule":
            continue
        if t.operator == "Exists":
            if not t.key or t.key == MEMORY_PRESSURE_TAINT:
                return True
        elif t.key == MEMORY_PRESSURE_TAINT and not t.value:
            return True
    return False


class EvictionManager:
    """One per agent. `run()` until cancelled; `admit()` before a pod starts;
    `conditions()` for the node status.

    active_pods: the pods admitted and not yet terminated.
    pod_stats: a pod's usage now (or a coroutine giving it), None when not
        measured; asked once per pod in a round where a pod must go.
    evict: terminates the pod (waits for it) and writes its status.
    reclaim: frees node-level disk for a disk signal before pods are evicted.
    pod_cleaned_up: True once an evicted pod's resources are gone; the next
        round waits for it (at most 30 s), as the kubelet does.
    reserved_memory: systemReserved + kubeReserved memory in bytes; pods below
        their requests are evicted only when the system uses more than this.
    """

    def __init__(self, config: EvictionConfig, *,
                 active_pods: Callable[[], Sequence[Pod]],
                 pod_stats: Callable[[Pod], PodUsage | None | Awaitable[PodUsage | None]],
                 evict: Callable[[Pod, EvictionResult], Awaitable[None]],
                 signals: SignalReader | None = None,
                 reclaim: Callable[[str], Awaitable[None]] | None = None,
                 pod_cleaned_up: Callable[[Pod], bool] | None = None,
                 reserved_memory: int = 0,
                 monitoring_interval: float = MONITORING_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.active_pods = active_pods
        self.pod_stats = pod_stats
        self.evict = evict
        self.signals = signals or SignalReader()
        self.reclaim = reclaim
        self.pod_cleaned_up = pod_cleaned_up
        self.reserved_memory = reserved_memory
        self.monitoring_interval = monitoring_interval
        self.clock = clock
        self.observations: dict[str, Observation] = {}
        self._first_observed: dict[Threshold, float] = {}
        self._conditions_last_observed: dict[str, float] = {}
        self._thresholds_met: list[Threshold] = []
        self._pressure: list[str] = []
        started = format_time(time.time())
        self._transitions = {c: (False, started) for c in CONDITION_TYPES}

    # -- queries ----------------------------------------------------------

    def under_pressure(self, condition: str) -> bool:
        return condition in self._pressure

    def conditions(self) -> list[NodeCondition]:
        """MemoryPressure, DiskPressure, PIDPressure as the kubelet reports them."""
        now = format_time(time.time())
        result = []
        for ctype in CONDITION_TYPES:
            pressure, since = self._transitions[ctype]
            reason, message = _CONDITION_TEXT[(ctype, pressure)]
            result.append(NodeCondition(ctype, "True" if pressure else "False", reason, message,
                                        now, since))
        return result

    def admit(self, pod: Pod) -> AdmitResult:
        """Admit: under memory pressure only BestEffort pods are refused (unless
        they tolerate the memory-pressure taint); under other pressure every
        pod; critical pods always pass."""
        if not self._pressure or is_critical(pod):
            return AdmitResult(True)
        if self._pressure == [MEMORY_PRESSURE]:
            if pod_qos_class(pod) != BEST_EFFORT or _tolerates_memory_pressure(pod.spec.tolerations):
                return AdmitResult(True)
        log.info("pod refused under node pressure", pod=pod.full_name, pod_uid=pod.metadata.uid,
                 conditions=self._pressure)
        return AdmitResult(False, REASON, admission_message(self._pressure))

    # -- the loop -----------------------------------------------------------

    async def run(self) -> None:
        """Synchronise every monitoring interval; after an eviction wait for the
        pod to be cleaned up and look again at once."""
        while True:
            try:
                evicted = await self.synchronize()
            except asyncio.CancelledError:
                raise
            except Exception:  # never take the agent down with it
                log.exception("eviction manager: synchronize failed")
                evicted = None
            if evicted is not None and self.pod_cleaned_up is not None:
                await self._wait_cleanup(evicted)
            else:
                await asyncio.sleep(self.monitoring_interval)

    async def _wait_cleanup(self, pod: Pod) -> None:
        deadline = self.clock() + POD_CLEANUP_TIMEOUT
        while self.clock() < deadline:
            await asyncio.sleep(min(POD_CLEANUP_POLL, self.monitoring_interval))
            if self.pod_cleaned_up is not None and self.pod_cleaned_up(pod):
                return
        log.info("eviction manager: timed out waiting for pod cleanup", pod=pod.full_name)

    async def synchronize(self) -> Pod | None:
        """One round (kubelet synchronize); returns the evicted pod, if any."""
        if not self.config.thresholds:
            return None
        pods = list(self.active_pods())
        observations = await self.signals.observe()
        self.observations = observations
        now = self.clock()

        met = thresholds_met(self.config.thresholds, observations, False)
        if self._thresholds_met:  # still reclaiming down to value + minimum reclaim
            for t in thresholds_met(self._thresholds_met, observations, True):
                if t not in met:
                    met.append(t)
        first_observed = {t: self._first_observed.get(t, now) for t in met}
        for t in met:
            self._conditions_last_observed[SIGNAL_CONDITION[t.signal]] = now
        period = self.config.pressure_transition_period
        pressure = [c for c in CONDITION_TYPES
                    if c in self._conditions_last_observed
                    and now - self._conditions_last_observed[c] < period]
        if not period:  # no transition period: pressure is what is met now
            pressure = [c for c in CONDITION_TYPES if any(SIGNAL_CONDITION[t.signal] == c for t in met)]
        active = [t for t, at in first_observed.items() if now - at >= t.grace_period]

        self._set_pressure(pressure)
        self._first_observed = first_observed
        self._thresholds_met = active
        if not active:
            return None

        active.sort(key=lambda t: 0 if t.signal == MEMORY_AVAILABLE else 1)  # byEvictionPriority
        threshold = active[0]
        resource = ranking.RESOURCE[threshold.signal]
        log.info("eviction manager: attempting to reclaim", resource=resource,
                 signal=threshold.signal, threshold=str(threshold))

        if threshold.signal in DISK_SIGNALS and self.reclaim is not None:
            if await self._reclaim_node(threshold.signal):
                log.info("eviction manager: reduced pressure without evicting pods",
                         resource=resource)
                return None

        if not pods:
            log.error("eviction manager: thresholds met, but no pods are active to evict")
            return None
        stats_cache: dict[str, PodUsage | None] = {}
        for p in pods:  # once per round, only when something must go
            usage = self.pod_stats(p)
            stats_cache[p.metadata.uid] = await usage if inspect.isawaitable(usage) else usage

        def stats(pod: Pod) -> PodUsage | None:
            return stats_cache.get(pod.metadata.uid)

        ranked = ranking.rank(threshold.signal, pods, stats)
        log.info("eviction manager: pods ranked for eviction",
                 pods=[p.full_name for p in ranked])
        candidates = [p for p in ranked if not is_critical(p)]
        for p in ranked:
            if is_critical(p):
                log.info("eviction manager: cannot evict a critical pod", pod=p.full_name)
        if not candidates:
            log.info("eviction manager: unable to evict any pods from the node")
            return None
        pod = candidates[0]
        if resource == "memory" and not self._may_evict_within_requests(pod, pods, stats,
                                                                         observations):
            return None

        result = self._result(threshold, resource, pod, stats(pod), active, observations)
        log.warning("evicting pod", pod=pod.full_name, pod_uid=pod.metadata.uid,
                    signal=threshold.signal, message=result.message)
        try:
            await self.evict(pod, result)
        except Exception:
            log.exception("eviction manager: pod failed to evict", pod=pod.full_name)
        metrics.record_eviction(threshold.signal)
        return pod

    def _set_pressure(self, pressure: list[str]) -> None:
        if pressure != self._pressure:
            log.info("eviction manager: node conditions", pressure=pressure)
        self._pressure = pressure
        wall = format_time(time.time())
        for ctype in CONDITION_TYPES:
            on = ctype in pressure
            if self._transitions[ctype][0] != on:
                self._transitions[ctype] = (on, wall)

    async def _reclaim_node(self, signal: str) -> bool:
        """reclaimNodeLevelResources: GC, then True if every threshold is now
        clear by its minimum reclaim."""
        try:
            await self.reclaim(signal)  # type: ignore[misc]
        except Exception as exc:
            log.info("eviction manager: node reclaim failed", signal=signal, error=str(exc))
        observations = await self.signals.observe()
        return not thresholds_met(self.config.thresholds, observations, True)

    def _may_evict_within_requests(self, pod: Pod, pods: Sequence[Pod], stats: StatsFunc,
                                   observations: dict[str, Observation]) -> bool:
        """A pod that uses no more than it requested is evicted only when the
        system daemons use more than their reservation (kubelet docs)."""
        usage = stats(pod)
        if usage is None or ranking.memory_exceeds_request(pod, usage):
            return True
        node = observations.get(MEMORY_AVAILABLE)
        if node is None:
            return False
        pods_usage = sum((s.memory_working_set_bytes or 0)
                         for s in (stats(p) for p in pods) if s is not None)
        system = node.used - pods_usage
        if system > self.reserved_memory:
            return True
        log.info("eviction manager: not evicting pods within their requests; system usage "
                 "is within its reservation", system_bytes=system,
                 reserved_bytes=self.reserved_memory, pod=pod.full_name)
        return False

    def _result(self, threshold: Threshold, resource: str, pod: Pod, usage: PodUsage | None,
                active: list[Threshold], observations: dict[str, Observation]) -> EvictionResult:
        # getThresholdMetInfo: the first active threshold for the same resource.
        quantity = available = None
        for t in active:
            if ranking.RESOURCE[t.signal] == resource and t.signal in observations:
                obs = observations[t.signal]
                quantity, available = t.value.resolve(obs.capacity), obs.available
                break
        per_container: dict[str, int] | None = None
        if usage is not None and resource in ("memory", "ephemeral-storage"):
            per_container = {}
            for c in usage.containers:
                used = (c.memory_working_set_bytes if resource == "memory"
                        else c.ephemeral_storage_bytes)
                if used is not None:
                    per_container[c.name] = used
        message, annotations = eviction_message(resource, pod, quantity, available,
                                                threshold.signal in _BINARY_SIGNALS,
                                                per_container)
        if threshold.hard:
            grace = HARD_EVICTION_GRACE_SECONDS
        else:
            grace = self.config.max_pod_grace_period
        condition = PodCondition(type="DisruptionTarget", status="True",
                                 last_transition_time=format_time(time.time()),
                                 reason="TerminationByKubelet", message=message)
        return EvictionResult(threshold.signal, REASON, message, grace, condition, annotations)
