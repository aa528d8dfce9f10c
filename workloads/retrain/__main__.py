"""``python -m workloads.retrain --settings FILE``: one tick of the retraining loop.

Prints the decision it logged as one JSON line. Exit codes: 0 done (whatever the decision),
1 the tick failed (Prometheus, Kubernetes or storage error), 2 bad settings.
"""

from __future__ import annotations

import argparse
import json
import sys

from contracts.retrain import Settings
from workloads import storage
from workloads.retrain.clients import KubeClient, PrometheusClient
from workloads.retrain.controller import run_once

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workloads.retrain", description=__doc__.split("\n")[0])
    parser.add_argument("--settings", required=True, help="settings JSON (any storage URI)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_json(json.loads(storage.read_bytes(args.settings)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"settings error: {args.settings}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    metrics = PrometheusClient(settings.prometheus_url)
    cluster = KubeClient()
    try:
        decision = run_once(settings, metrics=metrics, cluster=cluster)
    except Exception as exc:  # any failure: one line on stderr, the exit code tells the Job
        print(f"retraining tick failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        metrics.close()
        cluster.close()
    print(json.dumps(decision, sort_keys=True))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
