"""Known fields of the served kinds, for unknown-field pruning, `fieldValidation` and the decoder's
JSON type checks.

A schema is a dict of field name -> sub-schema: OPEN (anything below is accepted and kept), a Leaf
(a scalar, string map or string list whose JSON type is checked), a dict (an object whose fields are
known), or [sub-schema] (a list of such objects). The tree is complete
for the levels it spells out (ObjectMeta, the Pod/Node/Lease/Event/ConfigMap/Secret/ServiceAccount/
Namespace top levels, containers, container statuses, conditions, object references); deeper
structures (securityContext, affinity, probes, volume sources, ...) are OPEN: not checked."""

from __future__ import annotations

from typing import Any

OPEN: None = None
Schema = dict[str, Any]


class Leaf(str):
    """A scalar (or string map/list) field whose JSON type the decoder checks."""


STR, INT, BOOL, MAP_STR, LIST_STR = Leaf("string"), Leaf("int64"), Leaf("bool"), Leaf("map[string]string"), \
    Leaf("[]string")


def _obj(*names: str, **nested: Any) -> Schema:
    s: Schema = {n: OPEN for n in names}
    s.update(nested)
    return s


OWNER_REF = _obj(apiVersion=STR, kind=STR, name=STR, uid=STR, controller=BOOL, blockOwnerDeletion=BOOL)
OBJECT_META = _obj("creationTimestamp", "deletionTimestamp", "managedFields",
                   name=STR, generateName=STR, namespace=STR, selfLink=STR, uid=STR, resourceVersion=STR,
                   generation=INT, deletionGracePeriodSeconds=INT, labels=MAP_STR, annotations=MAP_STR,
                   finalizers=LIST_STR, ownerReferences=[OWNER_REF])
OBJECT_REF = _obj(kind=STR, namespace=STR, name=STR, uid=STR, apiVersion=STR, resourceVersion=STR, fieldPath=STR)
TYPE_META = ("apiVersion", "kind")

CONTAINER = _obj("envFrom", "resources", "resizePolicy", "volumeDevices", "livenessProbe", "readinessProbe",
                 "startupProbe", "lifecycle", "securityContext",
                 name=STR, image=STR, command=LIST_STR, args=LIST_STR, workingDir=STR, restartPolicy=STR,
                 terminationMessagePath=STR, terminationMessagePolicy=STR, imagePullPolicy=STR, stdin=BOOL,
                 stdinOnce=BOOL, tty=BOOL,
                 ports=[_obj(name=STR, hostPort=INT, containerPort=INT, protocol=STR, hostIP=STR)],
                 env=[_obj("valueFrom", name=STR, value=STR)],
                 volumeMounts=[_obj("recursiveReadOnly", "mountPropagation", name=STR, readOnly=BOOL,
                                    mountPath=STR, subPath=STR, subPathExpr=STR)])
EPHEMERAL = dict(CONTAINER, targetContainerName=STR)

POD_SPEC = _obj("shareProcessNamespace", "securityContext", "imagePullSecrets", "affinity", "hostAliases",
                "dnsConfig", "readinessGates", "runtimeClassName", "preemptionPolicy", "overhead",
                "topologySpreadConstraints", "setHostnameAsFQDN", "os", "hostUsers", "schedulingGates",
                "resourceClaims", "resources",
                restartPolicy=STR, terminationGracePeriodSeconds=INT, activeDeadlineSeconds=INT, dnsPolicy=STR,
                nodeSelector=MAP_STR, serviceAccountName=STR, serviceAccount=STR,
                automountServiceAccountToken=BOOL, nodeName=STR, hostNetwork=BOOL, hostPID=BOOL, hostIPC=BOOL,
                hostname=STR, subdomain=STR, schedulerName=STR, priorityClassName=STR, priority=INT,
                enableServiceLinks=BOOL,
                volumes=[OPEN], initContainers=[CONTAINER], containers=[CONTAINER],
                ephemeralContainers=[EPHEMERAL],
                tolerations=[_obj(key=STR, operator=STR, value=STR, effect=STR, tolerationSeconds=INT)])
CONTAINER_STATUS = _obj("state", "lastState", "allocatedResources", "resources", "volumeMounts", "user",
                        "allocatedResourcesStatus", "stopSignal",
                        name=STR, ready=BOOL, restartCount=INT, image=STR, imageID=STR, containerID=STR,
                        started=BOOL)
POD_CONDITION = _obj("lastProbeTime", "lastTransitionTime", type=STR, status=STR, reason=STR, message=STR,
                     observedGeneration=INT)
POD_STATUS = _obj("startTime", "resize", "resourceClaimStatuses",
                  phase=STR, message=STR, reason=STR, nominatedNodeName=STR, hostIP=STR, podIP=STR,
                  qosClass=STR, observedGeneration=INT,
                  conditions=[POD_CONDITION], hostIPs=[_obj(ip=STR)], podIPs=[_obj(ip=STR)],
                  initContainerStatuses=[CONTAINER_STATUS], containerStatuses=[CONTAINER_STATUS],
                  ephemeralContainerStatuses=[CONTAINER_STATUS])

NODE_SPEC = _obj("configSource", "externalID", podCIDR=STR, podCIDRs=LIST_STR, providerID=STR, unschedulable=BOOL,
                 taints=[_obj("timeAdded", key=STR, value=STR, effect=STR)])
NODE_STATUS = _obj("capacity", "allocatable", "daemonEndpoints", "images", "volumesInUse", "volumesAttached",
                   "config", "runtimeHandlers", "features", phase=STR,
                   conditions=[_obj("lastHeartbeatTime", "lastTransitionTime", type=STR, status=STR, reason=STR,
                                    message=STR)],
                   addresses=[_obj(type=STR, address=STR)],
                   nodeInfo=_obj("swap", machineID=STR, systemUUID=STR, bootID=STR, kernelVersion=STR,
                                 osImage=STR, containerRuntimeVersion=STR, kubeletVersion=STR,
                                 kubeProxyVersion=STR, operatingSystem=STR, architecture=STR))


def _kind(**fields: Any) -> Schema:
    s: Schema = {n: OPEN for n in TYPE_META}
    s["metadata"] = OBJECT_META
    s.update(fields)
    return s


SCHEMAS: dict[str, Schema] = {
    "Pod": _kind(spec=POD_SPEC, status=POD_STATUS),
    "Node": _kind(spec=NODE_SPEC, status=NODE_STATUS),
    "Namespace": _kind(spec=_obj(finalizers=LIST_STR), status=_obj("conditions", phase=STR)),
    "ConfigMap": _kind(immutable=BOOL, data=MAP_STR, binaryData=MAP_STR),
    "Secret": _kind(immutable=BOOL, data=MAP_STR, stringData=MAP_STR, type=STR),
    "ServiceAccount": _kind(secrets=[OBJECT_REF], imagePullSecrets=[_obj(name=STR)],
                            automountServiceAccountToken=BOOL),
    "Event": _kind(involvedObject=OBJECT_REF, reason=STR, message=STR, source=_obj(component=STR, host=STR),
                   firstTimestamp=OPEN, lastTimestamp=OPEN, count=INT, type=STR, eventTime=OPEN,
                   series=_obj("lastObservedTime", count=INT), action=STR, related=OBJECT_REF,
                   reportingComponent=STR, reportingInstance=STR),
    "Lease": _kind(spec=_obj("acquireTime", "renewTime", holderIdentity=STR, leaseDurationSeconds=INT,
                             leaseTransitions=INT, strategy=STR, preferredHolder=STR)),
    "TokenRequest": _kind(spec=_obj(audiences=LIST_STR, expirationSeconds=INT,
                                    boundObjectRef=_obj(kind=STR, apiVersion=STR, name=STR, uid=STR)),
                          status=_obj("expirationTimestamp", token=STR)),
    "TokenReview": _kind(spec=_obj(token=STR, audiences=LIST_STR),
                         status=_obj("user", authenticated=BOOL, audiences=LIST_STR, error=STR)),
    "SubjectAccessReview": _kind(spec=_obj("extra", user=STR, groups=LIST_STR, uid=STR,
                                           resourceAttributes=_obj("fieldSelector", "labelSelector",
                                                                   namespace=STR, verb=STR, group=STR,
                                                                   version=STR, resource=STR, subresource=STR,
                                                                   name=STR),
                                           nonResourceAttributes=_obj(path=STR, verb=STR)),
                                 status=_obj(allowed=BOOL, denied=BOOL, reason=STR, evaluationError=STR)),
    "DeleteOptions": {**{n: OPEN for n in TYPE_META},
                      **_obj("dryRun", "ignoreStoreReadErrorWithClusterBreakingPotential",
                             gracePeriodSeconds=INT, orphanDependents=BOOL, propagationPolicy=STR,
                             preconditions=_obj(uid=STR, resourceVersion=STR))},
}


_JSON_TYPE = {str: "string", bool: "bool", int: "number", float: "number", list: "array", dict: "object"}


def _leaf_ok(value: Any, leaf: Leaf) -> bool:
    if leaf is STR:
        return isinstance(value, str)
    if leaf is INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if leaf is BOOL:
        return isinstance(value, bool)
    if leaf is MAP_STR:
        return isinstance(value, dict) and all(isinstance(v, str) or v is None for v in value.values())
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def type_error(obj: Any, schema: Any, go_struct: str, path: str = "") -> str | None:
    """The decoder's complaint about the first field of the wrong JSON type, None if all fit. Null scalars
    are dropped (they decode to the zero value, which omitempty leaves out)."""
    if isinstance(schema, Leaf):
        return None
    if isinstance(schema, list):
        if isinstance(obj, list):
            for item in obj:
                err = type_error(item, schema[0], go_struct, path)
                if err:
                    return err
        return None
    if not isinstance(schema, dict) or not isinstance(obj, dict):
        return None
    for k in list(obj):
        sub, v = schema.get(k), obj[k]
        sub_path = f"{path}.{k}" if path else k
        if isinstance(sub, Leaf):
            if v is None:
                del obj[k]
            elif not _leaf_ok(v, sub):
                got = _JSON_TYPE.get(type(v), "value")
                if sub in (MAP_STR, LIST_STR) and isinstance(v, (dict, list)):
                    got = next((_JSON_TYPE.get(type(x), "value") for x in (v.values() if isinstance(v, dict)
                                                                            else v) if not isinstance(x, str)),
                               got)
                    return f"json: cannot unmarshal {got} into Go struct field {go_struct}.{sub_path} of type string"
                return f"json: cannot unmarshal {got} into Go struct field {go_struct}.{sub_path} of type {sub}"
        elif isinstance(sub, (dict, list)):
            if v is not None and not isinstance(v, dict if isinstance(sub, dict) else list):
                got = _JSON_TYPE.get(type(v), "value")
                want = "[]" if isinstance(sub, list) else "struct"
                return f"json: cannot unmarshal {got} into Go struct field {go_struct}.{sub_path} of type {want}"
            err = type_error(v, sub, go_struct, sub_path)
            if err:
                return err
    return None


def prune_unknown(obj: Any, schema: Any, path: str = "") -> list[str]:
    """Removes fields the schema does not know, in place; returns their paths (`spec.foo`)."""
    found: list[str] = []
    if schema is OPEN or isinstance(schema, Leaf):
        return found
    if isinstance(schema, list):
        if isinstance(obj, list):
            for i, item in enumerate(obj):
                found += prune_unknown(item, schema[0], f"{path}[{i}]")
        return found
    if not isinstance(obj, dict):
        return found
    for k in list(obj):
        sub_path = f"{path}.{k}" if path else k
        if k not in schema:
            found.append(sub_path)
            del obj[k]
        else:
            found += prune_unknown(obj[k], schema[k], sub_path)
    return found
