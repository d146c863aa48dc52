"""The REST client for the API server: one aiohttp session, client-side rate
limiting (kubeAPIQPS/kubeAPIBurst), retries with backoff and jitter, typed
errors, and watch streams.

We measured the maintained Python clients (docs/decisions.md, "API client"):
kubernetes_asyncio adds ~330 ms and ~38 MiB to the agent, lightkube ~90 ms and
~6 MiB plus a second HTTP stack, and neither gives watch bookmarks or delete
preconditions without private calls. The agent's own typed dataclasses and
codec (api/codec.py) already turn objects into JSON, so this module only
moves bytes: it knows paths, verbs and status codes, not kinds.
"""

from __future__ import annotations

import asyncio
import json
import platform
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog

from nodeagent import __version__
from nodeagent.kube.kubeconfig import Connection

log = structlog.get_logger("nodeagent.kube")

JSON = "application/json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE, BACKOFF_CAP = 0.2, 5.0
MAX_RETRY_AFTER = 10.0


class ApiError(Exception):
    """The API server answered with an error Status."""

    def __init__(self, code: int, reason: str, message: str, method: str = "", path: str = "",
                 status: dict[str, Any] | None = None) -> None:
        super().__init__(f"{method} {path}: {code} {reason}: {message}" if method else f"{code} {reason}: {message}")
        self.code, self.reason, self.message = code, reason, message
        self.method, self.path = method, path
        self.status = status or {}

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409

    @property
    def gone(self) -> bool:
        return self.code == 410

    @property
    def denied(self) -> bool:
        """401/403: retrying will not help until someone fixes credentials or RBAC."""
        return self.code in (401, 403)


class Unreachable(Exception):
    """No answer from the API server (connection refused, reset, timeout)."""


def describe(exc: BaseException) -> str:
    """One line for logs and conditions; for 401/403 it says what to fix."""
    if isinstance(exc, ApiError) and exc.code == 401:
        return (f"the API server rejected nodeagent's credentials (401 Unauthorized) on {exc.method} {exc.path}: "
                "check the kubeconfig's token or client certificate")
    if isinstance(exc, ApiError) and exc.code == 403:
        return f"permission missing (403 Forbidden): {exc.message}"
    return str(exc)


class ApiConnectionState:
    """What the agent knows about its API server connection, shared by every
    loop that talks to it: logged on change (not on every retry) and shown at
    /nodeagent/node."""

    def __init__(self) -> None:
        self.connected = False
        self.last_error = ""

    def ok(self) -> None:
        if not self.connected:
            log.info("API server reachable", previous_error=self.last_error or None)
        self.connected, self.last_error = True, ""

    def failed(self, what: str, exc: Exception) -> None:
        message = f"{what}: {describe(exc)}"
        if self.connected or message != self.last_error:  # log on change, not on every retry
            denied = isinstance(exc, ApiError) and exc.denied
            (log.error if denied else log.warning)("API server request failed; retrying", error=message)
        self.connected, self.last_error = False, message

    def report(self) -> dict[str, Any]:
        return {"connected": self.connected, "lastError": self.last_error}


class TokenBucket:
    """client-go's flowcontrol token bucket: `qps` per second, up to `burst` at
    once, starting full. `acquire` waits for a token (request rate limits);
    `try_accept` takes one if there is one (the event spam filter, with its
    own clock)."""

    def __init__(self, qps: float, burst: int, now: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.qps, self.burst = float(qps), max(1, int(burst))
        self._clock = clock
        self.tokens = float(self.burst)
        self.last = clock() if now is None else now
        self._lock: asyncio.Lock | None = None  # made on first acquire: spam-filter buckets never wait

    def _refill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.qps)
            self.last = now

    def try_accept(self, now: float | None = None) -> bool:
        self._refill(self._clock() if now is None else now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    async def acquire(self) -> float:
        """Waits for a token; returns how long it waited."""
        if self.qps <= 0:  # kubeAPIQPS 0 would block forever; the kubelet treats <=0 as no limit
            return 0.0
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # FIFO: waiters are served in order
            self._refill(self._clock())
            wait = 0.0
            if self.tokens < 1:
                wait = (1 - self.tokens) / self.qps
                await asyncio.sleep(wait)
                self._refill(self._clock())
            self.tokens -= 1
            return wait


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: dict[str, Any]


Observer = Callable[[str, str, str, float], None]  # (verb, host, code, seconds)


def _user_agent() -> str:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return f"nodeagent/{__version__} (linux/{arch}) kubelet"


class KubeClient:
    def __init__(self, conn: Connection, *, qps: float = 50, burst: int = 100, timeout: float = 30.0,
                 retries: int = 3, limiter: TokenBucket | None = None) -> None:
        self.conn = conn
        self.host = urlsplit(conn.server).netloc
        self.timeout = timeout
        self.retries = retries
        self.limiter = limiter or TokenBucket(qps, burst)
        self.observers: list[Observer] = []
        self._ssl = conn.ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._user_agent = _user_agent()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._closed:
            raise Unreachable("the API client is closed (agent stopping)")
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False,
                                             limit=0, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": JSON, "User-Agent": self._user_agent}
        token = self.conn.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _observe(self, verb: str, code: str, started: float) -> None:
        seconds = time.monotonic() - started
        for observer in self.observers:
            try:
                observer(verb, self.host, code, seconds)
            except Exception as exc:  # metrics must never fail a request
                log.warning("request observer failed", error=repr(exc))

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: Any = None, content_type: str | None = None, retry: bool = True,
                      timeout: float | None = None) -> dict[str, Any]:
        """One API call; returns the decoded body. Retries connection errors,
        429 and 5xx with exponential backoff and jitter (honouring Retry-After)."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        if data is not None and content_type is None:
            content_type = JSON
        attempts = 1 + (self.retries if retry else 0)
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self._delay(attempt, last))
            try:
                return await self._once(method, path, params, data, content_type, timeout)
            except ApiError as exc:
                if exc.code not in RETRY_STATUS:
                    raise
                last = exc
            except Unreachable as exc:
                last = exc
            log.debug("API request failed; retrying", method=method, path=path, attempt=attempt + 1,
                      error=str(last))
        assert last is not None
        raise last

    @staticmethod
    def _delay(attempt: int, last: Exception | None) -> float:
        retry_after = getattr(last, "retry_after", None)
        if retry_after:
            return min(float(retry_after), MAX_RETRY_AFTER)
        return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))

    async def _once(self, method: str, path: str, params: dict[str, Any] | None, data: bytes | None,
                    content_type: str | None, timeout: float | None) -> dict[str, Any]:
        await self.limiter.acquire()
        started = time.monotonic()
        try:
            async with self._session_now().request(
                    method, self.conn.server + path, params=_query(params), data=data,
                    headers=self._headers(content_type),
                    server_hostname=self.conn.tls_server_name or None,
                    timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as resp:
                raw = await resp.read()
                self._observe(method, str(resp.status), started)
                if resp.status >= 400:
                    raise _api_error(method, path, resp.status, raw, resp.headers.get("Retry-After"))
                return json.loads(raw) if raw else {}
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self._observe(method, "<error>", started)
            raise Unreachable(f"{method} {self.conn.server}{path}: {_reason(exc)}") from None

    # -- verbs ------------------------------------------------------------------

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, body=body)

    async def patch(self, path: str, body: Any, content_type: str = STRATEGIC_MERGE_PATCH) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def delete(self, path: str, *, grace_period_seconds: int | None = None,
                     uid: str = "", resource_version: str = "") -> dict[str, Any]:
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            options["preconditions"] = preconditions
        return await self.request("DELETE", path, body=options)

    async def watch(self, path: str, params: dict[str, Any] | None = None, *,
                    timeout_seconds: int = 300) -> AsyncIterator[WatchEvent]:
        """Events until the server ends the stream. An in-stream ERROR (410
        Gone after compaction) is raised as ApiError."""
        query = dict(params or {}, watch="true", allowWatchBookmarks="true", timeoutSeconds=timeout_seconds)
        await self.limiter.acquire()
        started = time.monotonic()
        try:
            async with self._session_now().get(
                    self.conn.server + path, params=_query(query), headers=self._headers(None),
                    server_hostname=self.conn.tls_server_name or None,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout,
                                                  sock_read=timeout_seconds + 30)) as resp:
                self._observe("WATCH", str(resp.status), started)
                if resp.status >= 400:
                    raise _api_error("GET", path, resp.status, await resp.read(), None)
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield _watch_event(path, line)
                if buffer.strip():
                    yield _watch_event(path, buffer)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise Unreachable(f"watch {self.conn.server}{path}: {_reason(exc)}") from None


def _query(params: dict[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None or value == "":
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _watch_event(path: str, line: bytes) -> WatchEvent:
    try:
        event = json.loads(line)
        kind, obj = event["type"], event["object"]
    except (ValueError, KeyError, TypeError):
        raise Unreachable(f"watch {path}: malformed event {line[:200]!r}") from None
    if kind == "ERROR":
        raise ApiError(int(obj.get("code") or 500), str(obj.get("reason") or "InternalError"),
                       str(obj.get("message") or ""), "WATCH", path, obj)
    return WatchEvent(kind, obj)


def _api_error(method: str, path: str, code: int, raw: bytes, retry_after: str | None) -> ApiError:
    try:
        status = json.loads(raw)
        if not isinstance(status, dict):
            raise ValueError
    except ValueError:
        status = {"message": raw[:500].decode(errors="replace")}
    err = ApiError(code, str(status.get("reason") or _reason_for(code)), str(status.get("message") or ""),
                   method, path, status)
    try:
        err.retry_after = float(retry_after) if retry_after else None  # type: ignore[attr-defined]
    except ValueError:
        err.retry_after = None  # type: ignore[attr-defined]
    return err


def _reason_for(code: int) -> str:
    return {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            409: "Conflict", 410: "Gone", 415: "UnsupportedMediaType", 422: "Invalid",
            429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}.get(code, "Unknown")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
