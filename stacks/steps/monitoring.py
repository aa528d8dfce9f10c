"""The observability step and its plan section.

`deploy_monitoring` (after the workloads, whose namespaces and identities it uses):

1. a `Monitoring` component in every region's cluster (Prometheus, Grafana and dashboards, the
   DCGM exporter on the region's GPU pools, PodMonitors, alert rules), parented to the region's
   platform with the region's Kubernetes provider;
2. with `retraining`: a `RetrainingPipeline` (the coordinator) in each cloud's primary region,
   where the lakehouse, the trainer's identity and the training pools are, for the model of
   `aicloud:serving`; it installs the operator its job's kind needs (Kubeflow Trainer for
   `trainjob`) where the training step did not. A `RetrainingAgent` in every serving region of
   that cloud (the primary included) reports the region's drift and applies its rollout, sharing
   state with the coordinator through the lakehouse only (no region reaches another's API or
   Prometheus).

`monitoring_section` shows, per cluster, what is installed, the alert rules with their
thresholds and the retraining trigger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pulumi

from components.monitoring import Monitoring
from components.retraining import RetrainingAgent, RetrainingPipeline, decisions_key
from components.training import OPERATOR_CHARTS

if TYPE_CHECKING:
    from stacks.deployment import Deployment
    from stacks.plan.model import Plan

MONITORING_TYPE = "aicloud:observability:Monitoring"
RETRAINING_TYPE = "aicloud:observability:RetrainingPipeline"
AGENT_TYPE = "aicloud:observability:RetrainingAgent"
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
            opts=pulumi.ResourceOptions(
                parent=platform, providers=[platform.k8s_provider], depends_on=platform.system_nodes
            ),
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
        # Every serving region of this cloud: its agent, and where its servers find candidates.
        serving_regions = [r for r in d.config.regions if r.cloud == cloud and r.serving]
        copies = []
        for r in serving_regions:
            server_id = d.identities.get(r.name, {}).get("server")
            copies.append(server_id.zone_uris["models"] if server_id is not None else d.outputs[f"{key}:lake:models"])
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
            regions=list(zip(serving_regions, copies, strict=True)),
            opts=pulumi.ResourceOptions(parent=platform, providers=[platform.k8s_provider]),
        )
        decisions = pulumi.Output.from_input(d.outputs[f"{key}:lake:models"]).apply(
            lambda m: f"{m.rstrip('/')}/{decisions_key(serving.model)}"
        )
        for r in serving_regions:
            there = d.regions[r.name]
            agent_id = d.identities.get(r.name, {}).get("retrain-agent")
            server_image = d.images.get(r.name, {}).get("server")
            RetrainingAgent(
                f"{r.name}-retrain-agent",
                retraining,
                serving=serving,
                region=r,
                coordinator=key,
                trainer_image=retraining.job.image or d.images.get(r.name, {}).get("trainer", images["trainer"]).ref,
                decisions_uri=decisions,
                identity=(agent_id.namespace, agent_id.service_account_name) if agent_id else None,
                server_image=server_image.ref if server_image is not None else None,
                depends_on=[agent_id.namespace_resource, agent_id.service_account] if agent_id else None,
                opts=pulumi.ResourceOptions(parent=there, providers=[there.k8s_provider]),
            )


def retraining_coverage(plan: Plan) -> dict[str, Any] | None:
    """Serving regions whose drift the retraining loop reads and to which it rolls out: those with
    an agent that a coordinator of their cloud lists (None when the stack does not retrain)."""
    coordinators = [out for _, out in plan.component_outputs(RETRAINING_TYPE)]
    if not coordinators:
        return None
    serving = [r.name for r in plan.config.regions if r.serving]
    agents = {out["region"] for _, out in plan.component_outputs(AGENT_TYPE)}
    listed = {k for out in coordinators for k in out.get("regions") or []}
    covered = [k for k in serving if k in agents and k in listed]
    return {"serving": serving, "covered": covered, "missing": [k for k in serving if k not in covered]}


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
    agents = {out["region"]: out for _, out in plan.component_outputs(AGENT_TYPE)}
    order = [r.name for r in plan.config.regions]
    clusters.sort(key=lambda c: order.index(c[1]["region"]) if c[1]["region"] in order else len(order))
    rows = []
    for _, out in clusters:
        prom = out["prometheus"]
        key = out["region"]
        r = retrain.get(key)
        a = agents.get(key)
        cell = []
        if r:
            cell.append(f"coordinator `{r['schedule']}` -> {r['job']['pool']}")
        if a:
            cell.append(f"agent -> {a['rollout']}")
        rows.append(
            [
                key,
                f"{prom['retention']}, {prom['storageGib']} GiB",
                f"{len(out['dashboards'])} dashboards" if out["dashboards"] else "off",
                ", ".join(out["dcgmPools"]) or "-",
                ", ".join(out["monitors"]),
                len(out["alerts"]),
                "on" if out["otel"] else "off",
                "; ".join(cell) or "-",
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
        covered = r.get("regions") or []
        if covered:
            drift = (
                f"PSI >= {r['driftThreshold']} on >= {r['minSamples']} rows in any serving region's fresh report "
                f"(agents in {', '.join(covered)}; reports older than {r['reportMaxAgeMinutes']} min are stale)"
            )
            canaries = [k for k in covered if (agents.get(k) or {}).get("canary")]
            rollout = (
                f"canary at {r['canaryPercent']} % applied by each region's agent, staged: {canaries[0]} first, "
                f"the others after its canary held {r['stageMinutes']} min"
                if canaries
                else "candidate-ready in every region for a person (no weighted canary)"
            )
        else:
            drift = f"PSI >= {r['driftThreshold']} on >= {r['minSamples']} rows"
            rollout = r["rollout"] + (f" at {r['canaryPercent']} %" if r["rollout"].startswith("canary") else "")
        notes.append(
            f"Retraining coordinated from {key}: model {r['model']}, every `{r['schedule']}` (UTC): {drift}, "
            f"confirmed on fresh data -> {r['job']['backend']} on pool {r['job']['pool']} ({r['job']['nodes']} "
            f"node(s), preset {r['job']['preset']}) -> gate: candidate at least as accurate on held-out rows -> "
            f"{rollout}; decisions kept under {r['decisions']}."
        )
    for key in [k for k in order if k in agents]:
        a = agents[key]
        notes.append(
            f"Retraining agent in {key} (coordinator {a['coordinator']}): drift from {a['driftSource']}; rollout "
            f"target: {a['rollout']}; writes only under {a['prefix']} as {a['serviceAccount']}."
        )
    return {
        "title": "Monitoring",
        "columns": ["region", "prometheus", "grafana", "DCGM pools", "monitors", "alerts", "otel", "retraining"],
        "rows": rows,
        "notes": notes,
    }
