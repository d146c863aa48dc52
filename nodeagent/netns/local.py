"""`python -m nodeagent.netns.local`: the CNI plugin's work done in-process.

The thin plugin execs this when no agent listens on its socket (agent
stopped or restarting), so a runtime can still set up and, above all, tear
down pod networks. The config arrives in NODEAGENT_CNI_STDIN because the
thin plugin has already read stdin.
"""

from __future__ import annotations

import os
import sys

from nodeagent.netns.network import handle


def main() -> int:
    stdin = os.environ.pop("NODEAGENT_CNI_STDIN", "")
    code, out, err = handle(dict(os.environ), stdin)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
