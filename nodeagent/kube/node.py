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
from collections.abc import Callable
from typing import Any

import structlog

from nodeagent.api.codec import DecodeError, decode, encode
from nodeagent.api.node import Lease, Node, NodeSpec, NodeStatus
from nodeagent.kube.client import ApiConnectionState, ApiError, KubeClient, Unreachable
from nodeagent.kube.strategicpatch import two_way
from nodeagent.node.status import (
    NodeStatusBuilder, ReportSchedule, lease, lease_renew_interval, renew_lease, status_changed,
)
from nodeagent.waiting import wait_event

log = structlog.get_logger("nodeagent.kube.node")

LEASE_NAMESPACE = "kube-node-lease"
MAX_BACKOFF = 7.0  # kubelet lease controller maxBackoff


def node_path(name: str = "", sub: str = "") -> str:
    return "/api/v1/nodes" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def lease_path(name: str = "") -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases" + (f"/{name}" if name else "")


class NodeReporter:
    def __init__(self, client: KubeClient, node_name: str, *, builder: NodeStatusBuilder,
                 initial_node: Callable[[NodeStatus], Node], update_frequency: float = 10.0,
                 report_frequency: float = 300.0, register: bool = True,
                 state: ApiConnectionState | None = None) -> None:
        self.client = client
        self.node_name = node_name
        self.builder = builder
        self.initial_node = initial_node
        self.update_frequency = update_frequency
        self.schedule = ReportSchedule(report_frequency=report_frequency)
        self.register = register
        self.state = state or ApiConnectionState()
        self.node: dict[str, Any] | None = None  # the Node as the API server last returned it
        self.registered = asyncio.Event()

    @property
    def uid(self) -> str | None:
        return (self.node or {}).get("metadata", {}).get("uid")

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
            await asyncio.sleep(self.update_frequency)

    def _adopt(self, node: dict[str, Any]) -> None:
        self.node = node
        try:
            self.builder.observe_spec(decode(NodeSpec, node.get("spec") or {}))
        except DecodeError:
            pass

    async def _register(self) -> None:
        if not self.register:
            self._adopt(await self.client.get(node_path(self.node_name)))
            self.registered.set()
            return
        wanted = encode(self.initial_node(self.builder.build(None)))
        try:
            self._adopt(await self.client.create(node_path(), wanted))
            log.info("node registered", node=self.node_name, node_uid=self.uid)
        except ApiError as exc:
            if not exc.conflict:
                raise
            self._adopt(await self.client.get(node_path(self.node_name)))
            log.info("node already registered; adopting it", node=self.node_name, node_uid=self.uid)
            await self._reconcile_existing(wanted)
        self.registered.set()
        self.schedule.last_report = None  # report the full status at once

    async def _reconcile_existing(self, wanted: dict[str, Any]) -> None:
        """kubelet updateDefaultLabels: the labels the agent sets itself
        follow this host (os/arch/hostname, --node-labels)."""
        assert self.node is not None
        labels = self.node.get("metadata", {}).get("labels") or {}
        missing = {k: v for k, v in (wanted.get("metadata", {}).get("labels") or {}).items() if labels.get(k) != v}
        if missing:
            self._adopt(await self.client.patch(node_path(self.node_name), {"metadata": {"labels": missing}}))

    async def sync(self) -> bool:
        """Compute the status; patch it when it changed or the report period
        passed. True when the API server was written to."""
        assert self.node is not None
        previous_json = self.node.get("status") or {}
        try:
            previous: NodeStatus | None = decode(NodeStatus, previous_json)
        except DecodeError:
            previous = None
        new = self.builder.build(previous)
        changed = status_changed(previous, new)
        now = time.monotonic()
        if not self.schedule.should_patch(changed, now):
            return False
        wanted = dict(previous_json)  # fields the agent does not know stay as they are
        wanted.update(encode(new))
        patch = two_way({"status": previous_json}, {"status": wanted})
        if patch:
            try:
                self._adopt(await self.client.patch(node_path(self.node_name, "status"), patch))
            except ApiError as exc:
                if exc.not_found:  # someone deleted the Node: register it again
                    log.warning("node object was deleted; registering again", node=self.node_name)
                    self.registered.clear()
                    await self._register()
                    return True
                raise
        self.schedule.reported(changed, now)
        return bool(patch)


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
        self.interval = lease_renew_interval(duration_seconds)
        self.state = state or ApiConnectionState()
        self.lease: dict[str, Any] | None = None
        self.renewals = 0
        self._wall = wall or time.time

    async def run(self) -> None:
        if self.node_registered is not None:
            # The first Lease carries its owner when the Node comes soon; the
            # heartbeat must not wait longer than one renew interval for it.
            await wait_event(self.node_registered, self.interval)
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
        uid = self.node_uid() or ""
        if self.lease is None:
            try:
                self.lease = await self.client.get(lease_path(self.node_name))
            except ApiError as exc:
                if not exc.not_found:
                    raise
                created = lease(self.node_name, uid, self.duration, now=self._wall())
                self.lease = await self.client.create(lease_path(), encode(created))
                self.renewals += 1
                return
        try:
            current = decode(Lease, self.lease)
        except DecodeError:
            current = lease(self.node_name, uid, self.duration, now=self._wall())
        renewed = renew_lease(current, self.node_name, uid, now=self._wall())
        renewed.spec.holder_identity = self.node_name
        renewed.spec.lease_duration_seconds = self.duration
        try:
            self.lease = await self.client.replace(lease_path(self.node_name), encode(renewed))
            self.renewals += 1
        except ApiError as exc:
            if (exc.conflict or exc.not_found) and retry:
                self.lease = None  # someone else wrote it: read it again and retry at once
                await self.renew(retry=False)
                return
            raise
