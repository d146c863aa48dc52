"""Pod cgroups, QoS tiers and OOM scores on this machine's real cgroup v1
hierarchies, with real containerd: the files on disk, the container
processes' /proc/<pid>/oom_score_adj, real OOM kills and CPU throttling."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from pathlib import Path

from nodeagent import hostinfo
from nodeagent.api.quantity import Quantity
from nodeagent.cri.client import CRIClient
from nodeagent.devenv.env import DevEnv
from tests.agentproc import NODE_NAME, AgentProcess, container, pod_manifest, running
from tests.polling import wait_for

CGROUP = Path("/sys/fs/cgroup")
MI = 2**20
ALL_HIERARCHIES = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer", "systemd")
# This VM has no CAP_SYS_RESOURCE: scores below the agent's own (0) are raised to it.
FLOOR = -1000 if hostinfo.can_lower_oom_score_adj() else 0


def resources_manifest(name: str, image: str, resources: str, command: list[str] | None = None,
                       grace: int = 0, restart_policy: str = "Always") -> str:
    return pod_manifest(name, image, command or ["sleep", "3600"], grace=grace, restart_policy=restart_policy,
                        container_extra=f"    resources: {resources}\n")


def read(path: Path) -> str:
    return path.read_text().strip()


async def container_pid(cri: CRIClient, pod: dict, name: str = "main") -> int:
    cid = container(pod, name)["containerID"].split("://", 1)[1]
    status = await cri.container_status(cid, verbose=True)
    return int(json.loads(status.info["info"])["pid"])


def pod_dirs(agent: AgentProcess, hierarchy: str) -> list[Path]:
    """Every pod<uid> cgroup dir under this agent's kubepods in one hierarchy."""
    kubepods = CGROUP / hierarchy / agent.cgroup_root.lstrip("/") / "kubepods"
    found = []
    for tier in (kubepods, kubepods / "burstable", kubepods / "besteffort"):
        try:  # pods come and go while this looks
            found += [p for p in tier.iterdir() if p.name.startswith("pod") and p.is_dir()]
        except FileNotFoundError:
            pass
    return sorted(found)


async def test_qos_cgroup_files_and_oom_scores(devenv: DevEnv, tmp_path: Path, cri: CRIClient) -> None:
    agent = AgentProcess(devenv, tmp_path, "--pod-max-pids", "64", "--system-reserved", "memory=1Gi")
    agent.start()
    try:
        image = devenv.busybox
        pods = {
            "guaranteed": ("{limits: {cpu: 500m, memory: 64Mi}}", "", {
                "cpu.shares": "512", "cpu.cfs_quota_us": "50000", "memory.limit_in_bytes": str(64 * MI)},
                max(-997, FLOOR)),
            "burstable-limited": ("{requests: {cpu: 100m, memory: 32Mi}, limits: {cpu: 1, memory: 128Mi}}",
                                  "burstable/", {"cpu.shares": "102", "cpu.cfs_quota_us": "100000",
                                                 "memory.limit_in_bytes": str(128 * MI)}, None),
            "burstable-requests": ("{requests: {cpu: 200m, memory: 16Mi}}", "burstable/",
                                   {"cpu.shares": "204", "cpu.cfs_quota_us": "-1"}, None),
            "besteffort": ("{}", "besteffort/", {"cpu.shares": "2", "cpu.cfs_quota_us": "-1"}, 1000),
        }
        for name, (res, *_rest) in pods.items():
            agent.write_manifest(f"{name}.yaml", resources_manifest(name, image, res))
        memory_capacity = hostinfo.memory_capacity_bytes()
        root = agent.cgroup_root.lstrip("/")
        seen = {}
        for name, (_res, tier, expected, oom) in pods.items():
            pod = await agent.wait_pod(name, running, timeout=60, what="Running")
            uid = pod["metadata"]["uid"]
            seen[name] = uid
            qos = {"guaranteed": "Guaranteed", "besteffort": "BestEffort"}.get(name, "Burstable")
            assert pod["status"]["qosClass"] == qos
            rel = f"{root}/kubepods/{tier}pod{uid}"
            files = {"cpu.shares": read(CGROUP / "cpu" / rel / "cpu.shares"),
                     "cpu.cfs_quota_us": read(CGROUP / "cpu" / rel / "cpu.cfs_quota_us"),
                     "memory.limit_in_bytes": read(CGROUP / "memory" / rel / "memory.limit_in_bytes")}
            unlimited = read(CGROUP / "memory" / "memory.limit_in_bytes")
            expected = {"memory.limit_in_bytes": unlimited, **expected}
            assert files == expected, name
            assert read(CGROUP / "pids" / rel / "pids.max") == "64"
            pid = await container_pid(cri, pod)
            # The container runs inside the pod cgroup runc made below it.
            memory_line = next(line for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                               if ":memory:" in line)
            assert memory_line.split(":", 2)[2].startswith(f"/{rel}/"), memory_line
            if oom is None:  # burstable: 1000 - 1000*request/capacity
                request = 32 * MI if name == "burstable-limited" else 16 * MI
                oom = min(999, max(3, 1000 - 1000 * request // memory_capacity))
            assert int(read(Path(f"/proc/{pid}/oom_score_adj"))) == max(oom, FLOOR), name
        # The tiers: besteffort 2 shares; burstable = its pods' cpu requests (300m).
        assert read(CGROUP / "cpu" / root / "kubepods/besteffort/cpu.shares") == "2"
        assert read(CGROUP / "cpu" / root / "kubepods/burstable/cpu.shares") == "307"
        # kubepods holds what the pods may use: capacity - systemReserved.
        assert int(read(CGROUP / "memory" / root / "kubepods/memory.limit_in_bytes")) == \
            (memory_capacity - 2**30) // 4096 * 4096
        node = agent.get_json("/nodeagent/node")
        assert node["oomScoreAdjRestricted"] is (FLOOR == 0)
        assert node["cgroupDriver"] == "cgroupfs" and node["cgroupVersion"] == 1
        # allocatable = capacity - systemReserved - the default hard threshold (100Mi)
        assert Quantity(node["allocatable"]["memory"]).value() == memory_capacity - 2**30 - 100 * MI
        assert Quantity(node["capacity"]["memory"]).value() == memory_capacity
        with urllib.request.urlopen(f"{agent.base_url}/metrics", timeout=10) as resp:
            exposition = resp.read().decode()
        assert f"nodeagent_oom_score_adj_restricted {1.0 if FLOOR == 0 else 0.0}" in exposition
        assert 'kubelet_cgroup_manager_duration_seconds_count{operation_type="create"}' in exposition
        # Deleting the pods removes their cgroups from every hierarchy.
        for name in pods:
            agent.remove_manifest(f"{name}.yaml")
        await wait_for(lambda: not any(pod_dirs(agent, h) for h in ALL_HIERARCHIES), timeout=30,
                       what="every pod cgroup removed")
    finally:
        agent.stop()
        devenv.reset(tmp_path)


async def test_pod_limits_are_in_place_when_the_app_container_starts(agent: AgentProcess,
                                                                     devenv: DevEnv) -> None:
    # The pod cgroup and its limits come before the sandbox (the kubelet's
    # order); the app container's first act reads its pod cgroup's limits
    # from the host's hierarchies: they are written.
    script = ("d=$(dirname $(grep :memory: /proc/self/cgroup | cut -d: -f3)); "
              "cat /host-cgroup/memory$d/memory.limit_in_bytes /host-cgroup/cpu$d/cpu.cfs_quota_us "
              "/host-cgroup/cpu$d/cpu.shares; sleep 3600")
    agent.write_manifest("limits.yaml", pod_manifest(
        "limits", devenv.busybox, ["sh", "-c", script],
        extra_spec="  volumes:\n  - name: cgroup\n    hostPath: {path: /sys/fs/cgroup, type: Directory}\n",
        container_extra=("    resources: {limits: {cpu: 300m, memory: 48Mi}}\n"
                         "    volumeMounts:\n    - {name: cgroup, mountPath: /host-cgroup, readOnly: true}\n")))
    pod = await agent.wait_pod("limits", running, timeout=60, what="Running")
    uid = pod["metadata"]["uid"]
    log = agent.logs_dir / f"default_{pod['metadata']['name']}_{uid}" / "main" / "0.log"
    await wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, timeout=15,
                   what="the container's report of its pod cgroup")
    values = [line.split(" ", 3)[3] for line in log.read_text().splitlines()[:3]]
    assert values == [str(48 * MI), "30000", "307"]  # Guaranteed: 48Mi, 300m
    agent.remove_manifest("limits.yaml")
    await agent.wait_gone("limits")


async def test_limits_the_kernel_refuses_leave_the_pod_without_a_sandbox(agent: AgentProcess, devenv: DevEnv,
                                                                       cri: CRIClient) -> None:
    """A CPU quota on kubepods (an operator's, say) makes cgroup v1 refuse a
    larger one below it: that pod waits in ContainerCreating with the
    kubelet's message and gets no sandbox; the pod beside it runs; removing
    it leaves no cgroup behind."""
    quota = CGROUP / "cpu" / agent.cgroup_root.lstrip("/") / "kubepods" / "cpu.cfs_quota_us"
    quota.write_text("50000")  # half a CPU for all pods
    try:
        agent.write_manifest("big.yaml", resources_manifest("big", devenv.busybox, "{limits: {cpu: 1, memory: 32Mi}}"))
        agent.write_manifest("small.yaml", resources_manifest("small", devenv.busybox, "{requests: {memory: 16Mi}}"))
        await agent.wait_pod("small", running, timeout=60, what="Running")
        pod = await agent.wait_pod("big", lambda p: container(p, "main")["state"].get("waiting", {}).get("message"),
                                   timeout=30, what="a waiting message")
        waiting = container(pod, "main")["state"]["waiting"]
        uid = pod["metadata"]["uid"]
        assert waiting["reason"] == "ContainerCreating" and pod["status"]["phase"] == "Pending"
        assert waiting["message"].startswith(f"failed to ensure that the pod: {uid} cgroups exist and are "
                                             "correctly applied: "), waiting["message"]
        assert waiting["message"].endswith("Invalid argument"), waiting["message"]
        names = {s.labels["io.kubernetes.pod.name"] for s in await cri.list_pod_sandbox()}
        assert names == {f"small-{NODE_NAME}"}, "no sandbox for the pod whose limits failed"
        for name in ("big", "small"):
            agent.remove_manifest(f"{name}.yaml")
            await agent.wait_gone(name)
        await wait_for(lambda: not any(pod_dirs(agent, h) for h in ALL_HIERARCHIES), timeout=30,
                       what="every pod cgroup removed")
    finally:
        quota.write_text("-1")


async def test_memory_hog_is_oom_killed_and_restarted(agent: AgentProcess, devenv: DevEnv) -> None:
    # `tail /dev/zero` keeps the whole (newline-free) input in memory.
    agent.write_manifest("hog.yaml", resources_manifest(
        "hog", devenv.busybox, "{limits: {memory: 24Mi}}", ["tail", "/dev/zero"], restart_policy="OnFailure"))
    pod = await agent.wait_pod("hog", lambda p: container(p, "main")["restartCount"] >= 1, timeout=60,
                               what="restarted after the OOM kill")
    terminated = container(pod, "main")["lastState"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    # The kill was the cgroup's: the pod cgroup counted it.
    uid = pod["metadata"]["uid"]
    oom = CGROUP / "memory" / agent.cgroup_root.lstrip("/") / "kubepods" / "burstable" / f"pod{uid}"
    assert "oom_kill 1" in read(oom / "memory.oom_control") or \
        int(read(oom / "memory.failcnt")) > 0


async def test_cpu_limit_throttles_without_killing(agent: AgentProcess, devenv: DevEnv, cri: CRIClient) -> None:
    agent.write_manifest("spin.yaml", resources_manifest(
        "spin", devenv.busybox, "{limits: {cpu: 100m, memory: 32Mi}}", ["sh", "-c", "while :; do :; done"]))
    pod = await agent.wait_pod("spin", running, timeout=60, what="Running")
    uid = pod["metadata"]["uid"]
    stat = CGROUP / "cpu" / agent.cgroup_root.lstrip("/") / "kubepods" / f"pod{uid}" / "cpu.stat"

    def throttled() -> int:
        return int(dict(line.split() for line in read(stat).splitlines())["nr_throttled"])

    first = await wait_for(throttled, timeout=10, what="the busy loop throttled")
    await asyncio.sleep(1.5)
    assert throttled() > first
    pod = await agent.pod("spin")
    assert pod is not None and running(pod) and container(pod, "main")["restartCount"] == 0


async def test_create_delete_cycles_leave_no_cgroups(agent: AgentProcess, devenv: DevEnv) -> None:
    shapes = ["{}", "{requests: {cpu: 10m}}", "{limits: {cpu: 50m, memory: 16Mi}}"]
    for batch in range(4):  # 4 x 25 = 100 pods created and deleted
        names = [f"cycle-{batch}-{i}" for i in range(25)]
        for i, name in enumerate(names):
            agent.write_manifest(f"{name}.yaml", resources_manifest(name, devenv.busybox, shapes[i % 3]))
        for name in names:
            await agent.wait_pod(name, running, timeout=240, what="Running")
        for name in names:
            agent.remove_manifest(f"{name}.yaml")
        # Gone from /pods at once; gone from the node once the cgroups are.
        await wait_for(lambda: not any(pod_dirs(agent, h) for h in ALL_HIERARCHIES), timeout=120,
                       what=f"every pod cgroup of batch {batch} removed")


def test_cgroup_driver_mismatch_is_refused(devenv: DevEnv, tmp_path: Path) -> None:
    # A systemd cgroup root must be a slice (checked with the config); "/" is one.
    # The mismatch is refused before anything is created under it.
    agent = AgentProcess(devenv, tmp_path, "--cgroup-driver", "systemd", "--cgroup-root", "/")
    result = subprocess.run(agent.command(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "misconfiguration: nodeagent cgroup driver 'systemd' is different from the container " \
           "runtime's cgroup driver 'cgroupfs'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


async def test_restart_keeps_adopted_pod_cgroups_and_removes_orphans(agent: AgentProcess,
                                                                     devenv: DevEnv) -> None:
    agent.write_manifest("kept.yaml", resources_manifest("kept", devenv.busybox, "{requests: {cpu: 10m}}"))
    pod = await agent.wait_pod("kept", running, timeout=60, what="Running")
    uid = pod["metadata"]["uid"]
    burstable = CGROUP / "memory" / agent.cgroup_root.lstrip("/") / "kubepods" / "burstable"
    orphan = burstable / "pod00000000-0000-0000-0000-000000000000"
    agent.kill()
    orphan.mkdir()  # as a crash between sandbox removal and cgroup removal leaves it
    agent.start()
    await wait_for(lambda: not orphan.exists(), timeout=15, what="the orphaned pod cgroup removed")
    await asyncio.sleep(2.5)  # more housekeeping rounds: the adopted pod's cgroup stays
    assert (burstable / f"pod{uid}").is_dir()
    pod = await agent.pod("kept")
    assert pod is not None and running(pod) and container(pod, "main")["restartCount"] == 0
