"""Service account tokens for projected volumes, cached and refreshed like the
kubelet's token manager (k/k pkg/kubelet/token/token_manager.go).

A token is asked for again once it is older than 80 % of its requested
lifetime or older than 24 h (minus up to 10 s of jitter). A failed refresh
keeps the cached token until it has expired.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from nodeagent.configdata.objects import ConfigObjects, ServiceAccountToken

MAX_TTL = 24 * 3600.0
MAX_JITTER = 10.0
REFRESH_FRACTION = 0.2  # refresh within the last 20 % of the lifetime


class TokenError(Exception):
    """No usable token; the message says why (the kubelet's words)."""


@dataclass(frozen=True)
class TokenKey:
    """keyFunc: service account, namespace, audiences, lifetime and the bound pod."""
    namespace: str
    service_account: str
    audiences: tuple[str, ...]
    expiration_seconds: int
    pod_name: str
    pod_uid: str

    def __str__(self) -> str:
        return (f'"{self.service_account}"/"{self.namespace}"/{list(self.audiences)}/'
                f"{self.expiration_seconds}/{self.pod_name}/{self.pod_uid}")


class TokenCache:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[TokenKey, ServiceAccountToken] = {}

    async def get(self, objects: ConfigObjects, key: TokenKey) -> ServiceAccountToken:
        """GetServiceAccountToken: the cached token while fresh, else a new one."""
        cached = self._tokens.get(key)
        if cached is not None and not self.requires_refresh(key, cached):
            return cached
        try:
            token = await objects.service_account_token(
                key.namespace, key.service_account, pod_name=key.pod_name, pod_uid=key.pod_uid,
                audiences=key.audiences, expiration_seconds=key.expiration_seconds)
        except Exception as exc:  # outage or a refusal (no such service account …): said on the pod
            if cached is None:
                raise TokenError(f"failed to fetch token: {exc}") from exc
            if self._clock() > cached.expiration:
                raise TokenError(f"token {key} expired and refresh failed: {exc}") from exc
            return cached  # keep the old one while it is valid; retried on the next sync
        self._tokens[key] = token
        return token

    def requires_refresh(self, key: TokenKey, token: ServiceAccountToken) -> bool:
        now = self._clock()
        jitter = float(int(random.random() * MAX_JITTER))
        issued_at = token.expiration - key.expiration_seconds
        if now > issued_at + MAX_TTL - jitter:
            return True
        return now > token.expiration - key.expiration_seconds * REFRESH_FRACTION - jitter

    def next_refresh_in(self) -> float | None:
        """Seconds until the earliest cached token wants refreshing (no jitter)."""
        now = self._clock()
        due = [min(t.expiration - k.expiration_seconds + MAX_TTL,
                   t.expiration - k.expiration_seconds * REFRESH_FRACTION)
               for k, t in self._tokens.items()]
        return max(0.0, min(due) - now) if due else None

    def forget_unused(self, keep: set[TokenKey]) -> None:
        for key in [k for k in self._tokens if k not in keep]:
            del self._tokens[key]
