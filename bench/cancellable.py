"""Run a benchmark's main() so that SIGTERM or Ctrl-C cancels it and its
teardown (environment removal) still runs."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any


async def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> bool:
    """True when a signal cancelled main()."""
    task = asyncio.ensure_future(main())
    loop = asyncio.get_running_loop()
    signalled = []

    def stop() -> None:
        signalled.append(True)
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await task
    except asyncio.CancelledError:
        if not signalled:
            raise
    return bool(signalled)


def run_cancellable(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if asyncio.run(_run(main)):
        sys.exit("interrupted; environment removed")
