"""The agent's thread pools: every thread started up front, and one bounded
pool per kind of blocking work, so no blocking call reaches the event loop
by the back door.

Why up front: a ThreadPoolExecutor starts its threads lazily, in the thread
that submits, i.e. the event loop, and Thread.start() is clone() followed by
a wait until the new thread runs. clone() takes the kernel's cgroup
threadgroup lock, which cgroup.procs writes (runc putting a container in its
cgroup) hold: when cgroupfs stalls on these VMs, the loop stalled with it
and /pods, /healthz and the relister stopped (docs/decisions.md). Started up
front, a pool never clones again (`concurrent.futures` only starts a thread
while it has fewer than max_workers).

Why one pool per kind: cgroupfs calls (mkdir, rmdir, limit writes) can take
seconds; in a shared pool they hold every thread and queue everything else
behind them (the CNI requests containerd's RunPodSandbox waits for, volume
and log directories, metrics rendering). `cgroup` bounds them; `io` is the
general pool; `default` becomes the loop's default executor
(run_in_executor(None), asyncio.to_thread).

Threads carry an OS name (`na-cgroup-0`, ...: `top -H`, `ps -L`,
/proc/<pid>/task/<tid>/comm), which also lets a test find and freeze exactly
the threads doing cgroup work.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

IO_THREADS = 8  # what the single shared pool had
CGROUP_THREADS = 4  # pod cgroups are a few ms each when cgroupfs is well
DEFAULT_THREADS = 4  # eviction signals, static manifest reads
PR_SET_NAME = 15
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def thread_name(pool: str, index: int) -> str:
    """The OS thread name (comm, at most 15 bytes) of a pool's thread."""
    return f"na-{pool}-{index}"[:15]


class Pool(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose `workers` threads exist once it is built."""

    def __init__(self, name: str, workers: int) -> None:
        counter = itertools.count()
        super().__init__(workers, thread_name_prefix=f"nodeagent-{name}",
                         initializer=lambda: _set_os_name(thread_name(name, next(counter))))
        self.name = name
        started = threading.Barrier(workers + 1)
        for _ in range(workers):  # each blocks a thread until all exist: one new thread per submit
            self.submit(started.wait)
        started.wait(timeout=30)


def _set_os_name(name: str) -> None:
    _libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)


@dataclass
class Executors:
    io: Pool
    cgroup: Pool
    default: Pool

    @classmethod
    def start(cls, io: int = IO_THREADS, cgroup: int = CGROUP_THREADS,
              default: int = DEFAULT_THREADS) -> Executors:
        return cls(io=Pool("io", io), cgroup=Pool("cgroup", cgroup), default=Pool("default", default))

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make `default` the loop's default executor (before anything uses it)."""
        loop.set_default_executor(self.default)

    def shutdown(self) -> None:
        """Without waiting: a thread stuck in a stalled syscall must not keep
        the agent from exiting (the loop's default executor is joined by
        asyncio.run itself)."""
        self.io.shutdown(wait=False)
        self.cgroup.shutdown(wait=False)
