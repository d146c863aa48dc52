"""Pod volumes on the node: emptyDir (a directory, or a tmpfs for medium Memory) and
hostPath, laid out like the kubelet's `<root>/pods/<uid>/...`, plus the host files
behind terminationMessagePath.

Every function blocks (file I/O, mount(2)); callers run them in an executor.
Sources: k/k pkg/volume/emptydir/empty_dir.go, pkg/volume/hostpath/host_path.go
(v1.31 messages), kubelet_pods.go makePodDataDirs, pkg/util/tail.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from nodeagent.api.types import Container, Pod, Volume, unsupported_sources
from nodeagent.gotext import go_strerror

EMPTY_DIR_PLUGIN = "kubernetes.io~empty-dir"
EMPTY_DIR_MODE = 0o777
POD_DIR_MODE = 0o750
HOST_PATH_DIR_MODE = 0o755
HOST_PATH_FILE_MODE = 0o644
TERMINATION_LOG_MODE = 0o666
MAX_TERMINATION_MESSAGE = 4096
MOUNTINFO = "/proc/self/mountinfo"
_MNT_DETACH = 2
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")

# hostPath type -> (stat predicate, the kubelet's description).
_HOST_PATH_TYPES = {
    "Directory": (stat.S_ISDIR, "directory"),
    "DirectoryOrCreate": (stat.S_ISDIR, "directory"),
    "File": (stat.S_ISREG, "file"),
    "FileOrCreate": (stat.S_ISREG, "file"),
    "Socket": (stat.S_ISSOCK, "socket file"),
    "CharDevice": (stat.S_ISCHR, "character device"),
    "BlockDevice": (stat.S_ISBLK, "block device"),
}


class VolumeError(Exception):
    """A volume could not be set up or torn down; the pod stays ContainerCreating
    (the kubelet's FailedMount event carries the same message)."""

    def __init__(self, message: str, volume: str = "") -> None:
        super().__init__(message)
        self.volume = volume


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo."""
    mount_point: str
    fs_type: str
    super_options: tuple[str, ...]


# -- paths --------------------------------------------------------------------------

def pod_dir(root_dir: Path, uid: str) -> Path:
    """`<root_dir>/pods/<uid>`."""
    if not uid or "/" in uid or uid in (".", ".."):
        raise VolumeError(f"invalid pod uid {uid!r}")
    return root_dir / "pods" / uid


def empty_dir_path(root_dir: Path, uid: str, name: str) -> Path:
    return pod_dir(root_dir, uid) / "volumes" / EMPTY_DIR_PLUGIN / name


def termination_log_file(root_dir: Path, uid: str, container_name: str, attempt: int) -> Path:
    """Where termination_log_path puts the file, without touching the disk."""
    return pod_dir(root_dir, uid) / "containers" / container_name / f"{attempt}-termination-log"


# -- mounts -------------------------------------------------------------------------

def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m[1], 8)), field)


def mounts_under(top: Path, mountinfo: str = MOUNTINFO) -> list[MountInfo]:
    """Mounts at or below `top` (resolved), deepest first."""
    root = os.path.realpath(top)
    found = []
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            parts = line.split()
            sep = parts.index("-")
            point = _unescape(parts[4])
            if point == root or point.startswith(root.rstrip("/") + "/"):
                options = tuple(parts[sep + 3].split(",")) if len(parts) > sep + 3 else ()
                found.append(MountInfo(point, parts[sep + 1], options))
    return sorted(found, key=lambda m: len(m.mount_point), reverse=True)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mount_tmpfs(target: Path, size_bytes: int) -> None:
    """mount -t tmpfs [-o size=N] tmpfs target, as the kubelet does for medium Memory."""
    options = f"size={size_bytes}".encode() if size_bytes > 0 else None
    if _libc().mount(b"tmpfs", os.fsencode(target), b"tmpfs", 0, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {target}: {os.strerror(err)}")


def unmount(target: str) -> None:
    """umount(2); a busy mount is detached lazily, one that is already gone is fine."""
    libc = _libc()
    path = os.fsencode(target)
    if libc.umount2(path, 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY and libc.umount2(path, _MNT_DETACH) == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.EINVAL, errno.ENOENT):
        raise OSError(err, f"unmount {target}: {os.strerror(err)}")


# -- emptyDir -----------------------------------------------------------------------

def _make_pod_dirs(root_dir: Path, uid: str) -> None:
    """makePodDataDirs: the pod, volumes and plugins dirs, 0750."""
    base = pod_dir(root_dir, uid)
    for path in (base, base / "volumes", base / "plugins"):
        if not path.is_dir():
            path.mkdir(mode=POD_DIR_MODE, parents=True, exist_ok=True)
            os.chmod(path, POD_DIR_MODE)


def _setup_dir(path: Path) -> bool:
    """mkdir the emptyDir with rwx for all (the kubelet chmods past the umask).
    Returns whether it was created now."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.mkdir(mode=EMPTY_DIR_MODE, parents=True)
        os.chmod(path, EMPTY_DIR_MODE)
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, f"{path} exists and is not a directory")
    if st.st_mode & 0o777 != EMPTY_DIR_MODE:
        os.chmod(path, stat.S_IMODE(st.st_mode) | EMPTY_DIR_MODE)
    return False


def _apply_fs_group(path: Path, pod: Pod) -> None:
    """SetVolumeOwnership on a fresh volume: group fsGroup, group rwx, setgid."""
    psc = pod.spec.security_context
    if psc is None or psc.fs_group is None:
        return
    os.chown(path, -1, psc.fs_group)
    os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | 0o770 | stat.S_ISGID)


def _pod_memory_limit(pod: Pod) -> int | None:
    """The pod cgroup's memory limit (ResourceConfigForPod): only when every container
    declares one; init containers by the effective-max rule, sidecars added."""
    containers = [*pod.spec.init_containers, *pod.spec.containers]
    if not containers or any("memory" not in c.resources.limits for c in containers):
        return None

    def limit(c: Container) -> int:
        return c.resources.limits["memory"].value()

    sidecars, init_peak = 0, 0
    for c in pod.spec.init_containers:
        if c.restart_policy == "Always":
            sidecars += limit(c)
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, limit(c) + sidecars)
    return max(sum(limit(c) for c in pod.spec.containers) + sidecars, init_peak)


def memory_volume_size(pod: Pod, volume: Volume, allocatable_memory_bytes: int) -> int:
    """calculateEmptyDirMemorySize: node allocatable, lowered to the pod's memory limit
    and then to the volume's sizeLimit when those are smaller (and positive)."""
    size = allocatable_memory_bytes
    pod_limit = _pod_memory_limit(pod)
    if pod_limit is not None and 0 < pod_limit <= size:
        size = pod_limit
    size_limit = volume.empty_dir.size_limit if volume.empty_dir is not None else None
    if size_limit is not None and 0 < size_limit.value() <= size:
        size = size_limit.value()
    return size


def _setup_empty_dir(pod: Pod, volume: Volume, root_dir: Path, allocatable_memory_bytes: int) -> str:
    medium = volume.empty_dir.medium if volume.empty_dir is not None else ""
    if medium not in ("", "Memory"):
        raise ValueError(f"emptyDir medium {medium!r} is not supported")
    path = empty_dir_path(root_dir, pod.metadata.uid, volume.name)
    setup_empty_dir_at(path, pod, volume,
                       memory_bytes=allocatable_memory_bytes if medium == "Memory" else None)
    return str(path)


def setup_empty_dir_at(path: Path, pod: Pod, volume: Volume, *, memory_bytes: int | None) -> None:
    """An emptyDir at `path`: a directory, or with `memory_bytes` (node allocatable
    memory) a tmpfs sized by memory_volume_size. Also the wrapper of secret,
    downwardAPI and projected volumes (configMap: a directory)."""
    created = _setup_dir(path)
    if memory_bytes is not None:
        if any(m.mount_point == os.path.realpath(path) and m.fs_type == "tmpfs"
               for m in mounts_under(path)):
            return
        mount_tmpfs(path, memory_volume_size(pod, volume, memory_bytes))
        created = True
    if created:
        _apply_fs_group(path, pod)


# -- hostPath -----------------------------------------------------------------------

def check_host_path_type(path: str, path_type: str | None) -> None:
    """The kubelet's hostPath type check; *OrCreate make what is missing (directories
    0755 with parents, files 0644 without parents, as upstream)."""
    if not path_type:
        return
    if path_type not in _HOST_PATH_TYPES:
        raise ValueError(f"{path_type} is an invalid volume type")
    exists = os.path.exists(path)
    if path_type == "DirectoryOrCreate" and not exists:
        os.makedirs(path, mode=HOST_PATH_DIR_MODE, exist_ok=True)
        return
    if path_type == "FileOrCreate" and not exists:
        try:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, HOST_PATH_FILE_MODE))
        except OSError as exc:
            raise ValueError(f"open {path}: {go_strerror(exc)}") from exc
        return
    predicate, description = _HOST_PATH_TYPES[path_type]
    if not exists or not predicate(os.stat(path).st_mode):
        raise ValueError(f"hostPath type check failed: {path} is not a {description}")


def describe_error(exc: Exception) -> str:
    """An error as the kubelet prints it: `path: message` for OS errors."""
    if isinstance(exc, OSError):
        return f"{exc.filename}: {go_strerror(exc)}" if exc.filename else go_strerror(exc)
    return str(exc)


# -- the volume manager -------------------------------------------------------------

def prepare_volumes(pod: Pod, root_dir: Path, *, allocatable_memory_bytes: int) -> dict[str, str]:
    """Set up every pod volume and map its name to the host path containers mount.
    Idempotent: call on every sync (existing dirs and tmpfs mounts are kept).
    configMap, secret, downwardAPI and projected volumes are left out: they need
    the API server's objects (nodeagent/configdata/volumes.py writes them)."""
    _make_pod_dirs(root_dir, pod.metadata.uid)
    paths: dict[str, str] = {}
    for volume in pod.spec.volumes:
        if is_config_volume(volume):
            continue
        try:
            paths[volume.name] = _setup_volume(pod, volume, root_dir, allocatable_memory_bytes)
        except (OSError, ValueError) as exc:
            raise VolumeError(f'MountVolume.SetUp failed for volume "{volume.name}" : '
                              f"{describe_error(exc)}", volume.name) from exc
    return paths


def _setup_volume(pod: Pod, volume: Volume, root_dir: Path, allocatable_memory_bytes: int) -> str:
    if unsupported := unsupported_sources(volume):
        raise ValueError(f"nodeagent cannot mount {unsupported[0]} volumes (no storage or CSI plugins)")
    if volume.host_path is not None:
        check_host_path_type(volume.host_path.path, volume.host_path.type)
        return volume.host_path.path
    # No source at all is an emptyDir, as API defaulting makes it.
    return _setup_empty_dir(pod, volume, root_dir, allocatable_memory_bytes)


def is_config_volume(volume: Volume) -> bool:
    return any(src is not None for src in (volume.config_map, volume.secret, volume.downward_api,
                                           volume.projected))


# -- termination messages -------------------------------------------------------------

def termination_log_path(root_dir: Path, uid: str, container_name: str, attempt: int) -> Path:
    """Create (or empty) `<pod_dir>/containers/<name>/<attempt>-termination-log`, mode
    0666, for bind-mounting at terminationMessagePath. Call once per container
    creation; find it later with termination_log_file."""
    path = termination_log_file(root_dir, uid, container_name, attempt)
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(mode=POD_DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     TERMINATION_LOG_MODE)
        try:
            os.fchmod(fd, TERMINATION_LOG_MODE)
        finally:
            os.close(fd)
    except OSError as exc:
        raise VolumeError(f'error on creating termination-log file "{path}": {describe_error(exc)}') from exc
    return path


def read_termination_message(path: Path, limit: int = MAX_TERMINATION_MESSAGE) -> str:
    """The last `limit` bytes (tail.ReadAtMost); "" when the file is missing or a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fd).st_size
        fh.seek(max(0, size - limit))
        return fh.read(limit).decode("utf-8", "replace")


# -- teardown -----------------------------------------------------------------------

def cleanup_pod_dir(root_dir: Path, uid: str) -> None:
    """Unmount everything under the pod dir, then delete it. Never follows symlinks and
    never crosses into another filesystem, so hostPath data is never touched.
    Safe to call again."""
    top = pod_dir(root_dir, uid)
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(top)
        return
    try:
        for mount in mounts_under(top):
            unmount(mount.mount_point)
        left = mounts_under(top)
        if left:
            raise VolumeError(f"cannot remove {top}: still mounted: "
                              + ", ".join(m.mount_point for m in left))
        _remove_tree(os.path.realpath(top))
    except OSError as exc:
        raise VolumeError(f"cannot remove {top}: {describe_error(exc)}") from exc


def _remove_tree(top: str) -> None:
    """rm -r without following symlinks, refusing to descend into another device."""
    device = os.lstat(top).st_dev
    stack = [(top, False)]
    while stack:
        path, emptied = stack.pop()
        if emptied:
            os.rmdir(path)
            continue
        stack.append((path, True))
        with os.scandir(path) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(entry.path)
                elif st.st_dev != device:
                    raise VolumeError(f"cannot remove {entry.path}: another filesystem is mounted there")
                else:
                    stack.append((entry.path, False))
