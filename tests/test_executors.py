"""The agent's thread pools (nodeagent/executors.py), seen from /proc: every
thread exists once the pools are built, carries its OS name, and no thread
is ever made later, however busy a pool gets."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from pathlib import Path

from nodeagent.executors import CGROUP_THREADS, DEFAULT_THREADS, IO_THREADS, Executors


def pool_threads() -> dict[int, str]:
    """tid -> OS name of this process's pool threads (other tests' threads come and go)."""
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except FileNotFoundError:
            continue
        if name.startswith("na-"):
            found[int(tid)] = name
    return found


async def test_threads_exist_up_front_and_none_is_made_later() -> None:
    executors = Executors.start()
    release = threading.Event()
    loop = asyncio.get_running_loop()
    previous = loop._default_executor  # the test session's loop: given back below
    try:
        before = pool_threads()
        names = sorted(before.values())
        assert names == sorted([f"na-io-{i}" for i in range(IO_THREADS)]
                               + [f"na-cgroup-{i}" for i in range(CGROUP_THREADS)]
                               + [f"na-default-{i}" for i in range(DEFAULT_THREADS)])
        executors.install(loop)
        # Every thread of the cgroup pool stuck, and more work queued behind them:
        # the queue grows, the thread count does not.
        stuck = [loop.run_in_executor(executors.cgroup, release.wait) for _ in range(CGROUP_THREADS * 3)]
        # The other pools are not held up by it.
        name = await loop.run_in_executor(executors.io, lambda: threading.current_thread().name)
        assert name.startswith("nodeagent-io")
        assert (await asyncio.to_thread(lambda: threading.current_thread().name)).startswith("nodeagent-default")
        assert not any(f.done() for f in stuck)
        assert pool_threads().keys() == before.keys()
        release.set()
        assert await asyncio.gather(*stuck) == [True] * len(stuck)
        assert pool_threads().keys() == before.keys()
    finally:
        release.set()  # a failed assertion must not leave threads that block the interpreter's exit
        if loop._default_executor is executors.default:
            loop.set_default_executor(previous or concurrent.futures.ThreadPoolExecutor())
        executors.shutdown()
        executors.default.shutdown()
