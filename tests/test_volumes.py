"""Volume manager on a real filesystem: directories, a real tmpfs, hostPath checks."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import (
    ConfigMapVolumeSource,
    Container,
    EmptyDirVolumeSource,
    HostPathVolumeSource,
    ObjectMeta,
    Pod,
    PodSecurityContext,
    PodSpec,
    ResourceRequirements,
    Volume,
)
from nodeagent.pods import volumes
from nodeagent.pods.volumes import VolumeError

UID = "6f1d2a9c-aaaa-bbbb-cccc-000011112222"
GiB = 2**30
MS_BIND = 4096


@pytest.fixture(autouse=True)
def umask() -> Iterator[None]:
    """Modes below assume the usual 022 umask."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def root_dir(tmp_path: Path) -> Iterator[Path]:
    """The kubelet root; every mount made under tmp_path is undone, even on failure."""
    root = tmp_path / "kubelet"
    root.mkdir()
    yield root
    for mount in volumes.mounts_under(tmp_path):
        volumes.unmount(mount.mount_point)
    assert volumes.mounts_under(tmp_path) == []


def make_pod(*vols: Volume, fs_group: int | None = None,
             containers: list[Container] | None = None) -> Pod:
    return Pod(metadata=ObjectMeta(name="web", namespace="prod", uid=UID),
               spec=PodSpec(volumes=list(vols), containers=containers or [Container(name="app")],
                            security_context=PodSecurityContext(fs_group=fs_group)))


def host_path(name: str, path: Path | str, type_: str | None = None) -> Volume:
    return Volume(name=name, host_path=HostPathVolumeSource(path=str(path), type=type_))


def tmpfs_mounts(path: Path) -> list[volumes.MountInfo]:
    return [m for m in volumes.mounts_under(path) if m.fs_type == "tmpfs"]


def bind_mount(source: Path, target: Path) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    assert libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND, None) == 0, \
        os.strerror(ctypes.get_errno())


# -- paths ---------------------------------------------------------------------------

def test_pod_dir_layout(root_dir: Path) -> None:
    assert volumes.pod_dir(root_dir, UID) == root_dir / "pods" / UID
    assert volumes.empty_dir_path(root_dir, UID, "cache") == \
        root_dir / "pods" / UID / "volumes/kubernetes.io~empty-dir/cache"
    with pytest.raises(VolumeError):
        volumes.pod_dir(root_dir, "../etc")


# -- emptyDir ------------------------------------------------------------------------

def test_empty_dir_on_disk_is_idempotent(root_dir: Path) -> None:
    pod = make_pod(Volume(name="cache", empty_dir=EmptyDirVolumeSource()))
    paths = volumes.prepare_volumes(pod, root_dir, allocatable_memory_bytes=GiB)
    path = root_dir / "pods" / UID / "volumes/kubernetes.io~empty-dir/cache"
    assert paths == {"cache": str(path)}
    assert stat.S_IMODE(path.stat().st_mode) == 0o777
    assert stat.S_IMODE((root_dir / "pods" / UID).stat().st_mode) == 0o750
    (path / "keep.txt").write_text("kept")
    assert volumes.prepare_volumes(pod, root_dir, allocatable_memory_bytes=GiB) == paths
    assert (path / "keep.txt").read_text() == "kept"
    assert tmpfs_mounts(root_dir) == []


def test_volume_without_source_is_an_empty_dir(root_dir: Path) -> None:
    paths = volumes.prepare_volumes(make_pod(Volume(name="scratch")), root_dir,
                                    allocatable_memory_bytes=GiB)
    assert Path(paths["scratch"]).is_dir()


def test_empty_dir_fs_group(root_dir: Path) -> None:
    pod = make_pod(Volume(name="shared", empty_dir=EmptyDirVolumeSource()), fs_group=2345)
    st = Path(volumes.prepare_volumes(pod, root_dir, allocatable_memory_bytes=GiB)["shared"]).stat()
    assert st.st_gid == 2345
    assert stat.S_IMODE(st.st_mode) == 0o2777


def test_memory_empty_dir_is_a_sized_tmpfs(root_dir: Path) -> None:
    pod = make_pod(Volume(name="ram", empty_dir=EmptyDirVolumeSource(medium="Memory",
                                                                     size_limit=Quantity("64Mi"))))
    paths = volumes.prepare_volumes(pod, root_dir, allocatable_memory_bytes=GiB)
    mounts = tmpfs_mounts(root_dir)
    assert [m.mount_point for m in mounts] == [paths["ram"]]
    assert "size=65536k" in mounts[0].super_options
    (Path(paths["ram"]) / "f").write_text("in memory")
    # Every sync calls again: no second mount, contents intact.
    assert volumes.prepare_volumes(pod, root_dir, allocatable_memory_bytes=GiB) == paths
    assert len(tmpfs_mounts(root_dir)) == 1
    assert (Path(paths["ram"]) / "f").read_text() == "in memory"

    volumes.cleanup_pod_dir(root_dir, UID)
    assert tmpfs_mounts(root_dir) == []
    assert not (root_dir / "pods" / UID).exists()
    volumes.cleanup_pod_dir(root_dir, UID)


def test_memory_empty_dir_without_limit_uses_allocatable(root_dir: Path) -> None:
    pod = make_pod(Volume(name="ram", empty_dir=EmptyDirVolumeSource(medium="Memory")),
                   fs_group=3000)
    path = volumes.prepare_volumes(pod, root_dir, allocatable_memory_bytes=32 * 2**20)["ram"]
    (mount,) = tmpfs_mounts(root_dir)
    assert "size=32768k" in mount.super_options
    st = os.stat(path)
    assert st.st_gid == 3000 and st.st_mode & stat.S_ISGID


def test_memory_volume_size_rules() -> None:
    vol = Volume(name="ram", empty_dir=EmptyDirVolumeSource(medium="Memory"))
    limited = Container(name="app", resources=ResourceRequirements(limits={"memory": Quantity("256Mi")}))
    unlimited = Container(name="side")
    assert volumes.memory_volume_size(make_pod(vol), vol, GiB) == GiB
    assert volumes.memory_volume_size(make_pod(vol, containers=[limited]), vol, GiB) == 256 * 2**20
    assert volumes.memory_volume_size(make_pod(vol, containers=[limited, unlimited]), vol, GiB) == GiB
    small = Volume(name="ram", empty_dir=EmptyDirVolumeSource(medium="Memory", size_limit=Quantity("1Mi")))
    assert volumes.memory_volume_size(make_pod(small, containers=[limited]), small, GiB) == 2**20
    big = Volume(name="ram", empty_dir=EmptyDirVolumeSource(medium="Memory", size_limit=Quantity("4Gi")))
    assert volumes.memory_volume_size(make_pod(big, containers=[limited]), big, GiB) == 256 * 2**20


# -- hostPath ------------------------------------------------------------------------

@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "app.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    yield path
    sock.close()


@pytest.fixture
def block_device(tmp_path: Path) -> Path:
    path = tmp_path / "blk"
    os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 200))
    return path


def test_host_path_types_that_match(root_dir: Path, tmp_path: Path, unix_socket: Path,
                                    block_device: Path) -> None:
    (tmp_path / "file").write_text("x")
    pod = make_pod(host_path("none", tmp_path / "absent"),
                   host_path("dir", tmp_path, "Directory"),
                   host_path("file", tmp_path / "file", "File"),
                   host_path("sock", unix_socket, "Socket"),
                   host_path("null", "/dev/null", "CharDevice"),
                   host_path("blk", block_device, "BlockDevice"),
                   host_path("empty", tmp_path, ""))
    paths = volumes.prepare_volumes(pod, root_dir, allocatable_memory_bytes=GiB)
    assert paths == {"none": str(tmp_path / "absent"), "dir": str(tmp_path),
                     "file": str(tmp_path / "file"), "sock": str(unix_socket), "null": "/dev/null",
                     "blk": str(block_device), "empty": str(tmp_path)}
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(("target", "type_", "description"), [
    ("missing", "Directory", "directory"),
    ("file", "Directory", "directory"),
    ("missing", "File", "file"),
    ("dir", "File", "file"),
    ("file", "Socket", "socket file"),
    ("file", "CharDevice", "character device"),
    ("/dev/null", "BlockDevice", "block device"),
    ("dir", "BlockDevice", "block device"),
])
def test_host_path_type_mismatch(root_dir: Path, tmp_path: Path, target: str, type_: str,
                                 description: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    path = target if target.startswith("/") else str(tmp_path / target)
    with pytest.raises(VolumeError) as info:
        volumes.prepare_volumes(make_pod(host_path("data", path, type_)), root_dir,
                                allocatable_memory_bytes=GiB)
    assert str(info.value) == (f'MountVolume.SetUp failed for volume "data" : '
                               f"hostPath type check failed: {path} is not a {description}")
    assert info.value.volume == "data"


def test_host_path_or_create(root_dir: Path, tmp_path: Path) -> None:
    new_dir = tmp_path / "a" / "b"
    new_file = tmp_path / "existing-parent" / "f.txt"
    new_file.parent.mkdir()
    pod = make_pod(host_path("d", new_dir, "DirectoryOrCreate"),
                   host_path("f", new_file, "FileOrCreate"))
    volumes.prepare_volumes(pod, root_dir, allocatable_memory_bytes=GiB)
    assert new_dir.is_dir() and stat.S_IMODE(new_dir.stat().st_mode) == 0o755
    assert new_file.is_file() and new_file.read_bytes() == b""
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o644
    new_file.write_text("data")
    volumes.prepare_volumes(pod, root_dir, allocatable_memory_bytes=GiB)
    assert new_file.read_text() == "data"
    # An existing path of the wrong kind still fails.
    with pytest.raises(VolumeError, match="is not a directory"):
        volumes.prepare_volumes(make_pod(host_path("d", new_file, "DirectoryOrCreate")), root_dir,
                                allocatable_memory_bytes=GiB)


def test_file_or_create_does_not_create_parents(root_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "no-parent" / "f.txt"
    with pytest.raises(VolumeError) as info:
        volumes.prepare_volumes(make_pod(host_path("f", path, "FileOrCreate")), root_dir,
                                allocatable_memory_bytes=GiB)
    assert str(info.value) == (f'MountVolume.SetUp failed for volume "f" : '
                               f"open {path}: no such file or directory")


def test_invalid_host_path_type_and_unsupported_volumes(root_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match='volume "x" : Pipe is an invalid volume type'):
        volumes.prepare_volumes(make_pod(host_path("x", tmp_path, "Pipe")), root_dir,
                                allocatable_memory_bytes=GiB)
    # configMap (and secret, downwardAPI, projected) volumes are nodeagent/configdata's.
    cm = Volume(name="cfg", config_map=ConfigMapVolumeSource(name="cfg"))
    assert volumes.prepare_volumes(make_pod(cm), root_dir, allocatable_memory_bytes=GiB) == {}
    assert not (root_dir / "pods" / UID / "volumes" / "kubernetes.io~configmap").exists()
    hp = Volume(name="ram", empty_dir=EmptyDirVolumeSource(medium="HugePages"))
    with pytest.raises(VolumeError, match='volume "ram" : emptyDir medium'):
        volumes.prepare_volumes(make_pod(hp), root_dir, allocatable_memory_bytes=GiB)


# -- termination messages --------------------------------------------------------------

def test_termination_log_file(root_dir: Path) -> None:
    path = volumes.termination_log_path(root_dir, UID, "app", 2)
    assert path == root_dir / "pods" / UID / "containers/app/2-termination-log"
    assert path == volumes.termination_log_file(root_dir, UID, "app", 2)
    assert path.read_bytes() == b"" and stat.S_IMODE(path.stat().st_mode) == 0o666
    path.write_text("stale")
    volumes.termination_log_path(root_dir, UID, "app", 2)
    assert path.read_bytes() == b""


def test_termination_log_failure_is_a_volume_error(root_dir: Path) -> None:
    (root_dir / "pods" / UID / "containers").mkdir(parents=True)
    (root_dir / "pods" / UID / "containers" / "app").write_text("not a dir")
    with pytest.raises(VolumeError, match="error on creating termination-log file"):
        volumes.termination_log_path(root_dir, UID, "app", 0)


def test_read_termination_message(root_dir: Path, tmp_path: Path) -> None:
    path = volumes.termination_log_path(root_dir, UID, "app", 0)
    assert volumes.read_termination_message(path) == ""
    path.write_text("bye")
    assert volumes.read_termination_message(path) == "bye"
    path.write_bytes(b"a" * 10 + b"b" * 4096)
    assert volumes.read_termination_message(path) == "b" * 4096
    assert volumes.read_termination_message(path, limit=3) == "bbb"
    assert volumes.read_termination_message(tmp_path / "missing") == ""
    (tmp_path / "link").symlink_to(path)
    assert volumes.read_termination_message(tmp_path / "link") == ""


# -- teardown -------------------------------------------------------------------------

def test_cleanup_never_touches_host_data(root_dir: Path, tmp_path: Path) -> None:
    host = tmp_path / "host-data"
    host.mkdir()
    (host / "precious").write_text("keep me")
    pod = make_pod(host_path("h", host, "Directory"),
                   Volume(name="cache", empty_dir=EmptyDirVolumeSource()),
                   Volume(name="ram", empty_dir=EmptyDirVolumeSource(medium="Memory",
                                                                      size_limit=Quantity("1Mi"))))
    paths = volumes.prepare_volumes(pod, root_dir, allocatable_memory_bytes=GiB)
    cache = Path(paths["cache"])
    (cache / "link-to-host").symlink_to(host)
    (cache / "deep/er").mkdir(parents=True)
    (cache / "deep/er/file").write_text("x")
    stray = cache / "stray-bind"
    stray.mkdir()
    bind_mount(host, stray)  # e.g. a leftover subPath bind mount
    volumes.termination_log_path(root_dir, UID, "app", 0)

    volumes.cleanup_pod_dir(root_dir, UID)
    assert not (root_dir / "pods" / UID).exists()
    assert (host / "precious").read_text() == "keep me"
    assert volumes.mounts_under(tmp_path) == []
    volumes.cleanup_pod_dir(root_dir, UID)


def test_cleanup_of_a_symlinked_pod_dir_removes_only_the_link(root_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "file").write_text("x")
    (root_dir / "pods").mkdir()
    (root_dir / "pods" / UID).symlink_to(elsewhere)
    volumes.cleanup_pod_dir(root_dir, UID)
    assert not (root_dir / "pods" / UID).exists()
    assert (elsewhere / "file").read_text() == "x"
