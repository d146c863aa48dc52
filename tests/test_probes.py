"""Probes against real containers (busybox sh, httpd, nc) and a real gRPC
health server, observed through /pods: readiness flips Ready, liveness and
startup failures restart containers, at the times the probe fields imply.

Pods of one test run in parallel; every probe uses periodSeconds 1. A
probe's first run comes after a random fraction of a period (jitter), so
each timing check allows one period of tolerance plus the restart itself.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nodeagent.cri.client import CRIClient
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv.env import DevEnv
from nodeagent.probes.handlers import USER_AGENT
from tests.agentproc import AgentProcess, container
from tests.test_agent_containers import exec_in

SLACK = 1.5  # kill + restart + observation, on a loaded 2-CPU machine


def probe_pod(name: str, image: str, command: list[str], probes: str, *, extra: str = "",
              spec_extra: str = "", grace: int = 1) -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: {grace}
{spec_extra}  containers:
  - name: main
    image: {image}
    command: {json.dumps(command)}
{extra}{probes}"""


def cond(pod: dict[str, Any], kind: str) -> str:
    return next((c["status"] for c in pod.get("status", {}).get("conditions", []) if c["type"] == kind), "")


def restarts(pod: dict[str, Any]) -> int:
    return container(pod, "main").get("restartCount", 0)


def is_running(pod: dict[str, Any]) -> bool:
    return "running" in container(pod, "main").get("state", {})


class Timeline:
    """When (monotonic, seen from the test) each pod first showed a property."""

    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent

    async def when(self, name: str, predicate: Callable[[dict[str, Any]], bool],
                   timeout: float = 30.0, what: str = "") -> tuple[float, dict[str, Any]]:
        pod = await self.agent.wait_pod(name, predicate, timeout=timeout, what=what)
        return time.monotonic(), pod


async def running_since(agent: AgentProcess, name: str) -> float:
    """The monotonic time the test first saw the container running."""
    await agent.wait_pod(name, is_running, timeout=60, what="running")
    return time.monotonic()


async def never(agent: AgentProcess, name: str, predicate: Callable[[dict[str, Any]], bool],
                seconds: float) -> dict[str, Any]:
    """Hold that `predicate` stays false for `seconds`."""
    deadline = time.monotonic() + seconds
    pod: dict[str, Any] = {}
    while time.monotonic() < deadline:
        pod = await agent.pod(name) or {}
        assert not predicate(pod), json.dumps(pod.get("status"), indent=1)
        await asyncio.sleep(0.1)
    return pod


def log_time(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def seconds_to_kill(agent: AgentProcess, pod: str, message: str) -> float:
    """From the container's start to the agent's decision to kill it (agent log, ms resolution)."""
    lines = agent.log_lines()
    kill = next(line for line in lines if line.get("event") == "event"
                and line.get("reason") == "Killing" and line.get("message") == message
                and line.get("pod", "").startswith(f"default/{pod}-"))
    start = max(log_time(line) for line in lines
                if line.get("event") == "container started" and line.get("pod", "").startswith(f"default/{pod}-")
                and log_time(line) <= log_time(kill))
    return log_time(kill) - start


def events(agent: AgentProcess, reason: str, pod: str = "") -> list[dict[str, Any]]:
    return [line for line in agent.log_lines()
            if line.get("event") == "event" and line.get("reason") == reason
            and (not pod or line.get("pod", "").startswith(f"default/{pod}-"))]


# -- exec ---------------------------------------------------------------------------

async def test_exec_probes_pass_fail_and_time_out(agent: AgentProcess, devenv: DevEnv,
                                                  cri: CRIClient) -> None:
    sleeper = ["sh", "-c", "exec sleep 3600"]
    agent.write_manifest("ok.yaml", probe_pod("exec-ok", devenv.busybox, sleeper, """\
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
    livenessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
"""))
    agent.write_manifest("fail.yaml", probe_pod("exec-fail", devenv.busybox, sleeper, """\
    livenessProbe: {exec: {command: [sh, -c, "echo sick; exit 3"]}, periodSeconds: 1, failureThreshold: 3}
"""))
    agent.write_manifest("slow.yaml", probe_pod("exec-slow", devenv.busybox, sleeper, """\
    readinessProbe: {exec: {command: [sleep, "30"]}, periodSeconds: 1, timeoutSeconds: 1}
"""))
    # ignores SIGTERM; the pod's 60 s grace would hold it, the probe's 1 s does not
    agent.write_manifest("tgps.yaml", probe_pod("exec-tgps", devenv.busybox, [
        "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"], """\
    livenessProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 1
      terminationGracePeriodSeconds: 1
""", grace=60))
    started = dict(zip(["exec-ok", "exec-fail", "exec-slow", "exec-tgps"], await asyncio.gather(
        running_since(agent, "exec-ok"), running_since(agent, "exec-fail"),
        running_since(agent, "exec-slow"), running_since(agent, "exec-tgps"))))

    # passing: Ready within one period (+ jitter), and it stays so without restarts
    t, pod = await Timeline(agent).when("exec-ok", lambda p: cond(p, "Ready") == "True", 10)
    assert t - started["exec-ok"] <= 2 * 1 + SLACK
    assert container(pod, "main")["ready"] is True and cond(pod, "ContainersReady") == "True"

    # failing liveness: killed after 3 failures (2..3 s after start) and restarted
    _, pod = await Timeline(agent).when("exec-fail", lambda p: restarts(p) >= 1, 20)
    killed = seconds_to_kill(agent, "exec-fail", "Container main failed liveness probe, will be restarted")
    assert 2 <= killed <= 3 + 1 + SLACK, killed
    last = container(pod, "main")["lastState"]["terminated"]
    assert last["message"] == "Container main failed liveness probe, will be restarted"
    assert last["exitCode"] == 137
    assert any("Liveness probe failed: sick" in e["message"] for e in events(agent, "Unhealthy", "exec-fail"))
    assert any(e["message"] == "Container main failed liveness probe, will be restarted"
               for e in events(agent, "Killing", "exec-fail"))

    # timing out readiness: never Ready, not restarted, and no probe process left behind
    pod = await never(agent, "exec-slow", lambda p: cond(p, "Ready") == "True", 3.5)
    assert restarts(pod) == 0 and container(pod, "main")["ready"] is False
    assert cond(pod, "ContainersReady") == "False"
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [main]"
    ps, _ = await exec_in(cri, pod, "main", "ps", "-o", "pid,args")
    assert ps.count("sleep 30") <= 1, ps  # at most the probe running right now
    timeouts = [e for e in events(agent, "Unhealthy", "exec-slow") if "timed out" in e["message"]]
    assert timeouts, "no timeout events"

    # the probe's terminationGracePeriodSeconds, not the pod's, bounds the kill
    _, pod = await Timeline(agent).when("exec-tgps", lambda p: restarts(p) >= 1, 20)
    last = container(pod, "main")["lastState"]["terminated"]
    assert last["exitCode"] == 137
    kill = next(log_time(e) for e in events(agent, "Killing", "exec-tgps"))
    finished = datetime.fromisoformat(last["finishedAt"].replace("Z", "+00:00")).timestamp()
    # SIGKILL after the probe's 1 s, not the pod's 60 s (finishedAt has whole seconds, and
    # containerd takes a moment to stop a container on this busy machine)
    assert finished - kill <= 1 + 1 + 4 * SLACK, finished - kill


def probe_runs(agent: AgentProcess, pod: str, kind: str) -> list[dict[str, Any]]:
    return [line for line in agent.log_lines() if line.get("event") == "probe"
            and line.get("probe") == kind and line.get("pod", "").startswith(f"default/{pod}-")]


# -- httpGet --------------------------------------------------------------------------

CGI_UA = """#!/bin/sh
echo "$HTTP_USER_AGENT|$HTTP_X_PROBE|$HTTP_ACCEPT" > /tmp/ua
printf 'Content-Type: text/plain\\r\\n\\r\\nhello'
"""
CGI_SLOW = """#!/bin/sh
sleep 5
printf 'Content-Type: text/plain\\r\\n\\r\\nslow'
"""


@pytest.fixture
def www(tmp_path):
    root = tmp_path / "www"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "index.html").write_text("ok\n")
    for name, text in (("ua", CGI_UA), ("slow", CGI_SLOW)):
        (root / "cgi-bin" / name).write_text(text)
        (root / "cgi-bin" / name).chmod(0o755)
    return root


async def test_http_probes_pass_fail_and_time_out(agent: AgentProcess, devenv: DevEnv,
                                                  cri: CRIClient, www) -> None:
    httpd = ["httpd", "-f", "-p", "8080", "-h", "/www"]
    mount = f"""\
    ports: [{{name: http, containerPort: 8080}}]
    volumeMounts: [{{name: www, mountPath: /www}}]
"""
    volume = f"""\
  volumes: [{{name: www, hostPath: {{path: {www}, type: Directory}}}}]
"""
    agent.write_manifest("ok.yaml", probe_pod("http-ok", devenv.busybox, httpd, """\
    readinessProbe:
      httpGet: {path: /cgi-bin/ua, port: http, httpHeaders: [{name: X-Probe, value: yes-really}]}
      periodSeconds: 1
    livenessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
""", extra=mount, spec_extra=volume))
    agent.write_manifest("fail.yaml", probe_pod("http-fail", devenv.busybox, httpd, """\
    livenessProbe: {httpGet: {path: /missing, port: http}, periodSeconds: 1, failureThreshold: 2}
""", extra=mount, spec_extra=volume))
    agent.write_manifest("slow.yaml", probe_pod("http-slow", devenv.busybox, httpd, """\
    livenessProbe:
      httpGet: {path: /cgi-bin/slow, port: http}
      periodSeconds: 1
      timeoutSeconds: 1
      failureThreshold: 2
""", extra=mount, spec_extra=volume))
    started = dict(zip(["http-ok", "http-fail", "http-slow"], await asyncio.gather(
        running_since(agent, "http-ok"), running_since(agent, "http-fail"),
        running_since(agent, "http-slow"))))

    t, pod = await Timeline(agent).when("http-ok", lambda p: cond(p, "Ready") == "True", 10)
    assert t - started["http-ok"] <= 2 + SLACK
    seen, _ = await exec_in(cri, pod, "main", "cat", "/tmp/ua")
    assert seen.strip() == f"{USER_AGENT}|yes-really|*/*"
    # readiness turning bad: NotReady after failureThreshold (3) failures, no restart
    (www / "cgi-bin" / "ua").unlink()
    broken = time.monotonic()
    t, pod = await Timeline(agent).when("http-ok", lambda p: cond(p, "Ready") == "False", 10)
    assert 2 - 0.5 <= t - broken <= 3 + 1 + SLACK, t - broken
    assert container(pod, "main")["ready"] is False and restarts(pod) == 0

    _, pod = await Timeline(agent).when("http-fail", lambda p: restarts(p) >= 1, 20)
    killed = seconds_to_kill(agent, "http-fail", "Container main failed liveness probe, will be restarted")
    assert 1 <= killed <= 2 + 1 + SLACK, killed
    assert any(e["message"] == "Liveness probe failed: HTTP probe failed with statuscode: 404"
               for e in events(agent, "Unhealthy", "http-fail"))

    _, pod = await Timeline(agent).when("http-slow", lambda p: restarts(p) >= 1, 20)
    killed = seconds_to_kill(agent, "http-slow", "Container main failed liveness probe, will be restarted")
    # each probe lasts its 1 s timeout, so the second one comes a period later than that
    assert 1 + 1 <= killed <= 2 * (1 + 1) + 1 + SLACK, killed
    slow = [r for r in probe_runs(agent, "http-slow", "Liveness") if r["result"] == "failed"]
    assert slow and all(950 <= r["ms"] <= 1300 for r in slow), [r["ms"] for r in slow]
    assert any("context deadline exceeded" in e["message"] for e in events(agent, "Unhealthy", "http-slow"))


# -- tcpSocket --------------------------------------------------------------------------

@pytest.fixture
def blackhole() -> AsyncIterator[int]:
    """A host port whose SYNs go unanswered: a listener that never accepts,
    its accept queue already full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        with pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", port))
    finally:
        probe.close()
    yield port
    for s in [*fillers, listener]:
        s.close()


async def test_tcp_probes_pass_fail_and_time_out(agent: AgentProcess, devenv: DevEnv,
                                                 blackhole: int) -> None:
    agent.write_manifest("ok.yaml", probe_pod("tcp-ok", devenv.busybox,
                                              ["nc", "-ll", "-p", "8080", "-e", "true"], """\
    ports: [{name: svc, containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: svc}, periodSeconds: 1}
    livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
"""))
    agent.write_manifest("fail.yaml", probe_pod("tcp-fail", devenv.busybox, ["sleep", "3600"], """\
    livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1, failureThreshold: 2}
"""))
    agent.write_manifest("slow.yaml", probe_pod("tcp-slow", devenv.busybox, ["sleep", "3600"], f"""\
    livenessProbe:
      tcpSocket: {{host: 127.0.0.1, port: {blackhole}}}
      periodSeconds: 1
      timeoutSeconds: 1
      failureThreshold: 2
"""))
    started = dict(zip(["tcp-ok", "tcp-fail", "tcp-slow"], await asyncio.gather(
        running_since(agent, "tcp-ok"), running_since(agent, "tcp-fail"),
        running_since(agent, "tcp-slow"))))

    t, pod = await Timeline(agent).when("tcp-ok", lambda p: cond(p, "Ready") == "True", 10)
    assert t - started["tcp-ok"] <= 2 + SLACK
    await never(agent, "tcp-ok", lambda p: restarts(p) > 0, 2)

    await Timeline(agent).when("tcp-fail", lambda p: restarts(p) >= 1, 20)
    killed = seconds_to_kill(agent, "tcp-fail", "Container main failed liveness probe, will be restarted")
    assert 1 <= killed <= 2 + 1 + SLACK, killed
    assert any("connect: connection refused" in e["message"] for e in events(agent, "Unhealthy", "tcp-fail"))

    await Timeline(agent).when("tcp-slow", lambda p: restarts(p) >= 1, 20)
    killed = seconds_to_kill(agent, "tcp-slow", "Container main failed liveness probe, will be restarted")
    assert 1 + 1 <= killed <= 2 * (1 + 1) + 1 + SLACK, killed
    slow = [r for r in probe_runs(agent, "tcp-slow", "Liveness") if r["result"] == "failed"]
    assert slow and all(950 <= r["ms"] <= 1300 for r in slow), [r["ms"] for r in slow]
    assert any("i/o timeout" in e["message"] for e in events(agent, "Unhealthy", "tcp-slow"))


# -- grpc ---------------------------------------------------------------------------------

class Health(health_pb2_grpc.HealthServicer):
    """grpc.health.v1: "" serves, "down" does not, "slow" answers after 5 s."""

    async def Check(self, request, context):  # noqa: N802 (grpc method name)
        if request.service == "slow":
            await asyncio.sleep(5)
        status = (health_pb2.HealthCheckResponse.NOT_SERVING if request.service == "down"
                  else health_pb2.HealthCheckResponse.SERVING)
        return health_pb2.HealthCheckResponse(status=status)


@pytest.fixture
async def health_server() -> AsyncIterator[int]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(Health(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(0)


async def test_grpc_probes_pass_fail_and_time_out(agent: AgentProcess, devenv: DevEnv,
                                                  health_server: int) -> None:
    # hostNetwork: the pod IP is the node IP (127.0.0.1 here), where the health server listens
    host_net = "  hostNetwork: true\n"
    sleeper = ["sleep", "3600"]
    agent.write_manifest("ok.yaml", probe_pod("grpc-ok", devenv.busybox, sleeper, f"""\
    readinessProbe: {{grpc: {{port: {health_server}}}, periodSeconds: 1}}
""", spec_extra=host_net))
    agent.write_manifest("fail.yaml", probe_pod("grpc-fail", devenv.busybox, sleeper, f"""\
    livenessProbe: {{grpc: {{port: {health_server}, service: down}}, periodSeconds: 1, failureThreshold: 2}}
""", spec_extra=host_net))
    agent.write_manifest("slow.yaml", probe_pod("grpc-slow", devenv.busybox, sleeper, f"""\
    livenessProbe:
      grpc: {{port: {health_server}, service: slow}}
      periodSeconds: 1
      timeoutSeconds: 1
      failureThreshold: 2
""", spec_extra=host_net))
    started = dict(zip(["grpc-ok", "grpc-fail", "grpc-slow"], await asyncio.gather(
        running_since(agent, "grpc-ok"), running_since(agent, "grpc-fail"),
        running_since(agent, "grpc-slow"))))

    t, _ = await Timeline(agent).when("grpc-ok", lambda p: cond(p, "Ready") == "True", 10)
    assert t - started["grpc-ok"] <= 2 + SLACK

    await Timeline(agent).when("grpc-fail", lambda p: restarts(p) >= 1, 20)
    killed = seconds_to_kill(agent, "grpc-fail", "Container main failed liveness probe, will be restarted")
    assert 1 <= killed <= 2 + 1 + SLACK, killed
    assert any(e["message"] == 'Liveness probe failed: service unhealthy (responded with "NOT_SERVING")'
               for e in events(agent, "Unhealthy", "grpc-fail"))

    await Timeline(agent).when("grpc-slow", lambda p: restarts(p) >= 1, 20)
    killed = seconds_to_kill(agent, "grpc-slow", "Container main failed liveness probe, will be restarted")
    assert 1 + 1 <= killed <= 2 * (1 + 1) + 1 + SLACK, killed
    slow = [r for r in probe_runs(agent, "grpc-slow", "Liveness") if r["result"] == "failed"]
    assert slow and all(950 <= r["ms"] <= 1300 for r in slow), [r["ms"] for r in slow]
    assert any("health rpc did not complete within 1s" in e["message"]
               for e in events(agent, "Unhealthy", "grpc-slow"))


# -- startup gating --------------------------------------------------------------------

async def test_startup_probe_delays_liveness_and_restarts_when_it_never_succeeds(
        agent: AgentProcess, devenv: DevEnv) -> None:
    # Liveness would kill at its first failure: it must not run before startup succeeded.
    agent.write_manifest("late.yaml", probe_pod("startup-late", devenv.busybox,
                                                ["sh", "-c", "sleep 5; touch /tmp/up; exec sleep 3600"], """\
    startupProbe: {exec: {command: [test, -f, /tmp/up]}, periodSeconds: 1, failureThreshold: 30}
    livenessProbe: {exec: {command: [test, -f, /tmp/up]}, periodSeconds: 1, failureThreshold: 1}
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
"""))
    agent.write_manifest("never.yaml", probe_pod("startup-never", devenv.busybox, ["sleep", "3600"], """\
    startupProbe: {exec: {command: ["false"]}, periodSeconds: 1, failureThreshold: 3}
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
"""))
    late_start, never_start = await asyncio.gather(running_since(agent, "startup-late"),
                                                   running_since(agent, "startup-never"))

    # not started (and so not ready) until the startup probe passed, after ~5 s
    def started(p: dict[str, Any]) -> bool:
        return container(p, "main").get("started") is True
    pod = await never(agent, "startup-late", started, 4.0 - (time.monotonic() - late_start))
    assert container(pod, "main")["ready"] is False
    t, pod = await Timeline(agent).when("startup-late", started, 10)
    assert 5 - 0.5 <= t - late_start <= 5 + 1 + SLACK, t - late_start
    await Timeline(agent).when("startup-late", lambda p: cond(p, "Ready") == "True", 5)
    pod = await never(agent, "startup-late", lambda p: restarts(p) > 0, 2)
    assert not events(agent, "Unhealthy", "startup-late") or all(
        "Startup probe failed" in e["message"] for e in events(agent, "Unhealthy", "startup-late"))

    # a startup probe that never succeeds restarts the container; never started, never ready
    await Timeline(agent).when("startup-never", lambda p: restarts(p) >= 1, 20)
    killed = seconds_to_kill(agent, "startup-never", "Container main failed startup probe, will be restarted")
    assert 2 <= killed <= 3 + 1 + SLACK, killed
    assert not [e for e in events(agent, "Unhealthy", "startup-never") if "Readiness" in e["message"]]
    assert not [r for r in probe_runs(agent, "startup-never", "Readiness")]


# -- lifecycle hooks --------------------------------------------------------------------

async def test_post_start_runs_before_the_container_counts_as_running(
        agent: AgentProcess, devenv: DevEnv, cri: CRIClient) -> None:
    agent.write_manifest("ps.yaml", probe_pod("poststart", devenv.busybox, [
        "sh", "-c", "while [ ! -f /tmp/hook ]; do sleep 0.1; done; cat /tmp/hook > /tmp/seen; "
                    "exec sleep 3600"], """\
    lifecycle:
      postStart: {exec: {command: [sh, -c, "sleep 2; echo from-hook > /tmp/hook"]}}
"""))
    agent.write_manifest("bad.yaml", probe_pod("poststart-bad", devenv.busybox, ["sleep", "3600"], """\
    lifecycle:
      postStart: {exec: {command: [sh, -c, "echo nope; exit 7"]}}
"""))
    pod = await agent.wait_pod("poststart", is_running, timeout=30)
    # the first status that shows it running comes after the hook wrote its file
    hook_file, code = await exec_in(cri, pod, "main", "cat", "/tmp/hook")
    assert code == 0 and hook_file == "from-hook\n"
    assert container(pod, "main")["started"] is True
    async def seen() -> bool:
        out, code = await exec_in(cri, pod, "main", "cat", "/tmp/seen")
        return code == 0 and out == "from-hook\n"
    deadline = time.monotonic() + 5
    while not await seen():
        assert time.monotonic() < deadline, "the main process never read the hook's file"
        await asyncio.sleep(0.1)
    started = [line for line in agent.log_lines() if line.get("event") == "container started"
               and line.get("pod", "").startswith("default/poststart-")]
    running_at = datetime.fromisoformat(
        container(pod, "main")["state"]["running"]["startedAt"].replace("Z", "+00:00")).timestamp()
    assert started and abs(log_time(started[0]) - running_at) < 1.5

    # a failing hook: FailedPostStartHook, the container killed and restarted
    pod = await agent.wait_pod("poststart-bad", lambda p: restarts(p) >= 1, timeout=30)
    failed = events(agent, "FailedPostStartHook", "poststart-bad")
    assert failed and "exited with 7: nope" in failed[0]["message"]
    assert any(e["message"].startswith("PostStartHook failed")
               for e in events(agent, "Killing", "poststart-bad"))
    assert not is_running(await agent.pod("poststart-bad")) or restarts(pod) >= 1


async def test_pre_stop_runs_before_the_stop_signal(agent: AgentProcess, devenv: DevEnv,
                                                    cri: CRIClient, tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    trap = ("trap 'cat /proc/uptime > /data/{0}; {1}' TERM; "
            "while true; do sleep 0.1; done")
    volume = f"""\
  volumes: [{{name: data, hostPath: {{path: {data}, type: Directory}}}}]
"""
    mount = "    volumeMounts: [{name: data, mountPath: /data}]\n"
    # preStop sleep 3 s inside a 10 s grace period: SIGTERM 3 s after the kill began
    agent.write_manifest("sleep.yaml", probe_pod("prestop", devenv.busybox,
                                                 ["sh", "-c", trap.format("term", "exit 0")], """\
    lifecycle:
      preStop: {sleep: {seconds: 3}}
""", extra=mount, spec_extra=volume, grace=10))
    # preStop longer than the grace period: abandoned at 3 s, SIGTERM, SIGKILL 2 s later
    agent.write_manifest("long.yaml", probe_pod("prestop-long", devenv.busybox,
                                                ["sh", "-c", trap.format("term-long", "true")], """\
    lifecycle:
      preStop: {exec: {command: [sh, -c, "cat /proc/uptime > /data/hook-long; sleep 30"]}}
""", extra=mount, spec_extra=volume, grace=3))
    _, long_pod = await asyncio.gather(agent.wait_pod("prestop", is_running),
                                       agent.wait_pod("prestop-long", is_running))

    def uptime() -> float:
        return float(open("/proc/uptime").read().split()[0])

    async def stopped_at(uid: str) -> float:
        """When the runtime stopped showing a running container of the pod."""
        selector = pb.ContainerFilter(label_selector={"io.kubernetes.pod.uid": uid})
        while any(c.state == pb.ContainerState.CONTAINER_RUNNING for c in await cri.list_containers(selector)):
            await asyncio.sleep(0.05)
        return uptime()

    removed_at = uptime()
    agent.remove_manifest("sleep.yaml")
    agent.remove_manifest("long.yaml")
    long_stopped = asyncio.ensure_future(stopped_at(long_pod["metadata"]["uid"]))
    await wait_file(data / "term", 15)
    term = float((data / "term").read_text().split()[0])
    assert 3 - 0.1 <= term - removed_at <= 3 + SLACK, term - removed_at

    await wait_file(data / "term-long", 15)
    hook = float((data / "hook-long").read_text().split()[0])
    term = float((data / "term-long").read_text().split()[0])
    assert hook < term and 3 - 0.1 <= term - removed_at <= 3 + SLACK, (hook, term, removed_at)
    gone = await asyncio.wait_for(long_stopped, 15)
    # the container ignored SIGTERM: it got the 2 s minimum, then SIGKILL
    assert 2 - 0.1 <= gone - term <= 2 + 2 * SLACK, gone - term
    await agent.wait_gone("prestop", 15)
    assert [e for e in events(agent, "Killing", "prestop") if e["message"] == "Stopping container main"]


async def wait_file(path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} not written in {timeout}s"
        await asyncio.sleep(0.05)


async def test_sidecar_readiness_counts_for_the_pod(agent: AgentProcess, devenv: DevEnv) -> None:
    agent.write_manifest("side.yaml", f"""\
apiVersion: v1
kind: Pod
metadata:
  name: sidecar-ready
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: proxy
    image: {devenv.busybox}
    restartPolicy: Always
    command: [sh, -c, "sleep 3; touch /tmp/ready; exec sleep 3600"]
    readinessProbe: {{exec: {{command: [test, -f, /tmp/ready]}}, periodSeconds: 1}}
  - name: warmup
    image: {devenv.busybox}
    restartPolicy: Always
    command: [sh, -c, "sleep 2; touch /tmp/up; exec sleep 3600"]
    startupProbe: {{exec: {{command: [test, -f, /tmp/up]}}, periodSeconds: 1, failureThreshold: 20}}
  containers:
  - name: main
    image: {devenv.busybox}
    command: [sleep, "3600"]
""")
    pod = await agent.wait_pod("sidecar-ready", is_running, timeout=30)
    # the app waited for the sidecar's startup probe (kubelet: the next container starts after it)
    warmup = container(pod, "warmup", init=True)
    assert warmup["started"] is True

    def started_at(c: dict[str, Any]) -> float:
        return datetime.fromisoformat(c["state"]["running"]["startedAt"].replace("Z", "+00:00")).timestamp()
    assert started_at(container(pod, "main")) - started_at(warmup) >= 2
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"] == "containers with unready status: [proxy]"
    assert container(pod, "main")["ready"] is True
    pod = await agent.wait_pod("sidecar-ready", lambda p: cond(p, "Ready") == "True", timeout=10)
    assert container(pod, "proxy", init=True)["ready"] is True
