"""`kubectl get pods`-style table of the pods the agent runs.

Operators read pod state off `kubectl get pods`; printing the same STATUS,
READY, RESTARTS and AGE strings for the local view (from `/pods` JSON) means
nothing has to be re-learnt. The rules follow kubectl's `printPod`
(k/k pkg/printers/internalversion/printers.go) and apimachinery's
`duration.HumanDuration`; input is Kubernetes JSON (dicts), not dataclasses,
so the table can render whatever `/pods` served.

Columns: NAMESPACE NAME READY STATUS RESTARTS AGE IP. Invalid static
manifests, when given, follow the table under `INVALID MANIFESTS:`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

COLUMNS = ("NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP")
# kubectl's tabwriter (cli-runtime printers.GetNewTabWriter): minwidth 6, padding 3.
MIN_WIDTH = 6
PADDING = 3
NODE_UNREACHABLE_REASON = "NodeLost"
TERMINAL_PHASES = ("Succeeded", "Failed")
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True)
class PodRow:
    namespace: str
    name: str
    ready: str
    status: str
    restarts: str
    age: str
    ip: str

    def cells(self) -> tuple[str, ...]:
        return (self.namespace, self.name, self.ready, self.status, self.restarts, self.age,
                self.ip)


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 (with up to nanosecond fractions, as the API writes) → aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    m = _RFC3339.match(value.strip())
    if m is None:
        return None
    date, clock, frac, zone = m.groups()
    micro = (frac or "")[:6].ljust(6, "0")
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        return datetime.fromisoformat(f"{date}T{clock}.{micro}{zone}")
    except ValueError:
        return None


def human_duration(d: timedelta) -> str:
    """apimachinery duration.HumanDuration: ~2-3 significant figures."""
    seconds = int(d.total_seconds())  # Go's int() truncates toward zero
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _since(ts: datetime | None, now: datetime) -> str:
    """kubectl translateTimestampSince."""
    if ts is None:
        return "<unknown>"
    return human_duration(now - ts)


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _list(obj: Any, *keys: str) -> list[Mapping[str, Any]]:
    value = _get(obj, *keys)
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _condition_true(status: Mapping[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in _list(status, "conditions"))


def _terminated_reason(term: Mapping[str, Any], prefix: str) -> str:
    if term.get("reason"):
        return prefix + str(term["reason"])
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode') or 0}"


def pod_row(pod: Mapping[str, Any], now: datetime) -> PodRow:
    """One table row, computed exactly like kubectl's printPod."""
    meta = _get(pod, "metadata") or {}
    spec = _get(pod, "spec") or {}
    status = _get(pod, "status") or {}

    restarts = 0
    sidecar_restarts = 0
    ready = 0
    total = len(_list(spec, "containers"))
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in _list(status, "conditions"):
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = _list(spec, "initContainers")
    sidecars = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    total += len(sidecars)

    initializing = False
    for i, cs in enumerate(_list(status, "initContainerStatuses")):
        count = int(cs.get("restartCount") or 0)
        restarts += count
        finished = parse_time(_get(cs, "lastState", "terminated", "finishedAt"))
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished
        is_sidecar = cs.get("name") in sidecars
        if is_sidecar:
            sidecar_restarts += count
            if finished is not None and (last_sidecar_restart is None
                                         or finished > last_sidecar_restart):
                last_sidecar_restart = finished
        term = _get(cs, "state", "terminated")
        waiting = _get(cs, "state", "waiting")
        if isinstance(term, Mapping) and (term.get("exitCode") or 0) == 0:
            continue
        if is_sidecar and cs.get("started") is True:
            if cs.get("ready"):
                ready += 1
            continue
        if isinstance(term, Mapping):
            reason = _terminated_reason(term, "Init:")
        elif (isinstance(waiting, Mapping) and waiting.get("reason")
              and waiting.get("reason") != "PodInitializing"):
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(status, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        # kubectl walks app containers backwards, so the first one's reason wins.
        for cs in reversed(_list(status, "containerStatuses")):
            restarts += int(cs.get("restartCount") or 0)
            finished = parse_time(_get(cs, "lastState", "terminated", "finishedAt"))
            if finished is not None and (last_restart is None or finished > last_restart):
                last_restart = finished
            waiting = _get(cs, "state", "waiting")
            term = _get(cs, "state", "terminated")
            if isinstance(waiting, Mapping) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(term, Mapping):
                reason = _terminated_reason(term, "")
            elif cs.get("ready") and isinstance(_get(cs, "state", "running"), Mapping):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(status, "Ready") else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == NODE_UNREACHABLE_REASON:
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in TERMINAL_PHASES:
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_text = f"{restarts} ({_since(last_restart, now)} ago)"

    created = parse_time(meta.get("creationTimestamp")) or parse_time(status.get("startTime"))
    ips = _list(status, "podIPs")
    ip = (ips[0].get("ip") if ips else None) or status.get("podIP") or "<none>"
    return PodRow(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
                  ready=f"{ready}/{total}", status=str(reason), restarts=restarts_text,
                  age=_since(created, now), ip=str(ip))


def format_rows(rows: Sequence[Sequence[str]]) -> str:
    """Align like kubectl's tabwriter; the last column is not padded."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [max(MIN_WIDTH, max(len(r[c]) for r in rows if c < len(r)) + PADDING)
              for c in range(ncols - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[c]) if c < ncols - 1 else cell for c, cell in enumerate(row)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_pod_table(pods: list[dict], now: datetime, errors: Sequence[str] = ()) -> str:
    """The table for `pods` (API JSON) at time `now`, then invalid manifests if any."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    rows = [pod_row(p, now).cells() for p in pods]
    out = format_rows([COLUMNS, *rows])
    if errors:
        out += "\nINVALID MANIFESTS:\n" + "".join(f"{e}\n" for e in errors)
    return out
