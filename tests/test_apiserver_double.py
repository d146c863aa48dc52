"""The API server double's semantics over real HTTPS with a plain aiohttp client (no nodeagent code)."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.apiserver import APIServerDouble, ApiStatusError

PODS = "/api/v1/namespaces/default/pods"
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"


class Client:
    """A bare HTTPS client for the double: status, JSON body, headers."""

    def __init__(self, srv: APIServerDouble, token: str | None = "admin-token", cert: tuple[str, str] | None = None):
        self.srv = srv
        ctx = ssl.create_default_context(cafile=str(srv.ca_file))
        if cert:
            ctx.load_cert_chain(*cert)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.session = aiohttp.ClientSession(srv.url, headers=headers, connector=aiohttp.TCPConnector(ssl=ctx))

    async def req(self, method: str, path: str, body: Any = None, *, ctype: str = "application/json",
                  params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                  raw: bytes | None = None) -> tuple[int, Any, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": ctype} if data is not None else {}
        hdrs.update(headers or {})
        async with self.session.request(method, path, data=data, params=params, headers=hdrs) as resp:
            text = await resp.text()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            return resp.status, parsed, resp.headers

    async def watch(self, path: str, params: dict[str, str]) -> aiohttp.ClientResponse:
        return await self.session.get(path, params={"watch": "true", **params})

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def client(apiserver: APIServerDouble) -> AsyncIterator[Client]:
    apiserver.add_token("admin-token", "admin", ("system:masters",))
    c = Client(apiserver)
    yield c
    await c.close()


def pod(name: str, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    s.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": s}


async def next_event(resp: aiohttp.ClientResponse, timeout: float = 5.0) -> dict[str, Any]:
    line = await asyncio.wait_for(resp.content.readline(), timeout)
    assert line, "the watch ended"
    return json.loads(line)


def assert_status(body: dict[str, Any], code: int, reason: str, message: str | None = None) -> None:
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure", body
    assert body["code"] == code and body.get("reason", "") == reason, body
    if message is not None:
        assert body["message"] == message, body["message"]


# ---- CRUD, resourceVersion, conflicts ----------------------------------------------------------

async def test_create_get_list_update_delete(client: Client) -> None:
    st, created, _ = await client.req("POST", PODS, pod("web"))
    assert st == 201
    meta = created["metadata"]
    assert meta["namespace"] == "default" and len(meta["uid"]) == 36 and meta["creationTimestamp"].endswith("Z")
    spec = created["spec"]
    assert spec["restartPolicy"] == "Always" and spec["terminationGracePeriodSeconds"] == 30
    assert spec["dnsPolicy"] == "ClusterFirst" and spec["schedulerName"] == "default-scheduler"
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert spec["containers"][0]["terminationMessagePath"] == "/dev/termination-log"
    assert spec["serviceAccountName"] == "default" and spec["enableServiceLinks"] is True
    assert created["status"] == {"phase": "Pending", "qosClass": "BestEffort"}

    st, got, _ = await client.req("GET", f"{PODS}/web")
    assert st == 200 and got == created
    st, lst, _ = await client.req("GET", PODS)
    assert st == 200 and lst["kind"] == "PodList" and [p["metadata"]["name"] for p in lst["items"]] == ["web"]
    assert "kind" not in lst["items"][0] and "apiVersion" not in lst["items"][0]  # typed list items: no TypeMeta
    assert int(lst["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])

    got["metadata"]["labels"] = {"app": "web"}
    st, upd, _ = await client.req("PUT", f"{PODS}/web", got)
    assert st == 200 and upd["metadata"]["labels"] == {"app": "web"}
    assert int(upd["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    # same update again with the now stale resourceVersion: 409
    st, body, _ = await client.req("PUT", f"{PODS}/web", got)
    assert_status(body, 409, "Conflict", 'Operation cannot be fulfilled on pods "web": the object has been '
                  'modified; please apply your changes to the latest version and try again')
    assert body["details"] == {"name": "web", "kind": "pods"}

    # without a resourceVersion the update is unconditional; an unchanged object is not written again
    upd2 = dict(upd, metadata=dict(upd["metadata"], resourceVersion=""))
    st, same, _ = await client.req("PUT", f"{PODS}/web", upd2)
    assert st == 200 and same["metadata"]["resourceVersion"] == upd["metadata"]["resourceVersion"]

    st, body, _ = await client.req("POST", PODS, pod("web"))
    assert_status(body, 409, "AlreadyExists", 'pods "web" already exists')

    st, body, _ = await client.req("DELETE", f"{PODS}/web")
    assert st == 200 and body["metadata"]["name"] == "web"  # unscheduled pod: deleted at once, pod returned
    st, body, _ = await client.req("GET", f"{PODS}/web")
    assert_status(body, 404, "NotFound", 'pods "web" not found')
    assert body["details"] == {"name": "web", "kind": "pods"}


async def test_create_metadata_rules(client: Client) -> None:
    st, body, _ = await client.req("POST", PODS, {**pod("x"), "metadata": {"name": "x", "namespace": "kube-system"}})
    assert_status(body, 400, "BadRequest", "the namespace of the provided object does not match the namespace "
                  "sent on the request")
    st, body, _ = await client.req("POST", "/api/v1/namespaces/nope/pods", pod("x"))
    assert_status(body, 404, "NotFound", 'namespaces "nope" not found')
    st, body, _ = await client.req("POST", PODS, {**pod("x"), "kind": "ConfigMap"})
    assert st == 400 and body["reason"] == "BadRequest"
    st, body, _ = await client.req("POST", PODS, {**pod("x"), "apiVersion": "v2"})
    assert_status(body, 400, "BadRequest", "the API version in the data (v2) does not match the expected API "
                  "version (v1)")
    st, body, _ = await client.req("POST", PODS, raw=b"{not json")
    assert st == 400 and body["reason"] == "BadRequest"
    gen = pod("")
    gen["metadata"] = {"generateName": "job-"}
    st, body, _ = await client.req("POST", PODS, gen)
    assert st == 201 and body["metadata"]["name"].startswith("job-") and len(body["metadata"]["name"]) == 9


async def test_delete_preconditions(client: Client) -> None:
    st, cm, _ = await client.req("POST", "/api/v1/namespaces/default/configmaps",
                                 {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    assert st == 201
    uid = cm["metadata"]["uid"]
    st, body, _ = await client.req("DELETE", "/api/v1/namespaces/default/configmaps/cfg",
                                   {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "other"}})
    assert_status(body, 409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "cfg": StorageError: invalid object, Code: 4, Key: '
        f'/registry/configmaps/default/cfg, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in '
        f'precondition: other, UID in object meta: {uid}')
    st, body, _ = await client.req("DELETE", "/api/v1/namespaces/default/configmaps/cfg",
                                   {"preconditions": {"resourceVersion": "1"}})
    assert st == 409 and "Precondition failed: ResourceVersion in precondition: 1" in body["message"]
    st, body, _ = await client.req("DELETE", "/api/v1/namespaces/default/configmaps/cfg",
                                   {"preconditions": {"uid": uid}})
    assert st == 200 and body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": {"name": "cfg", "kind": "configmaps", "uid": uid}}


async def test_unknown_paths_and_methods(client: Client) -> None:
    st, body, _ = await client.req("GET", "/api/v1/namespaces/default/widgets")
    assert_status(body, 404, "NotFound", "the server could not find the requested resource")
    st, body, _ = await client.req("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/x/bogus")
    assert st == 404
    st, body, _ = await client.req("PUT", PODS, pod("x"))
    assert_status(body, 405, "MethodNotAllowed")
    st, body, _ = await client.req("GET", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert st == 405
    st, body, _ = await client.req("GET", PODS, headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert_status(body, 406, "NotAcceptable")
    st, body, _ = await client.req("GET", PODS, headers={"Accept": "application/vnd.kubernetes.protobuf, "
                                                                   "application/json"})
    assert st == 200


# ---- validation --------------------------------------------------------------------------------

async def test_pod_validation(client: Client) -> None:
    bad = pod("bad")
    bad["spec"]["containers"] = [{"name": "c"}, {"name": "c", "image": "x"}]
    bad["spec"]["restartPolicy"] = "Sometimes"
    st, body, _ = await client.req("POST", PODS, bad)
    assert_status(body, 422, "Invalid")
    causes = {(c["field"], c["reason"]) for c in body["details"]["causes"]}
    assert ("spec.containers[0].image", "FieldValueRequired") in causes
    assert ("spec.containers[1].name", "FieldValueDuplicate") in causes
    assert ("spec.restartPolicy", "FieldValueNotSupported") in causes
    assert body["message"].startswith('Pod "bad" is invalid: [')
    assert body["details"]["kind"] == "Pod" and body["details"]["name"] == "bad"
    assert 'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", ' \
           '"Never"' in body["message"]

    st, body, _ = await client.req("POST", PODS, {"metadata": {"name": "Bad_Name"}, "spec": pod("x")["spec"]})
    assert st == 422 and body["details"]["causes"][0]["field"] == "metadata.name"
    st, body, _ = await client.req("POST", PODS, {"metadata": {"name": "nospec"}})
    assert st == 422 and body["details"]["causes"][0] == {"reason": "FieldValueRequired", "message":
                                                          "Required value", "field": "spec.containers"}
    quant = pod("q")
    quant["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "lots"}}
    st, body, _ = await client.req("POST", PODS, quant)
    assert_status(body, 400, "BadRequest")
    assert "quantities must match the regular expression" in body["message"]


async def test_pod_spec_is_immutable_except_image(client: Client) -> None:
    st, created, _ = await client.req("POST", PODS, pod("imm"))
    changed = json.loads(json.dumps(created))
    changed["spec"]["containers"][0]["image"] = "busybox:1.37"
    st, upd, _ = await client.req("PUT", f"{PODS}/imm", changed)
    assert st == 200 and upd["spec"]["containers"][0]["image"] == "busybox:1.37"
    upd["spec"]["restartPolicy"] = "Never"
    st, body, _ = await client.req("PUT", f"{PODS}/imm", upd)
    assert_status(body, 422, "Invalid")
    assert body["message"].startswith('Pod "imm" is invalid: spec: Forbidden: pod updates may not change fields '
                                      'other than `spec.containers[*].image`')
    assert body["details"]["causes"][0]["field"] == "spec"


# ---- status subresource ----------------------------------------------------------------------

async def test_status_subresource_isolation(client: Client) -> None:
    st, created, _ = await client.req("POST", PODS, pod("st", nodeName="node1"))
    # a write to the main resource ignores .status
    obj = json.loads(json.dumps(created))
    obj["status"]["phase"] = "Running"
    obj["metadata"]["labels"] = {"x": "y"}
    st, upd, _ = await client.req("PUT", f"{PODS}/st", obj)
    assert st == 200 and upd["status"]["phase"] == "Pending" and upd["metadata"]["labels"] == {"x": "y"}
    # a write to /status ignores .spec but takes status (and labels)
    upd["status"]["phase"] = "Running"
    upd["status"]["podIP"] = "10.0.0.5"
    upd["spec"]["containers"][0]["image"] = "other:1"
    upd["metadata"]["labels"] = {"x": "z"}
    st, s2, _ = await client.req("PUT", f"{PODS}/st/status", upd)
    assert st == 200, s2
    assert s2["status"]["phase"] == "Running" and s2["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert s2["status"]["podIPs"] == [{"ip": "10.0.0.5"}] and s2["metadata"]["labels"] == {"x": "z"}
    # status validation: one IP per family
    st, body, _ = await client.req("PATCH", f"{PODS}/st/status",
                                   {"status": {"podIPs": [{"ip": "10.0.0.5"}, {"ip": "10.0.0.6"}]}}, ctype=SMP)
    assert st == 422 and body["details"]["causes"][0]["field"] == "status.podIPs", body
    st, body, _ = await client.req("PATCH", f"{PODS}/st/status", {"status": {"podIP": "not-an-ip"}}, ctype=MERGE)
    assert st == 422 and body["details"]["causes"][0]["field"] == "status.podIPs[0]"
    st, body, _ = await client.req("PATCH", f"{PODS}/st/status", {"spec": {"nodeName": "other"}}, ctype=MERGE)
    assert st == 200 and body["spec"]["nodeName"] == "node1"  # spec changes through /status are dropped


# ---- patches -----------------------------------------------------------------------------------

async def test_strategic_merge_patch_merge_keys_and_order(client: Client) -> None:
    await client.req("POST", PODS, pod("smp", nodeName="node1"))
    conds = [{"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
             {"type": "Ready", "status": "False"}]
    st, p1, _ = await client.req("PATCH", f"{PODS}/smp/status", {"status": {"conditions": conds}}, ctype=SMP)
    assert st == 200 and [c["type"] for c in p1["status"]["conditions"]] == ["PodScheduled", "Initialized", "Ready"]
    # kubelet-style patch: only Ready changes, $setElementOrder keeps (and sets) the order
    patch = {"metadata": {"uid": p1["metadata"]["uid"]}, "status": {
        "$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"}, {"type": "PodScheduled"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0, "image": "busybox:1.36",
                               "imageID": "", "state": {"running": {"startedAt": "2024-05-01T10:00:00.5+02:00"}}}]}}
    st, p2, _ = await client.req("PATCH", f"{PODS}/smp/status", patch, ctype=SMP)
    assert st == 200, p2
    assert [(c["type"], c["status"]) for c in p2["status"]["conditions"]] == [
        ("Initialized", "True"), ("Ready", "True"), ("PodScheduled", "True")]
    # metav1.Time round-trips to whole seconds in UTC
    assert p2["status"]["containerStatuses"][0]["state"]["running"]["startedAt"] == "2024-05-01T08:00:00Z"
    # containerStatuses is atomic: a patch replaces the list
    st, p3, _ = await client.req("PATCH", f"{PODS}/smp/status", {"status": {"containerStatuses": [
        {"name": "c", "ready": False, "restartCount": 1, "image": "busybox:1.36", "imageID": "",
         "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}, ctype=SMP)
    assert p3["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    # $patch: delete removes a keyed item; $patch: replace replaces the whole list
    st, p4, _ = await client.req("PATCH", f"{PODS}/smp/status", {"status": {"conditions": [
        {"type": "Initialized", "$patch": "delete"}]}}, ctype=SMP)
    assert [c["type"] for c in p4["status"]["conditions"]] == ["Ready", "PodScheduled"]
    st, p5, _ = await client.req("PATCH", f"{PODS}/smp/status", {"status": {"conditions": [
        {"$patch": "replace"}, {"type": "Ready", "status": "False"}]}}, ctype=SMP)
    # (times without omitempty are written as null, as Go encodes a zero metav1.Time)
    assert p5["status"]["conditions"] == [{"type": "Ready", "status": "False", "lastProbeTime": None,
                                           "lastTransitionTime": None}]
    # labels: null deletes a key; finalizers merge as a set; $deleteFromPrimitiveList removes
    st, p6, _ = await client.req("PATCH", f"{PODS}/smp", {"metadata": {"labels": {"a": "1", "b": "2"},
                                                                      "finalizers": ["x.io/one"]}}, ctype=SMP)
    st, p7, _ = await client.req("PATCH", f"{PODS}/smp", {"metadata": {"labels": {"a": None},
                                                                      "finalizers": ["x.io/two"]}}, ctype=SMP)
    # without $setElementOrder a new item goes before the server-only ones (mergeSortedSlice)
    assert p7["metadata"]["labels"] == {"b": "2"} and p7["metadata"]["finalizers"] == ["x.io/two", "x.io/one"]
    st, p8, _ = await client.req("PATCH", f"{PODS}/smp", {"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["x.io/one", "x.io/two"]}}, ctype=SMP)
    assert "finalizers" not in p8["metadata"] or p8["metadata"]["finalizers"] == []
    # a stale resourceVersion in a patch is a conflict
    st, body, _ = await client.req("PATCH", f"{PODS}/smp", {"metadata": {"resourceVersion": "1"}}, ctype=SMP)
    assert st == 409 and body["reason"] == "Conflict"
    st, body, _ = await client.req("PATCH", f"{PODS}/smp", {"status": {"$setElementOrder/conditions": 5}},
                                   ctype=SMP)
    assert st == 400


async def test_merge_and_json_patch(client: Client) -> None:
    await client.req("POST", PODS, pod("mp"))
    st, p1, _ = await client.req("PATCH", f"{PODS}/mp", {"metadata": {"annotations": {"a": "1"}}}, ctype=MERGE)
    assert st == 200 and p1["metadata"]["annotations"] == {"a": "1"}
    st, p2, _ = await client.req("PATCH", f"{PODS}/mp", [
        {"op": "test", "path": "/metadata/annotations/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels", "value": {"k": "v"}}], ctype=JSONPATCH)
    assert st == 200 and p2["metadata"]["labels"] == {"k": "v"}
    st, body, _ = await client.req("PATCH", f"{PODS}/mp", [
        {"op": "test", "path": "/metadata/annotations/a", "value": "2"}], ctype=JSONPATCH)
    assert_status(body, 422, "Invalid", "the server rejected our request due to an error in our request")
    st, body, _ = await client.req("PATCH", f"{PODS}/mp", {"x": 1}, ctype="application/xml")
    assert_status(body, 415, "UnsupportedMediaType")
    st, body, _ = await client.req("PATCH", f"{PODS}/mp", raw=b"apiVersion: v1", ctype="application/apply-patch+yaml")
    assert st == 501 and "not implemented" in body["message"]
    st, body, _ = await client.req("PATCH", f"{PODS}/missing", {"metadata": {}}, ctype=MERGE)
    assert_status(body, 404, "NotFound", 'pods "missing" not found')
    st, body, _ = await client.req("PATCH", f"{PODS}/mp", {"spec": {"restartPolicy": "Never"}}, ctype=MERGE)
    assert st == 422


# ---- control plane -----------------------------------------------------------------------------

async def test_control_plane_methods(apiserver: APIServerDouble) -> None:
    created = apiserver.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"},
                                "status": {"capacity": {"cpu": "2", "memory": "4Gi"}}})
    assert created["status"]["allocatable"] == {"cpu": "2", "memory": "4Gi"}
    got = apiserver.get("v1", "Node", None, "node1")
    assert got == created
    assert apiserver.get("v1", "Node", None, "nope") is None
    stale = json.loads(json.dumps(got))
    got["metadata"]["labels"] = {"a": "b"}
    apiserver.update(got)
    with pytest.raises(ApiStatusError) as exc:
        apiserver.update(stale | {"metadata": {**stale["metadata"], "labels": {"c": "d"}}})
    assert exc.value.code == 409 and exc.value.reason == "Conflict"
    patched = apiserver.patch("v1", "Node", None, "node1", {"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}, SMP, subresource="status")
    assert patched["status"]["conditions"][0]["type"] == "Ready"
    assert [n["metadata"]["name"] for n in apiserver.list("v1", "Node")] == ["node1"]
    assert apiserver.delete("v1", "Node", None, "node1") is None
    assert apiserver.list("v1", "Node") == []


# ---- watch -------------------------------------------------------------------------------------

async def test_watch_order_selectors_bookmarks_timeout(apiserver: APIServerDouble, client: Client) -> None:
    apiserver.bookmark_interval = 0.2
    await client.req("POST", PODS, pod("a", nodeName="node1"))
    st, lst, _ = await client.req("GET", PODS)
    rv0 = lst["metadata"]["resourceVersion"]
    # initial state as ADDED (resourceVersion unset), then live changes
    resp = await client.watch(PODS, {"fieldSelector": "spec.nodeName=node1", "labelSelector": "app in (web),tier!=db",
                                     "allowWatchBookmarks": "true", "timeoutSeconds": "3"})
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    plain = await client.watch(PODS, {"resourceVersion": rv0})
    await client.req("POST", PODS, pod("b", nodeName="node1"))
    await client.req("PATCH", f"{PODS}/b", {"metadata": {"labels": {"app": "web"}}}, ctype=MERGE)  # starts matching
    await client.req("PATCH", f"{PODS}/b", {"metadata": {"labels": {"tier": "db"}}}, ctype=MERGE)  # stops matching
    await client.req("POST", PODS, pod("c", nodeName="node2"))
    events = []
    while len(events) < 2:
        ev = await next_event(resp)
        if ev["type"] != "BOOKMARK":
            events.append(ev)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b"), ("DELETED", "b")]
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) < \
        int(events[1]["object"]["metadata"]["resourceVersion"])
    # the unfiltered watch from rv0 sees every change in resourceVersion order
    seen = [await next_event(plain) for _ in range(4)]
    assert [e["type"] for e in seen] == ["ADDED", "MODIFIED", "MODIFIED", "ADDED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen]
    assert rvs == sorted(rvs) and rvs[0] > int(rv0)
    # bookmarks carry only the resourceVersion; the stream ends cleanly at timeoutSeconds
    bookmark = None
    while True:
        line = await asyncio.wait_for(resp.content.readline(), 5)
        if not line:
            break
        ev = json.loads(line)
        if ev["type"] == "BOOKMARK":
            bookmark = ev
    assert bookmark is not None
    assert bookmark["object"] == {"kind": "Pod", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(rvs[-1])}}
    resp.close()
    plain.close()


async def test_watch_compaction_410(apiserver: APIServerDouble, client: Client) -> None:
    st, lst, _ = await client.req("GET", PODS)
    old_rv = lst["metadata"]["resourceVersion"]
    open_watch = await client.watch(PODS, {"resourceVersion": old_rv})
    await client.req("POST", PODS, pod("x"))
    assert (await next_event(open_watch))["type"] == "ADDED"
    apiserver.compact()
    ev = await next_event(open_watch)
    assert ev["type"] == "ERROR" and ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
    assert await asyncio.wait_for(open_watch.content.readline(), 5) == b""
    open_watch.close()
    # a new watch from before the compaction: 200, then an ERROR event with the real message
    resp = await client.watch(PODS, {"resourceVersion": old_rv})
    assert resp.status == 200
    ev = await next_event(resp)
    _, now, _ = await client.req("GET", PODS)
    assert ev == {"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {old_rv} ({now['metadata']['resourceVersion']})",
        "reason": "Expired", "code": 410}}
    resp.close()
    # an exact list at a compacted revision is 410 too; the current one works
    st, body, _ = await client.req("GET", PODS, params={"resourceVersion": old_rv, "resourceVersionMatch": "Exact"})
    assert_status(body, 410, "Expired", "The resourceVersion for the provided list is too old.")
    st, body, _ = await client.req("GET", PODS, params={"resourceVersion": now["metadata"]["resourceVersion"],
                                                        "resourceVersionMatch": "Exact"})
    assert st == 200 and len(body["items"]) == 1


# ---- selectors and paging ----------------------------------------------------------------------

async def test_field_and_label_selectors(client: Client) -> None:
    await client.req("POST", PODS, {**pod("p1", nodeName="node1"), "metadata": {"name": "p1",
                                                                               "labels": {"app": "a", "tier": "fe"}}})
    await client.req("POST", PODS, {**pod("p2", nodeName="node2", restartPolicy="Never"),
                                    "metadata": {"name": "p2", "labels": {"app": "b"}}})
    await client.req("POST", PODS, {**pod("p3"), "metadata": {"name": "p3"}})

    async def names(**params: str) -> list[str]:
        st, body, _ = await client.req("GET", "/api/v1/pods", params=params)
        assert st == 200, body
        return [p["metadata"]["name"] for p in body["items"]]

    assert await names(fieldSelector="spec.nodeName=node1") == ["p1"]
    assert await names(fieldSelector="spec.nodeName!=node1,metadata.namespace==default") == ["p2", "p3"]
    assert await names(fieldSelector="spec.nodeName=") == ["p3"]
    assert await names(fieldSelector="spec.restartPolicy=Never,status.phase=Pending") == ["p2"]
    assert await names(fieldSelector="spec.host=node2") == ["p2"]  # the old alias of spec.nodeName
    assert await names(labelSelector="app") == ["p1", "p2"]
    assert await names(labelSelector="!app") == ["p3"]
    assert await names(labelSelector="app in (a, b),tier notin (fe)") == ["p2"]
    assert await names(labelSelector="app==a") == ["p1"]
    assert await names(labelSelector="app!=a") == ["p2", "p3"]
    st, body, _ = await client.req("GET", PODS, params={"fieldSelector": "spec.containers=x"})
    assert_status(body, 400, "BadRequest", "field label not supported: spec.containers")
    st, body, _ = await client.req("GET", "/api/v1/namespaces/default/configmaps",
                                   params={"fieldSelector": "data.x=1"})
    assert_status(body, 400, "BadRequest", '"data.x" is not a known field selector: only "metadata.name", '
                  '"metadata.namespace"')
    st, body, _ = await client.req("GET", PODS, params={"labelSelector": "app in (a"})
    assert st == 400 and body["reason"] == "BadRequest"
    st, body, _ = await client.req("GET", "/api/v1/nodes", params={"fieldSelector": "spec.unschedulable=false"})
    assert st == 200
    st, body, _ = await client.req("GET", "/api/v1/events", params={
        "fieldSelector": "involvedObject.kind=Pod,involvedObject.name=p1,involvedObject.namespace=default,"
                         "involvedObject.uid=x,involvedObject.fieldPath=y,reason=Started,source=kubelet,type=Normal"})
    assert st == 200 and body["kind"] == "EventList"


async def test_list_paging(apiserver: APIServerDouble, client: Client) -> None:
    for i in range(5):
        await client.req("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"cm{i}"}})
    base = "/api/v1/namespaces/default/configmaps"
    st, page1, _ = await client.req("GET", base, params={"limit": "2"})
    assert [c["metadata"]["name"] for c in page1["items"]] == ["cm0", "cm1"]
    assert page1["metadata"]["remainingItemCount"] == 4  # cm2..cm4 and kube-root-ca.crt
    rv = page1["metadata"]["resourceVersion"]
    # a change between pages does not show: the pages are one snapshot
    await client.req("POST", base, {"metadata": {"name": "cm22"}})
    st, page2, _ = await client.req("GET", base, params={"limit": "2", "continue": page1["metadata"]["continue"]})
    assert [c["metadata"]["name"] for c in page2["items"]] == ["cm2", "cm3"]
    assert page2["metadata"]["resourceVersion"] == rv
    st, page3, _ = await client.req("GET", base, params={"limit": "2", "continue": page2["metadata"]["continue"]})
    assert [c["metadata"]["name"] for c in page3["items"]] == ["cm4", "kube-root-ca.crt"]
    assert "continue" not in page3["metadata"]
    # resourceVersion=0 is served from the cache: the limit is ignored
    st, full, _ = await client.req("GET", base, params={"limit": "2", "resourceVersion": "0"})
    assert len(full["items"]) == 7 and "continue" not in full["metadata"]
    st, body, _ = await client.req("GET", base, params={"resourceVersionMatch": "Exact"})
    assert_status(body, 422, "Invalid")
    # a continue token older than the compaction point is 410
    apiserver.compact()
    st, body, _ = await client.req("GET", base, params={"limit": "2", "continue": page1["metadata"]["continue"]})
    assert_status(body, 410, "Expired")
    assert body["message"].startswith("The provided continue parameter is too old")


# ---- pods: graceful deletion -------------------------------------------------------------------

async def test_graceful_pod_deletion(client: Client) -> None:
    st, created, _ = await client.req("POST", PODS, pod("g", nodeName="node1"))
    uid = created["metadata"]["uid"]
    w = await client.watch(PODS, {"resourceVersion": created["metadata"]["resourceVersion"]})
    st, body, _ = await client.req("DELETE", f"{PODS}/g")
    assert st == 200 and body["metadata"]["deletionGracePeriodSeconds"] == 30 and body["metadata"]["deletionTimestamp"]
    ev = await next_event(w)
    assert ev["type"] == "MODIFIED" and ev["object"]["metadata"]["deletionGracePeriodSeconds"] == 30
    # a longer grace period does not extend it; a shorter one shortens it
    st, body, _ = await client.req("DELETE", f"{PODS}/g", params={"gracePeriodSeconds": "60"})
    assert st == 200 and body["metadata"]["deletionGracePeriodSeconds"] == 30
    st, body, _ = await client.req("DELETE", f"{PODS}/g", {"gracePeriodSeconds": 10})
    assert body["metadata"]["deletionGracePeriodSeconds"] == 10
    ev = await next_event(w)
    assert ev["type"] == "MODIFIED" and ev["object"]["metadata"]["deletionGracePeriodSeconds"] == 10
    # the status can still be written while terminating; spec stays
    st, body, _ = await client.req("PATCH", f"{PODS}/g/status", {"status": {"phase": "Succeeded"}}, ctype=SMP)
    assert st == 200 and body["metadata"]["deletionTimestamp"]
    assert (await next_event(w))["type"] == "MODIFIED"
    # the final delete (grace 0, uid precondition) removes it
    st, body, _ = await client.req("DELETE", f"{PODS}/g", {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
    assert st == 200
    types = [(await next_event(w))["type"], (await next_event(w))["type"]]
    assert types == ["MODIFIED", "DELETED"]
    st, body, _ = await client.req("GET", f"{PODS}/g")
    assert st == 404
    # an unscheduled pod goes at once
    await client.req("POST", PODS, pod("u"))
    st, body, _ = await client.req("DELETE", f"{PODS}/u")
    assert st == 200 and body["metadata"]["deletionGracePeriodSeconds"] == 0
    st, _, _ = await client.req("GET", f"{PODS}/u")
    assert st == 404
    w.close()


async def test_finalizers_hold_deletion(client: Client) -> None:
    base = "/api/v1/namespaces/default/configmaps"
    await client.req("POST", base, {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    st, body, _ = await client.req("DELETE", f"{base}/f")
    assert st == 200 and body["metadata"]["deletionTimestamp"] and body["metadata"]["deletionGracePeriodSeconds"] == 0
    st, body, _ = await client.req("PATCH", f"{base}/f", {"metadata": {"finalizers": None}}, ctype=MERGE)
    assert st == 200
    st, _, _ = await client.req("GET", f"{base}/f")
    assert st == 404


# ---- authentication, authorization, tokens ----------------------------------------------------

async def test_unauthenticated_and_forbidden(apiserver: APIServerDouble, client: Client, tmp_path: Path) -> None:
    for token in (None, "wrong"):
        anon = Client(apiserver, token=token)
        st, body, _ = await anon.req("GET", PODS)
        await anon.close()
        assert (st, body) == (401, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    apiserver.deny("system:nodes", "get", "pods")
    apiserver.deny("system:node:node1", "update", "leases")
    apiserver.deny("admin", "patch", "nodes", "status")
    cfg = yaml.safe_load(apiserver.kubeconfig(tmp_path / "kc").read_text())
    assert cfg["current-context"] == "double" and cfg["clusters"][0]["cluster"]["server"] == apiserver.url
    node = Client(apiserver, token=cfg["users"][0]["user"]["token"])
    st, body, _ = await node.req("GET", f"{PODS}/x")
    assert_status(body, 403, "Forbidden", 'pods "x" is forbidden: User "system:node:node1" cannot get resource '
                  '"pods" in API group "" in the namespace "default"')
    assert body["details"] == {"name": "x", "kind": "pods"}
    st, body, _ = await node.req("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1", {})
    assert_status(body, 403, "Forbidden", 'leases.coordination.k8s.io "node1" is forbidden: User "system:node:node1" '
                  'cannot update resource "leases" in API group "coordination.k8s.io" in the namespace '
                  '"kube-node-lease"')
    st, body, _ = await node.req("GET", PODS)  # list is not denied
    assert st == 200
    await node.close()
    st, body, _ = await client.req("PATCH", "/api/v1/nodes/n1/status", {}, ctype=MERGE)
    assert body["message"] == ('nodes "n1" is forbidden: User "admin" cannot patch resource "nodes/status" in API '
                               'group "" at the cluster scope')
    # client certificates: CN is the user, O the groups
    cert_cfg = yaml.safe_load(apiserver.kubeconfig(tmp_path / "kc-cert", user="system:node:node2",
                                                   groups=("system:nodes",), auth="cert").read_text())
    u = cert_cfg["users"][0]["user"]
    viacert = Client(apiserver, token=None, cert=(u["client-certificate"], u["client-key"]))
    st, body, _ = await viacert.req("GET", f"{PODS}/x")
    assert st == 403 and 'User "system:node:node2"' in body["message"]  # denied through the system:nodes group
    await viacert.close()
    apiserver.allow_all()
    st, body, _ = await client.req("PATCH", "/api/v1/nodes/n1/status", {}, ctype=MERGE)
    assert st == 404
    users = {r.user for r in apiserver.requests}
    assert {"admin", "system:node:node1", "system:node:node2", ""} <= users
    rec = [r for r in apiserver.requests if r.method == "PATCH"][-1]
    assert rec.path == "/api/v1/nodes/n1/status" and rec.status == 404 and rec.content_type == MERGE


async def test_token_request_and_review(client: Client) -> None:
    sa_path = "/api/v1/namespaces/default/serviceaccounts/default/token"
    st, body, _ = await client.req("POST", sa_path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                                     "spec": {"expirationSeconds": 60}})
    assert_status(body, 422, "Invalid", 'TokenRequest.authentication.k8s.io "default" is invalid: '
                  'spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes')
    st, body, _ = await client.req("POST", sa_path, {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                                                  "name": "ghost"}}})
    assert_status(body, 404, "NotFound", 'pods "ghost" not found')
    st, p, _ = await client.req("POST", PODS, pod("tp", nodeName="node1"))
    st, tr, _ = await client.req("POST", sa_path, {"spec": {"audiences": ["api", "vault"], "expirationSeconds": 3607,
                                                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                                               "name": "tp",
                                                                               "uid": p["metadata"]["uid"]}}})
    assert st == 201 and tr["kind"] == "TokenRequest" and tr["status"]["expirationTimestamp"].endswith("Z")
    token = tr["status"]["token"]
    assert token.count(".") == 2
    review = "/apis/authentication.k8s.io/v1/tokenreviews"
    st, rv, _ = await client.req("POST", review, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                                  "spec": {"token": token, "audiences": ["vault"]}})
    assert st == 201 and rv["status"]["authenticated"] is True and rv["status"]["audiences"] == ["vault"]
    user = rv["status"]["user"]
    assert user["username"] == "system:serviceaccount:default:default"
    assert user["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["tp"]
    st, rv, _ = await client.req("POST", review, {"spec": {"token": token, "audiences": ["other"]}})
    assert "authenticated" not in rv["status"] and rv["status"]["error"]
    st, rv, _ = await client.req("POST", review, {"spec": {"token": "admin-token"}})
    assert rv["status"]["user"]["username"] == "admin"
    st, body, _ = await client.req("POST", review, {"spec": {}})
    assert_status(body, 400, "BadRequest", "token is required for TokenReview in authentication")
    # the token authenticates requests until its pod is gone
    sa = Client(client.srv, token=token)
    st, _, _ = await sa.req("GET", PODS)
    assert st == 200
    await client.req("DELETE", f"{PODS}/tp", {"gracePeriodSeconds": 0})
    st, _, _ = await sa.req("GET", PODS)
    assert st == 401
    await sa.close()


async def test_subject_access_review(apiserver: APIServerDouble, client: Client) -> None:
    apiserver.deny("system:nodes", "delete", "pods")
    sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    ask = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"user": "system:node:n", "groups": ["system:nodes"],
                    "resourceAttributes": {"namespace": "default", "verb": "delete", "resource": "pods"}}}
    st, body, _ = await client.req("POST", sar, ask)
    assert st == 201 and body["status"] == {"allowed": False}
    ask["spec"]["resourceAttributes"]["verb"] = "get"
    st, body, _ = await client.req("POST", sar, ask)
    assert body["status"] == {"allowed": True}
    st, body, _ = await client.req("POST", sar, {"spec": {"user": "x"}})
    assert st == 422 and body["details"]["causes"][0]["field"] == "spec.resourceAttributes"


# ---- outage, field validation, other kinds, discovery ------------------------------------------

async def test_pause_resume(apiserver: APIServerDouble, client: Client) -> None:
    await client.req("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "kept"}})
    w = await client.watch(PODS, {})
    port = apiserver.port
    apiserver.pause()
    with pytest.raises(aiohttp.ClientPayloadError):  # the open watch ended abruptly, mid chunked stream
        await asyncio.wait_for(w.content.read(), 5)
    with pytest.raises(aiohttp.ClientConnectorError):
        await client.req("GET", PODS)
    apiserver.resume()
    assert apiserver.port == port
    st, body, _ = await client.req("GET", "/api/v1/namespaces/default/configmaps/kept")
    assert st == 200
    w.close()


async def test_field_validation(client: Client) -> None:
    body = pod("fv")
    body["spec"]["bogus"] = 1
    body["spec"]["containers"][0]["imagePulPolicy"] = "Never"
    st, out, headers = await client.req("POST", PODS, body, params={"fieldValidation": "Strict"})
    assert_status(out, 400, "BadRequest", 'Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
                  'unknown field "spec.containers[0].imagePulPolicy", unknown field "spec.bogus"')
    st, out, headers = await client.req("POST", PODS, body)
    assert st == 201 and "bogus" not in out["spec"]
    assert headers.getall("Warning") == ['299 - "unknown field \\"spec.containers[0].imagePulPolicy\\""',
                                         '299 - "unknown field \\"spec.bogus\\""']
    st, out, headers = await client.req("PATCH", f"{PODS}/fv", {"metadata": {"extra": 1}}, ctype=MERGE,
                                        params={"fieldValidation": "Strict"})
    assert st == 400 and "unknown field \"metadata.extra\"" in out["message"]


async def test_node_lease_event_validation(client: Client) -> None:
    st, body, _ = await client.req("POST", "/api/v1/nodes", {"metadata": {"name": "n1"}, "spec": {"taints": [
        {"key": "k", "effect": "Sometimes"}]}, "status": {"capacity": {"cpu": "-1"}}})
    assert st == 422
    # allocatable is defaulted from capacity, so it is invalid too
    assert {c["field"] for c in body["details"]["causes"]} == {"spec.taints[0].effect", "status.capacity[cpu]",
                                                                "status.allocatable[cpu]"}
    st, body, _ = await client.req("POST", "/api/v1/nodes", {"metadata": {"name": "n1"},
                                                             "status": {"capacity": {"memory": "4 GB"}}})
    assert st == 400 and "quantities must match" in body["message"]
    leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    st, body, _ = await client.req("POST", leases, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                                    "metadata": {"name": "n1"},
                                                    "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 0}})
    assert_status(body, 422, "Invalid", 'Lease.coordination.k8s.io "n1" is invalid: spec.leaseDurationSeconds: '
                  'Invalid value: 0: must be greater than 0')
    assert body["details"]["group"] == "coordination.k8s.io"
    st, lease, _ = await client.req("POST", leases, {"metadata": {"name": "n1"}, "spec": {
        "holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2024-05-01T10:00:00.123456789Z"}})
    assert st == 201 and lease["spec"]["renewTime"] == "2024-05-01T10:00:00.123456Z"
    st, body, _ = await client.req("PUT", f"{leases}/n1", {**lease, "spec": {**lease["spec"],
                                                                             "renewTime": "yesterday"}})
    assert st == 400
    events = "/api/v1/namespaces/default/events"
    ev = {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "namespace": "other", "name": "p"},
          "reason": "Started", "type": "Normal", "count": 1, "source": {"component": "kubelet"}}
    st, body, _ = await client.req("POST", events, ev)
    assert st == 422 and body["details"]["causes"][0] == {
        "reason": "FieldValueInvalid", "message": 'Invalid value: "other": does not match event.namespace',
        "field": "involvedObject.namespace"}
    ev["involvedObject"]["namespace"] = "default"
    st, body, _ = await client.req("POST", events, ev)
    assert st == 201
    st, body, _ = await client.req("GET", events, params={"fieldSelector": "involvedObject.name=p,reason=Started"})
    assert [e["metadata"]["name"] for e in body["items"]] == ["e1"]


async def test_discovery(client: Client) -> None:
    st, body, _ = await client.req("GET", "/api")
    assert body["kind"] == "APIVersions" and body["versions"] == ["v1"]
    st, body, _ = await client.req("GET", "/api/v1")
    names = {r["name"]: r for r in body["resources"]}
    assert {"pods", "pods/status", "nodes", "nodes/status", "serviceaccounts/token", "events"} <= set(names)
    assert names["pods"]["namespaced"] and "watch" in names["pods"]["verbs"]
    st, body, _ = await client.req("GET", "/apis")
    assert {g["name"] for g in body["groups"]} == {"coordination.k8s.io", "authentication.k8s.io",
                                                   "authorization.k8s.io"}
    st, body, _ = await client.req("GET", "/apis/coordination.k8s.io/v1")
    assert body["resources"][0]["name"] == "leases" and body["resources"][0]["kind"] == "Lease"
    st, body, _ = await client.req("GET", "/version")
    assert body["major"] == "1"
    st, body, _ = await client.req("GET", "/healthz")
    assert (st, body) == (200, "ok")


async def test_node_addresses_patch_and_names_named_like_resources(client: Client) -> None:
    st, node, _ = await client.req("POST", "/api/v1/nodes", {"metadata": {"name": "nodes"}, "status": {}})
    assert st == 201
    addrs = [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "InternalIP", "address": "10.0.0.2"},
             {"type": "Hostname", "address": "nodes"}]
    st, n1, _ = await client.req("PATCH", "/api/v1/nodes/nodes/status", {"status": {"addresses": addrs}}, ctype=SMP)
    assert n1["status"]["addresses"] == addrs
    # addresses merge by type: a plain patch collapses onto the first InternalIP (the known API quirk) ...
    st, n2, _ = await client.req("PATCH", "/api/v1/nodes/nodes/status", {"status": {"addresses": [
        {"type": "InternalIP", "address": "10.0.0.9"}]}}, ctype=SMP)
    assert [a["address"] for a in n2["status"]["addresses"]] == ["10.0.0.9", "10.0.0.2", "nodes"]
    # ... which is why the kubelet sends them with $patch: replace
    st, n3, _ = await client.req("PATCH", "/api/v1/nodes/nodes/status", {"status": {"addresses": [
        {"type": "InternalIP", "address": "10.0.0.3"}, {"$patch": "replace"}]}}, ctype=SMP)
    assert n3["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.3"}]
    st, body, _ = await client.req("GET", "/api/v1/nodes/nodes")
    assert st == 200 and body["metadata"]["name"] == "nodes"


async def test_watch_send_initial_events(client: Client) -> None:
    await client.req("POST", PODS, pod("i1"))
    w = await client.watch(PODS, {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                                  "allowWatchBookmarks": "true", "resourceVersion": ""})
    ev = await next_event(w)
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "i1"
    ev = await next_event(w)
    assert ev["type"] == "BOOKMARK"
    assert ev["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    w.close()
    st, body, _ = await client.req("GET", PODS, params={"watch": "true", "sendInitialEvents": "true"})
    assert st == 422 and body["details"]["kind"] == "ListOptions"


async def test_quantities_are_canonical(client: Client) -> None:
    body = pod("qty")
    body["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2000m", "memory": "1.5Gi"},
                                                  "requests": {"cpu": "0.5"}}
    st, created, _ = await client.req("POST", PODS, body)
    assert st == 201
    res = created["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"cpu": "2", "memory": "1536Mi"}, "requests": {"cpu": "500m", "memory": "1536Mi"}}
    assert created["status"]["qosClass"] == "Burstable"
    st, node, _ = await client.req("POST", "/api/v1/nodes", {"metadata": {"name": "qn"}, "status": {
        "capacity": {"cpu": "4", "memory": "4194304Ki", "pods": "110", "ephemeral-storage": "1000"}}})
    assert node["status"]["capacity"] == {"cpu": "4", "memory": "4Gi", "pods": "110", "ephemeral-storage": "1k"}
    st, body, _ = await client.req("POST", "/api/v1/nodes", {"metadata": {"name": "qn2"}, "status": {
        "capacity": {"memory": "4K"}}})
    assert st == 400 and "unable to parse quantity's suffix" in body["message"]
    # a GET at a resourceVersion the store has not reached waits, then 504
    st, body, _ = await client.req("GET", "/api/v1/nodes/qn", params={"resourceVersion": "999999"})
    assert_status(body, 504, "Timeout")
    assert body["message"].startswith("Too large resource version: 999999, current: ")


async def test_json_types_are_checked(client: Client) -> None:
    body = pod("types")
    body["spec"]["terminationGracePeriodSeconds"] = "30"
    st, out, _ = await client.req("POST", PODS, body)
    assert_status(out, 400, "BadRequest", 'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal '
                  'string into Go struct field Pod.spec.terminationGracePeriodSeconds of type int64')
    body = pod("types")
    body["metadata"]["labels"] = {"a": 1}
    st, out, _ = await client.req("POST", PODS, body)
    assert st == 400 and "metadata.labels of type string" in out["message"]
    body = pod("types", nodeName=None)
    st, out, _ = await client.req("POST", PODS, body)
    assert st == 201 and "nodeName" not in out["spec"]  # null decodes to the zero value
