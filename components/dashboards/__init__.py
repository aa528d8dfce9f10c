"""Grafana dashboards shipped as JSON files beside this module, and a tiny loader.

- `serving.json`: the model server: requests/s, p50/p99 latency, error rate, batch size, queue
  depth, drift (PSI per feature), ready replicas, held-out accuracy.
- `gpu.json`: DCGM exporter metrics per node pool: utilisation, memory, power, GPUs allocated.
- `training.json`: the trainer: loss, samples/s, steps, seconds per step, world size, restarts.

The Monitoring component puts each into a ConfigMap labelled `grafana_dashboard: "1"`, which
Grafana's sidecar (kube-prometheus-stack) loads. Edit the JSON here (or export it from Grafana
with "share -> export" and replace the file); `tests/monitoring` checks every query against the
metrics the exporters really export.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARDS_DIR", "DRIFT_PANEL", "dashboard_queries", "load_dashboards", "panels", "with_drift_threshold"]

DASHBOARDS_DIR = Path(__file__).parent
DRIFT_PANEL = "Drift (PSI per feature)"
"""Title of the serving dashboard's drift panel, whose threshold line follows the drift alert."""


@functools.cache
def _load() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard by file name (without `.json`); a fresh copy the caller may change."""
    return copy.deepcopy(_load())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in rows."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template-variable queries."""
    queries = [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if t.get("expr")]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def with_drift_threshold(dashboard: dict[str, Any], threshold: float) -> dict[str, Any]:
    """The dashboard with the drift panel's threshold line at `threshold` (others unchanged)."""
    out = copy.deepcopy(dashboard)
    for panel in panels(out):
        if panel.get("title") == DRIFT_PANEL:
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            steps[-1]["value"] = threshold
    return out
