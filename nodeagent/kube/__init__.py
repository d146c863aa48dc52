"""The Kubernetes API server side of the agent: connection, pods bound to
this node, pod and node status, Lease, events, config objects."""
