"""The subset of the Kubernetes core/v1 Pod API that nodeagent reads and writes.

Plain dataclasses, snake_case in Python; the JSON name is the camelCase of
the field name unless `json=` says otherwise (hostIP, podIPs, imageID …).
Encoding follows Go's `omitempty`: zero values are left out unless the
field is marked `keep=True` (fields the API always prints, such as
`restartCount` or `lastProbeTime: null`).

`None` means "not set" where the API has a pointer (so defaulting can tell
an explicit 0/false from an absent field).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from nodeagent.api.quantity import Quantity


def f(default: Any = None, *, json: str | None = None, keep: bool = False,
      factory: Any = None) -> Any:
    """A field with its JSON name and omitempty behaviour."""
    meta = {"json": json, "keep": keep}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# -- metadata -------------------------------------------------------------

@dataclass
class OwnerReference:
    api_version: str = ""
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool | None = None


@dataclass
class ObjectMeta:
    name: str = ""
    generate_name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: str | None = f(keep=True)
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] = f(factory=dict)
    annotations: dict[str, str] = f(factory=dict)
    owner_references: list[OwnerReference] = f(factory=list)


# -- environment ----------------------------------------------------------

@dataclass
class ObjectFieldSelector:
    field_path: str = ""
    api_version: str = ""


@dataclass
class ResourceFieldSelector:
    container_name: str = ""
    resource: str = ""
    divisor: Quantity | None = None


@dataclass
class KeySelector:
    """configMapKeyRef / secretKeyRef."""
    name: str = ""
    key: str = ""
    optional: bool | None = None


@dataclass
class EnvVarSource:
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None


@dataclass
class EnvVar:
    name: str = ""
    value: str = ""
    value_from: EnvVarSource | None = None


@dataclass
class LocalObjectReference:
    """configMapRef / secretRef of envFrom."""
    name: str = ""
    optional: bool | None = None


@dataclass
class EnvFromSource:
    prefix: str = ""
    config_map_ref: LocalObjectReference | None = None
    secret_ref: LocalObjectReference | None = None


# -- resources, ports, mounts ---------------------------------------------

@dataclass
class ResourceRequirements:
    limits: dict[str, Quantity] = f(factory=dict)
    requests: dict[str, Quantity] = f(factory=dict)


@dataclass
class ContainerPort:
    name: str = ""
    host_port: int = 0
    container_port: int = 0
    protocol: str = ""
    host_ip: str = f("", json="hostIP")


@dataclass
class VolumeMount:
    name: str = ""
    mount_path: str = ""
    read_only: bool = False
    sub_path: str = ""
    mount_propagation: str | None = None


# -- probes and hooks ------------------------------------------------------

@dataclass
class ExecAction:
    command: list[str] = f(factory=list)


@dataclass
class HTTPHeader:
    name: str = ""
    value: str = ""


@dataclass
class HTTPGetAction:
    path: str = ""
    port: int | str = 0
    host: str = ""
    scheme: str = ""
    http_headers: list[HTTPHeader] = f(factory=list)


@dataclass
class TCPSocketAction:
    port: int | str = 0
    host: str = ""


@dataclass
class GRPCAction:
    port: int = 0
    service: str | None = None


@dataclass
class SleepAction:
    seconds: int = 0


@dataclass
class Probe:
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: int = 0
    timeout_seconds: int = 0
    period_seconds: int = 0
    success_threshold: int = 0
    failure_threshold: int = 0
    termination_grace_period_seconds: int | None = None


@dataclass
class LifecycleHandler:
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    sleep: SleepAction | None = None


@dataclass
class Lifecycle:
    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None


# -- security ---------------------------------------------------------------

@dataclass
class Capabilities:
    add: list[str] = f(factory=list)
    drop: list[str] = f(factory=list)


@dataclass
class SeccompProfile:
    type: str = ""
    localhost_profile: str | None = None


@dataclass
class SecurityContext:
    capabilities: Capabilities | None = None
    privileged: bool | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    proc_mount: str | None = None
    seccomp_profile: SeccompProfile | None = None


@dataclass
class Sysctl:
    name: str = ""
    value: str = ""


@dataclass
class PodSecurityContext:
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    supplemental_groups: list[int] = f(factory=list)
    fs_group: int | None = None
    sysctls: list[Sysctl] = f(factory=list)
    seccomp_profile: SeccompProfile | None = None


# -- containers and volumes ----------------------------------------------------

@dataclass
class Container:
    name: str = ""
    image: str = ""
    command: list[str] = f(factory=list)
    args: list[str] = f(factory=list)
    working_dir: str = ""
    ports: list[ContainerPort] = f(factory=list)
    env_from: list[EnvFromSource] = f(factory=list)
    env: list[EnvVar] = f(factory=list)
    resources: ResourceRequirements = f(factory=ResourceRequirements, keep=True)
    # Only init containers: "Always" makes it a sidecar.
    restart_policy: str | None = None
    volume_mounts: list[VolumeMount] = f(factory=list)
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    termination_message_path: str = ""
    termination_message_policy: str = ""
    image_pull_policy: str = ""
    security_context: SecurityContext | None = None
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False


@dataclass
class EmptyDirVolumeSource:
    medium: str = ""
    size_limit: Quantity | None = None


@dataclass
class HostPathVolumeSource:
    path: str = ""
    type: str | None = None


@dataclass
class KeyToPath:
    key: str = ""
    path: str = ""
    mode: int | None = None


@dataclass
class ConfigMapVolumeSource:
    name: str = ""
    items: list[KeyToPath] = f(factory=list)
    default_mode: int | None = None
    optional: bool | None = None


@dataclass
class SecretVolumeSource:
    secret_name: str = ""
    items: list[KeyToPath] = f(factory=list)
    default_mode: int | None = None
    optional: bool | None = None


@dataclass
class DownwardAPIVolumeFile:
    path: str = ""
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    mode: int | None = None


@dataclass
class DownwardAPIVolumeSource:
    items: list[DownwardAPIVolumeFile] = f(factory=list)
    default_mode: int | None = None


@dataclass
class SecretProjection:
    name: str = ""
    items: list[KeyToPath] = f(factory=list)
    optional: bool | None = None


@dataclass
class ConfigMapProjection:
    name: str = ""
    items: list[KeyToPath] = f(factory=list)
    optional: bool | None = None


@dataclass
class DownwardAPIProjection:
    items: list[DownwardAPIVolumeFile] = f(factory=list)


@dataclass
class ServiceAccountTokenProjection:
    audience: str = ""
    expiration_seconds: int | None = None
    path: str = ""


@dataclass
class LabelSelectorRequirement:
    key: str = ""
    operator: str = ""
    values: list[str] = f(factory=list)


@dataclass
class LabelSelector:
    match_labels: dict[str, str] = f(factory=dict)
    match_expressions: list[LabelSelectorRequirement] = f(factory=list)


@dataclass
class ClusterTrustBundleProjection:
    name: str | None = None
    signer_name: str | None = None
    label_selector: LabelSelector | None = None
    optional: bool | None = None
    path: str = ""


@dataclass
class VolumeProjection:
    secret: SecretProjection | None = None
    downward_api: DownwardAPIProjection | None = f(json="downwardAPI")
    config_map: ConfigMapProjection | None = None
    service_account_token: ServiceAccountTokenProjection | None = None
    cluster_trust_bundle: ClusterTrustBundleProjection | None = None


@dataclass
class ProjectedVolumeSource:
    sources: list[VolumeProjection] = f(factory=list)
    default_mode: int | None = None


UNSUPPORTED_VOLUME_SOURCES = (
    "persistent_volume_claim", "ephemeral", "csi", "image", "nfs", "iscsi", "fc", "rbd", "cephfs", "cinder",
    "glusterfs", "flex_volume", "flocker", "git_repo", "aws_elastic_block_store", "gce_persistent_disk",
    "azure_disk", "azure_file", "vsphere_volume", "quobyte", "photon_persistent_disk", "portworx_volume",
    "scale_io", "storageos")


def unsupported_sources(volume: Volume) -> list[str]:
    """The JSON names of the sources nodeagent cannot mount that `volume` has."""
    from nodeagent.api.codec import json_name  # the codec reads these types; not the other way round
    return [json_name(fl) for fl in fields(Volume)
            if fl.name in UNSUPPORTED_VOLUME_SOURCES and getattr(volume, fl.name) is not None]


@dataclass
class Volume:
    name: str = ""
    empty_dir: EmptyDirVolumeSource | None = None
    host_path: HostPathVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    downward_api: DownwardAPIVolumeSource | None = f(json="downwardAPI")
    projected: ProjectedVolumeSource | None = None
    # Sources nodeagent cannot mount (storage plugins, CSI, PVCs): kept as the
    # API gave them, so a pod using one is refused instead of getting an emptyDir.
    persistent_volume_claim: dict[str, Any] | None = None
    ephemeral: dict[str, Any] | None = None
    csi: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    nfs: dict[str, Any] | None = None
    iscsi: dict[str, Any] | None = None
    fc: dict[str, Any] | None = None
    rbd: dict[str, Any] | None = None
    cephfs: dict[str, Any] | None = None
    cinder: dict[str, Any] | None = None
    glusterfs: dict[str, Any] | None = None
    flex_volume: dict[str, Any] | None = None
    flocker: dict[str, Any] | None = None
    git_repo: dict[str, Any] | None = None
    aws_elastic_block_store: dict[str, Any] | None = None
    gce_persistent_disk: dict[str, Any] | None = None
    azure_disk: dict[str, Any] | None = None
    azure_file: dict[str, Any] | None = None
    vsphere_volume: dict[str, Any] | None = None
    quobyte: dict[str, Any] | None = None
    photon_persistent_disk: dict[str, Any] | None = None
    portworx_volume: dict[str, Any] | None = None
    scale_io: dict[str, Any] | None = f(json="scaleIO")
    storageos: dict[str, Any] | None = None


# -- pod spec -------------------------------------------------------------------

@dataclass
class Toleration:
    key: str = ""
    operator: str = ""
    value: str = ""
    effect: str = ""
    toleration_seconds: int | None = None


@dataclass
class HostAlias:
    ip: str = ""
    hostnames: list[str] = f(factory=list)


@dataclass
class PodDNSConfigOption:
    name: str = ""
    value: str | None = None


@dataclass
class PodDNSConfig:
    nameservers: list[str] = f(factory=list)
    searches: list[str] = f(factory=list)
    options: list[PodDNSConfigOption] = f(factory=list)


@dataclass
class PodSpec:
    volumes: list[Volume] = f(factory=list)
    init_containers: list[Container] = f(factory=list)
    containers: list[Container] = f(factory=list)
    restart_policy: str = ""
    termination_grace_period_seconds: int | None = None
    active_deadline_seconds: int | None = None
    dns_policy: str = ""
    node_selector: dict[str, str] = f(factory=dict)
    service_account_name: str = ""
    automount_service_account_token: bool | None = None
    image_pull_secrets: list[LocalObjectReference] = f(factory=list)
    node_name: str = ""
    host_network: bool = False
    host_pid: bool = f(False, json="hostPID")
    host_ipc: bool = f(False, json="hostIPC")
    share_process_namespace: bool | None = None
    security_context: PodSecurityContext | None = None
    hostname: str = ""
    subdomain: str = ""
    scheduler_name: str = ""
    tolerations: list[Toleration] = f(factory=list)
    host_aliases: list[HostAlias] = f(factory=list)
    priority_class_name: str = ""
    priority: int | None = None
    dns_config: PodDNSConfig | None = None
    runtime_class_name: str | None = None
    enable_service_links: bool | None = None


# -- status -------------------------------------------------------------------------

@dataclass
class ContainerStateWaiting:
    reason: str = ""
    message: str = ""


@dataclass
class ContainerStateRunning:
    started_at: str | None = f(keep=True)


@dataclass
class ContainerStateTerminated:
    exit_code: int = f(0, keep=True)
    signal: int = 0
    reason: str = ""
    message: str = ""
    started_at: str | None = f(keep=True)
    finished_at: str | None = f(keep=True)
    container_id: str = f("", json="containerID")


@dataclass
class ContainerState:
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


@dataclass
class ContainerStatus:
    name: str = f("", keep=True)
    state: ContainerState = f(factory=ContainerState, keep=True)
    last_state: ContainerState = f(factory=ContainerState, keep=True)
    ready: bool = f(False, keep=True)
    restart_count: int = f(0, keep=True)
    image: str = f("", keep=True)
    image_id: str = f("", json="imageID", keep=True)
    container_id: str = f("", json="containerID")
    started: bool | None = None


@dataclass
class PodCondition:
    type: str = f("", keep=True)
    status: str = f("", keep=True)
    last_probe_time: str | None = f(keep=True)
    last_transition_time: str | None = f(keep=True)
    reason: str = ""
    message: str = ""


@dataclass
class PodIP:
    ip: str = ""


@dataclass
class PodStatus:
    phase: str = ""
    conditions: list[PodCondition] = f(factory=list)
    message: str = ""
    reason: str = ""
    host_ip: str = f("", json="hostIP")
    host_ips: list[PodIP] = f(factory=list, json="hostIPs")
    pod_ip: str = f("", json="podIP")
    pod_ips: list[PodIP] = f(factory=list, json="podIPs")
    start_time: str | None = None
    init_container_statuses: list[ContainerStatus] = f(factory=list)
    container_statuses: list[ContainerStatus] = f(factory=list)
    qos_class: str = f("", json="qosClass")


@dataclass
class Pod:
    api_version: str = f("v1", keep=True)
    kind: str = f("Pod", keep=True)
    metadata: ObjectMeta = f(factory=ObjectMeta, keep=True)
    spec: PodSpec = f(factory=PodSpec, keep=True)
    status: PodStatus = f(factory=PodStatus, keep=True)

    @property
    def full_name(self) -> str:
        """namespace/name, the id the kubelet logs pods by."""
        return f"{self.metadata.namespace}/{self.metadata.name}"
