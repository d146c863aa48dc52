"""Reading and writing cgroup files: v1 (one hierarchy per controller) and v2
(unified), behind one interface so the manager never asks which it has.

v1 goes through cgroupspy's controller objects (typed files for cpu, memory,
cpuset); it has no pids controller, so pids.max is written directly. Both
backends take their mount point as an argument: tests run the v2 code and
the systemd naming against a temporary tree shaped like /sys/fs/cgroup.
Every call here blocks (file I/O): callers run them in an executor.
"""

from __future__ import annotations

import errno
import os
from abc import ABC, abstractmethod
from pathlib import Path

from cgroupspy.nodes import Node

from nodeagent.cgroups.values import ResourceConfig, shares_to_weight

CGROUP_MOUNT = Path("/sys/fs/cgroup")
# Controllers the pod cgroups are created in up front (kubelet: every
# subsystem libcontainer knows); the runtime creates the rest below them.
V1_CREATE = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer", "hugetlb")
V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids")


class CgroupError(OSError):
    """A cgroup operation failed; the message names the file."""


class CgroupBusy(CgroupError):
    """The cgroup still holds processes and cannot be removed."""


class CgroupBackend(ABC):
    version: int

    def __init__(self, mount: Path = CGROUP_MOUNT) -> None:
        self.mount = Path(mount)

    @abstractmethod
    def ensure(self, path: str, config: ResourceConfig | None = None) -> None:
        """Create the cgroup (and its parents) if missing, then apply `config`."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    def create(self, path: str, config: ResourceConfig) -> bool:
        """`ensure` for a pod's cgroup, and whether it was missing: the check
        and the creation in one call, so one executor hop. One that exists
        gets `config` again (each new sandbox re-asserts its pod's limits)."""
        created = not self.exists(path)
        self.ensure(path, config)
        return created

    def procs(self, path: str) -> list[int]:
        """Processes in the cgroup or any cgroup below it."""
        return sorted({pid for d in self.dirs(path) for pid in _procs_below(d)})

    @abstractmethod
    def dirs(self, path: str) -> list[Path]:
        """Every directory that is this cgroup, one per hierarchy."""

    @abstractmethod
    def memory_working_set(self, path: str) -> int | None:
        """usage − inactive_file, as cadvisor and the kubelet count it; None if absent."""

    @abstractmethod
    def pids_current(self, path: str) -> int | None: ...

    def children(self, path: str) -> list[str]:
        names: set[str] = set()
        for d in self.dirs(path):
            try:
                names.update(e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                pass
        return sorted(names)

    def remove(self, path: str) -> None:
        """Remove the cgroup and everything below it, in every hierarchy.
        Raises CgroupBusy when processes are still in it."""
        if pids := self.procs(path):
            raise CgroupBusy(errno.EBUSY, f"cgroup {path} still has processes {pids[:5]}")
        for d in self.dirs(path):
            _rmdir_tree(d)


def _gone(exc: OSError) -> bool:
    """A cgroup removed under the reader: ENOENT, or ENODEV from the files of
    one the kernel is still tearing down (runc removing a container's)."""
    return exc.errno in (errno.ENOENT, errno.ENODEV)


def _procs_below(top: Path) -> list[int]:
    found: set[int] = set()
    for root, _, files in os.walk(top):
        if "cgroup.procs" in files:
            try:
                found.update(int(p) for p in _read(Path(root) / "cgroup.procs").split())
            except ValueError:
                pass
            except OSError as exc:
                if not _gone(exc):
                    raise
    return sorted(found)


def _rmdir_tree(top: Path) -> None:
    if not top.is_dir():
        return
    for root, subdirs, _ in os.walk(top, topdown=False):
        for name in subdirs:
            _rmdir(Path(root) / name)
    _rmdir(top)


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno == errno.ENOTEMPTY and not any(p.is_dir() for p in path.iterdir()):
            # A test tree (plain files, not cgroupfs) is not emptied by the kernel.
            for f in path.iterdir():
                f.unlink()
            path.rmdir()
            return
        if exc.errno == errno.EBUSY:
            raise CgroupBusy(exc.errno, f"cannot remove {path}: processes still in it") from None
        raise CgroupError(exc.errno, f"cannot remove {path}: {exc.strerror}") from None


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise CgroupError(exc.errno, f"write {value!r} to {path}: {exc.strerror}") from None


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read().strip()


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


class CgroupV1(CgroupBackend):
    version = 1

    def __init__(self, mount: Path = CGROUP_MOUNT) -> None:
        super().__init__(mount)
        self._root = Node(str(self.mount))
        self._hierarchies: list[Path] | None = None
        self._mounted: list[str] | None = None

    def hierarchies(self) -> list[Path]:
        """Each mounted hierarchy once (co-mounted `cpu,cpuacct` behind symlinks);
        read once: hierarchies are mounted at boot."""
        if self._hierarchies is None:
            seen: dict[str, Path] = {}
            for entry in sorted(self.mount.iterdir()):
                if entry.is_dir():
                    seen.setdefault(os.path.realpath(entry), entry)
            self._hierarchies = list(seen.values())
        return self._hierarchies

    def children(self, path: str) -> list[str]:
        """Child cgroups as the memory hierarchy lists them: every pod cgroup
        is created there first, and scanning one hierarchy instead of ten
        keeps the orphan scan in housekeeping cheap with many pods."""
        d = (self.mount / "memory").joinpath(*_parts(path))
        if not d.is_dir():
            return super().children(path)
        try:
            return sorted(e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []

    def _node(self, controller: str, path: str) -> Node:
        node = Node(controller, parent=self._root)
        for part in _parts(path):
            node = Node(part, parent=node)
        return node

    def dirs(self, path: str) -> list[Path]:
        return [h.joinpath(*_parts(path)) for h in self.hierarchies() if h.joinpath(*_parts(path)).is_dir()]

    def exists(self, path: str) -> bool:
        return (self.mount / "memory").joinpath(*_parts(path)).is_dir()

    def ensure(self, path: str, config: ResourceConfig | None = None) -> None:
        parts = _parts(path)
        for controller in self._controllers():
            if not parts:
                break
            leaf = (self.mount / controller).joinpath(*parts)
            # The parents exist but for the first pod of a tier: one mkdir, not
            # a stat per level (stats on cgroupfs are slow when it is busy).
            try:
                os.mkdir(leaf)
            except FileExistsError:
                continue
            except FileNotFoundError:
                self._ensure_levels(controller, parts)
                continue
            except OSError as exc:
                raise CgroupError(exc.errno, f"mkdir {leaf}: {exc.strerror}") from None
            if controller == "cpuset":
                _inherit_cpuset(leaf.parent, leaf)
        if config is not None:
            self._apply(path, config)

    def _controllers(self) -> list[str]:
        """The V1_CREATE controllers mounted here (read once, like hierarchies)."""
        if self._mounted is None:
            self._mounted = [c for c in V1_CREATE if (self.mount / c).is_dir()]
        return self._mounted

    def _ensure_levels(self, controller: str, parts: list[str]) -> None:
        node = self._node(controller, "")
        for part in parts:
            child = Node(part, parent=node)
            if not os.path.isdir(child.full_path):
                node.create_cgroup(part)
                if controller == "cpuset":
                    _inherit_cpuset(Path(node.full_path.decode()), Path(child.full_path.decode()))
            node = child

    def _apply(self, path: str, config: ResourceConfig) -> None:
        try:
            if config.cpu_shares is not None:
                self._node("cpu", path).controller.shares = config.cpu_shares
            if config.cpu_period is not None or config.cpu_quota is not None:
                cpu = self._node("cpu", path).controller
                try:
                    if config.cpu_period is not None:
                        cpu.cfs_period_us = config.cpu_period
                    if config.cpu_quota is not None:
                        cpu.cfs_quota_us = config.cpu_quota
                except OSError:  # a shorter period than the old quota allows: quota first
                    if config.cpu_quota is not None:
                        cpu.cfs_quota_us = config.cpu_quota
                    if config.cpu_period is not None:
                        cpu.cfs_period_us = config.cpu_period
            if config.memory_limit is not None:
                self._node("memory", path).controller.limit_in_bytes = config.memory_limit
        except OSError as exc:
            raise CgroupError(exc.errno, f"cgroup {path}: {exc.strerror}") from None
        if config.pids_limit is not None:
            pids = (self.mount / "pids").joinpath(*_parts(path), "pids.max")
            if pids.parent.is_dir():
                _write(pids, "max" if config.pids_limit <= 0 else str(config.pids_limit))

    def procs(self, path: str) -> list[int]:
        """Every v1 hierarchy holds every process: one (memory) is enough."""
        d = (self.mount / "memory").joinpath(*_parts(path))
        return _procs_below(d) if d.is_dir() else super().procs(path)

    def memory_working_set(self, path: str) -> int | None:
        d = (self.mount / "memory").joinpath(*_parts(path))
        return _working_set(d / "memory.usage_in_bytes", d / "memory.stat", "total_inactive_file")

    def pids_current(self, path: str) -> int | None:
        return _int_file((self.mount / "pids").joinpath(*_parts(path), "pids.current"))


def _working_set(usage_file: Path, stat_file: Path, inactive_key: str) -> int | None:
    """usage − inactive file pages; None when the cgroup is gone (or going)."""
    usage = _int_file(usage_file)
    if usage is None:
        return None
    try:
        return max(0, usage - _stat_value(stat_file, inactive_key))
    except OSError as exc:
        if _gone(exc):
            return None
        raise


def _stat_value(path: Path, key: str) -> int:
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _int_file(path: Path) -> int | None:
    try:
        return int(_read(path))
    except ValueError:
        return None
    except OSError as exc:
        if _gone(exc):
            return None
        raise


def _inherit_cpuset(parent: Path, child: Path) -> None:
    """A new v1 cpuset cgroup starts with no cpus or mems and refuses tasks:
    copy the parent's, as libcontainer does."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        target = child / name
        if not target.exists() or not _read(target):
            _write(target, _read(parent / name))


class CgroupV2(CgroupBackend):
    version = 2

    def __init__(self, mount: Path = CGROUP_MOUNT) -> None:
        super().__init__(mount)
        self._kernel = fs_type(self.mount) == "cgroup2"  # else a test tree of plain files

    def dirs(self, path: str) -> list[Path]:
        d = self.mount.joinpath(*_parts(path))
        return [d] if d.is_dir() else []

    def exists(self, path: str) -> bool:
        return self.mount.joinpath(*_parts(path)).is_dir()

    def ensure(self, path: str, config: ResourceConfig | None = None) -> None:
        current = self.mount
        for part in _parts(path):
            self._enable_controllers(current)
            current = current / part
            if not current.is_dir():
                try:
                    current.mkdir()
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise CgroupError(exc.errno, f"mkdir {current}: {exc.strerror}") from None
        if config is not None:
            self._apply(current, config)

    def _enable_controllers(self, parent: Path) -> None:
        """Children only get controller files when the parent delegates them."""
        available_file = parent / "cgroup.controllers"
        available = _read(available_file).split() if available_file.exists() else list(V2_CONTROLLERS)
        control = parent / "cgroup.subtree_control"
        enabled = _read(control).split() if control.exists() else []
        wanted = [c for c in ("cpu", "memory", "pids") if c in available and c not in enabled]
        if not wanted:
            return
        if self._kernel:
            _write(control, " ".join(f"+{c}" for c in wanted))
        else:  # a test tree: record what the kernel would then show
            _write(control, " ".join([*enabled, *wanted]))

    def _apply(self, d: Path, config: ResourceConfig) -> None:
        if config.cpu_shares is not None:
            _write(d / "cpu.weight", str(shares_to_weight(config.cpu_shares)))
        if config.cpu_quota is not None or config.cpu_period is not None:
            period = config.cpu_period or 100000
            quota = config.cpu_quota
            _write(d / "cpu.max", f"{'max' if quota is None or quota <= 0 else quota} {period}")
        if config.memory_limit is not None:
            _write(d / "memory.max", "max" if config.memory_limit <= 0 else str(config.memory_limit))
        if config.pids_limit is not None:
            _write(d / "pids.max", "max" if config.pids_limit <= 0 else str(config.pids_limit))

    def memory_working_set(self, path: str) -> int | None:
        d = self.mount.joinpath(*_parts(path))
        return _working_set(d / "memory.current", d / "memory.stat", "inactive_file")

    def pids_current(self, path: str) -> int | None:
        return _int_file(self.mount.joinpath(*_parts(path), "pids.current"))


def fs_type(path: Path) -> str:
    """The filesystem type of the mount holding `path` (from /proc/self/mountinfo)."""
    target = os.path.realpath(path)
    best, kind = "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mount_point = fields[4]
            fstype = fields[fields.index("-") + 1]
            if (target == mount_point or target.startswith(mount_point.rstrip("/") + "/")) \
                    and len(mount_point) >= len(best):
                best, kind = mount_point, fstype
    return kind
