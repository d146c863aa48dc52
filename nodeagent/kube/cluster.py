"""Everything the agent does with an API server, built from --kubeconfig:
the pod source, pod status and mirror pods, the Node and its Lease, events.

The agent runs the same with or without it: without an API server (or
while it is unreachable) pods keep running and the local API keeps serving;
the tasks here retry with backoff and converge once it answers again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from nodeagent.kube.client import KubeClient
from nodeagent.kube.kubeconfig import load_kubeconfig
from nodeagent.kube.node import ApiConnectionState, LeaseRenewer, NodeReporter
from nodeagent.kube.podsource import API_SOURCE, ApiPodSource
from nodeagent.kube.podstatus import PodStatusManager
from nodeagent.kube.webhookauth import WebhookAuth
from nodeagent.metrics import kubelet as metrics
from nodeagent.pods.manager import PodManager

log = structlog.get_logger("nodeagent.kube")


class Cluster:
    def __init__(self, config: Any, *, initial_node: Callable[[], Awaitable[dict[str, Any]]],
                 node_status: Callable[[dict[str, Any] | None], Awaitable[dict[str, Any]]],
                 status_changed: Callable[[dict[str, Any], dict[str, Any]], bool]) -> None:
        self.config = config
        self.connection = load_kubeconfig(config.kubeconfig)  # KubeconfigError names the file
        self.client = KubeClient(self.connection, qps=config.kube_api_qps, burst=config.kube_api_burst)
        self.client.observers.append(metrics.observe_rest_request)
        self.state = ApiConnectionState()
        self.node = NodeReporter(self.client, config.node_name, initial_node=initial_node,
                                 node_status=node_status, status_changed=status_changed,
                                 update_frequency=config.node_status_update_frequency,
                                 report_frequency=config.node_status_report_frequency,
                                 register=config.register_node, state=self.state)
        self.lease = LeaseRenewer(self.client, config.node_name, lambda: self.node.uid,
                                  duration_seconds=config.node_lease_duration_seconds, state=self.state,
                                  node_registered=self.node.registered)
        self.source: ApiPodSource | None = None
        self.status: PodStatusManager | None = None

    def attach(self, manager: PodManager) -> list[Awaitable[Any]]:
        """Wire the pod source and the status manager to the pod manager;
        returns the coroutines the agent runs."""
        self.source = ApiPodSource(self.client, self.config.node_name,
                                   lambda pods: manager.set_pods(API_SOURCE, pods))
        self.status = PodStatusManager(self.client, manager, self.source, self.config.node_name,
                                       lambda: self.node.uid)
        self.source.on_change = self.status.notify
        manager.listeners.append(self.status.notify)
        return [self.source.run(), self.status.run(), self.node.run(), self.lease.run()]

    def webhook_auth(self) -> WebhookAuth:
        c = self.config
        return WebhookAuth(self.client, authn_ttl=c.authentication_webhook_cache_ttl,
                           authorized_ttl=c.authorization_webhook_cache_authorized_ttl,
                           unauthorized_ttl=c.authorization_webhook_cache_unauthorized_ttl)

    def report(self) -> dict[str, Any]:
        out = {"server": self.connection.server, **self.state.report(),
               "nodeRegistered": self.node.registered.is_set(), "nodeUID": self.node.uid,
               "leaseRenewals": self.lease.renewals}
        if self.source is not None:
            out.update(podsSynced=self.source.synced.is_set(), podRelists=self.source.relists,
                       podResourceVersion=self.source.resource_version)
        return out

    async def close(self) -> None:
        await self.client.close()
        await asyncio.sleep(0)
