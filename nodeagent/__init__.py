"""nodeagent: a per-node agent that replaces the kubelet and drives a CRI v1 runtime."""

import os

__version__ = "0.1.0"

# gRPC's EventEngine client hands each read to a thread pool: a CRI call whose
# answer comes late (ExecSync: every exec probe) costs ~1.3 ms of CPU, against
# ~0.95 ms on the older I/O path this turns back on (measured on these VMs,
# docs/decisions.md "gRPC client I/O path"). Set before grpc initialises;
# an operator's own GRPC_EXPERIMENTS wins.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client")
