"""Environment variables from configMaps and secrets (kubelet_pods.go
makeEnvironmentVariables).

The objects a container's env references are fetched before its CRI config
is built (`fetch_env_objects`, async), so pods/crispec.py resolves the
environment synchronously from `EnvObjects` in the kubelet's order: envFrom
sources first (invalid names skipped, with an InvalidEnvironmentVariableNames
event), then env entries, which override.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.api.types import Container, EnvFromSource, KeySelector, Pod
from nodeagent.api.validation import is_env_var_name
from nodeagent.configdata.objects import (
    ConfigMapData, ConfigObjects, ObjectsUnavailable, SecretData, env_references,
)
from nodeagent.pods.crispec import ConfigError

INVALID_ENV_NAMES = "InvalidEnvironmentVariableNames"

# A fetched object, its absence (None), or why nobody could tell.
_Fetched = ConfigMapData | SecretData | ObjectsUnavailable | None


@dataclass
class EnvObjects:
    """The configMaps and secrets one container's env references, as fetched."""
    namespace: str
    config_maps: dict[str, ConfigMapData | ObjectsUnavailable | None] = field(default_factory=dict)
    secrets: dict[str, SecretData | ObjectsUnavailable | None] = field(default_factory=dict)
    # (reason, message) of Warning events for the caller to record on the pod.
    events: list[tuple[str, str]] = field(default_factory=list)

    def _get(self, kind: str, name: str, optional: bool) -> ConfigMapData | SecretData | None:
        """The object; None when it is absent and optional; else ConfigError."""
        found: _Fetched = (self.config_maps if kind == "configMap" else self.secrets).get(name)
        if isinstance(found, ObjectsUnavailable):
            raise ConfigError(f"couldn't get {kind} {self.namespace}/{name}: {found}")
        if found is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        return found

    def env_from(self, source: EnvFromSource) -> dict[str, str]:
        """One envFrom source's variables (prefix applied, invalid names skipped)."""
        ref = source.config_map_ref if source.config_map_ref is not None else source.secret_ref
        kind = "configMap" if source.config_map_ref is not None else "secret"
        assert ref is not None
        obj = self._get(kind, ref.name, bool(ref.optional))
        if obj is None:
            return {}
        if isinstance(obj, ConfigMapData):
            values = dict(obj.data)
        else:
            values = {k: v.decode("utf-8", "replace") for k, v in obj.data.items()}  # CRI strings are UTF-8
        env: dict[str, str] = {}
        invalid = []
        for key in sorted(values):
            name = source.prefix + key
            if is_env_var_name(name):  # a list of what is wrong with it
                invalid.append(name)
                continue
            env[name] = values[key]
        if invalid:
            self.events.append((INVALID_ENV_NAMES,
                                f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {kind} "
                                f"{self.namespace}/{ref.name} were skipped since they are considered "
                                f"invalid environment variable names."))
        return env

    def key(self, kind: str, selector: KeySelector) -> str | None:
        """configMapKeyRef / secretKeyRef; None: optional and absent, leave the
        variable out."""
        optional = bool(selector.optional)
        obj = self._get(kind, selector.name, optional)
        if obj is None:
            return None
        if isinstance(obj, ConfigMapData):
            value = obj.data.get(selector.key)  # binaryData is not for env, as upstream
            if value is not None:
                return value
        elif selector.key in obj.data:
            return obj.data[selector.key].decode("utf-8", "replace")
        if optional:
            return None
        what = "ConfigMap" if kind == "configMap" else "Secret"
        raise ConfigError(f"couldn't find key {selector.key} in {what} {self.namespace}/{selector.name}")


async def fetch_env_objects(pod: Pod, container: Container,
                            objects: ConfigObjects | None) -> EnvObjects | None:
    """Every object the container's env references; None when it references
    none or there is no API server (crispec then says "no kubeClient defined")."""
    config_maps, secrets = env_references(container)
    if objects is None or not (config_maps or secrets):
        return None
    namespace = pod.metadata.namespace
    found = EnvObjects(namespace)
    for name in sorted(config_maps):
        try:
            found.config_maps[name] = await objects.config_map(namespace, name)
        except ObjectsUnavailable as exc:
            found.config_maps[name] = exc
    for name in sorted(secrets):
        try:
            found.secrets[name] = await objects.secret(namespace, name)
        except ObjectsUnavailable as exc:
            found.secrets[name] = exc
    return found
