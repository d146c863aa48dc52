"""Debug socket overhead and /metrics/resource scrape cost.

debug socket: a running `nodeagent run` serves --cri-debug-socket; 50
containers run in one sandbox. Version, ListContainers (50 containers) and
ContainerStatus are called through the socket and directly, alternating call
by call in the same run; p50/p99 of each and the p50 added by the socket.

scrape: 110 sandboxes with one container each (host network), then
/metrics/resource on the agent's read-only port: cold (the 1 s stats cache
expired: 3 CRI calls + cgroup files + rendering) and warm (cached), and
/metrics/cadvisor and /stats/summary cold.

The agent's CPU time per scrape (from /proc/<pid>/stat, 10 ms ticks, so a
mean over the samples) is reported too: it does not grow with the machine's
load the way wall time does.

Usage: .venv/bin/python bench/observability.py [--calls 1000] [--pods 110] [--skip-socket]
(run() returns an ObservabilityResult; `python -m bench` uses it.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cancellable import run_cancellable  # noqa: E402
from nodeagent.cri.client import CRIClient  # noqa: E402
from nodeagent.cri.pb import api_pb2 as pb  # noqa: E402
from nodeagent.devenv.env import DevEnv, remove_all_pods  # noqa: E402
from nodeagent.devenv.registry import free_port  # noqa: E402
from nodeagent.logsetup import configure_logging  # noqa: E402


@dataclass
class CallTimes:
    """One CRI call through the debug socket and directly, in ms."""
    call: str
    direct_p50: float
    via_p50: float
    direct_p99: float
    via_p99: float

    @property
    def added_p50(self) -> float:
        return self.via_p50 - self.direct_p50


@dataclass
class ScrapeTimes:
    endpoint: str
    cold: bool
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # agent CPU per scrape (mean: 10 ms ticks)
    samples: int

    @property
    def label(self) -> str:
        return f"{self.endpoint} ({'cold' if self.cold else 'cached'})"


@dataclass
class ObservabilityResult:
    calls: int
    pods: int
    socket: list[CallTimes] = field(default_factory=list)
    scrape: list[ScrapeTimes] = field(default_factory=list)
    resource_bytes: int = 0
    resource_series: int = 0
    start_s: float = 0.0

    def scrape_of(self, endpoint: str, cold: bool) -> ScrapeTimes | None:
        return next((s for s in self.scrape if s.endpoint == endpoint and s.cold == cold), None)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)]


async def sandbox_with(cri: CRIClient, env: DevEnv, name: str, containers: int) -> tuple[str, list[str]]:
    # No io.kubernetes.pod.uid label: the agent's housekeeping leaves these alone.
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="bench", uid=str(uuid.uuid4())),
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=env.cgroup_parent(f"bench-{name}"),
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NamespaceMode.NODE))))
    sid = await cri.run_pod_sandbox(config)
    ids = []
    for i in range(containers):
        cid = await cri.create_container(sid, pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=f"c{i}"), image=pb.ImageSpec(image=env.busybox),
            command=["sleep", "3600"], log_path=f"c{i}.log"), config)
        await cri.start_container(cid)
        ids.append(cid)
    return sid, ids


async def debug_socket(env: DevEnv, sock: Path, calls: int) -> list[CallTimes]:
    async with CRIClient(env.endpoint) as direct, CRIClient(f"unix://{sock}") as via:
        await direct.pull_image(env.busybox)
        _, ids = await sandbox_with(direct, env, "dbg", 50)
        assert len(await via.list_containers()) >= 50
        ops = {"Version": lambda c: c.version(),
               "ListContainers (50)": lambda c: c.list_containers(),
               "ContainerStatus": lambda c: c.container_status(ids[0])}
        out = []
        for name, op in ops.items():
            for _ in range(50):  # warm both channels
                await op(direct)
                await op(via)
            times: dict[str, list[float]] = {"direct": [], "via": []}
            for i in range(calls):
                order = (("direct", direct), ("via", via)) if i % 2 else (("via", via), ("direct", direct))
                for label, client in order:
                    start = time.perf_counter()
                    await op(client)
                    times[label].append((time.perf_counter() - start) * 1000)
            out.append(CallTimes(name, statistics.median(times["direct"]), statistics.median(times["via"]),
                                 pct(times["direct"], .99), pct(times["via"], .99)))
        return out


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scrape(env: DevEnv, base: str, pods: int, agent_pid: int, result: ObservabilityResult) -> None:
    async with CRIClient(env.endpoint) as cri:
        await cri.pull_image(env.busybox)
        started = time.monotonic()
        sem = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with sem:
                await sandbox_with(cri, env, f"p{i:03d}", 1)

        await asyncio.gather(*(one(i) for i in range(pods)))
        result.start_s = time.monotonic() - started
    body = await asyncio.to_thread(get, f"{base}/metrics/resource")
    result.resource_bytes = len(body)
    result.resource_series = sum(1 for line in body.decode().splitlines() if line.startswith("container_cpu"))
    for path, cold, n in (("/metrics/resource", True, 20), ("/metrics/resource", False, 100),
                          ("/metrics/cadvisor", True, 10), ("/stats/summary", True, 10),
                          ("/metrics", False, 50)):
        times, cpu = [], []
        for _ in range(n):
            if cold:
                await asyncio.sleep(1.05)  # past the stats cache's max age
            cpu_before = cpu_seconds(agent_pid)
            start = time.perf_counter()
            await asyncio.to_thread(get, f"{base}{path}")
            times.append((time.perf_counter() - start) * 1000)
            cpu.append((cpu_seconds(agent_pid) - cpu_before) * 1000)
        result.scrape.append(ScrapeTimes(path, cold, statistics.median(times), pct(times, .99),
                                         statistics.mean(cpu), n))


async def run(calls: int = 1000, pods: int = 110, socket: bool = True) -> ObservabilityResult:
    """Both measurements against one agent, in a DevEnv of its own."""
    env = DevEnv(name="benchobs")
    env.up()
    work = Path(tempfile.mkdtemp(prefix="na-benchobs-"))
    ro, healthz = free_port(), free_port()
    sock = work / "run" / "cri.sock"
    result = ObservabilityResult(calls=calls if socket else 0, pods=pods)
    agent = subprocess.Popen(
        [str(Path(sys.executable).with_name("nodeagent")), "run",
         "--container-runtime-endpoint", env.endpoint, "--root-dir", str(work / "root"),
         "--pod-logs-dir", str(work / "logs"), "--hostname-override", "benchnode",
         "--cgroup-root", env.cgroup_parent("agent"), "--read-only-port", str(ro),
         "--healthz-port", str(healthz), "--port", "0", "--cri-debug-socket", str(sock)],
        stdout=subprocess.DEVNULL, stderr=open(work / "agent.log", "wb"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await asyncio.to_thread(get, f"http://127.0.0.1:{healthz}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("agent did not start; see " + str(work / "agent.log"))
                await asyncio.sleep(0.1)
        if socket:
            result.socket = await debug_socket(env, sock, calls)
        await scrape(env, f"http://127.0.0.1:{ro}", pods, agent.pid, result)
        return result
    finally:
        agent.terminate()
        await asyncio.to_thread(agent.wait, 30)
        await remove_all_pods(env.endpoint)
        env.down()
        subprocess.run(["rm", "-rf", str(work)], check=False)
        leaks = env.leaks()
        if leaks:
            print("LEAKS:", *leaks, sep="\n  ")


def report(result: ObservabilityResult) -> None:
    if result.socket:
        print(f"\n### Debug socket overhead ({result.calls} calls each, alternating)\n")
        print("| call | direct p50 | via p50 | added p50 | direct p99 | via p99 |")
        print("|---|---|---|---|---|---|")
        for c in result.socket:
            print(f"| {c.call} | {c.direct_p50:.3f} ms | {c.via_p50:.3f} ms | **{c.added_p50:.3f} ms** | "
                  f"{c.direct_p99:.3f} ms | {c.via_p99:.3f} ms |")
    extra = " (+1 with 50 containers)" if result.socket else ""
    print(f"\n### Scrape cost with {result.pods} pods{extra} (started in {result.start_s:.0f} s)\n")
    print(f"/metrics/resource: {result.resource_bytes} bytes, {result.resource_series} container cpu series\n")
    print("| endpoint | p50 | p99 | agent CPU per scrape | samples |")
    print("|---|---|---|---|---|")
    for t in result.scrape:
        print(f"| {t.label} | {t.p50_ms:.1f} ms | {t.p99_ms:.1f} ms | {t.cpu_ms:.1f} ms | {t.samples} |")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=110)
    parser.add_argument("--skip-socket", action="store_true")
    args = parser.parse_args()
    configure_logging("text", 0)
    report(await run(args.calls, args.pods, socket=not args.skip_socket))


if __name__ == "__main__":
    run_cancellable(main)
