"""Which cgroup version and driver the host and the runtime use.

A kubelet whose cgroup driver differs from the runtime's is the classic
broken install: pods start, but their containers land outside the pod
cgroups and limits silently stop applying. nodeagent checks at start and
refuses with a message that says what to change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nodeagent.cgroups.fs import CGROUP_MOUNT, fs_type
from nodeagent.cgroups.names import CGROUPFS, SYSTEMD
from nodeagent.cri.pb import api_pb2 as pb


class CgroupSetupError(RuntimeError):
    """The node's cgroup setup cannot work; the agent refuses to start."""


@dataclass(frozen=True)
class HostCgroups:
    version: int  # 1 (incl. hybrid) or 2 (unified at the mount point)
    systemd_init: bool  # PID 1 is systemd (sd_booted: /run/systemd/system exists)


def detect_host(mount: Path = CGROUP_MOUNT, run_systemd: Path = Path("/run/systemd/system")) -> HostCgroups:
    version = 2 if fs_type(mount) == "cgroup2" else 1
    return HostCgroups(version=version, systemd_init=run_systemd.is_dir())


def driver_from_runtime_config(resp: pb.RuntimeConfigResponse) -> str:
    return SYSTEMD if resp.linux.cgroup_driver == pb.SYSTEMD else CGROUPFS


def driver_from_status_info(info: dict[str, str]) -> str | None:
    """containerd 1.6 has no RuntimeConfig RPC; its verbose Status carries
    the CRI plugin config: the default runtime's SystemdCgroup option."""
    try:
        config = json.loads(info.get("config", ""))
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    containerd = config.get("containerd") or {}
    runtime = (containerd.get("runtimes") or {}).get(containerd.get("defaultRuntimeName", ""), {})
    options = runtime.get("options") or {}
    if "SystemdCgroup" in options:
        return SYSTEMD if options["SystemdCgroup"] else CGROUPFS
    if "systemdCgroup" in config:
        return SYSTEMD if config["systemdCgroup"] else CGROUPFS
    return None


def check_setup(driver: str, host: HostCgroups, runtime_driver: str | None) -> None:
    """Raise CgroupSetupError when the configured driver cannot work here."""
    if runtime_driver is not None and runtime_driver != driver:
        raise CgroupSetupError(
            f"misconfiguration: nodeagent cgroup driver {driver!r} is different from the container "
            f"runtime's cgroup driver {runtime_driver!r}: set cgroupDriver: {runtime_driver} "
            f"(--cgroup-driver={runtime_driver}) or change the runtime "
            f"(containerd: SystemdCgroup = {str(driver == SYSTEMD).lower()} in the runc options)")
    if driver == SYSTEMD and not host.systemd_init:
        raise CgroupSetupError(
            "cgroupDriver systemd needs systemd as the init system, and this host has none "
            "(/run/systemd/system is missing): use cgroupDriver: cgroupfs")
