"""SIGHUP (issue 9): the configuration is read again; rotated serving
certificates and token files, log rotation and the shutdown periods are taken
over while pods run; other changes are named for the next restart; a broken
file changes nothing."""

from __future__ import annotations

import asyncio
import http.client
import signal
import ssl
from pathlib import Path

import yaml

from nodeagent.config import AgentConfig
from nodeagent.cri.client import CRIClient
from nodeagent.devenv.env import DevEnv
from nodeagent.reload import take_live
from nodeagent.server.tlscert import ensure_self_signed
from tests.agentproc import AgentProcess, pod_manifest, running
from tests.polling import wait_for


def test_live_settings_are_taken_the_rest_waits() -> None:
    current, new = AgentConfig(), AgentConfig()
    new.container_log_max_files, new.max_pods, new.shutdown_grace_period = 3, 50, 30.0
    applied, later = take_live(current, new)
    assert applied == ["container_log_max_files", "shutdown_grace_period"] and later == ["max_pods"]
    assert (current.container_log_max_files, current.shutdown_grace_period, current.max_pods) == (3, 30.0, 110)


def _write_config(path: Path, **fields: object) -> None:
    path.write_text(yaml.safe_dump({"apiVersion": "kubelet.config.k8s.io/v1beta1",
                                    "kind": "KubeletConfiguration", **fields}))


def _served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    conn.connect()
    try:
        assert conn.sock is not None
        return conn.sock.getpeercert(binary_form=True) or b""
    finally:
        conn.close()


def _status_with_token(port: int, token: str) -> int:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        conn.request("GET", "/pods", headers={"Authorization": f"Bearer {token}"})
        return conn.getresponse().status
    finally:
        conn.close()


def _der(pem_path: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(pem_path).read_text())


def _events(agent: AgentProcess, event: str) -> list[dict]:
    return [line for line in agent.log_lines() if line.get("event") == event]


async def test_sighup_reloads_certificates_tokens_and_limits(devenv: DevEnv, tmp_path: Path,
                                                             cri: CRIClient) -> None:
    cert1, key1 = ensure_self_signed(tmp_path / "pki1", "testnode", ["127.0.0.1"])
    cert2, key2 = ensure_self_signed(tmp_path / "pki2", "testnode", ["127.0.0.1"])
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('old-token,ops,1001,"system:masters"\n')
    config = tmp_path / "config.yaml"
    _write_config(config, tlsCertFile=cert1, tlsPrivateKeyFile=key1, containerLogMaxFiles=5)
    agent = AgentProcess(devenv, tmp_path, "--config", str(config), "--token-auth-file", str(tokens))
    agent.start()
    try:
        agent.write_manifest("p.yaml", pod_manifest("p", devenv.busybox, ["sleep", "3600"]))
        await agent.wait_pod("p", running, timeout=60)
        containers = [c.id for c in await cri.list_containers()]
        assert await asyncio.to_thread(_served_certificate, agent.port) == _der(cert1)
        assert await asyncio.to_thread(_status_with_token, agent.port, "old-token") == 200

        # Rotated certificate and token file, new log limits, and a setting that needs a restart.
        _write_config(config, tlsCertFile=cert2, tlsPrivateKeyFile=key2, containerLogMaxFiles=3, maxPods=50)
        tokens.write_text('new-token,ops,1001,"system:masters"\n')
        assert agent.process is not None
        agent.process.send_signal(signal.SIGHUP)
        reloaded = await wait_for(lambda: _events(agent, "configuration reloaded"), timeout=10,
                                  what="the reload log line")
        assert set(reloaded[0]["applied"]) == {"tlsCertFile", "tlsPrivateKeyFile", "containerLogMaxFiles"}
        later = _events(agent, "changed settings take effect at the next restart")
        assert later and later[0]["fields"] == ["maxPods"]
        assert await asyncio.to_thread(_served_certificate, agent.port) == _der(cert2)
        assert await asyncio.to_thread(_status_with_token, agent.port, "new-token") == 200
        assert await asyncio.to_thread(_status_with_token, agent.port, "old-token") == 401

        # A broken file (a typo'd field) and an unusable certificate: nothing changes.
        config.write_text(config.read_text() + "maxPodz: 3\n")
        agent.process.send_signal(signal.SIGHUP)
        refused = await wait_for(lambda: _events(agent, "configuration not reloaded; the running one stays"),
                                 timeout=10, what="the refused reload")
        assert "unknown field 'maxPodz'" in refused[0]["error"]
        _write_config(config, tlsCertFile=str(tmp_path / "missing.crt"), tlsPrivateKeyFile=key2,
                      containerLogMaxFiles=4)
        agent.process.send_signal(signal.SIGHUP)
        await wait_for(lambda: len(_events(agent, "configuration not reloaded; the running one stays")) == 2,
                       timeout=10, what="the second refused reload")
        assert await asyncio.to_thread(_served_certificate, agent.port) == _der(cert2)
        assert await asyncio.to_thread(_status_with_token, agent.port, "new-token") == 200
        assert len(_events(agent, "configuration reloaded")) == 1

        assert agent.process.poll() is None, "the agent keeps running"
        assert [c.id for c in await cri.list_containers()] == containers, "pods untouched by reloads"
        await agent.wait_pod("p", running)
    finally:
        agent.stop()
        devenv.reset(tmp_path)
