"""Lifecycle hooks: postStart and preStop handlers (kubelet lifecycle/handlers.go).

A hook fails only when it could not be carried out: exec exiting non-zero,
an HTTP connection error (the status code is ignored), an unsupported
handler. Timing (preStop sharing the grace period, postStart blocking the
container's start) is the pod worker's; this module runs one handler.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from nodeagent.api.types import Container, LifecycleHandler
from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError
from nodeagent.probes import handlers

MIN_GRACE_AFTER_PRESTOP = 2  # kubelet minimumGracePeriodInSeconds


class HookError(Exception):
    pass


async def run_hook(handler: LifecycleHandler, *, cri: CRIClient, container: Container,
                   container_id: str, pod_ip: str) -> str:
    """Run one handler to completion; returns the exec output (for the log),
    raises HookError with the kubelet's message otherwise."""
    if handler.exec is not None:
        command = handler.exec.command
        try:
            result = await cri.exec_sync(container_id, command)
        except CRIError as exc:
            raise HookError(f"command {' '.join(command)!r} failed: {exc.details or exc}") from None
        output = (result.stdout + result.stderr)[:handlers.MAX_BODY].decode(errors="replace")
        if result.exit_code != 0:
            raise HookError(f"command {' '.join(command)!r} exited with {result.exit_code}: {output}")
        return output
    if handler.http_get is not None:
        await _http_hook(handler, container, pod_ip)
        return ""
    if handler.sleep is not None:
        await asyncio.sleep(handler.sleep.seconds)
        return ""
    raise HookError("invalid handler: tcpSocket is not supported in lifecycle hooks")


async def _http_hook(handler: LifecycleHandler, container: Container, pod_ip: str) -> None:
    action = handler.http_get
    assert action is not None
    host = action.host or pod_ip
    if not host:
        raise HookError("failed to find networking container IP for the pod")
    try:
        port = handlers.resolve_port(action.port, container)
    except handlers.PortError as exc:
        raise HookError(str(exc)) from None
    url = handlers.build_url(action, host, port)
    headers = handlers.request_headers(action)
    try:
        await handlers.http_get(url, headers)
    except ssl.SSLError:
        if not url.startswith("https://"):
            raise HookError(f'Get "{url}": TLS error') from None
        # kubelet: an HTTPS hook answered in plain HTTP is retried over HTTP.
        url = "http://" + url[len("https://"):]
        try:
            await handlers.http_get(url, headers)
        except (OSError, ValueError) as exc:
            raise HookError(f'Get "{url}": {exc}') from None
    except (OSError, ValueError) as exc:
        raise HookError(f'Get "{url}": {exc}') from None


async def run_pre_stop(handler: LifecycleHandler, grace: int, *, cri: CRIClient,
                       container: Container, container_id: str, pod_ip: str) -> tuple[int, str]:
    """kubelet executePreStopHook + the rule after it: the hook may use up the
    grace period (it is abandoned then), and the container still gets at
    least 2 s after its stop signal. Returns (seconds left for StopContainer,
    error message or "")."""
    start = time.monotonic()
    error = ""
    try:
        await asyncio.wait_for(run_hook(handler, cri=cri, container=container,
                                        container_id=container_id, pod_ip=pod_ip), grace)
    except TimeoutError:
        error = "PreStop hook not completed in grace period"
    except HookError as exc:
        error = str(exc)
    used = int(time.monotonic() - start)  # the kubelet counts whole seconds
    return max(grace - used, MIN_GRACE_AFTER_PRESTOP), error
