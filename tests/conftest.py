"""Fixtures: one real containerd + registry for the whole run, started by the
project itself. If it cannot start, every test that needs it fails (never skips)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import NotFoundError
from nodeagent.devenv.containerd import HarnessError
from nodeagent.devenv.env import DevEnv
from nodeagent.logsetup import configure_logging

if TYPE_CHECKING:
    from tests.agentproc import AgentProcess

pytest_plugins = ["tests.apiserver.fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("text", 0)


@pytest.fixture(scope="session")
def devenv() -> Iterator[DevEnv]:
    env = DevEnv(name="test")
    try:
        env.up()
    except HarnessError as exc:
        pytest.fail(f"cannot start the containerd test environment: {exc}", pytrace=False)
    yield env
    env.down()
    leaks = env.leaks()
    assert not leaks, "the test environment leaked:\n" + "\n".join(leaks)


@pytest.fixture
async def cri(devenv: DevEnv) -> AsyncIterator[CRIClient]:
    async with CRIClient(devenv.endpoint, request_timeout=60) as client:
        yield client


@pytest.fixture
async def sandboxes(cri: CRIClient) -> AsyncIterator[list[str]]:
    """Sandbox ids a test appends to; removed (with their containers) after it."""
    ids: list[str] = []
    yield ids
    for sandbox_id in ids:
        for step in (cri.stop_pod_sandbox, cri.remove_pod_sandbox):
            try:
                await step(sandbox_id)
            except NotFoundError:
                pass


@pytest.fixture
def pod_uid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def agent(devenv: DevEnv, tmp_path) -> Iterator[AgentProcess]:
    """A running `nodeagent run` with its own manifest dir, root and log dirs.
    Afterwards: agent stopped, every pod removed, no cgroup or mount left."""
    from tests.agentproc import AgentProcess

    proc = AgentProcess(devenv, tmp_path)
    proc.start()
    yield proc
    proc.stop()
    devenv.reset(tmp_path)
