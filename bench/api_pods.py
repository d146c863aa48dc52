"""Pods bound through the API server vs the raw CRI lower bound, same run.

agent: 30 pods created at once in the API server double (bound to the node)
       → all 30 reported Running in the API server (the status the agent
       patched), read from the double's store every 50 ms.
raw:   the same pods' CRI calls made directly and concurrently
       (bench/pod_start.py raw_round: ImageStatus, RunPodSandbox,
       PodSandboxStatus, CreateContainer, StartContainer), after the same
       second of quiet as the agent's round (bench/pod_start.py SETTLE).

The pods are what an API server makes of a plain pod: admission adds the
kube-api-access projected volume (TokenRequest, tmpfs, atomic writes), which
the raw side does not do. Rounds alternate (and which goes first
alternates), medians are compared: these VMs are noisy. The agent runs only during its rounds (it would remove
the raw rounds' pods as orphans).

Usage: .venv/bin/python bench/api_pods.py [--rounds 5] [--pods 30]
(run() returns an ApiPodsResult; `python -m bench` uses it.)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cancellable import run_cancellable  # noqa: E402
from bench.pod_start import SETTLE, AgentVsRaw, raw_round  # noqa: E402
from nodeagent.cri.client import CRIClient  # noqa: E402
from nodeagent.devenv.env import DevEnv, remove_all_pods  # noqa: E402
from nodeagent.devenv.registry import free_port  # noqa: E402
from nodeagent.logsetup import configure_logging  # noqa: E402
from tests.apiserver import APIServerDouble  # noqa: E402

NODE = "benchnode"


@dataclass
class ApiPodsResult(AgentVsRaw):
    pods: int
    rounds: int
    agent_s: list[float]
    raw_s: list[float]


def pod(name: str, image: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]}}


def running(obj: dict) -> bool:
    status = obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    return status.get("phase") == "Running" and bool(statuses) and all("running" in c["state"] for c in statuses)


class Agent:
    def __init__(self, env: DevEnv, work: Path, kubeconfig: Path) -> None:
        work.mkdir(parents=True)
        self.log = work / "agent.log"
        healthz = free_port()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("nodeagent")), "--logging-format", "json", "run",
             "--container-runtime-endpoint", env.endpoint, "--kubeconfig", str(kubeconfig),
             "--root-dir", str(work / "root"), "--pod-logs-dir", str(work / "logs"),
             "--hostname-override", NODE, "--node-ip", "127.0.0.1", "--cgroup-root", env.cgroup_parent("bench"),
             "--read-only-port", "0", "--healthz-port", str(healthz), "--port", "0", "--cri-debug-socket", ""],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        import urllib.request
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{healthz}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("agent did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # the agent prints its threads' stacks
            time.sleep(1)
            log = self.log.read_text(errors="replace").splitlines()[-80:]
            self.proc.kill()
            self.proc.wait()
            raise SystemExit("agent ignored SIGTERM for 15 s; its log ends:\n" + "\n".join(log)) from None


async def wait_until(predicate, poll: float, timeout: float = 600.0) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"the API server did not show the expected state in {timeout:.0f} s")
        await asyncio.sleep(poll)
    return time.monotonic()


async def agent_round(env: DevEnv, api: APIServerDouble, work: Path, n: int, tag: str) -> float:
    agent = Agent(env, work / tag, api.kubeconfig(work / f"{tag}.kubeconfig", user=f"system:node:{NODE}"))
    try:
        await wait_until(lambda: api.get("v1", "Node", None, NODE) is not None, 0.05)
        await asyncio.sleep(SETTLE)  # past its start-up, as the raw round starts from quiet
        names = [f"{tag}-{i}" for i in range(n)]
        start = time.monotonic()
        for name in names:
            api.create(pod(name, env.busybox))
        done = await wait_until(lambda: sum(running(p) for p in api.list("v1", "Pod", "default")) >= n, 0.05)
        for name in names:
            api.delete("v1", "Pod", "default", name, grace_period_seconds=0)
        async with CRIClient(env.endpoint) as cri:
            while await cri.list_pod_sandbox():
                await asyncio.sleep(0.05)
        pods_dir = work / tag / "root" / "pods"  # the agent's cleanup (tmpfs volumes) is done too
        while pods_dir.is_dir() and any(pods_dir.iterdir()):
            await asyncio.sleep(0.05)
    finally:
        agent.stop()
        await remove_all_pods(env.endpoint)
    return done - start


async def run(rounds: int = 5, pods: int = 30) -> ApiPodsResult:
    """Alternating rounds in a DevEnv and API server double of their own."""
    env = DevEnv(name="apibench")
    work = Path(tempfile.mkdtemp(prefix="nodeagent-apibench-"))
    env.up()
    api = APIServerDouble(work / "apiserver")
    api.start()
    try:
        async with CRIClient(env.endpoint) as cri:
            await cri.pull_image(env.busybox)
        await agent_round(env, api, work, 1, "warm")
        await raw_round(env, env.busybox, 1, "warm", work)
        agent_times, raw_times = [], []
        for r in range(rounds):
            for mode in (("agent", "raw") if r % 2 == 0 else ("raw", "agent")):
                if mode == "agent":
                    agent_times.append(await agent_round(env, api, work, pods, f"r{r}a"))
                else:
                    raw_times.append(await raw_round(env, env.busybox, pods, f"r{r}r", work))
        return ApiPodsResult(pods=pods, rounds=rounds, agent_s=agent_times, raw_s=raw_times)
    finally:
        api.stop()
        env.down()
        subprocess.run(["rm", "-rf", str(work)])


def report(result: ApiPodsResult) -> None:
    print(f"\n{result.pods} pods bound at once -> all Running in the API server vs raw CRI, "
          f"{result.rounds} rounds, medians")
    print(f"agent {result.agent:.3f} s   raw {result.raw:.3f} s   ratio {result.ratio:.2f}x")
    print(f"agent rounds {' '.join(f'{x:.2f}' for x in result.agent_s)} / "
          f"raw rounds {' '.join(f'{x:.2f}' for x in result.raw_s)}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pods", type=int, default=30)
    args = parser.parse_args()
    configure_logging("text", 0)
    report(await run(args.rounds, args.pods))


if __name__ == "__main__":
    run_cancellable(main)
