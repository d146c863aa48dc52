"""The demo: a private containerd and registry, `nodeagent run` with the
example static pods from examples/, their status table, and the agent's URLs.

Run with `hack/demo` (or `python -m nodeagent.devenv.demo [--keep]`). The
examples name `localhost:5000/...` images, so the demo registry listens there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from nodeagent.devenv.containerd import HarnessError
from nodeagent.devenv.env import DevEnv
from nodeagent.devenv.registry import free_port
from nodeagent.logsetup import configure_logging

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO_REGISTRY_PORT = 5000
NODE_NAME = "demo-node"


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _wait_running(base_url: str, expected: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    pods: list[dict] = []
    while time.monotonic() < deadline:
        try:
            pods = _get(f"{base_url}/pods")["items"]  # type: ignore[index]
        except (urllib.error.URLError, OSError):
            pods = []
        if len(pods) == expected and all(p["status"].get("phase") == "Running" for p in pods):
            return pods
        time.sleep(0.2)
    raise HarnessError(f"the example pods did not all reach Running in {timeout:.0f}s: "
                       + ", ".join(f"{p['metadata']['name']}={p['status'].get('phase')}" for p in pods))


def run_demo(env: DevEnv, workdir: Path, keep: bool) -> None:
    manifests = workdir / "manifests"
    manifests.mkdir()
    for example in sorted(EXAMPLES.glob("*.yaml")):
        shutil.copy(example, manifests / example.name)
    read_only, healthz = free_port(), free_port()
    base_url = f"http://127.0.0.1:{read_only}"
    nodeagent = str(Path(sys.executable).with_name("nodeagent"))
    log_path = workdir / "nodeagent.log"
    with open(log_path, "wb") as log:
        agent = subprocess.Popen(
            [nodeagent, "run", "--container-runtime-endpoint", env.endpoint,
             "--pod-manifest-path", str(manifests), "--root-dir", str(workdir / "root"),
             "--pod-logs-dir", str(workdir / "logs"), "--hostname-override", NODE_NAME,
             "--cgroup-root", env.cgroup_parent("demo"), "--read-only-port", str(read_only),
             "--healthz-port", str(healthz), *env.agent_network_flags(), "--port", "0",
             "--cri-debug-socket", str(workdir / "cri.sock")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        print(f"nodeagent started (pid {agent.pid}), static pods from {manifests}")
        pods = _wait_running(base_url, expected=len(list(manifests.glob("*.yaml"))))
        print()
        subprocess.run([nodeagent, "pods", "--server", base_url], check=True)
        web = next(p for p in pods if p["metadata"]["name"].startswith("web-"))
        with urllib.request.urlopen(f"http://{web['status']['podIP']}:8080/", timeout=5) as resp:
            page = resp.read().decode().strip()
        print(f"\nweb pod answers http://{web['status']['podIP']}:8080/ -> {page}")
        print(f"\nhealthz   http://127.0.0.1:{healthz}/healthz")
        print(f"pods      {base_url}/pods   (read-only API, v1 PodList)")
        print(f"manifests {base_url}/nodeagent/manifests")
        print(f"agent log {log_path}")
        if keep:
            print(f"try       .venv/bin/nodeagent pods --server {base_url}")
            print("\nkept running; edit or add manifests in the directory above; Ctrl-C to stop")
            try:
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
            except KeyboardInterrupt:
                pass
    finally:
        agent.terminate()
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
        env.reset(workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    args = parser.parse_args(argv)
    configure_logging("text", 0)
    if args.keep:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    env = DevEnv(name="demo", registry_port=DEMO_REGISTRY_PORT)
    workdir = Path(tempfile.mkdtemp(prefix="nodeagent-demo-"))
    try:
        env.up()
        run_demo(env, workdir, args.keep)
    except (HarnessError, subprocess.CalledProcessError, OSError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        env.down()
        shutil.rmtree(workdir, ignore_errors=True)
        leaks = env.leaks()
        print("environment removed" + (f"; LEFT BEHIND: {leaks}" if leaks else ", nothing left behind"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
