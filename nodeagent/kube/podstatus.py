"""Pod status to the API server (the kubelet's status manager) and mirror
pods for static pods.

A pod's status is patched only when it differs from what the API server
holds: the patch is the two-way strategic merge diff between the API's
status and ours, restricted to the fields the kubelet owns, with
`metadata.uid` in it so a recreated pod of the same name is never written.
Conditions the kubelet does not own (scheduler, readiness gates) are kept.
A pod being deleted is deleted for good (grace 0, UID precondition) once its
containers are stopped and its final status is written.

Static pods get a mirror pod (same name, `kubernetes.io/config.mirror`,
owned by the Node) so the control plane sees them; its status is the static
pod's. A mirror of an old version, or one a user deleted, is replaced.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import structlog

from nodeagent.api.codec import encode
from nodeagent.api.types import Pod, PodStatus
from nodeagent.kube.client import ApiError, KubeClient, Unreachable, describe
from nodeagent.kube.podsource import MIRROR_ANNOTATION, ApiPodSource
from nodeagent.kube.strategicpatch import two_way
from nodeagent.metrics import kubelet as metrics
from nodeagent.pods.manager import PodManager
from nodeagent.sources.static import CONFIG_HASH_ANNOTATION, CONFIG_SOURCE_ANNOTATION, FILE_SOURCE
from nodeagent.waiting import wait_event

log = structlog.get_logger("nodeagent.kube.status")

RESYNC_PERIOD = 10.0  # kubelet status manager syncPeriod
KUBELET_FIELDS = frozenset({
    "phase", "conditions", "message", "reason", "hostIP", "hostIPs", "podIP", "podIPs", "startTime",
    "initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses", "qosClass"})
KUBELET_CONDITIONS = frozenset({"PodScheduled", "PodReadyToStartContainers", "Initialized", "Ready",
                                "ContainersReady", "DisruptionTarget"})
TERMINAL = ("Succeeded", "Failed")


def pod_path(namespace: str, name: str = "", sub: str = "") -> str:
    path = f"/api/v1/namespaces/{namespace}/pods"
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def merged_status(api_status: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """What the API should hold: our kubelet-owned fields over the API's others."""
    out = {k: v for k, v in api_status.items() if k not in KUBELET_FIELDS}
    out.update(ours)
    api_conditions = {c.get("type"): c for c in api_status.get("conditions") or [] if isinstance(c, dict)}
    conditions = []
    for cond in ours.get("conditions") or []:
        before = api_conditions.get(cond.get("type"))
        if before is not None and before.get("status") == cond.get("status") and before.get("lastTransitionTime"):
            cond = dict(cond, lastTransitionTime=before["lastTransitionTime"])  # survives agent restarts
        conditions.append(cond)
    ours_types = {c.get("type") for c in conditions}
    conditions += [c for t, c in api_conditions.items() if t not in ours_types and t not in KUBELET_CONDITIONS]
    if conditions:
        out["conditions"] = conditions
    if api_status.get("startTime"):
        out["startTime"] = api_status["startTime"]
    if api_status.get("phase") in TERMINAL and out.get("phase") not in TERMINAL:
        out["phase"] = api_status["phase"]  # terminal is forever (kubelet status manager)
    return out


def config_hash(pod: Pod) -> str:
    """What a static pod's mirror carries in kubernetes.io/config.mirror."""
    return pod.metadata.annotations.get(CONFIG_HASH_ANNOTATION, pod.metadata.uid)


def is_static(pod: Pod) -> bool:
    return pod.metadata.annotations.get(CONFIG_SOURCE_ANNOTATION) == FILE_SOURCE


def mirror_body(pod: Pod, node_name: str, node_uid: str) -> dict[str, Any]:
    """The mirror pod of a static pod: its spec, labels and annotations, the
    config.mirror annotation carrying the static pod's hash, owned by the Node."""
    body = encode(pod)
    body.pop("status", None)
    meta = body["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "deletionTimestamp",
                "deletionGracePeriodSeconds"):
        meta.pop(key, None)
    annotations = dict(meta.get("annotations") or {})
    annotations[MIRROR_ANNOTATION] = config_hash(pod)
    meta["annotations"] = annotations
    meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid,
                                "controller": True}]
    body["spec"]["nodeName"] = node_name
    return body


REPORTED_ERRORS_MAX = 1000  # distinct refused writes remembered, so each is logged once


class PodStatusManager:
    def __init__(self, client: KubeClient, manager: PodManager, source: ApiPodSource, node_name: str,
                 node_uid: Callable[[], str | None], *, workers: int = 8) -> None:
        self.client = client
        self.manager = manager
        self.source = source
        self.node_name = node_name
        self.node_uid = node_uid
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._limit = asyncio.Semaphore(workers)
        self._reported_errors: set[tuple[str, str]] = set()

    def notify(self, uid: str) -> None:
        self._dirty.add(uid)
        self._wake.set()

    def pending(self) -> set[str]:
        """Every pod whose status may differ from the API server's (all of them:
        a sync of an unchanged pod writes nothing)."""
        return self._dirty | set(self.manager.pods)

    async def run(self) -> None:
        await self.source.synced.wait()
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        backoff = 0.5
        while True:
            timeout = max(0.0, next_full - loop.time())
            await wait_event(self._wake, timeout)
            self._wake.clear()
            if loop.time() >= next_full:  # periodic full pass: converges after outages
                self._dirty.update(self.manager.pods)
                self._dirty.update(o["metadata"]["uid"] for o in self.source.mirror_pods())
                next_full = loop.time() + RESYNC_PERIOD
            batch, self._dirty = self._dirty, set()
            failed = await self.sync_batch(batch)
            if failed:
                self._dirty |= failed
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(10.0, backoff * 2)
                self._wake.set()
            else:
                backoff = 0.5

    async def sync_batch(self, uids: set[str]) -> set[str]:
        """Returns the uids to retry (API server unreachable)."""
        static_by_hash = {config_hash(p): p for p in self.manager.pods.values() if is_static(p)}
        mirrors = {o["metadata"]["annotations"][MIRROR_ANNOTATION]: o for o in self.source.mirror_pods()}
        mirror_hash = {o["metadata"]["uid"]: h for h, o in mirrors.items()}
        jobs: dict[str, Any] = {}
        for uid in uids:
            if uid in mirror_hash:  # a mirror changed: reconcile its static pod, or delete it
                static = static_by_hash.get(mirror_hash[uid])
                if static is None:
                    jobs[uid] = self._delete_orphan_mirror(mirrors[mirror_hash[uid]])
                    continue
                uid = static.metadata.uid
            pod = self.manager.pods.get(uid)
            if pod is None or uid in jobs:
                continue
            if is_static(pod):
                jobs[uid] = self._sync_static(uid, pod, mirrors.get(config_hash(pod)))
            else:
                jobs[uid] = self._sync_api_pod(uid, pod)
        results = await asyncio.gather(*(self._guarded(job) for job in jobs.values()))
        return {uid for uid, ok in zip(jobs, results) if not ok}

    async def _guarded(self, job: Any) -> bool:
        async with self._limit:
            try:
                await job
                return True
            except Unreachable as exc:
                log.debug("API server unreachable; status kept for later", error=str(exc))
                return False
            except ApiError as exc:
                key = (exc.path, exc.reason)
                if key not in self._reported_errors:
                    if len(self._reported_errors) >= REPORTED_ERRORS_MAX:  # bounded: old ones may log again
                        self._reported_errors.clear()
                    self._reported_errors.add(key)
                    log.error("API server refused a pod write", error=describe(exc))
                return not exc.denied and exc.code < 500

    def _status_of(self, uid: str) -> PodStatus | None:
        return self.manager.rejected.get(uid) or self.manager.statuses.get(uid)

    async def _patch_status(self, api: dict[str, Any], status: PodStatus) -> dict[str, Any] | None:
        meta = api["metadata"]
        api_status = api.get("status") or {}
        wanted = merged_status(api_status, encode(status))
        patch = two_way({"status": api_status}, {"status": wanted})
        if not patch:
            return None
        patch["metadata"] = {"uid": meta["uid"]}
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await self.client.patch(pod_path(meta["namespace"], meta["name"], "status"), patch)
        metrics.observe_pod_status_sync(loop.time() - started)
        if result.get("metadata", {}).get("uid") == meta["uid"]:
            self.source.objects[meta["uid"]] = result  # fresher than the watch for the next diff
        return result

    async def _sync_api_pod(self, uid: str, pod: Pod) -> None:
        api = self.source.api_object(uid)
        status = self._status_of(uid)
        if api is None:
            return
        if status is not None and status.phase:
            try:
                await self._patch_status(api, status)
            except ApiError as exc:
                if exc.not_found or exc.conflict:
                    return  # the pod is gone (or was recreated): nothing to report
                raise
        if api["metadata"].get("deletionTimestamp") and self.manager.finished(uid):
            await self._delete_for_good(api)

    async def _delete_for_good(self, api: dict[str, Any]) -> None:
        meta = api["metadata"]
        try:
            await self.client.delete(pod_path(meta["namespace"], meta["name"]), grace_period_seconds=0,
                                     uid=meta["uid"])
            log.info("pod terminated and deleted from the API server", pod=f"{meta['namespace']}/{meta['name']}",
                     pod_uid=meta["uid"])
        except ApiError as exc:
            if not (exc.not_found or exc.conflict):
                raise

    async def _sync_static(self, uid: str, pod: Pod, mirror: dict[str, Any] | None) -> None:
        node_uid = self.node_uid()
        if not node_uid:
            return  # no Node yet: mirrors need it as owner
        if self.manager.finished(uid):
            if mirror is not None:
                await self._delete_orphan_mirror(mirror)
            return
        if mirror is not None and mirror["metadata"].get("deletionTimestamp"):
            await self._delete_orphan_mirror(mirror)  # a user deleted it: replace it
            mirror = None
        if mirror is None:
            mirror = await self._create_mirror(pod, node_uid)
            if mirror is None:
                return
        status = self._status_of(uid)
        if status is not None and status.phase:
            await self._patch_status(mirror, status)

    async def _create_mirror(self, pod: Pod, node_uid: str) -> dict[str, Any] | None:
        # A mirror of an older version of the pod (same name, other hash) goes first.
        for other in self.source.mirror_pods():
            meta = other["metadata"]
            if meta.get("namespace") == pod.metadata.namespace and meta.get("name") == pod.metadata.name:
                await self._delete_orphan_mirror(other)
        try:
            created = await self.client.create(pod_path(pod.metadata.namespace),
                                               mirror_body(pod, self.node_name, node_uid))
        except ApiError as exc:
            if exc.conflict:
                return None  # the old one is still going; the next pass retries
            raise
        log.info("mirror pod created", pod=pod.full_name, pod_uid=pod.metadata.uid,
                 mirror_uid=created.get("metadata", {}).get("uid"))
        self.source.objects[created["metadata"]["uid"]] = created
        return created

    async def _delete_orphan_mirror(self, mirror: dict[str, Any]) -> None:
        meta = mirror["metadata"]
        try:
            await self.client.delete(pod_path(meta["namespace"], meta["name"]), grace_period_seconds=0,
                                     uid=meta["uid"])
        except ApiError as exc:
            if not (exc.not_found or exc.conflict):
                raise
        self.source.objects.pop(meta["uid"], None)

