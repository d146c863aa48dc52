"""CRI configs labelled the way the kubelet labels them, for the demo and the tests
that drive CRI directly (the pod worker builds its own from Pod specs)."""

from __future__ import annotations

from collections.abc import Sequence

from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv.env import DevEnv


def sandbox_config(env: DevEnv, name: str, uid: str, *, namespace: str = "default",
                   host_network: bool = False) -> pb.PodSandboxConfig:
    log_dir = env.pod_log_root / f"{namespace}_{name}_{uid}"
    log_dir.mkdir(parents=True, exist_ok=True)
    network = pb.NamespaceMode.NODE if host_network else pb.NamespaceMode.POD
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
        hostname="" if host_network else name,  # runc refuses a hostname without a UTS ns
        log_directory=str(log_dir),
        labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                "io.kubernetes.pod.uid": uid},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=env.cgroup_parent(f"pod{uid}"),
            security_context=pb.LinuxSandboxSecurityContext(
                # kubelet defaults: pid per container, ipc shared in the pod.
                namespace_options=pb.NamespaceOption(
                    network=network, pid=pb.NamespaceMode.CONTAINER, ipc=pb.NamespaceMode.POD))),
    )


def container_config(sandbox: pb.PodSandboxConfig, name: str, image: str,
                     command: Sequence[str], *, attempt: int = 0,
                     resources: pb.LinuxContainerResources | None = None) -> pb.ContainerConfig:
    meta = sandbox.metadata
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=attempt),
        image=pb.ImageSpec(image=image, user_specified_image=image),
        command=list(command),
        log_path=f"{name}/{attempt}.log",
        labels={"io.kubernetes.pod.name": meta.name, "io.kubernetes.pod.namespace": meta.namespace,
                "io.kubernetes.pod.uid": meta.uid, "io.kubernetes.container.name": name},
        linux=pb.LinuxContainerConfig(
            resources=resources,
            security_context=pb.LinuxContainerSecurityContext(
                namespace_options=sandbox.linux.security_context.namespace_options)),
    )
