"""Authentication (bearer tokens, client certificates, service-account tokens) and the
deny-list authorizer shared by requests and SubjectAccessReview."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

API_AUDIENCES = ["https://kubernetes.default.svc.cluster.local"]
ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)

    def as_review(self) -> dict[str, Any]:
        d: dict[str, Any] = {"username": self.name}
        if self.uid:
            d["uid"] = self.uid
        d["groups"] = list(self.groups)
        if self.extra:
            d["extra"] = self.extra
        return d


def with_authenticated(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The authenticator chain adds system:authenticated to every authenticated user."""
    out = tuple(groups)
    return out if "system:authenticated" in out else out + ("system:authenticated",)


ADMIN = UserInfo("system:admin", "", ("system:masters", "system:authenticated"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ServiceAccountTokens:
    """Signs and verifies RS256 JWTs shaped like the API server's bound service-account tokens."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex

    def issue(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "kid": self.kid}
        signing = _b64(json.dumps(header, separators=(",", ":")).encode()) + "." + \
            _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = self._key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + _b64(sig)

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this double signed and that has not expired, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            self._key.public_key().verify(_unb64(parts[2]), (parts[0] + "." + parts[1]).encode(),
                                          padding.PKCS1v15(), hashes.SHA256())
            claims = json.loads(_unb64(parts[1]))
        except (InvalidSignature, ValueError):
            return None
        if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
            return None
        if int(claims.get("exp", 0)) <= time.time() or int(claims.get("nbf", 0)) > time.time() + 60:
            return None
        return claims


@dataclass(frozen=True)
class DenyRule:
    subject: str
    verb: str
    resource: str
    subresource: str

    def matches(self, user: UserInfo, verb: str, resource: str, subresource: str) -> bool:
        if self.subject != "*" and self.subject != user.name and self.subject not in user.groups:
            return False
        if self.verb not in ("*", verb):
            return False
        if self.resource not in ("*", resource):
            return False
        return self.subresource in ("*", subresource)


class Authorizer:
    """Everything is allowed unless a deny rule matches (verb, resource, subresource, user or a group)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[DenyRule] = []

    def deny(self, subject: str, verb: str, resource: str, subresource: str = "") -> None:
        with self._lock:
            self._rules.append(DenyRule(subject, verb, resource, subresource))

    def allow_all(self) -> None:
        with self._lock:
            self._rules.clear()

    def allowed(self, user: UserInfo, verb: str, resource: str, subresource: str) -> bool:
        with self._lock:
            rules = list(self._rules)
        return not any(r.matches(user, verb, resource, subresource) for r in rules)


def forbidden_reason(user: str, verb: str, resource: str, subresource: str, group: str, namespace: str) -> str:
    """responsewriters.forbiddenMessage for a resource request."""
    res = f"{resource}/{subresource}" if subresource else resource
    if namespace:
        return f'User "{user}" cannot {verb} resource "{res}" in API group "{group}" in the namespace "{namespace}"'
    return f'User "{user}" cannot {verb} resource "{res}" in API group "{group}" at the cluster scope'


def forbidden_path_reason(user: str, verb: str, path: str) -> str:
    return f'User "{user}" cannot {verb} path "{path}"'


class TokenTable:
    """Static bearer tokens (the token-file authenticator), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, UserInfo] = {}

    def add(self, token: str, user: str, groups: tuple[str, ...] | list[str] = (), uid: str = "") -> None:
        with self._lock:
            self._tokens[token] = UserInfo(user, uid, with_authenticated(groups))

    def lookup(self, token: str) -> UserInfo | None:
        with self._lock:
            return self._tokens.get(token)
