"""The codec must read what the API server reads and print what it prints."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from nodeagent.api.codec import DecodeError, decode, decode_with_warnings, encode
from nodeagent.api.defaults import apply_defaults
from nodeagent.api.manifest import parse_manifest
from nodeagent.api.quantity import Quantity
from nodeagent.api.types import (
    Container,
    ContainerState,
    ContainerStateTerminated,
    ContainerStatus,
    HTTPGetAction,
    Pod,
    PodCondition,
    PodIP,
    PodSecurityContext,
    PodSpec,
    PodStatus,
    ResourceRequirements,
    SecurityContext,
)

GOOD = Path(__file__).parent / "manifests" / "good"


def _pod_data(**container: object) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "web", "image": "nginx", **container}]}}


def _decode_error(data: dict) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(Pod, data)
    return info.value


# -- decoding ------------------------------------------------------------------------


def test_decode_builds_the_typed_tree() -> None:
    pod = decode(Pod, _pod_data(ports=[{"containerPort": 80, "hostIP": "127.0.0.1"}],
                                resources={"limits": {"cpu": "500m", "memory": 1024}}))
    assert pod.metadata.name == "web"
    c = pod.spec.containers[0]
    assert isinstance(c, Container)
    assert c.ports[0].container_port == 80
    assert c.ports[0].host_ip == "127.0.0.1"  # json= override
    assert c.resources.limits["cpu"] == Quantity("0.5")
    assert c.resources.limits["memory"] == Quantity("1Ki")


def test_json_names_follow_the_api() -> None:
    data = {"spec": {"hostPID": True, "hostIPC": True, "hostNetwork": True,
                     "initContainers": [{"name": "i"}]},
            "status": {"podIPs": [{"ip": "10.0.0.1"}], "hostIP": "192.0.2.1",
                       "qosClass": "BestEffort",
                       "containerStatuses": [{"imageID": "sha256:x", "containerID": "c://1"}]}}
    pod, warnings = decode_with_warnings(Pod, data)
    assert warnings == []
    assert pod.spec.host_pid and pod.spec.host_ipc and pod.spec.host_network
    assert pod.status.pod_ips == [PodIP(ip="10.0.0.1")]
    assert pod.status.host_ip == "192.0.2.1"
    assert pod.status.qos_class == "BestEffort"
    assert pod.status.container_statuses[0].image_id == "sha256:x"
    assert pod.status.container_statuses[0].container_id == "c://1"
    out = encode(pod)
    assert out["spec"]["hostPID"] is True and out["spec"]["hostIPC"] is True
    assert out["status"]["podIPs"] == [{"ip": "10.0.0.1"}]


def test_number_where_string_expected_names_the_field() -> None:
    err = _decode_error(_pod_data(image=42))
    assert err.path == "spec.containers[0].image"
    assert str(err) == "spec.containers[0].image: expected a string, got a number (42)"


def test_string_where_integer_expected() -> None:
    err = _decode_error(_pod_data(ports=[{"containerPort": 80}, {"containerPort": "8080"}]))
    assert err.path == "spec.containers[0].ports[1].containerPort"
    assert err.message == 'expected an integer, got a string ("8080")'


def test_bool_is_not_an_integer() -> None:
    err = _decode_error(_pod_data(ports=[{"containerPort": True}]))
    assert err.message == "expected an integer, got a boolean (true)"


def test_float_is_not_an_integer() -> None:
    err = _decode_error({"spec": {"terminationGracePeriodSeconds": 30.5}})
    assert err.path == "spec.terminationGracePeriodSeconds"
    assert "expected an integer, got a number (30.5)" in str(err)


def test_integer_out_of_int64_range() -> None:
    err = _decode_error({"spec": {"activeDeadlineSeconds": 2**64}})
    assert "out of range" in err.message


def test_integer_is_not_a_bool() -> None:
    err = _decode_error(_pod_data(tty=1))
    assert err.path == "spec.containers[0].tty"
    assert err.message == "expected a boolean, got a number (1)"


def test_int_or_string_accepts_both_but_nothing_else() -> None:
    probe = {"httpGet": {"port": 8080}}
    pod = decode(Pod, _pod_data(livenessProbe=probe, readinessProbe={"httpGet": {"port": "http"}}))
    assert pod.spec.containers[0].liveness_probe.http_get.port == 8080
    assert pod.spec.containers[0].readiness_probe.http_get.port == "http"
    err = _decode_error(_pod_data(livenessProbe={"tcpSocket": {"port": False}}))
    assert err.path == "spec.containers[0].livenessProbe.tcpSocket.port"
    assert err.message == "expected an integer or a string, got a boolean (false)"


def test_quantity_accepts_strings_and_numbers() -> None:
    pod = decode(Pod, _pod_data(resources={"requests": {"cpu": 0.5, "memory": "128Mi",
                                                        "ephemeral-storage": 1000}}))
    req = pod.spec.containers[0].resources.requests
    assert req["cpu"].milli_value() == 500
    assert req["memory"].value() == 128 * 2**20
    assert req["ephemeral-storage"].value() == 1000


def test_invalid_quantity_is_a_decode_error_with_path() -> None:
    err = _decode_error(_pod_data(resources={"limits": {"cpu": "one"}}))
    assert err.path == "spec.containers[0].resources.limits[cpu]"
    assert "quantities must match the regular expression" in err.message


def test_quantity_rejects_bool_and_objects() -> None:
    assert "got a boolean" in _decode_error(_pod_data(resources={"limits": {"cpu": True}})).message
    assert "got an object" in _decode_error(_pod_data(resources={"limits": {"cpu": {}}})).message


def test_list_and_object_shapes_are_checked() -> None:
    assert str(_decode_error({"spec": {"containers": {"name": "x"}}})) == (
        "spec.containers: expected an array, got an object")
    assert str(_decode_error({"metadata": {"labels": ["a=b"]}})) == (
        "metadata.labels: expected an object, got an array")
    assert str(_decode_error({"spec": "nope"})) == 'spec: expected an object, got a string ("nope")'
    with pytest.raises(DecodeError) as info:
        decode(Pod, ["not", "a", "pod"])
    assert info.value.path == ""
    assert str(info.value) == "expected an object, got an array"


def test_label_value_must_be_a_string() -> None:
    err = _decode_error({"metadata": {"labels": {"version": 1.0}}})
    assert err.path == "metadata.labels[version]"
    assert err.message == "expected a string, got a number (1.0)"


def test_null_means_absent() -> None:
    pod = decode(Pod, {"metadata": {"name": "web", "labels": None, "namespace": None},
                       "spec": {"containers": None, "terminationGracePeriodSeconds": None,
                                "securityContext": None}})
    assert pod.metadata.labels == {}
    assert pod.metadata.namespace == ""
    assert pod.spec.containers == []
    assert pod.spec.termination_grace_period_seconds is None
    assert pod.spec.security_context is None


def test_null_elements_take_zero_values() -> None:
    pod = decode(Pod, {"metadata": {"labels": {"a": None}},
                       "spec": {"containers": [None], "nodeSelector": {"k": None}}})
    assert pod.metadata.labels == {"a": ""}
    assert pod.spec.containers == [Container()]
    assert pod.spec.node_selector == {"k": ""}


def test_non_string_map_keys_become_strings_like_sigs_yaml() -> None:
    pod = decode(Pod, {"metadata": {"labels": {1: "one", False: "no", 2.5: "x"}}})
    assert pod.metadata.labels == {"1": "one", "false": "no", "2.5": "x"}


def test_unknown_fields_are_ignored_but_reported_with_paths() -> None:
    data = _pod_data(imagePullPolcy="Always", ports=[{"containerPort": 80, "hostport": 8080}])
    data["spec"]["restartPolcy"] = "Never"
    data["extra"] = {"x": 1}
    pod, warnings = decode_with_warnings(Pod, data)
    assert pod.spec.containers[0].image_pull_policy == ""
    assert warnings == [
        "spec.containers[0].imagePullPolcy: unknown field",
        "spec.containers[0].ports[0].hostport: unknown field",
        "spec.restartPolcy: unknown field",
        "extra: unknown field",
    ]
    assert decode(Pod, data) == pod  # plain decode: same object, no warnings


def test_decode_with_path_prefix() -> None:
    _, warnings = decode_with_warnings(Pod, {"bogus": 1}, "items[3]")
    assert warnings == ["items[3].bogus: unknown field"]
    with pytest.raises(DecodeError) as info:
        decode(Pod, {"spec": {"hostPID": "yes"}}, "items[3]")
    assert info.value.path == "items[3].spec.hostPID"


def test_decode_error_is_a_value_error() -> None:
    err = DecodeError("a.b", "broken")
    assert isinstance(err, ValueError)
    assert (err.path, err.message, str(err)) == ("a.b", "broken", "a.b: broken")
    assert str(DecodeError("", "broken")) == "broken"


# -- encoding ------------------------------------------------------------------------


def test_encode_omits_zero_values() -> None:
    out = encode(Pod(spec=PodSpec(containers=[Container(name="web", image="nginx")])))
    assert out == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"creationTimestamp": None},
        "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {}}]},
        "status": {},
    }


def test_container_status_keeps_its_always_printed_fields() -> None:
    out = encode(ContainerStatus(name="web"))
    assert out == {"name": "web", "state": {}, "lastState": {}, "ready": False,
                   "restartCount": 0, "image": "", "imageID": ""}
    assert "containerID" not in out and "started" not in out


def test_terminated_state_keeps_exit_code_zero_and_null_times() -> None:
    out = encode(ContainerState(terminated=ContainerStateTerminated(reason="Completed")))
    assert out == {"terminated": {"exitCode": 0, "reason": "Completed",
                                  "startedAt": None, "finishedAt": None}}


def test_pod_condition_keeps_null_probe_time() -> None:
    out = encode(PodCondition(type="Ready", status="True",
                              last_transition_time="2024-01-01T00:00:00Z"))
    assert out == {"type": "Ready", "status": "True", "lastProbeTime": None,
                   "lastTransitionTime": "2024-01-01T00:00:00Z"}


def test_set_pointers_print_even_when_zero() -> None:
    spec = PodSpec(termination_grace_period_seconds=0, enable_service_links=False,
                   security_context=PodSecurityContext(run_as_user=0),
                   containers=[Container(security_context=SecurityContext(privileged=False))])
    out = encode(spec)
    assert out["terminationGracePeriodSeconds"] == 0
    assert out["enableServiceLinks"] is False
    assert out["securityContext"] == {"runAsUser": 0}
    assert out["containers"][0]["securityContext"] == {"privileged": False}
    assert encode(PodSpec(security_context=PodSecurityContext()))["securityContext"] == {}


def test_quantities_print_as_written_and_map_keys_sorted() -> None:
    res = ResourceRequirements(limits={"memory": Quantity("1Gi"), "cpu": Quantity("500m")})
    out = encode(res)
    assert out == {"limits": {"cpu": "500m", "memory": "1Gi"}}
    assert list(out["limits"]) == ["cpu", "memory"]


def test_int_or_string_encodes_as_is() -> None:
    assert encode(HTTPGetAction(port="http")) == {"port": "http"}
    assert encode(HTTPGetAction(port=8080, path="/")) == {"path": "/", "port": 8080}


def test_encode_does_not_mutate_and_is_json_ready() -> None:
    import json

    pod = decode(Pod, _pod_data(resources={"limits": {"cpu": "1"}}))
    before = copy.deepcopy(pod)
    text = json.dumps(encode(pod))
    assert pod == before
    assert '"cpu": "1"' in text


# -- round trip ----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(GOOD.iterdir()), ids=lambda p: p.name)
def test_round_trip_of_defaulted_good_manifests(path: Path) -> None:
    result = parse_manifest(path.read_bytes(), path.name)
    assert result.pods and not result.errors
    for _, pod in result.pods:
        assert decode(Pod, encode(pod)) == pod
        # Defaulting is idempotent, so re-defaulting the decoded copy changes nothing.
        again = decode(Pod, encode(pod))
        apply_defaults(again)
        assert again == pod


def test_round_trip_with_status() -> None:
    pod = decode(Pod, _pod_data())
    apply_defaults(pod)
    pod.status = PodStatus(
        phase="Running", qos_class="BestEffort", pod_ip="10.0.0.5",
        pod_ips=[PodIP(ip="10.0.0.5")],
        conditions=[PodCondition(type="Ready", status="True")],
        container_statuses=[ContainerStatus(name="web", ready=True, restart_count=0,
                                            state=ContainerState(), started=False)])
    out = encode(pod)
    assert out["status"]["containerStatuses"][0]["started"] is False
    assert decode(Pod, out) == pod


def test_prepare_resolves_every_table_a_pod_needs_up_front() -> None:
    # The static source calls prepare(Pod) at start-up so the first manifest's
    # decode (and the first status's encode) resolve no type hints of their own.
    from nodeagent.api import codec

    codec.prepare(Pod)
    misses = codec._fields_of.cache_info().misses
    for path in sorted(GOOD.glob("*.yaml")):
        for _, pod in parse_manifest(path.read_text(), str(path)).pods:
            pod.status = PodStatus(phase="Running", conditions=[PodCondition(type="Ready", status="True")],
                                   container_statuses=[ContainerStatus(name="c", state=ContainerState(
                                       terminated=ContainerStateTerminated(exit_code=1)))])
            encode(pod)
    assert codec._fields_of.cache_info().misses == misses
