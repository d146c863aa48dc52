"""Bridge and veth pairs over netlink (pyroute2). Blocking: run in an executor.

The pod side is configured through a netlink socket opened inside the pod's
network namespace: a thread enters the namespace with setns(2) only long
enough to create the socket (pyroute2's own NetNS forks a helper process,
which costs tens of milliseconds per pod).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

CLONE_NEWNET = 0x40000000
LOOPBACK_INDEX = 1  # `lo` is the first link of every network namespace
_libc = ctypes.CDLL(None, use_errno=True)


class LinkError(Exception):
    """A netlink step failed; the message names the step and the interface."""


def instance_tag(bridge: str) -> str:
    """Five hex digits naming one agent instance (its bridge) in host-global names."""
    return hashlib.sha256(bridge.encode()).hexdigest()[:5]


def host_veth_name(tag: str, container_id: str, ifname: str) -> str:
    """Deterministic, 15 chars: `v<tag><hash of container and ifname>`."""
    return "v" + tag + hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:9]


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def netns_ipr(path: str) -> Iterator[IPRoute]:
    """An IPRoute whose socket lives in the namespace at `path`."""
    try:
        target = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise LinkError(f"cannot open network namespace {path}: {exc.strerror}") from None
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            ipr = IPRoute()
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, name: str) -> int | None:
    try:
        return ipr.link("get", ifname=name)[0]["index"]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def _mac(ipr: IPRoute, index: int) -> str:
    return ipr.get_links(index)[0].get_attr("IFLA_ADDRESS") or ""


def _host_attr(name: str, attr: str) -> str | None:
    """A host interface attribute from sysfs (no netlink dump): ifindex, address.
    None for a link that is gone or going: while the kernel unregisters it (its
    peer's netns is being deleted, as the runtime does right after a DEL),
    sysfs answers EINVAL or ENODEV before the entry disappears."""
    try:
        with open(f"/sys/class/net/{name}/{attr}") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENODEV):
            return None
        raise


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@dataclass(frozen=True)
class BridgeInfo:
    name: str
    mac: str


def ensure_bridge(name: str, gateway: ipaddress.IPv4Interface, mtu: int) -> BridgeInfo:
    """The bridge with the gateway address, up, forwarding packets that come in
    on it (per-interface forwarding: the host's global ip_forward stays as it is)."""
    if _host_attr(name, "ifindex") is not None and not os.path.isdir(f"/sys/class/net/{name}/bridge"):
        raise LinkError(f"interface {name} exists and is not a bridge; choose another --pod-bridge")
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise LinkError(f"create bridge {name}: {exc}") from None
            index = _index(ipr, name)
            if index is None:
                raise LinkError(f"bridge {name} vanished right after creation")
        addrs = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
        if (str(gateway.ip), gateway.network.prefixlen) not in addrs:
            try:
                ipr.addr("add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise LinkError(f"add {gateway} to bridge {name}: {exc}") from None
        ipr.link("set", index=index, state="up")
        mac = _mac(ipr, index)
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/forwarding", "1")
    return BridgeInfo(name, mac)


def delete_link(name: str) -> bool:
    if _host_attr(name, "ifindex") is None:
        return False
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise LinkError(f"delete {name}: {exc}") from None
        return True


@dataclass(frozen=True)
class VethInfo:
    host_ifname: str
    host_mac: str
    mac: str


def bridge_info(name: str, gateway: ipaddress.IPv4Interface, mtu: int) -> BridgeInfo:
    """The bridge as ADD needs it: read from sysfs when it is up (the agent made
    it at start), made again when something removed it."""
    mac = _host_attr(name, "address")
    if mac is not None and _host_attr(name, "operstate") in ("up", "unknown", "down"):
        flags = int(_host_attr(name, "flags") or "0", 16)
        if flags & 1:  # IFF_UP
            return BridgeInfo(name, mac)
    return ensure_bridge(name, gateway, mtu)


def attach(bridge: str, host_ifname: str, netns: str, ifname: str,
           address: ipaddress.IPv4Interface, gateway: str, mtu: int) -> VethInfo:
    """veth pair: host end on the bridge (hairpin on), pod end `ifname` in `netns`
    with the address, MTU and a default route via the gateway; `lo` up.
    A leftover pair from an interrupted ADD is replaced."""
    if _host_attr(host_ifname, "ifindex") is not None:
        delete_link(host_ifname)
    master = _host_attr(bridge, "ifindex")
    if master is None:
        raise LinkError(f"bridge {bridge} does not exist")
    ns_fd = os.open(netns, os.O_RDONLY)
    try:
        with IPRoute() as ipr:
            try:
                ipr.link("add", ifname=host_ifname, kind="veth", mtu=mtu, master=int(master),
                         peer={"ifname": ifname, "net_ns_fd": ns_fd, "mtu": mtu})
            except NetlinkError as exc:
                raise LinkError(f"create veth {host_ifname} with peer {ifname} in {netns}: "
                                f"{exc}") from None
            index = int(_host_attr(host_ifname, "ifindex") or 0)
            ipr.link("set", index=index, state="up")
    finally:
        os.close(ns_fd)
    _write_sysctl(f"/sys/class/net/{host_ifname}/brport/hairpin_mode", "1")
    host_mac = _host_attr(host_ifname, "address") or ""
    with netns_ipr(netns) as pipr:
        pipr.link("set", index=LOOPBACK_INDEX, state="up")
        link = pipr.link("get", ifname=ifname)[0]
        index = link["index"]
        pipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
        pipr.link("set", index=index, state="up")
        pipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)
        mac = link.get_attr("IFLA_ADDRESS") or ""
    return VethInfo(host_ifname, host_mac, mac)


def check(bridge: str, host_ifname: str, netns: str, ifname: str,
          address: ipaddress.IPv4Interface, gateway: str) -> list[str]:
    """What CHECK finds wrong (empty when the attachment is as ADD left it)."""
    problems = []
    with IPRoute() as ipr:
        index = _index(ipr, host_ifname)
        master = _index(ipr, bridge)
        if index is None:
            problems.append(f"host interface {host_ifname} is missing")
        elif master is None or ipr.get_links(index)[0].get_attr("IFLA_MASTER") != master:
            problems.append(f"host interface {host_ifname} is not on bridge {bridge}")
    if not Path(netns).exists():
        return [*problems, f"network namespace {netns} is gone"]
    with netns_ipr(netns) as pipr:
        index = _index(pipr, ifname)
        if index is None:
            return [*problems, f"{ifname} is missing in {netns}"]
        addrs = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in pipr.get_addr(index=index, family=2)}
        if (str(address.ip), address.network.prefixlen) not in addrs:
            problems.append(f"{ifname} does not have address {address}")
        routes = [r for r in pipr.get_routes(family=2, oif=index)
                  if r["dst_len"] == 0 and r.get_attr("RTA_GATEWAY") == gateway]
        if not routes:
            problems.append(f"no default route via {gateway} on {ifname}")
    return problems


def links_with_prefix(prefix: str) -> list[str]:
    """Host interfaces by name prefix (sysfs: usable from any thread, loop or not)."""
    return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(prefix))


def interface_mtu_for(address: str) -> int:
    """MTU of the interface the host would use to reach `address` (default route)."""
    with IPRoute() as ipr:
        try:
            route = ipr.route("get", dst=address)[0]
            oif = route.get_attr("RTA_OIF")
            return int(ipr.get_links(oif)[0].get_attr("IFLA_MTU") or 1500)
        except (NetlinkError, IndexError, TypeError):
            return 1500
