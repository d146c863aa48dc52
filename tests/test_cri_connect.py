"""Connecting to what is not a healthy CRI runtime: clear typed errors, bounded time, recovery."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from nodeagent.cri.client import CRIClient
from nodeagent.cri import errors
from nodeagent.cri.errors import NotCRIEndpoint, RuntimeUnavailable, UnsupportedRuntime
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.cri.pb import api_pb2_grpc as pb_grpc
from nodeagent.devenv.env import DevEnv
from nodeagent.devenv.podspecs import container_config, sandbox_config


async def test_missing_socket_waits_with_backoff_then_says_so(tmp_path: Path) -> None:
    path = tmp_path / "absent.sock"
    async with CRIClient(f"unix://{path}") as client:
        started = time.monotonic()
        with pytest.raises(RuntimeUnavailable) as err:
            await client.wait_ready(timeout=1.0)
        assert 0.9 <= time.monotonic() - started < 5
        assert f"socket {path} does not exist" in str(err.value)
        # A direct call fails fast instead of waiting for the socket.
        started = time.monotonic()
        with pytest.raises(RuntimeUnavailable):
            await client.version()
        assert time.monotonic() - started < 5


async def test_socket_appearing_late_is_picked_up(devenv: DevEnv, tmp_path: Path) -> None:
    link = tmp_path / "late.sock"

    async def appear() -> None:
        await asyncio.sleep(0.5)
        link.symlink_to(devenv.containerd.paths.socket)

    async with CRIClient(f"unix://{link}") as client:
        task = asyncio.create_task(appear())
        version = await client.wait_ready(timeout=10)
        await task
        assert version.runtime_api_version == "v1"


async def test_regular_file_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "file.sock"
    path.write_text("")
    async with CRIClient(str(path)) as client:
        with pytest.raises(NotCRIEndpoint, match="is not a unix socket"):
            await client.wait_ready(timeout=1)


@pytest.fixture
async def http_socket(tmp_path: Path) -> AsyncIterator[Path]:
    """A unix socket where an HTTP/1.1 server answers: not gRPC at all."""
    path = tmp_path / "http.sock"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    yield path
    server.close()
    await server.wait_closed()


async def test_http_server_is_not_cri(http_socket: Path) -> None:
    async with CRIClient(f"unix://{http_socket}") as client:
        started = time.monotonic()
        with pytest.raises(NotCRIEndpoint) as err:
            await client.wait_ready(timeout=2)
        assert time.monotonic() - started < 6
        assert "did not answer CRI runtime.v1" in str(err.value)


async def test_silent_listener_is_bounded(tmp_path: Path) -> None:
    """Accepts connections and never answers: no hang, a clear error after the timeout."""
    path = tmp_path / "silent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)
    try:
        async with CRIClient(f"unix://{path}") as client:
            started = time.monotonic()
            with pytest.raises(NotCRIEndpoint):
                await client.wait_ready(timeout=2, probe_timeout=0.5)
            assert time.monotonic() - started < 6
    finally:
        listener.close()


async def _grpc_server(path: Path, servicer: pb_grpc.RuntimeServiceServicer | None) -> grpc.aio.Server:
    server = grpc.aio.server()
    if servicer is not None:
        pb_grpc.add_RuntimeServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix://{path}")
    await server.start()
    return server


async def test_grpc_server_without_cri(tmp_path: Path) -> None:
    path = tmp_path / "grpc.sock"
    server = await _grpc_server(path, None)
    try:
        async with CRIClient(f"unix://{path}") as client:
            with pytest.raises(NotCRIEndpoint, match="is this a CRI runtime.v1 socket"):
                await client.wait_ready(timeout=5)
    finally:
        await server.stop(None)


class _OldRuntime(pb_grpc.RuntimeServiceServicer):
    async def Version(self, request: pb.VersionRequest, context: object) -> pb.VersionResponse:
        return pb.VersionResponse(version="0.1.0", runtime_name="oldd", runtime_version="0.9",
                                  runtime_api_version="v1alpha2")


async def test_wrong_api_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sock"
    server = await _grpc_server(path, _OldRuntime())
    try:
        async with CRIClient(f"unix://{path}") as client:
            with pytest.raises(UnsupportedRuntime) as err:
                await client.wait_ready(timeout=5)
            assert "reports CRI API 'v1alpha2'; nodeagent needs 'v1'" in str(err.value)
    finally:
        await server.stop(None)


@pytest.fixture
def crashing_env(devenv: DevEnv) -> DevEnv:
    """A second containerd (sharing the registry) that a test may kill."""
    env = DevEnv(name="crash", share_images_from=devenv)
    env.up()
    yield env
    env.down()
    assert env.leaks() == []


async def test_runtime_killed_mid_call_then_recovers(crashing_env: DevEnv, pod_uid: str) -> None:
    env = crashing_env
    async with CRIClient(env.endpoint, request_timeout=30) as cri:
        image = await cri.pull_image(env.busybox)
        config = sandbox_config(env, "crash", pod_uid, host_network=True)
        sandbox_id = await cri.run_pod_sandbox(config)
        cid = await cri.create_container(sandbox_id, container_config(
            config, "sleeper", image, ["sleep", "3600"]), config)
        await cri.start_container(cid)

        call = asyncio.create_task(cri.exec_sync(cid, ["sleep", "20"], timeout=30))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        env.containerd.kill()
        with pytest.raises(RuntimeUnavailable) as err:
            await call
        assert time.monotonic() - started < 5
        assert "ExecSync" in str(err.value)

        # While it is down: reads retry briefly, then fail clearly; nothing hangs.
        started = time.monotonic()
        with pytest.raises(RuntimeUnavailable):
            await cri.list_containers()
        assert time.monotonic() - started < 5

        # Restarted with the same config, the same client reconnects and the pod survived.
        env.containerd.start()
        listed = await cri.list_containers(pb.ContainerFilter(id=cid))
        assert [c.state for c in listed] == [pb.ContainerState.CONTAINER_RUNNING]
        await cri.stop_pod_sandbox(sandbox_id)
        await cri.remove_pod_sandbox(sandbox_id)


def test_cri_plugin_not_initialized_is_transient() -> None:
    """containerd's CRI plugin answers `server is not initialized yet` (UNKNOWN)
    for a few ms after a (re)start, while it recovers its state: a waiting
    client must retry that, not give up on the runtime."""
    error = grpc.aio.AioRpcError(grpc.StatusCode.UNKNOWN, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                 details="server is not initialized yet")
    mapped = errors.from_rpc_error(error, method="Version", endpoint="unix:///run/x.sock")
    assert isinstance(mapped, RuntimeUnavailable)
    assert "container runtime unavailable during Version" in str(mapped)
