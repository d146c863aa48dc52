"""Everything the agent does with an API server, built from --kubeconfig:
the pod source, pod status and mirror pods, the Node and its Lease, events,
config objects for pods, and the kubelet API's webhook auth.

The agent runs the same with or without it: without an API server (or
while it is unreachable) pods keep running and the local API keeps serving;
the tasks here retry with backoff and converge once it answers again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError
from nodeagent.events import recorder
from nodeagent.kube.client import ApiConnectionState, ApiError, KubeClient, Unreachable
from nodeagent.kube.eventsink import EventSink
from nodeagent.kube.events import EventPipeline
from nodeagent.kube.kubeconfig import load_kubeconfig
from nodeagent.kube.objects import ApiConfigObjects
from nodeagent.kube.node import LeaseRenewer, NodeReporter
from nodeagent.kube.podsource import API_SOURCE, ApiPodSource
from nodeagent.kube.podstatus import PodStatusManager
from nodeagent.kube.webhookauth import WebhookAuth
from nodeagent.metrics import kubelet as metrics
from nodeagent.node import info
from nodeagent.node.capacity import NodeResources
from nodeagent.node.info import NodeFacts
from nodeagent.node.status import (
    RUNTIME_STATUS_PERIOD, NodeStatusBuilder, RuntimeState, initial_node, node_recorder, record_starting,
)
from nodeagent.pods.manager import PodManager
from nodeagent.waiting import wait_event

log = structlog.get_logger("nodeagent.kube")

IMAGES_PERIOD = 30.0  # the kubelet's image list cache


class Cluster:
    def __init__(self, config: Any) -> None:
        self.config = config
        self.connection = load_kubeconfig(config.kubeconfig)  # KubeconfigError names the file
        self.client = KubeClient(self.connection, qps=config.kube_api_qps, burst=config.kube_api_burst)
        self.client.observers.append(metrics.observe_rest_request)
        self.state = ApiConnectionState()
        self.config_objects = ApiConfigObjects(self.client)
        self.node: NodeReporter | None = None
        self.lease: LeaseRenewer | None = None
        self.source: ApiPodSource | None = None
        self.status: PodStatusManager | None = None
        self.events: EventSink | None = None
        self._images: list[Any] = []

    def webhook_auth(self) -> WebhookAuth:
        c = self.config
        return WebhookAuth(self.client, authn_ttl=c.authentication_webhook_cache_ttl,
                           authorized_ttl=c.authorization_webhook_cache_authorized_ttl,
                           unauthorized_ttl=c.authorization_webhook_cache_unauthorized_ttl)

    def node_uid(self) -> str | None:
        return self.node.uid if self.node is not None else None

    def attach(self, manager: PodManager, *, cri: CRIClient, facts: NodeFacts,
               capacity: Callable[[], NodeResources | None], allocatable: Callable[[], NodeResources | None],
               under_pressure: Callable[[str], bool], pleg_health: Callable[[], tuple[bool, str]],
               network_ready: Callable[[], Any] | None, port: int,
               shutdown_errors: Callable[[], list[str]] = lambda: []) -> list[Awaitable[Any]]:
        """Wire the pod source, statuses, the Node, its Lease and events to the
        agent; returns the coroutines the agent runs."""
        config, name = self.config, self.config.node_name
        runtime = RuntimeState(network_ready=network_ready)
        runtime.add_health_check("PLEG", pleg_health)
        record = node_recorder(name)
        builder = NodeStatusBuilder(node_name=name, facts=facts, port=port, capacity=capacity,
                                    allocatable=allocatable, runtime=runtime, under_pressure=under_pressure,
                                    images=lambda: self._images, record=record,
                                    apparmor_enabled=info.apparmor_enabled(), shutdown_errors=shutdown_errors)
        self.node = NodeReporter(
            self.client, name, builder=builder,
            initial_node=lambda status: initial_node(config, facts, capacity(), allocatable(),
                                                     node_labels=config.node_labels,
                                                     register_with_taints=config.register_with_taints,
                                                     status=status),
            update_frequency=config.node_status_update_frequency,
            report_frequency=config.node_status_report_frequency, register=config.register_node,
            state=self.state)
        self.lease = LeaseRenewer(self.client, name, self.node_uid,
                                  duration_seconds=config.node_lease_duration_seconds, state=self.state,
                                  node_registered=self.node.registered)
        self.source = ApiPodSource(self.client, name, lambda pods: manager.set_pods(API_SOURCE, pods),
                                   state=self.state)
        self.status = PodStatusManager(self.client, manager, self.source, name, self.node_uid)
        self.source.on_change = self.status.notify
        manager.listeners.append(self.status.notify)
        self.events = EventSink(self.client, EventPipeline(name), qps=config.event_record_qps,
                                burst=config.event_burst)
        recorder.add_sink(self.events.submit)
        record_starting(record)
        first_status = asyncio.Event()
        return [self.source.run(), self.status.run(), self._node_after(first_status), self.lease.run(),
                self.events.run(), self._runtime_status(cri, runtime, first_status), self._image_list(cri)]

    async def _node_after(self, first_status: asyncio.Event) -> None:
        """The Node's first status tells what the runtime said, not "network
        state unknown" because it was posted a moment before the first answer."""
        assert self.node is not None
        await wait_event(first_status, RUNTIME_STATUS_PERIOD)
        await self.node.run()

    async def _runtime_status(self, cri: CRIClient, runtime: RuntimeState, first: asyncio.Event) -> None:
        """The kubelet's updateRuntimeUp: CRI Status every 5 s."""
        while True:
            try:
                runtime.observe_status(await cri.status())
            except CRIError as exc:
                log.debug("runtime status failed", error=str(exc))
            first.set()
            await asyncio.sleep(RUNTIME_STATUS_PERIOD)

    async def _image_list(self, cri: CRIClient) -> None:
        while True:
            try:
                self._images = list(await cri.list_images())
            except CRIError as exc:
                log.debug("image list failed", error=str(exc))
            await asyncio.sleep(IMAGES_PERIOD)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"server": self.connection.server, **self.state.report()}
        if self.node is not None and self.lease is not None:
            out.update(nodeRegistered=self.node.registered.is_set(), nodeUID=self.node.uid,
                       leaseRenewals=self.lease.renewals)
        if self.source is not None:
            out.update(podsSynced=self.source.synced.is_set(), podRelists=self.source.relists,
                       podResourceVersion=self.source.resource_version)
        if self.events is not None:
            out.update(eventsSent=self.events.sent, eventsDropped=self.events.dropped)
        return out

    async def node_shutting_down(self) -> None:
        """Post the NotReady status at once (kubelet: syncNodeStatus when a
        shutdown begins), not at the next update period."""
        if self.node is None or not self.node.registered.is_set():
            return
        try:
            await self.node.sync()
        except (ApiError, Unreachable) as exc:
            log.warning("could not report the node shutting down", error=str(exc))

    async def flush_pod_statuses(self, timeout: float) -> None:
        """The last statuses (pods terminated for a node shutdown) reach the API
        server before the agent exits, within `timeout`."""
        if self.status is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self.status.sync_batch(self.status.pending())
        except TimeoutError:
            log.warning("pod statuses not all reported before exit", timeout=timeout)

    async def close(self) -> None:
        await self.config_objects.close()
        await self.client.close()

