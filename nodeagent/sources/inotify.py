"""A small ctypes binding to Linux inotify, shaped for asyncio.

The static pod source needs to see a manifest edit within a second instead of
waiting for the 20 s rescan; inotify gives that without a dependency. Only one
directory is watched (not recursive), the way the kubelet watches
`staticPodPath`.

    async with DirectoryWatcher(path) as watcher:
        async for batch in watcher.changes():
            ...  # batch.names: the entries that changed

Events that arrive within `settle` seconds of each other form one batch, so an
editor's write-to-temp + rename is a single update rather than two. Once no
file in the batch is being written, only `QUIET` seconds without events are
waited for, and none at all when every file's last event completed it (closed
a write or moved it into place): a writer that renames a finished manifest
into place gives no reason to wait. A removal still waits `QUIET`, since an
editor that moves the old file aside writes the new one right after. Names the
caller does not care about (`wanted`: the static source's dotfiles) are
dropped, so an editor's temporary file neither delays nor fills a batch.
`changes()` ends when the watched directory itself is deleted, moved or
unmounted (the caller re-opens a watcher on the path, or waits for it to
reappear).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import structlog

from nodeagent.waiting import wait_event

# <sys/inotify.h>; the values are the same on every Linux architecture.
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

WATCH_MASK = (IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO
              | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB)
# Any of these means the watch on the directory is gone for good.
GONE_MASK = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED

EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
READ_SIZE = 64 * 1024  # whole events only; the kernel never splits one across reads
DEFAULT_SETTLE = 0.01  # an editor's write + rename lands within this; larger only delays pods
QUIET = 0.002  # the settle time once no file in the batch is being written
# A file rewritten non-stop must still produce batches, so settling stops here.
MAX_SETTLE = 1.0
# The events after which a file may still be written to, those that complete it,
# and those that take it away.
WRITE_OPEN = IN_CREATE | IN_MODIFY
WRITE_DONE = IN_CLOSE_WRITE | IN_MOVED_TO
REMOVED = IN_MOVED_FROM | IN_DELETE


class WatchError(OSError):
    """inotify could not watch the directory."""


class DirectoryNotFound(WatchError):
    """The directory does not exist (yet): retry later."""


class NotADirectory(WatchError):
    """The path exists but is not a directory."""


@dataclass(frozen=True)
class InotifyEvent:
    wd: int
    mask: int
    cookie: int
    name: str


@dataclass(frozen=True)
class ChangeBatch:
    """Names (relative to the watched directory) that changed together.

    `overflow` means the kernel dropped events: treat every entry as changed.
    `gone` means the directory itself was deleted/moved; it is the last batch.
    """
    names: frozenset[str] = frozenset()
    overflow: bool = False
    gone: bool = False


def parse_events(buf: bytes) -> list[InotifyEvent]:
    """Split one read() of an inotify fd into events."""
    events: list[InotifyEvent] = []
    offset = 0
    while offset + EVENT_HEADER.size <= len(buf):
        wd, mask, cookie, length = EVENT_HEADER.unpack_from(buf, offset)
        offset += EVENT_HEADER.size
        raw = buf[offset:offset + length]
        offset += length
        # The name is NUL-padded to an alignment boundary.
        name = os.fsdecode(raw.split(b"\0", 1)[0])
        events.append(InotifyEvent(wd, mask, cookie, name))
    return events


@dataclass
class _Pending:
    names: set[str] = field(default_factory=set)
    writing: set[str] = field(default_factory=set)  # names whose write may not be finished
    removed: set[str] = field(default_factory=set)  # names whose last event moved or deleted them
    overflow: bool = False
    gone: bool = False

    def any(self) -> bool:
        return bool(self.names) or self.overflow or self.gone

    def take(self) -> ChangeBatch:
        batch = ChangeBatch(frozenset(self.names), self.overflow, self.gone)
        self.names.clear()
        self.writing.clear()
        self.removed.clear()
        self.overflow = False
        return batch


class DirectoryWatcher:
    """Watches one directory; `changes()` yields coalesced `ChangeBatch`es."""

    def __init__(self, path: Path | str, *, settle: float = DEFAULT_SETTLE,
                 wanted: Callable[[str], bool] | None = None) -> None:
        self._path = Path(path)
        self._settle = settle
        self._wanted = wanted
        self._fd = -1
        self._wd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = _Pending()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._log = structlog.get_logger("nodeagent.sources.inotify").bind(path=str(self._path))

    @property
    def path(self) -> Path:
        return self._path

    def open(self) -> None:
        """Create the inotify instance and the watch; raises `WatchError`.

        Quick syscalls only, so it is fine to call on the event loop.
        """
        if self._fd >= 0:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise WatchError(err, f"inotify_init1: {os.strerror(err)}")
        wd = libc.inotify_add_watch(fd, os.fsencode(self._path), WATCH_MASK | IN_ONLYDIR)
        if wd < 0:
            err = ctypes.get_errno()
            os.close(fd)
            path = str(self._path)
            if err == errno.ENOENT:
                raise DirectoryNotFound(err, f"directory {path} does not exist")
            if err == errno.ENOTDIR:
                raise NotADirectory(err, f"{path} is not a directory")
            raise WatchError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
        self._fd, self._wd = fd, wd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._on_readable)

    def close(self) -> None:
        """Stop watching; pending `changes()` iterations end. Idempotent."""
        self._closed = True
        if self._fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            os.close(self._fd)  # closing the fd drops the watch too
            self._fd = -1
        self._wakeup.set()

    async def __aenter__(self) -> DirectoryWatcher:
        self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    def _on_readable(self) -> None:
        """Drain the fd (non-blocking) into the pending batch."""
        while self._fd >= 0:
            try:
                buf = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                self._log.error("inotify read failed", error=str(exc))
                self._pending.gone = True
                break
            if not buf:
                break
            for event in parse_events(buf):
                self._absorb(event)
        if self._pending.gone and self._fd >= 0 and self._loop is not None:
            # Nothing more will come; stop polling a dead watch.
            self._loop.remove_reader(self._fd)
        if self._pending.any():
            self._wakeup.set()

    def _absorb(self, event: InotifyEvent) -> None:
        if event.mask & IN_Q_OVERFLOW:
            self._log.warning("inotify queue overflowed, events were lost")
            self._pending.overflow = True
        if event.wd == self._wd and event.mask & GONE_MASK:
            self._pending.gone = True
        if event.name and (self._wanted is None or self._wanted(event.name)):
            pending, name = self._pending, event.name
            pending.names.add(name)
            if event.mask & REMOVED:
                pending.writing.discard(name)
                pending.removed.add(name)
            elif event.mask & WRITE_DONE:
                pending.writing.discard(name)
                pending.removed.discard(name)
            elif event.mask & WRITE_OPEN and not event.mask & IN_ISDIR:
                pending.writing.add(name)
                pending.removed.discard(name)

    async def changes(self) -> AsyncIterator[ChangeBatch]:
        """Yield batches until the directory goes away or `close()` is called."""
        if self._fd < 0 and not self._closed:
            self.open()
        loop = asyncio.get_running_loop()
        while not self._closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._closed:
                return
            if not self._pending.any():
                continue
            # Let the burst finish: wait until `settle` passes without events.
            deadline = loop.time() + MAX_SETTLE
            while not self._pending.gone and not self._closed:
                pending = self._pending
                if pending.writing:
                    settle = self._settle
                elif pending.removed or pending.overflow:
                    settle = min(self._settle, QUIET)
                else:
                    break  # every file is complete: nothing to wait for
                remaining = min(settle, deadline - loop.time())
                if remaining <= 0:
                    break
                if not await wait_event(self._wakeup, remaining):
                    break
                self._wakeup.clear()
            batch = self._pending.take()
            yield batch
            if batch.gone:
                self.close()
                return
