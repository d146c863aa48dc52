"""The agent stays responsive while its cgroup work is stuck.

A real `nodeagent run` whose cgroup threads (the `na-cgroup-*` pool,
nodeagent/executors.py) are frozen by the kernel: the test moves exactly
those threads into a v1 freezer cgroup of its own and freezes it. Every
cgroup operation the agent starts then waits, as it does when cgroupfs
stalls on these VMs; the read-only API, healthz and metrics must go on, the
pod must wait (no sandbox before its cgroup, the kubelet's order) and start
once the threads thaw.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nodeagent.cri.client import CRIClient
from nodeagent.executors import CGROUP_THREADS
from tests.agentproc import AgentProcess, phase, pod_manifest, running
from tests.polling import wait_for

FREEZER = Path("/sys/fs/cgroup/freezer")
CPU = Path("/sys/fs/cgroup/cpu")
ANSWER_WITHIN = 2.0  # seconds, for a loaded 2-CPU VM; a blocked loop would not answer for STALL seconds
STALL = 6.0


def threads(pid: int, prefix: str) -> dict[int, str]:
    """tid -> OS thread name, for the process's threads named `prefix`*."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except FileNotFoundError:
            continue
        if name.startswith(prefix):
            found[int(tid)] = name
    return found


def freezer_cgroup_of(pid: int, tid: int) -> Path:
    for line in Path(f"/proc/{pid}/task/{tid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            return FREEZER / path.lstrip("/")
    raise AssertionError(f"thread {tid} has no freezer cgroup")


@contextmanager
def frozen(pid: int, tids: list[int], where: Path) -> Iterator[None]:
    """The threads in a frozen freezer cgroup `where`; afterwards thawed,
    back in their own cgroups, and `where` removed."""
    home = {tid: freezer_cgroup_of(pid, tid) for tid in tids}
    where.mkdir()
    try:
        for tid in tids:
            (where / "tasks").write_text(str(tid))
        (where / "freezer.state").write_text("FROZEN")
        deadline = time.monotonic() + 10
        while (where / "freezer.state").read_text().strip() != "FROZEN":
            assert time.monotonic() < deadline, "the freezer did not freeze the cgroup threads"
            time.sleep(0.01)
        yield
    finally:
        (where / "freezer.state").write_text("THAWED")
        for tid, cgroup in home.items():
            try:
                (cgroup / "tasks").write_text(str(tid))
            except ProcessLookupError:
                pass
        where.rmdir()


def timed_get(url: str) -> tuple[float, bytes]:
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=ANSWER_WITHIN * 2) as resp:
        return time.monotonic() - start, resp.read()


async def test_api_answers_while_cgroup_work_is_stuck(agent: AgentProcess, cri: CRIClient) -> None:
    assert agent.process is not None
    pid = agent.process.pid
    pool = threads(pid, "na-cgroup-")
    # Started up front: the loop never has to create one (executors.py).
    assert len(pool) == CGROUP_THREADS, pool
    root = agent.cgroup_root.lstrip("/")
    stall = FREEZER / root.split("/")[0] / f"stall-{pid}"
    urls = {"/pods": f"{agent.base_url}/pods", "/healthz": f"http://127.0.0.1:{agent.healthz_port}/healthz",
            "/metrics": f"{agent.base_url}/metrics"}
    slowest = {path: 0.0 for path in urls}
    with frozen(pid, list(pool), stall):
        agent.write_manifest("stalled.yaml", pod_manifest(
            "stalled", agent.env.busybox, ["sleep", "3600"], grace=0,
            container_extra="    resources: {requests: {cpu: 10m}}\n"))
        pod = await wait_for(lambda: agent.pod("stalled"), timeout=10, what="the pod listed on /pods")
        uid = pod["metadata"]["uid"]
        # 10m of cpu is cpu.shares 10, written before the sandbox is made.
        shares = CPU / root / "kubepods" / "burstable" / f"pod{uid}" / "cpu.shares"
        end = time.monotonic() + STALL
        while time.monotonic() < end:
            for path, url in urls.items():
                seconds, body = await asyncio.to_thread(timed_get, url)
                slowest[path] = max(slowest[path], seconds)
                if path == "/healthz":
                    assert body == b"ok"
            await asyncio.sleep(0.05)
        # The stall is real: the pod's limits are not written (the kernel's
        # default shares at most), so no container is made and nothing runs.
        assert not shares.exists() or shares.read_text().strip() == "1024"
        pod = await agent.pod("stalled")
        assert pod is not None and phase(pod) == "Pending" and not running(pod)
        # The kubelet's order: no sandbox before the pod cgroup has its limits.
        sandboxes = await cri.list_pod_sandbox()
        assert not [s for s in sandboxes if s.metadata.uid == uid], sandboxes
        assert set(threads(pid, "na-cgroup-")) == set(pool)  # no thread made to get around the freeze
    assert all(s < ANSWER_WITHIN for s in slowest.values()), slowest
    await agent.wait_pod("stalled", running, timeout=60, what="Running once the cgroup threads thawed")
    assert shares.read_text().strip() == "10"
    agent.remove_manifest("stalled.yaml")
    await agent.wait_gone("stalled", timeout=30)
