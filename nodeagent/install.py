"""`nodeagent install`: the systemd unit, its drop-in, the example
/etc/default/nodeagent and config, and the CNI plugin, put in place
idempotently. Files the administrator owns (/etc/default/nodeagent,
config.yaml) are written only when absent; the installer's own files are
rewritten when they differ.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from nodeagent.netns.manager import PLUGIN_NAME, plugin_source

# The unit files: package data in a wheel; in a checkout nodeagent/systemd is a
# symlink to the top-level systemd/ (one copy, see pyproject.toml).
SHIPPED = Path(__file__).resolve().parent / "systemd"
BIN_PATH = "usr/local/bin/nodeagent"  # the unit's ExecStart


class InstallError(Exception):
    """Something the installer cannot do; the message names the path."""


@dataclass(frozen=True)
class Item:
    dest: str  # relative to the prefix
    content: bytes | None  # None: a symlink to `link`
    mode: int = 0o644
    keep_existing: bool = False  # the administrator's file once it exists
    link: str = ""


def _shipped(name: str) -> bytes:
    try:
        return (SHIPPED / name).read_bytes()
    except OSError as exc:
        raise InstallError(f"shipped file {SHIPPED / name} not readable: {exc.strerror} "
                           "(this nodeagent installation is incomplete: reinstall the package)") from None


def plan(cni_bin_dir: str = "/opt/cni/bin") -> list[Item]:
    return [
        Item("etc/systemd/system/nodeagent.service", _shipped("nodeagent.service")),
        Item("etc/systemd/system/nodeagent.service.d/10-nodeagent.conf",
             _shipped("nodeagent.service.d/10-nodeagent.conf")),
        Item("etc/default/nodeagent", _shipped("default"), keep_existing=True),
        Item("etc/nodeagent/config.yaml", _shipped("config.yaml"), keep_existing=True),
        Item(f"{cni_bin_dir.strip('/')}/{PLUGIN_NAME}", plugin_source().encode(), mode=0o755),
        # The unit runs /usr/local/bin/nodeagent: point it at this installation unless one is there.
        Item(BIN_PATH, None, keep_existing=True, link=str(Path(sysconfig.get_path("scripts")) / "nodeagent")),
    ]


def _action(item: Item, path: Path) -> str:
    """What installing `item` at `path` would do."""
    if item.content is None:
        if not path.exists() and not path.is_symlink():
            return "create"
        if path.is_symlink() and os.readlink(path) == item.link:
            return "unchanged"
        return "keep"
    if not path.exists():
        return "create"
    if item.keep_existing:
        return "keep"
    same = path.read_bytes() == item.content and (path.stat().st_mode & 0o7777) == item.mode
    return "unchanged" if same else "update"


def _write(item: Item, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(f".{path.name}.nodeagent-tmp")
    if item.content is None:
        tmp.unlink(missing_ok=True)
        os.symlink(item.link, tmp)
    else:
        tmp.write_bytes(item.content)
        os.chmod(tmp, item.mode)
    os.replace(tmp, path)  # whole or not at all: systemd never reads half a unit


_WORDS = {"create": ("created", "would create"), "update": ("updated", "would update"),
          "unchanged": ("unchanged", "unchanged"),
          "keep": ("kept (exists; yours to edit)", "kept (exists; yours to edit)")}


def install(prefix: Path, *, dry_run: bool = False, cni_bin_dir: str = "/opt/cni/bin") -> list[str]:
    """One line per file: `<path>: created|updated|unchanged|kept ...`."""
    lines = []
    for item in plan(cni_bin_dir):
        path = prefix / item.dest
        try:
            action = _action(item, path)
            if not dry_run and action in ("create", "update"):
                _write(item, path)
        except OSError as exc:
            raise InstallError(f"{path}: {exc.strerror or exc}") from None
        lines.append(f"{path}: {_WORDS[action][1 if dry_run else 0]}")
    return lines
