"""Authentication and authorization of the kubelet API (:10250), as the
kubelet's (k/k pkg/kubelet/server/auth.go, apiserver authenticators):

  * x509: a client certificate the TLS layer verified against
    `--client-ca-file` is the user CN, groups O. A certificate signed by
    another CA never gets here: the handshake fails.
  * bearer tokens: in standalone mode from `--token-auth-file` (the
    kube-apiserver's static token file: `token,user,uid[,"group1,group2"]`);
    with an API server, a `TokenReviewer` (TokenReview) is tried after it.
  * anonymous: only with `--anonymous-auth=true` (off by default), as
    system:anonymous in group system:unauthenticated.
No identity -> 401 Unauthorized. Authorization: an `Authorizer` (the API
server issue plugs SubjectAccessReview in) gets the user and the kubelet's
attributes (verb from the method, resource nodes, subresource from the
path); without one every authenticated user is allowed, as standalone
kubelets with `authorization.mode: AlwaysAllow`.
"""

from __future__ import annotations

import csv
import hmac
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from aiohttp import web

log = structlog.get_logger("nodeagent.server.auth")


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attributes:
    """What SubjectAccessReview is asked about (resource is always nodes)."""
    verb: str
    node: str
    subresource: str
    path: str = ""
    resource: str = "nodes"


TokenReviewer = Callable[[str], Awaitable[User | None]]
Authorizer = Callable[[User, Attributes], Awaitable[tuple[bool, str]]]

ANONYMOUS = User("system:anonymous", groups=("system:unauthenticated",))
_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}


class AuthError(Exception):
    """Bad auth configuration (token file, CA file)."""


def load_token_file(path: str) -> dict[str, User]:
    """kube-apiserver --token-auth-file format: token,user,uid[,"g1,g2"] per line."""
    tokens: dict[str, User] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise AuthError(f"--token-auth-file {path}: {exc.strerror}") from None
    for number, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or row[0].startswith("#"):
            continue
        if len(row) < 3 or not row[0] or not row[1]:
            raise AuthError(f"--token-auth-file {path}:{number}: expected token,user,uid[,groups]")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        tokens[row[0]] = User(row[1], row[2], groups + ("system:authenticated",))
    return tokens


def subresource(path: str) -> str:
    """The kubelet's path -> nodes subresource mapping (auth.go GetRequestAttributes)."""
    for prefix, sub in (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"),
                        ("/checkpoint", "checkpoint")):
        if path == prefix or path.startswith(prefix + "/"):
            return sub
    return "proxy"


def server_ssl_context(cert_file: str, key_file: str, client_ca_file: str = "") -> ssl.SSLContext:
    """TLS 1.2+; client certs optional but, when given, verified against the CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise AuthError(f"cannot load the serving certificate {cert_file} / key {key_file}: {exc}") from None
    if client_ca_file:
        try:
            ctx.load_verify_locations(cafile=client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise AuthError(f"--client-ca-file {client_ca_file}: {exc}") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


@dataclass
class Authenticator:
    node_name: str
    tokens: dict[str, User] = field(default_factory=dict)
    anonymous: bool = False
    token_reviewer: TokenReviewer | None = None
    authorizer: Authorizer | None = None

    async def authenticate(self, request: web.Request) -> User | None:
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        if cert:  # only present when verified against the client CA
            subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
            groups = tuple(v for rdn in cert.get("subject", ()) for k, v in rdn
                           if k == "organizationName")
            return User(subject.get("commonName", ""), groups=groups + ("system:authenticated",))
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[len("Bearer "):].strip()
            for known, user in self.tokens.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    return user
            if self.token_reviewer is not None:
                return await self.token_reviewer(token)
            return None
        return ANONYMOUS if self.anonymous else None

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        user = await self.authenticate(request)
        if user is None:
            log.info("unauthenticated request refused", path=request.path,
                     remote=request.remote)
            return web.Response(status=401, text="Unauthorized", content_type="text/plain")
        if self.authorizer is not None:
            attrs = Attributes(_VERBS.get(request.method, request.method.lower()), self.node_name,
                               subresource(request.path), request.path)
            allowed, reason = await self.authorizer(user, attrs)
            if not allowed:
                text = (f"Forbidden (user={user.name}, verb={attrs.verb}, resource=nodes, "
                        f"subresource={attrs.subresource})")
                log.info("request forbidden", user=user.name, path=request.path, reason=reason)
                return web.Response(status=403, text=text, content_type="text/plain")
        request["user"] = user
        return await handler(request)
