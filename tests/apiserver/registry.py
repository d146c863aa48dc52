"""Request semantics over the store, shared by the HTTP handlers and the control-plane methods:
create/get/list/update/patch/delete with the generic registry's rules (BeforeCreate, BeforeUpdate,
optimistic concurrency, preconditions, graceful deletion, finalizers, no-op updates) and the list
resourceVersion/paging semantics."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import errors as E
from . import strategy
from .patch import decode_json, json_patch, merge_patch, strategic_merge
from .resources import RESOURCES, ResourceType
from .schema import SCHEMAS, prune_unknown, type_error
from .selectors import FieldTerm, Requirement, fields_match, labels_match, parse_field_selector, \
    parse_label_selector
from .store import Key, Store, etcd_order

Obj = dict[str, Any]

PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml"]
OPTIMISTIC_LOCK = E.MODIFIED
LIST_TOO_OLD = "The resourceVersion for the provided list is too old."
CONTINUE_TOO_OLD = ("The provided continue parameter is too old to display a consistent list result. You can start "
                    "a new list without the continue parameter, or use the continue token in this response to "
                    "retrieve the remainder of the results. Continuing with the provided token results in an "
                    "inconsistent list - objects that were created, modified, or deleted between the time the first "
                    "chunk was returned and now may show up in the list.")
WAIT_FOR_RV = 3.0


@dataclass
class WriteOptions:
    field_validation: str = "Warn"  # Strict, Warn, Ignore
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class Selection:
    namespace: str | None
    labels: list[Requirement]
    fields: list[FieldTerm]

    def matches(self, rt: ResourceType, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace", "") != self.namespace:
            return False
        return labels_match(self.labels, meta.get("labels")) and fields_match(self.fields, rt.fields(obj))


def selection(rt: ResourceType, namespace: str | None, label_selector: str, field_selector: str) -> Selection:
    return Selection(namespace, parse_label_selector(label_selector or ""),
                     parse_field_selector(field_selector or "", rt.convert_field_label))


def _invalid_list_options(errs: list[E.FieldError]) -> E.ApiStatusError:
    return E.invalid_error("meta.k8s.io", "ListOptions", "", errs)


def parse_rv(value: str, what: str = "resourceVersion") -> int:
    try:
        rv = int(value)
        if rv < 0:
            raise ValueError
        return rv
    except ValueError:
        raise E.bad_request(f'{what}: Invalid value: "{value}": strconv.ParseUint: parsing "{value}": invalid '
                            f'syntax') from None


def encode_continue(rv: int, start: str) -> str:
    return base64.b64encode(json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"},
                                       separators=(",", ":")).encode()).decode()


def decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.b64decode(token, validate=True))
        if data.get("v") != "meta.k8s.io/v1" or not isinstance(data.get("rv"), int):
            raise ValueError("continue key is not valid: incorrect encoded start resourceVersion (version "
                             "meta.k8s.io/v1)")
        start = data.get("start", "")
        if not isinstance(start, str) or not start:
            raise ValueError("continue key is not valid: encoded start key must be non-empty")
        return data["rv"], start
    except (ValueError, TypeError) as exc:
        msg = str(exc) if str(exc).startswith("continue key") else "continue key is not valid: " + str(exc)
        raise E.bad_request(msg) from None


def strip_type_meta(obj: Obj) -> Obj:
    """Items of a typed list are encoded without apiVersion/kind by the real server."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- helpers ---------------------------------------------------------------------------

    @staticmethod
    def key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return (rt.id, namespace or "" if rt.namespaced else "", name)

    def namespace_obj(self, name: str) -> Obj | None:
        return self.store.get(("/namespaces", "", name))

    def check_namespace(self, rt: ResourceType, namespace: str | None, creating: bool, name: str) -> None:
        """NamespaceLifecycle admission."""
        if not rt.namespaced:
            return
        ns = self.namespace_obj(namespace or "")
        if ns is None:
            raise E.not_found("", "namespaces", namespace or "")
        if creating and ns.get("metadata", {}).get("deletionTimestamp"):
            raise E.forbidden(rt.group, rt.resource, name, f"unable to create new content in namespace {namespace} "
                                                           f"because it is being terminated")

    def decode_body(self, rt: ResourceType, body: Any, opts: WriteOptions, kind: str | None = None) -> Obj:
        """JSON → object of the kind: type checks, unknown fields per fieldValidation, decoding checks."""
        kind = kind or rt.kind
        api_version = rt.api_version if kind == rt.kind else "authentication.k8s.io/v1"
        if not isinstance(body, dict):
            raise E.bad_request(f"the object provided is unrecognized (must be of type {kind}): couldn't get "
                                f"version/kind; json parse error: json: cannot unmarshal "
                                f"{'array' if isinstance(body, list) else 'string'} into Go value of type "
                                f"struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string "
                                f"\"json:\\\"kind,omitempty\\\"\" }}")
        obj = copy.deepcopy(body)
        body_kind = obj.get("kind") or kind
        body_version = obj.get("apiVersion") or api_version
        if body_version != api_version:
            raise E.bad_request(f"the API version in the data ({body_version}) does not match the expected API "
                                f"version ({api_version})")
        if body_kind != kind:
            internal_group = (rt.group.split(".")[0] if rt.group else "core")
            raise E.bad_request(f'{body_kind} in version "{body_version.split("/")[-1]}" cannot be handled as a '
                                f'{kind}: converting ({body_version.split("/")[-1]}.{body_kind}) to '
                                f'({internal_group}.{kind}): unknown conversion')
        if not isinstance(obj.get("metadata", {}), dict):
            raise E.bad_request(f'{kind} in version "{rt.version}" cannot be handled as a {kind}: json: cannot '
                                f'unmarshal into Go struct field {kind}.metadata of type v1.ObjectMeta')
        type_err = type_error(obj, SCHEMAS.get(kind), kind)
        if type_err:
            raise E.bad_request(f'{kind} in version "{rt.version}" cannot be handled as a {kind}: {type_err}')
        unknown = prune_unknown(obj, SCHEMAS.get(kind))
        if unknown:
            text = ", ".join(f'unknown field "{u}"' for u in unknown)
            if opts.field_validation == "Strict":
                raise E.bad_request(f'{kind} in version "{rt.version}" cannot be handled as a {kind}: strict '
                                    f'decoding error: {text}')
            if opts.field_validation == "Warn":
                opts.warnings += [f'unknown field "{u}"' for u in unknown]
        strategy.decode_or_400(kind, obj, kind, rt.version)
        obj["apiVersion"] = api_version
        obj["kind"] = kind
        obj.setdefault("metadata", {})
        return obj

    def _default(self, rt: ResourceType, obj: Obj) -> None:
        fn = strategy.DEFAULTERS.get(rt.kind)
        if fn:
            fn(obj)

    def _validate(self, rt: ResourceType, obj: Obj, errs: list[E.FieldError]) -> None:
        if errs:
            raise E.invalid_error(rt.group, rt.kind, obj["metadata"].get("name", ""), errs)

    def _precondition_error(self, rt: ResourceType, namespace: str, name: str, what: str, want: str,
                            have: str) -> E.ApiStatusError:
        return E.conflict(rt.group, rt.resource, name,
                          f"StorageError: invalid object, Code: 4, Key: {rt.etcd_key(namespace, name)}, "
                          f"ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: {what} in precondition: "
                          f"{want}, {what} in object meta: {have}")

    # ---- create ----------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str | None, body: Any, opts: WriteOptions) -> Obj:
        obj = self.decode_body(rt, body, opts)
        meta = obj["metadata"]
        if rt.namespaced:
            body_ns = meta.get("namespace") or ""
            if body_ns and namespace and body_ns != namespace:
                raise E.bad_request("the namespace of the provided object does not match the namespace sent on "
                                    "the request")
            meta["namespace"] = namespace or body_ns
        else:
            meta.pop("namespace", None)
        self._default(rt, obj)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + strategy.random_suffix()
        self.check_namespace(rt, meta.get("namespace"), True, meta.get("name", ""))
        if str(meta.get("resourceVersion", "")).isdigit() and int(meta["resourceVersion"]) != 0:
            raise E.internal("resourceVersion should not be set on objects to be created")
        meta.pop("resourceVersion", None)
        if rt.kind == "Pod" and isinstance(obj.get("spec"), dict):
            ns = meta.get("namespace", "")
            strategy.admit_pod(obj, lambda sa: self.store.get(("/serviceaccounts", ns, sa)),
                               lambda msg: E.forbidden("", "pods", meta.get("name", ""), msg))
        # rest.BeforeCreate
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = strategy.fmt_time(strategy.now())
        for f in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "generation", "managedFields"):
            meta.pop(f, None)
        if rt.prepare_create:
            rt.prepare_create(obj)
        if rt.validate:
            self._validate(rt, obj, rt.validate(obj))
        strategy.encode_zero_values(rt.kind, obj)
        key = self.key(rt, meta.get("namespace"), meta["name"])
        if self.store.get(key) is not None:
            raise E.already_exists(rt.group, rt.resource, meta["name"])
        if opts.dry_run:
            return obj
        created = self.store.put(key, obj)
        if rt.kind == "Namespace":
            self._populate_namespace(meta["name"])
        return created

    def _populate_namespace(self, ns: str) -> None:
        """What the service-account and root-CA publisher controllers add to every new namespace."""
        for res, kind, extra in (("serviceaccounts", "ServiceAccount", {}),
                                 ("configmaps", "ConfigMap", {"data": {"ca.crt": self.root_ca}})):
            name = "default" if kind == "ServiceAccount" else "kube-root-ca.crt"
            key = (f"/{res}", ns, name)
            if self.store.get(key) is None:
                obj: Obj = {"apiVersion": "v1", "kind": kind,
                            "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                                         "creationTimestamp": strategy.fmt_time(strategy.now())}}
                if kind == "ConfigMap":
                    obj["metadata"]["annotations"] = {"kubernetes.io/description": (
                        "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
                        "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
                        "guaranteed across distributions of Kubernetes clusters.")}
                obj.update(extra)
                self.store.put(key, obj)

    root_ca: str = ""

    # ---- get -------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.store.get(self.key(rt, namespace, name))
        if obj is None:
            raise E.not_found(rt.group, rt.resource, name)
        return obj

    # ---- list ------------------------------------------------------------------------------

    async def list(self, rt: ResourceType, namespace: str | None, query: dict[str, str]) -> Obj:
        sel = selection(rt, namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""))
        rv_param = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        cont = query.get("continue", "")
        limit_s = query.get("limit", "")
        try:
            limit = int(limit_s) if limit_s else 0
        except ValueError:
            raise E.bad_request(f'limit: Invalid value: "{limit_s}": strconv.ParseInt: parsing "{limit_s}": '
                                f'invalid syntax') from None
        if match:
            errs = []
            if match not in ("Exact", "NotOlderThan"):
                errs.append(E.not_supported("resourceVersionMatch", match, ("Exact", "NotOlderThan", "")))
            elif not rv_param:
                errs.append(E.forbidden_field("resourceVersionMatch",
                                              "resourceVersionMatch is forbidden unless resourceVersion is provided"))
            elif cont:
                errs.append(E.forbidden_field("resourceVersionMatch",
                                              "resourceVersionMatch is forbidden when continue is provided"))
            elif match == "Exact" and rv_param == "0":
                errs.append(E.forbidden_field("resourceVersionMatch",
                                              'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
            if errs:
                raise _invalid_list_options(errs)
        start = ""
        if cont:
            if rv_param and rv_param != "0":
                raise E.bad_request("specifying resource version is not allowed when using continue")
            at, start = decode_continue(cont)
            if at < self.store.compacted:
                raise E.expired(CONTINUE_TOO_OLD)
            exact = at
        elif not rv_param:
            exact = None
        elif rv_param == "0":
            exact = None
            limit = 0  # served from the watch cache: the limit is ignored
        else:
            want = parse_rv(rv_param)
            if match == "Exact" or (not match and limit > 0):
                if want < self.store.compacted:
                    raise E.expired(LIST_TOO_OLD)
                await self.wait_for_rv(want)
                exact = want
            else:
                await self.wait_for_rv(want)
                exact = None
        rv = self.store.rv if exact is None else exact
        items = self.store.items(rt.id, namespace if rt.namespaced else None) if exact is None else \
            self.store.items_at(rt.id, namespace if rt.namespaced else None, exact)
        matched = [o for o in items if sel.matches(rt, o)]
        if start:
            matched = [o for o in matched if self._order(o) >= start]
        list_meta: Obj = {"resourceVersion": str(rv)}
        if limit > 0 and len(matched) > limit:
            page = matched[:limit]
            list_meta["continue"] = encode_continue(rv, self._order(page[-1]))
            if not sel.labels and not sel.fields:
                list_meta["remainingItemCount"] = len(matched) - limit
            matched = page
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": list_meta,
                "items": [strip_type_meta(o) for o in matched]}

    @staticmethod
    def _order(obj: Obj) -> str:
        meta = obj.get("metadata") or {}
        return etcd_order(("", meta.get("namespace", ""), meta.get("name", "")))

    async def wait_for_rv(self, want: int) -> None:
        if want <= self.store.rv:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_FOR_RV
        while want > self.store.rv:
            left = deadline - loop.time()
            if left <= 0:
                raise E.timeout_too_large(want, self.store.rv)
            try:
                await asyncio.wait_for(self.store.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    # ---- update ----------------------------------------------------------------------------

    def update(self, rt: ResourceType, namespace: str | None, name: str, body: Any, subresource: str,
               opts: WriteOptions) -> tuple[Obj, bool]:
        obj = self.decode_body(rt, body, opts)
        return self._update_decoded(rt, namespace, name, obj, subresource, opts, from_patch=False)

    def _update_decoded(self, rt: ResourceType, namespace: str | None, name: str, obj: Obj, subresource: str,
                        opts: WriteOptions, from_patch: bool) -> tuple[Obj, bool]:
        meta = obj["metadata"]
        if rt.namespaced:
            body_ns = meta.get("namespace") or ""
            if body_ns and body_ns != namespace:
                raise E.bad_request("the namespace of the provided object does not match the namespace sent on "
                                    "the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if meta.get("name", "") != name and not from_patch:
            raise E.bad_request(f"the name of the object ({meta.get('name', '')}) does not match the name on the "
                                f"URL ({name})")
        key = self.key(rt, namespace, name)
        existing = self.store.get(key)
        self._default(rt, obj)
        if existing is None:
            if rt.allow_create_on_update and not subresource and not from_patch:
                meta.pop("resourceVersion", None)
                return self.create(rt, namespace, obj, opts), True
            raise E.not_found(rt.group, rt.resource, name)
        old_meta = existing["metadata"]
        if meta.get("uid") and meta["uid"] != old_meta["uid"] and not from_patch:
            raise self._precondition_error(rt, namespace or "", name, "UID", meta["uid"], old_meta["uid"])
        new_rv = meta.get("resourceVersion", "")
        if new_rv and new_rv != old_meta["resourceVersion"]:
            raise E.conflict(rt.group, rt.resource, name, OPTIMISTIC_LOCK)
        # rest.BeforeUpdate
        meta["generation"] = old_meta.get("generation")
        if meta["generation"] is None:
            meta.pop("generation")
        if subresource == "status":
            if rt.prepare_status_update:
                rt.prepare_status_update(obj, existing)
        elif rt.prepare_update:
            rt.prepare_update(obj, existing)
        if not meta.get("uid"):
            meta["uid"] = old_meta["uid"]
        meta["creationTimestamp"] = old_meta.get("creationTimestamp")
        if old_meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = old_meta["deletionTimestamp"]
        else:
            meta.pop("deletionTimestamp", None)
        if old_meta.get("deletionGracePeriodSeconds") is not None and meta.get("deletionGracePeriodSeconds") is None:
            meta["deletionGracePeriodSeconds"] = old_meta["deletionGracePeriodSeconds"]
        meta.pop("selfLink", None)
        meta.pop("managedFields", None)
        validator = rt.validate_status_update if subresource == "status" else rt.validate_update
        if validator:
            self._validate(rt, obj, validator(obj, existing))
        meta["resourceVersion"] = old_meta["resourceVersion"]
        strategy.encode_zero_values(rt.kind, obj)
        if obj == existing:
            return existing, False  # etcd skips writing an unchanged object: no new resourceVersion, no event
        if opts.dry_run:
            return obj, False
        if not meta.get("finalizers") and old_meta.get("deletionTimestamp") and \
                not old_meta.get("deletionGracePeriodSeconds"):
            return self.store.remove(key), False
        return self.store.put(key, obj), False

    # ---- patch -----------------------------------------------------------------------------

    def patch(self, rt: ResourceType, namespace: str | None, name: str, body: bytes, content_type: str,
              subresource: str, opts: WriteOptions) -> Obj:
        ctype = content_type.split(";", 1)[0].strip().lower()
        if ctype not in PATCH_TYPES:
            raise E.unsupported_media_type(PATCH_TYPES)
        if ctype == "application/apply-patch+yaml":
            raise E.not_implemented("server-side apply (application/apply-patch+yaml) is not implemented by the "
                                    "API server double")
        if ctype == "application/strategic-merge-patch+json" and rt.kind not in SCHEMAS:
            raise E.unsupported_media_type(PATCH_TYPES[:2] + PATCH_TYPES[3:])
        existing = self.store.get(self.key(rt, namespace, name))
        patch_doc = decode_json(body)
        if existing is None:
            raise E.not_found(rt.group, rt.resource, name)
        if ctype == "application/json-patch+json":
            patched = json_patch(existing, patch_doc)
        elif ctype == "application/merge-patch+json":
            if not isinstance(patch_doc, dict) and patch_doc is not None:
                raise E.bad_request("json: cannot unmarshal into Go value of type map[string]interface {}")
            patched = merge_patch(existing, patch_doc)
        else:
            patched = strategic_merge(existing, patch_doc, rt.kind)
        if not isinstance(patched, dict):
            raise E.bad_request("the patched object is not a JSON object")
        if patched.get("kind") != rt.kind or patched.get("apiVersion") != rt.api_version:
            raise E.bad_request(f"the API version in the data ({patched.get('apiVersion')}) does not match the "
                                f"expected API version ({rt.api_version})" if patched.get("apiVersion") !=
                                rt.api_version else f"the kind in the patched object ({patched.get('kind')}) does "
                                f"not match {rt.kind}")
        obj = self.decode_body(rt, patched, opts)
        meta = obj["metadata"]
        if meta.get("name", "") != name:
            raise E.bad_request(f"the name of the object ({meta.get('name', '')}) does not match the name on the "
                                f"URL ({name})")
        if meta.get("uid", "") != existing["metadata"]["uid"]:
            raise E.invalid_error(rt.group, rt.kind, name, [E.invalid("metadata.uid", meta.get("uid", ""),
                                                                      "field is immutable")])
        return self._update_decoded(rt, namespace, name, obj, subresource, opts, from_patch=True)[0]

    # ---- delete ----------------------------------------------------------------------------

    def delete(self, rt: ResourceType, namespace: str | None, name: str, options: Obj,
               dry_run: bool = False) -> tuple[Obj, int]:
        """Returns (response body, HTTP status) as the generic store's Delete + the handler."""
        key = self.key(rt, namespace, name)
        existing = self.store.get(key)
        if existing is None:
            raise E.not_found(rt.group, rt.resource, name)
        meta = existing["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") is not None and pre["uid"] != meta["uid"]:
            raise self._precondition_error(rt, namespace or "", name, "UID", pre["uid"], meta["uid"])
        if pre.get("resourceVersion") is not None and pre["resourceVersion"] != meta["resourceVersion"]:
            raise self._precondition_error(rt, namespace or "", name, "ResourceVersion", pre["resourceVersion"],
                                           meta["resourceVersion"])
        grace = options.get("gracePeriodSeconds")
        if grace is not None and grace < 0:
            grace = 1
        status_code = 200
        if options.get("orphanDependents") is False:
            status_code = 202
        # rest.BeforeDelete
        graceful = pending = False
        period = 0
        if meta.get("deletionTimestamp"):
            dgps = meta.get("deletionGracePeriodSeconds")
            if dgps:
                if grace is not None and grace < dgps:
                    ts = strategy.parse_time(meta["deletionTimestamp"]) - datetime.timedelta(seconds=dgps) + \
                        datetime.timedelta(seconds=grace)
                    meta["deletionTimestamp"] = strategy.fmt_time(ts)
                    meta["deletionGracePeriodSeconds"] = period = grace
                    graceful = True
                else:
                    pending = True
        elif rt.graceful:
            period = grace
            if period is None:
                period = (existing.get("spec") or {}).get("terminationGracePeriodSeconds") or 0
            if not (existing.get("spec") or {}).get("nodeName"):
                period = 0
            if (existing.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                period = 0
            if period < 0:
                period = 1
            meta["deletionTimestamp"] = strategy.fmt_time(strategy.now() + datetime.timedelta(seconds=period))
            meta["deletionGracePeriodSeconds"] = period
            if meta.get("generation", 0) > 0:
                meta["generation"] += 1
            graceful = True
        if pending:
            return self._deleted_result(rt, existing), status_code
        finalizers = list(meta.get("finalizers") or [])
        policy = options.get("propagationPolicy")
        extra = "orphan" if policy == "Orphan" or options.get("orphanDependents") is True else \
            "foregroundDeletion" if policy == "Foreground" else ""
        if extra and extra not in finalizers:
            finalizers.append(extra)
            meta["finalizers"] = finalizers
        if graceful or finalizers:
            # updateForGracefulDeletionAndFinalizers: the object is written with its deletion timestamp first
            if not graceful:
                meta["deletionTimestamp"] = strategy.fmt_time(strategy.now())
                meta["deletionGracePeriodSeconds"] = 0
            if dry_run:
                return existing, status_code
            out = self.store.put(key, existing)
            if finalizers or period > 0:
                return out, status_code
        if dry_run:
            return self._deleted_result(rt, existing), 200
        last = self.store.remove(key)
        if rt.kind == "Namespace":
            self._purge_namespace(name)
        return self._deleted_result(rt, last), 200

    def delete_collection(self, rt: ResourceType, namespace: str | None, query: dict[str, str], options: Obj,
                          dry_run: bool = False) -> Obj:
        """DeleteCollection: every object the selectors match, deleted as single deletes; their list."""
        sel = selection(rt, namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""))
        items = []
        for obj in self.store.items(rt.id, namespace if rt.namespaced else None):
            if sel.matches(rt, obj):
                meta = obj["metadata"]
                try:
                    out, _ = self.delete(rt, meta.get("namespace"), meta["name"], dict(options), dry_run)
                except E.ApiStatusError as err:
                    if err.code != 404:
                        raise
                    continue
                items.append(out if out.get("kind") != "Status" else obj)
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": [strip_type_meta(o) for o in items]}

    def _deleted_result(self, rt: ResourceType, obj: Obj) -> Obj:
        if rt.return_deleted_object:
            return obj
        details: Obj = {"name": obj["metadata"]["name"]}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.resource
        details["uid"] = obj["metadata"]["uid"]
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _purge_namespace(self, ns: str) -> None:
        """The namespace controller's work, done at once: everything in the namespace goes."""
        for rt in RESOURCES:
            if rt.namespaced:
                for obj in self.store.items(rt.id, ns):
                    self.store.remove(self.key(rt, ns, obj["metadata"]["name"]))
