"""Node facts for `status.nodeInfo` and `status.addresses`, read once.

What the kubelet gets from cAdvisor (machine-id, system UUID, boot id,
kernel, os-release), from Go's runtime (GOOS/GOARCH), from the CRI Version
call, and from its NodeAddress setter's lookup order. Everything here reads
files or resolves names: call `read_node_facts` in an executor.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from nodeagent import __version__, hostinfo
from nodeagent.api.node import HOSTNAME, INTERNAL_IP, NodeAddress, NodeSwapStatus, NodeSystemInfo

# cAdvisor's --machine_id_file default.
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
# cAdvisor GetSystemUUID: DMI, then Power's device tree, then s390x's /etc/machine-id.
SYSTEM_UUID_FILES = (Path("/sys/class/dmi/id/product_uuid"), Path("/proc/device-tree/system-id"),
                     Path("/proc/device-tree/vm,uuid"), Path("/etc/machine-id"))
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
OS_RELEASE_FILES = (Path("/etc/os-release"), Path("/usr/lib/os-release"))

# The Kubernetes version whose kubelet nodeagent stands in for, and what
# `kubectl get nodes` shows in VERSION: semver build metadata keeps it equal
# to v1.31.0 in version comparisons (like k3s's v1.31.0+k3s1).
KUBELET_API_VERSION = "v1.31.0"
KUBELET_VERSION = f"{KUBELET_API_VERSION}+nodeagent.{__version__}"

# platform.machine() -> GOARCH
_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "armv6l": "arm", "armv8l": "arm", "i386": "386", "i686": "386",
            "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64",
            "mips64": "mips64", "mips64el": "mips64le", "loongarch64": "loong64"}

_VERSION_RE = re.compile(r"^\s*v?([0-9]+(?:\.[0-9]+)*)(.*)$")
_EXTRA_RE = re.compile(r"^(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
                       r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?\s*$")


class NodeAddressError(RuntimeError):
    """No usable InternalIP (the kubelet's "can't get ip address of node")."""


@dataclass(frozen=True)
class NodeFacts:
    """What the node is; changes only with a reboot or a runtime upgrade."""
    machine_id: str
    system_uuid: str
    boot_id: str
    kernel_version: str
    os_image: str
    architecture: str
    container_runtime_version: str
    hostname: str
    addresses: tuple[NodeAddress, ...]
    swap_capacity: int | None = None
    operating_system: str = "linux"
    kubelet_version: str = KUBELET_VERSION

    def system_info(self) -> NodeSystemInfo:
        """status.nodeInfo. kubeProxyVersion stays empty (DisableNodeKubeProxyVersion)."""
        return NodeSystemInfo(
            machine_id=self.machine_id, system_uuid=self.system_uuid, boot_id=self.boot_id,
            kernel_version=self.kernel_version, os_image=self.os_image,
            container_runtime_version=self.container_runtime_version,
            kubelet_version=self.kubelet_version, operating_system=self.operating_system,
            architecture=self.architecture,
            swap=NodeSwapStatus(self.swap_capacity) if self.swap_capacity is not None else None)


def _first_content(paths: Sequence[Path], strip_nul: bool = False) -> str:
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if strip_nul:
            text = text.rstrip("\0")
        if text.strip():
            return text.strip()
    return ""


def machine_id(paths: Sequence[Path] = MACHINE_ID_FILES) -> str:
    """The first non-empty file; "" when none is readable (cAdvisor logs and goes on)."""
    return _first_content(paths)


def system_uuid(paths: Sequence[Path] = SYSTEM_UUID_FILES) -> str:
    """cAdvisor's order; "" when nothing is readable, as the kubelet then reports it."""
    for path in paths:
        try:
            return path.read_text(errors="replace").rstrip("\0").strip()
        except OSError:
            continue
    return ""


def boot_id(path: Path = BOOT_ID_FILE) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def os_image(paths: Sequence[Path] = OS_RELEASE_FILES) -> str:
    """PRETTY_NAME without quotes; "Linux" without one; "Unknown" without the file."""
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        match = re.search(r"PRETTY_NAME=(.*)", text)
        return match.group(1).strip('"') if match else "Linux"
    return "Unknown"


def go_arch(machine: str | None = None) -> str:
    """GOARCH for this machine (kubernetes.io/arch, nodeInfo.architecture)."""
    name = (machine or platform.machine()).lower()
    return _GO_ARCH.get(name, name)


def apparmor_enabled(securityfs: Path = Path("/sys/kernel/security/apparmor"),
                     param: Path = Path("/sys/module/apparmor/parameters/enabled")) -> bool:
    """runc's apparmor.IsEnabled, which decides the Ready message's ". AppArmor enabled"."""
    try:
        return securityfs.exists() and param.read_text().startswith("Y")
    except OSError:
        return False


def swap_capacity(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("SwapTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def runtime_version_text(runtime_name: str, runtime_version: str) -> str:
    """`<runtimeName>://<version>` with the version as k8s.io/apimachinery's
    version.String() prints it (containerd's "v1.7.13" becomes "1.7.13"), or
    "Unknown" when it does not parse."""
    return f"{runtime_name}://{_go_version(runtime_version) or 'Unknown'}"


def _go_version(text: str) -> str | None:
    """ParseSemantic, else ParseGeneric (which drops what follows the numbers)."""
    match = _VERSION_RE.match(text)
    if match is None:
        return None
    numbers, extra = match.group(1), match.group(2) or ""
    parts = numbers.split(".")
    if len(parts) == 3 and not any(p.startswith("0") and p != "0" for p in parts):
        extras = _EXTRA_RE.match(extra)
        if extras is not None:
            out = ".".join(str(int(p)) for p in parts)
            if extras.group(1):
                out += f"-{extras.group(1)}"
            if extras.group(2):
                out += f"+{extras.group(2)}"
            return out
    if len(parts) < 2 or (parts[0].startswith("0") and parts[0] != "0"):
        return None
    return ".".join(str(int(p)) for p in parts)


# -- addresses ---------------------------------------------------------------------------

def node_ip_problem(ip: str, host_addresses: set[str] | None = None) -> str | None:
    """The kubelet's validateNodeIP text for an address it would refuse, else None."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "nodeIP must be a valid IP address"
    if addr.is_loopback:
        return "nodeIP can't be loopback address"
    if addr.is_multicast:
        return "nodeIP can't be a multicast address"
    if addr.is_link_local:
        return "nodeIP can't be a link-local unicast address"
    if addr.is_unspecified:
        return "nodeIP can't be an all zeros address"
    if ip not in (host_addresses if host_addresses is not None else _host_addresses()):
        return f'node IP: "{ip}" not found in the host\'s network interfaces'
    return None


def _host_addresses() -> set[str]:
    out = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                out.add(a.address.split("%", 1)[0])
    return out


def _resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def node_addresses(node_name: str, hostname: str, node_ip: str = "") -> list[NodeAddress]:
    """InternalIP(s) then Hostname, in the kubelet's lookup order: `--node-ip`
    (one address, or two for dual stack) as given; else the hostname when it
    is an IP; else the node name's DNS addresses (first valid IPv4, else IPv6;
    loopback and addresses not on this host do not count); else the address
    of the default-route interface. Blocking (DNS): run in an executor."""
    ips = [p.strip() for p in node_ip.split(",") if p.strip()] if node_ip else []
    if not ips:
        ips = [_auto_ip(node_name, hostname)]
    return [*(NodeAddress(INTERNAL_IP, ip) for ip in ips), NodeAddress(HOSTNAME, hostname)]


def _auto_ip(node_name: str, hostname: str) -> str:
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    local = _host_addresses()
    chosen = ""
    for candidate in _resolve(node_name):
        if node_ip_problem(candidate, local) is None:
            if ipaddress.ip_address(candidate).version == 4:
                return candidate
            chosen = chosen or candidate
    if chosen:
        return chosen
    ip = hostinfo.default_node_ip()
    if ip == "127.0.0.1":  # no default route: nothing the kubelet would accept
        raise NodeAddressError(f"can't get ip address of node {node_name}: no default route "
                               "and the node name does not resolve to an address of this host")
    return ip


def read_node_facts(*, node_name: str, runtime_name: str, runtime_version: str,
                    node_ip: str = "", hostname: str | None = None) -> NodeFacts:
    """All facts at once. Blocking: run in an executor."""
    host = (hostname or node_name).strip().lower()
    return NodeFacts(
        machine_id=machine_id(), system_uuid=system_uuid(), boot_id=boot_id(),
        kernel_version=os.uname().release, os_image=os_image(), architecture=go_arch(),
        container_runtime_version=runtime_version_text(runtime_name, runtime_version),
        hostname=host, addresses=tuple(node_addresses(node_name, host, node_ip)),
        swap_capacity=swap_capacity())

