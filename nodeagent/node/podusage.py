"""A pod's resource usage for the eviction ranking and its message: the pod
cgroup's working set and process count, and each container's working set
as the runtime reports it (ListContainerStats), so the message can name
the container that used the memory, as the kubelet's does."""

from __future__ import annotations

import dataclasses

from nodeagent.api.types import Pod
from nodeagent.cgroups.manager import CgroupManager
from nodeagent.cri.client import CRIClient
from nodeagent.cri.errors import CRIError
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.eviction.ranking import ContainerUsage, PodUsage
from nodeagent.pods.observe import POD_UID_LABEL


async def pod_usage(pod: Pod, cgroups: CgroupManager, cri: CRIClient) -> PodUsage | None:
    usage = await cgroups.pod_usage(pod)
    if usage is None:
        return None
    try:
        stats = await cri.list_container_stats(pb.ContainerStatsFilter(
            label_selector={POD_UID_LABEL: pod.metadata.uid}))
    except CRIError:
        return usage  # the pod-level numbers still rank it
    newest: dict[str, pb.ContainerStats] = {}
    for s in stats:
        name = s.attributes.metadata.name
        if name not in newest or s.attributes.metadata.attempt > newest[name].attributes.metadata.attempt:
            newest[name] = s
    containers = tuple(
        ContainerUsage(name, memory_working_set_bytes=s.memory.working_set_bytes.value if s.HasField("memory") else None,
                       ephemeral_storage_bytes=s.writable_layer.used_bytes.value
                       if s.HasField("writable_layer") else None)
        for name, s in sorted(newest.items()))
    return dataclasses.replace(usage, containers=containers)
