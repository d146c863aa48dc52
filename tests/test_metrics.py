"""Prometheus endpoints of a running agent, scraped by a real Prometheus and
checked by promtool; values compared with the container's own cgroup files."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from nodeagent.cri.client import CRIClient
from nodeagent.cri.pb import api_pb2 as pb
from nodeagent.devenv.env import DevEnv
from nodeagent.devenv.registry import free_port
from tests.agentproc import NODE_NAME, AgentProcess, pod_manifest, running
from tests.polling import wait_for

ENDPOINTS = ("/metrics", "/metrics/resource", "/metrics/cadvisor", "/metrics/probes",
             "/metrics/slis")
HOG_MIB = 40  # written to /dev/shm (tmpfs, 64 MiB): charged to the container, never reclaimed


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


async def fetch(agent: AgentProcess, path: str) -> str:
    return (await asyncio.to_thread(_get, f"{agent.base_url}{path}")).decode()


def sample(body: str, metric: str, **labels: str) -> float | None:
    """The value of the first series `metric` whose labels include `labels`."""
    for line in body.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(got.get(k) == v for k, v in labels.items()):
            rest = line.split("}", 1)[1] if "{" in line else line[len(metric):]
            return float(rest.split()[0])
    return None


def promtool_check(body: str) -> None:
    result = subprocess.run(["promtool", "check", "metrics"], input=body.encode(),
                            capture_output=True, timeout=30)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


async def container_cgroup_memory(cri: CRIClient, pod_uid: str) -> tuple[int, int]:
    """(memory.usage_in_bytes, working set) read from the container's own cgroup."""
    containers = await cri.list_containers(pb.ContainerFilter(
        label_selector={"io.kubernetes.pod.uid": pod_uid},
        state=pb.ContainerStateValue(state=pb.ContainerState.CONTAINER_RUNNING)))
    status = await cri.container_status(containers[0].id, verbose=True)
    pid = json.loads(status.info["info"])["pid"]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            usage = int((base / "memory.usage_in_bytes").read_text())
            stat = dict(l.split() for l in (base / "memory.stat").read_text().splitlines())
            return usage, usage - int(stat["total_inactive_file"])
    raise AssertionError(f"no memory cgroup for pid {pid}")


async def start_hog(agent: AgentProcess, devenv: DevEnv) -> dict:
    agent.write_manifest("hog.yaml", pod_manifest(
        "hog", devenv.busybox,
        ["sh", "-c", f"dd if=/dev/zero of=/dev/shm/hog bs=1M count={HOG_MIB} && sleep 3600"],
        grace=0))
    pod = await agent.wait_pod("hog", running, what="running")
    await wait_for(lambda: (agent.logs_dir.exists() and any(agent.logs_dir.rglob("0.log"))),
                   what="log file")
    return pod


async def test_endpoints_valid_and_values(agent: AgentProcess, devenv: DevEnv,
                                          cri: CRIClient) -> None:
    pod = await start_hog(agent, devenv)
    uid = pod["metadata"]["uid"]
    name = f"hog-{NODE_NAME}"
    await asyncio.sleep(1.2)  # the dd finished; let the stats cache turn over
    bodies = {path: await fetch(agent, path) for path in ENDPOINTS}
    for body in bodies.values():
        promtool_check(body)

    m = bodies["/metrics"]
    assert sample(m, "kubelet_node_name", node=NODE_NAME) == 1
    assert sample(m, "kubelet_running_pods") == 1
    assert sample(m, "kubelet_running_containers", container_state="running") == 1
    assert sample(m, "kubelet_pod_start_duration_seconds_count") == 1
    assert sample(m, "kubelet_pod_start_sli_duration_seconds_count") == 1
    assert sample(m, "kubelet_pod_worker_duration_seconds_count", operation_type="create") == 1
    assert sample(m, "kubelet_runtime_operations_total", operation_type="run_podsandbox") == 1
    assert sample(m, "kubelet_runtime_operations_duration_seconds_count",
                  operation_type="create_container") == 1
    assert sample(m, "kubelet_runtime_operations_total", operation_type="list_containers") > 1
    assert "# TYPE kubelet_runtime_operations_errors_total counter" in m
    assert sample(m, "kubelet_pleg_relist_duration_seconds_count") >= 1
    assert sample(m, "kubelet_pleg_relist_interval_seconds_count") >= 1
    assert abs(sample(m, "kubelet_pleg_last_seen_seconds") - time.time()) < 30
    assert "# TYPE kubelet_evictions_total counter" in m
    assert sample(m, "process_resident_memory_bytes") > 10e6
    assert sample(m, "node_memory_total_bytes") > 0
    assert sample(m, "node_load1") is not None

    r = bodies["/metrics/resource"]
    usage, working_set = await container_cgroup_memory(cri, uid)
    assert usage > HOG_MIB * 2**20
    value = sample(r, "container_memory_working_set_bytes", container="main", pod=name,
                   namespace="default")
    assert value is not None and abs(value - working_set) <= 0.1 * working_set, (value, working_set)
    assert abs(value - usage) <= 0.1 * usage
    pod_ws = sample(r, "pod_memory_working_set_bytes", pod=name, namespace="default")
    assert pod_ws >= value * 0.9
    assert sample(r, "container_cpu_usage_seconds_total", container="main", pod=name) > 0
    start = sample(r, "container_start_time_seconds", container="main", pod=name)
    assert abs(start - time.time()) < 120
    assert sample(r, "node_cpu_usage_seconds_total") > 0
    assert sample(r, "node_memory_working_set_bytes") > value
    assert sample(r, "scrape_error") == 0
    # Samples carry the stats' timestamps (ms).
    line = next(l for l in r.splitlines() if l.startswith("container_memory_working_set_bytes{"))
    assert abs(int(line.split()[-1]) / 1000 - time.time()) < 30

    c = bodies["/metrics/cadvisor"]
    assert sample(c, "container_memory_working_set_bytes", container="main", pod=name) == value
    assert sample(c, "container_memory_usage_bytes", container="main", pod=name) > 0
    assert sample(c, "machine_cpu_cores") >= 1
    p = bodies["/metrics/probes"]
    assert "# TYPE prober_probe_total counter" in p
    assert "# TYPE prober_probe_duration_seconds histogram" in p

    s = bodies["/metrics/slis"]
    assert sample(s, "kubernetes_healthcheck", name="syncloop", type="healthz") == 1
    assert sample(s, "kubernetes_healthchecks_total", name="ping", status="success") >= 1

    summary = json.loads(await fetch(agent, "/stats/summary"))
    entry = next(p for p in summary["pods"] if p["podRef"]["uid"] == uid)
    assert entry["podRef"] == {"name": name, "namespace": "default", "uid": uid}
    main = entry["containers"][0]
    assert main["name"] == "main" and main["memory"]["workingSetBytes"] >= HOG_MIB * 2**20
    assert summary["node"]["nodeName"] == NODE_NAME
    assert summary["node"]["memory"]["workingSetBytes"] > 0


async def test_prometheus_scrapes_every_endpoint(agent: AgentProcess, devenv: DevEnv,
                                                 tmp_path: Path) -> None:
    await start_hog(agent, devenv)
    port = free_port()
    jobs = "\n".join(f"""  - job_name: "nodeagent{path.replace('/', '_')}"
    metrics_path: "{path}"
    static_configs:
      - targets: ["127.0.0.1:{agent.read_only_port}"]""" for path in ENDPOINTS)
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{jobs}\n")
    prom = subprocess.Popen(
        [shutil.which("prometheus") or "prometheus", f"--config.file={config}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        def targets_up() -> bool:
            try:
                data = json.loads(_get(f"{base}/api/v1/targets"))
            except OSError:
                return False
            active = data["data"]["activeTargets"]
            return len(active) == len(ENDPOINTS) and all(t["health"] == "up" for t in active)

        await wait_for(lambda: asyncio.to_thread(targets_up), timeout=30, interval=0.5,
                       what="all targets up")

        def query(q: str) -> list:
            url = f"{base}/api/v1/query?query={urllib.parse.quote(q)}"
            return json.loads(_get(url))["data"]["result"]

        q = f'container_memory_working_set_bytes{{pod="hog-{NODE_NAME}",container="main",job="nodeagent_metrics_resource"}}'
        result = await wait_for(lambda: asyncio.to_thread(query, q), timeout=20, interval=0.5,
                                what="resource series in prometheus")
        assert float(result[0]["value"][1]) >= HOG_MIB * 2**20
        assert await asyncio.to_thread(query, "kubelet_running_pods")
        assert await asyncio.to_thread(query, 'up{job="nodeagent_metrics_probes"} == 1')
    finally:
        prom.terminate()
        prom.wait(15)
