"""Noticing runtime changes (the kubelet's PLEG) by relisting.

containerd 1.6 has no GetContainerEvents, so the relister lists sandboxes
and containers every `period` and tells the worker of each pod whose
objects appeared, vanished or changed state; the worker syncs only if that is
not what it last observed itself (its own actions cause most changes). At
100 ms (the kubelet relists every 1 s) an exit is noticed within ~100 ms for
two cheap List calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.pods.observe import POD_UID_LABEL, StateKey

log = structlog.get_logger("nodeagent.pods")

_STATE_NAMES = {pb.ContainerState.CONTAINER_CREATED: "created",
                pb.ContainerState.CONTAINER_RUNNING: "running",
                pb.ContainerState.CONTAINER_EXITED: "exited"}
_SANDBOX_READY = pb.PodSandboxState.SANDBOX_READY  # an attribute lookup per sandbox otherwise
RELIST_THRESHOLD = 180.0  # kubelet genericPlegRelistThreshold: unhealthy after 3 min


class Relister:
    def __init__(self, cri: CRIClient, on_change: Callable[[str, StateKey], None],
                 period: float = 0.1) -> None:
        self.cri = cri
        self.on_change = on_change
        self.period = period
        self.last_relist = time.monotonic()
        self._seen: dict[str, tuple[str, int]] = {}  # object id -> (pod uid, state)
        self._relisted = False
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
        sandboxes, containers = await asyncio.gather(self.cri.list_pod_sandbox(),
                                                     self.cri.list_containers())
        current = {s.id: (s.labels.get(POD_UID_LABEL, ""), s.state) for s in sandboxes}
        current.update({c.id: (c.labels.get(POD_UID_LABEL, ""), c.state) for c in containers})
        changed = {uid for key, (uid, state) in current.items()
                   if self._seen.get(key) != (uid, state)}
        changed |= {uid for key, (uid, _) in self._seen.items() if key not in current}
        self._seen = current
        self.running_pods = sum(1 for s in sandboxes if s.state == _SANDBOX_READY)
        states: dict[str, int] = {}
        for c in containers:
            name = _STATE_NAMES.get(c.state, "unknown")
            states[name] = states.get(name, 0) + 1
        self.container_states = states
        self._relisted = True
        self.last_relist = time.monotonic()
        if not changed:
            return
        by_pod: dict[str, set[tuple[str, int]]] = {uid: set() for uid in changed if uid}
        for key, (uid, state) in current.items():
            if uid in by_pod:
                by_pod[uid].add((key, state))
        for uid, objects in by_pod.items():
            self.on_change(uid, frozenset(objects))

    async def run(self) -> None:
        while True:
            try:
                await self.relist()
            except CRIError as exc:
                log.warning("relist failed", error=str(exc))
                await asyncio.sleep(1.0)
            await asyncio.sleep(self.period)
