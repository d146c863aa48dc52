"""IP address management for the pod CIDR, kept on disk under the agent's root dir.

One file per allocated address (as host-local does), made complete-then-linked
so a crash never leaves a half-written allocation, and created with link(2),
which fails when the name exists: two ADDs, in one process or two, can never
get the same address. A `lock` file (flock) serialises lookups with allocation
so a repeated ADD for the same container finds its address again.
Allocation goes round-robin after the last handed-out address (host-local's
`last_reserved_ip`), so a released address is reused as late as possible.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.netns.cni import IP_EXHAUSTED, CNIError, PortMapping

LAST_RESERVED = "last_reserved_ip"
LOCK = "lock"


@dataclass(frozen=True)
class Allocation:
    ip: str
    container_id: str
    ifname: str
    netns: str = ""
    port_mappings: tuple[PortMapping, ...] = ()
    created: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps({"ip": self.ip, "containerID": self.container_id, "ifname": self.ifname,
                           "netns": self.netns, "created": self.created,
                           "portMappings": [m.to_json() for m in self.port_mappings]})

    @classmethod
    def from_json(cls, text: str) -> Allocation:
        data = json.loads(text)
        return cls(data["ip"], data["containerID"], data["ifname"], data.get("netns", ""),
                   tuple(PortMapping.from_json(m) for m in data.get("portMappings", ())),
                   float(data.get("created", 0)))


def usable_hosts(subnet: ipaddress.IPv4Network) -> list[ipaddress.IPv4Address]:
    """Every host address except network, gateway (first) and broadcast."""
    return list(subnet.hosts())[1:]


class IPStore:
    def __init__(self, directory: Path, subnet: ipaddress.IPv4Network) -> None:
        self.dir = directory
        self.subnet = subnet
        self.dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def all(self) -> list[Allocation]:
        """Every complete allocation; stray temp files are ignored."""
        out = []
        for name in os.listdir(self.dir):
            if name.startswith(".") or name in (LAST_RESERVED, LOCK):
                continue
            try:
                out.append(Allocation.from_json((self.dir / name).read_text()))
            except (OSError, ValueError, KeyError, CNIError):
                continue
        return out

    def find(self, container_id: str, ifname: str) -> Allocation | None:
        return next((a for a in self.all()
                     if a.container_id == container_id and a.ifname == ifname), None)

    def allocate(self, container_id: str, ifname: str, netns: str,
                 port_mappings: tuple[PortMapping, ...]) -> tuple[Allocation, bool]:
        """(allocation, new). A container that already has an address keeps it."""
        with self.locked():
            existing = self.find(container_id, ifname)
            if existing is not None:
                return existing, False
            hosts = usable_hosts(self.subnet)
            start = 0
            try:
                last = ipaddress.IPv4Address((self.dir / LAST_RESERVED).read_text().strip())
                start = hosts.index(last) + 1
            except (OSError, ValueError):
                pass
            for i in range(len(hosts)):
                ip = str(hosts[(start + i) % len(hosts)])
                alloc = Allocation(ip, container_id, ifname, netns, port_mappings)
                if self._create(ip, alloc.to_json()):
                    _write_atomic(self.dir / LAST_RESERVED, ip)
                    return alloc, True
        raise CNIError(IP_EXHAUSTED, f"no IP addresses available in pod CIDR {self.subnet}: "
                                     f"all {len(hosts)} are allocated")

    def _create(self, ip: str, content: str) -> bool:
        """Complete file first, then link(2) it into place: exclusive and crash-safe."""
        final = self.dir / ip
        if final.exists():
            return False
        tmp = self.dir / f".{ip}.{os.getpid()}.tmp"
        _write_file(tmp, content)
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.dir)
        return True

    def release(self, ip: str) -> None:
        with self.locked():
            (self.dir / ip).unlink(missing_ok=True)
            _fsync_dir(self.dir)

    def stray_files(self, older_than: float) -> list[Path]:
        """Temp files and unreadable allocations a crash left behind."""
        now = time.time()
        out = []
        for path in self.dir.iterdir():
            if path.name in (LAST_RESERVED, LOCK):
                continue
            try:
                if now - path.stat().st_mtime < older_than:
                    continue
                if path.name.startswith("."):
                    out.append(path)
                else:
                    Allocation.from_json(path.read_text())
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, CNIError):
                out.append(path)
        return out


def _write_file(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_file(tmp, content)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
