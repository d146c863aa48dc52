"""Posting events to the API server (client-go's event broadcaster sink).

The recorder hands every event to `submit` without waiting; a bounded queue
(1000, client-go's) feeds one sender that applies the correlator's verdict
(create, patch an aggregated one, or drop as spam) under its own rate limit
(eventRecordQPS / eventBurst). A failed write is retried up to 12 times, 10 s
apart, as client-go does; an outage longer than that loses events, never pods.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from nodeagent.api.codec import decode, encode
from nodeagent.api.event import Event as ApiEvent
from nodeagent.events import Event
from nodeagent.kube.client import STRATEGIC_MERGE_PATCH, ApiError, KubeClient, TokenBucket, Unreachable
from nodeagent.kube.events import (
    MAX_TRIES_PER_EVENT, SLEEP_BETWEEN_TRIES, CreateEvent, Drop, EventPipeline, PatchEvent,
)

log = structlog.get_logger("nodeagent.kube.events")

QUEUE_LENGTH = 1000


def events_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/events" + (f"/{name}" if name else "")


class EventSink:
    def __init__(self, client: KubeClient, pipeline: EventPipeline, *, qps: float = 50,
                 burst: int = 100, retry_sleep: float = SLEEP_BETWEEN_TRIES) -> None:
        self.client = client
        self.pipeline = pipeline
        self.limiter = TokenBucket(qps, burst)
        self.retry_sleep = retry_sleep
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LENGTH)
        self.sent = 0
        self.dropped = 0

    def submit(self, event: Event) -> None:
        """A recorder sink: never blocks, never raises."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        while True:
            event = await self.queue.get()
            action = self.pipeline.action(event)
            if isinstance(action, Drop):
                continue  # the spam filter's verdict
            await self._write(action)

    async def _write(self, action: CreateEvent | PatchEvent) -> None:
        for attempt in range(MAX_TRIES_PER_EVENT):
            await self.limiter.acquire()
            try:
                written = await self._send(action)
                self.pipeline.correlator.update_state(decode(ApiEvent, written))
                self.sent += 1
                return
            except Unreachable:
                pass
            except ApiError as exc:
                if exc.conflict or exc.code in (400, 401, 403, 404, 422):
                    log.debug("event refused by the API server", error=str(exc))
                    self.dropped += 1
                    return
            if attempt + 1 < MAX_TRIES_PER_EVENT:
                await asyncio.sleep(self.retry_sleep)
        self.dropped += 1

    async def _send(self, action: CreateEvent | PatchEvent) -> dict[str, Any]:
        if isinstance(action, PatchEvent):
            try:
                return await self.client.request("PATCH", events_path(action.namespace, action.name),
                                                 body=action.patch, content_type=STRATEGIC_MERGE_PATCH,
                                                 retry=False)
            except ApiError as exc:
                if not exc.not_found:
                    raise
            body = encode(action.event)  # client-go: a patch of a vanished event becomes a create
            body.get("metadata", {}).pop("resourceVersion", None)
            return await self.client.request("POST", events_path(action.namespace), body=body, retry=False)
        return await self.client.request("POST", events_path(action.namespace), body=action.body, retry=False)
