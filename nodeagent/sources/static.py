"""The static pod source: pod manifests in a local directory (kubelet's file source).

Behaviour follows the kubelet (k/k pkg/kubelet/config/file.go, file_linux.go,
common.go applyDefaults):

* Every regular file directly in the directory is a manifest, except names
  starting with "." (the kubelet's only filter, so editors' dot-temp files are
  skipped; `foo.yaml~` or `foo.swp` are *not* ignored, as in the kubelet).
  Subdirectories are not entered. `path` may also name a single file.
* A file can hold several YAML/JSON documents; each valid pod is used, each
  invalid one is reported without affecting the others or other files.
* Changes arrive through inotify (within ~50 ms) and a full rescan runs every
  `resync_period` (kubelet fileCheckFrequency, 20 s) as a safety net.
* A directory that does not exist yet is an empty source (logged once) and is
  retried every `resync_period`; if it disappears, its pods go away.
* Static defaults per pod: UID = md5(canonical JSON of the parsed pod,
  "host:<node>", "file:<absolute path>") unless the manifest sets one, so an
  edit is a new pod and a restart keeps the UID; name `<name>-<node>`
  (node lowercased); namespace "default" when empty; spec.nodeName;
  annotations kubernetes.io/config.{hash,source,seen}; a NoExecute Exists
  toleration; status.phase Pending. `config.seen` (RFC 3339, nanoseconds) is
  when this agent first saw the pod: stable across rescans and across edits
  that leave the pod unchanged (comments, formatting), new after a restart,
  as in the kubelet's pod storage.
* Two documents with the same namespace/name (after the suffix): the first
  in file-name order wins, the other is an error.

`on_change` receives the whole new snapshot on the first scan (even when
empty: it marks the source as synced) and whenever pods, errors or warnings
change. What it receives is a private copy the receiver may keep or mutate;
`snapshot` is the source's own (read it, don't mutate it).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from nodeagent.api.codec import encode, prepare
from nodeagent.api.defaults import DEFAULT_NAMESPACE
from nodeagent.api.manifest import MAX_MANIFEST_BYTES, ManifestError, parse_manifest
from nodeagent.api.times import rfc3339_nano
from nodeagent.api.types import Pod, Toleration
from nodeagent.sources.inotify import ChangeBatch, DirectoryWatcher, WatchError

DEFAULT_RESYNC_PERIOD = 20.0
MAX_NAME_LENGTH = 253  # DNS subdomain, checked again after the node suffix
CONFIG_HASH_ANNOTATION = "kubernetes.io/config.hash"
CONFIG_SOURCE_ANNOTATION = "kubernetes.io/config.source"
CONFIG_SEEN_ANNOTATION = "kubernetes.io/config.seen"
FILE_SOURCE = "file"
STATIC_TOLERATION = Toleration(operator="Exists", effect="NoExecute")


@dataclass(frozen=True)
class StaticSnapshot:
    """Everything the directory says right now."""
    pods: list[Pod] = field(default_factory=list)
    errors: list[ManifestError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """The problems as JSON, for the local API's /nodeagent/manifests.

        {"errors": [{"file", "document" (1-based, 0 = whole file), "pod"
        ("namespace/name" or null), "message", "error" (the full line)}],
        "warnings": ["..."]}
        """
        return {
            "errors": [{"file": e.source, "document": e.document, "pod": e.pod,
                        "message": e.message, "error": str(e)} for e in self.errors],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class _Read:
    """One file as read from disk: its bytes, or why it could not be read."""
    data: bytes | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Loaded:
    """A file's parsed, defaulted content; reused while its bytes are unchanged."""
    read: _Read
    pods: list[tuple[int, Pod]]
    errors: list[ManifestError]
    warnings: list[str]
    # What consumers get: their own copies of `pods`, made once per content (in
    # the executor) instead of a copy of every pod on every change of any file.
    copies: list[Pod] = field(default_factory=list)


def static_pod_uid(pod: Pod, node_name: str, file_path: str) -> str:
    """The kubelet's file-source UID: content, node and file all count."""
    hasher = hashlib.md5(usedforsecurity=False)
    canonical = json.dumps(encode(pod), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    hasher.update(canonical.encode())
    hasher.update(f"host:{node_name}".encode())
    hasher.update(f"file:{file_path}".encode())
    return hasher.hexdigest()


def apply_static_defaults(pod: Pod, node_name: str, file_path: str, seen: str) -> None:
    """kubelet config/common.go applyDefaults for a file source, plus config.seen."""
    meta = pod.metadata
    if not meta.uid:
        meta.uid = static_pod_uid(pod, node_name, file_path)
    meta.name = f"{meta.name}-{node_name.lower()}"
    if not meta.namespace:
        meta.namespace = DEFAULT_NAMESPACE
    pod.spec.node_name = node_name
    meta.annotations[CONFIG_HASH_ANNOTATION] = meta.uid
    meta.annotations[CONFIG_SOURCE_ANNOTATION] = FILE_SOURCE
    meta.annotations[CONFIG_SEEN_ANNOTATION] = seen
    _add_or_update_toleration(pod, STATIC_TOLERATION)
    pod.status.phase = "Pending"


def _add_or_update_toleration(pod: Pod, toleration: Toleration) -> None:
    """helper.AddOrUpdateTolerationInPod: same key/operator/value/effect is replaced."""
    tolerations = pod.spec.tolerations
    for i, existing in enumerate(tolerations):
        if (existing.key, existing.operator, existing.value, existing.effect) == \
                (toleration.key, toleration.operator, toleration.value, toleration.effect):
            tolerations[i] = copy.copy(toleration)
            return
    tolerations.append(copy.copy(toleration))


def _is_manifest_name(name: str) -> bool:
    return bool(name) and not name.startswith(".")


def _read_file(path: Path) -> _Read | None:
    """Read one manifest (blocking: run in an executor). None: not a regular file."""
    try:
        # O_NONBLOCK: a FIFO dropped into the directory must not hang the read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _Read(error=f"cannot open: {exc.strerror or exc}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > MAX_MANIFEST_BYTES:
            return _Read(error=_too_large(info.st_size))
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 1024 * 1024):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_MANIFEST_BYTES:  # it grew while we read it
                return _Read(error=_too_large(total, at_least=True))
        return _Read(data=b"".join(chunks))
    except OSError as exc:
        return _Read(error=f"cannot read: {exc.strerror or exc}")
    finally:
        os.close(fd)


def _too_large(size: int, *, at_least: bool = False) -> str:
    more = "more than " if at_least else ""
    return (f"file is {more}{size} bytes, larger than the "
            f"{MAX_MANIFEST_BYTES // (1024 * 1024)} MiB limit for manifests")


def _path_kind(path: Path) -> str:
    """"dir", "file", "missing" or "other" (blocking but quick: a stat)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    except OSError:
        return "other"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _scan(path: Path, names: Iterable[str] | None) -> tuple[str, dict[str, _Read]]:
    """Read `names` (None: every manifest) of the directory, with the path's kind.

    Blocking: run in an executor. When `path` is a file, it is the only manifest.
    """
    kind = _path_kind(path)
    if kind == "file":
        read = _read_file(path)
        return kind, ({path.name: read} if read is not None else {})
    if kind != "dir":
        return kind, {}
    if names is None:
        try:
            names = [e.name for e in os.scandir(path) if _is_manifest_name(e.name)]
        except (FileNotFoundError, NotADirectoryError):
            return "missing", {}
    out: dict[str, _Read] = {}
    for name in names:
        if _is_manifest_name(name):
            read = _read_file(path / name)
            if read is not None:
                out[name] = read
    return kind, out


class StaticPodSource:
    """Watches `path` and reports its pods through `on_change`."""

    def __init__(self, path: Path, node_name: str, on_change: Callable[[StaticSnapshot], None],
                 *, resync_period: float = DEFAULT_RESYNC_PERIOD) -> None:
        if resync_period <= 0:
            raise ValueError(f"resync_period must be positive, not {resync_period}")
        self._path = Path(os.path.abspath(path))
        self._node_name = node_name
        self._on_change = on_change
        self._resync_period = resync_period
        self._syncing = asyncio.Lock()
        self._files: dict[str, _Loaded] = {}
        self._single_file = False
        self._snapshot = StaticSnapshot()
        self._synced = False
        self._log = structlog.get_logger("nodeagent.sources.static").bind(path=str(self._path))

    @property
    def snapshot(self) -> StaticSnapshot:
        """The latest snapshot (empty before the first scan)."""
        return self._snapshot

    @property
    def path(self) -> Path:
        return self._path

    async def run(self) -> None:
        """Scan, then follow changes until cancelled."""
        loop = asyncio.get_running_loop()
        reported: str | None = None  # the path state last logged, to log it once
        watch_failure = ""  # likewise for a watch that cannot be set up
        while True:
            kind = await loop.run_in_executor(None, _path_kind, self._path)
            if kind != reported:
                if kind == "missing":
                    self._log.info("static pod path does not exist yet, will retry",
                                   retry_seconds=self._resync_period)
                elif kind == "other":
                    self._log.error("static pod path is not a directory or a regular file")
                elif reported is not None:
                    self._log.info("static pod path appeared", kind=kind)
                reported = kind
            watcher: DirectoryWatcher | None = None
            if kind in ("dir", "file"):
                watched = self._path.name
                watcher = (DirectoryWatcher(self._path, wanted=_is_manifest_name) if kind == "dir" else
                           DirectoryWatcher(self._path.parent, wanted=lambda name: name == watched))
                try:
                    watcher.open()
                except WatchError as exc:
                    if str(exc) != watch_failure:
                        self._log.warning("cannot watch static pod path, rescanning only",
                                          error=str(exc), retry_seconds=self._resync_period)
                    watch_failure = str(exc)
                    watcher = None
            try:
                await self._follow(watcher, single_file=kind == "file")
            finally:
                if watcher is not None:
                    watcher.close()

    async def _follow(self, watcher: DirectoryWatcher | None, *, single_file: bool) -> None:
        """Sync on every change batch and every resync period; return when the watch
        is lost, or after one period when there is no watch (so the caller re-checks
        the path)."""
        loop = asyncio.get_running_loop()
        batches: asyncio.Queue[ChangeBatch | None] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(watcher, batches)) if watcher else None
        try:
            await self.sync()
            next_full = loop.time() + self._resync_period
            while True:
                try:
                    async with asyncio.timeout(max(0.0, next_full - loop.time())):  # keeps a cancel
                        first = await batches.get()
                except TimeoutError:
                    if watcher is None:
                        return
                    await self.sync()
                    next_full = loop.time() + self._resync_period
                    continue
                pending = [first]
                while not batches.empty():
                    pending.append(batches.get_nowait())
                if any(b is None or b.gone for b in pending):
                    return  # the caller re-opens the watch and rescans everything
                full = single_file or any(b.overflow for b in pending if b is not None)
                names = {n for b in pending if b is not None for n in b.names}  # the watcher drops dotfiles
                if full or names:
                    await self.sync(None if full else names)
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    @staticmethod
    async def _pump(watcher: DirectoryWatcher,
                    batches: asyncio.Queue[ChangeBatch | None]) -> None:
        try:
            async for batch in watcher.changes():
                batches.put_nowait(batch)
        finally:
            batches.put_nowait(None)  # the watch ended

    async def sync(self, names: set[str] | None = None) -> None:
        """Re-read `names` (None: the whole directory) and report if anything changed."""
        async with self._syncing:  # the watch loop and a SIGHUP rescan take turns
            await self._sync(names)

    async def _sync(self, names: set[str] | None) -> None:
        loop = asyncio.get_running_loop()
        kind, reads, loaded = await loop.run_in_executor(
            None, self._scan_and_load, names, dict(self._files), self._seen_times(),
            rfc3339_nano(time.time_ns()))
        single_file = kind == "file"
        if names is None or single_file != self._single_file:
            stale = set(self._files) - set(reads)
        else:
            stale = names - set(reads)
        self._single_file = single_file
        for name in stale:
            self._files.pop(name, None)
        self._files.update(loaded)
        self._publish()

    def _scan_and_load(self, names: set[str] | None, files: dict[str, _Loaded],
                       seen_times: dict[str, str], now: str
                       ) -> tuple[str, dict[str, _Read], dict[str, _Loaded]]:
        """Read `names` and parse the files whose bytes changed since `files`:
        one executor job for a whole batch (blocking, CPU-bound). The first
        one, at start-up, also readies the codec for pods, so the first
        manifest written later does not wait for that."""
        prepare(Pod)
        kind, reads = _scan(self._path, names)
        single_file = kind == "file"
        loaded = {}
        for name, read in reads.items():
            current = files.get(name)
            if current is not None and current.read == read:
                continue  # same bytes: same pods, same config.seen
            loaded[name] = self._load(self._file_path(name, single_file), read, seen_times, now)
        return kind, reads, loaded

    def _file_path(self, name: str, single_file: bool | None = None) -> str:
        """`single_file`: the scan's answer when it differs from the last one's."""
        single = self._single_file if single_file is None else single_file
        return str(self._path) if single else str(self._path / name)

    def _seen_times(self) -> dict[str, str]:
        """config.seen by UID: an unchanged pod keeps its first-seen time, as the
        kubelet's pod storage does (a comment-only edit is not a new pod)."""
        return {pod.metadata.uid: pod.metadata.annotations[CONFIG_SEEN_ANNOTATION]
                for loaded in self._files.values() for _, pod in loaded.pods}

    def _load(self, file_path: str, read: _Read, seen_times: dict[str, str], now: str) -> _Loaded:
        """Parse and default one file's content (CPU-bound: run in an executor)."""
        if read.data is None:
            error = ManifestError(file_path, 0, None, read.error or "cannot read")
            return _Loaded(read, [], [error], [])
        result = parse_manifest(read.data, file_path, static=True)
        pods: list[tuple[int, Pod]] = []
        errors = list(result.errors)
        for document, pod in result.pods:
            original = pod.full_name
            apply_static_defaults(pod, self._node_name, file_path, now)
            seen = seen_times.get(pod.metadata.uid)
            if seen is not None:
                pod.metadata.annotations[CONFIG_SEEN_ANNOTATION] = seen
            if len(pod.metadata.name) > MAX_NAME_LENGTH:
                errors.append(ManifestError(
                    file_path, document, original,
                    f"metadata.name: Invalid value: \"{pod.metadata.name}\": must be no more "
                    f"than {MAX_NAME_LENGTH} characters once the node name is appended"))
                continue
            pods.append((document, pod))
        return _Loaded(read, pods, errors, list(result.warnings), copy.deepcopy([p for _, p in pods]))

    def _publish(self) -> None:
        """Build the snapshot; report (and log what is new) only when it changed."""
        pods: list[Pod] = []
        handed: list[Pod] = []  # the consumers' copies of `pods`
        errors: list[ManifestError] = []
        warnings: list[str] = []
        owners: dict[str, tuple[str, int]] = {}
        for name in sorted(self._files):
            loaded = self._files[name]
            file_path = self._file_path(name)
            errors.extend(loaded.errors)
            warnings.extend(loaded.warnings)
            for (document, pod), given in zip(loaded.pods, loaded.copies):
                key = pod.full_name
                if key in owners:
                    first_file, first_doc = owners[key]
                    errors.append(ManifestError(
                        file_path, document, key,
                        f"duplicate pod name, already defined in {first_file} "
                        f"(document {first_doc}); this one is ignored"))
                    continue
                owners[key] = (file_path, document)
                pods.append(pod)
                handed.append(given)
        previous = self._snapshot
        current = StaticSnapshot(pods=pods, errors=errors, warnings=warnings)
        if self._synced and current == previous:
            return
        # Consumers get copies, so nobody downstream can change what the next
        # comparison sees.
        self._synced = True
        self._snapshot = current
        self._log_news(previous, current)
        self._log.info("static pods changed", pods=len(pods), errors=len(errors),
                       warnings=len(warnings))
        try:
            self._on_change(StaticSnapshot(pods=handed, errors=copy.deepcopy(errors),
                                           warnings=list(warnings)))
        except Exception as exc:  # noqa: BLE001 - a consumer bug must not stop the source
            self._log.exception("static pod change handler failed", error=str(exc))

    def _log_news(self, before: StaticSnapshot, after: StaticSnapshot) -> None:
        """Log errors/warnings once, when they first appear."""
        old_errors = {(e.source, str(e)) for e in before.errors}
        for err in after.errors:
            if (err.source, str(err)) not in old_errors:
                self._log.error("invalid static pod manifest", file=err.source, error=str(err))
        old_warnings = set(before.warnings)
        for warning in after.warnings:
            if warning not in old_warnings:
                self._log.warning("static pod manifest warning", warning=warning)
