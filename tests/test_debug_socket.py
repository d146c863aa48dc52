"""The CRI debug socket: the runtime's answers, unchanged, through the agent's socket."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import grpc
import grpc.aio
import pytest

from nodeagent.cri.client import CRIClient
from nodeagent.cri.debugsocket import DebugSocket, DebugSocketError
from nodeagent.cri.errors import NotFoundError, RuntimeUnavailable
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv.env import DevEnv
from nodeagent.metrics import kubelet as metrics
from tests.polling import wait_for

RUNTIME = "/runtime.v1.RuntimeService/"


@pytest.fixture
async def debug_socket(devenv: DevEnv, tmp_path: Path):
    calls: list[tuple[str, float, str]] = []
    sock = DebugSocket(str(tmp_path / "run" / "cri.sock"), devenv.endpoint,
                       observe=lambda m, s, c: calls.append((m, s, c)))
    await sock.start()
    sock.calls = calls  # type: ignore[attr-defined]
    yield sock
    await sock.stop()
    assert not sock.path.exists() and not sock.lock_path.exists()


def _by_id(items: list) -> list:
    """The runtime lists in no fixed order (Go map iteration)."""
    return sorted(items, key=lambda item: item.id)


async def test_same_answers_as_direct(devenv: DevEnv, cri: CRIClient, debug_socket: DebugSocket,
                                      sandboxes: list[str], pod_uid: str) -> None:
    async with CRIClient(f"unix://{debug_socket.path}", request_timeout=60) as via:
        assert await via.version() == await cri.version()
        assert await via.pull_image(devenv.busybox) == await cri.pull_image(devenv.busybox)
        assert (await via.status()).status == (await cri.status()).status
        assert _by_id(await via.list_images()) == _by_id(await cri.list_images())
        assert await via.image_status(devenv.busybox) == await cri.image_status(devenv.busybox)
        via_fs, direct_fs = await via.image_fs_info(), await cri.image_fs_info()
        assert [f.fs_id for f in via_fs.image_filesystems] == \
            [f.fs_id for f in direct_fs.image_filesystems]  # equal but for the time taken
        # Mutating calls through the socket act on the real runtime.
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="dbg", namespace="default", uid=pod_uid),
            labels={"io.kubernetes.pod.uid": pod_uid},
            linux=pb.LinuxPodSandboxConfig(cgroup_parent=devenv.cgroup_parent(f"dbg-{pod_uid[:8]}"),
                                           security_context=pb.LinuxSandboxSecurityContext(
                                               namespace_options=pb.NamespaceOption(
                                                   network=pb.NamespaceMode.NODE))))
        sandbox_id = await via.run_pod_sandbox(config)
        sandboxes.append(sandbox_id)
        container_id = await via.create_container(sandbox_id, pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image=devenv.busybox),
            command=["sleep", "3600"], labels={"io.kubernetes.pod.uid": pod_uid}), config)
        await via.start_container(container_id)
        assert _by_id(await via.list_pod_sandbox()) == _by_id(await cri.list_pod_sandbox())
        assert await via.pod_sandbox_status(sandbox_id) == await cri.pod_sandbox_status(sandbox_id)
        assert _by_id(await via.list_containers()) == _by_id(await cri.list_containers())
        assert await via.container_status(container_id) == await cri.container_status(container_id)
        result = await via.exec_sync(container_id, ["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
        assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", 3)
        direct_stats = await cri.container_stats(container_id)
        stats = await via.container_stats(container_id)
        assert stats.attributes == direct_stats.attributes
        assert sorted(s.attributes.id for s in await via.list_container_stats()) == \
            sorted(s.attributes.id for s in await cri.list_container_stats())
        assert (await via.pod_sandbox_stats(sandbox_id)).attributes.id == sandbox_id
        await via.reopen_container_log(container_id)
        await via.update_container_resources(container_id, pb.LinuxContainerResources(cpu_shares=512))
        # Streaming calls answer the runtime's URL.
        exec_resp = await via.runtime_stub.Exec(pb.ExecRequest(container_id=container_id,
                                                               cmd=["true"], stdout=True))
        assert exec_resp.url.startswith("http")
        # Errors keep their code and text.
        with pytest.raises(NotFoundError) as through:
            await via.container_status("no-such-container")
        with pytest.raises(NotFoundError) as direct:
            await cri.container_status("no-such-container")
        assert through.value.details == direct.value.details
        await via.stop_container(container_id, 0)
        await via.remove_container(container_id)
        await via.stop_pod_sandbox(sandbox_id)
        await via.remove_pod_sandbox(sandbox_id)
        assert sandbox_id not in {s.id for s in await cri.list_pod_sandbox()}
    methods = {m for m, _, code in debug_socket.calls if code == "OK"}  # type: ignore[attr-defined]
    assert {"Version", "ListContainers", "RunPodSandbox", "Exec", "ImageFsInfo"} <= methods
    assert ("ContainerStatus", "NOT_FOUND") in {(m, c) for m, _, c in debug_socket.calls}  # type: ignore[attr-defined]


async def test_separate_image_endpoint_routed_by_service(devenv: DevEnv, cri: CRIClient,
                                                         tmp_path: Path) -> None:
    """With the image service on another socket path, each call goes by its service."""
    image_link = tmp_path / "images.sock"
    image_link.symlink_to(devenv.containerd.paths.socket)
    calls: list[tuple[str, float, str]] = []
    sock = DebugSocket(str(tmp_path / "run" / "cri.sock"), devenv.endpoint, f"unix://{image_link}",
                       observe=lambda m, s, c: calls.append((m, s, c)))
    await sock.start()
    try:
        async with CRIClient(f"unix://{sock.path}", request_timeout=30) as via:
            assert await via.version() == await cri.version()
            assert _by_id(await via.list_images()) == _by_id(await cri.list_images())
            with pytest.raises(NotFoundError):
                await via.container_status("no-such-container")
        assert {("Version", "OK"), ("ListImages", "OK"), ("ContainerStatus", "NOT_FOUND")} <= \
            {(m, c) for m, _, c in calls}
    finally:
        await sock.stop()


async def test_unknown_fields_pass_through(devenv: DevEnv, debug_socket: DebugSocket) -> None:
    """Raw bytes go through: a field number this proto lacks reaches the runtime and the
    runtime's answer comes back byte for byte as the runtime sent it."""
    unknown = b"\xa2\x06\x05hello"  # field 100, length-delimited "hello"
    request = pb.VersionRequest(version="0.1.0").SerializeToString() + unknown
    async with grpc.aio.insecure_channel(f"unix://{debug_socket.path}") as ch_via, \
            grpc.aio.insecure_channel(f"unix://{devenv.containerd.paths.socket}") as ch_direct:
        via = await ch_via.unary_unary(RUNTIME + "Version")(request, timeout=10)
        direct = await ch_direct.unary_unary(RUNTIME + "Version")(request, timeout=10)
        assert via == direct and pb.VersionResponse.FromString(via).runtime_api_version == "v1"
        # A method newer than this proto is forwarded too (the runtime says UNIMPLEMENTED).
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await ch_via.unary_unary(RUNTIME + "NoSuchMethodYet")(b"", timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as exc_direct:
            await ch_direct.unary_unary(RUNTIME + "NoSuchMethodYet")(b"", timeout=10)
        assert exc.value.code() == exc_direct.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def _echo_runtime(path: Path) -> grpc.aio.Server:
    """A CRI endpoint that answers every Version and GetContainerEvents call with the
    request's own bytes: what the forwarder delivers is exactly what it was given."""
    async def echo(request: bytes, context) -> bytes:
        return request

    async def echo_stream(request: bytes, context):
        for _ in range(3):
            yield request

    handlers = {"Version": grpc.unary_unary_rpc_method_handler(echo),
                "GetContainerEvents": grpc.unary_stream_rpc_method_handler(echo_stream)}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "runtime.v1.RuntimeService", handlers)])
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    return server


async def test_bytes_unchanged_both_ways(tmp_path: Path) -> None:
    upstream = tmp_path / "echo.sock"
    server = await _echo_runtime(upstream)
    sock = DebugSocket(str(tmp_path / "cri.sock"), f"unix://{upstream}")
    await sock.start()
    try:
        payload = pb.VersionRequest(version="0.1.0").SerializeToString() + b"\xa2\x06\x05hello"
        async with grpc.aio.insecure_channel(f"unix://{sock.path}") as ch:
            assert await ch.unary_unary(RUNTIME + "Version")(payload, timeout=10) == payload
            stream = ch.unary_stream(RUNTIME + "GetContainerEvents")(payload, timeout=10)
            assert [m async for m in stream] == [payload] * 3
    finally:
        await sock.stop()
        await server.stop(0)


async def test_runtime_down_unavailable_and_socket_keeps_serving(tmp_path: Path) -> None:
    missing = tmp_path / "no-runtime.sock"
    sock = DebugSocket(str(tmp_path / "cri.sock"), f"unix://{missing}")
    await sock.start()
    try:
        async with CRIClient(f"unix://{sock.path}", request_timeout=5) as via:
            for _ in range(2):
                with pytest.raises(RuntimeUnavailable) as exc:
                    await via.list_containers()
                assert "debug socket" in str(exc.value) and str(missing) in str(exc.value)
            assert stat.S_ISSOCK(os.stat(sock.path).st_mode)
        # The runtime comes (back): the same socket forwards again.
        server = await _echo_runtime(missing)
        try:
            async with grpc.aio.insecure_channel(f"unix://{sock.path}") as ch:
                async def answers() -> bool:
                    try:
                        return await ch.unary_unary(RUNTIME + "Version")(b"\x0a\x01x", timeout=5) \
                            == b"\x0a\x01x"
                    except grpc.aio.AioRpcError:
                        return False
                await wait_for(answers, timeout=10, what="forwarding after the runtime came back")
        finally:
            await server.stop(0)
    finally:
        await sock.stop()


async def test_socket_mode_and_second_agent(tmp_path: Path) -> None:
    path = tmp_path / "run" / "cri.sock"
    first = DebugSocket(str(path), "unix:///nonexistent.sock")
    await first.start()
    try:
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o660 and (st.st_uid, st.st_gid) == (0, 0)
        second = DebugSocket(str(path), "unix:///nonexistent.sock")
        with pytest.raises(DebugSocketError, match="in use"):
            await second.start()
        assert os.stat(path).st_ino == st.st_ino  # untouched
    finally:
        await first.stop()
    # A live listener that is not an agent (no lock held) is not replaced either.
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(path))
    other.listen()
    try:
        with pytest.raises(DebugSocketError, match="something is listening"):
            await DebugSocket(str(path), "unix:///nonexistent.sock").start()
    finally:
        other.close()
    # A stale socket (its server gone) is replaced; a regular file is refused.
    stale = DebugSocket(str(path), "unix:///nonexistent.sock")
    await stale.start()
    await stale.stop()
    path.write_text("not a socket")
    with pytest.raises(DebugSocketError, match="not a socket"):
        await DebugSocket(str(path), "unix:///nonexistent.sock").start()
    assert path.read_text() == "not a socket"


async def test_unsafe_parent_refused(tmp_path: Path) -> None:
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(DebugSocketError, match="not writable by group or others"):
        await DebugSocket(str(parent / "cri.sock"), "unix:///nonexistent.sock").start()
    assert list(parent.iterdir()) == []


async def test_non_root_cannot_connect() -> None:
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="na-dbgsock-"))  # traversable by nobody, unlike tmp_path
    base.chmod(0o755)
    sock = DebugSocket(str(base / "run" / "cri.sock"), "unix:///nonexistent.sock")
    await sock.start()
    # nobody can reach the path (stat works), so only the socket's mode refuses it.
    code = ("import os,socket,sys\nos.stat(sys.argv[1])\ns=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n sys.exit(13)\nsys.exit(0)")
    try:
        result = await asyncio.to_thread(
            subprocess.run, ["/usr/bin/python3", "-c", code, str(sock.path)], cwd="/",
            user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], capture_output=True,
            timeout=30)
        assert result.returncode == 13, result.stderr
        s = socket.socket(socket.AF_UNIX)  # root can
        s.connect(str(sock.path))
        s.close()
    finally:
        await sock.stop()
        shutil.rmtree(base)


async def test_agent_serves_debug_socket_with_metrics(agent) -> None:
    async with CRIClient(f"unix://{agent.debug_socket}", request_timeout=10) as via:
        version = await via.version()
        assert version.runtime_api_version == "v1"
        await via.list_containers()
    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"{agent.base_url}/metrics", timeout=5).read().decode())
    assert 'nodeagent_cri_debug_socket_requests_total{code="OK",method="Version"} 1.0' in body
    assert 'nodeagent_cri_debug_socket_request_duration_seconds_count{method="ListContainers"}' in body
    agent.stop()
    assert not agent.debug_socket.exists()


def test_operation_type_names() -> None:
    assert metrics.operation_type("ListContainers") == "list_containers"
    assert metrics.operation_type("RunPodSandbox") == "run_podsandbox"
    assert metrics.operation_type("ImageFsInfo") == "image_fs_info"


def test_call_watch_either_order() -> None:
    """The answer's trailers may be read before the request's headers (two threads)."""
    from nodeagent.cri import relay

    def headers(encoder, stream: int, items, flags: int) -> bytes:
        return relay.frame(relay.HEADERS, flags | relay.END_HEADERS, stream, encoder.encode(items))

    import hpack
    seen: list[tuple[str, float, str]] = []
    watch = relay.CallWatch(lambda m, s, c: seen.append((m, s, c)))
    client, server = hpack.Encoder(), hpack.Encoder()
    request = relay.PREFACE + relay.frame(relay.SETTINGS, 0, 0) + headers(
        client, 1, [(":method", "POST"), (":path", "/runtime.v1.RuntimeService/Version")], 0)
    trailers = headers(server, 1, [(":status", "200"), ("grpc-status", "5")], relay.END_STREAM)
    watch.from_server(trailers, 10.5)
    watch.from_client(request, 10.0)
    request3 = headers(client, 3, [(":method", "POST"),
                                   (":path", "/runtime.v1.ImageService/ListImages")], 0)
    watch.from_client(request3, 20.0)
    watch.from_server(headers(server, 3, [(":status", "200"), ("grpc-status", "0")],
                              relay.END_STREAM), 20.25)
    assert seen == [("Version", 0.5, "NOT_FOUND"), ("ListImages", 0.25, "OK")]


async def test_second_agent_does_not_take_over(agent, devenv: DevEnv, tmp_path: Path) -> None:
    from tests.agentproc import AgentProcess

    second = AgentProcess(devenv, tmp_path / "second", "--cri-debug-socket", str(agent.debug_socket))
    before = os.stat(agent.debug_socket).st_ino
    second.start()
    try:
        await wait_for(lambda: any(line.get("event") == "CRI debug socket not served"
                                   for line in second.log_lines()), what="second agent's error")
        line = next(l for l in second.log_lines() if l.get("event") == "CRI debug socket not served")
        assert "in use by another nodeagent" in line["error"]
        assert os.stat(agent.debug_socket).st_ino == before
        async with CRIClient(f"unix://{agent.debug_socket}", request_timeout=10) as via:
            assert (await via.version()).runtime_api_version == "v1"
        assert second.process.poll() is None  # it runs on without a debug socket
    finally:
        assert second.stop() == 0
