"""systemd's notify protocol (sd_notify(3)) without libsystemd: READY/STATUS/
WATCHDOG/STOPPING datagrams to $NOTIFY_SOCKET, so a Type=notify unit knows
when the agent is really up and a hung agent is restarted by WatchdogSec=.

Outside systemd ($NOTIFY_SOCKET unset) everything here is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog

log = structlog.get_logger("nodeagent.sdnotify")

STATUS_PERIOD = 2.0  # STATUS= is re-sent at most this often, and only when it changed
FIRST_SYNC_POLL = 0.05


class NotifyError(ValueError):
    """A malformed $NOTIFY_SOCKET / $WATCHDOG_USEC or message field."""


def encode(fields: Mapping[str, str | int]) -> bytes:
    """`KEY=value` lines, as sd_notify sends them. Values are single lines:
    systemd splits the datagram at newlines, so one would forge a new field."""
    lines = []
    for key, value in fields.items():
        if not key or not key.replace("_", "").isalnum() or not key.isupper():
            raise NotifyError(f"invalid sd_notify field name {key!r}")
        text = str(value)
        if "\n" in text or "\0" in text:
            raise NotifyError(f"sd_notify field {key} must be one line, got {text!r}")
        lines.append(f"{key}={text}")
    return ("\n".join(lines) + "\n").encode()


def socket_address(value: str) -> str | bytes:
    """$NOTIFY_SOCKET as a sendto() address: `@name` is Linux's abstract
    namespace (a leading NUL byte); otherwise an absolute filesystem path."""
    if value.startswith("@"):
        if len(value) < 2:
            raise NotifyError("NOTIFY_SOCKET '@' names no abstract socket")
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise NotifyError(f"NOTIFY_SOCKET {value!r}: expected an absolute path or @abstract name "
                      "(vsock addresses are not supported)")


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC, as
    sd_watchdog_enabled(3) advises; None when the watchdog is not ours
    ($WATCHDOG_PID names another process) or not enabled."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and owner != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        raise NotifyError(f"WATCHDOG_USEC {usec!r} is not a number") from None
    if value <= 0:
        raise NotifyError(f"WATCHDOG_USEC {usec!r} must be positive")
    return value / 1_000_000 / 2


class Notifier:
    """One unbound datagram socket; a send never blocks the event loop
    (non-blocking socket, a full or vanished receiver only logs)."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._warned = False
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
        if not value:
            return cls(None)
        try:
            return cls(socket_address(value))
        except NotifyError as exc:
            log.error("not notifying systemd", error=str(exc))
            return cls(None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str | int) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.sendto(encode(fields), self.address)  # type: ignore[arg-type]
            return True
        except OSError as exc:  # systemd gone, queue full: the agent itself is fine
            if not self._warned:
                log.warning("sd_notify failed", socket=_printable(self.address), error=str(exc))
                self._warned = True
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _printable(address: str | bytes | None) -> str:
    return "@" + address[1:].decode(errors="replace") if isinstance(address, bytes) else str(address)


async def first_sync(sources_ready: Callable[[], bool], last_relist: Callable[[], float]) -> None:
    """Every pod source has reported once and the runtime was relisted after
    that: the agent then knows both what should run and what does."""
    while not sources_ready():
        await asyncio.sleep(FIRST_SYNC_POLL)
    mark = time.monotonic()
    while last_relist() <= mark:
        await asyncio.sleep(FIRST_SYNC_POLL)


class SystemdReporter:
    """READY=1 once, STATUS= when it changes, WATCHDOG=1 while healthy,
    STOPPING=1 at shutdown."""

    def __init__(self, notifier: Notifier, *, status: Callable[[], str], healthy: Callable[[], bool],
                 watchdog: float | None) -> None:
        self.notifier = notifier
        self.status = status
        self.healthy = healthy
        self.watchdog_period = watchdog
        self._last_status = ""
        self._watchdog_silent = False

    @classmethod
    def from_env(cls, *, status: Callable[[], str], healthy: Callable[[], bool]) -> SystemdReporter:
        notifier = Notifier.from_env()
        period = None
        if notifier.enabled:
            try:
                period = watchdog_interval(os.environ, os.getpid())
            except NotifyError as exc:
                log.error("systemd watchdog not served", error=str(exc))
        return cls(notifier, status=status, healthy=healthy, watchdog=period)

    async def watchdog(self) -> None:
        """Pings while healthy; silence lets systemd restart a stuck agent."""
        if not self.notifier.enabled or self.watchdog_period is None:
            return
        log.info("systemd watchdog enabled", ping_every=self.watchdog_period)
        while True:
            if self.healthy():
                if self._watchdog_silent:
                    log.info("healthy again; systemd watchdog pings resume")
                    self._watchdog_silent = False
                self.notifier.send(WATCHDOG=1)
            elif not self._watchdog_silent:
                log.error("unhealthy; systemd watchdog pings stop (systemd restarts the agent "
                          "after WatchdogSec)", status=self.status())
                self._watchdog_silent = True
            await asyncio.sleep(self.watchdog_period)

    async def report(self, ready: Callable[[], Awaitable[None]]) -> None:
        """READY=1 once `ready()` completes, then STATUS= whenever it changes."""
        if not self.notifier.enabled:
            return
        await ready()
        self._last_status = _one_line(self.status())
        self.notifier.send(READY=1, STATUS=self._last_status)
        log.info("told systemd the agent is ready", status=self._last_status)
        while True:
            await asyncio.sleep(STATUS_PERIOD)
            status = _one_line(self.status())
            if status != self._last_status:
                self._last_status = status
                self.notifier.send(STATUS=status)

    def stopping(self, status: str = "stopping; pods keep running") -> None:
        self.notifier.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        self.notifier.close()


def _one_line(text: str) -> str:
    return " ".join(text.split())
