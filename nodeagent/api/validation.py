"""Pod validation, following the API server's (k8s pkg/apis/core/validation).

The kubelet runs the same `ValidatePodCreate` on static pods before running
them; without it a typo in a manifest surfaces much later as a confusing
runtime failure. Errors are values (`FieldError`), rendered exactly like the
API server's field errors so messages can be searched for upstream:

    spec.containers[0].image: Required value
    spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"

Call on a pod that went through `apply_defaults`: like the API server, this
treats fields that defaulting fills (pull policy, protocol …) as required.

Deliberate differences from upstream, each because the node has to run the
pod and would otherwise fail later with a worse message:
  * the image must be a valid reference (upstream: InvalidImageName at pull);
  * capability names must be known Linux capabilities (the runtime rejects
    unknown ones at container creation);
  * emptyDir.medium must be "", "Memory", "HugePages" or "HugePages-<size>";
  * volumeMounts[].mountPath must not contain ':';
  * lists of supported values are printed sorted.
Environment variable names follow the kubelet's static-pod validation, which
passes empty PodValidationOptions and so keeps the strict (v1.31 default)
rule; `relaxed_env_names=True` selects RelaxedEnvironmentVariableValidation
(any printable ASCII but '=', the API server default since 1.32).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from nodeagent.api.quantity import InvalidQuantityError, Quantity
from nodeagent.api.types import (
    Capabilities,
    ConfigMapVolumeSource,
    Container,
    ContainerPort,
    DownwardAPIVolumeFile,
    EnvFromSource,
    EnvVar,
    ExecAction,
    GRPCAction,
    HTTPGetAction,
    KeySelector,
    KeyToPath,
    Lifecycle,
    LifecycleHandler,
    ObjectFieldSelector,
    ObjectMeta,
    Pod,
    PodDNSConfig,
    PodSecurityContext,
    PodSpec,
    Probe,
    ProjectedVolumeSource,
    ResourceFieldSelector,
    ResourceRequirements,
    SeccompProfile,
    SecretVolumeSource,
    SecurityContext,
    TCPSocketAction,
    Toleration,
    Volume,
    unsupported_sources,
    VolumeMount,
)
from nodeagent.gotext import go_quote
from nodeagent.oci.reference import InvalidReferenceError, parse_reference

# -- error kinds (field.ErrorType strings) ------------------------------------

INVALID = "Invalid value"
REQUIRED = "Required value"
DUPLICATE = "Duplicate value"
NOT_SUPPORTED = "Unsupported value"
NOT_FOUND = "Not found"
FORBIDDEN = "Forbidden"
TOO_LONG = "Too long"

# Kinds rendered without the offending value.
_VALUELESS_KINDS = frozenset({REQUIRED, FORBIDDEN, TOO_LONG})


@dataclass(frozen=True)
class FieldError:
    """One problem at one field; str() matches the API server's rendering."""

    path: str
    kind: str
    detail: str
    value: object = None

    def __str__(self) -> str:
        body = self.kind
        if self.kind not in _VALUELESS_KINDS:
            body += f": {render_value(self.value)}"
        if self.detail:
            body += f": {self.detail}"
        return f"{self.path}: {body}"


def render_value(value: object) -> str:
    """Go's rendering of a bad value: strings %q, numbers and bools %v."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return go_quote(value)
    return str(value)


# -- name rules (k8s.io/apimachinery/pkg/util/validation) --------------------------

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
ENV_VAR_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"
HTTP_HEADER_NAME_FMT = "[-A-Za-z0-9]+"
SYSCTL_FMT = r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
SYSCTL_MAX_LENGTH = 253
PORT_NAME_MAX_LENGTH = 15
MAX_INT32 = 2**31 - 1
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024

_DNS1123_LABEL_RE = re.compile(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(DNS1123_SUBDOMAIN_FMT)
_QUALIFIED_NAME_RE = re.compile(QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(LABEL_VALUE_FMT)
_ENV_VAR_NAME_RE = re.compile(ENV_VAR_NAME_FMT)
_CONFIG_MAP_KEY_RE = re.compile(CONFIG_MAP_KEY_FMT)
_HTTP_HEADER_NAME_RE = re.compile(HTTP_HEADER_NAME_FMT)
_SYSCTL_RE = re.compile(SYSCTL_FMT)
_PORT_NAME_CHARS_RE = re.compile("[-a-z0-9]+")
_HUGEPAGES_PREFIX = "hugepages-"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """validation.RegexError, including its odd ",  or " separator."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character",
                DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """Label keys, annotation keys, resource names: [prefix/]name."""
    errs: list[str] = []
    parts = value.split("/")
    name_msg = ("must consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [regex_error("a qualified name " + name_msg, QUALIFIED_NAME_FMT,
                            "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX_LENGTH:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errs.append("name part " + regex_error(name_msg, QUALIFIED_NAME_FMT,
                                               "MyName", "my.name", "123-abc"))
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_name(port: str) -> list[str]:
    """IANA_SVC_NAME: <=15 chars, [-a-z0-9], a letter, no '--', no edge '-'."""
    errs = []
    if len(port) > PORT_NAME_MAX_LENGTH:
        errs.append(max_len_error(PORT_NAME_MAX_LENGTH))
    if not _PORT_NAME_CHARS_RE.fullmatch(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


def _has_chdir_prefix(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def is_env_var_name(value: str) -> list[str]:
    errs = []
    if not _ENV_VAR_NAME_RE.fullmatch(value):
        errs.append(regex_error(
            "a valid environment variable name must consist of alphabetic characters, digits, "
            "'_', '-', or '.', and must not start with a digit",
            ENV_VAR_NAME_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1"))
    return errs + _has_chdir_prefix(value)


def is_relaxed_env_var_name(value: str) -> list[str]:
    errs = []
    if not value:
        errs.append("environment variable name must be non-empty")
    if any(not (0x20 <= ord(ch) < 0x7F) or ch == "=" for ch in value):
        errs.append("a valid environment variable name must consist only of printable "
                    "ASCII characters other than '='")
    return errs


def is_config_map_key(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _CONFIG_MAP_KEY_RE.fullmatch(value):
        errs.append(regex_error("a valid config key must consist of alphanumeric characters, "
                                "'-', '_' or '.'", CONFIG_MAP_KEY_FMT,
                                "key.name", "KEY_NAME", "key-name"))
    return errs + _has_chdir_prefix(value)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# -- enums ------------------------------------------------------------------------

RESTART_POLICIES = ("Always", "OnFailure", "Never")
CONTAINER_RESTART_POLICIES = ("Always",)  # init containers only: a sidecar
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
PROTOCOLS = ("TCP", "UDP", "SCTP")
URI_SCHEMES = ("HTTP", "HTTPS")
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File",
                   "Socket", "CharDevice", "BlockDevice")
STORAGE_MEDIA = ("", "Memory", "HugePages")
MOUNT_PROPAGATION_MODES = ("None", "HostToContainer", "Bidirectional")
PROC_MOUNT_TYPES = ("Default", "Unmasked")
SECCOMP_PROFILE_TYPES = ("RuntimeDefault", "Unconfined", "Localhost")
TOLERATION_OPERATORS = ("Exists", "Equal")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
QOS_COMPUTE_RESOURCES = ("cpu", "memory")

# Field paths env[].valueFrom.fieldRef may use (validEnvDownwardAPIFieldPathExpressions);
# metadata.labels/annotations only with a ['key'] subscript.
ENV_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                   "spec.serviceAccountName", "status.hostIP", "status.hostIPs",
                   "status.podIP", "status.podIPs")
# What the v1 Pod field-label conversion knows at all; anything else fails conversion.
CONVERTIBLE_FIELD_PATHS = frozenset(ENV_FIELD_PATHS) | {
    "metadata.labels", "metadata.annotations", "spec.restartPolicy", "spec.schedulerName",
    "spec.hostNetwork", "status.phase", "status.nominatedNodeName"}
# validVolumeDownwardAPIFieldPathExpressions: labels/annotations whole or subscripted.
VOLUME_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.labels",
                      "metadata.annotations", "metadata.uid")
RESOURCE_FIELD_REFS = ("limits.cpu", "limits.memory", "limits.ephemeral-storage",
                       "requests.cpu", "requests.memory", "requests.ephemeral-storage")
RESOURCE_FIELD_REF_PREFIXES = ("limits.hugepages-", "requests.hugepages-")

# Linux capabilities a runtime accepts (CAP_ prefix optional, as in containerd).
LINUX_CAPABILITIES = frozenset({
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"})

_DIVISORS_CPU = ("1m", "1")
_DIVISORS_BYTES = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")

MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCH_PATHS = 32


def _not_supported(path: str, value: object, supported: Iterable[str]) -> FieldError:
    listed = ", ".join(go_quote(v) for v in sorted(supported))
    return FieldError(path, NOT_SUPPORTED, f"supported values: {listed}", value)


# -- entry points -------------------------------------------------------------------


def validate_pod(pod: Pod, *, relaxed_env_names: bool = False) -> list[FieldError]:
    """Every problem with a (defaulted) pod, in field order; [] if valid."""
    v = _Validator(relaxed_env_names=relaxed_env_names)
    v.meta(pod.metadata, "metadata")
    v.spec(pod.spec, "spec")
    return v.errors


STATIC_POD_API_DETAIL = "no API server objects are available to static pods"


def validate_static_pod(pod: Pod) -> list[FieldError]:
    """Rules only static pods have: no references to API objects.

    A static pod runs before (or without) an API server, so the kubelet
    refuses configmaps, secrets and service accounts in it (also as projected
    sources; downwardAPI data needs no API server and is allowed).
    """
    errors: list[FieldError] = []

    def forbid(path: str, what: str) -> None:
        errors.append(FieldError(path, FORBIDDEN,
                                 f"static pods may not reference {what} ({STATIC_POD_API_DETAIL})"))

    spec = pod.spec
    if spec.service_account_name:
        forbid("spec.serviceAccountName", "service accounts")
    for i, vol in enumerate(spec.volumes):
        if vol.config_map is not None:
            forbid(f"spec.volumes[{i}].configMap", "configmaps")
        if vol.secret is not None:
            forbid(f"spec.volumes[{i}].secret", "secrets")
        for j, source in enumerate(vol.projected.sources if vol.projected is not None else ()):
            base = f"spec.volumes[{i}].projected.sources[{j}]"
            for key, what, ref in (("configMap", "configmaps", source.config_map),
                                   ("secret", "secrets", source.secret),
                                   ("serviceAccountToken", "service account tokens", source.service_account_token),
                                   ("clusterTrustBundle", "cluster trust bundles", source.cluster_trust_bundle)):
                if ref is not None:
                    forbid(f"{base}.{key}", what)
    for group, containers in (("initContainers", spec.init_containers),
                              ("containers", spec.containers)):
        for i, c in enumerate(containers):
            base = f"spec.{group}[{i}]"
            for j, env_from in enumerate(c.env_from):
                if env_from.config_map_ref is not None:
                    forbid(f"{base}.envFrom[{j}].configMapRef", "configmaps")
                if env_from.secret_ref is not None:
                    forbid(f"{base}.envFrom[{j}].secretRef", "secrets")
            for j, env in enumerate(c.env):
                src = env.value_from
                if src is not None and src.config_map_key_ref is not None:
                    forbid(f"{base}.env[{j}].valueFrom.configMapKeyRef", "configmaps")
                if src is not None and src.secret_key_ref is not None:
                    forbid(f"{base}.env[{j}].valueFrom.secretKeyRef", "secrets")
    return errors


# -- the walk ------------------------------------------------------------------------


class _Validator:
    """One validation run; collects errors in the order fields are visited."""

    def __init__(self, *, relaxed_env_names: bool) -> None:
        self.relaxed_env_names = relaxed_env_names
        self.errors: list[FieldError] = []

    # helpers

    def add(self, path: str, kind: str, detail: str = "", value: object = None) -> None:
        self.errors.append(FieldError(path, kind, detail, value))

    def invalid_each(self, path: str, value: object, messages: Iterable[str]) -> None:
        for msg in messages:
            self.add(path, INVALID, msg, value)

    def enum(self, path: str, value: str, supported: Iterable[str], *, required: bool = True) -> None:
        supported = tuple(supported)
        if value == "" and required:
            self.add(path, REQUIRED)
        elif value not in supported:
            self.errors.append(_not_supported(path, value, supported))

    def nonnegative(self, path: str, value: int | None) -> None:
        if value is not None and value < 0:
            self.add(path, INVALID, "must be greater than or equal to 0", value)

    def subdomain(self, path: str, value: str) -> None:
        self.invalid_each(path, value, is_dns1123_subdomain(value))

    def label(self, path: str, value: str) -> None:
        self.invalid_each(path, value, is_dns1123_label(value))

    def labels(self, path: str, labels: dict[str, str]) -> None:
        for key, value in labels.items():
            self.invalid_each(path, key, is_qualified_name(key))
            self.invalid_each(path, value, is_label_value(value))

    # metadata

    def meta(self, meta: ObjectMeta, path: str) -> None:
        if not meta.name and not meta.generate_name:
            self.add(f"{path}.name", REQUIRED, "name or generateName is required")
        elif meta.name:
            self.subdomain(f"{path}.name", meta.name)
        if meta.generate_name:
            # A prefix may end in '-' (maskTrailingDash), the rest must be a subdomain.
            prefix = meta.generate_name
            if len(prefix) > 1 and prefix.endswith("-"):
                prefix = prefix[:-1] + "a"
            self.subdomain(f"{path}.generateName", prefix)
        if not meta.namespace:
            self.add(f"{path}.namespace", REQUIRED)
        else:
            self.label(f"{path}.namespace", meta.namespace)
        self.labels(f"{path}.labels", meta.labels)
        total = 0
        for key, value in meta.annotations.items():
            self.invalid_each(f"{path}.annotations", key, is_qualified_name(key.lower()))
            total += len(key.encode()) + len(value.encode())
        if total > TOTAL_ANNOTATION_SIZE_LIMIT:
            self.add(f"{path}.annotations", TOO_LONG,
                     f"may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes")

    # spec

    def spec(self, spec: PodSpec, path: str) -> None:
        volumes = self.volumes(spec.volumes, f"{path}.volumes")
        grace = spec.termination_grace_period_seconds
        # Upstream order: app containers first, so a clash with an init
        # container's name is reported on the init container.
        names: set[str] = set()
        if not spec.containers:
            self.add(f"{path}.containers", REQUIRED)
        for i, c in enumerate(spec.containers):
            self.container(c, f"{path}.containers[{i}]", spec, volumes, names, init=False)
        for i, c in enumerate(spec.init_containers):
            self.container(c, f"{path}.initContainers[{i}]", spec, volumes, names, init=True)
        self.host_port_conflicts(spec, path)

        self.enum(f"{path}.restartPolicy", spec.restart_policy, RESTART_POLICIES)
        self.enum(f"{path}.dnsPolicy", spec.dns_policy, DNS_POLICIES)
        if spec.dns_policy == "None" and spec.dns_config is None:
            self.add(f"{path}.dnsConfig", REQUIRED,
                     "must provide `dnsConfig` when `dnsPolicy` is None")
        if spec.dns_config is not None:
            self.dns_config(spec.dns_config, f"{path}.dnsConfig", spec.dns_policy)
        self.nonnegative(f"{path}.terminationGracePeriodSeconds", grace)
        ads = spec.active_deadline_seconds
        if ads is not None and not 1 <= ads <= MAX_INT32:
            self.add(f"{path}.activeDeadlineSeconds", INVALID, inclusive_range_error(1, MAX_INT32), ads)
        self.labels(f"{path}.nodeSelector", spec.node_selector)
        if spec.service_account_name:
            self.subdomain(f"{path}.serviceAccountName", spec.service_account_name)
        if spec.node_name:
            self.subdomain(f"{path}.nodeName", spec.node_name)
        if spec.hostname:
            self.label(f"{path}.hostname", spec.hostname)
        if spec.subdomain:
            self.label(f"{path}.subdomain", spec.subdomain)
        if spec.priority_class_name:
            self.subdomain(f"{path}.priorityClassName", spec.priority_class_name)
        if spec.runtime_class_name is not None:
            self.subdomain(f"{path}.runtimeClassName", spec.runtime_class_name)
        if spec.scheduler_name:
            self.subdomain(f"{path}.schedulerName", spec.scheduler_name)
        if spec.share_process_namespace and spec.host_pid:
            self.add(f"{path}.shareProcessNamespace", INVALID,
                     "ShareProcessNamespace and HostPID cannot both be enabled", True)
        if spec.security_context is not None:
            self.pod_security_context(spec.security_context, f"{path}.securityContext")
        for i, tol in enumerate(spec.tolerations):
            self.toleration(tol, f"{path}.tolerations[{i}]")
        for i, alias in enumerate(spec.host_aliases):
            apath = f"{path}.hostAliases[{i}]"
            if not _is_ip(alias.ip):
                self.add(f"{apath}.ip", INVALID, "must be valid IP address", alias.ip)
            for j, hostname in enumerate(alias.hostnames):
                self.subdomain(f"{apath}.hostnames[{j}]", hostname)

    def dns_config(self, cfg: PodDNSConfig, path: str, policy: str) -> None:
        if len(cfg.nameservers) > MAX_DNS_NAMESERVERS:
            self.add(f"{path}.nameservers", INVALID,
                     f"must not have more than {MAX_DNS_NAMESERVERS} nameservers", cfg.nameservers)
        for i, ns in enumerate(cfg.nameservers):
            if not _is_ip(ns):
                self.add(f"{path}.nameservers[{i}]", INVALID, "must be valid IP address", ns)
        if policy == "None" and not cfg.nameservers:
            self.add(f"{path}.nameservers", REQUIRED,
                     "must provide at least one DNS nameserver when `dnsPolicy` is None")
        if len(cfg.searches) > MAX_DNS_SEARCH_PATHS:
            self.add(f"{path}.searches", INVALID,
                     f"must not have more than {MAX_DNS_SEARCH_PATHS} search paths", cfg.searches)
        for i, search in enumerate(cfg.searches):
            if search != ".":  # "." (no search) is allowed; a trailing dot is too
                self.subdomain(f"{path}.searches[{i}]", search.removesuffix("."))
        for i, opt in enumerate(cfg.options):
            if not opt.name:
                self.add(f"{path}.options[{i}].name", REQUIRED, "Option.Name must not be empty")

    def toleration(self, tol: Toleration, path: str) -> None:
        if tol.key:
            self.invalid_each(f"{path}.key", tol.key, is_qualified_name(tol.key))
        elif tol.operator != "Exists":
            self.add(f"{path}.operator", INVALID,
                     "operator must be Exists when `key` is empty, which means \"match all values "
                     "and all keys\"", tol.operator)
        if tol.toleration_seconds is not None and tol.effect != "NoExecute":
            self.add(f"{path}.effect", INVALID,
                     "effect must be 'NoExecute' when `tolerationSeconds` is set", tol.effect)
        if tol.operator in ("", "Equal"):
            self.invalid_each(f"{path}.value", tol.value, is_label_value(tol.value))
        elif tol.operator == "Exists":
            if tol.value:
                self.add(f"{path}.operator", INVALID,
                         "value must be empty when `operator` is 'Exists'", tol.value)
        else:
            self.errors.append(_not_supported(f"{path}.operator", tol.operator, TOLERATION_OPERATORS))
        if tol.effect:
            self.enum(f"{path}.effect", tol.effect, TAINT_EFFECTS)

    # volumes

    def volumes(self, volumes: list[Volume], path: str) -> set[str]:
        names: set[str] = set()
        for i, vol in enumerate(volumes):
            vpath = f"{path}[{i}]"
            if not vol.name:
                self.add(f"{vpath}.name", REQUIRED)
            elif vol.name in names:
                self.add(f"{vpath}.name", DUPLICATE, value=vol.name)
            else:
                self.label(f"{vpath}.name", vol.name)
            names.add(vol.name)
            self.volume_source(vol, vpath)
        return names

    def volume_source(self, vol: Volume, path: str) -> None:
        sources = [("emptyDir", vol.empty_dir), ("hostPath", vol.host_path),
                   ("secret", vol.secret), ("downwardAPI", vol.downward_api),
                   ("configMap", vol.config_map), ("projected", vol.projected)]
        present = [(name, src) for name, src in sources if src is not None]
        present += [(name, None) for name in unsupported_sources(vol)]  # refused when the pod runs
        if not present:
            self.add(path, REQUIRED, "must specify a volume type")
            return
        for name, _ in present[1:]:
            self.add(f"{path}.{name}", FORBIDDEN, "may not specify more than 1 volume type")
        name, _ = present[0]
        if vol.empty_dir is not None and name == "emptyDir":
            medium = vol.empty_dir.medium
            if not (medium in STORAGE_MEDIA or self.is_hugepages_medium(medium)):
                self.errors.append(_not_supported(f"{path}.emptyDir.medium", medium,
                                                  (*STORAGE_MEDIA, "HugePages-<size>")))
            limit = vol.empty_dir.size_limit
            if limit is not None and limit.amount < 0:
                self.add(f"{path}.emptyDir.sizeLimit", FORBIDDEN,
                         "SizeLimit field must be a valid resource quantity")
        elif vol.host_path is not None and name == "hostPath":
            hp = vol.host_path
            hpath = f"{path}.hostPath"
            if not hp.path:
                self.add(f"{hpath}.path", REQUIRED)
            else:
                self.no_backsteps(f"{hpath}.path", hp.path)
            if hp.type is not None:
                self.enum(f"{hpath}.type", hp.type, HOST_PATH_TYPES, required=False)
        elif vol.config_map is not None and name == "configMap":
            self.config_map_volume(vol.config_map, f"{path}.configMap")
        elif vol.secret is not None and name == "secret":
            self.secret_volume(vol.secret, f"{path}.secret")
        elif vol.downward_api is not None and name == "downwardAPI":
            dpath = f"{path}.downwardAPI"
            self.file_mode(f"{dpath}.defaultMode", vol.downward_api.default_mode)
            for item in vol.downward_api.items:  # upstream reports items at the volume's path
                self.downward_api_file(item, dpath)
        elif vol.projected is not None and name == "projected":
            self.projected_volume(vol.projected, f"{path}.projected")

    @staticmethod
    def is_hugepages_medium(medium: str) -> bool:
        if not medium.startswith("HugePages-"):
            return False
        try:
            return Quantity(medium[len("HugePages-"):]).amount > 0
        except InvalidQuantityError:
            return False

    def config_map_volume(self, src: ConfigMapVolumeSource, path: str) -> None:
        if not src.name:
            self.add(f"{path}.name", REQUIRED)
        else:
            self.subdomain(f"{path}.name", src.name)
        self.file_mode(f"{path}.defaultMode", src.default_mode)
        self.key_to_paths(src.items, f"{path}.items")

    def secret_volume(self, src: SecretVolumeSource, path: str) -> None:
        if not src.secret_name:
            self.add(f"{path}.secretName", REQUIRED)
        else:
            self.subdomain(f"{path}.secretName", src.secret_name)
        self.file_mode(f"{path}.defaultMode", src.default_mode)
        self.key_to_paths(src.items, f"{path}.items")

    def downward_api_file(self, item: DownwardAPIVolumeFile, path: str) -> None:
        """validateDownwardAPIVolumeFile."""
        if not item.path:
            self.add(f"{path}.path", REQUIRED)
        self.local_non_reserved_path(f"{path}.path", item.path)
        if item.field_ref is not None:
            self.field_ref(item.field_ref, f"{path}.fieldRef", VOLUME_FIELD_PATHS)
            if item.resource_field_ref is not None:
                self.add(path, INVALID, "fieldRef and resourceFieldRef can not be specified simultaneously",
                         "resource")
        elif item.resource_field_ref is not None:
            self.resource_field_ref(item.resource_field_ref, f"{path}.resourceFieldRef", volume=True)
        else:
            self.add(path, REQUIRED, "one of fieldRef and resourceFieldRef is required")
        self.file_mode(f"{path}.mode", item.mode)

    def projected_volume(self, src: ProjectedVolumeSource, path: str) -> None:
        """validateProjectedVolumeSource + validateProjectionSources (paths as upstream
        reports them, some at the volume rather than the source)."""
        self.file_mode(f"{path}.defaultMode", src.default_mode)
        seen: set[str] = set()

        def unique(item_path: str, value: str) -> None:
            if item_path in seen:
                self.add(path, INVALID, "conflicting duplicate paths", value)
            seen.add(item_path)

        for i, source in enumerate(src.sources):
            spath = f"{path}.sources[{i}]"
            count = 0
            for kind, ref in (("secret", source.secret), ("configMap", source.config_map)):
                if ref is None:
                    continue
                count += 1
                if not ref.name:
                    self.add(f"{spath}.{kind}.name", REQUIRED)
                for j, item in enumerate(ref.items):
                    self.key_to_path(item, f"{spath}.{kind}.items[{j}]")
                    if item.path:
                        unique(item.path, ref.name)
            if source.downward_api is not None:
                count += 1
                for item in source.downward_api.items:
                    self.downward_api_file(item, f"{spath}.downwardAPI")
                    if item.path:
                        unique(item.path, item.path)
            token = source.service_account_token
            if token is not None:
                count += 1
                tpath = f"{spath}.serviceAccountToken"
                seconds = token.expiration_seconds or 0
                if seconds < 10 * 60:
                    self.add(f"{tpath}.expirationSeconds", INVALID,
                             "may not specify a duration less than 10 minutes", seconds)
                if seconds > 1 << 32:
                    self.add(f"{tpath}.expirationSeconds", INVALID,
                             "may not specify a duration larger than 2^32 seconds", seconds)
                if not token.path:
                    self.add(f"{path}.path", REQUIRED)
                else:
                    self.local_non_reserved_path(f"{path}.path", token.path)
            bundle = source.cluster_trust_bundle
            if bundle is not None:  # accepted here, refused by the node at mount time
                count += 1
                bpath = f"{spath}.clusterTrustBundlePEM"
                if bundle.name is not None and bundle.signer_name is not None:
                    self.add(bpath, INVALID, "only one of name and signerName may be used", bundle.name)
                elif bundle.name is not None:
                    if not bundle.name:
                        self.add(f"{bpath}.name", REQUIRED, "must be a valid object name")
                    if bundle.label_selector is not None:
                        self.add(f"{bpath}.labelSelector", INVALID,
                                 "labelSelector must be unset if name is specified", "")
                elif bundle.signer_name is not None:
                    if bundle.label_selector is None:
                        self.add(f"{bpath}.labelSelector", REQUIRED,
                                 "labelSelector must be set if signerName is set")
                else:
                    self.add(bpath, REQUIRED, "either name or signerName must be used")
                if not bundle.path:
                    self.add(f"{bpath}.path", REQUIRED)
                self.local_non_reserved_path(f"{bpath}.path", bundle.path)
                unique(bundle.path, bundle.path)
            if count > 1:
                self.add(spath, FORBIDDEN, "may not specify more than 1 volume type per source")

    def file_mode(self, path: str, mode: int | None) -> None:
        if mode is not None and not 0 <= mode <= 0o777:
            self.add(path, INVALID, "must be a number between 0 and 0777 (octal), both inclusive", mode)

    def key_to_paths(self, items: list[KeyToPath], path: str) -> None:
        for i, item in enumerate(items):
            self.key_to_path(item, f"{path}[{i}]")

    def key_to_path(self, item: KeyToPath, ipath: str) -> None:
        if not item.key:
            self.add(f"{ipath}.key", REQUIRED)
        if not item.path:
            self.add(f"{ipath}.path", REQUIRED)
        else:
            self.local_non_reserved_path(f"{ipath}.path", item.path)
        self.file_mode(f"{ipath}.mode", item.mode)

    def local_non_reserved_path(self, path: str, value: str) -> None:
        """ValidateLocalNonReservedPath: relative, no '..' element, not starting with '..'."""
        self.local_descending_path(path, value)
        if value.startswith(".."):
            self.add(path, INVALID, "must not start with '..'", value)

    def no_backsteps(self, path: str, value: str) -> None:
        if ".." in re.split(r"[/\\]", value):
            self.add(path, INVALID, "must not contain '..'", value)

    def local_descending_path(self, path: str, value: str) -> None:
        if posixpath.isabs(value):
            self.add(path, INVALID, "must be a relative path", value)
        self.no_backsteps(path, value)

    # containers

    def container(self, c: Container, path: str, spec: PodSpec, volumes: set[str],
                  names: set[str], *, init: bool) -> None:
        if not c.name:
            self.add(f"{path}.name", REQUIRED)
        elif c.name in names:
            self.add(f"{path}.name", DUPLICATE, value=c.name)
        else:
            self.label(f"{path}.name", c.name)
        if c.name:
            names.add(c.name)
        image_ok = self.image(c.image, f"{path}.image")

        sidecar = init and c.restart_policy == "Always"
        if init:
            if c.restart_policy is not None:
                self.enum(f"{path}.restartPolicy", c.restart_policy, CONTAINER_RESTART_POLICIES)
        elif c.restart_policy is not None:
            self.add(f"{path}.restartPolicy", FORBIDDEN, "may not be set for non-init containers")

        self.ports(c.ports, f"{path}.ports", host_network=spec.host_network)
        self.env_from(c.env_from, f"{path}.envFrom")
        self.env(c.env, f"{path}.env")
        self.volume_mounts(c, f"{path}.volumeMounts", volumes)
        self.resources(c.resources, f"{path}.resources")

        grace = spec.termination_grace_period_seconds
        probes = (("livenessProbe", c.liveness_probe), ("readinessProbe", c.readiness_probe),
                  ("startupProbe", c.startup_probe))
        if init and not sidecar:
            if c.lifecycle is not None:
                self.add(f"{path}.lifecycle", FORBIDDEN,
                         "may not be set for init containers without restartPolicy=Always")
            for name, probe in probes:
                if probe is not None:
                    self.add(f"{path}.{name}", FORBIDDEN,
                             "may not be set for init containers without restartPolicy=Always")
        else:
            if c.lifecycle is not None:
                self.lifecycle(c.lifecycle, f"{path}.lifecycle", grace)
            for name, probe in probes:
                if probe is not None:
                    self.probe(probe, f"{path}.{name}", kind=name)
            self.named_ports(c, path)

        if c.image_pull_policy or image_ok:
            self.enum(f"{path}.imagePullPolicy", c.image_pull_policy, PULL_POLICIES)
        self.enum(f"{path}.terminationMessagePolicy", c.termination_message_policy,
                  TERMINATION_MESSAGE_POLICIES)
        if c.security_context is not None:
            self.security_context(c.security_context, f"{path}.securityContext")

    def image(self, image: str, path: str) -> bool:
        if not image:
            self.add(path, REQUIRED)
            return False
        if image.strip() != image:
            self.add(path, INVALID, "must not have leading or trailing whitespace", image)
            return False
        try:
            parse_reference(image)
        except InvalidReferenceError as exc:
            self.add(path, INVALID, f"not a valid image reference: {exc.reason}", image)
            return False
        return True

    def ports(self, ports: list[ContainerPort], path: str, *, host_network: bool) -> None:
        names: set[str] = set()
        for i, port in enumerate(ports):
            ppath = f"{path}[{i}]"
            if port.name:
                msgs = is_valid_port_name(port.name)
                if msgs:
                    self.invalid_each(f"{ppath}.name", port.name, msgs)
                elif port.name in names:
                    self.add(f"{ppath}.name", DUPLICATE, value=port.name)
                else:
                    names.add(port.name)
            if port.container_port == 0:
                self.add(f"{ppath}.containerPort", REQUIRED)
            else:
                self.invalid_each(f"{ppath}.containerPort", port.container_port,
                                  is_valid_port_num(port.container_port))
            if port.host_port != 0:
                self.invalid_each(f"{ppath}.hostPort", port.host_port,
                                  is_valid_port_num(port.host_port))
            self.enum(f"{ppath}.protocol", port.protocol, PROTOCOLS)
            if port.host_ip and not _is_ip(port.host_ip):
                self.add(f"{ppath}.hostIP", INVALID, "must be a valid IP address", port.host_ip)
            if host_network and port.host_port != port.container_port:
                self.add(f"{ppath}.hostPort", INVALID,
                         "must match `containerPort` when `hostNetwork` is true", port.host_port)

    def host_port_conflicts(self, spec: PodSpec, path: str) -> None:
        """Host ports are unique among app containers (init containers run alone)."""
        seen: set[str] = set()
        for i, c in enumerate(spec.containers):
            for j, port in enumerate(c.ports):
                if port.host_port == 0:
                    continue
                key = f"{port.host_ip}/{port.protocol}/{port.host_port}"
                if key in seen:
                    self.add(f"{path}.containers[{i}].ports[{j}].hostPort", DUPLICATE, value=key)
                seen.add(key)

    def env_name(self, path: str, name: str) -> None:
        check = is_relaxed_env_var_name if self.relaxed_env_names else is_env_var_name
        self.invalid_each(path, name, check(name))

    def env_from(self, sources: list[EnvFromSource], path: str) -> None:
        for i, src in enumerate(sources):
            spath = f"{path}[{i}]"
            if src.prefix:
                self.env_name(f"{spath}.prefix", src.prefix)
            refs = [(n, r) for n, r in (("configMapRef", src.config_map_ref),
                                         ("secretRef", src.secret_ref)) if r is not None]
            for name, ref in refs:
                if not ref.name:
                    self.add(f"{spath}.{name}.name", REQUIRED)
                else:
                    self.subdomain(f"{spath}.{name}.name", ref.name)
            if not refs:
                self.add(path, INVALID, "must specify one of: `configMapRef` or `secretRef`", "")
            elif len(refs) > 1:
                self.add(path, INVALID, "may not have more than one field specified at a time", "")

    def env(self, env: list[EnvVar], path: str) -> None:
        for i, ev in enumerate(env):
            epath = f"{path}[{i}]"
            if not ev.name:
                self.add(f"{epath}.name", REQUIRED)
            else:
                self.env_name(f"{epath}.name", ev.name)
            if ev.value_from is None:
                continue
            vpath = f"{epath}.valueFrom"
            src = ev.value_from
            count = 0
            if src.field_ref is not None:
                count += 1
                self.field_ref(src.field_ref, f"{vpath}.fieldRef")
            if src.resource_field_ref is not None:
                count += 1
                self.resource_field_ref(src.resource_field_ref, f"{vpath}.resourceFieldRef")
            if src.config_map_key_ref is not None:
                count += 1
                self.key_selector(src.config_map_key_ref, f"{vpath}.configMapKeyRef")
            if src.secret_key_ref is not None:
                count += 1
                self.key_selector(src.secret_key_ref, f"{vpath}.secretKeyRef")
            if count == 0:
                self.add(vpath, INVALID, "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                         "`configMapKeyRef` or `secretKeyRef`", "")
            elif ev.value:
                self.add(vpath, INVALID, "may not be specified when `value` is not empty", "")
            elif count > 1:
                self.add(vpath, INVALID, "may not have more than one field specified at a time", "")

    def field_ref(self, ref: ObjectFieldSelector, path: str,
                  allowed: tuple[str, ...] = ENV_FIELD_PATHS) -> None:
        if not ref.api_version:
            self.add(f"{path}.apiVersion", REQUIRED)
            return
        if not ref.field_path:
            self.add(f"{path}.fieldPath", REQUIRED)
            return
        if ref.api_version != "v1":
            self.errors.append(_not_supported(f"{path}.apiVersion", ref.api_version, ("v1",)))
            return
        field_path = "spec.nodeName" if ref.field_path == "spec.host" else ref.field_path
        match = re.fullmatch(r"([^\[]+)\['(.*)'\]", field_path)
        if match:
            base, key = match.group(1), match.group(2)
            if base == "metadata.annotations":
                self.invalid_each(path, key, is_qualified_name(key.lower()))
            elif base == "metadata.labels":
                self.invalid_each(path, key, is_qualified_name(key))
            else:
                self.add(path, INVALID, "does not support subscript", base)
            return
        if field_path not in CONVERTIBLE_FIELD_PATHS:
            self.add(f"{path}.fieldPath", INVALID,
                     f"error converting fieldPath: field label not supported: {field_path}",
                     field_path)
        elif field_path not in allowed:
            self.errors.append(_not_supported(f"{path}.fieldPath", field_path, allowed))

    def resource_field_ref(self, ref: ResourceFieldSelector, path: str, *, volume: bool = False) -> None:
        if volume and not ref.container_name:
            self.add(f"{path}.containerName", REQUIRED)
        elif not ref.resource:
            self.add(f"{path}.resource", REQUIRED)
        elif ref.resource not in RESOURCE_FIELD_REFS and not ref.resource.startswith(
                RESOURCE_FIELD_REF_PREFIXES):
            self.errors.append(_not_supported(f"{path}.resource", ref.resource, RESOURCE_FIELD_REFS))
        divisor = ref.divisor
        if divisor is None or divisor.is_zero() or not ref.resource:
            return
        resource = ref.resource.split(".", 1)[-1]
        allowed = _DIVISORS_CPU if resource == "cpu" else _DIVISORS_BYTES
        if all(divisor != Quantity(a) for a in allowed):
            what = {"cpu": "the cpu resource", "memory": "the memory resource",
                    "ephemeral-storage": "the local ephemeral storage resource"}.get(
                resource, "hugepages resources")
            listed = " and ".join(allowed) if len(allowed) == 2 else ", ".join(allowed)
            self.add(f"{path}.divisor", INVALID,
                     f"only divisor's values {listed} are supported with {what}", divisor.text)

    def key_selector(self, sel: KeySelector, path: str) -> None:
        self.subdomain(f"{path}.name", sel.name)
        if not sel.key:
            self.add(f"{path}.key", REQUIRED)
        else:
            self.invalid_each(f"{path}.key", sel.key, is_config_map_key(sel.key))

    def volume_mounts(self, c: Container, path: str, volumes: set[str]) -> None:
        mount_paths: set[str] = set()
        privileged = bool(c.security_context and c.security_context.privileged)
        for i, m in enumerate(c.volume_mounts):
            mpath = f"{path}[{i}]"
            self.volume_mount(m, mpath, volumes, mount_paths, privileged)

    def volume_mount(self, m: VolumeMount, path: str, volumes: set[str],
                     mount_paths: set[str], privileged: bool) -> None:
        if not m.name:
            self.add(f"{path}.name", REQUIRED)
        elif m.name not in volumes:
            self.add(f"{path}.name", NOT_FOUND, value=m.name)
        if not m.mount_path:
            self.add(f"{path}.mountPath", REQUIRED)
        elif m.mount_path in mount_paths:
            self.add(f"{path}.mountPath", INVALID, "must be unique", m.mount_path)
        elif ":" in m.mount_path:
            self.add(f"{path}.mountPath", INVALID, "must not contain ':'", m.mount_path)
        mount_paths.add(m.mount_path)
        if m.sub_path:
            self.local_descending_path(f"{path}.subPath", m.sub_path)
        if m.mount_propagation is not None:
            self.enum(f"{path}.mountPropagation", m.mount_propagation, MOUNT_PROPAGATION_MODES)
            if m.mount_propagation == "Bidirectional" and not privileged:
                self.add(f"{path}.mountPropagation", FORBIDDEN,
                         "Bidirectional mount propagation is available only to privileged containers")

    # resources

    def resources(self, res: ResourceRequirements, path: str) -> None:
        lim_path, req_path = f"{path}.limits", f"{path}.requests"
        hugepages = compute = False
        for name, q in res.limits.items():
            self.resource_entry(f"{lim_path}[{name}]", name, q)
            hugepages |= name.startswith(_HUGEPAGES_PREFIX)
            compute |= name in QOS_COMPUTE_RESOURCES
        for name, q in res.requests.items():
            self.resource_entry(f"{req_path}[{name}]", name, q)
            hugepages |= name.startswith(_HUGEPAGES_PREFIX)
            compute |= name in QOS_COMPUTE_RESOURCES
            limit = res.limits.get(name)
            overcommit = _overcommit_allowed(name)
            if limit is not None:
                if not overcommit and q != limit:
                    self.add(req_path, INVALID, f"must be equal to {name} limit of {limit.text}", q.text)
                elif q.amount > limit.amount:
                    self.add(req_path, INVALID,
                             f"must be less than or equal to {name} limit of {limit.text}", q.text)
            elif not overcommit:
                self.add(lim_path, REQUIRED, "Limit must be set for non overcommitable resources")
        if hugepages and not compute:
            self.add(path, FORBIDDEN, "HugePages require cpu or memory")

    def resource_entry(self, path: str, name: str, q: Quantity) -> None:
        msgs = is_qualified_name(name)
        if msgs:
            self.invalid_each(path, name, msgs)
            return
        if "/" not in name:
            if name not in STANDARD_CONTAINER_RESOURCES and not _is_hugepages(name):
                self.add(path, INVALID, "must be a standard resource for containers", name)
                return
        elif not _is_native(name) and name.startswith("requests."):
            self.add(path, INVALID, "doesn't follow extended resource name standard", name)
            return
        if q.amount < 0:
            self.add(path, INVALID, "must be greater than or equal to 0", q.text)
        elif not _is_native(name) and q.milli_value() % 1000 != 0:
            self.add(path, INVALID, "must be an integer", q.text)
        elif _is_hugepages(name):
            page = Quantity(name[len(_HUGEPAGES_PREFIX):])
            if q.amount % page.amount != 0:
                self.add(path, INVALID,
                         f"{q.text} is not positive integer multiple of {page.text}", q.text)

    # probes and handlers

    def probe(self, probe: Probe, path: str, *, kind: str) -> None:
        handlers = [("exec", probe.exec), ("httpGet", probe.http_get),
                    ("tcpSocket", probe.tcp_socket), ("grpc", probe.grpc)]
        self.handlers(handlers, path)
        self.nonnegative(f"{path}.initialDelaySeconds", probe.initial_delay_seconds)
        self.nonnegative(f"{path}.timeoutSeconds", probe.timeout_seconds)
        self.nonnegative(f"{path}.periodSeconds", probe.period_seconds)
        self.nonnegative(f"{path}.successThreshold", probe.success_threshold)
        self.nonnegative(f"{path}.failureThreshold", probe.failure_threshold)
        if kind in ("livenessProbe", "startupProbe") and probe.success_threshold != 1:
            self.add(f"{path}.successThreshold", INVALID, "must be 1", probe.success_threshold)
        tgps = probe.termination_grace_period_seconds
        if tgps is not None:
            if kind == "readinessProbe":
                self.add(f"{path}.terminationGracePeriodSeconds", INVALID,
                         "must not be set for readinessProbes", tgps)
            elif tgps <= 0:
                self.add(f"{path}.terminationGracePeriodSeconds", INVALID, "must be greater than 0", tgps)

    def named_ports(self, c: Container, path: str) -> None:
        """A probe or hook port given by name must name one of the container's
        ports (nodeagent: the kubelet would only fail the probe at run time)."""
        declared = {p.name for p in c.ports if p.name}
        handlers: list[tuple[str, object]] = []
        for name, probe in (("livenessProbe", c.liveness_probe), ("readinessProbe", c.readiness_probe),
                            ("startupProbe", c.startup_probe)):
            if probe is not None:
                handlers += [(f"{name}.httpGet", probe.http_get), (f"{name}.tcpSocket", probe.tcp_socket)]
        if c.lifecycle is not None:
            for name, h in (("lifecycle.postStart", c.lifecycle.post_start),
                            ("lifecycle.preStop", c.lifecycle.pre_stop)):
                if h is not None:
                    handlers += [(f"{name}.httpGet", h.http_get), (f"{name}.tcpSocket", h.tcp_socket)]
        for where, action in handlers:
            port = getattr(action, "port", None)
            if (isinstance(port, str) and port not in declared
                    and not is_valid_port_name(port)):  # a malformed name has its own error
                known = ", ".join(f'"{n}"' for n in sorted(declared)) or "none"
                self.add(f"{path}.{where}.port", INVALID,
                         f"no container port with this name (container ports: {known})", port)

    def lifecycle(self, lc: Lifecycle, path: str, grace: int | None) -> None:
        for name, handler in (("postStart", lc.post_start), ("preStop", lc.pre_stop)):
            if handler is not None:
                self.lifecycle_handler(handler, f"{path}.{name}", grace)

    def lifecycle_handler(self, h: LifecycleHandler, path: str, grace: int | None) -> None:
        self.handlers([("exec", h.exec), ("httpGet", h.http_get), ("tcpSocket", h.tcp_socket),
                       ("sleep", h.sleep)], path)
        if h.sleep is not None:
            limit = grace if grace is not None else 30
            if not 0 < h.sleep.seconds <= limit:
                self.add(f"{path}.sleep.seconds", INVALID,
                         f"must be greater than 0 and less than terminationGracePeriodSeconds ({limit})",
                         h.sleep.seconds)

    def handlers(self, handlers: list[tuple[str, object]], path: str) -> None:
        present = [(name, h) for name, h in handlers if h is not None]
        if not present:
            self.add(path, REQUIRED, "must specify a handler type")
            return
        for name, _ in present[1:]:
            self.add(f"{path}.{name}", FORBIDDEN, "may not specify more than 1 handler type")
        name, handler = present[0]
        hpath = f"{path}.{name}"
        if isinstance(handler, ExecAction):
            if not handler.command:
                self.add(f"{hpath}.command", REQUIRED)
        elif isinstance(handler, HTTPGetAction):
            if not handler.path:
                self.add(f"{hpath}.path", REQUIRED)
            self.port_num_or_name(f"{hpath}.port", handler.port)
            self.enum(f"{hpath}.scheme", handler.scheme, URI_SCHEMES)
            for header in handler.http_headers:
                if not _HTTP_HEADER_NAME_RE.fullmatch(header.name):
                    self.add(f"{hpath}.httpHeaders", INVALID, regex_error(
                        "a valid HTTP header must consist of alphanumeric characters or '-'",
                        HTTP_HEADER_NAME_FMT, "X-Header-Name"), header.name)
        elif isinstance(handler, TCPSocketAction):
            self.port_num_or_name(f"{hpath}.port", handler.port)
        elif isinstance(handler, GRPCAction):
            self.invalid_each(f"{hpath}.port", handler.port, is_valid_port_num(handler.port))

    def port_num_or_name(self, path: str, port: int | str) -> None:
        if isinstance(port, int):
            self.invalid_each(path, port, is_valid_port_num(port))
        else:
            self.invalid_each(path, port, is_valid_port_name(port))

    # security

    def security_context(self, sc: SecurityContext, path: str) -> None:
        self.id_range(f"{path}.runAsUser", sc.run_as_user)
        self.id_range(f"{path}.runAsGroup", sc.run_as_group)
        if sc.proc_mount is not None:
            self.enum(f"{path}.procMount", sc.proc_mount, PROC_MOUNT_TYPES)
        if sc.capabilities is not None:
            self.capabilities(sc.capabilities, f"{path}.capabilities")
        if sc.allow_privilege_escalation is False:
            if sc.privileged:
                self.add(path, INVALID,
                         "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                         "allowPrivilegeEscalation=false, privileged=true")
            if sc.capabilities is not None and any(
                    _capability_name(cap) == "SYS_ADMIN" for cap in sc.capabilities.add):
                self.add(path, INVALID, "cannot set `allowPrivilegeEscalation` to false and "
                                        "`capabilities.Add` CAP_SYS_ADMIN",
                         "allowPrivilegeEscalation=false, capabilities.add=CAP_SYS_ADMIN")
        if sc.seccomp_profile is not None:
            self.seccomp(sc.seccomp_profile, f"{path}.seccompProfile")

    def pod_security_context(self, sc: PodSecurityContext, path: str) -> None:
        self.id_range(f"{path}.runAsUser", sc.run_as_user)
        self.id_range(f"{path}.runAsGroup", sc.run_as_group)
        self.id_range(f"{path}.fsGroup", sc.fs_group)
        for i, gid in enumerate(sc.supplemental_groups):
            self.id_range(f"{path}.supplementalGroups[{i}]", gid)
        seen: set[str] = set()
        for i, sysctl in enumerate(sc.sysctls):
            spath = f"{path}.sysctls[{i}].name"
            if not sysctl.name:
                self.add(spath, REQUIRED)
            elif len(sysctl.name) > SYSCTL_MAX_LENGTH or not _SYSCTL_RE.fullmatch(sysctl.name):
                self.add(spath, INVALID, f"must have at most {SYSCTL_MAX_LENGTH} characters and "
                                         f"match regex ^{SYSCTL_FMT}$", sysctl.name)
            elif sysctl.name in seen:
                self.add(spath, DUPLICATE, value=sysctl.name)
            seen.add(sysctl.name)
        if sc.seccomp_profile is not None:
            self.seccomp(sc.seccomp_profile, f"{path}.seccompProfile")

    def id_range(self, path: str, value: int | None) -> None:
        if value is not None and not 0 <= value <= MAX_INT32:
            self.add(path, INVALID, inclusive_range_error(0, MAX_INT32), value)

    def capabilities(self, caps: Capabilities, path: str) -> None:
        for field_name, names in (("add", caps.add), ("drop", caps.drop)):
            for i, cap in enumerate(names):
                if _capability_name(cap) not in LINUX_CAPABILITIES and cap.upper() != "ALL":
                    self.add(f"{path}.{field_name}[{i}]", INVALID,
                             "unknown capability: must be a Linux capability such as NET_ADMIN "
                             "(with or without the CAP_ prefix) or ALL", cap)

    def seccomp(self, profile: SeccompProfile, path: str) -> None:
        self.enum(f"{path}.type", profile.type, SECCOMP_PROFILE_TYPES)
        if profile.type == "Localhost":
            if not profile.localhost_profile:
                self.add(f"{path}.localhostProfile", REQUIRED,
                         "must be set when seccomp type is Localhost")
            else:
                self.local_descending_path(f"{path}.localhostProfile", profile.localhost_profile)
        elif profile.localhost_profile is not None:
            self.add(f"{path}.localhostProfile", INVALID,
                     "can only be set when seccomp type is Localhost", profile.localhost_profile)


def _capability_name(cap: str) -> str:
    upper = cap.upper()
    return upper[len("CAP_"):] if upper.startswith("CAP_") else upper


def _is_hugepages(name: str) -> bool:
    if not name.startswith(_HUGEPAGES_PREFIX):
        return False
    try:
        return Quantity(name[len(_HUGEPAGES_PREFIX):]).amount > 0
    except InvalidQuantityError:
        return False


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _overcommit_allowed(name: str) -> bool:
    """Only native, non-hugepage resources may request less than their limit."""
    return _is_native(name) and not name.startswith(_HUGEPAGES_PREFIX)
