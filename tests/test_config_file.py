"""A KubeletConfiguration written for a real node loads as is: supported fields
used, the others named in one warning, typos and bad values refused by path;
`nodeagent config dump` shows the result and reads back to the same thing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nodeagent.config import ConfigError, build_config, read_config_file
from nodeagent.devenv.env import DevEnv

NODEAGENT = [str(Path(sys.executable).with_name("nodeagent"))]

# What `kubeadm join` writes to /var/lib/kubelet/config.yaml (v1.31), zeros and all.
KUBEADM = """\
apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
containerRuntimeEndpoint: ""
cpuManagerReconcilePeriod: 0s
evictionPressureTransitionPeriod: 0s
fileCheckFrequency: 0s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
httpCheckFrequency: 0s
imageMaximumGCAge: 0s
imageMinimumGCAge: 0s
kind: KubeletConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
memorySwap: {}
nodeStatusReportFrequency: 0s
nodeStatusUpdateFrequency: 0s
registerWithTaints:
- key: node-role.kubernetes.io/control-plane
  effect: NoSchedule
resolvConf: /run/systemd/resolve/resolv.conf
rotateCertificates: true
runtimeRequestTimeout: 0s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
staticPodPath: /etc/kubernetes/manifests
streamingConnectionIdleTimeout: 0s
syncFrequency: 0s
volumeStatsAggPeriod: 0s
"""

IGNORED = ["cpuManagerReconcilePeriod", "httpCheckFrequency", "imageMaximumGCAge", "imageMinimumGCAge",
           "logging.flushFrequency", "logging.options", "logging.verbosity", "resolvConf",
           "rotateCertificates",
           "streamingConnectionIdleTimeout", "volumeStatsAggPeriod"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NODEAGENT, *args], capture_output=True, text=True, timeout=30)


def write(tmp_path: Path, text: str, name: str = "kubelet.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_kubeadm_config_is_accepted(tmp_path: Path) -> None:
    values, ignored = read_config_file(write(tmp_path, KUBEADM))
    assert ignored == IGNORED
    config = build_config(values, {})
    assert (config.cgroup_driver, config.cluster_dns, config.cluster_domain) == (
        "systemd", ("10.96.0.10",), "cluster.local")
    assert config.client_ca_file == "/etc/kubernetes/pki/ca.crt" and config.anonymous_auth is False
    assert config.static_pod_path == "/etc/kubernetes/manifests"
    assert config.register_with_taints == ["node-role.kubernetes.io/control-plane:NoSchedule"]
    # kubeadm's zero values mean "the default", as the kubelet's defaulting reads them
    assert config.container_runtime_endpoint == "unix:///run/containerd/containerd.sock"
    assert (config.sync_frequency, config.file_check_frequency, config.runtime_request_timeout) == (60, 20, 120)
    assert (config.node_status_update_frequency, config.node_status_report_frequency) == (10, 300)
    assert config.eviction_pressure_transition_period == 300
    assert (config.authentication_webhook_cache_ttl, config.authorization_webhook_cache_authorized_ttl,
            config.authorization_webhook_cache_unauthorized_ttl) == (120, 300, 30)


def test_one_warning_names_every_ignored_field(tmp_path: Path) -> None:
    result = run("--logging-format", "json", "config", "dump", "--config", write(tmp_path, KUBEADM))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    warnings = [r for r in records if r["level"] == "warning"]
    assert len(warnings) == 1, result.stderr
    assert warnings[0]["fields"] == IGNORED
    assert "ignored by nodeagent: " + ", ".join(IGNORED) in result.stdout


@pytest.mark.parametrize(("body", "message"), [
    ("cpuManagerPolicyy: static\n", "unknown field 'cpuManagerPolicyy': not a KubeletConfiguration"),
    ("authentication:\n  x509:\n    clientCAFiles: /ca\n", "unknown field 'authentication.x509.clientCAFiles'"),
    ("logging:\n  formatt: json\n", "unknown field 'logging.formatt'"),
    ("authentication:\n  x509: /ca\n", "authentication.x509: expected an object"),
    ("authentication:\n  x509:\n    clientCAFile: [a]\n", "authentication.x509.clientCAFile: expected a string"),
    ("maxPods: many\n", "maxPods: expected an integer, got 'many'"),
    ("registerNode: sure\n", "registerNode: expected true or false"),
    ("syncFrequency: 1 minute\n", "syncFrequency: invalid duration '1 minute'"),
    ("authorization:\n  webhook:\n    cacheAuthorizedTTL: 5x\n",
     "authorization.webhook.cacheAuthorizedTTL: invalid duration '5x'"),
    ("imageMinimumGCAge: 2 minutes\n", "imageMinimumGCAge: invalid duration '2 minutes'"),
    ("evictionHard:\n  memory.available: lots\n", "evictionHard[memory.available]"),
    ("systemReserved:\n  memory: lots\n", "systemReserved.memory: "),
    ("kubeReserved:\n  gpu: '1'\n", "kubeReserved: unknown resource 'gpu'"),
    ("containerLogMaxSize: 10 megs\n", "containerLogMaxSize: '10 megs' is not a positive quantity"),
    ("clusterDNS: [10.96.0.10, ten]\n", "clusterDNS[1]: 'ten' is not an IP address"),
    ("registerWithTaints:\n- {key: a, effect: NoSchedule}\n- {key: b, effect: Sometimes}\n",
     "registerWithTaints[1].effect: 'Sometimes' is not a taint effect"),
    ("registerWithTaints:\n- {key: 'a b', effect: NoSchedule}\n", "registerWithTaints[0]: invalid taint spec"),
])
def test_bad_values_are_refused_by_path(tmp_path: Path, body: str, message: str) -> None:
    text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n" + body
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        build_config(read_config_file(write(tmp_path, text))[0], {})
    result = run("config", "dump", "--config", write(tmp_path, text))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    for text in ("apiVersion: [unclosed\n", "- a list\n"):
        result = run("config", "dump", "--config", write(tmp_path, text))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = run("config", "dump", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "No such file or directory" in result.stderr
    result = run("config", "dump", "--max-pods", "x")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_dump_is_a_kubelet_configuration_that_round_trips(tmp_path: Path) -> None:
    flags = ["--max-pods", "50", "--register-with-taints", "a=b:NoSchedule,c:NoExecute",
             "--eviction-hard", "memory.available<1Gi", "--sync-frequency", "90s",
             "--node-labels", "zone=a", "--root-dir", str(tmp_path / "root")]
    first = run("config", "dump", "--config", write(tmp_path, KUBEADM), *flags)
    assert first.returncode == 0, first.stderr
    doc = yaml.safe_load(first.stdout)
    assert first.stdout.startswith("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n")
    assert doc["maxPods"] == 50 and doc["syncFrequency"] == "1m30s"  # the flag won
    assert doc["nodeStatusReportFrequency"] == "5m0s" and doc["cpuCFSQuotaPeriod"] == "100ms"
    assert doc["registerWithTaints"] == [{"key": "a", "value": "b", "effect": "NoSchedule"},
                                         {"key": "c", "effect": "NoExecute"}]
    assert doc["authentication"]["x509"]["clientCAFile"] == "/etc/kubernetes/pki/ca.crt"
    assert doc["evictionHard"] == {"memory.available": "1Gi"}
    assert f"#   --root-dir={tmp_path / 'root'}" in first.stdout and "#   --node-labels=zone=a" in first.stdout
    assert "root_dir" not in doc and "rootDir" not in doc

    # fed back as --config (with the flag-only settings again): the same effective config
    again = run("config", "dump", "--config", write(tmp_path, first.stdout, "dumped.yaml"),
                "--node-labels", "zone=a", "--root-dir", str(tmp_path / "root"))
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""  # nothing ignored any more
    body = first.stdout.rsplit("# KubeletConfiguration fields accepted but ignored", 1)[0]
    assert again.stdout == body + "# KubeletConfiguration fields accepted but ignored by nodeagent: none\n"
    values, ignored = read_config_file(str(tmp_path / "dumped.yaml"))
    assert ignored == []
    flag_values = {"node_labels": "zone=a", "root_dir": str(tmp_path / "root")}
    kubeadm_values, _ = read_config_file(write(tmp_path, KUBEADM))
    assert build_config(values, flag_values) == build_config(kubeadm_values, {
        **flag_values, "max_pods": 50, "register_with_taints": "a=b:NoSchedule,c:NoExecute",
        "eviction_hard": {"memory.available": "1Gi"}, "sync_frequency": 90.0})


def test_run_refuses_bad_config_before_starting(tmp_path: Path) -> None:
    text = KUBEADM.replace("healthzPort: 10248", "healthzPort: 10248x")
    result = run("run", "--config", write(tmp_path, text))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "healthzPort: expected an integer, got '10248x'" in result.stderr


def test_docs_list_every_field() -> None:
    """docs/configuration.md names every supported and every ignored field."""
    from nodeagent.kubeletconfig import FLAG_ONLY, SCHEMA, SUPPORTED
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    table, ignored_part = doc.split("## Accepted but ignored fields")

    def leaves(schema: dict, prefix: str = "") -> list[str]:
        out = []
        for key, sub in schema.items():
            out += leaves(sub, f"{prefix}{key}.") if isinstance(sub, dict) else [prefix + key]
        return out
    for path in SUPPORTED:
        assert f"| `{path}` |" in table, path
    for path in set(leaves(SCHEMA)) - set(SUPPORTED):
        assert f"`{path}`" in ignored_part, path
    for attr in FLAG_ONLY:
        assert f"`--{attr.replace('_', '-')}`" in table, attr
    from nodeagent.cli import build_parser
    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    for action in run_parser._actions:
        for flag in action.option_strings:
            assert flag in ("-h", "--help", "--config") or f"`{flag}`" in doc, flag


def test_agent_runs_with_a_kubeadm_config_and_warns_once(devenv: DevEnv, tmp_path: Path) -> None:
    """`nodeagent run` with kubeadm's file (this host's cgroup driver, no CA file):
    it starts, and its log has one warning naming the ignored fields."""
    from tests.agentproc import AgentProcess
    agent = AgentProcess(devenv, tmp_path)
    text = (KUBEADM.replace("cgroupDriver: systemd", "cgroupDriver: cgroupfs")
            .replace("clientCAFile: /etc/kubernetes/pki/ca.crt", "clientCAFile: ''"))
    agent.extra_args = ("--config", write(tmp_path, text))
    try:
        agent.start()
        warnings = [r for r in agent.log_lines() if r.get("level") == "warning"
                    and "not implemented by nodeagent" in r.get("event", "")]
    finally:
        code = agent.stop()
        devenv.reset(tmp_path)
    assert code == 0, agent.log_tail()
    assert len(warnings) == 1, agent.log_tail()
    assert warnings[0]["fields"] == IGNORED
