"""Where does the agent's event loop block? A dev tool, not a timed test.

Runs `nodeagent run` against a private DevEnv with N static pods (created,
then deleted, `--cycles` times) and, inside the agent process:

* a watchdog thread that samples the loop thread's stack whenever the loop
  has not ticked for more than `--threshold-ms` (a loop-lag profiler: it
  names the blocking line, which asyncio's debug log cannot);
* an audit hook that records every file/process syscall made *on the loop
  thread* (open, mkdir, rmdir, scandir, listdir, subprocess, kill, ...)
  plus os.stat / os.statvfs, grouped by call site, so blocking calls that
  happen to be fast on this run still show up;
* `PYTHONASYNCIODEBUG=1` with `slow_callback_duration` = the threshold when
  `--asyncio-debug` is given (its "Executing ... took" lines are kept).

`--stall SECONDS` simulates a stalled cgroupfs (a global cgroup_mutex held
by the kernel, as seen on these VMs): from the first pod cgroup mkdir on,
every mkdir/rmdir/write under /sys/fs/cgroup waits until the window ends.
Meanwhile the driver GETs /pods and /healthz every 50 ms and reports the
slowest answers: they must stay fast while cgroup work is stuck.

Usage: .venv/bin/python bench/loop_stalls.py [--pods 30] [--cycles 1]
                                             [--stall 10] [--asyncio-debug]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = str(Path(__file__).resolve().parents[1])
CGROUPFS = "/sys/fs/cgroup/"
# Audit events that are a syscall on a file, a directory or a process.
AUDITED = {"open", "os.mkdir", "os.rmdir", "os.listdir", "os.scandir", "os.remove", "os.rename",
           "os.chmod", "os.chown", "os.truncate", "os.symlink", "os.link", "os.utime",
           "shutil.rmtree", "shutil.copyfile", "subprocess.Popen", "os.kill", "os.posix_spawn",
           "os.exec", "os.fork", "_thread.start_new_thread"}


# -- inside the agent process ---------------------------------------------------

def _frames(frame: Any) -> list[tuple[str, int, str]]:
    """(file, line, function), outermost first, without reading source
    files (linecache would open files inside the audit hook)."""
    out = []
    while frame is not None:
        out.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    return out[::-1]


def _site(frames: list[tuple[str, int, str]]) -> list[str]:
    """The innermost nodeagent frames (up to 4) and the innermost 3 frames."""
    frames = [f for f in frames if "/bench/loop_stalls.py" not in f[0]]
    ours = [i for i, f in enumerate(frames) if "/nodeagent/" in f[0]]
    picked = sorted(set(ours[-4:]) | set(range(max(0, len(frames) - 3), len(frames))))
    return [f"{os.path.relpath(frames[i][0], ROOT) if frames[i][0].startswith(ROOT) else frames[i][0]}"
            f":{frames[i][1]} {frames[i][2]}" for i in picked]


class LoopWatch:
    def __init__(self, out: Path, threshold: float) -> None:
        self.out = out
        self.threshold = threshold
        self.loop_thread = threading.get_ident()
        self.last_tick = time.monotonic()
        self.calls: collections.Counter[tuple[str, str, tuple[str, ...]]] = collections.Counter()
        self.stalls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.running = True

    # audit hook: a blocking call made on the loop thread
    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in AUDITED or threading.get_ident() != self.loop_thread:
            return
        if asyncio.events._get_running_loop() is None:
            return
        target = str(args[0]) if args else ""
        if event == "open" and (target.isdigit() or target.startswith(("/dev/null", "<"))):
            return
        self.note(event, target, _frames(sys._getframe(1)))

    def note(self, event: str, target: str, frames: list[tuple[str, int, str]]) -> None:
        where = tuple(_site(frames))
        if any("logsetup" in w or "structlog" in w for w in where):
            return
        kind = ("cgroupfs" if target.startswith(CGROUPFS) else "/proc" if target.startswith("/proc")
                else "/sys" if target.startswith("/sys") else "file")
        with self.lock:
            self.calls[(event, kind, where)] += 1

    def wrap_stat(self) -> None:
        for name in ("stat", "lstat", "statvfs"):
            real = getattr(os, name)

            def wrapped(path: Any, *a: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
                if threading.get_ident() == self.loop_thread and asyncio.events._get_running_loop():
                    target = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
                    self.note(f"os.{_name}", target, _frames(sys._getframe(1)))
                return _real(path, *a, **kw)
            setattr(os, name, wrapped)

    async def heartbeat(self) -> None:
        while True:
            self.last_tick = time.monotonic()
            await asyncio.sleep(0.002)

    def watchdog(self) -> None:
        stall: dict[str, Any] | None = None
        while self.running:
            time.sleep(0.002)
            lag = time.monotonic() - self.last_tick
            if lag > self.threshold:
                frame = sys._current_frames().get(self.loop_thread)
                if frame is None:
                    continue
                stack = tuple(_site(_frames(frame)))
                if stall is None:
                    stall = {"start": self.last_tick, "samples": collections.Counter()}
                stall["samples"][stack] += 1
            elif stall is not None:
                ms = (self.last_tick - stall["start"]) * 1000
                top = stall["samples"].most_common(1)[0][0]
                self.stalls.append({"ms": round(ms, 1), "stack": list(top)})
                stall = None

    def dump(self) -> None:
        self.running = False
        calls = [{"event": e, "kind": k, "count": n, "stack": list(w)}
                 for (e, k, w), n in self.calls.most_common()]
        self.out.write_text(json.dumps({"stalls": self.stalls, "calls": calls}, indent=1))


def _simulate_stall(seconds: float) -> None:
    """From the first pod cgroup mkdir on, cgroupfs mutations wait until
    `seconds` later, in whichever thread makes them (as a held cgroup_mutex)."""
    import builtins
    window: list[float] = []
    real_mkdir, real_rmdir, real_open = os.mkdir, os.rmdir, builtins.open

    def wait(path: Any) -> None:
        p = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
        if not p.startswith(CGROUPFS):
            return
        if not window and "/pod" in p:
            window.append(time.monotonic() + seconds)
            print(f"loop_stalls: cgroupfs stalled for {seconds}s from now", file=sys.stderr, flush=True)
        if window and time.monotonic() < window[0]:
            time.sleep(window[0] - time.monotonic())

    def mkdir(path: Any, *a: Any, **kw: Any) -> None:
        wait(path)
        real_mkdir(path, *a, **kw)

    def rmdir(path: Any, *a: Any, **kw: Any) -> None:
        wait(path)
        real_rmdir(path, *a, **kw)

    def open_(file: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
        if any(c in mode for c in "wa+"):
            wait(file)
        return real_open(file, mode, *a, **kw)

    os.mkdir, os.rmdir, builtins.open = mkdir, rmdir, open_


def agent_main(argv: list[str]) -> int:
    import nodeagent.agent
    from nodeagent import cli

    watch = LoopWatch(Path(os.environ["LOOPWATCH_OUT"]), float(os.environ.get("LOOPWATCH_MS", "20")) / 1000)
    if os.environ.get("LOOPWATCH_STALL"):
        _simulate_stall(float(os.environ["LOOPWATCH_STALL"]))
    original = nodeagent.agent.run_agent

    async def run_agent(*a: Any, **kw: Any) -> None:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = watch.threshold
        watch.loop_thread = threading.get_ident()
        beat = asyncio.ensure_future(watch.heartbeat())
        threading.Thread(target=watch.watchdog, daemon=True).start()
        try:
            await original(*a, **kw)
        finally:
            beat.cancel()

    nodeagent.agent.run_agent = run_agent
    watch.wrap_stat()
    sys.addaudithook(watch.audit)
    try:
        return cli.main(argv)
    finally:
        watch.dump()


# -- the driver ---------------------------------------------------------------------

def manifest(name: str, image: str, shape: str) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n"
            f"  terminationGracePeriodSeconds: 1\n"
            f"  containers:\n  - name: main\n    image: {image}\n    command: [sleep, '3600']\n"
            f"    resources: {shape}\n")


def timed_get(url: str) -> tuple[float, Any]:
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
    return time.monotonic() - start, body


async def drive(args: argparse.Namespace) -> None:
    from nodeagent.devenv.env import DevEnv
    from nodeagent.devenv.registry import free_port

    env = DevEnv(name="loopw")
    work = Path(tempfile.mkdtemp(prefix="nodeagent-loopw-"))
    env.up()
    proc = None
    latencies: dict[str, list[float]] = {"/pods": [], "/healthz": []}
    out = work / "loopwatch.json"
    try:
        manifests = work / "manifests"
        manifests.mkdir()
        port, healthz = free_port(), free_port()
        base = f"http://127.0.0.1:{port}"
        environ = dict(os.environ, LOOPWATCH_OUT=str(out), LOOPWATCH_MS=str(args.threshold_ms))
        if args.stall:
            environ["LOOPWATCH_STALL"] = str(args.stall)
        if args.asyncio_debug:
            environ["PYTHONASYNCIODEBUG"] = "1"
        log = open(work / "agent.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, __file__, "agent", "--logging-format", "json", "-v", "0", "run",
             "--container-runtime-endpoint", env.endpoint, "--pod-manifest-path", str(manifests),
             "--root-dir", str(work / "root"), "--pod-logs-dir", str(work / "logs"),
             "--hostname-override", "loopnode", "--node-ip", "127.0.0.1",
             "--cgroup-root", env.cgroup_parent("loopw"), *env.agent_network_flags(),
             "--read-only-port", str(port), "--healthz-port", str(healthz), "--port", "0",
             "--cri-debug-socket", ""], stdout=log, stderr=subprocess.STDOUT, env=environ)
        log.close()
        tracer = None
        ready_at = 0.0
        if args.strace:  # every clone(): which thread made it
            tracer = subprocess.Popen(["strace", "-f", "-qq", "-ttt", "-e", "trace=clone,clone3,fork,vfork",
                                       "-p", str(proc.pid), "-o", str(work / "clones.txt")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                timed_get(f"{base}/healthz")
                ready_at = time.time()
                break
            except OSError:
                await asyncio.sleep(0.05)
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                for path, url in (("/pods", f"{base}/pods"), ("/healthz", f"http://127.0.0.1:{healthz}/healthz")):
                    seconds, _ = await asyncio.to_thread(timed_get, url)
                    latencies[path].append(seconds)
                await asyncio.sleep(0.05)

        poller = asyncio.ensure_future(poll())

        async def pods() -> list[dict[str, Any]]:
            return json.loads((await asyncio.to_thread(timed_get, f"{base}/pods"))[1])["items"]

        shapes = ["{}", "{requests: {cpu: 10m}}", "{limits: {cpu: 50m, memory: 16Mi}}"]
        for cycle in range(args.cycles):
            started = time.monotonic()
            for i in range(args.pods):
                name = f"lw-{cycle}-{i}"
                tmp = manifests / f".{name}"
                tmp.write_text(manifest(name, env.busybox, shapes[i % 3]))
                tmp.rename(manifests / f"{name}.yaml")
            while True:
                items = await pods()
                if len(items) == args.pods and all(
                        p["status"].get("phase") == "Running" and all(
                            "running" in c["state"] for c in p["status"].get("containerStatuses", []))
                        for p in items):
                    break
                if time.monotonic() - started > 600:
                    raise SystemExit(f"pods did not run; see {work / 'agent.log'}")
                await asyncio.sleep(0.2)
            print(f"cycle {cycle}: {args.pods} pods running after {time.monotonic() - started:.1f}s")
            for path in manifests.glob("*.yaml"):
                path.unlink()
            started = time.monotonic()
            async with __import__("nodeagent.cri.client", fromlist=["CRIClient"]).CRIClient(env.endpoint) as cri:
                while await pods() or await cri.list_pod_sandbox():
                    if time.monotonic() - started > 600:
                        raise SystemExit(f"pods were not removed; see {work / 'agent.log'}")
                    await asyncio.sleep(0.2)
            print(f"cycle {cycle}: removed after {time.monotonic() - started:.1f}s")
        stop.set()
        await poller
        if tracer is not None:
            tracer.terminate()
            tracer.wait()
            clones_report(work / "clones.txt", proc.pid, ready_at)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        env.down()
    report(out, work / "agent.log", latencies, args)
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)])


def clones_report(path: Path, pid: int, ready_at: float) -> None:
    """clone() calls by thread once /healthz answered: the loop thread
    (tid == pid) must make none."""
    by_tid: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        tid, stamp, call = (line.split(" ", 2) + ["", ""])[:3]
        if float(stamp) < ready_at:
            continue
        if call.lstrip().startswith(("clone", "fork", "vfork")) and "resumed" not in call:
            by_tid[tid] += 1
    loop = by_tid.pop(str(pid), 0)
    print(f"clone() calls once /healthz answered: {loop} by the event loop thread, "
          f"{sum(by_tid.values())} by other threads ({dict(by_tid)})")


def report(out: Path, agent_log: Path, latencies: dict[str, list[float]], args: argparse.Namespace) -> None:
    for path, values in latencies.items():
        if values:
            ordered = sorted(values)
            print(f"GET {path}: {len(values)} requests, median {ordered[len(ordered) // 2] * 1000:.1f} ms, "
                  f"p99 {ordered[int(len(ordered) * 0.99)] * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms")
    if not out.exists():
        print("no loop watch output (the agent did not stop cleanly?)")
        return
    data = json.loads(out.read_text())
    stalls = data["stalls"]
    print(f"\nloop stalls > {args.threshold_ms} ms: {len(stalls)}")
    grouped: dict[tuple[str, ...], list[float]] = collections.defaultdict(list)
    for s in stalls:
        grouped[tuple(s["stack"])].append(s["ms"])
    for stack, ms in sorted(grouped.items(), key=lambda kv: -max(kv[1])):
        print(f"  {len(ms)}x, max {max(ms):.0f} ms, total {sum(ms):.0f} ms")
        for line in stack:
            print(f"      {line}")
    print("\nblocking calls made on the loop thread (by site):")
    for c in data["calls"]:
        print(f"  {c['count']:5d} {c['event']} [{c['kind']}]")
        for line in c["stack"]:
            print(f"      {line}")
    slow = [line for line in agent_log.read_text(errors="replace").splitlines() if "Executing" in line]
    if slow:
        print(f"\nasyncio debug slow callbacks: {len(slow)}")
        for line in slow[:40]:
            print(f"  {line[:300]}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "agent":
        sys.exit(agent_main(sys.argv[2:]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--cycles", type=int, default=1)
    parser.add_argument("--stall", type=float, default=0.0)
    parser.add_argument("--threshold-ms", type=float, default=20.0)
    parser.add_argument("--asyncio-debug", action="store_true")
    parser.add_argument("--strace", action="store_true", help="count clone() calls per agent thread")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (agent log)")
    args = parser.parse_args()
    from bench.cancellable import run_cancellable
    from nodeagent.logsetup import configure_logging
    configure_logging("text", 0)
    run_cancellable(lambda: drive(args))


if __name__ == "__main__":
    main()
