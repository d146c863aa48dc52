"""downwardAPI and projected volumes in the API types: decoding, API-server
defaulting and validation, and the static-pod refusal of API objects."""

from __future__ import annotations

from nodeagent.api.codec import decode, encode
from nodeagent.api.defaults import apply_defaults
from nodeagent.api.manifest import parse_manifest
from nodeagent.api.types import Pod
from nodeagent.api.validation import validate_pod, validate_static_pod

KUBE_API_ACCESS = {
    "name": "kube-api-access-x7k2p",
    "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ], "defaultMode": 420},
}


def pod_with(*volumes: dict, mounts: list[dict] | None = None) -> Pod:
    pod = decode(Pod, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "prod"},
                       "spec": {"volumes": list(volumes),
                                "containers": [{"name": "c", "image": "busybox:1.36",
                                                "volumeMounts": mounts or []}]}})
    apply_defaults(pod)
    return pod


def errors(pod: Pod) -> list[str]:
    return [str(e) for e in validate_pod(pod)]


def test_kube_api_access_volume_round_trips_and_validates() -> None:
    pod = pod_with(KUBE_API_ACCESS)
    projected = pod.spec.volumes[0].projected
    assert projected is not None and projected.default_mode == 0o644
    token, ca, ns = projected.sources
    assert token.service_account_token is not None and token.service_account_token.expiration_seconds == 3607
    assert ca.config_map is not None and ca.config_map.items[0].path == "ca.crt"
    assert ns.downward_api is not None and ns.downward_api.items[0].field_ref.field_path == "metadata.namespace"
    assert encode(pod)["spec"]["volumes"][0] == KUBE_API_ACCESS
    assert errors(pod) == []


def test_defaults() -> None:
    pod = pod_with({"name": "d", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                   {"name": "p", "projected": {"sources": [
                       {"serviceAccountToken": {"path": "t"}},
                       {"downwardAPI": {"items": [{"path": "l", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}})
    dapi, proj = pod.spec.volumes
    assert dapi.downward_api.default_mode == 0o644
    assert dapi.downward_api.items[0].field_ref.api_version == "v1"
    assert proj.projected.default_mode == 0o644
    assert proj.projected.sources[0].service_account_token.expiration_seconds == 3600
    assert proj.projected.sources[1].downward_api.items[0].field_ref.api_version == "v1"
    assert dapi.empty_dir is None and proj.empty_dir is None
    assert errors(pod) == []


def test_downward_api_validation() -> None:
    pod = pod_with({"name": "d", "downwardAPI": {"defaultMode": 0o1000, "items": [
        {"path": "/abs", "fieldRef": {"fieldPath": "spec.nodeName"}},
        {"path": "../up", "resourceFieldRef": {"resource": "limits.cpu"}},
        {"path": "both", "fieldRef": {"fieldPath": "metadata.name"},
         "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
        {"path": "none"},
        {"path": "sub", "fieldRef": {"fieldPath": "metadata.labels['app']"}, "mode": -1},
    ]}})
    base = "spec.volumes[0].downwardAPI"
    assert errors(pod) == [
        f"{base}.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive",
        f'{base}.path: Invalid value: "/abs": must be a relative path',
        f'{base}.fieldRef.fieldPath: Unsupported value: "spec.nodeName": supported values: '
        '"metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"',
        f"{base}.path: Invalid value: \"../up\": must not contain '..'",
        f"{base}.path: Invalid value: \"../up\": must not start with '..'",
        f"{base}.resourceFieldRef.containerName: Required value",
        f'{base}: Invalid value: "resource": fieldRef and resourceFieldRef can not be specified simultaneously',
        f"{base}: Required value: one of fieldRef and resourceFieldRef is required",
        f"{base}.mode: Invalid value: -1: must be a number between 0 and 0777 (octal), both inclusive",
    ]


def test_projected_validation() -> None:
    pod = pod_with({"name": "p", "projected": {"sources": [
        {"secret": {"name": "s", "items": [{"key": "a", "path": "same"}]},
         "configMap": {"name": "c"}},
        {"configMap": {"items": [{"key": "b", "path": "same"}]}},
        {"serviceAccountToken": {"path": "", "expirationSeconds": 60}},
        {"clusterTrustBundle": {"path": "bundle.pem"}},
    ]}})
    base = "spec.volumes[0].projected"
    assert errors(pod) == [
        f"{base}.sources[0]: Forbidden: may not specify more than 1 volume type per source",
        f"{base}.sources[1].configMap.name: Required value",
        f'{base}: Invalid value: "": conflicting duplicate paths',
        f"{base}.sources[2].serviceAccountToken.expirationSeconds: Invalid value: 60: "
        "may not specify a duration less than 10 minutes",
        f"{base}.path: Required value",
        f"{base}.sources[3].clusterTrustBundlePEM: Required value: either name or signerName must be used",
    ]


def test_one_volume_type_per_volume() -> None:
    pod = pod_with({"name": "x", "secret": {"secretName": "s"}, "projected": {"sources": []}})
    assert errors(pod) == ["spec.volumes[0].projected: Forbidden: may not specify more than 1 volume type"]


def test_static_pods_refuse_projected_api_objects_but_not_downward_api() -> None:
    pod = pod_with(KUBE_API_ACCESS, {"name": "d", "downwardAPI": {"items": [
        {"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}})
    detail = "(no API server objects are available to static pods)"
    assert [str(e) for e in validate_static_pod(pod)] == [
        f"spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden: static pods may not "
        f"reference service account tokens {detail}",
        f"spec.volumes[0].projected.sources[1].configMap: Forbidden: static pods may not reference "
        f"configmaps {detail}",
    ]
    only_downward = pod_with({"name": "d", "projected": {"sources": [{"downwardAPI": {"items": [
        {"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}})
    assert validate_static_pod(only_downward) == []


def test_static_manifest_with_downward_api_volume_is_accepted() -> None:
    text = """
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers: [{name: c, image: busybox:1.36, volumeMounts: [{name: info, mountPath: /info}]}]
  volumes:
  - name: info
    downwardAPI:
      items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
"""
    result = parse_manifest(text, "web.yaml")
    assert result.errors == [] and len(result.pods) == 1
