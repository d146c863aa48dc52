"""ADD, DEL and CHECK for one pod attachment: IPAM, veth, hostPort rules.

Synchronous on purpose: the agent runs it in executor threads, and the
in-process fallback (`nodeagent.netns.local`) runs the very same code when
no agent is listening. Everything it needs is in the network config the
runtime passes (the conflist the agent wrote), so both agree.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeagent.netns import iptables, links
from nodeagent.netns.cni import (
    CHECK_FAILED, INVALID_CONFIG, SETUP_FAILED, Attachment, CNIError, Request, add_result,
    parse_request, version_result,
)
from nodeagent.netns.ipam import Allocation, IPStore

PLUGIN_TYPE = "nodeagent"


@dataclass(frozen=True)
class NetworkSettings:
    """The pod network of one agent instance, as written into its conflist."""
    name: str
    bridge: str
    subnet: ipaddress.IPv4Network
    mtu: int
    state_dir: Path
    agent_socket: Path
    python: str

    @property
    def tag(self) -> str:
        return links.instance_tag(self.bridge)

    @property
    def gateway(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.subnet.network_address + 1}/{self.subnet.prefixlen}")

    @property
    def chains(self) -> iptables.Chains:
        return iptables.Chains(self.tag)

    def conflist(self) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": self.name, "plugins": [{
            "type": PLUGIN_TYPE, "bridge": self.bridge, "subnet": str(self.subnet), "mtu": self.mtu,
            "stateDir": str(self.state_dir), "agentSocket": str(self.agent_socket),
            "python": self.python, "capabilities": {"portMappings": True}}]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NetworkSettings:
        """From the plugin's entry in the runtime's config (stdin)."""
        try:
            return cls(str(config["name"]), str(config["bridge"]),
                       ipaddress.IPv4Network(config["subnet"]), int(config.get("mtu") or 1500),
                       Path(config["stateDir"]), Path(config.get("agentSocket", "")),
                       str(config.get("python", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise CNIError(INVALID_CONFIG, f"invalid nodeagent network config: {exc!r}") from None


def handle(env: dict[str, str], stdin: str) -> tuple[int, str, str]:
    """One plugin invocation -> (exit code, stdout, stderr). The network is the
    one the config names, so the agent and the fallback serve it alike."""
    version = "1.0.0"
    try:
        req = parse_request(env, stdin)
        version = req.version
        if req.command == "VERSION":
            return 0, json.dumps(version_result(version)), ""
        net = PodNetwork(NetworkSettings.from_config(req.config))
        if req.command == "ADD":
            return 0, json.dumps(add_result(net.add(req), version)), ""
        if req.command == "DEL":
            net.delete(req.container_id, req.ifname)
        else:
            net.check(req)
        return 0, "", ""
    except CNIError as exc:
        return 1, json.dumps(exc.to_json(version)), ""
    except (links.LinkError, iptables.IptablesError) as exc:
        return 1, json.dumps(CNIError(SETUP_FAILED, str(exc)).to_json(version)), ""
    except OSError as exc:  # the traceback (stderr, agent log) says which step
        return 1, json.dumps(CNIError(SETUP_FAILED, str(exc)).to_json(version)), traceback.format_exc()
    except links.NetlinkError as exc:
        msg = f"netlink: {os.strerror(exc.code)} ({exc})"
        return 1, json.dumps(CNIError(SETUP_FAILED, msg).to_json(version)), ""
    except Exception as exc:  # never a traceback to the runtime; keep it on stderr
        err = CNIError(SETUP_FAILED, f"nodeagent network: unexpected {exc!r}")
        return 1, json.dumps(err.to_json(version)), traceback.format_exc()


class PodNetwork:
    def __init__(self, settings: NetworkSettings) -> None:
        self.settings = settings
        self.store = IPStore(settings.state_dir / "ipam", settings.subnet)

    # -- the plugin commands ------------------------------------------------

    def add(self, req: Request) -> Attachment:
        s = self.settings
        alloc, _ = self.store.allocate(req.container_id, req.ifname, req.netns, req.port_mappings)
        host_ifname = links.host_veth_name(s.tag, req.container_id, req.ifname)
        address = ipaddress.IPv4Interface(f"{alloc.ip}/{s.subnet.prefixlen}")
        try:
            bridge = links.bridge_info(s.bridge, s.gateway, s.mtu)
            veth = links.attach(s.bridge, host_ifname, req.netns, req.ifname, address,
                                str(s.gateway.ip), s.mtu)
            if alloc.port_mappings:
                self.sync_hostports()
        except BaseException:
            self._release(alloc)
            raise
        return Attachment(bridge=bridge.name, bridge_mac=bridge.mac, host_ifname=host_ifname,
                          host_mac=veth.host_mac, ifname=req.ifname, mac=veth.mac, netns=req.netns,
                          address=str(address), gateway=str(s.gateway.ip), mtu=s.mtu)

    def delete(self, container_id: str, ifname: str) -> None:
        """Idempotent: whatever is already gone is fine."""
        alloc = self.store.find(container_id, ifname)
        if alloc is not None:
            self._release(alloc)
        else:
            links.delete_link(links.host_veth_name(self.settings.tag, container_id, ifname))

    def check(self, req: Request) -> None:
        s = self.settings
        alloc = self.store.find(req.container_id, req.ifname)
        if alloc is None:
            raise CNIError(CHECK_FAILED, f"no address allocated to container {req.container_id}")
        address = ipaddress.IPv4Interface(f"{alloc.ip}/{s.subnet.prefixlen}")
        problems = links.check(s.bridge, links.host_veth_name(s.tag, req.container_id, req.ifname),
                               req.netns, req.ifname, address, str(s.gateway.ip))
        if req.prev_result is not None:
            ips = [i.get("address") for i in req.prev_result.get("ips", ())]
            if str(address) not in ips:
                problems.append(f"prevResult lists {ips}, the allocation is {address}")
        if problems:
            raise CNIError(CHECK_FAILED, "; ".join(problems))

    # -- shared with GC -----------------------------------------------------

    def _release(self, alloc: Allocation) -> None:
        links.delete_link(links.host_veth_name(self.settings.tag, alloc.container_id, alloc.ifname))
        self.store.release(alloc.ip)
        if alloc.port_mappings:
            self.sync_hostports()

    def sync_hostports(self) -> None:
        """The hostPort chain from the allocations on disk (the one truth)."""
        with self.store.locked():
            rules = [iptables.HostPortRule(a.container_id, a.ip, m)
                     for a in self.store.all() for m in a.port_mappings]
            iptables.write_hostports(self.settings.chains, rules)

    def garbage_collect(self, live_containers: set[str], grace: float) -> list[Allocation]:
        """Release allocations of sandboxes the runtime no longer has. Young ones are
        kept: the runtime lists a sandbox only after its network ADD finished."""
        now = time.time()
        released = []
        for alloc in self.store.all():
            if alloc.container_id in live_containers or now - alloc.created < grace:
                continue
            self._release(alloc)
            released.append(alloc)
        for stray in self.store.stray_files(grace):
            stray.unlink(missing_ok=True)
        return released
