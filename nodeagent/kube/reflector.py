"""List, then watch from the list's resourceVersion (client-go's reflector):
a stream that ends is resumed from the last version seen (bookmarks move it
on), 410 Gone relists, other failures back off with jitter. Shared by the pod
source and the config objects, which differ only in what they keep."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import structlog

from nodeagent.kube.client import ApiError, KubeClient, Unreachable, WatchEvent

log = structlog.get_logger("nodeagent.kube")

RETRY_MIN, RETRY_MAX = 0.5, 30.0


class Reflector:
    def __init__(self, client: KubeClient, path: str, params: dict[str, str], *,
                 on_list: Callable[[list[dict[str, Any]]], None],
                 on_event: Callable[[WatchEvent], None],
                 on_ok: Callable[[], None] = lambda: None,
                 on_error: Callable[[Exception], None] = lambda exc: None,
                 watch_timeout: int = 300) -> None:
        self.client = client
        self.path = path
        self.params = params
        self.on_list = on_list      # the complete current set (after every relist)
        self.on_event = on_event    # ADDED/MODIFIED/DELETED (not bookmarks)
        self.on_ok = on_ok          # the API server answered
        self.on_error = on_error    # it did not, or refused; retried with back-off
        self.watch_timeout = watch_timeout
        self.resource_version = ""
        self.relists = 0

    async def run(self) -> None:
        delay = RETRY_MIN
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch()
                delay = RETRY_MIN  # a stream that ended cleanly: watch again at once
                continue
            except ApiError as exc:
                if exc.gone:
                    log.info("watch resourceVersion too old; relisting", path=self.path,
                             resource_version=self.resource_version)
                    need_list = True
                    continue
                self.on_error(exc)
            except Unreachable as exc:
                self.on_error(exc)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(RETRY_MAX, delay * 2)

    async def _list(self) -> None:
        body = await self.client.get(self.path, self.params)
        self.relists += 1
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self.on_ok()
        self.on_list(body.get("items") or [])

    async def _watch(self) -> None:
        params = dict(self.params, resourceVersion=self.resource_version)
        async for event in self.client.watch(self.path, params, timeout_seconds=self.watch_timeout):
            self.on_ok()
            rv = str((event.object.get("metadata") or {}).get("resourceVersion") or "")
            if rv:
                self.resource_version = rv
            if event.type != "BOOKMARK":
                self.on_event(event)
