"""The kubepods hierarchy: node-allocatable root, QoS tiers, one cgroup per pod.

The pod worker asks for a pod's cgroup before its sandbox starts (the
sandbox's cgroup_parent) and for its removal after the last process is
gone; the pod manager tells which pods are active so the burstable tier's
shares follow them and orphaned pod cgroups are removed. Values come from
cgroups/values.py, files are written by cgroups/fs.py in an executor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterable
from typing import Any

import structlog

from nodeagent.api.types import Pod
from nodeagent.cgroups import names
from nodeagent.cgroups.fs import CgroupBackend, CgroupBusy, CgroupError
from nodeagent.cgroups.qos import BEST_EFFORT, BURSTABLE, GUARANTEED, pod_qos_class
from nodeagent.cgroups.values import (
    MIN_SHARES, ResourceConfig, ResourcePolicy, milli_cpu_to_shares, pod_requests, pod_resource_config,
)
from nodeagent.eviction.ranking import PodUsage
from nodeagent.metrics import kubelet as metrics
from nodeagent.node.capacity import NodeResources

log = structlog.get_logger("nodeagent.cgroups")

# kubelet_cgroup_manager_duration_seconds{operation_type}: the kubelet's create/update/destroy.
_OPERATION_TYPES = {"ensure": "create", "create": "create", "remove": "destroy", "procs": "pids", "children": "list",
                    "exists": "exists", "memory_working_set": "stats", "pids_current": "stats"}

QOS_UPDATE_PERIOD = 60.0  # kubelet periodicQOSCgroupUpdateInterval
KILL_ATTEMPTS = 5


class CgroupManager:
    def __init__(self, backend: CgroupBackend, *, driver: str, root: names.CgroupName,
                 policy: ResourcePolicy, pods_budget: NodeResources | None = None,
                 executor: Any = None) -> None:
        self.backend = backend
        self.driver = driver
        self.root = root
        self.policy = policy
        self.pods_budget = pods_budget
        self.executor = executor
        # uid -> the pod's cpu request if Burstable, else 0: what the burstable
        # tier's shares sum, computed once per pod (requests are fixed per uid).
        self._active: dict[str, int] = {}
        self._burstable_shares: int | None = None  # last written to the burstable tier

    # -- names --------------------------------------------------------------

    def path(self, name: names.CgroupName) -> str:
        return name.path(self.driver)

    def pod_cgroup(self, pod: Pod) -> names.CgroupName:
        return names.pod_cgroup(self.root, pod_qos_class(pod), pod.metadata.uid)

    def pod_parent(self, pod: Pod) -> str:
        """The sandbox's cgroup_parent (for systemd, the expanded slice path,
        whose last element containerd uses as the slice)."""
        return self.path(self.pod_cgroup(pod))

    # -- node level ---------------------------------------------------------

    async def start(self) -> None:
        """kubepods limited to the pods' budget; the two QoS tiers below it."""
        kubepods = names.kubepods(self.root)
        budget = self.pods_budget
        config = None
        if budget is not None:
            config = ResourceConfig(cpu_shares=milli_cpu_to_shares(budget.cpu),
                                    memory_limit=budget.memory or None, pids_limit=budget.pid or None)
        await self._run(self.backend.ensure, self.path(kubepods), config)
        await self.update_tiers(force=True)
        log.info("cgroup hierarchy ready", kubepods=self.path(kubepods), driver=self.driver,
                 cgroup_version=self.backend.version,
                 memory_limit=config.memory_limit if config else None)

    def set_active_pods(self, pods: Iterable[Pod]) -> None:
        """The pods that have a worker (running or terminating): their cgroups
        are kept, every other pod cgroup is an orphan."""
        active = self._active
        self._active = {p.metadata.uid: active[p.metadata.uid] if p.metadata.uid in active
                        else _burstable_cpu(p) for p in pods}

    async def update_tiers(self, *, force: bool = False) -> None:
        """kubelet qosContainerManager.UpdateCgroups: burstable shares = the
        sum of the burstable pods' cpu requests; besteffort always 2."""
        shares = milli_cpu_to_shares(sum(self._active.values()))
        if shares == self._burstable_shares and not force:
            return
        await self._run(self.backend.ensure, self.path(names.tier(self.root, BURSTABLE)),
                        ResourceConfig(cpu_shares=shares))
        await self._run(self.backend.ensure, self.path(names.tier(self.root, BEST_EFFORT)),
                        ResourceConfig(cpu_shares=MIN_SHARES))
        self._burstable_shares = shares

    async def run_periodic(self, period: float = QOS_UPDATE_PERIOD) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await self.update_tiers(force=True)
            except CgroupError as exc:
                log.warning("QoS cgroup update failed", error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug or a surprise: log it, never stop the agent
                log.exception("QoS cgroup update failed", error=repr(exc))

    # -- pods ---------------------------------------------------------------

    async def ensure_pod(self, pod: Pod) -> str:
        """Create the pod's cgroup if missing and write its limits (before
        each new sandbox, as the kubelet does); returns the cgroup_parent.
        Raises CgroupError with a message for the pod status."""
        path = self.pod_parent(pod)
        config = pod_resource_config(pod, self.policy)
        if await self._run(self.backend.create, path, config):
            log.debug("pod cgroup created", pod=pod.full_name, pod_uid=pod.metadata.uid, cgroup=path,
                      cpu_shares=config.cpu_shares, cpu_quota=config.cpu_quota,
                      memory_limit=config.memory_limit, pids_limit=config.pids_limit)
        if pod.metadata.uid not in self._active:
            self._active[pod.metadata.uid] = _burstable_cpu(pod)
        await self.update_tiers()
        return path

    async def remove_pod(self, pod: Pod) -> None:
        """After the pod's sandbox is gone: kill what is left in its cgroup
        (kubelet tryKillingCgroupProcesses), then remove it everywhere."""
        self._active.pop(pod.metadata.uid, None)
        await self._remove(self.pod_parent(pod), pod.metadata.uid)
        await self.update_tiers()

    async def _remove(self, path: str, uid: str) -> None:
        for attempt in range(KILL_ATTEMPTS):
            pids = await self._run(self.backend.procs, path)
            if not pids:
                break
            log.warning("killing processes left in pod cgroup", pod_uid=uid, pids=pids[:10], attempt=attempt)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            await asyncio.sleep(0.05 * (attempt + 1))
        try:
            await self._run(self.backend.remove, path)
        except CgroupBusy as exc:
            log.warning("pod cgroup still busy; will retry in housekeeping", pod_uid=uid, error=str(exc))
        except CgroupError as exc:
            log.warning("could not remove pod cgroup", pod_uid=uid, error=str(exc))

    async def remove_orphans(self) -> None:
        """Pod cgroups of pods that are not active (a crash between the
        sandbox removal and the cgroup removal, or a pod deleted while the agent
        was down). Only once every pod source has reported (the pod manager's
        housekeeping calls it). Busy ones are killed, as the kubelet does."""
        for qos in (BURSTABLE, BEST_EFFORT, GUARANTEED):
            tier = names.tier(self.root, qos)
            for child in await self._run(self.backend.children, self.path(tier)):
                uid = _pod_uid(child, self.driver)
                if uid is None or uid in self._active:
                    continue
                await self._remove(self.path(tier.child(names.POD_PREFIX + uid)), uid)

    async def pod_usage(self, pod: Pod) -> PodUsage | None:
        """Memory working set and process count of the pod's cgroup, for
        the eviction ranking; None when the pod has no cgroup (yet)."""
        path = self.pod_parent(pod)
        memory = await self._run(self.backend.memory_working_set, path)
        if memory is None:
            return None
        return PodUsage(memory_working_set_bytes=memory,
                        process_count=await self._run(self.backend.pids_current, path))

    async def _run(self, fn: Any, *args: Any) -> Any:
        started = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            elapsed = time.monotonic() - started
            metrics.observe_cgroup_operation(_OPERATION_TYPES.get(getattr(fn, "__name__", ""), "other"), elapsed)
            if elapsed > 0.5:
                log.warning("slow cgroup operation", operation=getattr(fn, "__name__", str(fn)),
                            seconds=round(elapsed, 3))


def _burstable_cpu(pod: Pod) -> int:
    return pod_requests(pod).get("cpu", 0) if pod_qos_class(pod) == BURSTABLE else 0


def _pod_uid(dirname: str, driver: str) -> str | None:
    """`pod<uid>` (cgroupfs) or `kubepods-burstable-pod<uid_>.slice` (systemd)."""
    if driver == names.SYSTEMD:
        if not dirname.endswith(names.SLICE):
            return None
        last = dirname[:-len(names.SLICE)].rsplit("-", 1)[-1]
        return last[len(names.POD_PREFIX):].replace("_", "-") if last.startswith(names.POD_PREFIX) else None
    return dirname[len(names.POD_PREFIX):] if dirname.startswith(names.POD_PREFIX) else None
