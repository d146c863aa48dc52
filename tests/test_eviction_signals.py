"""Eviction signals read from this host, checked against independent readings
(free, stat -f, df, /proc task counts), and cgroup v2 on a temporary tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from nodeagent.eviction.signals import SignalReader

MiB = 2**20


def _sh(cmd: str) -> str:
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout


async def test_memory_available_matches_free_and_the_root_cgroup() -> None:
    obs = (await SignalReader().observe())["memory.available"]
    total, _used, free = (int(x) for x in _sh("free -b | awk '/^Mem:/ {print $2, $3, $4}'").split())
    assert obs.capacity == total
    # cgroup v1 root: usage - total_inactive_file, read with the shell.
    usage = int(_sh("cat /sys/fs/cgroup/memory/memory.usage_in_bytes"))
    inactive = int(_sh("awk '$1 == \"total_inactive_file\" {print $2}' "
                       "/sys/fs/cgroup/memory/memory.stat"))
    assert abs(obs.available - (total - (usage - inactive))) < 64 * MiB
    # The working set excludes reclaimable page cache, so more is available than free.
    assert free - 64 * MiB <= obs.available <= total


async def test_nodefs_and_imagefs_match_stat_f_and_df(tmp_path: Path) -> None:
    reader = SignalReader(nodefs_path="/", imagefs_path=str(tmp_path))
    obs = await reader.observe()
    bsize, blocks, avail, files, ffree = (int(x) for x in _sh("stat -f -c '%S %b %a %c %d' /").split())
    assert obs["nodefs.available"].capacity == blocks * bsize
    assert abs(obs["nodefs.available"].available - avail * bsize) < 64 * MiB
    assert obs["nodefs.inodesFree"].capacity == files
    assert abs(obs["nodefs.inodesFree"].available - ffree) < 1000
    size, df_avail = (int(x) for x in _sh("df -B1 --output=size,avail / | tail -1").split())
    assert obs["nodefs.available"].capacity == size
    assert abs(obs["nodefs.available"].available - df_avail) < 64 * MiB
    bsize, blocks, avail = (int(x) for x in _sh(f"stat -f -c '%S %b %a' {tmp_path}").split())
    assert obs["imagefs.available"].capacity == blocks * bsize
    assert abs(obs["imagefs.available"].available - avail * bsize) < 64 * MiB


async def test_pid_available_counts_every_task() -> None:
    obs = (await SignalReader().observe())["pid.available"]
    limit = min(int(_sh("sysctl -n kernel.pid_max")), int(_sh("sysctl -n kernel.threads-max")))
    tasks = sum(len(os.listdir(f"/proc/{pid}/task")) for pid in os.listdir("/proc")
                if pid.isdigit() and os.path.isdir(f"/proc/{pid}/task"))
    assert obs.capacity == limit
    assert abs((limit - obs.available) - tasks) < 100


async def test_cgroup_v2_memory_from_meminfo_and_root_memory_stat(tmp_path: Path) -> None:
    """On cgroup v2 the root has no memory.current: usage is MemTotal - MemFree."""
    cgroup, proc = tmp_path / "cgroup", tmp_path / "proc"
    cgroup.mkdir()
    (proc / "sys" / "kernel").mkdir(parents=True)
    (cgroup / "cgroup.controllers").write_text("cpu memory pids\n")
    (cgroup / "memory.stat").write_text("anon 1000\nfile 5000\ninactive_file 4096\nactive_file 904\n")
    (proc / "meminfo").write_text("MemTotal:  1000000 kB\nMemFree:  600000 kB\n"
                                  "MemAvailable: 700000 kB\nInactive(file): 99 kB\n")
    (proc / "loadavg").write_text("0.10 0.20 0.30 2/345 6789\n")
    (proc / "sys" / "kernel" / "pid_max").write_text("4194304\n")
    (proc / "sys" / "kernel" / "threads-max").write_text("1000\n")
    reader = SignalReader(cgroup_root=str(cgroup), proc=str(proc), nodefs_path=str(tmp_path))
    assert reader.cgroup_version() == 2
    obs = await reader.observe()
    capacity = 1000000 * 1024
    assert obs["memory.available"].capacity == capacity
    assert obs["memory.available"].available == capacity - ((1000000 - 600000) * 1024 - 4096)
    assert (obs["pid.available"].available, obs["pid.available"].capacity) == (1000 - 345, 1000)
    # Kernels without a root memory.stat: Inactive(file) from meminfo.
    (cgroup / "memory.stat").unlink()
    obs = await reader.observe()
    assert obs["memory.available"].available == capacity - (400000 - 99) * 1024


async def test_unreadable_signals_are_left_out(tmp_path: Path) -> None:
    reader = SignalReader(nodefs_path=str(tmp_path / "missing"), cgroup_root=str(tmp_path),
                          proc=str(tmp_path))
    assert await reader.observe() == {}
