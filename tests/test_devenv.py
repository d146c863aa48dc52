"""The harness itself: it must clean up even after the runtime crashed under a pod."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nodeagent.cri.client import CRIClient
from nodeagent.devenv.containerd import ContainerdPaths, render_config
from nodeagent.devenv.env import DevEnv
from nodeagent.devenv.podspecs import container_config, sandbox_config
from nodeagent.hostinfo import can_lower_oom_score_adj


def test_config_restricts_oom_score_adj_when_the_host_cannot_lower_it() -> None:
    paths = ContainerdPaths(Path("/tmp/x"))
    assert "restrict_oom_score_adj = true" in render_config(
        paths, sandbox_image="p", restrict_oom_score_adj=True)
    # On these VMs CAP_SYS_RESOURCE is missing; the harness must have noticed.
    status = Path("/proc/self/status").read_text()
    cap_eff = int(next(l for l in status.splitlines() if l.startswith("CapEff:")).split()[1], 16)
    assert can_lower_oom_score_adj() == bool(cap_eff & (1 << 24))


async def test_down_after_runtime_crash_leaves_nothing(devenv: DevEnv) -> None:
    env = DevEnv(name="sweep", share_images_from=devenv)
    env.up()
    assert env.containerd.restrict_oom_score_adj == (not can_lower_oom_score_adj())
    async with CRIClient(env.endpoint) as cri:
        image = await cri.pull_image(env.busybox)
        config = sandbox_config(env, "orphan", "0f0e0d0c-0000-4000-8000-000000000001")
        sandbox_id = await cri.run_pod_sandbox(config)
        cid = await cri.create_container(sandbox_id, container_config(
            config, "sleeper", image, ["sleep", "3600"]), config)
        await cri.start_container(cid)
        pid = json.loads((await cri.container_status(cid, verbose=True)).info["info"])["pid"]
    env.containerd.kill()  # the shim, the pause and the container keep running
    assert Path(f"/proc/{pid}").exists()
    env.down()
    assert env.leaks() == []
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            break
        await asyncio.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the container process survived the sweep"
