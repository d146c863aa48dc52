"""`nodeagent run` with static pods against real containerd, watched from outside:
the read-only /pods JSON, CRI state, files on disk."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import urllib.request
from datetime import datetime
from pathlib import Path

from nodeagent.cri.client import CRIClient
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv.env import DevEnv
from tests.agentproc import NODE_NAME, AgentProcess, container, phase, pod_manifest, running
from tests.polling import wait_for

CONDITION_TYPES = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def sandboxes_of(cri: CRIClient, uid: str) -> list[pb.PodSandbox]:
    return await cri.list_pod_sandbox(pb.PodSandboxFilter(label_selector={"io.kubernetes.pod.uid": uid}))


async def containers_of(cri: CRIClient, uid: str) -> list[pb.Container]:
    return await cri.list_containers(pb.ContainerFilter(label_selector={"io.kubernetes.pod.uid": uid}))


async def test_static_pod_runs_with_kubelet_status_shape(agent: AgentProcess, devenv: DevEnv,
                                                         cri: CRIClient) -> None:
    agent.write_manifest("web.yaml", pod_manifest(
        "web", devenv.busybox, ["sh", "-c", "echo started; exec sleep 3600"],
        container_extra="    resources:\n      limits: {cpu: 100m, memory: 32Mi}\n"))
    pod = await agent.wait_pod("web", running, what="Running")

    meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
    assert meta["name"] == f"web-{NODE_NAME}" and meta["namespace"] == "default"
    uid = meta["uid"]
    assert meta["annotations"]["kubernetes.io/config.source"] == "file"
    assert meta["annotations"]["kubernetes.io/config.hash"] == uid
    assert spec["nodeName"] == NODE_NAME
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"  # defaulted: tag 1.35
    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "100m", "memory": "32Mi"}

    assert status["phase"] == "Running"
    assert status["qosClass"] == "Guaranteed"
    assert status["hostIP"] == "127.0.0.1" and status["hostIPs"] == [{"ip": "127.0.0.1"}]
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(devenv.agent_subnet)
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert RFC3339.match(status["startTime"])
    conditions = {c["type"]: c for c in status["conditions"]}
    assert [c["type"] for c in status["conditions"]] == CONDITION_TYPES
    assert all(c["status"] == "True" for c in conditions.values())
    assert all(c["lastProbeTime"] is None and RFC3339.match(c["lastTransitionTime"])
               for c in conditions.values())

    main = container(pod, "main")
    assert main["ready"] is True and main["started"] is True and main["restartCount"] == 0
    assert main["lastState"] == {}
    assert RFC3339.match(main["state"]["running"]["startedAt"])
    assert main["containerID"].startswith("containerd://")
    assert main["image"].endswith("busybox:1.35")
    assert main["imageID"]

    # The runtime sees what the kubelet would have created.
    [sandbox] = await sandboxes_of(cri, uid)
    assert sandbox.metadata.name == f"web-{NODE_NAME}" and sandbox.metadata.namespace == "default"
    assert sandbox.labels["app"] == "web"
    assert {k: sandbox.labels[k] for k in ("io.kubernetes.pod.name", "io.kubernetes.pod.namespace")} == {
        "io.kubernetes.pod.name": f"web-{NODE_NAME}", "io.kubernetes.pod.namespace": "default"}
    [c] = await containers_of(cri, uid)
    assert c.id == main["containerID"].split("://")[1]
    assert c.labels["io.kubernetes.container.name"] == "main"
    status_resp = await cri.container_status(c.id)
    annotations = status_resp.status.annotations
    assert annotations["io.kubernetes.container.restartCount"] == "0"
    assert annotations["io.kubernetes.container.terminationMessagePath"] == "/dev/termination-log"
    assert annotations["io.kubernetes.container.hash"]

    log_path = agent.logs_dir / f"default_web-{NODE_NAME}_{uid}" / "main" / "0.log"
    assert status_resp.status.log_path == str(log_path)
    # The container writes after it started; the runtime copies the line soon after.
    await wait_for(lambda: re.search(r"^\S+ stdout F started$", log_path.read_text(), re.M),
                   timeout=10, what="the container's first line in its CRI log")

    table = await asyncio.to_thread(_pods_table, agent)
    assert re.search(rf"^default\s+web-{NODE_NAME}\s+1/1\s+Running\s+0\s+\S+\s+{re.escape(status['podIP'])}$",
                     table, re.M), table


def _pods_table(agent: AgentProcess) -> str:
    import subprocess
    from tests.agentproc import NODEAGENT
    result = subprocess.run([NODEAGENT, "pods", "--server", agent.base_url], capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_edit_recreates_and_removal_stops(agent: AgentProcess, devenv: DevEnv,
                                               cri: CRIClient) -> None:
    agent.write_manifest("app.yaml", pod_manifest("app", devenv.busybox, ["sleep", "3600"]))
    first = await agent.wait_pod("app", running)
    old_uid = first["metadata"]["uid"]
    pod_dir = agent.root_dir / "pods" / old_uid
    assert pod_dir.is_dir()

    agent.write_manifest("app.yaml", pod_manifest("app", devenv.busybox, ["sleep", "7200"]))
    second = await agent.wait_pod("app", lambda p: p["metadata"]["uid"] != old_uid and running(p),
                                  what="recreated with a new UID")
    new_uid = second["metadata"]["uid"]
    assert second["spec"]["containers"][0]["command"] == ["sleep", "7200"]
    assert await sandboxes_of(cri, old_uid) == []
    assert not pod_dir.exists()
    assert not (agent.logs_dir / f"default_app-{NODE_NAME}_{old_uid}").exists()
    assert len(await containers_of(cri, new_uid)) == 1

    agent.remove_manifest("app.yaml")
    await agent.wait_gone("app")
    async def no_sandboxes() -> bool:
        return not await sandboxes_of(cri, new_uid)

    await wait_for(no_sandboxes, what="the old pod's sandboxes removed")
    await wait_for(lambda: not (agent.root_dir / "pods" / new_uid).exists(), what="the pod's dir removed")


async def test_termination_uses_grace_period(agent: AgentProcess, devenv: DevEnv, cri: CRIClient) -> None:
    """SIGTERM first; a container that ignores it is killed after the grace period."""
    agent.write_manifest("stubborn.yaml", pod_manifest(
        "stubborn", devenv.busybox, ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"], grace=3))
    pod = await agent.wait_pod("stubborn", running)
    uid = pod["metadata"]["uid"]
    [c] = await containers_of(cri, uid)
    loop = asyncio.get_running_loop()
    started = loop.time()
    agent.remove_manifest("stubborn.yaml")
    while any(x.state == pb.ContainerState.CONTAINER_RUNNING for x in await containers_of(cri, uid)):
        await asyncio.sleep(0.05)
    elapsed = loop.time() - started
    assert 2.5 <= elapsed < 15, f"stopped after {elapsed:.1f}s, grace period was 3s"


async def test_restart_policies_and_exit_reasons(agent: AgentProcess, devenv: DevEnv) -> None:
    agent.write_manifest("never.yaml", pod_manifest("never", devenv.busybox, ["sh", "-c", "exit 3"],
                                                    restart_policy="Never"))
    agent.write_manifest("onfailure.yaml", pod_manifest("onfailure", devenv.busybox, ["true"],
                                                        restart_policy="OnFailure"))
    agent.write_manifest("always.yaml", pod_manifest("always", devenv.busybox, ["true"]))

    never = await agent.wait_pod("never", lambda p: phase(p) == "Failed", what="Failed")
    terminated = container(never, "main")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert container(never, "main")["restartCount"] == 0
    assert {c["type"]: c["status"] for c in never["status"]["conditions"]}["Ready"] == "False"

    done = await agent.wait_pod("onfailure", lambda p: phase(p) == "Succeeded", what="Succeeded")
    terminated = container(done, "main")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    conditions = {c["type"]: c for c in done["status"]["conditions"]}
    assert conditions["Ready"]["reason"] == "PodCompleted"
    assert conditions["Initialized"]["status"] == "True"

    # Always restarts even after exit 0: the first restart is immediate.
    always = await agent.wait_pod("always", lambda p: container(p, "main")["restartCount"] >= 1,
                                  what="restarted")
    assert phase(always) == "Running"
    last = container(always, "main")["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (0, "Completed")


async def test_crashloop_backoff_delays(agent: AgentProcess, devenv: DevEnv, cri: CRIClient) -> None:
    """Restarts at +0 s, +10 s, +20 s after each exit (kubelet CrashLoopBackOff)."""
    agent.write_manifest("crash.yaml", pod_manifest("crash", devenv.busybox,
                                                    ["sh", "-c", "echo boom; exit 1"]))
    pod = await agent.wait_pod(
        "crash", lambda p: container(p, "main")["restartCount"] >= 3, timeout=60, what="3 restarts")
    uid = pod["metadata"]["uid"]
    main = container(pod, "main")
    # Between restarts the status says why it waits, as the kubelet words it.
    waiting = await agent.wait_pod("crash", lambda p: "waiting" in container(p, "main")["state"],
                                   timeout=30, what="waiting in CrashLoopBackOff")
    state = container(waiting, "main")
    assert state["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    delay = "20s" if state["restartCount"] == 2 else "40s"
    assert state["state"]["waiting"]["message"] == (
        f"back-off {delay} restarting failed container=main pod=crash-{NODE_NAME}_default({uid})")
    assert state["lastState"]["terminated"]["exitCode"] == 1
    assert state["lastState"]["terminated"]["reason"] == "Error"
    assert main["restartCount"] >= 3

    # The delays between starts, from the agent's own log (dead instances and
    # their log files are garbage-collected, as the kubelet does).
    starts = {}
    for line in agent.log_lines():
        if line.get("event") == "container started" and line.get("pod") == f"default/crash-{NODE_NAME}":
            starts[line["attempt"]] = datetime.fromisoformat(line["timestamp"]).timestamp()
    assert {0, 1, 2, 3} <= set(starts)
    gap1, gap2, gap3 = (starts[k + 1] - starts[k] for k in range(3))
    assert gap1 < 5, f"first restart should be immediate, took {gap1:.1f}s"
    assert 10 <= gap2 < 15, f"second restart after {gap2:.1f}s, expected 10s back-off"
    assert 20 <= gap3 < 25, f"third restart after {gap3:.1f}s, expected 20s back-off"
    # At most one dead instance per container is kept, and only its log file.
    exited = [c for c in await containers_of(cri, uid) if c.state == pb.ContainerState.CONTAINER_EXITED]
    assert len(exited) <= 1
    log_dir = agent.logs_dir / f"default_crash-{NODE_NAME}_{uid}" / "main"
    assert len(list(log_dir.glob("*.log"))) <= 2  # the running or latest one, and the kept dead one


async def test_init_container_fails_then_succeeds(agent: AgentProcess, devenv: DevEnv) -> None:
    agent.write_manifest("init.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: init}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: work
    emptyDir: {{}}
  initContainers:
  - name: flaky
    image: {devenv.busybox}
    command: [sh, -c, "test -f /work/tried || {{ touch /work/tried; exit 7; }}"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: second
    image: {devenv.busybox}
    command: [sh, -c, "echo ok > /work/second"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: main
    image: {devenv.busybox}
    command: [sh, -c, "cat /work/second; exec sleep 3600"]
    volumeMounts: [{{name: work, mountPath: /work}}]
""")
    pod = await agent.wait_pod("init", running, what="Running after init")
    flaky = container(pod, "flaky", init=True)
    assert flaky["restartCount"] == 1
    assert flaky["state"]["terminated"]["reason"] == "Completed"
    assert flaky["lastState"]["terminated"]["exitCode"] == 7
    second = container(pod, "second", init=True)
    assert second["restartCount"] == 0 and second["state"]["terminated"]["exitCode"] == 0
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Initialized"] == "True"


async def test_failed_init_with_restart_never_fails_the_pod(agent: AgentProcess, devenv: DevEnv,
                                                            cri: CRIClient) -> None:
    agent.write_manifest("badinit.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: badinit}}
spec:
  restartPolicy: Never
  initContainers:
  - {{name: setup, image: {devenv.busybox}, command: [sh, -c, "exit 2"]}}
  containers:
  - {{name: main, image: {devenv.busybox}, command: [sleep, "3600"]}}
""")
    pod = await agent.wait_pod("badinit", lambda p: phase(p) == "Failed", what="Failed")
    assert container(pod, "setup", init=True)["state"]["terminated"]["exitCode"] == 2
    main = container(pod, "main")
    assert main["state"]["waiting"]["reason"] == "PodInitializing"
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conditions["Initialized"]["status"] == "False"
    assert conditions["Initialized"]["reason"] == "ContainersNotInitialized"
    assert conditions["Initialized"]["message"] == "containers with incomplete status: [setup]"
    names = {c.metadata.name for c in await containers_of(cri, pod["metadata"]["uid"])}
    assert names == {"setup"}, "the app container must never be created"


async def test_sidecar_runs_beside_the_app_and_stops_after_it(agent: AgentProcess, devenv: DevEnv,
                                                              cri: CRIClient) -> None:
    agent.write_manifest("job.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: job}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  volumes: [{{name: shared, emptyDir: {{}}}}]
  initContainers:
  - name: sidecar
    image: {devenv.busybox}
    restartPolicy: Always
    command: [sh, -c, "trap 'exit 0' TERM; echo up > /shared/sidecar; while :; do sleep 1; done"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: main
    image: {devenv.busybox}
    command: [sh, -c, "cat /shared/sidecar && sleep 2"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
""")
    both = await agent.wait_pod("job", lambda p: phase(p) == "Running" and "running" in container(p, "main")["state"]
                                and "running" in container(p, "sidecar", init=True)["state"],
                                what="app and sidecar running together")
    assert container(both, "sidecar", init=True)["started"] is True
    done = await agent.wait_pod("job", lambda p: phase(p) == "Succeeded", what="Succeeded")
    assert container(done, "main")["state"]["terminated"]["exitCode"] == 0
    uid = done["metadata"]["uid"]
    async def sidecar_exited() -> bool:
        states = {c.metadata.name: c.state for c in await containers_of(cri, uid)}
        return states.get("sidecar") == pb.ContainerState.CONTAINER_EXITED

    await wait_for(sidecar_exited, what="the sidecar stopping with the pod")


async def test_agent_sigkill_restart_adopts_running_pods(agent: AgentProcess, devenv: DevEnv,
                                                         cri: CRIClient) -> None:
    for i in range(10):
        agent.write_manifest(f"p{i}.yaml", pod_manifest(f"p{i}", devenv.busybox, ["sleep", "3600"]))
    pods = [await agent.wait_pod(f"p{i}", running, timeout=60) for i in range(10)]
    before = {c.id: c.state for c in await cri.list_containers()}
    assert len(before) == 10
    uids = {p["metadata"]["uid"] for p in pods}

    agent.kill()
    assert {c.id: c.state for c in await cri.list_containers()} == before, "pods run on without the agent"
    agent.start()
    again = [await agent.wait_pod(f"p{i}", running, timeout=60) for i in range(10)]
    assert {p["metadata"]["uid"] for p in again} == uids
    assert all(container(p, "main")["restartCount"] == 0 for p in again)
    await asyncio.sleep(1.0)  # give a wrong agent time to restart something
    after = {c.id: c.state for c in await cri.list_containers()}
    assert after == before, "no container may be restarted or added"
    assert len(await cri.list_pod_sandbox()) == 10


async def test_crashloop_state_survives_agent_restart(agent: AgentProcess, devenv: DevEnv) -> None:
    agent.write_manifest("loop.yaml", pod_manifest("loop", devenv.busybox, ["sh", "-c", "exit 1"]))
    pod = await agent.wait_pod("loop", lambda p: container(p, "main")["restartCount"] >= 1
                               and "waiting" in container(p, "main")["state"], timeout=30)
    count = container(pod, "main")["restartCount"]
    message = container(pod, "main")["state"]["waiting"]["message"]
    agent.kill()
    agent.start()
    again = await agent.wait_pod("loop", lambda p: "waiting" in container(p, "main")["state"])
    assert container(again, "main")["restartCount"] == count
    assert container(again, "main")["state"]["waiting"]["message"] == message


async def test_max_pods_admission(devenv: DevEnv, tmp_path: Path) -> None:
    proc = AgentProcess(devenv, tmp_path, "--max-pods", "1")
    proc.write_manifest("a.yaml", pod_manifest("a", devenv.busybox, ["sleep", "3600"]))
    proc.start()
    try:
        await proc.wait_pod("a", running)
        proc.write_manifest("b.yaml", pod_manifest("b", devenv.busybox, ["sleep", "3600"]))
        b = await proc.wait_pod("b", lambda p: phase(p) == "Failed")
        assert b["status"]["reason"] == "OutOfpods"
        assert b["status"]["message"] == \
            "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 1, capacity: 1"
    finally:
        proc.stop()
        devenv.reset(tmp_path)


async def test_resource_admission(agent: AgentProcess, devenv: DevEnv, cri: CRIClient) -> None:
    """Requests beyond what the admitted pods leave of allocatable: OutOf<resource>,
    nothing of the pod runs, the others are unaffected."""
    from nodeagent.api.quantity import Quantity
    allocatable = Quantity(agent.get_json("/nodeagent/node")["allocatable"]["memory"]).value()
    big = allocatable * 6 // 10
    spec = f"    resources: {{requests: {{memory: '{big}'}}}}\n"
    agent.write_manifest("a.yaml", pod_manifest("a", devenv.busybox, ["sleep", "3600"], container_extra=spec))
    await agent.wait_pod("a", running)
    agent.write_manifest("b.yaml", pod_manifest("b", devenv.busybox, ["sleep", "3600"], container_extra=spec))
    agent.write_manifest("c.yaml", pod_manifest("c", devenv.busybox, ["sleep", "3600"],
                                                container_extra="    resources: {requests: {cpu: '100'}}\n"))
    b = await agent.wait_pod("b", lambda p: phase(p) == "Failed")
    assert b["status"]["reason"] == "OutOfmemory"
    assert b["status"]["message"] == (f"Pod was rejected: Node didn't have enough resource: memory, "
                                      f"requested: {big}, used: {big}, capacity: {allocatable}")
    c = await agent.wait_pod("c", lambda p: phase(p) == "Failed")
    assert c["status"]["reason"] == "OutOfcpu" and "cpu, requested: 100000, used: 0" in c["status"]["message"]
    names = {s.metadata.name for s in await cri.list_pod_sandbox()}
    assert names == {f"a-{NODE_NAME}"}, "nothing of a refused pod runs"
    await agent.wait_pod("a", running)


async def test_healthz(agent: AgentProcess) -> None:
    def get() -> tuple[int, str]:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.healthz_port}/healthz", timeout=5) as r:
            return r.status, r.read().decode()
    assert await asyncio.to_thread(get) == (200, "ok")
    assert (await asyncio.to_thread(agent.get_json, "/nodeagent/manifests"))["errors"] == []
    assert json.loads(json.dumps(await agent.pods())) == []


async def test_malformed_corpus_refused_while_a_good_pod_runs(agent: AgentProcess, devenv: DevEnv) -> None:
    """Every malformed manifest is refused with its own message, naming its file;
    the good pod beside them runs, and the agent stays healthy."""
    import shutil
    from tests.test_manifests import BAD, EXPECTED

    for path in BAD.iterdir():
        shutil.copy(path, agent.manifests / path.name)
    agent.write_manifest("good.yaml", pod_manifest("good", devenv.busybox, ["sleep", "3600"]))
    await agent.wait_pod("good", running)
    assert [p["metadata"]["name"] for p in await agent.pods()] == [f"good-{NODE_NAME}"]

    report = await asyncio.to_thread(agent.get_json, "/nodeagent/manifests")
    by_file: dict[str, list[str]] = {}
    for error in report["errors"]:
        by_file.setdefault(Path(error["file"]).name, []).append(error["error"])
    assert set(by_file) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        [message] = by_file[name]
        assert name in message and expected in message, (name, message)

    table = await asyncio.to_thread(_pods_table, agent)
    assert "INVALID MANIFESTS:" in table
    assert all(name in table for name in EXPECTED)
    assert agent.process is not None and agent.process.poll() is None
    assert "Traceback" not in agent.log_file.read_text()


async def test_runtime_restart_under_a_running_agent(devenv: DevEnv, tmp_path: Path) -> None:
    """containerd dies and comes back: the agent survives, pods keep running, nothing restarts."""
    env = DevEnv(name="rtcrash", share_images_from=devenv)
    env.up()
    proc = AgentProcess(env, tmp_path)
    try:
        proc.start()
        proc.write_manifest("steady.yaml", pod_manifest("steady", env.busybox, ["sleep", "3600"]))
        before = await proc.wait_pod("steady", running)
        container_id = container(before, "main")["containerID"]

        env.containerd.kill()
        await asyncio.sleep(2)  # relists and syncs fail meanwhile
        assert proc.process is not None and proc.process.poll() is None, "the agent must not exit"
        env.containerd.start()

        after = await proc.wait_pod("steady", lambda p: running(p) and container(p, "main")["containerID"]
                                    == container_id, what="same container Running again")
        assert container(after, "main")["restartCount"] == 0
        proc.write_manifest("fresh.yaml", pod_manifest("fresh", env.busybox, ["sleep", "3600"]))
        await proc.wait_pod("fresh", running, what="a new pod starts after the runtime came back")
        assert "Traceback" not in proc.log_file.read_text()
    finally:
        proc.stop()
        env.down()
    assert env.leaks() == []


async def test_busy_port_is_a_one_line_error(devenv: DevEnv, tmp_path: Path) -> None:
    """Another process (a kubelet) on the healthz port: a clear message, exit 1, no traceback."""
    import socket
    import subprocess
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = AgentProcess(devenv, tmp_path, "--healthz-port", str(port))
        result = await asyncio.to_thread(subprocess.run, proc.command(), capture_output=True, text=True,
                                         timeout=120)
    devenv.reset(tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"nodeagent: error: cannot listen on 127.0.0.1:{port} (healthz)" in result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def _metric(body: str, name: str, **labels: str) -> float:
    """The sum of `name`'s series whose labels include `labels`."""
    total = 0.0
    for line in body.splitlines():
        series, _, value = line.rpartition(" ")
        if not (series == name or series.startswith(name + "{")):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


async def test_periodic_sync_reads_the_relisted_state(devenv: DevEnv, tmp_path: Path, cri: CRIClient) -> None:
    """kubelet: the periodic sync (syncFrequency) reads the PLEG's cache. Synced
    every 1-1.5 s, a running pod costs no CRI status call while the relister
    shows it unchanged; a container stopped behind the agent's back is still
    seen (the relister reports it) and restarted."""
    proc = AgentProcess(devenv, tmp_path, "--sync-frequency", "1s")
    proc.write_manifest("a.yaml", pod_manifest("a", devenv.busybox, ["sleep", "3600"]))
    proc.start()
    try:
        pod = await proc.wait_pod("a", running)
        metrics = lambda: asyncio.to_thread(lambda: urllib.request.urlopen(  # noqa: E731
            f"{proc.base_url}/metrics", timeout=5).read().decode())
        await asyncio.sleep(2)
        before = await metrics()
        await asyncio.sleep(5)
        after = await metrics()
        syncs = [_metric(m, "kubelet_pod_worker_duration_seconds_count", operation_type="sync")
                 for m in (before, after)]
        assert syncs[1] - syncs[0] >= 3, syncs
        statuses = [_metric(m, "kubelet_runtime_operations_total", operation_type="container_status")
                    for m in (before, after)]
        # at most the log rotator's one look-up of the container's log path (every 10 s,
        # for a container it has not seen); a sync that asked the runtime would add one each
        assert statuses[1] - statuses[0] <= 1, statuses
        sandbox_statuses = [_metric(m, "kubelet_runtime_operations_total", operation_type="podsandbox_status")
                            for m in (before, after)]
        assert sandbox_statuses[0] == sandbox_statuses[1]
        assert _metric(after, "kubelet_runtime_operations_total", operation_type="list_containers") > \
            _metric(before, "kubelet_runtime_operations_total", operation_type="list_containers")

        [main] = [c for c in await containers_of(cri, pod["metadata"]["uid"])
                  if c.state == pb.ContainerState.CONTAINER_RUNNING]
        await cri.stop_container(main.id, timeout=0)
        again = await proc.wait_pod("a", lambda p: running(p) and container(p, "main")["restartCount"] == 1,
                                    what="restarted after the stop")
        assert container(again, "main")["lastState"]["terminated"]["exitCode"] == 137
    finally:
        proc.stop()
        devenv.reset(tmp_path)
