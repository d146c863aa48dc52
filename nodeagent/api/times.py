"""Times as the API server writes them, always UTC: metav1.Time (whole
seconds, truncated as Go does), metav1.MicroTime, Go's RFC3339Nano, and CRI
timestamps (nanoseconds, 0 = unset)."""

from __future__ import annotations

import math
import time


def format_time(wall: float) -> str:
    """metav1.Time: `2006-01-02T15:04:05Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(wall)))


def format_micro_time(wall: float) -> str:
    """metav1.MicroTime: `2006-01-02T15:04:05.000000Z` (microseconds, truncated)."""
    micros = math.floor(wall * 1_000_000)
    secs, frac = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:06d}Z"


def rfc3339_nano(ns: int) -> str:
    """Go's time.RFC3339Nano (trailing zeros of the fraction trimmed)."""
    secs, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def now() -> str:
    """metav1.Time of this moment."""
    return format_time(time.time())


def from_cri(ns: int) -> str | None:
    """A CRI timestamp as metav1.Time; None when the runtime left it unset."""
    return format_time(ns / 1e9) if ns else None
