"""The `nodeagent` command. Flag names follow the kubelet's where one exists."""

from __future__ import annotations

import argparse
import asyncio
import platform
import re
import sys

import grpc

from nodeagent import __version__
from nodeagent.cri.client import DEFAULT_REQUEST_TIMEOUT, CRIClient
from nodeagent.cri.errors import CRIError
from nodeagent.logsetup import FORMATS, configure_logging

DEFAULT_RUNTIME_ENDPOINT = "unix:///run/containerd/containerd.sock"  # kubelet v1.27+ default


def _duration(text: str) -> float:
    """Kubelet-style durations: 2m, 30s, 1m30s, 500ms, or plain seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 2m, 30s, 1m30s)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


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
    return parser


async def _runtime_version(endpoint: str, timeout: float) -> str:
    async with CRIClient(endpoint, request_timeout=DEFAULT_REQUEST_TIMEOUT) as client:
        v = await client.wait_ready(timeout)
        return (f"runtime: {v.runtime_name} {v.runtime_version} "
                f"(CRI API {v.runtime_api_version}) at {endpoint}")


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
        return {"version": cmd_version}[args.command](args)
    except CRIError as exc:
        print(f"nodeagent: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
