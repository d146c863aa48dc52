"""The `nodeagent` command. Flag names follow the kubelet's where one exists."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import platform
import signal
import sys

import grpc

from nodeagent import __version__
from nodeagent.cri.client import DEFAULT_REQUEST_TIMEOUT, CRIClient
from nodeagent.config import (
    AgentConfig, ConfigError, build_config, parse_duration, read_config_file,
)
from nodeagent.cri.errors import CRIError
from nodeagent.logsetup import FORMATS, configure_logging

DEFAULT_RUNTIME_ENDPOINT = "unix:///run/containerd/containerd.sock"  # kubelet v1.27+ default


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bool(text: str) -> bool:
    """Go's strconv.ParseBool, as kubelet boolean flags take it."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (true or false)")


def _resource_map(text: str) -> dict[str, str]:
    """kubelet map flags: `cpu=200m,memory=500Mi`."""
    out: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"invalid entry {item!r}: expected name=quantity")
        out[key.strip()] = value.strip()
    return out


def _signal_map(flag: str, separator: str):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> dict[str, str]:
        from nodeagent.eviction.thresholds import parse_flag_map
        try:
            return parse_flag_map(flag, text, separator)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodeagent",
        description="A per-node agent that replaces the Kubernetes kubelet: it runs pods "
                    "through a CRI v1 runtime (containerd, CRI-O).")
    parser.add_argument("--logging-format", choices=FORMATS, default="text",
                        help="log format, as the kubelet's flag (default: text)")
    parser.add_argument("-v", "--v", dest="verbosity", type=int, default=0, metavar="N",
                        help="log verbosity; 4 and above logs debug detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    version = sub.add_parser("version", help="print the version; with an endpoint, the runtime's too")
    version.add_argument("--container-runtime-endpoint", metavar="ENDPOINT",
                         help="also query this CRI runtime, e.g. "
                              f"{DEFAULT_RUNTIME_ENDPOINT}")
    version.add_argument("--runtime-request-timeout", type=_duration, default="10s",
                         help="how long to wait for the runtime (default 10s)")

    run = sub.add_parser(
        "run", help="run the agent (kubelet flags; pods from --pod-manifest-path)",
        description="Run the node agent. Flags override the --config file, as the kubelet's do.")
    run.add_argument("--config", metavar="FILE",
                     help="KubeletConfiguration (kubelet.config.k8s.io/v1beta1) file")
    run.add_argument("--container-runtime-endpoint", metavar="ENDPOINT",
                     help=f"CRI runtime socket (default {DEFAULT_RUNTIME_ENDPOINT})")
    run.add_argument("--image-service-endpoint", metavar="ENDPOINT",
                     help="CRI image service socket (default: the runtime endpoint)")
    run.add_argument("--pod-manifest-path", dest="static_pod_path", metavar="DIR",
                     help="directory of static pod manifests (staticPodPath)")
    run.add_argument("--root-dir", metavar="DIR", help="agent state: pod volumes (default /var/lib/kubelet)")
    run.add_argument("--pod-logs-dir", metavar="DIR", help="pod log root (podLogsDir, default /var/log/pods)")
    run.add_argument("--hostname-override", metavar="NAME", help="node name instead of the hostname")
    run.add_argument("--node-ip", metavar="IP", help="node IP (default: the default route's address)")
    run.add_argument("--max-pods", type=int, metavar="N", help="pods this node admits (default 110)")
    run.add_argument("--cgroup-root", metavar="PATH", help="root of the pod cgroups (default /)")
    run.add_argument("--cgroup-driver", metavar="DRIVER", help="cgroupfs or systemd; must match the runtime's (default cgroupfs)")
    run.add_argument("--pod-max-pids", dest="pod_pids_limit", type=int, metavar="N",
                     help="pids.max of each pod cgroup; -1 = unlimited (podPidsLimit, default -1)")
    run.add_argument("--cpu-cfs-quota", type=_bool, metavar="BOOL", help="enforce CPU limits with CFS quota (default true)")
    run.add_argument("--cpu-cfs-quota-period", type=_duration, metavar="DURATION", help="CFS period (default 100ms)")
    run.add_argument("--system-reserved", type=_resource_map, metavar="LIST",
                     help="resources kept for the OS, e.g. cpu=200m,memory=500Mi,ephemeral-storage=1Gi,pid=1000")
    run.add_argument("--kube-reserved", type=_resource_map, metavar="LIST",
                     help="resources kept for the agent and the runtime (same syntax)")
    run.add_argument("--address", metavar="IP", help="read-only API bind address (default 127.0.0.1)")
    run.add_argument("--read-only-port", type=int, metavar="PORT", help="read-only API port; 0 disables (default 10255)")
    run.add_argument("--healthz-bind-address", metavar="IP", help="healthz bind address (default 127.0.0.1)")
    run.add_argument("--healthz-port", type=int, metavar="PORT", help="healthz port; 0 disables (default 10248)")
    run.add_argument("--runtime-request-timeout", type=_duration, metavar="DURATION",
                     help="deadline of CRI calls (default 2m)")
    run.add_argument("--port", type=int, metavar="PORT",
                     help="the authenticated kubelet API (HTTPS); 0 disables (default 10250)")
    run.add_argument("--tls-cert-file", metavar="FILE",
                     help="serving certificate (default: a self-signed one in <root-dir>/pki)")
    run.add_argument("--tls-private-key-file", metavar="FILE", help="its private key")
    run.add_argument("--client-ca-file", metavar="FILE",
                     help="client certificates signed by this CA are authenticated")
    run.add_argument("--anonymous-auth", type=_bool, metavar="BOOL",
                     help="serve unauthenticated requests as system:anonymous (default false)")
    run.add_argument("--token-auth-file", metavar="FILE",
                     help="standalone bearer tokens: token,user,uid[,\"group1,group2\"] lines")
    run.add_argument("--cri-debug-socket", metavar="PATH",
                     help="serve the runtime's CRI here for crictl (default "
                          "/run/nodeagent/cri.sock; empty disables)")
    run.add_argument("--sync-frequency", type=_duration, metavar="DURATION",
                     help="periodic resync of every pod (default 1m)")
    run.add_argument("--pod-cidr", metavar="CIDR",
                     help="pod network; with it nodeagent wires pods itself (bridge, veth, IPAM) "
                          "through its own CNI plugin (podCIDR)")
    run.add_argument("--cluster-dns", metavar="IP[,IP]", help="DNS servers for ClusterFirst pods (clusterDNS)")
    run.add_argument("--cluster-domain", metavar="DOMAIN", help="cluster DNS domain (clusterDomain)")
    run.add_argument("--cni-bin-dir", metavar="DIR", help="runtime's CNI plugin dir (default /opt/cni/bin)")
    run.add_argument("--cni-conf-dir", metavar="DIR", help="runtime's CNI config dir (default /etc/cni/net.d)")
    run.add_argument("--pod-bridge", metavar="NAME", help="bridge of the pod network (default nodeagent0)")
    run.add_argument("--pod-mtu", type=int, metavar="N", help="pod interface MTU (default: the node's)")
    run.add_argument("--file-check-frequency", type=_duration, metavar="DURATION",
                     help="rescan of the manifest directory besides inotify (default 20s)")

    run.add_argument("--eviction-hard", type=_signal_map("--eviction-hard", "<"), metavar="MAP",
                     help="hard eviction thresholds, e.g. memory.available<100Mi,nodefs.available<10%%"
                          " (default: the kubelet's four)")
    run.add_argument("--eviction-soft", type=_signal_map("--eviction-soft", "<"), metavar="MAP",
                     help="soft eviction thresholds, e.g. memory.available<300Mi")
    run.add_argument("--eviction-soft-grace-period", type=_signal_map("--eviction-soft-grace-period", "="),
                     metavar="MAP", help="grace period per soft threshold, e.g. memory.available=1m30s")
    run.add_argument("--eviction-minimum-reclaim", type=_signal_map("--eviction-minimum-reclaim", "="),
                     metavar="MAP", help="minimum reclaim per signal, e.g. imagefs.available=2Gi")
    run.add_argument("--eviction-pressure-transition-period", type=_duration, metavar="DURATION",
                     help="how long a pressure condition stays after the signal clears (default 5m)")
    run.add_argument("--eviction-max-pod-grace-period", type=int, metavar="SECONDS",
                     help="grace period of pods evicted for a soft threshold (default 0)")
    run.add_argument("--eviction-monitoring-period", type=_duration, metavar="DURATION",
                     help="how often eviction signals are read (nodeagent only; the kubelet's is a fixed 10s)")

    run.add_argument("--kubeconfig", metavar="FILE",
                     help="API server connection; without it the agent runs standalone (static pods only)")
    run.add_argument("--kube-api-qps", type=int, metavar="N", help="API requests per second (default 50)")
    run.add_argument("--kube-api-burst", type=int, metavar="N", help="API request burst (default 100)")
    run.add_argument("--register-node", type=_bool, metavar="BOOL",
                     help="register the Node with the API server (default true)")
    run.add_argument("--register-with-taints", metavar="LIST",
                     help="taints to register the node with: key=value:Effect,...")
    run.add_argument("--node-labels", metavar="LIST",
                     help="labels to register the node with: key=value,...")
    run.add_argument("--node-status-update-frequency", type=_duration, metavar="DURATION",
                     help="how often node status is computed (default 10s)")
    run.add_argument("--event-qps", dest="event_record_qps", type=int, metavar="N",
                     help="events posted per second (default 50)")
    run.add_argument("--event-burst", type=int, metavar="N", help="event burst (default 100)")

    config = sub.add_parser("config", help="show the configuration `run` would use")
    config_sub = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    config_sub.add_parser(  # the same flags as `run`, so it shows exactly what run would use
        "dump", parents=[run], add_help=False, help="print the effective configuration",
        description="Print the effective configuration (--config file + flags) as a "
                    "KubeletConfiguration, then the flag-only settings and ignored fields.")

    pods = sub.add_parser("pods", help="list the agent's pods (from its read-only API)")
    pods.add_argument("--server", default="http://127.0.0.1:10255", metavar="URL",
                      help="the agent's read-only API (default http://127.0.0.1:10255)")

    inst = sub.add_parser("install", help="install the systemd unit, its drop-in, the default config "
                                          "and the CNI plugin (idempotent)")
    inst.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    inst.add_argument("--prefix", default="/", metavar="DIR", help="install under this root (default /)")
    inst.add_argument("--cni-bin-dir", default="/opt/cni/bin", metavar="DIR",
                      help="where the runtime looks for CNI plugins (default /opt/cni/bin)")
    return parser


_RUN_FLAGS = ("container_runtime_endpoint", "image_service_endpoint", "static_pod_path", "root_dir",
              "pod_logs_dir", "hostname_override", "node_ip", "max_pods", "cgroup_root", "address",
              "read_only_port", "healthz_bind_address", "healthz_port", "runtime_request_timeout",
              "sync_frequency", "file_check_frequency", "cgroup_driver", "pod_pids_limit", "cpu_cfs_quota",
              "cpu_cfs_quota_period", "system_reserved", "kube_reserved", "eviction_hard", "eviction_soft",
              "eviction_monitoring_period", "eviction_soft_grace_period", "eviction_minimum_reclaim",
              "eviction_pressure_transition_period", "eviction_max_pod_grace_period",
              "pod_cidr", "cluster_dns", "cluster_domain", "cni_bin_dir", "cni_conf_dir", "pod_bridge", "pod_mtu",
              "cri_debug_socket", "port", "tls_cert_file", "tls_private_key_file", "client_ca_file",
              "anonymous_auth", "token_auth_file", "kubeconfig", "kube_api_qps", "kube_api_burst",
              "register_node", "register_with_taints", "node_labels", "node_status_update_frequency",
              "event_record_qps", "event_burst")


def _read_config(args: argparse.Namespace) -> tuple[AgentConfig, list[str]]:
    file_values, ignored = read_config_file(args.config) if args.config else ({}, [])
    return build_config(file_values, {k: getattr(args, k) for k in _RUN_FLAGS}), ignored


def _load_config(args: argparse.Namespace) -> tuple[AgentConfig, list[str]] | None:
    """--config + flags -> the configuration and the ignored file fields (logged
    in one warning); None after printing the error."""
    import structlog
    try:
        config, ignored = _read_config(args)
    except ConfigError as exc:
        print(f"nodeagent: error: {exc}", file=sys.stderr)
        return None
    if ignored:
        structlog.get_logger().warning("KubeletConfiguration fields not implemented by nodeagent "
                                       "are ignored", config=args.config, fields=ignored)
    return config, ignored


def cmd_config(args: argparse.Namespace) -> int:
    from nodeagent.kubeletconfig import dump_config
    loaded = _load_config(args)
    if loaded is None:
        return 2
    print(dump_config(*loaded), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from nodeagent.agent import run_agent  # the agent's imports are not needed by other commands
    from nodeagent.cgroups.detect import CgroupSetupError
    from nodeagent.kube.kubeconfig import KubeconfigError
    from nodeagent.server.local import ListenError

    loaded = _load_config(args)
    if loaded is None:
        return 2
    config, _ = loaded
    # `kill -USR1 <pid>` prints every thread's stack to the log: for a stuck agent.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        asyncio.run(run_agent(config, load=lambda: _read_config(args)[0]))
    except (CgroupSetupError, ListenError) as exc:  # ListenError: a port in use, say
        print(f"nodeagent: error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, KubeconfigError) as exc:  # found while starting (TLS, token files, kubeconfig)
        print(f"nodeagent: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_pods(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request
    from datetime import datetime, timezone

    from nodeagent.podtable import format_pod_table

    base = args.server.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/pods", timeout=10) as resp:
            pods = json.load(resp).get("items", [])
        with urllib.request.urlopen(f"{base}/nodeagent/manifests", timeout=10) as resp:
            errors = [e["error"] for e in json.load(resp).get("errors", [])]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"nodeagent: error: cannot read pods from {base}: {reason} "
              "(is `nodeagent run` running with --read-only-port?)", file=sys.stderr)
        return 1
    print(format_pod_table(pods, datetime.now(timezone.utc), errors), end="")
    return 0


async def _runtime_version(endpoint: str, timeout: float) -> str:
    async with CRIClient(endpoint, request_timeout=DEFAULT_REQUEST_TIMEOUT) as client:
        v = await client.wait_ready(timeout)
        return (f"runtime: {v.runtime_name} {v.runtime_version} "
                f"(CRI API {v.runtime_api_version}) at {endpoint}")


def cmd_install(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nodeagent.install import InstallError, install
    try:
        lines = install(Path(args.prefix), dry_run=args.dry_run, cni_bin_dir=args.cni_bin_dir)
    except InstallError as exc:
        print(f"nodeagent: error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    if not args.dry_run and Path(args.prefix) == Path("/"):
        print("next: systemctl daemon-reload && systemctl enable --now nodeagent")
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"nodeagent v{__version__} (python {platform.python_version()}, grpc {grpc.__version__})")
    if args.container_runtime_endpoint:
        print(asyncio.run(_runtime_version(args.container_runtime_endpoint,
                                           args.runtime_request_timeout)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.logging_format, args.verbosity)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return {"version": cmd_version, "run": cmd_run, "pods": cmd_pods,
                "config": cmd_config, "install": cmd_install}[args.command](args)
    except CRIError as exc:
        print(f"nodeagent: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
