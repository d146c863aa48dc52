"""Pod spec -> CRI configs, built the way the kubelet's kuberuntime builds them.

`sandbox_config` is generatePodSandboxConfig, `container_config` is
generateContainerConfig (with makeEnvironmentVariables, makeMounts and the
Linux security context/resources of kuberuntime_container_linux.go). Both are
pure apart from reading the node's resolv.conf and resolving subPath symlinks;
directories (pod log dir, `<log dir>/<container>`) are the caller's to create.

Sources: k/k pkg/kubelet/kuberuntime (kuberuntime_sandbox.go,
kuberuntime_container*.go, labels.go, security_context*.go), kubelet_pods.go,
network/dns/dns.go, cm/helpers_linux.go, pkg/securitycontext/util.go,
pkg/fieldpath, third_party/forked/golang/expansion.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import (
    Container,
    ContainerPort,
    EnvVar,
    HTTPGetAction,
    HTTPHeader,
    ObjectFieldSelector,
    Pod,
    ResourceFieldSelector,
    SeccompProfile,
    SleepAction,
    TCPSocketAction,
)
from nodeagent.cgroups import values as cgroup_values
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.gotext import go_quote, go_strerror

if TYPE_CHECKING:
    from nodeagent.configdata.env import EnvObjects

# -- labels and annotations (kuberuntime/labels.go, k8s.io/kubelet/pkg/types) ----

LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
ANNOTATION_HASH = "io.kubernetes.container.hash"
ANNOTATION_RESTART_COUNT = "io.kubernetes.container.restartCount"
ANNOTATION_TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
ANNOTATION_TERMINATION_MESSAGE_POLICY = "io.kubernetes.container.terminationMessagePolicy"
ANNOTATION_DELETION_GRACE_PERIOD = "io.kubernetes.pod.deletionGracePeriod"
ANNOTATION_TERMINATION_GRACE_PERIOD = "io.kubernetes.pod.terminationGracePeriod"
ANNOTATION_PRESTOP_HANDLER = "io.kubernetes.container.preStopHandler"
ANNOTATION_PORTS = "io.kubernetes.container.ports"

# -- limits ---------------------------------------------------------------------

HOSTNAME_MAX_LEN = 63
MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCH_PATHS = 32          # ExpandedDNSConfig, GA in 1.28
MAX_DNS_SEARCH_LIST_CHARS = 2048
MAX_DNS_SEARCH_NAME_LEN = 253      # DNS1123SubdomainMaxLength
MAX_RESOLV_CONF_BYTES = 10 << 20
CLUSTER_FIRST_DNS_OPTIONS = ("ndots:5",)

# pkg/securitycontext/util.go (kept in sync with moby's oci defaults).
DEFAULT_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_PROTOCOLS = {"TCP": pb.Protocol.TCP, "UDP": pb.Protocol.UDP, "SCTP": pb.Protocol.SCTP}
_PROPAGATION = {
    None: pb.MountPropagation.PROPAGATION_PRIVATE,
    "None": pb.MountPropagation.PROPAGATION_PRIVATE,
    "HostToContainer": pb.MountPropagation.PROPAGATION_HOST_TO_CONTAINER,
    "Bidirectional": pb.MountPropagation.PROPAGATION_BIDIRECTIONAL,
}
_NO_ANNOTATIONS: Mapping[str, str] = MappingProxyType({})


class ConfigError(Exception):
    """The pod spec cannot be turned into a container config; the container waits
    with reason CreateContainerConfigError and this message."""

    reason = "CreateContainerConfigError"


@dataclass(frozen=True)
class NodeContext:
    """What the node contributes to every config."""
    node_name: str
    node_ips: tuple[str, ...]
    allocatable_cpu_millis: int
    allocatable_memory_bytes: int
    pod_logs_dir: Path
    root_dir: Path
    resolv_conf: Path = Path("/etc/resolv.conf")
    # cpuCFSQuota, podPidsLimit, machine memory, the host's OOM score floor.
    resources: cgroup_values.ResourcePolicy = cgroup_values.ResourcePolicy(memory_capacity=0)
    # Fallback for limits.ephemeral-storage in resourceFieldRef (0 = unknown).
    allocatable_ephemeral_storage_bytes: int = 0
    # clusterDNS / clusterDomain (KubeletConfiguration) for ClusterFirst pods.
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = ""


# -- small shared helpers ----------------------------------------------------------

def format_pod(pod: Pod) -> str:
    """The kubelet's format.Pod: `name_namespace(uid)`, used in error messages."""
    meta = pod.metadata
    return f"{meta.name}_{meta.namespace}({meta.uid})"


def pod_log_dir(pod: Pod, ctx: NodeContext) -> Path:
    """`<pod_logs_dir>/<namespace>_<name>_<uid>` (BuildPodLogsDirectory)."""
    meta = pod.metadata
    return ctx.pod_logs_dir / f"{meta.namespace}_{meta.name}_{meta.uid}"


def container_log_path(container_name: str, attempt: int) -> str:
    """`<name>/<attempt>.log`, relative to the pod log dir (buildContainerLogsPath)."""
    return f"{container_name}/{attempt}.log"


def _all_containers(pod: Pod) -> list[Container]:
    return [*pod.spec.init_containers, *pod.spec.containers]


# -- sandbox ------------------------------------------------------------------------

def pod_hostname(pod: Pod) -> str:
    """spec.hostname or the pod name, cut to 63 chars without a trailing '-' or '.'
    (GeneratePodHostNameAndDomain + truncatePodHostnameIfNeeded)."""
    hostname = pod.spec.hostname or pod.metadata.name
    if len(hostname) <= HOSTNAME_MAX_LEN:
        return hostname
    truncated = hostname[:HOSTNAME_MAX_LEN].rstrip("-.")
    if not truncated:
        raise ConfigError(f"hostname for pod {go_quote(pod.metadata.name)} was invalid: "
                          f"{go_quote(hostname)}")
    return truncated


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """nameservers accumulate; the last `search` and `options` lines win
    (dns.go parseResolvConf, trailing dots dropped from searches)."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.split("\n"):
        fields = line.strip().split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            servers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            options = fields[1:]
    return servers, searches, options


def _read_host_dns(path: Path) -> tuple[list[str], list[str], list[str]]:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_RESOLV_CONF_BYTES)
    except OSError as exc:
        raise ConfigError(f"open {path}: {go_strerror(exc)}") from exc
    return parse_resolv_conf(data.decode("utf-8", "replace"))


def _dedup(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_dns_options(existing: Sequence[str], extra: Iterable[tuple[str, str | None]]) -> list[str]:
    """Options by name; spec.dnsConfig wins. The kubelet goes through a Go map (random
    order); we keep first-seen order so configs are stable."""
    merged: dict[str, str] = {}
    for opt in existing:
        name, _, value = opt.partition(":")
        merged[name] = value
    for name, value in extra:
        merged[name] = value or ""
    return [f"{name}:{value}" if value else name for name, value in merged.items()]


def _fit_searches(searches: list[str]) -> list[str]:
    """formDNSSearchFitsLimits: at most 32 paths, none over 253 chars, 2048 chars in all."""
    kept = [s for s in searches[:MAX_DNS_SEARCH_PATHS] if len(s) <= MAX_DNS_SEARCH_NAME_LEN]
    while kept and len(" ".join(kept)) > MAX_DNS_SEARCH_LIST_CHARS:
        kept.pop()
    return kept


def dns_config(pod: Pod, ctx: NodeContext, *, cluster_dns: tuple[str, ...] = (),
               cluster_domain: str = "") -> pb.DNSConfig:
    """GetPodDNS. ClusterFirst on a hostNetwork pod, and ClusterFirst(WithHostNet)
    without a cluster DNS server, fall back to the host's resolv.conf ("Default")."""
    policy = pod.spec.dns_policy or "ClusterFirst"
    if policy == "None":
        servers, searches, options = [], [], []
    else:
        servers, searches, options = _read_host_dns(ctx.resolv_conf)
        if policy == "ClusterFirst":
            cluster = not pod.spec.host_network
        else:  # an unknown policy is logged and treated as ClusterFirst by the kubelet
            cluster = policy != "Default"
        if cluster and cluster_dns:
            servers = list(cluster_dns)
            if cluster_domain:
                ns = pod.metadata.namespace
                searches = _dedup([f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}",
                                   cluster_domain, *searches])
            options = list(CLUSTER_FIRST_DNS_OPTIONS)
    extra = pod.spec.dns_config
    if extra is not None:
        servers = _dedup([*servers, *extra.nameservers])
        searches = _dedup([*searches, *extra.searches])
        options = _merge_dns_options(options, ((o.name, o.value) for o in extra.options))
    return pb.DNSConfig(servers=servers[:MAX_DNS_NAMESERVERS], searches=_fit_searches(searches),
                        options=options)


def port_mappings(pod: Pod) -> list[pb.PortMapping]:
    """Ports with a hostPort, for the runtime's portmap (the kubelet hands over every
    port; runtimes ignore those without a hostPort)."""
    return [pb.PortMapping(protocol=_PROTOCOLS.get(p.protocol, pb.Protocol.TCP),
                           container_port=p.container_port, host_port=p.host_port,
                           host_ip=p.host_ip)
            for c in pod.spec.containers for p in c.ports if p.host_port]


def namespace_options(pod: Pod) -> pb.NamespaceOption:
    """NamespacesForPod: host namespaces when asked, pid shared only with
    shareProcessNamespace, ipc always shared in the pod."""
    spec = pod.spec
    if spec.host_pid:
        pid = pb.NamespaceMode.NODE
    elif spec.share_process_namespace:
        pid = pb.NamespaceMode.POD
    else:
        pid = pb.NamespaceMode.CONTAINER
    return pb.NamespaceOption(
        network=pb.NamespaceMode.NODE if spec.host_network else pb.NamespaceMode.POD,
        pid=pid,
        ipc=pb.NamespaceMode.NODE if spec.host_ipc else pb.NamespaceMode.POD)


def _pod_groups(pod: Pod) -> list[int]:
    """fsGroup first, then supplementalGroups, as the kubelet appends them."""
    psc = pod.spec.security_context
    if psc is None:
        return []
    return ([psc.fs_group] if psc.fs_group is not None else []) + list(psc.supplemental_groups)


def has_privileged_container(pod: Pod) -> bool:
    return any(c.security_context is not None and c.security_context.privileged
               for c in _all_containers(pod))


def sandbox_config(pod: Pod, ctx: NodeContext, *, attempt: int, cgroup_parent: str,
                   cluster_dns: tuple[str, ...] = (), cluster_domain: str = "") -> pb.PodSandboxConfig:
    """generatePodSandboxConfig + generatePodSandboxLinuxConfig."""
    meta = pod.metadata
    psc = pod.spec.security_context
    security = pb.LinuxSandboxSecurityContext(
        namespace_options=namespace_options(pod),
        supplemental_groups=_pod_groups(pod),
        privileged=has_privileged_container(pod),
        # The kubelet always runs the sandbox (pause) under runtime/default so pods can
        # use least-privileged profiles (k/k #84623); pod seccomp applies to containers.
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault))
    if psc is not None and psc.run_as_user is not None:
        security.run_as_user.value = psc.run_as_user
    if psc is not None and psc.run_as_group is not None:
        security.run_as_group.value = psc.run_as_group
    sysctls = {s.name: s.value for s in psc.sysctls} if psc is not None else {}
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=meta.name, uid=meta.uid, namespace=meta.namespace,
                                       attempt=attempt),
        # runc refuses to set a hostname without its own UTS namespace, and the kubelet
        # leaves it empty for hostNetwork pods (they see the node's hostname).
        hostname="" if pod.spec.host_network else pod_hostname(pod),
        log_directory=str(pod_log_dir(pod, ctx)),
        dns_config=dns_config(pod, ctx, cluster_dns=cluster_dns or ctx.cluster_dns,
                              cluster_domain=cluster_domain or ctx.cluster_domain),
        port_mappings=port_mappings(pod),
        labels={**meta.labels, LABEL_POD_NAME: meta.name, LABEL_POD_NAMESPACE: meta.namespace,
                LABEL_POD_UID: meta.uid},
        annotations=dict(meta.annotations),
        linux=pb.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, security_context=security,
                                       sysctls=sysctls))


# -- $(VAR) expansion (third_party/forked/golang/expansion) -------------------------

def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """`$(VAR)` -> its value when defined, else left as written; `$$` -> `$`;
    an unterminated `$(` and any other `$x` are copied through."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(" and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2:end]
            value = lookup(name)
            out.append(f"$({name})" if value is None else value)
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


# -- environment (kubelet_pods.go makeEnvironmentVariables) ----------------------

def format_map(values: Mapping[str, str]) -> str:
    """fieldpath.FormatMap: sorted `key="value"` lines."""
    return "\n".join(f"{k}={go_quote(values[k])}" for k in sorted(values))


def _split_subscript(path: str) -> tuple[str, str] | None:
    if not path.endswith("']"):
        return None
    base, sep, key = path[:-2].partition("['")
    return (base, key) if sep and base else None


def pod_field_value(ref: ObjectFieldSelector, pod: Pod, ctx: NodeContext,
                    pod_ips: Sequence[str]) -> str:
    """podFieldSelectorRuntimeValue + fieldpath.ExtractFieldPathAsString."""
    if ref.api_version not in ("", "v1"):
        raise ConfigError(f"unsupported pod version: {ref.api_version}")
    path = ref.field_path
    meta = pod.metadata
    if (sub := _split_subscript(path)) is not None:
        base, key = sub
        if base == "metadata.annotations":
            return meta.annotations.get(key, "")
        if base == "metadata.labels":
            return meta.labels.get(key, "")
        raise ConfigError(f"field label not supported: {path}")
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: meta.name,
        "metadata.namespace": lambda: meta.namespace,
        "metadata.uid": lambda: meta.uid,
        "metadata.labels": lambda: format_map(meta.labels),
        "metadata.annotations": lambda: format_map(meta.annotations),
        # Static pods get spec.nodeName from the kubelet; fall back to this node.
        "spec.nodeName": lambda: pod.spec.node_name or ctx.node_name,
        "spec.host": lambda: pod.spec.node_name or ctx.node_name,
        "spec.serviceAccountName": lambda: pod.spec.service_account_name,
        "status.hostIP": lambda: ctx.node_ips[0] if ctx.node_ips else "",
        "status.hostIPs": lambda: ",".join(ctx.node_ips),
        "status.podIP": lambda: pod_ips[0] if pod_ips else "",
        "status.podIPs": lambda: ",".join(pod_ips),
    }
    if path in simple:
        return simple[path]()
    if path in ("spec.restartPolicy", "spec.schedulerName", "status.phase"):
        raise ConfigError(f"unsupported fieldPath: {path}")
    raise ConfigError(f"field label not supported: {path}")


def _allocatable(resource: str, ctx: NodeContext) -> Quantity | None:
    """defaultPodLimitsForDownwardAPI: a missing limit reads as node allocatable."""
    values = {"cpu": f"{ctx.allocatable_cpu_millis}m",
              "memory": str(ctx.allocatable_memory_bytes),
              "ephemeral-storage": str(ctx.allocatable_ephemeral_storage_bytes)}
    return Quantity(values[resource]) if resource in values else None


def resource_field_value(ref: ResourceFieldSelector, pod: Pod, container: Container,
                         ctx: NodeContext) -> str:
    """ExtractContainerResourceValue: cpu in ceil(millis / divisor millis), everything
    else in ceil(bytes / divisor); divisor 0 or unset means 1."""
    target = container
    if ref.container_name and ref.container_name != container.name:
        found = [c for c in _all_containers(pod) if c.name == ref.container_name]
        if not found:
            raise ConfigError(f"container {ref.container_name} not found")
        target = found[0]
    kind, _, resource = ref.resource.partition(".")
    if kind not in ("limits", "requests") or not (
            resource in ("cpu", "memory", "ephemeral-storage") or resource.startswith("hugepages-")):
        raise ConfigError(f"unsupported container resource : {ref.resource}")
    values = target.resources.limits if kind == "limits" else target.resources.requests
    amount = values.get(resource)
    if amount is None and kind == "limits":
        amount = _allocatable(resource, ctx)
    amount = amount or Quantity("0")
    divisor = ref.divisor if ref.divisor is not None and not ref.divisor.is_zero() else Quantity("1")
    if resource == "cpu":
        return str(-(-amount.milli_value() // divisor.milli_value()))
    return str(-(-amount.value() // divisor.value()))


def _config_source_error(pod: Pod, kind: str, name: str) -> ConfigError:
    # The kubelet's own message when it runs without an API server.
    return ConfigError(f"couldn't get {kind} {pod.metadata.namespace}/{name}, no kubeClient defined")


def resolve_env(pod: Pod, container: Container, ctx: NodeContext, *,
                sandbox_ip: str, objects: EnvObjects | None = None) -> list[tuple[str, str]]:
    """The container's environment: envFrom sources first, then env entries in
    declaration order (a later name replaces the value in place). `$(VAR)` in a
    value expands against the variables before it. `objects` holds the configMaps
    and secrets the container references (configdata.env.fetch_env_objects);
    without it (no API server) such a reference is an error."""
    env: dict[str, str] = {}
    for source in container.env_from:
        if objects is None:
            if source.config_map_ref is not None:
                raise _config_source_error(pod, "configMap", source.config_map_ref.name)
            if source.secret_ref is not None:
                raise _config_source_error(pod, "secret", source.secret_ref.name)
            continue
        env.update(objects.env_from(source))
    pod_ips = [sandbox_ip] if sandbox_ip else (list(ctx.node_ips) if pod.spec.host_network else [])
    for var in container.env:
        value = _env_value(var, env, pod, container, ctx, pod_ips, objects)
        if value is not None:  # None: an optional reference to something absent
            env[var.name] = value
    return list(env.items())


def _env_value(var: EnvVar, env: Mapping[str, str], pod: Pod, container: Container,
               ctx: NodeContext, pod_ips: Sequence[str], objects: EnvObjects | None) -> str | None:
    if var.value:
        return expand(var.value, env.get)
    source = var.value_from
    if source is None:
        return ""
    if source.field_ref is not None:
        return pod_field_value(source.field_ref, pod, ctx, pod_ips)
    if source.resource_field_ref is not None:
        return resource_field_value(source.resource_field_ref, pod, container, ctx)
    for kind, selector in (("configMap", source.config_map_key_ref), ("secret", source.secret_key_ref)):
        if selector is None:
            continue
        if objects is None:
            raise _config_source_error(pod, kind, selector.name)
        return objects.key(kind, selector)
    return ""


# -- mounts (kubelet_pods.go makeMounts, kuberuntime makeMounts) ------------------

def _subpath_host_path(volume_path: str, sub_path: str) -> str:
    """Join a subPath and refuse anything that leaves the volume, lexically or via
    symlinks already inside it (the kubelet's safe-subpath checks)."""
    if PurePosixPath(sub_path).is_absolute():
        raise ConfigError(f"error SubPath `{sub_path}` must not be an absolute path")
    if ".." in sub_path.split("/"):
        raise ConfigError(f"unable to provision SubPath `{sub_path}`: must not contain '..'")
    joined = os.path.join(volume_path, sub_path)
    root = os.path.realpath(volume_path)
    real = os.path.realpath(joined)
    if real != root and not real.startswith(root.rstrip("/") + "/"):
        raise ConfigError(f"subpath {go_quote(joined)} not within volume path {go_quote(root)}")
    return joined


def container_mounts(container: Container, mounts: Mapping[str, str],
                     termination_log: Path | None) -> list[pb.Mount]:
    """One CRI mount per volumeMount, then the termination-message file."""
    result = []
    for vm in container.volume_mounts:
        if vm.name not in mounts:
            raise ConfigError(f"cannot find volume {go_quote(vm.name)} to mount into "
                              f"container {go_quote(container.name)}")
        if vm.mount_propagation not in _PROPAGATION:
            raise ConfigError(f"invalid MountPropagation mode: {go_quote(vm.mount_propagation)}")
        host = mounts[vm.name]
        if vm.sub_path:
            host = _subpath_host_path(host, vm.sub_path)
        result.append(pb.Mount(host_path=host, container_path=vm.mount_path, readonly=vm.read_only,
                               propagation=_PROPAGATION[vm.mount_propagation]))
    if termination_log is not None and container.termination_message_path:
        result.append(pb.Mount(host_path=str(termination_log),
                               container_path=container.termination_message_path))
    return result


# -- security context (kuberuntime/security_context.go, pkg/securitycontext) -----

def effective_run_as_user(pod: Pod, container: Container) -> int | None:
    """Container runAsUser over the pod's."""
    return _effective(pod, container, "run_as_user")


def effective_run_as_group(pod: Pod, container: Container) -> int | None:
    return _effective(pod, container, "run_as_group")


def effective_run_as_non_root(pod: Pod, container: Container) -> bool | None:
    return _effective(pod, container, "run_as_non_root")


def _effective(pod: Pod, container: Container, attr: str) -> Any:
    csc, psc = container.security_context, pod.spec.security_context
    if csc is not None and getattr(csc, attr) is not None:
        return getattr(csc, attr)
    return getattr(psc, attr) if psc is not None else None


def seccomp_profile(pod: Pod, container: Container, ctx: NodeContext) -> pb.SecurityProfile:
    """getSeccompProfile: container field, else pod field, else Unconfined (the kubelet's
    seccompDefault is off by default). Localhost profiles live under <root>/seccomp."""
    csc, psc = container.security_context, pod.spec.security_context
    profile: SeccompProfile | None = None
    if csc is not None and csc.seccomp_profile is not None:
        profile = csc.seccomp_profile
    elif psc is not None and psc.seccomp_profile is not None:
        profile = psc.seccomp_profile
    if profile is None or profile.type not in ("RuntimeDefault", "Localhost"):
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined)
    if profile.type == "RuntimeDefault":
        return pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault)
    if not profile.localhost_profile:
        raise ConfigError("localhostProfile must be set if seccompProfile type is Localhost.")
    return pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost,
                              localhost_ref=str(ctx.root_dir / "seccomp" / profile.localhost_profile))


def container_security_context(pod: Pod, container: Container,
                               ctx: NodeContext) -> pb.LinuxContainerSecurityContext:
    """determineEffectiveSecurityContext. With no runAsUser in the spec the runtime
    uses the image's USER."""
    csc = container.security_context
    privileged = bool(csc is not None and csc.privileged)
    unmasked = privileged or (csc is not None and csc.proc_mount == "Unmasked")
    sc = pb.LinuxContainerSecurityContext(
        namespace_options=namespace_options(pod),
        privileged=privileged,
        readonly_rootfs=bool(csc is not None and csc.read_only_root_filesystem),
        supplemental_groups=_pod_groups(pod),
        no_new_privs=csc is not None and csc.allow_privilege_escalation is False,
        masked_paths=() if unmasked else DEFAULT_MASKED_PATHS,
        readonly_paths=() if unmasked else DEFAULT_READONLY_PATHS,
        seccomp=seccomp_profile(pod, container, ctx))
    if csc is not None and csc.capabilities is not None:
        # As given, like the kubelet: runtimes add the CAP_ prefix themselves and
        # recognise "ALL" only as the literal name.
        sc.capabilities.add_capabilities.extend(csc.capabilities.add)
        sc.capabilities.drop_capabilities.extend(csc.capabilities.drop)
    if (uid := effective_run_as_user(pod, container)) is not None:
        sc.run_as_user.value = uid
    if (gid := effective_run_as_group(pod, container)) is not None:
        sc.run_as_group.value = gid
    return sc


def verify_run_as_non_root(pod: Pod, container: Container, image_uid: int | None,
                           image_username: str) -> None:
    """security_context_others.go verifyRunAsNonRoot. `image_uid`/`image_username` come
    from CRI ImageStatus; an image with neither runs as root (getImageUser)."""
    if not effective_run_as_non_root(pod, container):
        return
    where = f"(pod: {go_quote(format_pod(pod))}, container: {container.name})"
    run_as_user = effective_run_as_user(pod, container)
    if run_as_user is not None:
        if run_as_user == 0:
            raise ConfigError(f"container's runAsUser breaks non-root policy {where}")
        return
    if image_uid is None and image_username:
        raise ConfigError(f"container has runAsNonRoot and image has non-numeric user "
                          f"({image_username}), cannot verify user is non-root {where}")
    uid = image_uid or 0
    if uid == 0:
        raise ConfigError(f"container has runAsNonRoot and image will run as root {where}")
    if not 0 <= uid <= 2**31 - 1:
        raise ConfigError(f"container has runAsNonRoot and image has an invalid user id ({uid}). "
                          f"(Must be 1-({2**31 - 1})): must be between 0 and 2147483647, "
                          f"inclusive {where}")


# -- annotations, hash -------------------------------------------------------------

# Go fields without `omitempty` reachable from a LifecycleHandler or ContainerPort.
_GO_ALWAYS = {(ContainerPort, "container_port"), (HTTPGetAction, "port"),
              (TCPSocketAction, "port"), (SleepAction, "seconds"),
              (HTTPHeader, "name"), (HTTPHeader, "value")}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _go_value(value: Any) -> Any:
    """An API object as Go's encoding/json prints it (field order, omitempty)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            keep = f.metadata.get("keep") or (type(value), f.name) in _GO_ALWAYS
            if item is None or (not keep and item in (False, 0, "", [], {})):
                continue
            out[f.metadata.get("json") or _camel(f.name)] = _go_value(item)
        return out
    if isinstance(value, list):
        return [_go_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _go_value(value[k]) for k in sorted(value)}
    if isinstance(value, Quantity):
        return str(value)
    return value


def go_json(value: Any) -> str:
    """Compact JSON with Go's HTML-safe escaping, like json.Marshal."""
    text = json.dumps(_go_value(value), separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _canonical(value: Any) -> Any:
    if isinstance(value, Quantity):
        normal = value.amount.normalize()
        return format(normal if normal != 0 else Decimal(0), "f")
    raise TypeError(f"cannot hash {type(value).__name__}")


def container_hash(container: Container) -> str:
    """A stable hex digest of the whole container spec, to notice spec changes.

    sha256 (first 16 hex digits) of sorted-key JSON of dataclasses.asdict, quantities by
    value ("1000m" == "1"). Not byte-compatible with the kubelet's fnv32a, which since
    1.31 hashes only name and image; containers made by a real kubelet always differ.
    """
    text = json.dumps(dataclasses.asdict(container), sort_keys=True, separators=(",", ":"),
                      default=_canonical)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def container_labels(pod: Pod, container: Container) -> dict[str, str]:
    """newContainerLabels: exactly the four kubelet labels."""
    meta = pod.metadata
    return {LABEL_POD_NAME: meta.name, LABEL_POD_NAMESPACE: meta.namespace,
            LABEL_POD_UID: meta.uid, LABEL_CONTAINER_NAME: container.name}


def container_annotations(pod: Pod, container: Container, attempt: int) -> dict[str, str]:
    """newContainerAnnotations (no device-plugin annotations)."""
    out = {
        ANNOTATION_HASH: container_hash(container),
        ANNOTATION_RESTART_COUNT: str(attempt),
        ANNOTATION_TERMINATION_MESSAGE_PATH: container.termination_message_path,
        ANNOTATION_TERMINATION_MESSAGE_POLICY: container.termination_message_policy,
    }
    if pod.metadata.deletion_grace_period_seconds is not None:
        out[ANNOTATION_DELETION_GRACE_PERIOD] = str(pod.metadata.deletion_grace_period_seconds)
    if pod.spec.termination_grace_period_seconds is not None:
        out[ANNOTATION_TERMINATION_GRACE_PERIOD] = str(pod.spec.termination_grace_period_seconds)
    if container.lifecycle is not None and container.lifecycle.pre_stop is not None:
        out[ANNOTATION_PRESTOP_HANDLER] = go_json(container.lifecycle.pre_stop)
    if container.ports:
        out[ANNOTATION_PORTS] = go_json(container.ports)
    return out


# -- container config ---------------------------------------------------------------

def container_config(pod: Pod, container: Container, ctx: NodeContext, *, attempt: int,
                     image_ref: str, sandbox_ip: str, mounts: Mapping[str, str],
                     termination_log: Path | None,
                     backoff_annotations: Mapping[str, str] = _NO_ANNOTATIONS,
                     env_objects: EnvObjects | None = None) -> pb.ContainerConfig:
    """generateContainerConfig. Raises ConfigError (-> CreateContainerConfigError).

    `mounts` maps volume name -> host path (volumes.prepare_volumes); `termination_log`
    is the host file for terminationMessagePath. The caller checks runAsNonRoot with
    verify_run_as_non_root (it needs the image's user) and creates
    `pod_log_dir(pod, ctx) / container.name` (the kubelet's MkdirAll 0755).
    """
    env = resolve_env(pod, container, ctx, sandbox_ip=sandbox_ip, objects=env_objects)
    lookup = dict(env).get
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=container.name, attempt=attempt),
        image=pb.ImageSpec(image=image_ref, user_specified_image=container.image),
        command=[expand(c, lookup) for c in container.command],
        args=[expand(a, lookup) for a in container.args],
        working_dir=container.working_dir,
        envs=[pb.KeyValue(key=k, value=v) for k, v in env],
        mounts=container_mounts(container, mounts, termination_log),
        labels=container_labels(pod, container),
        annotations={**container_annotations(pod, container, attempt), **backoff_annotations},
        log_path=container_log_path(container.name, attempt),
        stdin=container.stdin,
        stdin_once=container.stdin_once,
        tty=container.tty,
        linux=pb.LinuxContainerConfig(
            resources=cgroup_values.container_resources(pod, container, ctx.resources),
            security_context=container_security_context(pod, container, ctx)))
