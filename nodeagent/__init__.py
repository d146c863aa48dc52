"""nodeagent: a per-node agent that replaces the kubelet and drives a CRI v1 runtime."""

__version__ = "0.1.0"
