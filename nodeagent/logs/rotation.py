"""Container log rotation, as the kubelet's container log manager
(k/k pkg/kubelet/logs/container_log_manager.go).

Every `containerLogMonitorInterval` (10 s) each running container's CRI log
is checked; one at `containerLogMaxSize` (10Mi) or more is rotated:
  1. leftovers of an interrupted round go (`*.tmp`, an uncompressed file
     whose `.gz` exists);
  2. the oldest rotated files go, so that `containerLogMaxFiles` (5) holds
     after this rotation: the current file, the new rotated one and
     maxFiles-2 older ones;
  3. rotated files not yet compressed are gzipped (`N.log.<ts>.gz`);
  4. `N.log` is renamed `N.log.<YYYYMMDD-hhmmss>` (UTC) and the runtime is
     told to reopen it (CRI ReopenContainerLog); if that fails the rename is
     undone. The newest rotated file stays uncompressed, since the runtime may
     write to it until it reopens.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import time
from pathlib import Path
from typing import Any

import structlog

from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError, NotFoundError
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.logs.crilog import rotated_files

log = structlog.get_logger("nodeagent.logs")

TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"  # Go "20060102-150405"
TMP = ".tmp"
GZ = ".gz"


def logs_at_size(logs: dict[str, str], max_size: int) -> list[str]:
    """The containers whose log reached max_size (blocking: run in an executor)."""
    due = []
    for cid, path in logs.items():
        try:
            if os.stat(path).st_size >= max_size:
                due.append(cid)
        except FileNotFoundError:
            continue
    return due


def prepare_rotation(log_path: Path, max_size: int, max_files: int) -> bool:
    """Steps 1-3 for one log; True when the log is due (blocking: run in an executor)."""
    try:
        if os.stat(log_path).st_size < max_size:
            return False
    except FileNotFoundError:
        return False
    for leftover in log_path.parent.glob(log_path.name + ".*"):
        name = leftover.name
        if name.endswith(TMP) or (not name.endswith(GZ)
                                  and leftover.with_name(name + GZ).exists()):
            leftover.unlink(missing_ok=True)
    rotated = rotated_files(log_path)
    for old in rotated[:max(len(rotated) - (max_files - 2), 0)]:
        old.unlink(missing_ok=True)
    for path in rotated_files(log_path):
        if not path.name.endswith(GZ):
            compress(path)
    return True


def compress(path: Path) -> None:
    tmp = path.with_name(path.name + GZ + TMP)
    with open(path, "rb") as src, gzip.open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(tmp, path.with_name(path.name + GZ))
    path.unlink()


class LogRotator:
    def __init__(self, cri: CRIClient, *, max_size: int, max_files: int, interval: float,
                 executor: Any = None) -> None:
        self.cri = cri
        self.max_size = max_size
        self.max_files = max_files
        self.interval = interval
        self.executor = executor
        self._log_paths: dict[str, str] = {}  # running container id -> its CRI log path ("": none)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.rotate_all()
            except CRIError as exc:
                log.warning("log rotation skipped", error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a full disk, a bug: log it, never stop the agent
                log.exception("log rotation failed", error=repr(exc))

    async def rotate_all(self) -> None:
        """One List call and one executor job for the sizes each round: a
        container's log path never changes, so ContainerStatus is asked once
        per container, not every 10 s as the kubelet does (with 110 pods that
        was most of an idle agent's CRI calls)."""
        containers = await self.cri.list_containers(pb.ContainerFilter(
            state=pb.ContainerStateValue(state=pb.ContainerState.CONTAINER_RUNNING)))
        running = {c.id for c in containers}
        self._log_paths = {cid: path for cid, path in self._log_paths.items() if cid in running}
        for cid in running - self._log_paths.keys():
            try:
                self._log_paths[cid] = (await self.cri.container_status(cid)).status.log_path
            except NotFoundError:
                continue  # gone meanwhile
            except CRIError as exc:
                log.warning("log rotation failed", container_id=cid, error=str(exc))
        logs = {cid: path for cid, path in self._log_paths.items() if path}
        loop = asyncio.get_running_loop()
        due = await loop.run_in_executor(self.executor, logs_at_size, logs, self.max_size)
        for cid in due:
            try:
                await self.rotate(cid, Path(logs[cid]))
            except NotFoundError:
                continue  # gone meanwhile
            except (CRIError, OSError) as exc:
                log.warning("log rotation failed", container_id=cid, error=str(exc))

    async def rotate(self, container_id: str, path: Path) -> bool:
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self.executor, prepare_rotation, path, self.max_size,
                                          self.max_files):
            return False
        rotated = path.with_name(f"{path.name}.{time.strftime(TIMESTAMP_FORMAT, time.gmtime())}")
        if rotated.exists() or rotated.with_name(rotated.name + GZ).exists():
            return False  # rotated this very second already; next round
        os.rename(path, rotated)
        try:
            await self.cri.reopen_container_log(container_id)
        except CRIError:
            if not path.exists():
                os.rename(rotated, path)
            raise
        log.info("container log rotated", container_id=container_id, log=str(path),
                 rotated=rotated.name)
        return True
