"""The kubelet-compatible local API over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from nodeagent.api.types import Container, ObjectMeta, Pod, PodSpec
from nodeagent.api.codec import encode
from nodeagent.server.local import BoundPorts, HealthCheck, ListenError, LocalServer


def bound_socket() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1 (not yet listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with bound_socket() as sock:
        return int(sock.getsockname()[1])


def sample_pod() -> Pod:
    return Pod(metadata=ObjectMeta(name="web-node1", namespace="default", uid="abc"),
               spec=PodSpec(containers=[Container(name="app", image="busybox")],
                            node_name="node1"))


class State:
    def __init__(self) -> None:
        self.checks: list[HealthCheck] = [HealthCheck("syncloop", True)]
        self.pods: list[Pod] = [sample_pod()]
        self.extra: dict[str, Any] = {"errors": [], "warnings": []}
        self.explode = False

    def get_pods(self) -> list[dict]:
        if self.explode:
            raise RuntimeError("boom")
        return [encode(p) for p in self.pods]


@pytest.fixture
def state() -> State:
    return State()


@pytest.fixture
async def server(state: State) -> AsyncIterator[LocalServer]:
    srv = LocalServer(pods=state.get_pods, checks=lambda: state.checks, extra=lambda: state.extra,
                      healthz_socket=bound_socket(), read_only_socket=bound_socket())
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def url(port: int | None, path: str) -> str:
    assert port is not None
    return f"http://127.0.0.1:{port}{path}"


async def get(http: aiohttp.ClientSession, port: int | None, path: str,
              method: str = "GET") -> tuple[int, str, str]:
    async with http.request(method, url(port, path)) as resp:
        return resp.status, resp.content_type, await resp.text()


async def test_healthz_ok_on_both_ports(server: LocalServer, http: aiohttp.ClientSession) -> None:
    ports = server.bound_ports
    assert ports.healthz and ports.read_only and ports.healthz != ports.read_only
    for port in (ports.healthz, ports.read_only):
        assert await get(http, port, "/healthz") == (200, "text/plain", "ok")


async def test_healthz_verbose_lists_checks(server: LocalServer,
                                            http: aiohttp.ClientSession) -> None:
    status, _, body = await get(http, server.bound_ports.healthz, "/healthz?verbose")
    assert status == 200
    assert body == "[+]ping ok\n[+]syncloop ok\nhealthz check passed\n"


async def test_healthz_failure_format(server: LocalServer, state: State,
                                      http: aiohttp.ClientSession) -> None:
    state.checks = [HealthCheck("syncloop", False, "no sync loop iteration for 5m"),
                    HealthCheck("runtime", True)]
    status, ctype, body = await get(http, server.bound_ports.healthz, "/healthz")
    assert (status, ctype) == (500, "text/plain")
    assert body == ("[+]ping ok\n[-]syncloop failed: reason withheld\n[+]runtime ok\n"
                    "healthz check failed\n")
    # The reason is served on the check's own path, as upstream does.
    status, _, body = await get(http, server.bound_ports.healthz, "/healthz/syncloop")
    assert (status, body) == (500, "internal server error: no sync loop iteration for 5m\n")
    assert await get(http, server.bound_ports.healthz, "/healthz/runtime") == \
        (200, "text/plain", "ok")
    assert (await get(http, server.bound_ports.healthz, "/healthz/nope"))[0] == 404
    # Excluding the failing check makes the aggregate pass.
    status, _, body = await get(http, server.bound_ports.healthz,
                                "/healthz?verbose&exclude=syncloop")
    assert status == 200
    assert body == ("[+]ping ok\n[+]syncloop excluded: ok\n[+]runtime ok\n"
                    "healthz check passed\n")


async def test_pods_is_a_podlist(server: LocalServer, http: aiohttp.ClientSession) -> None:
    async with http.get(url(server.bound_ports.read_only, "/pods")) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["kind"] == "PodList"
    assert body["apiVersion"] == "v1"
    assert body["metadata"] == {}
    [item] = body["items"]
    assert item["apiVersion"] == "v1" and item["kind"] == "Pod"
    assert item["metadata"]["name"] == "web-node1"
    assert item["metadata"]["uid"] == "abc"
    assert item["spec"]["containers"][0]["image"] == "busybox"
    assert item["spec"]["nodeName"] == "node1"


async def test_pods_not_on_healthz_port(server: LocalServer, http: aiohttp.ClientSession) -> None:
    status, _, body = await get(http, server.bound_ports.healthz, "/pods")
    assert (status, body) == (404, "404 page not found\n")


async def test_manifests_endpoint(server: LocalServer, state: State,
                                  http: aiohttp.ClientSession) -> None:
    state.extra = {"errors": ["bad.yaml: document 0: boom"], "warnings": []}
    async with http.get(url(server.bound_ports.read_only, "/nodeagent/manifests")) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        assert await resp.json() == state.extra


async def test_manifests_404_without_extra(http: aiohttp.ClientSession) -> None:
    async with LocalServer(pods=list, checks=list, healthz_port=0,
                           read_only_socket=bound_socket()) as srv:
        status, _, _ = await get(http, srv.bound_ports.read_only, "/nodeagent/manifests")
        assert status == 404


async def test_unknown_path_404_and_wrong_method_405(server: LocalServer,
                                                     http: aiohttp.ClientSession) -> None:
    port = server.bound_ports.read_only
    assert (await get(http, port, "/nope"))[0] == 404
    assert (await get(http, port, "/pods", "POST"))[0] == 405
    assert (await get(http, port, "/healthz", "DELETE"))[0] == 405
    assert (await get(http, server.bound_ports.healthz, "/healthz", "PUT"))[0] == 405


async def test_handler_exception_is_500_and_server_survives(
        server: LocalServer, state: State, http: aiohttp.ClientSession) -> None:
    state.explode = True
    status, _, body = await get(http, server.bound_ports.read_only, "/pods")
    assert (status, body) == (500, "internal server error\n")
    state.explode = False
    assert (await get(http, server.bound_ports.read_only, "/pods"))[0] == 200


async def test_failing_checks_callable_is_500(state: State, http: aiohttp.ClientSession) -> None:
    def broken() -> list[HealthCheck]:
        raise RuntimeError("checks broke")
    async with LocalServer(pods=list, checks=broken, healthz_socket=bound_socket(),
                           read_only_port=0) as srv:
        assert (await get(http, srv.bound_ports.healthz, "/healthz"))[0] == 500


async def connection_refused(http: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with http.get(url(port, "/healthz")):
            return False
    except aiohttp.ClientConnectorError:
        return True


async def test_port_zero_disables_listener(http: aiohttp.ClientSession) -> None:
    read_only = free_port()
    unused = free_port()
    srv = LocalServer(pods=list, checks=list, healthz_port=0, read_only_port=read_only)
    await srv.start()
    try:
        assert srv.bound_ports == BoundPorts(healthz=None, read_only=read_only)
        assert await get(http, read_only, "/healthz") == (200, "text/plain", "ok")
        assert await connection_refused(http, unused)
    finally:
        await srv.stop()
    assert srv.bound_ports == BoundPorts()
    assert await connection_refused(http, read_only)


async def test_both_disabled_starts_nothing() -> None:
    async with LocalServer(pods=list, checks=list, healthz_port=0, read_only_port=0) as srv:
        assert srv.bound_ports == BoundPorts()


async def test_port_in_use_is_listen_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        srv = LocalServer(pods=list, checks=list, healthz_port=port, read_only_port=0)
        with pytest.raises(ListenError, match=f"127.0.0.1:{port}"):
            await srv.start()
        assert srv.bound_ports == BoundPorts()


@pytest.mark.parametrize("bad", [-1, 65536])
def test_invalid_port_rejected(bad: int) -> None:
    factory: Callable[[], list[Any]] = list
    with pytest.raises(ValueError):
        LocalServer(pods=factory, checks=factory, healthz_port=bad)


async def test_pods_follows_each_changed_pod(http: aiohttp.ClientSession) -> None:
    # As the pod manager does: the same list while nothing changed, the same
    # object for a pod that did not change, a new one for a pod that did.
    web_pod, db_pod = encode(sample_pod()), {"kind": "Pod", "metadata": {"name": "db", "uid": "d"},
                                             "status": {"phase": "Pending"}}
    current = [web_pod, db_pod]
    async with LocalServer(pods=lambda: current, checks=list, healthz_port=0,
                           read_only_socket=bound_socket()) as srv:
        port = srv.bound_ports.read_only
        first = (await get(http, port, "/pods"))[2]
        current = [web_pod, {**db_pod, "status": {"phase": "Running", "podIP": "10.0.0.7"}}]
        second = (await get(http, port, "/pods"))[2]
        current = [current[1]]
        third = (await get(http, port, "/pods"))[2]
    podlist = {"kind": "PodList", "apiVersion": "v1", "metadata": {}}
    assert json.loads(first) == {**podlist, "items": [web_pod, db_pod]}
    assert json.loads(second) == {**podlist, "items": [web_pod, {**db_pod, "status": {
        "phase": "Running", "podIP": "10.0.0.7"}}]}
    assert json.loads(third) == {**podlist, "items": [{**db_pod, "status": {"phase": "Running",
                                                                            "podIP": "10.0.0.7"}}]}
    # The compact form a single json.dumps of the list gives.
    assert third == json.dumps({**podlist, "items": [current[0]]}, separators=(",", ":"))
