"""Eviction for real: a memory.available threshold above the machine's free
memory puts the node under MemoryPressure; the agent evicts the BestEffort
pod (the only one above its requests), keeps the others, reports the
condition, and refuses new BestEffort pods."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil

from nodeagent.devenv.env import DevEnv
from tests.agentproc import AgentProcess, container, phase, pod_manifest, running

GI = 2**30


def manifest(name: str, image: str, resources: str) -> str:
    return pod_manifest(name, image, ["sleep", "3600"], grace=1,
                        container_extra=f"    resources: {resources}\n")


def condition(agent: AgentProcess, kind: str) -> dict:
    return next(c for c in agent.get_json("/nodeagent/node")["conditions"] if c["type"] == kind)


async def test_memory_pressure_evicts_best_effort_first(devenv: DevEnv, tmp_path: Path) -> None:
    first = AgentProcess(devenv, tmp_path).start()
    try:
        image = devenv.busybox
        first.write_manifest("be.yaml", manifest("be", image, "{}"))
        first.write_manifest("burst.yaml", manifest("burst", image, "{requests: {cpu: 10m, memory: 64Mi}}"))
        first.write_manifest("guar.yaml", manifest("guar", image, "{limits: {cpu: 50m, memory: 64Mi}}"))
        for name in ("be", "burst", "guar"):
            await first.wait_pod(name, running, timeout=60, what="Running")
        assert condition(first, "MemoryPressure")["status"] == "False"
    finally:
        first.stop()  # the pods keep running; the next agent adopts them
    # Now a threshold no amount of free memory meets. systemReserved is above
    # what the system uses, so pods within their requests are not evicted.
    threshold = (psutil.virtual_memory().total // GI + 8)
    agent = AgentProcess(devenv, tmp_path, "--eviction-hard", f"memory.available<{threshold}Gi",
                         "--system-reserved", "memory=8Gi", "--eviction-monitoring-period", "500ms")
    agent.start()
    try:
        evicted = await agent.wait_pod("be", lambda p: phase(p) == "Failed", timeout=30, what="evicted")
        status = evicted["status"]
        assert status["reason"] == "Evicted"
        assert status["message"].startswith("The node was low on resource: memory. Threshold quantity: "
                                            f"{threshold}Gi, available: ")
        assert "Container main was using" in status["message"]
        disruption = next(c for c in status["conditions"] if c["type"] == "DisruptionTarget")
        assert (disruption["status"], disruption["reason"]) == ("True", "TerminationByKubelet")
        assert "running" not in container(evicted, "main")["state"]
        pressure = condition(agent, "MemoryPressure")
        assert (pressure["status"], pressure["reason"]) == ("True", "KubeletHasInsufficientMemory")
        # Pods within their requests stay, across further monitoring rounds.
        for _ in range(4):
            for name in ("burst", "guar"):
                pod = await agent.pod(name)
                assert pod is not None and running(pod) and container(pod, "main")["restartCount"] == 0, name
            await asyncio.sleep(0.5)
        # A new BestEffort pod is refused while the pressure lasts.
        agent.write_manifest("late.yaml", manifest("late", devenv.busybox, "{}"))
        late = await agent.wait_pod("late", lambda p: phase(p) == "Failed", timeout=15, what="rejected")
        assert late["status"]["reason"] == "Evicted"
        assert late["status"]["message"] == "Pod was rejected: The node had condition: [MemoryPressure]. "
    finally:
        agent.stop()
        devenv.reset(tmp_path)
