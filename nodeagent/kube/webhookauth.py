"""The kubelet API's webhook authentication and authorization through the
API server: TokenReview for bearer tokens, SubjectAccessReview for every
request (k/k pkg/kubelet/server/auth.go; cache TTLs from
KubeletConfiguration: authentication.webhook.cacheTTL 2m,
authorization.webhook.cacheAuthorizedTTL 5m / cacheUnauthorizedTTL 30s).

An unreachable API server fails closed: the request is refused (401/403)
and not cached, as the kubelet's webhook does.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from nodeagent.kube.client import ApiError, KubeClient, Unreachable, describe
from nodeagent.server.auth import Attributes, User

log = structlog.get_logger("nodeagent.kube.auth")

TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
CACHE_LIMIT = 4096


class _TTLCache:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        item = self._items.get(key)
        if item is None or item[0] < self._clock():
            self._items.pop(key, None)
            return False, None
        return True, item[1]

    def put(self, key: Any, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._items) >= CACHE_LIMIT:
            now = self._clock()
            self._items = {k: v for k, v in self._items.items() if v[0] >= now}
            if len(self._items) >= CACHE_LIMIT:
                self._items.pop(next(iter(self._items)))
        self._items[key] = (self._clock() + ttl, value)


class WebhookAuth:
    def __init__(self, client: KubeClient, *, authn_ttl: float = 120.0, authorized_ttl: float = 300.0,
                 unauthorized_ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.authn_ttl, self.authorized_ttl, self.unauthorized_ttl = authn_ttl, authorized_ttl, unauthorized_ttl
        self._tokens = _TTLCache(clock)
        self._decisions = _TTLCache(clock)

    async def review_token(self, token: str) -> User | None:
        """TokenReviewer: the user the API server says the token belongs to."""
        key = hashlib.sha256(token.encode()).hexdigest()
        hit, user = self._tokens.get(key)
        if hit:
            return user
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            result = await self.client.create(TOKEN_REVIEW_PATH, body)
        except (ApiError, Unreachable) as exc:
            log.warning("token review failed; request refused", error=describe(exc))
            return None
        status = result.get("status") or {}
        user = None
        if status.get("authenticated"):
            info = status.get("user") or {}
            user = User(str(info.get("username") or ""), uid=str(info.get("uid") or ""),
                        groups=tuple(info.get("groups") or ()))
        self._tokens.put(key, user, self.authn_ttl)
        return user

    async def authorize(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        """Authorizer: a SubjectAccessReview for (user, verb, nodes/<subresource>, node)."""
        key = (user.name, user.uid, user.groups, attrs.verb, attrs.resource, attrs.subresource, attrs.node)
        hit, decision = self._decisions.get(key)
        if hit:
            return decision
        spec: dict[str, Any] = {
            "user": user.name, "groups": list(user.groups),
            "resourceAttributes": {"verb": attrs.verb, "resource": attrs.resource, "name": attrs.node,
                                   "group": "", "version": "v1"},
        }
        if user.uid:
            spec["uid"] = user.uid
        if attrs.subresource:
            spec["resourceAttributes"]["subresource"] = attrs.subresource
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        try:
            result = await self.client.create(SAR_PATH, body)
        except (ApiError, Unreachable) as exc:
            log.warning("subject access review failed; request refused", error=describe(exc))
            return False, f"authorization check failed: {describe(exc)}"
        status = result.get("status") or {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        decision = (allowed, str(status.get("reason") or status.get("evaluationError") or ""))
        self._decisions.put(key, decision, self.authorized_ttl if allowed else self.unauthorized_ttl)
        return decision
