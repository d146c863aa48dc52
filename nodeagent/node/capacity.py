"""Node capacity and allocatable, as the kubelet computes them
(nodestatus/setters.go MachineInfo, cm/node_container_manager_linux.go).

allocatable = capacity − systemReserved − kubeReserved − hard eviction
threshold (what the scheduler may place); the kubepods cgroup is limited to
capacity − systemReserved − kubeReserved (the threshold is left out: it is
what the eviction manager acts on, not a cgroup limit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from nodeagent import hostinfo
from nodeagent.api.quantity import InvalidQuantityError, Quantity
from nodeagent.eviction.messages import format_bytes, format_quantity

# Resources the reservation maps may name (kubelet: cpu, memory,
# ephemeral-storage, pid).
RESERVABLE = ("cpu", "memory", "ephemeral-storage", "pid")


class ReservationError(ValueError):
    """A systemReserved/kubeReserved entry that cannot be used."""


@dataclass(frozen=True)
class NodeResources:
    """Amounts in base units: cpu in millicores, memory and storage in bytes."""
    cpu: int
    memory: int
    ephemeral_storage: int
    pods: int
    pid: int
    hugepages: Mapping[str, int] = field(default_factory=dict)  # "hugepages-2Mi" -> bytes

    def as_quantities(self) -> dict[str, str]:
        """The Node status map (`capacity`/`allocatable`) as the API prints it:
        Go's canonical Quantity text (cpu and pods DecimalSI, bytes BinarySI:
        `3250m`, `16Gi`, `16318412Ki`)."""
        out = {
            "cpu": format_quantity(Quantity(f"{self.cpu}m")), "memory": format_bytes(self.memory),
            "ephemeral-storage": format_bytes(self.ephemeral_storage),
            "pods": format_bytes(self.pods, binary=False),
        }
        for name, value in sorted(self.hugepages.items()):
            out[name] = format_bytes(value)
        return out


def pid_max(path: Path = Path("/proc/sys/kernel/pid_max")) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def hugepages(sysfs: Path = Path("/sys/kernel/mm/hugepages")) -> dict[str, int]:
    """Pre-allocated huge pages per size (bytes), as cadvisor reports them."""
    found: dict[str, int] = {}
    try:
        entries = list(sysfs.iterdir())
    except OSError:
        return found
    for entry in entries:  # hugepages-2048kB
        try:
            size_kb = int(entry.name.removeprefix("hugepages-").removesuffix("kB"))
            count = int((entry / "nr_hugepages").read_text())
        except (OSError, ValueError):
            continue
        found[f"hugepages-{_size_name(size_kb * 1024)}"] = count * size_kb * 1024
    return found


def _size_name(size: int) -> str:
    for unit, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def machine_capacity(root_dir: Path, max_pods: int) -> NodeResources:
    """cpu = logical CPUs, memory = MemTotal, ephemeral-storage = size of the
    filesystem holding the root dir, pods = maxPods. Blocking: run in an executor."""
    path = Path(root_dir)
    while not path.exists() and path != path.parent:
        path = path.parent
    return NodeResources(
        cpu=hostinfo.cpu_capacity_millis(),
        memory=hostinfo.memory_capacity_bytes(),
        ephemeral_storage=psutil.disk_usage(str(path)).total,
        pods=max_pods, pid=pid_max(), hugepages=hugepages())


def parse_reservation(field_name: str, values: Mapping[str, object]) -> dict[str, int]:
    """systemReserved / kubeReserved: {"cpu": "100m", "memory": "1Gi", "pid": "1000"}."""
    out: dict[str, int] = {}
    for name, raw in values.items():
        if name not in RESERVABLE:
            raise ReservationError(f"{field_name}: unknown resource {name!r} "
                                   f"(allowed: {', '.join(RESERVABLE)})")
        try:
            q = Quantity(str(raw))
        except InvalidQuantityError as exc:
            raise ReservationError(f"{field_name}.{name}: {exc}") from None
        amount = q.milli_value() if name == "cpu" else q.value()
        if amount < 0:
            raise ReservationError(f"{field_name}.{name}: must not be negative, got {raw}")
        out[name] = amount
    return out


def _subtract(capacity: NodeResources, reserved: Mapping[str, int], *, hugepages: bool) -> NodeResources:
    """Never below zero (kubelet floors allocatable at 0)."""
    hugepage_total = sum(capacity.hugepages.values()) if hugepages else 0
    return NodeResources(
        cpu=max(0, capacity.cpu - reserved.get("cpu", 0)),
        memory=max(0, capacity.memory - reserved.get("memory", 0) - hugepage_total),
        ephemeral_storage=max(0, capacity.ephemeral_storage - reserved.get("ephemeral-storage", 0)),
        pods=capacity.pods, pid=max(0, capacity.pid - reserved.get("pid", 0)),
        hugepages=capacity.hugepages)


def _sum(*maps: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in maps:
        for k, v in m.items():
            out[k] = out.get(k, 0) + v
    return out


def allocatable(capacity: NodeResources, system_reserved: Mapping[str, int],
                kube_reserved: Mapping[str, int], hard_eviction: Mapping[str, int]) -> NodeResources:
    """Node.status.allocatable. `hard_eviction` holds the hard thresholds as
    amounts: memory from memory.available, ephemeral-storage from nodefs.available."""
    return _subtract(capacity, _sum(system_reserved, kube_reserved, hard_eviction), hugepages=True)


def pods_cgroup_budget(capacity: NodeResources, system_reserved: Mapping[str, int],
                       kube_reserved: Mapping[str, int]) -> NodeResources:
    """What the kubepods cgroup is limited to (no eviction threshold, no hugepage
    deduction: the kubelet's getNodeAllocatableInternalAbsolute)."""
    return _subtract(capacity, _sum(system_reserved, kube_reserved), hugepages=False)
