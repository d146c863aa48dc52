"""Build tiny OCI image layouts from the host's static busybox, offline.

Tests and the dev environment need real images (a workload and a pause
image) without touching a registry.  The result is an OCI image layout that
``skopeo copy oci:DIR:TAG ...`` can push into containerd or CRI-O.  Every byte
is deterministic, so digests are stable across runs and hosts with the same
busybox binary.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import struct
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nodeagent.oci.reference import InvalidReferenceError, is_valid_tag, parse_reference

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
# containerd's importer names images after this annotation when present.
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_PATH = Path("/bin/busybox")
EPOCH = "1970-01-01T00:00:00Z"

# Go's GOARCH names, which is what image configs and platform matching use.
GOARCH_BY_MACHINE = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

# (path, mode) of the skeleton directories; parents are listed explicitly so
# the tar never relies on an extractor inventing them with its own mode.
ROOTFS_DIRS: tuple[tuple[str, int], ...] = (
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sbin", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("var", 0o755),
    ("var/www", 0o755),
)
ETC_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
ETC_GROUP = "root:x:0:\nnogroup:x:65534:\n"

# PID 1 of a pid namespace ignores signals it has no handler for, so the
# trap is what makes SIGTERM stop the sandbox promptly instead of only
# SIGKILL after the grace period.  `wait` returns as soon as a trapped signal
# arrives; killing the sleeper matters only when not PID 1 of a namespace.
PAUSE_SCRIPT = (
    "trap 'kill $! 2>/dev/null; exit 0' TERM INT; "
    "while :; do sleep 2147483647 & wait; done"
)


class LayoutError(Exception):
    """The layout could not be built or the destination is not usable."""


class BusyboxError(LayoutError):
    """The busybox binary is missing, not runnable or not statically linked."""


@dataclass(frozen=True)
class ImageSpec:
    """What goes into the image config; the rootfs is always busybox."""

    name: str
    tag: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = (DEFAULT_PATH_ENV,)
    working_dir: str = "/"
    # Pairs rather than a dict so the spec stays hashable and ordered.
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str | None = None

    @property
    def reference(self) -> str:
        """Fully qualified name containerd will store the image under."""
        return str(parse_reference(f"{self.name}:{self.tag}"))


@dataclass(frozen=True)
class BuiltImage:
    """Where an image landed; ``oci:{layout_dir}:{ref}`` addresses it for skopeo."""

    layout_dir: Path
    ref: str
    manifest_digest: str
    config_digest: str
    layer_digest: str
    # Uncompressed layer digest (rootfs.diff_ids[0]), what snapshotters key on.
    diff_id: str
    manifest_size: int
    # Total blob bytes (manifest + config + layer), for comparing with the
    # size the runtime reports once the image is imported.
    size: int

    @property
    def transport_ref(self) -> str:
        return f"oci:{self.layout_dir}:{self.ref}"


BUSYBOX = ImageSpec("busybox", "1.35", cmd=("sh",))
PAUSE = ImageSpec("pause", "3.10", entrypoint=("/bin/sh", "-c", PAUSE_SCRIPT))


def build_layout(spec: ImageSpec, dest: Path, busybox: Path = BUSYBOX_PATH) -> BuiltImage:
    """Write ``spec`` into the OCI layout at ``dest``, replacing any image with the same tag."""
    if not is_valid_tag(spec.tag):
        raise LayoutError(f"invalid tag {spec.tag!r} for image {spec.name!r}")
    try:
        full_name = spec.reference
    except InvalidReferenceError as exc:
        raise LayoutError(f"invalid image name {spec.name!r}: {exc}") from exc

    layer_tar = build_rootfs_tar(busybox)
    diff_id = _digest(layer_tar)
    layer = _gzip(layer_tar)
    config = _canonical_json(_image_config(spec, diff_id))
    manifest = _canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": _descriptor(MEDIA_TYPE_CONFIG, config),
            "layers": [_descriptor(MEDIA_TYPE_LAYER_GZIP, layer)],
        }
    )

    dest.mkdir(parents=True, exist_ok=True)
    _ensure_oci_layout_file(dest)
    for blob in (layer, config, manifest):
        _write_blob(dest, blob)
    manifest_descriptor = _descriptor(MEDIA_TYPE_MANIFEST, manifest)
    manifest_descriptor["annotations"] = {
        ANNOTATION_CONTAINERD_NAME: full_name,
        ANNOTATION_REF_NAME: spec.tag,
    }
    manifest_descriptor["platform"] = {"architecture": host_goarch(), "os": "linux"}
    _update_index(dest, spec.tag, manifest_descriptor)

    return BuiltImage(
        layout_dir=dest,
        ref=spec.tag,
        manifest_digest=_digest(manifest),
        config_digest=_digest(config),
        layer_digest=_digest(layer),
        diff_id=diff_id,
        manifest_size=len(manifest),
        size=len(manifest) + len(config) + len(layer),
    )


def build_rootfs_tar(busybox: Path = BUSYBOX_PATH) -> bytes:
    """The uncompressed, byte-for-byte reproducible rootfs layer."""
    data = _read_static_busybox(busybox)
    applets = busybox_applets(busybox)

    entries: dict[str, tarfile.TarInfo] = {}
    payloads: dict[str, bytes] = {}
    for path, mode in ROOTFS_DIRS:
        entries[path] = _tarinfo(path, tarfile.DIRTYPE, mode)
    for path, content in (("etc/passwd", ETC_PASSWD), ("etc/group", ETC_GROUP)):
        payloads[path] = content.encode()
        entries[path] = _tarinfo(path, tarfile.REGTYPE, 0o644, size=len(payloads[path]))
    payloads["bin/busybox"] = data
    entries["bin/busybox"] = _tarinfo("bin/busybox", tarfile.REGTYPE, 0o755, size=len(data))
    for applet in applets:
        parent = str(PurePosixPath(applet).parent)
        if parent != "." and parent not in entries:
            raise BusyboxError(f"applet {applet!r} lives outside the rootfs skeleton")
        entries.setdefault(applet, _tarinfo(applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox"))

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            payload = payloads.get(path)
            tar.addfile(entries[path], io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def busybox_applets(busybox: Path = BUSYBOX_PATH) -> list[str]:
    """Install paths from ``busybox --list-full``, minus busybox itself."""
    try:
        result = subprocess.run(
            [str(busybox), "--list-full"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BusyboxError(f"cannot list applets of {busybox}: {exc}") from exc
    applets = []
    for line in result.stdout.splitlines():
        path = line.strip()
        if not path or path == "bin/busybox":
            continue
        parts = PurePosixPath(path).parts
        if path.startswith("/") or ".." in parts or "." in parts:
            raise BusyboxError(f"unexpected applet path {path!r} from {busybox}")
        applets.append(path)
    if "bin/sh" not in applets:
        raise BusyboxError(f"{busybox} has no sh applet")
    return sorted(applets)


def host_goarch() -> str:
    machine = platform.machine()
    try:
        return GOARCH_BY_MACHINE[machine]
    except KeyError:
        raise LayoutError(f"no OCI architecture known for machine {machine!r}") from None


def _image_config(spec: ImageSpec, diff_id: str) -> dict[str, object]:
    config: dict[str, object] = {"Env": list(spec.env), "WorkingDir": spec.working_dir}
    # Empty lists are omitted (as docker does): an explicit [] Entrypoint is
    # not the same as none to every runtime.
    if spec.entrypoint:
        config["Entrypoint"] = list(spec.entrypoint)
    if spec.cmd:
        config["Cmd"] = list(spec.cmd)
    if spec.labels:
        config["Labels"] = dict(spec.labels)
    if spec.stop_signal is not None:
        config["StopSignal"] = spec.stop_signal
    return {
        "created": EPOCH,
        "architecture": host_goarch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": "nodeagent.oci.layout: busybox rootfs"}],
    }


def _read_static_busybox(busybox: Path) -> bytes:
    """Read the binary, refusing a dynamic one: it would not run in the image."""
    try:
        data = busybox.read_bytes()
    except OSError as exc:
        raise BusyboxError(f"cannot read {busybox}: {exc}") from exc
    if _elf_has_interpreter(data, busybox):
        raise BusyboxError(
            f"{busybox} is dynamically linked; install Debian's busybox-static"
        )
    return data


def _elf_has_interpreter(data: bytes, path: Path) -> bool:
    """True if the ELF has a PT_INTERP program header (i.e. needs ld.so)."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise BusyboxError(f"{path} is not an ELF executable")
    is_64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is_64:
        (phoff,) = struct.unpack_from(endian + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 54)
    else:
        (phoff,) = struct.unpack_from(endian + "I", data, 28)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 42)
    pt_interp = 3
    for i in range(phnum):
        offset = phoff + i * phentsize
        if offset + 4 > len(data):
            raise BusyboxError(f"{path} has a truncated ELF program header table")
        (p_type,) = struct.unpack_from(endian + "I", data, offset)
        if p_type == pt_interp:
            return True
    return False


def _tarinfo(path: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = link
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _gzip(data: bytes) -> bytes:
    # An empty filename and mtime 0 keep the gzip header free of build facts.
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def _canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _digest(blob), "size": len(blob)}


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file + rename, so readers never see a partial blob or index."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_blob(dest: Path, blob: bytes) -> None:
    path = dest / "blobs" / "sha256" / hashlib.sha256(blob).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Content-addressed: an existing blob with this name is already right
    # unless it was corrupted, which is cheap to rule out at these sizes.
    if path.is_file() and path.read_bytes() == blob:
        return
    _atomic_write(path, blob)


def _ensure_oci_layout_file(dest: Path) -> None:
    path = dest / "oci-layout"
    if path.exists():
        try:
            version = json.loads(path.read_bytes()).get("imageLayoutVersion")
        except (ValueError, AttributeError) as exc:
            raise LayoutError(f"{path} is not valid JSON: {exc}") from exc
        if version != "1.0.0":
            raise LayoutError(f"{path} has unsupported imageLayoutVersion {version!r}")
        return
    _atomic_write(path, _canonical_json({"imageLayoutVersion": "1.0.0"}))


def _update_index(dest: Path, ref: str, descriptor: dict[str, object]) -> None:
    path = dest / "index.json"
    manifests: list[dict[str, object]] = []
    if path.exists():
        try:
            index = json.loads(path.read_bytes())
            manifests = list(index["manifests"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LayoutError(f"{path} is not an OCI image index: {exc}") from exc
    position = len(manifests)
    kept: list[dict[str, object]] = []
    for existing in manifests:
        annotations = existing.get("annotations") if isinstance(existing, dict) else None
        if isinstance(annotations, dict) and annotations.get(ANNOTATION_REF_NAME) == ref:
            position = min(position, len(kept))
            continue
        kept.append(existing)
    # Replace in place (keeps index order stable across rebuilds), else append.
    kept.insert(position, descriptor)
    index = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": kept}
    _atomic_write(path, _canonical_json(index))
