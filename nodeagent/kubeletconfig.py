"""The KubeletConfiguration (kubelet.config.k8s.io/v1beta1) schema as a file sees it:
which names exist, which nodeagent implements, and the way back to YAML.

A kubelet config written for a real node (kubeadm's, a distro's) must load as
is: fields nodeagent does not implement are named in one warning, names that
are no KubeletConfiguration field at all (typos) are refused, as the kubelet's
strict decoding refuses them. Field names: kubernetes/kubelet
config/v1beta1/types.go.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import yaml

from nodeagent.config import API_VERSION, DURATIONS, KIND, AgentConfig, ConfigError, go_duration, parse_duration

# Every KubeletConfiguration v1beta1 field; a dict is a struct whose sub-fields
# follow the same rule, None a leaf (maps and lists are leaves).
_LEAF = None
SCHEMA: dict[str, Any] = {name: _LEAF for name in (
    "enableServer", "staticPodPath", "podLogsDir", "syncFrequency", "fileCheckFrequency",
    "httpCheckFrequency", "staticPodURL", "staticPodURLHeader", "address", "port", "readOnlyPort",
    "tlsCertFile", "tlsPrivateKeyFile", "tlsCipherSuites", "tlsCurvePreferences", "tlsMinVersion",
    "rotateCertificates", "serverTLSBootstrap", "registryPullQPS", "registryBurst",
    "imagePullCredentialsVerificationPolicy", "preloadedImagesVerificationAllowlist",
    "eventRecordQPS", "eventBurst", "enableDebuggingHandlers", "enableContentionProfiling",
    "healthzPort", "healthzBindAddress", "oomScoreAdj", "clusterDomain", "clusterDNS",
    "streamingConnectionIdleTimeout", "nodeStatusUpdateFrequency", "nodeStatusReportFrequency",
    "nodeLeaseDurationSeconds", "imageMinimumGCAge", "imageMaximumGCAge",
    "imageGCHighThresholdPercent", "imageGCLowThresholdPercent", "volumeStatsAggPeriod",
    "kubeletCgroups", "systemCgroups", "cgroupRoot", "cgroupsPerQOS", "cgroupDriver",
    "cpuManagerPolicy", "singleProcessOOMKill", "cpuManagerPolicyOptions",
    "cpuManagerReconcilePeriod", "memoryManagerPolicy", "topologyManagerPolicy",
    "topologyManagerScope", "topologyManagerPolicyOptions", "qosReserved", "runtimeRequestTimeout",
    "hairpinMode", "maxPods", "podCIDR", "podPidsLimit", "resolvConf", "runOnce", "cpuCFSQuota",
    "cpuCFSQuotaPeriod", "nodeStatusMaxImages", "maxOpenFiles", "contentType", "kubeAPIQPS",
    "kubeAPIBurst", "serializeImagePulls", "maxParallelImagePulls", "evictionHard", "evictionSoft",
    "evictionSoftGracePeriod", "evictionPressureTransitionPeriod", "evictionMaxPodGracePeriod",
    "evictionMinimumReclaim", "mergeDefaultEvictionSettings", "podsPerCore",
    "enableControllerAttachDetach", "protectKernelDefaults", "makeIPTablesUtilChains",
    "iptablesMasqueradeBit", "iptablesDropBit", "featureGates", "failSwapOn", "containerLogMaxSize",
    "containerLogMaxFiles", "containerLogMaxWorkers", "containerLogMonitorInterval",
    "configMapAndSecretChangeDetectionStrategy", "systemReserved", "kubeReserved",
    "reservedSystemCPUs", "showHiddenMetricsForVersion", "systemReservedCgroup",
    "kubeReservedCgroup", "enforceNodeAllocatable", "allowedUnsafeSysctls", "volumePluginDir",
    "providerID", "kernelMemcgNotification", "enableSystemLogHandler", "enableSystemLogQuery",
    "shutdownGracePeriod", "shutdownGracePeriodCriticalPods", "shutdownGracePeriodByPodPriority",
    "reservedMemory", "enableProfilingHandler", "enableDebugFlagsHandler", "seccompDefault",
    "memoryThrottlingFactor", "registerWithTaints", "registerNode", "localStorageCapacityIsolation",
    "containerRuntimeEndpoint", "imageServiceEndpoint", "failCgroupV1")}
SCHEMA.update({
    "authentication": {"x509": {"clientCAFile": _LEAF},
                       "webhook": {"enabled": _LEAF, "cacheTTL": _LEAF},
                       "anonymous": {"enabled": _LEAF}},
    "authorization": {"mode": _LEAF, "webhook": {"cacheAuthorizedTTL": _LEAF, "cacheUnauthorizedTTL": _LEAF}},
    # component-base LoggingConfiguration; `options` is format-specific, kept opaque
    "logging": {"format": _LEAF, "flushFrequency": _LEAF, "verbosity": _LEAF, "vmodule": _LEAF,
                "options": _LEAF},
    "memorySwap": {"swapBehavior": _LEAF},
    "crashLoopBackOff": {"maxContainerRestartPeriod": _LEAF},
    "tracing": {"endpoint": _LEAF, "samplingRatePerMillion": _LEAF},
    "userNamespaces": {"idsPerPod": _LEAF},
})

# Field path -> AgentConfig attribute: what nodeagent implements.
SUPPORTED: dict[str, str] = {
    "staticPodPath": "static_pod_path", "podLogsDir": "pod_logs_dir", "address": "address",
    "readOnlyPort": "read_only_port", "healthzBindAddress": "healthz_bind_address",
    "healthzPort": "healthz_port", "maxPods": "max_pods", "cgroupRoot": "cgroup_root",
    "containerRuntimeEndpoint": "container_runtime_endpoint",
    "imageServiceEndpoint": "image_service_endpoint",
    "runtimeRequestTimeout": "runtime_request_timeout", "syncFrequency": "sync_frequency",
    "fileCheckFrequency": "file_check_frequency", "serializeImagePulls": "serialize_image_pulls",
    "cgroupDriver": "cgroup_driver", "podPidsLimit": "pod_pids_limit", "cpuCFSQuota": "cpu_cfs_quota",
    "cpuCFSQuotaPeriod": "cpu_cfs_quota_period", "systemReserved": "system_reserved",
    "kubeReserved": "kube_reserved",
    "evictionHard": "eviction_hard", "evictionSoft": "eviction_soft",
    "evictionSoftGracePeriod": "eviction_soft_grace_period",
    "evictionMinimumReclaim": "eviction_minimum_reclaim",
    "mergeDefaultEvictionSettings": "merge_default_eviction_settings",
    "evictionPressureTransitionPeriod": "eviction_pressure_transition_period",
    "evictionMaxPodGracePeriod": "eviction_max_pod_grace_period",
    "podCIDR": "pod_cidr", "clusterDNS": "cluster_dns", "clusterDomain": "cluster_domain",
    "port": "port", "tlsCertFile": "tls_cert_file", "tlsPrivateKeyFile": "tls_private_key_file",
    "authentication.x509.clientCAFile": "client_ca_file",
    "authentication.anonymous.enabled": "anonymous_auth",
    "authentication.webhook.enabled": "authentication_webhook_enabled",
    "authentication.webhook.cacheTTL": "authentication_webhook_cache_ttl",
    "authorization.mode": "authorization_mode",
    "authorization.webhook.cacheAuthorizedTTL": "authorization_webhook_cache_authorized_ttl",
    "authorization.webhook.cacheUnauthorizedTTL": "authorization_webhook_cache_unauthorized_ttl",
    "containerLogMaxSize": "container_log_max_size", "containerLogMaxFiles": "container_log_max_files",
    "containerLogMonitorInterval": "container_log_monitor_interval",
    "kubeAPIQPS": "kube_api_qps", "kubeAPIBurst": "kube_api_burst", "registerNode": "register_node",
    "registerWithTaints": "register_with_taints",
    "nodeStatusUpdateFrequency": "node_status_update_frequency",
    "nodeStatusReportFrequency": "node_status_report_frequency",
    "nodeLeaseDurationSeconds": "node_lease_duration_seconds",
    "eventRecordQPS": "event_record_qps", "eventBurst": "event_burst",
    "shutdownGracePeriod": "shutdown_grace_period",
    "shutdownGracePeriodCriticalPods": "shutdown_grace_period_critical_pods",
    "shutdownGracePeriodByPodPriority": "shutdown_grace_period_by_pod_priority",
}
FIELD_PATH = {attr: path for path, attr in SUPPORTED.items()}

# The kubelet's defaulting replaces these zero values ("", 0, 0s) by the default
# (pkg/kubelet/apis/config/v1beta1/defaults.go); kubeadm writes many of them.
ZERO_IS_DEFAULT = frozenset({
    "syncFrequency", "fileCheckFrequency", "runtimeRequestTimeout", "evictionPressureTransitionPeriod",
    "nodeStatusUpdateFrequency", "nodeStatusReportFrequency", "authentication.webhook.cacheTTL",
    "authorization.webhook.cacheAuthorizedTTL", "authorization.webhook.cacheUnauthorizedTTL",
    "containerRuntimeEndpoint", "healthzBindAddress", "address", "cgroupDriver", "cgroupRoot",
    "containerLogMaxSize", "podLogsDir", "authorization.mode", "maxPods", "nodeLeaseDurationSeconds",
    "eventBurst", "kubeAPIBurst",
})

# Ignored fields whose values are still checked, so a typo'd duration is not hidden.
IGNORED_DURATIONS = frozenset({
    "httpCheckFrequency", "streamingConnectionIdleTimeout", "imageMinimumGCAge", "imageMaximumGCAge",
    "volumeStatsAggPeriod", "cpuManagerReconcilePeriod", "crashLoopBackOff.maxContainerRestartPeriod",
    "logging.flushFrequency",
})


def _is_zero(path: str, value: Any) -> bool:
    if value in ("", 0) and not isinstance(value, bool):
        return True
    if isinstance(value, str) and path in ZERO_IS_DEFAULT:
        try:
            return parse_duration(value) == 0
        except ConfigError:
            return False
    return False


def split_fields(data: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """A decoded KubeletConfiguration -> (AgentConfig values, ignored field paths).
    Unknown names are refused with their path; null (and the kubelet's defaulted
    zero values) count as absent."""
    values: dict[str, Any] = {}
    ignored: list[str] = []

    def walk(body: dict[str, Any], schema: dict[str, Any], prefix: str) -> None:
        for key, value in body.items():
            path = f"{prefix}{key}"
            if not isinstance(key, str) or key not in schema:
                raise ConfigError(f"{source}: unknown field {path!r}: not a {KIND} "
                                  f"({API_VERSION}) field")
            if value is None:
                continue
            if path in SUPPORTED:
                if not (path in ZERO_IS_DEFAULT and _is_zero(path, value)):
                    values[SUPPORTED[path]] = value
                continue
            sub = schema[key]
            if isinstance(sub, dict):
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: {path}: expected an object, got {value!r}")
                walk(value, sub, path + ".")
                continue
            if path in IGNORED_DURATIONS:
                try:
                    parse_duration(value)
                except ConfigError as exc:
                    raise ConfigError(f"{source}: {path}: {exc}") from None
            ignored.append(path)

    walk(data, SCHEMA, "")
    return values, ignored


def _encode(attr: str, value: Any) -> Any:
    if attr in DURATIONS:
        return go_duration(value)
    if attr == "cluster_dns":
        return list(value)
    if attr == "register_with_taints":
        from nodeagent.node.status import parse_taint
        out = []
        for spec in value:
            taint = parse_taint(spec)
            item = {"key": taint.key, "effect": taint.effect}
            if taint.value:
                item["value"] = taint.value
            out.append(item)
        return out
    if attr == "shutdown_grace_period_by_pod_priority":
        return [{"priority": p, "shutdownGracePeriodSeconds": s} for p, s in value]
    if isinstance(value, dict):
        return dict(value)
    return value


def _flag_value(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


FLAG_ONLY = tuple(f.name for f in fields(AgentConfig) if f.name not in FIELD_PATH)


def dump_config(config: AgentConfig, ignored: list[str]) -> str:
    """The effective configuration as a KubeletConfiguration document that
    `--config` reads back to the same values; the flag-only settings and the
    ignored fields follow as comments."""
    doc: dict[str, Any] = {}
    for path, attr in SUPPORTED.items():
        value = getattr(config, attr)
        if value is None:  # evictionHard unset: the kubelet's defaults apply
            continue
        node = doc
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _encode(attr, value)
    text = (f"apiVersion: {API_VERSION}\nkind: {KIND}\n"
            + yaml.safe_dump(doc, sort_keys=True, default_flow_style=False))
    lines = ["# nodeagent settings without a KubeletConfiguration field (flags only):"]
    for attr in FLAG_ONLY:
        value = getattr(config, attr)
        shown = go_duration(value) if attr in DURATIONS else _flag_value(value)
        lines.append(f"#   --{attr.replace('_', '-')}={shown}")
    if config.eviction_hard is None:
        lines.append("# evictionHard: not set, the kubelet's defaults apply "
                     "(memory.available<100Mi, nodefs.available<10%, nodefs.inodesFree<5%, "
                     "imagefs.available<15%)")
    lines.append("# KubeletConfiguration fields accepted but ignored by nodeagent: "
                 + (", ".join(ignored) if ignored else "none"))
    return text + "\n".join(lines) + "\n"
