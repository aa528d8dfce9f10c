"""The observability step and its plan section.

`deploy_monitoring` (after the workloads, whose namespaces and identities it uses):

1. a `Monitoring` component in every region's cluster (Prometheus, Grafana and dashboards, the
   DCGM exporter on the region's GPU pools, PodMonitors, alert rules), parented to the region's
   platform with the region's Kubernetes provider;
2. with `retraining`: a `RetrainingPipeline` in each cloud's primary region, where the lakehouse,
   the trainer's identity and the training pools are, for the model of `aicloud:serving`; it
   installs the operator its job's kind needs (Kubeflow Trainer for `trainjob`) where the training
   step did not.

`monitoring_section` shows, per cluster, what is installed, the alert rules with their
thresholds and the retraining trigger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pulumi

from components.monitoring import Monitoring
from components.retraining import RetrainingPipeline
from components.training import OPERATOR_CHARTS

if TYPE_CHECKING:
    from stacks.deployment import Deployment
    from stacks.plan.model import Plan

MONITORING_TYPE = "aicloud:observability:Monitoring"
RETRAINING_TYPE = "aicloud:observability:RetrainingPipeline"
LAKE_ZONES = ("features", "checkpoints", "models")
"""Lakehouse zones the retraining loop uses (fresh data; run directories; candidates and log)."""


def deploy_monitoring(d: Deployment) -> None:
    """Monitoring in every cluster; retraining in each cloud's primary region."""
    spec = d.config.monitoring
    if spec is None:
        return
    for region in d.config.regions:
        platform = d.regions[region.name]
        Monitoring(
            f"{region.name}-monitoring",
            spec,
            cloud=region.cloud,
            pools=list(region.node_pools),
            region_key=region.name,
            opts=pulumi.ResourceOptions(parent=platform, providers=[platform.k8s_provider]),
        )
    retraining, serving = spec.retraining, d.config.serving
    if retraining is None or serving is None:
        return
    for cloud in dict.fromkeys(r.cloud for r in d.config.regions):
        region = d.config.primary(cloud)
        assert region is not None, "config validation guarantees a primary region per cloud"
        key = region.name
        platform = d.regions[key]
        images = d.images.get(key, {})
        trainer = retraining.job.image or images["trainer"].ref
        server = images.get("server")
        identities = d.identities.get(key, {})
        job_identity = identities.get("trainer")
        runner = identities.get("retrain")
        deps = [i.namespace_resource for i in (job_identity, identities.get("server")) if i is not None]
        # Retraining only launches jobs where their operator runs: install it unless the training
        # step did, or the stack says the clusters have it (`aicloud:training.operator: preinstalled`).
        chart = OPERATOR_CHARTS[retraining.job.backend]
        preinstalled = d.config.training is not None and d.config.training.operator == "preinstalled"
        install = chart is not None and not preinstalled and chart not in d.operators.get(key, set())
        if install:
            d.operators.setdefault(key, set()).add(chart)  # type: ignore[arg-type]
        RetrainingPipeline(
            f"{key}-retrain",
            retraining,
            serving=serving,
            region=region,
            trainer_image=trainer,
            server_image=server.ref if server is not None else None,
            lake_uris={zone: d.outputs[f"{key}:lake:{zone}"] for zone in LAKE_ZONES},
            job_identity=(job_identity.namespace, job_identity.service_account_name) if job_identity else None,
            runner_identity=(runner.namespace, runner.service_account_name) if runner else None,
            depends_on=deps,
            install_operator=install,
            opts=pulumi.ResourceOptions(parent=platform, providers=[platform.k8s_provider]),
        )


def _threshold(expr: str) -> str:
    """The comparison at the end of an alert expression (`> 0.5`, `< 5`, `== 0`)."""
    for op in (" > ", " < ", " == ", " >= "):
        head, sep, tail = expr.rpartition(op)
        if sep and head and ")" not in tail:
            return f"{op.strip()} {tail}"
    return "-"


def monitoring_section(plan: Plan) -> dict[str, Any] | None:
    """Per cluster: Prometheus, Grafana dashboards, DCGM pools, monitors, alerts, retraining."""
    clusters = plan.component_outputs(MONITORING_TYPE)
    if not clusters:
        return None
    retrain = {out["region"]: out for _, out in plan.component_outputs(RETRAINING_TYPE)}
    order = [r.name for r in plan.config.regions]
    clusters.sort(key=lambda c: order.index(c[1]["region"]) if c[1]["region"] in order else len(order))
    rows = []
    for _, out in clusters:
        prom = out["prometheus"]
        key = out["region"]
        r = retrain.get(key)
        rows.append(
            [
                key,
                f"{prom['retention']}, {prom['storageGib']} GiB",
                f"{len(out['dashboards'])} dashboards" if out["dashboards"] else "off",
                ", ".join(out["dcgmPools"]) or "-",
                ", ".join(out["monitors"]),
                len(out["alerts"]),
                "on" if out["otel"] else "off",
                f"`{r['schedule']}` -> {r['job']['pool']} -> {r['rollout']}" if r else "-",
            ]
        )
    _, first = clusters[0]
    notes = [
        "Alerts (every cluster): "
        + "; ".join(f"{a['name']} {_threshold(a['expr'])} for {a['for']}" for a in first["alerts"]),
        "DCGM exporter on the GPU pools listed (tolerating their taints, pinned by aicloud.dev/gpu=true); "
        "PodMonitors scrape the model server and the trainer.",
    ]
    for key, r in sorted(retrain.items()):
        notes.append(
            f"Retraining in {key}: model {r['model']}, every `{r['schedule']}` (UTC): PSI >= {r['driftThreshold']} "
            f"on >= {r['minSamples']} rows, confirmed on fresh data -> {r['job']['backend']} on pool "
            f"{r['job']['pool']} ({r['job']['nodes']} node(s), preset {r['job']['preset']}) -> gate: candidate at "
            f"least as accurate on held-out rows -> {r['rollout']}"
            + (f" at {r['canaryPercent']} %" if r["rollout"].startswith("canary") else "")
            + f"; decisions kept under {r['decisions']}."
        )
    return {
        "title": "Monitoring",
        "columns": ["region", "prometheus", "grafana", "DCGM pools", "monitors", "alerts", "otel", "retraining"],
        "rows": rows,
        "notes": notes,
    }
