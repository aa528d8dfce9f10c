"""The cluster platform's step and plan sections: node autoscaling, foundations, and the deploy path.

`deploy_access` (after `deploy_ci`): the CI deploy role `aicloud:ci` creates gets a cluster-admin
access entry on every EKS cluster, so later `pulumi up` runs (as that role) can apply objects; the
read-only preview role gets a view entry, so pull-request previews read the clusters.

Sections:
- `platform`: per region, the node autoscaler, each pool's floor and how far it can grow against the
  worst-case demand of the workloads placed on it, the storage class and its provisioner, the
  metrics APIs, the admins;
- `access`: per cluster, its API endpoint, where in-cluster objects are applied from, and whether
  that deployer reaches it (`components.deploy.cluster_reach`, the policy's own test).

`pool_scaling` and `volume_claims` read the planned resources (not what components say of
themselves) and are also the figures of `benchmarks/stack_figures.py`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from components.base import merge_tags
from components.ci import CI_ROLE_TAG, GKE_OBJECT_READ_ROLES
from components.cluster import EKS_ADMIN_POLICY, EKS_VIEW_POLICY
from components.foundations import GKE_BUILTIN_CLASSES

if TYPE_CHECKING:
    from stacks.deployment import Deployment
    from stacks.plan.mocks import Registration
    from stacks.plan.model import Plan

POOL_TYPES = ("aicloud:compute:EksGpuNodePool", "aicloud:compute:GkeGpuNodePool")
KARPENTER_NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
HELM = "kubernetes:helm.sh/v3:Release"


def deploy_access(d: Deployment) -> None:
    """Access entries on every EKS cluster for the CI identities of `aicloud:ci`: the deploy role
    as cluster admin, the read-only preview role with `AmazonEKSViewPolicy` (what `pulumi preview`
    reads: discovery, schemas, live objects; no Secrets, no writes)."""
    roles = [
        ("deploy", d.outputs.get("ci:aws:deployRoleArn"), EKS_ADMIN_POLICY),
        ("preview", d.outputs.get("ci:aws:previewRoleArn"), EKS_VIEW_POLICY),
    ]
    for spec in d.config.regions:
        if spec.cloud != "aws":
            continue
        cluster = d.regions[spec.name].cluster
        for kind, role, policy in roles:
            if role is None:
                continue
            entry = aws.eks.AccessEntry(
                f"{spec.name}-ci-{kind}-access",
                cluster_name=cluster.cluster_name,
                principal_arn=role,
                type="STANDARD",
                tags=merge_tags(d.tags, {CI_ROLE_TAG: kind}),
                opts=pulumi.ResourceOptions(parent=cluster, provider=d.providers[spec.name]),
            )
            aws.eks.AccessPolicyAssociation(
                f"{spec.name}-ci-{kind}-access-policy",
                cluster_name=cluster.cluster_name,
                principal_arn=entry.principal_arn,
                policy_arn=policy,
                access_scope={"type": "cluster"},
                opts=pulumi.ResourceOptions(parent=entry, provider=d.providers[spec.name]),
            )


# --------------------------------------------------------------------------- readings of the plan


def _releases(plan: Plan, region: str, word: str) -> list[Registration]:
    return [
        r
        for r in plan.resources
        if r.type == HELM and word in str(r.inputs.get("chart", "")) and plan.region_of(r) == region
    ]


def _num(value: Any) -> int | None:
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def pool_demand(plan: Plan) -> dict[tuple[str, str], int]:
    """Worst-case nodes the workloads placed on each (region, pool) need at once: training jobs at
    their largest size, retraining jobs, and endpoints at their rollout's worst-case GPUs."""
    demand: dict[tuple[str, str], int] = {}

    def add(region: str | None, pool: str | None, nodes: int) -> None:
        if region and pool and nodes > 0:
            demand[(region, pool)] = demand.get((region, pool), 0) + nodes

    for _, out in plan.component_outputs("aicloud:training:TrainingJob"):
        elastic = out.get("elastic") or []
        add(out.get("region"), out.get("pool"), max([_num(out.get("nodes")) or 0, *[_num(e) or 0 for e in elastic]]))
    for reg, out in plan.component_outputs("aicloud:observability:RetrainingPipeline"):
        job = out.get("job") or {}
        add(out.get("region") or plan.region_of(reg), job.get("pool"), _num(job.get("nodes")) or 0)
    pools = {(p["regionKey"], p["pool"]): p for p in plan.pools}
    for _, out in plan.component_outputs("aicloud:serving:InferenceEndpoint"):
        key = (out.get("regionKey"), out.get("pool"))
        pool = pools.get(key)  # type: ignore[arg-type]
        gpus, capacity = _num(out.get("gpuDemand")) or 0, _num(out.get("gpuCapacity")) or 0
        if pool and gpus and capacity and pool["maxNodes"]:
            add(key[0], key[1], math.ceil(gpus / (capacity / pool["maxNodes"])))
    return demand


def pool_scaling(plan: Plan) -> list[dict[str, Any]]:
    """Per node pool: its floor, its maximum, the worst-case demand on it, which autoscaler (read
    from the planned resources) grows it and how far it can really grow."""
    demand = pool_demand(plan)
    rows = []
    for comp in plan.of_type(*POOL_TYPES):
        region = plan.region_of(comp)
        cap = comp.outputs.get("capacity") or {}
        name, low, high = cap.get("pool"), cap.get("minNodes", 0), cap.get("maxNodes", 0)
        children = [r for r in plan.resources if r.parent == comp.urn]
        scaler, reach = "none", 0
        for child in children:
            # A pool may hold several groups (one per tier of its capacity chain): their sizes add up.
            if child.type == "gcp:container/nodePool:NodePool":
                auto = child.inputs.get("autoscaling") or {}
                scaler, reach = "gke", reach + (_num(auto.get("totalMaxNodeCount")) or 0)
            elif child.type == "aws:eks/nodeGroup:NodeGroup":
                size = child.inputs.get("scalingConfig") or {}
                top = _num(size.get("maxSize")) or 0
                if top > (_num(size.get("minSize")) or 0) and _releases(plan, region, "cluster-autoscaler"):
                    scaler, reach = "cluster-autoscaler", reach + top
                else:
                    reach += _num(size.get("desiredSize")) or 0
            elif child.type == KARPENTER_NODEPOOL and _releases(plan, region, "karpenter"):
                limit = _num(((child.inputs.get("spec") or {}).get("limits") or {}).get("nodes")) or 0
                scaler, reach = "karpenter", reach + limit
        need = demand.get((region, name), 0)
        rows.append(
            {
                "region": region,
                "pool": name,
                "minNodes": low,
                "maxNodes": high,
                "demand": need,
                "autoscaler": scaler,
                "reachable": reach,
                "stuck": need > low and scaler == "none",
                "short": need > reach,
            }
        )
    return rows


def _storage_classes(plan: Plan, region: str, cloud: str) -> dict[str, dict[str, Any]]:
    """StorageClass name -> {provisioner, default, driver installed} in the region's cluster."""
    out: dict[str, dict[str, Any]] = {}
    if cloud == "gcp":
        for name, prov in GKE_BUILTIN_CLASSES.items():
            out[name] = {"provisioner": prov, "default": name == "standard-rwo", "driver": True}
    addons = {
        r.inputs.get("addonName")
        for r in plan.resources
        if r.type == "aws:eks/addon:Addon" and plan.region_of(r) == region
    }
    for r in plan.resources:
        if r.type == "kubernetes:storage.k8s.io/v1:StorageClass" and plan.region_of(r) == region:
            meta = r.inputs.get("metadata") or {}
            prov = r.inputs.get("provisioner")
            default = (meta.get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
            driver = prov != "ebs.csi.aws.com" or "aws-ebs-csi-driver" in addons
            out[str(meta.get("name"))] = {"provisioner": prov, "default": default, "driver": driver}
    return out


def _claims_in(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, spec) of every volume claim template / PVC spec inside a manifest or Helm values."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}" if path else k
            if k == "volumeClaimTemplate" and isinstance(v, dict):
                found.append((here, v.get("spec") or {}))
            elif k == "volumeClaimTemplates" and isinstance(v, list):
                found += [(f"{here}[{i}]", (t or {}).get("spec") or {}) for i, t in enumerate(v)]
            else:
                found += _claims_in(v, here)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _claims_in(v, f"{path}[{i}]")
    return found


def volume_claims(plan: Plan) -> list[dict[str, Any]]:
    """Every persistent volume claim the plan creates (PVCs, StatefulSet templates, Helm values such
    as Prometheus's storageSpec), its class and whether a provisioner with its driver serves it."""
    rows = []
    classes_in: dict[str, dict[str, dict[str, Any]]] = {}  # region -> its StorageClasses (one scan each)
    for r in plan.resources:
        if not r.custom or not r.type.startswith("kubernetes:"):
            continue
        region = plan.region_of(r)
        spec_region = next((s for s in plan.config.regions if s.name == region), None)
        if spec_region is None:
            continue
        if r.type == "kubernetes:core/v1:PersistentVolumeClaim":
            claims = [("spec", r.inputs.get("spec") or {})]
        else:
            claims = _claims_in(r.inputs.get("values") if r.type == HELM else r.inputs.get("spec"))
        if region not in classes_in:
            classes_in[region] = _storage_classes(plan, region, spec_region.cloud)
        classes = classes_in[region]
        for path, spec in claims:
            name = spec.get("storageClassName") if isinstance(spec, dict) else None
            cls = classes.get(name) if name else next((c for c in classes.values() if c["default"]), None)
            rows.append(
                {
                    "region": region,
                    "resource": r.name,
                    "path": path,
                    "storageClass": name or "(default)",
                    "provisioner": cls["provisioner"] if cls else None,
                    "served": bool(cls and cls["driver"]),
                }
            )
    return rows


# --------------------------------------------------------------------------- sections


def platform_section(plan: Plan) -> dict[str, Any] | None:
    """Per region: autoscaler, pools (floor, max, demand, reach), storage, metrics APIs, admins."""
    regions = plan.of_type("aicloud:platform:RegionalPlatform")
    if not regions:
        return None
    scaling = pool_scaling(plan)
    claims = volume_claims(plan)
    foundations = {plan.region_of(r): r.outputs for r in plan.of_type("aicloud:platform:ClusterFoundations")}
    admins = {plan.region_of(r): r.outputs.get("admins") or [] for r in plan.of_type("aicloud:compute:EksCluster")}
    rows = []
    for reg in regions:
        key = reg.name
        out = foundations.get(key, {})
        pools = [p for p in scaling if p["region"] == key]
        mine = [c for c in claims if c["region"] == key]
        rows.append(
            [
                key,
                reg.outputs.get("autoscaler", "-"),
                "; ".join(
                    f"{p['pool']} {p['minNodes']}->{p['reachable']} (max {p['maxNodes']}, demand {p['demand']})"
                    + (" STUCK" if p["stuck"] else "")
                    for p in pools
                ),
                f"{out.get('storageClass', '-')} ({out.get('provisioner', '-')})",
                f"{sum(c['served'] for c in mine)}/{len(mine)}",
                out.get("metricsApi", "-"),
                out.get("customMetricsApi", "-"),
                len(admins.get(key, [])) if plan.config.region(key).cloud == "aws" else "IAM",
            ]
        )
    summary = "; ".join(
        f"{row[0]} {row[1]}, {sum(p['stuck'] for p in scaling if p['region'] == row[0])} stuck pool(s), "
        f"volumes served {row[4]}"
        for row in rows
    )
    return {
        "title": "Cluster platform",
        "compact": [f"**Cluster platform**: {summary}"],
        "columns": [
            "region",
            "autoscaler",
            "pools: floor->reachable nodes",
            "storage class",
            "volumes served",
            "metrics API",
            "custom metrics",
            "admins",
        ],
        "rows": rows,
        "notes": [
            "floor->reachable: nodes at rest -> nodes the autoscaler can reach; demand: worst-case nodes of the "
            "workloads placed on the pool (training at full size, retraining, endpoints at their rollout's worst "
            "case). STUCK: demand above the floor and no autoscaler.",
            "Karpenter pools: the floor is a fixed managed node group, the rest a NodePool + EC2NodeClass; "
            "interruptible pools carry the aicloud.dev/interruptible=true:NoSchedule taint.",
        ],
    }


def preview_reads(plan: Plan) -> dict[str, str]:
    """Per region key: what the CI preview identity may read in that cluster (`-`: the stack names
    no preview identity for that cloud)."""
    out: dict[str, str] = {}
    for entry in plan.of_type("aws:eks/accessEntry:AccessEntry"):
        if (entry.inputs.get("tags") or {}).get(CI_ROLE_TAG) != "preview":
            continue
        names = [c.inputs.get("policyArn", "?").rsplit("/", 1)[-1] for c in plan.children(entry.urn)]
        out[plan.region_of(entry)] = "EKS access entry: " + (", ".join(names) or "no access policy")
    accounts = [
        a
        for a in plan.of_type("gcp:serviceaccount/account:Account")
        if str(a.inputs.get("accountId", "")).startswith("ci-preview-")
    ]
    roles = sorted(
        {str(m.inputs.get("role")) for a in accounts for m in plan.children(a.urn) if "role" in m.inputs}
        & GKE_OBJECT_READ_ROLES
    )
    for spec in plan.config.regions:
        if spec.cloud == "gcp" and accounts:
            out[spec.name] = f"IAM {', '.join(roles)}" if roles else "nothing (no GKE read role)"
    return out


def access_section(plan: Plan) -> dict[str, Any] | None:
    """Per cluster: API endpoint, where in-cluster objects are applied from, and the route; where
    the pull-request preview runs, its route and what its identity reads."""
    regions = plan.of_type("aicloud:platform:RegionalPlatform")
    if not regions:
        return None
    deploy = next((r.outputs for r in plan.of_type("aicloud:platform:DeployPath")), {})
    reads = preview_reads(plan)
    k8s_count: dict[str, int] = {}
    for r in plan.resources:
        if r.custom and r.type.startswith("kubernetes:"):
            k8s_count[plan.region_of(r)] = k8s_count.get(plan.region_of(r), 0) + 1

    def route(api: dict[str, Any], key: str, detail: str) -> str:
        value = api.get(key, "-")
        return value if value != "unreachable" else f"{value}: {api.get(detail)}"

    rows = []
    for reg in regions:
        api = reg.outputs.get("apiAccess") or {}
        endpoint = "private" + (f" + public to {', '.join(api.get('publicCidrs') or [])}" if api.get("public") else "")
        rows.append(
            [
                reg.name,
                endpoint,
                k8s_count.get(reg.name, 0),
                deploy.get("appliedFrom", "-"),
                route(api, "route", "detail"),
                route(api, "previewRoute", "previewDetail"),
                reads.get(reg.name, "-"),
            ]
        )
    routes = ", ".join(f"{row[0]} {row[4].split(':')[0]}" for row in rows)
    previews = ", ".join(f"{row[0]} {row[5].split(':')[0]}" for row in rows)
    return {
        "title": "Cluster access",
        "compact": [
            f"**Cluster access** (applied from {deploy.get('appliedFrom', '-')}): {routes}; "
            f"pull-request preview: {previews}"
        ],
        "columns": ["region", "API endpoint", "k8s objects", "applied from", "route", "preview route", "preview reads"],
        "rows": rows,
        "notes": [
            f"`pulumi up` runs on: {', '.join(deploy.get('runsOn') or [])}; the policy "
            "aicloud-deployer-reaches-cluster-api fails the plan when a route is unreachable (README: Deploy path).",
            f"The pull-request `pulumi preview` runs on: {', '.join(deploy.get('previewRunsOn') or [])} "
            f"({deploy.get('previewedFrom', '-')}); its identity is read-only, so the cluster refuses its server-side "
            "dry-runs and the provider diffs those objects client-side. aicloud-preview-reaches-cluster-api reports a "
            "cluster it cannot reach or read.",
        ],
    }
