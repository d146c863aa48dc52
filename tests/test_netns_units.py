"""The pod network's pure parts: CNI request parsing, IPAM on a real directory
(threads racing), the kubelet's hosts file format, the network config flags."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
from pathlib import Path

import pytest

from nodeagent.api.types import HostAlias
from nodeagent.config import ConfigError, build_config, load_config_file
from nodeagent.netns.cni import CNIError, PortMapping, add_result, Attachment, parse_request
from nodeagent.netns.hosts import host_network_content, managed_content
from nodeagent.netns.ipam import IPStore

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc", "CNI_NETNS": "/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"}


def test_request_from_env_and_stdin() -> None:
    conf = {"cniVersion": "0.4.0", "name": "n", "type": "nodeagent",
            "runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 8080,
                                                "protocol": "udp", "hostIP": "10.0.0.1"}]}}
    req = parse_request(ENV, json.dumps(conf))
    assert (req.command, req.container_id, req.netns, req.ifname, req.version) == \
        ("ADD", "abc", "/run/netns/x", "eth0", "0.4.0")
    assert req.pod == "ns/p"
    assert req.port_mappings == (PortMapping(80, 8080, "udp", "10.0.0.1"),)


@pytest.mark.parametrize("env, stdin, code", [
    ({**ENV, "CNI_COMMAND": "FROB"}, "{}", 4),
    ({**ENV, "CNI_CONTAINERID": "-bad"}, "{}", 4),
    ({**ENV, "CNI_IFNAME": "x" * 16}, "{}", 4),
    ({**ENV, "CNI_ARGS": "novalue"}, "{}", 4),
    (ENV, "[1]", 6),
    (ENV, '{"cniVersion": "9.9.9"}', 1),
    (ENV, '{"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 1}]}}', 7),
])
def test_bad_requests_are_numbered_errors(env: dict, stdin: str, code: int) -> None:
    with pytest.raises(CNIError) as err:
        parse_request(env, stdin)
    assert err.value.code == code
    assert err.value.to_json()["code"] == code


def test_del_tolerates_libcni_cached_runtime_config() -> None:
    """libcni replays the cached runtimeConfig on DEL with Go field names."""
    cached = {"runtimeConfig": {"portMappings": [{"HostPort": 80, "ContainerPort": 8080,
                                                  "Protocol": "tcp", "HostIP": ""}]}}
    req = parse_request({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}, json.dumps(cached))
    assert req.port_mappings == (PortMapping(80, 8080, "tcp", ""),)
    broken = {"runtimeConfig": {"portMappings": [{"nonsense": 1}]}}
    assert parse_request({**ENV, "CNI_COMMAND": "DEL"}, json.dumps(broken)).port_mappings == ()


def test_result_shapes_per_version() -> None:
    att = Attachment("br", "aa", "vh", "bb", "eth0", "cc", "/ns", "10.0.0.2/24", "10.0.0.1", 1500)
    v1 = add_result(att, "1.0.0")
    assert v1["ips"] == [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 2}]
    assert add_result(att, "0.3.1")["ips"][0]["version"] == "4"


def test_ipam_round_robin_reuse_and_exhaustion(tmp_path: Path) -> None:
    store = IPStore(tmp_path, ipaddress.IPv4Network("10.1.0.0/29"))  # .2 - .6
    first, new = store.allocate("c1", "eth0", "", ())
    assert (first.ip, new) == ("10.1.0.2", True)
    assert store.allocate("c1", "eth0", "", ()) == (first, False)
    ips = [store.allocate(f"c{i}", "eth0", "", ())[0].ip for i in range(2, 6)]
    assert ips == ["10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
    with pytest.raises(CNIError) as err:
        store.allocate("c6", "eth0", "", ())
    assert err.value.code == 100
    store.release("10.1.0.3")
    assert store.allocate("c7", "eth0", "", ())[0].ip == "10.1.0.3"
    store.release("10.1.0.2")
    store.release("10.1.0.4")
    # Round-robin continues after the last handed out (.3): .4 before .2.
    assert store.allocate("c8", "eth0", "", ())[0].ip == "10.1.0.4"


def test_ipam_never_hands_out_an_address_twice_under_threads(tmp_path: Path) -> None:
    net = ipaddress.IPv4Network("10.2.0.0/24")
    stores = [IPStore(tmp_path, net) for _ in range(4)]  # as separate processes would
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda i: stores[i % 4].allocate(f"c{i}", "eth0", "", ())[0].ip,
                            range(200)))
    assert len(set(got)) == 200
    assert sorted(a.ip for a in stores[0].all()) == sorted(got)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")], "temp files left"


def test_managed_hosts_file_is_the_kubelets() -> None:
    content = managed_content(["10.0.0.5"], "web", "sub.ns.svc.cluster.local",
                              [HostAlias("1.2.3.4", ["a", "b"]), HostAlias("5.6.7.8", ["c"])])
    assert content == (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        "10.0.0.5\tweb.sub.ns.svc.cluster.local\tweb\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "1.2.3.4\ta\tb\n"
        "5.6.7.8\tc\n")
    assert managed_content(["10.0.0.5"], "web", "", []).endswith("\n10.0.0.5\tweb\n")
    assert host_network_content("127.0.0.1 localhost\n", []) == \
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"


def test_network_flags_and_fields(tmp_path: Path) -> None:
    config = build_config({}, {"pod_cidr": "10.5.0.0/24", "cluster_dns": "10.96.0.10, 10.96.0.11",
                               "cluster_domain": "cluster.local"})
    assert config.cluster_dns == ("10.96.0.10", "10.96.0.11")
    path = tmp_path / "c.yaml"
    path.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                    "podCIDR: 10.6.0.0/16\nclusterDNS: [10.96.0.10]\nclusterDomain: example.org\n")
    config = build_config(load_config_file(str(path)), {})
    assert (config.pod_cidr, config.cluster_dns, config.cluster_domain) == \
        ("10.6.0.0/16", ("10.96.0.10",), "example.org")
    for values, text in [({"pod_cidr": "10.5.0.1/24"}, "podCIDR"),
                         ({"pod_cidr": "10.5.0.0/30"}, "too small"),
                         ({"cluster_dns": "not-an-ip"}, "clusterDNS"),
                         ({"pod_bridge": "x" * 16}, "bridge")]:
        with pytest.raises(ConfigError, match=text):
            build_config({}, values)
