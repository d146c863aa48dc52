"""Probes (liveness, readiness, startup) and lifecycle hooks, with the kubelet's semantics."""
