"""What the pod worker needs from the API server about config objects.

The production implementation (nodeagent/kube/) keeps a watch-based cache of
the objects registered pods reference, like the kubelet's Watch
change-detection strategy for its secret and configMap managers, and asks
the TokenRequest API for service account tokens. Reads are cheap (a cache),
so the worker asks on every sync and rewrites a volume only when its
contents changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from nodeagent.api.types import Container, Pod


@dataclass(frozen=True)
class ConfigMapData:
    data: Mapping[str, str]
    binary_data: Mapping[str, bytes]
    resource_version: str


@dataclass(frozen=True)
class SecretData:
    data: Mapping[str, bytes]
    type: str
    resource_version: str


@dataclass(frozen=True)
class ServiceAccountToken:
    token: str
    expiration: float  # epoch seconds


class ObjectsUnavailable(Exception):
    """The API server cannot be asked now (outage); retry later, keep what is mounted."""


class ConfigObjects(Protocol):
    """Object access for pods. `None` from a getter means the object does not
    exist; `ObjectsUnavailable` means nobody can tell now."""

    async def config_map(self, namespace: str, name: str) -> ConfigMapData | None: ...

    async def secret(self, namespace: str, name: str) -> SecretData | None: ...

    async def service_account_token(self, namespace: str, service_account: str, *, pod_name: str,
                                    pod_uid: str, audiences: tuple[str, ...],
                                    expiration_seconds: int) -> ServiceAccountToken: ...

    def register_pod(self, pod: Pod, on_change: Callable[[], None]) -> None:
        """Watch the objects `pod` references; call `on_change` (from the event
        loop or any thread) when any of them changes. Registering a pod again
        (same uid) replaces its earlier registration."""
        ...

    def unregister_pod(self, pod_uid: str) -> None: ...


def referenced_objects(pod: Pod) -> tuple[frozenset[str], frozenset[str]]:
    """(configMap names, secret names) the pod references in volumes, projections,
    env and imagePullSecrets — what an implementation watches for `register_pod`."""
    config_maps: set[str] = set()
    secrets: set[str] = {ref.name for ref in pod.spec.image_pull_secrets}
    for volume in pod.spec.volumes:
        if volume.config_map is not None:
            config_maps.add(volume.config_map.name)
        if volume.secret is not None:
            secrets.add(volume.secret.secret_name)
        for source in volume.projected.sources if volume.projected is not None else ():
            if source.config_map is not None:
                config_maps.add(source.config_map.name)
            if source.secret is not None:
                secrets.add(source.secret.name)
    for container in [*pod.spec.init_containers, *pod.spec.containers]:
        env_config_maps, env_secrets = env_references(container)
        config_maps |= env_config_maps
        secrets |= env_secrets
    return frozenset(config_maps), frozenset(secrets)


def env_references(container: Container) -> tuple[set[str], set[str]]:
    """(configMap names, secret names) a container's env and envFrom use."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    for source in container.env_from:
        if source.config_map_ref is not None:
            config_maps.add(source.config_map_ref.name)
        if source.secret_ref is not None:
            secrets.add(source.secret_ref.name)
    for var in container.env:
        ref = var.value_from
        if ref is not None and ref.config_map_key_ref is not None:
            config_maps.add(ref.config_map_key_ref.name)
        if ref is not None and ref.secret_key_ref is not None:
            secrets.add(ref.secret_key_ref.name)
    return config_maps, secrets
