"""Per-kind write semantics: decoding checks, defaulting, admission (ServiceAccount, Priority,
DefaultTolerationSeconds), PrepareForCreate/PrepareForUpdate and the status-subresource split, as the
registry strategies in k/k pkg/registry do."""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import random
from typing import Any

from . import quantity
from .errors import bad_request
from .validation import QUANTITY_MSG, quantity_value

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def fmt_time(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime(RFC3339)


def fmt_micro(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime.datetime:
    """RFC 3339 as Go's time.Parse accepts it (fractional seconds optional, Z or offset)."""
    v = value
    if v.endswith("Z") or v.endswith("z"):
        v = v[:-1] + "+00:00"
    t = datetime.datetime.fromisoformat(v)
    if t.tzinfo is None or "T" not in value.upper():
        raise ValueError(value)
    return t


class DecodeError(Exception):
    pass


def _norm_time(obj: dict[str, Any] | None, key: str, micro: bool = False) -> None:
    """Round-trips a metav1.Time (seconds, UTC) or MicroTime (microseconds, UTC) field."""
    if not isinstance(obj, dict) or key not in obj or obj[key] is None:
        return
    v = obj[key]
    if not isinstance(v, str):
        raise DecodeError(f"json: cannot unmarshal {type(v).__name__} into Go struct field of type string")
    if v == "":
        obj.pop(key)
        return
    try:
        t = parse_time(v)
    except ValueError:
        layout = "2006-01-02T15:04:05.000000Z07:00" if micro else "2006-01-02T15:04:05Z07:00"
        raise DecodeError(f'parsing time "{v}" as "{layout}": cannot parse "{v}" as "2006"') from None
    obj[key] = fmt_micro(t) if micro else fmt_time(t)


def _check_quantities(values: Any) -> None:
    """Decodes a ResourceList: each quantity parsed (400 if it does not) and re-encoded canonically."""
    if not isinstance(values, dict):
        return
    for name, q in values.items():
        if not isinstance(q, (str, int, float)) or isinstance(q, bool):
            raise DecodeError(QUANTITY_MSG)
        try:
            values[name] = quantity.canonical(str(q))
        except quantity.QuantityError as exc:
            raise DecodeError(str(exc)) from None


def _container_state_times(cs: dict[str, Any]) -> None:
    for st in ("state", "lastState"):
        s = cs.get(st) or {}
        _norm_time(s.get("running"), "startedAt")
        _norm_time(s.get("terminated"), "startedAt")
        _norm_time(s.get("terminated"), "finishedAt")


def _sync_ips(status: dict[str, Any], single: str, plural: str) -> None:
    """v1<->internal conversion: podIP is authoritative; podIPs[0] follows it."""
    one = status.get(single)
    many = status.get(plural) or []
    if one and (not many or many[0].get("ip") != one):
        status[plural] = [{"ip": one}]
    elif many and not one:
        status[single] = many[0].get("ip", "")


def decode(kind: str, obj: dict[str, Any]) -> None:
    """What decoding into the Go type does to the JSON: time formats, quantity syntax, Secret
    stringData folded into data, podIP/podIPs sync. Raises DecodeError (the caller answers 400)."""
    meta = obj.get("metadata") or {}
    _norm_time(meta, "creationTimestamp")
    _norm_time(meta, "deletionTimestamp")
    if kind == "Pod":
        spec = obj.get("spec") or {}
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []) + \
                (spec.get("ephemeralContainers") or []):
            res = c.get("resources") or {} if isinstance(c, dict) else {}
            _check_quantities(res.get("limits"))
            _check_quantities(res.get("requests"))
        _check_quantities(spec.get("overhead"))
        for v in spec.get("volumes") or []:
            ed = v.get("emptyDir") if isinstance(v, dict) else None
            if isinstance(ed, dict) and ed.get("sizeLimit") is not None:
                holder = {"sizeLimit": ed["sizeLimit"]}
                _check_quantities(holder)
                ed["sizeLimit"] = holder["sizeLimit"]
        status = obj.get("status") or {}
        if status:
            for f in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
                for cs in status.get(f) or []:
                    if isinstance(cs, dict):
                        _check_quantities(cs.get("allocatedResources"))
                        _check_quantities((cs.get("resources") or {}).get("limits"))
                        _check_quantities((cs.get("resources") or {}).get("requests"))
            _norm_time(status, "startTime")
            for cond in status.get("conditions") or []:
                _norm_time(cond, "lastProbeTime")
                _norm_time(cond, "lastTransitionTime")
            for f in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
                for cs in status.get(f) or []:
                    _container_state_times(cs)
            _sync_ips(status, "podIP", "podIPs")
            _sync_ips(status, "hostIP", "hostIPs")
    elif kind == "Node":
        status = obj.get("status") or {}
        _check_quantities(status.get("capacity"))
        _check_quantities(status.get("allocatable"))
        for cond in status.get("conditions") or []:
            _norm_time(cond, "lastHeartbeatTime")
            _norm_time(cond, "lastTransitionTime")
        spec = obj.get("spec") or {}
        if spec.get("podCIDR") and not spec.get("podCIDRs"):
            spec["podCIDRs"] = [spec["podCIDR"]]
        elif spec.get("podCIDRs") and not spec.get("podCIDR"):
            spec["podCIDR"] = spec["podCIDRs"][0]
    elif kind == "Lease":
        spec = obj.get("spec") or {}
        _norm_time(spec, "acquireTime", micro=True)
        _norm_time(spec, "renewTime", micro=True)
    elif kind == "Event":
        _norm_time(obj, "firstTimestamp")
        _norm_time(obj, "lastTimestamp")
        _norm_time(obj, "eventTime", micro=True)
        _norm_time(obj.get("series"), "lastObservedTime", micro=True)
    elif kind == "Secret":
        data = obj.get("data") or {}
        for k, v in data.items():
            try:
                base64.b64decode(v or "", validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise DecodeError("illegal base64 data at input byte 0") from None
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = dict(data)
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data


# ---- defaulting (SetDefaults_*) ---------------------------------------------------------------

def _default_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(p: Any) -> None:
    if not isinstance(p, dict):
        return
    p.setdefault("timeoutSeconds", 1)
    p.setdefault("periodSeconds", 10)
    p.setdefault("successThreshold", 1)
    p.setdefault("failureThreshold", 3)
    if isinstance(p.get("httpGet"), dict):
        p["httpGet"].setdefault("path", "/")
        p["httpGet"].setdefault("scheme", "HTTP")
    if isinstance(p.get("grpc"), dict):
        p["grpc"].setdefault("service", "")


def _default_container(c: dict[str, Any], host_network: bool) -> None:
    c.setdefault("resources", {})
    res = c["resources"]
    if isinstance(res, dict) and res.get("limits"):
        req = res.setdefault("requests", {})
        for k, v in res["limits"].items():
            req.setdefault(k, v)
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if isinstance(c.get("image"), str) and not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = _default_pull_policy(c["image"])
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            if host_network and not p.get("hostPort") and p.get("containerPort"):
                p["hostPort"] = p["containerPort"]
    for e in c.get("env") or []:
        vf = e.get("valueFrom") if isinstance(e, dict) else None
        if isinstance(vf, dict) and isinstance(vf.get("fieldRef"), dict):
            vf["fieldRef"].setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe))


def _default_volume(v: dict[str, Any]) -> None:
    for src in ("secret", "configMap", "downwardAPI", "projected"):
        if isinstance(v.get(src), dict):
            v[src].setdefault("defaultMode", 420)
    if isinstance(v.get("hostPath"), dict):
        v["hostPath"].setdefault("type", "")
    if isinstance(v.get("downwardAPI"), dict):
        for item in v["downwardAPI"].get("items") or []:
            if isinstance(item.get("fieldRef"), dict):
                item["fieldRef"].setdefault("apiVersion", "v1")
    if isinstance(v.get("projected"), dict):
        for s in v["projected"].get("sources") or []:
            if isinstance(s.get("serviceAccountToken"), dict):
                s["serviceAccountToken"].setdefault("expirationSeconds", 3600)
            if isinstance(s.get("downwardAPI"), dict):
                for item in s["downwardAPI"].get("items") or []:
                    if isinstance(item.get("fieldRef"), dict):
                        item["fieldRef"].setdefault("apiVersion", "v1")
    if not any(k for k in v if k != "name"):
        v["emptyDir"] = {}


def default_pod(pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    host_network = bool(spec.get("hostNetwork"))
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []) + \
            (spec.get("ephemeralContainers") or []):
        if isinstance(c, dict):
            _default_container(c, host_network)
    for v in spec.get("volumes") or []:
        if isinstance(v, dict):
            _default_volume(v)


def default_node(node: dict[str, Any]) -> None:
    status = node.get("status")
    if isinstance(status, dict) and status.get("capacity") and "allocatable" not in status:
        status["allocatable"] = copy.deepcopy(status["capacity"])


def default_namespace(ns: dict[str, Any]) -> None:
    ns.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    name = (ns.get("metadata") or {}).get("name")
    if name:
        ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name


def default_secret(sec: dict[str, Any]) -> None:
    sec.setdefault("type", "Opaque")


DEFAULTERS = {"Pod": default_pod, "Node": default_node, "Namespace": default_namespace, "Secret": default_secret}


# ---- pod admission and create/update preparation ----------------------------------------------

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
MIRROR = "kubernetes.io/config.mirror"
PRIORITY_CLASSES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}


def admit_pod(pod: dict[str, Any], get_sa, forbid) -> None:
    """ServiceAccount, Priority and DefaultTolerationSeconds admission (mutating) for a new pod.
    `get_sa(name)` returns the ServiceAccount or None; `forbid(msg)` builds the 403."""
    spec = pod["spec"]
    meta = pod["metadata"]
    annotations = meta.get("annotations") or {}
    if MIRROR in annotations:
        if spec.get("serviceAccountName") or spec.get("serviceAccount"):
            raise forbid("a mirror pod may not reference service accounts")
        for v in spec.get("volumes") or []:
            if v.get("secret") is not None:
                raise forbid("a mirror pod may not reference secrets")
            if v.get("configMap") is not None:
                raise forbid("a mirror pod may not reference configmaps")
            for s in (v.get("projected") or {}).get("sources") or []:
                if s.get("serviceAccountToken") is not None:
                    raise forbid("a mirror pod may not use ServiceAccountToken volume projections")
                if s.get("secret") is not None:
                    raise forbid("a mirror pod may not reference secrets")
                if s.get("configMap") is not None:
                    raise forbid("a mirror pod may not reference configmaps")
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                if vf.get("secretKeyRef"):
                    raise forbid("a mirror pod may not reference secrets")
                if vf.get("configMapKeyRef"):
                    raise forbid("a mirror pod may not reference configmaps")
            for ef in c.get("envFrom") or []:
                if ef.get("secretRef"):
                    raise forbid("a mirror pod may not reference secrets")
                if ef.get("configMapRef"):
                    raise forbid("a mirror pod may not reference configmaps")
    else:
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
        sa_name = spec["serviceAccountName"]
        sa = get_sa(sa_name)
        if sa is None:
            raise forbid(f"error looking up service account {meta.get('namespace')}/{sa_name}: "
                         f'serviceaccount "{sa_name}" not found')
        spec["serviceAccount"] = sa_name
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = sa.get("automountServiceAccountToken", True)
        if automount:
            _mount_token(spec)
    pcn = spec.get("priorityClassName")
    if pcn:
        if pcn not in PRIORITY_CLASSES:
            raise forbid(f"no PriorityClass with name {pcn} was found")
        prio = PRIORITY_CLASSES[pcn]
        if spec.get("priority") is not None and spec["priority"] != prio:
            raise forbid("the integer value of priority (%d) must not be provided in pod spec; priority "
                         "admission controller computed %d from the given PriorityClass name" % (spec["priority"],
                                                                                                   prio))
        spec["priority"] = prio
    else:
        if spec.get("priority") not in (None, 0):
            raise forbid("the integer value of priority (%d) must not be provided in pod spec; priority admission "
                         "controller computed 0 from the given PriorityClass name" % spec["priority"])
        spec["priority"] = 0
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tols = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") in (key, None, "") and t.get("effect") in ("NoExecute", None, "")
                   and (t.get("key") or t.get("operator") == "Exists") for t in tols):
            tols.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})


def _mount_token(spec: dict[str, Any]) -> None:
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    if any(m.get("mountPath") == SA_MOUNT for c in containers for m in c.get("volumeMounts") or []):
        return
    names = {v.get("name") for v in spec.get("volumes") or []}
    while True:
        name = "kube-api-access-" + "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        if name not in names:
            break
    spec.setdefault("volumes", []).append({"name": name, "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                       "fieldPath": "metadata.namespace"}}]}},
    ], "defaultMode": 420}})
    for c in containers:
        c.setdefault("volumeMounts", []).append({"name": name, "readOnly": True, "mountPath": SA_MOUNT})


def _qty(values: dict[str, Any], name: str) -> float | None:
    return quantity_value(values[name]) if name in values else None


def qos_class(spec: dict[str, Any]) -> str:
    """qos.GetPodQOS from cpu and memory requests/limits of all (init) containers."""
    requests: dict[str, float] = {}
    limits: dict[str, float] = {}
    guaranteed = True
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        res = c.get("resources") or {}
        creq, clim = res.get("requests") or {}, res.get("limits") or {}
        found = set()
        for name in ("cpu", "memory"):
            r = _qty(creq, name)
            if r is not None and r != 0:
                requests[name] = requests.get(name, 0) + r
            lv = _qty(clim, name)
            if lv is not None and lv != 0:
                found.add(name)
                limits[name] = limits.get(name, 0) + lv
        if found != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed:
        for name, r in requests.items():
            if limits.get(name) != r:
                guaranteed = False
        if guaranteed and len(requests) == len(limits):
            return "Guaranteed"
    return "Burstable"


def prepare_pod_create(pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    status: dict[str, Any] = {"phase": "Pending", "qosClass": qos_class(spec)}
    if spec.get("schedulingGates"):
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                                 "lastTransitionTime": None, "reason": "SchedulingGated",
                                 "message": "Scheduling is blocked due to non-empty scheduling gates"}]
    pod["status"] = status
    pod["metadata"]["generation"] = 1


def prepare_pod_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    new["status"] = copy.deepcopy(old.get("status") or {})
    gen = old["metadata"].get("generation", 1)
    new["metadata"]["generation"] = gen + 1 if new.get("spec") != old.get("spec") else gen


def prepare_pod_status_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    new["spec"] = copy.deepcopy(old.get("spec"))
    new["metadata"].pop("deletionTimestamp", None)
    if "ownerReferences" in old["metadata"]:
        new["metadata"]["ownerReferences"] = copy.deepcopy(old["metadata"]["ownerReferences"])
    else:
        new["metadata"].pop("ownerReferences", None)
    status = new.setdefault("status", {})
    if not status.get("qosClass") and (old.get("status") or {}).get("qosClass"):
        status["qosClass"] = old["status"]["qosClass"]
    new["metadata"]["generation"] = old["metadata"].get("generation", 1)


def keep_status(new: dict[str, Any], old: dict[str, Any]) -> None:
    if "status" in old:
        new["status"] = copy.deepcopy(old["status"])
    else:
        new.pop("status", None)


def keep_spec(new: dict[str, Any], old: dict[str, Any]) -> None:
    if "spec" in old:
        new["spec"] = copy.deepcopy(old["spec"])
    else:
        new.pop("spec", None)


def prepare_namespace_create(ns: dict[str, Any]) -> None:
    ns["status"] = {"phase": "Active"}


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


def decode_or_400(kind: str, obj: dict[str, Any], body_kind: str, version: str) -> None:
    try:
        decode(kind, obj)
    except DecodeError as exc:
        raise bad_request(f'{body_kind} in version "{version}" cannot be handled as a {kind}: {exc}') from None


# ---- encoding: the fields Go always writes ----------------------------------------------------

NODE_INFO = ("machineID", "systemUUID", "bootID", "kernelVersion", "osImage", "containerRuntimeVersion",
             "kubeletVersion", "kubeProxyVersion", "operatingSystem", "architecture")


def _zero(obj: Any, key: str, value: Any) -> None:
    if isinstance(obj, dict) and key not in obj:
        obj[key] = copy.deepcopy(value)


def _zero_container_status(cs: Any) -> None:
    for k, v in (("name", ""), ("state", {}), ("lastState", {}), ("ready", False), ("restartCount", 0),
                 ("image", ""), ("imageID", "")):
        _zero(cs, k, v)


def encode_zero_values(kind: str, obj: dict[str, Any]) -> None:
    """Fields without `omitempty` (or struct-typed) that the Go JSON encoder always writes: null times in
    conditions, `{}` structs, empty strings. Stored objects look as the real server returns them."""
    _zero(obj.get("metadata"), "creationTimestamp", None)
    if kind == "Pod":
        status = obj.get("status")
        for cond in (status or {}).get("conditions") or [] if isinstance(status, dict) else []:
            _zero(cond, "lastProbeTime", None)
            _zero(cond, "lastTransitionTime", None)
        for f in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
            for cs in (status or {}).get(f) or [] if isinstance(status, dict) else []:
                _zero_container_status(cs)
    elif kind == "Node":
        _zero(obj, "spec", {})
        _zero(obj, "status", {})
        status = obj["status"]
        if isinstance(status, dict):
            _zero(status, "daemonEndpoints", {})
            _zero(status["daemonEndpoints"], "kubeletEndpoint", {})
            _zero(status["daemonEndpoints"].get("kubeletEndpoint"), "Port", 0)
            _zero(status, "nodeInfo", {})
            for f in NODE_INFO:
                _zero(status["nodeInfo"], f, "")
            for cond in status.get("conditions") or []:
                _zero(cond, "lastHeartbeatTime", None)
                _zero(cond, "lastTransitionTime", None)
    elif kind == "Lease":
        _zero(obj, "spec", {})
    elif kind == "Event":
        for k, v in (("involvedObject", {}), ("source", {}), ("firstTimestamp", None), ("lastTimestamp", None),
                     ("eventTime", None), ("reportingComponent", ""), ("reportingInstance", "")):
            _zero(obj, k, v)
    elif kind == "Namespace":
        _zero(obj, "spec", {})
        _zero(obj, "status", {})
