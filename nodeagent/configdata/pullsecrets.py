"""A pod's imagePullSecrets as registry credentials for its image pulls."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.api.types import Pod
from nodeagent.configdata.objects import ConfigObjects, ObjectsUnavailable
from nodeagent.oci.credentials import CredentialError, DockerKeyring


@dataclass
class PullCredentials:
    keyring: DockerKeyring = field(default_factory=DockerKeyring)
    missing: list[str] = field(default_factory=list)   # not found, or the API server unreachable
    problems: list[str] = field(default_factory=list)  # found but unreadable (type, JSON)


async def pull_credentials(objects: ConfigObjects | None, pod: Pod) -> PullCredentials:
    """The kubelet reads them on every pull and pulls anyway when some are
    missing (FailedToRetrieveImagePullSecret): so does this."""
    out = PullCredentials()
    for ref in pod.spec.image_pull_secrets:
        if not ref.name:
            continue
        try:
            secret = await objects.secret(pod.metadata.namespace, ref.name) if objects is not None else None
        except ObjectsUnavailable:
            secret = None
        if secret is None:
            out.missing.append(ref.name)
            continue
        try:
            out.keyring.add_secret(ref.name, secret.type, secret.data)
        except CredentialError as exc:
            out.problems.append(str(exc))
    return out
