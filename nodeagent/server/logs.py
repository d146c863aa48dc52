"""GET /containerLogs/{namespace}/{pod}/{container} (kubectl logs), as the
kubelet's handler (k/k pkg/kubelet/server/server.go getContainerLogs and
kuberuntime ReadLogs): the container is the one the pod's status names
(`previous`: the last terminated one), its CRI log file is read across
rotation, and `follow` streams until the container has exited and its log
is drained, or the client goes away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from nodeagent.api.types import ContainerStatus, Pod
from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError, NotFoundError
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.logs.crilog import Limiter, LogFollower, LogOptions, read_lines

log = structlog.get_logger("nodeagent.server.logs")

FOLLOW_POLL = 0.1  # seconds between reads of a followed file
STATE_CHECK = 1.0  # seconds between container state checks while no data comes


class BadRequest(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


def _int(query: Any, name: str, minimum: int) -> int | None:
    if name not in query:
        return None
    try:
        value = int(query[name])
    except ValueError:
        raise BadRequest(400, f"{name}: invalid value {query[name]!r}: must be an integer") from None
    if value < minimum:
        raise BadRequest(400, f"{name}: Invalid value: {value}: must be greater than or equal "
                              f"to {minimum}")
    return value


def _flag(query: Any, name: str) -> bool:
    value = query.get(name)
    if value is None:
        return False
    if value.lower() in ("", "true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BadRequest(400, f"{name}: invalid value {value!r}: must be true or false")


def parse_options(query: Any, now: float) -> tuple[LogOptions, bool, bool]:
    """(options, follow, previous) from the query, validated as the API server does."""
    tail = _int(query, "tailLines", 0)
    since_seconds = _int(query, "sinceSeconds", 1)
    limit = _int(query, "limitBytes", 1)
    since = None
    if since_seconds is not None and "sinceTime" in query:
        raise BadRequest(400, "at most one of sinceTime or sinceSeconds may be specified")
    if since_seconds is not None:
        since = now - since_seconds
    elif "sinceTime" in query:
        try:
            since = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise BadRequest(400, f"sinceTime: invalid value {query['sinceTime']!r}: "
                                  "must be RFC3339") from None
    return (LogOptions(tail_lines=tail, since=since, timestamps=_flag(query, "timestamps"),
                       limit_bytes=limit), _flag(query, "follow"), _flag(query, "previous"))


class ContainerLogs:
    def __init__(self, pods: Callable[[], list[Pod]], cri: CRIClient, executor: Any = None) -> None:
        self.pods = pods
        self.cri = cri
        self.executor = executor

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ns, name, cname = (request.match_info[k] for k in ("namespace", "pod", "container"))
        try:
            options, follow, previous = parse_options(request.query, time.time())
            container_id = self._container_id(ns, name, cname, previous)
            status = await self.cri.container_status(container_id)
        except BadRequest as exc:
            return web.Response(status=exc.status, text=str(exc), content_type="text/plain")
        except NotFoundError:
            return web.Response(status=404, text=f'container "{cname}" in pod "{name}" not found',
                                content_type="text/plain")
        log_path = Path(status.status.log_path)
        loop = asyncio.get_running_loop()
        lines, offset = await loop.run_in_executor(self.executor, read_lines, log_path, options)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        limiter = Limiter(options.limit_bytes)
        await self._write(response, lines, options, limiter)
        if follow and not limiter.done:
            follower = LogFollower(log_path, offset, options.since)
            await self._follow(response, follower, container_id, options, limiter)
        await response.write_eof()
        return response

    async def _write(self, response: web.StreamResponse, lines: list, options: LogOptions,
                     limiter: Limiter) -> None:
        data = b"".join(line.render(options.timestamps) for line in lines)
        data = limiter.cut(data)
        if data:
            await response.write(data)

    async def _follow(self, response: web.StreamResponse, follower: LogFollower,
                      container_id: str, options: LogOptions, limiter: Limiter) -> None:
        loop = asyncio.get_running_loop()
        last_check = time.monotonic()
        while not limiter.done:
            lines = await loop.run_in_executor(self.executor, follower.poll)
            if lines:
                await self._write(response, lines, options, limiter)
                continue
            if time.monotonic() - last_check >= STATE_CHECK:
                last_check = time.monotonic()
                if not await self._running(container_id):
                    await self._write(response, await loop.run_in_executor(
                        self.executor, follower.poll), options, limiter)
                    return
            await asyncio.sleep(FOLLOW_POLL)

    async def _running(self, container_id: str) -> bool:
        try:
            status = await self.cri.container_status(container_id)
        except CRIError:
            return False
        return status.status.state in (pb.ContainerState.CONTAINER_RUNNING,
                                       pb.ContainerState.CONTAINER_CREATED)

    def _container_id(self, ns: str, name: str, cname: str, previous: bool) -> str:
        pod = next((p for p in self.pods()
                    if p.metadata.namespace == ns and p.metadata.name == name), None)
        if pod is None:
            raise BadRequest(404, f'pod "{name}" in namespace "{ns}" not found')
        spec_names = {c.name for c in (*pod.spec.init_containers, *pod.spec.containers)}
        if cname not in spec_names:
            raise BadRequest(404, f'container "{cname}" not found in pod "{name}"')
        statuses = (*pod.status.init_container_statuses, *pod.status.container_statuses)
        status: ContainerStatus | None = next((s for s in statuses if s.name == cname), None)
        if previous:
            term = status.last_state.terminated if status is not None else None
            if term is None or not term.container_id:
                raise BadRequest(400, f'previous terminated container "{cname}" in pod "{name}" '
                                      "not found")
            return term.container_id.split("://", 1)[-1]
        if status is None or not status.container_id:
            reason = (status.state.waiting.reason if status is not None and status.state.waiting
                      else "ContainerCreating")
            raise BadRequest(400, f'container "{cname}" in pod "{name}" is waiting to start: '
                                  f"{reason}")
        return status.container_id.split("://", 1)[-1]
