"""What a container gets from its spec, checked inside the running container
(ExecSync), on the host (mounts, files) and in the pod's status."""

from __future__ import annotations

from pathlib import Path

from nodeagent.cri.client import CRIClient
from nodeagent.devenv.env import DevEnv
from tests.agentproc import NODE_NAME, AgentProcess, container, phase, pod_manifest, running
from tests.polling import wait_for


async def exec_in(cri: CRIClient, pod: dict, name: str, *cmd: str) -> tuple[str, int]:
    cid = container(pod, name)["containerID"].split("://", 1)[1]
    result = await cri.exec_sync(cid, list(cmd), timeout=10)
    return (result.stdout + result.stderr).decode(), result.exit_code


async def test_env_command_workdir_and_downward_api(agent: AgentProcess, devenv: DevEnv,
                                                    cri: CRIClient) -> None:
    agent.write_manifest("env.yaml", f"""\
apiVersion: v1
kind: Pod
metadata:
  name: env
  labels: {{tier: backend}}
  annotations: {{note: hello}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {devenv.busybox}
    workingDir: /tmp
    command: [sh, -c]
    args: ["printf '%s\\n' '$(GREETING)' > /tmp/args; exec sleep 3600"]
    env:
    - {{name: NAME, value: world}}
    - {{name: GREETING, value: "hello $(NAME) $$(NAME) $(UNDEFINED)"}}
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: POD_NS
      valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}
    - name: POD_UID
      valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}
    - name: TIER
      valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['tier']"}}}}
    - name: NODE
      valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
    - name: POD_IP
      valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
    - name: HOST_IP
      valueFrom: {{fieldRef: {{fieldPath: status.hostIP}}}}
    - name: MEM_LIMIT_MI
      valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}
    - name: CPU_REQUEST_M
      valueFrom: {{resourceFieldRef: {{resource: requests.cpu, divisor: 1m}}}}
    resources:
      requests: {{cpu: 250m, memory: 16Mi}}
      limits: {{memory: 64Mi}}
""")
    pod = await agent.wait_pod("env", running)
    env_text, code = await exec_in(cri, pod, "main", "env")
    assert code == 0
    env = dict(line.split("=", 1) for line in env_text.splitlines() if "=" in line)
    assert env["GREETING"] == "hello world $(NAME) $(UNDEFINED)"
    assert env["POD_NAME"] == f"env-{NODE_NAME}" and env["POD_NS"] == "default"
    assert env["POD_UID"] == pod["metadata"]["uid"]
    assert env["TIER"] == "backend" and env["NODE"] == NODE_NAME
    assert env["POD_IP"] == pod["status"]["podIP"] and env["HOST_IP"] == "127.0.0.1"
    assert env["MEM_LIMIT_MI"] == "64" and env["CPU_REQUEST_M"] == "250"
    args, _ = await exec_in(cri, pod, "main", "cat", "/tmp/args")
    assert args == "hello world $(NAME) $(UNDEFINED)\n"
    cwd, _ = await exec_in(cri, pod, "main", "pwd")
    assert cwd == "/tmp\n"
    assert pod["status"]["qosClass"] == "Burstable"


async def test_volumes_emptydir_memory_and_hostpath(agent: AgentProcess, devenv: DevEnv,
                                                    cri: CRIClient, tmp_path: Path) -> None:
    host_dir = tmp_path / "hostdata"
    host_dir.mkdir()
    (host_dir / "from-host").write_text("host says hi\n")
    agent.write_manifest("vol.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: vol}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: scratch
    emptyDir: {{}}
  - name: ram
    emptyDir: {{medium: Memory, sizeLimit: 8Mi}}
  - name: host
    hostPath: {{path: {host_dir}, type: Directory}}
  - name: made
    hostPath: {{path: {tmp_path}/created, type: DirectoryOrCreate}}
  containers:
  - name: main
    image: {devenv.busybox}
    command: [sh, -c, "echo written > /scratch/f; exec sleep 3600"]
    volumeMounts:
    - {{name: scratch, mountPath: /scratch}}
    - {{name: ram, mountPath: /ram}}
    - {{name: host, mountPath: /host, readOnly: true}}
    - {{name: made, mountPath: /made}}
""")
    pod = await agent.wait_pod("vol", running)
    uid = pod["metadata"]["uid"]
    scratch = agent.root_dir / "pods" / uid / "volumes" / "kubernetes.io~empty-dir"
    assert (scratch / "scratch" / "f").read_text() == "written\n"
    ram = scratch / "ram"
    mounts = Path("/proc/self/mountinfo").read_text()
    line = next(m for m in mounts.splitlines() if f" {ram} " in m)
    assert " - tmpfs " in line and "size=8192k" in line
    df, _ = await exec_in(cri, pod, "main", "df", "-k", "/ram")
    assert " 8192 " in df
    out, _ = await exec_in(cri, pod, "main", "cat", "/host/from-host")
    assert out == "host says hi\n"
    out, code = await exec_in(cri, pod, "main", "touch", "/host/nope")
    assert code != 0 and "Read-only file system" in out
    assert (tmp_path / "created").is_dir()

    agent.remove_manifest("vol.yaml")
    await agent.wait_gone("vol")
    await wait_for(lambda: not (agent.root_dir / "pods" / uid).exists())
    assert f" {ram} " not in Path("/proc/self/mountinfo").read_text(), "tmpfs must be unmounted"
    assert (host_dir / "from-host").exists(), "hostPath contents are never deleted"


async def test_hostpath_type_mismatch_is_reported(agent: AgentProcess, devenv: DevEnv,
                                                  tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    agent.write_manifest("badhost.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: badhost}}
spec:
  volumes: [{{name: h, hostPath: {{path: {not_a_dir}, type: Directory}}}}]
  containers:
  - {{name: main, image: {devenv.busybox}, command: [sleep, "3600"], volumeMounts: [{{name: h, mountPath: /h}}]}}
""")
    pod = await agent.wait_pod("badhost", lambda p: container(p, "main")["state"].get("waiting", {}).get("message"))
    waiting = container(pod, "main")["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating"
    assert f"hostPath type check failed: {not_a_dir} is not a directory" in waiting["message"]
    assert phase(pod) == "Pending"


async def test_security_context(agent: AgentProcess, devenv: DevEnv, cri: CRIClient) -> None:
    agent.write_manifest("sec.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: sec}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], fsGroup: 2000}}
  volumes: [{{name: data, emptyDir: {{}}}}]
  containers:
  - name: main
    image: {devenv.busybox}
    command: [sleep, "3600"]
    volumeMounts: [{{name: data, mountPath: /data}}]
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}
""")
    pod = await agent.wait_pod("sec", running)
    ids, _ = await exec_in(cri, pod, "main", "id")
    assert "uid=1000" in ids and "gid=3000" in ids and "2000" in ids and "4000" in ids
    out, code = await exec_in(cri, pod, "main", "touch", "/rootfs-write")
    assert code != 0 and "Read-only file system" in out
    out, code = await exec_in(cri, pod, "main", "touch", "/data/ok")
    assert code == 0, out
    status, _ = await exec_in(cri, pod, "main", "cat", "/proc/self/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(fields["CapBnd"], 16) == 1 << 10  # CAP_NET_BIND_SERVICE only
    assert fields["NoNewPrivs"].strip() == "1"


async def test_run_as_non_root_is_refused_with_the_kubelet_message(agent: AgentProcess,
                                                                   devenv: DevEnv) -> None:
    agent.write_manifest("nonroot.yaml", pod_manifest(
        "nonroot", devenv.busybox, ["sleep", "3600"],
        extra_spec="  securityContext: {runAsNonRoot: true}\n"))
    pod = await agent.wait_pod("nonroot", lambda p: container(p, "main")["state"].get("waiting", {})
                               .get("reason") == "CreateContainerConfigError")
    uid = pod["metadata"]["uid"]
    assert container(pod, "main")["state"]["waiting"]["message"] == (
        f'container has runAsNonRoot and image will run as root '
        f'(pod: "nonroot-{NODE_NAME}_default({uid})", container: main)')


async def test_termination_messages(agent: AgentProcess, devenv: DevEnv) -> None:
    agent.write_manifest("msg.yaml", pod_manifest(
        "msg", devenv.busybox, ["sh", "-c", "echo 'all done' > /dev/termination-log; exit 4"],
        restart_policy="Never"))
    agent.write_manifest("logs.yaml", pod_manifest(
        "logs", devenv.busybox, ["sh", "-c", "echo line one; echo line two; exit 5"],
        restart_policy="Never", container_extra="    terminationMessagePolicy: FallbackToLogsOnError\n"))
    msg = await agent.wait_pod("msg", lambda p: phase(p) == "Failed")
    terminated = container(msg, "main")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"]) == (4, "all done\n")
    logs = await agent.wait_pod("logs", lambda p: phase(p) == "Failed")
    assert container(logs, "main")["state"]["terminated"]["message"] == "line one\nline two\n"


async def test_exit_reasons_oomkilled_and_cannot_run(agent: AgentProcess, devenv: DevEnv) -> None:
    agent.write_manifest("oom.yaml", pod_manifest(
        "oom", devenv.busybox, ["tail", "/dev/zero"],  # no newline ever: tail buffers it all
        restart_policy="Never", container_extra="    resources: {limits: {memory: 16Mi}}\n"))
    agent.write_manifest("norun.yaml", pod_manifest(
        "norun", devenv.busybox, ["/no/such/binary"], restart_policy="Never"))
    oom = await agent.wait_pod("oom", lambda p: phase(p) == "Failed", timeout=60)
    terminated = container(oom, "main")["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled" and terminated["exitCode"] == 137
    norun = await agent.wait_pod("norun", lambda p: phase(p) == "Failed")
    terminated = container(norun, "main")["state"]["terminated"]
    assert terminated["reason"] == "ContainerCannotRun" and terminated["exitCode"] == 128
    assert "no such file or directory" in terminated["message"]


async def test_image_pull_policies_and_errors(agent: AgentProcess, devenv: DevEnv, cri: CRIClient) -> None:
    missing = f"{devenv.registry.host}/missing:1"
    agent.write_manifest("nopull.yaml", pod_manifest("nopull", missing, ["true"],
                                                    container_extra="    imagePullPolicy: Never\n"))
    agent.write_manifest("badpull.yaml", pod_manifest("badpull", missing, ["true"]))
    nopull = await agent.wait_pod("nopull", lambda p: container(p, "main")["state"].get("waiting"))
    assert container(nopull, "main")["state"]["waiting"] == {
        "reason": "ErrImageNeverPull",
        "message": f'Container image "{missing}" is not present with pull policy of Never'}
    first = await agent.wait_pod("badpull", lambda p: container(p, "main")["state"].get("waiting"))
    waiting = container(first, "main")["state"]["waiting"]
    assert waiting["reason"] == "ErrImagePull"
    assert waiting["message"].startswith(f'Failed to pull image "{missing}": ')
    backoff = await agent.wait_pod("badpull", lambda p: container(p, "main")["state"].get("waiting", {})
                                   .get("reason") == "ImagePullBackOff", timeout=15)
    assert container(backoff, "main")["state"]["waiting"]["message"] == f'Back-off pulling image "{missing}"'
    assert phase(backoff) == "Pending"

    # Always pulls even when present; the status then names the pulled image.
    agent.write_manifest("always.yaml", pod_manifest("alwayspull", devenv.images["pull-test"].ref,
                                                    ["sleep", "3600"],
                                                    container_extra="    imagePullPolicy: Always\n"))
    pulled = await agent.wait_pod("alwayspull", running)
    assert container(pulled, "main")["imageID"].endswith(devenv.images["pull-test"].manifest_digest)
    await cri.remove_image(devenv.images["pull-test"].ref)  # leave the image absent for other tests


async def test_orphans_removed_when_agent_restarts(agent: AgentProcess, devenv: DevEnv,
                                                   cri: CRIClient) -> None:
    agent.write_manifest("gone.yaml", pod_manifest("gone", devenv.busybox, ["sleep", "3600"]))
    agent.write_manifest("kept.yaml", pod_manifest("kept", devenv.busybox, ["sleep", "3600"]))
    gone = await agent.wait_pod("gone", running)
    kept = await agent.wait_pod("kept", running)
    agent.kill()
    agent.remove_manifest("gone.yaml")
    agent.start()
    await agent.wait_gone("gone")
    async def gone_removed() -> bool:
        uids = {s.labels["io.kubernetes.pod.uid"] for s in await cri.list_pod_sandbox()}
        return gone["metadata"]["uid"] not in uids

    await wait_for(gone_removed)
    assert {s.labels["io.kubernetes.pod.uid"] for s in await cri.list_pod_sandbox()} == {kept["metadata"]["uid"]}
    # The pod dir goes right after the sandbox (one executor hop later).
    await wait_for(lambda: not (agent.root_dir / "pods" / gone["metadata"]["uid"]).exists(),
                   what="orphan's pod dir removed")


async def test_orphaned_pod_dir_with_a_mount_is_removed(devenv: DevEnv, tmp_path: Path) -> None:
    """A pod dir left by an agent stopped mid-cleanup (a tmpfs still mounted in
    it) is unmounted and removed by housekeeping, as the kubelet's
    cleanupOrphanedPodDirs does."""
    from nodeagent.pods import volumes
    agent = AgentProcess(devenv, tmp_path)
    leftover = agent.root_dir / "pods" / "0f0f0f0f-dead-4bad-8bad-000000000001"
    target = leftover / "volumes" / "kubernetes.io~secret" / "creds"
    target.mkdir(parents=True)
    volumes.mount_tmpfs(target, 1 << 20)
    (target / "password").write_text("x")
    agent.start()
    try:
        await wait_for(lambda: not leftover.exists(), 20, 0.2, "orphaned pod dir removed")
        assert str(target) not in Path("/proc/self/mountinfo").read_text()
    finally:
        agent.stop()
        devenv.reset(tmp_path)


async def test_config_file_and_flag_precedence(devenv: DevEnv, tmp_path: Path) -> None:
    proc = AgentProcess(devenv, tmp_path)
    config = tmp_path / "kubelet.yaml"
    config.write_text(f"""\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: {proc.manifests}
podLogsDir: {tmp_path}/config-logs
maxPods: 50
readOnlyPort: 1
""")
    # --read-only-port (a flag) wins over readOnlyPort in the file.
    proc.extra_args = ("--config", str(config))
    proc.write_manifest("c.yaml", pod_manifest("c", devenv.busybox, ["sleep", "3600"]))
    cmd = [a for a in proc.command() if a not in ("--pod-logs-dir", str(proc.logs_dir))]
    proc.command = lambda: cmd  # type: ignore[method-assign]
    proc.start()
    try:
        pod = await proc.wait_pod("c", running)
        uid = pod["metadata"]["uid"]
        assert (tmp_path / "config-logs" / f"default_c-{NODE_NAME}_{uid}" / "main" / "0.log").exists()
    finally:
        proc.stop()
        devenv.reset(tmp_path)


def test_bad_config_is_a_clear_cli_error(tmp_path: Path) -> None:
    import subprocess
    from tests.agentproc import NODEAGENT
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncpuManagerPolicyy: static\n")
    result = subprocess.run([NODEAGENT, "run", "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown field 'cpuManagerPolicyy': not a KubeletConfiguration" in result.stderr
    bad.write_text("apiVersion: v1\nkind: Pod\n")
    result = subprocess.run([NODEAGENT, "run", "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert "apiVersion/kind must be kubelet.config.k8s.io/v1beta1/KubeletConfiguration" in result.stderr


async def test_storage_volume_is_refused_not_replaced(agent: AgentProcess, devenv: DevEnv,
                                                      cri: CRIClient) -> None:
    """A PVC volume: the pod waits in ContainerCreating with the reason; no
    container runs on an emptyDir in its place; other pods are unaffected."""
    agent.write_manifest("db.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: db}}
spec:
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: db-data}}}}]
  containers:
  - {{name: main, image: {devenv.busybox}, command: [sleep, "3600"], volumeMounts: [{{name: data, mountPath: /data}}]}}
""")
    agent.write_manifest("ok.yaml", pod_manifest("ok", devenv.busybox, ["sleep", "3600"]))
    pod = await agent.wait_pod("db", lambda p: container(p, "main")["state"].get("waiting", {}).get("message"))
    waiting = container(pod, "main")["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating" and phase(pod) == "Pending"
    assert waiting["message"] == ('MountVolume.SetUp failed for volume "data" : nodeagent cannot mount '
                                  'persistentVolumeClaim volumes (no storage or CSI plugins)')
    assert pod["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "db-data"}}]
    await agent.wait_pod("ok", running)
    names = {c.labels["io.kubernetes.pod.name"] for c in await cri.list_containers()}
    assert names == {f"ok-{NODE_NAME}"}, "nothing of the pod with the PVC runs"
