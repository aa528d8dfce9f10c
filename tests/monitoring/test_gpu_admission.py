"""The GPU exporter as the cluster would see it: the pod the API server builds from the chart's
defaults merged with our values must be admitted (GKE), and the GPU alert and dashboard must name
the workload's pod, not the exporter's. Each check is shown to report the problem it guards
against by planting that problem (the values and queries aicloud shipped before)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.dashboards import load_dashboards, panels
from components.monitoring import (
    CRITICAL_PRIORITY_CLASSES,
    DCGM_EXPORTER_CHART,
    GPU_WORKLOAD_POD,
    NODE_AGENTS_NAMESPACE,
    AlertsSpec,
    alert_rules,
    dcgm_priority_class,
    dcgm_quota,
    dcgm_values,
)
from components.upstream import chart_truth
from policies.readiness.helm import merge
from tests.monitoring.specs import aws_region, gcp_region

DCGM_NAMESPACE = NODE_AGENTS_NAMESPACE
"""Where the exporter runs (the node agents' namespace, Pod Security `privileged`)."""

# --------------------------------------------------------------------------- Helm and the API server


def security_context_problems(sc: dict[str, Any]) -> list[str]:
    """kube-apiserver's container securityContext checks (pkg/apis/core/validation
    `ValidateSecurityContext`), the two that combine fields."""
    problems = []
    if sc.get("allowPrivilegeEscalation") is False:
        if sc.get("privileged") is True:
            problems.append("cannot set `allowPrivilegeEscalation` to false and `privileged` to true")
        if "CAP_SYS_ADMIN" in ((sc.get("capabilities") or {}).get("add") or []):
            problems.append("cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN")
    return problems


def admission_problems(cloud: str, values: dict[str, Any], quotas: list[dict[str, Any]]) -> list[str]:
    """What the API server would refuse in the exporter's pod: its container security context as
    Helm renders it from the merged values, and (GKE) a critical priority class outside
    `kube-system` without a ResourceQuota in the namespace that covers it."""
    truth = chart_truth(DCGM_EXPORTER_CHART["chart"])
    assert truth is not None
    merged = merge(truth.values, values)
    problems = security_context_problems(merged.get("securityContext") or {})
    priority = merged.get("priorityClassName")
    if cloud == "gcp" and priority in CRITICAL_PRIORITY_CLASSES and DCGM_NAMESPACE != "kube-system":
        covered = any(
            q["metadata"]["namespace"] == DCGM_NAMESPACE
            and any(
                e["scopeName"] == "PriorityClass" and e["operator"] == "In" and priority in e["values"]
                for e in q["spec"].get("scopeSelector", {}).get("matchExpressions", [])
            )
            for q in quotas
        )
        if not covered:
            problems.append(
                f"pods with priority class {priority} are not allowed in {DCGM_NAMESPACE}: no ResourceQuota"
            )
    return problems


def test_the_chart_default_is_what_makes_privileged_invalid():
    truth = chart_truth(DCGM_EXPORTER_CHART["chart"])
    assert truth.values["securityContext"]["allowPrivilegeEscalation"] is False
    assert truth.values["priorityClassName"] == "system-node-critical"


@pytest.mark.parametrize("region", [aws_region, gcp_region])
def test_the_exporter_pod_is_admitted(region):
    spec = region()
    values = dcgm_values(spec.cloud, list(spec.node_pools))
    quota = dcgm_quota(spec.cloud, list(spec.node_pools), values)
    assert admission_problems(spec.cloud, values, [quota] if quota else []) == []


def test_on_gke_the_exporter_runs_privileged_with_escalation_allowed():
    spec = gcp_region()
    values = dcgm_values("gcp", list(spec.node_pools))
    assert values["securityContext"]["privileged"] is True
    assert values["securityContext"]["allowPrivilegeEscalation"] is True


def test_planted_privileged_without_escalation_is_refused():
    spec = gcp_region()
    values = dcgm_values("gcp", list(spec.node_pools))
    values["securityContext"] = {"privileged": True}  # what aicloud shipped: merged with the chart default
    quota = dcgm_quota("gcp", list(spec.node_pools), values)
    assert admission_problems("gcp", values, [quota]) == [
        "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
    ]


def test_on_gke_a_quota_admits_the_critical_priority_class_for_every_gpu_node():
    spec = gcp_region()
    values = dcgm_values("gcp", list(spec.node_pools))
    quota = dcgm_quota("gcp", list(spec.node_pools), values)
    assert dcgm_priority_class(values) == "system-node-critical"
    assert quota["metadata"]["namespace"] == DCGM_NAMESPACE
    gpu_nodes = sum(p.max_nodes for p in spec.node_pools if p.machine.is_gpu)
    assert int(quota["spec"]["hard"]["pods"]) >= gpu_nodes


def test_planted_missing_quota_on_gke_is_reported():
    spec = gcp_region()
    values = dcgm_values("gcp", list(spec.node_pools))
    assert admission_problems("gcp", values, []) == [
        "pods with priority class system-node-critical are not allowed in aicloud-node-agents: no ResourceQuota"
    ]


def test_eks_needs_no_quota_and_a_cleared_priority_class_needs_none_either():
    spec = aws_region()
    assert dcgm_quota("aws", list(spec.node_pools), dcgm_values("aws", list(spec.node_pools))) is None
    gcp = gcp_region()
    values = {**dcgm_values("gcp", list(gcp.node_pools)), "priorityClassName": ""}
    assert dcgm_quota("gcp", list(gcp.node_pools), values) is None


# --------------------------------------------------------------------------- whose pod a GPU series names


def stored_labels(exporter: dict[str, str], target: dict[str, str], honor_labels: bool) -> dict[str, str]:
    """Prometheus' scrape: with `honor_labels: false` a scraped label that clashes with a target
    label is kept as `exported_<name>` and the target's value wins; empty labels are dropped."""
    out = {k: v for k, v in target.items() if v}
    for key, value in exporter.items():
        if not value:
            continue
        if key in target and not honor_labels:
            out[f"exported_{key}"] = value
        elif key not in out or honor_labels:
            out[key] = value
    return out


_SELECTOR = re.compile(r"DCGM_FI_DEV_GPU_UTIL\s*(\{[^}]*\})?")
_BY = re.compile(r"by\s*\(([^)]*)\)")


def evaluate(expr: str, series: list[dict[str, str]]) -> dict[tuple[str, ...], int]:
    """The groups `max by (...) (DCGM_FI_DEV_GPU_UTIL{l!=""...})` forms over `series` and how many
    series fall in each (only the selector's `!=""`/`="v"` matchers are supported)."""
    selector = _SELECTOR.search(expr)
    assert selector is not None, expr
    matchers = re.findall(r'([A-Za-z_]\w*)\s*(!=|=)\s*"([^"]*)"', selector.group(1) or "")
    by = [x.strip() for x in _BY.search(expr).group(1).split(",")]
    groups: dict[tuple[str, ...], int] = {}
    for s in series:
        if all((s.get(k, "") == v) == (op == "=") for k, op, v in matchers):
            key = tuple(s.get(label, "") for label in by)
            groups[key] = groups.get(key, 0) + 1
    return groups


def scraped_gpus() -> list[dict[str, str]]:
    """Two GPUs on one node scraped through the chart's ServiceMonitor: one used by a trainer pod,
    one idle and unallocated."""
    truth = chart_truth(DCGM_EXPORTER_CHART["chart"])
    values = merge(truth.values, dcgm_values("aws", list(aws_region().node_pools)))
    honor = bool(values["serviceMonitor"].get("honorLabels"))
    target = {"namespace": DCGM_NAMESPACE, "pod": "dcgm-exporter-x7k2p", "node": "ip-10-0-1-5"}
    used = {"gpu": "0", "pod": "trainer-0", "namespace": "training"}
    idle = {"gpu": "1", "pod": "", "namespace": ""}
    return [stored_labels(used, target, honor), stored_labels(idle, target, honor)]


def gpu_problems(expr: str) -> list[str]:
    groups = evaluate(expr, scraped_gpus())
    problems = []
    if sum(groups.values()) != 1:
        problems.append(f"selects {sum(groups.values())} GPUs, but only one is allocated to a pod")
    if not any("trainer-0" in key for key in groups):
        problems.append(f"groups by {sorted({v for k in groups for v in k})}, not the workload's pod")
    return problems


def test_the_chart_does_not_honour_the_exporters_labels():
    assert chart_truth(DCGM_EXPORTER_CHART["chart"]).values["serviceMonitor"]["honorLabels"] is False
    assert "honorLabels" not in dcgm_values("aws", list(aws_region().node_pools))["serviceMonitor"]
    assert GPU_WORKLOAD_POD in scraped_gpus()[0]


def test_the_gpu_idle_alert_names_the_pod_that_holds_the_gpu():
    [rule] = [r for r in alert_rules(AlertsSpec()) if r["alert"] == "AicloudGpuIdleWhileAllocated"]
    expr = rule["expr"].rsplit("<", 1)[0]
    assert gpu_problems(expr) == []
    assert "exported_pod" in rule["annotations"]["summary"]


def test_the_per_pod_gpu_panel_names_the_pod_that_holds_the_gpu():
    exprs = [
        t["expr"]
        for d in load_dashboards().values()
        for p in panels(d)
        for t in p.get("targets", [])
        if "DCGM_FI_DEV_GPU_UTIL" in t.get("expr", "") and "pod" in t.get("expr", "")
    ]
    assert exprs
    for expr in exprs:
        assert gpu_problems(expr) == [], expr


def test_planted_grouping_by_pod_is_reported():
    shipped = 'max by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL{pod!=""})'
    assert gpu_problems(shipped) == [
        "selects 2 GPUs, but only one is allocated to a pod",
        "groups by ['aicloud-node-agents', 'dcgm-exporter-x7k2p'], not the workload's pod",
    ]
