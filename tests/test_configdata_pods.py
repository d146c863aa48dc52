"""Config data end to end with real containerd: pod workers (driven by a
PodManager, as the agent does) with an in-memory ConfigObjects. Containers read
mounted configMaps, secrets and service account files, see updates after the
objects change, and get env from them; missing objects surface with the
kubelet's messages and events."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeagent.api.codec import decode
from nodeagent.api.defaults import apply_defaults
from nodeagent.api.types import Pod, PodStatus
from nodeagent.api.validation import validate_pod
from nodeagent.cgroups import names
from nodeagent.cgroups.detect import detect_host
from nodeagent.cgroups.fs import CgroupV1, CgroupV2
from nodeagent.cgroups.manager import CgroupManager
from nodeagent.cgroups.values import ResourcePolicy
from nodeagent.cri.client import CRIClient
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv.env import DevEnv
from nodeagent.events import recorder
from nodeagent.oci.puller import ImagePuller
from nodeagent.pods import crispec
from nodeagent.pods import volumes as podvolumes
from nodeagent.pods.manager import PodManager
from nodeagent.pods.relist import Relister
from nodeagent.pods.worker import WorkerDeps
from tests.agentproc import AgentProcess, container, running
from tests.configobjects import MemoryConfigObjects
from tests.polling import wait_for

NS = "prod"
SOURCE = "api"
GiB = 2**30


@dataclass
class Node:
    """One node: a pod manager with real workers, its CRI client and objects."""
    manager: PodManager
    cri: CRIClient
    objects: MemoryConfigObjects
    root_dir: Path
    image: str

    def status(self, pod: Pod) -> PodStatus | None:
        return self.manager.statuses.get(pod.metadata.uid)

    async def running_container(self, pod: Pod, name: str = "app", timeout: float = 60) -> str:
        def running() -> str | None:
            status = self.status(pod)
            for cs in status.container_statuses if status else ():
                if cs.name == name and cs.state.running is not None:
                    return cs.container_id.split("://", 1)[1]
            return None
        return await wait_for(running, timeout=timeout, what=f"{name} running")

    async def waiting(self, pod: Pod, reason: str, message: str, timeout: float = 30) -> None:
        def match() -> bool:
            status = self.status(pod)
            return any(cs.state.waiting is not None and cs.state.waiting.reason == reason
                       and cs.state.waiting.message == message
                       for cs in (status.container_statuses if status else ()))
        try:
            await wait_for(match, timeout=timeout, what=f"waiting {reason}: {message}")
        except AssertionError:
            raise AssertionError(f"status: {self.status(pod)}") from None

    async def exec(self, container_id: str, *cmd: str) -> str:
        result = await self.cri.exec_sync(container_id, list(cmd), timeout=10)
        assert result.exit_code == 0, result
        return result.stdout.decode()


@pytest.fixture
async def node(devenv: DevEnv, tmp_path: Path) -> AsyncIterator[Node]:
    cri = CRIClient(devenv.endpoint, request_timeout=60)
    version = await cri.version()
    host = detect_host()
    cgroups = CgroupManager(CgroupV2() if host.version == 2 else CgroupV1(), driver="cgroupfs",
                            root=names.parse_root(devenv.cgroup_parent("configdata"), "cgroupfs"),
                            policy=ResourcePolicy(memory_capacity=4 * GiB))
    await cgroups.start()
    root = tmp_path / "root"
    context = crispec.NodeContext(node_name="testnode", node_ips=("127.0.0.1",), allocatable_cpu_millis=2000,
                                  allocatable_memory_bytes=2 * GiB, pod_logs_dir=tmp_path / "logs",
                                  root_dir=root, resources=cgroups.policy)
    objects = MemoryConfigObjects()
    deps = WorkerDeps(cri=cri, images=ImagePuller(cri), node=context, runtime_name=version.runtime_name,
                      cgroups=cgroups, on_status=lambda uid, status: None, resync_period=60.0,
                      config_objects=objects)
    manager = PodManager(deps, sources=(SOURCE,))
    relister = Relister(cri, manager.runtime_changed)
    manager.runtime_state = relister.state_of
    await relister.relist()
    relisting = asyncio.ensure_future(relister.run())
    try:
        yield Node(manager, cri, objects, root, devenv.busybox)
    finally:
        manager.set_pods(SOURCE, [])
        try:
            await wait_for(lambda: not manager.workers, timeout=90, what="pods removed")
        finally:
            relisting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relisting
            await cri.close()
            devenv.reset(tmp_path)
    assert objects.registered == {}  # every worker unregistered its pod
    assert podvolumes.mounts_under(tmp_path) == []
    assert not (root / "pods").exists() or os.listdir(root / "pods") == []


def make_pod(name: str, image: str, *, volumes: list[dict] | None = None, mounts: list[dict] | None = None,
             env: list[dict] | None = None, env_from: list[dict] | None = None, **spec: object) -> Pod:
    uid = f"cfgdata-{name}-{os.urandom(4).hex()}"
    pod = decode(Pod, {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": NS, "uid": uid},
                       "spec": {"hostNetwork": True, "terminationGracePeriodSeconds": 0,
                                "volumes": volumes or [],
                                "containers": [{"name": "app", "image": image, "command": ["sleep", "3600"],
                                                "volumeMounts": mounts or [], "env": env or [],
                                                "envFrom": env_from or []}],
                                **spec}})
    apply_defaults(pod)
    assert validate_pod(pod) == []
    return pod


def events(pod: Pod, reason: str) -> list[str]:
    return [e.message for e in recorder.for_pod(pod.metadata.uid) if e.reason == reason]


async def test_container_reads_volumes_and_sees_updates(node: Node) -> None:
    node.objects.put_config_map(NS, "web-config", {"greeting": "hello", "color": "blue"})
    node.objects.put_secret(NS, "web-secret", {"token": "s1"})
    pod = make_pod("reader", node.image,
                   volumes=[{"name": "config", "configMap": {"name": "web-config"}},
                            {"name": "secret", "secret": {"secretName": "web-secret", "defaultMode": 0o400}}],
                   mounts=[{"name": "config", "mountPath": "/etc/config"},
                           {"name": "secret", "mountPath": "/etc/secret", "readOnly": True},
                           {"name": "config", "mountPath": "/etc/pinned/greeting", "subPath": "greeting"}],
                   env=[{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "web-config",
                                                                               "key": "greeting"}}}])
    node.manager.set_pods(SOURCE, [pod])
    cid = await node.running_container(pod)
    assert await node.exec(cid, "cat", "/etc/config/greeting") == "hello"
    assert await node.exec(cid, "cat", "/etc/secret/token") == "s1"
    assert await node.exec(cid, "cat", "/etc/pinned/greeting") == "hello"
    assert await node.exec(cid, "sh", "-c", 'printf %s "$GREETING"') == "hello"
    # Seen from the container: the secret volume is a tmpfs, its files 0400.
    mounts = await node.exec(cid, "cat", "/proc/mounts")
    assert any(line.split()[1:3] == ["/etc/secret", "tmpfs"] for line in mounts.splitlines()), mounts
    assert not any(line.split()[1:3] == ["/etc/config", "tmpfs"] for line in mounts.splitlines())
    secret_dir = node.root_dir / "pods" / pod.metadata.uid / "volumes" / "kubernetes.io~secret" / "secret"
    assert oct(os.stat(secret_dir / "token").st_mode & 0o777) == oct(0o400)

    node.objects.put_config_map(NS, "web-config", {"greeting": "bonjour", "color": "blue"})
    node.objects.put_secret(NS, "web-secret", {"token": "s2"})

    async def updated() -> bool:
        return (await node.exec(cid, "cat", "/etc/config/greeting") == "bonjour"
                and await node.exec(cid, "cat", "/etc/secret/token") == "s2")
    await wait_for(updated, timeout=15, what="updated files seen in the container")
    # subPath mounts and env keep what the container started with, as in Kubernetes.
    assert await node.exec(cid, "cat", "/etc/pinned/greeting") == "hello"
    assert await node.exec(cid, "sh", "-c", 'printf %s "$GREETING"') == "hello"
    assert await node.running_container(pod) == cid  # no restart

    # The API server goes away: what is mounted stays, the container runs on.
    node.objects.unavailable = True
    node.objects.put_config_map(NS, "web-config", {"greeting": "unseen"})  # fires on_change
    await wait_for(lambda: events(pod, "FailedMount"), timeout=15, what="FailedMount during the outage")
    assert await node.exec(cid, "cat", "/etc/config/greeting") == "bonjour"
    assert await node.running_container(pod) == cid
    node.objects.unavailable = False


async def test_missing_config_map_waits_then_starts(node: Node) -> None:
    pod = make_pod("late", node.image, volumes=[{"name": "cfg", "configMap": {"name": "late-config"}}],
                   mounts=[{"name": "cfg", "mountPath": "/cfg"}])
    node.manager.set_pods(SOURCE, [pod])
    message = 'MountVolume.SetUp failed for volume "cfg" : configmap "late-config" not found'
    await node.waiting(pod, "ContainerCreating", message)
    assert message in events(pod, "FailedMount")
    # kubelet order: no sandbox until the volumes are there.
    selector = {"io.kubernetes.pod.uid": pod.metadata.uid}
    assert await node.cri.list_pod_sandbox(pb.PodSandboxFilter(label_selector=selector)) == []
    node.objects.put_config_map(NS, "late-config", {"k": "v"})  # wakes the worker
    cid = await node.running_container(pod, timeout=8)  # well before the 10 s retry
    assert await node.exec(cid, "cat", "/cfg/k") == "v"


async def test_env_errors_then_start(node: Node) -> None:
    node.objects.put_config_map(NS, "settings", {"MODE": "fast", "bad key": "x", "1st": "y"})
    pod = make_pod("envpod", node.image,
                   env_from=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                             {"configMapRef": {"name": "settings"}}],
                   env=[{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}])
    node.manager.set_pods(SOURCE, [pod])
    await node.waiting(pod, "CreateContainerConfigError", 'secret "db" not found')
    assert 'Error: secret "db" not found' in events(pod, "Failed")
    node.objects.put_secret(NS, "db", {"user": "admin"})
    await node.waiting(pod, "CreateContainerConfigError", "couldn't find key password in Secret prod/db")
    node.objects.put_secret(NS, "db", {"user": "admin", "password": "hunter2"})
    cid = await node.running_container(pod)
    env = dict(line.split("=", 1) for line in (await node.exec(cid, "env")).splitlines() if "=" in line)
    assert env["PASSWORD"] == "hunter2" and env["CFG_MODE"] == "fast" and env["MODE"] == "fast"
    assert env["CFG_1st"] == "y" and "1st" not in env and "bad key" not in env
    assert ("Keys [1st, bad key] from the EnvFrom configMap prod/settings were skipped since they are "
            "considered invalid environment variable names.") in events(pod, "InvalidEnvironmentVariableNames")


async def test_service_account_volume_as_admission_injects_it(node: Node) -> None:
    node.objects.put_config_map(NS, "kube-root-ca.crt", {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n"})
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    pod = make_pod("sa", node.image, serviceAccountName="builder",
                   volumes=[{"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                       {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                       {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                       {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                           "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}],
                   mounts=[{"name": "kube-api-access-abcde", "mountPath": sa_dir, "readOnly": True}])
    node.manager.deps.resync_period = 1.0
    node.manager.set_pods(SOURCE, [pod])
    cid = await node.running_container(pod)
    assert await node.exec(cid, "cat", f"{sa_dir}/namespace") == NS
    assert await node.exec(cid, "cat", f"{sa_dir}/ca.crt") == "-----BEGIN CERTIFICATE-----\nMIIB\n"
    token = await node.exec(cid, "cat", f"{sa_dir}/token")
    assert token.startswith("test.")
    request = node.objects.token_requests[-1]
    assert request == {"namespace": NS, "service_account": "builder", "pod_name": "sa",
                       "pod_uid": pod.metadata.uid, "audiences": (), "expiration_seconds": 3607}
    mounts = await node.exec(cid, "cat", "/proc/mounts")
    assert any(line.split()[1:3] == [sa_dir, "tmpfs"] for line in mounts.splitlines()), mounts
    # The token's refresh is due in 48 min; the pod still resyncs (and rereads its volumes).
    reads = node.objects.reads
    await wait_for(lambda: node.objects.reads >= reads + 2, timeout=8, what="periodic resyncs")
    assert len(node.objects.token_requests) == 1


async def test_static_pod_downward_api_volume_in_the_agent(agent: AgentProcess, devenv: DevEnv,
                                                           cri: CRIClient) -> None:
    """Standalone (no API server): downwardAPI volumes need no objects and work
    for static pods, on a tmpfs, with their defaultMode."""
    agent.write_manifest("info.yaml", f"""\
apiVersion: v1
kind: Pod
metadata:
  name: info
  labels: {{app: info, tier: "a"}}
  annotations: {{note: 'say "hi"'}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: podinfo
    downwardAPI:
      defaultMode: 0400
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: note, fieldRef: {{fieldPath: "metadata.annotations['note']"}}}}
      - {{path: mem, resourceFieldRef: {{containerName: main, resource: limits.memory, divisor: 1Mi}}}}
  containers:
  - name: main
    image: {devenv.busybox}
    command: [sleep, "3600"]
    resources: {{limits: {{memory: 32Mi}}}}
    volumeMounts: [{{name: podinfo, mountPath: /etc/podinfo}}]
""")
    pod = await agent.wait_pod("info", running)
    cid = container(pod, "main")["containerID"].split("://", 1)[1]

    async def cat(path: str) -> str:
        result = await cri.exec_sync(cid, ["cat", path], timeout=10)
        return result.stdout.decode()

    assert await cat("/etc/podinfo/labels") == 'app="info"\ntier="a"'
    assert await cat("/etc/podinfo/note") == 'say "hi"'
    assert await cat("/etc/podinfo/mem") == "32"
    uid = pod["metadata"]["uid"]
    vol = agent.root_dir / "pods" / uid / "volumes" / "kubernetes.io~downward-api" / "podinfo"
    assert oct(os.stat(vol / "labels").st_mode & 0o777) == oct(0o400)
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert any(line.split()[4] == str(vol) and " - tmpfs " in line for line in mountinfo.splitlines())
    agent.remove_manifest("info.yaml")
    await agent.wait_gone("info")
    await wait_for(lambda: not (agent.root_dir / "pods" / uid).exists())
    assert str(vol) not in Path("/proc/self/mountinfo").read_text()
