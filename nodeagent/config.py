"""Agent configuration: KubeletConfiguration (kubelet.config.k8s.io/v1beta1)
fields from `--config`, overridden by kubelet-named flags, as the kubelet does.

A kubelet's config file loads as is: the fields nodeagent implements are used,
the other KubeletConfiguration fields are named in one warning, and a name
that is no KubeletConfiguration field is refused (nodeagent/kubeletconfig.py).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from nodeagent.api.quantity import Quantity

API_VERSION = "kubelet.config.k8s.io/v1beta1"
KIND = "KubeletConfiguration"


class ConfigError(ValueError):
    """Bad configuration; the message names the file or flag and the field."""


def parse_duration(text: str | int | float) -> float:
    """Go durations as the kubelet accepts them: 2m, 30s, 1m30s, 500ms, 1h."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        raise ConfigError(f"invalid duration {text!r}")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"invalid duration {text!r} (examples: 2m, 30s, 1m30s)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String(): 0s, 500ms, 10s, 5m0s, 1h0m0s."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000, 6):g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{int(hours)}h" if hours else ""
    if hours or minutes:
        out += f"{int(minutes)}m"
    return out + f"{round(secs, 9):g}s"

@dataclass
class AgentConfig:
    # KubeletConfiguration fields (camelCase in the file).
    static_pod_path: str = ""
    pod_logs_dir: str = "/var/log/pods"
    address: str = "127.0.0.1"  # read-only port bind address (kubelet: 0.0.0.0)
    read_only_port: int = 10255
    healthz_bind_address: str = "127.0.0.1"
    healthz_port: int = 10248
    max_pods: int = 110
    cgroup_root: str = "/"
    container_runtime_endpoint: str = "unix:///run/containerd/containerd.sock"
    image_service_endpoint: str = ""
    runtime_request_timeout: float = 120.0
    sync_frequency: float = 60.0
    file_check_frequency: float = 20.0
    serialize_image_pulls: bool = True
    cgroup_driver: str = "cgroupfs"
    pod_pids_limit: int = -1
    cpu_cfs_quota: bool = True
    cpu_cfs_quota_period: float = 0.1
    system_reserved: dict[str, str] = field(default_factory=dict)
    kube_reserved: dict[str, str] = field(default_factory=dict)
    # Eviction (nodeagent/eviction/thresholds.py); evictionHard None = the kubelet defaults.
    eviction_hard: dict[str, str] | None = None
    eviction_soft: dict[str, str] = field(default_factory=dict)
    eviction_soft_grace_period: dict[str, str] = field(default_factory=dict)
    eviction_minimum_reclaim: dict[str, str] = field(default_factory=dict)
    merge_default_eviction_settings: bool = False
    eviction_pressure_transition_period: float = 300.0
    eviction_max_pod_grace_period: int = 0
    eviction_monitoring_period: float = 10.0  # kubelet housekeeping for eviction; flag only
    # Pod network (nodeagent/netns): empty podCIDR leaves networking to the runtime's CNI config.
    pod_cidr: str = ""
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = ""
    cni_bin_dir: str = "/opt/cni/bin"
    cni_conf_dir: str = "/etc/cni/net.d"
    pod_bridge: str = "nodeagent0"
    pod_mtu: int = 0  # 0: the MTU of the node's default-route interface
    port: int = 10250  # the authenticated kubelet API (TLS); 0 disables
    tls_cert_file: str = ""
    tls_private_key_file: str = ""
    client_ca_file: str = ""  # authentication.x509.clientCAFile
    anonymous_auth: bool = False  # authentication.anonymous.enabled
    # With --kubeconfig: TokenReview / SubjectAccessReview through the API server.
    authentication_webhook_enabled: bool = True  # authentication.webhook.enabled
    authentication_webhook_cache_ttl: float = 120.0
    authorization_mode: str = "Webhook"  # authorization.mode: Webhook | AlwaysAllow
    authorization_webhook_cache_authorized_ttl: float = 300.0
    authorization_webhook_cache_unauthorized_ttl: float = 30.0
    container_log_max_size: str = "10Mi"
    container_log_max_files: int = 5
    container_log_monitor_interval: float = 10.0
    # API server (nodeagent/kube); without --kubeconfig the agent runs standalone.
    kube_api_qps: int = 50
    kube_api_burst: int = 100
    register_node: bool = True
    register_with_taints: list[str] = field(default_factory=list)  # taint specs key=value:Effect
    node_status_update_frequency: float = 10.0
    node_status_report_frequency: float = 300.0
    node_lease_duration_seconds: int = 40
    event_record_qps: int = 50
    event_burst: int = 100
    # Flag-only settings (kubelet has no config field for these).
    root_dir: str = "/var/lib/kubelet"
    hostname_override: str = ""
    node_ip: str = ""
    cri_debug_socket: str = "/run/nodeagent/cri.sock"  # nodeagent's own; "" disables
    token_auth_file: str = ""  # standalone bearer tokens (kube-apiserver's file format)
    kubeconfig: str = ""
    node_labels: dict[str, str] = field(default_factory=dict)
    # graceful node shutdown (config file only, as in the kubelet)
    shutdown_grace_period: float = 0.0
    shutdown_grace_period_critical_pods: float = 0.0
    # shutdownGracePeriodByPodPriority: (priority, shutdownGracePeriodSeconds) pairs
    shutdown_grace_period_by_pod_priority: tuple[tuple[int, int], ...] = ()

    @property
    def node_name(self) -> str:
        """kubelet: --hostname-override or the hostname, lowercased."""
        return (self.hostname_override or socket.gethostname()).strip().lower()


DURATIONS = frozenset({"runtime_request_timeout", "sync_frequency", "file_check_frequency",
              "eviction_pressure_transition_period", "cpu_cfs_quota_period", "eviction_monitoring_period",
              "container_log_monitor_interval", "node_status_update_frequency", "node_status_report_frequency",
              "authentication_webhook_cache_ttl", "authorization_webhook_cache_authorized_ttl",
              "authorization_webhook_cache_unauthorized_ttl", "shutdown_grace_period",
              "shutdown_grace_period_critical_pods"})  # AgentConfig attributes holding seconds
_MAPS = {"eviction_hard", "eviction_soft", "eviction_soft_grace_period", "eviction_minimum_reclaim",
         "system_reserved", "kube_reserved"}

def read_config_file(path: str) -> tuple[dict[str, Any], list[str]]:
    """Read a KubeletConfiguration file: (AgentConfig field values, the paths of
    the fields nodeagent accepts but does not implement)."""
    from nodeagent.kubeletconfig import split_fields  # the schema imports this module
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a {KIND} object")
    if data.get("apiVersion") != API_VERSION or data.get("kind") != KIND:
        raise ConfigError(f"--config {path}: apiVersion/kind must be {API_VERSION}/{KIND}, "
                          f"not {data.get('apiVersion')!r}/{data.get('kind')!r}")
    return split_fields({k: v for k, v in data.items() if k not in ("apiVersion", "kind")},
                        f"--config {path}")


def load_config_file(path: str) -> dict[str, Any]:
    """The AgentConfig field values of a KubeletConfiguration file."""
    return read_config_file(path)[0]


def field_label(name: str) -> str:
    """The name a user wrote: the config field path, else the flag."""
    from nodeagent.kubeletconfig import FIELD_PATH
    return FIELD_PATH.get(name) or f"--{name.replace('_', '-')}"


def _ip_list(value: Any) -> tuple[str, ...]:
    """clusterDNS: a list in the file, comma-separated on the command line."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"clusterDNS: expected a list of IP addresses, got {value!r}")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(str(ipaddress.ip_address(str(item).strip())))
        except ValueError:
            raise ConfigError(f"clusterDNS[{i}]: {item!r} is not an IP address") from None
    return tuple(out)


def _check_taints(value: Any) -> list[str]:
    """registerWithTaints (Taint objects in the file) or --register-with-taints
    (`key=value:Effect,...`): validated as the kubelet does, kept as taint specs."""
    from nodeagent.node.status import TAINT_EFFECTS, NodeConfigError, parse_taints
    if isinstance(value, list):
        specs = []
        for i, taint in enumerate(value):
            where = f"registerWithTaints[{i}]"
            if not isinstance(taint, dict) or not isinstance(taint.get("key"), str):
                raise ConfigError(f"{where}: expected a taint (key, value, effect), got {taint!r}")
            if unknown := set(taint) - {"key", "value", "effect", "timeAdded"}:
                raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r}")
            if not isinstance(taint.get("value", ""), str):
                raise ConfigError(f"{where}.value: expected a string, got {taint['value']!r}")
            if taint.get("effect") not in TAINT_EFFECTS:
                raise ConfigError(f"{where}.effect: {taint.get('effect')!r} is not a taint effect "
                                  f"({', '.join(TAINT_EFFECTS)})")
            value_part = f"={taint['value']}" if taint.get("value") else ""
            spec = f"{taint['key']}{value_part}:{taint['effect']}"
            try:
                parse_taints([spec])
            except NodeConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            specs.append(spec)
        value = specs
    try:
        return [str(t) for t in parse_taints(value)]
    except NodeConfigError as exc:
        raise ConfigError(f"registerWithTaints: {exc}") from None


def _check_labels(value: Any) -> dict[str, str]:
    from nodeagent.node.status import NodeConfigError, parse_node_labels
    try:
        return parse_node_labels(value)
    except NodeConfigError as exc:
        raise ConfigError(f"--node-labels: {exc}") from None


def _check_priority_periods(value: Any) -> tuple[tuple[int, int], ...]:
    where = "shutdownGracePeriodByPodPriority"
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of {{priority, shutdownGracePeriodSeconds}}, got {value!r}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}[{i}]: expected {{priority, shutdownGracePeriodSeconds}}, got {item!r}")
        if unknown := set(item) - {"priority", "shutdownGracePeriodSeconds"}:
            raise ConfigError(f"{where}[{i}]: unknown field {sorted(unknown)[0]!r}")
        numbers = []
        for key in ("priority", "shutdownGracePeriodSeconds"):
            number = item.get(key, 0)
            if isinstance(number, bool) or not isinstance(number, int):
                raise ConfigError(f"{where}[{i}].{key}: expected an integer, got {number!r}")
            numbers.append(number)
        if numbers[1] < 0:
            raise ConfigError(f"{where}[{i}].shutdownGracePeriodSeconds: must be >= 0, got {numbers[1]}")
        out.append((numbers[0], numbers[1]))
    return tuple(out)


def _check_shutdown(config: AgentConfig) -> None:
    """The kubelet's validation of the graceful node shutdown settings
    (pkg/kubelet/apis/config/validation)."""
    period, critical = config.shutdown_grace_period, config.shutdown_grace_period_critical_pods
    for path, value in (("shutdownGracePeriod", period), ("shutdownGracePeriodCriticalPods", critical)):
        if value < 0:
            raise ConfigError(f"{path}: {go_duration(value)} must be >= 0")
        if 0 < value < 1:
            raise ConfigError(f"{path}: {go_duration(value)} must be either zero or otherwise >= 1 sec")
    if critical > period:
        raise ConfigError(f"shutdownGracePeriodCriticalPods: {go_duration(critical)} must be <= "
                          f"shutdownGracePeriod {go_duration(period)}")
    if config.shutdown_grace_period_by_pod_priority and (period or critical):
        raise ConfigError("shutdownGracePeriodByPodPriority: cannot be set together with "
                          "shutdownGracePeriod or shutdownGracePeriodCriticalPods")


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> AgentConfig:
    """Defaults < config file < flags; each value checked for its type."""
    merged = {**file_values, **{k: v for k, v in flag_values.items() if v is not None}}
    if "node_status_update_frequency" in merged and "node_status_report_frequency" not in merged:
        # kubelet: with only the update frequency set, status is reported that often
        merged["node_status_report_frequency"] = merged["node_status_update_frequency"]
    config = AgentConfig()
    types = {f.name: type(getattr(config, f.name)) for f in fields(AgentConfig)}
    for name, value in merged.items():
        if name in DURATIONS:
            try:
                value = parse_duration(value)
            except ConfigError as exc:
                raise ConfigError(f"{field_label(name)}: {exc}") from None
        elif name in _MAPS:
            if value is None:
                value = None if name == "eviction_hard" else {}  # null: as if absent
            elif not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise ConfigError(f"{field_label(name)}: expected a map of strings, got {value!r}")
            else:
                value = dict(value)
        elif name == "cluster_dns":
            value = _ip_list(value)
        elif name == "register_with_taints":
            value = _check_taints(value)
        elif name == "node_labels":
            value = _check_labels(value)
        elif name == "shutdown_grace_period_by_pod_priority":
            value = _check_priority_periods(value)
        elif types[name] is bool and not isinstance(value, bool):
            raise ConfigError(f"{field_label(name)}: expected true or false, got {value!r}")
        elif types[name] is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{field_label(name)}: expected an integer, got {value!r}")
        elif types[name] is str and not isinstance(value, str):
            raise ConfigError(f"{field_label(name)}: expected a string, got {value!r}")
        setattr(config, name, value)
    for port in ("read_only_port", "healthz_port", "port"):
        if not 0 <= getattr(config, port) <= 65535:
            raise ConfigError(f"{port}: {getattr(config, port)} is not a port (0 disables)")
    if config.cgroup_driver not in ("cgroupfs", "systemd"):
        raise ConfigError(f"cgroupDriver: must be cgroupfs or systemd, got {config.cgroup_driver!r}")
    if not 0.001 <= config.cpu_cfs_quota_period <= 1.0:
        raise ConfigError(f"cpuCFSQuotaPeriod: must be between 1ms and 1s, got {config.cpu_cfs_quota_period}s")
    if config.pod_cidr:
        try:
            cidr = ipaddress.IPv4Network(config.pod_cidr)
        except ValueError as exc:
            raise ConfigError(f"podCIDR: {config.pod_cidr!r} is not an IPv4 CIDR: {exc}") from None
        if cidr.prefixlen > 29:
            raise ConfigError(f"podCIDR: {config.pod_cidr} is too small (at most /29)")
    if not 0 < len(config.pod_bridge) <= 15 or "/" in config.pod_bridge:
        raise ConfigError(f"pod bridge name {config.pod_bridge!r} is not a valid interface name")
    if config.container_log_monitor_interval < 3:
        raise ConfigError("containerLogMonitorInterval: must be at least 3s, got "
                          f"{config.container_log_monitor_interval:g}s")
    if config.container_log_max_files < 2:
        raise ConfigError(f"containerLogMaxFiles: must be at least 2, got {config.container_log_max_files}")
    try:
        if Quantity(config.container_log_max_size).value() < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"containerLogMaxSize: {config.container_log_max_size!r} is not a positive "
                          "quantity (e.g. 10Mi)") from None
    if config.authorization_mode not in ("Webhook", "AlwaysAllow"):
        raise ConfigError(f"authorization.mode: must be Webhook or AlwaysAllow, got {config.authorization_mode!r}")
    if config.node_lease_duration_seconds <= 0:
        raise ConfigError(f"nodeLeaseDurationSeconds: must be positive, got {config.node_lease_duration_seconds}")
    if config.node_status_update_frequency <= 0 or config.node_status_report_frequency <= 0:
        raise ConfigError("nodeStatusUpdateFrequency and nodeStatusReportFrequency must be positive")
    _check_shutdown(config)
    if config.max_pods < 1:
        raise ConfigError(f"maxPods: must be at least 1, got {config.max_pods}")
    from nodeagent.cgroups.names import CgroupNameError, parse_root
    from nodeagent.node.capacity import ReservationError, parse_reservation
    try:  # checked again where used; here so a bad file stops `run` and `config dump` at once
        parse_root(config.cgroup_root, config.cgroup_driver)
        parse_reservation("systemReserved", config.system_reserved)
        parse_reservation("kubeReserved", config.kube_reserved)
    except (CgroupNameError, ReservationError) as exc:
        raise ConfigError(str(exc)) from None
    from nodeagent.eviction.thresholds import eviction_config  # imports this module
    eviction_config(config)  # refuse bad thresholds at start, naming the field
    return config
