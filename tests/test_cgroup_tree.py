"""Cgroup names for both drivers, and the manager's files on temporary trees
shaped like /sys/fs/cgroup: cgroup v2 (unified) and v1 with systemd naming.
The real v1 hierarchy is exercised with containerd in test_agent_cgroups.py."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import Container, ObjectMeta, Pod, PodSpec, ResourceRequirements
from nodeagent.cgroups import fs, names
from nodeagent.cgroups.detect import CgroupSetupError, HostCgroups, check_setup, driver_from_status_info
from nodeagent.cgroups.fs import CgroupBusy, CgroupV1, CgroupV2
from nodeagent.cgroups.manager import CgroupManager
from nodeagent.cgroups.names import CgroupName, CgroupNameError
from nodeagent.cgroups.values import ResourcePolicy
from nodeagent.node.capacity import NodeResources

UID = "8f2a51c4-9d3e-4c1b-a7f0-1234567890ab"
UID_ = UID.replace("-", "_")
GI = 2**30


def make_pod(limits: dict[str, str] | None, requests: dict[str, str] | None, uid: str = UID) -> Pod:
    r = ResourceRequirements(limits={k: Quantity(v) for k, v in (limits or {}).items()},
                             requests={k: Quantity(v) for k, v in {**(limits or {}), **(requests or {})}.items()})
    return Pod(metadata=ObjectMeta(name="p", namespace="default", uid=uid),
               spec=PodSpec(containers=[Container(name="c", image="busybox", resources=r)]))


GUARANTEED_POD = make_pod({"cpu": "500m", "memory": "256Mi"}, None)
BURSTABLE_POD = make_pod({"cpu": "1", "memory": "512Mi"}, {"cpu": "250m", "memory": "128Mi"})
BEST_EFFORT_POD = make_pod(None, None)


# -- names ----------------------------------------------------------------------------

@pytest.mark.parametrize(("pod", "cgroupfs", "systemd"), [
    (GUARANTEED_POD, f"/kubepods/pod{UID}", f"/kubepods.slice/kubepods-pod{UID_}.slice"),
    (BURSTABLE_POD, f"/kubepods/burstable/pod{UID}",
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
    (BEST_EFFORT_POD, f"/kubepods/besteffort/pod{UID}",
     f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"),
])
def test_pod_cgroup_names(pod: Pod, cgroupfs: str, systemd: str) -> None:
    from nodeagent.cgroups.qos import pod_qos_class
    name = names.pod_cgroup(CgroupName(), pod_qos_class(pod), UID)
    assert name.to_cgroupfs() == cgroupfs
    assert name.to_systemd() == systemd


def test_roots() -> None:
    assert names.parse_root("/", "cgroupfs") == CgroupName()
    assert names.kubepods(names.parse_root("/a/b", "cgroupfs")).to_cgroupfs() == "/a/b/kubepods"
    root = names.parse_root("/system.slice/system-my_node.slice", "systemd")
    assert root == CgroupName(("system", "my-node"))
    assert names.kubepods(root).to_systemd() == \
        "/system.slice/system-my_node.slice/system-my_node-kubepods.slice"
    assert names.expand_slice("a-b-c.slice") == "/a.slice/a-b.slice/a-b-c.slice"
    assert names.expand_slice("-.slice") == "/"


@pytest.mark.parametrize(("root", "driver", "message"), [
    ("relative", "cgroupfs", "must be an absolute path"),
    ("/not-a-slice", "systemd", "must be a slice"),
    ("/a.slice/b.slice", "systemd", "is not the expansion"),
    ("/", "docker", "cgroupDriver must be one of"),
])
def test_bad_roots(root: str, driver: str, message: str) -> None:
    with pytest.raises(CgroupNameError, match=message):
        names.parse_root(root, driver)


# -- driver checks ------------------------------------------------------------------------

def test_driver_checks() -> None:
    info = {"config": '{"containerd":{"defaultRuntimeName":"runc","runtimes":'
                      '{"runc":{"options":{"SystemdCgroup":true}}}}}'}
    assert driver_from_status_info(info) == "systemd"
    assert driver_from_status_info({"config": '{"systemdCgroup": false}'}) == "cgroupfs"
    assert driver_from_status_info({}) is None
    with pytest.raises(CgroupSetupError, match="'cgroupfs' is different from the container runtime's "
                                               "cgroup driver 'systemd'"):
        check_setup("cgroupfs", HostCgroups(2, True), "systemd")
    with pytest.raises(CgroupSetupError, match="needs systemd as the init system"):
        check_setup("systemd", HostCgroups(1, False), "systemd")
    check_setup("systemd", HostCgroups(2, True), None)


# -- trees ---------------------------------------------------------------------------------

def v2_tree(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def v1_tree(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup"
    for sub in ("cpu", "cpuacct", "cpuset", "memory", "pids", "systemd"):
        (root / sub).mkdir(parents=True)
    for name, value in (("cpuset.cpus", "0-1"), ("cpuset.mems", "0")):
        (root / "cpuset" / name).write_text(value)
    return root


BUDGET = NodeResources(cpu=2000, memory=4 * GI, ephemeral_storage=100 * GI, pods=110, pid=4096)
POLICY = ResourcePolicy(memory_capacity=8 * GI, pod_pids_limit=512)


def files(d: Path, *names_: str) -> dict[str, str]:
    return {n: (d / n).read_text().strip() for n in names_ if (d / n).exists()}


async def test_v2_tree_cgroupfs_names(tmp_path: Path) -> None:
    mount = v2_tree(tmp_path)
    manager = CgroupManager(CgroupV2(mount), driver="cgroupfs", root=CgroupName(), policy=POLICY,
                            pods_budget=BUDGET)
    await manager.start()
    kubepods = mount / "kubepods"
    assert files(kubepods, "cpu.weight", "memory.max", "pids.max") == {
        "cpu.weight": "174",  # 2 cpus = 2048 shares
        "memory.max": str(4 * GI), "pids.max": "4096"}
    assert (mount / "cgroup.subtree_control").read_text().split() == ["cpu", "memory", "pids"]
    assert (kubepods / "besteffort" / "cpu.weight").read_text() == "1"

    g = await manager.ensure_pod(GUARANTEED_POD)
    assert g == f"/kubepods/pod{UID}"
    assert files(kubepods / f"pod{UID}", "cpu.weight", "cpu.max", "memory.max", "pids.max") == {
        "cpu.weight": "59", "cpu.max": "50000 100000", "memory.max": str(256 * 2**20), "pids.max": "512"}

    b_pod = make_pod({"cpu": "1", "memory": "512Mi"}, {"cpu": "250m", "memory": "128Mi"}, uid="b-1")
    assert await manager.ensure_pod(b_pod) == "/kubepods/burstable/podb-1"
    assert files(kubepods / "burstable" / "podb-1", "cpu.weight", "cpu.max", "memory.max") == {
        "cpu.weight": "35", "cpu.max": "100000 100000", "memory.max": str(512 * 2**20)}
    # The burstable tier follows its pods' requests: 250m -> 256 shares -> weight 35.
    assert (kubepods / "burstable" / "cpu.weight").read_text() == "35"

    e_pod = make_pod(None, None, uid="e-1")
    assert await manager.ensure_pod(e_pod) == "/kubepods/besteffort/pode-1"
    assert files(kubepods / "besteffort" / "pode-1", "cpu.weight", "cpu.max", "memory.max") == {"cpu.weight": "1"}

    await manager.remove_pod(b_pod)
    assert not (kubepods / "burstable" / "podb-1").exists()
    await manager.update_tiers()
    assert (kubepods / "burstable" / "cpu.weight").read_text() == "1"  # no burstable pods: 2 shares


async def test_v2_tree_systemd_names(tmp_path: Path) -> None:
    mount = v2_tree(tmp_path)
    manager = CgroupManager(CgroupV2(mount), driver="systemd", root=CgroupName(), policy=POLICY)
    await manager.start()
    top = mount / "kubepods.slice"
    assert (top / "kubepods-burstable.slice").is_dir() and (top / "kubepods-besteffort.slice").is_dir()
    paths = {qos: await manager.ensure_pod(p) for qos, p in (
        ("g", GUARANTEED_POD), ("b", make_pod({"cpu": "1"}, {"cpu": "100m"}, uid="b-2")),
        ("e", make_pod(None, None, uid="e-2")))}
    assert paths == {
        "g": f"/kubepods.slice/kubepods-pod{UID_}.slice",
        "b": "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podb_2.slice",
        "e": "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pode_2.slice"}
    assert (mount / paths["g"].lstrip("/") / "memory.max").read_text() == str(256 * 2**20)
    assert (mount / paths["b"].lstrip("/") / "cpu.max").read_text() == "100000 100000"
    assert (mount / paths["e"].lstrip("/") / "cpu.weight").read_text() == "1"
    # Orphans: pods the manager no longer counts as active are removed by name.
    manager.set_active_pods([GUARANTEED_POD])
    await manager.remove_orphans()
    assert (mount / paths["g"].lstrip("/")).is_dir()
    assert not (mount / paths["b"].lstrip("/")).exists() and not (mount / paths["e"].lstrip("/")).exists()


async def test_a_cgroup_torn_down_while_read_counts_as_gone(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """cgroupfs answers ENODEV for the files of a cgroup the kernel is still
    removing (runc tearing down a container's while the pod's is scanned):
    that one has no processes and no usage; it does not fail the scan (which
    stopped the agent once, from housekeeping)."""
    mount = v1_tree(tmp_path)
    pod = mount / "memory" / "kubepods" / "podx"
    for d, pids in ((pod, "10\n"), (pod / "live", "11\n"), (pod / "dying", "12\n")):
        d.mkdir(parents=True)
        (d / "cgroup.procs").write_text(pids)
    (pod / "memory.usage_in_bytes").write_text("4096")
    (pod / "memory.stat").write_text("total_inactive_file 1024\n")
    real_read = fs._read

    def read(path: Path) -> str:
        if "dying" in path.parts or path.name == "memory.stat":
            raise OSError(errno.ENODEV, "No such device")
        return real_read(path)

    monkeypatch.setattr(fs, "_read", read)
    backend = CgroupV1(mount)
    assert backend.procs("/kubepods/podx") == [10, 11]
    assert backend.memory_working_set("/kubepods/podx") is None
    monkeypatch.setattr(fs, "_read", lambda path: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):  # anything else is still an error
        backend.procs("/kubepods/podx")


async def test_v1_tree_systemd_names(tmp_path: Path) -> None:
    mount = v1_tree(tmp_path)
    manager = CgroupManager(CgroupV1(mount), driver="systemd", root=CgroupName(), policy=POLICY,
                            pods_budget=BUDGET)
    await manager.start()
    path = await manager.ensure_pod(BURSTABLE_POD)
    assert path == f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"
    rel = path.lstrip("/")
    assert files(mount / "cpu" / rel, "cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us") == {
        "cpu.shares": "256", "cpu.cfs_quota_us": "100000", "cpu.cfs_period_us": "100000"}
    assert (mount / "memory" / rel / "memory.limit_in_bytes").read_text() == str(512 * 2**20)
    assert (mount / "pids" / rel / "pids.max").read_text() == "512"
    assert (mount / "memory" / "kubepods.slice" / "memory.limit_in_bytes").read_text() == str(4 * GI)
    assert (mount / "cpu" / "kubepods.slice" / "kubepods-besteffort.slice" / "cpu.shares").read_text() == "2"
    # cpuset children inherit the parent's cpus/mems (else they refuse tasks).
    assert (mount / "cpuset" / "kubepods.slice" / "cpuset.cpus").read_text() == "0-1"
    # A cgroup with a process in it is not removed; once empty it goes everywhere.
    procs = mount / "memory" / rel / "cgroup.procs"
    procs.write_text("999999\n")
    with pytest.raises(CgroupBusy):
        manager.backend.remove(path)
    procs.write_text("")
    await manager.remove_pod(BURSTABLE_POD)
    assert not any((mount / sub / rel).exists() for sub in ("cpu", "cpuacct", "cpuset", "memory", "pids"))
