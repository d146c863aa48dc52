"""Validation of the served kinds after pkg/apis/core/validation (and coordination's ValidateLease):
the field paths, error types and messages the real server reports. Not exhaustive: what is checked is
listed in docs/decisions.md."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from . import quantity
from .errors import (FieldError, duplicate, forbidden_field, invalid, not_supported, required)
from .selectors import label_value_errors, qualified_name_errors

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
QUANTITY_MSG = quantity.MSG


def dns_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not DNS1123_LABEL.match(value):
        errs.append(LABEL_MSG)
    return errs


def dns_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not DNS1123_SUBDOMAIN.match(value):
        errs.append(SUBDOMAIN_MSG)
    return errs


def quantity_value(text: Any) -> float | None:
    """The numeric value of a quantity, None if it does not parse (the decoder's 400)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    try:
        return float(quantity.parse(text)[0])
    except (quantity.QuantityError, TypeError):
        return None


def valid_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(value)
        return isinstance(value, str)
    except ValueError:
        return False


IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


# ---- ObjectMeta -------------------------------------------------------------------------------

def validate_meta(meta: dict[str, Any], namespaced: bool, name_fn=dns_subdomain, path: str = "metadata") -> list[FieldError]:
    errs: list[FieldError] = []
    name = _s(meta.get("name"))
    if meta.get("generateName"):
        for msg in name_fn(_s(meta["generateName"]).rstrip("-") or "x"):
            errs.append(invalid(f"{path}.generateName", meta["generateName"], msg))
    if not name:
        errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        for msg in name_fn(name):
            errs.append(invalid(f"{path}.name", name, msg))
    ns = _s(meta.get("namespace"))
    if namespaced:
        if not ns:
            errs.append(required(f"{path}.namespace"))
        else:
            for msg in dns_label(ns):
                errs.append(invalid(f"{path}.namespace", ns, msg))
    elif ns:
        errs.append(forbidden_field(f"{path}.namespace", "not allowed on this type"))
    errs += validate_labels(meta.get("labels"), f"{path}.labels")
    annotations = meta.get("annotations") or {}
    total = 0
    for k, v in annotations.items():
        for msg in qualified_name_errors(k):
            errs.append(invalid(f"{path}.annotations", k, msg))
        total += len(k) + len(_s(v))
    if total > 256 * 1024:
        errs.append(FieldError("TooLong", f"{path}.annotations", None, "must have at most 262144 bytes"))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        p = f"{path}.ownerReferences[{i}]"
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                errs.append(invalid(f"{p}.{f}", ref.get(f, ""), f"{f} must not be empty") if f != "uid"
                            else invalid(f"{p}.uid", "", "uid must not be empty"))
    controllers = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    if len(controllers) > 1:
        errs.append(invalid(f"{path}.ownerReferences", meta["ownerReferences"],
                            "Only one reference can have Controller set to true"))
    for i, fin in enumerate(meta.get("finalizers") or []):
        for msg in qualified_name_errors(_s(fin)):
            errs.append(invalid(f"{path}.finalizers[{i}]", fin, msg))
    return errs


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs = []
    for k, v in (labels or {}).items():
        for msg in qualified_name_errors(k):
            errs.append(invalid(path, k, msg))
        for msg in label_value_errors(_s(v)):
            errs.append(invalid(path, v, msg))
    return errs


def validate_meta_update(new: dict[str, Any], old: dict[str, Any], path: str = "metadata") -> list[FieldError]:
    errs = []
    for f in ("name", "namespace", "uid"):
        if new.get(f, "") != old.get(f, ""):
            errs.append(invalid(f"{path}.{f}", new.get(f, ""), "field is immutable"))
    return errs


# ---- Pods -------------------------------------------------------------------------------------

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
TERMINATION_MSG = ("FallbackToLogsOnError", "File")
VOLUME_SOURCES = ("hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
                  "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs",
                  "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume", "quobyte",
                  "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO", "storageos",
                  "csi", "ephemeral", "image")


def _probe_errs(probe: Any, path: str) -> list[FieldError]:
    if probe is None:
        return []
    errs = []
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
    if not handlers:
        errs.append(required(path, "must specify a handler type"))
    elif len(handlers) > 1:
        errs.append(forbidden_field(f"{path}.{handlers[1]}", "may not specify more than 1 handler type"))
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        v = probe.get(f)
        if isinstance(v, int) and v < 0:
            errs.append(invalid(f"{path}.{f}", v, "must be greater than or equal to 0"))
    return errs


def _resources_errs(res: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(res, dict):
        return errs
    limits = res.get("limits") or {}
    requests = res.get("requests") or {}
    for part, values in (("limits", limits), ("requests", requests)):
        for name, q in values.items():
            for msg in qualified_name_errors(name):
                errs.append(invalid(f"{path}.{part}[{name}]", name, msg))
            v = quantity_value(q)
            if v is not None and v < 0:
                errs.append(invalid(f"{path}.{part}[{name}]", q, "must be greater than or equal to 0"))
    for name, q in requests.items():
        if name in limits:
            rv, lv = quantity_value(q), quantity_value(limits[name])
            if rv is not None and lv is not None and rv > lv:
                errs.append(invalid(f"{path}.requests", q, f"must be less than or equal to {name} limit of "
                                    f"{limits[name]}"))
    return errs


def _unique_name(name: str, path: str, seen: set[str]) -> list[FieldError]:
    """A required DNS-label name, unique among `seen` (container and volume names)."""
    if not name:
        return [required(path)]
    errs = [invalid(path, name, msg) for msg in dns_label(name)]
    if name in seen:
        errs.append(duplicate(path, name))
    seen.add(name)
    return errs


def _container_errs(c: dict[str, Any], path: str, volumes: set[str], host_network: bool,
                    init: bool, names: set[str]) -> list[FieldError]:
    errs = _unique_name(_s(c.get("name")), f"{path}.name", names)
    if not _s(c.get("image")).strip():
        errs.append(required(f"{path}.image"))
    pp = c.get("imagePullPolicy")
    if pp is None or pp == "":
        errs.append(required(f"{path}.imagePullPolicy"))
    elif pp not in PULL_POLICIES:
        errs.append(not_supported(f"{path}.imagePullPolicy", pp, PULL_POLICIES))
    tmp = c.get("terminationMessagePolicy")
    if not tmp:
        errs.append(required(f"{path}.terminationMessagePolicy", "must be 'File' or 'FallbackToLogsOnError'"))
    elif tmp not in TERMINATION_MSG:
        errs.append(invalid(f"{path}.terminationMessagePolicy", tmp, "must be 'File' or 'FallbackToLogsOnError'"))
    port_names: set[str] = set()
    for i, p in enumerate(c.get("ports") or []):
        pp_ = f"{path}.ports[{i}]"
        cp = p.get("containerPort")
        if not isinstance(cp, int) or isinstance(cp, bool) or cp == 0:
            errs.append(required(f"{pp_}.containerPort"))
        elif not 1 <= cp <= 65535:
            errs.append(invalid(f"{pp_}.containerPort", cp, "must be between 1 and 65535, inclusive"))
        hp = p.get("hostPort")
        if isinstance(hp, int) and hp != 0 and not 1 <= hp <= 65535:
            errs.append(invalid(f"{pp_}.hostPort", hp, "must be between 1 and 65535, inclusive"))
        if host_network and isinstance(hp, int) and hp != 0 and hp != cp:
            errs.append(invalid(f"{pp_}.containerPort", cp, "must match `hostPort` when `hostNetwork` is true"))
        proto = p.get("protocol")
        if not proto:
            errs.append(required(f"{pp_}.protocol"))
        elif proto not in PROTOCOLS:
            errs.append(not_supported(f"{pp_}.protocol", proto, PROTOCOLS))
        pn = p.get("name")
        if pn:
            if len(pn) > 15 or not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", pn) or "--" in pn \
                    or not re.search(r"[a-z]", pn):
                errs.append(invalid(f"{pp_}.name", pn, "must be no more than 15 characters" if len(pn) > 15 else
                                    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"))
            elif pn in port_names:
                errs.append(duplicate(f"{pp_}.name", pn))
            port_names.add(pn)
    for i, e in enumerate(c.get("env") or []):
        en = e.get("name")
        if not en:
            errs.append(required(f"{path}.env[{i}].name"))
        elif "=" in en or not all(32 <= ord(ch) < 127 for ch in en):
            errs.append(invalid(f"{path}.env[{i}].name", en,
                                "a valid environment variable name must consist only of printable ASCII "
                                "characters other than '='"))
    mounts: set[str] = set()
    for i, m in enumerate(c.get("volumeMounts") or []):
        mp = f"{path}.volumeMounts[{i}]"
        vn = m.get("name")
        if not vn:
            errs.append(required(f"{mp}.name"))
        elif vn not in volumes:
            errs.append(FieldError("NotFound", f"{mp}.name", vn))
        mpath = m.get("mountPath")
        if not mpath:
            errs.append(required(f"{mp}.mountPath"))
        elif mpath in mounts:
            errs.append(invalid(f"{mp}.mountPath", mpath, "must be unique"))
        else:
            mounts.add(mpath)
    errs += _resources_errs(c.get("resources"), f"{path}.resources")
    rp = c.get("restartPolicy")
    if rp is not None:
        if not init:
            errs.append(forbidden_field(f"{path}.restartPolicy", "may not be set for non-init containers"))
        elif rp != "Always":
            errs.append(not_supported(f"{path}.restartPolicy", rp, ("Always",)))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if init and rp != "Always" and c.get(probe) is not None:
            errs.append(forbidden_field(f"{path}.{probe}", "may not be set for init containers without "
                                        "restartPolicy=Always"))
        else:
            errs += _probe_errs(c.get(probe), f"{path}.{probe}")
    return errs


def validate_pod_spec(spec: Any, path: str = "spec") -> list[FieldError]:
    if not isinstance(spec, dict):
        return [required(path)]
    errs: list[FieldError] = []
    volumes: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        vp = f"{path}.volumes[{i}]"
        errs += _unique_name(_s(v.get("name")), f"{vp}.name", volumes)
        sources = [s for s in VOLUME_SOURCES if v.get(s) is not None]
        if not sources:
            errs.append(required(vp, "must specify a volume type"))
        elif len(sources) > 1:
            errs.append(forbidden_field(f"{vp}.{sources[1]}", "may not specify more than 1 volume type"))
        if v.get("hostPath") is not None and not _s(v["hostPath"].get("path")):
            errs.append(required(f"{vp}.hostPath.path"))
        for src, key in (("secret", "secretName"), ("configMap", "name")):
            if v.get(src) is not None:
                if not _s(v[src].get(key)) and src == "secret":
                    errs.append(required(f"{vp}.secret.secretName"))
                mode = v[src].get("defaultMode")
                if isinstance(mode, int) and not 0 <= mode <= 0o777:
                    errs.append(invalid(f"{vp}.{src}.defaultMode", mode,
                                        "must be a number between 0 and 0777 (octal), both inclusive"))
    host_network = bool(spec.get("hostNetwork"))
    names: set[str] = set()
    containers = spec.get("containers")
    if not containers:
        errs.append(required(f"{path}.containers"))
    for i, c in enumerate(spec.get("initContainers") or []):
        errs += _container_errs(c, f"{path}.initContainers[{i}]", volumes, host_network, True, names)
    for i, c in enumerate(containers or []):
        errs += _container_errs(c, f"{path}.containers[{i}]", volumes, host_network, False, names)
    rp = spec.get("restartPolicy")
    if not rp:
        errs.append(required(f"{path}.restartPolicy"))
    elif rp not in RESTART_POLICIES:
        errs.append(not_supported(f"{path}.restartPolicy", rp, RESTART_POLICIES))
    dp = spec.get("dnsPolicy")
    if not dp:
        errs.append(required(f"{path}.dnsPolicy"))
    elif dp not in DNS_POLICIES:
        errs.append(not_supported(f"{path}.dnsPolicy", dp, DNS_POLICIES))
    if dp == "None" and not spec.get("dnsConfig"):
        errs.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not isinstance(ads, int) or not 1 <= ads <= 2147483647):
        errs.append(invalid(f"{path}.activeDeadlineSeconds", ads, "must be between 1 and 2147483647, inclusive"))
    tgp = spec.get("terminationGracePeriodSeconds")
    if tgp is not None and (not isinstance(tgp, int) or isinstance(tgp, bool)):
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", tgp, "must be an integer"))
    for f in ("nodeName", "serviceAccountName"):
        v = spec.get(f)
        if v:
            for msg in dns_subdomain(v):
                errs.append(invalid(f"{path}.{f}", v, msg))
    for f in ("hostname", "subdomain"):
        v = spec.get(f)
        if v:
            for msg in dns_label(v):
                errs.append(invalid(f"{path}.{f}", v, msg))
    errs += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    for i, t in enumerate(spec.get("tolerations") or []):
        tp = f"{path}.tolerations[{i}]"
        op = t.get("operator") or "Equal"
        if op not in ("Equal", "Exists"):
            errs.append(not_supported(f"{tp}.operator", op, ("Equal", "Exists")))
        if op == "Exists" and t.get("value"):
            errs.append(invalid(f"{tp}.operator", t.get("value"), "value must be empty when `operator` is 'Exists'"))
        if not t.get("key") and op != "Exists":
            errs.append(invalid(f"{tp}.operator", op, "operator must be Exists when `key` is empty, which means "
                                "\"match all values and all keys\""))
        eff = t.get("effect")
        if eff and eff not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.append(not_supported(f"{tp}.effect", eff, ("NoSchedule", "PreferNoSchedule", "NoExecute")))
        if t.get("tolerationSeconds") is not None and eff != "NoExecute":
            errs.append(invalid(f"{tp}.effect", eff, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
    for i, sec in enumerate(spec.get("imagePullSecrets") or []):
        if not sec.get("name"):
            errs.append(required(f"{path}.imagePullSecrets[{i}].name"))
    return errs


def validate_pod(pod: dict[str, Any]) -> list[FieldError]:
    errs = validate_meta(pod.get("metadata") or {}, True)
    errs += validate_pod_spec(pod.get("spec"))
    return errs


POD_UPDATE_MSG = ("pod updates may not change fields other than `spec.containers[*].image`,"
                  "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                  "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                  "(allow it to be set to 1 if it was previously negative)")


def _diff(old: Any, new: Any, path: str = "spec") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k), new.get(k), f"{path}.{k}")
        return out
    if old != new:
        return [f"  {path}: {json.dumps(old)} -> {json.dumps(new)}"]
    return []


def validate_pod_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += validate_pod_spec(new.get("spec"))
    errs += _mirror_annotation_update(new, old)
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    # The mutable fields are copied from the old spec; whatever differs after that is forbidden.
    cmp_new = json.loads(json.dumps(ns))
    for list_name in ("containers", "initContainers"):
        newl, oldl = cmp_new.get(list_name) or [], os_.get(list_name) or []
        if len(newl) == len(oldl):
            for i, c in enumerate(newl):
                if "image" in c and c["image"]:
                    c["image"] = oldl[i].get("image")
    old_ads, new_ads = os_.get("activeDeadlineSeconds"), ns.get("activeDeadlineSeconds")
    if new_ads is not None and (old_ads is None or (isinstance(new_ads, int) and new_ads <= old_ads)):
        cmp_new["activeDeadlineSeconds"] = old_ads
    elif old_ads is not None and new_ads is None:
        errs.append(invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil "
                                                                  "value"))
        cmp_new["activeDeadlineSeconds"] = old_ads
    elif isinstance(new_ads, int) and old_ads is not None and new_ads > old_ads:
        errs.append(invalid("spec.activeDeadlineSeconds", new_ads,
                            "must be less than or equal to previous value"))
        cmp_new["activeDeadlineSeconds"] = old_ads
    old_tol, new_tol = os_.get("tolerations") or [], ns.get("tolerations") or []
    if all(t in new_tol for t in old_tol):
        if old_tol or "tolerations" in os_:
            cmp_new["tolerations"] = os_.get("tolerations")
        else:
            cmp_new.pop("tolerations", None)
    old_tgp, new_tgp = os_.get("terminationGracePeriodSeconds"), ns.get("terminationGracePeriodSeconds")
    if isinstance(old_tgp, int) and old_tgp < 0 and new_tgp == 1:
        cmp_new["terminationGracePeriodSeconds"] = old_tgp
    if cmp_new != os_:
        diff = "\n".join(_diff(os_, cmp_new))
        errs.append(forbidden_field("spec", POD_UPDATE_MSG + ("\n" + diff if diff else "")))
    return errs


MIRROR = "kubernetes.io/config.mirror"


def _mirror_annotation_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    na = (new.get("metadata") or {}).get("annotations") or {}
    oa = (old.get("metadata") or {}).get("annotations") or {}
    if na.get(MIRROR) != oa.get(MIRROR):
        return [forbidden_field(f"metadata.annotations[{MIRROR}]", "may not remove or update mirror pod annotation"
                                if MIRROR in oa else "may not add mirror pod annotation")]
    return []


TERMINAL = ("Succeeded", "Failed")


def _ips_errs(status: dict[str, Any], field: str) -> list[FieldError]:
    errs = []
    ips = status.get(field) or []
    for i, entry in enumerate(ips):
        ip = entry.get("ip") if isinstance(entry, dict) else None
        if not valid_ip(ip):
            errs.append(invalid(f"status.{field}[{i}]", ip if ip is not None else "", IP_MSG))
    if len(ips) > 1 and not errs:
        fams = [ipaddress.ip_address(e["ip"]).version for e in ips]
        if len(ips) > 2 or fams[0] == fams[1]:
            errs.append(invalid(f"status.{field}", ips, "may specify no more than one IP for each IP family"))
    return errs


def _terminated(cs: dict[str, Any]) -> bool:
    return bool((cs.get("state") or {}).get("terminated"))


def validate_pod_status_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += _mirror_annotation_update(new, old)
    ns, os_ = new.get("status") or {}, old.get("status") or {}
    if (new.get("spec") or {}).get("nodeName") != (old.get("spec") or {}).get("nodeName"):
        errs.append(forbidden_field("status.nodeName", "may not be changed directly"))
    nn = ns.get("nominatedNodeName")
    if nn and nn != os_.get("nominatedNodeName"):
        for msg in dns_subdomain(nn):
            errs.append(invalid("status.nominatedNodeName", nn, msg))
    # Pod phase is not validated on status updates (a terminal phase may still be left, as in 1.31);
    # container state transitions are.
    restart = (old.get("spec") or {}).get("restartPolicy")
    for field, policy in (("containerStatuses", restart), ("ephemeralContainerStatuses", "Never")):
        old_by_name = {c.get("name"): c for c in os_.get(field) or []}
        for i, c in enumerate(ns.get(field) or []):
            oc = old_by_name.get(c.get("name"))
            if not oc or not _terminated(oc) or _terminated(c):
                continue
            code = ((oc.get("state") or {}).get("terminated") or {}).get("exitCode", 0)
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                errs.append(forbidden_field(f"status.{field}[{i}].state",
                                            "may not be transitioned to non-terminated state"))
    for i, cond in enumerate(ns.get("conditions") or []):
        ctype = cond.get("type")
        if not ctype:
            errs.append(required(f"status.conditions[{i}].type"))
        else:
            for msg in qualified_name_errors(ctype):
                errs.append(invalid(f"status.conditions[{i}].type", ctype, msg))
    errs += _ips_errs(ns, "podIPs")
    errs += _ips_errs(ns, "hostIPs")
    return errs


# ---- Nodes ------------------------------------------------------------------------------------

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def validate_node(node: dict[str, Any]) -> list[FieldError]:
    errs = validate_meta(node.get("metadata") or {}, False)
    spec = node.get("spec") or {}
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(spec.get("taints") or []):
        tp = f"spec.taints[{i}]"
        key = _s(t.get("key"))
        if not key:
            errs.append(required(f"{tp}.key"))
        for msg in qualified_name_errors(key) if key else []:
            errs.append(invalid(f"{tp}.key", key, msg))
        if t.get("value"):
            for msg in label_value_errors(_s(t["value"])):
                errs.append(invalid(f"{tp}.value", t["value"], msg))
        eff = t.get("effect")
        if not eff:
            errs.append(required(f"{tp}.effect"))
        elif eff not in TAINT_EFFECTS:
            errs.append(not_supported(f"{tp}.effect", eff, TAINT_EFFECTS))
        if (key, _s(eff)) in seen:
            errs.append(duplicate(f"spec.taints[{i}]", t))
        seen.add((key, _s(eff)))
    cidrs = spec.get("podCIDRs") or []
    for i, c in enumerate(cidrs):
        try:
            ipaddress.ip_network(c, strict=False)
            if "/" not in c:
                raise ValueError
        except (ValueError, TypeError):
            errs.append(invalid(f"spec.podCIDRs[{i}]", c, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or "
                                                         "2001:db8::/64)"))
    if len(cidrs) > 2:
        errs.append(invalid("spec.podCIDRs", cidrs, "may specify no more than one CIDR for each IP family"))
    status = node.get("status") or {}
    for part in ("capacity", "allocatable"):
        for name, q in (status.get(part) or {}).items():
            for msg in qualified_name_errors(name):
                errs.append(invalid(f"status.{part}[{name}]", name, msg))
            v = quantity_value(q)
            if v is not None and v < 0:
                errs.append(invalid(f"status.{part}[{name}]", q, "must be greater than or equal to 0"))
    for i, addr in enumerate(status.get("addresses") or []):
        if not addr.get("type"):
            errs.append(required(f"status.addresses[{i}].type"))
    return errs


def validate_node_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += validate_node(new)
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    if os_.get("podCIDRs") and ns.get("podCIDRs") != os_.get("podCIDRs"):
        errs.append(forbidden_field("spec.podCIDRs", "node updates may not change podCIDR except from \"\" to "
                                                     "valid"))
    if os_.get("providerID") and ns.get("providerID") != os_.get("providerID"):
        errs.append(forbidden_field("spec.providerID", "node updates may not change providerID except from \"\" "
                                                       "to valid"))
    return errs


# ---- Leases -----------------------------------------------------------------------------------

def validate_lease(lease: dict[str, Any]) -> list[FieldError]:
    errs = validate_meta(lease.get("metadata") or {}, True)
    spec = lease.get("spec") or {}
    lds = spec.get("leaseDurationSeconds")
    if lds is not None and lds <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", lds, "must be greater than 0"))
    lt = spec.get("leaseTransitions")
    if lt is not None and lt < 0:
        errs.append(invalid("spec.leaseTransitions", lt, "must be greater than or equal to 0"))
    strat = spec.get("strategy")
    if strat is not None and strat not in ("OldestEmulationVersion",):
        errs.append(not_supported("spec.strategy", strat, ("OldestEmulationVersion",)))
    return errs


# ---- Events (core/v1: legacyValidateEvent) ----------------------------------------------------

def validate_event(ev: dict[str, Any]) -> list[FieldError]:
    meta = ev.get("metadata") or {}
    errs = validate_meta(meta, True)
    ns = _s(meta.get("namespace"))
    inv = ev.get("involvedObject") or {}
    inv_ns = _s(inv.get("namespace"))
    if not ev.get("eventTime"):
        if not inv_ns:
            if ns not in ("", "default"):
                errs.append(invalid("involvedObject.namespace", inv_ns, "does not match event.namespace"))
        elif ns != inv_ns:
            errs.append(invalid("involvedObject.namespace", inv_ns, "does not match event.namespace"))
    else:
        if not inv_ns and ns not in ("default", "kube-system"):
            errs.append(invalid("involvedObject.namespace", inv_ns, "does not match event.namespace"))
        rc = _s(ev.get("reportingComponent"))
        if not rc:
            errs.append(required("reportingComponent"))
        for msg in qualified_name_errors(rc) if rc else []:
            errs.append(invalid("reportingComponent", rc, msg))
        ri = _s(ev.get("reportingInstance"))
        if not ri:
            errs.append(required("reportingInstance"))
        elif len(ri) > 128:
            errs.append(invalid("reportingInstance", "", "can have at most 128 characters"))
        act = _s(ev.get("action"))
        if not act:
            errs.append(required("action"))
        elif len(act) > 128:
            errs.append(invalid("action", "", "can have at most 128 characters"))
        reason = _s(ev.get("reason"))
        if not reason:
            errs.append(required("reason"))
        elif len(reason) > 128:
            errs.append(invalid("reason", "", "can have at most 128 characters"))
        if len(_s(ev.get("message"))) > 1024:
            errs.append(invalid("message", "", "can have at most 1024 characters"))
    for msg in dns_subdomain(ns) if ns else []:
        errs.append(invalid("namespace", ns, msg))
    return errs


# ---- ConfigMaps, Secrets, Namespaces, ServiceAccounts -----------------------------------------

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _config_key_errs(keys: list[str], path: str) -> list[FieldError]:
    errs = []
    for k in keys:
        msgs = []
        if len(k) > 253:
            msgs.append("must be no more than 253 characters")
        if not _CONFIG_KEY.match(k):
            msgs.append("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
                        "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
                        "'[-._a-zA-Z0-9]+')")
        if k in (".", ".."):
            msgs.append(f"must not be '{k}'")
        for m in msgs:
            errs.append(invalid(f"{path}[{k}]", k, m))
    return errs


def validate_configmap(cm: dict[str, Any]) -> list[FieldError]:
    errs = validate_meta(cm.get("metadata") or {}, True)
    data, binary = cm.get("data") or {}, cm.get("binaryData") or {}
    errs += _config_key_errs(list(data), "data")
    errs += _config_key_errs(list(binary), "binaryData")
    for k in data:
        if k in binary:
            errs.append(invalid(f"data[{k}]", k, "duplicate of key present in binaryData"))
    size = sum(len(k) + len(_s(v)) for k, v in data.items()) + sum(len(k) + len(_s(v)) * 3 // 4
                                                                    for k, v in binary.items())
    if size > 1024 * 1024:
        errs.append(FieldError("TooLong", "", None, "must have at most 1048576 bytes"))
    return errs


def _immutable_update(new: dict[str, Any], old: dict[str, Any], fields: tuple[str, ...]) -> list[FieldError]:
    errs = validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    if old.get("immutable"):
        if not new.get("immutable"):
            errs.append(forbidden_field("immutable", "field is immutable when `immutable` is set"))
        for f in fields:
            if (new.get(f) or {}) != (old.get(f) or {}):
                errs.append(forbidden_field(f, "field is immutable when `immutable` is set"))
    return errs


def validate_configmap_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return _immutable_update(new, old, ("data", "binaryData")) + validate_configmap(new)


def validate_secret(sec: dict[str, Any]) -> list[FieldError]:
    errs = validate_meta(sec.get("metadata") or {}, True)
    data = sec.get("data") or {}
    errs += _config_key_errs(list(data), "data")
    stype = sec.get("type")
    if stype == "kubernetes.io/service-account-token":
        ann = (sec.get("metadata") or {}).get("annotations") or {}
        if not ann.get("kubernetes.io/service-account.name"):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif stype == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" not in data:
        errs.append(required("data[.dockerconfigjson]"))
    elif stype == "kubernetes.io/tls":
        for k in ("tls.crt", "tls.key"):
            if k not in data:
                errs.append(required(f"data[{k}]"))
    return errs


def validate_secret_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = _immutable_update(new, old, ("data",)) + validate_secret(new)
    if new.get("type") != old.get("type"):
        errs.append(invalid("type", new.get("type"), "field is immutable"))
    return errs


def validate_namespace(ns: dict[str, Any]) -> list[FieldError]:
    return validate_meta(ns.get("metadata") or {}, False, dns_label)


def validate_serviceaccount(sa: dict[str, Any]) -> list[FieldError]:
    return validate_meta(sa.get("metadata") or {}, True)


def validate_generic_update(validate):
    def _update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        return validate_meta_update(new.get("metadata") or {}, old.get("metadata") or {}) + validate(new)
    return _update
