"""The observability half of the composition root: stats, metrics and their
HTTP routes, built from the agent's config so agent.py stays a short list
of start/stop steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nodeagent.config import AgentConfig
from nodeagent.cri.client import CRIClient
from nodeagent.metrics import kubelet as metrics
from nodeagent.metrics.node import NodeCollector
from nodeagent.metrics.stats import StatsProvider
from nodeagent.server.metrics import MetricsRoutes

_node_collector: NodeCollector | None = None


class Observability:
    def __init__(self, cri: CRIClient, node_name: str, config: AgentConfig, executor: Any,
                 runtime_counts: Callable[[], tuple[int, dict[str, int]]]) -> None:
        global _node_collector
        self.stats = StatsProvider(cri, executor=executor)
        self.routes = MetricsRoutes(self.stats, node_name=node_name, executor=executor)
        metrics.set_runtime_counts(runtime_counts)
        if _node_collector is None:
            _node_collector = NodeCollector([config.root_dir, config.pod_logs_dir])
            metrics.REGISTRY.register(_node_collector)
