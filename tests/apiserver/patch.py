"""PATCH bodies: strategic merge patch (apimachinery strategicpatch semantics, with the merge keys of the
built-in types), JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

Strategic merge follows StrategicMergeMapPatch with MergeOptions{MergeParallelList, IgnoreUnmatchedNulls}:
`$patch: replace|delete` on maps and list items, `$retainKeys`, `$deleteFromPrimitiveList/<f>`,
`$setElementOrder/<f>` (order precedence: setElementOrder > patch > live list)."""

from __future__ import annotations

import copy
import json
from typing import Any

from .errors import ApiStatusError, bad_request, internal, unprocessable

# Patch metadata of the API types: path -> (patch strategies, merge key). A path names a field from the
# object root; "[]" stands for the items of a list. Lists not named here are atomic (replaced).
PatchMeta = dict[str, tuple[str, str]]

_META: PatchMeta = {
    "metadata.finalizers": ("merge", ""),
    "metadata.ownerReferences": ("merge", "uid"),
}

_CONTAINER = {
    "ports": ("merge", "containerPort"),
    "env": ("merge", "name"),
    "volumeMounts": ("merge", "mountPath"),
    "volumeDevices": ("merge", "devicePath"),
}


def _pod_spec(prefix: str) -> PatchMeta:
    meta: PatchMeta = {
        f"{prefix}.volumes": ("merge,retainKeys", "name"),
        f"{prefix}.initContainers": ("merge", "name"),
        f"{prefix}.containers": ("merge", "name"),
        f"{prefix}.ephemeralContainers": ("merge", "name"),
        f"{prefix}.imagePullSecrets": ("merge", "name"),
        f"{prefix}.hostAliases": ("merge", "ip"),
        f"{prefix}.topologySpreadConstraints": ("merge", "topologyKey"),
        f"{prefix}.resourceClaims": ("merge,retainKeys", "name"),
        f"{prefix}.schedulingGates": ("merge", "name"),
    }
    for c in ("initContainers", "containers", "ephemeralContainers"):
        for f, v in _CONTAINER.items():
            meta[f"{prefix}.{c}[].{f}"] = v
    return meta


PATCH_META: dict[str, PatchMeta] = {
    "Pod": {**_META, **_pod_spec("spec"),
            # PodStatus: containerStatuses/initContainerStatuses/ephemeralContainerStatuses are
            # +listType=atomic in the API types (no merge key): a patch replaces them whole.
            "status.conditions": ("merge", "type"),
            "status.podIPs": ("merge", "ip"),
            "status.hostIPs": ("merge", "ip"),
            "status.resourceClaimStatuses": ("merge,retainKeys", "name")},
    "Node": {**_META,
             "spec.podCIDRs": ("merge", ""),
             "status.conditions": ("merge", "type"),
             "status.addresses": ("merge", "type")},
    "ServiceAccount": {**_META, "secrets": ("merge", "name")},
    "Namespace": {**_META, "status.conditions": ("merge", "type")},
}


def patch_meta(kind: str) -> PatchMeta:
    return PATCH_META.get(kind, _META)


DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
SET_ORDER = "$setElementOrder/"

ERR_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_SET_ORDER = "invalid patch format of setElementOrder list"
ERR_PRIMITIVE = "invalid patch format of primitive list"


class _PatchError(Exception):
    """An error from the strategicpatch package; `code` is what interpretStrategicMergePatchError maps it to."""

    def __init__(self, message: str, code: int = 500):
        super().__init__(message)
        self.code = code


def _go(v: Any) -> str:
    """%v of a Go map/list (approximate) for error texts."""
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go(x)}" for k, x in sorted(v.items())) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go(x) for x in v) + "]"
    return str(v)


def strategic_merge(original: dict[str, Any], patch: Any, kind: str) -> dict[str, Any]:
    """StrategicMergeMapPatch; raises ApiStatusError as the patch handler would answer."""
    if not isinstance(patch, dict):
        raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}"
                          if isinstance(patch, list) else "invalid JSON document")
    try:
        return _merge_map(copy.deepcopy(original), copy.deepcopy(patch), "", patch_meta(kind))
    except _PatchError as exc:
        if exc.code == 400:
            raise bad_request(str(exc)) from None
        if exc.code == 422:
            raise unprocessable(str(exc)) from None
        raise internal(str(exc)) from None


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _lookup(meta: PatchMeta, path: str) -> tuple[str, str]:
    strategies, key = meta.get(path, ("", ""))
    strategy = "merge" if "merge" in strategies.split(",") else ("replace" if "replace" in strategies else "")
    return strategy, key


def _merge_map(original: dict[str, Any] | None, patch: dict[str, Any], path: str, meta: PatchMeta) -> dict[str, Any]:
    if DIRECTIVE in patch:
        d = patch[DIRECTIVE]
        if d == "replace":
            del patch[DIRECTIVE]
            return _strip(patch)
        if d == "delete":
            return {}
        raise _PatchError(f"Unknown patch type: {d} in map: {_go(patch)}")
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_set_element_order(original, patch, path, meta)
    # Deletion lists first so a patch that both removes and adds to a primitive list is deterministic.
    keys = sorted(patch, key=lambda k: 0 if k.startswith(DELETE_PRIMITIVE) else 1)
    for k in keys:
        pv = patch[k]
        if k.startswith(SET_ORDER):
            continue
        is_delete_list = k.startswith(DELETE_PRIMITIVE)
        if is_delete_list:
            k = k[len(DELETE_PRIMITIVE):]
            if not isinstance(pv, list):
                raise _PatchError(ERR_PRIMITIVE, 400)
        if pv is None:
            original.pop(k, None)
            continue
        if k not in original:
            if not is_delete_list:
                original[k] = _fresh(pv, _child(path, k), meta)
            continue
        ov = original[k]
        if type(ov) is not type(pv) and not (isinstance(ov, (int, float)) and isinstance(pv, (int, float))):
            if not is_delete_list:
                original[k] = _fresh(pv, _child(path, k), meta)
            continue
        if isinstance(ov, dict):
            strategy, _ = _lookup(meta, _child(path, k))
            original[k] = _strip(pv) if strategy == "replace" else _merge_map(ov, pv, _child(path, k), meta)
        elif isinstance(ov, list):
            original[k] = _merge_list_field(ov, pv, _child(path, k), meta, is_delete_list)
        else:
            original[k] = pv
    return original


def _fresh(value: Any, path: str, meta: PatchMeta) -> Any:
    """A patch value for a field the live object lacks is taken as it is ("just take the patch value"),
    without nulls; directive keys and items are dropped (the real decode would drop them as unknown)."""
    return _strip(value)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()
                if v is not None and not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and DIRECTIVE in v)]
    return value


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if RETAIN_KEYS not in patch:
        return
    keep = patch.pop(RETAIN_KEYS)
    if not isinstance(keep, list):
        raise _PatchError(ERR_RETAIN_KEYS, 400)
    keep_set = set(k for k in keep if isinstance(k, str))
    for k, v in patch.items():
        if v is None or k.startswith(DELETE_PRIMITIVE) or k.startswith(SET_ORDER):
            continue
        if k not in keep_set:
            raise _PatchError(ERR_RETAIN_KEYS, 400)
    for k in list(original):
        if k not in keep_set:
            del original[k]


def _merge_list_field(original: list[Any], patch: list[Any], path: str, meta: PatchMeta,
                      is_delete_list: bool) -> list[Any]:
    strategy, merge_key = _lookup(meta, path)
    if strategy != "merge":
        return _strip(patch)
    return _merge_list(original, patch, path, merge_key, meta, is_delete_list)


def _is_map_list(original: list[Any], patch: list[Any]) -> bool:
    items = [x for x in original + patch]
    if not items:
        return False
    if any(isinstance(x, list) for x in items):
        raise _PatchError("lists of lists are not supported", 422)
    kinds = {isinstance(x, dict) for x in items}
    if len(kinds) > 1:
        raise _PatchError("elements in the slice are of different types")
    return kinds == {True}


def _merge_list(original: list[Any], patch: list[Any], path: str, merge_key: str, meta: PatchMeta,
                is_delete_list: bool) -> list[Any]:
    if not original and not patch:
        return original
    is_map = _is_map_list(original, patch)
    if not is_map:
        if is_delete_list:
            drop = list(patch)
            return [x for x in original if x not in drop]
        merged = _dedupe(original + patch)
        p_items, s_items = _partition(merged, patch, "", False)
        return _normalize_order(p_items, s_items, patch, original, "", False)
    if not merge_key:
        raise _PatchError(f"cannot merge lists without merge key for {path.split('.')[-1].rstrip('[]')}")
    orig, pat = _special_elements(list(original), patch, merge_key)
    merged = _merge_without_special(orig, pat, path, merge_key, meta)
    p_items, s_items = _partition(merged, pat, merge_key, True)
    return _normalize_order(p_items, s_items, pat, orig, merge_key, True)


def _key_of(item: Any, merge_key: str, is_map: bool) -> Any:
    if is_map:
        return item.get(merge_key) if isinstance(item, dict) else None
    return item


def _index(items: list[Any], value: Any, merge_key: str, is_map: bool) -> int:
    want = _key_of(value, merge_key, is_map)
    for i, v in enumerate(items):
        if _key_of(v, merge_key, is_map) == want:
            return i
    return -1


def _dedupe(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out


def _special_elements(original: list[Any], patch: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    plain: list[Any] = []
    replace = False
    for v in patch:
        if not isinstance(v, dict) or DIRECTIVE not in v:
            plain.append(v)
            continue
        d = v[DIRECTIVE]
        if d == "delete":
            if merge_key not in v:
                raise _PatchError(f"map: {_go(v)} does not contain declared merge key: {merge_key}")
            original = [o for o in original if not (isinstance(o, dict) and o.get(merge_key) == v[merge_key])]
        elif d == "replace":
            replace = True
        elif d == "merge":
            raise _PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise _PatchError(f"Unknown patch type: {d} in map: {_go(v)}")
    if replace:
        return [_strip(x) for x in plain], []
    return original, plain


def _merge_without_special(original: list[Any], patch: list[Any], path: str, merge_key: str,
                           meta: PatchMeta) -> list[Any]:
    out = list(original)
    for v in patch:
        if merge_key not in v:
            raise _PatchError(f"map: {_go(v)} does not contain declared merge key: {merge_key}")
        for i, o in enumerate(out):
            if isinstance(o, dict) and o.get(merge_key) == v[merge_key]:
                out[i] = _merge_map(o, v, path + "[]", meta)
                break
        else:
            out.append(_strip(v))
    return out


def _partition(merged: list[Any], in_list: list[Any], merge_key: str, is_map: bool) -> tuple[list[Any], list[Any]]:
    p_items, s_items = [], []
    for m in merged:
        (p_items if _index(in_list, m, merge_key, is_map) >= 0 else s_items).append(m)
    return p_items, s_items


def _sort_by(items: list[Any], order: list[Any], merge_key: str, is_map: bool) -> list[Any]:
    """normalizeSliceOrder: items found in `order` take its relative order (stable sort)."""
    import functools

    def cmp(a: Any, b: Any) -> int:
        ia, ib = _index(order, a, merge_key, is_map), _index(order, b, merge_key, is_map)
        if ia >= 0 and ib >= 0:
            return -1 if ia < ib else (1 if ia > ib else 0)
        return 0
    return sorted(items, key=functools.cmp_to_key(cmp))


def _normalize_order(patch_items: list[Any], server_only: list[Any], patch_order: list[Any],
                     server_order: list[Any], merge_key: str, is_map: bool) -> list[Any]:
    left = _sort_by(server_only, server_order, merge_key, is_map)
    right = _sort_by(patch_items, patch_order, merge_key, is_map)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key, is_map)
            ri = _index(server_order, right[j], merge_key, is_map)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _merge_set_element_order(original: dict[str, Any], patch: dict[str, Any], path: str, meta: PatchMeta) -> None:
    for key in [k for k in patch if k.startswith(SET_ORDER)]:
        order = patch[key]
        if not isinstance(order, list):
            raise _PatchError(ERR_SET_ORDER, 400)
        field = key[len(SET_ORDER):]
        fpath = _child(path, field)
        strategy, merge_key = _lookup(meta, fpath)
        found_o, found_p = field in original, field in patch
        o_list = original.get(field) if found_o else None
        p_list = patch.get(field) if found_p else None
        if (found_o and not isinstance(o_list, list)) or (found_p and not isinstance(p_list, list)):
            raise _PatchError(f"invalid type for {field}")
        _validate_order(p_list or [], order, merge_key)
        if found_o and not found_p:
            merged = o_list or []
        elif found_p and not found_o:
            merged = _fresh(p_list, fpath, meta)
        elif found_o and found_p:
            merged = _merge_list_field(o_list or [], p_list or [], fpath, meta, False)
        else:
            continue
        is_map = _is_map_list(o_list or [], p_list or [])
        if is_map and merge_key:
            for item in order:
                if not isinstance(item, dict) or merge_key not in item:
                    raise _PatchError(f"map: {_go(item)} does not contain declared merge key: {merge_key}")
        p_items, s_items = _partition(merged, order, merge_key, is_map)
        original[field] = _normalize_order(p_items, s_items, order, o_list or [], merge_key, is_map)
        patch.pop(field, None)


def _validate_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """validatePatchWithSetOrderList: non-delete patch items appear in the order list in the same order."""
    is_map = bool(merge_key)
    items = [p for p in patch_list if not (isinstance(p, dict) and p.get(DIRECTIVE) == "delete")]
    last = -1
    for p in items:
        idx = _index(order, p, merge_key, is_map)
        if idx < 0 or idx < last:
            raise _PatchError(ERR_SET_ORDER, 400)
        last = idx


# ---- RFC 7386 -------------------------------------------------------------------------------

def merge_patch(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    target = copy.deepcopy(original) if isinstance(original, dict) else {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


# ---- RFC 6902 -------------------------------------------------------------------------------

class _JsonPatchError(Exception):
    pass


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _JsonPatchError(f"invalid path {path}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, parts: list[str]) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, dict):
            if p not in cur:
                raise _JsonPatchError("doc is missing path")
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise _JsonPatchError("doc is missing path") from None
        else:
            raise _JsonPatchError("doc is missing path")
    return cur, parts[-1]


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    c, last = _container(doc, parts)
    if isinstance(c, dict):
        if last not in c:
            raise _JsonPatchError("missing value")
        return c[last]
    if isinstance(c, list):
        try:
            i = int(last)
            if i < 0:
                raise IndexError
            return c[i]
        except (ValueError, IndexError):
            raise _JsonPatchError("missing value") from None
    raise _JsonPatchError("missing value")


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    c, last = _container(doc, parts)
    if isinstance(c, dict):
        c[last] = value
    elif isinstance(c, list):
        if last == "-":
            c.append(value)
        else:
            try:
                i = int(last)
            except ValueError:
                raise _JsonPatchError("invalid index") from None
            if i < 0 or i > len(c):
                raise _JsonPatchError("index out of bounds")
            c.insert(i, value)
    else:
        raise _JsonPatchError("doc is missing path")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    c, last = _container(doc, parts)
    if isinstance(c, dict):
        if last not in c:
            raise _JsonPatchError("unable to remove nonexistent key")
        del c[last]
    elif isinstance(c, list):
        try:
            i = int(last)
            if i < 0:
                raise IndexError
            del c[i]
        except (ValueError, IndexError):
            raise _JsonPatchError("index out of bounds") from None
    else:
        raise _JsonPatchError("doc is missing path")
    return doc


def json_patch(original: Any, ops: Any) -> Any:
    """Applies RFC 6902 operations. Decoding problems are 400; a failed operation (including a failed
    `test`) is the patch handler's generic 422 "the server rejected our request due to an error in our request"."""
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(original)
    try:
        for op in ops:
            if not isinstance(op, dict):
                raise bad_request("json: cannot unmarshal into Go value of type jsonpatch.Operation")
            kind = op.get("op")
            path = op.get("path")
            if not isinstance(path, str):
                raise _JsonPatchError("operation missing path")
            if kind == "add":
                doc = _add(doc, path, copy.deepcopy(op.get("value")))
            elif kind == "remove":
                doc = _remove(doc, path)
            elif kind == "replace":
                _get(doc, path)
                doc = _remove(doc, path) if _pointer(path) else doc
                doc = _add(doc, path, copy.deepcopy(op.get("value")))
            elif kind == "move":
                val = _get(doc, op.get("from", ""))
                doc = _remove(doc, op.get("from", ""))
                doc = _add(doc, path, val)
            elif kind == "copy":
                doc = _add(doc, path, copy.deepcopy(_get(doc, op.get("from", ""))))
            elif kind == "test":
                try:
                    cur = _get(doc, path)
                except _JsonPatchError:
                    cur = None
                if cur != op.get("value"):
                    raise _JsonPatchError(f"testing value {path} failed: test failed")
            else:
                raise _JsonPatchError(f"Unexpected kind: {kind}")
    except _JsonPatchError:
        raise unprocessable("the server rejected our request due to an error in our request") from None
    return doc


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"error decoding patch: {exc}") from None


__all__ = ["strategic_merge", "merge_patch", "json_patch", "decode_json", "ApiStatusError", "patch_meta"]
