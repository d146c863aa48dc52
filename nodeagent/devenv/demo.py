"""The demo: a private containerd, one busybox pod through nodeagent.cri, its state.

Run with `hack/demo` (or `python -m nodeagent.devenv.demo [--keep]`).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import uuid
from pathlib import Path

from nodeagent.cri.client import CRIClient
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv.containerd import HarnessError
from nodeagent.devenv.env import DevEnv
from nodeagent.devenv.podspecs import container_config, sandbox_config
from nodeagent.logsetup import configure_logging

WEB_SCRIPT = ("mkdir -p /var/www && echo 'hello from nodeagent' > /var/www/index.html && "
              "httpd -p 8080 -h /var/www && echo serving on :8080 && "
              "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done")


def _state(value: int, enum: object) -> str:
    return enum.Name(value).split("_", 1)[-1]  # CONTAINER_RUNNING -> RUNNING


async def run_demo(env: DevEnv, keep: bool) -> None:
    async with CRIClient(env.endpoint) as cri:
        version = await cri.wait_ready(10)
        print(f"runtime   {version.runtime_name} {version.runtime_version} "
              f"(CRI {version.runtime_api_version}) at {env.endpoint}")
        if await cri.image_status(env.busybox) is None:
            print(f"pulling   {env.busybox} from the local registry")
            await cri.pull_image(env.busybox)

        config = sandbox_config(env, "demo-web", str(uuid.uuid4()), namespace="demo")
        sandbox_id = await cri.run_pod_sandbox(config)
        cid = await cri.create_container(sandbox_id, container_config(
            config, "web", env.busybox, ["sh", "-c", WEB_SCRIPT],
            resources=pb.LinuxContainerResources(cpu_shares=256,
                                                 memory_limit_in_bytes=64 * 1024 * 1024)), config)
        await cri.start_container(cid)

        sandbox = (await cri.pod_sandbox_status(sandbox_id)).status
        print()
        print(f"{'POD':<16} {'SANDBOX':<14} {'IP':<15} {'CONTAINER':<10} {'STATE':<8} IMAGE")
        for c in await cri.list_containers(pb.ContainerFilter(pod_sandbox_id=sandbox_id)):
            print(f"{sandbox.metadata.namespace + '/' + sandbox.metadata.name:<16} "
                  f"{sandbox_id[:12]:<14} {sandbox.network.ip:<15} {c.metadata.name:<10} "
                  f"{_state(c.state, pb.ContainerState):<8} {c.image.image}")
        result = await cri.exec_sync(cid, ["wget", "-qO-", "http://127.0.0.1:8080/"], timeout=10)
        print(f"\nexec      wget http://127.0.0.1:8080/ in the pod -> {result.stdout.decode().strip()!r}")
        log_path = Path((await cri.container_status(cid)).status.log_path)
        print(f"log       {log_path}")
        for line in log_path.read_text().splitlines()[-3:]:
            print(f"          {line}")

        if keep:
            print("\nkept running; press Ctrl-C to remove the pod and stop containerd")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        await cri.stop_pod_sandbox(sandbox_id)
        await cri.remove_pod_sandbox(sandbox_id)
        print("\npod removed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the pod running until Ctrl-C")
    args = parser.parse_args(argv)
    configure_logging("text", 0)
    env = DevEnv(name="demo")
    try:
        env.up()
        asyncio.run(run_demo(env, args.keep))
    except HarnessError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        env.down()
        leaks = env.leaks()
        print("environment removed" + (f"; LEFT BEHIND: {leaks}" if leaks else ", nothing left behind"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
