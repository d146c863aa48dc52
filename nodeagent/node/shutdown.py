"""Graceful node shutdown (kubelet nodeshutdown manager, v1.31 semantics).

The kubelet learns of a shutdown from logind's PrepareForShutdown. nodeagent
runs as a systemd service ordered after containerd, so systemd stops it
(SIGTERM) before the runtime during a shutdown: SIGTERM is the signal, and
the pods are terminated then, group by group in ascending priority, while
the runtime still runs. `systemctl restart nodeagent` also sends SIGTERM but
must leave pods running, as a kubelet restart does, so under systemd the
agent asks whether the manager itself is stopping (see docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from nodeagent.api import times
from nodeagent.api.types import Pod, PodCondition
from nodeagent.eviction.manager import AdmitResult, EvictionResult
from nodeagent.eviction.ranking import SYSTEM_CRITICAL_PRIORITY, pod_priority

log = structlog.get_logger("nodeagent.shutdown")

# pkg/kubelet/nodeshutdown/nodeshutdown_manager.go
SHUTDOWN_REASON = "Terminated"
SHUTDOWN_MESSAGE = "Pod was terminated in response to imminent node shutdown."
NOT_ADMITTED_REASON = "NodeShutdown"
NOT_ADMITTED_MESSAGE = "Pod was rejected as the node is shutting down."
NODE_SHUTTING_DOWN = "node is shutting down"  # the Ready condition's message
SYSTEMCTL_TIMEOUT = 2.0


@dataclass(frozen=True)
class ShutdownGroup:
    """Pods with priority >= `priority` (up to the next group) get this long."""
    priority: int
    grace_seconds: int


def shutdown_groups(grace_period: float, critical_pods: float,
                    by_priority: Sequence[tuple[int, int]] = ()) -> list[ShutdownGroup]:
    """kubelet migrateConfig: shutdownGracePeriod/…CriticalPods become two
    priority groups; none at all (empty) means the feature is off."""
    if by_priority:
        return sorted((ShutdownGroup(p, s) for p, s in by_priority), key=lambda g: g.priority)
    if grace_period <= 0:
        return []
    regular = int(grace_period - critical_pods)
    return [ShutdownGroup(0, regular), ShutdownGroup(SYSTEM_CRITICAL_PRIORITY, int(critical_pods))]


def group_pods(groups: Sequence[ShutdownGroup], pods: Sequence[Pod]) -> list[list[Pod]]:
    """kubelet groupByPriority: each pod into the highest group whose priority
    it reaches; below the lowest group counts as the lowest."""
    out: list[list[Pod]] = [[] for _ in groups]
    priorities = [g.priority for g in groups]
    for pod in pods:
        index = bisect.bisect_right(priorities, pod_priority(pod)) - 1
        out[max(index, 0)].append(pod)
    return out


def pod_grace(pod: Pod, group: ShutdownGroup) -> int:
    """The group's period, or the pod's own terminationGracePeriodSeconds when shorter."""
    own = pod.spec.termination_grace_period_seconds
    return own if own is not None and own <= group.grace_seconds else group.grace_seconds


def shutdown_result(grace_seconds: int) -> EvictionResult:
    """What a pod terminated for the shutdown shows: Failed, reason Terminated,
    and a DisruptionTarget condition (TerminationByKubelet)."""
    condition = PodCondition(type="DisruptionTarget", status="True", last_transition_time=times.now(),
                             reason="TerminationByKubelet", message=SHUTDOWN_MESSAGE)
    return EvictionResult("", SHUTDOWN_REASON, SHUTDOWN_MESSAGE, grace_seconds, condition)


async def systemd_is_stopping(systemd_dir: Path = Path("/run/systemd/system"),
                              systemctl: str = "systemctl") -> bool | None:
    """Whether SIGTERM means the node goes down. None: not booted with systemd
    (then SIGTERM is the only news of a shutdown, so it counts as one)."""
    if not systemd_dir.is_dir():
        return None
    try:
        proc = await asyncio.create_subprocess_exec(
            systemctl, "is-system-running", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
    except OSError as exc:
        log.warning("cannot ask systemd whether the node shuts down; pods keep running", error=str(exc))
        return False
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), SYSTEMCTL_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.warning("systemctl is-system-running did not answer; pods keep running")
        return False
    return out.decode(errors="replace").strip() == "stopping"


class NodeShutdownManager:
    """Terminates the pods group by group; refuses new pods meanwhile."""

    def __init__(self, groups: Sequence[ShutdownGroup], *, active_pods: Callable[[], list[Pod]],
                 kill: Callable[[Pod, EvictionResult], Awaitable[None]]) -> None:
        self.groups = list(groups)
        self.active_pods = active_pods
        self.kill = kill
        self.shutting_down = False

    @property
    def enabled(self) -> bool:
        return bool(self.groups)

    def admit(self, pod: Pod) -> AdmitResult | None:
        if self.shutting_down:
            return AdmitResult(False, NOT_ADMITTED_REASON, NOT_ADMITTED_MESSAGE)
        return None

    def errors(self) -> list[str]:
        """For the node's Ready condition (kubelet ShutdownStatus)."""
        return [NODE_SHUTTING_DOWN] if self.shutting_down else []

    async def shutdown(self) -> None:
        """kubelet processShutdownEvent: each group's pods are killed in
        parallel; the next group starts when they are gone or the group's
        period is over."""
        self.shutting_down = True
        pods = self.active_pods()
        total = sum(g.grace_seconds for g in self.groups)
        log.info("node shutting down: terminating pods", pods=len(pods), grace_seconds=total)
        started: list[asyncio.Future[None]] = []
        for group, members in zip(self.groups, group_pods(self.groups, pods)):
            if not members:
                continue
            log.info("terminating pods of a shutdown group", priority=group.priority,
                     grace_seconds=group.grace_seconds, pods=[p.full_name for p in members])
            kills = [asyncio.ensure_future(self.kill(p, shutdown_result(pod_grace(p, group)))) for p in members]
            started += kills
            await asyncio.sleep(0)  # every kill has begun, even with a period of 0
            _, late = await asyncio.wait(kills, timeout=group.grace_seconds)
            if late:
                log.warning("shutdown group's period is over; going on", priority=group.priority,
                            grace_seconds=group.grace_seconds, still_running=len(late))
        for kill in started:  # only the waiting: the pods' termination goes on in their workers
            kill.cancel()
        log.info("node shutdown: pods terminated")
