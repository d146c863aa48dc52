"""The managed /etc/hosts of a pod, as the kubelet writes it (kubelet_pods.go
managedHostsFileContent / nodeHostsFileContent).

`<root>/pods/<uid>/etc-hosts` is bind-mounted at /etc/hosts into every
container once the pod has an IP, unless the container mounts something there
itself. Pod network: localhost lines, the pod's IPs with its hostname (and
FQDN with a subdomain), then hostAliases. hostNetwork: the node's own
/etc/hosts followed by hostAliases.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nodeagent.api.types import Container, HostAlias, Pod
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.pods.crispec import NodeContext, pod_hostname

MANAGED_HEADER = "# Kubernetes-managed hosts file.\n"
HOST_NETWORK_HEADER = "# Kubernetes-managed hosts file (host network).\n"
ETC_HOSTS = "/etc/hosts"
FILE_NAME = "etc-hosts"


def _aliases(host_aliases: Sequence[HostAlias]) -> str:
    if not host_aliases:
        return ""
    lines = ["", "# Entries added by HostAliases."]
    lines += [f"{a.ip}\t" + "\t".join(a.hostnames) for a in host_aliases]
    return "\n".join(lines) + "\n"


def managed_content(pod_ips: Sequence[str], hostname: str, domain: str,
                    host_aliases: Sequence[HostAlias]) -> str:
    out = [MANAGED_HEADER,
           "127.0.0.1\tlocalhost\n",
           "::1\tlocalhost ip6-localhost ip6-loopback\n",
           "fe00::0\tip6-localnet\n",
           "fe00::0\tip6-mcastprefix\n",
           "fe00::1\tip6-allnodes\n",
           "fe00::2\tip6-allrouters\n"]
    for ip in pod_ips:
        out.append(f"{ip}\t{hostname}.{domain}\t{hostname}\n" if domain else f"{ip}\t{hostname}\n")
    return "".join(out) + _aliases(host_aliases)


def host_network_content(node_hosts: str, host_aliases: Sequence[HostAlias]) -> str:
    return HOST_NETWORK_HEADER + node_hosts + _aliases(host_aliases)


def hosts_path(root_dir: Path, pod_uid: str) -> Path:
    return root_dir / "pods" / pod_uid / FILE_NAME


def container_hosts_mount(pod: Pod, container: Container, ctx: NodeContext,
                          sandbox_ips: Sequence[str], *, node_hosts: Path = Path(ETC_HOSTS)
                          ) -> pb.Mount | None:
    """Write the pod's hosts file and return its mount, or None when the kubelet
    would not mount one (no pod IP yet, or the container mounts /etc/hosts)."""
    pod_ips = list(ctx.node_ips) if pod.spec.host_network else list(sandbox_ips)
    if not pod_ips or any(m.mount_path == ETC_HOSTS for m in container.volume_mounts):
        return None
    if pod.spec.host_network:
        try:
            content = host_network_content(node_hosts.read_text(), pod.spec.host_aliases)
        except OSError:
            content = host_network_content("", pod.spec.host_aliases)
    else:
        domain = ""
        if pod.spec.subdomain and ctx.cluster_domain:
            domain = f"{pod.spec.subdomain}.{pod.metadata.namespace}.svc.{ctx.cluster_domain}"
        content = managed_content(pod_ips, pod_hostname(pod), domain, pod.spec.host_aliases)
    path = hosts_path(ctx.root_dir, pod.metadata.uid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE_NAME}.tmp")
    tmp.write_text(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return pb.Mount(container_path=ETC_HOSTS, host_path=str(path))
