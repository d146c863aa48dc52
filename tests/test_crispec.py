"""Pod spec -> CRI config, checked field by field on the generated protobufs."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import (
    Capabilities,
    Container,
    ContainerPort,
    EnvFromSource,
    EnvVar,
    EnvVarSource,
    ExecAction,
    HTTPGetAction,
    KeySelector,
    Lifecycle,
    LifecycleHandler,
    LocalObjectReference,
    ObjectFieldSelector,
    ObjectMeta,
    Pod,
    PodDNSConfig,
    PodDNSConfigOption,
    PodSecurityContext,
    PodSpec,
    ResourceFieldSelector,
    ResourceRequirements,
    SeccompProfile,
    SecurityContext,
    Sysctl,
    VolumeMount,
)
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.pods import crispec
from nodeagent.pods.crispec import ConfigError, NodeContext

UID = "0b3c6f4e-1111-2222-3333-444455556666"


def make_container(name: str = "app", **kw: object) -> Container:
    """A container as the API server defaults it."""
    base: dict[str, object] = dict(
        name=name, image="registry.local/app:1", image_pull_policy="IfNotPresent",
        termination_message_path="/dev/termination-log", termination_message_policy="File")
    base.update(kw)
    return Container(**base)  # type: ignore[arg-type]


def make_pod(*containers: Container, name: str = "web", namespace: str = "prod",
             labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
             **spec: object) -> Pod:
    spec_kw: dict[str, object] = dict(
        restart_policy="Always", dns_policy="ClusterFirst", termination_grace_period_seconds=30,
        scheduler_name="default-scheduler", enable_service_links=True,
        security_context=PodSecurityContext(),
        containers=list(containers) or [make_container()])
    spec_kw.update(spec)
    return Pod(metadata=ObjectMeta(name=name, namespace=namespace, uid=UID,
                                   labels=labels or {}, annotations=annotations or {}),
               spec=PodSpec(**spec_kw))  # type: ignore[arg-type]


@pytest.fixture
def resolv(tmp_path: Path) -> Path:
    path = tmp_path / "resolv.conf"
    path.write_text("# host resolver\n"
                    "nameserver 10.0.0.2\n"
                    "search old.example\n"
                    "nameserver 10.0.0.3\n"
                    "search corp.example. lab.example\n"
                    "options edns0 timeout:2\n")
    return path


@pytest.fixture
def ctx(tmp_path: Path, resolv: Path) -> NodeContext:
    return NodeContext(node_name="node-1", node_ips=("192.168.1.10", "fd00::10"),
                       allocatable_cpu_millis=3500, allocatable_memory_bytes=8 * 2**30,
                       pod_logs_dir=tmp_path / "logs", root_dir=tmp_path / "kubelet",
                       resolv_conf=resolv, allocatable_ephemeral_storage_bytes=50 * 10**9)


def cconfig(pod: Pod, ctx: NodeContext, container: Container | None = None, **kw: object
            ) -> pb.ContainerConfig:
    args: dict[str, object] = dict(attempt=0, image_ref="sha256:abc", sandbox_ip="10.244.0.7",
                                   mounts={}, termination_log=None)
    args.update(kw)
    return crispec.container_config(pod, container or pod.spec.containers[0], ctx,
                                    **args)  # type: ignore[arg-type]


def env_of(config: pb.ContainerConfig) -> list[tuple[str, str]]:
    return [(kv.key, kv.value) for kv in config.envs]


def env_value(pod: Pod, ctx: NodeContext, source: EnvVarSource, **kw: object) -> str:
    container = dataclasses.replace(pod.spec.containers[0], env=[EnvVar(name="X", value_from=source)])
    pod.spec.containers[0] = container
    return dict(env_of(cconfig(pod, ctx, container, **kw)))["X"]


# -- sandbox ----------------------------------------------------------------------------

def test_sandbox_metadata_labels_annotations(ctx: NodeContext) -> None:
    pod = make_pod(labels={"app": "web", "io.kubernetes.pod.name": "spoof"},
                   annotations={"note": "x"})
    cfg = crispec.sandbox_config(pod, ctx, attempt=2, cgroup_parent="/kubepods/pod" + UID)
    assert cfg.metadata == pb.PodSandboxMetadata(name="web", uid=UID, namespace="prod", attempt=2)
    assert dict(cfg.labels) == {"app": "web", "io.kubernetes.pod.name": "web",
                                "io.kubernetes.pod.namespace": "prod", "io.kubernetes.pod.uid": UID}
    assert dict(cfg.annotations) == {"note": "x"}
    assert cfg.log_directory == str(ctx.pod_logs_dir / f"prod_web_{UID}")
    assert crispec.pod_log_dir(pod, ctx) == ctx.pod_logs_dir / f"prod_web_{UID}"
    assert cfg.linux.cgroup_parent == "/kubepods/pod" + UID


def test_hostname_rules(ctx: NodeContext) -> None:
    def hostname(pod: Pod) -> str:
        return crispec.sandbox_config(pod, ctx, attempt=0, cgroup_parent="").hostname

    assert hostname(make_pod()) == "web"
    assert hostname(make_pod(hostname="db-0")) == "db-0"
    long_name = "a" * 60 + "-.-b" + "c" * 10
    assert hostname(make_pod(name=long_name)) == "a" * 60
    assert hostname(make_pod(name="x" * 63)) == "x" * 63
    assert hostname(make_pod(host_network=True)) == ""


# -- DNS ------------------------------------------------------------------------------

def dns(pod: Pod, ctx: NodeContext, **kw: object) -> tuple[list[str], list[str], list[str]]:
    cfg = crispec.sandbox_config(pod, ctx, attempt=0, cgroup_parent="", **kw)  # type: ignore[arg-type]
    return list(cfg.dns_config.servers), list(cfg.dns_config.searches), list(cfg.dns_config.options)


def test_dns_default_uses_host_resolv_conf(ctx: NodeContext) -> None:
    assert dns(make_pod(dns_policy="Default"), ctx) == (
        ["10.0.0.2", "10.0.0.3"], ["corp.example", "lab.example"], ["edns0", "timeout:2"])


def test_dns_cluster_first_without_cluster_dns_falls_back_to_host(ctx: NodeContext) -> None:
    host = dns(make_pod(dns_policy="Default"), ctx)
    assert dns(make_pod(dns_policy="ClusterFirst"), ctx) == host
    assert dns(make_pod(dns_policy="ClusterFirstWithHostNet", host_network=True), ctx) == host


def test_dns_cluster_first(ctx: NodeContext) -> None:
    cluster = dict(cluster_dns=("10.96.0.10",), cluster_domain="cluster.local")
    expected = (["10.96.0.10"],
                ["prod.svc.cluster.local", "svc.cluster.local", "cluster.local",
                 "corp.example", "lab.example"],
                ["ndots:5"])
    assert dns(make_pod(dns_policy="ClusterFirst"), ctx, **cluster) == expected
    assert dns(make_pod(dns_policy="ClusterFirstWithHostNet", host_network=True), ctx,
               **cluster) == expected
    # ClusterFirst on the host network behaves like Default.
    assert dns(make_pod(dns_policy="ClusterFirst", host_network=True), ctx, **cluster) == \
        dns(make_pod(dns_policy="Default"), ctx)


def test_dns_none_and_dns_config_merge(ctx: NodeContext) -> None:
    extra = PodDNSConfig(nameservers=["1.1.1.1", "10.0.0.2"], searches=["lab.example", "x.example"],
                         options=[PodDNSConfigOption(name="timeout", value="5"),
                                  PodDNSConfigOption(name="rotate")])
    assert dns(make_pod(dns_policy="None", dns_config=extra), ctx) == (
        ["1.1.1.1", "10.0.0.2"], ["lab.example", "x.example"], ["timeout:5", "rotate"])
    assert dns(make_pod(dns_policy="None"), ctx) == ([], [], [])
    assert dns(make_pod(dns_policy="Default", dns_config=extra), ctx) == (
        ["10.0.0.2", "10.0.0.3", "1.1.1.1"],
        ["corp.example", "lab.example", "x.example"],
        ["edns0", "timeout:5", "rotate"])


def test_dns_limits_and_missing_resolv_conf(ctx: NodeContext, tmp_path: Path) -> None:
    extra = PodDNSConfig(nameservers=["1.1.1.1", "8.8.8.8"], searches=["a" * 254])
    servers, searches, _ = dns(make_pod(dns_policy="Default", dns_config=extra), ctx)
    assert servers == ["10.0.0.2", "10.0.0.3", "1.1.1.1"]
    assert searches == ["corp.example", "lab.example"]
    missing = dataclasses.replace(ctx, resolv_conf=tmp_path / "nope")
    with pytest.raises(ConfigError, match="no such file or directory"):
        dns(make_pod(dns_policy="Default"), missing)
    assert dns(make_pod(dns_policy="None"), missing) == ([], [], [])


# -- ports, namespaces, sandbox security -------------------------------------------

def test_port_mappings_only_host_ports(ctx: NodeContext) -> None:
    web = make_container("web", ports=[
        ContainerPort(name="http", container_port=80, host_port=8080, protocol="TCP"),
        ContainerPort(name="metrics", container_port=9090, protocol="TCP")])
    dns_c = make_container("dns", ports=[
        ContainerPort(container_port=53, host_port=5353, protocol="UDP", host_ip="127.0.0.1"),
        ContainerPort(container_port=9, host_port=9999, protocol="SCTP")])
    cfg = crispec.sandbox_config(make_pod(web, dns_c), ctx, attempt=0, cgroup_parent="")
    assert list(cfg.port_mappings) == [
        pb.PortMapping(protocol=pb.Protocol.TCP, container_port=80, host_port=8080),
        pb.PortMapping(protocol=pb.Protocol.UDP, container_port=53, host_port=5353,
                       host_ip="127.0.0.1"),
        pb.PortMapping(protocol=pb.Protocol.SCTP, container_port=9, host_port=9999)]


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, (pb.NamespaceMode.POD, pb.NamespaceMode.CONTAINER, pb.NamespaceMode.POD)),
    ({"host_network": True}, (pb.NamespaceMode.NODE, pb.NamespaceMode.CONTAINER, pb.NamespaceMode.POD)),
    ({"host_pid": True}, (pb.NamespaceMode.POD, pb.NamespaceMode.NODE, pb.NamespaceMode.POD)),
    ({"share_process_namespace": True},
     (pb.NamespaceMode.POD, pb.NamespaceMode.POD, pb.NamespaceMode.POD)),
    ({"host_ipc": True}, (pb.NamespaceMode.POD, pb.NamespaceMode.CONTAINER, pb.NamespaceMode.NODE)),
])
def test_namespace_options(ctx: NodeContext, spec: dict[str, bool],
                           expected: tuple[int, int, int]) -> None:
    pod = make_pod(**spec)
    for ns in (crispec.sandbox_config(pod, ctx, attempt=0, cgroup_parent="")
               .linux.security_context.namespace_options,
               cconfig(pod, ctx).linux.security_context.namespace_options):
        assert (ns.network, ns.pid, ns.ipc) == expected


def test_sandbox_security_context(ctx: NodeContext) -> None:
    psc = PodSecurityContext(run_as_user=1000, run_as_group=3000, supplemental_groups=[4000, 4001],
                             fs_group=2000, sysctls=[Sysctl(name="net.core.somaxconn", value="1024")],
                             seccomp_profile=SeccompProfile(type="Unconfined"))
    cfg = crispec.sandbox_config(make_pod(security_context=psc), ctx, attempt=0, cgroup_parent="")
    sc = cfg.linux.security_context
    assert sc.run_as_user.value == 1000 and sc.HasField("run_as_user")
    assert sc.run_as_group.value == 3000
    assert list(sc.supplemental_groups) == [2000, 4000, 4001]
    assert dict(cfg.linux.sysctls) == {"net.core.somaxconn": "1024"}
    # The pause container always runs under runtime/default, whatever the pod asks.
    assert sc.HasField("seccomp") and sc.seccomp.profile_type == pb.SecurityProfile.RuntimeDefault
    assert not sc.privileged


def test_sandbox_defaults_and_privileged(ctx: NodeContext) -> None:
    plain = crispec.sandbox_config(make_pod(security_context=None), ctx, attempt=0, cgroup_parent="")
    sc = plain.linux.security_context
    assert not sc.HasField("run_as_user") and not sc.HasField("run_as_group")
    assert list(sc.supplemental_groups) == [] and dict(plain.linux.sysctls) == {}
    init = make_container("init", security_context=SecurityContext(privileged=True))
    priv = crispec.sandbox_config(make_pod(init_containers=[init]), ctx, attempt=0, cgroup_parent="")
    assert priv.linux.security_context.privileged


# -- container: identity, labels, annotations ----------------------------------------

def test_container_basics(ctx: NodeContext) -> None:
    c = make_container(working_dir="/srv", stdin=True, stdin_once=True, tty=True)
    cfg = cconfig(make_pod(c), ctx, attempt=3, image_ref="sha256:feed")
    assert cfg.metadata == pb.ContainerMetadata(name="app", attempt=3)
    assert cfg.image == pb.ImageSpec(image="sha256:feed", user_specified_image="registry.local/app:1")
    assert cfg.working_dir == "/srv"
    assert cfg.log_path == "app/3.log"
    assert (cfg.stdin, cfg.stdin_once, cfg.tty) == (True, True, True)


def test_container_labels_and_annotations_exact(ctx: NodeContext) -> None:
    pod = make_pod(labels={"app": "web"}, termination_grace_period_seconds=None)
    cfg = cconfig(pod, ctx, attempt=1)
    assert dict(cfg.labels) == {"io.kubernetes.pod.name": "web", "io.kubernetes.pod.namespace": "prod",
                                "io.kubernetes.pod.uid": UID, "io.kubernetes.container.name": "app"}
    assert dict(cfg.annotations) == {
        "io.kubernetes.container.hash": crispec.container_hash(pod.spec.containers[0]),
        "io.kubernetes.container.restartCount": "1",
        "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
        "io.kubernetes.container.terminationMessagePolicy": "File"}


def test_container_annotations_optional_parts(ctx: NodeContext) -> None:
    c = make_container(
        lifecycle=Lifecycle(pre_stop=LifecycleHandler(exec=ExecAction(command=["sh", "-c", "a<b"]))),
        ports=[ContainerPort(name="http", container_port=80, host_port=8080, protocol="TCP"),
               ContainerPort(container_port=9090, protocol="UDP", host_ip="::1")])
    pod = make_pod(c, termination_grace_period_seconds=45)
    pod.metadata.deletion_grace_period_seconds = 10
    cfg = cconfig(pod, ctx, backoff_annotations={"nodeagent.io/backoff": "20s"})
    ann = dict(cfg.annotations)
    assert ann["io.kubernetes.pod.terminationGracePeriod"] == "45"
    assert ann["io.kubernetes.pod.deletionGracePeriod"] == "10"
    assert ann["io.kubernetes.container.preStopHandler"] == \
        '{"exec":{"command":["sh","-c","a\\u003cb"]}}'
    assert ann["io.kubernetes.container.ports"] == (
        '[{"name":"http","hostPort":8080,"containerPort":80,"protocol":"TCP"},'
        '{"containerPort":9090,"protocol":"UDP","hostIP":"::1"}]')
    assert ann["nodeagent.io/backoff"] == "20s"
    assert json.loads(ann["io.kubernetes.container.ports"])[1]["hostIP"] == "::1"


def test_prestop_http_get_json() -> None:
    handler = LifecycleHandler(http_get=HTTPGetAction(path="/quit", port="http", scheme="HTTP"))
    assert crispec.go_json(handler) == '{"httpGet":{"path":"/quit","port":"http","scheme":"HTTP"}}'


# -- environment ---------------------------------------------------------------------

def test_env_order_and_expansion(ctx: NodeContext) -> None:
    c = make_container(env=[
        EnvVar(name="A", value="alpha"),
        EnvVar(name="B", value="$(A)-beta"),
        EnvVar(name="C", value="$(D) $$(A) $(NOPE) $$ cost$5 $(A"),
        EnvVar(name="D", value="delta"),
        EnvVar(name="E", value=""),
        EnvVar(name="A", value="again-$(A)"),
    ])
    assert env_of(cconfig(make_pod(c), ctx)) == [
        ("A", "again-alpha"), ("B", "alpha-beta"), ("C", "$(D) $(A) $(NOPE) $ cost$5 $(A"),
        ("D", "delta"), ("E", "")]


def test_command_and_args_expansion(ctx: NodeContext) -> None:
    c = make_container(command=["/bin/$(BIN)", "$$(BIN)"], args=["--name=$(NAME)", "$(MISSING)", "$"],
                       env=[EnvVar(name="BIN", value="server"),
                            EnvVar(name="NAME", value_from=EnvVarSource(
                                field_ref=ObjectFieldSelector(field_path="metadata.name")))])
    cfg = cconfig(make_pod(c), ctx)
    assert list(cfg.command) == ["/bin/server", "$(BIN)"]
    assert list(cfg.args) == ["--name=web", "$(MISSING)", "$"]


@pytest.mark.parametrize(("path", "expected"), [
    ("metadata.name", "web"),
    ("metadata.namespace", "prod"),
    ("metadata.uid", UID),
    ("metadata.labels['app']", "web"),
    ("metadata.labels['missing']", ""),
    ("metadata.annotations['team']", "db"),
    ("metadata.labels", 'app="web"\ntier="front \\"end\\""'),
    ("metadata.annotations", 'team="db"'),
    ("spec.nodeName", "node-1"),
    ("spec.serviceAccountName", "robot"),
    ("status.hostIP", "192.168.1.10"),
    ("status.hostIPs", "192.168.1.10,fd00::10"),
    ("status.podIP", "10.244.0.7"),
    ("status.podIPs", "10.244.0.7"),
])
def test_field_refs(ctx: NodeContext, path: str, expected: str) -> None:
    pod = make_pod(labels={"tier": 'front "end"', "app": "web"}, annotations={"team": "db"},
                   service_account_name="robot")
    source = EnvVarSource(field_ref=ObjectFieldSelector(field_path=path, api_version="v1"))
    assert env_value(pod, ctx, source) == expected


def test_field_ref_node_name_from_spec_and_host_network_ips(ctx: NodeContext) -> None:
    node = EnvVarSource(field_ref=ObjectFieldSelector(field_path="spec.nodeName"))
    assert env_value(make_pod(node_name="scheduled-node"), ctx, node) == "scheduled-node"
    pod_ips = EnvVarSource(field_ref=ObjectFieldSelector(field_path="status.podIPs"))
    assert env_value(make_pod(host_network=True), ctx, pod_ips, sandbox_ip="") == \
        "192.168.1.10,fd00::10"
    assert env_value(make_pod(), ctx, pod_ips, sandbox_ip="") == ""


@pytest.mark.parametrize(("path", "message"), [
    ("spec.restartPolicy", "unsupported fieldPath: spec.restartPolicy"),
    ("metadata.generateName", "field label not supported: metadata.generateName"),
    ("metadata.name['x']", "field label not supported"),
])
def test_field_ref_errors(ctx: NodeContext, path: str, message: str) -> None:
    source = EnvVarSource(field_ref=ObjectFieldSelector(field_path=path))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        env_value(make_pod(), ctx, source)


def resources(limits: dict[str, str] | None = None,
              requests: dict[str, str] | None = None) -> ResourceRequirements:
    return ResourceRequirements(limits={k: Quantity(v) for k, v in (limits or {}).items()},
                                requests={k: Quantity(v) for k, v in (requests or {}).items()})


@pytest.mark.parametrize(("resource", "divisor", "expected"), [
    ("limits.cpu", None, "1"),          # 250m rounds up to one core
    ("limits.cpu", "1m", "250"),
    ("requests.cpu", "1m", "100"),
    ("requests.cpu", None, "1"),
    ("limits.memory", None, str(64 * 2**20)),
    ("limits.memory", "1Mi", "64"),
    ("requests.memory", "1Mi", "32"),
    ("requests.memory", "1Gi", "1"),    # ceil
    ("limits.ephemeral-storage", "1G", "2"),
    ("requests.ephemeral-storage", None, "0"),
    ("limits.cpu", "0", "1"),           # a zero divisor means 1
])
def test_resource_field_refs(ctx: NodeContext, resource: str, divisor: str | None,
                             expected: str) -> None:
    c = make_container(resources=resources(
        limits={"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "1500M"},
        requests={"cpu": "100m", "memory": "32Mi"}))
    pod = make_pod(c)
    ref = ResourceFieldSelector(resource=resource,
                                divisor=Quantity(divisor) if divisor is not None else None)
    assert env_value(pod, ctx, EnvVarSource(resource_field_ref=ref)) == expected


def test_resource_field_refs_fall_back_to_allocatable(ctx: NodeContext) -> None:
    pod = make_pod()

    def value(resource: str, divisor: str | None = None) -> str:
        ref = ResourceFieldSelector(resource=resource,
                                    divisor=Quantity(divisor) if divisor else None)
        return env_value(pod, ctx, EnvVarSource(resource_field_ref=ref))

    assert value("limits.cpu") == "4"                  # 3500m -> 4 cores
    assert value("limits.cpu", "1m") == "3500"
    assert value("limits.memory", "1Mi") == "8192"
    assert value("limits.ephemeral-storage", "1G") == "50"
    assert value("requests.cpu") == "0"                # requests never default
    assert value("requests.memory") == "0"


def test_resource_field_ref_other_container_and_errors(ctx: NodeContext) -> None:
    side = make_container("side", resources=resources(limits={"memory": "1Gi"}))
    pod = make_pod(make_container(), side)
    ref = ResourceFieldSelector(container_name="side", resource="limits.memory", divisor=Quantity("1Mi"))
    assert env_value(pod, ctx, EnvVarSource(resource_field_ref=ref)) == "1024"
    with pytest.raises(ConfigError, match="unsupported container resource : limits.gpu"):
        env_value(make_pod(), ctx, EnvVarSource(resource_field_ref=ResourceFieldSelector(
            resource="limits.gpu")))
    with pytest.raises(ConfigError, match="container ghost not found"):
        env_value(make_pod(), ctx, EnvVarSource(resource_field_ref=ResourceFieldSelector(
            container_name="ghost", resource="limits.cpu")))


@pytest.mark.parametrize("container", [
    make_container(env_from=[EnvFromSource(config_map_ref=LocalObjectReference(name="cfg"))]),
    make_container(env=[EnvVar(name="K", value_from=EnvVarSource(
        config_map_key_ref=KeySelector(name="cfg", key="k", optional=True)))]),
])
def test_config_map_sources_need_the_api_server(ctx: NodeContext, container: Container) -> None:
    with pytest.raises(ConfigError, match="^couldn't get configMap prod/cfg, no kubeClient defined$"):
        cconfig(make_pod(container), ctx)


def test_secret_sources_need_the_api_server(ctx: NodeContext) -> None:
    c = make_container(env_from=[EnvFromSource(prefix="S_", secret_ref=LocalObjectReference(name="tok"))])
    with pytest.raises(ConfigError, match="^couldn't get secret prod/tok, no kubeClient defined$"):
        cconfig(make_pod(c), ctx)
    c = make_container(env=[EnvVar(name="T", value_from=EnvVarSource(
        secret_key_ref=KeySelector(name="tok", key="t")))])
    with pytest.raises(ConfigError, match="couldn't get secret prod/tok"):
        cconfig(make_pod(c), ctx)


# -- mounts --------------------------------------------------------------------------

def test_mounts(ctx: NodeContext, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    c = make_container(volume_mounts=[
        VolumeMount(name="data", mount_path="/data"),
        VolumeMount(name="data", mount_path="/cfg", sub_path="conf/app", read_only=True),
        VolumeMount(name="host", mount_path="/host", mount_propagation="HostToContainer"),
        VolumeMount(name="host", mount_path="/shared", mount_propagation="Bidirectional"),
        VolumeMount(name="host", mount_path="/none", mount_propagation="None"),
    ])
    log = tmp_path / "0-termination-log"
    cfg = cconfig(make_pod(c), ctx, mounts={"data": str(data), "host": "/var/run"},
                  termination_log=log)
    assert list(cfg.mounts) == [
        pb.Mount(host_path=str(data), container_path="/data",
                 propagation=pb.MountPropagation.PROPAGATION_PRIVATE),
        pb.Mount(host_path=str(data / "conf/app"), container_path="/cfg", readonly=True),
        pb.Mount(host_path="/var/run", container_path="/host",
                 propagation=pb.MountPropagation.PROPAGATION_HOST_TO_CONTAINER),
        pb.Mount(host_path="/var/run", container_path="/shared",
                 propagation=pb.MountPropagation.PROPAGATION_BIDIRECTIONAL),
        pb.Mount(host_path="/var/run", container_path="/none"),
        pb.Mount(host_path=str(log), container_path="/dev/termination-log"),
    ]


def test_termination_log_mount_needs_a_path(ctx: NodeContext, tmp_path: Path) -> None:
    c = make_container(termination_message_path="")
    assert list(cconfig(make_pod(c), ctx, termination_log=tmp_path / "t").mounts) == []
    assert list(cconfig(make_pod(), ctx, termination_log=None).mounts) == []


@pytest.mark.parametrize(("sub_path", "message"), [
    ("../etc", "unable to provision SubPath `../etc`: must not contain '..'"),
    ("a/../../b", "must not contain '..'"),
    ("/etc", "error SubPath `/etc` must not be an absolute path"),
    ("escape/passwd", "not within volume path"),
])
def test_subpath_escapes_are_refused(ctx: NodeContext, tmp_path: Path, sub_path: str,
                                     message: str) -> None:
    data = tmp_path / "vol"
    data.mkdir()
    (data / "escape").symlink_to("/etc")
    c = make_container(volume_mounts=[VolumeMount(name="v", mount_path="/m", sub_path=sub_path)])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cconfig(make_pod(c), ctx, mounts={"v": str(data)})


def test_missing_volume_is_a_config_error(ctx: NodeContext) -> None:
    c = make_container(volume_mounts=[VolumeMount(name="ghost", mount_path="/g")])
    with pytest.raises(ConfigError, match='^cannot find volume "ghost" to mount into container "app"$'):
        cconfig(make_pod(c), ctx)


# -- resources -----------------------------------------------------------------------

@pytest.mark.parametrize(("limits", "requests", "shares", "quota", "memory"), [
    ({}, {}, 2, 0, 0),
    ({}, {"cpu": "100m"}, 102, 0, 0),
    ({}, {"cpu": "0"}, 2, 0, 0),
    ({}, {"cpu": "1m"}, 2, 0, 0),
    ({"cpu": "250m"}, {}, 256, 25000, 0),
    ({"cpu": "250m"}, {"cpu": "100m"}, 102, 25000, 0),
    ({"cpu": "1m"}, {"cpu": "1m"}, 2, 1000, 0),
    ({"cpu": "2"}, {"cpu": "2"}, 2048, 200000, 0),
    ({"cpu": "500"}, {"cpu": "500"}, 262144, 50000000, 0),
    ({"memory": "128Mi"}, {"memory": "64Mi"}, 2, 0, 128 * 2**20),
])
def test_resources(ctx: NodeContext, limits: dict[str, str], requests: dict[str, str],
                   shares: int, quota: int, memory: int) -> None:
    c = make_container(resources=resources(limits, requests))
    res = cconfig(make_pod(c), ctx).linux.resources
    assert (res.cpu_shares, res.cpu_quota, res.cpu_period, res.memory_limit_in_bytes) == \
        (shares, quota, 100000, memory)


# -- security context ----------------------------------------------------------------

def test_security_defaults(ctx: NodeContext) -> None:
    sc = cconfig(make_pod(), ctx).linux.security_context
    assert list(sc.masked_paths) == [
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
        "/sys/firmware", "/sys/devices/virtual/powercap"]
    assert list(sc.readonly_paths) == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                       "/proc/sysrq-trigger"]
    assert not sc.privileged and not sc.readonly_rootfs and not sc.no_new_privs
    assert not sc.HasField("run_as_user") and not sc.HasField("run_as_group")
    assert not sc.HasField("capabilities")
    assert sc.seccomp.profile_type == pb.SecurityProfile.Unconfined


def test_security_privileged_and_unmasked(ctx: NodeContext) -> None:
    priv = make_container(security_context=SecurityContext(privileged=True))
    sc = cconfig(make_pod(priv), ctx).linux.security_context
    assert sc.privileged and list(sc.masked_paths) == [] and list(sc.readonly_paths) == []
    unmasked = make_container(security_context=SecurityContext(proc_mount="Unmasked"))
    sc = cconfig(make_pod(unmasked), ctx).linux.security_context
    assert list(sc.masked_paths) == [] and list(sc.readonly_paths) == []


def test_security_mapping(ctx: NodeContext) -> None:
    psc = PodSecurityContext(run_as_user=1000, run_as_group=1000, fs_group=2000,
                             supplemental_groups=[5000],
                             seccomp_profile=SeccompProfile(type="RuntimeDefault"))
    c = make_container(security_context=SecurityContext(
        run_as_user=1234, read_only_root_filesystem=True, allow_privilege_escalation=False,
        capabilities=Capabilities(add=["NET_ADMIN", "cap_sys_time"], drop=["ALL"])))
    sc = cconfig(make_pod(c, security_context=psc), ctx).linux.security_context
    assert sc.run_as_user.value == 1234 and sc.run_as_group.value == 1000
    assert list(sc.supplemental_groups) == [2000, 5000]
    assert sc.readonly_rootfs and sc.no_new_privs
    assert list(sc.capabilities.add_capabilities) == ["NET_ADMIN", "cap_sys_time"]  # passed as given
    assert list(sc.capabilities.drop_capabilities) == ["ALL"]
    assert sc.seccomp.profile_type == pb.SecurityProfile.RuntimeDefault
    allowed = make_container(security_context=SecurityContext(allow_privilege_escalation=True))
    assert not cconfig(make_pod(allowed), ctx).linux.security_context.no_new_privs


def test_seccomp_localhost(ctx: NodeContext) -> None:
    c = make_container(security_context=SecurityContext(
        seccomp_profile=SeccompProfile(type="Localhost", localhost_profile="profiles/audit.json")))
    pod = make_pod(c, security_context=PodSecurityContext(
        seccomp_profile=SeccompProfile(type="RuntimeDefault")))
    seccomp = cconfig(pod, ctx).linux.security_context.seccomp
    assert seccomp == pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost,
                                         localhost_ref=str(ctx.root_dir / "seccomp/profiles/audit.json"))
    bad = make_container(security_context=SecurityContext(seccomp_profile=SeccompProfile(type="Localhost")))
    with pytest.raises(ConfigError, match="localhostProfile must be set"):
        cconfig(make_pod(bad), ctx)


POD_REF = f'(pod: "web_prod({UID})", container: app)'


@pytest.mark.parametrize(("pod_sc", "container_sc", "uid", "user", "message"), [
    (PodSecurityContext(run_as_non_root=True, run_as_user=0), None, 1000, "",
     f"container's runAsUser breaks non-root policy {POD_REF}"),
    (PodSecurityContext(run_as_non_root=True), SecurityContext(run_as_user=0), None, "",
     f"container's runAsUser breaks non-root policy {POD_REF}"),
    (PodSecurityContext(run_as_non_root=True), None, 0, "",
     f"container has runAsNonRoot and image will run as root {POD_REF}"),
    (None, SecurityContext(run_as_non_root=True), None, "",
     f"container has runAsNonRoot and image will run as root {POD_REF}"),
    (PodSecurityContext(run_as_non_root=True), None, None, "nginx",
     "container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is "
     f"non-root {POD_REF}"),
])
def test_run_as_non_root_violations(pod_sc: PodSecurityContext | None,
                                    container_sc: SecurityContext | None, uid: int | None,
                                    user: str, message: str) -> None:
    c = make_container(security_context=container_sc)
    pod = make_pod(c, security_context=pod_sc)
    with pytest.raises(ConfigError) as info:
        crispec.verify_run_as_non_root(pod, c, uid, user)
    assert str(info.value) == message


@pytest.mark.parametrize(("pod_sc", "container_sc", "uid", "user"), [
    (None, None, 0, ""),
    (PodSecurityContext(run_as_non_root=True), SecurityContext(run_as_non_root=False), 0, ""),
    (PodSecurityContext(run_as_non_root=True), None, 1000, ""),
    (PodSecurityContext(run_as_non_root=True, run_as_user=0), SecurityContext(run_as_user=10), 0, "root"),
])
def test_run_as_non_root_allowed(pod_sc: PodSecurityContext | None,
                                 container_sc: SecurityContext | None, uid: int | None,
                                 user: str) -> None:
    c = make_container(security_context=container_sc)
    crispec.verify_run_as_non_root(make_pod(c, security_context=pod_sc), c, uid, user)


def test_effective_run_as_user() -> None:
    c = make_container(security_context=SecurityContext(run_as_user=7))
    assert crispec.effective_run_as_user(make_pod(c, security_context=PodSecurityContext(run_as_user=5)),
                                         c) == 7
    plain = make_container()
    assert crispec.effective_run_as_user(make_pod(plain, security_context=PodSecurityContext(
        run_as_user=5)), plain) == 5
    assert crispec.effective_run_as_user(make_pod(plain, security_context=None), plain) is None


# -- hash ------------------------------------------------------------------------------

def test_container_hash_stability() -> None:
    a = make_container(resources=resources(limits={"cpu": "1"}),
                       env=[EnvVar(name="A", value="1")])
    same = copy.deepcopy(a)
    assert crispec.container_hash(a) == crispec.container_hash(same)
    assert crispec.container_hash(a) == crispec.container_hash(
        dataclasses.replace(a, resources=resources(limits={"cpu": "1000m"})))
    changed = dataclasses.replace(a, image="registry.local/app:2")
    assert crispec.container_hash(changed) != crispec.container_hash(a)
    assert crispec.container_hash(dataclasses.replace(a, env=[EnvVar(name="A", value="2")])) != \
        crispec.container_hash(a)
    digest = crispec.container_hash(a)
    assert len(digest) == 16 and int(digest, 16) >= 0
