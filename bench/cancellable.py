"""Run a benchmark's main() so that SIGTERM or Ctrl-C cancels it and its
teardown (environment removal) still runs."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any


async def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    task = asyncio.ensure_future(main())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        print("interrupted; environment removed", file=sys.stderr)


def run_cancellable(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(_run(main))
