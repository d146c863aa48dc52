"""Pods bound through the API server vs the raw CRI lower bound, same run.

agent: 30 pods created at once in the API server double (bound to the node)
       → all 30 reported Running in the API server (the status the agent
       patched), read from the double's store every 50 ms.
raw:   the same pods' CRI calls made directly and concurrently
       (bench/pod_start.py raw_round: ImageStatus, RunPodSandbox,
       CreateContainer, StartContainer).

The pods are what an API server makes of a plain pod: admission adds the
kube-api-access projected volume (TokenRequest, tmpfs, atomic writes), which
the raw side does not do. Rounds alternate (and which goes first
alternates), medians are compared: these VMs are noisy. The agent runs only during its rounds (it would remove
the raw rounds' pods as orphans).

Usage: .venv/bin/python bench/api_pods.py [--rounds 5] [--pods 30]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cancellable import run_cancellable  # noqa: E402
from bench.pod_start import raw_round  # noqa: E402
from nodeagent.cri.client import CRIClient  # noqa: E402
from nodeagent.devenv.env import DevEnv, remove_all_pods  # noqa: E402
from nodeagent.devenv.registry import free_port  # noqa: E402
from nodeagent.logsetup import configure_logging  # noqa: E402
from tests.apiserver import APIServerDouble  # noqa: E402

NODE = "benchnode"


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


async def wait_until(predicate, poll: float) -> float:
    while not predicate():
        await asyncio.sleep(poll)
    return time.monotonic()


async def agent_round(env: DevEnv, api: APIServerDouble, work: Path, n: int, tag: str) -> float:
    agent = Agent(env, work / tag, api.kubeconfig(work / f"{tag}.kubeconfig", user=f"system:node:{NODE}"))
    try:
        await wait_until(lambda: api.get("v1", "Node", None, NODE) is not None, 0.05)
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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pods", type=int, default=30)
    args = parser.parse_args()
    configure_logging("text", 0)
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
        for r in range(args.rounds):
            for mode in (("agent", "raw") if r % 2 == 0 else ("raw", "agent")):
                if mode == "agent":
                    agent_times.append(await agent_round(env, api, work, args.pods, f"r{r}a"))
                else:
                    raw_times.append(await raw_round(env, env.busybox, args.pods, f"r{r}r", work))
        a, b = statistics.median(agent_times), statistics.median(raw_times)
        print(f"\n{args.pods} pods bound at once -> all Running in the API server vs raw CRI, "
              f"{args.rounds} rounds, medians")
        print(f"agent {a:.3f} s   raw {b:.3f} s   ratio {a / b:.2f}x")
        print(f"agent rounds {' '.join(f'{x:.2f}' for x in agent_times)} / "
              f"raw rounds {' '.join(f'{x:.2f}' for x in raw_times)}")
    finally:
        api.stop()
        env.down()
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    run_cancellable(main)
