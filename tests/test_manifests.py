"""Manifest files: every malformed one is rejected with its own clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.api.manifest import (
    MAX_DOCUMENT_NODES,
    MAX_FILE_NODES,
    MAX_FLOW_NESTING,
    MAX_MANIFEST_BYTES,
    ManifestError,
    ManifestResult,
    parse_manifest,
)
from nodeagent.api.types import Pod
from nodeagent.cgroups.qos import BURSTABLE, GUARANTEED, pod_qos_class

MANIFESTS = Path(__file__).parent / "manifests"
BAD = MANIFESTS / "bad"
GOOD = MANIFESTS / "good"

STATIC = "(no API server objects are available to static pods)"

# file -> a substring of its one error that names the field and the reason.
EXPECTED: dict[str, str] = {
    # syntax and document shape
    "bad-yaml-indent.yaml": "YAML syntax error at line 5, column 10: mapping values are not allowed here",
    "bad-yaml-tab.yaml": "YAML syntax error at line 4, column 1: while scanning for the next token: "
                         "found character '\\t' that cannot start any token",
    "json-truncated.json": "JSON syntax error at line 7, column 1: Expecting ',' delimiter",
    "wrong-kind-deployment.yaml": 'kind is "Deployment", only "Pod" is supported in a manifest',
    "wrong-api-version.yaml": 'apiVersion "v2" is not supported, Pod needs apiVersion "v1"',
    "missing-kind.yaml": 'kind is missing, a manifest must set kind "Pod"',
    "missing-api-version.yaml": 'apiVersion is missing, Pod needs apiVersion "v1"',
    "list-not-object.yaml": "document is a list, not an object",
    "scalar-document.yaml": "document is a string, not an object",
    "podlist-wrong-item-kind.yaml": 'items[0]: kind is "Service", only "Pod" is supported',
    "podlist-items-not-list.yaml": "items is an object, not a list of pods",
    "yaml-alias-bomb.yaml": f"document expands to more than {MAX_DOCUMENT_NODES} values",
    # wrong types
    "container-port-as-string.yaml": 'spec.containers[0].ports[0].containerPort: expected an integer, '
                                     'got a string ("80")',
    "privileged-as-string.yaml": 'spec.containers[0].securityContext.privileged: expected a boolean, '
                                 'got a string ("true")',
    "labels-not-a-map.yaml": "metadata.labels: expected an object, got an array",
    "invalid-quantity-cpu.yaml": "spec.containers[0].resources.limits[cpu]: quantities must match "
                                 "the regular expression",
    "containers-not-a-list.yaml": "spec.containers: expected an array, got an object",
    # metadata
    "invalid-name-uppercase.yaml": 'metadata.name: Invalid value: "Web_Server": a lowercase RFC '
                                   "1123 subdomain",
    "missing-name.yaml": "metadata.name: Required value: name or generateName is required",
    "invalid-namespace.yaml": 'metadata.namespace: Invalid value: "kube.system": must not contain dots',
    "invalid-label-value.yaml": 'metadata.labels: Invalid value: "has spaces": a valid label must be',
    "invalid-label-key.yaml": 'metadata.labels: Invalid value: "example.com/-tier": name part must consist',
    # containers
    "no-containers.yaml": "spec.containers: Required value",
    "missing-image.yaml": "spec.containers[0].image: Required value",
    "invalid-image-reference.yaml": 'spec.containers[0].image: Invalid value: "NGINX:latest": not a '
                                    "valid image reference: repository name must be lowercase",
    "duplicate-container-names.yaml": 'spec.containers[1].name: Duplicate value: "web"',
    "init-container-name-clash.yaml": 'spec.initContainers[0].name: Duplicate value: "web"',
    "invalid-container-name.yaml": 'spec.containers[0].name: Invalid value: "Web_App": a lowercase '
                                   "RFC 1123 label",
    "invalid-restart-policy.yaml": 'spec.restartPolicy: Unsupported value: "Sometimes": supported '
                                   'values: "Always", "Never", "OnFailure"',
    "invalid-pull-policy.yaml": 'spec.containers[0].imagePullPolicy: Unsupported value: "Maybe"',
    "invalid-dns-policy.yaml": 'spec.dnsPolicy: Unsupported value: "Google"',
    "dns-none-without-config.yaml": "spec.dnsConfig: Required value: must provide `dnsConfig` when "
                                    "`dnsPolicy` is None",
    "invalid-termination-message-policy.yaml": "spec.containers[0].terminationMessagePolicy: "
                                               'Unsupported value: "Stdout"',
    # ports
    "port-out-of-range.yaml": "spec.containers[0].ports[0].containerPort: Invalid value: 70000: "
                              "must be between 1 and 65535, inclusive",
    "missing-container-port.yaml": "spec.containers[0].ports[0].containerPort: Required value",
    "host-port-out-of-range.yaml": "spec.containers[0].ports[0].hostPort: Invalid value: 65536: "
                                   "must be between 1 and 65535",
    "port-name-too-long.yaml": 'spec.containers[0].ports[0].name: Invalid value: '
                               '"metrics-endpoint-http": must be no more than 15 characters',
    "port-name-no-letter.yaml": 'spec.containers[0].ports[0].name: Invalid value: "8080": must '
                                "contain at least one letter (a-z)",
    "duplicate-port-names.yaml": 'spec.containers[0].ports[1].name: Duplicate value: "http"',
    "invalid-protocol.yaml": 'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP"',
    "hostnetwork-port-mismatch.yaml": "spec.containers[0].ports[0].hostPort: Invalid value: 8080: "
                                      "must match `containerPort` when `hostNetwork` is true",
    "duplicate-host-port.yaml": 'spec.containers[1].ports[0].hostPort: Duplicate value: "/TCP/8080"',
    # resources
    "request-exceeds-limit.yaml": 'spec.containers[0].resources.requests: Invalid value: "2": must '
                                  "be less than or equal to cpu limit of 1",
    "negative-memory-request.yaml": 'spec.containers[0].resources.requests[memory]: Invalid value: '
                                    '"-1Gi": must be greater than or equal to 0',
    "unknown-resource-name.yaml": 'spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": '
                                  "must be a standard resource for containers",
    "extended-resource-without-limit.yaml": "spec.containers[0].resources.limits: Required value: "
                                            "Limit must be set for non overcommitable resources",
    "hugepages-without-cpu-or-memory.yaml": "spec.containers[0].resources: Forbidden: HugePages "
                                            "require cpu or memory",
    # environment
    "env-invalid-name.yaml": 'spec.containers[0].env[0].name: Invalid value: "1BAD": a valid '
                             "environment variable name",
    "env-value-from-two-sources.yaml": "spec.containers[0].env[0].valueFrom: Invalid value: \"\": "
                                       "may not have more than one field specified at a time",
    "env-value-and-value-from.yaml": "spec.containers[0].env[0].valueFrom: Invalid value: \"\": "
                                     "may not be specified when `value` is not empty",
    "env-value-from-empty.yaml": "spec.containers[0].env[0].valueFrom: Invalid value: \"\": must "
                                 "specify one of: `fieldRef`, `resourceFieldRef`",
    "env-fieldref-unsupported.yaml": "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: "
                                     'Unsupported value: "status.phase"',
    "env-fieldref-unknown-path.yaml": "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: "
                                      'Invalid value: "spec.foo": error converting fieldPath',
    "resource-fieldref-unsupported.yaml": "spec.containers[0].env[0].valueFrom.resourceFieldRef."
                                          'resource: Unsupported value: "limits.gpu"',
    "resource-fieldref-bad-divisor.yaml": "spec.containers[0].env[0].valueFrom.resourceFieldRef."
                                          'divisor: Invalid value: "1Mi": only divisor\'s values '
                                          "1m and 1 are supported with the cpu resource",
    "env-from-no-source.yaml": 'spec.containers[0].envFrom: Invalid value: "": must specify one '
                               "of: `configMapRef` or `secretRef`",
    # volumes and mounts
    "bad-volume-ref.yaml": 'spec.containers[0].volumeMounts[0].name: Not found: "data"',
    "duplicate-volume-names.yaml": 'spec.volumes[1].name: Duplicate value: "data"',
    "invalid-volume-name.yaml": 'spec.volumes[0].name: Invalid value: "Data_Dir"',
    "volume-two-sources.yaml": "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 "
                               "volume type",
    "hostpath-bad-type.yaml": 'spec.volumes[0].hostPath.type: Unsupported value: "Dir"',
    "hostpath-missing-path.yaml": "spec.volumes[0].hostPath.path: Required value",
    "hostpath-backsteps.yaml": 'spec.volumes[0].hostPath.path: Invalid value: "/var/../etc": '
                               "must not contain '..'",
    "emptydir-bad-medium.yaml": 'spec.volumes[0].emptyDir.medium: Unsupported value: "Disk"',
    "duplicate-mount-path.yaml": 'spec.containers[0].volumeMounts[1].mountPath: Invalid value: '
                                 '"/data": must be unique',
    "mount-path-colon.yaml": 'spec.containers[0].volumeMounts[0].mountPath: Invalid value: '
                             "\"/data:ro\": must not contain ':'",
    "missing-mount-path.yaml": "spec.containers[0].volumeMounts[0].mountPath: Required value",
    "subpath-escape.yaml": 'spec.containers[0].volumeMounts[0].subPath: Invalid value: "../etc": '
                           "must not contain '..'",
    "subpath-absolute.yaml": 'spec.containers[0].volumeMounts[0].subPath: Invalid value: "/etc": '
                             "must be a relative path",
    "bidirectional-propagation-unprivileged.yaml": "spec.containers[0].volumeMounts[0]."
                                                   "mountPropagation: Forbidden: Bidirectional "
                                                   "mount propagation is available only to "
                                                   "privileged containers",
    # init containers, probes, hooks
    "init-container-restart-never.yaml": 'spec.initContainers[0].restartPolicy: Unsupported '
                                         'value: "Never": supported values: "Always"',
    "app-container-restart-policy.yaml": "spec.containers[0].restartPolicy: Forbidden: may not be "
                                         "set for non-init containers",
    "init-container-probe.yaml": "spec.initContainers[0].readinessProbe: Forbidden: may not be set "
                                 "for init containers without restartPolicy=Always",
    "probe-two-handlers.yaml": "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not "
                               "specify more than 1 handler type",
    "probe-no-handler.yaml": "spec.containers[0].readinessProbe: Required value: must specify a "
                             "handler type",
    "probe-liveness-success-threshold.yaml": "spec.containers[0].livenessProbe.successThreshold: "
                                             "Invalid value: 2: must be 1",
    "probe-missing-port.yaml": "spec.containers[0].startupProbe.httpGet.port: Invalid value: 0: "
                               "must be between 1 and 65535",
    "probe-negative-delay.yaml": "spec.containers[0].readinessProbe.initialDelaySeconds: Invalid "
                                 "value: -5: must be greater than or equal to 0",
    "exec-without-command.yaml": "spec.containers[0].livenessProbe.exec.command: Required value",
    "probe-unknown-port-name.yaml": 'spec.containers[0].livenessProbe.httpGet.port: Invalid value: '
                                    '"metrics": no container port with this name (container ports: '
                                    '"http")',
    "hook-unknown-port-name.yaml": 'spec.containers[0].lifecycle.preStop.httpGet.port: Invalid value: '
                                   '"admin": no container port with this name (container ports: none)',
    "probe-negative-period.yaml": "spec.containers[0].livenessProbe.periodSeconds: Invalid value: "
                                  "-10: must be greater than or equal to 0",
    "probe-startup-success-threshold.yaml": "spec.containers[0].startupProbe.successThreshold: "
                                            "Invalid value: 3: must be 1",
    "lifecycle-two-handlers.yaml": "spec.containers[0].lifecycle.preStop.httpGet: Forbidden: may "
                                   "not specify more than 1 handler type",
    "lifecycle-sleep-too-long.yaml": "spec.containers[0].lifecycle.preStop.sleep.seconds: Invalid "
                                     "value: 60: must be greater than 0 and less than "
                                     "terminationGracePeriodSeconds (30)",
    # pod-level fields
    "negative-grace-period.yaml": "spec.terminationGracePeriodSeconds: Invalid value: -1: must be "
                                  "greater than or equal to 0",
    "zero-active-deadline.yaml": "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 "
                                 "and 2147483647, inclusive",
    "invalid-toleration.yaml": 'spec.tolerations[0].operator: Invalid value: "true": value must be '
                               "empty when `operator` is 'Exists'",
    "invalid-host-alias-ip.yaml": 'spec.hostAliases[0].ip: Invalid value: "not-an-ip": must be '
                                  "valid IP address",
    "share-process-namespace-with-host-pid.yaml": "spec.shareProcessNamespace: Invalid value: true: "
                                                  "ShareProcessNamespace and HostPID cannot both "
                                                  "be enabled",
    # security
    "negative-run-as-user.yaml": "spec.containers[0].securityContext.runAsUser: Invalid value: -1: "
                                 "must be between 0 and 2147483647, inclusive",
    "invalid-fs-group.yaml": "spec.securityContext.fsGroup: Invalid value: 4294967296: must be "
                             "between 0 and 2147483647",
    "bad-capability.yaml": 'spec.containers[0].securityContext.capabilities.add[0]: Invalid value: '
                           '"NET_ADMINN": unknown capability',
    "privilege-escalation-conflict.yaml": "spec.containers[0].securityContext: Invalid value: "
                                          '"allowPrivilegeEscalation=false, privileged=true": '
                                          "cannot set `allowPrivilegeEscalation` to false and "
                                          "`privileged` to true",
    "seccomp-localhost-without-profile.yaml": "spec.containers[0].securityContext.seccompProfile."
                                              "localhostProfile: Required value: must be set when "
                                              "seccomp type is Localhost",
    "invalid-sysctl.yaml": 'spec.securityContext.sysctls[0].name: Invalid value: '
                           '"Net.IPv4.ip_forward": must have at most 253 characters and match regex',
    # static pods may not reference API objects
    "configmap-volume-static.yaml": "spec.volumes[0].configMap: Forbidden: static pods may not "
                                    f"reference configmaps {STATIC}",
    "secret-volume-static.yaml": "spec.volumes[0].secret: Forbidden: static pods may not reference "
                                 f"secrets {STATIC}",
    "secret-env-static.yaml": "spec.containers[0].env[0].valueFrom.secretKeyRef: Forbidden: static "
                              f"pods may not reference secrets {STATIC}",
    "configmap-env-from-static.yaml": "spec.containers[0].envFrom[0].configMapRef: Forbidden: "
                                      f"static pods may not reference configmaps {STATIC}",
    "service-account-static.yaml": "spec.serviceAccountName: Forbidden: static pods may not "
                                   f"reference service accounts {STATIC}",
}


def parse_file(path: Path, *, static: bool = True) -> ManifestResult:
    return parse_manifest(path.read_bytes(), path.name, static=static)


# -- the malformed corpus ---------------------------------------------------------------------


def test_corpus_and_table_match() -> None:
    files = {p.name for p in BAD.iterdir()}
    assert files == set(EXPECTED), (files ^ set(EXPECTED))
    assert len(files) >= 35


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_manifest_is_rejected_with_its_message(name: str) -> None:
    result = parse_file(BAD / name)
    assert result.pods == []
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    (error,) = result.errors
    text = str(error)
    assert text.startswith(f"{name}: document 1: ")
    assert EXPECTED[name] in text


def test_every_bad_file_has_its_own_message() -> None:
    texts = {name: str(parse_file(BAD / name).errors[0]).split(": ", 1)[1] for name in EXPECTED}
    assert len(set(texts.values())) == len(texts)
    for name, substring in EXPECTED.items():
        others = [other for other, text in texts.items() if other != name and substring in text]
        assert others == [], f"{name}'s message also matches {others}"


def test_static_only_files_pass_for_api_pods() -> None:
    for name in ("configmap-volume-static.yaml", "secret-volume-static.yaml",
                 "secret-env-static.yaml", "configmap-env-from-static.yaml",
                 "service-account-static.yaml"):
        result = parse_file(BAD / name, static=False)
        assert result.errors == [], name
        assert len(result.pods) == 1


# -- good manifests -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(GOOD.iterdir()), ids=lambda p: p.name)
def test_good_manifests_parse_cleanly(path: Path) -> None:
    result = parse_file(path)
    assert result.errors == []
    assert result.warnings == []
    assert result.pods
    for _, pod in result.pods:
        assert isinstance(pod, Pod)


def test_single_pod() -> None:
    ((number, pod),) = parse_file(GOOD / "single-pod.yaml").pods
    assert number == 1
    assert pod.full_name == "default/web"
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert pod.spec.containers[0].ports[0].protocol == "TCP"


def test_multi_document_file() -> None:
    result = parse_file(GOOD / "multi-doc.yaml")
    assert [(n, p.full_name) for n, p in result.pods] == [(1, "kube-system/cache"),
                                                        (2, "kube-system/proxy")]
    cache, proxy = (p for _, p in result.pods)
    assert pod_qos_class(cache) == GUARANTEED
    assert proxy.spec.containers[0].ports[0].host_port == 8443  # hostNetwork default


def test_json_pod() -> None:
    ((_, pod),) = parse_file(GOOD / "pod.json").pods
    assert pod.full_name == "default/json-pod"
    assert pod.spec.restart_policy == "Never"
    assert pod.spec.containers[0].image_pull_policy == "Always"  # untagged


def test_pod_list() -> None:
    result = parse_file(GOOD / "podlist.yaml")
    assert [(n, p.full_name) for n, p in result.pods] == [(1, "default/first"), (1, "default/second")]


def test_all_features_manifest() -> None:
    ((_, pod),) = parse_file(GOOD / "all-features.yaml").pods
    spec = pod.spec
    assert [v.name for v in spec.volumes] == ["scratch", "host-logs", "defaulted"]
    assert spec.volumes[2].empty_dir is not None
    assert spec.init_containers[1].restart_policy == "Always"
    app = spec.containers[0]
    assert app.liveness_probe.http_get.port == "http"
    assert app.liveness_probe.success_threshold == 1
    assert app.lifecycle.pre_stop.sleep.seconds == 5
    assert app.resources.requests["cpu"].milli_value() == 250
    assert app.security_context.capabilities.drop == ["ALL"]
    assert spec.security_context.seccomp_profile.localhost_profile == "profiles/audit.json"
    assert spec.dns_config.options[0].value == "2"
    assert pod.metadata.annotations["Description"].startswith("annotations may hold")
    assert pod_qos_class(pod) == BURSTABLE


def test_one_bad_and_one_good_document() -> None:
    result = parse_file(MANIFESTS / "mixed" / "one-bad-one-good.yaml")
    assert [(n, p.full_name) for n, p in result.pods] == [(2, "default/fine")]
    assert [str(e) for e in result.errors] == [
        'one-bad-one-good.yaml: document 1: pod "default/broken": spec.containers[0].image: '
        "Required value"]


# -- parsing behaviour -------------------------------------------------------------------------------

POD = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n"
       "  - name: c\n    image: busybox:1.36\n")


def test_syntax_error_in_one_document_keeps_the_others() -> None:
    text = POD.format(name="a") + "---\nkind: Pod\n  bad: [indent\n---\n" + POD.format(name="b")
    result = parse_manifest(text, "f.yaml")
    assert [(n, p.metadata.name) for n, p in result.pods] == [(1, "a"), (3, "b")]
    (error,) = result.errors
    assert error.document == 2
    assert str(error) == ("f.yaml: document 2: YAML syntax error at line 11, column 6: "
                          "mapping values are not allowed here")


def test_empty_documents_and_comments_are_skipped() -> None:
    assert parse_manifest("", "empty.yaml") == ManifestResult()
    assert parse_manifest("# nothing here\n\n", "c.yaml") == ManifestResult()
    result = parse_manifest("---\n---\n# only a comment\n---\n" + POD.format(name="x"), "f.yaml")
    assert [(n, p.metadata.name) for n, p in result.pods] == [(3, "x")]
    assert result.errors == []


def test_document_end_marker() -> None:
    result = parse_manifest(POD.format(name="a") + "...\n" + POD.format(name="b"), "f.yaml")
    assert [(n, p.metadata.name) for n, p in result.pods] == [(1, "a"), (2, "b")]


def test_unknown_fields_are_warnings() -> None:
    text = POD.format(name="w").replace("    image:", "    imagePullPolcy: Always\n    image:")
    result = parse_manifest(text, "w.yaml")
    assert len(result.pods) == 1 and result.errors == []
    assert result.warnings == [
        'w.yaml: document 1: pod "default/w": spec.containers[0].imagePullPolcy: unknown field']


def test_status_in_a_static_manifest_is_dropped_with_a_warning() -> None:
    text = POD.format(name="s") + "status:\n  qosClass: Guaranteed\n  phase: Running\n"
    ((_, pod),) = parse_manifest(text, "s.yaml").pods
    assert pod.status.qos_class == "" and pod.status.phase == ""
    assert parse_manifest(text, "s.yaml").warnings == [
        's.yaml: document 1: pod "default/s": status: ignored, the node agent owns the status '
        "of static pods"]
    ((_, api_pod),) = parse_manifest(text, "s.yaml", static=False).pods
    assert api_pod.status.qos_class == "Guaranteed"


def test_all_problems_of_a_document_in_one_error() -> None:
    text = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: multi\nspec:\n  restartPolicy: Bad\n"
            "  containers:\n  - name: c\n")
    (error,) = parse_manifest(text, "m.yaml").errors
    assert error.pod == "default/multi"
    assert error.message == ("spec.containers[0].image: Required value; "
                             'spec.restartPolicy: Unsupported value: "Bad": supported values: '
                             '"Always", "Never", "OnFailure"')


def test_list_items_need_a_kind_but_podlist_items_do_not() -> None:
    item = "- metadata:\n    name: x\n  spec:\n    containers:\n    - name: c\n      image: busybox:1.36\n"
    assert len(parse_manifest("apiVersion: v1\nkind: PodList\nitems:\n" + item, "l").pods) == 1
    result = parse_manifest("apiVersion: v1\nkind: List\nitems:\n" + item, "l")
    assert [str(e) for e in result.errors] == [
        'l: document 1: items[0]: kind is missing, a manifest must set kind "Pod"']
    empty = parse_manifest("apiVersion: v1\nkind: PodList\nitems: []\n", "l")
    assert empty == ManifestResult()


def test_list_item_errors_carry_the_item_path() -> None:
    text = ("apiVersion: v1\nkind: PodList\nitems:\n- metadata:\n    name: ok\n  spec:\n"
            "    containers: [{name: c, image: 'busybox:1.36'}]\n"
            "- metadata:\n    name: bad\n  spec:\n    containers: [{name: c, image: ''}]\n")
    result = parse_manifest(text, "l.yaml")
    assert [p.metadata.name for _, p in result.pods] == ["ok"]
    assert [str(e) for e in result.errors] == [
        'l.yaml: document 1: pod "default/bad": items[1].spec.containers[0].image: Required value']


def test_timestamps_stay_strings() -> None:
    extra = "  creationTimestamp: 2024-05-01T10:00:00Z\n  labels:\n    released: 2024-05-01\n"
    text = POD.format(name="t").replace("  name: t\n", "  name: t\n" + extra)
    ((_, pod),) = parse_manifest(text, "t.yaml").pods
    assert pod.metadata.creation_timestamp == "2024-05-01T10:00:00Z"
    assert pod.metadata.labels == {"released": "2024-05-01"}


def test_flow_style_yaml_that_is_not_json() -> None:
    text = "{apiVersion: v1, kind: Pod, metadata: {name: f}, spec: {containers: [{name: c, image: busybox}]}}"
    ((_, pod),) = parse_manifest(text, "f.yaml").pods
    assert pod.metadata.name == "f"


def test_crlf_line_endings() -> None:
    text = ("---\n" + POD.format(name="a") + "---\n" + POD.format(name="b")).replace("\n", "\r\n")
    result = parse_manifest(text, "crlf.yaml")
    assert [(n, p.metadata.name) for n, p in result.pods] == [(1, "a"), (2, "b")]


def test_several_flow_style_documents() -> None:
    doc = ("{{apiVersion: v1, kind: Pod, metadata: {{name: {n}}}, "
           "spec: {{containers: [{{name: c, image: busybox}}]}}}}")
    result = parse_manifest(doc.format(n="a") + "\n---\n" + doc.format(n="b"), "flow.yaml")
    assert [(n, p.metadata.name) for n, p in result.pods] == [(1, "a"), (2, "b")]


def test_json_looking_alias_bomb_is_refused() -> None:
    levels = ["a: &a [" + ",".join(["x"] * 10) + "]"]
    for name, prev in zip("bcdef", "abcde"):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    (error,) = parse_manifest("{" + ", ".join(levels) + "}", "bomb.yaml").errors
    assert error.message.startswith(f"document expands to more than {MAX_DOCUMENT_NODES} values")


def test_bytes_with_bom_and_invalid_utf8() -> None:
    result = parse_manifest(b"\xef\xbb\xbf" + POD.format(name="bom").encode(), "b.yaml")
    assert [p.metadata.name for _, p in result.pods] == ["bom"]
    (error,) = parse_manifest(b"kind: Pod\nname: \xff\xfe\n", "bin.yaml").errors
    assert str(error) == "bin.yaml: file is not UTF-8 text (invalid byte at offset 16)"


def test_oversized_files_are_refused_unread() -> None:
    data = b"# padding\n" * (MAX_MANIFEST_BYTES // 10 + 1)
    (error,) = parse_manifest(data, "huge.yaml").errors
    assert error.document == 0 and error.pod is None
    assert str(error) == (f"huge.yaml: file is {len(data)} bytes, larger than the 10 MiB limit "
                          "for manifests")
    assert parse_manifest(data.decode(), "huge.yaml").errors[0].message == error.message


@pytest.mark.parametrize("text", ["[" * 2000 + "]" * 2000, "a: " + "[" * 2000 + "]" * 2000,
                                  "{" * 2000 + "a: 1" + "}" * 2000])
def test_deep_nesting_is_an_error_not_a_crash(text: str) -> None:
    (error,) = parse_manifest(text, "deep.yaml").errors
    assert error.document == 1
    assert error.message.startswith("document nests too deeply")


def test_maximal_deep_nesting_is_refused_quickly() -> None:
    # PyYAML alone would take hours on this (quadratic in depth).
    data = "a: " + "[" * (MAX_MANIFEST_BYTES - 10)
    (error,) = parse_manifest(data, "deep.yaml").errors
    assert error.message == (f"document nests too deeply (more than {MAX_FLOW_NESTING} "
                             "levels of [ and {)")


def test_node_budget_stops_a_flood_of_documents_but_keeps_earlier_pods() -> None:
    text = POD.format(name="first") + "---\n" * (MAX_FILE_NODES + 10)
    result = parse_manifest(text, "flood.yaml")
    assert [p.metadata.name for _, p in result.pods] == ["first"]
    (error,) = result.errors
    assert error.document > 1
    assert error.message == (f"the file holds more than {MAX_FILE_NODES} YAML nodes; this "
                             "document and any after it were not read")


def test_nesting_within_the_limit_is_fine() -> None:
    nested = "[" * 20 + "]" * 20
    text = POD.format(name="n") + f"  nodeSelector: {{}}\nx: {nested}\n"
    ((_, pod),) = parse_manifest(text, "n.yaml").pods
    assert pod.metadata.name == "n"


def test_manifest_error_rendering() -> None:
    assert str(ManifestError("a.yaml", 2, "ns/p", "boom")) == 'a.yaml: document 2: pod "ns/p": boom'
    assert str(ManifestError("a.yaml", 2, None, "boom")) == "a.yaml: document 2: boom"
    assert str(ManifestError("a.yaml", 0, None, "boom")) == "a.yaml: boom"
