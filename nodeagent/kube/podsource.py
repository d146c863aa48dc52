"""Pods bound to this node, from the API server: list, then watch from the
list's resourceVersion (with bookmarks), resuming from the last version seen
after a dropped stream and relisting after 410 Gone. Running pods are never
touched by a relist or an outage: the desired set only changes when the API
server says a pod changed.

Like the kubelet's config source, only semantic changes (spec, labels,
annotations, deletion) reach the pod manager; the status writes the agent
itself causes come back as MODIFIED events and must not resync the pod.
Mirror pods (kubernetes.io/config.mirror) are the API's copies of static
pods: they are tracked for the mirror reconciler, never run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from nodeagent.api.codec import DecodeError, decode_with_warnings
from nodeagent.api.defaults import apply_defaults
from nodeagent.api.types import Pod
from nodeagent.events import WARNING, record_event
from nodeagent.kube.client import ApiConnectionState, KubeClient, WatchEvent
from nodeagent.kube.reflector import Reflector
from nodeagent.sources.static import CONFIG_SOURCE_ANNOTATION

log = structlog.get_logger("nodeagent.kube.pods")

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
API_SOURCE = "api"


def _semantic(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What the kubelet's podsDifferSemantically compares (not status, not resourceVersion)."""
    meta = obj.get("metadata") or {}
    return (obj.get("spec"), meta.get("labels"), meta.get("annotations"), meta.get("deletionTimestamp"),
            meta.get("deletionGracePeriodSeconds"), meta.get("ownerReferences"))


def is_mirror(obj: dict[str, Any]) -> bool:
    return MIRROR_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {})


class ApiPodSource:
    def __init__(self, client: KubeClient, node_name: str, on_pods: Callable[[list[Pod]], None],
                 *, on_change: Callable[[str], None] | None = None, watch_timeout: int = 300,
                 state: ApiConnectionState | None = None) -> None:
        self.client = client
        self.node_name = node_name
        self.on_pods = on_pods
        self.on_change = on_change  # uid of an API object that changed (status reporter, mirrors)
        self.objects: dict[str, dict[str, Any]] = {}   # uid -> latest API object (pods and mirrors)
        self.pods: dict[str, Pod] = {}                  # uid -> typed pod handed to the manager
        self._semantic: dict[str, tuple[Any, ...]] = {}
        self.synced = asyncio.Event()  # the first list arrived
        self.state = state or ApiConnectionState()
        self.reflector = Reflector(client, "/api/v1/pods", {"fieldSelector": f"spec.nodeName={node_name}"},
                                   on_list=self._listed, on_event=self._event, on_ok=self.state.ok,
                                   on_error=self._failed, watch_timeout=watch_timeout)
        self._refused: set[tuple[str, str]] = set()  # (uid, resourceVersion) already reported undecodable

    def api_object(self, uid: str) -> dict[str, Any] | None:
        return self.objects.get(uid)

    def mirror_pods(self) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if is_mirror(o)]

    async def run(self) -> None:
        await self.reflector.run()

    @property
    def resource_version(self) -> str:
        return self.reflector.resource_version

    @property
    def relists(self) -> int:
        return self.reflector.relists

    def _failed(self, exc: Exception) -> None:
        self.state.failed("listing/watching pods (running pods are kept)", exc)

    def _listed(self, items: list[dict[str, Any]]) -> None:
        fresh = {}
        for item in items:
            item.setdefault("apiVersion", "v1")
            item.setdefault("kind", "Pod")
            uid = (item.get("metadata") or {}).get("uid")
            if uid:
                fresh[uid] = item
        gone = set(self.objects) - set(fresh)
        self.objects = fresh
        for uid in gone:
            self._notify(uid)
        for uid in fresh:
            self._notify(uid)
        self._publish()
        self.synced.set()

    def _event(self, event: WatchEvent) -> None:
        uid = (event.object.get("metadata") or {}).get("uid")
        if not uid:
            return
        if event.type == "DELETED":
            self.objects.pop(uid, None)
        else:
            self.objects[uid] = event.object
        self._notify(uid)
        self._publish()

    def _notify(self, uid: str) -> None:
        if self.on_change is not None:
            self.on_change(uid)

    def _publish(self) -> None:
        """Hand the manager the pods to run; unchanged pods keep their object."""
        pods: dict[str, Pod] = {}
        for uid, obj in self.objects.items():
            if is_mirror(obj):
                continue
            key = _semantic(obj)
            current = self.pods.get(uid)
            if current is not None and self._semantic.get(uid) == key:
                pods[uid] = current
                continue
            pod = self._decode(obj)
            if pod is None:
                if current is not None:
                    pods[uid] = current  # keep running what was accepted before
                continue
            pods[uid] = pod
            self._semantic[uid] = key
        for uid in set(self._semantic) - set(pods):
            del self._semantic[uid]
        self._refused = {key for key in self._refused if key[0] in self.objects}  # deleted pods: forgotten
        self.pods = pods
        self.on_pods(list(pods.values()))

    def _decode(self, obj: dict[str, Any]) -> Pod | None:
        meta = obj.get("metadata") or {}
        try:
            pod, _warnings = decode_with_warnings(Pod, obj)
        except DecodeError as exc:
            key = (str(meta.get("uid")), str(meta.get("resourceVersion")))
            if key not in self._refused:
                self._refused.add(key)
                name = f"{meta.get('namespace')}/{meta.get('name')}"
                log.error("pod from the API server cannot be run", pod=name, pod_uid=key[0], error=str(exc))
                record_event(namespace=str(meta.get("namespace") or ""), pod=str(meta.get("name") or ""),
                             pod_uid=key[0], type=WARNING, reason="FailedCreate",
                             message=f"nodeagent cannot read this pod: {exc}")
            return None
        apply_defaults(pod)  # the API server defaulted it already; fills what older servers omit
        pod.metadata.annotations.setdefault(CONFIG_SOURCE_ANNOTATION, API_SOURCE)
        return pod
