"""Making a container's image present, by its pull policy (kubelet image manager).

ImageStatus first; PullImage only when the policy asks for it. Pulls are
serialised (kubelet `serializeImagePulls: true`) and failures back off per
(pod, image) from 10 s to 300 s, reported as ErrImagePull and then
ImagePullBackOff.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from nodeagent.config import go_duration
from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError, RuntimeUnavailable
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.oci.credentials import Credential
from nodeagent.pods.backoff import ImageBackoff

log = structlog.get_logger("nodeagent.oci")


class ImageError(Exception):
    """The image is not usable now; `reason` is the container's waiting reason."""

    def __init__(self, reason: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class EnsuredImage:
    ref: str  # the runtime's image id, given to CreateContainer
    uid: int | None  # numeric user the image runs as, if numeric
    username: str


EventFunc = Callable[[str, str, str], None]


def _no_event(type_: str, reason: str, message: str) -> None:
    return None


class ImagePuller:
    def __init__(self, cri: CRIClient, *, serialize: bool = True) -> None:
        self.cri = cri
        self.backoff = ImageBackoff()
        self._lock = asyncio.Semaphore(1 if serialize else 1 << 16)
        # Seconds each pod spent waiting for and pulling images (the pod start SLI leaves it out).
        self.pulling_seconds: dict[str, float] = {}

    async def ensure(self, pod_uid: str, image: str, policy: str,
                     sandbox_config: pb.PodSandboxConfig | None = None,
                     event: EventFunc = _no_event,
                     inspected: Awaitable[pb.Image | None] | None = None,
                     credentials: Sequence[Credential] = ()) -> EnsuredImage:
        """`event(type, reason, message)` gets the kubelet image manager's
        events: Pulling, Pulled, Failed, BackOff, ErrImageNeverPull.
        `inspected`: an ImageStatus of `image` the caller started earlier.
        `credentials`: the pod's pull secrets that match the image, tried in turn."""
        present = await (inspected if inspected is not None else self.cri.image_status(image))
        if policy == "Never":
            if present is None:
                message = f'Container image "{image}" is not present with pull policy of Never'
                event("Warning", "ErrImageNeverPull", message)
                raise ImageError("ErrImageNeverPull", message, retry_after=10.0)
            event("Normal", "Pulled", f'Container image "{image}" already present on machine')
            return _ensured(present)
        if policy != "Always" and present is not None:
            event("Normal", "Pulled", f'Container image "{image}" already present on machine')
            return _ensured(present)
        key = f"{pod_uid}/{image}"
        wait = self.backoff.remaining(key)
        if wait > 0:
            event("Normal", "BackOff", f'Back-off pulling image "{image}"')
            raise ImageError("ImagePullBackOff", f'Back-off pulling image "{image}"', retry_after=wait)
        started = time.monotonic()
        event("Normal", "Pulling", f'Pulling image "{image}"')
        async with self._lock:
            pull_started = time.monotonic()
            try:
                ref = await self._pull(image, sandbox_config, credentials)
            except RuntimeUnavailable:
                raise
            except CRIError as exc:
                delay = self.backoff.failed(key)
                log.warning("image pull failed", image=image, error=exc.details or str(exc),
                            backoff=delay)
                message = f'Failed to pull image "{image}": {exc.details or exc}'
                event("Warning", "Failed", message)
                raise ImageError("ErrImagePull", message, retry_after=delay) from None
            finally:
                self.pulling_seconds[pod_uid] = (self.pulling_seconds.get(pod_uid, 0.0)
                                                 + time.monotonic() - started)
        self.backoff.succeeded(key)
        pulled = await self.cri.image_status(ref)
        done = time.monotonic()
        size = f" Image size: {pulled.size} bytes." if pulled is not None else ""
        event("Normal", "Pulled", f'Successfully pulled image "{image}" in {go_duration(done - pull_started)} '
                                  f"({go_duration(done - started)} including waiting).{size}")
        return _ensured(pulled) if pulled is not None else EnsuredImage(ref, None, "")


    async def _pull(self, image: str, sandbox_config: pb.PodSandboxConfig | None,
                    credentials: Sequence[Credential]) -> str:
        """kubelet pullImage with a keyring: each matching credential until one
        works (the last error otherwise); anonymous when none matches."""
        if not credentials:
            return await self.cri.pull_image(image, sandbox_config=sandbox_config)
        failure: CRIError | None = None
        for cred in credentials:
            # No server_address, as the kubelet sends none for secrets: containerd
            # drops credentials whose address is not a URL of the pulled host.
            auth = pb.AuthConfig(username=cred.username, password=cred.password, auth=cred.auth,
                                 identity_token=cred.identity_token, registry_token=cred.registry_token)
            try:
                return await self.cri.pull_image(image, auth=auth, sandbox_config=sandbox_config)
            except RuntimeUnavailable:
                raise
            except CRIError as exc:
                failure = exc
        assert failure is not None
        raise failure


def _ensured(image: pb.Image) -> EnsuredImage:
    uid = image.uid.value if image.HasField("uid") else None
    return EnsuredImage(image.id, uid, image.username)
