"""Cgroup names as the kubelet spells them (pkg/kubelet/cm/cgroup_manager_linux.go).

A name is a list of components (`kubepods`, `burstable`, `pod<uid>`); the
driver decides the path: cgroupfs joins them (`/kubepods/burstable/pod<uid>`),
systemd turns them into nested slices
(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice`).
Dashboards and runbooks key on these exact paths, so they must match.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.cgroups.qos import BEST_EFFORT, BURSTABLE, GUARANTEED

CGROUPFS = "cgroupfs"
SYSTEMD = "systemd"
DRIVERS = (CGROUPFS, SYSTEMD)

KUBEPODS = "kubepods"
POD_PREFIX = "pod"
SLICE = ".slice"

_TIER = {GUARANTEED: None, BURSTABLE: "burstable", BEST_EFFORT: "besteffort"}


class CgroupNameError(ValueError):
    """A cgroup root or name that the chosen driver cannot express."""


@dataclass(frozen=True)
class CgroupName:
    components: tuple[str, ...] = ()

    def child(self, *components: str) -> CgroupName:
        return CgroupName((*self.components, *components))

    @property
    def parent(self) -> CgroupName:
        return CgroupName(self.components[:-1])

    def to_cgroupfs(self) -> str:
        return "/" + "/".join(self.components)

    def to_systemd(self) -> str:
        """ToSystemd: escape `-` as `_`, join with `-`, expand the slice."""
        if not self.components:
            return "/"
        return expand_slice("-".join(c.replace("-", "_") for c in self.components) + SLICE)

    def path(self, driver: str) -> str:
        return self.to_systemd() if driver == SYSTEMD else self.to_cgroupfs()


def expand_slice(slice_name: str) -> str:
    """systemd's slice expansion: `a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice`."""
    if not slice_name.endswith(SLICE) or "/" in slice_name:
        raise CgroupNameError(f"invalid slice name {slice_name!r}")
    stem = slice_name[:-len(SLICE)]
    if stem == "-":
        return "/"
    if not stem or stem.startswith("-") or stem.endswith("-") or "--" in stem:
        raise CgroupNameError(f"invalid slice name {slice_name!r}")
    path, prefix = "", ""
    for part in stem.split("-"):
        prefix = f"{prefix}-{part}" if prefix else part
        path += f"/{prefix}{SLICE}"
    return path


def parse_root(root: str, driver: str) -> CgroupName:
    """The `--cgroup-root` value as a name (kubelet NewCgroupName /
    ParseSystemdToCgroupName)."""
    if driver not in DRIVERS:
        raise CgroupNameError(f"cgroupDriver must be one of {', '.join(DRIVERS)}, not {driver!r}")
    if not root.startswith("/"):
        raise CgroupNameError(f"cgroupRoot {root!r} must be an absolute path")
    parts = [p for p in root.split("/") if p]
    if driver == CGROUPFS:
        return CgroupName(tuple(parts))
    if not parts:
        return CgroupName()
    last = parts[-1]
    if not last.endswith(SLICE):
        raise CgroupNameError(f"cgroupRoot {root!r}: with the systemd driver it must be a slice "
                              f"(for example /system.slice or /)")
    if expand_slice(last) != "/" + "/".join(parts):
        raise CgroupNameError(f"cgroupRoot {root!r} is not the expansion of {last!r}")
    return CgroupName(tuple(c.replace("_", "-") for c in last[:-len(SLICE)].split("-")))


def kubepods(root: CgroupName) -> CgroupName:
    return root.child(KUBEPODS)


def tier(root: CgroupName, qos_class: str) -> CgroupName:
    """The QoS tier a pod of this class sits in (Guaranteed: kubepods itself)."""
    name = _TIER[qos_class]
    return kubepods(root) if name is None else kubepods(root).child(name)


def pod_cgroup(root: CgroupName, qos_class: str, uid: str) -> CgroupName:
    return tier(root, qos_class).child(POD_PREFIX + uid)
