"""ConfigMaps, Secrets and service account tokens for pods, from the API
server (the kubelet's watch-based configmap/secret managers and token
manager's requests).

Every object a registered pod references gets its own watch (field selector
metadata.name) for as long as some pod references it; the watch keeps the
cache current and tells the referencing pods' workers when it changes, so
mounted volumes follow the object. An object nobody watches yet is read with
a GET. While the API server is unreachable the cached copy is served; with
no copy the caller gets ObjectsUnavailable and keeps what is mounted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from nodeagent.api.types import Pod
from nodeagent.configdata.objects import (
    ConfigMapData, ObjectsUnavailable, SecretData, ServiceAccountToken, referenced_objects,
)
from nodeagent.kube.client import ApiError, KubeClient, Unreachable, WatchEvent
from nodeagent.kube.reflector import Reflector

log = structlog.get_logger("nodeagent.kube.objects")

Ref = tuple[str, str, str]  # (kind: configmaps|secrets, namespace, name)
_ABSENT = object()


def pod_references(pod: Pod) -> set[Ref]:
    ns = pod.metadata.namespace
    config_maps, secrets = referenced_objects(pod)
    return {("configmaps", ns, n) for n in config_maps if n} | {("secrets", ns, n) for n in secrets if n}


def _path(ref: Ref, name: bool = True) -> str:
    kind, ns, obj = ref
    return f"/api/v1/namespaces/{ns}/{kind}" + (f"/{obj}" if name else "")


def _b64(values: dict[str, Any] | None, ref: Ref) -> dict[str, bytes]:
    out = {}
    for key, value in (values or {}).items():
        try:
            out[key] = base64.b64decode(value or "", validate=True)
        except (binascii.Error, ValueError):
            log.warning("undecodable data key skipped", object=f"{ref[1]}/{ref[2]}", key=key)
    return out


def _typed(ref: Ref, obj: dict[str, Any]) -> ConfigMapData | SecretData:
    rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    if ref[0] == "configmaps":
        return ConfigMapData(data=dict(obj.get("data") or {}), binary_data=_b64(obj.get("binaryData"), ref),
                             resource_version=rv)
    return SecretData(data=_b64(obj.get("data"), ref), type=str(obj.get("type") or "Opaque"), resource_version=rv)


class _Watched:
    def __init__(self) -> None:
        self.value: Any = _ABSENT  # _ABSENT: not known; None: does not exist
        self.task: asyncio.Task[None] | None = None


class ApiConfigObjects:
    def __init__(self, client: KubeClient, *, watch_timeout: int = 300) -> None:
        self.client = client
        self.watch_timeout = watch_timeout
        self._pods: dict[str, tuple[set[Ref], Callable[[], None]]] = {}
        self._watched: dict[Ref, _Watched] = {}
        self._fetched: dict[Ref, Any] = {}  # GET results for objects not (yet) watched

    # -- the ConfigObjects protocol ----------------------------------------------------

    async def config_map(self, namespace: str, name: str) -> ConfigMapData | None:
        return await self._get(("configmaps", namespace, name))

    async def secret(self, namespace: str, name: str) -> SecretData | None:
        return await self._get(("secrets", namespace, name))

    async def service_account_token(self, namespace: str, service_account: str, *, pod_name: str, pod_uid: str,
                                    audiences: tuple[str, ...], expiration_seconds: int) -> ServiceAccountToken:
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds,
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod_name,
                                                   "uid": pod_uid}}
        if audiences:
            spec["audiences"] = list(audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            result = await self.client.create(
                f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token", body)
        except Unreachable as exc:
            raise ObjectsUnavailable(str(exc)) from None
        status = result.get("status") or {}
        expires = status.get("expirationTimestamp") or ""
        try:
            expiration = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
        except ValueError:
            expiration = time.time() + expiration_seconds
        return ServiceAccountToken(token=str(status.get("token") or ""), expiration=expiration)

    def register_pod(self, pod: Pod, on_change: Callable[[], None]) -> None:
        refs = pod_references(pod)
        self._pods[pod.metadata.uid] = (refs, on_change)
        for ref in refs:
            self._watch(ref)
        self._release_unused()

    def unregister_pod(self, pod_uid: str) -> None:
        self._pods.pop(pod_uid, None)
        self._release_unused()

    # -- cache and watches ---------------------------------------------------------------

    async def _get(self, ref: Ref) -> Any:
        watched = self._watched.get(ref)
        if watched is not None and watched.value is not _ABSENT:
            return watched.value
        try:
            obj = await self.client.get(_path(ref))
            value = _typed(ref, obj)
        except ApiError as exc:
            if not exc.not_found:
                raise ObjectsUnavailable(f"{ref[0][:-1]} {ref[1]}/{ref[2]}: {exc}") from None
            value = None
        except Unreachable as exc:
            cached = self._fetched.get(ref, _ABSENT)
            if cached is not _ABSENT:
                return cached
            raise ObjectsUnavailable(str(exc)) from None
        self._fetched[ref] = value
        return value

    def _watch(self, ref: Ref) -> None:
        if ref in self._watched:
            return
        watched = self._watched[ref] = _Watched()
        watched.task = asyncio.ensure_future(self._follow(ref, watched))

    def _release_unused(self) -> None:
        used = {ref for refs, _ in self._pods.values() for ref in refs}
        for ref in list(self._watched):
            if ref not in used:
                task = self._watched.pop(ref).task
                if task is not None:
                    task.cancel()
                self._fetched.pop(ref, None)

    def _changed(self, ref: Ref) -> None:
        for refs, on_change in list(self._pods.values()):
            if ref in refs:
                try:
                    on_change()
                except Exception as exc:  # a worker's wake must not stop the watch
                    log.warning("config object listener failed", error=repr(exc))

    def _set(self, ref: Ref, watched: _Watched, value: Any) -> None:
        old = watched.value
        watched.value = value
        self._fetched[ref] = value
        if old is not _ABSENT and old != value:
            self._changed(ref)

    async def _follow(self, ref: Ref, watched: _Watched) -> None:
        def listed(items: list[dict[str, Any]]) -> None:
            self._set(ref, watched, _typed(ref, items[0]) if items else None)

        def event(ev: WatchEvent) -> None:
            self._set(ref, watched, None if ev.type == "DELETED" else _typed(ref, ev.object))

        def failed(exc: Exception) -> None:
            log.debug("config object watch failed; retrying", object=f"{ref[1]}/{ref[2]}", error=str(exc))

        await Reflector(self.client, _path(ref, name=False), {"fieldSelector": f"metadata.name={ref[2]}"},
                        on_list=listed, on_event=event, on_error=failed, watch_timeout=self.watch_timeout).run()

    async def close(self) -> None:
        tasks = [w.task for w in self._watched.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watched.clear()
