"""configMap, secret, downwardAPI and projected volumes of a pod on the real
filesystem: contents, modes, tmpfs mounts (from /proc/self/mountinfo), optional
and missing objects, updates, outages, tokens, fsGroup, and cleanup."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.api.codec import decode
from nodeagent.api.defaults import apply_defaults
from nodeagent.api.types import Pod
from nodeagent.api.validation import validate_pod
from nodeagent.configdata import atomic
from nodeagent.configdata.tokens import TokenCache, TokenKey
from nodeagent.configdata.volumes import PodConfigVolumes, Prepared
from nodeagent.pods import crispec
from nodeagent.pods import volumes as podvolumes
from tests.configobjects import MemoryConfigObjects
from tests.test_volumes import umask  # noqa: F401 - autouse: modes assume umask 022

UID = "0c0ffee0-1111-2222-3333-444455556666"
NS = "prod"
GiB = 2**30


@pytest.fixture
def node(tmp_path: Path) -> Iterator[crispec.NodeContext]:
    root = tmp_path / "root"
    root.mkdir()
    yield crispec.NodeContext(node_name="n1", node_ips=("10.0.0.1",), allocatable_cpu_millis=2000,
                              allocatable_memory_bytes=4 * GiB, pod_logs_dir=tmp_path / "logs",
                              root_dir=root)
    podvolumes.cleanup_pod_dir(root, UID)
    assert podvolumes.mounts_under(tmp_path) == []


@pytest.fixture
def objects() -> MemoryConfigObjects:
    return MemoryConfigObjects()


async def _blocking(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


@pytest.fixture
async def volumes(objects: MemoryConfigObjects, node: crispec.NodeContext) -> AsyncIterator[PodConfigVolumes]:
    yield PodConfigVolumes(objects, node, _blocking)


def make_pod(*volumes: dict, labels: dict | None = None, annotations: dict | None = None,
             security: dict | None = None, containers: list[dict] | None = None) -> Pod:
    pod = decode(Pod, {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "web", "namespace": NS, "uid": UID, "labels": labels or {},
                                    "annotations": annotations or {}},
                       "spec": {"volumes": list(volumes), "serviceAccountName": "builder",
                                "securityContext": security or {},
                                "containers": containers or [{"name": "app", "image": "busybox:1.36"}]}})
    apply_defaults(pod)
    assert validate_pod(pod) == []
    return pod


def vol_dir(node: crispec.NodeContext, plugin: str, name: str) -> Path:
    return node.root_dir / "pods" / UID / "volumes" / plugin / name


def fs_type(path: Path) -> str | None:
    """The filesystem mounted exactly at `path`, from /proc/self/mountinfo."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            if parts[4] == real:
                return parts[parts.index("-") + 1]
    return None


def visible(path: Path) -> dict[str, tuple[bytes, int]]:
    """What a container sees: every file below the volume, through the links."""
    found = {}
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        for name in files:
            full = Path(root) / name
            if not name.startswith(".."):
                found[str(full.relative_to(path))] = (full.read_bytes(), stat.S_IMODE(full.stat().st_mode))
    return found


async def ok(volumes: PodConfigVolumes, pod: Pod) -> Prepared:
    result = await volumes.prepare(pod)
    assert result.errors == [] and result.warnings == [], result
    return result


# -- configMap ----------------------------------------------------------------------

async def test_config_map_on_disk_with_binary_data(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                                   node: crispec.NodeContext) -> None:
    objects.put_config_map(NS, "app-config", {"app.conf": "port=80\n", "mode": "prod"},
                           binary_data={"logo.bin": b"\x00\xff\x10"})
    pod = make_pod({"name": "cfg", "configMap": {"name": "app-config"}})
    result = await ok(volumes, pod)
    path = vol_dir(node, "kubernetes.io~configmap", "cfg")
    assert result.paths == {"cfg": str(path)}
    assert visible(path) == {"app.conf": (b"port=80\n", 0o644), "mode": (b"prod", 0o644),
                             "logo.bin": (b"\x00\xff\x10", 0o644)}
    assert fs_type(path) is None  # configMap volumes are plain directories
    assert os.readlink(path / "app.conf") == "..data/app.conf"


async def test_items_with_modes_and_nested_paths(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                                 node: crispec.NodeContext) -> None:
    objects.put_config_map(NS, "c", {"a": "A", "b": "B", "unused": "U"}, binary_data={"bin": b"\x01"})
    pod = make_pod({"name": "cfg", "configMap": {"name": "c", "defaultMode": 0o640, "items": [
        {"key": "a", "path": "conf/a.txt", "mode": 0o600},
        {"key": "b", "path": "b.txt"},
        {"key": "bin", "path": "deep/er/bin"}]}})
    await ok(volumes, pod)
    assert visible(vol_dir(node, "kubernetes.io~configmap", "cfg")) == {
        "conf/a.txt": (b"A", 0o600), "b.txt": (b"B", 0o640), "deep/er/bin": (b"\x01", 0o640)}


async def test_missing_required_config_map_and_key(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                                   node: crispec.NodeContext) -> None:
    pod = make_pod({"name": "x", "configMap": {"name": "y"}})
    result = await volumes.prepare(pod)
    assert result.errors == ['MountVolume.SetUp failed for volume "x" : configmap "y" not found']
    assert result.paths == {} and result.retry_in is not None
    assert not vol_dir(node, "kubernetes.io~configmap", "x").exists()  # data first, then the dir
    objects.put_config_map(NS, "y", {"other": "1"})
    keyed = make_pod({"name": "x", "configMap": {"name": "y", "items": [{"key": "k", "path": "k"}]}})
    result = await volumes.prepare(keyed)
    assert result.errors == ['MountVolume.SetUp failed for volume "x" : '
                             "configmap references non-existent config key: k"]
    await ok(volumes, pod)


async def test_optional_missing_objects_and_keys(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                                 node: crispec.NodeContext) -> None:
    objects.put_secret(NS, "present", {"have": "1"})
    pod = make_pod({"name": "cm", "configMap": {"name": "absent", "optional": True}},
                   {"name": "sec", "secret": {"secretName": "present", "optional": True,
                                              "items": [{"key": "have", "path": "h"},
                                                        {"key": "missing", "path": "m"}]}})
    await ok(volumes, pod)
    cm = vol_dir(node, "kubernetes.io~configmap", "cm")
    assert visible(cm) == {} and os.path.islink(cm / "..data")
    assert visible(vol_dir(node, "kubernetes.io~secret", "sec")) == {"h": (b"1", 0o644)}


# -- secret ----------------------------------------------------------------------------

async def test_secret_on_tmpfs_with_default_mode(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                                 node: crispec.NodeContext) -> None:
    objects.put_secret(NS, "db", {"password": b"s3cr3t", "user": "admin"})
    pod = make_pod({"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}})
    await ok(volumes, pod)
    path = vol_dir(node, "kubernetes.io~secret", "creds")
    assert fs_type(path) == "tmpfs"
    assert visible(path) == {"password": (b"s3cr3t", 0o400), "user": (b"admin", 0o400)}
    # A second sync keeps the one mount and the same payload.
    ts = os.readlink(path / "..data")
    await ok(volumes, pod)
    assert os.readlink(path / "..data") == ts
    assert [m.fs_type for m in podvolumes.mounts_under(path)] == ["tmpfs"]


async def test_missing_required_secret(volumes: PodConfigVolumes, node: crispec.NodeContext) -> None:
    pod = make_pod({"name": "creds", "secret": {"secretName": "db", "items": [{"key": "k", "path": "k"}]}})
    result = await volumes.prepare(pod)
    assert result.errors == ['MountVolume.SetUp failed for volume "creds" : secret "db" not found']
    assert podvolumes.mounts_under(node.root_dir) == []


async def test_missing_secret_key(volumes: PodConfigVolumes, objects: MemoryConfigObjects) -> None:
    objects.put_secret(NS, "db", {"user": "admin"})
    pod = make_pod({"name": "creds", "secret": {"secretName": "db", "items": [{"key": "k", "path": "k"}]}})
    result = await volumes.prepare(pod)
    assert result.errors == ['MountVolume.SetUp failed for volume "creds" : '
                             "references non-existent secret key: k"]


# -- updates, outages ----------------------------------------------------------------------

async def test_updates_rewrite_only_on_change(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                              node: crispec.NodeContext) -> None:
    objects.put_config_map(NS, "c", {"a": "1", "b": "2"})
    pod = make_pod({"name": "cfg", "configMap": {"name": "c"}})
    await ok(volumes, pod)
    path = vol_dir(node, "kubernetes.io~configmap", "cfg")
    first = os.readlink(path / "..data")
    objects.put_config_map(NS, "c", {"a": "1", "b": "2"})  # a new version with the same data
    await ok(volumes, pod)
    assert os.readlink(path / "..data") == first
    objects.put_config_map(NS, "c", {"a": "changed", "c": "3"})
    await ok(volumes, pod)
    assert os.readlink(path / "..data") != first
    assert visible(path) == {"a": (b"changed", 0o644), "c": (b"3", 0o644)}
    assert not os.path.lexists(path / "b") and not (path / first).exists()


async def test_outage_and_deletion_keep_what_is_mounted(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                                        node: crispec.NodeContext) -> None:
    objects.put_secret(NS, "s", {"k": "v1"})
    pod = make_pod({"name": "sec", "secret": {"secretName": "s"}})
    await ok(volumes, pod)
    path = vol_dir(node, "kubernetes.io~secret", "sec")
    objects.unavailable = True
    result = await volumes.prepare(pod)
    assert result.errors == [] and result.paths == {"sec": str(path)}
    assert result.warnings == ['MountVolume.SetUp failed for volume "sec" : couldn\'t get secret prod/s: '
                               "the API server is not reachable (test outage)"]
    assert visible(path) == {"k": (b"v1", 0o644)}
    first_retry = result.retry_in
    assert first_retry is not None
    result = await volumes.prepare(pod)
    assert result.retry_in is not None and result.retry_in > first_retry  # backs off
    objects.unavailable = False
    objects.delete_secret(NS, "s")
    result = await volumes.prepare(pod)
    assert result.warnings == ['MountVolume.SetUp failed for volume "sec" : secret "s" not found']
    assert visible(path) == {"k": (b"v1", 0o644)}
    # A fresh worker (agent restart) sees the published payload on disk and keeps it too.
    fresh = PodConfigVolumes(objects, node, _blocking)
    result = await fresh.prepare(pod)
    assert result.errors == [] and len(result.warnings) == 1
    objects.put_secret(NS, "s", {"k": "v2"})
    await ok(fresh, pod)
    assert visible(path) == {"k": (b"v2", 0o644)}


async def test_outage_before_first_setup_waits(volumes: PodConfigVolumes, objects: MemoryConfigObjects) -> None:
    objects.unavailable = True
    pod = make_pod({"name": "cfg", "configMap": {"name": "c"}})
    result = await volumes.prepare(pod)
    assert result.errors == ['MountVolume.SetUp failed for volume "cfg" : couldn\'t get configMap prod/c: '
                             "the API server is not reachable (test outage)"]


async def test_standalone_without_api_server(node: crispec.NodeContext) -> None:
    volumes = PodConfigVolumes(None, node, _blocking)
    pod = make_pod({"name": "cfg", "configMap": {"name": "c"}})
    result = await volumes.prepare(pod)
    assert result.errors == ['MountVolume.SetUp failed for volume "cfg" : '
                             "couldn't get configMap prod/c, no kubeClient defined"]


# -- downwardAPI -----------------------------------------------------------------------

async def test_downward_api_files(volumes: PodConfigVolumes, node: crispec.NodeContext) -> None:
    pod = make_pod({"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}, "mode": 0o600},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
        {"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "meta/namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "meta/uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory",
                                             "divisor": "1Mi"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "requests.cpu",
                                             "divisor": "1m"}},
    ]}}, labels={"tier": "front", "app": "web"},
        annotations={"note": 'say "hi"\n\tbye', "a.io/x": "1"},
        containers=[{"name": "app", "image": "busybox:1.36",
                     "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}])
    await ok(volumes, pod)
    path = vol_dir(node, "kubernetes.io~downward-api", "info")
    assert fs_type(path) == "tmpfs"
    assert visible(path) == {
        "labels": (b'app="web"\ntier="front"', 0o644),
        "annotations": (b'a.io/x="1"\nnote="say \\"hi\\"\\n\\tbye"', 0o600),
        "app": (b"web", 0o644),
        "meta/name": (b"web", 0o644), "meta/namespace": (b"prod", 0o644), "meta/uid": (UID.encode(), 0o644),
        "mem": (b"64", 0o644), "cpu": (b"250", 0o644)}
    # Labels change on the pod (an API update): the next sync rewrites the file.
    pod.metadata.labels["tier"] = "back"
    await ok(volumes, pod)
    assert (path / "labels").read_bytes() == b'app="web"\ntier="back"'


async def test_downward_api_limit_defaults_to_node_allocatable(volumes: PodConfigVolumes,
                                                               node: crispec.NodeContext) -> None:
    pod = make_pod({"name": "info", "downwardAPI": {"items": [
        {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory"}},
        {"path": "other", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}}]}})
    result = await volumes.prepare(pod)
    assert result.errors == ['MountVolume.SetUp failed for volume "info" : container nope not found']
    pod.spec.volumes[0].downward_api.items.pop()
    await ok(volumes, pod)
    path = vol_dir(node, "kubernetes.io~downward-api", "info")
    assert (path / "mem").read_bytes() == str(4 * GiB).encode()


# -- projected ------------------------------------------------------------------------------

async def test_projected_sources_on_tmpfs(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                          node: crispec.NodeContext) -> None:
    objects.put_config_map(NS, "c", {"settings": "x=1"})
    objects.put_secret(NS, "s", {"key.pem": "KEY"})
    pod = make_pod({"name": "all", "projected": {"defaultMode": 0o440, "sources": [
        {"configMap": {"name": "c"}},
        {"secret": {"name": "s", "items": [{"key": "key.pem", "path": "tls/key.pem", "mode": 0o400}]}},
        {"downwardAPI": {"items": [{"path": "pod", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 7200, "path": "vault-token"}},
    ]}})
    await ok(volumes, pod)
    path = vol_dir(node, "kubernetes.io~projected", "all")
    assert fs_type(path) == "tmpfs"
    files = visible(path)
    token = files.pop("vault-token")
    assert files == {"settings": (b"x=1", 0o440), "tls/key.pem": (b"KEY", 0o400), "pod": (b"web", 0o440)}
    assert token[1] == 0o440 and token[0].startswith(b"test.")
    assert objects.token_requests == [{"namespace": NS, "service_account": "builder", "pod_name": "web",
                                       "pod_uid": UID, "audiences": ("vault",), "expiration_seconds": 7200}]


async def test_projected_errors_are_aggregated(volumes: PodConfigVolumes) -> None:
    pod = make_pod({"name": "p", "projected": {"sources": [
        {"configMap": {"name": "gone"}},
        {"secret": {"name": "also-gone"}},
        {"clusterTrustBundle": {"signerName": "example.com/s", "labelSelector": {}, "path": "b.pem"}}]}})
    result = await volumes.prepare(pod)
    assert result.errors == [
        'MountVolume.SetUp failed for volume "p" : [configmap "gone" not found, secret "also-gone" not found, '
        "clusterTrustBundle projections are not supported by nodeagent]"]


async def test_kube_api_access_volume(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                      node: crispec.NodeContext) -> None:
    """What ServiceAccount admission injects when automountServiceAccountToken is not false."""
    objects.put_config_map(NS, "kube-root-ca.crt", {"ca.crt": "-----BEGIN CERTIFICATE-----\n"})
    pod = make_pod({"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}})
    await ok(volumes, pod)
    path = vol_dir(node, "kubernetes.io~projected", "kube-api-access-x7k2p")
    files = visible(path)
    assert set(files) == {"token", "ca.crt", "namespace"}
    assert files["namespace"] == (b"prod", 0o644)
    assert files["ca.crt"] == (b"-----BEGIN CERTIFICATE-----\n", 0o644)
    assert files["token"][1] == 0o644
    assert objects.token_requests[0]["audiences"] == () and objects.token_requests[0]["expiration_seconds"] == 3607


async def test_token_refresh_after_80_percent(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                              node: crispec.NodeContext) -> None:
    now = [1_000_000.0]
    volumes.tokens = TokenCache(clock=lambda: now[0])
    objects.token_lifetime = 3600
    pod = make_pod({"name": "t", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]}})
    real_time = objects.service_account_token

    async def at_fake_now(*args: Any, **kwargs: Any) -> Any:
        token = await real_time(*args, **kwargs)
        return type(token)(token.token, now[0] + 3600)

    objects.service_account_token = at_fake_now  # type: ignore[method-assign]
    result = await ok(volumes, pod)
    path = vol_dir(node, "kubernetes.io~projected", "t")
    first = (path / "token").read_bytes()
    assert result.retry_in is not None and 0.8 * 3600 - 1 <= result.retry_in <= 0.8 * 3600
    now[0] += 0.5 * 3600
    await ok(volumes, pod)
    assert len(objects.token_requests) == 1 and (path / "token").read_bytes() == first
    now[0] += 0.31 * 3600  # past 80 % of the lifetime
    await ok(volumes, pod)
    assert len(objects.token_requests) == 2 and (path / "token").read_bytes() != first
    # A failed refresh keeps the valid token; once it expired the failure shows.
    second = (path / "token").read_bytes()
    objects.unavailable = True
    now[0] += 0.85 * 3600
    result = await volumes.prepare(pod)
    assert result.warnings == [] and (path / "token").read_bytes() == second
    now[0] += 0.2 * 3600
    result = await volumes.prepare(pod)
    assert len(result.warnings) == 1 and "expired and refresh failed" in result.warnings[0]


async def test_fs_group_and_fs_user(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                    node: crispec.NodeContext) -> None:
    objects.put_secret(NS, "s", {"k": "v"})
    pod = make_pod({"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
                   {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                   security={"fsGroup": 2345, "runAsUser": 1001})
    await ok(volumes, pod)
    sec = vol_dir(node, "kubernetes.io~secret", "sec")
    st = os.stat(sec / "k")
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (2345, 0o440)
    root = os.stat(sec)
    assert root.st_gid == 2345 and root.st_mode & stat.S_ISGID
    token = os.stat(vol_dir(node, "kubernetes.io~projected", "tok") / "token")
    # The token belongs to the containers' user; fsGroup widens 0600 to 0640.
    assert (token.st_uid, token.st_gid, stat.S_IMODE(token.st_mode)) == (1001, 2345, 0o640)


async def test_cleanup_removes_mounts_and_files(volumes: PodConfigVolumes, objects: MemoryConfigObjects,
                                                node: crispec.NodeContext) -> None:
    objects.put_secret(NS, "s", {"k": "v"})
    objects.put_config_map(NS, "c", {"k": "v"})
    pod = make_pod({"name": "sec", "secret": {"secretName": "s"}}, {"name": "cfg", "configMap": {"name": "c"}},
                   {"name": "info", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}})
    await ok(volumes, pod)
    assert len([m for m in podvolumes.mounts_under(node.root_dir) if m.fs_type == "tmpfs"]) == 2
    podvolumes.cleanup_pod_dir(node.root_dir, UID)
    assert podvolumes.mounts_under(node.root_dir) == []
    assert not (node.root_dir / "pods" / UID).exists()


def test_read_payload_helper(tmp_path: Path) -> None:
    atomic.write(tmp_path, {"x": atomic.FileProjection(b"1", 0o600)})
    assert atomic.read_payload(tmp_path) == {"x": (b"1", 0o600)}


async def test_long_tokens_are_refreshed_after_24_hours(objects: MemoryConfigObjects) -> None:
    now = [5_000_000.0]
    cache = TokenCache(clock=lambda: now[0])
    week = 7 * 24 * 3600
    key = TokenKey(namespace=NS, service_account="builder", audiences=("api",), expiration_seconds=week,
                   pod_name="web", pod_uid=UID)
    objects.token_lifetime = week
    real = objects.service_account_token

    async def at_fake_now(*args: Any, **kwargs: Any) -> Any:
        token = await real(*args, **kwargs)
        return type(token)(token.token, now[0] + week)

    objects.service_account_token = at_fake_now  # type: ignore[method-assign]
    first = await cache.get(objects, key)
    assert cache.next_refresh_in() == 24 * 3600  # long before 80 % of a week
    now[0] += 23 * 3600
    assert await cache.get(objects, key) == first
    now[0] += 3600 + 1
    assert await cache.get(objects, key) != first
    assert len(objects.token_requests) == 2
