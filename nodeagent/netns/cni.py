"""The CNI protocol (spec 1.0): the request a runtime makes, results and errors.

Shared by the agent's request server and the in-process fallback, so both
answer byte-for-byte alike. Standard library only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

SPEC_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")

# Spec error codes (SPEC.md "Error"); 100+ are the plugin's own.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
CONTAINER_UNKNOWN = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
IP_EXHAUSTED = 100
CHECK_FAILED = 101
SETUP_FAILED = 102

_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class CNIError(Exception):
    """A failure reported to the runtime as the spec's error JSON."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, version: str = SPEC_VERSION) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str  # tcp | udp
    host_ip: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"hostPort": self.host_port, "containerPort": self.container_port,
                "protocol": self.protocol, "hostIP": self.host_ip}

    @classmethod
    def from_json(cls, data: Any) -> PortMapping:
        try:
            # libcni replays a cached runtimeConfig on DEL with Go's field names
            # (HostPort, ...), so keys are matched case-insensitively.
            d = {str(k).lower(): v for k, v in data.items()}
            protocol = str(d.get("protocol") or "tcp").lower()
            mapping = cls(int(d["hostport"]), int(d["containerport"]), protocol,
                          str(d.get("hostip") or ""))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CNIError(INVALID_CONFIG, f"invalid portMappings entry {data!r}") from exc
        if protocol not in ("tcp", "udp"):
            raise CNIError(INVALID_CONFIG, f"portMappings: protocol {protocol!r} is not supported "
                                           "(tcp, udp)")
        if not (0 < mapping.host_port < 65536 and 0 < mapping.container_port < 65536):
            raise CNIError(INVALID_CONFIG, f"portMappings: port out of range in {data!r}")
        return mapping


@dataclass(frozen=True)
class Request:
    """One plugin invocation: CNI_* environment plus the network config on stdin."""
    command: str
    container_id: str
    netns: str
    ifname: str
    args: dict[str, str]
    config: dict[str, Any]
    version: str
    port_mappings: tuple[PortMapping, ...] = ()
    prev_result: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def pod(self) -> str:
        """namespace/name from CNI_ARGS, for logs."""
        return f"{self.args.get('K8S_POD_NAMESPACE', '')}/{self.args.get('K8S_POD_NAME', '')}"


def parse_request(env: dict[str, str], stdin: str) -> Request:
    """Validate the environment and config the way the spec requires."""
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CNIError(INVALID_ENV, f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}")
    try:
        config = json.loads(stdin) if stdin.strip() else {}
    except ValueError as exc:
        raise CNIError(DECODE_FAILURE, f"network config on stdin is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CNIError(DECODE_FAILURE, "network config on stdin must be a JSON object")
    version = str(config.get("cniVersion") or SPEC_VERSION)
    if command == "VERSION":
        return Request(command, "", "", "", {}, config, version)
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(INCOMPATIBLE_VERSION, f"config version {version!r} is not supported",
                       f"supported: {', '.join(SUPPORTED_VERSIONS)}")
    container_id = env.get("CNI_CONTAINERID", "")
    if not _CONTAINER_ID.match(container_id):
        raise CNIError(INVALID_ENV, f"CNI_CONTAINERID {container_id!r} is missing or malformed")
    ifname = env.get("CNI_IFNAME", "")
    if not ifname or len(ifname) > 15 or "/" in ifname or ifname in (".", ".."):
        raise CNIError(INVALID_ENV, f"CNI_IFNAME {ifname!r} is not a valid interface name")
    netns = env.get("CNI_NETNS", "")
    if command in ("ADD", "CHECK") and not netns:
        raise CNIError(INVALID_ENV, "CNI_NETNS is required for " + command)
    args: dict[str, str] = {}
    for item in filter(None, env.get("CNI_ARGS", "").split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise CNIError(INVALID_ENV, f"CNI_ARGS item {item!r} is not KEY=VALUE")
        args[key] = value
    runtime = config.get("runtimeConfig") or {}
    try:
        mappings = tuple(PortMapping.from_json(m) for m in runtime.get("portMappings") or ())
    except CNIError:
        if command != "DEL":
            raise
        mappings = ()  # DEL works from the allocation record; it must not fail on this
    prev = config.get("prevResult")
    return Request(command, container_id, netns, ifname, args, config, version, mappings,
                   prev if isinstance(prev, dict) else None)


def version_result(version: str = SPEC_VERSION) -> dict[str, Any]:
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


@dataclass(frozen=True)
class Attachment:
    """What ADD made: the host veth, the pod interface, its address."""
    bridge: str
    bridge_mac: str
    host_ifname: str
    host_mac: str
    ifname: str
    mac: str
    netns: str
    address: str  # CIDR form, e.g. 10.88.0.5/24
    gateway: str
    mtu: int


def add_result(att: Attachment, version: str) -> dict[str, Any]:
    """The ADD result: bridge, host veth, pod interface (with sandbox), one IP, the
    default route. containerd needs the CNI_IFNAME interface with `sandbox` set."""
    ip: dict[str, Any] = {"address": att.address, "gateway": att.gateway, "interface": 2}
    if version.startswith("0.3"):
        ip["version"] = "4"
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": att.bridge, "mac": att.bridge_mac},
            {"name": att.host_ifname, "mac": att.host_mac},
            {"name": att.ifname, "mac": att.mac, "sandbox": att.netns},
        ],
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0", "gw": att.gateway}],
        "dns": {},
    }
