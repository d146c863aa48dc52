"""Volume payloads from objects: the kubelet's MakePayload (configmap.go,
secret.go) and downwardapi.CollectData, as pure functions.

Errors carry the kubelet's texts; the caller prefixes
`MountVolume.SetUp failed for volume "<name>" : `.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from nodeagent.api.types import DownwardAPIVolumeFile, KeyToPath, ObjectFieldSelector, Pod
from nodeagent.configdata.atomic import FileProjection
from nodeagent.configdata.objects import ConfigMapData, SecretData
from nodeagent.pods import crispec

EMPTY_CONFIG_MAP = ConfigMapData(data={}, binary_data={}, resource_version="")
EMPTY_SECRET = SecretData(data={}, type="", resource_version="")


class SourceError(Exception):
    """A volume's data cannot be built; the message is the kubelet's."""


def aggregate(messages: Sequence[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message as is, several in brackets."""
    if len(messages) == 1:
        return messages[0]
    return "[" + ", ".join(messages) + "]"


def config_map_payload(items: Sequence[KeyToPath], config_map: ConfigMapData | None,
                       default_mode: int, optional: bool) -> dict[str, FileProjection]:
    """configmap.MakePayload: every key (data, then binaryData) without items; with
    items only those, a missing key an error unless the volume is optional."""
    cm = config_map or EMPTY_CONFIG_MAP
    if not items:
        payload = {k: FileProjection(v.encode(), default_mode) for k, v in cm.data.items()}
        payload.update({k: FileProjection(bytes(v), default_mode) for k, v in cm.binary_data.items()})
        return payload
    payload = {}
    for item in items:
        if item.key in cm.data:
            data = cm.data[item.key].encode()
        elif item.key in cm.binary_data:
            data = bytes(cm.binary_data[item.key])
        elif optional:
            continue
        else:
            raise SourceError(f"configmap references non-existent config key: {item.key}")
        payload[item.path] = FileProjection(data, item.mode if item.mode is not None else default_mode)
    return payload


def secret_payload(items: Sequence[KeyToPath], secret: SecretData | None, default_mode: int,
                   optional: bool) -> dict[str, FileProjection]:
    """secret.MakePayload."""
    data = (secret or EMPTY_SECRET).data
    if not items:
        return {k: FileProjection(bytes(v), default_mode) for k, v in data.items()}
    payload = {}
    for item in items:
        if item.key not in data:
            if optional:
                continue
            raise SourceError(f"references non-existent secret key: {item.key}")
        payload[item.path] = FileProjection(bytes(data[item.key]),
                                            item.mode if item.mode is not None else default_mode)
    return payload


def volume_field_value(ref: ObjectFieldSelector, pod: Pod) -> str:
    """fieldpath.ExtractFieldPathAsString on the pod: metadata only (labels and
    annotations as sorted `key="value"` lines, or one of them by subscript)."""
    path = ref.field_path
    meta = pod.metadata
    if path.endswith("']") and "['" in path:
        base, _, key = path[:-2].partition("['")
        if base == "metadata.annotations":
            return meta.annotations.get(key, "")
        if base == "metadata.labels":
            return meta.labels.get(key, "")
        raise SourceError(f"unsupported fieldPath: {path}")
    values = {
        "metadata.name": lambda: meta.name,
        "metadata.namespace": lambda: meta.namespace,
        "metadata.uid": lambda: meta.uid,
        "metadata.labels": lambda: crispec.format_map(meta.labels),
        "metadata.annotations": lambda: crispec.format_map(meta.annotations),
    }
    if path not in values:
        raise SourceError(f"unsupported fieldPath: {path}")
    return values[path]()


def downward_api_payload(items: Sequence[DownwardAPIVolumeFile], pod: Pod, node: crispec.NodeContext,
                         default_mode: int) -> dict[str, FileProjection]:
    """downwardapi.CollectData: every item is tried, the errors are aggregated."""
    errors: list[str] = []
    payload: dict[str, FileProjection] = {}
    for item in items:
        mode = item.mode if item.mode is not None else default_mode
        data = b""
        try:
            if item.field_ref is not None:
                data = volume_field_value(item.field_ref, pod).encode()
            elif item.resource_field_ref is not None:
                ref = item.resource_field_ref
                anchor = next((c for c in [*pod.spec.containers, *pod.spec.init_containers]
                               if c.name == ref.container_name), None)
                if anchor is None:
                    raise SourceError(f"container {ref.container_name} not found")
                data = crispec.resource_field_value(ref, pod, anchor, node).encode()
        except (SourceError, crispec.ConfigError) as exc:
            errors.append(str(exc))
        payload[posixpath.normpath(item.path)] = FileProjection(data, mode)
    if errors:
        raise SourceError(aggregate(errors))
    return payload
