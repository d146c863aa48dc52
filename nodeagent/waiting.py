"""Waiting for an event with a timeout, without losing a cancellation.

`asyncio.wait_for(event.wait(), t)` on Python 3.11 returns normally when the
event is set in the same loop iteration as the task is cancelled (CPython
gh-86296): a `while True` loop around it then never ends, and the agent hung
on SIGTERM while 30 pods finished at once. `asyncio.timeout` keeps the
cancellation.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """True when `event` is set within `timeout` seconds (None: no limit)."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False
