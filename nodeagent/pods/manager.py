"""The desired set of pods, one worker each, and the runtime's orphans.

Pod sources report their full set; the manager starts workers for new pods,
asks workers of vanished pods to terminate, and (once every source has
reported) removes runtime pods nobody wants any more (housekeeping).
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog

from nodeagent.api.codec import encode
from nodeagent.api.types import Pod, PodStatus
from nodeagent.cgroups.fs import CgroupError
from nodeagent.cri.errors import CRIError, NotFoundError
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.eviction.manager import AdmitResult, EvictionResult
from nodeagent.events import WARNING, record_event
from nodeagent.metrics import kubelet as metrics
from nodeagent.node.capacity import NodeResources
from nodeagent.pods import volumes
from nodeagent.pods.admission import fits, insufficient
from nodeagent.pods.observe import GRACE_ANNOTATION, POD_UID_LABEL, StateKey
from nodeagent.pods.worker import PodWorker, WorkerDeps

log = structlog.get_logger("nodeagent.pods")

HOUSEKEEPING_PERIOD = 2.0  # kubelet housekeepingPeriod


class PodManager:
    def __init__(self, deps: WorkerDeps, *, max_pods: int = 110,
                 sources: Iterable[str] = ("file",)) -> None:
        self.deps = deps
        self.max_pods = max_pods
        self.pods: dict[str, Pod] = {}  # uid -> desired pod
        self.workers: dict[str, PodWorker] = {}  # includes terminating ones
        self.statuses: dict[str, PodStatus] = {}
        self.rejected: dict[str, PodStatus] = {}
        self._pending_sources = set(sources)
        self._by_source: dict[str, set[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._encoded: dict[str, tuple[Pod, PodStatus, dict[str, Any]]] = {}
        self._changes = 0  # bumped whenever a pod or a status changes
        # The relister's view of a pod's runtime objects (None: not relisted yet).
        self.runtime_state: Callable[[str], StateKey | None] | None = None
        self._view: tuple[int, list[dict[str, Any]]] | None = None
        # Admission beyond the pod count and resources (eviction, node shutdown).
        self.admit: Callable[[Pod], AdmitResult | None] | None = None
        self.allocatable: Callable[[], NodeResources | None] = lambda: None
        self._starting: dict[str, float] = {}  # uid -> when first seen, until it first runs
        # Told the uid whenever a pod's status changes or its worker ends (API status reporter).
        self.listeners: list[Callable[[str], None]] = []
        deps.on_status = self._on_status

    @property
    def sources_ready(self) -> bool:
        return not self._pending_sources

    # -- desired state --------------------------------------------------------

    def set_pods(self, source: str, pods: list[Pod]) -> None:
        """A source's complete current set (kubelet config SET operation)."""
        self._changes += 1
        wanted = {p.metadata.uid: p for p in pods}
        previous = self._by_source.get(source, set())
        self._by_source[source] = set(wanted)
        self._pending_sources.discard(source)
        for uid in previous - set(wanted):
            self._remove(uid)
        for uid, pod in wanted.items():
            if uid not in self.pods:
                self._add(pod)
            elif self.pods[uid] is not pod and self.pods[uid] != pod:  # sources resend unchanged pods
                self.pods[uid] = pod
                if uid in self.workers:
                    self.workers[uid].update(pod)
            self._honour_deletion(pod)
        self._cgroups_in_use()

    def _honour_deletion(self, pod: Pod) -> None:
        """A pod the API server is deleting (deletionTimestamp): terminate it
        with deletionGracePeriodSeconds; the reporter deletes it once stopped."""
        meta = pod.metadata
        worker = self.workers.get(meta.uid)
        if meta.deletion_timestamp is None or worker is None:
            return
        grace = meta.deletion_grace_period_seconds
        if not worker.terminating or (grace is not None and worker.grace_override is not None
                                      and grace < worker.grace_override):
            log.info("pod deleted in the API server, terminating", pod=pod.full_name, pod_uid=meta.uid,
                     grace_seconds=grace)
            worker.terminate(grace)

    def finished(self, uid: str) -> bool:
        """The pod is wanted by its source but nothing of it runs any more
        (terminated and cleaned up, or never started)."""
        worker = self.workers.get(uid)
        return uid in self.pods and (worker is None or worker.done.is_set())

    def _tell(self, uid: str) -> None:
        for listener in self.listeners:
            try:
                listener(uid)
            except Exception as exc:  # a reporter must never break the pod manager
                log.warning("pod listener failed", pod_uid=uid, error=repr(exc))

    def _cgroups_in_use(self) -> None:
        self.deps.cgroups.set_active_pods(w.pod for w in self.workers.values())

    def _add(self, pod: Pod) -> None:
        uid = pod.metadata.uid
        self.pods[uid] = pod
        self.statuses[uid] = PodStatus(phase="Pending")  # until the worker's first sync
        self._starting[uid] = time.monotonic()
        known = self.runtime_state(uid) if self.runtime_state is not None else None
        if pod.status.phase in ("Succeeded", "Failed") and not known:
            # The API says it finished and nothing of it runs here: never start it again.
            self.statuses[uid] = pod.status
            return
        if pod.metadata.deletion_timestamp is not None and not known:
            return  # deleted before it ever ran here: nothing to stop
        # A pod already running here (adopted after an agent restart) is not
        # admitted again: refusing it would kill a running workload.
        verdict = None if known else self._admission(pod)
        if verdict is not None:
            self.rejected[uid] = PodStatus(phase="Failed", reason=verdict.reason, message=verdict.status_message)
            log.warning("pod rejected", pod=pod.full_name, pod_uid=uid, reason=verdict.reason,
                        message=verdict.message)
            record_event(namespace=pod.metadata.namespace, pod=pod.metadata.name, pod_uid=uid, type=WARNING,
                         reason=verdict.reason, message=verdict.message)
            return
        predecessor = next((w for w in self.workers.values()
                            if w.terminating and w.pod.full_name == pod.full_name), None)
        worker = PodWorker(pod, self.deps, predecessor=predecessor, known_state=known)
        self.workers[uid] = worker
        log.info("pod added", pod=pod.full_name, pod_uid=uid)
        self._spawn(self._run_worker(worker))

    def _admission(self, pod: Pod) -> AdmitResult | None:
        """kubelet canAdmitPod: the eviction and shutdown handlers, then the
        pod count and the resources (admission.fits); None admits."""
        verdict = self.admit(pod) if self.admit is not None else None
        if verdict is not None and not verdict.admit:
            return verdict
        admitted = self.active_pods()
        if len(admitted) >= self.max_pods:
            return insufficient("pods", 1, len(admitted), self.max_pods)
        return fits(pod, admitted, self.allocatable())

    def _remove(self, uid: str) -> None:
        pod = self.pods.pop(uid, None)
        self._starting.pop(uid, None)
        self.deps.images.pulling_seconds.pop(uid, None)
        self.rejected.pop(uid, None)
        if uid not in self.workers:
            self.statuses.pop(uid, None)
        worker = self.workers.get(uid)
        if worker is not None and not worker.terminating:
            log.info("pod removed from source, terminating", pod=pod.full_name if pod else uid)
            worker.terminate()

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]
                self._cgroups_in_use()
            if worker.uid not in self.pods:
                self.statuses.pop(worker.uid, None)
            self._changes += 1
            self._tell(worker.uid)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_status(self, uid: str, status: PodStatus) -> None:
        if uid in self.pods:
            self.statuses[uid] = status
            self._changes += 1
            self._note_start(uid, status)
            self._tell(uid)

    def _note_start(self, uid: str, status: PodStatus) -> None:
        """kubelet_pod_start_duration_seconds: first seen -> every container running."""
        if uid not in self._starting or status.phase != "Running" or not all(
                c.state.running is not None for c in status.container_statuses):
            return
        seconds = time.monotonic() - self._starting.pop(uid)
        metrics.observe_pod_start(seconds, self.deps.images.pulling_seconds.pop(uid, 0.0))

    def runtime_changed(self, uid: str, state: StateKey) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            worker.runtime_changed(state)

    # -- eviction -------------------------------------------------------------------

    def active_pods(self) -> list[Pod]:
        """Pods admitted and neither terminating nor finished: eviction candidates."""
        return [w.pod for w in self.workers.values() if not w.terminating and not w.view.terminal_phase]

    async def evict(self, pod: Pod, result: EvictionResult) -> None:
        """Stop the pod with the eviction's grace period; wait until it is stopped."""
        worker = self.workers.get(pod.metadata.uid)
        if worker is None:
            return
        worker.evict(result.reason, result.message, result.grace_seconds, result.condition)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + result.grace_seconds + 30
        while not worker.stopped and not worker.done.is_set() and loop.time() < deadline:
            await asyncio.sleep(0.1)

    def pod_cleaned_up(self, pod: Pod) -> bool:
        worker = self.workers.get(pod.metadata.uid)
        return worker is None or worker.stopped

    # -- views ------------------------------------------------------------------

    def pods_with_status(self) -> list[Pod]:
        """Desired pods with their latest status."""
        result = []
        for uid, pod in self.pods.items():
            out = copy.copy(pod)
            out.status = self.rejected.get(uid) or self.statuses[uid]
            result.append(out)
        return result

    def pod_objects(self) -> list[dict[str, Any]]:
        """The pods as API JSON objects (what /pods serves). Each is encoded once
        per spec or status change, and the same list comes back while nothing
        changed, so a reader can reuse what it made of it: readers poll often."""
        if self._view is not None and self._view[0] == self._changes:
            return self._view[1]
        result = []
        for pod in self.pods_with_status():
            uid = pod.metadata.uid
            cached = self._encoded.get(uid)
            if cached is None or cached[0] is not self.pods[uid] or cached[1] is not pod.status:
                cached = (self.pods[uid], pod.status, encode(pod))
                self._encoded[uid] = cached
            result.append(cached[2])
        for stale in self._encoded.keys() - self.pods.keys():
            del self._encoded[stale]
        self._view = (self._changes, result)
        return result

    # -- housekeeping ---------------------------------------------------------------

    async def housekeeping(self, period: float = HOUSEKEEPING_PERIOD) -> None:
        while True:
            await asyncio.sleep(period)
            if self.sources_ready:
                try:
                    await self.remove_orphans()
                    await self.remove_orphaned_pod_dirs()
                    await self.deps.cgroups.remove_orphans()
                except (CRIError, CgroupError) as exc:
                    log.warning("housekeeping failed", error=str(exc))
                except Exception as exc:  # noqa: BLE001 - a bug or a surprise: log it, never stop the agent
                    log.exception("housekeeping failed", error=repr(exc))

    async def remove_orphans(self) -> None:
        """Sandboxes of pods no source wants (e.g. removed while the agent was down)."""
        cri = self.deps.cri
        for sandbox in await cri.list_pod_sandbox():
            uid = sandbox.labels.get(POD_UID_LABEL)
            if not uid or uid in self.workers:
                continue
            log.info("removing orphaned pod", pod_uid=uid, sandbox=sandbox.id,
                     pod=f"{sandbox.metadata.namespace}/{sandbox.metadata.name}")
            containers = await cri.list_containers(pb.ContainerFilter(pod_sandbox_id=sandbox.id))
            # The spec is gone; the grace period survives in the container's
            # annotation (kubelet restoreSpecsFromContainerLabels).
            await asyncio.gather(*(self._stop(c.id, _grace(c)) for c in containers
                                   if c.state != pb.ContainerState.CONTAINER_EXITED))
            for step in (cri.stop_pod_sandbox, cri.remove_pod_sandbox):
                try:
                    await step(sandbox.id)
                except NotFoundError:
                    pass
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.deps.executor, volumes.cleanup_pod_dir,
                                       self.deps.node.root_dir, uid)

    async def remove_orphaned_pod_dirs(self) -> None:
        """kubelet cleanupOrphanedPodDirs: `<root>/pods/<uid>` of a pod that is
        neither wanted nor running (an agent stopped before it finished a
        pod's cleanup) is unmounted and removed."""
        loop = asyncio.get_running_loop()
        root = self.deps.node.root_dir
        try:
            present = await loop.run_in_executor(self.deps.executor, _pod_dir_uids, root)
        except OSError:
            return
        candidates = [u for u in present if u not in self.workers and u not in self.pods]
        if not candidates:
            return
        running = {s.labels.get(POD_UID_LABEL) for s in await self.deps.cri.list_pod_sandbox()}
        for uid in candidates:
            if uid in running or uid in self.workers or uid in self.pods:
                continue
            log.info("removing orphaned pod directory", pod_uid=uid)
            try:
                await loop.run_in_executor(self.deps.executor, volumes.cleanup_pod_dir, root, uid)
            except volumes.VolumeError as exc:
                log.warning("cannot remove orphaned pod directory", pod_uid=uid, error=str(exc))

    async def _stop(self, container_id: str, grace: int) -> None:
        try:
            await self.deps.cri.stop_container(container_id, grace)
        except NotFoundError:
            pass

    async def shutdown(self) -> None:
        """Stop the workers, not the pods: like the kubelet, pods outlive the agent."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(list(self._tasks), timeout=10.0)
            for task in stuck:
                log.error("pod worker did not stop; leaving it", task=repr(task.get_coro()))


def _pod_dir_uids(root_dir: Path) -> list[str]:
    top = root_dir / "pods"
    return [e.name for e in os.scandir(top) if e.is_dir(follow_symlinks=False)] if top.is_dir() else []


def _grace(container: pb.Container) -> int:
    try:
        return int(container.annotations.get(GRACE_ANNOTATION, "30"))
    except ValueError:
        return 30
