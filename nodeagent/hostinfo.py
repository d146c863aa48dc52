"""Facts about the host that change what the agent (and its runtime) may do."""

from __future__ import annotations

import os
import socket

CAP_SYS_RESOURCE = 24


def effective_capabilities(status_path: str = "/proc/self/status") -> int:
    with open(status_path, encoding="ascii") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    raise RuntimeError(f"no CapEff line in {status_path}")


def can_lower_oom_score_adj(status_path: str = "/proc/self/status") -> bool:
    """Negative oom_score_adj needs CAP_SYS_RESOURCE; some VMs and nested
    containers lack it, and the runtime must then be told to clamp
    (containerd `restrict_oom_score_adj`)."""
    return bool(effective_capabilities(status_path) >> CAP_SYS_RESOURCE & 1)


def default_node_ip() -> str:
    """The address of the interface the default route leaves by (no packet is
    sent: connecting a UDP socket only asks the kernel to pick a source)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routed by default, never contacted
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def memory_capacity_bytes(meminfo: str = "/proc/meminfo") -> int:
    with open(meminfo, encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no MemTotal in {meminfo}")


def cpu_capacity_millis() -> int:
    """The node's cpu capacity: logical CPUs (cadvisor's NumCores), in millicores."""
    return (os.cpu_count() or 1) * 1000
