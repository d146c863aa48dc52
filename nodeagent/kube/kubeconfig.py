"""--kubeconfig: which API server, how to trust it and who we are.

The kubelet reads a standard kubeconfig (clusters/users/contexts). We accept
the forms node kubeconfigs use: server + certificate-authority(-data) or
insecure-skip-tls-verify, and a user with a client certificate (files or
inline data), a bearer token or a token file. Exec credential plugins and
auth-provider entries are refused by name: a node agent must not depend on
a CLI plugin being installed.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml


class KubeconfigError(ValueError):
    """The kubeconfig cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Connection:
    server: str                       # https://host:port (no trailing slash)
    ca_pem: bytes | None = None       # PEM bundle to trust; None = system trust
    insecure: bool = False            # insecure-skip-tls-verify
    tls_server_name: str = ""
    token: str = ""
    token_file: str = ""
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    source: str = ""                  # the file, for messages

    def bearer_token(self) -> str:
        """Token files are re-read on each call (they rotate, like bound SA tokens)."""
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise KubeconfigError(f"{self.source}: cannot read tokenFile {self.token_file}: "
                                      f"{exc.strerror}") from None
        return self.token

    def ssl_context(self) -> ssl.SSLContext | None:
        if urlsplit(self.server).scheme != "https":
            return None
        ctx = ssl.create_default_context()
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_pem:
            ctx.load_verify_locations(cadata=self.ca_pem.decode())
        if self.client_cert_pem and self.client_key_pem:
            _load_cert_chain(ctx, self.client_cert_pem, self.client_key_pem)
        return ctx


def _load_cert_chain(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl only loads client credentials from files: write them to a private
    temporary file (mode 0600) and remove it at once."""
    fd, path = tempfile.mkstemp(prefix="nodeagent-client-", suffix=".pem")
    try:
        os.write(fd, cert.rstrip(b"\n") + b"\n" + key)
        os.close(fd)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


def _named(items: Any, name: str, what: str, source: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            body = item.get(what)
            if not isinstance(body, dict):
                raise KubeconfigError(f"{source}: {what} {name!r} has no {what} section")
            return body
    raise KubeconfigError(f"{source}: no {what} named {name!r}")


def _data_or_file(entry: dict[str, Any], key: str, base: Path, source: str) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise KubeconfigError(f"{source}: {key}-data is not base64") from None
    path = entry.get(key)
    if not path:
        return None
    full = (base / path) if not os.path.isabs(path) else Path(path)
    try:
        return full.read_bytes()
    except OSError as exc:
        raise KubeconfigError(f"{source}: cannot read {key} {full}: {exc.strerror}") from None


def load_kubeconfig(path: str | Path, context: str = "") -> Connection:
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {source}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{source}: not YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{source}: not a kubeconfig (expected a mapping)")
    context = context or doc.get("current-context") or ""
    if not context:
        raise KubeconfigError(f"{source}: no current-context")
    ctx = _named(doc.get("contexts"), context, "context", source)
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster", source)
    user = _named(doc.get("users"), ctx.get("user", ""), "user", source) if ctx.get("user") else {}
    base = Path(path).resolve().parent
    server = str(cluster.get("server") or "").rstrip("/")
    if urlsplit(server).scheme not in ("https", "http") or not urlsplit(server).netloc:
        raise KubeconfigError(f"{source}: cluster server {server!r} is not an http(s) URL")
    for unsupported in ("exec", "auth-provider"):
        if user.get(unsupported):
            raise KubeconfigError(f"{source}: user {ctx.get('user')!r} uses {unsupported}, which nodeagent "
                                  "does not run; use a client certificate or a token")
    cert = _data_or_file(user, "client-certificate", base, source)
    key = _data_or_file(user, "client-key", base, source)
    if bool(cert) != bool(key):
        raise KubeconfigError(f"{source}: user {ctx.get('user')!r} needs both client-certificate and client-key")
    token_file = user.get("tokenFile") or ""
    if token_file and not os.path.isabs(token_file):
        token_file = str(base / token_file)
    conn = Connection(
        server=server, ca_pem=_data_or_file(cluster, "certificate-authority", base, source),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=str(cluster.get("tls-server-name") or ""),
        token=str(user.get("token") or ""), token_file=token_file,
        client_cert_pem=cert, client_key_pem=key, source=source)
    try:
        conn.ssl_context()  # fail at start, naming the file, not at the first request
    except (ssl.SSLError, ValueError) as exc:
        raise KubeconfigError(f"{source}: unusable TLS material: {exc}") from None
    return conn
