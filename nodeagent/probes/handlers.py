"""One probe or hook action carried out once: exec, httpGet, tcpSocket, grpc.

Each runs under an honest deadline: a probe that exceeds timeoutSeconds is a
failure at the timeout, not later. Results and messages are the kubelet's
(k/k pkg/probe/{exec,http,tcp,grpc}), so users see the texts they know.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import os
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nodeagent.api.types import Container, HTTPGetAction
from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError

# The Kubernetes minor whose semantics nodeagent follows (User-Agent kube-probe/<major.minor>).
KUBE_VERSION = "1.31"
USER_AGENT = f"kube-probe/{KUBE_VERSION}"
MAX_BODY = 10 * 1024  # maxRespBodyLength, and exec's maxReadLength
MAX_REDIRECTS = 10
MAX_HEADER_BYTES = 64 * 1024


class Result(enum.Enum):
    SUCCESS = "successful"
    FAILURE = "failed"
    UNKNOWN = "unknown"  # the probe could not be run: the result is thrown away


@dataclass(frozen=True)
class Outcome:
    result: Result
    message: str = ""
    warning: bool = False  # success with a note (redirect not followed): event ProbeWarning


SUCCESS = Outcome(Result.SUCCESS)


class PortError(ValueError):
    """A named port the container does not declare."""


def resolve_port(port: int | str, container: Container) -> int:
    """kubelet ResolveContainerPort: a number, or the name of a container port."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for p in container.ports:
        if p.name == port:
            return p.container_port
    raise PortError(f"couldn't find port: {port} in {container.name}")


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- exec -------------------------------------------------------------------

async def run_exec(cri: CRIClient, container_id: str, command: Sequence[str],
                   timeout: float) -> Outcome:
    """ExecSync with the probe's timeout: the runtime kills the command at the
    deadline (containerd SIGKILLs it), so nothing is left running. The call is
    cancelled from here only if the runtime overruns the deadline by 2 s, since
    a cancelled request would skip the runtime's kill."""
    shown = " ".join(command)
    try:
        # The runtime answers at the deadline; the margin only guards against a stuck runtime.
        async with asyncio.timeout(timeout + 2.0):
            result = await cri.exec_sync(container_id, command, timeout)
    except TimeoutError:
        return Outcome(Result.FAILURE, f'command "{shown}" timed out')
    except CRIError as exc:
        text = exc.details or str(exc)
        if ("timeout" in text and "exceeded" in text) or exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Outcome(Result.FAILURE, f'command "{shown}" timed out')
        return Outcome(Result.UNKNOWN, text)
    output = (result.stdout + result.stderr)[:MAX_BODY].decode(errors="replace")
    if result.exit_code == 0:
        return Outcome(Result.SUCCESS, output)
    return Outcome(Result.FAILURE, output or f'command "{shown}" exited with {result.exit_code}')


# -- tcpSocket ----------------------------------------------------------------

async def run_tcp(host: str, port: int, timeout: float) -> Outcome:
    """Success iff a TCP connection opens within the timeout."""
    address = join_host_port(host, port)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(asyncio.Protocol, host, port)
    except TimeoutError:
        return Outcome(Result.FAILURE, f"dial tcp {address}: i/o timeout")
    except OSError as exc:
        return Outcome(Result.FAILURE, f"dial tcp {address}: connect: {_os_error(exc)}")
    transport.close()
    return SUCCESS


def _os_error(exc: OSError) -> str:
    """Go's wording: "connection refused", "no route to host"."""
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc)).lower()


# -- httpGet ------------------------------------------------------------------

_INSECURE_TLS = ssl.create_default_context()
_INSECURE_TLS.check_hostname = False
_INSECURE_TLS.verify_mode = ssl.CERT_NONE


@dataclass(frozen=True)
class HTTPResponse:
    status: int
    headers: dict[str, str]  # lower-case names, last value wins
    body: bytes  # at most MAX_BODY


def build_url(action: HTTPGetAction, default_host: str, port: int) -> str:
    """kubelet NewRequestForHTTPGetAction: scheme://host:port/path."""
    host = action.host or default_host
    scheme = (action.scheme or "HTTP").lower()
    path = action.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{join_host_port(host, port)}{path}"


def request_headers(action: HTTPGetAction) -> list[tuple[str, str]]:
    """User headers plus the kubelet's defaults: User-Agent kube-probe/x.y and
    Accept */* unless given (an explicitly empty Accept removes it)."""
    given = {h.name.lower() for h in action.http_headers}
    headers = [(h.name, h.value) for h in action.http_headers
               if not (h.name.lower() == "accept" and h.value == "")]
    if "user-agent" not in given:
        headers.append(("User-Agent", USER_AGENT))
    if "accept" not in given:
        headers.append(("Accept", "*/*"))
    return headers


class _ResponseBuffer:
    """The response head plus at most MAX_BODY of the body."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.head_end = -1

    def feed(self, data: bytes) -> bool:
        """True once enough is read (the rest of the body is not)."""
        self.buf += data
        if self.head_end < 0:
            self.head_end = self.buf.find(b"\r\n\r\n")
            if self.head_end < 0:
                if len(self.buf) > MAX_HEADER_BYTES:
                    raise ProtocolError("response header too large")
                return False
        return len(self.buf) - self.head_end - 4 >= MAX_BODY

    def result(self) -> bytes:
        if self.head_end < 0:
            raise ProtocolError("EOF")
        return bytes(self.buf)


class _HTTPExchange(asyncio.Protocol):
    """HTTPS, or a host name to resolve: sends one request and collects the
    response through a transport."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self.request = request
        self.done = done
        self.response = _ResponseBuffer()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        try:
            if self.response.feed(data):
                self._finish(None)
        except ProtocolError as exc:
            self._finish(exc)

    def eof_received(self) -> bool:
        self._finish(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        # a truncated body is no failure
        self._finish(exc if self.response.head_end < 0 else None)

    def _finish(self, exc: Exception | None) -> None:
        if not self.done.done():
            try:
                if exc is not None:
                    raise exc
                self.done.set_result(self.response.result())
            except Exception as error:
                self.done.set_exception(error)
        if self.transport is not None:
            self.transport.close()


async def _plain_exchange(family: int, address: tuple[str, int], request: bytes) -> bytes:
    """Plain HTTP to an IP address (what almost every probe is): the loop's
    socket calls without a transport and protocol, ~13 % less CPU per
    exchange (docs/bench.md)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        await loop.sock_sendall(sock, request)
        response = _ResponseBuffer()
        while True:
            try:
                data = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                if response.head_end < 0:
                    raise
                break  # a truncated body is no failure
            if not data or response.feed(data):
                break
        return response.result()
    finally:
        sock.close()


class ProtocolError(ValueError):
    """The peer did not answer with an HTTP response."""


@functools.lru_cache(maxsize=1024)
def _prepare(url: str, headers: tuple[tuple[str, str], ...]) -> tuple[str, int, bool, int, bytes]:
    """host, port, TLS, the address family when host is an IP address (else
    0) and the request bytes: the same for every run of a probe."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    family = 0
    for candidate in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(candidate, host)
            family = candidate
            break
        except OSError:
            continue
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host_header = next((v for n, v in headers if n.lower() == "host"), parts.netloc)
    lines = [f"GET {target} HTTP/1.1", f"Host: {host_header}"]
    lines += [f"{n}: {v}" for n, v in headers if n.lower() not in ("host", "connection")]
    lines += ["Connection: close", "", ""]
    return host, port, tls, family, "\r\n".join(lines).encode("latin-1", errors="replace")


async def http_get(url: str, headers: list[tuple[str, str]]) -> HTTPResponse:
    """One HTTP/1.1 GET on a fresh connection (no keep-alive, no proxy, no
    compression, TLS unverified), reading at most MAX_BODY of the body."""
    host, port, tls, family, request = _prepare(url, tuple(headers))
    if family and not tls:
        raw = await _plain_exchange(family, (host, port), request)
    else:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda: _HTTPExchange(request, done), host, port,
            ssl=_INSECURE_TLS if tls else None, server_hostname="" if tls else None)
        try:
            raw = await done
        finally:
            transport.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ProtocolError(f"malformed HTTP response {status_line[:100]!r}")
    response_headers = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            response_headers[name.strip().lower()] = value.strip()
    return HTTPResponse(int(fields[1]), response_headers, body[:MAX_BODY])


async def http_follow(url: str, headers: list[tuple[str, str]]) -> HTTPResponse:
    """GET with Go's redirect policy as the prober sets it: follow at most 10
    redirects, and only to the same hostname; otherwise return the 3xx itself."""
    first_host = urlsplit(url).hostname
    for _ in range(MAX_REDIRECTS + 1):
        response = await http_get(url, headers)
        location = response.headers.get("location")
        if not 300 <= response.status < 400 or response.status == 304 or not location:
            return response
        target = urljoin(url, location)
        if urlsplit(target).hostname != first_host:
            return response
        url = target
    raise RedirectError("stopped after 10 redirects")


class RedirectError(Exception):
    pass


async def run_http(url: str, headers: list[tuple[str, str]], timeout: float) -> Outcome:
    """kubelet http prober: 200-399 success (a 3xx not followed is a warning),
    anything else or any transport error (timeout included) is a failure."""
    try:
        async with asyncio.timeout(timeout):
            response = await http_follow(url, headers)
    except TimeoutError:
        return Outcome(Result.FAILURE, f'Get "{url}": context deadline exceeded '
                                       "(Client.Timeout exceeded while awaiting headers)")
    except RedirectError as exc:
        return Outcome(Result.FAILURE, f'Get "{url}": {exc}')
    except (OSError, ValueError) as exc:
        return Outcome(Result.FAILURE, f'Get "{url}": {_transport_error(exc)}')
    if 200 <= response.status < 400:
        if response.status >= 300:
            return Outcome(Result.SUCCESS, "Probe terminated redirects, Response body: "
                           + response.body.decode(errors="replace"), warning=True)
        return Outcome(Result.SUCCESS, response.body.decode(errors="replace"))
    return Outcome(Result.FAILURE, f"HTTP probe failed with statuscode: {response.status}")


def _transport_error(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"dial tcp: connect: {_os_error(exc)}"
    return str(exc)


# -- grpc -----------------------------------------------------------------------

async def run_grpc(host: str, port: int, service: str, timeout: float) -> Outcome:
    """grpc.health.v1.Health/Check over plaintext; SERVING is success."""
    target = join_host_port(host, port)
    options = [("grpc.primary_user_agent", USER_AGENT), ("grpc.enable_http_proxy", 0)]
    channel = grpc.aio.insecure_channel(target, options=options)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            async with asyncio.timeout(timeout + 0.5):  # grpc's deadline answers first
                response = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                            timeout=timeout)
        except TimeoutError:
            return Outcome(Result.FAILURE, f"timeout: health rpc did not complete within {timeout:g}s")
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return Outcome(Result.FAILURE, "this server does not implement the grpc health "
                               "protocol (grpc.health.v1.Health): " + (exc.details() or ""))
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Outcome(Result.FAILURE,
                               f"timeout: health rpc did not complete within {timeout:g}s")
            if code == grpc.StatusCode.UNAVAILABLE:
                return Outcome(Result.FAILURE, f"failed to connect service {target!r} within "
                               f"{timeout:g}s: {exc.details() or ''}")
            return Outcome(Result.FAILURE, f"health rpc probe failed: {code.name}: {exc.details() or ''}")
    finally:
        await channel.close()
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return Outcome(Result.FAILURE, f'service unhealthy (responded with "{name}")')
    return SUCCESS
