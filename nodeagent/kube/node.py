"""The Node object and its Lease (the kubelet's node status manager and
nodelease controller).

Registration creates the Node or adopts the existing one of the same name.
Status is computed every nodeStatusUpdateFrequency and patched (a two-way
strategic merge patch of the status subresource) when it changed or when
nodeStatusReportFrequency passed since the last report. The Lease in
kube-node-lease is renewed every leaseDuration/4 and is the node's
heartbeat; it is owned by the Node so it goes with it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import structlog

from nodeagent.kube.client import ApiError, KubeClient, Unreachable, describe
from nodeagent.kube.strategicpatch import two_way

log = structlog.get_logger("nodeagent.kube.node")

LEASE_NAMESPACE = "kube-node-lease"
RENEW_FRACTION = 0.25  # kubelet nodeLeaseRenewIntervalFraction
MAX_BACKOFF = 7.0  # kubelet lease controller maxBackoff


def node_path(name: str = "", sub: str = "") -> str:
    return "/api/v1/nodes" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def lease_path(name: str = "") -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases" + (f"/{name}" if name else "")


def micro_time(now: float) -> str:
    """metav1.MicroTime as the API prints it."""
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiConnectionState:
    """What the agent knows about its API server connection, for logs and /nodeagent/node."""

    def __init__(self) -> None:
        self.connected = False
        self.last_error = ""

    def ok(self) -> None:
        if not self.connected:
            log.info("API server reachable", previous_error=self.last_error or None)
        self.connected, self.last_error = True, ""

    def failed(self, what: str, exc: Exception) -> None:
        message = f"{what}: {describe(exc)}"
        if self.connected or message != self.last_error:  # log on change, not on every retry
            denied = isinstance(exc, ApiError) and exc.denied
            (log.error if denied else log.warning)("API server request failed; retrying", error=message)
        self.connected, self.last_error = False, message

    def report(self) -> dict[str, Any]:
        return {"connected": self.connected, "lastError": self.last_error}


NodeBuilder = Callable[[], Awaitable[dict[str, Any]]]
StatusBuilder = Callable[[dict[str, Any] | None], Awaitable[dict[str, Any]]]


class NodeReporter:
    def __init__(self, client: KubeClient, node_name: str, *, initial_node: NodeBuilder,
                 node_status: StatusBuilder, status_changed: Callable[[dict[str, Any], dict[str, Any]], bool],
                 update_frequency: float = 10.0, report_frequency: float = 300.0, register: bool = True,
                 state: ApiConnectionState | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.client = client
        self.node_name = node_name
        self.initial_node = initial_node
        self.node_status = node_status
        self.status_changed = status_changed
        self.update_frequency = update_frequency
        self.report_frequency = report_frequency
        self.register = register
        self.state = state or ApiConnectionState()
        self.node: dict[str, Any] | None = None  # the Node as the API server last returned it
        self.registered = asyncio.Event()
        self._last_report = 0.0
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._kick = asyncio.Event()

    @property
    def uid(self) -> str | None:
        return (self.node or {}).get("metadata", {}).get("uid")

    def update_now(self) -> None:
        """Something the status shows changed (runtime down, pressure): do not wait 10 s."""
        self._kick.set()

    async def run(self) -> None:
        delay = 0.5
        while not self.registered.is_set():
            try:
                await self._register()
                self.state.ok()
            except (ApiError, Unreachable) as exc:
                self.state.failed("registering the node", exc)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, MAX_BACKOFF)
        while True:
            try:
                if await self.sync():
                    self.state.ok()
            except (ApiError, Unreachable) as exc:
                self.state.failed("updating node status", exc)
            try:
                await asyncio.wait_for(self._kick.wait(), self.update_frequency)
            except TimeoutError:
                pass
            self._kick.clear()

    async def _register(self) -> None:
        if not self.register:
            self.node = await self.client.get(node_path(self.node_name))
            self.registered.set()
            return
        body = await self.initial_node()
        try:
            self.node = await self.client.create(node_path(), body)
            log.info("node registered", node=self.node_name, node_uid=self.uid)
        except ApiError as exc:
            if not exc.conflict:
                raise
            self.node = await self.client.get(node_path(self.node_name))
            log.info("node already registered; adopting it", node=self.node_name, node_uid=self.uid)
            await self._reconcile_existing(body)
        self.registered.set()
        self._last_report = 0.0

    async def _reconcile_existing(self, wanted: dict[str, Any]) -> None:
        """kubelet reconcileExtendedResource/updateDefaultLabels: the labels the
        agent sets itself follow this host (os/arch/hostname, --node-labels)."""
        assert self.node is not None
        labels = self.node.get("metadata", {}).get("labels") or {}
        missing = {k: v for k, v in (wanted.get("metadata", {}).get("labels") or {}).items() if labels.get(k) != v}
        if missing:
            self.node = await self.client.patch(node_path(self.node_name),
                                                {"metadata": {"labels": missing}})

    async def sync(self) -> bool:
        """Compute the status; patch it when it changed or the report period
        passed. True when the API server was written to."""
        assert self.node is not None
        previous = self.node.get("status") or {}
        status = await self.node_status(previous)
        now = self._clock()
        due = now - self._last_report >= self.report_frequency
        if not due and not self.status_changed(previous, status):
            return
        patch = two_way({"status": previous}, {"status": status})
        if not patch:
            self._last_report = now
            return
        try:
            self.node = await self.client.patch(node_path(self.node_name, "status"), patch)
        except ApiError as exc:
            if exc.not_found:  # someone deleted the Node: register it again
                log.warning("node object was deleted; registering again", node=self.node_name)
                self.registered.clear()
                await self._register()
                return
            raise
        self._last_report = now


class LeaseRenewer:
    def __init__(self, client: KubeClient, node_name: str, node_uid: Callable[[], str | None], *,
                 duration_seconds: int = 40, state: ApiConnectionState | None = None,
                 node_registered: asyncio.Event | None = None,
                 wall: Callable[[], float] | None = None) -> None:
        self.client = client
        self.node_registered = node_registered
        self.node_name = node_name
        self.node_uid = node_uid
        self.duration = duration_seconds
        self.interval = duration_seconds * RENEW_FRACTION
        self.state = state or ApiConnectionState()
        self.lease: dict[str, Any] | None = None
        self.renewals = 0
        self._wall = wall or time.time

    def _body(self) -> dict[str, Any]:
        now = micro_time(self._wall())
        meta: dict[str, Any] = {"name": self.node_name, "namespace": LEASE_NAMESPACE}
        uid = self.node_uid()
        if uid:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": uid}]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": self.duration,
                         "renewTime": now}}

    async def run(self) -> None:
        if self.node_registered is not None:
            # The first Lease carries its owner when the Node comes soon; the
            # heartbeat must not wait longer than one renew interval for it.
            try:
                await asyncio.wait_for(self.node_registered.wait(), self.interval)
            except TimeoutError:
                pass
        delay = 0.2
        while True:
            try:
                await self.renew()
                self.state.ok()
                delay = 0.2
                await asyncio.sleep(self.interval)
            except (ApiError, Unreachable) as exc:
                self.state.failed("renewing the node lease", exc)
                await asyncio.sleep(min(delay, self.interval))
                delay = min(delay * 2, MAX_BACKOFF)

    async def renew(self, *, retry: bool = True) -> None:
        wanted = self._body()
        if self.lease is None:
            try:
                self.lease = await self.client.get(lease_path(self.node_name))
            except ApiError as exc:
                if not exc.not_found:
                    raise
                self.lease = await self.client.create(lease_path(), wanted)
                self.renewals += 1
                return
        body = dict(self.lease)
        meta = dict(body.get("metadata") or {})
        if "ownerReferences" in wanted["metadata"] and not meta.get("ownerReferences"):
            meta["ownerReferences"] = wanted["metadata"]["ownerReferences"]
        body["metadata"] = meta
        body["spec"] = dict(body.get("spec") or {}, **wanted["spec"])
        try:
            self.lease = await self.client.replace(lease_path(self.node_name), body)
            self.renewals += 1
        except ApiError as exc:
            if (exc.conflict or exc.not_found) and retry:
                self.lease = None  # someone else wrote it: read it again and retry at once
                await self.renew(retry=False)
                return
            raise
