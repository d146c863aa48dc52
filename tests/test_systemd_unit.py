"""The shipped systemd files (systemd-analyze verify, the ExecStart command
line they add up to) and `nodeagent install` (modes, idempotence, dry run)."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

from nodeagent.cli import _RUN_FLAGS, build_parser
from nodeagent.config import build_config, load_config_file
from nodeagent.netns.manager import plugin_source
from tests.agentproc import NODEAGENT

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "systemd"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
UNIT_EXEC = "/usr/local/bin/nodeagent"


def verify(unit_dir: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` without a running systemd (PID 1 here is not):
    the unit and its drop-in dir are copied into `unit_dir`, which
    SYSTEMD_UNIT_PATH puts first (the trailing ':' keeps the system paths for
    sysinit.target & co; containerd.service need not exist: Wants= does not
    fail verify, and no installed nodeagent.service can shadow the copy);
    --man=no skips the Documentation= man-page lookup. verify checks that
    ExecStart's binary is executable, so the copy runs this tree's
    `nodeagent` instead of /usr/local/bin/nodeagent. Unknown keys only warn
    (exit 0): any output counts as a failure too."""
    return subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", str(unit_dir / "nodeagent.service")],
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:", "SYSTEMD_LOG_COLOR": "0"},
                          capture_output=True, text=True, timeout=60)


def unit_copy(tmp_path: Path) -> Path:
    unit_dir = tmp_path / "units"
    shutil.copytree(SHIPPED / "nodeagent.service.d", unit_dir / "nodeagent.service.d")
    text = (SHIPPED / "nodeagent.service").read_text()
    assert f"ExecStart={UNIT_EXEC} " in text
    (unit_dir / "nodeagent.service").write_text(text.replace(UNIT_EXEC, NODEAGENT))
    return unit_dir


def test_unit_verifies(tmp_path: Path) -> None:
    result = verify(unit_copy(tmp_path))
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        f"systemd-analyze verify failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def test_verify_catches_mistakes(tmp_path: Path) -> None:
    """The check above can fail: a typo in the drop-in, a missing binary."""
    unit_dir = unit_copy(tmp_path)
    dropin = unit_dir / "nodeagent.service.d" / "10-nodeagent.conf"
    dropin.write_text(dropin.read_text() + "WatchdogSecs=30s\n")
    result = verify(unit_dir)
    assert "Unknown key" in result.stderr and "WatchdogSecs" in result.stderr, result.stderr
    unit = unit_dir / "nodeagent.service"
    unit.write_text(unit.read_text().replace(NODEAGENT, str(tmp_path / "missing")))
    assert verify(unit_dir).returncode != 0


def _setting(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_unit_settings() -> None:
    unit = (SHIPPED / "nodeagent.service").read_text()
    want = {"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30s", "Restart": "always",
            "RestartSec": "5", "KillMode": "process", "OOMScoreAdjust": "-999", "LimitNOFILE": "1048576",
            "EnvironmentFile": "-/etc/default/nodeagent", "ExecReload": "/bin/kill -HUP $MAINPID",
            "TimeoutStopSec": "90s"}
    for key, value in want.items():
        assert _setting(unit, key) == [value], key
    assert "containerd.service" in _setting(unit, "After")[0] and "network-online.target" in _setting(unit, "After")[0]
    assert "containerd.service" in _setting(unit, "Wants")[0]
    assert not _setting(unit, "Delegate")


def test_exec_start_command_line_is_accepted(tmp_path: Path) -> None:
    """What systemd runs — ExecStart with the drop-in's NODEAGENT_ARGS and the
    default file's NODEAGENT_EXTRA_ARGS split on whitespace ($VAR) — parses,
    and with the shipped config.yaml builds a valid configuration."""
    unit = (SHIPPED / "nodeagent.service").read_text()
    dropin = (SHIPPED / "nodeagent.service.d" / "10-nodeagent.conf").read_text()
    env = dict(shlex.split(e)[0].split("=", 1) for e in _setting(dropin, "Environment"))
    for line in (SHIPPED / "default").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key] = shlex.split(value)[0] if value.strip('"') else ""
    env["NODEAGENT_EXTRA_ARGS"] = "--node-ip=10.0.0.5"  # as an administrator would set it
    argv = []
    for word in shlex.split(_setting(unit, "ExecStart")[0]):
        argv.extend(env.get(word[1:], "").split() if word.startswith("$") else [word])
    assert argv[0] == UNIT_EXEC and argv[1] == "run"
    config_path = argv[argv.index("--config") + 1]
    assert config_path == "/etc/nodeagent/config.yaml"
    args = build_parser().parse_args(argv[1:])
    config = build_config(load_config_file(str(SHIPPED / "config.yaml")), {k: getattr(args, k) for k in _RUN_FLAGS})
    assert config.node_ip == "10.0.0.5" and config.root_dir == "/var/lib/kubelet"
    assert config.static_pod_path == "/etc/kubernetes/manifests"
    assert config.container_runtime_endpoint == "unix:///run/containerd/containerd.sock"


def _install(prefix: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NODEAGENT, "install", "--prefix", str(prefix), *extra],
                          capture_output=True, text=True, timeout=60)


def _tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.lstat().st_mode, p.read_bytes() if p.is_file() and not p.is_symlink()
                                       else os.readlink(p).encode() if p.is_symlink() else b"")
            for p in sorted(root.rglob("*"))}


def test_install_places_files_idempotently(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    first = _install(prefix)
    assert first.returncode == 0, first.stderr
    expected = {
        "etc/systemd/system/nodeagent.service": (0o644, SHIPPED / "nodeagent.service"),
        "etc/systemd/system/nodeagent.service.d/10-nodeagent.conf":
            (0o644, SHIPPED / "nodeagent.service.d" / "10-nodeagent.conf"),
        "etc/default/nodeagent": (0o644, SHIPPED / "default"),
        "etc/nodeagent/config.yaml": (0o644, SHIPPED / "config.yaml"),
    }
    for rel, (mode, source) in expected.items():
        path = prefix / rel
        assert stat.S_IMODE(path.stat().st_mode) == mode, rel
        assert path.read_bytes() == source.read_bytes(), rel
        assert f"{path}: created" in first.stdout
    plugin = prefix / "opt/cni/bin/nodeagent"
    assert stat.S_IMODE(plugin.stat().st_mode) == 0o755 and plugin.read_text() == plugin_source()
    assert subprocess.run([str(plugin)], input="", capture_output=True, text=True,
                          env={"CNI_COMMAND": "VERSION"}, timeout=30).returncode == 0  # it runs
    link = prefix / "usr/local/bin/nodeagent"
    assert link.is_symlink() and os.readlink(link) == NODEAGENT
    before = _tree(prefix)

    second = _install(prefix)
    assert second.returncode == 0, second.stderr
    lines = second.stdout.strip().splitlines()
    assert len(lines) == 6, second.stdout
    for line in lines:
        assert line.endswith(": unchanged") or line.endswith(": kept (exists; yours to edit)"), line
    assert f"{prefix / 'etc/default/nodeagent'}: kept" in second.stdout
    assert _tree(prefix) == before


def test_install_keeps_the_administrators_files_and_repairs_its_own(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    config = prefix / "etc/nodeagent/config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("# mine\n")
    unit = prefix / "etc/systemd/system/nodeagent.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    os.chmod(unit, 0o600)
    result = _install(prefix, "--cni-bin-dir", "/usr/lib/cni")
    assert result.returncode == 0, result.stderr
    assert config.read_text() == "# mine\n"
    assert unit.read_bytes() == (SHIPPED / "nodeagent.service").read_bytes()
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert f"{unit}: updated" in result.stdout
    assert (prefix / "usr/lib/cni/nodeagent").exists() and not (prefix / "opt").exists()


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    result = _install(prefix, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would create" in result.stdout and "nodeagent.service" in result.stdout
    assert not prefix.exists()
    _install(prefix)
    unit = prefix / "etc/systemd/system/nodeagent.service"
    unit.write_text("changed\n")
    before = _tree(prefix)
    result = _install(prefix, "--dry-run")
    assert f"{unit}: would update" in result.stdout
    assert _tree(prefix) == before


def test_install_error_is_a_message(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    prefix.mkdir()
    (prefix / "etc").write_text("a file where a directory belongs\n")
    result = _install(prefix)
    assert result.returncode == 1
    assert result.stderr.startswith("nodeagent: error: ") and "Traceback" not in result.stderr
