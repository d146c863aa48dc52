"""The atomic writer on a real filesystem: payload dir, ..data swap, symlinks, modes,
ownership, removal of keys, and readers that never see a mixed set."""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

import pytest

from nodeagent.configdata import atomic
from nodeagent.configdata.atomic import FileProjection, PayloadError
from nodeagent.configdata.volumes import set_volume_ownership
from tests.test_volumes import umask  # noqa: F401 - autouse: modes assume umask 022

TS_DIR = re.compile(r"\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+")


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "vol"
    path.mkdir()
    return path


def payload(**files: bytes | tuple[bytes, int]) -> dict[str, FileProjection]:
    out = {}
    for name, value in files.items():
        data, mode = value if isinstance(value, tuple) else (value, 0o644)
        out[name.replace("__", "/")] = FileProjection(data, mode)
    return out


def entries(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_layout_and_symlinks(target: Path) -> None:
    assert atomic.write(target, payload(a=b"alpha", conf__b=(b"beta", 0o600), conf__deep__c=b"gamma"))
    names = entries(target)
    ts = [n for n in names if TS_DIR.fullmatch(n)]
    assert len(ts) == 1 and set(names) == {"..data", ts[0], "a", "conf"}
    assert os.readlink(target / "..data") == ts[0]
    assert os.readlink(target / "a") == "..data/a"
    assert os.readlink(target / "conf") == "..data/conf"
    assert (target / "a").read_bytes() == b"alpha"
    assert (target / "conf" / "b").read_bytes() == b"beta"
    assert (target / "conf" / "deep" / "c").read_bytes() == b"gamma"
    assert mode_of(target / ts[0]) == 0o755
    assert mode_of(target / "a") == 0o644 and mode_of(target / "conf" / "b") == 0o600
    # Real files live only in the payload dir.
    assert stat.S_ISREG(os.lstat(target / ts[0] / "conf" / "b").st_mode)
    assert atomic.read_payload(target) == {"a": (b"alpha", 0o644), "conf/b": (b"beta", 0o600),
                                           "conf/deep/c": (b"gamma", 0o644)}


def test_unchanged_payload_is_not_written_again(target: Path) -> None:
    files = payload(a=b"1", b=b"2")
    assert atomic.write(target, files) is True
    before = entries(target)
    inode = os.stat(target / "a").st_ino
    assert atomic.write(target, files) is False
    assert entries(target) == before and os.stat(target / "a").st_ino == inode
    # A lost user-visible link is put back even when nothing else changes (k/k #121472).
    os.unlink(target / "b")
    assert atomic.write(target, files) is False
    assert (target / "b").read_bytes() == b"2"


def test_update_swaps_data_and_removes_old_payload(target: Path) -> None:
    atomic.write(target, payload(a=b"old", b=b"same"))
    old_ts = os.readlink(target / "..data")
    assert atomic.write(target, payload(a=b"new", b=b"same"))
    new_ts = os.readlink(target / "..data")
    assert new_ts != old_ts and not (target / old_ts).exists()
    assert (target / "a").read_bytes() == b"new"
    assert {n for n in entries(target) if n.startswith("..")} == {"..data", new_ts}


def test_removed_keys_disappear(target: Path) -> None:
    atomic.write(target, payload(a=b"1", b=b"2", conf__x=b"3", conf__y=b"4"))
    atomic.write(target, payload(b=b"2", conf__y=b"4"))
    assert not os.path.lexists(target / "a")
    assert not (target / "conf" / "x").exists() and (target / "conf" / "y").read_bytes() == b"4"
    atomic.write(target, payload(b=b"2"))
    assert not os.path.lexists(target / "conf")
    atomic.write(target, {})  # an empty volume: only the hidden entries remain
    assert [n for n in entries(target) if not n.startswith("..")] == []
    assert atomic.read_payload(target) == {}


def test_modes_ignore_the_umask(target: Path) -> None:
    os.umask(0o077)
    atomic.write(target, payload(open_=(b"x", 0o644), secret=(b"y", 0o400), exe=(b"z", 0o755)))
    assert mode_of(target / "open_") == 0o644
    assert mode_of(target / "secret") == 0o400
    assert mode_of(target / "exe") == 0o755
    assert mode_of(target / os.readlink(target / "..data")) == 0o755


@pytest.mark.parametrize(("path", "message"), [
    ("", 'invalid path: must not be empty: ""'),
    ("/etc/passwd", "invalid path: must be relative path: /etc/passwd"),
    ("a/../../b", "invalid path: must not contain '..': a/../../b"),
    ("..data", "invalid path: must not start with '..': ..data"),
    ("x" * 256, "invalid path: filenames must be less than or equal to 255 characters"),
])
def test_invalid_paths(target: Path, path: str, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        atomic.write(target, {path: FileProjection(b"", 0o644)})
    assert str(info.value) == message
    assert entries(target) == []


def test_owner_of_files(target: Path) -> None:
    atomic.write(target, {"token": FileProjection(b"t", 0o600, fs_user=1234)})
    st = os.stat(target / "token")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (1234, 0o600)


def test_fs_group_ownership(target: Path) -> None:
    group = 4321
    atomic.write(target, payload(key=(b"k", 0o400), conf__nested=(b"n", 0o600)),
                 set_perms=lambda _ts: set_volume_ownership(target, group))
    ts = target / os.readlink(target / "..data")
    for path in (target / "key", target / "conf" / "nested", ts, ts / "conf", target):
        assert os.stat(path).st_gid == group, path
    # Read-only volume masks: files gain 0440, directories 0550 and setgid.
    assert mode_of(target / "key") == 0o440
    assert mode_of(target / "conf" / "nested") == 0o640
    assert os.stat(ts).st_mode & 0o7777 == 0o755 | stat.S_ISGID
    # The links themselves were chowned, not chmodded through.
    assert os.lstat(target / "..data").st_gid == group


def test_leftovers_of_a_crash_are_removed(target: Path) -> None:
    atomic.write(target, payload(a=b"1"))
    (target / "..2020_01_01_00_00_00.123").mkdir()
    os.symlink("..2020_01_01_00_00_00.123", target / "..data_tmp")
    atomic.write(target, payload(a=b"2"))
    assert {n for n in entries(target) if n.startswith("..")} == {"..data", os.readlink(target / "..data")}
    assert (target / "a").read_bytes() == b"2"


def test_readers_never_see_a_mixed_set(target: Path) -> None:
    """A reader that resolves ..data once sees one version of every file."""
    def version(n: int) -> dict[str, FileProjection]:
        body = str(n).encode() * 2000
        return payload(a=body, b=body, conf__c=body)

    atomic.write(target, version(0))
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                fd = os.open(target / "..data", os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                problems.append("..data missing")
                continue
            try:
                bodies = []
                for name in ("a", "b", "conf/c"):
                    with open(f"/proc/self/fd/{fd}/{name}", "rb") as fh:
                        bodies.append(fh.read())
            except FileNotFoundError:
                continue  # the payload we opened was removed meanwhile: read again
            finally:
                os.close(fd)
            if len(set(bodies)) != 1 or len(bodies[0]) == 0:
                problems.append(f"mixed or partial set: {[b[:4] for b in bodies]}")
            seen.append(int(bodies[0][:1]))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 60):
            atomic.write(target, version(n % 10))
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert len(set(seen)) > 1  # the reader really raced the writer
