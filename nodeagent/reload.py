"""SIGHUP: which settings a running agent can take over from a re-read
configuration, and which wait for a restart.

The kubelet has no SIGHUP reload; nodeagent's covers what an operator changes
while pods must keep running (rotated serving certificates and token files,
log rotation and soft eviction limits, the shutdown periods, a rescan of the
manifest directory). A setting that shapes state already built (cgroups,
allocatable, listeners, the API client) is named in a warning instead:
docs/operations.md lists both sets.
"""

from __future__ import annotations

from dataclasses import fields

from nodeagent.config import AgentConfig

LOG_ROTATION = frozenset({"container_log_max_size", "container_log_max_files", "container_log_monitor_interval"})
# evictionHard shapes allocatable (the hard memory threshold is reserved), so it waits for a restart.
EVICTION = frozenset({"eviction_soft", "eviction_soft_grace_period", "eviction_minimum_reclaim",
                      "eviction_pressure_transition_period", "eviction_max_pod_grace_period"})
SHUTDOWN = frozenset({"shutdown_grace_period", "shutdown_grace_period_critical_pods",
                      "shutdown_grace_period_by_pod_priority"})
SERVING = frozenset({"tls_cert_file", "tls_private_key_file", "token_auth_file"})
LIVE = LOG_ROTATION | EVICTION | SHUTDOWN | SERVING


def changed_fields(old: AgentConfig, new: AgentConfig) -> list[str]:
    return [f.name for f in fields(AgentConfig) if getattr(old, f.name) != getattr(new, f.name)]


def take_live(current: AgentConfig, new: AgentConfig) -> tuple[list[str], list[str]]:
    """Copy the live settings that changed into `current` (which the agent's
    parts share); returns (applied, waiting for a restart) attribute names."""
    applied, later = [], []
    for name in changed_fields(current, new):
        if name in LIVE:
            setattr(current, name, getattr(new, name))
            applied.append(name)
        else:
            later.append(name)
    return applied, later
