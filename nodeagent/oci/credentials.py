"""Registry credentials from image pull secrets (kubelet credentialprovider
keyring): `kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg`
secrets are read into entries keyed by registry (host, optional port and
path prefix, `*` wildcards per host label); an image gets every entry that
matches it, most specific first, and the puller tries them in turn."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass

from nodeagent.oci.reference import DEFAULT_DOMAIN, InvalidReferenceError, parse_reference

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG = "kubernetes.io/dockercfg"
_DEFAULT_REGISTRY_HOSTS = ("index.docker.io", "docker.io", "registry-1.docker.io")


class CredentialError(ValueError):
    """An image pull secret nodeagent cannot read (its type or its data)."""


@dataclass(frozen=True)
class Credential:
    """One registry login, as CRI AuthConfig carries it."""
    server: str
    username: str = ""
    password: str = ""
    auth: str = ""
    identity_token: str = ""
    registry_token: str = ""


@dataclass(frozen=True)
class _Key:
    host: str
    port: str
    path: str

    def matches(self, host: str, port: str, path: str) -> bool:
        """URLsMatch: same number of host labels, each glob-matched, same port,
        and the image's path under the key's."""
        key_labels, host_labels = self.host.split("."), host.split(".")
        if len(key_labels) != len(host_labels) or self.port != port:
            return False
        if not all(fnmatch.fnmatchcase(h, k) for k, h in zip(key_labels, host_labels)):
            return False
        return not self.path or path == self.path or path.startswith(self.path.rstrip("/") + "/")


def _split(location: str) -> _Key:
    """parseSchemelessURL: `https://host:port/path/` → host, port, path."""
    for scheme in ("https://", "http://"):
        if location.startswith(scheme):
            location = location[len(scheme):]
    hostport, _, path = location.partition("/")
    host, _, port = hostport.partition(":")
    path = path.strip("/")
    if path.split("/")[0] in ("v1", "v2"):  # docker's ResolveAuthConfig: /v1/ and /v2/ mean the host
        path = path[3:]
    if host in _DEFAULT_REGISTRY_HOSTS:  # docker hub's keys (".../v1/") name the hub, not a path
        host, path = DEFAULT_DOMAIN, ""
    return _Key(host.lower(), port, path)


class DockerKeyring:
    def __init__(self) -> None:
        self._entries: list[tuple[_Key, Credential]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def add_secret(self, name: str, secret_type: str, data: Mapping[str, bytes]) -> None:
        """Raises CredentialError naming the secret and what is wrong."""
        if secret_type == DOCKER_CONFIG_JSON:
            raw, entries_key = data.get(".dockerconfigjson"), "auths"
        elif secret_type == DOCKER_CONFIG:
            raw, entries_key = data.get(".dockercfg"), None
        else:
            raise CredentialError(f"secret {name!r} is of type {secret_type!r}, not {DOCKER_CONFIG_JSON}")
        if raw is None:
            raise CredentialError(f"secret {name!r} has no {'.dockerconfigjson' if entries_key else '.dockercfg'}")
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise CredentialError(f"secret {name!r}: not JSON: {exc}") from None
        entries = doc.get(entries_key) if entries_key and isinstance(doc, dict) else doc
        if not isinstance(entries, dict):
            raise CredentialError(f"secret {name!r}: expected a map of registries")
        for location, entry in entries.items():
            if isinstance(entry, dict):
                self._entries.append((_split(location), _credential(name, location, entry)))
        # Most specific first: longer hosts and paths before shorter, as the kubelet sorts its index.
        self._entries.sort(key=lambda e: (e[0].host, e[0].path), reverse=True)

    def lookup(self, image: str) -> list[Credential]:
        try:
            ref = parse_reference(image)
        except InvalidReferenceError:
            return []
        host, _, port = ref.domain.partition(":")
        return [cred for key, cred in self._entries if key.matches(host.lower(), port, ref.path)]


def _credential(secret: str, location: str, entry: dict[str, object]) -> Credential:
    def text(key: str) -> str:
        value = entry.get(key, "")
        return value if isinstance(value, str) else ""

    username, password, auth = text("username"), text("password"), text("auth")
    if auth and not username:  # "auth" is base64(user:password)
        try:
            username, _, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialError(f"secret {secret!r}: registry {location!r}: auth is not base64 "
                                  "of user:password") from None
    return Credential(server=location, username=username, password=password, auth=auth,
                      identity_token=text("identitytoken"), registry_token=text("registrytoken"))
