"""imagePullSecrets: a private registry (real docker-registry with htpasswd
auth) and pods bound through the API server double."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from nodeagent.cri.client import CRIClient
from nodeagent.devenv.env import DevEnv
from nodeagent.devenv.registry import Registry
from tests.polling import wait_for
from tests.test_kube_agent import ClusterAgent, api_pod, api_running


def _secret(name: str, registry: str, user: str, password: str) -> dict[str, Any]:
    config = {"auths": {registry: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def _pod(name: str, image: str, secrets: list[str]) -> dict[str, Any]:
    pod = api_pod(name, image, ["sleep", "3600"], grace=0)
    pod["spec"]["containers"][0]["imagePullPolicy"] = "Always"  # every pod must prove its access
    if secrets:
        pod["spec"]["imagePullSecrets"] = [{"name": s} for s in secrets]
    return pod


def _waiting(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return statuses[0].get("state", {}).get("waiting") or {}


async def test_private_registry_needs_the_pull_secret(devenv: DevEnv, cri: CRIClient, apiserver,
                                                      tmp_path: Path) -> None:
    private = Registry(tmp_path / "private-registry", login=("puller", "s3cret"))
    private.start()
    agent = ClusterAgent(devenv, tmp_path, apiserver)
    image = None
    try:
        image = private.copy_image(devenv.busybox, "team/busybox", "1")
        apiserver.create(_secret("regcred", private.host, "puller", "s3cret"))
        apiserver.create(_secret("wrongcred", private.host, "puller", "guess"))
        agent.start()
        apiserver.create(_pod("with-secret", image, ["wrongcred", "regcred"]))  # the working one is found
        apiserver.create(_pod("without", image, []))
        apiserver.create(_pod("missing-secret", image, ["nosuch"]))
        await agent.wait_api("with-secret", api_running)

        for name in ("without", "missing-secret"):
            pod = await agent.wait_api(name, lambda p: _waiting(p).get("reason") in ("ErrImagePull", "ImagePullBackOff"),
                                       what=f"{name} refused by the registry")
            assert (pod.get("status") or {}).get("phase") == "Pending"

        def events(name: str) -> dict[str, dict[str, Any]]:
            return {e["reason"]: e for e in apiserver.list("v1", "Event", "default")
                    if e["involvedObject"].get("name") == name}

        found = await wait_for(lambda: events("missing-secret").get("FailedToRetrieveImagePullSecret"), 30, 0.2,
                               "the missing secret's event")
        assert found["type"] == "Warning"
        assert found["message"] == ("Unable to retrieve some image pull secrets (nosuch); "
                                    "attempting to pull the image may not succeed.")
        def pull_failures() -> list[dict[str, Any]]:
            return [e for e in apiserver.list("v1", "Event", "default") if e["involvedObject"].get("name") == "without"
                    and e["reason"] == "Failed" and e["message"].startswith(f'Failed to pull image "{image}"')]

        failed = await wait_for(pull_failures, 30, 0.2, "the failed pull's event")
        assert "401 Unauthorized" in failed[0]["message"]
    finally:
        agent.stop()
        private.stop()
        devenv.reset(tmp_path)
        if image is not None:
            # The private name is devenv.busybox's image under a second name, and
            # containerd reports a container's image by the image's first name:
            # later tests would see this one. RemoveImage drops every name, so
            # busybox is pulled back.
            await cri.remove_image(image)
            await cri.pull_image(devenv.busybox)
