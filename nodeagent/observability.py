"""The observability half of the composition root: stats, metrics and their
HTTP routes, built from the agent's config so agent.py stays a short list
of start/stop steps."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import Pod
from nodeagent.config import AgentConfig, ConfigError
from nodeagent.cri.client import CRIClient
from nodeagent.logs.rotation import LogRotator
from nodeagent.metrics import kubelet as metrics
from nodeagent.metrics.node import NodeCollector
from nodeagent.metrics.stats import StatsProvider
from nodeagent.kube.webhookauth import WebhookAuth
from nodeagent.server.auth import AuthError, Authenticator, User, load_token_file, server_ssl_context
from nodeagent.server.local import HealthCheck, SecureListener
from nodeagent.server.logs import ContainerLogs
from nodeagent.server.metrics import MetricsRoutes
from nodeagent.server.tlscert import ensure_self_signed

_node_collector: NodeCollector | None = None


class Observability:
    def __init__(self, cri: CRIClient, node_name: str, config: AgentConfig, executor: Any,
                 runtime_counts: Callable[[], tuple[int, dict[str, int]]],
                 checks: Callable[[], list[HealthCheck]] | None = None) -> None:
        global _node_collector
        self.cri, self.node_name, self.config, self.executor = cri, node_name, config, executor
        self.stats = StatsProvider(cri, executor=executor)
        self.routes = MetricsRoutes(self.stats, node_name=node_name, executor=executor,
                                    checks=checks)
        metrics.set_runtime_counts(runtime_counts)
        self.rotator = LogRotator(cri, max_size=Quantity(config.container_log_max_size).value(),
                                  max_files=config.container_log_max_files,
                                  interval=config.container_log_monitor_interval, executor=executor)
        self._tls: ssl.SSLContext | None = None  # the kubelet API's, reloaded on SIGHUP
        self._auth: Authenticator | None = None
        self._node_ips: Sequence[str] = ()
        if _node_collector is None:
            _node_collector = NodeCollector([config.root_dir, config.pod_logs_dir])
            metrics.REGISTRY.register(_node_collector)

    def secure_listener(self, pods: Callable[[], list[Pod]], node_ips: Sequence[str],
                        webhook: WebhookAuth | None = None) -> SecureListener | None:
        """The kubelet API on --port; ConfigError when its TLS/auth files are unusable."""
        config = self.config
        if config.port == 0:
            return None
        self._node_ips = node_ips
        try:
            cert, key = self._serving_files()
            context = server_ssl_context(cert, key, config.client_ca_file)
            tokens = load_token_file(config.token_auth_file) if config.token_auth_file else {}
        except (AuthError, OSError) as exc:
            raise ConfigError(str(exc)) from None
        auth = Authenticator(self.node_name, tokens, anonymous=config.anonymous_auth)
        self._auth, self._tls = auth, context
        if webhook is not None:  # with an API server (kubelet: authentication/authorization webhooks)
            if config.authentication_webhook_enabled:
                auth.token_reviewer = webhook.review_token
            if config.authorization_mode == "Webhook":
                auth.authorizer = webhook.authorize
        logs = ContainerLogs(pods, self.cri, self.executor)
        return SecureListener(config.port, context, auth.middleware, address=config.address,
                              routes=[logs.add_to])

    def _serving_files(self) -> tuple[str, str]:
        """The kubelet API's certificate and key: the configured pair, else a
        self-signed one of the agent's own (kubelet: --cert-dir)."""
        cert, key = self.config.tls_cert_file, self.config.tls_private_key_file
        if bool(cert) != bool(key):
            raise ConfigError("--tls-cert-file and --tls-private-key-file must be given together")
        if not cert:
            cert, key = ensure_self_signed(Path(self.config.root_dir) / "pki", self.node_name, self._node_ips)
        return str(cert), str(key)

    def reload(self) -> None:
        """SIGHUP: the serving certificate and the token file are read again
        (rotated files); log rotation takes the config's current limits.
        ConfigError (nothing changed) when a file is unusable."""
        config = self.config
        max_size = Quantity(config.container_log_max_size).value()
        tokens: dict[str, User] = {}
        cert = key = ""
        if self._auth is not None:
            try:  # every file first: a broken one leaves everything as it was
                tokens = load_token_file(config.token_auth_file) if config.token_auth_file else {}
                cert, key = self._serving_files()
                server_ssl_context(cert, key)
            except (AuthError, OSError) as exc:
                raise ConfigError(str(exc)) from None
        self.rotator.max_size = max_size
        self.rotator.max_files = config.container_log_max_files
        self.rotator.interval = config.container_log_monitor_interval
        if self._auth is not None and self._tls is not None:  # set together by secure_listener
            self._auth.tokens = tokens
            # The listener keeps its context; new connections get the new certificate.
            self._tls.load_cert_chain(cert, key)
