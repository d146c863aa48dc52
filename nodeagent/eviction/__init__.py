"""Node-pressure eviction, as the kubelet's eviction manager (pkg/kubelet/eviction)."""
