"""The plan's Readiness sections: per cluster, what is installed (charts, CRDs, APIs), where each
workload can run and how much of it fits at max scale, and every readiness finding with its level.

The check itself is `policies.readiness` (the pack's rules run it too); this module only lays out
its report for the terminal, JSON and Markdown views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from policies.common import StackView
from policies.readiness import Report, report

if TYPE_CHECKING:
    from stacks.plan.model import Plan


def readiness_report(plan: Plan) -> Report:
    """The readiness report of `plan` (the one its policy evaluation computed, when it ran)."""
    view = getattr(plan, "stack_view", None)
    if view is None:
        from stacks.plan.policy import policy_resources

        view = StackView([res for _, res in policy_resources(plan)])
        plan.stack_view = view
    return report(view)


def figures(plan: Plan) -> dict[str, Any]:
    """Counts for the summary and the benchmarks."""
    rep = readiness_report(plan)
    workloads = [w for c in rep.clusters.values() for w in c.workloads]
    levels = plan.policy_levels
    return {
        "customResourcesValidated": rep.crs_validated,
        "objectsValidated": rep.objects_validated,
        "helmKeysChecked": rep.helm_keys_checked,
        "helmKeysUnknown": rep.helm_keys_unknown,
        "workloads": len(workloads),
        "workloadsSchedulable": sum(1 for w in workloads if w.pools),
        "findings": len(rep.findings),
        "mandatory": sum(1 for f in rep.findings if levels.get(f.rule, "mandatory") == "mandatory"),
        "disabled": sum(1 for f in rep.findings if levels.get(f.rule) == "disabled"),
    }


def clusters_section(plan: Plan) -> dict[str, Any] | None:
    rep = readiness_report(plan)
    rows = []
    for c in rep.clusters.values():
        if not c.objects and not c.releases:
            continue
        charts = sorted(f"{r.chart} {r.version}" + ("" if r.truth else " (no truth)") for r in c.releases)
        crds = sorted({f"{o.kind}" for o in c.objects if "." in str(o.props.get("apiVersion", "")).split("/")[0]})
        apis = sorted(a for a in c.apis() if not a.startswith("chart:"))
        rows.append(
            [c.key, c.cloud, c.version, ", ".join(charts) or "-", ", ".join(crds) or "-", ", ".join(apis) or "-"]
        )
    if not rows:
        return None
    f = figures(plan)
    return {
        "title": "Readiness: clusters",
        "columns": ["cluster", "cloud", "k8s", "charts installed", "custom resources rendered", "APIs and drivers"],
        "rows": rows,
        "notes": [
            f"{f['customResourcesValidated']} custom resources validated against upstream CRDs, "
            f"{f['objectsValidated']} objects in all; {f['helmKeysChecked']} Helm value keys checked against the "
            f"pinned charts ({f['helmKeysUnknown']} unknown); {f['workloadsSchedulable']} of {f['workloads']} pod "
            "templates fit a node pool. Truth: components/upstream (pins.yaml)."
        ],
        "compact": [f"_Readiness: {len(rows)} cluster(s); every installed chart and API is in the JSON plan._"],
        "figures": f,
    }


def workloads_section(plan: Plan) -> dict[str, Any] | None:
    rep = readiness_report(plan)
    rows = []
    for c in rep.clusters.values():
        pools = {p.display: p for p in c.pools}
        for w in c.workloads:
            if not w.pools:
                rows.append([c.key, w.name, w.pods_at_max, "none", "-", "-"])
                continue
            fits = []
            for name, per_node in w.pools:
                hi = pools[name].max_nodes
                fits.append(f"{name}: {per_node}/node, {per_node * hi if isinstance(hi, int) else '?'} at max")
            rows.append([c.key, w.name, w.pods_at_max, ", ".join(n for n, _ in w.pools), "; ".join(fits),
                         "yes" if any(isinstance(pools[n].max_nodes, int) and p * pools[n].max_nodes >= w.pods_at_max
                                      for n, p in w.pools) else "no"])  # fmt: skip
    if not rows:
        return None
    return {
        "title": "Readiness: workloads",
        "columns": ["cluster", "workload", "pods at max", "pools", "fit", "fits at max"],
        "rows": rows,
        "notes": ["Pods at max: autoscaler max plus rollout surge, or the gang size of a training job."],
        "compact": [
            f"_Readiness: {sum(1 for r in rows if r[-1] == 'yes')} of {len(rows)} pod templates fit their pools at "
            "max scale; the table is in the JSON plan._"
        ],
    }


def findings_section(plan: Plan) -> dict[str, Any] | None:
    rep = readiness_report(plan)
    levels = plan.policy_levels
    # Like the policy verdicts, a rule the stack disables shows nothing.
    rows = [
        [levels.get(f.rule, "mandatory"), f.rule, f.cluster, f.resource, f.path or "-", f.message]
        for f in rep.findings
        if levels.get(f.rule) != "disabled"
    ]
    return {
        "title": "Readiness: findings",
        "columns": ["level", "rule", "cluster", "resource", "key path", "what is missing"],
        "rows": rows,
        "notes": []
        if rows
        else ["Every workload finds its controller, storage, metrics, identity and a node it fits on."],
    }
