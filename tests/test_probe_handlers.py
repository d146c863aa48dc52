"""The HTTP prober's rules against a real HTTP server on localhost: status
ranges, redirects (same host only, at most 10), the 10 KiB body cap, default
and user headers; plus port names and the probe metrics' series."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from nodeagent.api.types import Container, ContainerPort, HTTPGetAction, HTTPHeader
from nodeagent.probes import handlers
from nodeagent.probes.handlers import Result, build_url, request_headers, run_http, run_tcp
from nodeagent.probes.metrics import PROBE_DURATION, PROBE_TOTAL, ProbeMetrics
from nodeagent.probes.worker import SLOTS_PER_PERIOD, first_tick


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="fine")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="x" * 100)

    async def hop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound(f"/hop/{n - 1}" if n > 0 else "/ok")

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://localhost:1/elsewhere")  # same port, other hostname

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"y" * 100_000)
        return resp

    app = web.Application()
    app.router.add_get("/ok", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/hop/{n}", hop)
    app.router.add_get("/away", away)
    app.router.add_get("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def probe(url: str, headers: list[tuple[str, str]] | None = None) -> handlers.Outcome:
    return await run_http(url, headers if headers is not None else request_headers(HTTPGetAction()), 2)


async def test_status_ranges(server) -> None:
    base, _ = server
    assert (await probe(f"{base}/status/200")).result == Result.SUCCESS
    assert (await probe(f"{base}/status/399")).result == Result.SUCCESS
    failed = await probe(f"{base}/status/500")
    assert failed.result == Result.FAILURE
    assert failed.message == "HTTP probe failed with statuscode: 500"
    assert (await probe(f"{base}/status/199")).result == Result.FAILURE


async def test_redirects_same_host_only_and_at_most_ten(server) -> None:
    base, _ = server
    assert (await probe(f"{base}/hop/9")).result == Result.SUCCESS  # 10 redirects: followed
    too_many = await probe(f"{base}/hop/10")
    assert too_many.result == Result.FAILURE and "stopped after 10 redirects" in too_many.message
    away = await probe(f"{base}/away")  # other host: the 302 itself, a success with a warning
    assert away.result == Result.SUCCESS and away.warning
    assert away.message.startswith("Probe terminated redirects")


async def test_body_is_capped_and_headers_are_the_kubelets(server) -> None:
    base, seen = server
    big = await probe(f"{base}/big")
    assert big.result == Result.SUCCESS and len(big.message) == handlers.MAX_BODY
    action = HTTPGetAction(path="/ok", port=80, http_headers=[
        HTTPHeader("X-Custom", "1"), HTTPHeader("Accept", ""), HTTPHeader("Host", "example.test")])
    await probe(f"{base}/ok", request_headers(action))
    await probe(f"{base}/ok")
    custom, default = seen
    assert custom["User-Agent"] == handlers.USER_AGENT and custom["X-Custom"] == "1"
    assert "Accept" not in custom and custom["Host"] == "example.test"
    assert default["Accept"] == "*/*" and default["Host"].startswith("127.0.0.1:")
    assert default["Connection"] == "close"


async def test_connection_refused_and_url_building() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    refused = await probe(f"http://127.0.0.1:{port}/")
    assert refused.result == Result.FAILURE and "connection refused" in refused.message
    tcp = await run_tcp("127.0.0.1", port, 1)
    assert tcp.message == f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    c = Container(name="web", ports=[ContainerPort(name="http", container_port=8080)])
    assert handlers.resolve_port("http", c) == 8080
    with pytest.raises(handlers.PortError, match="couldn't find port: admin in web"):
        handlers.resolve_port("admin", c)
    action = HTTPGetAction(path="healthz", scheme="HTTPS", port="http")
    assert build_url(action, "fd00::5", 8080) == "https://[fd00::5]:8080/healthz"


def test_metrics_series_have_the_kubelets_names_and_labels() -> None:
    m = ProbeMetrics()
    for result in ("successful", "successful", "failed"):
        m.series(probe_type="Readiness", container="main", pod="web", namespace="default",
                 pod_uid="u1").observe(result, 0.02)
    samples = list(m.samples())
    totals = {s.labels["result"]: s.value for s in samples if s.name == PROBE_TOTAL}
    assert totals == {"successful": 2.0, "failed": 1.0}
    assert {s.name for s in samples} >= {f"{PROBE_DURATION}_bucket", f"{PROBE_DURATION}_sum",
                                         f"{PROBE_DURATION}_count"}
    count = next(s for s in samples if s.name == f"{PROBE_DURATION}_count")
    assert count.value == 2.0  # failures are not timed, as in the kubelet
    assert set(count.labels) == {"probe_type", "container", "pod", "namespace"}
    m.forget_pod("default", "web")
    assert list(m.samples()) == []


async def test_https_is_probed_without_verifying_the_certificate(tmp_path) -> None:
    """A self-signed certificate (openssl, as any test CA would be) is accepted."""
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=probe-test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text=request.scheme)

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        outcome = await probe(f"https://127.0.0.1:{port}/")
        assert outcome.result == Result.SUCCESS and outcome.message == "https"
    finally:
        await runner.cleanup()


def test_a_recreated_pods_duration_series_survives_the_old_pods_forget() -> None:
    """The duration series has no pod_uid: the old instance's stop must not
    detach the new instance's (cached) series."""
    m = ProbeMetrics()
    for uid in ("old", "new"):
        m.series(probe_type="Liveness", container="main", pod="re", namespace="default",
                 pod_uid=uid).observe("successful", 0.01)
    m.forget_pod("default", "re", "old")
    m.series(probe_type="Liveness", container="main", pod="re", namespace="default",
             pod_uid="new").observe("successful", 0.01)
    samples = list(m.samples())
    assert {s.labels["pod_uid"] for s in samples if s.name == PROBE_TOTAL} == {"new"}
    assert next(s for s in samples if s.name == f"{PROBE_DURATION}_count").value == 3.0
    m.forget_pod("default", "re", "new")
    assert list(m.samples()) == []


def test_first_ticks_are_jittered_over_the_period_on_the_slot_grid() -> None:
    period = 10.0
    slot = period / SLOTS_PER_PERIOD
    ticks = [first_tick(1000.0, period) for _ in range(500)]
    assert all(1000.0 <= t <= 1000.0 + period + slot for t in ticks)
    assert all(abs(t / slot - round(t / slot)) < 1e-6 for t in ticks)
    assert len(set(ticks)) > SLOTS_PER_PERIOD // 2  # spread, not in lockstep
