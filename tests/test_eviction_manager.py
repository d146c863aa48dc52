"""The eviction manager driven by real signals: this host's memory, and a small
tmpfs mounted per test as the image filesystem so disk pressure can be made
and cleared for real."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import Pod, Toleration
from nodeagent.eviction.manager import EvictionManager, EvictionResult, eviction_samples
from nodeagent.eviction.messages import format_bytes
from nodeagent.eviction.ranking import ContainerUsage, PodUsage
from nodeagent.eviction.signals import SignalReader
from nodeagent.eviction.thresholds import EvictionSettings, parse_eviction_settings
from tests.test_eviction_ranking import make_pod, names

MiB = 2**20


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) * 1024


def _working_set_by_shell() -> int:
    out = subprocess.run(
        ["sh", "-c", "cat /sys/fs/cgroup/memory/memory.usage_in_bytes; awk '$1 == "
         "\"total_inactive_file\" {print $2}' /sys/fs/cgroup/memory/memory.stat"],
        capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]) - int(out[1])


@pytest.fixture
def imagefs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: its free space is the imagefs signal."""
    mnt = tmp_path / "imagefs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        with open("/proc/self/mountinfo") as f:
            assert str(mnt) not in f.read(), "tmpfs left mounted"


def fill(path: Path, mib: int) -> None:
    with open(path, "wb") as f:
        f.write(b"x" * (mib * MiB))


class Pods:
    """Active pods and their usage; evict() removes a pod, as termination would."""

    def __init__(self, pods: list[Pod], usage: dict[str, PodUsage]) -> None:
        self.active = pods
        self.usage = usage
        self.evicted: list[tuple[Pod, EvictionResult]] = []

    def stats(self, pod: Pod) -> PodUsage | None:
        return self.usage.get(pod.metadata.name)

    async def evict(self, pod: Pod, result: EvictionResult) -> None:
        self.evicted.append((pod, result))
        self.active = [p for p in self.active if p is not pod]

    def manager(self, settings: EvictionSettings, **kwargs) -> EvictionManager:
        return EvictionManager(parse_eviction_settings(settings), active_pods=lambda: self.active,
                               pod_stats=self.stats, evict=self.evict, **kwargs)


def _condition(manager: EvictionManager, ctype: str) -> dict[str, str]:
    return next(c.to_json() for c in manager.conditions() if c.type == ctype)


async def test_memory_threshold_above_free_memory_evicts_besteffort_first() -> None:
    capacity = _mem_total()
    critical = make_pod("critical", priority=2_000_001_000)
    besteffort = make_pod("besteffort")
    burstable = make_pod("burstable", requests={"memory": "10Mi"})
    guaranteed = make_pod("guaranteed", requests={"memory": "100Mi", "cpu": "100m"},
                          limits={"memory": "100Mi", "cpu": "100m"})
    pods = Pods([guaranteed, burstable, critical, besteffort], {
        "critical": PodUsage(memory_working_set_bytes=900 * MiB),
        # 25 Mi above its (zero) request; the burstable pod is 20 Mi above its request.
        "besteffort": PodUsage(memory_working_set_bytes=25 * MiB,
                               containers=(ContainerUsage("c", 25 * MiB),)),
        "burstable": PodUsage(memory_working_set_bytes=30 * MiB),
        "guaranteed": PodUsage(memory_working_set_bytes=50 * MiB),
    })
    before = dict((s["eviction_signal"], n) for s, n in eviction_samples())
    # Reserved = all memory: the system never uses more, so pods within requests stay.
    manager = pods.manager(EvictionSettings(hard={"memory.available": str(capacity)}),
                           reserved_memory=capacity, monitoring_interval=0.05)
    assert _condition(manager, "MemoryPressure")["status"] == "False"
    task = asyncio.create_task(manager.run())
    try:
        for _ in range(200):
            if len(pods.evicted) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # more rounds: nothing else may go
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert names([p for p, _ in pods.evicted]) == ["besteffort", "burstable"]
    assert names(pods.active) == ["guaranteed", "critical"]
    _, result = pods.evicted[0]
    assert (result.signal, result.reason, result.grace_seconds) == ("memory.available", "Evicted", 1)
    prefix = f"The node was low on resource: memory. Threshold quantity: {format_bytes(capacity)}, available: "
    assert result.message.startswith(prefix)
    available, rest = result.message[len(prefix):].split(". ", 1)
    assert abs(Quantity(available).value() - (capacity - _working_set_by_shell())) < 64 * MiB
    assert rest == "Container c was using 25Mi, request is 0, has larger consumption of memory. "
    assert (result.condition.type, result.condition.status, result.condition.reason,
            result.condition.message) == ("DisruptionTarget", "True", "TerminationByKubelet",
                                          result.message)
    after = dict((s["eviction_signal"], n) for s, n in eviction_samples())
    assert after["memory.available"] - before.get("memory.available", 0) == 2

    cond = _condition(manager, "MemoryPressure")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
    assert _condition(manager, "DiskPressure")["reason"] == "KubeletHasNoDiskPressure"
    assert _condition(manager, "PIDPressure")["reason"] == "KubeletHasSufficientPID"

    refused = manager.admit(make_pod("new-besteffort"))
    assert (refused.admit, refused.reason, refused.message) == (
        False, "Evicted", "The node had condition: [MemoryPressure]. ")
    assert refused.status_message == "Pod was rejected: The node had condition: [MemoryPressure]. "
    assert manager.admit(make_pod("new-burstable", requests={"memory": "1Mi"})).admit
    assert manager.admit(make_pod("new-critical", priority_class="system-node-critical")).admit
    tolerant = make_pod("tolerant")
    tolerant.spec.tolerations = [Toleration(key="node.kubernetes.io/memory-pressure",
                                            operator="Exists", effect="NoSchedule")]
    assert manager.admit(tolerant).admit


async def test_pods_within_requests_go_only_when_the_system_exceeds_its_reservation() -> None:
    capacity = _mem_total()
    guaranteed = make_pod("guaranteed", requests={"memory": "100Mi"}, limits={"memory": "100Mi"})
    pods = Pods([guaranteed], {"guaranteed": PodUsage(memory_working_set_bytes=50 * MiB)})
    settings = EvictionSettings(hard={"memory.available": str(capacity)})
    # System usage (node working set - pods) is below a reservation of all memory.
    assert await pods.manager(settings, reserved_memory=capacity).synchronize() is None
    # ... and above a reservation of 1 byte: the pod goes. (Stats may be a coroutine.)
    async def stats(pod: Pod) -> PodUsage | None:
        return pods.stats(pod)

    manager = EvictionManager(parse_eviction_settings(settings), active_pods=lambda: pods.active,
                              pod_stats=stats, evict=pods.evict, reserved_memory=1)
    assert await manager.synchronize() is guaranteed


async def test_threshold_below_free_memory_changes_nothing() -> None:
    pods = Pods([make_pod("besteffort")], {"besteffort": PodUsage(memory_working_set_bytes=MiB)})
    manager = pods.manager(EvictionSettings(hard={"memory.available": "1Mi"}))
    for _ in range(3):
        assert await manager.synchronize() is None
    assert not pods.evicted
    assert all(c.status == "False" for c in manager.conditions())
    assert manager.admit(make_pod("another")).admit
    assert manager.observations["memory.available"].available > MiB


async def test_disk_pressure_node_reclaim_and_transition_period(imagefs: Path) -> None:
    """Image GC frees the space, so no pod goes; the condition stays for the
    transition period after the signal clears, then turns False."""
    reclaimed: list[str] = []

    async def reclaim(signal: str) -> None:
        reclaimed.append(signal)
        (imagefs / "layer").unlink()

    pods = Pods([make_pod("a")], {"a": PodUsage(ephemeral_storage_bytes=MiB)})
    manager = pods.manager(EvictionSettings(hard={"imagefs.available": "50%"},
                                            pressure_transition_period=0.6),
                           signals=SignalReader(imagefs_path=str(imagefs)), reclaim=reclaim)
    fill(imagefs / "layer", 12)
    assert await manager.synchronize() is None
    assert reclaimed == ["imagefs.available"] and not pods.evicted
    cond = _condition(manager, "DiskPressure")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "True", "KubeletHasDiskPressure", "kubelet has disk pressure")
    refused = manager.admit(make_pod("g", requests={"memory": "1Mi"}, limits={"memory": "1Mi"}))
    assert (refused.admit, refused.message) == (False, "The node had condition: [DiskPressure]. ")
    assert manager.admit(make_pod("crit", priority=2_000_000_000)).admit

    became_true = cond["lastTransitionTime"]
    await asyncio.sleep(0.2)
    assert await manager.synchronize() is None  # signal clear, but within the period
    assert _condition(manager, "DiskPressure")["status"] == "True"
    await asyncio.sleep(0.6)
    assert await manager.synchronize() is None
    cond = _condition(manager, "DiskPressure")
    assert (cond["status"], cond["reason"]) == ("False", "KubeletHasNoDiskPressure")
    assert became_true <= cond["lastTransitionTime"] <= cond["lastHeartbeatTime"]
    assert manager.admit(make_pod("g")).admit


async def test_disk_eviction_with_minimum_reclaim(imagefs: Path) -> None:
    """imagefs.available<50% (8 Mi) with 25% (4 Mi) minimum reclaim: after the
    first eviction frees 6 Mi (10 Mi free) the node is still reclaiming, so a
    second pod goes; the largest user of disk first."""
    fill(imagefs / "big", 6)
    fill(imagefs / "small", 6)
    pods = Pods([make_pod("small"), make_pod("big")], {
        "big": PodUsage(ephemeral_storage_bytes=7 * MiB,
                        containers=(ContainerUsage("c", ephemeral_storage_bytes=7 * MiB),)),
        "small": PodUsage(ephemeral_storage_bytes=6 * MiB)})

    async def evict(pod: Pod, result: EvictionResult) -> None:
        await Pods.evict(pods, pod, result)
        (imagefs / pod.metadata.name).unlink()

    pods.evict = evict  # type: ignore[method-assign]
    manager = pods.manager(EvictionSettings(hard={"imagefs.available": "50%"},
                                            minimum_reclaim={"imagefs.available": "25%"}),
                           signals=SignalReader(imagefs_path=str(imagefs)))
    assert (await manager.synchronize()).metadata.name == "big"
    _, result = pods.evicted[0]
    available = os.statvfs(imagefs).f_bavail * os.statvfs(imagefs).f_frsize
    assert result.message.startswith(
        "The node was low on resource: ephemeral-storage. Threshold quantity: 8Mi, available: ")
    assert result.message.endswith("Container c was using 7Mi, request is 0, has larger "
                                   "consumption of ephemeral-storage. ")
    assert available > 8 * MiB  # above the threshold, below threshold + minimum reclaim
    assert (await manager.synchronize()).metadata.name == "small"
    assert await manager.synchronize() is None
    assert len(pods.evicted) == 2


async def test_soft_threshold_waits_for_its_grace_period(imagefs: Path) -> None:
    fill(imagefs / "data", 12)
    pods = Pods([make_pod("a")], {"a": PodUsage(ephemeral_storage_bytes=12 * MiB)})
    manager = pods.manager(EvictionSettings(hard={}, soft={"imagefs.available": "50%"},
                                            soft_grace_period={"imagefs.available": "600ms"},
                                            max_pod_grace_period=7),
                           signals=SignalReader(imagefs_path=str(imagefs)))
    assert await manager.synchronize() is None
    # Pressure shows at once; eviction waits for the grace period.
    assert _condition(manager, "DiskPressure")["status"] == "True"
    await asyncio.sleep(0.3)
    assert await manager.synchronize() is None
    await asyncio.sleep(0.4)
    evicted = await manager.synchronize()
    assert evicted is not None and evicted.metadata.name == "a"
    assert pods.evicted[0][1].grace_seconds == 7


async def test_loop_survives_failing_callbacks() -> None:
    calls = 0

    def stats(pod: Pod) -> PodUsage:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("stats provider down")
        return PodUsage(memory_working_set_bytes=MiB)

    async def evict(pod: Pod, result: EvictionResult) -> None:
        raise RuntimeError("runtime down")

    capacity = _mem_total()
    pod = make_pod("a")
    manager = EvictionManager(parse_eviction_settings(EvictionSettings(hard={"memory.available": str(capacity)})),
                              active_pods=lambda: [pod], pod_stats=stats, evict=evict,
                              monitoring_interval=0.05)
    task = asyncio.create_task(manager.run())
    await asyncio.sleep(0.3)
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert calls >= 2
