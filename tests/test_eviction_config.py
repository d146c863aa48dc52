"""Eviction thresholds from KubeletConfiguration files and kubelet flags:
defaults, replacement/merge rules, and errors that name the field."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from nodeagent.api.quantity import Quantity
from nodeagent.config import ConfigError, build_config, load_config_file
from nodeagent.eviction.thresholds import (
    DEFAULT_EVICTION_HARD, EvictionSettings, eviction_config, hard_eviction_reservation,
    parse_eviction_settings,
    parse_flag_map,
)

NODEAGENT = [str(Path(sys.executable).with_name("nodeagent"))]


def _config_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "kubelet.yaml"
    path.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n" + body)
    return str(path)


def _by_signal(cfg) -> dict[str, str]:
    return {t.signal: str(t.value) for t in cfg.thresholds}


def test_defaults_are_the_kubelets_linux_hard_thresholds() -> None:
    cfg = eviction_config(build_config({}, {}))
    assert _by_signal(cfg) == DEFAULT_EVICTION_HARD == {
        "memory.available": "100Mi", "nodefs.available": "10%",
        "nodefs.inodesFree": "5%", "imagefs.available": "15%"}
    assert all(t.hard for t in cfg.thresholds)
    assert cfg.pressure_transition_period == 300 and cfg.max_pod_grace_period == 0


def test_eviction_hard_replaces_the_defaults_unless_merge_is_asked(tmp_path: Path) -> None:
    path = _config_file(tmp_path, "evictionHard:\n  memory.available: 1Gi\n")
    cfg = eviction_config(build_config(load_config_file(path), {}))
    assert _by_signal(cfg) == {"memory.available": "1Gi"}

    path = _config_file(tmp_path, "evictionHard:\n  memory.available: 1Gi\n"
                                  "mergeDefaultEvictionSettings: true\n")
    cfg = eviction_config(build_config(load_config_file(path), {}))
    assert _by_signal(cfg) == {**DEFAULT_EVICTION_HARD, "memory.available": "1Gi"}


def test_full_config_file_with_soft_thresholds(tmp_path: Path) -> None:
    path = _config_file(tmp_path, """\
evictionHard: {memory.available: 200Mi, nodefs.available: "0%"}
evictionSoft: {memory.available: 500Mi, pid.available: "10%"}
evictionSoftGracePeriod: {memory.available: 1m30s, pid.available: 10s}
evictionMinimumReclaim: {memory.available: 100Mi, pid.available: "1%"}
evictionPressureTransitionPeriod: 30s
evictionMaxPodGracePeriod: 45
""")
    cfg = eviction_config(build_config(load_config_file(path), {}))
    got = {(t.signal, t.hard): (str(t.value), t.grace_period, str(t.min_reclaim) if t.min_reclaim else None)
           for t in cfg.thresholds}
    # "0%" switches a signal off, as the kubelet's parser does.
    assert got == {("memory.available", True): ("200Mi", 0, "100Mi"),
                   ("memory.available", False): ("500Mi", 90, "100Mi"),
                   ("pid.available", False): ("10%", 10, "1%")}
    assert cfg.pressure_transition_period == 30 and cfg.max_pod_grace_period == 45
    assert cfg.hard_threshold("memory.available").value.resolve(0) == 200 * 2**20


def test_percentages_are_float32_like_the_kubelets() -> None:
    cfg = parse_eviction_settings(EvictionSettings(hard={"nodefs.available": "10%"}))
    # Go: int64(float64(capacity) * float64(float32(0.1))) -> 107374184, not 107374182.
    f32 = struct.unpack("f", struct.pack("f", 0.1))[0]
    assert cfg.thresholds[0].value.resolve(2**30) == int(2**30 * f32) == 107374184
    assert cfg.thresholds[0].value.resolve(1000) == 100


@pytest.mark.parametrize(("settings", "error"), [
    (EvictionSettings(hard={"memory.avail": "1Gi"}),
     "evictionHard (--eviction-hard): unsupported eviction signal 'memory.avail'"),
    (EvictionSettings(hard={"allocatableMemory.available": "1Gi"}),
     "evictionHard[allocatableMemory.available] (--eviction-hard): eviction signal "
     "'allocatableMemory.available' is not supported by nodeagent"),
    (EvictionSettings(hard={"memory.available": "lots"}),
     "evictionHard[memory.available] (--eviction-hard): invalid quantity 'lots'"),
    (EvictionSettings(hard={"memory.available": "0"}),
     "evictionHard[memory.available] (--eviction-hard): eviction threshold must be positive: 0"),
    (EvictionSettings(hard={"nodefs.available": "101%"}),
     "evictionHard[nodefs.available] (--eviction-hard): eviction percentage threshold must be <= 100%"),
    (EvictionSettings(hard={"nodefs.available": "-1%"}),
     "must be >= 0%"),
    (EvictionSettings(hard={"nodefs.available": "ten%"}),
     "evictionHard[nodefs.available] (--eviction-hard): invalid percentage 'ten%'"),
    (EvictionSettings(soft={"memory.available": "1Gi"}),
     "evictionSoftGracePeriod (--eviction-soft-grace-period): grace period must be specified "
     "for the soft eviction threshold memory.available"),
    (EvictionSettings(soft={"memory.available": "1Gi"}, soft_grace_period={"memory.available": "soon"}),
     "evictionSoftGracePeriod[memory.available] (--eviction-soft-grace-period): invalid duration 'soon'"),
    (EvictionSettings(minimum_reclaim={"memory.available": "-1Mi"}),
     "evictionMinimumReclaim[memory.available] (--eviction-minimum-reclaim): negative eviction minimum reclaim"),
    (EvictionSettings(minimum_reclaim={"memory.available": "0%"}),
     "eviction percentage minimum reclaim must be positive"),
    (EvictionSettings(hard={"memory.available": 100}),
     "evictionHard[memory.available] (--eviction-hard): expected a string"),
    (EvictionSettings(pressure_transition_period=-1),
     "evictionPressureTransitionPeriod (--eviction-pressure-transition-period): must be >= 0"),
])
def test_bad_settings_name_the_field(settings: EvictionSettings, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_eviction_settings(settings)
    assert error in str(exc.value)


def test_config_file_type_errors_are_clear(tmp_path: Path) -> None:
    path = _config_file(tmp_path, "evictionHard: [memory.available]\n")
    with pytest.raises(ConfigError, match=r"evictionHard: expected a map of strings"):
        build_config(load_config_file(path), {})
    path = _config_file(tmp_path, "evictionHard: {memory.available: 1Gi}\nevictionSoft: null\n")
    assert _by_signal(eviction_config(build_config(load_config_file(path), {}))) == {
        "memory.available": "1Gi"}


def test_flag_maps_use_the_kubelet_syntax() -> None:
    assert parse_flag_map("--eviction-hard", "memory.available<100Mi, nodefs.available<10%", "<") == {
        "memory.available": "100Mi", "nodefs.available": "10%"}
    assert parse_flag_map("--eviction-soft-grace-period", "memory.available=1m30s", "=") == {
        "memory.available": "1m30s"}
    with pytest.raises(ConfigError, match=r"--eviction-hard: 'memory.available=1Gi' is not of "
                                          r"the form signal<value"):
        parse_flag_map("--eviction-hard", "memory.available=1Gi", "<")


def test_cli_flags_override_the_file_and_errors_are_messages(tmp_path: Path) -> None:
    path = _config_file(tmp_path, "evictionHard: {memory.available: 1Gi}\n")
    cfg = build_config(load_config_file(path), {"eviction_hard": {"memory.available": "2Gi"}})
    assert eviction_config(cfg).thresholds[0].value.quantity == Quantity("2Gi")

    result = subprocess.run([*NODEAGENT, "run", "--config", path, "--eviction-hard",
                             "memory.available<1Gi,nodefs.available<200%"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert ("nodeagent: error: evictionHard[nodefs.available] (--eviction-hard): eviction "
            "percentage threshold must be <= 100%: 200%") in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run([*NODEAGENT, "run", "--eviction-soft", "memory.available<1Gi"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "grace period must be specified" in result.stderr


def test_hard_eviction_reservation_for_node_allocatable() -> None:
    cfg = eviction_config(build_config({}, {}))
    assert hard_eviction_reservation(cfg, {"memory": 8 * 2**30, "ephemeral-storage": 1000}) == {
        "memory": 100 * 2**20, "ephemeral-storage": 100}
    soft_only = parse_eviction_settings(EvictionSettings(
        hard={}, soft={"memory.available": "1Gi"}, soft_grace_period={"memory.available": "1m"}))
    assert hard_eviction_reservation(soft_only, {"memory": 8 * 2**30}) == {}
