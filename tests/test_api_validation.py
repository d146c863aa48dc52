"""Defaulting and validation must match the API server's (k8s core/v1)."""

from __future__ import annotations

import pytest

from nodeagent.api.codec import decode
from nodeagent.api.defaults import apply_defaults, default_pull_policy
from nodeagent.api.quantity import Quantity
from nodeagent.api.types import EmptyDirVolumeSource, Pod, PodSecurityContext
from nodeagent.api.validation import (
    FORBIDDEN,
    INVALID,
    REQUIRED,
    FieldError,
    is_dns1123_label,
    is_qualified_name,
    is_valid_port_name,
    validate_pod,
    validate_static_pod,
)
from nodeagent.gotext import go_quote

DIGEST = "sha256:" + "0123456789abcdef" * 4


def pod_from(spec: dict | None = None, *, containers: list[dict] | None = None,
             meta: dict | None = None, defaults: bool = True) -> Pod:
    spec = dict(spec or {})
    spec.setdefault("containers", containers if containers is not None
                    else [{"name": "web", "image": "nginx:1.27"}])
    pod = decode(Pod, {"apiVersion": "v1", "kind": "Pod",
                       "metadata": meta if meta is not None else {"name": "web"},
                       "spec": spec})
    if defaults:
        apply_defaults(pod)
    return pod


def container(**fields: object) -> dict:
    return {"name": "web", "image": "nginx:1.27", **fields}


def messages(pod: Pod) -> list[str]:
    return [str(e) for e in validate_pod(pod)]


# -- defaulting, field by field --------------------------------------------------------


def test_pod_level_defaults() -> None:
    pod = pod_from()
    assert pod.metadata.namespace == "default"
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.dns_policy == "ClusterFirst"
    assert pod.spec.scheduler_name == "default-scheduler"
    assert pod.spec.security_context == PodSecurityContext()
    assert pod.spec.enable_service_links is True


def test_defaults_never_override_explicit_values() -> None:
    pod = pod_from({"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                    "dnsPolicy": "Default", "schedulerName": "mine", "enableServiceLinks": False,
                    "securityContext": {"runAsUser": 0}}, meta={"name": "web", "namespace": "ops"})
    assert pod.metadata.namespace == "ops"
    assert pod.spec.restart_policy == "Never"
    assert pod.spec.termination_grace_period_seconds == 0
    assert pod.spec.dns_policy == "Default"
    assert pod.spec.scheduler_name == "mine"
    assert pod.spec.enable_service_links is False
    assert pod.spec.security_context == PodSecurityContext(run_as_user=0)


def test_container_defaults() -> None:
    pod = pod_from(containers=[container(ports=[{"containerPort": 80}])])
    c = pod.spec.containers[0]
    assert c.image_pull_policy == "IfNotPresent"
    assert c.termination_message_path == "/dev/termination-log"
    assert c.termination_message_policy == "File"
    assert c.ports[0].protocol == "TCP"
    assert c.ports[0].host_port == 0


def test_init_containers_are_defaulted_too() -> None:
    pod = pod_from({"initContainers": [{"name": "init", "image": "busybox",
                                        "resources": {"limits": {"cpu": "1"}}}]})
    c = pod.spec.init_containers[0]
    assert c.image_pull_policy == "Always"
    assert c.termination_message_policy == "File"
    assert c.resources.requests == {"cpu": Quantity("1")}


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("registry.example.com:5000/team/app", "Always"),
    ("nginx:1.27", "IfNotPresent"),
    (f"nginx@{DIGEST}", "IfNotPresent"),
    (f"nginx:latest@{DIGEST}", "Always"),
    (f"nginx:1.27@{DIGEST}", "IfNotPresent"),
    ("localhost:5000/x:latest", "Always"),
])
def test_pull_policy_default_follows_the_tag(image: str, policy: str) -> None:
    assert default_pull_policy(image) == policy
    pod = pod_from(containers=[container(image=image)])
    assert pod.spec.containers[0].image_pull_policy == policy


def test_unparseable_image_keeps_no_pull_policy_and_validation_reports_the_image() -> None:
    assert default_pull_policy("Not A Reference") is None
    pod = pod_from(containers=[container(image="Nginx")])
    assert pod.spec.containers[0].image_pull_policy == ""
    errors = validate_pod(pod)
    assert [e.path for e in errors] == ["spec.containers[0].image"]
    assert errors[0].kind == INVALID
    assert "not a valid image reference" in errors[0].detail


def test_requests_default_to_limits_only_where_a_limit_is_set() -> None:
    pod = pod_from(containers=[container(resources={
        "limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m"}})])
    res = pod.spec.containers[0].resources
    assert res.requests == {"cpu": Quantity("500m"), "memory": Quantity("1Gi")}
    pod = pod_from(containers=[container(resources={"requests": {"cpu": "1"}})])
    assert pod.spec.containers[0].resources.limits == {}


def test_quantities_round_up_to_milli_units() -> None:
    pod = pod_from(containers=[container(resources={"limits": {"cpu": "0.0001"}})])
    res = pod.spec.containers[0].resources
    assert res.limits["cpu"].text == "1m"
    assert res.requests["cpu"].text == "1m"
    pod = pod_from(containers=[container(resources={"limits": {"cpu": "250m"}})])
    assert pod.spec.containers[0].resources.limits["cpu"].text == "250m"


def test_probe_defaults() -> None:
    pod = pod_from(containers=[container(
        livenessProbe={"httpGet": {"port": 80}},
        readinessProbe={"tcpSocket": {"port": 80}, "periodSeconds": 3},
        startupProbe={"exec": {"command": ["true"]}, "failureThreshold": 30})])
    c = pod.spec.containers[0]
    live = c.liveness_probe
    assert (live.timeout_seconds, live.period_seconds, live.success_threshold,
            live.failure_threshold) == (1, 10, 1, 3)
    assert (live.http_get.path, live.http_get.scheme) == ("/", "HTTP")
    assert c.readiness_probe.period_seconds == 3
    assert c.readiness_probe.timeout_seconds == 1
    assert c.startup_probe.failure_threshold == 30
    assert c.startup_probe.initial_delay_seconds == 0


def test_lifecycle_http_get_defaults() -> None:
    pod = pod_from(containers=[container(lifecycle={
        "preStop": {"httpGet": {"port": 80, "scheme": "HTTPS"}},
        "postStart": {"httpGet": {"port": 80, "path": "/started"}}})])
    lc = pod.spec.containers[0].lifecycle
    assert (lc.pre_stop.http_get.path, lc.pre_stop.http_get.scheme) == ("/", "HTTPS")
    assert (lc.post_start.http_get.path, lc.post_start.http_get.scheme) == ("/started", "HTTP")


def test_env_field_ref_api_version_default() -> None:
    pod = pod_from(containers=[container(env=[
        {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])])
    assert pod.spec.containers[0].env[0].value_from.field_ref.api_version == "v1"


def test_volume_defaults() -> None:
    pod = pod_from({"volumes": [
        {"name": "bare"},
        {"name": "mem", "emptyDir": {"medium": "Memory"}},
        {"name": "host", "hostPath": {"path": "/srv"}},
        {"name": "cm", "configMap": {"name": "c"}},
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
    ]})
    bare, mem, host, cm, sec = pod.spec.volumes
    assert bare.empty_dir == EmptyDirVolumeSource()
    assert bare.empty_dir.medium == ""
    assert mem.empty_dir.medium == "Memory"
    assert host.host_path.type == ""
    assert cm.config_map.default_mode == 420
    assert sec.secret.default_mode == 0o400


def test_host_network_defaults_host_ports() -> None:
    pod = pod_from({"hostNetwork": True}, containers=[container(ports=[
        {"containerPort": 80}, {"containerPort": 443, "hostPort": 443}])])
    assert [p.host_port for p in pod.spec.containers[0].ports] == [80, 443]
    assert validate_pod(pod) == []
    pod = pod_from(containers=[container(ports=[{"containerPort": 80}])])
    assert pod.spec.containers[0].ports[0].host_port == 0


def test_apply_defaults_is_idempotent() -> None:
    pod = pod_from(containers=[container(resources={"limits": {"cpu": "1"}},
                                         livenessProbe={"httpGet": {"port": 80}})])
    snapshot = repr(pod)
    apply_defaults(pod)
    assert repr(pod) == snapshot


# -- rendering -------------------------------------------------------------------------


def test_field_error_rendering_matches_the_api_server() -> None:
    assert str(FieldError("spec.containers[0].image", REQUIRED, "")) == (
        "spec.containers[0].image: Required value")
    assert str(FieldError("spec.x", FORBIDDEN, "nope", "ignored")) == "spec.x: Forbidden: nope"
    assert str(FieldError("a", INVALID, "bad", 70000)) == "a: Invalid value: 70000: bad"
    assert str(FieldError("a", INVALID, "bad", None)) == "a: Invalid value: null: bad"
    assert str(FieldError("a", INVALID, "bad", True)) == "a: Invalid value: true: bad"
    assert str(FieldError("a", INVALID, "", "x")) == 'a: Invalid value: "x"'


def test_go_quote() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("tab\there\n") == '"tab\\there\\n"'
    assert go_quote("\x01é") == '"\\x01é"'


def test_brief_examples_render_exactly() -> None:
    pod = pod_from({"restartPolicy": "Sometimes"}, containers=[
        container(name="Foo_Bar", image="", ports=[{"containerPort": 70000}],
                  volumeMounts=[{"name": "data", "mountPath": "/data"}],
                  resources={"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}),
        container(name="web"), container(name="web")])
    assert messages(pod) == [
        'spec.containers[0].name: Invalid value: "Foo_Bar": a lowercase RFC 1123 label must '
        "consist of lower case alphanumeric characters or '-', and must start and end with an "
        "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        "spec.containers[0].image: Required value",
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 "
        "and 65535, inclusive",
        'spec.containers[0].volumeMounts[0].name: Not found: "data"',
        'spec.containers[0].resources.requests: Invalid value: "2": must be less than or '
        "equal to cpu limit of 1",
        'spec.containers[2].name: Duplicate value: "web"',
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
        '"Never", "OnFailure"',
    ]


# -- name helpers ------------------------------------------------------------------------


def test_name_helpers() -> None:
    assert is_dns1123_label("my-name") == []
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("a" * 64)[0] == "must be no more than 63 characters"
    assert is_qualified_name("example.com/MyName") == []
    assert is_qualified_name("a/b/c")[0].startswith("a qualified name must consist")
    assert is_qualified_name("/x") == ["prefix part must be non-empty"]
    assert is_valid_port_name("http") == []
    assert is_valid_port_name("a--b") == ["must not contain consecutive hyphens"]
    assert is_valid_port_name("-ab") == ["must not begin or end with a hyphen"]
    assert is_valid_port_name("HTTP") == [
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        "must contain at least one letter (a-z)"]


# -- validation rules ----------------------------------------------------------------------


def test_a_minimal_defaulted_pod_is_valid() -> None:
    assert validate_pod(pod_from()) == []


def test_undefaulted_pod_misses_required_enums() -> None:
    pod = pod_from(defaults=False)
    paths = {e.path for e in validate_pod(pod) if e.kind == REQUIRED}
    assert {"metadata.namespace", "spec.restartPolicy", "spec.dnsPolicy",
            "spec.containers[0].imagePullPolicy",
            "spec.containers[0].terminationMessagePolicy"} <= paths


def test_metadata_rules() -> None:
    pod = pod_from(meta={"name": "x" * 254, "namespace": "Bad",
                         "labels": {"ok": "fine", "bad key!": "v"},
                         "annotations": {"Example.COM/Key": "any text", "a/b/c": ""}})
    errs = validate_pod(pod)
    assert [(e.path, e.value) for e in errs] == [
        ("metadata.name", "x" * 254),
        ("metadata.namespace", "Bad"),
        ("metadata.labels", "bad key!"),
        ("metadata.annotations", "a/b/c"),
    ]
    assert errs[0].detail == "must be no more than 253 characters"


def test_generate_name_alone_is_enough() -> None:
    pod = pod_from(meta={"generateName": "web-"})
    assert validate_pod(pod) == []


def test_annotations_total_size_limit() -> None:
    pod = pod_from(meta={"name": "web", "annotations": {"big": "x" * (256 * 1024)}})
    assert messages(pod) == ["metadata.annotations: Too long: may not be more than 262144 bytes"]


def test_names_are_unique_across_init_and_app_containers() -> None:
    pod = pod_from({"initContainers": [container(image="busybox:1.36")]})
    assert messages(pod) == ['spec.initContainers[0].name: Duplicate value: "web"']


def test_sidecar_may_have_probes_and_lifecycle() -> None:
    sidecar = {"name": "side", "image": "busybox:1.36", "restartPolicy": "Always",
               "livenessProbe": {"exec": {"command": ["true"]}},
               "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}}
    assert validate_pod(pod_from({"initContainers": [sidecar]})) == []
    plain = {k: v for k, v in sidecar.items() if k != "restartPolicy"}
    forbidden = "Forbidden: may not be set for init containers without restartPolicy=Always"
    assert messages(pod_from({"initContainers": [plain]})) == [
        f"spec.initContainers[0].lifecycle: {forbidden}",
        f"spec.initContainers[0].livenessProbe: {forbidden}",
    ]


def test_readiness_probe_may_not_set_termination_grace_period() -> None:
    pod = pod_from(containers=[container(readinessProbe={
        "tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 5})])
    assert messages(pod) == ["spec.containers[0].readinessProbe.terminationGracePeriodSeconds: "
                             "Invalid value: 5: must not be set for readinessProbes"]


def test_probe_port_by_name_and_bad_name() -> None:
    ok = pod_from(containers=[container(ports=[{"name": "http", "containerPort": 80}],
                                        livenessProbe={"httpGet": {"port": "http"}})])
    assert validate_pod(ok) == []
    bad = pod_from(containers=[container(livenessProbe={"httpGet": {"port": "HTTP"}})])
    assert [e.path for e in validate_pod(bad)] == ["spec.containers[0].livenessProbe.httpGet.port"] * 2


def test_http_header_names() -> None:
    pod = pod_from(containers=[container(livenessProbe={"httpGet": {
        "port": 80, "httpHeaders": [{"name": "X Bad", "value": "v"}]}})])
    (err,) = validate_pod(pod)
    assert err.path == "spec.containers[0].livenessProbe.httpGet.httpHeaders"
    assert err.detail.startswith("a valid HTTP header must consist of alphanumeric characters or '-'")


def test_env_names_strict_by_default_relaxed_on_request() -> None:
    pod = pod_from(containers=[container(env=[{"name": "MY VAR", "value": "1"},
                                              {"name": "A=B", "value": "2"},
                                              {"name": "..", "value": "3"}])])
    strict = validate_pod(pod)
    assert [(e.value, e.detail[:20]) for e in strict] == [
        ("MY VAR", "a valid environment "), ("A=B", "a valid environment "),
        ("..", "must not be '..'")]
    relaxed = validate_pod(pod, relaxed_env_names=True)
    assert [str(e) for e in relaxed] == [
        'spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable '
        "name must consist only of printable ASCII characters other than '='"]


def test_env_name_required() -> None:
    pod = pod_from(containers=[container(env=[{"value": "x"}])])
    assert messages(pod) == ["spec.containers[0].env[0].name: Required value"]


def test_env_field_ref_subscripts() -> None:
    def env(path: str) -> Pod:
        return pod_from(containers=[container(env=[
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": path}}}])])

    assert validate_pod(env("metadata.labels['app.kubernetes.io/name']")) == []
    assert validate_pod(env("metadata.annotations['Example.com/Thing']")) == []
    assert validate_pod(env("spec.host")) == []  # old alias of spec.nodeName
    assert messages(env("spec.nodeName['x']")) == [
        'spec.containers[0].env[0].valueFrom.fieldRef: Invalid value: "spec.nodeName": '
        "does not support subscript"]
    (err,) = validate_pod(env("metadata.labels"))
    assert err.kind == "Unsupported value"
    bad_version = pod_from(containers=[container(env=[{"name": "X", "valueFrom": {
        "fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}}])])
    assert messages(bad_version) == [
        'spec.containers[0].env[0].valueFrom.fieldRef.apiVersion: Unsupported value: "v2": '
        'supported values: "v1"']


def test_resource_field_refs() -> None:
    def env(resource: str, divisor: str | None = None) -> Pod:
        ref: dict = {"resource": resource}
        if divisor:
            ref["divisor"] = divisor
        return pod_from(containers=[container(env=[{"name": "X", "valueFrom": {"resourceFieldRef": ref}}])])

    assert validate_pod(env("requests.hugepages-2Mi")) == []
    assert validate_pod(env("limits.cpu", "1m")) == []
    assert validate_pod(env("limits.memory", "1Mi")) == []
    (err,) = validate_pod(env("limits.memory", "3"))
    assert "only divisor's values 1, 1k, 1M" in err.detail


def test_env_from_prefix_and_two_sources() -> None:
    pod = pod_from(containers=[container(envFrom=[
        {"prefix": "1X", "configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}])])
    msgs = messages(pod)
    assert msgs[0].startswith('spec.containers[0].envFrom[0].prefix: Invalid value: "1X"')
    assert msgs[1] == ('spec.containers[0].envFrom: Invalid value: "": may not have more than '
                       "one field specified at a time")


def test_resource_names_and_extended_resources() -> None:
    def res(resources: dict) -> list[str]:
        return messages(pod_from(containers=[container(resources=resources)]))

    assert res({"limits": {"example.com/fpga": "2"}}) == []
    assert res({"limits": {"example.com/fpga": "2"}, "requests": {"example.com/fpga": "1"}}) == [
        'spec.containers[0].resources.requests: Invalid value: "1": must be equal to '
        "example.com/fpga limit of 2"]
    assert res({"limits": {"example.com/fpga": "500m"}}) == [
        'spec.containers[0].resources.limits[example.com/fpga]: Invalid value: "500m": must be an integer',
        'spec.containers[0].resources.requests[example.com/fpga]: Invalid value: "500m": must be an integer']
    assert res({"limits": {"cpu": "1", "hugepages-2Mi": "3Mi"}}) == [
        'spec.containers[0].resources.limits[hugepages-2Mi]: Invalid value: "3Mi": 3Mi is not '
        "positive integer multiple of 2Mi",
        'spec.containers[0].resources.requests[hugepages-2Mi]: Invalid value: "3Mi": 3Mi is not '
        "positive integer multiple of 2Mi"]
    assert res({"limits": {"storage": "1Gi"}})[0].endswith("must be a standard resource for containers")


def test_volume_rules() -> None:
    pod = pod_from({"volumes": [
        {"name": "cm", "configMap": {"name": "c", "defaultMode": 0o1000,
                                     "items": [{"key": "", "path": "../x"}]}},
        {"name": "huge", "emptyDir": {"medium": "HugePages-2Mi"}},
        {"name": "neg", "emptyDir": {"sizeLimit": "-1"}},
    ]})
    assert messages(pod) == [
        "spec.volumes[0].configMap.defaultMode: Invalid value: 512: must be a number between 0 "
        "and 0777 (octal), both inclusive",
        "spec.volumes[0].configMap.items[0].key: Required value",
        'spec.volumes[0].configMap.items[0].path: Invalid value: "../x": must not contain \'..\'',
        'spec.volumes[0].configMap.items[0].path: Invalid value: "../x": must not start with \'..\'',
        "spec.volumes[2].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity",
    ]


def test_volume_without_source_fails_only_when_not_defaulted() -> None:
    pod = pod_from({"volumes": [{"name": "data"}]}, defaults=False)
    assert "spec.volumes[0]: Required value: must specify a volume type" in messages(pod)
    assert validate_pod(pod_from({"volumes": [{"name": "data"}]})) == []


def test_security_context_rules() -> None:
    pod = pod_from({"securityContext": {"runAsGroup": -1, "supplementalGroups": [1, -2],
                                        "sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"},
                                                    {"name": "kernel.shm_rmid_forced", "value": "0"}],
                                        "seccompProfile": {"type": "RuntimeDefault",
                                                           "localhostProfile": "x.json"}}},
                   containers=[container(securityContext={
                       "procMount": "Weird", "allowPrivilegeEscalation": False,
                       "capabilities": {"add": ["cap_sys_admin", "all"], "drop": ["BOGUS"]}})])
    assert messages(pod) == [
        'spec.containers[0].securityContext.procMount: Unsupported value: "Weird": supported '
        'values: "Default", "Unmasked"',
        'spec.containers[0].securityContext.capabilities.drop[0]: Invalid value: "BOGUS": unknown '
        "capability: must be a Linux capability such as NET_ADMIN (with or without the CAP_ "
        "prefix) or ALL",
        'spec.containers[0].securityContext: Invalid value: "allowPrivilegeEscalation=false, '
        'capabilities.add=CAP_SYS_ADMIN": cannot set `allowPrivilegeEscalation` to false and '
        "`capabilities.Add` CAP_SYS_ADMIN",
        "spec.securityContext.runAsGroup: Invalid value: -1: must be between 0 and 2147483647, inclusive",
        "spec.securityContext.supplementalGroups[1]: Invalid value: -2: must be between 0 and "
        "2147483647, inclusive",
        'spec.securityContext.sysctls[1].name: Duplicate value: "kernel.shm_rmid_forced"',
        'spec.securityContext.seccompProfile.localhostProfile: Invalid value: "x.json": can only '
        "be set when seccomp type is Localhost",
    ]


def test_pod_spec_names_and_dns() -> None:
    pod = pod_from({"nodeName": "Node_1", "hostname": "a.b", "priorityClassName": "UP",
                    "dnsPolicy": "None",
                    "dnsConfig": {"nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9", "not-ip"],
                                  "searches": ["Bad_Domain"], "options": [{"value": "1"}]},
                    "nodeSelector": {"disk": "fast ssd"}})
    assert [e.path for e in validate_pod(pod)] == [
        "spec.dnsConfig.nameservers", "spec.dnsConfig.nameservers[3]",
        "spec.dnsConfig.searches[0]", "spec.dnsConfig.options[0].name",
        "spec.nodeSelector", "spec.nodeName", "spec.hostname", "spec.priorityClassName"]


def test_tolerations() -> None:
    pod = pod_from({"tolerations": [
        {"operator": "Equal", "value": "x"},
        {"key": "k", "operator": "Sometimes"},
        {"key": "k", "tolerationSeconds": 10, "effect": "NoSchedule"},
        {"key": "k", "effect": "Never"},
    ]})
    assert [e.path for e in validate_pod(pod)] == [
        "spec.tolerations[0].operator", "spec.tolerations[1].operator",
        "spec.tolerations[2].effect", "spec.tolerations[3].effect"]


def test_all_errors_are_reported_not_just_the_first() -> None:
    pod = pod_from({"terminationGracePeriodSeconds": -5, "activeDeadlineSeconds": 0},
                   containers=[{"name": "", "image": ""}])
    assert messages(pod) == [
        "spec.containers[0].name: Required value",
        "spec.containers[0].image: Required value",
        "spec.terminationGracePeriodSeconds: Invalid value: -5: must be greater than or equal to 0",
        "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
    ]


# -- static pods ---------------------------------------------------------------------------


def test_static_pod_may_not_reference_api_objects() -> None:
    pod = pod_from({
        "serviceAccountName": "robot",
        "volumes": [{"name": "cm", "configMap": {"name": "c"}},
                    {"name": "s", "secret": {"secretName": "s"}}],
        "initContainers": [{"name": "init", "image": "busybox:1.36",
                            "envFrom": [{"secretRef": {"name": "s"}}]}],
    }, containers=[container(
        envFrom=[{"configMapRef": {"name": "c"}}],
        env=[{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
             {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])])
    assert validate_pod(pod) == []  # fine for an API-server pod
    def forbidden(path: str, what: str) -> str:
        return (f"{path}: Forbidden: static pods may not reference {what} "
                "(no API server objects are available to static pods)")

    assert [str(e) for e in validate_static_pod(pod)] == [
        forbidden("spec.serviceAccountName", "service accounts"),
        forbidden("spec.volumes[0].configMap", "configmaps"),
        forbidden("spec.volumes[1].secret", "secrets"),
        forbidden("spec.initContainers[0].envFrom[0].secretRef", "secrets"),
        forbidden("spec.containers[0].envFrom[0].configMapRef", "configmaps"),
        forbidden("spec.containers[0].env[0].valueFrom.configMapKeyRef", "configmaps"),
        forbidden("spec.containers[0].env[1].valueFrom.secretKeyRef", "secrets"),
    ]


def test_static_pod_without_references_passes() -> None:
    assert validate_static_pod(pod_from({"volumes": [{"name": "d", "emptyDir": {}}]})) == []


def test_storage_volumes_are_kept_not_turned_into_empty_dirs() -> None:
    """A PVC (or CSI, NFS …) volume must never run as an emptyDir: the pod is
    refused when it runs (nodeagent mounts no storage plugins)."""
    from nodeagent.api.codec import encode
    from nodeagent.api.types import unsupported_sources
    pod = pod_from({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "db"}},
                                {"name": "scratch"}, {"name": "s", "scaleIO": {"gateway": "g"}}]})
    data, scratch, scale = pod.spec.volumes
    assert data.empty_dir is None and unsupported_sources(data) == ["persistentVolumeClaim"]
    assert scratch.empty_dir == EmptyDirVolumeSource() and unsupported_sources(scratch) == []
    assert unsupported_sources(scale) == ["scaleIO"]
    assert encode(pod)["spec"]["volumes"][0] == {"name": "data", "persistentVolumeClaim": {"claimName": "db"}}
    assert messages(pod) == []
    both = pod_from({"volumes": [{"name": "x", "emptyDir": {}, "nfs": {"server": "s", "path": "/"}}]})
    assert messages(both) == ["spec.volumes[0].nfs: Forbidden: may not specify more than 1 volume type"]
