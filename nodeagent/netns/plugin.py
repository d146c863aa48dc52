#!/usr/bin/python3 -IS
"""The `nodeagent` CNI plugin executable: a thin client of the running agent.

The agent copies this file into the runtime's CNI bin dir. It must start fast
(isolated mode, no site packages, standard library only): it hands the
CNI_* environment and the config on stdin to the agent over the unix socket
named in the config and prints the agent's answer. When no agent listens
(stopped, restarting) it runs the same code in-process with the agent's own
Python (`python -m nodeagent.netns.local`), so DEL always cleans up and pods
can still be torn down while the agent is down.
"""

import json
import os
import socket
import sys

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]
TRY_AGAIN_LATER = 11
DECODE_FAILURE = 6
TIMEOUT = 120.0


def _fail(version, code, msg, details=""):
    out = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        out["details"] = details
    sys.stdout.write(json.dumps(out))
    return 1


def main():
    stdin = sys.stdin.read()
    try:
        conf = json.loads(stdin) if stdin.strip() else {}
    except ValueError as exc:
        return _fail("1.0.0", DECODE_FAILURE, "network config on stdin is not JSON: %s" % exc)
    if not isinstance(conf, dict):
        return _fail("1.0.0", DECODE_FAILURE, "network config on stdin must be a JSON object")
    version = conf.get("cniVersion") or "1.0.0"
    if os.environ.get("CNI_COMMAND") == "VERSION":
        sys.stdout.write(json.dumps({"cniVersion": version, "supportedVersions": VERSIONS}))
        return 0
    env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
    request = json.dumps({"env": env, "stdin": stdin}).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(conf.get("agentSocket", ""))
    except OSError:
        sock.close()
        return _in_process(conf, version, stdin)
    try:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        reply = json.loads(b"".join(chunks))
    except (OSError, ValueError) as exc:
        return _fail(version, TRY_AGAIN_LATER, "nodeagent stopped answering: %s" % exc)
    finally:
        sock.close()
    sys.stdout.write(reply.get("stdout", ""))
    sys.stderr.write(reply.get("stderr", ""))
    return int(reply.get("exit", 1))


def _in_process(conf, version, stdin):
    python = conf.get("python", "")
    if not python or not os.access(python, os.X_OK):
        return _fail(version, TRY_AGAIN_LATER, "nodeagent is not running and its Python %r "
                     "is missing" % python)
    env = dict(os.environ, NODEAGENT_CNI_STDIN=stdin)
    os.execve(python, [python, "-m", "nodeagent.netns.local"], env)


if __name__ == "__main__":
    sys.exit(main())
