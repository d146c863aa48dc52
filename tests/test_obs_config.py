"""KubeletConfiguration fields and flags of the kubelet API and log rotation."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.config import ConfigError, build_config, load_config_file
from nodeagent.server.auth import AuthError, load_token_file, subresource


def write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "kubelet.yaml"
    path.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n" + body)
    return str(path)


def test_defaults() -> None:
    config = build_config({}, {})
    assert (config.port, config.anonymous_auth, config.client_ca_file) == (10250, False, "")
    assert (config.container_log_max_size, config.container_log_max_files,
            config.container_log_monitor_interval) == ("10Mi", 5, 10.0)
    assert config.cri_debug_socket == "/run/nodeagent/cri.sock"


def test_file_fields_and_flag_precedence(tmp_path: Path) -> None:
    values = load_config_file(write(tmp_path, (
        "port: 10260\ntlsCertFile: /c.crt\ntlsPrivateKeyFile: /c.key\n"
        "authentication:\n  x509:\n    clientCAFile: /ca.crt\n  anonymous:\n    enabled: true\n"
        "containerLogMaxSize: 5Mi\ncontainerLogMaxFiles: 3\ncontainerLogMonitorInterval: 30s\n")))
    config = build_config(values, {"port": 0, "anonymous_auth": None})
    assert config.port == 0  # the flag wins
    assert (config.tls_cert_file, config.tls_private_key_file) == ("/c.crt", "/c.key")
    assert (config.client_ca_file, config.anonymous_auth) == ("/ca.crt", True)
    assert (config.container_log_max_size, config.container_log_max_files,
            config.container_log_monitor_interval) == ("5Mi", 3, 30.0)


@pytest.mark.parametrize("body,message", [
    ("authentication:\n  webhook:\n    secret: x\n", "unknown field 'authentication.webhook.secret'"),
    ("authorization:\n  mode: RBAC\n", "authorization.mode: must be Webhook or AlwaysAllow"),
    ("containerLogMaxSize: lots\n", "containerLogMaxSize: 'lots' is not a positive quantity"),
    ("containerLogMaxFiles: 1\n", "containerLogMaxFiles: must be at least 2"),
    ("containerLogMonitorInterval: 1s\n", "containerLogMonitorInterval: must be at least 3s"),
    ("port: 70000\n", "port: 70000 is not a port"),
])
def test_bad_values_named(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(load_config_file(write(tmp_path, body)), {})


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text('# comment\nabc,alice,1,"dev,ops"\ndef,bob,2\n')
    tokens = load_token_file(str(path))
    assert tokens["abc"].name == "alice" and tokens["abc"].groups == ("dev", "ops", "system:authenticated")
    assert tokens["def"].groups == ("system:authenticated",)
    path.write_text("only-a-token\n")
    with pytest.raises(AuthError, match=":1: expected token,user,uid"):
        load_token_file(str(path))


def test_authorization_subresources() -> None:
    assert [subresource(p) for p in ("/stats/summary", "/metrics/resource", "/logs/x",
                                     "/containerLogs/a/b/c", "/pods", "/healthz", "/statsx")] == \
        ["stats", "metrics", "log", "proxy", "proxy", "proxy", "proxy"]
