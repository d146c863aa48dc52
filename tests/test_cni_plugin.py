"""The agent's CNI plugin invoked by hand, as the spec defines (CNI_* environment,
config on stdin, result or numbered error on stdout), against a running agent
with a small pod CIDR of its own: conformance, exhaustion, 200 ADD/DEL cycles,
and the agent killed in the middle of ADDs."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.devenv.env import DevEnv
from nodeagent.netns import iptables
from nodeagent.netns.links import host_veth_name, instance_tag, links_with_prefix
from tests.agentproc import AgentProcess
from tests.netutil import (
    PluginDriver, named_netns, network_leftovers, port_mapping, remove_network, sh,
    shared_leftovers, socket_in_netns, private_bridge,
)


def _cidr(env: DevEnv, prefix: int) -> str:
    octet = int(env.id[:2], 16) % 200 + 20
    return f"10.90.{octet}.0/{prefix}"


@pytest.fixture
def small_net(devenv: DevEnv, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[
        tuple[AgentProcess, PluginDriver, str, ipaddress.IPv4Network]]:
    """An agent on a private bridge with a /28 (13 pod addresses), or the prefix
    the test's `prefix` marker asks for. Afterwards nothing of it is left."""
    marker = request.node.get_closest_marker("prefix")
    cidr = _cidr(devenv, marker.args[0] if marker else 28)
    bridge = private_bridge(devenv, request.node.name)
    agent = AgentProcess(devenv, tmp_path, "--pod-cidr", cidr, "--pod-bridge", bridge)
    agent.start()
    try:
        yield agent, PluginDriver(devenv, agent), bridge, ipaddress.IPv4Network(cidr)
        leftovers = network_leftovers(bridge)
        assert not leftovers, f"left behind: {leftovers}"
    finally:
        agent.stop()
        devenv.reset(tmp_path)
        remove_network(bridge)
        assert not shared_leftovers(bridge)


def _cid() -> str:
    return uuid.uuid4().hex


# -- conformance ----------------------------------------------------------------

def test_version_add_check_del_by_hand(small_net, devenv: DevEnv) -> None:
    agent, cni, bridge, cidr = small_net
    version = cni.run("VERSION", "", "")
    assert version.rc == 0
    assert version.out["cniVersion"] == "1.0.0"
    assert {"0.4.0", "1.0.0"} <= set(version.out["supportedVersions"])

    cid = _cid()
    with named_netns(f"nac{devenv.id}") as netns:
        add = cni.run("ADD", cid, netns)
        assert add.rc == 0, add
        out = add.out
        assert out["cniVersion"] == "1.0.0"
        names = [i["name"] for i in out["interfaces"]]
        assert names == [bridge, host_veth_name(instance_tag(bridge), cid, "eth0"), "eth0"]
        assert out["interfaces"][2]["sandbox"] == netns
        ip = out["ips"][0]
        assert ip["interface"] == 2
        assert ipaddress.ip_interface(ip["address"]).network == cidr
        assert ip["gateway"] == str(cidr.network_address + 1)
        assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": ip["gateway"]}]
        # What the result claims is what the namespace has.
        name = Path(netns).name
        assert ip["address"] in sh("ip", "-n", name, "-4", "addr", "show", "eth0")
        assert out["interfaces"][2]["mac"] in sh("ip", "-n", name, "link", "show", "eth0")
        assert f"default via {ip['gateway']} dev eth0" in sh("ip", "-n", name, "route")
        assert "UP" in sh("ip", "-n", name, "link", "show", "lo")
        host_link = sh("ip", "-d", "link", "show", names[1])
        assert f"master {bridge}" in host_link and "hairpin on" in host_link
        # The host reaches the pod address: a TCP connection into the namespace.
        pod_ip = ip["address"].split("/")[0]
        with socket_in_netns(netns) as server:
            server.bind((pod_ip, 7777))
            server.listen()
            with socket.create_connection((pod_ip, 7777), timeout=5) as client:
                conn, peer = server.accept()
                conn.close()
            assert peer[0] == ip["gateway"]  # the host's source address on the bridge

        check = cni.run("CHECK", cid, netns, prevResult=out)
        assert (check.rc, check.out) == (0, None), check
        # CHECK notices what was broken behind the plugin's back.
        sh("ip", "-n", name, "addr", "flush", "dev", "eth0")
        broken = cni.run("CHECK", cid, netns, prevResult=out)
        assert broken.rc == 1 and broken.out["code"] == 101, broken
        assert "does not have address" in broken.out["msg"]

        # A second ADD for the same container and ifname keeps its address.
        assert cni.run("ADD", cid, netns).ip == ip["address"].split("/")[0]

        for netns_value in (netns, netns, ""):  # DEL is idempotent; the last as after netns removal
            dele = cni.run("DEL", cid, netns_value)
            assert (dele.rc, dele.out) == (0, None), dele
        assert cni.allocations() == {}
        assert links_with_prefix(f"v{instance_tag(bridge)}") == []


def test_errors_are_numbered_cni_errors(small_net, devenv: DevEnv) -> None:
    agent, cni, bridge, cidr = small_net
    with named_netns(f"nae{devenv.id}") as netns:
        proc = subprocess.run([str(cni.plugin)], input="{not json", capture_output=True, text=True,
                              env=cni.env("ADD", _cid(), netns))
        assert proc.returncode == 1 and '"code": 6' in proc.stdout
        cases = [
            (cni.env("ADD", "", netns), cni.stdin(), 4, "CNI_CONTAINERID"),
            (cni.env("ADD", _cid(), ""), cni.stdin(), 4, "CNI_NETNS"),
            (cni.env("ADD", _cid(), netns), cni.stdin(cniVersion="0.2.0"), 1, "not supported"),
            (cni.env("ADD", _cid(), netns), cni.stdin(subnet="bogus"), 7, "invalid"),
            (cni.env("ADD", _cid(), "/nonexistent/netns"), cni.stdin(), 102, "/nonexistent/netns"),
            (cni.env("ADD", _cid(), netns),
             cni.stdin(runtimeConfig={"portMappings": [port_mapping(80, 80, "sctp")]}), 7, "sctp"),
        ]
        for env, stdin, code, text in cases:
            proc = subprocess.run([str(cni.plugin)], input=stdin, env=env, capture_output=True,
                                  text=True)
            out = json.loads(proc.stdout)
            assert proc.returncode == 1, (env, proc.stdout)
            assert out["code"] == code and text in out["msg"], out
        assert cni.allocations() == {}, "a failed ADD releases its address"


@pytest.mark.prefix(29)
def test_exhaustion_is_a_clear_error(small_net, devenv: DevEnv) -> None:
    agent, cni, bridge, cidr = small_net
    usable = len(list(cidr.hosts())) - 1  # gateway excluded
    with contextlib.ExitStack() as stack:
        spaces = [stack.enter_context(named_netns(f"nax{devenv.id}{i}")) for i in range(usable + 1)]
        ids = [_cid() for _ in spaces]
        try:
            for cid, netns in zip(ids[:usable], spaces):
                assert cni.run("ADD", cid, netns).rc == 0
            full = cni.run("ADD", ids[-1], spaces[-1])
            assert full.rc == 1 and full.out["code"] == 100
            assert full.out["msg"] == (f"no IP addresses available in pod CIDR {cidr}: "
                                       f"all {usable} are allocated")
            assert "eth0" not in sh("ip", "-n", Path(spaces[-1]).name, "link")
        finally:
            for cid, netns in zip(ids, spaces):
                cni.run("DEL", cid, netns)
        assert cni.allocations() == {}


# -- many cycles -------------------------------------------------------------------

def test_200_add_del_cycles_leave_nothing_and_reuse_addresses(small_net, devenv: DevEnv) -> None:
    agent, cni, bridge, cidr = small_net
    tag = instance_tag(bridge)
    hostport = iptables.Chains(tag).hostport
    with named_netns(f"naa{devenv.id}") as anchor_ns, named_netns(f"nay{devenv.id}") as netns:
        anchor = _cid()
        anchor_ip = cni.run("ADD", anchor, anchor_ns).ip
        seen: dict[str, int] = {}
        for i in range(200):
            cid = _cid()
            add = cni.run("ADD", cid, netns,
                          runtimeConfig={"portMappings": [port_mapping(20000 + i, 8080)]})
            ip = add.ip
            assert ip != anchor_ip, "an allocated address was handed out again"
            seen[ip] = seen.get(ip, 0) + 1
            rules = [r for r in iptables.saved_rules(tag) if r.startswith(f"-A {hostport} ")]
            assert len(rules) == 1 and f"--dport {20000 + i} " in rules[0] and f"{ip}:8080" in rules[0]
            assert cni.run("DEL", cid, netns).rc == 0
            assert cni.run("DEL", cid, "").rc == 0
            assert set(cni.allocations()) == {anchor_ip}
            assert links_with_prefix(f"v{tag}") == [host_veth_name(tag, anchor, "eth0")]
            assert "eth0" not in sh("ip", "-n", Path(netns).name, "link")
            assert not [r for r in iptables.saved_rules(tag) if r.startswith(f"-A {hostport} ")]
        # Round-robin over the 12 free addresses: every one reused, none out of turn.
        assert len(seen) == len(list(cidr.hosts())) - 2
        assert max(seen.values()) - min(seen.values()) <= 1
        assert cni.run("DEL", anchor, anchor_ns).rc == 0


# -- crash in the middle --------------------------------------------------------------

@pytest.mark.prefix(27)
def test_agent_killed_during_adds_then_restarted(small_net, devenv: DevEnv) -> None:
    agent, cni, bridge, cidr = small_net
    tag = instance_tag(bridge)
    names = [f"nak{devenv.id}{i:02d}" for i in range(16)]
    with contextlib.ExitStack() as stack:
        spaces = [stack.enter_context(named_netns(n)) for n in names]
        ids = [_cid() for _ in spaces]
        procs = [cni.popen("ADD", cid, ns) for cid, ns in zip(ids, spaces)]
        time.sleep(0.05)
        agent.kill()
        results = [cni.result(p) for p in procs]
        ok = {cid: r.ip for cid, r in zip(ids, results) if r.rc == 0}
        failed = [(cid, ns) for cid, ns, r in zip(ids, spaces, results) if r.rc != 0]
        for r in results:
            if r.rc != 0:
                assert r.out["code"] == 11, r  # "try again later", never a traceback
        # Whatever the crash left: one file per address, each a complete record.
        records = cni.allocations()
        assert len({r["containerID"] for r in records.values()}) == len(records)

        agent.start()
        for cid, ns in failed:  # what a runtime does after a failed ADD: DEL, later ADD again
            assert cni.run("DEL", cid, ns).rc == 0
            ok[cid] = cni.run("ADD", cid, ns).ip
        assert len(set(ok.values())) == len(ids), f"duplicate addresses: {ok}"
        records = cni.allocations()
        assert {ip: r["containerID"] for ip, r in records.items()} == {ip: c for c, ip in ok.items()}
        assert sorted(links_with_prefix(f"v{tag}")) == sorted(
            host_veth_name(tag, cid, "eth0") for cid in ids)
        for cid, ns in zip(ids, spaces):
            assert cni.run("CHECK", cid, ns).rc == 0
            assert ok[cid] in sh("ip", "-n", Path(ns).name, "-4", "addr", "show", "eth0")
        for cid, ns in zip(ids, spaces):
            assert cni.run("DEL", cid, ns).rc == 0
        assert cni.allocations() == {}


# -- garbage collection against the runtime ----------------------------------------------

async def test_gc_releases_what_the_runtime_does_not_have(small_net, devenv: DevEnv) -> None:
    from nodeagent.cri.client import CRIClient
    from nodeagent.devenv import podspecs
    from nodeagent.netns.manager import NetworkManager
    from nodeagent.netns.network import NetworkSettings

    agent, cni, bridge, cidr = small_net
    tag = instance_tag(bridge)
    hostport = iptables.Chains(tag).hostport
    async with CRIClient(devenv.endpoint, request_timeout=60) as cri:
        # A real sandbox on this network (containerd runs the plugin) ...
        sandbox = await cri.run_pod_sandbox(podspecs.sandbox_config(devenv, "gc-live", "uid-gc-live"))
        try:
            live_ip = (await cri.pod_sandbox_status(sandbox)).status.network.ip
            # ... and what a crash leaves: an attachment whose sandbox the runtime
            # never got, a half-written temp file and an unreadable record.
            with named_netns(f"nag{devenv.id}") as netns:
                gone = cni.run("ADD", "gone" + _cid(), netns,
                               runtimeConfig={"portMappings": [port_mapping(32123, 80)]})
                ipam = cni.state_dir / "ipam"
                stray = ipam / f".{cidr.network_address + 9}.4242.tmp"
                stray.write_text('{"ip": ')
                broken = ipam / str(cidr.network_address + 10)
                broken.write_text("")
                assert set(cni.allocations()) == {live_ip, gone.ip, broken.name}
                manager = NetworkManager(NetworkSettings.from_config(cni.conf),
                                         cni_bin_dir=Path("/nonexistent"), cni_conf_dir=Path("/nonexistent"),
                                         cri=cri)
                assert await manager.garbage_collect(grace=60) == 0  # young: maybe mid-ADD
                assert await manager.garbage_collect(grace=0) == 1
                records = {p.name for p in ipam.iterdir() if p.name[0].isdigit()}
                assert records == {live_ip}
                assert not stray.exists() and not broken.exists()
                assert links_with_prefix(f"v{tag}") == [host_veth_name(tag, sandbox, "eth0")]
                assert not [r for r in iptables.saved_rules(tag) if r.startswith(f"-A {hostport} ")]
                assert "eth0" not in sh("ip", "-n", Path(netns).name, "link")
        finally:
            await cri.stop_pod_sandbox(sandbox)
            await cri.remove_pod_sandbox(sandbox)
    assert cni.allocations() == {}


def test_delete_link_while_its_netns_goes_away() -> None:
    """containerd deletes a pod's netns right after the network DEL; a link the
    kernel is still unregistering answers EINVAL/ENODEV from sysfs. Reading it
    or deleting it then is "already gone", never an error (it failed
    StopPodSandbox in a benchmark: `[Errno 22] Invalid argument`)."""
    from nodeagent.netns.links import _host_attr, delete_link

    tag = uuid.uuid4().hex[:6]
    for i in range(10):
        ns, host = f"na-t-{tag}-{i}", f"nat{tag}{i}"
        with named_netns(ns):
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
            try:
                assert _host_attr(host, "ifindex") is not None
                deleting = subprocess.Popen(["ip", "netns", "del", ns])
                deadline = time.monotonic() + 5
                while _host_attr(host, "ifindex") is not None:  # alive, then dying: never raises
                    assert time.monotonic() < deadline, f"{host} outlived its peer's netns"
                assert delete_link(host) is False
                assert deleting.wait(10) == 0
            finally:
                sh("ip", "link", "del", host, check=False)
        assert host not in sh("ip", "-o", "link")
