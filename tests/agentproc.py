"""`nodeagent run` as a real process against the test containerd, observed from outside."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodeagent.devenv.env import DevEnv
from nodeagent.devenv.registry import free_port

NODEAGENT = str(Path(sys.executable).with_name("nodeagent"))
NODE_NAME = "testnode"


class AgentProcess:
    def __init__(self, env: DevEnv, workdir: Path, *extra_args: str,
                 environ: dict[str, str] | None = None) -> None:
        self.env = env
        self.environ = environ  # the process environment (default: inherited)
        self.workdir = workdir
        self.manifests = workdir / "manifests"
        self.root_dir = workdir / "root"
        self.logs_dir = workdir / "logs"
        self.log_file = workdir / "agent.log"
        self.manifests.mkdir(parents=True, exist_ok=True)
        self.read_only_port = free_port()
        self.healthz_port = free_port()
        self.port = free_port()  # the authenticated kubelet API
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.cgroup_root = env.cgroup_parent("agent")
        self.debug_socket = workdir / "run" / "cri.sock"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.read_only_port}"

    def command(self) -> list[str]:
        return [NODEAGENT, "--logging-format", "json", "-v", "4", "run",
                "--container-runtime-endpoint", self.env.endpoint,
                "--pod-manifest-path", str(self.manifests),
                "--root-dir", str(self.root_dir), "--pod-logs-dir", str(self.logs_dir),
                "--hostname-override", NODE_NAME, "--node-ip", "127.0.0.1",
                "--cgroup-root", self.cgroup_root,
                "--read-only-port", str(self.read_only_port),
                "--healthz-port", str(self.healthz_port), *self.env.agent_network_flags(),
                "--cri-debug-socket", str(self.debug_socket), "--port", str(self.port),
                *self.extra_args]  # later flags win

    def start(self, timeout: float = 30.0, ready_path: str = "/healthz") -> AgentProcess:
        log = open(self.log_file, "ab")
        try:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.environ)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.healthz_port}{ready_path}", timeout=1):
                    return self
            except (urllib.error.URLError, OSError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"agent did not become healthy:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash: pods must keep running."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 15.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"agent ignored SIGTERM:\n{self.log_tail()}")
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_file.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    # -- manifests ------------------------------------------------------------

    def write_manifest(self, name: str, text: str) -> Path:
        """Atomically, as `kubectl`-style tools and editors do (write + rename)."""
        path = self.manifests / name
        tmp = self.manifests / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def remove_manifest(self, name: str) -> None:
        (self.manifests / name).unlink()

    # -- the read-only API ------------------------------------------------------

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=5) as resp:
            return json.load(resp)

    async def pods(self) -> list[dict[str, Any]]:
        return (await asyncio.to_thread(self.get_json, "/pods"))["items"]

    async def pod(self, name: str) -> dict[str, Any] | None:
        full = f"{name}-{NODE_NAME}"
        return next((p for p in await self.pods() if p["metadata"]["name"] == full), None)

    async def wait_pod(self, name: str, predicate: Callable[[dict[str, Any]], bool],
                       timeout: float = 30.0, what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = await self.pod(name)
            if last is not None and predicate(last):
                return last
            await asyncio.sleep(0.05)
        raise AssertionError(f"pod {name}: {what or 'condition'} not reached in {timeout}s; "
                             f"last seen:\n{json.dumps(last, indent=1)[:4000]}\n"
                             f"--- agent log ---\n{self.log_tail()}")

    async def wait_gone(self, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.pod(name) is None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"pod {name} still listed after {timeout}s")


def phase(pod: dict[str, Any]) -> str:
    return pod.get("status", {}).get("phase", "")


def container(pod: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    """The named container's status; an empty one before the first sync reported it."""
    key = "initContainerStatuses" if init else "containerStatuses"
    found = [c for c in pod.get("status", {}).get(key, []) if c["name"] == name]
    return found[0] if found else {"name": name, "state": {}, "lastState": {}, "restartCount": 0}


def running(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses", [])
    return phase(pod) == "Running" and bool(statuses) and all("running" in c["state"] for c in statuses)


def pod_manifest(name: str, image: str, command: list[str], *, restart_policy: str = "Always",
                 extra_spec: str = "", container_extra: str = "", grace: int = 2) -> str:
    """A one-container static pod manifest (YAML)."""
    return f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  restartPolicy: {restart_policy}
  terminationGracePeriodSeconds: {grace}
{extra_spec}  containers:
  - name: main
    image: {image}
    command: {json.dumps(command)}
{container_extra}"""
