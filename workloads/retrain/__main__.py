"""``python -m workloads.retrain [coordinator|agent] --settings FILE``: one tick of the retraining
loop (``coordinator``, the default: the trigger in the primary region) or of a serving region's
agent (``agent``: drift report and the region's rollout, :mod:`workloads.retrain.regional`).

Prints the decision (or the agent's report) it logged as one JSON line. Exit codes: 0 done (whatever the decision),
1 the tick failed (Prometheus, Kubernetes or storage error), 2 bad settings.
"""

from __future__ import annotations

import argparse
import json
import sys

from contracts.retrain import AgentSettings, Settings
from workloads import storage
from workloads.retrain.clients import KubeClient, PrometheusClient
from workloads.retrain.regional import run_agent

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workloads.retrain", description=__doc__.split("\n")[0])
    parser.add_argument("role", nargs="?", choices=["coordinator", "agent"], default="coordinator")
    parser.add_argument("--settings", required=True, help="settings JSON (any storage URI)")
    args = parser.parse_args(argv)
    kind = AgentSettings if args.role == "agent" else Settings
    try:
        settings = kind.from_json(json.loads(storage.read_bytes(args.settings)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"settings error: {args.settings}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    metrics = PrometheusClient(settings.prometheus_url)
    # An agent of a region without a weighted canary never calls the API (its pod mounts no token).
    needs_api = not isinstance(settings, AgentSettings) or settings.canary is not None
    cluster = KubeClient() if needs_api else None
    try:
        if isinstance(settings, AgentSettings):
            decision = run_agent(settings, metrics=metrics, cluster=cluster)
        else:
            # The coordinator scores models (torch); an agent never imports it.
            from workloads.retrain.controller import run_once

            decision = run_once(settings, metrics=metrics, cluster=cluster)
    except Exception as exc:  # any failure: one line on stderr, the exit code tells the Job
        print(f"retraining tick failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        metrics.close()
        if cluster is not None:
            cluster.close()
    print(json.dumps(decision, sort_keys=True))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
