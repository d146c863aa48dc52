"""Image reference parsing, normalised the way containerd's CRI plugin does it.

The runtime stores and reports images under their fully qualified names
(``docker.io/library/busybox:latest``) while pod specs use familiar ones
(``busybox``).  The agent has to compare the two (image pull policy, image GC,
status reporting), so it must normalise exactly like
``github.com/distribution/reference`` v0.6 (``ParseNormalizedNamed`` followed by
``TagNameOnly``); any divergence shows up as phantom "image not present" pulls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
LOCALHOST = "localhost"

# distribution/reference limits the path only (domain excluded) since v0.6.0.
REPOSITORY_NAME_MAX_LENGTH = 255

# Grammar pieces, transcribed from distribution/reference's regexp.go.  Go's
# regexp is leftmost-first like Python's, and `\w` is ASCII-only there, hence
# re.ASCII; fullmatch() is used everywhere because Python's `$` also matches
# before a trailing newline.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"

_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_ANCHORED_NAME_RE = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})", re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)

# go-digest's registered algorithms (containerd links all three) and their
# hex lengths; the encoded part must be lowercase hex of exactly this length.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+", re.ASCII)


class InvalidReferenceError(ValueError):
    """Raised for strings the runtime would reject as an image reference."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {reason}")
        self.reference = reference
        self.reason = reason


@dataclass(frozen=True)
class ImageReference:
    """A normalised reference; ``str()`` is the form containerd stores."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        # The domain is empty only for upstream's odd "looks like a host but
        # is not a valid one" case (see parse_reference).
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        return self._with_suffixes(self.name)

    def familiar(self) -> str:
        """Short form, as docker and kubectl print it (``busybox:latest``)."""
        if self.domain != DEFAULT_DOMAIN:
            return self._with_suffixes(self.name)
        path = self.path
        # Only single-level official names lose the prefix, as upstream does:
        # "library/a/b" stays as is because "a/b" would mean another repo.
        if path.startswith(OFFICIAL_REPO_PREFIX):
            rest = path[len(OFFICIAL_REPO_PREFIX):]
            if "/" not in rest:
                path = rest
        return self._with_suffixes(path)

    def _with_suffixes(self, name: str) -> str:
        out = name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def parse_reference(s: str) -> ImageReference:
    """Parse and normalise like ParseNormalizedNamed + TagNameOnly.

    A reference with both tag and digest keeps both (``TagNameOnly`` does);
    note that containerd's ``ParseDockerRef`` would drop the tag there.
    """
    if not s:
        raise InvalidReferenceError(s, "repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidReferenceError(
            s, "cannot specify 64-byte hexadecimal strings (ambiguous with an image ID)"
        )

    domain, remainder = _split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReferenceError(s, f"repository name must be lowercase (got {remote!r})")

    full = f"{domain}/{remainder}"
    match = _REFERENCE_RE.fullmatch(full)
    if match is None:
        lowered = full.lower()
        if lowered != full and _REFERENCE_RE.fullmatch(lowered):
            raise InvalidReferenceError(s, "repository name must be lowercase")
        raise InvalidReferenceError(s, "invalid reference format")

    name, tag, digest = match.group(1), match.group(2), match.group(3)
    name_match = _ANCHORED_NAME_RE.fullmatch(name)
    assert name_match is not None  # `name` already matched the same grammar
    # A first component chosen as a host but invalid as one ("a_b.c/d") can
    # still match as a plain path; upstream then keeps no domain at all.
    ref_domain, ref_path = name_match.group(1) or "", name_match.group(2)
    if len(ref_path) > REPOSITORY_NAME_MAX_LENGTH:
        raise InvalidReferenceError(
            s,
            f"repository name must not be more than {REPOSITORY_NAME_MAX_LENGTH} characters",
        )
    if digest is not None:
        _validate_digest(s, digest)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(domain=ref_domain, path=ref_path, tag=tag, digest=digest)


def normalize(s: str) -> str:
    """Fully qualified form, e.g. ``busybox`` -> ``docker.io/library/busybox:latest``."""
    return str(parse_reference(s))


def is_valid_tag(tag: str) -> bool:
    return _TAG_RE.fullmatch(tag) is not None


def _split_docker_domain(s: str) -> tuple[str, str]:
    """Decide whether the first component is a registry host.

    It is one only if it looks like a host (has "." or ":"), is "localhost",
    or has uppercase letters (which no repository path may contain).
    """
    first, sep, rest = s.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + s
    if first == LOCALHOST:
        domain, remainder = first, rest
    elif first == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, rest
    elif "." in first or ":" in first or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, s
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _validate_digest(s: str, digest: str) -> None:
    """Apply go-digest's checks, which are stricter than the reference grammar."""
    algorithm, _, encoded = digest.partition(":")
    expected = _DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        raise InvalidReferenceError(s, f"unsupported digest algorithm {algorithm!r}")
    if len(encoded) != expected:
        raise InvalidReferenceError(
            s, f"invalid checksum digest length: {algorithm} needs {expected} hex characters"
        )
    if not _LOWER_HEX_RE.fullmatch(encoded):
        raise InvalidReferenceError(s, "invalid checksum digest format: hex must be lowercase")
