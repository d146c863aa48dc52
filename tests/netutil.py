"""Helpers for the pod network tests: network namespaces the tests own, the
agent's CNI plugin invoked by hand as a runtime would, host-side inspection."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeagent.devenv.env import DevEnv, agent_network_leftovers, remove_agent_network
from nodeagent.netns import iptables
from nodeagent.netns.links import instance_tag, links_with_prefix
from tests.agentproc import AgentProcess


def sh(*argv: str, check: bool = True) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {result.stderr}")
    return result.stdout


@contextlib.contextmanager
def named_netns(name: str) -> Iterator[str]:
    """A network namespace at /run/netns/<name>, deleted afterwards."""
    sh("ip", "netns", "add", name)
    try:
        yield f"/run/netns/{name}"
    finally:
        sh("ip", "netns", "del", name, check=False)


@contextlib.contextmanager
def outside_network(name: str, third_octet: int) -> Iterator[tuple[str, str, str]]:
    """A namespace outside the pod CIDR, linked to the host by a veth pair:
    (netns path, host-side address, namespace-side address). Forwarding is enabled
    on the host end only, so replies to pods can be routed back."""
    host_ip, ns_ip = f"198.18.{third_octet}.1", f"198.18.{third_octet}.2"
    host_if, ns_if = f"{name}h"[:15], f"{name}n"[:15]
    with named_netns(name) as path:
        try:
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
            sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
            sh("ip", "link", "set", host_if, "up")
            Path(f"/proc/sys/net/ipv4/conf/{host_if}/forwarding").write_text("1")
            sh("ip", "-n", name, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
            sh("ip", "-n", name, "link", "set", ns_if, "up")
            sh("ip", "-n", name, "link", "set", "lo", "up")
            yield path, host_ip, ns_ip
        finally:
            sh("ip", "link", "del", host_if, check=False)


def socket_in_netns(path: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created inside the namespace at `path` (from this thread, briefly)."""
    from nodeagent.netns.links import _setns

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(socket.AF_INET, kind)
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


@dataclass
class CNIResult:
    rc: int
    out: dict[str, Any] | None
    stderr: str

    @property
    def ip(self) -> str:
        assert self.rc == 0 and self.out, f"ADD failed: {self.out} {self.stderr}"
        return self.out["ips"][0]["address"].split("/")[0]


class PluginDriver:
    """Invokes the installed plugin executable exactly as a runtime does."""

    def __init__(self, env: DevEnv, agent: AgentProcess) -> None:
        paths = env.containerd.paths
        self.plugin = paths.cni_bin / "nodeagent"
        conflist = next(paths.cni_conf.glob("00-*.conflist"))
        data = json.loads(conflist.read_text())
        self.network = data
        self.conf = {**data["plugins"][0], "name": data["name"], "cniVersion": data["cniVersion"]}
        self.cni_path = str(paths.cni_bin)
        self.state_dir = Path(self.conf["stateDir"])

    def env(self, command: str, container_id: str, netns: str, ifname: str = "eth0") -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
                "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": self.cni_path,
                "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME={container_id[:20]}"}

    def stdin(self, **extra: Any) -> str:
        return json.dumps({**self.conf, **extra})

    def popen(self, command: str, container_id: str, netns: str, **extra: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen([str(self.plugin)], env=self.env(command, container_id, netns),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        proc.stdin.write(self.stdin(**extra))
        proc.stdin.close()
        proc.stdin = None  # communicate() must not touch it again
        return proc

    @staticmethod
    def result(proc: subprocess.Popen[str]) -> CNIResult:
        out, err = proc.communicate(timeout=60)
        return CNIResult(proc.returncode, json.loads(out) if out.strip() else None, err)

    def run(self, command: str, container_id: str, netns: str, **extra: Any) -> CNIResult:
        return self.result(self.popen(command, container_id, netns, **extra))

    def allocations(self) -> dict[str, dict[str, Any]]:
        """ip -> allocation record, straight from the IPAM files."""
        ipam = self.state_dir / "ipam"
        out = {}
        for path in ipam.iterdir():
            if path.name[0].isdigit():
                try:
                    out[path.name] = json.loads(path.read_text())
                except ValueError:
                    out[path.name] = {}  # unreadable: what a crash mid-write would leave
        return out


def port_mapping(host_port: int, container_port: int, protocol: str = "tcp",
                 host_ip: str = "") -> dict[str, Any]:
    return {"hostPort": host_port, "containerPort": container_port, "protocol": protocol,
            "hostIP": host_ip}


def private_bridge(env: DevEnv, purpose: str) -> str:
    """A bridge name of this env's own for a test's private agent network."""
    return "naq" + hashlib.sha256(f"{env.id}/{purpose}".encode()).hexdigest()[:8]


def network_leftovers(bridge: str) -> list[str]:
    return agent_network_leftovers(bridge)


def remove_network(bridge: str) -> None:
    remove_agent_network(bridge)
    sh("ip", "link", "del", bridge, check=False)


def shared_leftovers(bridge: str) -> list[str]:
    tag = instance_tag(bridge)
    return iptables.saved_rules(tag) + links_with_prefix(f"v{tag}") + (
        [bridge] if Path(f"/sys/class/net/{bridge}").exists() else [])
