"""Normalisation must match distribution/reference v0.6 (what containerd uses)."""

from __future__ import annotations

import pytest

from nodeagent.oci.reference import (
    ImageReference,
    InvalidReferenceError,
    normalize,
    parse_reference,
)

HEX = "0123456789abcdef" * 4  # 64 lowercase hex characters
DIGEST = f"sha256:{HEX}"

VALID = [
    # Docker Hub defaults: domain, library/ prefix, latest tag.
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("foo/bar", "docker.io/foo/bar:latest"),
    ("foo/bar:1", "docker.io/foo/bar:1"),
    ("foo/bar/baz", "docker.io/foo/bar/baz:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/foo/bar", "docker.io/foo/bar:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/foo/bar:2", "docker.io/foo/bar:2"),
    # Registry hosts: ".", ":" or "localhost" in the first component.
    ("localhost/x", "localhost/x:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest"),
    ("localhost:5000/x:y", "localhost:5000/x:y"),
    ("registry.example.com/x", "registry.example.com/x:latest"),
    ("registry.example.com:443/team/app:v1.2", "registry.example.com:443/team/app:v1.2"),
    ("[::1]:5000/x", "[::1]:5000/x:latest"),
    ("[2001:db8::1]/x:y", "[2001:db8::1]/x:y"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    # A lone word is always a Docker Hub repo, even if it looks like a host.
    ("localhost", "docker.io/library/localhost:latest"),
    ("example.com", "docker.io/library/example.com:latest"),
    # Nested library paths are not official images.
    ("library/a/b", "docker.io/library/a/b:latest"),
    # Upstream treats an uppercase first component as a (valid) host name.
    ("Foo/bar", "Foo/bar:latest"),
    # Path component separators: ".", "_", "__", one or more "-".
    ("foo/a-b_c__d---e.f", "docker.io/foo/a-b_c__d---e.f:latest"),
    # Upstream quirk: a "host" (has a ".") that is not a valid host name but is
    # a valid path is kept as a domain-less name.
    ("a_b.c/d", "a_b.c/d:latest"),
    # Tags: word characters, then up to 127 of [\w.-].
    ("busybox:_x.Y-1", "docker.io/library/busybox:_x.Y-1"),
    ("busybox:" + "t" * 128, "docker.io/library/busybox:" + "t" * 128),
    # Digests: no default tag; tag+digest keeps both.
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    (f"busybox:1.36@{DIGEST}", f"docker.io/library/busybox:1.36@{DIGEST}"),
    (f"localhost:5000/x@{DIGEST}", f"localhost:5000/x@{DIGEST}"),
    (f"busybox@sha512:{HEX * 2}", f"docker.io/library/busybox@sha512:{HEX * 2}"),
    # 255 characters of path is the limit; the domain does not count.
    ("x/" + "a" * 253, "docker.io/x/" + "a" * 253 + ":latest"),
    ("registry.example.com/x/" + "a" * 253, "registry.example.com/x/" + "a" * 253 + ":latest"),
]

INVALID = [
    ("", "at least one component"),
    (HEX, "64-byte hexadecimal"),
    ("Busybox", "must be lowercase"),
    ("foo/Bar", "must be lowercase"),
    ("localhost:5000/Foo:tag", "must be lowercase"),
    ("FOO_BAR/x", "must be lowercase"),
    ("busybox:", "invalid reference format"),
    ("busybox::tag", "invalid reference format"),
    (":tag", "invalid reference format"),
    ("busybox:-tag", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("foo/", "invalid reference format"),
    ("/foo", "invalid reference format"),
    ("foo//bar", "invalid reference format"),
    ("a..b", "invalid reference format"),
    ("a___b", "invalid reference format"),
    ("-foo", "invalid reference format"),
    ("foo-", "invalid reference format"),
    ("foo bar", "invalid reference format"),
    ("busybox\n", "invalid reference format"),
    ("http://example.com/x", "invalid reference format"),
    ("[::1/x", "invalid reference format"),
    ("@" + DIGEST, "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("busybox@sha256:" + HEX.upper(), "invalid checksum digest format"),
    ("busybox@sha256:" + HEX + "00", "invalid checksum digest length"),
    ("busybox@md5:" + HEX[:32], "unsupported digest algorithm"),
    ("x/" + "a" * 254, "not be more than 255 characters"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_normalize_valid(raw: str, expected: str) -> None:
    assert normalize(raw) == expected
    assert str(parse_reference(raw)) == expected
    # Normalising is idempotent: the stored form parses back to itself.
    assert normalize(expected) == expected


@pytest.mark.parametrize(("raw", "message"), INVALID)
def test_parse_invalid(raw: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference(raw)
    assert message in str(info.value)
    assert repr(raw) in str(info.value), "the message must quote the input"
    assert isinstance(info.value, ValueError)
    assert info.value.reference == raw


def test_fields() -> None:
    ref = parse_reference(f"localhost:5000/team/app:v1@{DIGEST}")
    assert ref == ImageReference(
        domain="localhost:5000", path="team/app", tag="v1", digest=DIGEST
    )
    assert ref.name == "localhost:5000/team/app"
    assert parse_reference(f"busybox@{DIGEST}").tag is None
    assert parse_reference("busybox").tag == "latest"
    assert parse_reference("busybox").digest is None


@pytest.mark.parametrize(
    ("raw", "familiar"),
    [
        ("busybox", "busybox:latest"),
        ("docker.io/library/busybox:1.36", "busybox:1.36"),
        ("index.docker.io/library/busybox", "busybox:latest"),
        ("foo/bar:1", "foo/bar:1"),
        ("docker.io/library/a/b", "library/a/b:latest"),
        ("localhost:5000/x:y", "localhost:5000/x:y"),
        ("localhost/x", "localhost/x:latest"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        (f"busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
    ],
)
def test_familiar(raw: str, familiar: str) -> None:
    ref = parse_reference(raw)
    assert ref.familiar() == familiar
    # The familiar form normalises back to the same reference.
    assert parse_reference(familiar) == ref
