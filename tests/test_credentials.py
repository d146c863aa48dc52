"""Image pull secrets: the keyring the kubelet builds from them."""

from __future__ import annotations

import base64
import json

import pytest

from nodeagent.oci.credentials import CredentialError, DockerKeyring


def secret(auths: dict) -> dict[str, bytes]:
    return {".dockerconfigjson": json.dumps({"auths": auths}).encode()}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_dockerconfigjson_entries_match_by_host_port_and_path() -> None:
    ring = DockerKeyring()
    ring.add_secret("regcred", "kubernetes.io/dockerconfigjson", secret({
        "registry.example.com": {"auth": b64("alice:pw1")},
        "registry.example.com/team-a": {"username": "bob", "password": "pw2"},
        "https://localhost:5000/v2/": {"auth": b64("carol:pw3")},
        "*.corp.example": {"username": "dave", "password": "pw4", "identitytoken": "tok"},
        "https://index.docker.io/v1/": {"auth": b64("hub:pw5")},
    }))
    assert len(ring) == 5
    users = lambda image: [c.username for c in ring.lookup(image)]  # noqa: E731
    assert users("registry.example.com/team-a/app:1") == ["bob", "alice"]  # most specific first
    assert users("registry.example.com/team-b/app:1") == ["alice"]
    assert users("registry.example.com:443/app") == []  # another port
    assert users("localhost:5000/busybox:1") == ["carol"]
    assert users("localhost:5001/busybox:1") == []
    assert users("eu.corp.example/x") == ["dave"]
    assert users("a.b.corp.example/x") == []  # a wildcard is one label
    assert users("busybox") == ["hub"] and users("docker.io/library/nginx:1") == ["hub"]
    alice = ring.lookup("registry.example.com/x")[0]
    assert (alice.password, alice.server, alice.auth) == ("pw1", "registry.example.com", b64("alice:pw1"))
    assert ring.lookup("eu.corp.example/x")[0].identity_token == "tok"


def test_legacy_dockercfg_and_bad_secrets() -> None:
    ring = DockerKeyring()
    ring.add_secret("old", "kubernetes.io/dockercfg",
                    {".dockercfg": json.dumps({"quay.io": {"auth": b64("u:p")}}).encode()})
    assert [c.password for c in ring.lookup("quay.io/org/img")] == ["p"]
    with pytest.raises(CredentialError, match="secret 'x' is of type 'Opaque', not kubernetes.io/dockerconfigjson"):
        ring.add_secret("x", "Opaque", {})
    with pytest.raises(CredentialError, match="secret 'y' has no .dockerconfigjson"):
        ring.add_secret("y", "kubernetes.io/dockerconfigjson", {})
    with pytest.raises(CredentialError, match="secret 'z': not JSON"):
        ring.add_secret("z", "kubernetes.io/dockerconfigjson", {".dockerconfigjson": b"{"})
    with pytest.raises(CredentialError, match="auth is not base64 of user:password"):
        ring.add_secret("w", "kubernetes.io/dockerconfigjson", secret({"r.io": {"auth": "%%%"}}))
