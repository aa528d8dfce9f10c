"""Every alert and dashboard query names only metrics that exist: the server's and the trainer's
metric definitions (imported from their code), and the exporter metrics aicloud deploys (the DCGM
fields it configures, kube-state-metrics families). Dashboards are valid and have the panels the
issue names."""

from __future__ import annotations

import json
import re

import pytest

from components.dashboards import DASHBOARDS_DIR, DRIFT_PANEL, dashboard_queries, load_dashboards, panels
from components.monitoring import (
    DCGM_METRICS,
    KUBE_STATE_METRICS,
    NODE_LABELS_ALLOWED,
    AlertsSpec,
    alert_rules,
    dcgm_values,
    drift_query,
    drift_rows_query,
)
from components.nodepool import NodePoolSpec
from tests.monitoring.promql import label_names, metric_names, parse
from workloads.server import metrics as server_metrics
from workloads.trainer.telemetry import METRICS as TRAINER_METRICS


def server_names() -> set[str]:
    names = set()
    for spec in server_metrics.METRICS:
        names.add(spec.name)
        if spec.kind == "histogram":
            names |= {f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count"}
    return names


EXPORTED = (
    server_names()
    | {m.name for m in TRAINER_METRICS}
    | {field for field, _, _ in DCGM_METRICS}
    | set(KUBE_STATE_METRICS)
)


def all_queries() -> list[tuple[str, str]]:
    out = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules(AlertsSpec())]
    out.append(("retraining trigger", drift_query(1000, by=("feature",), model="classifier")))
    out.append(("retraining agent rows", drift_rows_query(1000, model="classifier")))
    for name, dashboard in load_dashboards().items():
        out += [(f"dashboard {name}", q) for q in dashboard_queries(dashboard)]
    return out


def test_the_scanner_finds_metric_names_and_nothing_else():
    expr = (
        'histogram_quantile(0.99, sum by (le, model) (rate(a_seconds_bucket{model=~"$model", x="y(z)"}'
        "[$__rate_interval]))) > 1e-3 and on (instance) (b_rows >= 1000) * on (node) group_left (lbl) kube_x"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_rows", "kube_x"}
    assert metric_names('label_values(kube_node_labels{a="true"}, label_aicloud_dev_pool)') == {"kube_node_labels"}
    assert label_names(expr) >= {"le", "model", "x", "instance", "node", "lbl"}


def test_every_query_is_valid_promql():
    """Parsed and type-checked by a real PromQL parser (Grafana variables interpolated first)."""
    for where, q in all_queries():
        try:
            parse(q)
        except ValueError as exc:
            pytest.fail(f"{where}: {q!r} is not valid PromQL: {exc}")


@pytest.mark.parametrize(
    "expr",
    ["rate(x[5m]", "sum by (a) x)", "rate(aicloud_server_requests_total)", "x >", "histogram_quantile(0.9 x)"],
)
def test_invalid_promql_is_refused(expr):
    with pytest.raises(ValueError):
        parse(expr)


def test_every_query_names_only_exported_metrics():
    queries = all_queries()
    assert len(queries) >= 35
    unknown = {(where, name) for where, q in queries for name in metric_names(q) if name not in EXPORTED}
    assert not unknown, f"queries name metrics nobody exports: {sorted(unknown)}"


def test_a_misspelt_metric_is_caught():
    assert metric_names("rate(aicloud_server_request_total[5m])") - EXPORTED == {"aicloud_server_request_total"}


def test_every_query_uses_at_least_one_metric_of_its_source():
    for where, q in all_queries():
        assert metric_names(q), f"{where}: {q!r} names no metric"


def test_the_dcgm_exporter_is_configured_with_every_dcgm_field_the_queries_use():
    gpu = NodePoolSpec(name="gpu", machine_type="g6.xlarge", role="training", max_nodes=2)
    configured = {line.split(",")[0] for line in dcgm_values("aws", [gpu])["customMetrics"].splitlines()}
    used = {n for _, q in all_queries() for n in metric_names(q) if n.startswith("DCGM_")}
    assert used >= {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE"}
    assert used <= configured


def test_node_label_joins_use_labels_kube_state_metrics_is_allowed_to_export():
    allowed = {"label_" + re.sub(r"[^A-Za-z0-9_]", "_", label) for label in NODE_LABELS_ALLOWED}
    used = {lbl for _, q in all_queries() for lbl in re.findall(r"\blabel_aicloud_dev_\w+", q)}
    assert used and used <= allowed


def test_server_labels_in_queries_exist_on_the_server_metrics():
    labels = {label for spec in server_metrics.METRICS for label in spec.labels}
    assert {"model", "version", "feature", "status", "precision"} <= labels
    psi = server_metrics.FEATURE_PSI
    assert psi.name == "aicloud_server_feature_psi" and "feature" in psi.labels


@pytest.mark.parametrize("name", ["serving", "gpu", "training"])
def test_dashboards_are_valid_json_with_unique_panel_ids_and_a_datasource_variable(name):
    doc = json.loads((DASHBOARDS_DIR / f"{name}.json").read_text())
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids))
    assert doc["uid"].startswith("aicloud-") and doc["title"]
    assert any(v["type"] == "datasource" for v in doc["templating"]["list"])
    for p in panels(doc):
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
        assert p["datasource"]["uid"] == "${datasource}"


def test_dashboards_have_the_panels_the_issue_names():
    titles = {name: [p["title"].lower() for p in panels(d)] for name, d in load_dashboards().items()}

    def has(name: str, *words: str) -> bool:
        return any(all(w in t for w in words) for t in titles[name])

    assert has("serving", "requests per second")
    assert has("serving", "p50") and has("serving", "p99")
    assert has("serving", "error rate")
    assert has("serving", "batch size")
    assert has("serving", "queue depth")
    assert has("serving", "drift")
    assert has("gpu", "utilisation", "pool") and has("gpu", "memory", "pool") and has("gpu", "power", "pool")
    assert has("training", "loss") and has("training", "samples per second")
    gpu_queries = " ".join(dashboard_queries(load_dashboards()["gpu"]))
    for field in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE"):
        assert field in gpu_queries
    assert DRIFT_PANEL in [p["title"] for p in panels(load_dashboards()["serving"])]
