"""The authenticated kubelet API (:10250): TLS, client certificates, static
tokens, and /containerLogs with every parameter, against a running agent."""

from __future__ import annotations

import asyncio
import datetime
import http.client
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nodeagent.devenv.env import DevEnv
from tests.agentproc import NODE_NAME, AgentProcess, container, pod_manifest, running
from tests.polling import wait_for

TOKEN = "s3cret-token-for-tests"


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def make_ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_client(directory: Path, name: str, ca_key: ec.EllipticCurvePrivateKey,
                ca_cert: x509.Certificate, cn: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn, "system:masters"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Api:
    """HTTPS client for the agent's :10250, verifying its self-signed certificate."""

    def __init__(self, agent: AgentProcess, certs: Path) -> None:
        self.agent = agent
        self.certs = certs
        self.server_ca = agent.root_dir / "pki" / "kubelet.crt"

    def context(self, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.server_ca))
        if client:
            ctx.load_cert_chain(str(client[0]), str(client[1]))
        return ctx

    def get(self, path: str, *, token: str | None = None,
            client: tuple[Path, Path] | None = None, timeout: float = 15) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.agent.port, context=self.context(client),
                                           timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    async def aget(self, path: str, **kwargs) -> tuple[int, bytes]:
        return await asyncio.to_thread(self.get, path, **kwargs)


@pytest.fixture
def secured(devenv: DevEnv, tmp_path: Path) -> Iterator[tuple[AgentProcess, Api, dict]]:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_path, ca_key, ca_cert = make_ca(certs, "client-ca")
    _, other_key, other_cert = make_ca(certs, "other-ca")
    good = make_client(certs, "good", ca_key, ca_cert, "admin")
    bad = make_client(certs, "bad", other_key, other_cert, "admin")
    tokens = certs / "tokens.csv"
    tokens.write_text(f'{TOKEN},ops,1001,"ops,viewers"\n')
    agent = AgentProcess(devenv, tmp_path, "--client-ca-file", str(ca_path),
                         "--token-auth-file", str(tokens))
    agent.start()
    try:
        yield agent, Api(agent, certs), {"good": good, "bad": bad}
    finally:
        agent.stop()
        devenv.reset(tmp_path)


async def test_authentication(secured) -> None:
    agent, api, clients = secured
    key = agent.root_dir / "pki" / "kubelet.key"
    assert key.stat().st_mode & 0o077 == 0
    for path in ("/pods", "/healthz", "/metrics", "/stats/summary",
                 "/containerLogs/default/x/y", "/no-such-path"):
        status, body = await api.aget(path)
        assert (status, body) == (401, b"Unauthorized"), path
    assert (await api.aget("/pods", token="wrong"))[0] == 401
    status, body = await api.aget("/pods", token=TOKEN)
    assert status == 200 and json.loads(body)["kind"] == "PodList"
    status, body = await api.aget("/pods", client=clients["good"])
    assert status == 200 and json.loads(body)["kind"] == "PodList"
    status, body = await api.aget("/metrics/resource", client=clients["good"])
    assert status == 200 and b"node_memory_working_set_bytes" in body
    # A client certificate from another CA: the TLS handshake fails, no HTTP answer.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await api.aget("/pods", client=clients["bad"])
    # Plain HTTP on the TLS port gets no API either.
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5)
    conn.request("GET", "/pods")
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.getresponse()
    conn.close()
    # And the read-only port stays as it was.
    assert (await asyncio.to_thread(agent.get_json, "/pods"))["kind"] == "PodList"


async def test_anonymous_when_enabled(devenv: DevEnv, tmp_path: Path) -> None:
    agent = AgentProcess(devenv, tmp_path, "--anonymous-auth=true")
    agent.start()
    try:
        api = Api(agent, tmp_path)
        status, body = await api.aget("/healthz")
        assert (status, body) == (200, b"ok")
    finally:
        agent.stop()
        devenv.reset(tmp_path)


def test_bad_tls_files_refused(devenv: DevEnv, tmp_path: Path) -> None:
    agent = AgentProcess(devenv, tmp_path, "--tls-cert-file", str(tmp_path / "none.crt"),
                         "--tls-private-key-file", str(tmp_path / "none.key"))
    result = subprocess.run(agent.command(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "nodeagent: error: cannot load the serving certificate" in result.stderr
    assert "Traceback" not in result.stderr
    assert not agent.debug_socket.exists()


LOGGER = r"""n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n
echo "run$n err" >&2; sleep 0.3
for i in 1 2 3 4 5; do echo "run$n line$i"; done
if [ $n = 1 ]; then exit 1; fi
exec sleep 3600"""


async def test_container_logs(secured, devenv: DevEnv) -> None:
    agent, api, _ = secured
    agent.write_manifest("logger.yaml", pod_manifest(
        "logger", devenv.busybox, ["sh", "-c", LOGGER], grace=0,
        extra_spec="  volumes:\n  - name: data\n    emptyDir: {}\n",
        container_extra="    volumeMounts:\n    - name: data\n      mountPath: /data\n"))
    name = f"logger-{NODE_NAME}"
    await agent.wait_pod("logger", lambda p: running(p) and container(p, "main")["restartCount"] == 1,
                         timeout=60, what="running after one restart")
    base = f"/containerLogs/default/{name}/main"
    run2 = b"run2 err\n" + b"".join(b"run2 line%d\n" % i for i in range(1, 6))

    async def logs(query: str = "") -> bytes:
        status, body = await api.aget(base + query, token=TOKEN)
        assert status == 200, (query, status, body)
        return body

    async def complete() -> bool:
        return await logs() == run2

    await wait_for(complete, what="the second run's whole log")
    assert await logs("?previous=true") == run2.replace(b"run2", b"run1")
    assert await logs("?tailLines=2") == b"run2 line4\nrun2 line5\n"
    assert await logs("?tailLines=0") == b""
    assert await logs("?limitBytes=7") == b"run2 er"
    stamped = (await logs("?timestamps=true")).decode().splitlines()
    assert len(stamped) == 6
    stamps = [line.split(" ", 1)[0] for line in stamped]
    assert [line.split(" ", 1)[1] for line in stamped] == run2.decode().splitlines()
    assert all(s.endswith("Z") and len(s) >= 20 for s in stamps)
    assert await logs(f"?sinceTime={stamps[3]}") == b"run2 line3\nrun2 line4\nrun2 line5\n"
    assert await logs("?sinceSeconds=3600") == run2
    await asyncio.sleep(1.5)
    assert await logs("?sinceSeconds=1") == b""
    assert await logs("?tailLines=1&timestamps=true&previous=true") == \
        f"{(await logs('?previous=true&timestamps=true')).decode().splitlines()[-1]}\n".encode()
    # Bad parameters and names answer 400/404 with the reason.
    for query, status, text in (("?tailLines=-1", 400, b"tailLines"),
                                ("?sinceSeconds=0", 400, b"sinceSeconds"),
                                ("?limitBytes=0", 400, b"limitBytes"),
                                ("?sinceSeconds=5&sinceTime=2020-01-01T00:00:00Z", 400, b"at most one"),
                                ("?follow=maybe", 400, b"follow")):
        got = await api.aget(base + query, token=TOKEN)
        assert got[0] == status and text in got[1], (query, got)
    got = await api.aget(f"/containerLogs/default/{name}/nope", token=TOKEN)
    assert got[0] == 404 and b'container "nope" not found' in got[1]
    got = await api.aget("/containerLogs/default/nope/main", token=TOKEN)
    assert got[0] == 404 and b'pod "nope"' in got[1]


async def test_container_logs_previous_missing_and_follow(secured, devenv: DevEnv) -> None:
    agent, api, _ = secured
    agent.write_manifest("ticker.yaml", pod_manifest(
        "ticker", devenv.busybox,
        ["sh", "-c", "sleep 1; i=0; while [ $i -lt 30 ]; do echo tick $i; i=$((i+1)); "
                     "sleep 0.1; done; sleep 1"],
        restart_policy="Never", grace=0))
    name = f"ticker-{NODE_NAME}"
    await agent.wait_pod("ticker", running, what="running")
    base = f"/containerLogs/default/{name}/main"
    got = await api.aget(base + "?previous=true", token=TOKEN)
    assert got[0] == 400 and b'previous terminated container "main"' in got[1]
    started = time.monotonic()
    status, body = await api.aget(base + "?follow=true", token=TOKEN, timeout=30)
    assert status == 200
    assert body.decode().splitlines() == [f"tick {i}" for i in range(30)]
    # It returned because the container exited, not at once and not by timeout.
    assert 2.0 < time.monotonic() - started < 15
    # Follow with limitBytes ends at the limit.
    status, body = await api.aget(base + "?follow=true&limitBytes=12", token=TOKEN)
    assert (status, body) == (200, b"tick 0\ntick ")


async def test_log_rotation_and_reading_across_it(devenv: DevEnv, tmp_path: Path) -> None:
    """containerLogMaxSize 4Ki, containerLogMaxFiles 3, checked every 3s: the log is
    rotated with ReopenContainerLog (the container keeps writing to the new file),
    older rotated files are gzipped, at most 3 files remain, and /containerLogs
    reads them all: one unbroken run of line numbers up to the newest."""
    config = tmp_path / "kubelet.yaml"
    config.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                      "containerLogMaxSize: 4Ki\ncontainerLogMaxFiles: 3\n"
                      "containerLogMonitorInterval: 3s\n"
                      "authentication:\n  anonymous:\n    enabled: true\n")
    agent = AgentProcess(devenv, tmp_path, "--config", str(config))
    agent.start()
    try:
        pad = "x" * 80
        agent.write_manifest("chatty.yaml", pod_manifest(
            "chatty", devenv.busybox,
            ["sh", "-c", f'i=0; while true; do echo "n=$i {pad}"; i=$((i+1)); sleep 0.01; done'],
            grace=0))
        await agent.wait_pod("chatty", running, what="running")
        log_dir = next(agent.logs_dir.glob("default_chatty-*")) / "main"

        def files() -> list[str]:
            return sorted(p.name for p in log_dir.iterdir())

        def rotated_twice() -> bool:
            names = files()
            return any(n.endswith(".gz") for n in names) and len(names) == 3

        await wait_for(rotated_twice, timeout=40, interval=0.2, what="two rotations")
        names = files()
        assert names[0] == "0.log"
        assert names[1].startswith("0.log.") and names[1].endswith(".gz")
        assert names[2].startswith("0.log.") and not names[2].endswith(".gz")
        await asyncio.sleep(3.5)  # another round: still 3 files, the oldest dropped
        assert len(files()) == 3 and files()[1] != names[1]
        size = (log_dir / "0.log").stat().st_size
        await asyncio.sleep(0.5)
        assert (log_dir / "0.log").stat().st_size > size  # the runtime writes the reopened file

        api = Api(agent, tmp_path)
        status, body = await api.aget(f"/containerLogs/default/chatty-{NODE_NAME}/main")
        assert status == 200
        numbers = [int(line.split()[0][2:]) for line in body.decode().splitlines()]
        assert numbers[0] > 0, "the oldest rotated file was removed"
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert len(numbers) > 60  # more than one 4Ki file's worth
        status, body = await api.aget(f"/containerLogs/default/chatty-{NODE_NAME}/main?tailLines=3")
        tail = [int(line.split()[0][2:]) for line in body.decode().splitlines()]
        assert len(tail) == 3 and tail == list(range(tail[0], tail[0] + 3)) and tail[0] >= numbers[-3]
        # follow goes on across a rotation: onto the reopened file, nothing lost or repeated.
        before = files()
        status, body = await api.aget(f"/containerLogs/default/chatty-{NODE_NAME}/main"
                                      "?tailLines=1&follow=true&limitBytes=40000", timeout=60)
        assert status == 200 and len(body) == 40000
        followed = [int(line.split()[0][2:]) for line in body.decode().splitlines()[:-1]]
        assert followed == list(range(followed[0], followed[0] + len(followed)))
        assert files()[1:] != before[1:], "no rotation happened while following"
    finally:
        agent.stop()
        devenv.reset(tmp_path)
