"""Facts about the host that change what the agent (and its runtime) may do."""

from __future__ import annotations

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
