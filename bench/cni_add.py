"""CNI ADD latency of nodeagent's plugin, and sandbox start on the agent's
network vs host network, in the same run.

cni:     the installed plugin executable run as a runtime runs it (CNI_* env,
         config on stdin) against a running `nodeagent run`: ADD then DEL in a
         namespace the bench owns, N times; wall time from exec to exit. Also
         the agent-side share (its own log), the interpreter start-up floor,
         and the in-process fallback (agent stopped) for comparison.
sandbox: RunPodSandbox through containerd with the agent's network (containerd
         runs loopback + nodeagent) vs hostNetwork, alternating, then
         Stop+Remove.

The agent runs at -v 0 as in production; --breakdown runs it at -v 4, which
logs the agent's own share of each ADD.

Usage: .venv/bin/python bench/cni_add.py [--cycles 200] [--sandboxes 30] [--breakdown]
(run() returns a CniResult; `python -m bench` uses it.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cancellable import run_cancellable  # noqa: E402
from nodeagent.cri.client import CRIClient  # noqa: E402
from nodeagent.devenv import podspecs  # noqa: E402
from nodeagent.devenv.env import DevEnv  # noqa: E402
from nodeagent.devenv.registry import free_port  # noqa: E402
from nodeagent.logsetup import configure_logging  # noqa: E402

NODEAGENT = str(Path(sys.executable).with_name("nodeagent"))
TARGET_ADD_P50_MS = 60.0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@dataclass
class CniResult:
    """Milliseconds per call or sandbox, as measured (unsorted)."""
    cycles: int
    sandboxes: int
    add: list[float]
    delete: list[float]
    agent_side: list[float]  # the agent's own share of each ADD; only with --breakdown
    version: list[float]
    interpreter: list[float]
    fallback: list[float]
    sandbox_pod_network: list[float]
    sandbox_host_network: list[float]

    @property
    def sandbox_ratio(self) -> float:
        """RunPodSandbox p50 on the agent's network over host network."""
        return statistics.median(self.sandbox_pod_network) / statistics.median(self.sandbox_host_network)


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<44} n={len(values):<4} p50 {statistics.median(values):7.1f} ms   "
            f"p99 {pct(values, 99):7.1f} ms   min {min(values):6.1f} ms")


class Agent:
    def __init__(self, env: DevEnv, work: Path, verbosity: int) -> None:
        self.env, self.work, self.verbosity = env, work, verbosity
        self.healthz = free_port()
        self.log = work / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.work / "manifests").mkdir(parents=True, exist_ok=True)
        cmd = [NODEAGENT, "--logging-format", "json", "-v", str(self.verbosity), "run",
               "--container-runtime-endpoint", self.env.endpoint,
               "--pod-manifest-path", str(self.work / "manifests"), "--root-dir", str(self.work / "root"),
               "--pod-logs-dir", str(self.work / "logs"), "--hostname-override", "benchnode",
               "--cgroup-root", self.env.cgroup_parent("bench"), "--read-only-port", "0",
               "--healthz-port", str(self.healthz), *self.env.agent_network_flags()]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.healthz}/healthz", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"agent did not start; see {self.log}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    def add_times(self) -> list[float]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "cni request" and entry.get("command") == "ADD":
                out.append(float(entry["ms"]))
        return out


def cni_cycles(env: DevEnv, cycles: int, netns: str) -> tuple[list[float], list[float]]:
    paths = env.containerd.paths
    conflist = json.loads(next(paths.cni_conf.glob("00-*.conflist")).read_text())
    stdin = json.dumps({**conflist["plugins"][0], "name": conflist["name"],
                        "cniVersion": conflist["cniVersion"]})
    plugin = str(paths.cni_bin / "nodeagent")
    adds, dels = [], []
    for _ in range(cycles):
        cid = uuid.uuid4().hex
        base = {"PATH": os.environ["PATH"], "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
                "CNI_IFNAME": "eth0", "CNI_PATH": str(paths.cni_bin),
                "CNI_ARGS": "K8S_POD_NAMESPACE=bench;K8S_POD_NAME=bench"}
        for command, into in (("ADD", adds), ("DEL", dels)):
            started = time.perf_counter()
            result = subprocess.run([plugin], input=stdin, capture_output=True, text=True,
                                    env={**base, "CNI_COMMAND": command})
            into.append((time.perf_counter() - started) * 1000)
            if result.returncode != 0:
                raise SystemExit(f"{command} failed: {result.stdout} {result.stderr}")
    return adds, dels


def version_floor(env: DevEnv, n: int = 30) -> list[float]:
    """VERSION is answered by the plugin itself: exec, read stdin, print."""
    plugin = str(env.containerd.paths.cni_bin / "nodeagent")
    out = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run([plugin], input='{"cniVersion": "1.0.0"}', capture_output=True, text=True,
                       env={"CNI_COMMAND": "VERSION"}, check=True)
        out.append((time.perf_counter() - started) * 1000)
    return out


def interpreter_floor(n: int = 30) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run(["/usr/bin/python3", "-IS", "-c", "import json, socket"], check=True)
        out.append((time.perf_counter() - started) * 1000)
    return out


async def sandbox_starts(env: DevEnv, n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"pod network": [], "host network": []}
    async with CRIClient(env.endpoint, request_timeout=60) as cri:
        for i in range(n):
            order = [("pod network", False), ("host network", True)]
            if i % 2:
                order.reverse()
            for name, host in order:
                config = podspecs.sandbox_config(env, f"bench{i}{int(host)}", f"uid-bench-{i}-{int(host)}",
                                                 host_network=host)
                started = time.perf_counter()
                sandbox = await cri.run_pod_sandbox(config)
                times[name].append((time.perf_counter() - started) * 1000)
                await cri.stop_pod_sandbox(sandbox)
                await cri.remove_pod_sandbox(sandbox)
    return times


async def run(cycles: int = 200, sandboxes: int = 30, breakdown: bool = False,
              fallback_cycles: int = 20) -> CniResult:
    """Everything against one agent, in a DevEnv of its own."""
    work = Path(tempfile.mkdtemp(prefix="na-bench-net-"))
    env = DevEnv(name="benchnet")
    agent = Agent(env, work, 4 if breakdown else 0)
    netns = f"nabench{env.id}"
    env.up()
    try:
        subprocess.run(["ip", "netns", "add", netns], check=True)
        try:
            await asyncio.to_thread(agent.start)
            adds, dels = await asyncio.to_thread(cni_cycles, env, cycles, f"/run/netns/{netns}")
            version = await asyncio.to_thread(version_floor, env)
            inside = agent.add_times()
            starts = await sandbox_starts(env, sandboxes)
            await asyncio.to_thread(agent.stop)
            fallback, _ = await asyncio.to_thread(cni_cycles, env, fallback_cycles, f"/run/netns/{netns}")
            floor = await asyncio.to_thread(interpreter_floor)
        finally:
            agent.stop()
            subprocess.run(["ip", "netns", "del", netns])
    finally:
        env.down()  # a DEL now runs the plugin's in-process fallback, which writes under work
        subprocess.run(["rm", "-rf", str(work)])
    return CniResult(cycles=cycles, sandboxes=sandboxes, add=adds, delete=dels, agent_side=inside[:len(adds)],
                     version=version, interpreter=floor, fallback=fallback,
                     sandbox_pod_network=starts["pod network"], sandbox_host_network=starts["host network"])


def report(result: CniResult) -> None:
    print(summary("CNI ADD, plugin exec -> exit (agent running)", result.add))
    print(summary("CNI DEL, plugin exec -> exit (agent running)", result.delete))
    if result.agent_side:
        print(summary("  of ADD: agent-side handling", result.agent_side))
    print(summary("  of ADD: plugin alone (VERSION)", result.version))
    print(summary("  of ADD: python3 -IS start-up floor", result.interpreter))
    print(summary("CNI ADD, in-process fallback (agent stopped)", result.fallback))
    print(summary("RunPodSandbox, pod network", result.sandbox_pod_network))
    print(summary("RunPodSandbox, host network", result.sandbox_host_network))
    p50 = statistics.median(result.add)
    print(f"target ADD p50 <= {TARGET_ADD_P50_MS:.0f} ms: {'met' if p50 <= TARGET_ADD_P50_MS else 'MISSED'} "
          f"({p50:.1f} ms)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--sandboxes", type=int, default=30)
    parser.add_argument("--breakdown", action="store_true",
                        help="run the agent at -v 4 to log its share of each ADD (the debug "
                             "logging of every CRI call slows the agent itself)")
    args = parser.parse_args()
    configure_logging("text", 0)
    report(await run(args.cycles, args.sandboxes, args.breakdown))


if __name__ == "__main__":
    run_cancellable(main)
