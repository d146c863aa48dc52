"""The `nodeagent` command as a user runs it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nodeagent import __version__
from nodeagent.devenv.env import DevEnv

NODEAGENT = [str(Path(sys.executable).with_name("nodeagent"))]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NODEAGENT, *args], capture_output=True, text=True, timeout=timeout)


def test_help() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "usage: nodeagent" in result.stdout
    assert "version" in result.stdout and "--logging-format" in result.stdout


def test_version() -> None:
    result = run("version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"nodeagent v{__version__} ")


def test_version_with_runtime(devenv: DevEnv) -> None:
    result = run("version", "--container-runtime-endpoint", devenv.endpoint)
    assert result.returncode == 0, result.stderr
    assert "runtime: containerd 1.6" in result.stdout and "(CRI API v1)" in result.stdout


def test_missing_runtime_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    sock = tmp_path / "nothing.sock"
    result = run("version", "--container-runtime-endpoint", f"unix://{sock}",
                 "--runtime-request-timeout", "1s")
    assert result.returncode == 1
    assert "nodeagent: error: gave up after 1s waiting for the container runtime" in result.stderr
    assert f"socket {sock} does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_values_are_refused_clearly() -> None:
    result = run("version", "--runtime-request-timeout", "soon")
    assert result.returncode == 2
    assert "invalid duration 'soon'" in result.stderr and "Traceback" not in result.stderr
    result = run("version", "--container-runtime-endpoint", "tcp://1.2.3.4:1")
    assert result.returncode == 1
    assert "only unix:// sockets are supported" in result.stderr and "Traceback" not in result.stderr


def test_json_logs_carry_ids(tmp_path: Path) -> None:
    """--logging-format=json: one JSON object per line with the pod/container/sandbox keys."""
    code = (
        "import structlog\n"
        "from nodeagent.logsetup import configure_logging, bind_ids\n"
        "configure_logging('json', 0)\n"
        "bind_ids(pod='default/web', container='nginx', sandbox='abc123')\n"
        "structlog.get_logger().info('container started', attempt=1)\n"
        "structlog.get_logger().debug('hidden at -v 0')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    record = json.loads(lines[0])
    assert record["event"] == "container started" and record["level"] == "info"
    assert (record["pod"], record["container"], record["sandbox"]) == ("default/web", "nginx", "abc123")
    assert record["attempt"] == 1 and record["timestamp"].endswith("Z")
