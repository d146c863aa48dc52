"""Noticing runtime changes (the kubelet's PLEG) by relisting.

The relister lists sandboxes and containers and tells the worker of each pod
whose objects appeared, vanished or changed state; the worker syncs only if
that is not what it last observed itself (its own actions cause most
changes).

When is a relist due? As soon as the runtime's event stream (cri.events)
reports a container exit or removal, and every `evented_period` (1 s, the
kubelet's generic PLEG period) for everything else. Without events (a
runtime that has none, or while the stream is broken) every `period`, 100 ms,
so that an exit is still noticed within ~100 ms; but two List calls ten
times a second cost a few % of a core with 110 pods.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError
from nodeagent.cri.events import ContainerEvents, EventsUnsupported
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.metrics import kubelet as metrics
from nodeagent.pods.observe import POD_UID_LABEL, StateKey
from nodeagent.waiting import wait_event

log = structlog.get_logger("nodeagent.pods")

_STATE_NAMES = {pb.ContainerState.CONTAINER_CREATED: "created",
                pb.ContainerState.CONTAINER_RUNNING: "running",
                pb.ContainerState.CONTAINER_EXITED: "exited"}
_SANDBOX_READY = pb.PodSandboxState.SANDBOX_READY  # an attribute lookup per sandbox otherwise
_SANDBOX_NOTREADY = pb.PodSandboxState.SANDBOX_NOTREADY
_EXITED = pb.ContainerState.CONTAINER_EXITED
# containerd reports a deleted task just before its CRI plugin records the exit, so
# a relist right after the event can still show the container running: relist
# again after 10, 20, 40 … ms until it shows the exit, for at most this long.
EXIT_SETTLE = 2.0
FIRST_RETRY = 0.01
RELIST_THRESHOLD = 180.0  # kubelet genericPlegRelistThreshold: unhealthy after 3 min
POLL_PERIOD = 0.1  # seconds between relists without runtime events
# With events: the kubelet's generic PLEG period. It bounds what the event
# stream does not carry (objects created or started behind the agent's back,
# an event lost while resubscribing) and how stale kubelet_running_pods and
# kubelet_running_containers may be.
EVENTED_PERIOD = 1.0


class Relister:
    def __init__(self, cri: CRIClient, on_change: Callable[[str, StateKey], None],
                 period: float = POLL_PERIOD, evented_period: float = EVENTED_PERIOD) -> None:
        self.cri = cri
        self.on_change = on_change
        self.period = period
        self.evented_period = evented_period
        self.events = ContainerEvents(cri, self._runtime_event, self._events_live)
        self._due = asyncio.Event()  # relist now: the runtime reported a change
        self._exits: dict[str, float] = {}  # reported exits not yet listed -> when reported
        self._retry = FIRST_RETRY
        self.last_relist = time.monotonic()
        self._seen: dict[str, tuple[str, int]] = {}  # object id -> (pod uid, state)
        self._relisted = False
        self.relists = 0  # completed relists (kubelet_pleg_relist_duration_seconds_count)
        # For kubelet_running_pods / kubelet_running_containers{container_state}.
        self.running_pods = 0
        self.container_states: dict[str, int] = {}

    def state_of(self, uid: str) -> StateKey | None:
        """The pod's objects as last relisted; None before the first relist."""
        if not self._relisted:
            return None
        return frozenset((key, state) for key, (owner, state) in self._seen.items() if owner == uid)

    def healthy(self) -> tuple[bool, str]:
        age = time.monotonic() - self.last_relist
        if age > RELIST_THRESHOLD:
            return False, f"pleg was last seen active {age:.0f}s ago; threshold is {RELIST_THRESHOLD:.0f}s"
        return True, ""

    async def relist(self) -> None:
        started = time.monotonic()
        sandboxes, containers = await asyncio.gather(self.cri.list_pod_sandbox(),
                                                     self.cri.list_containers())
        current = {s.id: (s.labels.get(POD_UID_LABEL, ""), s.state) for s in sandboxes}
        current.update({c.id: (c.labels.get(POD_UID_LABEL, ""), c.state) for c in containers})
        changed = {uid for key, (uid, state) in current.items()
                   if self._seen.get(key) != (uid, state)}
        changed |= {uid for key, (uid, _) in self._seen.items() if key not in current}
        self._seen = current
        if self._exits:
            self._settle_exits(current, {s.id for s in sandboxes})
        self.running_pods = sum(1 for s in sandboxes if s.state == _SANDBOX_READY)
        states: dict[str, int] = {}
        for c in containers:
            name = _STATE_NAMES.get(c.state, "unknown")
            states[name] = states.get(name, 0) + 1
        self.container_states = states
        self._relisted = True
        self.relists += 1
        now = time.monotonic()
        metrics.observe_pleg_relist(now - started, now - self.last_relist)
        self.last_relist = now
        if not changed:
            return
        by_pod: dict[str, set[tuple[str, int]]] = {uid: set() for uid in changed if uid}
        for key, (uid, state) in current.items():
            if uid in by_pod:
                by_pod[uid].add((key, state))
        for uid, objects in by_pod.items():
            self.on_change(uid, frozenset(objects))

    def _settle_exits(self, current: dict[str, tuple[str, int]], sandbox_ids: set[str]) -> None:
        now = time.monotonic()
        for object_id, since in list(self._exits.items()):
            listed = current.get(object_id)
            ended = _SANDBOX_NOTREADY if object_id in sandbox_ids else _EXITED
            if listed is None or listed[1] == ended or now - since > EXIT_SETTLE:
                del self._exits[object_id]

    def _runtime_event(self, object_id: str) -> None:
        if object_id:
            self._exits.setdefault(object_id, time.monotonic())
            self._retry = FIRST_RETRY
        self._due.set()

    def _next_relist_in(self) -> float:
        if self._exits:
            self._retry, wait = min(self._retry * 2, 0.5), self._retry
            return wait
        return self.evented_period if self.events.live else self.period

    def _events_live(self, live: bool) -> None:
        if live:
            log.info("following the runtime's container events", relist_s=self.evented_period)
        else:
            log.info("runtime container events lost; relisting often", relist_s=self.period)
        self._due.set()  # cover the gap (going live) or resume polling at once

    async def _follow_events(self) -> None:
        try:
            await self.events.follow()
        except EventsUnsupported as exc:
            log.info("the runtime offers no container events; relisting often", relist_s=self.period,
                     reason=str(exc))

    async def run(self) -> None:
        follower = asyncio.ensure_future(self._follow_events())
        try:
            while True:
                self._due.clear()
                try:
                    await self.relist()
                except CRIError as exc:
                    log.warning("relist failed", error=str(exc))
                    await asyncio.sleep(1.0)
                await wait_event(self._due, self._next_relist_in())
        finally:
            follower.cancel()
