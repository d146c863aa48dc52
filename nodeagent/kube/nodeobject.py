"""The Node object the agent registers and the status it reports (first
cut: capacity, allocatable, conditions with Ready last, addresses, the
runtime and agent versions)."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from typing import Any

from nodeagent import __version__
from nodeagent.node.capacity import NodeResources

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
KUBELET_VERSION = f"v1.31.0-nodeagent.{__version__}"
PRESSURE_ORDER = ("MemoryPressure", "DiskPressure", "PIDPressure")
HEALTHY = {
    "MemoryPressure": ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    "DiskPressure": ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    "PIDPressure": ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def initial_node(config: Any, capacity: NodeResources | None, allocatable: NodeResources | None) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": config.node_name, "kubernetes.io/os": "linux", "kubernetes.io/arch": ARCH}
    labels.update(config.node_labels)
    spec: dict[str, Any] = {}
    if config.register_with_taints:
        spec["taints"] = [dict(t) for t in config.register_with_taints]
    if config.pod_cidr:
        spec["podCIDR"], spec["podCIDRs"] = config.pod_cidr, [config.pod_cidr]
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": config.node_name, "labels": labels,
                         "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
            "spec": spec,
            "status": {"capacity": capacity.as_quantities() if capacity else {},
                       "allocatable": allocatable.as_quantities() if allocatable else {}}}


def _condition(previous: dict[str, dict[str, Any]], kind: str, status: str, reason: str, message: str,
               now: str, since: str | None = None) -> dict[str, Any]:
    before = previous.get(kind)
    transition = before.get("lastTransitionTime") if before and before.get("status") == status else (since or now)
    return {"type": kind, "status": status, "lastHeartbeatTime": now, "lastTransitionTime": transition,
            "reason": reason, "message": message}


def node_status(config: Any, previous: dict[str, Any] | None, *, capacity: NodeResources | None,
                allocatable: NodeResources | None, pressure: list[Any], runtime_errors: list[str],
                runtime_version: Any, node_ips: tuple[str, ...], port: int) -> dict[str, Any]:
    now = _now()
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    by_type = {c.type: c for c in pressure}
    conditions = []
    for kind in PRESSURE_ORDER:
        cond = by_type.get(kind)
        if cond is not None and cond.status == "True":
            conditions.append(_condition(before, kind, "True", cond.reason, cond.message, now))
        else:
            reason, message = HEALTHY[kind]
            conditions.append(_condition(before, kind, "False", reason, message, now))
    if runtime_errors:
        conditions.append(_condition(before, "Ready", "False", "KubeletNotReady", ",".join(runtime_errors), now))
    else:
        conditions.append(_condition(before, "Ready", "True", "KubeletReady", "kubelet is posting ready status", now))
    runtime = (f"{runtime_version.runtime_name}://{runtime_version.runtime_version}" if runtime_version else "")
    return {
        "capacity": capacity.as_quantities() if capacity else {},
        "allocatable": allocatable.as_quantities() if allocatable else {},
        "conditions": conditions,
        "addresses": [{"type": "InternalIP", "address": ip} for ip in node_ips]
        + [{"type": "Hostname", "address": config.node_name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": platform.release(),
                     "osImage": "", "containerRuntimeVersion": runtime, "kubeletVersion": KUBELET_VERSION,
                     "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": ARCH},
    }


def node_status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """kubelet nodeStatusHasChanged: anything but heartbeat times."""
    def strip(status: dict[str, Any]) -> dict[str, Any]:
        out = dict(status)
        out["conditions"] = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                             for c in status.get("conditions") or []]
        return out
    return strip(old) != strip(new)


