"""Reading CRI container log files (kubectl logs), across rotation.

A CRI log line is `<RFC3339Nano> <stdout|stderr> <P|F> <content>\\n`; P chunks
of a long line end with an F chunk. A container's log is its current file
(`N.log`) preceded by the files rotation left (`N.log.<timestamp>`, older ones
gzipped), oldest first. The options are the kubelet's PodLogOptions
(k/k pkg/kubelet/kuberuntime/logs/logs.go): tailLines, sinceSeconds/sinceTime,
timestamps, limitBytes; follow is done by the caller with `LogFollower`.
"""

from __future__ import annotations

import gzip
import os
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class LogOptions:
    tail_lines: int | None = None
    since: float | None = None  # epoch seconds
    timestamps: bool = False
    limit_bytes: int | None = None


@dataclass(frozen=True)
class LogLine:
    """One whole line (P chunks joined), as written to the reader."""
    timestamp: float
    timestamp_text: str
    stream: str
    content: bytes  # with its trailing newline for an F line

    def render(self, timestamps: bool) -> bytes:
        return (self.timestamp_text.encode() + b" " + self.content) if timestamps else self.content


def parse_timestamp(text: str) -> float:
    m = _TS.match(text)
    if not m:
        raise ValueError(f"bad CRI log timestamp {text!r}")
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    frac = int((m.group(2) or "0").ljust(9, "0")) / 1e9
    return base.timestamp() + frac


def rotated_files(log_path: Path) -> list[Path]:
    """Files rotation left for this log, oldest first (names sort by time)."""
    prefix = log_path.name + "."
    try:
        names = [n for n in os.listdir(log_path.parent) if n.startswith(prefix)
                 and not n.endswith(".tmp")]
    except FileNotFoundError:
        return []
    return [log_path.parent / n for n in sorted(names, key=lambda n: n.removesuffix(".gz"))]


def _read(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:  # rotated away or removed while we looked
        return b""


class LineParser:
    """Turns raw CRI log bytes into whole lines; keeps a partial line between feeds."""

    def __init__(self) -> None:
        self._pending: dict[str, list[bytes]] = {}
        self._first: dict[str, tuple[float, str]] = {}
        self._rest = b""

    def feed(self, data: bytes) -> Iterator[LogLine]:
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        for raw in lines:
            parsed = self._parse(raw)
            if parsed is not None:
                yield parsed

    def _parse(self, raw: bytes) -> LogLine | None:
        parts = raw.split(b" ", 3)
        if len(parts) < 3:
            return None
        if len(parts) == 3:
            parts.append(b"")
        ts_text, stream, tag, content = (parts[0].decode(errors="replace"),
                                         parts[1].decode(errors="replace"), parts[2], parts[3])
        try:
            ts = parse_timestamp(ts_text)
        except ValueError:
            return None
        self._first.setdefault(stream, (ts, ts_text))
        if tag.split(b":")[0] == b"P":
            self._pending.setdefault(stream, []).append(content)
            return None
        chunks = self._pending.pop(stream, [])
        first_ts, first_text = self._first.pop(stream)
        return LogLine(first_ts, first_text, stream, b"".join(chunks) + content + b"\n")


def read_lines(log_path: Path, options: LogOptions) -> tuple[list[LogLine], int]:
    """The lines to print now, and the offset of the current file read so far
    (where a follower continues)."""
    files = [*rotated_files(log_path), log_path]
    parser = LineParser()
    keep: deque[LogLine] | list[LogLine]
    keep = deque(maxlen=options.tail_lines) if options.tail_lines is not None else []
    offset = 0
    for path in files:
        data = _read(path)
        if path == log_path:
            offset = len(data) - len(data.rsplit(b"\n", 1)[-1]) if b"\n" in data else 0
        for line in parser.feed(data if path != log_path else data[:offset]):
            if options.since is None or line.timestamp >= options.since:
                keep.append(line)
        parser._rest = b""  # a rotated file ends on a line boundary
    return list(keep), offset


class Limiter:
    """limitBytes: stop after that many bytes of output."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    @property
    def done(self) -> bool:
        return self.left is not None and self.left <= 0

    def cut(self, data: bytes) -> bytes:
        if self.left is None:
            return data
        data = data[:max(self.left, 0)]
        self.left -= len(data)
        return data


class LogFollower:
    """Continues the current file from an offset, and onto the new file when
    rotation replaced it (same path, new inode)."""

    def __init__(self, log_path: Path, offset: int, since: float | None) -> None:
        self.path = log_path
        self.offset = offset
        self.since = since
        self.parser = LineParser()
        try:
            self.inode: int | None = os.stat(log_path).st_ino
        except FileNotFoundError:
            self.inode = None

    def poll(self) -> list[LogLine]:
        """New whole lines since the last poll (blocking file I/O: run in an executor)."""
        out: list[LogLine] = []
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out
        if self.inode is not None and st.st_ino != self.inode:
            # Rotated: finish the old file (now the newest rotated one), then start anew.
            rotated = [p for p in rotated_files(self.path) if not p.name.endswith(".gz")]
            for p in reversed(rotated):
                try:
                    if os.stat(p).st_ino == self.inode:
                        out += self._read_from(p)
                        break
                except FileNotFoundError:
                    continue
            self.inode, self.offset, self.parser = st.st_ino, 0, LineParser()
        elif self.inode is None:
            self.inode = st.st_ino
        if st.st_size < self.offset:  # truncated
            self.offset = 0
        out += self._read_from(self.path)
        return out

    def _read_from(self, path: Path) -> list[LogLine]:
        try:
            with open(path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        return [line for line in self.parser.feed(data)
                if self.since is None or line.timestamp >= self.since]

