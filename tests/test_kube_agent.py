"""The agent with an API server (issue 7): a real `nodeagent run` process,
real containerd, and the strict API server double over HTTPS."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent.devenv.env import DevEnv
from tests.agentproc import NODE_NAME, AgentProcess, pod_manifest
from tests.polling import wait_for

TERM_OK = "trap 'exit 0' TERM; while true; do sleep 1; done"


def api_pod(name: str, image: str, command: list[str], *, restart_policy: str = "Always",
            grace: int = 5, node: str = NODE_NAME) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
            "spec": {"nodeName": node, "restartPolicy": restart_policy, "terminationGracePeriodSeconds": grace,
                     "containers": [{"name": "main", "image": image, "command": command}]}}


class ClusterAgent(AgentProcess):
    def __init__(self, env: DevEnv, workdir: Path, apiserver: Any, *extra: str, user: str = "") -> None:
        self.apiserver = apiserver
        self.kubeconfig = apiserver.kubeconfig(workdir / "kubeconfig", user=user or f"system:node:{NODE_NAME}")
        super().__init__(env, workdir, "--kubeconfig", str(self.kubeconfig), *extra)

    def api_pod(self, name: str) -> dict[str, Any] | None:
        return self.apiserver.get("v1", "Pod", "default", name)

    async def wait_api(self, name: str, predicate, timeout: float = 60.0, what: str = "") -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            pod = self.api_pod(name)
            return pod if pod is not None and predicate(pod) else None
        try:
            return await wait_for(check, timeout, 0.2, what or f"API pod {name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nAPI pod: {json.dumps(self.api_pod(name), indent=1)[:3000]}\n"
                                 f"--- agent log ---\n{self.log_tail(60)}") from None

    def node_report(self) -> dict[str, Any]:
        return self.get_json("/nodeagent/node")


def api_running(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    return status.get("phase") == "Running" and bool(statuses) and all("running" in c["state"] for c in statuses)


@pytest.fixture
def cluster_agent(devenv: DevEnv, apiserver, tmp_path: Path) -> Iterator[ClusterAgent]:
    agent = ClusterAgent(devenv, tmp_path, apiserver, "--node-labels", "example.com/tier=edge",
                         "--register-with-taints", "dedicated=infra:NoSchedule")
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()
        devenv.reset(tmp_path)


def lease_renewals(apiserver) -> list[float]:
    return [r.time for r in apiserver.requests
            if r.method in ("PUT", "POST") and "/leases" in r.path and r.status < 300]


async def test_node_lease_pod_lifecycle_and_mirror(cluster_agent: ClusterAgent, apiserver, devenv: DevEnv,
                                                   cri) -> None:
    """Node with all fields, the Lease every 10 s over 60 s, a bound pod run and
    reported, a graceful delete finished by the agent, and a static pod's mirror."""
    agent = cluster_agent
    started = time.monotonic()
    node = await wait_for(lambda: apiserver.get("v1", "Node", None, NODE_NAME), 30, 0.2, "node registered")
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == NODE_NAME and labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] and labels["example.com/tier"] == "edge"
    assert node["spec"]["taints"] == [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]

    def reported(n: dict[str, Any] | None) -> dict[str, Any] | None:
        return n if n and any(c["type"] == "Ready" for c in n.get("status", {}).get("conditions", [])) else None
    node = await wait_for(lambda: reported(apiserver.get("v1", "Node", None, NODE_NAME)), 30, 0.2, "node status")
    status = node["status"]
    for resource in ("cpu", "memory", "pods", "ephemeral-storage"):
        assert resource in status["capacity"] and resource in status["allocatable"]
    assert status["capacity"]["pods"] == "110" and "hugepages-2Mi" in status["capacity"]
    assert [c["type"] for c in status["conditions"]][-1] == "Ready"
    ready = status["conditions"][-1]
    assert (ready["status"], ready["reason"], ready["message"]) == ("True", "KubeletReady",
                                                                   "kubelet is posting ready status")
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert {"type": "Hostname", "address": NODE_NAME} in status["addresses"]
    info = status["nodeInfo"]
    assert info["bootID"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert info["machineID"] == Path("/etc/machine-id").read_text().strip()
    assert info["kernelVersion"] == os.uname().release and info["osImage"] and info["systemUUID"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert info["operatingSystem"] == "linux" and info["kubeletVersion"].startswith("v1.")
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == agent.port

    lease = await wait_for(lambda: apiserver.get("coordination.k8s.io/v1", "Lease", "kube-node-lease", NODE_NAME),
                           15, 0.1, "lease created")
    assert lease["spec"]["holderIdentity"] == NODE_NAME and lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]

    # A pod bound to the node runs and its status reaches the API.
    apiserver.create(api_pod("web", devenv.busybox, ["sh", "-c", TERM_OK], grace=20))
    pod = await agent.wait_api("web", api_running, what="web Running in the API")
    st = pod["status"]
    assert st["hostIP"] == "127.0.0.1" and st["podIP"] and st["qosClass"] == "BestEffort"
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    assert st["containerStatuses"][0]["containerID"].startswith("containerd://")
    uid = pod["metadata"]["uid"]

    # Graceful delete: the agent stops it (SIGTERM -> exit 0), reports, then deletes it for good.
    apiserver.delete("v1", "Pod", "default", "web", grace_period_seconds=20)
    assert apiserver.get("v1", "Pod", "default", "web")["metadata"]["deletionTimestamp"]
    await wait_for(lambda: apiserver.get("v1", "Pod", "default", "web") is None, 30, 0.2, "web deleted")
    patches = [r for r in apiserver.requests if r.path.endswith("/pods/web/status") and r.method == "PATCH"]
    assert patches and all(r.content_type == "application/strategic-merge-patch+json" for r in patches)
    final = [r for r in apiserver.requests if r.path.endswith("/pods/web") and r.method == "DELETE"
             and r.user == f"system:node:{NODE_NAME}"]
    assert final, "the agent deleted the pod after terminating it"
    assert not await sandboxes_of(cri, uid), "web's sandbox removed before the final delete"

    # A static pod gets a mirror pod owned by the Node.
    agent.write_manifest("static.yaml", pod_manifest("static", devenv.busybox, ["sleep", "3600"]))
    mirror = await agent.wait_api(f"static-{NODE_NAME}", api_running, what="mirror pod Running")
    assert "kubernetes.io/config.mirror" in mirror["metadata"]["annotations"]
    owner = mirror["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", NODE_NAME, node["metadata"]["uid"])
    agent.remove_manifest("static.yaml")
    await wait_for(lambda: agent.api_pod(f"static-{NODE_NAME}") is None, 30, 0.2, "mirror removed")

    # The Lease: renewed every 10 s, observed over 60 s.
    await asyncio.sleep(max(0.0, 62 - (time.monotonic() - started)))
    images = apiserver.get("v1", "Node", None, NODE_NAME)["status"]["images"]  # the 30 s image list
    assert any(devenv.busybox in image["names"] for image in images), images
    assert all(image["sizeBytes"] > 0 and len(image["names"]) <= 5 for image in images)
    renewals = lease_renewals(apiserver)
    gaps = [b - a for a, b in zip(renewals, renewals[1:])]
    assert len(renewals) >= 6, renewals
    assert all(8.0 <= g <= 13.0 for g in gaps), gaps


async def sandboxes_of(cri, uid: str) -> list[str]:
    return [s.id for s in await cri.list_pod_sandbox() if s.labels.get("io.kubernetes.pod.uid") == uid]


def ready_condition(apiserver) -> dict[str, Any]:
    node = apiserver.get("v1", "Node", None, NODE_NAME) or {}
    conditions = node.get("status", {}).get("conditions") or [{}]
    return conditions[-1]


async def test_ready_follows_the_runtime(devenv: DevEnv, apiserver, tmp_path: Path) -> None:
    agent = ClusterAgent(devenv, tmp_path, apiserver, "--node-status-update-frequency", "1s")
    agent.start()
    try:
        await wait_for(lambda: ready_condition(apiserver).get("status") == "True", 30, 0.2, "Ready=True")
        devenv.containerd.stop()
        try:
            cond = await wait_for(lambda: (c := ready_condition(apiserver)).get("status") == "False" and c,
                                  60, 0.2, "Ready=False with the runtime stopped")
        finally:
            devenv.containerd.start()
        assert cond["reason"] == "KubeletNotReady" and "container runtime is down" in cond["message"]
        await wait_for(lambda: ready_condition(apiserver).get("status") == "True", 60, 0.2, "Ready=True again")
        events = apiserver.list("v1", "Event", "default")
        reasons = {e["reason"] for e in events if e["involvedObject"].get("kind") == "Node"}
        assert {"NodeNotReady", "NodeReady"} <= reasons
    finally:
        agent.stop()
        devenv.reset(tmp_path)


async def container_ids(cri, uids: set[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for c in await cri.list_containers():
        uid = c.labels.get("io.kubernetes.pod.uid")
        if uid in uids:
            out.setdefault(uid, []).append(c.id)
    return {uid: tuple(sorted(ids)) for uid, ids in out.items()}


async def test_gone_mid_watch_relists_without_restarts(cluster_agent: ClusterAgent, apiserver,
                                                       devenv: DevEnv, cri) -> None:
    agent = cluster_agent
    for name in ("a", "b"):
        apiserver.create(api_pod(name, devenv.busybox, ["sleep", "3600"], grace=0))
    pods = [await agent.wait_api(n, api_running) for n in ("a", "b")]
    uids = {p["metadata"]["uid"] for p in pods}
    before = await container_ids(cri, uids)
    relists = agent.node_report()["apiServer"]["podRelists"]
    apiserver.compact()  # the open watch gets 410 Gone
    await wait_for(lambda: agent.node_report()["apiServer"]["podRelists"] > relists, 20, 0.2, "relist after 410")
    apiserver.create(api_pod("c", devenv.busybox, ["sleep", "3600"], grace=0))  # the new watch works
    await agent.wait_api("c", api_running)
    assert await container_ids(cri, uids) == before
    for p in pods:
        assert agent.api_pod(p["metadata"]["name"])["status"]["containerStatuses"][0]["restartCount"] == 0


def local_phase(agent: AgentProcess, name: str) -> str:
    pods = agent.get_json("/pods")["items"]
    return next((p["status"].get("phase", "") for p in pods if p["metadata"]["name"] == name), "")


async def test_api_outage_keeps_pods_and_converges(cluster_agent: ClusterAgent, apiserver, devenv: DevEnv,
                                                  cri) -> None:
    """60 s without the API server, 10 pods: none restarted, local API served,
    a change made during the outage reported after it."""
    agent = cluster_agent
    waiter = "while [ ! -f /tmp/done ]; do sleep 0.2; done; exit 3"
    apiserver.create(api_pod("p0", devenv.busybox, ["sh", "-c", waiter], restart_policy="Never", grace=0))
    for i in range(1, 10):
        apiserver.create(api_pod(f"p{i}", devenv.busybox, ["sleep", "3600"], grace=0))
    pods = [await agent.wait_api(f"p{i}", api_running, timeout=120) for i in range(10)]
    uids = {p["metadata"]["uid"] for p in pods}
    before = await container_ids(cri, uids)
    apiserver.pause()
    try:
        await asyncio.sleep(5)
        local = {p["metadata"]["name"]: p for p in await agent.pods()}
        assert all(local[f"p{i}"]["status"]["phase"] == "Running" for i in range(10))
        p0 = before[pods[0]["metadata"]["uid"]][0]
        await cri.exec_sync(p0, ["touch", "/tmp/done"], timeout=10)
        await wait_for(lambda: local_phase(agent, "p0") == "Failed", 30, 0.2, "p0 Failed on the local API")
        await asyncio.sleep(55)
        assert agent.process.poll() is None
        assert agent.node_report()["apiServer"]["connected"] is False
    finally:
        apiserver.resume()
    done = await agent.wait_api("p0", lambda p: p["status"].get("phase") == "Failed", timeout=60,
                                what="p0 Failed after reconnect")
    term = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    after = await container_ids(cri, uids)
    assert after == before
    for i in range(1, 10):
        st = agent.api_pod(f"p{i}")["status"]
        assert st["phase"] == "Running" and st["containerStatuses"][0]["restartCount"] == 0
    await wait_for(lambda: agent.node_report()["apiServer"]["connected"], 30, 0.2, "reconnected")


async def test_denied_permission_is_reported(devenv: DevEnv, apiserver, tmp_path: Path) -> None:
    agent = ClusterAgent(devenv, tmp_path, apiserver, "--node-status-update-frequency", "1s")
    agent.start()
    try:
        await denied_permission_is_reported(agent, apiserver)
    finally:
        agent.stop()
        devenv.reset(tmp_path)


async def denied_permission_is_reported(agent: ClusterAgent, apiserver) -> None:
    await wait_for(lambda: agent.node_report()["apiServer"]["nodeRegistered"], 30, 0.2, "registered")
    apiserver.deny(f"system:node:{NODE_NAME}", "patch", "nodes", "status")
    try:
        report = await wait_for(lambda: (r := agent.node_report()["apiServer"])["lastError"] and r, 30, 0.2,
                                "the 403 reported")
    finally:
        apiserver.allow_all()
    assert "permission missing (403 Forbidden)" in report["lastError"]
    assert 'cannot patch resource "nodes/status"' in report["lastError"]
    errors = [line for line in agent.log_lines() if line.get("level") == "error"
              and "permission missing" in str(line.get("error"))]
    assert len(errors) == 1, "reported once, not on every retry"


async def test_bad_credentials_are_reported(devenv: DevEnv, apiserver, tmp_path: Path) -> None:
    agent = ClusterAgent(devenv, tmp_path, apiserver)
    doc = yaml.safe_load(agent.kubeconfig.read_text())
    doc["users"][0]["user"]["token"] = "not-a-token"
    agent.kubeconfig.write_text(yaml.safe_dump(doc))
    agent.start()
    try:
        report = await wait_for(lambda: (r := agent.node_report()["apiServer"])["lastError"] and r, 30, 0.2,
                                "401 reported")
        assert "401 Unauthorized" in report["lastError"] and "kubeconfig" in report["lastError"]
        assert report["nodeRegistered"] is False and agent.process.poll() is None
    finally:
        agent.stop()
        devenv.reset(tmp_path)


def test_bad_kubeconfig_stops_at_start(devenv: DevEnv, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    agent = AgentProcess(devenv, tmp_path, "--kubeconfig", str(missing))
    result = subprocess.run(agent.command(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"cannot read kubeconfig {missing}" in result.stderr and "Traceback" not in result.stderr


async def test_kubelet_api_webhook_auth(cluster_agent: ClusterAgent, apiserver, tmp_path: Path) -> None:
    """:10250 with an API server: bearer tokens via TokenReview, every request
    via SubjectAccessReview (nodes/<subresource>), answers cached."""
    from tests.test_kubelet_api import Api
    api = Api(cluster_agent, tmp_path)
    apiserver.add_token("tok-alice", "alice", groups=("devs",))
    apiserver.add_token("tok-bob", "bob", groups=("devs",))
    apiserver.deny("bob", "get", "nodes", "metrics")
    status, body = await api.aget("/pods", token="tok-alice")
    assert status == 200 and json.loads(body)["kind"] == "PodList"
    assert (await api.aget("/metrics", token="tok-bob"))[0] == 403
    assert (await api.aget("/pods", token="tok-bob"))[0] == 200
    assert (await api.aget("/pods", token="unknown"))[0] == 401
    reviews = [r for r in apiserver.requests if r.path.endswith("/tokenreviews")]
    sars = [r for r in apiserver.requests if r.path.endswith("/subjectaccessreviews")]
    assert len(reviews) == 3 and len(sars) == 3
    assert (await api.aget("/pods", token="tok-alice"))[0] == 200  # both answers cached
    assert len([r for r in apiserver.requests if r.path.endswith("/tokenreviews")]) == 3
    assert len([r for r in apiserver.requests if r.path.endswith("/subjectaccessreviews")]) == 3


async def test_config_data_from_the_api_server(cluster_agent: ClusterAgent, apiserver, devenv: DevEnv,
                                               cri) -> None:
    """configMap and secret volumes, env from both and a kube-api-access style
    projected volume, for a pod from the API server; updates reach the running
    container; secret files are 0400 on tmpfs."""
    import base64
    agent = cluster_agent
    apiserver.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app", "namespace": "default"},
                      "data": {"greeting": "hello", "mode": "blue"}})
    apiserver.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"},
                      "data": {"password": base64.b64encode(b"s3cret").decode()}})
    root_ca = apiserver.get("v1", "ConfigMap", "default", "kube-root-ca.crt")["data"]["ca.crt"]  # the publisher's
    spec = api_pod("cfg", devenv.busybox, ["sleep", "3600"], grace=0)
    spec["spec"]["volumes"] = [
        {"name": "config", "configMap": {"name": "app"}},
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {"name": "kube-api-access", "projected": {"defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                         "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]
    spec["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "config", "mountPath": "/etc/app"}, {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    spec["spec"]["containers"][0]["env"] = [
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}]
    apiserver.create(spec)
    pod = await agent.wait_api("cfg", api_running)
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://")[1]

    async def sh(command: str) -> str:
        result = await cri.exec_sync(cid, ["sh", "-c", command], timeout=10)
        assert result.exit_code == 0, result.stderr
        return result.stdout.decode()

    assert await sh("cat /etc/app/greeting") == "hello"
    assert await sh("cat /etc/creds/password") == "s3cret"
    assert await sh('echo "$GREETING $PASSWORD"') == "hello s3cret\n"
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert await sh(f"cat {sa}/namespace") == "default"
    assert await sh(f"cat {sa}/ca.crt") == root_ca
    token = await sh(f"cat {sa}/token")
    review = [r for r in apiserver.requests if r.path.endswith("/serviceaccounts/default/token")]
    assert token.count(".") == 2 and review and review[-1].user == f"system:node:{NODE_NAME}"

    # On the host: the secret volume is tmpfs, its file 0400.
    uid = pod["metadata"]["uid"]
    secret_dir = agent.root_dir / "pods" / uid / "volumes" / "kubernetes.io~secret" / "creds"
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    assert any(f" {secret_dir} " in line and " - tmpfs " in line for line in mounts)
    assert (secret_dir / "password").stat().st_mode & 0o777 == 0o400

    # The object changes; the running container sees it (same container, no restart).
    cm = apiserver.get("v1", "ConfigMap", "default", "app")
    cm["data"]["greeting"] = "bonjour"
    apiserver.update(cm)
    await wait_for(lambda: (secret_dir.parent.parent / "kubernetes.io~configmap" / "config" / "greeting")
                   .read_text() == "bonjour", 30, 0.2, "configMap update written")
    assert await sh("cat /etc/app/greeting") == "bonjour"
    assert agent.api_pod("cfg")["status"]["containerStatuses"][0]["restartCount"] == 0


async def test_pod_events_reach_the_api(cluster_agent: ClusterAgent, apiserver, devenv: DevEnv) -> None:
    """The kubelet's pod events, posted with the right involved object; a
    crash-looping container's BackOff events are aggregated, not repeated."""
    agent = cluster_agent
    apiserver.create(api_pod("ok", devenv.busybox, ["sleep", "3600"], grace=0))
    apiserver.create(api_pod("crash", devenv.busybox, ["sh", "-c", "exit 1"], grace=0))
    apiserver.create(api_pod("noimage", "127.0.0.1:1/missing:v1", ["true"], grace=0))
    await agent.wait_api("ok", api_running)

    def events_of(name: str) -> dict[str, dict[str, Any]]:
        return {e["reason"]: e for e in apiserver.list("v1", "Event", "default")
                if e["involvedObject"].get("name") == name}

    def having(name: str, reasons: set[str]) -> dict[str, dict[str, Any]] | None:
        found = events_of(name)
        return found if reasons <= set(found) else None

    ok = await wait_for(lambda: having("ok", {"Pulled", "Created", "Started"}), 30, 0.2, "ok's events")
    started = ok["Started"]
    assert started["involvedObject"]["fieldPath"] == "spec.containers{main}"
    assert started["involvedObject"]["uid"] == agent.api_pod("ok")["metadata"]["uid"]
    assert started["source"] == {"component": "kubelet", "host": NODE_NAME}
    assert started["message"] == "Started container main" and started["type"] == "Normal"
    failed = await wait_for(lambda: having("noimage", {"Pulling", "Failed"}), 30, 0.2, "noimage's events")
    assert failed["Failed"]["type"] == "Warning"
    backoff = await wait_for(lambda: (e := events_of("crash").get("BackOff")) and e.get("count", 1) >= 2 and e,
                             90, 0.5, "crash's BackOff counted")
    assert backoff["message"].startswith("Back-off restarting failed container main in pod crash_default(")
    assert len([e for e in apiserver.list("v1", "Event", "default") if e["reason"] == "BackOff"
                and e["involvedObject"]["name"] == "crash"]) == 1
