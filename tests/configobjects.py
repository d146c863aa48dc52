"""An in-memory ConfigObjects for tests: objects the test puts in, tokens it hands
out, on_change fired for the pods that reference what changed, and an outage
switch. The production implementation (over the API server) is nodeagent/kube's."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping

from nodeagent.api.types import Pod
from nodeagent.configdata.objects import (
    ConfigMapData, ObjectsUnavailable, SecretData, ServiceAccountToken, referenced_objects,
)


class MemoryConfigObjects:
    def __init__(self) -> None:
        self.config_maps: dict[tuple[str, str], ConfigMapData] = {}
        self.secrets: dict[tuple[str, str], SecretData] = {}
        self.registered: dict[str, tuple[Pod, Callable[[], None]]] = {}
        self.token_requests: list[dict[str, object]] = []
        self.unavailable = False  # an API server outage
        self.token_lifetime: float | None = None  # None: as requested
        self.reads = 0  # config_map/secret calls: how often pods looked
        self._version = 0

    # -- what tests do --------------------------------------------------------

    def put_config_map(self, namespace: str, name: str, data: Mapping[str, str] | None = None,
                       binary_data: Mapping[str, bytes] | None = None) -> None:
        self.config_maps[(namespace, name)] = ConfigMapData(dict(data or {}), dict(binary_data or {}),
                                                            self._next_version())
        self._changed("configmap", name)

    def put_secret(self, namespace: str, name: str, data: Mapping[str, bytes | str],
                   type_: str = "Opaque") -> None:
        raw = {k: v.encode() if isinstance(v, str) else v for k, v in data.items()}
        self.secrets[(namespace, name)] = SecretData(raw, type_, self._next_version())
        self._changed("secret", name)

    def delete_config_map(self, namespace: str, name: str) -> None:
        del self.config_maps[(namespace, name)]
        self._changed("configmap", name)

    def delete_secret(self, namespace: str, name: str) -> None:
        del self.secrets[(namespace, name)]
        self._changed("secret", name)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _changed(self, kind: str, name: str) -> None:
        for pod, on_change in list(self.registered.values()):
            config_maps, secrets = referenced_objects(pod)
            if name in (config_maps if kind == "configmap" else secrets):
                on_change()

    # -- ConfigObjects -------------------------------------------------------------

    async def config_map(self, namespace: str, name: str) -> ConfigMapData | None:
        self.reads += 1
        self._check()
        return self.config_maps.get((namespace, name))

    async def secret(self, namespace: str, name: str) -> SecretData | None:
        self.reads += 1
        self._check()
        return self.secrets.get((namespace, name))

    async def service_account_token(self, namespace: str, service_account: str, *, pod_name: str,
                                    pod_uid: str, audiences: tuple[str, ...],
                                    expiration_seconds: int) -> ServiceAccountToken:
        self._check()
        n = len(self.token_requests) + 1
        self.token_requests.append({"namespace": namespace, "service_account": service_account,
                                    "pod_name": pod_name, "pod_uid": pod_uid, "audiences": audiences,
                                    "expiration_seconds": expiration_seconds})
        lifetime = self.token_lifetime if self.token_lifetime is not None else expiration_seconds
        claims = f"{namespace}:{service_account}:{pod_name}:{','.join(audiences)}:{n}".encode()
        return ServiceAccountToken(token="test." + base64.urlsafe_b64encode(claims).decode(),
                                   expiration=time.time() + lifetime)

    def register_pod(self, pod: Pod, on_change: Callable[[], None]) -> None:
        self.registered[pod.metadata.uid] = (pod, on_change)

    def unregister_pod(self, pod_uid: str) -> None:
        self.registered.pop(pod_uid, None)

    def _check(self) -> None:
        if self.unavailable:
            raise ObjectsUnavailable("the API server is not reachable (test outage)")
