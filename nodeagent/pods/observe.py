"""What the runtime says about one pod, as typed values.

The worker decides from this and only this (plus the spec), so an agent
restart loses nothing: everything that matters is in CRI labels,
annotations and states (kubelet.md 7.5).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import NotFoundError
from nodeagent.cri.pb import api_pb2 as pb

POD_UID_LABEL = "io.kubernetes.pod.uid"
HASH_ANNOTATION = "io.kubernetes.container.hash"
GRACE_ANNOTATION = "io.kubernetes.pod.terminationGracePeriod"
# The CrashLoopBackOff state carried by the container it delayed, so it
# survives agent restarts: the delay that applies after this container
# exits, and the exit time it counts from.
BACKOFF_ANNOTATION = "nodeagent.io/restart-backoff-seconds"
BACKOFF_SINCE_ANNOTATION = "nodeagent.io/restart-backoff-since"

SANDBOX_READY = pb.PodSandboxState.SANDBOX_READY
CREATED = pb.ContainerState.CONTAINER_CREATED
RUNNING = pb.ContainerState.CONTAINER_RUNNING
EXITED = pb.ContainerState.CONTAINER_EXITED
UNKNOWN = pb.ContainerState.CONTAINER_UNKNOWN


@dataclass(frozen=True)
class SandboxInfo:
    id: str
    attempt: int
    state: int  # pb.PodSandboxState
    created_at: int  # ns since the epoch
    ips: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return self.state == SANDBOX_READY


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    sandbox_id: str
    attempt: int
    state: int  # pb.ContainerState
    created_at: int
    started_at: int
    finished_at: int
    exit_code: int
    reason: str
    message: str
    image: str
    image_ref: str
    annotations: dict[str, str] = field(hash=False, compare=False)

    @property
    def spec_hash(self) -> str:
        return self.annotations.get(HASH_ANNOTATION, "")


@dataclass(frozen=True)
class ObservedPod:
    uid: str
    sandboxes: tuple[SandboxInfo, ...]  # newest first
    containers: tuple[ContainerInfo, ...]  # newest first

    @property
    def sandbox(self) -> SandboxInfo | None:
        return self.sandboxes[0] if self.sandboxes else None

    def instances(self, name: str) -> list[ContainerInfo]:
        """All instances of a spec container, newest first, across sandboxes."""
        return [c for c in self.containers if c.name == name]

    def latest(self, name: str, sandbox_id: str | None = None) -> ContainerInfo | None:
        for c in self.containers:
            if c.name == name and (sandbox_id is None or c.sandbox_id == sandbox_id):
                return c
        return None

    @property
    def running_containers(self) -> list[ContainerInfo]:
        return [c for c in self.containers if c.state in (RUNNING, CREATED, UNKNOWN)]

    @property
    def state_key(self) -> StateKey:
        """What the relister compares: every object's id and state."""
        return frozenset([*((s.id, s.state) for s in self.sandboxes),
                          *((c.id, c.state) for c in self.containers)])


StateKey = frozenset[tuple[str, int]]


class PodObserver:
    """Observes one pod, asking CRI again only for what can change: a sandbox's
    IPs and an exited container's status never do, so they are cached."""

    def __init__(self, cri: CRIClient, uid: str) -> None:
        self.cri = cri
        self.uid = uid
        self._ips: dict[str, tuple[str, ...]] = {}
        self._exited: dict[str, ContainerInfo] = {}

    async def observe(self) -> ObservedPod:
        selector = {POD_UID_LABEL: self.uid}
        sandboxes, containers = await asyncio.gather(
            self.cri.list_pod_sandbox(pb.PodSandboxFilter(label_selector=selector)),
            self.cri.list_containers(pb.ContainerFilter(label_selector=selector)))
        sandboxes.sort(key=lambda s: s.created_at, reverse=True)
        infos = []
        for i, s in enumerate(sandboxes):
            ips: tuple[str, ...] = ()
            if i == 0 and s.state == SANDBOX_READY:
                try:
                    ips = await self.sandbox_ips(s.id)
                except NotFoundError:
                    continue
            infos.append(SandboxInfo(s.id, s.metadata.attempt, s.state, s.created_at, ips))
        statuses = await asyncio.gather(*(self._container(c.id, c.pod_sandbox_id) for c in containers))
        live = {c.id for c in containers}
        self._exited = {k: v for k, v in self._exited.items() if k in live}
        self._ips = {k: v for k, v in self._ips.items() if k in {s.id for s in sandboxes}}
        ordered = sorted((s for s in statuses if s is not None), key=lambda c: c.created_at, reverse=True)
        return ObservedPod(self.uid, tuple(infos), tuple(ordered))

    async def with_new_sandbox(self, observed: ObservedPod, sandbox_id: str) -> ObservedPod:
        """`observed` plus a sandbox just created (newest, so first)."""
        status = (await self.cri.pod_sandbox_status(sandbox_id)).status
        self._ips[sandbox_id] = _ips(status.network)
        info = SandboxInfo(sandbox_id, status.metadata.attempt, status.state, status.created_at,
                           self._ips[sandbox_id])
        return ObservedPod(self.uid, (info, *observed.sandboxes), observed.containers)

    async def sandbox_ips(self, sandbox_id: str) -> tuple[str, ...]:
        if sandbox_id not in self._ips:
            self._ips[sandbox_id] = _ips((await self.cri.pod_sandbox_status(sandbox_id)).status.network)
        return self._ips[sandbox_id]

    async def with_containers(self, observed: ObservedPod,
                              created: list[tuple[str, str]]) -> ObservedPod:
        """`observed` plus containers just created, as (container id, sandbox id):
        their status is all that changed, so no relist."""
        infos = await asyncio.gather(*(self._container(cid, sid) for cid, sid in created))
        merged = sorted([*(i for i in infos if i is not None), *observed.containers],
                        key=lambda c: c.created_at, reverse=True)
        return ObservedPod(self.uid, observed.sandboxes, tuple(merged))

    async def _container(self, container_id: str, sandbox_id: str) -> ContainerInfo | None:
        cached = self._exited.get(container_id)
        if cached is not None:
            return cached
        info = await _container_info(self.cri, container_id, sandbox_id)
        if info is not None and info.state == EXITED:
            self._exited[container_id] = info
        return info


def _ips(network: pb.PodSandboxNetworkStatus) -> tuple[str, ...]:
    """Primary IP first, then the additional ones (one per family)."""
    return tuple(ip for ip in [network.ip, *(a.ip for a in network.additional_ips)] if ip)


async def _container_info(cri: CRIClient, container_id: str, sandbox_id: str) -> ContainerInfo | None:
    try:
        s = (await cri.container_status(container_id)).status
    except NotFoundError:  # removed between list and status
        return None
    return ContainerInfo(
        id=container_id, name=s.metadata.name, sandbox_id=sandbox_id, attempt=s.metadata.attempt,
        state=s.state, created_at=s.created_at, started_at=s.started_at,
        finished_at=s.finished_at, exit_code=s.exit_code, reason=s.reason, message=s.message,
        image=s.image.image, image_ref=s.image_ref, annotations=dict(s.annotations))
