"""The kubelet-compatible local HTTP API: healthz port and read-only port.

Tools and unit files written for the kubelet poll `127.0.0.1:10248/healthz`
and (where enabled) read `:10255/pods`; serving the same paths, status codes
and bodies lets them keep working unchanged (k/k pkg/kubelet/server/server.go,
k8s.io/apiserver healthz).

Listeners (kubelet semantics: port 0 disables a listener):
  * secure (`secure`, the kubelet's :10250): TLS and authentication
    (server/auth.py), the read-only handlers plus /containerLogs.
  * healthz (`healthz_port`, default 10248): `GET /healthz`, `GET /healthz/<check>`.
  * read-only (`read_only_port`, default 10255; the kubelet defaults it to 0):
    `GET /healthz`, `GET /healthz/<check>`, `GET /pods` (a v1 PodList),
    what `routes` add (the agent adds /metrics*, /stats/summary: server/metrics.py),
    and the nodeagent-specific `GET /nodeagent/manifests`: the JSON `extra()`
    returns (the agent passes the static pod source's `StaticSnapshot.report()`:
    invalid manifests and warnings, which the kubelet only logs); 404 when no
    `extra` is given; `GET /nodeagent/node`: the JSON `node()` returns
    (capacity, allocatable, cgroup facts, pressure conditions).
    Unknown paths: 404; other methods on a known path: 405.

`/healthz` follows the apiserver healthz handler: "ok" when every check
passes; `?verbose` lists `[+]name ok` lines then `healthz check passed`; on
failure always the list with `[-]name failed: reason withheld` and
`healthz check failed` (HTTP 500). The reason is withheld as upstream does,
since the port is unauthenticated: it is logged (once per change of the
failing set) and served by `/healthz/<name>` (`internal server error: <msg>`).
A built-in `ping` check comes first, as in the kubelet. `?exclude=<name>`
skips a check.

For tests and socket activation, `healthz_socket` / `read_only_socket` take an
already bound socket, which replaces address+port for that listener (bind one
to port 0 to get a free port; `bound_ports` then tells which).
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import structlog
from aiohttp import web


DEFAULT_HEALTHZ_PORT = 10248
DEFAULT_READ_ONLY_PORT = 10255
TEXT = "text/plain"
JSON = "application/json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class HealthCheck:
    """One named healthz check result; `message` says why it failed."""
    name: str
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class BoundPorts:
    """Actual listening ports; None for a disabled listener."""
    healthz: int | None = None
    read_only: int | None = None
    secure: int | None = None


@dataclass(frozen=True)
class SecureListener:
    """The kubelet API (:10250): TLS, an authenticating middleware, and the
    read-only handlers plus `routes` (containerLogs)."""
    port: int
    ssl_context: ssl.SSLContext
    middleware: Any
    address: str = "127.0.0.1"
    routes: Sequence[Callable[[web.Application], None]] = ()
    sock: socket.socket | None = None


class ServerError(Exception):
    """The local API could not be served."""


class ListenError(ServerError):
    """A listener could not bind (port in use, bad address, no permission)."""


@dataclass(frozen=True)
class _HealthReport:
    lines: list[str]
    failed: list[HealthCheck]


class LocalServer:
    """Serves the healthz and read-only listeners until `stop()`."""

    def __init__(self, *, address: str = "127.0.0.1",
                 healthz_port: int = DEFAULT_HEALTHZ_PORT,
                 read_only_port: int = DEFAULT_READ_ONLY_PORT,
                 pods: Callable[[], list[dict[str, Any]]],
                 checks: Callable[[], list[HealthCheck]],
                 extra: Callable[[], dict[str, Any]] | None = None,
                 node: Callable[[], dict[str, Any]] | None = None,
                 healthz_address: str | None = None,
                 routes: Sequence[Callable[[web.Application], None]] = (),
                 healthz_socket: socket.socket | None = None,
                 read_only_socket: socket.socket | None = None,
                 secure: SecureListener | None = None) -> None:
        for what, port in (("healthz_port", healthz_port), ("read_only_port", read_only_port)):
            if not 0 <= port <= 65535:
                raise ValueError(f"{what} must be between 0 and 65535, not {port}")
        self._address = address
        self._healthz_address = healthz_address or address
        self._healthz_port = healthz_port
        self._read_only_port = read_only_port
        self._healthz_socket = healthz_socket
        self._read_only_socket = read_only_socket
        self._pods = pods
        self._checks = checks
        self._extra = extra
        self._node = node
        self._routes = list(routes)  # more handlers (metrics, stats) for the API listeners
        self._secure = secure
        self._runners: dict[str, web.AppRunner] = {}
        self._bound = BoundPorts()
        self._last_failing: tuple[str, ...] = ()
        self._pods_body: tuple[list[dict[str, Any]], bytes] | None = None
        self._pod_json: dict[int, tuple[dict[str, Any], bytes]] = {}  # id(item) -> (item, its JSON)
        self._log = structlog.get_logger("nodeagent.server.local")

    @property
    def bound_ports(self) -> BoundPorts:
        return self._bound

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the enabled listeners; raises `ListenError` (and binds nothing) on failure."""
        if self._runners:
            return
        try:
            healthz = await self._listen("healthz", self._healthz_app(), self._healthz_address,
                                         self._healthz_port, self._healthz_socket)
            read_only = await self._listen("read-only", self._read_only_app(), self._address,
                                           self._read_only_port, self._read_only_socket)
            secure = None
            if self._secure is not None:
                s = self._secure
                secure = await self._listen("secure", self._secure_app(s), s.address, s.port,
                                            s.sock, s.ssl_context)
        except BaseException:
            await self.stop()
            raise
        self._bound = BoundPorts(healthz=healthz, read_only=read_only, secure=secure)

    async def stop(self) -> None:
        """Close the listeners and in-flight connections. Idempotent."""
        runners, self._runners = self._runners, {}
        for runner in runners.values():
            await runner.cleanup()
        self._bound = BoundPorts()

    async def _listen(self, name: str, app: web.Application, address: str, port: int,
                      sock: socket.socket | None,
                      ssl_context: ssl.SSLContext | None = None) -> int | None:
        if sock is None and port == 0:
            self._log.info("local API listener disabled", listener=name)
            return None
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners[name] = runner
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(runner, sock, ssl_context=ssl_context)
            where = "%s:%s" % sock.getsockname()[:2]
        else:
            site = web.TCPSite(runner, address, port, reuse_address=True, ssl_context=ssl_context)
            where = f"{address}:{port}"
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(f"cannot listen on {where} ({name}): {exc.strerror or exc}") from exc
        bound = int(runner.addresses[0][1])
        self._log.info("local API listening", listener=name, address=where, port=bound)
        return bound

    # -- applications -------------------------------------------------------------

    def _healthz_app(self, middlewares: Sequence[Any] = ()) -> web.Application:
        app = web.Application(middlewares=[self._guard, *middlewares])
        app.router.add_get("/healthz", self._handle_healthz)
        app.router.add_get("/healthz/{check}", self._handle_check)
        return app

    def _read_only_app(self, middlewares: Sequence[Any] = ()) -> web.Application:
        app = self._healthz_app(middlewares)
        app.router.add_get("/pods", self._handle_pods)
        app.router.add_get("/nodeagent/manifests", self._handle_manifests)
        app.router.add_get("/nodeagent/node", self._handle_node)
        for add in self._routes:
            add(app)
        return app

    def _secure_app(self, listener: SecureListener) -> web.Application:
        app = self._read_only_app([listener.middleware])
        for add in listener.routes:
            add(app)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A failing handler answers 500 and is logged; the server keeps serving."""
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return web.Response(status=404, text="404 page not found\n", content_type=TEXT)
        except web.HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - the point is to survive anything
            self._log.exception("local API handler failed", path=request.path,
                                method=request.method, error=str(exc))
            return web.Response(status=500, text="internal server error\n", content_type=TEXT)

    # -- handlers -------------------------------------------------------------------

    def _run_checks(self) -> list[HealthCheck]:
        return [HealthCheck("ping", True), *self._checks()]

    def _report(self, checks: list[HealthCheck], excluded: set[str]) -> _HealthReport:
        lines: list[str] = []
        failed: list[HealthCheck] = []
        for check in checks:
            if check.name in excluded:
                excluded.discard(check.name)
                lines.append(f"[+]{check.name} excluded: ok")
            elif check.ok:
                lines.append(f"[+]{check.name} ok")
            else:
                lines.append(f"[-]{check.name} failed: reason withheld")
                failed.append(check)
        if excluded:
            names = ", ".join(f'"{n}"' for n in sorted(excluded))
            lines.append(f"warn: some health checks cannot be excluded: no matches for {names}")
        return _HealthReport(lines, failed)

    def _note_failing(self, failed: list[HealthCheck]) -> None:
        """Log the failing set when it changes, not on every probe."""
        names = tuple(c.name for c in failed)
        if names == self._last_failing:
            return
        self._last_failing = names
        if failed:
            self._log.warning("healthz check failed", failing=",".join(names),
                              reasons={c.name: c.message for c in failed})
        else:
            self._log.info("healthz checks pass again")

    async def _handle_healthz(self, request: web.Request) -> web.Response:
        excluded = {n for value in request.query.getall("exclude", []) for n in value.split(",")
                    if n}
        report = self._report(self._run_checks(), excluded)
        self._note_failing(report.failed)
        if report.failed:
            body = "".join(f"{line}\n" for line in report.lines) + "healthz check failed\n"
            return web.Response(status=500, text=body, content_type=TEXT)
        if "verbose" not in request.query:
            return web.Response(text="ok", content_type=TEXT)
        body = "".join(f"{line}\n" for line in report.lines) + "healthz check passed\n"
        return web.Response(text=body, content_type=TEXT)

    async def _handle_check(self, request: web.Request) -> web.Response:
        name = request.match_info["check"]
        for check in self._run_checks():
            if check.name == name:
                if check.ok:
                    return web.Response(text="ok", content_type=TEXT)
                return web.Response(status=500, text=f"internal server error: {check.message}\n",
                                    content_type=TEXT)
        raise web.HTTPNotFound()

    async def _handle_pods(self, request: web.Request) -> web.Response:
        items = self._pods()
        if self._pods_body is None or self._pods_body[0] is not items:
            # The provider returns the same list while nothing changed, and the
            # same object for a pod that did not change: each is serialised once.
            known, self._pod_json = self._pod_json, {}
            parts = []
            for item in items:
                cached = known.get(id(item))
                if cached is None or cached[0] is not item:
                    cached = (item, json.dumps(item, separators=(",", ":")).encode())
                self._pod_json[id(item)] = cached
                parts.append(cached[1])
            body = b'{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[' + b",".join(parts) + b"]}"
            self._pods_body = (items, body)
        return web.Response(body=self._pods_body[1], content_type="application/json")

    async def _handle_node(self, request: web.Request) -> web.Response:
        if self._node is None:
            raise web.HTTPNotFound()
        return _json(self._node())

    async def _handle_manifests(self, request: web.Request) -> web.Response:
        if self._extra is None:
            raise web.HTTPNotFound()
        return _json(self._extra())


def _json(body: Any) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), content_type=JSON)
