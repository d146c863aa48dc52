"""Pods on the agent's own network, through real containerd: real connections
between pods, host, gateway and a namespace outside the pod CIDR; hostPorts;
resolv.conf and /etc/hosts inside the pods; create/delete cycles."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import ipaddress
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent import hostinfo
from nodeagent.cri.client import CRIClient
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv import podspecs
from nodeagent.devenv.env import DevEnv
from nodeagent.netns import iptables
from nodeagent.netns.links import host_veth_name, instance_tag, links_with_prefix
from tests.agentproc import NODE_NAME, AgentProcess, container, pod_manifest, running
from tests.netutil import outside_network, sh, socket_in_netns
from tests.polling import wait_for

HTTPD = ["sh", "-c", "mkdir -p /www && echo hello-$(hostname) > /www/index.html && "
                     "exec httpd -f -p 8080 -h /www"]


async def exec_in(cri: CRIClient, agent: AgentProcess, pod: str, *cmd: str) -> str:
    uid = (await agent.pod(pod))["metadata"]["uid"]
    found = await cri.list_containers(pb.ContainerFilter(
        label_selector={"io.kubernetes.pod.uid": uid},
        state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)))
    assert found, f"no running container in {pod}"
    result = await cri.exec_sync(found[0].id, list(cmd), timeout=15)
    assert result.exit_code == 0, f"{cmd} in {pod}: {result.stderr.decode()}{result.stdout.decode()}"
    return result.stdout.decode()


async def pod_http_get(cri: CRIClient, agent: AgentProcess, pod: str, host: str, port: int) -> str:
    """The body of GET http://host:port/ fetched from inside `pod` (busybox nc: the
    static busybox's wget crashes in glibc's resolver)."""
    out = await exec_in(cri, agent, pod, "sh", "-c",
                        f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port}")
    head, sep, body = out.partition("\r\n\r\n")
    assert sep and head.startswith("HTTP/1."), f"no HTTP response from {host}:{port}: {out!r}"
    return body


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


@contextlib.contextmanager
def http_server(address: str, body: str) -> Iterator[int]:
    """A one-page HTTP server on the host, bound to `address`; yields its port."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer((address, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _try_get(url: str) -> str | None:
    try:
        return http_get(url)
    except OSError:
        return None


def ports(container_port: int, host_port: int, host_ip: str = "", protocol: str = "TCP") -> str:
    extra = f"\n      hostIP: {host_ip}" if host_ip else ""
    return (f"    ports:\n    - containerPort: {container_port}\n      hostPort: {host_port}\n"
            f"      protocol: {protocol}{extra}\n")


def ipam_files(agent: AgentProcess) -> dict[str, dict]:
    ipam = agent.root_dir.resolve() / "network" / "ipam"
    return {p.name: json.loads(p.read_text()) for p in ipam.iterdir() if p.name[0].isdigit()}


def free_host_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


async def test_pods_reach_each_other_the_host_and_hostports(agent: AgentProcess, devenv: DevEnv,
                                                           cri: CRIClient) -> None:
    hp, udp_hp, gw_hp = free_host_port(), free_host_port(), free_host_port()
    gateway = str(ipaddress.ip_network(devenv.agent_subnet).network_address + 1)
    agent.write_manifest("a.yaml", pod_manifest("web-a", devenv.busybox, HTTPD,
                                                container_extra=ports(8080, hp)
                                                + f"    - containerPort: 9999\n      hostPort: {udp_hp}\n"
                                                  "      protocol: UDP\n"
                                                + f"    - containerPort: 8080\n      hostPort: {gw_hp}\n"
                                                  f"      hostIP: {gateway}\n"))
    agent.write_manifest("b.yaml", pod_manifest("web-b", devenv.busybox, HTTPD))
    a = await agent.wait_pod("web-a", running, what="Running")
    b = await agent.wait_pod("web-b", running, what="Running")
    ip_a, ip_b = a["status"]["podIP"], b["status"]["podIP"]
    subnet = ipaddress.ip_network(devenv.agent_subnet)
    assert ipaddress.ip_address(ip_a) in subnet and ipaddress.ip_address(ip_b) in subnet
    assert ip_a != ip_b and a["status"]["podIPs"] == [{"ip": ip_a}]
    node_ip = hostinfo.default_node_ip()

    # host -> pod (once httpd listens), pod -> pod
    assert await wait_for(lambda: _try_get(f"http://{ip_a}:8080/"), what="httpd in web-a") == \
        f"hello-web-a-{NODE_NAME}\n"
    await wait_for(lambda: _try_get(f"http://{ip_b}:8080/"), what="httpd in web-b")
    assert await pod_http_get(cri, agent, "web-b", ip_a, 8080) == f"hello-web-a-{NODE_NAME}\n"
    # pod -> host, on the gateway address
    with http_server(gateway, "hello-host") as port:
        assert await pod_http_get(cri, agent, "web-b", gateway, port) == "hello-host"
    # hostPort: from the host, from another pod, and from the pod itself (hairpin)
    assert http_get(f"http://{node_ip}:{hp}/") == f"hello-web-a-{NODE_NAME}\n"
    assert await pod_http_get(cri, agent, "web-b", node_ip, hp) == f"hello-web-a-{NODE_NAME}\n"
    assert await pod_http_get(cri, agent, "web-a", node_ip, hp) == f"hello-web-a-{NODE_NAME}\n"
    # hostIP: only that address forwards the port.
    assert http_get(f"http://{gateway}:{gw_hp}/") == f"hello-web-a-{NODE_NAME}\n"
    assert _try_get(f"http://{node_ip}:{gw_hp}/") is None

    # The rules are in the host's iptables-save (its own backend), in our chains.
    tag = instance_tag(devenv.agent_bridge)
    chain = iptables.Chains(tag).hostport
    rules = [r for r in iptables.saved_rules(tag) if r.startswith(f"-A {chain} ")]
    assert any(f"-p tcp -m tcp --dport {hp} " in r and f"{ip_a}:8080" in r for r in rules), rules
    assert any(f"-p udp -m udp --dport {udp_hp} " in r and f"{ip_a}:9999" in r for r in rules), rules
    assert any(r.startswith(f"-A {chain} -d {gateway}/32 -p tcp -m tcp --dport {gw_hp} ")
               for r in rules), rules
    assert set(ipam_files(agent)) == {ip_a, ip_b}
    assert http_get(f"http://127.0.0.1:{agent.healthz_port}/healthz/network") == "ok"
    unavailable = next(c for c in agent.get_json("/nodeagent/node")["conditions"]
                       if c["type"] == "NetworkUnavailable")
    assert (unavailable["status"], unavailable["reason"]) == ("False", "NodeagentIsUp")
    exposition = http_get(f"{agent.base_url}/metrics")
    assert 'kubelet_network_plugin_operations_duration_seconds_count{operation_type="set_up_pod"}' in exposition

    # Deleting the pod removes its rules, veth and address.
    sandbox_a = (await cri.list_pod_sandbox(pb.PodSandboxFilter(
        label_selector={"io.kubernetes.pod.uid": a["metadata"]["uid"]})))[0].id
    veth_a = host_veth_name(tag, sandbox_a, "eth0")
    assert veth_a in links_with_prefix(f"v{tag}")
    agent.remove_manifest("a.yaml")
    await agent.wait_gone("web-a")
    await wait_for(lambda: veth_a not in links_with_prefix(f"v{tag}"), what="veth removed")
    await wait_for(lambda: not [r for r in iptables.saved_rules(tag) if r.startswith(f"-A {chain} ")],
                   what="hostPort rules removed")
    assert set(ipam_files(agent)) == {ip_b}


async def test_masquerade_to_outside_the_pod_cidr(agent: AgentProcess, devenv: DevEnv,
                                                  cri: CRIClient) -> None:
    agent.write_manifest("c.yaml", pod_manifest("client", devenv.busybox, ["sleep", "3600"]))
    pod = await agent.wait_pod("client", running, what="Running")
    octet = int(devenv.id[:2], 16)
    with outside_network(f"nao{devenv.id}", octet) as (netns, host_ip, outside_ip):
        with socket_in_netns(netns) as server:
            server.bind((outside_ip, 9000))
            server.listen()
            server.settimeout(15)
            reply = asyncio.ensure_future(exec_in(
                cri, agent, "client", "sh", "-c", f"echo ping | nc -w 3 {outside_ip} 9000"))
            conn, peer = await asyncio.to_thread(server.accept)
            with conn:
                conn.sendall(b"pong\n")
            assert "pong" in await reply
    # The connection arrived from the node's address on that link, not the pod's.
    assert peer[0] == host_ip != pod["status"]["podIP"]


async def test_resolv_conf_and_hosts_inside_pods(devenv: DevEnv, cri: CRIClient, tmp_path: Path) -> None:
    agent = AgentProcess(devenv, tmp_path, "--cluster-dns", "10.96.0.10",
                         "--cluster-domain", "cluster.local")
    agent.start()
    try:
        agent.write_manifest("dns.yaml", pod_manifest(
            "cf", devenv.busybox, ["sleep", "3600"], extra_spec=(
                "  hostname: h1\n  subdomain: sub\n"
                "  hostAliases:\n  - ip: 10.1.2.3\n    hostnames: [foo.local, bar.local]\n")))
        agent.write_manifest("none.yaml", pod_manifest(
            "nodns", devenv.busybox, ["sleep", "3600"], extra_spec=(
                "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.53]\n"
                "    searches: [my.search]\n    options:\n    - name: ndots\n      value: \"2\"\n"
                "    - name: edns0\n")))
        agent.write_manifest("hostnet.yaml", pod_manifest(
            "hostnet", devenv.busybox, ["sleep", "3600"], extra_spec=(
                "  hostNetwork: true\n  hostAliases:\n  - ip: 10.9.9.9\n    hostnames: [hn.local]\n")))
        cf = await agent.wait_pod("cf", running, what="Running")
        nodns = await agent.wait_pod("nodns", running, what="Running")
        hn = await agent.wait_pod("hostnet", running, what="Running")

        resolv = (await exec_in(cri, agent, "cf", "cat", "/etc/resolv.conf")).splitlines()
        assert "nameserver 10.96.0.10" in resolv
        search = next(line for line in resolv if line.startswith("search "))
        assert search.split()[1:4] == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        assert "options ndots:5" in resolv
        ip = cf["status"]["podIP"]
        hosts = await exec_in(cri, agent, "cf", "cat", "/etc/hosts")
        assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
        assert f"\n{ip}\th1.sub.default.svc.cluster.local\th1\n" in hosts
        assert hosts.endswith("\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n")
        assert (await exec_in(cri, agent, "cf", "hostname")).strip() == "h1"

        resolv = (await exec_in(cri, agent, "nodns", "cat", "/etc/resolv.conf")).splitlines()
        assert "nameserver 192.0.2.53" in resolv and "search my.search" in resolv
        assert "options ndots:2 edns0" in resolv
        assert not [line for line in resolv if "10.96.0.10" in line]

        # hostNetwork: no CNI at all, the node's address and hosts file.
        assert hn["status"]["podIP"] == "127.0.0.1"
        hosts = await exec_in(cri, agent, "hostnet", "cat", "/etc/hosts")
        assert hosts == ("# Kubernetes-managed hosts file (host network).\n"
                         + Path("/etc/hosts").read_text()
                         + "\n# Entries added by HostAliases.\n10.9.9.9\thn.local\n")
        assert set(ipam_files(agent)) == {ip, nodns["status"]["podIP"]}  # none for hostNetwork
    finally:
        agent.stop()
        devenv.reset(tmp_path)


async def test_sandbox_cycles_through_containerd_leave_nothing(agent: AgentProcess, devenv: DevEnv,
                                                               cri: CRIClient) -> None:
    """RunPodSandbox/StopPodSandbox/RemovePodSandbox with the agent's network:
    containerd calls the plugin (ADD, then DEL twice); nothing stays."""
    tag = instance_tag(devenv.agent_bridge)
    netns_dir = devenv.containerd.paths.state / "io.containerd.grpc.v1.cri" / "netns"
    seen = set()
    for i in range(25):
        config = podspecs.sandbox_config(devenv, f"cycle{i}", f"uid-cycle-{i}")
        config.port_mappings.append(pb.PortMapping(protocol=pb.Protocol.TCP, container_port=80,
                                                   host_port=31000 + i))
        sandbox_id = await cri.run_pod_sandbox(config)
        status = await cri.pod_sandbox_status(sandbox_id)
        ip = status.status.network.ip
        seen.add(ip)
        assert ipam_files(agent)[ip]["containerID"] == sandbox_id
        assert host_veth_name(tag, sandbox_id, "eth0") in links_with_prefix(f"v{tag}")
        await cri.stop_pod_sandbox(sandbox_id)
        await cri.remove_pod_sandbox(sandbox_id)
        assert ipam_files(agent) == {}, f"cycle {i}"
        assert links_with_prefix(f"v{tag}") == [], f"cycle {i}"
        assert not [r for r in iptables.saved_rules(tag) if "-j DNAT" in r], f"cycle {i}"
        left = sorted(p.name for p in netns_dir.iterdir()) if netns_dir.exists() else []
        assert left == [], f"cycle {i}: netns left {left}"
    assert len(seen) == 25, f"round-robin: no address reused while others are free: {sorted(seen)}"


async def test_exhausted_pod_cidr_shows_in_pod_status(devenv: DevEnv, tmp_path: Path) -> None:
    from tests.netutil import PluginDriver, named_netns, private_bridge, remove_network

    bridge = private_bridge(devenv, "exhaust")
    cidr = f"10.91.{int(devenv.id[:2], 16) % 200 + 20}.0/29"
    agent = AgentProcess(devenv, tmp_path, "--pod-cidr", cidr, "--pod-bridge", bridge)
    agent.start()
    try:
        cni = PluginDriver(devenv, agent)
        with contextlib.ExitStack() as stack:
            taken = []
            for i in range(5):  # every address of the /29
                netns = stack.enter_context(named_netns(f"nah{devenv.id}{i}"))
                assert cni.run("ADD", f"hog{i}", netns).rc == 0
                taken.append((f"hog{i}", netns))
            agent.write_manifest("p.yaml", pod_manifest("starved", devenv.busybox, ["sleep", "3600"]))
            pod = await agent.wait_pod(
                "starved", lambda p: "no IP addresses available" in
                container(p, "main")["state"].get("waiting", {}).get("message", ""),
                what="waiting with the IPAM error")
            waiting = container(pod, "main")["state"]["waiting"]
            assert waiting["reason"] == "ContainerCreating"
            assert f"no IP addresses available in pod CIDR {cidr}: all 5 are allocated" in waiting["message"]
            assert pod["status"]["phase"] == "Pending" and not pod["status"].get("podIP")
            for cid, netns in taken:
                assert cni.run("DEL", cid, netns).rc == 0
            # The worker retries the sandbox (sync error backoff) and the pod starts.
            await agent.wait_pod("starved", running, timeout=40, what="Running after addresses freed")
    finally:
        agent.stop()
        devenv.reset(tmp_path)
        remove_network(bridge)


async def test_network_setup_failure_is_reported_not_fatal(devenv: DevEnv, tmp_path: Path) -> None:
    """A bad bridge name: the agent says why (log, healthz) and keeps running."""
    agent = AgentProcess(devenv, tmp_path, "--pod-bridge", "lo")
    agent.start(ready_path="/healthz/syncloop")
    try:
        url = f"http://127.0.0.1:{agent.healthz_port}/healthz"
        with pytest.raises(urllib.error.HTTPError) as err:
            http_get(f"{url}/network")
        body = err.value.read().decode()
        assert err.value.code == 500
        assert "interface lo exists and is not a bridge; choose another --pod-bridge" in body
        with pytest.raises(urllib.error.HTTPError):
            http_get(url)  # until node status exists, healthz is where the agent says it
        errors = [e for e in agent.log_lines() if e.get("event") == "pod network unavailable"]
        assert errors and "not a bridge" in errors[0]["error"]
        unavailable = next(c for c in agent.get_json("/nodeagent/node")["conditions"]
                           if c["type"] == "NetworkUnavailable")
        assert (unavailable["status"], unavailable["reason"]) == ("True", "NetworkPluginNotReady")
        assert "not a bridge" in unavailable["message"]
        assert devenv.agent_subnet.rsplit(".", 1)[0] not in sh("ip", "-4", "addr", "show", "dev", "lo")
        assert agent.process.poll() is None
    finally:
        agent.stop()
        devenv.reset(tmp_path)
