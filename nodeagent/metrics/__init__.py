"""Prometheus metrics with the kubelet's names and labels.

`kubelet.py` holds the families served at /metrics (and the hooks other
modules call), `probes.py` those of /metrics/probes, `resource.py` the
collectors of /metrics/resource and /metrics/cadvisor, `node.py` the node
series from psutil. One agent per process, so the registries are module-level.
"""

import prometheus_client

# The kubelet exposes no `_created` series; neither do we.
prometheus_client.disable_created_metrics()
