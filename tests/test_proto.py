"""Checks for the CRI runtime.v1 proto and its generated stubs.

- the committed stubs match what hack/gen-proto produces (no drift);
- proto/api.proto is wire-identical to upstream, using as reference the
  serialized FileDescriptorProto embedded in the `container-runtime-interface-api`
  package (cri_api/v1/api_pb2.py). That module is never imported: it would
  register the same runtime.v1.* symbols in the default descriptor pool and
  clash with ours. Its bytes literal is read with `ast` instead.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from nodeagent.cri.pb import api_pb2, api_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
GEN_PROTO = REPO / "hack" / "gen-proto"
PB_DIR = Path("nodeagent") / "cri" / "pb"
GENERATED = tuple(f"{name}{suffix}" for name in ("api", "containerd_events")
                  for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))

FDP = descriptor_pb2.FileDescriptorProto
FieldProto = descriptor_pb2.FieldDescriptorProto


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def reference_serialized() -> bytes:
    """The upstream runtime.v1 FileDescriptorProto bytes from cri_api/v1/api_pb2.py."""
    spec = importlib.util.find_spec("cri_api")  # does not import cri_api
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the reference needs container-runtime-interface-api (cri_api) installed")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "v1" / "api_pb2.py"
        if path.is_file():
            break
    else:
        pytest.fail("cri_api/v1/api_pb2.py not found: the reference descriptor is missing")
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    blobs = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "AddSerializedFile"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, bytes)
    ]
    assert len(blobs) == 1, f"expected one AddSerializedFile(b'...') in {path}, found {len(blobs)}"
    return blobs[0]


def reference_fdp() -> FDP:
    return FDP.FromString(reference_serialized())


def our_fdp() -> FDP:
    fdp = FDP()
    api_pb2.DESCRIPTOR.CopyToProto(fdp)
    return fdp


def _label(f: FieldProto) -> str:
    return FieldProto.Label.Name(f.label)


def _type(f: FieldProto) -> str:
    return FieldProto.Type.Name(f.type)


def _diff_enum(ref: descriptor_pb2.EnumDescriptorProto, ours, where: str) -> list[str]:
    diffs = []
    if ours is None:
        return [f"enum {where}: missing"]
    our_values = {v.name: v.number for v in ours.value}
    for v in ref.value:
        if v.name not in our_values:
            diffs.append(f"enum {where}: value {v.name} = {v.number} missing")
        elif our_values[v.name] != v.number:
            diffs.append(f"enum {where}: value {v.name} is {our_values[v.name]}, reference {v.number}")
    return diffs


def _diff_message(ref: descriptor_pb2.DescriptorProto, ours, where: str) -> list[str]:
    if ours is None:
        return [f"message {where}: missing"]
    diffs = []
    if ref.options.map_entry != ours.options.map_entry:
        diffs.append(f"message {where}: map_entry {ours.options.map_entry}, reference {ref.options.map_entry}")

    by_number = {f.number: f for f in ours.field}
    by_name = {f.name: f for f in ours.field}
    for rf in ref.field:
        of = by_number.get(rf.number)
        if of is None:
            other = by_name.get(rf.name)
            hint = f" (ours has {rf.name} = {other.number})" if other else ""
            diffs.append(f"field {where}.{rf.name} = {rf.number}: missing{hint}")
            continue
        label = f"field {where}.{rf.name} = {rf.number}"
        if of.name != rf.name:
            diffs.append(f"{label}: ours is named {of.name!r}")
        if of.type != rf.type:
            diffs.append(f"{label}: type {_type(of)}, reference {_type(rf)}")
        if of.type_name != rf.type_name:
            diffs.append(f"{label}: type_name {of.type_name!r}, reference {rf.type_name!r}")
        if of.label != rf.label:
            diffs.append(f"{label}: label {_label(of)}, reference {_label(rf)}")
        if of.proto3_optional != rf.proto3_optional:
            diffs.append(f"{label}: proto3_optional {of.proto3_optional}, reference {rf.proto3_optional}")

    our_nested = {m.name: m for m in ours.nested_type}
    for rm in ref.nested_type:
        diffs += _diff_message(rm, our_nested.get(rm.name), f"{where}.{rm.name}")
    our_enums = {e.name: e for e in ours.enum_type}
    for re_ in ref.enum_type:
        diffs += _diff_enum(re_, our_enums.get(re_.name), f"{where}.{re_.name}")
    return diffs


def descriptor_differences(ref: FDP, ours: FDP) -> list[str]:
    """Human-readable wire-relevant differences of `ours` from `ref`.

    Everything in the reference must be present and identical in ours; extra
    (newer) services, rpcs, messages, fields and enum values in ours are fine.
    """
    diffs = []
    if ref.package != ours.package:
        diffs.append(f"package {ours.package!r}, reference {ref.package!r}")
    if ref.syntax != ours.syntax:
        diffs.append(f"syntax {ours.syntax!r}, reference {ref.syntax!r}")

    our_services = {s.name: s for s in ours.service}
    for rs in ref.service:
        os_ = our_services.get(rs.name)
        if os_ is None:
            diffs.append(f"service {rs.name}: missing")
            continue
        our_methods = {m.name: m for m in os_.method}
        for rm in rs.method:
            om = our_methods.get(rm.name)
            where = f"rpc {rs.name}.{rm.name}"
            if om is None:
                diffs.append(f"{where}: missing")
                continue
            for attr in ("input_type", "output_type", "client_streaming", "server_streaming"):
                if getattr(om, attr) != getattr(rm, attr):
                    diffs.append(f"{where}: {attr} {getattr(om, attr)!r}, reference {getattr(rm, attr)!r}")

    our_messages = {m.name: m for m in ours.message_type}
    for rm in ref.message_type:
        diffs += _diff_message(rm, our_messages.get(rm.name), rm.name)
    our_enums = {e.name: e for e in ours.enum_type}
    for re_ in ref.enum_type:
        diffs += _diff_enum(re_, our_enums.get(re_.name), re_.name)
    return diffs


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_generated_stubs_are_up_to_date(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        [str(GEN_PROTO), str(tmp_path)],
        cwd=tmp_path,  # the script must not depend on the caller's cwd
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"hack/gen-proto failed:\n{proc.stdout}\n{proc.stderr}"
    stale = [
        name
        for name in GENERATED
        if (tmp_path / PB_DIR / name).read_bytes() != (REPO / PB_DIR / name).read_bytes()
    ]
    assert not stale, f"{', '.join(stale)} differ from proto/: run hack/gen-proto"


def test_descriptor_is_registered_under_package_path():
    assert api_pb2.DESCRIPTOR.name == "nodeagent/cri/pb/api.proto"
    assert api_pb2.DESCRIPTOR.package == "runtime.v1"
    assert api_pb2.DESCRIPTOR.GetOptions().go_package == "k8s.io/cri-api/pkg/apis/runtime/v1"
    assert not api_pb2.DESCRIPTOR.dependencies, "api.proto must not import anything (no gogoproto)"


def test_wire_identical_to_reference():
    ref = reference_fdp()
    assert ref.package == "runtime.v1" and ref.message_type, "reference descriptor looks wrong"
    diffs = descriptor_differences(ref, our_fdp())
    assert not diffs, "proto/api.proto differs from the upstream reference:\n  " + "\n  ".join(diffs)


def test_difference_helper_reports_changes():
    """The comparison would actually catch a renumbered, retyped or missing item."""
    ref = reference_fdp()
    broken = FDP()
    broken.CopyFrom(ref)
    msg = next(m for m in broken.message_type if m.name == "ContainerConfig")
    next(f for f in msg.field if f.name == "log_path").number = 99
    next(f for f in msg.field if f.name == "tty").type = FieldProto.TYPE_INT32
    enum = next(e for e in broken.enum_type if e.name == "ContainerState")
    del enum.value[-1]
    svc = next(s for s in broken.service if s.name == "RuntimeService")
    next(m for m in svc.method if m.name == "GetContainerEvents").server_streaming = False
    diffs = descriptor_differences(ref, broken)
    joined = "\n".join(diffs)
    assert "ContainerConfig.log_path = 11: missing" in joined
    assert "ContainerConfig.tty = 14: type TYPE_INT32" in joined
    assert "ContainerState: value CONTAINER_UNKNOWN" in joined
    assert "GetContainerEvents: server_streaming" in joined
    assert descriptor_differences(ref, ref) == []


RUNTIME_RPCS = {
    "Version", "Status", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox",
    "PodSandboxStatus", "ListPodSandbox", "CreateContainer", "StartContainer",
    "StopContainer", "RemoveContainer", "ListContainers", "ContainerStatus",
    "UpdateContainerResources", "ExecSync", "ContainerStats", "ListContainerStats",
    "PodSandboxStats", "ReopenContainerLog",
}  # fmt: skip
IMAGE_RPCS = {"ImageStatus", "PullImage", "ListImages", "RemoveImage", "ImageFsInfo"}


def test_services_have_required_rpcs():
    services = api_pb2.DESCRIPTOR.services_by_name
    runtime = set(services["RuntimeService"].methods_by_name)
    image = set(services["ImageService"].methods_by_name)
    assert not RUNTIME_RPCS - runtime, f"RuntimeService lacks {sorted(RUNTIME_RPCS - runtime)}"
    assert not IMAGE_RPCS - image, f"ImageService lacks {sorted(IMAGE_RPCS - image)}"
    # and the grpc stubs expose them
    for name in RUNTIME_RPCS:
        assert hasattr(api_pb2_grpc.RuntimeServiceServicer, name)
    for name in IMAGE_RPCS:
        assert hasattr(api_pb2_grpc.ImageServiceServicer, name)


def _reference_class(full_name: str):
    """Message class for `full_name` built from the reference, in a private pool."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(reference_serialized())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def _container_config() -> api_pb2.ContainerConfig:
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="app", attempt=3),
        image=api_pb2.ImageSpec(image="docker.io/library/busybox:1.36", annotations={"a": "b"}),
        command=["/bin/sh", "-c"],
        args=["sleep 1000"],
        working_dir="/work",
        envs=[api_pb2.KeyValue(key="FOO", value="bar"), api_pb2.KeyValue(key="X", value="")],
        mounts=[
            api_pb2.Mount(
                container_path="/data",
                host_path="/var/lib/data",
                readonly=True,
                propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER,
                uidMappings=[api_pb2.IDMapping(host_id=100000, container_id=0, length=65536)],
            )
        ],
        labels={"io.kubernetes.container.name": "app"},
        annotations={"io.kubernetes.container.restartCount": "3"},
        log_path="app/3.log",
        tty=True,
        linux=api_pb2.LinuxContainerConfig(
            resources=api_pb2.LinuxContainerResources(
                cpu_shares=512,
                memory_limit_in_bytes=128 << 20,
                oom_score_adj=-997,
                unified={"memory.high": "100000000"},
            ),
            security_context=api_pb2.LinuxContainerSecurityContext(
                run_as_user=api_pb2.Int64Value(value=0),
                seccomp=api_pb2.SecurityProfile(
                    profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref="/p.json"
                ),
                capabilities=api_pb2.Capability(drop_capabilities=["ALL"]),
            ),
        ),
        CDI_devices=[api_pb2.CDIDevice(name="vendor.com/gpu=0")],
        stop_signal=api_pb2.SIGQUIT,
    )


def test_container_config_round_trips_through_reference():
    ours = _container_config()
    wire = ours.SerializeToString(deterministic=True)

    RefContainerConfig = _reference_class("runtime.v1.ContainerConfig")
    ref = RefContainerConfig.FromString(wire)
    assert ref.metadata.name == "app" and ref.metadata.attempt == 3
    assert ref.image.image == "docker.io/library/busybox:1.36"
    assert dict(ref.image.annotations) == {"a": "b"}
    assert list(ref.command) == ["/bin/sh", "-c"] and list(ref.args) == ["sleep 1000"]
    assert [(e.key, e.value) for e in ref.envs] == [("FOO", "bar"), ("X", "")]
    mount = ref.mounts[0]
    assert (mount.container_path, mount.host_path, mount.readonly) == ("/data", "/var/lib/data", True)
    assert mount.propagation == api_pb2.PROPAGATION_HOST_TO_CONTAINER
    assert (mount.uidMappings[0].host_id, mount.uidMappings[0].length) == (100000, 65536)
    assert dict(ref.labels) == {"io.kubernetes.container.name": "app"}
    assert ref.log_path == "app/3.log" and ref.tty and not ref.stdin
    res = ref.linux.resources
    assert (res.cpu_shares, res.memory_limit_in_bytes, res.oom_score_adj) == (512, 128 << 20, -997)
    assert dict(res.unified) == {"memory.high": "100000000"}
    sc = ref.linux.security_context
    assert sc.HasField("run_as_user") and sc.run_as_user.value == 0
    assert sc.seccomp.profile_type == api_pb2.SecurityProfile.Localhost
    assert list(sc.capabilities.drop_capabilities) == ["ALL"]
    assert ref.CDI_devices[0].name == "vendor.com/gpu=0"
    assert ref.stop_signal == api_pb2.SIGQUIT

    # Every field was known to the reference: re-encoding gives the same bytes,
    # and the reverse direction parses back to an equal message.
    assert ref.SerializeToString(deterministic=True) == wire
    assert api_pb2.ContainerConfig.FromString(ref.SerializeToString()) == ours


def test_newer_fields_are_skipped_by_reference():
    """Superset fields (newer upstream) are unknown fields to an older peer."""
    ours = api_pb2.ExecRequest(container_id="c1", cmd=["ls"], stdout=True, audit_request_id="req-1")
    RefExecRequest = _reference_class("runtime.v1.ExecRequest")
    ref = RefExecRequest.FromString(ours.SerializeToString())
    assert (ref.container_id, list(ref.cmd), ref.stdout) == ("c1", ["ls"], True)
