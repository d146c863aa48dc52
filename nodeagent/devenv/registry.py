"""A real OCI registry (Debian `docker-registry`) on 127.0.0.1, filled with skopeo.

containerd treats `localhost:<port>` as a plain-HTTP registry without any
config, so PullImage in tests goes over a real registry protocol.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from nodeagent.devenv.containerd import HarnessError

REGISTRY_BIN = "/usr/bin/docker-registry"
SKOPEO_BIN = "/usr/bin/skopeo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, base: Path, port: int | None = None, *, login: tuple[str, str] | None = None) -> None:
        self.base = base
        self.port = port or free_port()
        self.login = login  # (user, password): the registry then wants basic auth (htpasswd)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """The name images are pulled by: `localhost:<port>`."""
        return f"localhost:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        if not os.access(REGISTRY_BIN, os.X_OK):
            raise HarnessError(f"{REGISTRY_BIN} is missing: run hack/install-deps")
        data = self.base / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.base / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n" + self._auth_config())
        log = open(self.base / "registry.log", "ab")
        try:
            self.process = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/v2/"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and self.login:  # up, and asking for the login
                    return
            except (urllib.error.URLError, OSError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.base / "registry.log").read_text(errors="replace")[-2000:]
                raise HarnessError(f"docker-registry did not start on {url}:\n{tail}")
            time.sleep(0.05)

    def _auth_config(self) -> str:
        if not self.login:
            return ""
        import warnings
        with warnings.catch_warnings():  # bcrypt for htpasswd; test harness only (crypt leaves in 3.13)
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        user, password = self.login
        htpasswd = self.base / "htpasswd"
        htpasswd.write_text(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
        return f"auth:\n  htpasswd:\n    realm: nodeagent-test\n    path: {htpasswd}\n"

    def push_layout(self, layout_dir: Path, ref: str, repository: str, tag: str) -> str:
        """Copy `oci:<layout_dir>:<ref>` to this registry; return the pull name."""
        return self._copy(f"oci:{layout_dir}:{ref}", repository, tag)

    def copy_image(self, source: str, repository: str, tag: str) -> str:
        """Copy an image from another (plain-HTTP) registry here; return the pull name."""
        return self._copy(f"docker://{source}", repository, tag, "--src-tls-verify=false")

    def _copy(self, source: str, repository: str, tag: str, *flags: str) -> str:
        if not os.access(SKOPEO_BIN, os.X_OK):
            raise HarnessError(f"{SKOPEO_BIN} is missing: run hack/install-deps")
        name = f"{self.host}/{repository}:{tag}"
        creds = ["--dest-creds", ":".join(self.login)] if self.login else []
        result = subprocess.run(
            [SKOPEO_BIN, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", *flags, *creds,
             source, f"docker://127.0.0.1:{self.port}/{repository}:{tag}"],
            capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise HarnessError(f"skopeo copy to {name} failed: {result.stderr.strip()}")
        return name

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
