"""Environment variables from configMaps and secrets: the kubelet's order,
prefixes, optional references, its error messages and the
InvalidEnvironmentVariableNames event text."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.api.codec import decode
from nodeagent.api.defaults import apply_defaults
from nodeagent.api.types import Pod
from nodeagent.configdata.env import fetch_env_objects
from nodeagent.pods import crispec
from tests.configobjects import MemoryConfigObjects

NS = "prod"
NODE = crispec.NodeContext(node_name="n1", node_ips=("10.0.0.1",), allocatable_cpu_millis=2000,
                           allocatable_memory_bytes=2**32, pod_logs_dir=Path("/nonexistent/logs"),
                           root_dir=Path("/nonexistent/root"))


def make_pod(env: list[dict] | None = None, env_from: list[dict] | None = None) -> Pod:
    pod = decode(Pod, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": NS, "uid": "u1"},
                       "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "env": env or [],
                                                "envFrom": env_from or []}]}})
    apply_defaults(pod)
    return pod


async def resolve(pod: Pod, objects: MemoryConfigObjects | None) -> tuple[list[tuple[str, str]], list]:
    container = pod.spec.containers[0]
    found = await fetch_env_objects(pod, container, objects)
    env = crispec.resolve_env(pod, container, NODE, sandbox_ip="10.1.0.5", objects=found)
    return env, found.events if found is not None else []


@pytest.fixture
def objects() -> MemoryConfigObjects:
    objs = MemoryConfigObjects()
    objs.put_config_map(NS, "app", {"LOG_LEVEL": "debug", "PORT": "8080", "1BAD": "x", "bad-name": "y"},
                        binary_data={"BLOB": b"\x00"})
    objs.put_secret(NS, "db", {"PASSWORD": b"hunter2", "USER": b"admin"})
    return objs


async def test_key_refs_and_expansion(objects: MemoryConfigObjects) -> None:
    pod = make_pod(env=[
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "LOG_LEVEL"}}},
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": "PASSWORD"}}},
        {"name": "DSN", "value": "user:$(PASS)@db?log=$(LEVEL)"}])
    env, events = await resolve(pod, objects)
    assert env == [("LEVEL", "debug"), ("PASS", "hunter2"), ("DSN", "user:hunter2@db?log=debug")]
    assert events == []


async def test_env_from_with_prefix_and_precedence(objects: MemoryConfigObjects) -> None:
    pod = make_pod(env_from=[{"configMapRef": {"name": "app"}, "prefix": "APP_"},
                             {"secretRef": {"name": "db"}}],
                   env=[{"name": "USER", "value": "override"},
                        {"name": "URL", "value": "http://localhost:$(APP_PORT)"}])
    env, events = await resolve(pod, objects)
    assert dict(env) == {"APP_1BAD": "x", "APP_LOG_LEVEL": "debug", "APP_PORT": "8080", "APP_bad-name": "y",
                         "PASSWORD": "hunter2", "USER": "override", "URL": "http://localhost:8080"}
    assert events == []  # "APP_1BAD" and "APP_bad-name" are valid names (dashes are allowed)


async def test_invalid_names_are_skipped_with_an_event(objects: MemoryConfigObjects) -> None:
    objects.put_secret(NS, "odd", {"ok": b"1", "has space": b"2", "9lives": b"3"})
    pod = make_pod(env_from=[{"configMapRef": {"name": "app"}}, {"secretRef": {"name": "odd"}}])
    env, events = await resolve(pod, objects)
    assert dict(env) == {"LOG_LEVEL": "debug", "PORT": "8080", "bad-name": "y", "ok": "1"}
    assert events == [
        ("InvalidEnvironmentVariableNames",
         "Keys [1BAD] from the EnvFrom configMap prod/app were skipped since they are considered invalid "
         "environment variable names."),
        ("InvalidEnvironmentVariableNames",
         "Keys [9lives, has space] from the EnvFrom secret prod/odd were skipped since they are considered "
         "invalid environment variable names."),
    ]


async def test_optional_references(objects: MemoryConfigObjects) -> None:
    pod = make_pod(env_from=[{"configMapRef": {"name": "nope", "optional": True}},
                             {"configMapRef": {"name": "app"}}],
                   env=[{"name": "PORT", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "NOPE",
                                                                           "optional": True}}},
                        {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k",
                                                                        "optional": True}}},
                        {"name": "BLOB", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "BLOB",
                                                                           "optional": True}}}])
    env, _ = await resolve(pod, objects)
    # An optional miss leaves the variable as envFrom set it (or unset).
    assert dict(env)["PORT"] == "8080" and "GONE" not in dict(env) and "BLOB" not in dict(env)


@pytest.mark.parametrize(("env", "env_from", "message"), [
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}], [],
     'configmap "x" not found'),
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "k"}}}], [],
     "couldn't find key k in ConfigMap prod/app"),
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k"}}}], [],
     'secret "x" not found'),
    ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}], [],
     "couldn't find key k in Secret prod/db"),
    ([], [{"configMapRef": {"name": "x"}}], 'configmap "x" not found'),
    ([], [{"secretRef": {"name": "x"}}], 'secret "x" not found'),
    # binaryData is not for env (upstream reads .data only)
    ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "BLOB"}}}], [],
     "couldn't find key BLOB in ConfigMap prod/app"),
])
async def test_missing_required_references(objects: MemoryConfigObjects, env: list, env_from: list,
                                           message: str) -> None:
    with pytest.raises(crispec.ConfigError) as info:
        await resolve(make_pod(env=env, env_from=env_from), objects)
    assert str(info.value) == message


async def test_first_error_in_the_kubelet_order(objects: MemoryConfigObjects) -> None:
    pod = make_pod(env_from=[{"secretRef": {"name": "missing-secret"}}],
                   env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing-cm", "key": "k"}}}])
    with pytest.raises(crispec.ConfigError, match='^secret "missing-secret" not found$'):
        await resolve(pod, objects)


async def test_outage_and_standalone(objects: MemoryConfigObjects) -> None:
    pod = make_pod(env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "PORT"}}}])
    objects.unavailable = True
    with pytest.raises(crispec.ConfigError) as info:
        await resolve(pod, objects)
    assert str(info.value) == ("couldn't get configMap prod/app: the API server is not reachable "
                               "(test outage)")
    with pytest.raises(crispec.ConfigError) as info:
        await resolve(pod, None)
    assert str(info.value) == "couldn't get configMap prod/app, no kubeClient defined"


async def test_container_config_carries_the_variables(objects: MemoryConfigObjects) -> None:
    pod = make_pod(env_from=[{"secretRef": {"name": "db"}, "prefix": "DB_"}])
    container = pod.spec.containers[0]
    found = await fetch_env_objects(pod, container, objects)
    config = crispec.container_config(pod, container, NODE, attempt=0, image_ref="busybox", sandbox_ip="",
                                      mounts={}, termination_log=None, env_objects=found)
    assert [(kv.key, kv.value) for kv in config.envs] == [("DB_PASSWORD", "hunter2"), ("DB_USER", "admin")]
