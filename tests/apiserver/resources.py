"""The resources the double serves: names, scope, verbs, subresources, field selector labels, and
the per-kind hooks (validation, defaulting, update preparation) the registry calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import strategy, validation
from .errors import ApiStatusError, bad_request

Obj = dict[str, Any]
Validator = Callable[[Obj], list]
UpdateValidator = Callable[[Obj, Obj], list]


@dataclass
class ResourceType:
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    singular: str
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    etcd_prefix: str = ""
    field_labels: tuple[str, ...] | None = None  # None: DefaultMetaV1FieldSelectorConversion
    selectable: Callable[[Obj], dict[str, str]] | None = None
    validate: Validator | None = None
    validate_update: UpdateValidator | None = None
    validate_status_update: UpdateValidator | None = None
    prepare_create: Callable[[Obj], None] | None = None
    prepare_update: Callable[[Obj, Obj], None] | None = None
    prepare_status_update: Callable[[Obj, Obj], None] | None = None
    allow_create_on_update: bool = False
    return_deleted_object: bool = False
    graceful: bool = False
    virtual: bool = False  # create-only review APIs, never stored
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.group}/{self.resource}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def convert_field_label(self, label: str) -> str:
        if self.field_labels is None:
            if label in ("metadata.name", "metadata.namespace"):
                return label
            raise bad_request(f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        label = self.aliases.get(label, label)
        if label not in self.field_labels:
            raise bad_request(f"field label not supported: {label}")
        return label

    def fields(self, obj: Obj) -> dict[str, str]:
        meta = obj.get("metadata") or {}
        out = {"metadata.name": meta.get("name", "")}
        if self.namespaced:
            out["metadata.namespace"] = meta.get("namespace", "")
        if self.selectable:
            out.update(self.selectable(obj))
        return out

    def etcd_key(self, namespace: str, name: str) -> str:
        prefix = self.etcd_prefix or self.resource
        if self.group and not self.etcd_prefix:
            prefix = f"{self.group}/{self.resource}"
        return f"/registry/{prefix}/{namespace}/{name}" if self.namespaced else f"/registry/{prefix}/{name}"


def _pod_fields(pod: Obj) -> dict[str, str]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ips = status.get("podIPs") or []
    return {
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.restartPolicy": spec.get("restartPolicy", ""),
        "spec.schedulerName": spec.get("schedulerName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "spec.hostNetwork": "true" if spec.get("hostNetwork") else "false",
        "status.phase": status.get("phase", ""),
        "status.podIP": ips[0].get("ip", "") if ips else status.get("podIP", ""),
        "status.nominatedNodeName": status.get("nominatedNodeName", ""),
    }


def _node_fields(node: Obj) -> dict[str, str]:
    return {"spec.unschedulable": "true" if (node.get("spec") or {}).get("unschedulable") else "false"}


def _event_fields(ev: Obj) -> dict[str, str]:
    inv = ev.get("involvedObject") or {}
    return {
        "involvedObject.kind": inv.get("kind", ""),
        "involvedObject.namespace": inv.get("namespace", ""),
        "involvedObject.name": inv.get("name", ""),
        "involvedObject.uid": inv.get("uid", ""),
        "involvedObject.apiVersion": inv.get("apiVersion", ""),
        "involvedObject.resourceVersion": inv.get("resourceVersion", ""),
        "involvedObject.fieldPath": inv.get("fieldPath", ""),
        "reason": ev.get("reason", ""),
        "reportingComponent": ev.get("reportingComponent", ""),
        "source": (ev.get("source") or {}).get("component", ""),
        "type": ev.get("type", ""),
    }


CRUD = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

POD_FIELDS = ("metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
              "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
              "status.nominatedNodeName")
EVENT_FIELDS = ("metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace",
                "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion",
                "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent",
                "source", "type")

RESOURCES: list[ResourceType] = [
    ResourceType("", "v1", "namespaces", "Namespace", False, ("create", "delete", "get", "list", "patch", "update",
                                                                 "watch"),
                 "namespace", ("ns",), ("status", "finalize"),
                 field_labels=("metadata.name", "status.phase"),
                 selectable=lambda o: {"status.phase": (o.get("status") or {}).get("phase", "")},
                 validate=validation.validate_namespace,
                 validate_update=validation.validate_generic_update(validation.validate_namespace),
                 validate_status_update=validation.validate_generic_update(validation.validate_namespace),
                 prepare_create=strategy.prepare_namespace_create, prepare_update=strategy.keep_status,
                 prepare_status_update=strategy.keep_spec, return_deleted_object=True),
    ResourceType("", "v1", "nodes", "Node", False, CRUD, "node", ("no",), ("status",), etcd_prefix="minions",
                 field_labels=("metadata.name", "spec.unschedulable"), selectable=_node_fields,
                 validate=validation.validate_node, validate_update=validation.validate_node_update,
                 validate_status_update=validation.validate_node_update,
                 prepare_update=strategy.keep_status, prepare_status_update=strategy.keep_spec),
    ResourceType("", "v1", "pods", "Pod", True, CRUD, "pod", ("po",), ("status",),
                 field_labels=POD_FIELDS, selectable=_pod_fields, aliases={"spec.host": "spec.nodeName"},
                 validate=validation.validate_pod, validate_update=validation.validate_pod_update,
                 validate_status_update=validation.validate_pod_status_update,
                 prepare_create=strategy.prepare_pod_create, prepare_update=strategy.prepare_pod_update,
                 prepare_status_update=strategy.prepare_pod_status_update,
                 return_deleted_object=True, graceful=True),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, CRUD, "configmap", ("cm",),
                 validate=validation.validate_configmap, validate_update=validation.validate_configmap_update),
    ResourceType("", "v1", "secrets", "Secret", True, CRUD, "secret",
                 field_labels=("metadata.name", "metadata.namespace", "type"),
                 selectable=lambda o: {"type": o.get("type", "")},
                 validate=validation.validate_secret, validate_update=validation.validate_secret_update),
    ResourceType("", "v1", "events", "Event", True, CRUD, "event", ("ev",), field_labels=EVENT_FIELDS,
                 selectable=_event_fields, validate=validation.validate_event,
                 validate_update=validation.validate_generic_update(validation.validate_event),
                 allow_create_on_update=True),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, CRUD, "serviceaccount", ("sa",), ("token",),
                 validate=validation.validate_serviceaccount,
                 validate_update=validation.validate_generic_update(validation.validate_serviceaccount),
                 return_deleted_object=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, CRUD, "lease", etcd_prefix="leases",
                 validate=validation.validate_lease,
                 validate_update=validation.validate_generic_update(validation.validate_lease)),
    ResourceType("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, ("create",), "tokenreview",
                 virtual=True),
    ResourceType("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False, ("create",),
                 "subjectaccessreview", virtual=True),
]

BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.resource): r for r in RESOURCES}
BY_KIND: dict[tuple[str, str], ResourceType] = {(r.api_version, r.kind): r for r in RESOURCES}


def by_kind(api_version: str, kind: str) -> ResourceType:
    rt = BY_KIND.get((api_version, kind))
    if rt is None:
        raise ApiStatusError(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')
    return rt


def group_versions() -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for r in RESOURCES:
        if r.group and (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen
