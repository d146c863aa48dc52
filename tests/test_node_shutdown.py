"""SIGTERM (issue 9): the agent exits leaving pods running, or, with
shutdownGracePeriod set, terminates them first in the kubelet's priority
order (graceful node shutdown)."""

from __future__ import annotations

import asyncio
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from nodeagent.api.types import ObjectMeta, Pod, PodSpec
from nodeagent.config import ConfigError, build_config, read_config_file
from nodeagent.cri.client import CRIClient
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv.env import DevEnv
from nodeagent.eviction.ranking import SYSTEM_CRITICAL_PRIORITY
from nodeagent.kubeletconfig import dump_config
from nodeagent.node.shutdown import (
    ShutdownGroup, group_pods, pod_grace, shutdown_groups, systemd_is_stopping,
)
from tests.agentproc import NODE_NAME, NODEAGENT, AgentProcess, container, pod_manifest, running
from tests.polling import wait_for
from tests.test_kube_agent import ClusterAgent, api_pod, api_running

TERM_OK = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
TERM_SLOW = "trap 'sleep 2; exit 0' TERM; while true; do sleep 0.2; done"


def _pod(name: str, *, priority: int | None = None, class_name: str = "", grace: int | None = None) -> Pod:
    return Pod(metadata=ObjectMeta(name=name, namespace="default", uid=name),
               spec=PodSpec(priority=priority, priority_class_name=class_name,
                            termination_grace_period_seconds=grace))


# -- the rules ------------------------------------------------------------------


def test_grace_periods_become_priority_groups() -> None:
    assert shutdown_groups(0, 0) == []
    assert shutdown_groups(30, 10) == [ShutdownGroup(0, 20), ShutdownGroup(SYSTEM_CRITICAL_PRIORITY, 10)]
    assert shutdown_groups(0, 0, [(100000, 30), (0, 60), (SYSTEM_CRITICAL_PRIORITY, 10)]) == [
        ShutdownGroup(0, 60), ShutdownGroup(100000, 30), ShutdownGroup(SYSTEM_CRITICAL_PRIORITY, 10)]


def test_pods_are_grouped_as_the_kubelet_groups_them() -> None:
    groups = shutdown_groups(0, 0, [(0, 60), (100000, 30), (SYSTEM_CRITICAL_PRIORITY, 10)])
    pods = [_pod("none"), _pod("negative", priority=-5), _pod("low", priority=99999),
            _pod("boundary", priority=100000), _pod("high", priority=1000000),
            _pod("node-critical", class_name="system-node-critical"),
            _pod("cluster-critical", class_name="system-cluster-critical"),
            _pod("above-all", priority=2000000999 + 1)]
    assert [[p.metadata.name for p in g] for g in group_pods(groups, pods)] == [
        ["none", "negative", "low"], ["boundary", "high"], ["node-critical", "cluster-critical", "above-all"]]
    group = ShutdownGroup(0, 20)
    assert pod_grace(_pod("a", grace=5), group) == 5
    assert pod_grace(_pod("b", grace=30), group) == 20
    assert pod_grace(_pod("c"), group) == 20


def _config_file(tmp_path: Path, **fields: object) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "kubelet.config.k8s.io/v1beta1",
                                    "kind": "KubeletConfiguration", **fields}))
    return str(path)


def test_shutdown_settings_are_read_checked_and_dumped(tmp_path: Path) -> None:
    values, ignored = read_config_file(_config_file(tmp_path, shutdownGracePeriod="30s",
                                                    shutdownGracePeriodCriticalPods="10s"))
    assert not any(i.startswith("shutdown") for i in ignored)
    config = build_config(values, {})
    assert (config.shutdown_grace_period, config.shutdown_grace_period_critical_pods) == (30.0, 10.0)
    dumped = yaml.safe_load(dump_config(config, ignored))
    assert (dumped["shutdownGracePeriod"], dumped["shutdownGracePeriodCriticalPods"]) == ("30s", "10s")

    values, _ = read_config_file(_config_file(tmp_path, shutdownGracePeriodByPodPriority=[
        {"priority": 0, "shutdownGracePeriodSeconds": 60}, {"priority": 2000000000, "shutdownGracePeriodSeconds": 10}]))
    assert build_config(values, {}).shutdown_grace_period_by_pod_priority == ((0, 60), (2000000000, 10))

    bad = {
        "shutdownGracePeriodCriticalPods: 40s must be <= shutdownGracePeriod 30s":
            {"shutdownGracePeriod": "30s", "shutdownGracePeriodCriticalPods": "40s"},
        "shutdownGracePeriod: 500ms must be either zero or otherwise >= 1 sec": {"shutdownGracePeriod": "500ms"},
        "shutdownGracePeriod: invalid duration 'soon'": {"shutdownGracePeriod": "soon"},
        "shutdownGracePeriodByPodPriority: cannot be set together with shutdownGracePeriod":
            {"shutdownGracePeriod": "30s",
             "shutdownGracePeriodByPodPriority": [{"priority": 0, "shutdownGracePeriodSeconds": 5}]},
        "shutdownGracePeriodByPodPriority[0].shutdownGracePeriodSeconds: expected an integer, got '5s'":
            {"shutdownGracePeriodByPodPriority": [{"priority": 0, "shutdownGracePeriodSeconds": "5s"}]},
        "shutdownGracePeriodByPodPriority[1]: unknown field 'grace'":
            {"shutdownGracePeriodByPodPriority": [{"priority": 0}, {"priority": 1, "grace": 3}]},
    }
    for message, fields in bad.items():
        with pytest.raises(ConfigError) as err:
            build_config(read_config_file(_config_file(tmp_path, **fields))[0], {})
        assert message in str(err.value)


def _fake_systemctl(tmp_path: Path, body: str) -> str:
    path = tmp_path / "systemctl"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_sigterm_is_a_node_shutdown_only_when_systemd_is_stopping(tmp_path: Path) -> None:
    booted = tmp_path / "run-systemd-system"
    assert await systemd_is_stopping(booted, _fake_systemctl(tmp_path, "echo stopping")) is None  # no systemd
    booted.mkdir()
    assert await systemd_is_stopping(booted, _fake_systemctl(tmp_path, "echo stopping")) is True
    assert await systemd_is_stopping(booted, _fake_systemctl(tmp_path, "echo running")) is False  # a restart
    assert await systemd_is_stopping(booted, _fake_systemctl(tmp_path, "echo degraded; exit 1")) is False
    started = time.monotonic()
    assert await systemd_is_stopping(booted, _fake_systemctl(tmp_path, "exec sleep 30")) is False
    assert time.monotonic() - started < 5
    assert await systemd_is_stopping(booted, str(tmp_path / "missing")) is False


# -- the agent ------------------------------------------------------------------


async def test_sigterm_leaves_pods_running_and_a_restart_adopts_them(agent: AgentProcess, devenv: DevEnv,
                                                                     cri: CRIClient) -> None:
    """Issue 9 acceptance: SIGTERM with 5 pods: exit within 2 s, pods still
    running; restarted, the agent adopts them."""
    for i in range(5):
        agent.write_manifest(f"p{i}.yaml", pod_manifest(f"p{i}", devenv.busybox, ["sleep", "3600"]))
    pods = [await agent.wait_pod(f"p{i}", running, timeout=60) for i in range(5)]
    before = {c.id: c.state for c in await cri.list_containers()}
    assert len(before) == 5 and set(before.values()) == {pb.ContainerState.CONTAINER_RUNNING}

    assert agent.process is not None
    started = time.monotonic()
    agent.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(agent.process.wait, 10)
    took = time.monotonic() - started
    assert code == 0, agent.log_tail()
    assert took < 2.0, f"agent took {took:.2f}s to exit after SIGTERM\n{agent.log_tail()}"
    assert {c.id: c.state for c in await cri.list_containers()} == before, "pods run on without the agent"
    assert any(line.get("event") == "stopping nodeagent; pods keep running" for line in agent.log_lines())

    agent.start()
    again = [await agent.wait_pod(f"p{i}", running, timeout=60) for i in range(5)]
    assert {p["metadata"]["uid"] for p in again} == {p["metadata"]["uid"] for p in pods}
    assert all(container(p, "main")["restartCount"] == 0 for p in again)
    await asyncio.sleep(1.0)  # time for a wrong agent to restart something
    assert {c.id: c.state for c in await cri.list_containers()} == before


async def test_sigterm_while_waiting_for_the_runtime(tmp_path: Path) -> None:
    """systemctl stop with containerd down: the agent must not wait for it."""
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [NODEAGENT, "--logging-format", "json", "run",
             "--container-runtime-endpoint", f"unix://{tmp_path}/no-runtime.sock",
             "--root-dir", str(tmp_path / "root"), "--pod-logs-dir", str(tmp_path / "logs"),
             "--read-only-port", "0", "--healthz-port", "0", "--port", "0", "--cri-debug-socket", ""],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        await wait_for(lambda: b"waiting for container runtime" in log.read_bytes(), timeout=60,
                       what="the agent waiting for the runtime")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 10)
        assert code == 0 and time.monotonic() - started < 2.0, log.read_text()
        assert b"stopped while starting" in log.read_bytes()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _exit_times(cri: CRIClient, names: set[str], deadline: float) -> dict[str, float]:
    """When each named pod's container stopped running (CRI), polled every 50 ms."""
    exited: dict[str, float] = {}
    while len(exited) < len(names) and time.monotonic() < deadline:
        for c in await cri.list_containers():
            name = c.labels.get("io.kubernetes.pod.name", "")
            if name in names and name not in exited and c.state != pb.ContainerState.CONTAINER_RUNNING:
                exited[name] = time.monotonic()
        await asyncio.sleep(0.05)
    return exited


async def test_graceful_node_shutdown_terminates_pods_by_priority(devenv: DevEnv, apiserver, tmp_path: Path,
                                                                  cri: CRIClient) -> None:
    config = _config_file(tmp_path, shutdownGracePeriod="8s", shutdownGracePeriodCriticalPods="4s")
    agent = ClusterAgent(devenv, tmp_path, apiserver, "--config", config)
    agent.start()
    try:
        # Regular: an API pod and a static pod; critical: a static pod of class system-node-critical.
        apiserver.create(api_pod("web", devenv.busybox, ["sh", "-c", TERM_OK], grace=30))
        agent.write_manifest("cache.yaml", pod_manifest("cache", devenv.busybox, ["sh", "-c", TERM_OK], grace=30))
        agent.write_manifest("etcd.yaml", pod_manifest(  # takes 2 s to stop: room to see the order
            "etcd", devenv.busybox, ["sh", "-c", TERM_SLOW], grace=30,
            extra_spec="  priorityClassName: system-node-critical\n"))
        await agent.wait_api("web", api_running)
        for name in ("cache", "etcd"):
            await agent.wait_pod(name, running, timeout=60)
        names = {"web", f"cache-{NODE_NAME}", f"etcd-{NODE_NAME}"}

        assert agent.process is not None
        started = time.monotonic()
        agent.process.send_signal(signal.SIGTERM)
        watching = asyncio.ensure_future(_exit_times(cri, names, started + 20))
        # While the pods terminate, the agent still serves and refuses new pods.
        await asyncio.sleep(0.3)
        agent.write_manifest("late.yaml", pod_manifest("late", devenv.busybox, ["sleep", "60"]))
        refused = await wait_for(lambda: _refused(agent, "late"), timeout=5, what="a pod written during shutdown")
        exited = await watching
        code = await asyncio.to_thread(agent.process.wait, 20)
        took = time.monotonic() - started
        assert code == 0, agent.log_tail()
        assert set(exited) == names, f"still running: {names - set(exited)}\n{agent.log_tail()}"
        regular_done = max(exited["web"], exited[f"cache-{NODE_NAME}"])
        assert exited[f"etcd-{NODE_NAME}"] - regular_done > 1.5, "the critical pod goes last"
        assert regular_done - started < 4, "regular pods get SIGTERM at once and exit on it"
        assert took < 8 + 5 + 3, f"agent took {took:.1f}s (grace 8s + status flush)"
        assert refused["status"]["phase"] == "Failed" and refused["status"]["reason"] == "NodeShutdown"
        assert refused["status"]["message"] == \
            "Pod was rejected: Pod was rejected as the node is shutting down."

        web = agent.api_pod("web")
        assert web is not None
        status = web["status"]
        assert (status["phase"], status["reason"], status["message"]) == (
            "Failed", "Terminated", "Pod was terminated in response to imminent node shutdown.")
        disruption = next(c for c in status["conditions"] if c["type"] == "DisruptionTarget")
        assert (disruption["status"], disruption["reason"]) == ("True", "TerminationByKubelet")
        assert "terminated" in status["containerStatuses"][0]["state"]
        node = apiserver.get("v1", "Node", None, NODE_NAME)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "KubeletNotReady")
        assert "node is shutting down" in ready["message"]
        mirror = apiserver.get("v1", "Pod", "default", f"etcd-{NODE_NAME}")
        assert mirror is not None and mirror["status"]["phase"] == "Failed", "the static pod's final status"
    finally:
        agent.stop()
        devenv.reset(tmp_path)


async def _refused(agent: AgentProcess, name: str) -> dict | None:
    pod = next((p for p in await agent.pods()
                if p["metadata"]["name"] == f"{name}-{NODE_NAME}"), None)
    return pod if pod is not None and pod["status"].get("phase") == "Failed" else None


async def test_sigint_never_terminates_pods(devenv: DevEnv, tmp_path: Path, cri: CRIClient) -> None:
    """Ctrl-C stops the agent only, even with graceful node shutdown configured."""
    config = _config_file(tmp_path, shutdownGracePeriod="4s", shutdownGracePeriodCriticalPods="2s")
    agent = AgentProcess(devenv, tmp_path, "--config", config)
    agent.start()
    try:
        agent.write_manifest("p.yaml", pod_manifest("p", devenv.busybox, ["sleep", "3600"]))
        await agent.wait_pod("p", running, timeout=60)
        assert agent.process is not None
        agent.process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(agent.process.wait, 10) == 0
        states = [c.state for c in await cri.list_containers()]
        assert states == [pb.ContainerState.CONTAINER_RUNNING], agent.log_tail()
    finally:
        agent.stop()
        devenv.reset(tmp_path)
