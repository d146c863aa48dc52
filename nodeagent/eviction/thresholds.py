"""Eviction thresholds from the KubeletConfiguration, parsed as the kubelet does
(k8s pkg/kubelet/eviction/helpers.go ParseThresholdConfig, api/types.go).

A threshold is "signal < value", value a quantity ("100Mi") or a share of the
signal's capacity ("10%"). Hard thresholds have no grace period; soft ones
must have one. Errors name the KubeletConfiguration field (and its flag), so a
typo in a config file is reported where it was written.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from nodeagent.api.quantity import InvalidQuantityError, Quantity
from nodeagent.config import AgentConfig, ConfigError, parse_duration

MEMORY_AVAILABLE = "memory.available"
NODEFS_AVAILABLE = "nodefs.available"
NODEFS_INODES_FREE = "nodefs.inodesFree"
IMAGEFS_AVAILABLE = "imagefs.available"
IMAGEFS_INODES_FREE = "imagefs.inodesFree"
PID_AVAILABLE = "pid.available"

SIGNALS = (MEMORY_AVAILABLE, NODEFS_AVAILABLE, NODEFS_INODES_FREE, IMAGEFS_AVAILABLE,
           IMAGEFS_INODES_FREE, PID_AVAILABLE)
# Valid for the kubelet, not implemented here: refused by name rather than ignored.
_KUBELET_ONLY = {
    "allocatableMemory.available": "needs the pods cgroup's memory stats (enforceNodeAllocatable)",
    "containerfs.available": "only for a split image filesystem (CRI-O); use imagefs/nodefs",
    "containerfs.inodesFree": "only for a split image filesystem (CRI-O); use imagefs/nodefs",
}

# pkg/kubelet/eviction/defaults_linux.go DefaultEvictionHard.
DEFAULT_EVICTION_HARD = {
    MEMORY_AVAILABLE: "100Mi",
    NODEFS_AVAILABLE: "10%",
    NODEFS_INODES_FREE: "5%",
    IMAGEFS_AVAILABLE: "15%",
}
DEFAULT_PRESSURE_TRANSITION_PERIOD = 300.0  # evictionPressureTransitionPeriod: 5m

# The config fields, with the kubelet flag that sets each, for error messages.
FIELD_FLAGS = {
    "evictionHard": "--eviction-hard",
    "evictionSoft": "--eviction-soft",
    "evictionSoftGracePeriod": "--eviction-soft-grace-period",
    "evictionMinimumReclaim": "--eviction-minimum-reclaim",
    "evictionPressureTransitionPeriod": "--eviction-pressure-transition-period",
    "evictionMaxPodGracePeriod": "--eviction-max-pod-grace-period",
}


def _f32(x: float) -> float:
    """Round to float32: the kubelet keeps percentages as float32, and the
    rounding shows in the threshold bytes (10% of 1000 is 100, of 2^30 not 107374182)."""
    return struct.unpack("f", struct.pack("f", x))[0]


@dataclass(frozen=True)
class ThresholdValue:
    """A quantity, or a percentage (0..1, float32) of the signal's capacity."""
    quantity: Quantity | None = None
    percentage: float = 0.0

    def resolve(self, capacity: int) -> int:
        """GetThresholdQuantity: the amount this value means for a capacity."""
        if self.quantity is not None:
            return self.quantity.value()
        return int(float(capacity) * self.percentage)

    def __str__(self) -> str:
        if self.quantity is not None:
            return str(self.quantity)
        return f"{self.percentage * 100:g}%"


@dataclass(frozen=True)
class Threshold:
    """signal < value; grace_period 0 means hard (evict at once)."""
    signal: str
    value: ThresholdValue
    grace_period: float = 0.0
    min_reclaim: ThresholdValue | None = None

    @property
    def hard(self) -> bool:
        return self.grace_period == 0

    def __str__(self) -> str:
        kind = "hard" if self.hard else f"soft, grace {self.grace_period:g}s"
        return f"{self.signal}<{self.value} ({kind})"


@dataclass(frozen=True)
class EvictionConfig:
    """What the eviction manager enforces."""
    thresholds: tuple[Threshold, ...] = ()
    pressure_transition_period: float = DEFAULT_PRESSURE_TRANSITION_PERIOD
    max_pod_grace_period: int = 0

    def hard_threshold(self, signal: str) -> Threshold | None:
        """The hard threshold of a signal; node allocatable subtracts memory's."""
        return next((t for t in self.thresholds if t.signal == signal and t.hard), None)


def hard_eviction_reservation(config: EvictionConfig, capacity: dict[str, int]) -> dict[str, int]:
    """hardEvictionReservation (pkg/kubelet/cm): what node allocatable
    subtracts for the hard memory.available and nodefs.available thresholds,
    percentages taken of the capacity ({"memory": bytes, "ephemeral-storage": bytes})."""
    reserved: dict[str, int] = {}
    for t in config.thresholds:
        resource = {MEMORY_AVAILABLE: "memory", NODEFS_AVAILABLE: "ephemeral-storage"}.get(t.signal)
        if t.hard and resource is not None:
            reserved[resource] = t.value.resolve(capacity.get(resource, 0))
    return reserved


@dataclass
class EvictionSettings:
    """The raw KubeletConfiguration values (None: the field was not set)."""
    hard: dict[str, str] | None = None
    soft: dict[str, str] = field(default_factory=dict)
    soft_grace_period: dict[str, str] = field(default_factory=dict)
    minimum_reclaim: dict[str, str] = field(default_factory=dict)
    merge_defaults: bool = False
    pressure_transition_period: float = DEFAULT_PRESSURE_TRANSITION_PERIOD
    max_pod_grace_period: int = 0


def _where(field_name: str, signal: str | None = None) -> str:
    name = f"{field_name}[{signal}]" if signal is not None else field_name
    return f"{name} ({FIELD_FLAGS[field_name]})"


def _check_signal(field_name: str, signal: object) -> str:
    if not isinstance(signal, str) or signal not in SIGNALS:
        why = _KUBELET_ONLY.get(signal) if isinstance(signal, str) else None
        if why:
            raise ConfigError(f"{_where(field_name, str(signal))}: eviction signal {signal!r} "
                              f"is not supported by nodeagent: {why}")
        raise ConfigError(f"{_where(field_name)}: unsupported eviction signal {signal!r} "
                          f"(supported: {', '.join(SIGNALS)})")
    return signal


def _check_text(field_name: str, signal: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{_where(field_name, signal)}: expected a string such as \"100Mi\" "
                          f"or \"10%\", got {value!r}")
    return value.strip()


def _percentage(field_name: str, signal: str, text: str) -> float:
    number = text[:-1]
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", number):
        raise ConfigError(f"{_where(field_name, signal)}: invalid percentage {text!r}")
    return _f32(_f32(float(number)) / 100)


def parse_threshold_value(field_name: str, signal: str, value: object) -> ThresholdValue | None:
    """parseThresholdStatement: None for "0%"/"100%" (the kubelet ignores those)."""
    signal = _check_signal(field_name, signal)
    text = _check_text(field_name, signal, value)
    if text.endswith("%"):
        if text in ("0%", "100%"):
            return None
        pct = _percentage(field_name, signal, text)
        if pct < 0:
            raise ConfigError(f"{_where(field_name, signal)}: eviction percentage threshold "
                              f"must be >= 0%: {text}")
        if pct > 1:
            raise ConfigError(f"{_where(field_name, signal)}: eviction percentage threshold "
                              f"must be <= 100%: {text}")
        return ThresholdValue(percentage=pct)
    quantity = _quantity(field_name, signal, text)
    if quantity.amount <= 0:
        raise ConfigError(f"{_where(field_name, signal)}: eviction threshold must be "
                          f"positive: {text}")
    return ThresholdValue(quantity=quantity)


def _quantity(field_name: str, signal: str, text: str) -> Quantity:
    try:
        return Quantity(text)
    except InvalidQuantityError:
        raise ConfigError(f"{_where(field_name, signal)}: invalid quantity {text!r} "
                          f"(examples: 100Mi, 1Gi, 10%)") from None


def parse_minimum_reclaim(signal: str, value: object) -> ThresholdValue:
    """parseMinimumReclaims: a positive percentage or a non-negative quantity."""
    field_name = "evictionMinimumReclaim"
    signal = _check_signal(field_name, signal)
    text = _check_text(field_name, signal, value)
    if text.endswith("%"):
        pct = _percentage(field_name, signal, text)
        if pct <= 0:
            raise ConfigError(f"{_where(field_name, signal)}: eviction percentage minimum "
                              f"reclaim must be positive: {text}")
        if pct > 1:
            raise ConfigError(f"{_where(field_name, signal)}: eviction percentage minimum "
                              f"reclaim must be <= 100%: {text}")
        return ThresholdValue(percentage=pct)
    quantity = _quantity(field_name, signal, text)
    if quantity.amount < 0:
        raise ConfigError(f"{_where(field_name, signal)}: negative eviction minimum "
                          f"reclaim: {text}")
    return ThresholdValue(quantity=quantity)


def _mapping(field_name: str, value: object) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(field_name)}: expected a map of signal to value, "
                          f"got {value!r}")
    return value


def parse_eviction_settings(settings: EvictionSettings) -> EvictionConfig:
    """ParseThresholdConfig plus the evictionHard defaulting of the kubelet's
    config: unset -> the defaults; set -> replaces them, unless
    mergeDefaultEvictionSettings, which fills in the signals it leaves out."""
    if settings.hard is None:
        hard_map: dict[str, object] = dict(DEFAULT_EVICTION_HARD)
    else:
        hard_map = dict(_mapping("evictionHard", settings.hard))
        if settings.merge_defaults:
            hard_map = {**DEFAULT_EVICTION_HARD, **hard_map}
    soft_map = _mapping("evictionSoft", settings.soft)
    grace_map = _mapping("evictionSoftGracePeriod", settings.soft_grace_period)
    reclaim_map = _mapping("evictionMinimumReclaim", settings.minimum_reclaim)

    graces: dict[str, float] = {}
    for signal, text in grace_map.items():
        signal = _check_signal("evictionSoftGracePeriod", signal)
        text = _check_text("evictionSoftGracePeriod", signal, text)
        try:
            graces[signal] = parse_duration(text)
        except ConfigError as exc:
            raise ConfigError(f"{_where('evictionSoftGracePeriod', signal)}: {exc}") from None
        if graces[signal] < 0:
            raise ConfigError(f"{_where('evictionSoftGracePeriod', signal)}: invalid eviction "
                              f"grace period {text}, must be a positive value")
    reclaims = {_check_signal("evictionMinimumReclaim", s): parse_minimum_reclaim(s, v)
                for s, v in reclaim_map.items()}

    thresholds: list[Threshold] = []
    for signal, text in hard_map.items():
        value = parse_threshold_value("evictionHard", signal, text)
        if value is not None:
            thresholds.append(Threshold(signal, value, 0.0, reclaims.get(signal)))
    for signal, text in soft_map.items():
        value = parse_threshold_value("evictionSoft", signal, text)
        if value is not None and signal not in graces:
            raise ConfigError(f"{_where('evictionSoftGracePeriod')}: grace period must be "
                              f"specified for the soft eviction threshold {signal} "
                              f"(evictionSoft sets it)")
        if value is not None:
            # A zero grace period makes it hard, for the kubelet too.
            thresholds.append(Threshold(signal, value, graces[signal], reclaims.get(signal)))

    transition = settings.pressure_transition_period
    if transition < 0:
        raise ConfigError(f"{_where('evictionPressureTransitionPeriod')}: must be >= 0, "
                          f"got {transition:g}s")
    max_grace = settings.max_pod_grace_period
    if isinstance(max_grace, bool) or not isinstance(max_grace, int):
        raise ConfigError(f"{_where('evictionMaxPodGracePeriod')}: expected an integer "
                          f"(seconds), got {max_grace!r}")
    return EvictionConfig(tuple(thresholds), transition, max_grace)


def parse_flag_map(flag: str, text: str, separator: str) -> dict[str, str]:
    """kubelet map flags: `a<1,b<2` (--eviction-hard/-soft) or `a=1,b=2`
    (--eviction-soft-grace-period, --eviction-minimum-reclaim)."""
    result: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition(separator)
        if not sep or not key.strip():
            raise ConfigError(f"{flag}: {item!r} is not of the form signal{separator}value "
                              f"(example: memory.available{separator}100Mi)")
        result[key.strip()] = value.strip()
    return result


def eviction_config(config: AgentConfig) -> EvictionConfig:
    """The eviction settings of an AgentConfig, checked."""
    return parse_eviction_settings(EvictionSettings(
        hard=config.eviction_hard,
        soft=config.eviction_soft,
        soft_grace_period=config.eviction_soft_grace_period,
        minimum_reclaim=config.eviction_minimum_reclaim,
        merge_defaults=config.merge_default_eviction_settings,
        pressure_transition_period=config.eviction_pressure_transition_period,
        max_pod_grace_period=config.eviction_max_pod_grace_period,
    ))
