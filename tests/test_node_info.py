"""Node facts read from this host, checked against the host itself (its files
and tools), and the runtime version from the test containerd's CRI Version."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nodeagent.api.node import HOSTNAME, INTERNAL_IP
from nodeagent.cri.client import CRIClient
from nodeagent.node import info
from nodeagent.node.info import (
    KUBELET_VERSION, go_arch, node_addresses, node_ip_problem, os_image, read_node_facts,
    runtime_version_text, system_uuid,
)


def _sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def _host_ips() -> list[str]:
    """Every address on this host's interfaces, from `ip -o addr`."""
    return [line.split()[3].split("/")[0] for line in _sh("ip", "-o", "addr", "show").splitlines()]


def _default_route_src() -> str:
    out = _sh("ip", "-o", "route", "get", "192.0.2.1")
    return out.split(" src ")[1].split()[0]


async def test_facts_are_this_host(cri: CRIClient) -> None:
    version = await cri.version()
    facts = read_node_facts(node_name="Node-1.example", runtime_name=version.runtime_name,
                            runtime_version=version.runtime_version, node_ip="198.51.100.7")
    machine_files = [Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id")]
    expected_machine = next((p.read_text().strip() for p in machine_files
                             if p.exists() and p.read_text().strip()), "")
    assert facts.machine_id == expected_machine and re.fullmatch(r"[0-9a-f]{32}", facts.machine_id)
    assert facts.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert facts.kernel_version == _sh("uname", "-r")
    pretty = _sh("sh", "-c", ". /etc/os-release && printf %s \"$PRETTY_NAME\"")
    assert facts.os_image == pretty
    if shutil.which("dpkg"):  # Debian's architecture names are Go's for the common ones
        assert facts.architecture == _sh("dpkg", "--print-architecture")
    assert facts.architecture == go_arch(_sh("uname", "-m"))
    assert facts.operating_system == "linux"
    swap_total = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("SwapTotal:"))
    assert facts.swap_capacity == swap_total * 1024
    # CRI Version of the real runtime (Debian's "1.6.20~ds1"): apimachinery's version
    # parsing keeps the numbers of a non-semver version, without a leading "v".
    assert version.runtime_name == "containerd"
    numbers = re.match(r"v?(\d+\.\d+\.\d+)", version.runtime_version)
    assert numbers is not None
    assert facts.container_runtime_version == f"containerd://{numbers.group(1)}"
    assert facts.kubelet_version == KUBELET_VERSION
    assert re.fullmatch(r"v1\.31\.0\+nodeagent\.[0-9A-Za-z.-]+", KUBELET_VERSION)
    # --node-ip is taken as given; the hostname is the lowercased node name.
    assert facts.hostname == "node-1.example"
    assert [(a.type, a.address) for a in facts.addresses] == [
        (INTERNAL_IP, "198.51.100.7"), (HOSTNAME, "node-1.example")]
    sysinfo = facts.system_info()
    assert (sysinfo.machine_id, sysinfo.boot_id, sysinfo.system_uuid) == (
        facts.machine_id, facts.boot_id, facts.system_uuid)
    assert sysinfo.kube_proxy_version == "" and sysinfo.swap is not None


def test_system_uuid_follows_cadvisors_order(tmp_path: Path) -> None:
    dmi, ppc, ppc_vm, s390 = (tmp_path / n for n in ("product_uuid", "system-id", "vm,uuid", "machine-id"))
    order = (dmi, ppc, ppc_vm, s390)
    assert system_uuid(order) == ""  # nothing readable: reported empty, as the kubelet does
    s390.write_text("5f0e8c39d6b14a1c9b0b1f2d3c4e5f60\n")
    assert system_uuid(order) == "5f0e8c39d6b14a1c9b0b1f2d3c4e5f60"
    ppc_vm.write_bytes(b"IBM,0123456789\0")
    assert system_uuid(order) == "IBM,0123456789"
    dmi.write_text("EC2A1B2C-0000-1111-2222-333344445555\n")
    assert system_uuid(order) == "EC2A1B2C-0000-1111-2222-333344445555"
    dmi.chmod(0)  # root-only on real hosts; unreadable here only for a non-root test run
    if os.geteuid() != 0:
        assert system_uuid(order) == "IBM,0123456789"
    # This host: the same rule on the real paths.
    real = next((p.read_text().rstrip("\0").strip() for p in info.SYSTEM_UUID_FILES
                 if p.exists() and os.access(p, os.R_OK)), "")
    assert system_uuid() == real


def test_apparmor_is_runcs_check(tmp_path: Path) -> None:
    param = Path("/sys/module/apparmor/parameters/enabled")
    host = Path("/sys/kernel/security/apparmor").exists() and param.exists() and \
        param.read_text().startswith("Y")
    assert info.apparmor_enabled() is host
    fs, flag = tmp_path / "apparmor", tmp_path / "enabled"
    flag.write_text("Y\n")
    assert not info.apparmor_enabled(fs, flag)  # securityfs not mounted
    fs.mkdir()
    assert info.apparmor_enabled(fs, flag)
    flag.write_text("N\n")
    assert not info.apparmor_enabled(fs, flag)


def test_machine_id_and_os_release_fallbacks(tmp_path: Path) -> None:
    etc, dbus = tmp_path / "machine-id", tmp_path / "dbus-machine-id"
    dbus.write_text("0123456789abcdef0123456789abcdef\n")
    etc.write_text("\n")  # empty (first boot): the next file counts
    assert info.machine_id((etc, dbus)) == "0123456789abcdef0123456789abcdef"
    assert info.machine_id((tmp_path / "none",)) == ""
    release = tmp_path / "os-release"
    release.write_text('NAME="Flatcar"\nPRETTY_NAME="Flatcar Container Linux 3815.2.0"\n')
    assert os_image((tmp_path / "missing", release)) == "Flatcar Container Linux 3815.2.0"
    release.write_text("NAME=Minimal\n")
    assert os_image((release,)) == "Linux"
    assert os_image((tmp_path / "missing",)) == "Unknown"


@pytest.mark.parametrize(("machine", "arch"), [
    ("x86_64", "amd64"), ("aarch64", "arm64"), ("armv7l", "arm"), ("i686", "386"),
    ("ppc64le", "ppc64le"), ("s390x", "s390x"), ("riscv64", "riscv64"),
])
def test_go_architecture_names(machine: str, arch: str) -> None:
    assert go_arch(machine) == arch


@pytest.mark.parametrize(("raw", "shown"), [
    ("v1.6.20", "containerd://1.6.20"),
    ("1.7.13", "containerd://1.7.13"),
    ("2.1.0-rc.1+g3e1a", "containerd://2.1.0-rc.1+g3e1a"),
    ("1.26.0~ds1", "containerd://1.26.0"),      # not semver: ParseGeneric keeps the numbers
    ("1.30", "containerd://1.30"),
    ("v01.2.3", "containerd://Unknown"),          # a zero-prefixed major does not parse
    ("devel", "containerd://Unknown"),
])
def test_runtime_version_text(raw: str, shown: str) -> None:
    assert runtime_version_text("containerd", raw) == shown


def test_addresses_lookup_order() -> None:
    dual = node_addresses("n1", "n1", "10.0.0.5, fd00::5")
    assert [(a.type, a.address) for a in dual] == [(INTERNAL_IP, "10.0.0.5"), (INTERNAL_IP, "fd00::5"),
                                                   (HOSTNAME, "n1")]
    # A hostname that is an IP is the InternalIP.
    assert node_addresses("n1", "203.0.113.9")[0].address == "203.0.113.9"
    # A name that does not resolve: the default-route interface's address (`ip route get`).
    auto = node_addresses("no-such-node.invalid", "no-such-node.invalid")
    assert auto[0].type == INTERNAL_IP and auto[0].address == _default_route_src()
    assert auto[1].address == "no-such-node.invalid"
    # The host's own name: whatever it resolves to counts only when it is a non-loopback
    # address of this host; the answer is always one of the host's addresses.
    own = node_addresses(os.uname().nodename, os.uname().nodename)[0].address
    assert own in _host_ips() and not ipaddress.ip_address(own).is_loopback


def test_node_ip_problems_are_the_kubelets() -> None:
    local = set(_host_ips())
    good = next(ip for ip in _host_ips() if not ipaddress.ip_address(ip).is_loopback
                and not ipaddress.ip_address(ip).is_link_local)
    assert node_ip_problem(good) is None
    assert node_ip_problem("127.0.0.1", local) == "nodeIP can't be loopback address"
    assert node_ip_problem("224.0.0.1", local) == "nodeIP can't be a multicast address"
    assert node_ip_problem("169.254.1.1", local) == "nodeIP can't be a link-local unicast address"
    assert node_ip_problem("0.0.0.0", local) == "nodeIP can't be an all zeros address"
    assert node_ip_problem("not-an-ip", local) == "nodeIP must be a valid IP address"
    assert node_ip_problem("203.0.113.77") == 'node IP: "203.0.113.77" not found in the host\'s network interfaces'
