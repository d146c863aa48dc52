"""nodeagent.cri against the real containerd + runc the harness started."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import AlreadyExistsError, InvalidRequestError, NotFoundError
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv.env import DevEnv
from nodeagent.devenv.podspecs import container_config, sandbox_config
from tests.polling import wait_for

CRI_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) (stdout|stderr) (F|P) (.*)$")
MiB = 1024 * 1024
# Exits 0 on SIGTERM, so a graceful stop is visible as exit code 0.
GRACEFUL = ["sh", "-c", "trap 'exit 0' TERM; echo hello; echo oops >&2; "
                        "while :; do sleep 1000 & wait; done"]


async def ensure_image(cri: CRIClient, image: str) -> str:
    """The kubelet's order: ImageStatus first, PullImage only when absent."""
    present = await cri.image_status(image)
    return present.id if present else await cri.pull_image(image)


def read_cgroup(controller: str, cgroup_path: str, name: str) -> str:
    return (Path("/sys/fs/cgroup") / controller / cgroup_path.lstrip("/") / name).read_text().strip()


async def container_pid(cri: CRIClient, container_id: str) -> int:
    status = await cri.container_status(container_id, verbose=True)
    return json.loads(status.info["info"])["pid"]


async def test_version_and_runtime_conditions(cri: CRIClient) -> None:
    version = await cri.version()
    assert version.runtime_api_version == "v1"
    assert version.runtime_name == "containerd"
    status = await cri.status()
    conditions = {c.type: c.status for c in status.status.conditions}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}


async def test_pod_lifecycle_end_to_end(devenv: DevEnv, cri: CRIClient, sandboxes: list[str],
                                        pod_uid: str) -> None:
    image = await ensure_image(cri, devenv.busybox)
    config = sandbox_config(devenv, "lifecycle", pod_uid)
    sandbox_id = await cri.run_pod_sandbox(config)
    sandboxes.append(sandbox_id)

    sandbox = (await cri.pod_sandbox_status(sandbox_id)).status
    assert sandbox.state == pb.PodSandboxState.SANDBOX_READY
    assert sandbox.metadata.uid == pod_uid
    assert sandbox.network.ip.startswith(devenv.subnet.rsplit(".", 2)[0])
    assert sandbox.labels["io.kubernetes.pod.uid"] == pod_uid
    listed = await cri.list_pod_sandbox(pb.PodSandboxFilter(
        label_selector={"io.kubernetes.pod.uid": pod_uid}))
    assert [s.id for s in listed] == [sandbox_id]

    resources = pb.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=64 * MiB,
                                           oom_score_adj=777)
    cconfig = container_config(config, "main", image, GRACEFUL, resources=resources)
    container_id = await cri.create_container(sandbox_id, cconfig, config)

    async def states() -> tuple[pb.ContainerState, pb.ContainerState]:
        listed = await cri.list_containers(pb.ContainerFilter(id=container_id))
        status = (await cri.container_status(container_id)).status
        assert [c.id for c in listed] == [container_id]
        return listed[0].state, status.state

    assert await states() == (pb.ContainerState.CONTAINER_CREATED,) * 2

    await cri.start_container(container_id)
    assert await states() == (pb.ContainerState.CONTAINER_RUNNING,) * 2

    # The limits reached the kernel: cgroup files and the process's OOM score.
    cgroup = f"{config.linux.cgroup_parent}/{container_id}"
    assert read_cgroup("memory", cgroup, "memory.limit_in_bytes") == str(64 * MiB)
    assert read_cgroup("cpu", cgroup, "cpu.shares") == "512"
    pid = await container_pid(cri, container_id)
    assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "777"

    result = await cri.exec_sync(container_id, ["sh", "-c", "cat /etc/hostname; echo err >&2; exit 3"],
                                 timeout=10)
    assert (result.stdout, result.stderr, result.exit_code) == (b"lifecycle\n", b"err\n", 3)

    # The log is in CRI format at <log_directory>/<name>/<attempt>.log.
    log_path = Path(config.log_directory) / "main" / "0.log"
    status = (await cri.container_status(container_id)).status
    assert status.log_path == str(log_path)

    async def logged() -> list[tuple[str, str, str]]:
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        return [m.group(3, 4, 5) for m in map(CRI_LOG_LINE.match, lines) if m] if len(lines) >= 2 else []

    assert sorted(await wait_for(logged)) == [("stderr", "F", "oops"), ("stdout", "F", "hello")]
    assert all(CRI_LOG_LINE.match(line) for line in log_path.read_text().splitlines())

    await cri.stop_container(container_id, timeout=10)
    assert await states() == (pb.ContainerState.CONTAINER_EXITED,) * 2
    exited = (await cri.container_status(container_id)).status
    assert exited.exit_code == 0, "SIGTERM was trapped: a graceful stop exits 0"
    assert exited.finished_at >= exited.started_at > exited.created_at > 0

    await cri.remove_container(container_id)
    assert await cri.list_containers(pb.ContainerFilter(id=container_id)) == []
    with pytest.raises(NotFoundError):
        await cri.container_status(container_id)

    await cri.stop_pod_sandbox(sandbox_id)
    assert (await cri.pod_sandbox_status(sandbox_id)).status.state == pb.PodSandboxState.SANDBOX_NOTREADY
    await cri.remove_pod_sandbox(sandbox_id)
    assert await cri.list_pod_sandbox(pb.PodSandboxFilter(id=sandbox_id)) == []
    with pytest.raises(NotFoundError):
        await cri.pod_sandbox_status(sandbox_id)


async def test_stop_kills_after_grace_period(devenv: DevEnv, cri: CRIClient, sandboxes: list[str],
                                             pod_uid: str) -> None:
    image = await ensure_image(cri, devenv.busybox)
    config = sandbox_config(devenv, "stubborn", pod_uid, host_network=True)
    sandbox_id = await cri.run_pod_sandbox(config)
    sandboxes.append(sandbox_id)
    # PID 1 without a TERM handler ignores SIGTERM: only SIGKILL stops it.
    cid = await cri.create_container(sandbox_id, container_config(
        config, "stubborn", image, ["sh", "-c", "while :; do sleep 1; done"]), config)
    await cri.start_container(cid)
    started = asyncio.get_running_loop().time()
    await cri.stop_container(cid, timeout=1)
    assert asyncio.get_running_loop().time() - started >= 0.9
    status = (await cri.container_status(cid)).status
    assert (status.state, status.exit_code) == (pb.ContainerState.CONTAINER_EXITED, 137)


async def test_update_resources_stats_and_log_reopen(devenv: DevEnv, cri: CRIClient,
                                                     sandboxes: list[str], pod_uid: str) -> None:
    image = await ensure_image(cri, devenv.busybox)
    config = sandbox_config(devenv, "resize", pod_uid)
    sandbox_id = await cri.run_pod_sandbox(config)
    sandboxes.append(sandbox_id)
    cid = await cri.create_container(sandbox_id, container_config(
        config, "ticker", image, ["sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done"],
        resources=pb.LinuxContainerResources(memory_limit_in_bytes=32 * MiB)), config)
    await cri.start_container(cid)
    cgroup = f"{config.linux.cgroup_parent}/{cid}"

    await cri.update_container_resources(cid, pb.LinuxContainerResources(
        memory_limit_in_bytes=48 * MiB, cpu_period=100000, cpu_quota=50000, cpu_shares=256))
    assert read_cgroup("memory", cgroup, "memory.limit_in_bytes") == str(48 * MiB)
    assert read_cgroup("cpu", cgroup, "cpu.cfs_quota_us") == "50000"
    assert read_cgroup("cpu", cgroup, "cpu.shares") == "256"

    stats = await cri.container_stats(cid)
    assert stats.attributes.id == cid
    assert stats.memory.working_set_bytes.value > 0
    listed = await cri.list_container_stats(pb.ContainerStatsFilter(pod_sandbox_id=sandbox_id))
    assert [s.attributes.id for s in listed] == [cid]
    pod_stats = await cri.pod_sandbox_stats(sandbox_id)
    assert pod_stats.attributes.id == sandbox_id
    assert pod_stats.attributes.metadata.uid == pod_uid
    assert pod_stats.linux.memory.working_set_bytes.value > 0

    # Log rotation the kubelet way: rename, ReopenContainerLog, new lines go to the new file.
    log_path = Path(config.log_directory) / "ticker" / "0.log"
    await wait_for(lambda: log_path.exists() and log_path.stat().st_size > 0)
    rotated = log_path.with_name("0.log.20261122-000000")
    log_path.rename(rotated)
    await cri.reopen_container_log(cid)
    await wait_for(lambda: log_path.exists() and "tick" in log_path.read_text())
    assert all(CRI_LOG_LINE.match(line) for line in log_path.read_text().splitlines())
    assert "tick 0" in rotated.read_text() and "tick 0" not in log_path.read_text()


async def test_pull_image_from_registry(devenv: DevEnv, cri: CRIClient) -> None:
    ref = devenv.images["pull-test"].ref
    assert await cri.image_status(ref) is None, "the runtime must not have the image yet"
    image_ref = await cri.pull_image(ref)
    assert image_ref.startswith("sha256:")
    image = await cri.image_status(ref)
    assert image is not None and image.id == image_ref
    assert ref in image.repo_tags
    assert any(d.endswith(devenv.images["pull-test"].manifest_digest) for d in image.repo_digests)
    assert image.size > 0
    assert image_ref in {i.id for i in await cri.list_images()}

    fs = await cri.image_fs_info()
    # Usage is sampled by containerd every ~10 s; where it lives is immediate.
    assert fs.image_filesystems[0].fs_id.mountpoint.startswith(str(devenv.base / "containerd" / "root"))

    await cri.remove_image(ref)
    assert await cri.image_status(ref) is None
    assert image_ref not in {i.id for i in await cri.list_images()}


async def test_runtime_errors_are_typed(devenv: DevEnv, cri: CRIClient, sandboxes: list[str],
                                        pod_uid: str) -> None:
    with pytest.raises(NotFoundError):
        await cri.container_status("0" * 64)
    with pytest.raises(NotFoundError):
        await cri.stop_container("does-not-exist", timeout=0)
    with pytest.raises(NotFoundError):
        await cri.stop_pod_sandbox("does-not-exist")
    with pytest.raises(NotFoundError):
        await cri.pull_image(f"{devenv.registry.host}/no-such-image:1")
    with pytest.raises(InvalidRequestError) as err:
        await cri.run_pod_sandbox(pb.PodSandboxConfig())  # no metadata
    assert "RunPodSandbox" in str(err.value) and devenv.endpoint in str(err.value)
    with pytest.raises(InvalidRequestError):
        await cri.pull_image("UPPER/Case")
    config = sandbox_config(devenv, "errors", pod_uid, host_network=True)
    with pytest.raises(InvalidRequestError):
        await cri.run_pod_sandbox(config, runtime_handler="no-such-handler")
    sandboxes.append(await cri.run_pod_sandbox(config))
    with pytest.raises(AlreadyExistsError):
        await cri.run_pod_sandbox(config)
