"""iptables rules for the pod network, in chains of this agent instance's own.

Rules go through the host's `iptables`/`iptables-restore` binaries, not
python-iptables: Debian 12's `iptables` is the nf_tables backend, and rules
written to legacy x_tables (all python-iptables can do) would be invisible in
the host's `iptables-save` and evaluated in a second, separate rule set. The
binaries always use the backend the host has selected; `backend()` reports
which. Chains are flushed and refilled with one `iptables-restore --noflush`,
so every change is atomic. Blocking: run in an executor.

nat layout (tag = the instance tag, so parallel agents never touch each
other's chains):
  POSTROUTING -> NA-<tag>-POSTRTG: MASQUERADE pod CIDR -> outside, and
                 hostPort traffic from a pod that lands on a pod (hairpin)
  PREROUTING, OUTPUT (--dst-type LOCAL) -> NA-<tag>-HOSTPORT: DNAT per hostPort
filter:
  FORWARD -> NA-<tag>-FORWARD: accept to and from the pod CIDR
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from nodeagent.netns.cni import PortMapping

IPTABLES = "iptables"
IPTABLES_RESTORE = "iptables-restore"
IPTABLES_SAVE = "iptables-save"


class IptablesError(Exception):
    """An iptables command failed; the message carries its stderr."""


@dataclass(frozen=True)
class HostPortRule:
    container_id: str
    pod_ip: str
    mapping: PortMapping


@dataclass(frozen=True)
class Chains:
    tag: str

    @property
    def postrouting(self) -> str: return f"NA-{self.tag}-POSTRTG"
    @property
    def hostport(self) -> str: return f"NA-{self.tag}-HOSTPORT"
    @property
    def forward(self) -> str: return f"NA-{self.tag}-FORWARD"

    @property
    def comment(self) -> str:
        return f"nodeagent {self.tag}"

    def jumps(self) -> list[tuple[str, str, list[str]]]:
        """(table, built-in chain, rule) that lead into our chains."""
        c = ["-m", "comment", "--comment", self.comment]
        local = ["-m", "addrtype", "--dst-type", "LOCAL"]
        return [("nat", "POSTROUTING", [*c, "-j", self.postrouting]),
                ("nat", "PREROUTING", [*local, *c, "-j", self.hostport]),
                ("nat", "OUTPUT", [*local, *c, "-j", self.hostport]),
                ("filter", "FORWARD", [*c, "-j", self.forward])]


def _run(argv: list[str], stdin: str | None = None) -> str:
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise IptablesError(f"{argv[0]} is not installed (Debian package iptables)") from None
    except subprocess.TimeoutExpired:
        raise IptablesError(f"{' '.join(argv)} timed out") from None
    if result.returncode != 0:
        raise IptablesError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def backend() -> str:
    """`nf_tables` or `legacy`: what the host's `iptables` command uses."""
    out = _run([IPTABLES, "-V"])
    return "nf_tables" if "nf_tables" in out else "legacy"


def _restore(text: str) -> None:
    _run([IPTABLES_RESTORE, "-w", "--noflush"], text)


def ensure_base(chains: Chains, cidr: ipaddress.IPv4Network) -> None:
    """Our chains with their fixed rules, and the jumps into them (once each)."""
    net = str(cidr)
    _restore("\n".join([
        "*nat",
        f":{chains.postrouting} - [0:0]",
        f":{chains.hostport} - [0:0]",
        f"-A {chains.postrouting} -s {net} -d {net} -m conntrack --ctstate DNAT "
        f"-m comment --comment \"hostport hairpin\" -j MASQUERADE",
        f"-A {chains.postrouting} -s {net} ! -d {net} "
        f"-m comment --comment \"pod CIDR to outside\" -j MASQUERADE",
        "COMMIT",
        "*filter",
        f":{chains.forward} - [0:0]",
        f"-A {chains.forward} -s {net} -j ACCEPT",
        f"-A {chains.forward} -d {net} -j ACCEPT",
        "COMMIT", ""]))
    for table, builtin, rule in chains.jumps():
        try:
            _run([IPTABLES, "-w", "-t", table, "-C", builtin, *rule])
        except IptablesError:
            _run([IPTABLES, "-w", "-t", table, "-I", builtin, "1", *rule])


def write_hostports(chains: Chains, rules: Iterable[HostPortRule]) -> None:
    """Replace the hostPort chain's rules with exactly `rules`, atomically."""
    lines = ["*nat", f":{chains.hostport} - [0:0]"]
    for r in sorted(rules, key=lambda r: (r.mapping.host_port, r.mapping.protocol, r.container_id)):
        m = r.mapping
        dst = f"-d {m.host_ip}/32 " if m.host_ip and m.host_ip not in ("0.0.0.0", "::") else ""
        lines.append(f"-A {chains.hostport} {dst}-p {m.protocol} -m {m.protocol} --dport {m.host_port} "
                     f"-m comment --comment \"{r.container_id[:60]}\" "
                     f"-j DNAT --to-destination {r.pod_ip}:{m.container_port}")
    lines += ["COMMIT", ""]
    _restore("\n".join(lines))


def remove_all(chains: Chains) -> None:
    """Jumps first, then our chains (teardown of an instance)."""
    for table, builtin, rule in chains.jumps():
        while True:
            try:
                _run([IPTABLES, "-w", "-t", table, "-D", builtin, *rule])
            except IptablesError:
                break
    for table, chain in (("nat", chains.postrouting), ("nat", chains.hostport),
                         ("filter", chains.forward)):
        for op in ("-F", "-X"):
            try:
                _run([IPTABLES, "-w", "-t", table, op, chain])
            except IptablesError:
                pass


def saved_rules(tag: str) -> list[str]:
    """Lines of the host's `iptables-save` that mention this instance."""
    return [line for line in _run([IPTABLES_SAVE]).splitlines() if f"NA-{tag}-" in line]
