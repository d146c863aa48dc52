"""The CRI debug socket: crictl pointed at the agent sees the runtime unchanged.

A unix socket (default /run/nodeagent/cri.sock) whose connections are
relayed byte for byte to the runtime's socket (relay.py): no message is
decoded or re-encoded, so fields this proto does not know (a newer crictl or
runtime) survive, methods newer than our proto and streaming calls work, and
Exec/Attach/PortForward answer the runtime's streaming URL as they do direct.
The relay follows the HTTP/2 frames only to count and time each call.
When the image service is a different socket than the runtime, a call-level
gRPC forwarder (raw bytes too: generic handlers without serializers) routes
each call by its service instead.

When the runtime is down a call fails with UNAVAILABLE and a message that
says so; the socket itself keeps serving.

The path is created safely: the parent dir must be owned by us and not
writable by others; the socket is bound in a private (0700) dir, given mode
0660 owner root, and only then renamed into place, so it is never reachable
with looser permissions. A lock file next to it (flock, held while serving)
plus a connect test keep a second agent from taking over a socket in use.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import structlog

from nodeagent.cri import relay
from nodeagent.cri.client import MAX_MSG_SIZE, socket_path
from nodeagent.cri.pb import api_pb2 as pb

log = structlog.get_logger("nodeagent.cri.debugsocket")

SERVICES = ("runtime.v1.RuntimeService", "runtime.v1.ImageService")
DEFAULT_PATH = "/run/nodeagent/cri.sock"
SOCKET_MODE = 0o660
WORKERS = 16  # concurrent calls (a GetContainerEvents stream holds one)

# (method name, seconds, grpc status code name); called on the server's threads
DebugObserver = Callable[[str, float, str], None]


class DebugSocketError(Exception):
    """The debug socket could not be served (in use, unsafe path, bind failure)."""


def _streaming() -> dict[str, tuple[bool, bool]]:
    """Method path -> (client streaming, server streaming), from the proto here."""
    out = {}
    for service in SERVICES:
        desc = pb.DESCRIPTOR.services_by_name[service.split(".")[-1]]
        for m in desc.methods:
            out[f"/{service}/{m.name}"] = (m.client_streaming, m.server_streaming)
    return out


def _is_listening(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _timeout(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline; None when it set none (grpc reports ~forever)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 1e8 else remaining


class _Forwarder(grpc.GenericRpcHandler):
    """Builds a pass-through handler for any method of the two CRI services.

    Synchronous gRPC on its own threads, not the agent's event loop: the C
    core does the I/O without the GIL, which halves the added latency
    compared with grpc.aio, and a busy agent loop never delays crictl."""

    def __init__(self, channels: dict[str, tuple[grpc.Channel, str]],
                 observe: DebugObserver | None) -> None:
        self._channels = channels
        self._observe = observe
        self._kinds = _streaming()
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._lock = threading.Lock()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        handler = self._handlers.get(method)
        if handler is not None:
            return handler
        service = method.split("/")[1] if method.count("/") == 2 else ""
        if service not in self._channels:
            return None  # grpc answers UNIMPLEMENTED
        channel, endpoint = self._channels[service]
        client_stream, server_stream = self._kinds.get(method, (False, False))
        name = method.rsplit("/", 1)[-1]
        if client_stream and server_stream:
            handler = grpc.stream_stream_rpc_method_handler(
                self._stream_response(channel.stream_stream(method), name, endpoint))
        elif client_stream:
            handler = grpc.stream_unary_rpc_method_handler(
                self._unary_response(channel.stream_unary(method), name, endpoint))
        elif server_stream:
            handler = grpc.unary_stream_rpc_method_handler(
                self._stream_response(channel.unary_stream(method), name, endpoint))
        else:
            handler = grpc.unary_unary_rpc_method_handler(
                self._unary_response(channel.unary_unary(method), name, endpoint))
        with self._lock:
            self._handlers[method] = handler
        return handler

    # Without serializers the multicallables take and return bytes as they are;
    # `request` is the request's bytes, or an iterator of them when the client
    # streams.

    def _unary_response(self, call: Any, name: str, endpoint: str) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> bytes:
            start = time.monotonic()
            try:
                response = call(request, timeout=_timeout(context))
            except grpc.RpcError as exc:
                self._fail(context, exc, name, endpoint, start)
            self._done(name, start, "OK")
            return response
        return handle

    def _stream_response(self, call: Any, name: str, endpoint: str) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
            start = time.monotonic()
            responses = call(request, timeout=_timeout(context))
            context.add_callback(responses.cancel)  # the client went away: stop upstream
            try:
                yield from responses
            except grpc.RpcError as exc:
                self._fail(context, exc, name, endpoint, start)
            self._done(name, start, "OK")
        return handle

    def _fail(self, context: grpc.ServicerContext, exc: Any, name: str, endpoint: str,
              start: float) -> None:
        code = exc.code()
        self._done(name, start, code.name)
        details = exc.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            details = (f"nodeagent debug socket: the container runtime at {endpoint} is "
                       f"unavailable: {details}")
        trailing = exc.trailing_metadata()
        if trailing:
            context.set_trailing_metadata(trailing)
        context.abort(code, details)

    def _done(self, name: str, start: float, code: str) -> None:
        if self._observe is not None:
            self._observe(name, time.monotonic() - start, code)


class DebugSocket:
    """Serves the forwarding gRPC server on `path` until `stop()`."""

    def __init__(self, path: str, runtime_endpoint: str, image_endpoint: str | None = None, *,
                 observe: DebugObserver | None = None) -> None:
        self.path = Path(path)
        self.runtime_endpoint = runtime_endpoint
        self.image_endpoint = image_endpoint or runtime_endpoint
        self._observe = observe
        self._server: grpc.Server | None = None
        self._channels: list[grpc.Channel] = []
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    async def start(self) -> None:
        """Take the path and serve; `DebugSocketError` says why not (nothing is left behind)."""
        try:
            self._check_parent()
            self._take_lock()
            self._clear_stale()
            await self._serve()
        except BaseException:
            await self.stop()
            raise
        log.info("CRI debug socket serving", path=str(self.path), runtime=self.runtime_endpoint)

    def _check_parent(self) -> None:
        parent = self.path.parent
        try:
            parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            st = os.lstat(parent)
        except OSError as exc:
            raise DebugSocketError(f"cannot create {parent}: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise DebugSocketError(f"{parent} is not a directory")
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise DebugSocketError(
                f"{parent} must be owned by uid {os.geteuid()} and not writable by group or "
                f"others (it is uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})")

    def _take_lock(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        while True:
            try:
                fd = os.open(self.lock_path, flags, 0o600)
            except OSError as exc:
                raise DebugSocketError(f"cannot open {self.lock_path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DebugSocketError(
                    f"{self.path} is in use by another nodeagent (lock {self.lock_path} is held)"
                ) from None
            # The holder may have removed the file between our open and flock.
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)

    def _clear_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise DebugSocketError(f"{self.path} exists and is not a socket; not replacing it")
        if _is_listening(str(self.path)):
            raise DebugSocketError(f"{self.path} is in use: something is listening on it")
        os.unlink(self.path)  # a stale socket of a crashed agent

    async def _serve(self) -> None:
        runtime_path = socket_path(self.runtime_endpoint)
        relay = socket_path(self.image_endpoint) == runtime_path
        private = tempfile.mkdtemp(prefix=".cri-sock-", dir=self.path.parent)
        try:
            tmp = os.path.join(private, "s")
            if relay:
                self._listener = self._bind(tmp)
            else:
                self._start_forwarder(tmp)
            os.chmod(tmp, SOCKET_MODE)
            os.chown(tmp, 0, 0) if os.geteuid() == 0 else None
            os.rename(tmp, self.path)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
        except OSError as exc:
            raise DebugSocketError(f"cannot create {self.path}: {exc.strerror or exc}") from None
        finally:
            shutil.rmtree(private, ignore_errors=True)
        if relay:
            thread = threading.Thread(target=self._accept, args=(self._listener, runtime_path),
                                      name="cri-debug-accept", daemon=True)
            thread.start()

    @staticmethod
    def _bind(path: str) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
        return listener

    def _accept(self, listener: socket.socket, runtime_path: str) -> None:
        """One relay per client connection (crictl opens one per command)."""
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._relay, args=(client, runtime_path),
                             name="cri-debug-relay", daemon=True).start()

    def _relay(self, client: socket.socket, runtime_path: str) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(runtime_path)
        except OSError as exc:
            upstream.close()
            message = (f"nodeagent debug socket: the container runtime at {self.runtime_endpoint} "
                       f"is unavailable: {exc.strerror or exc}")
            relay.answer_unavailable(client, message, self._observe)
            return
        with self._conn_lock:
            self._conns.update((client, upstream))
        watch = relay.CallWatch(self._observe)
        back = threading.Thread(target=relay.pump, args=(upstream, client, watch.from_server),
                                name="cri-debug-relay", daemon=True)
        back.start()
        relay.pump(client, upstream, watch.from_client)
        back.join()
        with self._conn_lock:
            self._conns.difference_update((client, upstream))
        client.close()
        upstream.close()

    def _start_forwarder(self, tmp: str) -> None:
        """Runtime and image service on different sockets: a call-level forwarder
        routes each call by its service (a byte relay could not)."""
        options = [("grpc.max_receive_message_length", MAX_MSG_SIZE),
                   ("grpc.max_send_message_length", MAX_MSG_SIZE),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 1000),
                   ("grpc.min_reconnect_backoff_ms", 100)]
        by_service: dict[str, tuple[grpc.Channel, str]] = {}
        paths: dict[str, grpc.Channel] = {}
        for service, endpoint in zip(SERVICES, (self.runtime_endpoint, self.image_endpoint)):
            path = socket_path(endpoint)
            if path not in paths:
                paths[path] = grpc.insecure_channel(f"unix://{path}", options=options)
                self._channels.append(paths[path])
            by_service[service] = (paths[path], endpoint)
        server = grpc.server(ThreadPoolExecutor(WORKERS, thread_name_prefix="cri-debug"),
                             options=options[:2])
        server.add_generic_rpc_handlers([_Forwarder(by_service, self._observe)])
        if server.add_insecure_port(f"unix:{tmp}") == 0:
            raise DebugSocketError(f"cannot bind a unix socket at {tmp}")
        server.start()
        self._server = server

    async def stop(self) -> None:
        """Stop serving, remove our socket (not someone else's) and the lock. Idempotent."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._conn_lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(lambda: server.stop(0.5).wait())
        for channel in self._channels:
            channel.close()
        self._channels = []
        if self._inode is not None:
            try:
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            self._inode = None
        if self._lock_fd is not None:
            try:
                os.unlink(self.lock_path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            os.close(self._lock_fd)
            self._lock_fd = None
