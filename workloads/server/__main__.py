"""``python -m workloads.server --model URI [--model-b URI] --port 8080 ...``"""

from __future__ import annotations

import sys

from workloads.server.app import run_server
from workloads.server.config import parse_args


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, serve until SIGTERM, return the exit code."""
    return run_server(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
