"""Asyncio CRI v1 client (RuntimeService + ImageService) over a unix socket.

Deadlines follow the kubelet's remote runtime client (v1.31): every call gets
`--runtime-request-timeout` (default 2m), except PullImage (no deadline unless
given, the runtime bounds it), ExecSync and StopContainer (their own timeout
plus the request timeout, so the runtime has time to clean up).

Read-only calls are retried a few times on UNAVAILABLE, so a runtime restart
between two relists is invisible; mutating calls are never retried here: the
pod worker's next sync decides again from observed state.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import structlog

from nodeagent.cri import errors
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.cri.pb import api_pb2_grpc as pb_grpc

log = structlog.get_logger("nodeagent.cri")

# What the kubelet sends in VersionRequest.version (kuberuntime kubeRuntimeAPIVersion).
KUBE_RUNTIME_API_VERSION = "0.1.0"
REQUIRED_RUNTIME_API_VERSION = "v1"
DEFAULT_REQUEST_TIMEOUT = 120.0  # kubelet runtimeRequestTimeout
MAX_MSG_SIZE = 16 * 1024 * 1024  # kubelet's maxMsgSize for CRI

# Observer hook: (method, seconds, error type name or None). Metrics attach here.
CallObserver = Callable[[str, float, str | None], None]

# Sentinel: "use the client's --runtime-request-timeout" (None means no deadline).
_REQUEST_TIMEOUT = object()


def socket_path(endpoint: str) -> str:
    """Accept kubelet-style `unix:///run/x.sock` as well as a bare path."""
    if endpoint.startswith("unix://"):
        return endpoint[len("unix://"):]
    if "://" in endpoint:
        raise errors.InvalidRequestError(
            f"unsupported runtime endpoint {endpoint!r}: only unix:// sockets are supported")
    return endpoint


@dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


@dataclass(frozen=True)
class RuntimeVersion:
    version: str
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


class _Service:
    """One channel to one socket, with error mapping and deadlines."""

    def __init__(self, endpoint: str, request_timeout: float,
                 observers: list[CallObserver]) -> None:
        self.endpoint = endpoint
        self.path = socket_path(endpoint)
        self.request_timeout = request_timeout
        self._observers = observers
        self.channel = grpc.aio.insecure_channel(
            f"unix://{self.path}",
            options=[
                ("grpc.max_receive_message_length", MAX_MSG_SIZE),
                ("grpc.max_send_message_length", MAX_MSG_SIZE),
                # Reconnect quickly after a runtime restart instead of grpc's
                # default 1s→120s backoff, which would stall the next sync.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 2000),
                ("grpc.min_reconnect_backoff_ms", 100),
            ],
        )

    async def call(self, stub_method: Any, name: str, request: Any, *,
                   timeout: float | None, retries: int = 0) -> Any:
        attempt = 0
        while True:
            start = time.monotonic()
            try:
                response = await stub_method(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                err = errors.from_rpc_error(exc, method=name, endpoint=self.endpoint)
                self._observe(name, time.monotonic() - start, type(err).__name__)
                if isinstance(err, errors.RuntimeUnavailable) and attempt < retries:
                    attempt += 1
                    await asyncio.sleep(min(0.2 * 2 ** (attempt - 1), 1.0))
                    continue
                raise err from None
            self._observe(name, time.monotonic() - start, None)
            return response

    def _observe(self, name: str, seconds: float, error: str | None) -> None:
        log.debug("cri call", method=name, ms=round(seconds * 1000, 1), error=error)
        for observer in self._observers:
            observer(name, seconds, error)

    async def close(self) -> None:
        await self.channel.close()


class CRIClient:
    """Client for one CRI runtime (and optionally a separate image service)."""

    READ_RETRIES = 3

    def __init__(self, runtime_endpoint: str, image_endpoint: str | None = None, *,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.observers: list[CallObserver] = []
        self._runtime = _Service(runtime_endpoint, request_timeout, self.observers)
        if image_endpoint and socket_path(image_endpoint) != self._runtime.path:
            self._images = _Service(image_endpoint, request_timeout, self.observers)
        else:
            self._images = self._runtime
        self.runtime_stub = pb_grpc.RuntimeServiceStub(self._runtime.channel)
        self.image_stub = pb_grpc.ImageServiceStub(self._images.channel)
        self.request_timeout = request_timeout

    @property
    def endpoint(self) -> str:
        return self._runtime.endpoint

    @property
    def runtime_channel(self) -> grpc.aio.Channel:
        """For the runtime's own APIs on the same socket (containerd's events)."""
        return self._runtime.channel

    async def close(self) -> None:
        await self._runtime.close()
        if self._images is not self._runtime:
            await self._images.close()

    async def __aenter__(self) -> CRIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing ---------------------------------------------------------

    async def _call(self, service: _Service, stub: Any, name: str, request: Any, *,
                    timeout: float | None | object = _REQUEST_TIMEOUT, read: bool = False) -> Any:
        return await service.call(
            getattr(stub, name), name, request,
            timeout=self.request_timeout if timeout is _REQUEST_TIMEOUT else timeout,
            retries=self.READ_RETRIES if read else 0)

    def _rt(self, name: str, request: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return self._call(self._runtime, self.runtime_stub, name, request, **kwargs)

    def _img(self, name: str, request: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return self._call(self._images, self.image_stub, name, request, **kwargs)

    # -- start-up ---------------------------------------------------------

    async def wait_ready(self, timeout: float = 60.0, *, probe_timeout: float = 2.0) -> RuntimeVersion:
        """Wait for the runtime socket with backoff, then check it speaks CRI v1.

        Gives up with a typed error that says what is wrong: missing socket,
        not a socket, not CRI, wrong API version, or no answer.
        """
        deadline = time.monotonic() + timeout
        delay = 0.05
        last: errors.CRIError | None = None
        logged_wait = False
        for service in {id(s): s for s in (self._runtime, self._images)}.values():
            while True:
                try:
                    mode = os.stat(service.path).st_mode
                except FileNotFoundError:
                    last = errors.RuntimeUnavailable(
                        f"{service.endpoint}: socket {service.path} does not exist "
                        "(is the container runtime running?)", endpoint=service.endpoint)
                else:
                    if not stat.S_ISSOCK(mode):
                        raise errors.NotCRIEndpoint(
                            f"{service.endpoint}: {service.path} is not a unix socket",
                            endpoint=service.endpoint)
                    try:
                        if service is self._runtime:
                            version = await self._check_version(probe_timeout)
                        else:
                            await self._img("ImageFsInfo", pb.ImageFsInfoRequest(),
                                            timeout=probe_timeout)
                        break
                    except (errors.RuntimeUnavailable, errors.DeadlineExceeded) as exc:
                        last = exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._give_up(service, last, timeout)
                if not logged_wait and timeout - remaining > 1.0:  # quiet on a normal start
                    log.info("waiting for container runtime", endpoint=service.endpoint,
                             reason=str(last))
                    logged_wait = True
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)
        return version

    def _give_up(self, service: _Service, last: errors.CRIError | None,
                 timeout: float) -> errors.CRIError:
        detail = str(last) if last else "no answer"
        answered = last is not None and os.path.exists(service.path) and not any(
            marker in (last.details or "").lower()
            for marker in ("connection refused", "no such file"))
        if answered:
            return errors.NotCRIEndpoint(
                f"{service.endpoint}: something listens on {service.path} but it did not answer "
                f"CRI runtime.v1 within {timeout:g}s: {detail}",
                endpoint=service.endpoint, details=last.details if last else "")
        return errors.RuntimeUnavailable(
            f"gave up after {timeout:g}s waiting for the container runtime: {detail}",
            endpoint=service.endpoint, details=last.details if last else "")

    async def _check_version(self, probe_timeout: float) -> RuntimeVersion:
        version = await self.version(timeout=probe_timeout)
        if version.runtime_api_version != REQUIRED_RUNTIME_API_VERSION:
            raise errors.UnsupportedRuntime(
                f"{self.endpoint}: {version.runtime_name} {version.runtime_version} reports CRI "
                f"API {version.runtime_api_version!r}; nodeagent needs "
                f"{REQUIRED_RUNTIME_API_VERSION!r} (containerd >= 1.6 or CRI-O >= 1.23)",
                method="Version", endpoint=self.endpoint)
        return version

    # -- RuntimeService ---------------------------------------------------

    async def version(self, *, timeout: float | None | object = _REQUEST_TIMEOUT) -> RuntimeVersion:
        resp = await self._rt("Version", pb.VersionRequest(version=KUBE_RUNTIME_API_VERSION),
                              timeout=timeout, read=True)
        return RuntimeVersion(resp.version, resp.runtime_name, resp.runtime_version,
                              resp.runtime_api_version)

    async def status(self, verbose: bool = False) -> pb.StatusResponse:
        return await self._rt("Status", pb.StatusRequest(verbose=verbose), read=True)

    async def runtime_config(self) -> pb.RuntimeConfigResponse:
        """The runtime's cgroup driver (CRI 1.28+; containerd 1.6 lacks it and
        answers UNIMPLEMENTED, raised as NotCRIEndpoint)."""
        return await self._rt("RuntimeConfig", pb.RuntimeConfigRequest(), read=True)

    async def run_pod_sandbox(self, config: pb.PodSandboxConfig, runtime_handler: str = "") -> str:
        resp = await self._rt("RunPodSandbox", pb.RunPodSandboxRequest(
            config=config, runtime_handler=runtime_handler))
        return resp.pod_sandbox_id

    async def stop_pod_sandbox(self, pod_sandbox_id: str) -> None:
        await self._rt("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=pod_sandbox_id))

    async def remove_pod_sandbox(self, pod_sandbox_id: str) -> None:
        await self._rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod_sandbox_id))

    async def pod_sandbox_status(self, pod_sandbox_id: str,
                                 verbose: bool = False) -> pb.PodSandboxStatusResponse:
        return await self._rt("PodSandboxStatus", pb.PodSandboxStatusRequest(
            pod_sandbox_id=pod_sandbox_id, verbose=verbose), read=True)

    async def list_pod_sandbox(self, filter: pb.PodSandboxFilter | None = None) -> list[pb.PodSandbox]:
        resp = await self._rt("ListPodSandbox", pb.ListPodSandboxRequest(filter=filter), read=True)
        return list(resp.items)

    async def create_container(self, pod_sandbox_id: str, config: pb.ContainerConfig,
                               sandbox_config: pb.PodSandboxConfig) -> str:
        resp = await self._rt("CreateContainer", pb.CreateContainerRequest(
            pod_sandbox_id=pod_sandbox_id, config=config, sandbox_config=sandbox_config))
        return resp.container_id

    async def start_container(self, container_id: str) -> None:
        await self._rt("StartContainer", pb.StartContainerRequest(container_id=container_id))

    async def stop_container(self, container_id: str, timeout: int) -> None:
        """Stop with a grace period of `timeout` seconds (SIGTERM, then SIGKILL)."""
        await self._rt("StopContainer", pb.StopContainerRequest(
            container_id=container_id, timeout=timeout),
            timeout=self.request_timeout + max(timeout, 0))

    async def remove_container(self, container_id: str) -> None:
        await self._rt("RemoveContainer", pb.RemoveContainerRequest(container_id=container_id))

    async def list_containers(self, filter: pb.ContainerFilter | None = None) -> list[pb.Container]:
        resp = await self._rt("ListContainers", pb.ListContainersRequest(filter=filter), read=True)
        return list(resp.containers)

    async def container_status(self, container_id: str,
                               verbose: bool = False) -> pb.ContainerStatusResponse:
        return await self._rt("ContainerStatus", pb.ContainerStatusRequest(
            container_id=container_id, verbose=verbose), read=True)

    async def update_container_resources(self, container_id: str,
                                         linux: pb.LinuxContainerResources) -> None:
        await self._rt("UpdateContainerResources", pb.UpdateContainerResourcesRequest(
            container_id=container_id, linux=linux))

    async def reopen_container_log(self, container_id: str) -> None:
        await self._rt("ReopenContainerLog", pb.ReopenContainerLogRequest(container_id=container_id))

    async def exec_sync(self, container_id: str, cmd: Sequence[str],
                        timeout: float = 0) -> ExecResult:
        """Run `cmd` in the container; `timeout` (s, 0 = none) bounds the command itself."""
        request = pb.ExecSyncRequest(container_id=container_id, cmd=list(cmd),
                                     timeout=int(timeout))
        resp = await self._rt("ExecSync", request,
                              timeout=self.request_timeout + timeout if timeout else None)
        return ExecResult(resp.stdout, resp.stderr, resp.exit_code)

    async def container_stats(self, container_id: str) -> pb.ContainerStats:
        resp = await self._rt("ContainerStats", pb.ContainerStatsRequest(container_id=container_id),
                              read=True)
        return resp.stats

    async def list_container_stats(self, filter: pb.ContainerStatsFilter | None = None
                                   ) -> list[pb.ContainerStats]:
        resp = await self._rt("ListContainerStats", pb.ListContainerStatsRequest(filter=filter),
                              read=True)
        return list(resp.stats)

    async def pod_sandbox_stats(self, pod_sandbox_id: str) -> pb.PodSandboxStats:
        resp = await self._rt("PodSandboxStats", pb.PodSandboxStatsRequest(
            pod_sandbox_id=pod_sandbox_id), read=True)
        return resp.stats

    async def list_pod_sandbox_stats(self, filter: pb.PodSandboxStatsFilter | None = None
                                     ) -> list[pb.PodSandboxStats]:
        resp = await self._rt("ListPodSandboxStats", pb.ListPodSandboxStatsRequest(filter=filter),
                              read=True)
        return list(resp.stats)

    # -- ImageService -----------------------------------------------------

    async def image_status(self, image: str, verbose: bool = False) -> pb.Image | None:
        """The image as the runtime knows it, or None when it is not present."""
        resp = await self._img("ImageStatus", pb.ImageStatusRequest(
            image=pb.ImageSpec(image=image), verbose=verbose), read=True)
        return resp.image if resp.HasField("image") and resp.image.id else None

    async def pull_image(self, image: str, *, auth: pb.AuthConfig | None = None,
                         sandbox_config: pb.PodSandboxConfig | None = None,
                         timeout: float | None = None) -> str:
        """Pull and return the image reference the runtime resolved (usually a digest)."""
        resp = await self._img("PullImage", pb.PullImageRequest(
            image=pb.ImageSpec(image=image), auth=auth, sandbox_config=sandbox_config),
            timeout=timeout)
        return resp.image_ref

    async def list_images(self, filter: pb.ImageFilter | None = None) -> list[pb.Image]:
        resp = await self._img("ListImages", pb.ListImagesRequest(filter=filter), read=True)
        return list(resp.images)

    async def remove_image(self, image: str) -> None:
        await self._img("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image=image)))

    async def image_fs_info(self) -> pb.ImageFsInfoResponse:
        return await self._img("ImageFsInfo", pb.ImageFsInfoRequest(), read=True)
