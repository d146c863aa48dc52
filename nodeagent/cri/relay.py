"""A byte relay between a CRI client and the runtime, watching the HTTP/2
frames it passes on only to time each call.

Every byte goes to the other side first and is looked at afterwards, so the
relay adds one thread wake-up per direction and nothing is re-encoded. The
watcher decodes request headers (HPACK, one decoder per direction, as the
stream's state requires) for the method (`:path`) and response trailers for
`grpc-status`, and reports (method, seconds, code) when a call ends.

When the runtime cannot be reached, `answer_unavailable` speaks just enough
HTTP/2 to fail each call with UNAVAILABLE and a message, then sends GOAWAY so
the client's next call reconnects and finds the runtime if it is back.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator

import hpack
import structlog

log = structlog.get_logger("nodeagent.cri.debugsocket")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
BUFFER = 256 * 1024

# (method name, seconds, grpc status code name)
CallObserver = Callable[[str, float, str], None]

_CODES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
          5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
          9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
          13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED"}


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + \
        struct.pack(">I", stream & 0x7FFFFFFF) + payload


class FrameReader:
    """Splits one direction's bytes into (type, flags, stream, payload) frames."""

    def __init__(self, client_side: bool) -> None:
        self._buf = bytearray()
        self._preface = client_side

    def feed(self, data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
        self._buf += data
        if self._preface:
            if len(self._buf) < len(PREFACE):
                return
            if bytes(self._buf[:len(PREFACE)]) != PREFACE:
                raise ValueError("not an HTTP/2 client preface")
            del self._buf[:len(PREFACE)]
            self._preface = False
        while len(self._buf) >= 9:
            length = int.from_bytes(self._buf[:3], "big")
            if len(self._buf) < 9 + length:
                return
            kind, flags = self._buf[3], self._buf[4]
            stream = int.from_bytes(self._buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self._buf[9:9 + length])
            del self._buf[:9 + length]
            yield kind, flags, stream, payload


def header_block(flags: int, payload: bytes) -> bytes:
    """The HPACK fragment of a HEADERS frame, without padding and priority."""
    start, end = 0, len(payload)
    if flags & PADDED:
        start, end = 1, len(payload) - payload[0]
    if flags & PRIORITY_FLAG:
        start += 5
    return payload[start:end]


class _Headers:
    """Reassembles HEADERS + CONTINUATION and decodes every block, in order."""

    def __init__(self) -> None:
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 1 << 20
        self.decoder.max_header_list_size = 1 << 24
        self._pending: tuple[int, int, bytearray] | None = None

    def frame(self, kind: int, flags: int, stream: int,
              payload: bytes) -> tuple[int, int, dict[str, str]] | None:
        """(stream, flags of the HEADERS frame, headers) when a block is complete."""
        if kind == HEADERS:
            self._pending = (stream, flags, bytearray(header_block(flags, payload)))
        elif kind == CONTINUATION and self._pending is not None:
            self._pending[2].extend(payload)
        else:
            return None
        if not flags & END_HEADERS:
            return None
        stream, first_flags, block = self._pending
        self._pending = None
        headers = {_text(k): _text(v) for k, v in self.decoder.decode(bytes(block), raw=True)}
        return stream, first_flags, headers


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


class CallWatch:
    """Times the calls on one connection from the frames both ways."""

    def __init__(self, observe: CallObserver | None) -> None:
        self.observe = observe
        self._client = FrameReader(client_side=True)
        self._server = FrameReader(client_side=False)
        self._client_headers = _Headers()
        self._server_headers = _Headers()
        self._calls: dict[int, tuple[str, float]] = {}
        # The answer can be read before the request is looked at (the two
        # directions run on their own threads): its end waits here.
        self._ended: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self.broken = observe is None

    def from_client(self, data: bytes, received: float) -> None:
        """Bytes the client sent, `received` (monotonic) when they were read."""
        if self.broken:
            return
        try:
            for kind, flags, stream, payload in self._client.feed(data):
                if kind == RST_STREAM:
                    self._end(stream, "CANCELLED", received)
                    continue
                done = self._client_headers.frame(kind, flags, stream, payload)
                if done is not None:
                    self._start(done[0], done[2].get(":path", "").rsplit("/", 1)[-1], received)
        except Exception as exc:  # noqa: BLE001 - watching must never break the relay
            self._give_up(exc)

    def from_server(self, data: bytes, received: float) -> None:
        if self.broken:
            return
        try:
            for kind, flags, stream, payload in self._server.feed(data):
                if kind == RST_STREAM:
                    self._end(stream, "CANCELLED", received)
                    continue
                done = self._server_headers.frame(kind, flags, stream, payload)
                if done is not None and done[1] & END_STREAM:
                    code = done[2].get("grpc-status", "2")
                    self._end(done[0], _CODES.get(int(code), code) if code.isdigit() else code,
                              received)
        except Exception as exc:  # noqa: BLE001
            self._give_up(exc)

    def _start(self, stream: int, method: str, at: float) -> None:
        with self._lock:
            ended = self._ended.pop(stream, None)
            if ended is None:
                self._calls[stream] = (method, at)
        if ended is not None and self.observe is not None:
            self.observe(method, ended[0] - at, ended[1])

    def _end(self, stream: int, code: str, at: float) -> None:
        with self._lock:
            call = self._calls.pop(stream, None)
            if call is None:
                self._ended[stream] = (at, code)
        if call is not None and self.observe is not None:
            self.observe(call[0], at - call[1], code)

    def _give_up(self, exc: Exception) -> None:
        self.broken = True
        log.warning("debug socket: cannot follow this connection's calls; relaying only",
                    error=repr(exc))


def pump(src: socket.socket, dst: socket.socket, watch: Callable[[bytes, float], None]) -> None:
    """src -> dst until either side closes; then both are shut down. Each read is
    passed on first and shown to `watch` (with the time it was read) after."""
    try:
        while True:
            data = src.recv(BUFFER)
            if not data:
                break
            received = time.monotonic()
            dst.sendall(data)
            watch(data, received)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def answer_unavailable(client: socket.socket, message: str, observe: CallObserver | None,
                       timeout: float = 5.0) -> None:
    """Fail the connection's calls with UNAVAILABLE + message, then GOAWAY."""
    client.settimeout(timeout)
    reader = FrameReader(client_side=True)
    headers = _Headers()
    encoder = hpack.Encoder()
    grpc_message = urllib.parse.quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
    try:
        client.sendall(frame(SETTINGS, 0, 0))
        last = 0
        while True:
            data = client.recv(BUFFER)
            if not data:
                return
            out = []
            for kind, flags, stream, payload in reader.feed(data):
                if kind == SETTINGS and not flags & ACK:
                    out.append(frame(SETTINGS, ACK, 0))
                elif kind == PING and not flags & ACK:
                    out.append(frame(PING, ACK, 0, payload))
                done = headers.frame(kind, flags, stream, payload)
                if done is not None:
                    last = max(last, done[0])
                    block = encoder.encode([(":status", "200"), ("content-type", "application/grpc"),
                                            ("grpc-status", "14"), ("grpc-message", grpc_message)],
                                           huffman=False)
                    out.append(frame(HEADERS, END_HEADERS | END_STREAM, done[0], block))
                    if observe is not None:
                        observe(done[2].get(":path", "").rsplit("/", 1)[-1], 0.0, "UNAVAILABLE")
            if last:
                out.append(frame(GOAWAY, 0, 0, struct.pack(">II", last, 0)))
            if out:
                client.sendall(b"".join(out))
            if last:
                return
    except (OSError, ValueError):
        return
    finally:
        try:
            client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        client.close()
