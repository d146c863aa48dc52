"""The PLEG against the real containerd: exits arrive through containerd's
event stream, so the relister need not poll; without events (a CRI-only
endpoint, as CRI-O's is) it polls."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from nodeagent.cri.client import CRIClient
from nodeagent.cri.debugsocket import DebugSocket
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv.env import DevEnv
from nodeagent.devenv.podspecs import container_config, sandbox_config
from nodeagent.pods.relist import Relister
from tests.polling import wait_for

EXITED = pb.ContainerState.CONTAINER_EXITED


class Seen:
    """What the relister told the pod workers, with the time it arrived."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, str, frozenset]] = []

    def __call__(self, uid: str, state: frozenset) -> None:
        self.changes.append((time.monotonic(), uid, state))

    def exited(self, uid: str, container_id: str) -> float | None:
        for at, owner, state in self.changes:
            if owner == uid and (container_id, EXITED) in state:
                return at
        return None


async def _running_relister(cri: CRIClient, seen: Seen, **periods: float) -> tuple[Relister, asyncio.Future]:
    relister = Relister(cri, seen, **periods)
    await relister.relist()
    return relister, asyncio.ensure_future(relister.run())


async def _stop(task: asyncio.Future) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def _pod(devenv: DevEnv, cri: CRIClient, sandboxes: list[str], uid: str, command: list[str]
               ) -> tuple[str, str]:
    await cri.pull_image(devenv.busybox)
    config = sandbox_config(devenv, "relist", uid, host_network=True)
    sandbox_id = await cri.run_pod_sandbox(config)
    sandboxes.append(sandbox_id)
    container_id = await cri.create_container(
        sandbox_id, container_config(config, "main", devenv.busybox, command), config)
    return sandbox_id, container_id


async def test_exit_is_noticed_from_runtime_events_without_polling(
        devenv: DevEnv, cri: CRIClient, sandboxes: list[str], pod_uid: str) -> None:
    seen = Seen()
    # Neither period could explain a prompt notice: only the event stream can.
    relister, task = await _running_relister(cri, seen, period=30.0, evented_period=30.0)
    try:
        await wait_for(lambda: relister.events.live, 5, 0.05, "subscribed to containerd's events")
        _, container_id = await _pod(devenv, cri, sandboxes, pod_uid,
                                     ["sh", "-c", "sleep 1; exit 3"])
        await cri.start_container(container_id)
        # exec processes end too (probes): containerd reports their exits, and
        # they must not cost a relist each.
        relists = relister.relists
        result = await cri.exec_sync(container_id, ["true"], timeout=5)
        assert result.exit_code == 0
        await asyncio.sleep(0.3)
        assert relister.relists == relists, "an exec's exit caused a relist"

        await wait_for(lambda: seen.exited(pod_uid, container_id), 5, 0.01, "exit reported")
        status = (await cri.container_status(container_id)).status
        finished = status.finished_at / 1e9
        noticed = seen.exited(pod_uid, container_id)
        assert noticed is not None
        # monotonic vs wall clock: compare delays, not instants.
        delay = (time.time() - (time.monotonic() - noticed)) - finished
        assert delay < 1.0, f"exit noticed {delay:.3f}s after it happened"
        assert status.exit_code == 3
    finally:
        await _stop(task)


async def test_without_runtime_events_the_relister_polls(
        devenv: DevEnv, sandboxes: list[str], pod_uid: str, tmp_path: Path) -> None:
    # With the image service on another path the debug socket forwards call by
    # call, CRI services only: containerd's event service is not there.
    image_socket = tmp_path / "images.sock"
    image_socket.symlink_to(devenv.endpoint.removeprefix("unix://"))
    relay = DebugSocket(str(tmp_path / "cri.sock"), devenv.endpoint, f"unix://{image_socket}")
    await relay.start()
    try:
        async with CRIClient(f"unix://{relay.path}", request_timeout=60) as cri:
            seen = Seen()
            relister, task = await _running_relister(cri, seen, period=0.1, evented_period=30.0)
            try:
                _, container_id = await _pod(devenv, cri, sandboxes, pod_uid, ["sh", "-c", "exit 0"])
                assert not relister.events.live
                before = relister.relists
                await cri.start_container(container_id)
                await wait_for(lambda: seen.exited(pod_uid, container_id), 5, 0.01, "exit reported")
                assert relister.relists > before
                assert not relister.events.live
            finally:
                await _stop(task)
    finally:
        for sandbox_id in list(sandboxes):  # through the relay's target, before it goes
            async with CRIClient(devenv.endpoint) as direct:
                await direct.stop_pod_sandbox(sandbox_id)
                await direct.remove_pod_sandbox(sandbox_id)
            sandboxes.remove(sandbox_id)
        await relay.stop()
