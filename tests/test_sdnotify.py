"""sd_notify: the message encoding, abstract sockets, and what a real
`nodeagent run` tells a real NOTIFY_SOCKET (READY after the first sync,
STATUS, WATCHDOG only while the runtime answers, STOPPING on SIGTERM)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.sdnotify import Notifier, NotifyError, encode, socket_address, watchdog_interval
from tests.agentproc import NODE_NAME, AgentProcess, pod_manifest, running
from tests.polling import wait_for


# -- units ---------------------------------------------------------------------

def test_encode_lines() -> None:
    assert encode({"READY": 1, "STATUS": "3 pods running"}) == b"READY=1\nSTATUS=3 pods running\n"
    assert encode({"WATCHDOG": 1}) == b"WATCHDOG=1\n"


@pytest.mark.parametrize("fields", [{"STATUS": "two\nlines"}, {"STATUS": "nul\0"}, {"lower": "x"},
                                    {"": "x"}, {"A=B": "x"}])
def test_encode_refuses_forged_fields(fields: dict[str, str]) -> None:
    with pytest.raises(NotifyError):
        encode(fields)


def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@nodeagent/x") == b"\0nodeagent/x"
    for bad in ("@", "relative/path", "vsock:2:1234"):
        with pytest.raises(NotifyError):
            socket_address(bad)


def test_watchdog_interval_is_half_and_honours_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({}, 42) is None
    for bad in ("x", "0", "-5"):
        with pytest.raises(NotifyError):
            watchdog_interval({"WATCHDOG_USEC": bad}, 42)


def test_notifier_sends_to_abstract_socket() -> None:
    name = f"nodeagent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(b"\0" + name.encode())
        receiver.settimeout(5)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": f"@{name}"})
        try:
            assert notifier.send(READY=1, STATUS="ok")
            assert receiver.recv(4096) == b"READY=1\nSTATUS=ok\n"
        finally:
            notifier.close()


def test_notifier_path_socket_and_absent_receiver() -> None:
    directory = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))  # AF_UNIX paths are short
    path = directory / "notify"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(str(path))
            receiver.settimeout(5)
            notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
            assert notifier.send(WATCHDOG=1)
            assert receiver.recv(4096) == b"WATCHDOG=1\n"
        path.unlink()
        assert notifier.send(WATCHDOG=1) is False  # receiver gone: reported, never raised
        notifier.close()
        assert not Notifier.from_env({}).send(READY=1)  # outside systemd: a no-op
        assert not Notifier.from_env({"NOTIFY_SOCKET": "relative"}).enabled
    finally:
        shutil.rmtree(directory)


async def test_first_sync_needs_sources_then_a_later_relist() -> None:
    """READY's gate: every source reported, then a relist that started after."""
    import asyncio

    from nodeagent.sdnotify import first_sync
    state = {"ready": False, "relist": time.monotonic()}  # a relist before the sources reported
    task = asyncio.ensure_future(first_sync(lambda: state["ready"], lambda: state["relist"]))
    await asyncio.sleep(0.3)
    assert not task.done()
    state["ready"] = True
    await asyncio.sleep(0.3)
    assert not task.done()  # the earlier relist does not count
    state["relist"] = time.monotonic()
    await asyncio.wait_for(task, 2)


# -- a real agent against a real socket -------------------------------------------

class NotifyReceiver:
    """What systemd would receive, each datagram timestamped. On READY=1 it
    reads /pods at once, so a test can see what the agent knew when it said so."""

    def __init__(self, on_ready=None) -> None:  # noqa: ANN001
        self.directory = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
        self.path = self.directory / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.on_ready = on_ready
        self.at_ready = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            if fields.get("READY") == "1" and self.on_ready is not None:
                self.at_ready = self.on_ready()
            self.messages.append((time.time(), fields))  # wall clock, as the API server double's records

    def with_field(self, key: str, value: str | None = None) -> list[tuple[float, dict[str, str]]]:
        return [(t, m) for t, m in list(self.messages) if key in m and (value is None or m[key] == value)]

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.sock.close()
        shutil.rmtree(self.directory)


@pytest.fixture
def receiver() -> Iterator[NotifyReceiver]:
    r = NotifyReceiver()
    yield r
    r.close()


def _environ(receiver: NotifyReceiver, watchdog_usec: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "NOTIFY_SOCKET")}
    return {**env, "NOTIFY_SOCKET": str(receiver.path), "WATCHDOG_USEC": str(watchdog_usec)}


async def test_ready_after_first_sync_then_status_watchdog_stopping(devenv, tmp_path, receiver) -> None:
    agent = AgentProcess(devenv, tmp_path, environ=_environ(receiver, 1_000_000))
    agent.write_manifest("web.yaml", pod_manifest("web", devenv.busybox, ["sleep", "3600"]))

    def pods_now() -> list[str]:
        with urllib.request.urlopen(f"{agent.base_url}/pods", timeout=5) as resp:
            return [p["metadata"]["name"] for p in json.load(resp)["items"]]
    receiver.on_ready = pods_now
    try:
        agent.start()
        ready = await wait_for(lambda: receiver.with_field("READY", "1"), 30, 0.05, "READY=1")
        assert len(ready) == 1
        # The static source had reported when READY came: the pod was already the agent's.
        assert receiver.at_ready == [f"web-{NODE_NAME}"], receiver.at_ready
        ready_at, ready_msg = ready[0]
        assert "runtime containerd" in ready_msg["STATUS"] and "API server standalone" in ready_msg["STATUS"]
        await agent.wait_pod("web", running, 60, "running")
        # STATUS follows the running pod count (sent only on change, every 2 s at most).
        await wait_for(lambda: receiver.with_field("STATUS") and
                       receiver.with_field("STATUS")[-1][1]["STATUS"].startswith("1 pods running"),
                       15, 0.1, "STATUS with 1 pod running")
        statuses = [m["STATUS"] for _, m in receiver.with_field("STATUS")]
        assert all("\n" not in s for s in statuses)
        assert all(a != b for a, b in zip(statuses, statuses[1:])), statuses  # only changes
        # WATCHDOG=1 every WATCHDOG_USEC/2 = 0.5 s.
        before = len(receiver.with_field("WATCHDOG"))
        time.sleep(2.0)
        pings = receiver.with_field("WATCHDOG", "1")
        assert 2 <= len(pings) - before <= 6, len(pings) - before
        assert not receiver.with_field("STOPPING")
        agent.process.terminate()
        await wait_for(lambda: receiver.with_field("STOPPING", "1"), 15, 0.05, "STOPPING=1")
        assert agent.process.wait(20) == 0  # a clean exit after STOPPING (pods keep running)
        assert receiver.with_field("STOPPING", "1")[0][0] > ready_at
    finally:
        agent.stop()
        devenv.reset(tmp_path)


async def test_no_ready_until_the_api_source_synced(devenv, tmp_path, receiver, apiserver) -> None:
    """With --kubeconfig the API server is a pod source: while it is down the
    agent is alive (healthz, watchdog pings) but not READY; READY follows the
    agent's first pod list from the API server."""
    kubeconfig = apiserver.kubeconfig(tmp_path / "kubeconfig", user=f"system:node:{NODE_NAME}")
    apiserver.pause()
    agent = AgentProcess(devenv, tmp_path, "--kubeconfig", str(kubeconfig),
                         environ=_environ(receiver, 1_000_000))
    try:
        agent.start()  # healthz answers
        await wait_for(lambda: len(receiver.with_field("WATCHDOG")) >= 4, 10, 0.05, "watchdog pings")
        assert not receiver.with_field("READY"), receiver.messages
        resumed_at = time.time()
        apiserver.resume()
        ready = await wait_for(lambda: receiver.with_field("READY", "1"), 60, 0.05, "READY=1")
        pod_lists = [r.time for r in apiserver.requests
                     if r.method == "GET" and r.path == "/api/v1/pods" and r.status == 200
                     and "watch" not in r.query]
        assert pod_lists and resumed_at < pod_lists[0] < ready[0][0], (pod_lists, ready)
        await wait_for(lambda: "API server connected" in receiver.with_field("STATUS")[-1][1]["STATUS"],
                       30, 0.2, "STATUS with the API server connected")
        assert agent.stop() == 0
    finally:
        agent.stop()
        devenv.reset(tmp_path)


async def test_watchdog_stops_while_runtime_is_down(devenv, tmp_path, receiver) -> None:
    agent = AgentProcess(devenv, tmp_path, environ=_environ(receiver, 1_000_000))
    try:
        agent.start()
        await wait_for(lambda: receiver.with_field("READY", "1"), 30, 0.05, "READY=1")
        await wait_for(lambda: len(receiver.with_field("WATCHDOG")) >= 2, 5, 0.05, "watchdog pings")
        devenv.containerd.stop()
        try:
            stopped_at = time.time()

            def quiet() -> bool:  # no ping for 3 s (6 intervals): pings stopped
                pings = receiver.with_field("WATCHDOG")
                return time.time() - pings[-1][0] > 3.0
            await wait_for(quiet, 30, 0.2, "watchdog pings to stop with the runtime down")
            last_ping = receiver.with_field("WATCHDOG")[-1][0]
            assert last_ping - stopped_at < 15  # RUNTIME_SILENCE (10 s) + a ping interval
            await wait_for(lambda: "not answering" in receiver.with_field("STATUS")[-1][1]["STATUS"],
                           10, 0.2, "STATUS saying the runtime does not answer")
        finally:
            devenv.containerd.start()
        await wait_for(lambda: receiver.with_field("WATCHDOG")[-1][0] > last_ping, 60, 0.2,
                       "watchdog pings to resume")
        await wait_for(lambda: "not answering" not in receiver.with_field("STATUS")[-1][1]["STATUS"],
                       10, 0.2, "STATUS back to normal")
        assert agent.stop() == 0
    finally:
        agent.stop()
        devenv.reset(tmp_path)


async def test_watchdog_pid_of_another_process_no_pings(devenv, tmp_path, receiver) -> None:
    """$WATCHDOG_PID naming another process: that one is watched, not the agent."""
    env = {**_environ(receiver, 1_000_000), "WATCHDOG_PID": "1"}
    agent = AgentProcess(devenv, tmp_path, environ=env)
    try:
        agent.start()
        await wait_for(lambda: receiver.with_field("READY", "1"), 30, 0.05, "READY=1")
        time.sleep(1.5)
        assert not receiver.with_field("WATCHDOG")
    finally:
        agent.stop()
        devenv.reset(tmp_path)
