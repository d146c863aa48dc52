"""The wheel carries the systemd files `nodeagent install` writes, and an
installed wheel (not this checkout) finds them: built offline from a copy of
the tree, installed into a fresh virtualenv, `nodeagent install` run from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNIT_FILES = ["nodeagent.service", "nodeagent.service.d/10-nodeagent.conf", "default", "config.yaml"]
INSTALLED_AS = {
    "nodeagent.service": "etc/systemd/system/nodeagent.service",
    "nodeagent.service.d/10-nodeagent.conf": "etc/systemd/system/nodeagent.service.d/10-nodeagent.conf",
    "default": "etc/default/nodeagent",
    "config.yaml": "etc/nodeagent/config.yaml",
}


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, f"{argv}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result


def test_one_copy_of_the_unit_files() -> None:
    """nodeagent/systemd is the top-level systemd/ itself, not a second copy."""
    link = REPO / "nodeagent" / "systemd"
    assert link.is_symlink() and os.readlink(link) == "../systemd"


def test_wheel_ships_the_unit_files_and_install_finds_them(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ and egg-info there
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copytree(REPO / "systemd", src / "systemd")
    shutil.copytree(REPO / "nodeagent", src / "nodeagent", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          str(src), "-w", str(tmp_path / "dist")])
    wheel = next((tmp_path / "dist").glob("nodeagent-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        for name in UNIT_FILES:
            assert zf.read(f"nodeagent/systemd/{name}") == (REPO / "systemd" / name).read_bytes(), name

    # A fresh venv with the wheel; the dependencies come from this .venv's
    # site-packages through a .pth line (no index needed, and the .venv's
    # editable nodeagent is not seen: .pth files there are not processed).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
          "--no-compile", str(wheel)])
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    (site / "zz-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = _run([str(python), "-c", "import nodeagent.install as i; print(i.__file__); print(i.SHIPPED)"],
                 cwd=tmp_path).stdout.split()
    assert where[0] == str(site / "nodeagent" / "install.py") and where[1] == str(site / "nodeagent" / "systemd")

    nodeagent = str(venv / "bin" / "nodeagent")
    prefix = tmp_path / "root"
    dry = _run([nodeagent, "install", "--dry-run", "--prefix", str(prefix)], cwd=tmp_path)
    for name, dest in INSTALLED_AS.items():
        assert f"{prefix / dest}: would create" in dry.stdout, dry.stdout
    assert not prefix.exists()
    _run([nodeagent, "install", "--prefix", str(prefix)], cwd=tmp_path)
    for name, dest in INSTALLED_AS.items():
        assert (prefix / dest).read_bytes() == (REPO / "systemd" / name).read_bytes(), dest
    assert os.readlink(prefix / "usr/local/bin/nodeagent") == nodeagent
