"""configMap, secret, downwardAPI and projected volumes of one pod
(k/k pkg/volume/{configmap,secret,downwardapi,projected}).

Each sync recomputes every volume's files from the objects (a cache read) and
hands them to the atomic writer, which publishes a new payload only when the
content changed; a digest of what was last written skips even that. Like the
kubelet, the data is fetched before the volume dir is made, so a missing
object leaves nothing behind; secret, downwardAPI and projected volumes live
on a tmpfs (the kubelet wraps them in a memory-medium emptyDir), configMap
volumes on disk. A volume that cannot be refreshed keeps its last content:
running containers go on, the failure is a FailedMount event.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from nodeagent.api.types import Pod, ProjectedVolumeSource, Volume
from nodeagent.configdata import atomic
from nodeagent.configdata.atomic import FileProjection
from nodeagent.configdata.objects import ConfigMapData, ConfigObjects, ObjectsUnavailable, SecretData
from nodeagent.configdata.payload import (
    SourceError, aggregate, config_map_payload, downward_api_payload, secret_payload,
)
from nodeagent.configdata.tokens import TokenCache, TokenError, TokenKey
from nodeagent.pods import crispec
from nodeagent.pods import volumes as podvolumes

log = structlog.get_logger("nodeagent.configdata")

DEFAULT_MODE = 0o644  # what the API server defaults defaultMode to (420)
TOKEN_OWNER_MODE = 0o600  # a token file owned by fsUser/fsGroup
DEFAULT_SERVICE_ACCOUNT = "default"
# A failed volume is tried again after 10 s, doubling to about 2 min (the kubelet's
# mount backoff tops out at 2m2s); an object that appears wakes the pod anyway.
RETRY_SECONDS = 10.0
MAX_RETRY_SECONDS = 122.0
READ_ONLY_MASK = 0o440  # SetVolumeOwnership for read-only volumes
EXEC_MASK = 0o110

PLUGINS = {  # the kubelet's escaped plugin names: <pod>/volumes/<plugin>/<volume>
    "config_map": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downward_api": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}


def volume_kind(volume: Volume) -> str | None:
    for kind in PLUGINS:
        if getattr(volume, kind) is not None:
            return kind
    return None


def has_config_volumes(pod: Pod) -> bool:
    return any(podvolumes.is_config_volume(v) for v in pod.spec.volumes)


def volume_dir(root_dir: Path, uid: str, volume: Volume) -> Path:
    kind = volume_kind(volume)
    assert kind is not None
    return podvolumes.pod_dir(root_dir, uid) / "volumes" / PLUGINS[kind] / volume.name


def on_tmpfs(volume: Volume) -> bool:
    """Secret, downwardAPI and projected volumes are memory-backed; configMap is not."""
    return volume.config_map is None


def fs_user(pod: Pod) -> int | None:
    """FsUserFrom: the runAsUser every container shares, if they all have one."""
    users = {crispec.effective_run_as_user(pod, c) for c in [*pod.spec.init_containers,
                                                             *pod.spec.containers]}
    if len(users) != 1 or None in users:
        return None
    return users.pop()


def set_volume_ownership(path: Path, fs_group: int) -> None:
    """SetVolumeOwnership for a read-only volume: everything gets group fsGroup,
    files at least 0440, directories at least 0550 and setgid; symlinks are
    chowned, never chmodded (that would reach their target)."""
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files, ""]:
            full = os.path.join(root, name) if name else root
            st = os.lstat(full)
            os.lchown(full, -1, fs_group)
            if stat.S_ISLNK(st.st_mode):
                continue
            mask = READ_ONLY_MASK | (EXEC_MASK | stat.S_ISGID if stat.S_ISDIR(st.st_mode) else 0)
            os.chmod(full, stat.S_IMODE(st.st_mode) | mask)


@dataclass
class Prepared:
    """One sync's outcome for the pod's config volumes."""
    paths: dict[str, str] = field(default_factory=dict)  # volume name -> host path
    errors: list[str] = field(default_factory=list)  # volumes not set up: the pod waits
    warnings: list[str] = field(default_factory=list)  # set up before, now stale
    retry_in: float | None = None  # when to look again without any wake

    def soon(self, seconds: float) -> None:
        self.retry_in = seconds if self.retry_in is None else min(self.retry_in, seconds)


Blocking = Callable[..., Awaitable[Any]]


class PodConfigVolumes:
    """The config volumes of one pod: what was last written, its tokens."""

    def __init__(self, objects: ConfigObjects | None, node: crispec.NodeContext,
                 blocking: Blocking) -> None:
        self.objects = objects
        self.node = node
        self._blocking = blocking
        self._written: dict[str, bytes] = {}  # volume name -> digest of its last payload
        self._failures: dict[str, int] = {}  # volume name -> failed attempts in a row
        self.tokens = TokenCache()

    async def prepare(self, pod: Pod) -> Prepared:
        """Set up or refresh every config volume of `pod`."""
        result = Prepared()
        used_tokens: set[TokenKey] = set()
        for volume in pod.spec.volumes:
            if volume_kind(volume) is None:
                continue
            target = volume_dir(self.node.root_dir, pod.metadata.uid, volume)
            try:
                payload = await self._payload(pod, volume, used_tokens)
                digest = _digest(payload)
                if self._written.get(volume.name) != digest:
                    await self._blocking(self._write, pod, volume, target, payload)
                    self._written[volume.name] = digest
            except (SourceError, TokenError, OSError, ValueError) as exc:  # PayloadError too
                message = f'MountVolume.SetUp failed for volume "{volume.name}" : {podvolumes.describe_error(exc)}'
                failures = self._failures[volume.name] = self._failures.get(volume.name, 0) + 1
                result.soon(min(RETRY_SECONDS * 2 ** (failures - 1), MAX_RETRY_SECONDS))
                if volume.name in self._written or await self._blocking(_published, target):
                    log.warning("volume refresh failed, keeping its content", pod=pod.full_name,
                                pod_uid=pod.metadata.uid, volume=volume.name, error=message)
                    result.warnings.append(message)
                else:
                    result.errors.append(message)
                    continue
            else:
                self._failures.pop(volume.name, None)
            result.paths[volume.name] = str(target)
        self.tokens.forget_unused(used_tokens)
        if (refresh := self.tokens.next_refresh_in()) is not None:
            result.soon(refresh)
        return result

    # -- payloads -----------------------------------------------------------

    async def _payload(self, pod: Pod, volume: Volume,
                       used_tokens: set[TokenKey]) -> dict[str, FileProjection]:
        if volume.config_map is not None:
            src = volume.config_map
            cm = await self._config_map(pod, src.name, bool(src.optional))
            return config_map_payload(src.items, cm, _mode(src.default_mode), bool(src.optional))
        if volume.secret is not None:
            sec = volume.secret
            secret = await self._secret(pod, sec.secret_name, bool(sec.optional))
            return secret_payload(sec.items, secret, _mode(sec.default_mode), bool(sec.optional))
        if volume.downward_api is not None:
            dapi = volume.downward_api
            return downward_api_payload(dapi.items, pod, self.node, _mode(dapi.default_mode))
        assert volume.projected is not None
        return await self._projected(pod, volume.projected, used_tokens)

    async def _projected(self, pod: Pod, projected: ProjectedVolumeSource,
                         used_tokens: set[TokenKey]) -> dict[str, FileProjection]:
        """projected collectData: one payload from every source, errors aggregated."""
        mode = _mode(projected.default_mode)
        payload: dict[str, FileProjection] = {}
        errors: list[str] = []
        for source in projected.sources:
            try:
                if source.secret is not None:
                    ref = source.secret
                    secret = await self._secret(pod, ref.name, bool(ref.optional))
                    payload.update(secret_payload(ref.items, secret, mode, bool(ref.optional)))
                elif source.config_map is not None:
                    cref = source.config_map
                    cm = await self._config_map(pod, cref.name, bool(cref.optional))
                    payload.update(config_map_payload(cref.items, cm, mode, bool(cref.optional)))
                elif source.downward_api is not None:
                    payload.update(downward_api_payload(source.downward_api.items, pod, self.node, mode))
                elif source.service_account_token is not None:
                    payload.update(await self._token(pod, source.service_account_token, mode, used_tokens))
                elif source.cluster_trust_bundle is not None:
                    raise SourceError("clusterTrustBundle projections are not supported by nodeagent")
            except (SourceError, TokenError) as exc:
                errors.append(str(exc))
        if errors:
            raise SourceError(aggregate(errors))
        return payload

    async def _token(self, pod: Pod, projection: Any, default_mode: int,
                     used_tokens: set[TokenKey]) -> dict[str, FileProjection]:
        if self.objects is None:
            raise SourceError(f"cannot get a token for service account "
                              f"{pod.metadata.namespace}/{_service_account(pod)}, no kubeClient defined")
        key = TokenKey(namespace=pod.metadata.namespace, service_account=_service_account(pod),
                       audiences=(projection.audience,) if projection.audience else (),
                       expiration_seconds=projection.expiration_seconds or 3600,
                       pod_name=pod.metadata.name, pod_uid=pod.metadata.uid)
        used_tokens.add(key)
        token = await self.tokens.get(self.objects, key)
        user = fs_user(pod)
        psc = pod.spec.security_context
        group = psc.fs_group if psc is not None else None
        # When fsUser/fsGroup is set the file starts 0600; SetVolumeOwnership widens it to 0640.
        mode = TOKEN_OWNER_MODE if user is not None or group is not None else default_mode
        return {projection.path: FileProjection(token.token.encode(), mode, fs_user=user)}

    async def _config_map(self, pod: Pod, name: str, optional: bool) -> ConfigMapData | None:
        return await self._object(pod, "configMap", name, optional)

    async def _secret(self, pod: Pod, name: str, optional: bool) -> SecretData | None:
        return await self._object(pod, "secret", name, optional)

    async def _object(self, pod: Pod, kind: str, name: str, optional: bool) -> Any:
        """The object, None if it is absent and optional; SourceError with the
        kubelet's message otherwise."""
        ns = pod.metadata.namespace
        if self.objects is None:
            raise SourceError(f"couldn't get {kind} {ns}/{name}, no kubeClient defined")
        getter = self.objects.config_map if kind == "configMap" else self.objects.secret
        try:
            found = await getter(ns, name)
        except ObjectsUnavailable as exc:
            raise SourceError(f"couldn't get {kind} {ns}/{name}: {exc}") from exc
        if found is None and not optional:
            raise SourceError(f'{kind.lower()} "{name}" not found')
        return found

    # -- on disk (executor) -------------------------------------------------

    def _write(self, pod: Pod, volume: Volume, target: Path, payload: Mapping[str, FileProjection]) -> None:
        podvolumes.setup_empty_dir_at(
            target, pod, volume,
            memory_bytes=self.node.allocatable_memory_bytes if on_tmpfs(volume) else None)
        psc = pod.spec.security_context
        group = psc.fs_group if psc is not None else None
        set_perms = None if group is None else (lambda _ts_dir: set_volume_ownership(target, group))
        if atomic.write(target, payload, set_perms):
            log.info("volume content written", pod=pod.full_name, pod_uid=pod.metadata.uid,
                     volume=volume.name, files=len(payload))


def _published(target: Path) -> bool:
    """A payload was published here before (maybe by an earlier agent)."""
    return os.path.lexists(target / atomic.DATA_DIR)


def _mode(default_mode: int | None) -> int:
    return DEFAULT_MODE if default_mode is None else default_mode


def _service_account(pod: Pod) -> str:
    return pod.spec.service_account_name or DEFAULT_SERVICE_ACCOUNT


def _digest(payload: Mapping[str, FileProjection]) -> bytes:
    h = hashlib.sha256()
    for path in sorted(payload):
        p = payload[path]
        h.update(f"{path}\0{p.mode}\0{p.fs_user}\0{p.fs_group}\0{len(p.data)}\0".encode())
        h.update(p.data)
    return h.digest()
