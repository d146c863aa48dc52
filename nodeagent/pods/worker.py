"""One worker per pod: the only place that decides what to do for that pod.

Each sync compares the desired spec with what the runtime reports
(`PodObserver`) and carries out the kubelet's computePodActions: sandbox,
init containers in order (sidecars keep running), app containers with
restart policy and CrashLoopBackOff, termination, and dead-container GC.
Syncs of one pod are serialised; pods run in parallel.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from nodeagent.api import times
from nodeagent.api.types import Container, Pod, PodCondition, PodStatus
from nodeagent.cgroups.fs import CgroupError
from nodeagent.cgroups.manager import CgroupManager
from nodeagent.config import go_duration
from nodeagent.cri.client import CRIClient
from nodeagent.configdata.env import fetch_env_objects
from nodeagent.configdata.objects import ConfigObjects
from nodeagent.configdata.pullsecrets import pull_credentials
from nodeagent.configdata.volumes import PodConfigVolumes, has_config_volumes
from nodeagent.cri.errors import CRIError, NotFoundError, RuntimeUnavailable
from nodeagent.netns import hosts as etchosts
from nodeagent.events import NORMAL, WARNING, record_event
from nodeagent.metrics import kubelet as metrics
from nodeagent.oci.credentials import Credential
from nodeagent.oci.puller import ImageError, ImagePuller
from nodeagent.pods import crispec, volumes
from nodeagent.pods.backoff import crashloop_decision
from nodeagent.pods.observe import (
    CREATED, EXITED, RUNNING, UNKNOWN, ContainerInfo, ObservedPod, PodObserver, SandboxInfo,
    StateKey,
)
from nodeagent.probes import hooks
from nodeagent.waiting import wait_event
from nodeagent.probes.manager import ContainerView, PodProbes, has_probes
from nodeagent.pods.status import (
    FAILED, SUCCEEDED, Waiting, WorkerView, compute_phase, compute_status, container_status,
    is_sidecar,
)

log = structlog.get_logger("nodeagent.pods")

SYNC_ERROR_BACKOFF = 10.0  # kubelet backOffPeriod for failed syncs
# CRI numbers sandbox states (ready 0, not ready 1) and container states
# (created 0, running 1, exited 2) in the order they happen, and they only move
# forward; unknown (3) has no place in that order.
_LAST_STAGE = EXITED
LOG_SETTLE_NS = 2_000_000_000


@dataclass
class WorkerDeps:
    """What a worker needs from the agent; shared by all workers."""
    cri: CRIClient
    images: ImagePuller
    node: crispec.NodeContext
    runtime_name: str
    cgroups: CgroupManager
    on_status: Callable[[str, PodStatus], None]
    resync_period: float = 60.0  # kubelet syncFrequency
    executor: Any = None
    # configMaps, secrets and tokens from the API server; None: standalone, pods that
    # reference them wait with a clear message.
    config_objects: ConfigObjects | None = None


@dataclass
class _Plan:
    """What one sync did and decided: when to look again, and what it changed
    (so the end of the sync asks CRI only about that)."""
    wake_in: float | None = None
    created: list[tuple[str, str]] = field(default_factory=list)  # (container, sandbox) started
    changed: bool = False  # anything else changed: observe the whole pod again

    def soon(self, seconds: float) -> None:
        self.wake_in = seconds if self.wake_in is None else min(self.wake_in, seconds)


class PodWorker:
    def __init__(self, pod: Pod, deps: WorkerDeps, *, predecessor: PodWorker | None = None,
                 known_state: StateKey | None = None) -> None:
        self.pod = pod
        self.uid = pod.metadata.uid
        self.deps = deps
        self.view = WorkerView()
        self.status: PodStatus | None = None
        self.done = asyncio.Event()
        self.stopped = False  # terminal, and nothing of it runs any more
        self._predecessor = predecessor
        self._wake = asyncio.Event()
        self._observer = PodObserver(deps.cri, self.uid)
        self._final_messages: set[str] = set()
        self._messages_pending = False
        self._last_state: StateKey = frozenset()
        self._last_observed: ObservedPod | None = None  # what _last_state describes
        self._relisted: StateKey | None = None  # the relister's latest view of this pod
        self._created: set[str] = set()  # sandbox and container ids the last sync created
        self._inspections: dict[str, asyncio.Future[Any]] = {}  # image -> ImageStatus under way
        # A new pod the relister has no object of needs no first observation.
        self._known_empty = known_state == frozenset()
        self._must_sync = True  # a wake that is not the relister's (spec, terminate)
        self._terminating = False
        self._grace_override: int | None = None
        self._terminated_cleanly = False
        self._accepted_at = times.now()
        self._operation = "create"  # kubelet_pod_worker_duration_seconds' operation_type
        self._log = log.bind(pod=pod.full_name, pod_uid=self.uid)
        self.probes = PodProbes(pod, deps.cri, self.wake) if has_probes(pod) else None
        self._pod_ip = ""  # the current sandbox's, for hooks
        self._post_start: asyncio.Task[str] | None = None
        self._kill_messages: dict[str, str] = {}  # container id -> why the agent killed it
        self._config_volumes: PodConfigVolumes | None = None  # made for pods that have any
        self._sandbox_configs: tuple[Pod, int, Any] | None = None  # this sync's (pod, attempt, config)

    # -- control from the manager ---------------------------------------

    def update(self, pod: Pod) -> None:
        self.pod = pod
        self._operation = "update"
        self._register_objects()
        self.wake()

    def _register_objects(self) -> None:
        """Tell the object source what this pod references; a change to any of
        it syncs the pod (volumes are rewritten, from any thread)."""
        if self.deps.config_objects is not None:
            loop = asyncio.get_running_loop()
            self.deps.config_objects.register_pod(self.pod, lambda: loop.call_soon_threadsafe(self.wake))

    def wake(self) -> None:
        self._must_sync = True
        self._wake.set()

    def runtime_changed(self, state: StateKey) -> None:
        """From the relister: sync unless this is what the worker last observed.
        Checked again when the worker wakes, since a sync in progress may by
        then have observed it (most changes are the worker's own doing)."""
        if state != self._last_state:
            self._relisted = state
            self._wake.set()

    def _relist_seen(self) -> bool:
        """The relister's latest view holds nothing the worker has not seen:
        the same state, or an older one. A relist made during a sync can show
        the pod part way (no container yet, one not yet started); objects only
        move forward (created, running, exited; ready, not ready), and what the
        relist lacks must be what the last sync itself created."""
        relisted, known = self._relisted, self._last_state
        if relisted is None:
            return False
        if relisted == known:
            return True
        mine = dict(known)
        for key, state in relisted:
            if key not in mine or not state <= mine[key] <= _LAST_STAGE:
                return False
        listed = {key for key, _ in relisted}
        return all(key in listed or key in self._created for key in mine)

    async def _observe(self, *, cached: bool = False) -> ObservedPod:
        """The pod's sandboxes and containers from the runtime. `cached`: the
        last observation instead, when the relister has shown nothing newer;
        for timed syncs, which would otherwise ask the runtime about every pod
        once a minute for what the relister already watches (the kubelet's
        periodic sync reads its PLEG cache, too)."""
        if cached and self._last_observed is not None and (self._relisted is None or self._relist_seen()):
            return self._last_observed
        observed = await self._observer.observe()
        self._saw(observed)
        return observed

    def _saw(self, observed: ObservedPod) -> None:
        self._last_state, self._last_observed = observed.state_key, observed
        # A relist made part way through a sync (the sandbox without its new
        # container) is old news once the sync's own observation covers it; left
        # in place it would make every later timed sync ask the runtime again,
        # since the relister reports a pod only when its objects change.
        if self._relisted is not None and self._relist_seen():
            self._relisted = None

    def evict(self, reason: str, message: str, grace_seconds: int, condition: PodCondition) -> None:
        """The eviction manager's verdict: the pod stops for good and stays
        listed as Failed with the reason, as an evicted kubelet pod does."""
        self._log.warning("pod evicted", reason=reason, message=message, grace=grace_seconds)
        self.view.terminal_phase = FAILED
        self.view.reason, self.view.message = reason, message
        self.view.conditions = [condition]
        self._grace_override = grace_seconds
        self.wake()

    def terminate(self, grace_seconds: int | None = None) -> None:
        self._terminating = True
        self._grace_override = grace_seconds
        if self.probes is not None:  # kubelet: no liveness kills while the pod goes
            self.probes.terminal = True
        if self._post_start is not None:  # a hanging postStart must not hold the pod
            self._post_start.cancel()
        self.wake()

    @property
    def terminating(self) -> bool:
        return self._terminating

    @property
    def grace_override(self) -> int | None:
        return self._grace_override

    async def run(self) -> None:
        if self._predecessor is not None:  # same static pod name: let the old one go first
            await self._predecessor.done.wait()
        self._register_objects()
        loop = asyncio.get_running_loop()
        deadline = loop.time()  # when the next sync is due without any wake
        if self.probes is not None:
            self.probes.start()
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining > 0:
                    await wait_event(self._wake, remaining)
                timed = not self._wake.is_set()  # due, and nothing woke the worker
                if timed:
                    self._must_sync = True
                self._wake.clear()
                if not self._must_sync and self._relist_seen():
                    continue  # only the relister woke us, for a state already seen
                self._must_sync = False
                if self._terminating:
                    await self._run_guarded(self._kill_pod)
                    if self._terminated_cleanly:
                        return
                    deadline = loop.time() + 1.0
                    continue
                started, operation = time.monotonic(), self._operation
                self._created = set()
                self._sandbox_configs = None
                try:
                    wait = await self._run_guarded(lambda: self._sync(timed=timed))
                finally:
                    self._drop_inspections()
                self._operation = "sync"
                metrics.observe_pod_worker(operation, time.monotonic() - started)
                if self._messages_pending:
                    wait = min(wait, 1.0) if wait is not None else 1.0
                # kubelet: resyncs are jittered (wait.Jitter(syncFrequency, 0.5)), so pods
                # started together do not all sync in the same instant (probes keep time).
                deadline = loop.time() + (wait if wait is not None
                                          else self.deps.resync_period * (1 + 0.5 * random.random()))
        finally:
            if self.deps.config_objects is not None:
                self.deps.config_objects.unregister_pod(self.uid)
            if self.probes is not None:
                await self.probes.stop()
            self.done.set()

    async def _run_guarded(self, step: Callable[[], Any]) -> float | None:
        try:
            return await step()
        except RuntimeUnavailable as exc:
            self._log.warning("container runtime unavailable; will retry", error=str(exc))
            return 1.0
        except Exception as exc:  # a bug or an unexpected runtime answer: never kill the agent
            self._log.exception("pod sync failed", error=str(exc))
            return SYNC_ERROR_BACKOFF

    # -- sync -------------------------------------------------------------

    async def _sync(self, *, timed: bool) -> float | None:
        """`timed`: a periodic resync or a retry the last sync asked for, not a wake."""
        plan = _Plan()
        self.view.waiting = {}
        if self._known_empty:
            self._known_empty = False
            observed = ObservedPod(self.uid, (), ())
        else:
            observed = await self._observe(cached=timed)

        if self.view.terminal_phase:
            await self._stop_sandboxes(observed)
            await self._publish(await self._observe())
            self.stopped = True
            return None

        sandbox = observed.sandbox
        if sandbox is None or not sandbox.ready:
            if sandbox is not None and self._terminal_without_sandbox(observed):
                self.view.terminal_phase = self._phase(observed)
                await self._stop_containers(observed.running_containers, self._grace())
                await self._publish(await self._observe())
                return None
            if observed.running_containers:
                await self._stop_containers(observed.running_containers, self._grace())
                plan.changed = True
            created, mounts = await self._create_sandbox(observed, plan)
            if created is None:
                await self._publish(observed)
                return plan.wake_in or SYNC_ERROR_BACKOFF
            observed, sandbox = created, created.sandbox
        else:
            mounts = await self._prepare_volumes(plan)

        assert sandbox is not None
        if mounts is not None:
            if await self._sync_init_containers(observed, sandbox, mounts, plan):
                await self._sync_app_containers(observed, sandbox, mounts, plan)

        observed = await self._refresh(observed, plan)
        phase = self._phase(observed)
        if phase in (SUCCEEDED, FAILED):
            self.view.terminal_phase = phase
            self.view.waiting = {}  # nothing restarts now: show how each container ended
            self._log.info("pod finished", phase=phase)
            await self._publish(observed)  # report the exit before the slow sandbox stop
            await self._stop_sandboxes(observed)
            observed = await self._observe()
        else:
            await self._collect_garbage(observed)
        await self._publish(observed)
        return plan.wake_in

    async def _refresh(self, observed: ObservedPod, plan: _Plan) -> ObservedPod:
        """The pod after this sync's actions: only the new containers' status
        when that is all that changed, else a full observation."""
        if plan.changed:
            return await self._observe()
        if plan.created:
            observed = await self._observer.with_containers(observed, plan.created)
        self._saw(observed)
        return observed

    def _phase(self, observed: ObservedPod) -> str:
        pod = self.pod
        init = [container_status(c, observed, self.view, self.deps.runtime_name) for c in pod.spec.init_containers]
        app = [container_status(c, observed, self.view, self.deps.runtime_name) for c in pod.spec.containers]
        return compute_phase(pod, init, app, self.view)

    def _terminal_without_sandbox(self, observed: ObservedPod) -> bool:
        """kubelet computePodActions: a dead sandbox is not recreated for a pod
        whose containers ran and that will not restart them."""
        if not observed.containers:
            return False
        if self.pod.spec.restart_policy == "Never":
            return True
        return self._phase(observed) in (SUCCEEDED, FAILED)

    async def _publish(self, observed: ObservedPod) -> None:
        await self._read_termination_messages(observed)
        self._pod_ip = self._ip_of(observed.sandbox)
        if self.probes is not None:
            self._update_probes(observed)
        first_sandbox = min((s.created_at for s in observed.sandboxes), default=0)
        status = compute_status(
            self.pod, observed, self.view, runtime=self.deps.runtime_name,
            node_ips=self.deps.node.node_ips,
            start_time=times.from_cri(first_sandbox) or self._accepted_at,
            previous=self.status, now=times.now())
        if status != self.status:  # unchanged: keep the object, so readers' caches hold
            self.status = status
            self.deps.on_status(self.uid, status)

    async def _read_termination_messages(self, observed: ObservedPod) -> None:
        """kubelet getTerminationMessage: the file, or with FallbackToLogsOnError
        and a failed exit, the tail of the log. Read once per exited container."""
        specs = {c.name: c for c in [*self.pod.spec.init_containers, *self.pod.spec.containers]}
        self._messages_pending = False
        for c in observed.containers:
            if c.state != EXITED or c.id in self._final_messages or c.name not in specs:
                continue
            spec = specs[c.name]
            path = volumes.termination_log_file(self.deps.node.root_dir, self.uid, c.name, c.attempt)
            message = await self._blocking(volumes.read_termination_message, path)
            message = message or self._kill_messages.get(c.id, "")
            if not message and spec.termination_message_policy == "FallbackToLogsOnError" and c.exit_code:
                log_file = crispec.pod_log_dir(self.pod, self.deps.node) / c.name / f"{c.attempt}.log"
                message = await self._blocking(read_log_tail, log_file)
            self.view.messages[c.id] = message
            # The runtime writes the last log lines after reporting the exit:
            # read again until the exit is old enough for the log to be complete.
            if time.time_ns() - c.finished_at > LOG_SETTLE_NS:
                self._final_messages.add(c.id)
            else:
                self._messages_pending = True
        live = {c.id for c in observed.containers}
        for stale in [k for k in self.view.messages if k not in live]:
            del self.view.messages[stale]
        self._final_messages &= live
        self._kill_messages = {k: v for k, v in self._kill_messages.items() if k in live}

    def _update_probes(self, observed: ObservedPod) -> None:
        """Tell the prober what runs now; take its verdicts (ready, started) into the status."""
        assert self.probes is not None
        if self.view.terminal_phase:  # kubelet: probe workers stop with a finished pod
            self.probes.terminal = True
        views: dict[str, ContainerView] = {}
        for c in [*self.pod.spec.init_containers, *self.pod.spec.containers]:
            latest = observed.latest(c.name)
            if latest is None:
                continue
            views[c.name] = ContainerView(latest.id, latest.state == RUNNING, latest.started_at / 1e9)
            self.view.started[c.name] = self.probes.started(c.name, latest.id)
            self.view.ready[c.name] = self.probes.ready(c.name, latest.id)
        self.probes.update(views, self._pod_ip)

    def _ip_of(self, sandbox: SandboxInfo | None) -> str:
        """What probes and hooks target by default: the pod IP (the node's for hostNetwork)."""
        if self.pod.spec.host_network:
            return self.deps.node.node_ips[0] if self.deps.node.node_ips else ""
        return sandbox.ips[0] if sandbox is not None and sandbox.ips else ""

    def _grace(self) -> int:
        if self._grace_override is not None:
            return self._grace_override
        grace = self.pod.spec.termination_grace_period_seconds
        return 30 if grace is None else grace

    async def _blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.deps.executor, lambda: fn(*args, **kwargs))

    # -- sandbox ----------------------------------------------------------

    def _sandbox_config(self, attempt: int):  # -> pb.PodSandboxConfig
        """Built once per sync and attempt, as the kubelet's SyncPod does (it
        reads the host's resolv.conf): the new sandbox's and its containers'."""
        cached = self._sandbox_configs
        if cached is None or cached[0] is not self.pod or cached[1] != attempt:
            self._sandbox_configs = (self.pod, attempt, crispec.sandbox_config(
                self.pod, self.deps.node, attempt=attempt, cgroup_parent=self.deps.cgroups.pod_parent(self.pod)))
        return self._sandbox_configs[2]

    async def _create_sandbox(self, observed: ObservedPod, plan: _Plan
                              ) -> tuple[ObservedPod | None, dict[str, str] | None]:
        """The kubelet's order: the pod cgroup with its limits, the volumes
        and the log directory, then RunPodSandbox (docs/decisions.md says why
        the cgroup is no longer made while the sandbox is). Returns the pod
        as observed with its new sandbox, and the volumes' mounts; (None,
        None) when the sandbox was not created."""
        attempt = observed.sandbox.attempt + 1 if observed.sandbox else 0
        config = self._sandbox_config(attempt)
        if (cgroup_error := await self._ensure_cgroup()) is not None:
            return self._cgroup_failed(cgroup_error, plan)
        mounts = await self._prepare_volumes(plan, log_directory=config.log_directory)
        if mounts is None:  # the volumes said why (FailedMount): no sandbox without them
            return None, None
        running = asyncio.ensure_future(self._run_sandbox(config, plan))
        self._inspect_images()  # goes out after RunPodSandbox, answered while it runs
        sandbox_id = await running
        if sandbox_id is None:
            return None, None
        self._log.info("pod sandbox started", sandbox=sandbox_id, attempt=attempt)
        self._created.add(sandbox_id)
        # The new sandbox is all that changed: one status call, not a relist.
        return await self._observer.with_new_sandbox(observed, sandbox_id), mounts

    async def _run_sandbox(self, config: Any, plan: _Plan) -> str | None:
        """RunPodSandbox; None (and the reason in the status) when it failed."""
        try:
            return await self.deps.cri.run_pod_sandbox(config)
        except RuntimeUnavailable:
            raise
        except CRIError as exc:
            self._log.warning("failed to create pod sandbox", error=exc.details or str(exc))
            self.view.reason, self.view.message = "", ""
            # The kubelet says why only in a FailedCreatePodSandBox event; until
            # events exist, the waiting message carries it (docs/decisions.md).
            why = f"Failed to create pod sandbox: {exc.details or exc}"
            for c in [*self.pod.spec.init_containers, *self.pod.spec.containers]:
                self.view.waiting[c.name] = Waiting("ContainerCreating", why)
            plan.soon(SYNC_ERROR_BACKOFF)
            return None

    def _cgroup_failed(self, error: str, plan: _Plan) -> tuple[None, None]:
        # kubelet: "failed to ensure that the pod: <uid> cgroups exist and are correctly applied"
        self._log.warning("pod cgroup setup failed", error=error)
        self.view.reason, self.view.message = "", ""
        for c in [*self.pod.spec.init_containers, *self.pod.spec.containers]:
            self.view.waiting[c.name] = Waiting("ContainerCreating", f"failed to ensure that the pod: "
                                                f"{self.uid} cgroups exist and are correctly applied: {error}")
        plan.soon(SYNC_ERROR_BACKOFF)
        return None, None

    async def _ensure_cgroup(self) -> str | None:
        """The pod cgroup with its limits; the error's text if that failed."""
        try:
            await self.deps.cgroups.ensure_pod(self.pod)
        except CgroupError as exc:
            return str(exc)
        return None

    def _inspect_images(self) -> None:
        """ImageStatus for the containers a new sandbox starts first (the first
        init container, else the app containers), while the sandbox is made:
        the container config needs the image only at CreateContainer. Asked
        once RunPodSandbox went out, so the call's CPU overlaps the sandbox's
        wait, not the pod cgroup's thread (docs/decisions.md). Pulls, and
        their events, still happen in _start, in the kubelet's order."""
        spec = self.pod.spec
        for c in spec.init_containers[:1] or spec.containers:
            if c.image not in self._inspections:
                self._inspections[c.image] = asyncio.ensure_future(self.deps.cri.image_status(c.image))

    def _drop_inspections(self) -> None:
        """Inspections this sync did not use are stale for the next one."""
        for task in self._inspections.values():
            if task.done():
                if not task.cancelled():
                    task.exception()  # retrieved: a failed look-up is asked again
            else:
                task.cancel()
        self._inspections.clear()

    async def _stop_sandboxes(self, observed: ObservedPod) -> None:
        await self._stop_containers(observed.running_containers, self._grace())
        for s in observed.sandboxes:
            if s.ready:
                await self._ignore_missing(self.deps.cri.stop_pod_sandbox(s.id))

    @staticmethod
    async def _ignore_missing(call: Any) -> None:
        try:
            await call
        except NotFoundError:
            pass

    # -- volumes ----------------------------------------------------------

    async def _prepare_volumes(self, plan: _Plan, log_directory: str | None = None) -> dict[str, str] | None:
        """The pod's volumes (and, for a new sandbox, its log directory: one executor job)."""
        try:
            mounts = await self._blocking(self._make_volumes, log_directory)
        except volumes.VolumeError as exc:
            return self._volumes_failed([str(exc)], plan)
        if not has_config_volumes(self.pod):
            return mounts
        if self._config_volumes is None:
            self._config_volumes = PodConfigVolumes(self.deps.config_objects, self.deps.node, self._blocking)
        prepared = await self._config_volumes.prepare(self.pod)  # configdata/volumes.py
        for message in prepared.warnings:  # stale content stays mounted; containers go on
            self._event("", WARNING, "FailedMount", message)
        if prepared.retry_in is not None and prepared.retry_in < self.deps.resync_period:
            plan.soon(prepared.retry_in)  # later ones (a token refresh) come with a resync
        if prepared.errors:
            return self._volumes_failed(prepared.errors, plan)
        return {**mounts, **prepared.paths}

    def _make_volumes(self, log_directory: str | None) -> dict[str, str]:
        mounts = volumes.prepare_volumes(self.pod, self.deps.node.root_dir,
                                         allocatable_memory_bytes=self.deps.node.allocatable_memory_bytes)
        if log_directory is not None:
            Path(log_directory).mkdir(parents=True, exist_ok=True)
        return mounts

    def _volumes_failed(self, messages: list[str], plan: _Plan) -> None:
        """kubelet: the pod stays ContainerCreating, a FailedMount event says why."""
        for c in [*self.pod.spec.init_containers, *self.pod.spec.containers]:
            self.view.waiting[c.name] = Waiting("ContainerCreating", messages[0])
        for message in messages:
            self._event("", WARNING, "FailedMount", message)
        self._log.warning("volume setup failed", error=messages[0])
        plan.soon(SYNC_ERROR_BACKOFF)

    # -- containers ---------------------------------------------------------

    async def _sync_init_containers(self, observed: ObservedPod, sandbox: SandboxInfo,
                                    mounts: dict[str, str], plan: _Plan) -> bool:
        """Returns True once every init container is done (sidecars: started)."""
        apps_started = any(observed.latest(c.name, sandbox.id) for c in self.pod.spec.containers)
        for c in self.pod.spec.init_containers:
            latest = observed.latest(c.name, sandbox.id)
            if is_sidecar(c):
                if latest is not None and latest.state in (RUNNING, CREATED, UNKNOWN):
                    if await self._kill_unhealthy(c, latest, plan):
                        continue
                    if latest.state == CREATED:
                        await self._ignore_missing(self.deps.cri.start_container(latest.id))
                        plan.changed = True
                    elif (self.probes is not None and not apps_started
                          and not self.probes.started(c.name, latest.id)):
                        return False  # kubelet: the next container waits for its startup probe
                    continue
                started = await self._restart_or_start(c, observed, sandbox, mounts, plan, latest)
                if (not started or c.startup_probe is not None) and not apps_started:
                    return False
                continue
            if latest is None:
                await self._start(c, observed, sandbox, mounts, plan, attempt=0)
                return False
            if latest.state in (RUNNING, CREATED, UNKNOWN):
                if latest.state == CREATED:
                    await self._ignore_missing(self.deps.cri.start_container(latest.id))
                    plan.changed = True
                return False
            if latest.exit_code == 0:
                continue
            if self.pod.spec.restart_policy == "Never":
                self.view.terminal_phase = FAILED
                return False
            await self._restart_or_start(c, observed, sandbox, mounts, plan, latest)
            return False
        return True

    async def _sync_app_containers(self, observed: ObservedPod, sandbox: SandboxInfo,
                                   mounts: dict[str, str], plan: _Plan) -> None:
        policy = self.pod.spec.restart_policy
        for c in self.pod.spec.containers:
            latest = observed.latest(c.name, sandbox.id)
            if latest is None:
                await self._start(c, observed, sandbox, mounts, plan)
                continue
            if latest.state in (RUNNING, CREATED, UNKNOWN):
                if await self._kill_unhealthy(c, latest, plan):
                    continue
                if latest.spec_hash != crispec.container_hash(c):
                    self._log.info("container definition changed, will be restarted", container=c.name)
                    await self._stop_containers([latest], self._grace())
                    plan.changed = True
                    await self._start(c, observed, sandbox, mounts, plan)
                elif latest.state == CREATED:
                    await self._ignore_missing(self.deps.cri.start_container(latest.id))
                    plan.changed = True
                continue
            if policy == "Always" or (policy == "OnFailure" and latest.exit_code != 0):
                await self._restart_or_start(c, observed, sandbox, mounts, plan, latest)

    async def _kill_unhealthy(self, c: Container, latest: ContainerInfo, plan: _Plan) -> bool:
        """kubelet computePodActions: a container that failed its liveness or
        startup probe is killed (the probe's grace period if it has one); the
        next sync restarts it under the restart policy."""
        verdict = self.probes.kill_verdict(c.name, latest.id) if self.probes is not None else None
        if verdict is None or latest.state != RUNNING:
            return False
        self._log.info("container failed its probe, killing", container=c.name, probe=verdict.kind)
        grace = verdict.grace_seconds if verdict.grace_seconds is not None else self._grace()
        await self._stop_containers([latest], grace, message=verdict.message)
        plan.changed = True
        return True

    async def _restart_or_start(self, c: Container, observed: ObservedPod, sandbox: SandboxInfo,
                                mounts: dict[str, str], plan: _Plan,
                                exited: ContainerInfo | None) -> bool:
        annotations: dict[str, str] = {}
        if exited is not None:
            decision = crashloop_decision(exited)
            if decision.wait > 0:
                self.view.waiting[c.name] = Waiting(
                    "CrashLoopBackOff",
                    f"back-off {go_duration(round(decision.delay))} restarting failed "
                    f"container={c.name} pod={crispec.format_pod(self.pod)}")
                self._event(c.name, WARNING, "BackOff",
                            f"Back-off restarting failed container {c.name} in pod {crispec.format_pod(self.pod)}")
                plan.soon(decision.wait)
                return False
            annotations = decision.annotations
        return await self._start(c, observed, sandbox, mounts, plan, annotations=annotations)

    async def _pull_credentials(self, c: Container) -> list[Credential]:
        """The pod's imagePullSecrets that match the image (kubelet
        getPullSecretsForPod: missing ones are named and the pull goes on)."""
        if not self.pod.spec.image_pull_secrets:
            return []
        found = await pull_credentials(self.deps.config_objects, self.pod)
        if found.missing:
            self._event(c.name, WARNING, "FailedToRetrieveImagePullSecret",
                        f"Unable to retrieve some image pull secrets ({', '.join(found.missing)}); "
                        "attempting to pull the image may not succeed.")
        for problem in found.problems:
            self._event(c.name, WARNING, "FailedToRetrieveImagePullSecret", problem)
        return found.keyring.lookup(c.image)

    async def _start(self, c: Container, observed: ObservedPod, sandbox: SandboxInfo,
                     mounts: dict[str, str], plan: _Plan, *, attempt: int | None = None,
                     annotations: dict[str, str] | None = None) -> bool:
        """kubelet startContainer: image, config, create, start."""
        if attempt is None:
            previous = observed.latest(c.name)
            attempt = previous.attempt + 1 if previous else 0
        cri = self.deps.cri
        sandbox_config = self._sandbox_config(sandbox.attempt)
        try:
            image = await self.deps.images.ensure(
                self.uid, c.image, c.image_pull_policy, sandbox_config,
                event=lambda type_, reason, message: self._event(c.name, type_, reason, message),
                inspected=self._inspections.pop(c.image, None),
                credentials=await self._pull_credentials(c))
        except ImageError as exc:
            self.view.waiting[c.name] = Waiting(exc.reason, exc.message)
            if exc.reason != "ErrImageNeverPull":
                self._event(c.name, WARNING, "Failed", f"Error: {exc.reason}")
            # After a failed pull, look again soon: the status moves on to
            # ImagePullBackOff while the backoff runs, as kubelet users expect.
            plan.soon(min(exc.retry_after, 1.0) if exc.reason == "ErrImagePull" else exc.retry_after)
            return False
        try:
            crispec.verify_run_as_non_root(self.pod, c, image.uid, image.username)
            env_objects = await fetch_env_objects(self.pod, c, self.deps.config_objects)
            termination_log, hosts_mount = await self._blocking(
                self._container_files, c, attempt, sandbox.ips)
            config = crispec.container_config(
                self.pod, c, self.deps.node, attempt=attempt, image_ref=image.ref,
                sandbox_ip=sandbox.ips[0] if sandbox.ips else "", mounts=mounts,
                termination_log=termination_log, backoff_annotations=annotations or {},
                env_objects=env_objects)
            for reason, message in env_objects.events if env_objects is not None else ():
                self._event("", WARNING, reason, message)
            if hosts_mount is not None:
                config.mounts.append(hosts_mount)
        except (crispec.ConfigError, volumes.VolumeError, OSError) as exc:
            self.view.waiting[c.name] = Waiting("CreateContainerConfigError", str(exc))
            self._event(c.name, WARNING, "Failed", f"Error: {exc}")
            self._log.warning("container config error", container=c.name, error=str(exc))
            plan.soon(SYNC_ERROR_BACKOFF)
            return False
        try:
            container_id = await cri.create_container(sandbox.id, config, sandbox_config)
        except RuntimeUnavailable:
            raise
        except CRIError as exc:
            self.view.waiting[c.name] = Waiting("CreateContainerError", exc.details or str(exc))
            self._event(c.name, WARNING, "Failed", f"Error: {exc.details or exc}")
            self._log.warning("create container failed", container=c.name, error=exc.details)
            plan.soon(SYNC_ERROR_BACKOFF)
            return False
        self._event(c.name, NORMAL, "Created", f"Created container {c.name}")
        try:
            await cri.start_container(container_id)
        except RuntimeUnavailable:
            plan.changed = True
            raise
        except CRIError as exc:
            plan.changed = True
            # The runtime records the failed start as an exit (StartError, 128);
            # the next sync restarts it under CrashLoopBackOff.
            self.view.waiting[c.name] = Waiting("RunContainerError", exc.details or str(exc))
            self._event(c.name, WARNING, "Failed", f"Error: {exc.details or exc}")
            self._log.warning("start container failed", container=c.name, error=exc.details)
            plan.soon(0.1)
            return False
        self._event(c.name, NORMAL, "Started", f"Started container {c.name}")
        self._log.info("container started", container=c.name, container_id=container_id,
                       attempt=attempt)
        plan.created.append((container_id, sandbox.id))
        self._created.add(container_id)
        if c.lifecycle is not None and c.lifecycle.post_start is not None:
            return await self._post_start_hook(c, container_id, sandbox, plan)
        return True

    def _container_files(self, c: Container, attempt: int, sandbox_ips: tuple[str, ...]
                         ) -> tuple[Path, Any]:
        """The termination-log file and the /etc/hosts mount (blocking: one
        executor job for both)."""
        node = self.deps.node
        return (volumes.termination_log_path(node.root_dir, self.uid, c.name, attempt),
                etchosts.container_hosts_mount(self.pod, c, node, sandbox_ips))

    async def _post_start_hook(self, c: Container, container_id: str, sandbox: SandboxInfo,
                               plan: _Plan) -> bool:
        """kubelet: postStart runs right after StartContainer, inside the sync,
        so the status shows the container running only once it returned. On
        failure the container is killed and the restart policy applies."""
        assert c.lifecycle is not None and c.lifecycle.post_start is not None
        self._post_start = asyncio.ensure_future(hooks.run_hook(
            c.lifecycle.post_start, cri=self.deps.cri, container=c, container_id=container_id,
            pod_ip=self._ip_of(sandbox)))
        try:
            await self._post_start
            return True
        except hooks.HookError as exc:
            error = str(exc)
        except asyncio.CancelledError:
            if not self._terminating:
                raise
            error = "the pod is terminating"
        finally:
            self._post_start = None
        self._event(c.name, WARNING, "FailedPostStartHook",
                    f"PostStartHook failed: {error}")
        message = f"PostStartHook failed: {error}"
        self.view.waiting[c.name] = Waiting("PostStartHookError", message)
        await self._kill_container(container_id, c.name, True, self._grace(), message)
        plan.changed = True
        return False

    def _event(self, container: str, type_: str, reason: str, message: str) -> None:
        meta = self.pod.metadata
        init = any(c.name == container for c in self.pod.spec.init_containers)
        record_event(namespace=meta.namespace, pod=meta.name, pod_uid=self.uid,
                     container=container, type=type_, reason=reason, message=message,
                     field_path=f"spec.initContainers{{{container}}}" if container and init else "")

    async def _stop_containers(self, containers: list[ContainerInfo], grace: int,
                               message: str = "") -> None:
        if containers:
            await asyncio.gather(*(self._kill_container(c.id, c.name, c.state == RUNNING, grace,
                                                        message) for c in containers))

    async def _kill_container(self, container_id: str, name: str, running: bool, grace: int,
                              message: str) -> None:
        """kubelet killContainer: Killing event, preStop (its time comes out of
        the grace period, at least 2 s remain), then StopContainer."""
        spec = next((s for s in [*self.pod.spec.init_containers, *self.pod.spec.containers]
                     if s.name == name), None)
        if spec is not None:
            self._event(name, NORMAL, "Killing", message or f"Stopping container {name}")
        if message:
            self._kill_messages[container_id] = message
        pre_stop = spec.lifecycle.pre_stop if spec is not None and spec.lifecycle else None
        if pre_stop is not None and grace > 0 and running:
            grace, error = await hooks.run_pre_stop(
                pre_stop, grace, cri=self.deps.cri, container=spec, container_id=container_id,
                pod_ip=self._pod_ip)
            if error:
                self._event(name, WARNING, "FailedPreStopHook", f"PreStopHook failed: {error}")
        await self._ignore_missing(self.deps.cri.stop_container(container_id, grace))

    # -- termination and garbage ---------------------------------------------

    async def _kill_pod(self) -> None:
        """Stop app containers with the grace period, then sidecars in reverse
        order (kubelet 1.29+), then the sandbox; remove everything the pod owned."""
        observed = await self._observe()
        grace = self._grace()
        deadline = time.monotonic() + grace
        sidecars = [c.name for c in self.pod.spec.init_containers if is_sidecar(c)]
        running = observed.running_containers
        await self._stop_containers([c for c in running if c.name not in sidecars], grace)
        for name in reversed(sidecars):
            remaining = max(0, int(deadline - time.monotonic()))
            await self._stop_containers([c for c in running if c.name == name], remaining)
        await self._publish_final()
        for s in observed.sandboxes:
            await self._ignore_missing(self.deps.cri.stop_pod_sandbox(s.id))
            await self._ignore_missing(self.deps.cri.remove_pod_sandbox(s.id))
        await self._blocking(volumes.cleanup_pod_dir, self.deps.node.root_dir, self.uid)
        await self._blocking(_remove_tree, crispec.pod_log_dir(self.pod, self.deps.node))
        await self.deps.cgroups.remove_pod(self.pod)
        self._terminated_cleanly = True
        self._log.info("pod removed")

    async def _publish_final(self) -> None:
        """The terminated pod's last status (kubelet: a pod whose workers
        finished is terminal: Succeeded when every container exited 0, else
        Failed). The API reporter sends it before deleting the pod."""
        observed = await self._observe()
        if not self.view.terminal_phase:
            app = [container_status(c, observed, self.view, self.deps.runtime_name)
                   for c in self.pod.spec.containers]
            ok = app and all(s.state.terminated is not None and s.state.terminated.exit_code == 0 for s in app)
            self.view.terminal_phase = SUCCEEDED if ok else FAILED
        await self._publish(observed)

    async def _collect_garbage(self, observed: ObservedPod) -> None:
        """Keep the newest dead instance per container (kubelet
        --maximum-dead-containers-per-container=1); drop old dead sandboxes."""
        seen: set[str] = set()
        for c in observed.containers:  # newest first
            if c.state != EXITED:
                continue
            if c.name in seen:
                await self._ignore_missing(self.deps.cri.remove_container(c.id))
                # kubelet GC removes the container's log file with it.
                log_file = crispec.pod_log_dir(self.pod, self.deps.node) / c.name / f"{c.attempt}.log"
                await self._blocking(log_file.unlink, missing_ok=True)
            seen.add(c.name)
        # An old sandbox goes once it holds no container: removing it earlier
        # would take the dead instance that carries the restart count.
        current = observed.sandbox
        for s in observed.sandboxes[1:]:
            if current is not None and current.ready and not s.ready:
                if not any(c.sandbox_id == s.id for c in observed.containers):
                    await self._ignore_missing(self.deps.cri.remove_pod_sandbox(s.id))


def read_log_tail(path: Path, lines: int = 80, limit: int = 2048) -> str:
    """The last lines of a CRI-format log, content only (kubelet
    readLastStringFromContainerLogs: 80 lines, at most 2048 bytes)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            raw = f.read().splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    out = []
    for line in raw:
        parts = line.split(b" ", 3)  # timestamp stream tag content
        if len(parts) == 4:
            out.append(parts[3] + (b"\n" if parts[2] == b"F" else b""))
    return b"".join(out)[-limit:].decode(errors="replace")


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
