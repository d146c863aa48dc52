"""Node capacity read from this machine, and allocatable as the kubelet computes it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nodeagent.node.capacity import (
    NodeResources, ReservationError, allocatable, machine_capacity, parse_reservation, pods_cgroup_budget,
)

GI = 2**30
MI = 2**20


def test_capacity_matches_the_machine(tmp_path: Path) -> None:
    cap = machine_capacity(tmp_path / "not-yet-created" / "root", max_pods=42)
    assert cap.cpu == int(subprocess.run(["nproc", "--all"], capture_output=True, text=True).stdout) * 1000
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert cap.memory == int(meminfo["MemTotal"].split()[0]) * 1024
    st = os.statvfs(tmp_path)  # the nearest existing parent's filesystem
    assert cap.ephemeral_storage == st.f_blocks * st.f_frsize
    assert cap.pods == 42
    assert cap.pid == int(Path("/proc/sys/kernel/pid_max").read_text())


def test_allocatable_and_the_kubepods_budget() -> None:
    cap = NodeResources(cpu=4000, memory=16 * GI, ephemeral_storage=100 * GI, pods=110, pid=4194304,
                        hugepages={"hugepages-2Mi": 512 * MI})
    system = parse_reservation("systemReserved", {"cpu": "500m", "memory": "1Gi", "pid": "1000"})
    kube = parse_reservation("kubeReserved", {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "1Gi"})
    hard = {"memory": 100 * MI, "ephemeral-storage": 10 * GI}  # memory.available<100Mi, nodefs.available<10%
    alloc = allocatable(cap, system, kube, hard)
    # Go's canonical Quantity text: the largest exact binary suffix for bytes.
    assert alloc.as_quantities() == {
        "cpu": "3250m", "memory": "14236Mi",  # 16Gi - 1Gi - 512Mi - 100Mi - 512Mi (hugepages)
        "ephemeral-storage": "89Gi", "pods": "110", "hugepages-2Mi": "512Mi"}
    assert NodeResources(cpu=2000, memory=16318412 * 1024, ephemeral_storage=1000, pods=1000, pid=1,
                         hugepages={"hugepages-1Gi": 0}).as_quantities() == {
        "cpu": "2", "memory": "16318412Ki", "ephemeral-storage": "1k", "pods": "1k", "hugepages-1Gi": "0"}
    budget = pods_cgroup_budget(cap, system, kube)  # no eviction threshold, no hugepages
    assert (budget.cpu, budget.memory, budget.pid) == (3250, 16 * GI - GI - 512 * MI, 4194304 - 1000)
    assert allocatable(cap, {"memory": 64 * GI}, {}, {}).memory == 0  # floored at zero


@pytest.mark.parametrize(("values", "message"), [
    ({"gpu": "1"}, "unknown resource 'gpu'"),
    ({"memory": "lots"}, "systemReserved.memory"),
    ({"cpu": "-1"}, "must not be negative"),
])
def test_bad_reservations(values: dict[str, str], message: str) -> None:
    with pytest.raises(ReservationError, match=message):
        parse_reservation("systemReserved", values)
