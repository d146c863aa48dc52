"""Known fields of the served kinds, for unknown-field pruning and `fieldValidation`.

A schema is a dict of field name -> sub-schema: OPEN (anything below is accepted and kept), a dict
(an object whose fields are known), or [sub-schema] (a list of such objects). The tree is complete
for the levels it spells out (ObjectMeta, the Pod/Node/Lease/Event/ConfigMap/Secret/ServiceAccount/
Namespace top levels, containers, container statuses, conditions, object references); deeper
structures (securityContext, affinity, probes, volume sources, ...) are OPEN: not checked."""

from __future__ import annotations

from typing import Any

OPEN: None = None
Schema = dict[str, Any]


def _obj(*names: str, **nested: Any) -> Schema:
    s: Schema = {n: OPEN for n in names}
    s.update(nested)
    return s


OWNER_REF = _obj("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")
OBJECT_META = _obj("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
                   "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
                   "annotations", "finalizers", "managedFields", ownerReferences=[OWNER_REF])
OBJECT_REF = _obj("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
TYPE_META = ("apiVersion", "kind")

CONTAINER = _obj("name", "image", "command", "args", "workingDir", "envFrom", "resources", "resizePolicy",
                 "restartPolicy", "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe",
                 "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
                 "securityContext", "stdin", "stdinOnce", "tty",
                 ports=[_obj("name", "hostPort", "containerPort", "protocol", "hostIP")],
                 env=[_obj("name", "value", "valueFrom")],
                 volumeMounts=[_obj("name", "readOnly", "recursiveReadOnly", "mountPath", "subPath",
                                    "mountPropagation", "subPathExpr")])
EPHEMERAL = dict(CONTAINER, targetContainerName=OPEN)

POD_SPEC = _obj("restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy",
                "nodeSelector", "serviceAccountName", "serviceAccount", "automountServiceAccountToken",
                "nodeName", "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace", "securityContext",
                "imagePullSecrets", "hostname", "subdomain", "affinity", "schedulerName", "hostAliases",
                "priorityClassName", "priority", "dnsConfig", "readinessGates", "runtimeClassName",
                "enableServiceLinks", "preemptionPolicy", "overhead", "topologySpreadConstraints",
                "setHostnameAsFQDN", "os", "hostUsers", "schedulingGates", "resourceClaims", "resources",
                volumes=[OPEN], initContainers=[CONTAINER], containers=[CONTAINER],
                ephemeralContainers=[EPHEMERAL],
                tolerations=[_obj("key", "operator", "value", "effect", "tolerationSeconds")])
CONTAINER_STATUS = _obj("name", "state", "lastState", "ready", "restartCount", "image", "imageID",
                        "containerID", "started", "allocatedResources", "resources", "volumeMounts", "user",
                        "allocatedResourcesStatus", "stopSignal")
POD_CONDITION = _obj("type", "status", "lastProbeTime", "lastTransitionTime", "reason", "message",
                     "observedGeneration")
POD_STATUS = _obj("phase", "message", "reason", "nominatedNodeName", "hostIP", "podIP", "startTime",
                  "qosClass", "resize", "resourceClaimStatuses", "observedGeneration",
                  conditions=[POD_CONDITION], hostIPs=[_obj("ip")], podIPs=[_obj("ip")],
                  initContainerStatuses=[CONTAINER_STATUS], containerStatuses=[CONTAINER_STATUS],
                  ephemeralContainerStatuses=[CONTAINER_STATUS])

NODE_SPEC = _obj("podCIDR", "podCIDRs", "providerID", "unschedulable", "configSource", "externalID",
                 taints=[_obj("key", "value", "effect", "timeAdded")])
NODE_STATUS = _obj("capacity", "allocatable", "phase", "daemonEndpoints", "images", "volumesInUse",
                   "volumesAttached", "config", "runtimeHandlers", "features",
                   conditions=[_obj("type", "status", "lastHeartbeatTime", "lastTransitionTime", "reason",
                                    "message")],
                   addresses=[_obj("type", "address")],
                   nodeInfo=_obj("machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
                                 "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion",
                                 "operatingSystem", "architecture", "swap"))


def _kind(**fields: Any) -> Schema:
    s: Schema = {n: OPEN for n in TYPE_META}
    s["metadata"] = OBJECT_META
    s.update(fields)
    return s


SCHEMAS: dict[str, Schema] = {
    "Pod": _kind(spec=POD_SPEC, status=POD_STATUS),
    "Node": _kind(spec=NODE_SPEC, status=NODE_STATUS),
    "Namespace": _kind(spec=_obj("finalizers"), status=_obj("phase", "conditions")),
    "ConfigMap": _kind(immutable=OPEN, data=OPEN, binaryData=OPEN),
    "Secret": _kind(immutable=OPEN, data=OPEN, stringData=OPEN, type=OPEN),
    "ServiceAccount": _kind(secrets=[OBJECT_REF], imagePullSecrets=[_obj("name")],
                            automountServiceAccountToken=OPEN),
    "Event": _kind(involvedObject=OBJECT_REF, reason=OPEN, message=OPEN, source=_obj("component", "host"),
                   firstTimestamp=OPEN, lastTimestamp=OPEN, count=OPEN, type=OPEN, eventTime=OPEN,
                   series=_obj("count", "lastObservedTime"), action=OPEN, related=OBJECT_REF,
                   reportingComponent=OPEN, reportingInstance=OPEN),
    "Lease": _kind(spec=_obj("holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime",
                             "leaseTransitions", "strategy", "preferredHolder")),
    "TokenRequest": _kind(spec=_obj("audiences", "expirationSeconds",
                                    boundObjectRef=_obj("kind", "apiVersion", "name", "uid")),
                          status=_obj("token", "expirationTimestamp")),
    "TokenReview": _kind(spec=_obj("token", "audiences"),
                         status=_obj("authenticated", "user", "audiences", "error")),
    "SubjectAccessReview": _kind(spec=_obj("user", "groups", "extra", "uid",
                                           resourceAttributes=_obj("namespace", "verb", "group", "version",
                                                                   "resource", "subresource", "name",
                                                                   "fieldSelector", "labelSelector"),
                                           nonResourceAttributes=_obj("path", "verb")),
                                 status=_obj("allowed", "denied", "reason", "evaluationError")),
    "DeleteOptions": {**{n: OPEN for n in TYPE_META},
                      **_obj("gracePeriodSeconds", "orphanDependents", "propagationPolicy", "dryRun",
                             "ignoreStoreReadErrorWithClusterBreakingPotential",
                             preconditions=_obj("uid", "resourceVersion"))},
}


def prune_unknown(obj: Any, schema: Any, path: str = "") -> list[str]:
    """Removes fields the schema does not know, in place; returns their paths (`spec.foo`)."""
    found: list[str] = []
    if schema is OPEN:
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
