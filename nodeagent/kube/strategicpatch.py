"""Two-way strategic merge patches, as client-go's CreateTwoWayMergePatch
builds them for the kubelet's pod and node status updates.

Maps are diffed key by key (a removed key becomes null). Lists whose API
type declares `patchStrategy: merge` are diffed element by element on their
merge key: changed elements carry the key and what changed, removed ones
`{"$patch": "delete", key: …}`, and `$setElementOrder/<field>` gives the
full order. Every other list is atomic and sent whole when it differs.
"""

from __future__ import annotations

from typing import Any

# Merge keys of the merge-strategy lists in the Pod and Node objects the agent
# patches (core/v1 types.go `patchStrategy:"merge"`). Container statuses,
# taints and images are atomic lists: replaced whole.
MERGE_KEYS: dict[str, str] = {
    "conditions": "type",
    "podIPs": "ip",
    "hostIPs": "ip",
    "resourceClaimStatuses": "name",
    "addresses": "type",
    "ownerReferences": "uid",
}


def two_way(original: dict[str, Any], modified: dict[str, Any]) -> dict[str, Any]:
    """The patch that turns `original` into `modified` ({} when equal)."""
    return _diff_maps(original, modified)


def _diff_maps(original: dict[str, Any], modified: dict[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, old in original.items():
        if key not in modified:
            patch[key] = None
    for key, new in modified.items():
        old = original.get(key)
        if key not in original or old is None:
            if new is not None or key in original:
                patch[key] = new
            continue
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            sub = _diff_maps(old, new)
            if sub:
                patch[key] = sub
        elif isinstance(old, list) and isinstance(new, list) and key in MERGE_KEYS \
                and _keyed(old, MERGE_KEYS[key]) and _keyed(new, MERGE_KEYS[key]):
            _diff_merge_list(patch, key, MERGE_KEYS[key], old, new)
        else:
            patch[key] = new
    return patch


def _keyed(items: list[Any], key: str) -> bool:
    return all(isinstance(i, dict) and key in i for i in items)


def _diff_merge_list(patch: dict[str, Any], field: str, key: str,
                     old: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    old_by = {item[key]: item for item in old}
    new_keys = [item[key] for item in new]
    changes: list[dict[str, Any]] = []
    for item in new:
        before = old_by.get(item[key])
        if before is None:
            changes.append(item)
        elif before != item:
            sub = _diff_maps(before, item)
            if sub:
                changes.append({key: item[key], **sub})
    for item in old:
        if item[key] not in set(new_keys):
            changes.append({"$patch": "delete", key: item[key]})
    order_changed = [i[key] for i in old if i[key] in set(new_keys)] != [k for k in new_keys if k in old_by]
    if changes:
        patch[field] = changes
    if changes or order_changed:
        patch[f"$setElementOrder/{field}"] = [{key: k} for k in new_keys]
