"""The generated layouts must be real images: skopeo reads them and they run."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.oci.layout import (
    BUSYBOX,
    BUSYBOX_PATH,
    PAUSE,
    BuiltImage,
    BusyboxError,
    ImageSpec,
    LayoutError,
    build_layout,
)

INSTALL_HINT = "run hack/install-deps (needs skopeo and Debian's busybox-static)"


@pytest.fixture(scope="module", autouse=True)
def prerequisites() -> None:
    """Fail, never skip: a missing tool must not turn into a green run."""
    missing = [tool for tool in ("skopeo", "unshare", "chroot", "tar") if shutil.which(tool) is None]
    if not BUSYBOX_PATH.is_file():
        missing.append(str(BUSYBOX_PATH))
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: {INSTALL_HINT}")
    if os.geteuid() != 0:
        pytest.fail("these tests chroot and unshare, so they must run as root")


def _scratch() -> Iterator[Path]:
    # Not tmp_path: pytest keeps old ones around, and rootfs copies add up.
    path = Path(tempfile.mkdtemp(prefix="nodeagent-oci-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def scratch() -> Iterator[Path]:
    yield from _scratch()


@pytest.fixture(scope="module")
def layout() -> Iterator[dict[str, BuiltImage]]:
    for dest in _scratch():
        yield {spec.name: build_layout(spec, dest) for spec in (BUSYBOX, PAUSE)}


def skopeo(*args: str) -> bytes:
    result = subprocess.run(["skopeo", *args], capture_output=True, timeout=60)
    assert result.returncode == 0, f"skopeo {' '.join(args)} failed: {result.stderr.decode()}"
    return result.stdout


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_path(image: BuiltImage) -> Path:
    return image.layout_dir / "blobs" / "sha256" / image.layer_digest.removeprefix("sha256:")


def extract_rootfs(image: BuiltImage, dest: Path) -> Path:
    root = dest / "rootfs"
    root.mkdir()
    subprocess.run(
        ["tar", "-xzpf", str(layer_path(image)), "--numeric-owner", "-C", str(root)], check=True
    )
    # Mount point for the host's /dev/null; the runtime provides /dev in a
    # real container, and busybox sh needs it for background jobs.
    (root / "dev" / "null").touch()
    return root


def rootfs_command(root: Path, argv: list[str] | tuple[str, ...]) -> list[str]:
    """Run argv chrooted in a fresh pid+mount namespace; mounts die with it."""
    setup = 'root=$1; shift; mount --bind /dev/null "$root/dev/null" && exec chroot "$root" "$@"'
    return [
        "unshare", "--pid", "--fork", f"--mount-proc={root / 'proc'}",
        "/bin/sh", "-c", setup, "sh", str(root), *argv,
    ]  # fmt: skip


@pytest.mark.parametrize("spec", [BUSYBOX, PAUSE], ids=lambda s: s.name)
def test_skopeo_reads_layout(spec: ImageSpec, layout: dict[str, BuiltImage], scratch: Path) -> None:
    image = layout[spec.name]
    ref = f"oci:{image.layout_dir}:{image.ref}"
    assert image.ref == spec.tag
    assert image.transport_ref == ref

    info = json.loads(skopeo("inspect", ref))
    assert info["Digest"] == image.manifest_digest
    assert info["Layers"] == [image.layer_digest]
    assert info["Os"] == "linux"
    assert info["Env"] == list(spec.env)

    raw_manifest = skopeo("inspect", "--raw", ref)
    assert sha256(raw_manifest) == image.manifest_digest
    assert len(raw_manifest) == image.manifest_size
    raw_config = skopeo("inspect", "--raw", "--config", ref)
    assert sha256(raw_config) == image.config_digest

    config = json.loads(skopeo("inspect", "--config", ref))
    assert config["architecture"] == info["Architecture"]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [image.diff_id]}
    assert config["config"].get("Entrypoint", []) == list(spec.entrypoint)
    assert config["config"].get("Cmd", []) == list(spec.cmd)
    assert config["config"]["WorkingDir"] == spec.working_dir

    # A copy verifies every blob against its digest on the way.
    out = scratch / "copy"
    skopeo("--insecure-policy", "copy", "--quiet", ref, f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == raw_manifest
    blobs = [image.config_digest, image.layer_digest]
    sizes = sum((out / d.removeprefix("sha256:")).stat().st_size for d in blobs)
    assert sizes + image.manifest_size == image.size


def test_index_lists_both_refs(layout: dict[str, BuiltImage]) -> None:
    dest = layout["busybox"].layout_dir
    assert json.loads((dest / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((dest / "index.json").read_text())
    by_ref = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    assert set(by_ref) == {"1.35", "3.10"}
    assert by_ref["1.35"]["digest"] == layout["busybox"].manifest_digest
    assert by_ref["3.10"]["annotations"]["io.containerd.image.name"] == "docker.io/library/pause:3.10"
    # No temp files are left behind by the write-then-rename.
    leftovers = [p.name for p in dest.rglob(".*")]
    assert leftovers == []


def test_digests_reproducible_and_rebuild_replaces(scratch: Path, layout: dict[str, BuiltImage]) -> None:
    again = build_layout(BUSYBOX, scratch / "a")
    assert again.manifest_digest == layout["busybox"].manifest_digest
    assert again.layer_digest == layout["busybox"].layer_digest
    assert again.config_digest == layout["busybox"].config_digest

    changed = ImageSpec("busybox", "1.35", cmd=("sh", "-c", "true"))
    other = build_layout(changed, scratch / "a")
    assert other.manifest_digest != again.manifest_digest
    assert other.layer_digest == again.layer_digest
    index = json.loads((scratch / "a" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [other.manifest_digest]


def test_layer_contents(layout: dict[str, BuiltImage]) -> None:
    image = layout["busybox"]
    compressed = layer_path(image).read_bytes()
    assert compressed[4:8] == b"\0\0\0\0", "gzip header mtime must be zero"
    raw = gzip.decompress(compressed)
    assert sha256(raw) == image.diff_id

    with tarfile.open(layout_path := str(layer_path(image)), "r:gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names), f"{layout_path} entries are not sorted"
        assert len(names) == len(set(names))
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
        by_name = {m.name: m for m in members}

        sh = by_name["bin/sh"]
        assert sh.issym() and sh.linkname == "/bin/busybox"
        bb = by_name["bin/busybox"]
        assert bb.isreg() and bb.mode == 0o755
        extracted = tar.extractfile(bb)
        assert extracted is not None and extracted.read() == BUSYBOX_PATH.read_bytes()
        assert by_name["usr/bin/wget"].issym()
        assert by_name["tmp"].isdir() and by_name["tmp"].mode == 0o1777
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev", "var/www"):
            assert by_name[d].isdir(), d
        passwd = tar.extractfile(by_name["etc/passwd"])
        assert passwd is not None
        lines = passwd.read().decode().splitlines()
        assert lines[0] == "root:x:0:0:root:/root:/bin/sh"
        assert lines[1].startswith("nobody:x:65534:65534:")
        group = tar.extractfile(by_name["etc/group"])
        assert group is not None and group.read().decode().splitlines() == [
            "root:x:0:",
            "nogroup:x:65534:",
        ]
        assert "etc/hosts" not in by_name


def test_rootfs_runs_in_chroot(layout: dict[str, BuiltImage], scratch: Path) -> None:
    root = extract_rootfs(layout["busybox"], scratch)
    expected_bin = sorted(p.name for p in (root / "bin").iterdir())[:10]
    result = subprocess.run(
        rootfs_command(root, ["/bin/sh", "-c", "echo hi; ls /bin | head; id -u; readlink /bin/sh"]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["hi", *expected_bin, "0", "/bin/busybox"]


def test_pause_exits_zero_on_sigterm(layout: dict[str, BuiltImage], scratch: Path) -> None:
    root = extract_rootfs(layout["pause"], scratch)
    proc = subprocess.Popen(
        rootfs_command(root, PAUSE.entrypoint), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    pid1: int | None = None
    try:
        pid1 = wait_for_term_handler(proc.pid, PAUSE.entrypoint)
        # Still running: it really sleeps rather than exiting on its own.
        time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()
        os.kill(pid1, signal.SIGTERM)
        started = time.monotonic()
        out, err = proc.communicate(timeout=5)
        assert time.monotonic() - started < 2
        assert proc.returncode == 0, (out, err)
        assert err == b""
    finally:
        if proc.poll() is None:
            if pid1 is not None:
                os.kill(pid1, signal.SIGKILL)  # takes the whole namespace down
            proc.kill()
            proc.wait(timeout=10)


def wait_for_term_handler(unshare_pid: int, argv: tuple[str, ...], timeout: float = 10.0) -> int:
    """PID (host view) of the namespace's init once it has trapped SIGTERM.

    Signalling earlier would be a no-op: init ignores unhandled signals.
    """
    want_cmdline = "\0".join(argv) + "\0"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
            if children:
                pid = int(children[0])
                cmdline = Path(f"/proc/{pid}/cmdline").read_text()
                status = Path(f"/proc/{pid}/status").read_text()
                caught = int(next(l for l in status.splitlines() if l.startswith("SigCgt:")).split()[1], 16)
                if cmdline == want_cmdline and caught & (1 << (signal.SIGTERM - 1)):
                    return pid
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.01)
    raise AssertionError("pause entrypoint never installed its SIGTERM trap")


def test_dynamic_busybox_is_rejected(scratch: Path) -> None:
    dynamic = Path("/bin/ls")  # any dynamically linked ELF stands in
    with pytest.raises(BusyboxError, match="dynamically linked"):
        build_layout(BUSYBOX, scratch, busybox=dynamic)


@pytest.mark.parametrize(
    "spec",
    [ImageSpec("busybox", "-bad"), ImageSpec("Busybox", "1"), ImageSpec("busybox", "")],
    ids=["tag", "name", "empty-tag"],
)
def test_invalid_spec_rejected(spec: ImageSpec, scratch: Path) -> None:
    with pytest.raises(LayoutError):
        build_layout(spec, scratch)
    assert not (scratch / "index.json").exists()


def test_labels_and_stop_signal(scratch: Path) -> None:
    spec = ImageSpec(
        "localhost/web",
        "v1",
        entrypoint=("/bin/httpd", "-f"),
        labels=(("b", "2"), ("a", "1")),
        stop_signal="SIGQUIT",
        working_dir="/var/www",
    )
    image = build_layout(spec, scratch)
    config = json.loads(skopeo("inspect", "--config", f"oci:{scratch}:v1"))["config"]
    assert config["Labels"] == {"a": "1", "b": "2"}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["WorkingDir"] == "/var/www"
    assert "Cmd" not in config
    index = json.loads((scratch / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "localhost/web:v1"
    assert image.ref == "v1"
