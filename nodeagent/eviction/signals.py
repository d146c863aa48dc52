"""Eviction signal observations: what the kubelet's summary provider feeds its
eviction manager (pkg/kubelet/eviction/helpers.go makeSignalObservations).

* memory.available = capacity − working set of the root memory cgroup, capacity
  being MemTotal (cadvisor's machine memory). Working set = usage − inactive
  file pages (cadvisor). cgroup v1: memory.usage_in_bytes and memory.stat
  total_inactive_file of the root. cgroup v2 has no memory.current at the root,
  so usage = MemTotal − MemFree from /proc/meminfo (what runc's libcontainer
  reports for the root and cadvisor therefore uses), inactive_file from the
  root's memory.stat, or Inactive(file) of /proc/meminfo on kernels without it.
* nodefs.* / imagefs.*: statvfs of the root dir / the runtime's image
  filesystem: available = f_bavail·f_frsize, capacity = f_blocks·f_frsize,
  inodesFree = f_ffree of f_files (cadvisor).
* pid.available = min(pid_max, threads-max) − tasks, tasks being the total of
  /proc/loadavg's 4th field (pkg/kubelet/stats/pidlimit).

A signal that cannot be read is left out, as the kubelet does ("no observation
found for eviction signal"); its thresholds then do nothing until it reads again.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import structlog

from nodeagent.eviction.thresholds import (
    IMAGEFS_AVAILABLE, IMAGEFS_INODES_FREE, MEMORY_AVAILABLE, NODEFS_AVAILABLE,
    NODEFS_INODES_FREE, PID_AVAILABLE,
)

log = structlog.get_logger("nodeagent.eviction")


@dataclass(frozen=True)
class Observation:
    """One signal: what is left, of how much, and when it was read (monotonic)."""
    available: int
    capacity: int
    time: float

    @property
    def used(self) -> int:
        return self.capacity - self.available


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


def _kv(text: str) -> dict[str, int]:
    """`key value` lines (memory.stat) or `Key: value kB` lines (meminfo)."""
    result: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[1].isdigit():
            scale = 1024 if len(parts) > 2 and parts[2] == "kB" else 1
            result[parts[0]] = int(parts[1]) * scale
    return result


@dataclass(frozen=True)
class MemoryReading:
    capacity: int
    usage: int
    inactive_file: int

    @property
    def working_set(self) -> int:
        return max(0, self.usage - self.inactive_file)  # cadvisor clamps at 0


class SignalReader:
    """Reads every signal from the host; file and statvfs calls run in an executor.

    `imagefs_path` is the mountpoint of the runtime's image filesystem (CRI
    ImageFsInfo); None means images live on the node filesystem.
    """

    def __init__(self, *, nodefs_path: str = "/", imagefs_path: str | None = None,
                 cgroup_root: str = "/sys/fs/cgroup", proc: str = "/proc") -> None:
        self.nodefs_path = nodefs_path
        self.imagefs_path = imagefs_path or nodefs_path
        self.cgroup_root = cgroup_root
        self.proc = proc

    async def observe(self) -> dict[str, Observation]:
        return await asyncio.get_running_loop().run_in_executor(None, self.observe_sync)

    def observe_sync(self) -> dict[str, Observation]:
        result: dict[str, Observation] = {}
        now = time.monotonic()
        for signal, reader in ((MEMORY_AVAILABLE, self._memory),
                               (PID_AVAILABLE, self._pids)):
            try:
                result[signal] = reader(now)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("eviction signal unreadable", signal=signal, error=str(exc))
        for path, avail, inodes in ((self.nodefs_path, NODEFS_AVAILABLE, NODEFS_INODES_FREE),
                                    (self.imagefs_path, IMAGEFS_AVAILABLE, IMAGEFS_INODES_FREE)):
            try:
                st = os.statvfs(path)
            except OSError as exc:
                log.warning("eviction signal unreadable", signal=avail, path=path,
                            error=str(exc))
                continue
            result[avail] = Observation(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize, now)
            if st.f_files > 0:  # some filesystems (btrfs, tmpfs with nr_inodes=0) have no limit
                result[inodes] = Observation(st.f_ffree, st.f_files, now)
        return result

    # -- memory -------------------------------------------------------------

    def cgroup_version(self) -> int:
        return 2 if os.path.exists(os.path.join(self.cgroup_root, "cgroup.controllers")) else 1

    def memory_reading(self) -> MemoryReading:
        meminfo = _kv(_read(os.path.join(self.proc, "meminfo")))
        capacity = meminfo["MemTotal"]
        if self.cgroup_version() == 1:
            base = os.path.join(self.cgroup_root, "memory")
            usage = int(_read(os.path.join(base, "memory.usage_in_bytes")))
            inactive = _kv(_read(os.path.join(base, "memory.stat")))["total_inactive_file"]
            return MemoryReading(capacity, usage, inactive)
        usage = capacity - meminfo["MemFree"]
        try:
            inactive = _kv(_read(os.path.join(self.cgroup_root, "memory.stat")))["inactive_file"]
        except (OSError, KeyError):
            inactive = meminfo["Inactive(file)"]
        return MemoryReading(capacity, usage, inactive)

    def _memory(self, now: float) -> Observation:
        reading = self.memory_reading()
        return Observation(reading.capacity - reading.working_set, reading.capacity, now)

    # -- pids ---------------------------------------------------------------

    def _pids(self, now: float) -> Observation:
        limits = []
        for name in ("pid_max", "threads-max"):
            try:
                limits.append(int(_read(os.path.join(self.proc, "sys", "kernel", name))))
            except (OSError, ValueError):
                pass
        if not limits:
            raise ValueError("neither kernel.pid_max nor kernel.threads-max is readable")
        task_max = min(limits)
        fields = _read(os.path.join(self.proc, "loadavg")).split()
        tasks = int(fields[3].split("/")[1])
        return Observation(task_max - tasks, task_max, now)
