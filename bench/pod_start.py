"""Pod start through nodeagent vs the raw CRI lower bound, in the same run.

agent: N static pod manifests written at once into a running agent (one pod
       started and removed first, so the agent is past its start-up, then a
       second of quiet as before a raw round) → all N
       reported Running on the read-only /pods (polled every 5/20/50 ms for
       N = 1/10/30 over one keep-alive connection).
raw:   the same pods' CRI calls made directly and concurrently through
       nodeagent.cri: ImageStatus, RunPodSandbox, PodSandboxStatus (the pod
       IP for the container's /etc/hosts), CreateContainer, StartContainer
       (the configs, the hosts and termination-log files come from the
       agent's own code, so the containers are the same), timed
       (after the same second of quiet) until every StartContainer has
       returned.

The two alternate round by round (which goes first alternates too) and the
medians are compared, because these VMs are noisy. Also measured: how long
after a container exits /pods shows it terminated (the PLEG target), and the
agent's RSS with 30 pods.

Usage: .venv/bin/python bench/pod_start.py [--rounds 5] [--sizes 1,10,30,110] [--large-rounds 3]
(run() returns a PodStartResult; `python -m bench` uses it.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cancellable import run_cancellable  # noqa: E402
from nodeagent.api.manifest import parse_manifest  # noqa: E402
from nodeagent.cri.client import CRIClient  # noqa: E402
from nodeagent.devenv.env import DevEnv, remove_all_pods  # noqa: E402
from nodeagent.devenv.registry import free_port  # noqa: E402
from nodeagent.logsetup import configure_logging  # noqa: E402
from nodeagent.netns import hosts as etchosts  # noqa: E402
from nodeagent.pods import crispec, volumes  # noqa: E402
from nodeagent.sources.static import apply_static_defaults  # noqa: E402

NODE = "benchnode"
POLL_BY_SIZE = {1: 0.005, 10: 0.02, 30: 0.05, 110: 0.1}  # seconds between reads of /pods
# Seconds of quiet before a measured round, in both modes: the agent's round
# follows its warm-up pod's removal, whose tail (containerd's garbage
# collection, the agent's pod directory and cgroup cleanup) would otherwise
# run inside the measured window while the raw round starts from quiet.
SETTLE = 1.0
# Starts measured per round: a single pod's start (~0.25 s) varies by ±20 %
# on these VMs, so N = 1 takes three samples per round, each after its own
# quiet second (the agent's within one running agent, the raw's one by one).
REPEATS_BY_SIZE = {1: 3}
WAIT_TIMEOUT = 600.0  # seconds: a round that takes longer is stuck, not slow
VERBOSITY = 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class AgentVsRaw:
    """Medians of per-round seconds, agent and raw CRI, and their ratio."""
    agent_s: list[float]
    raw_s: list[float]

    @property
    def agent(self) -> float:
        return statistics.median(self.agent_s)

    @property
    def raw(self) -> float:
        return statistics.median(self.raw_s)

    @property
    def ratio(self) -> float:
        return self.agent / self.raw


@dataclass
class SizeTimes(AgentVsRaw):
    """One N: per-start seconds to all Running (agent), to the last
    StartContainer (raw), and the agent's CPU seconds per start (one start
    per round, REPEATS_BY_SIZE for small N)."""
    n: int
    agent_s: list[float] = field(default_factory=list)
    raw_s: list[float] = field(default_factory=list)
    agent_cpu_s: list[float] = field(default_factory=list)

    @property
    def cpu(self) -> float:
        return statistics.median(self.agent_cpu_s)


@dataclass
class PodStartResult:
    rounds: int
    large_rounds: int
    sizes: list[SizeTimes]
    exit_ms: list[float]
    rss_mib: float
    rss_pods: int

    @property
    def exit_p50(self) -> float:
        return statistics.median(self.exit_ms)

    @property
    def exit_p99(self) -> float:
        return percentile(self.exit_ms, 0.99)


def manifest(name: str, image: str, command: list[str], restart: str = "Always") -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n"
            f"  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 1\n"
            f"  containers:\n  - name: main\n    image: {image}\n    command: {json.dumps(command)}\n")


def get_pods(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/pods", timeout=10) as resp:
        return json.load(resp)["items"]


class PodsReader:
    """GET /pods over one keep-alive connection, as a polling client would,
    with the least CPU this side can spend: a read every 5 ms competes with
    the runtime for the 2 CPUs being measured. A new TCP connection per read
    cost the agent about 1 ms of CPU; http.client cost this process ~260 us
    a read (a plain socket and the response's Content-Length: ~80 us). An
    unchanged body is not decoded again. One reader per polling loop."""

    REQUEST = b"GET /pods HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"

    def __init__(self, port: int) -> None:
        self._port = port
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._last: tuple[bytes, list[dict]] | None = None

    def get(self) -> list[dict]:
        try:
            body = self._exchange()
        except (OSError, ValueError):
            self.close()  # reconnects on the next read
            raise
        if self._last is None or self._last[0] != body:
            self._last = (body, json.loads(body)["items"])
        return self._last[1]

    def _exchange(self) -> bytes:
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self._port), timeout=10)
            self._buffer = b""
        self._sock.sendall(self.REQUEST)
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._recv()
        head, self._buffer = self._buffer[:end].decode("latin-1"), self._buffer[end + 4:]
        status, *fields = head.split("\r\n")
        if status.split(" ", 2)[1:2] != ["200"]:
            raise ValueError(f"/pods answered {status!r}")
        length = next((int(f.split(":", 1)[1]) for f in fields
                       if f.lower().startswith("content-length:")), None)
        if length is None:
            raise ValueError("/pods answered without a Content-Length")
        while len(self._buffer) < length:
            self._recv()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return body

    def _recv(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise ConnectionResetError("the agent closed the connection")
        self._buffer += chunk

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Agent:
    def __init__(self, env: DevEnv, work: Path) -> None:
        self.env, self.work = env, work
        self.manifests = work / "manifests"
        self.manifests.mkdir(parents=True)
        self.port, self.healthz = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("nodeagent")), "--logging-format", "json", "-v", str(VERBOSITY), "run",
             "--container-runtime-endpoint", env.endpoint, "--pod-manifest-path", str(self.manifests),
             "--root-dir", str(work / "root"), "--pod-logs-dir", str(work / "logs"),
             "--hostname-override", NODE, "--cgroup-root", env.cgroup_parent("bench"),
             "--read-only-port", str(self.port), "--healthz-port", str(self.healthz),
             "--port", "0", "--cri-debug-socket", ""],
            stdout=open(work / "agent.log", "wb"), stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                get_pods(self.base)
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("agent did not start")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def write(self, name: str, text: str) -> None:
        tmp = self.manifests / f".{name}"
        tmp.write_text(text)
        tmp.rename(self.manifests / name)

    async def wait(self, predicate, poll: float = 0.01, timeout: float = WAIT_TIMEOUT) -> float:
        """Read /pods every `poll` seconds until `predicate` holds. The reads
        block this loop, which has nothing else to do meanwhile: a thread hop
        per read would only add CPU beside the runtime being measured."""
        deadline = time.monotonic() + timeout
        reader = PodsReader(self.port)
        try:
            while True:
                pods = reader.get()
                if predicate(pods):
                    return time.monotonic()
                if time.monotonic() > deadline:
                    raise SystemExit(f"/pods did not reach the expected state in {timeout:.0f} s; "
                                     f"see {self.work / 'agent.log'}")
                await asyncio.sleep(poll)
        finally:
            reader.close()

    async def warm_up(self) -> None:
        """One pod started and removed: what is measured is a running agent
        taking a new manifest, not one still starting up (its first relist,
        node facts, QoS cgroups) or running code paths for the first time."""
        self.write("warm-up.yaml", manifest("warm-up", self.env.busybox, ["sleep", "3600"]))
        await self.wait(all_running(1), poll=0.05)
        await self.clear()

    async def clear(self) -> None:
        for path in self.manifests.glob("*.yaml"):
            path.unlink()
        await self.wait(lambda pods: not pods)
        deadline = time.monotonic() + WAIT_TIMEOUT
        async with CRIClient(self.env.endpoint) as cri:
            while await cri.list_pod_sandbox():
                if time.monotonic() > deadline:
                    raise SystemExit("the agent did not remove its sandboxes")
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def all_running(n: int):
    return lambda pods: len(pods) == n and all(
        p["status"].get("phase") == "Running"
        and all("running" in c["state"] for c in p["status"].get("containerStatuses", [])) for p in pods)


async def agent_round(env: DevEnv, work: Path, n: int, tag: str,
                      repeats: int = 1) -> tuple[list[float], float, list[float]]:
    """Per start: seconds to all Running and agent CPU seconds spent; and
    the agent's largest RSS MiB with the n pods. `repeats` starts, one after
    another, in one agent. The agent only runs during its own rounds: it owns
    the runtime and would remove the raw rounds' pods as orphans, as the
    kubelet would."""
    agent = Agent(env, work / tag)
    elapsed: list[float] = []
    cpus: list[float] = []
    rss = 0.0
    try:
        await agent.warm_up()
        for k in range(repeats):
            await asyncio.sleep(SETTLE)
            cpu = agent.cpu_seconds()
            start = time.monotonic()
            for i in range(n):
                name = f"{tag}-{k}-{i}"
                agent.write(f"{name}.yaml", manifest(name, env.busybox, ["sleep", "3600"]))
            # Poll often enough to resolve the time, rarely enough not to load the
            # agent being measured: under 2 % of the expected start time.
            done = await agent.wait(all_running(n), poll=POLL_BY_SIZE.get(n, 0.05))
            cpus.append(agent.cpu_seconds() - cpu)
            elapsed.append(done - start)
            rss = max(rss, agent.rss_mib())
            await agent.clear()
    finally:
        agent.stop()
    return elapsed, rss, cpus


async def raw_round(env: DevEnv, image: str, n: int, tag: str, work: Path) -> float:
    ctx = crispec.NodeContext(node_name=NODE, node_ips=("127.0.0.1",), allocatable_cpu_millis=2000,
                              allocatable_memory_bytes=1 << 30, pod_logs_dir=work / "rawlogs",
                              root_dir=work / "rawroot")
    pods = []
    for i in range(n):
        [(_, pod)] = parse_manifest(manifest(f"{tag}-{i}", image, ["sleep", "3600"]), "bench").pods
        apply_static_defaults(pod, NODE, f"/bench/{tag}-{i}.yaml", "2026-01-01T00:00:00Z")
        pods.append(pod)
    async with CRIClient(env.endpoint) as cri:
        async def one(pod) -> None:
            image_ref = (await cri.image_status(image)).id
            sconf = crispec.sandbox_config(pod, ctx, attempt=0,
                                           cgroup_parent=f"{env.cgroup_parent('raw')}/pod{pod.metadata.uid}")
            Path(sconf.log_directory).mkdir(parents=True, exist_ok=True)
            sid = await cri.run_pod_sandbox(sconf)
            # The same container as the agent's: its /etc/hosts (which needs
            # the pod IP) and termination-log mounts.
            network = (await cri.pod_sandbox_status(sid)).status.network
            ips = tuple(ip for ip in [network.ip, *(a.ip for a in network.additional_ips)] if ip)
            container = pod.spec.containers[0]
            termination_log, hosts = await asyncio.to_thread(container_files, pod, container, ctx, ips)
            cconf = crispec.container_config(pod, container, ctx, attempt=0, image_ref=image_ref,
                                             sandbox_ip=ips[0] if ips else "", mounts={},
                                             termination_log=termination_log)
            if hosts is not None:
                cconf.mounts.append(hosts)
            cid = await cri.create_container(sid, cconf, sconf)
            await cri.start_container(cid)

        await asyncio.sleep(SETTLE)  # as the agent's round does
        start = time.monotonic()
        await asyncio.gather(*(one(p) for p in pods))
        elapsed = time.monotonic() - start
    await remove_all_pods(env.endpoint)
    return elapsed


def container_files(pod, container, ctx: crispec.NodeContext, ips: tuple[str, ...]):
    """The container's termination-log file and /etc/hosts mount, as the agent makes them."""
    return (volumes.termination_log_path(ctx.root_dir, pod.metadata.uid, container.name, 0),
            etchosts.container_hosts_mount(pod, container, ctx, ips))


async def exit_detection(agent: Agent, image: str, count: int) -> list[float]:
    """ms from the runtime's finishedAt to /pods showing the container terminated."""
    delays = []
    reader = PodsReader(agent.port)
    for i in range(count):
        name = f"exit-{i}"
        agent.write(f"{name}.yaml", manifest(name, image, ["sh", "-c", "sleep 0.5"], restart="Never"))
        seen_at = None
        deadline = time.monotonic() + 60
        while seen_at is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}'s exit never showed on /pods")
            pods = await asyncio.to_thread(reader.get)
            now = time.time()
            for p in pods:
                for c in p["status"].get("containerStatuses", []):
                    if "terminated" in c["state"]:
                        seen_at = now
                        cid = c["containerID"].split("://")[1]
            await asyncio.sleep(0.005)
        async with CRIClient(agent.env.endpoint) as cri:
            finished = (await cri.container_status(cid)).status.finished_at / 1e9
        delays.append((seen_at - finished) * 1000)
        await agent.clear()
    reader.close()
    return delays


async def run(rounds: int = 5, sizes: tuple[int, ...] = (1, 10, 30), exits: int = 30,
              large_rounds: int | None = None) -> PodStartResult:
    """Measure in a DevEnv of its own; N > 30 gets `large_rounds` rounds
    (default: `rounds`), since a 110-pod round takes about a minute."""
    large = rounds if large_rounds is None else large_rounds
    env = DevEnv(name="bench")
    work = Path(tempfile.mkdtemp(prefix="nodeagent-bench-"))
    env.up()
    agent = None
    try:
        async with CRIClient(env.endpoint) as cri:
            await cri.pull_image(env.busybox)
        await agent_round(env, work, 1, "warm")
        await raw_round(env, env.busybox, 1, "warm", work)
        results = [SizeTimes(n) for n in sizes]
        rss = 0.0
        for r in range(max(rounds, large)):
            for times in results:
                n = times.n
                if r >= (large if n > 30 else rounds):
                    continue
                order = ("agent", "raw") if r % 2 == 0 else ("raw", "agent")
                repeats = REPEATS_BY_SIZE.get(n, 1)
                for mode in order:
                    tag = f"r{r}n{n}{mode[0]}"
                    if mode == "agent":
                        elapsed, used, cpu = await agent_round(env, work, n, tag, repeats)
                        times.agent_s += elapsed
                        times.agent_cpu_s += cpu
                        if n == max(sizes):
                            rss = max(rss, used)
                    else:
                        for k in range(repeats):
                            times.raw_s.append(await raw_round(env, env.busybox, n, f"{tag}{k}", work))
        delays = []
        if exits:
            agent = Agent(env, work / "exits")
            delays = await exit_detection(agent, env.busybox, exits)
        return PodStartResult(rounds=rounds, large_rounds=large, sizes=results, exit_ms=delays,
                              rss_mib=rss, rss_pods=max(sizes))
    finally:
        if agent is not None:
            agent.stop()
        env.down()
        subprocess.run(["rm", "-rf", str(work)])


def report(result: PodStartResult) -> None:
    rounds = (f"{result.rounds} rounds" if result.large_rounds == result.rounds
              else f"{result.rounds} rounds ({result.large_rounds} for N > 30)")
    print(f"\npod start, manifest written -> Running on /pods vs raw CRI, {rounds}, medians")
    print(f"{'N':>4} {'agent s':>9} {'raw s':>9} {'ratio':>7} {'agent CPU s':>12}   "
          "agent starts / raw starts")
    for t in result.sizes:
        print(f"{t.n:>4} {t.agent:9.3f} {t.raw:9.3f} {t.ratio:7.2f}x {t.cpu:12.2f}   "
              f"{' '.join(f'{x:.2f}' for x in t.agent_s)} / "
              f"{' '.join(f'{x:.2f}' for x in t.raw_s)}")
    delays = sorted(result.exit_ms)
    if delays:
        print(f"\nexit noticed on /pods after finishedAt: median {result.exit_p50:.0f} ms, "
              f"p99 {result.exit_p99:.0f} ms, max {delays[-1]:.0f} ms ({len(delays)} exits)")
    print(f"agent RSS with {result.rss_pods} pods: {result.rss_mib:.0f} MiB")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1,10,30")
    parser.add_argument("--large-rounds", type=int, default=None, help="rounds for N > 30 (default: --rounds)")
    parser.add_argument("--exits", type=int, default=30)
    args = parser.parse_args()
    configure_logging("text", 0)
    report(await run(args.rounds, tuple(int(s) for s in args.sizes.split(",")), args.exits, args.large_rounds))


if __name__ == "__main__":
    run_cancellable(main)
