"""Atomic projection of a set of files into a directory: the kubelet's AtomicWriter
(k/k pkg/volume/util/atomic_writer.go, v1.31).

Layout of a target dir holding "a" and "conf/b":

    ..2024_05_01_10_00_00.123456789/   the payload (0755 dir, files with their modes)
    ..data -> ..2024_05_01_10_00_00.123456789
    a      -> ..data/a
    conf   -> ..data/conf

An update writes a new timestamped dir, points `..data_tmp` at it and renames
`..data_tmp` over `..data` (rename(2) is atomic), so a reader that resolves
`a` through `..data` sees either the whole old set or the whole new one.
Names starting with `..` are reserved. Blocking: callers use an executor.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = "..data"
NEW_DATA_DIR = "..data_tmp"
MAX_FILE_NAME_LENGTH = 255
MAX_PATH_LENGTH = 4096
PAYLOAD_DIR_MODE = 0o755


@dataclass(frozen=True)
class FileProjection:
    """One file of a payload; `fs_user`/`fs_group` chown it when set (the
    projected service account token owned by the containers' runAsUser)."""
    data: bytes
    mode: int
    fs_user: int | None = None
    fs_group: int | None = None


class PayloadError(ValueError):
    """A payload path the writer refuses (the kubelet's messages)."""


def validate_path(target: str) -> None:
    """validatePath: relative, no '..' element, no leading '..', name/path limits."""
    if target == "":
        raise PayloadError('invalid path: must not be empty: ""')
    if posixpath.isabs(target):
        raise PayloadError(f"invalid path: must be relative path: {target}")
    if len(target) > MAX_PATH_LENGTH:
        raise PayloadError(f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters")
    items = target.split("/")
    for item in items:
        if item == "..":
            raise PayloadError(f"invalid path: must not contain '..': {target}")
        if len(item) > MAX_FILE_NAME_LENGTH:
            raise PayloadError(f"invalid path: filenames must be less than or equal to "
                               f"{MAX_FILE_NAME_LENGTH} characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise PayloadError(f"invalid path: must not start with '..': {target}")


def clean_payload(payload: Mapping[str, FileProjection]) -> dict[str, FileProjection]:
    """validatePayload: every path checked, then filepath.Clean'ed."""
    clean: dict[str, FileProjection] = {}
    for path, projection in payload.items():
        validate_path(path)
        clean[posixpath.normpath(path)] = projection
    return clean


def write(target_dir: Path, payload: Mapping[str, FileProjection],
          set_perms: Callable[[str], None] | None = None) -> bool:
    """AtomicWriter.Write. Returns whether a new payload dir was published
    (False: the files on disk already hold exactly this data).

    `set_perms(ts_dir_name)` runs on the new payload before it is published
    (the volume's fsGroup ownership). The target dir must exist.
    """
    if not target_dir.is_dir():
        raise FileNotFoundError(2, "No such file or directory", str(target_dir))
    clean = clean_payload(payload)
    data_dir = target_dir / DATA_DIR
    try:
        old_ts = os.readlink(data_dir)
    except FileNotFoundError:
        old_ts = ""
    old_ts_path = target_dir / old_ts if old_ts else None

    to_remove: set[str] = set()
    should_write = True
    if old_ts_path is not None:
        to_remove = _paths_to_remove(clean, old_ts_path)
        if not to_remove and not _payload_differs(clean, old_ts_path):
            # Up to date: only make sure the user-visible links exist (k/k #121472).
            should_write = False
            old_ts_path = None

    if should_write:
        _remove_leftovers(target_dir, keep=old_ts)
        ts_dir = _new_timestamp_dir(target_dir)
        try:
            _write_payload(clean, ts_dir)
            if set_perms is not None:
                set_perms(ts_dir.name)
            new_data_dir = target_dir / NEW_DATA_DIR
            os.symlink(ts_dir.name, new_data_dir)
            try:
                os.rename(new_data_dir, data_dir)
            except OSError:
                _unlink_quietly(new_data_dir)
                raise
        except BaseException:
            shutil.rmtree(ts_dir, ignore_errors=True)
            raise

    _create_user_visible_files(clean, target_dir)
    _remove_user_visible_paths(to_remove, target_dir)
    if old_ts_path is not None:
        shutil.rmtree(old_ts_path)
    return should_write


def read_payload(target_dir: Path) -> dict[str, tuple[bytes, int]]:
    """What a reader sees through `..data`: relative path -> (data, mode). For tests
    and diagnostics."""
    base = target_dir / DATA_DIR
    found: dict[str, tuple[bytes, int]] = {}
    if not base.exists():
        return found
    real = Path(os.path.realpath(base))
    for root, _dirs, files in os.walk(real):
        for name in files:
            full = Path(root) / name
            found[str(full.relative_to(real))] = (full.read_bytes(), stat.S_IMODE(full.lstat().st_mode))
    return found


# -- steps ------------------------------------------------------------------------------

def _paths_to_remove(payload: Mapping[str, FileProjection], old_ts_path: Path) -> set[str]:
    """Paths in the current payload dir that the new payload no longer has
    (parents of new files are kept, so no non-empty dir is removed)."""
    current: set[str] = set()
    for root, dirs, files in os.walk(old_ts_path):
        for name in [*dirs, *files]:
            current.add(os.path.relpath(os.path.join(root, name), old_ts_path))
    wanted: set[str] = set()
    for path in payload:
        while path:
            wanted.add(path)
            path = posixpath.dirname(path)
    return current - wanted


def _payload_differs(payload: Mapping[str, FileProjection], old_ts_path: Path) -> bool:
    """shouldWritePayload: any file missing or with other content. Modes are not
    compared, as upstream: they follow the pod spec, which does not change, and
    fsGroup ownership widens them on disk after writing."""
    for path, projection in payload.items():
        full = old_ts_path / path
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return True
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(projection.data):
            return True
        if full.read_bytes() != projection.data:
            return True
    return False


def _remove_leftovers(target_dir: Path, keep: str) -> None:
    """A crash between creating a payload dir and the rename leaves `..data_tmp`
    or an unpublished `..<timestamp>` dir behind; neither is ever read."""
    for entry in os.scandir(target_dir):
        if entry.name == NEW_DATA_DIR:
            _unlink_quietly(Path(entry.path))
        elif (entry.name.startswith("..") and entry.name not in (DATA_DIR, keep)
              and entry.is_dir(follow_symlinks=False)):
            shutil.rmtree(entry.path, ignore_errors=True)


def _new_timestamp_dir(target_dir: Path) -> Path:
    """`..<UTC time>.<random>`, 0755 whatever the umask (others must traverse it)."""
    prefix = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    ts_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=target_dir))
    os.chmod(ts_dir, PAYLOAD_DIR_MODE)
    return ts_dir


def _write_payload(payload: Mapping[str, FileProjection], ts_dir: Path) -> None:
    for path, projection in payload.items():
        full = ts_dir / path
        parent = full.parent
        if not parent.is_dir():
            os.makedirs(parent, mode=0o777, exist_ok=True)  # MkdirAll(ModePerm): umask applies
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     projection.mode & 0o7777)
        try:
            view = memoryview(projection.data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, projection.mode & 0o7777)  # the mode exactly, not mode &~umask
            if projection.fs_user is not None:
                os.fchown(fd, projection.fs_user,
                          projection.fs_group if projection.fs_group is not None else -1)
        finally:
            os.close(fd)


def _create_user_visible_files(payload: Mapping[str, FileProjection], target_dir: Path) -> None:
    """One symlink per top-level name: `name -> ..data/name`."""
    for path in payload:
        top = path.split("/", 1)[0]
        link = target_dir / top
        if not os.path.lexists(link):
            os.symlink(posixpath.join(DATA_DIR, top), link)


def _remove_user_visible_paths(paths: set[str], target_dir: Path) -> None:
    """Only top-level links go; deeper paths vanished with the old payload dir."""
    for path in sorted(paths):
        if "/" not in path:
            _unlink_quietly(target_dir / path)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
