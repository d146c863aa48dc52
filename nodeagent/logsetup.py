"""structlog configuration for the agent.

Mirrors the kubelet's `--logging-format` (text|json) and `-v` verbosity so a
kubelet user's unit file carries over. Pod, container and sandbox ids travel as
the keys `pod`, `container` and `sandbox` (bind them with `bind_ids`).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

FORMATS = ("text", "json")


def level_for_verbosity(v: int) -> int:
    """klog -v: 0-3 are informational, 4+ is debug chatter."""
    return logging.DEBUG if v >= 4 else logging.INFO


def configure_logging(fmt: str = "text", verbosity: int = 0, stream: TextIO | None = None) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"--logging-format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    stream = stream or sys.stderr
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors += [structlog.processors.format_exc_info,
                       structlog.processors.JSONRenderer(sort_keys=False)]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level_for_verbosity(verbosity)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        # Module-level loggers are lazy proxies: uncached, every call (the CRI
        # client logs each RPC at debug) assembles a new bound logger first.
        # configure_logging runs before anything logs, so caching loses nothing.
        cache_logger_on_first_use=True,
    )


def bind_ids(*, pod: str | None = None, container: str | None = None,
             sandbox: str | None = None) -> None:
    """Bind ids to the current task's context so every log line below carries them."""
    ids = {k: v for k, v in (("pod", pod), ("container", container), ("sandbox", sandbox)) if v}
    structlog.contextvars.bind_contextvars(**ids)
