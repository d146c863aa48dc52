"""The production API client (nodeagent/kube/client.py, kubeconfig.py) over
real HTTPS against the strict API server double."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import pytest
import yaml

from nodeagent.kube.client import STRATEGIC_MERGE_PATCH, ApiError, KubeClient, TokenBucket, Unreachable, describe
from nodeagent.kube.kubeconfig import KubeconfigError, load_kubeconfig
from nodeagent.kube.strategicpatch import two_way


def client_for(apiserver, tmp_path: Path, **kwargs) -> KubeClient:
    conn = load_kubeconfig(apiserver.kubeconfig(tmp_path / "kubeconfig", **kwargs))
    return KubeClient(conn, retries=1)


CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "namespace": "default"},
      "data": {"a": "1"}}


async def test_token_and_certificate_kubeconfigs(apiserver, tmp_path: Path) -> None:
    for auth in ("token", "cert"):
        async with client_for(apiserver, tmp_path / auth, auth=auth) as client:
            body = await client.get("/api/v1/namespaces/default")
            assert body["metadata"]["name"] == "default"
    users = {r.user for r in apiserver.requests if r.path == "/api/v1/namespaces/default"}
    assert users == {"system:node:node1"}


def test_kubeconfig_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    with pytest.raises(KubeconfigError, match="cannot read kubeconfig"):
        load_kubeconfig(path)
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
           "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
           "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
           "users": [{"name": "u", "user": {"exec": {"command": "aws"}}}]}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(KubeconfigError, match=f"{path}: user 'u' uses exec"):
        load_kubeconfig(path)
    doc["users"][0]["user"] = {"client-certificate-data": base64.b64encode(b"x").decode()}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(KubeconfigError, match="needs both client-certificate and client-key"):
        load_kubeconfig(path)
    doc["users"][0]["user"] = {"token": "t"}
    doc["clusters"][0]["cluster"]["certificate-authority"] = "missing-ca.pem"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(KubeconfigError, match="cannot read certificate-authority .*missing-ca.pem"):
        load_kubeconfig(path)


async def test_typed_errors(apiserver, tmp_path: Path) -> None:
    async with client_for(apiserver, tmp_path) as client:
        created = await client.create("/api/v1/namespaces/default/configmaps", CM)
        with pytest.raises(ApiError) as err:
            await client.create("/api/v1/namespaces/default/configmaps", CM)
        assert err.value.conflict and err.value.reason == "AlreadyExists"
        stale = dict(created, data={"a": "2"})
        await client.replace("/api/v1/namespaces/default/configmaps/c1", stale)
        with pytest.raises(ApiError) as err:  # same resourceVersion again: optimistic concurrency
            await client.replace("/api/v1/namespaces/default/configmaps/c1", stale)
        assert err.value.conflict and err.value.reason == "Conflict"
        with pytest.raises(ApiError) as err:
            await client.get("/api/v1/namespaces/default/configmaps/nope")
        assert err.value.not_found
        with pytest.raises(ApiError) as err:
            await client.delete("/api/v1/namespaces/default/configmaps/c1", uid="not-the-uid")
        assert err.value.conflict and "Precondition failed" in err.value.message
        await client.delete("/api/v1/namespaces/default/configmaps/c1", uid=created["metadata"]["uid"])
        assert apiserver.get("v1", "ConfigMap", "default", "c1") is None


async def test_strategic_merge_patch_of_status(apiserver, tmp_path: Path) -> None:
    """The diff the status manager sends is accepted and applied as a real server would."""
    apiserver.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                      "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "busybox"}]}})
    pod = apiserver.get("v1", "Pod", "default", "p")
    old = pod.get("status") or {}
    new = {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
           "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
           "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0, "image": "busybox",
                                  "imageID": "", "state": {"running": {"startedAt": "2026-11-22T00:00:00Z"}}}]}
    patch = two_way({"status": old}, {"status": new})
    patch["metadata"] = {"uid": pod["metadata"]["uid"]}
    async with client_for(apiserver, tmp_path) as client:
        result = await client.patch("/api/v1/namespaces/default/pods/p/status", patch, STRATEGIC_MERGE_PATCH)
        assert result["status"]["phase"] == "Running"
        later = dict(result["status"], containerStatuses=[dict(new["containerStatuses"][0], ready=False, state={
            "terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2026-11-22T00:00:00Z",
                           "finishedAt": "2026-11-22T00:00:09Z"}})])
        patch = two_way({"status": result["status"]}, {"status": later})
        assert patch["status"]["containerStatuses"] == later["containerStatuses"]  # an atomic list: whole
        assert "$setElementOrder/conditions" not in patch["status"]  # conditions unchanged
        result = await client.patch("/api/v1/namespaces/default/pods/p/status", patch, STRATEGIC_MERGE_PATCH)
    state = result["status"]["containerStatuses"][0]["state"]
    assert list(state) == ["terminated"] and state["terminated"]["exitCode"] == 1
    assert [c["type"] for c in result["status"]["conditions"]] == ["Ready", "PodScheduled"]
    apiserver.delete("v1", "Pod", "default", "p", grace_period_seconds=0)


async def test_watch_bookmarks_and_gone(apiserver, tmp_path: Path) -> None:
    async with client_for(apiserver, tmp_path) as client:
        listed = await client.get("/api/v1/namespaces/default/configmaps")
        rv = listed["metadata"]["resourceVersion"]
        seen: list[str] = []

        async def consume() -> None:
            async for event in client.watch("/api/v1/namespaces/default/configmaps",
                                            {"resourceVersion": rv}, timeout_seconds=30):
                seen.append(event.type)
                if event.type == "ADDED":
                    apiserver.compact()

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(1.5)  # bookmark_interval is 1 s
        apiserver.create(dict(CM, metadata={"name": "c2", "namespace": "default"}))
        with pytest.raises(ApiError) as err:
            await asyncio.wait_for(task, 10)
        assert err.value.gone
        assert "BOOKMARK" in seen and "ADDED" in seen
        with pytest.raises(ApiError) as err:  # the old version is gone for new watches too
            async for _ in client.watch("/api/v1/namespaces/default/configmaps", {"resourceVersion": rv}):
                pass
        assert err.value.gone
    apiserver.delete("v1", "ConfigMap", "default", "c2")


async def test_outage_and_auth_errors(apiserver, tmp_path: Path) -> None:
    client = client_for(apiserver, tmp_path)
    async with client:
        apiserver.pause()
        try:
            with pytest.raises(Unreachable):
                await client.get("/api/v1/namespaces/default")
        finally:
            apiserver.resume()
        assert (await client.get("/api/v1/namespaces/default"))["metadata"]["name"] == "default"
        apiserver.deny("system:node:node1", "list", "secrets")
        try:
            with pytest.raises(ApiError) as err:
                await client.get("/api/v1/namespaces/default/secrets")
        finally:
            apiserver.allow_all()
        assert err.value.code == 403 and "permission missing" in describe(err.value)
        assert 'cannot list resource "secrets"' in describe(err.value)
    path = apiserver.kubeconfig(tmp_path / "bad", auth="token")
    doc = yaml.safe_load(path.read_text())
    doc["users"][0]["user"]["token"] = "wrong"
    path.write_text(yaml.safe_dump(doc))
    async with KubeClient(load_kubeconfig(path), retries=0) as bad:
        with pytest.raises(ApiError) as err:
            await bad.get("/api/v1/namespaces/default")
    assert err.value.code == 401 and "rejected nodeagent's credentials" in describe(err.value)


async def test_token_bucket_spaces_requests() -> None:
    bucket = TokenBucket(qps=20, burst=2)
    started = time.monotonic()
    waits = [await bucket.acquire() for _ in range(6)]
    elapsed = time.monotonic() - started
    assert waits[:2] == [0.0, 0.0]  # the burst
    assert elapsed >= 4 / 20 * 0.9  # then 20 per second
