"""The lakehouse step and its plan section.

`deploy_storage` (after compute, before the steps that run workloads):

1. a replica of the replicated zones in each replication target region (its own key, log
   bucket and zone buckets, under that region's platform and provider);
2. the lakehouse in the primary region of each cloud, replicating to those replicas, with the
   scratch file system on the region's network;
3. workload identities in `d.identities[region_key]`: `trainer` in each primary region (reads
   curated/features, writes checkpoints/models of its cloud's lakehouse), `server` in each serving
   region (reads models: the region's replica when there is one, else the primary's bucket),
   `retrain` in each primary region when the stack retrains (reads features, appends to models;
   it shares the trainer's namespace), and `retrain-agent` in each serving region when the stack
   retrains (list, read and create under its region's prefix of the decision log in the primary
   lakehouse; read candidates in the region's copy of the models zone: `agent_grants`).

Zone URIs are stack outputs `<primary region key>:lake:<zone>` (`s3://...`, `gs://...`).

`storage_section` renders zones, tiers and transition ages, replicas and data guards.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_kubernetes as k8s

from components.base import DATA_HOLDING, gcp_labels
from components.identity import EksWorkloadIdentity, GkeWorkloadIdentity, WorkloadIdentity
from components.lakehouse import (
    AwsLakehouse,
    AwsLakehouseReplica,
    AwsScratchNetwork,
    GcpLakehouse,
    GcpLakehouseReplica,
    GcpScratchNetwork,
    StorageSpec,
)
from components.lakehouse.documents import (
    ZONE_ACCESS,
    gcs_prefix_condition,
    gcs_workload_bindings,
    s3_prefix_policy,
    s3_workload_policy,
)
from components.lakehouse.gcs_roles import roles_for
from components.retraining import agent_calls_api, agent_grants
from components.training import TRAINING_ALLOWS

if TYPE_CHECKING:
    from stacks.deployment import Deployment
    from stacks.plan.model import Plan

LAKEHOUSE_TYPES = ("aicloud:storage:AwsLakehouse", "aicloud:storage:GcpLakehouse")
REPLICA_TYPES = ("aicloud:storage:AwsLakehouseReplica", "aicloud:storage:GcpLakehouseReplica")

DATA_HOLDING_TYPES = tuple(DATA_HOLDING)
"""Resource types that hold data (or the keys to it): `components.base.DATA_HOLDING`, the one list."""

Lakehouse = AwsLakehouse | GcpLakehouse
Replica = AwsLakehouseReplica | GcpLakehouseReplica

NAMESPACE_ALLOWS = {"trainer": TRAINING_ALLOWS}
"""The NetworkPolicies an identity's namespace is created with (the serving namespace's come with
the endpoint, which knows its front door)."""


def deploy_storage(d: Deployment) -> None:
    """Lakehouses, replicas and workload identities of the stack (nothing without `storage`)."""
    spec = d.config.storage
    if spec is None:
        return
    replicas = _replicas(d, spec)
    lakehouses: dict[str, Lakehouse] = {}
    for cloud in dict.fromkeys(r.cloud for r in d.config.regions):
        primary = d.config.primary(cloud)
        assert primary is not None, "config validation guarantees a primary region per cloud"
        lake = _lakehouse(d, spec, primary.name, [r for r in replicas.values() if r.cloud == cloud])
        lakehouses[cloud] = lake
        for zone, uri in lake.uris.items():
            d.outputs[f"{primary.name}:lake:{zone}"] = uri
    for region in d.config.regions:
        lake = lakehouses[region.cloud]
        ids: dict[str, WorkloadIdentity] = {}
        if region.primary:
            ids["trainer"] = _identity(d, region.name, "trainer", lake)
            if d.config.monitoring is not None and d.config.monitoring.retraining is not None:
                ids["retrain"] = _identity(d, region.name, "retrain", lake, namespace=ids["trainer"].namespace_resource)
        if region.serving:
            ids["server"] = _identity(
                d,
                region.name,
                "server",
                lake,
                replicas.get(region.name),
                namespace_name=d.config.serving.namespace if d.config.serving is not None else None,
            )
            retraining = d.config.monitoring.retraining if d.config.monitoring is not None else None
            if retraining is not None and d.config.serving is not None:
                ids["retrain-agent"] = _agent_identity(
                    d,
                    region.name,
                    lake,
                    replicas.get(region.name),
                    d.config.serving.model,
                    namespace=ids["trainer"].namespace_resource if "trainer" in ids else None,
                )
        if ids:
            d.identities[region.name] = ids


def _replicas(d: Deployment, spec: StorageSpec) -> dict[str, Replica]:
    """One replica component per replication target region, holding that region's zones."""
    zones_by_region: dict[str, list[str]] = defaultdict(list)
    for zone, targets in spec.replication.items():
        for key in targets:
            zones_by_region[key].append(zone)
    out: dict[str, Replica] = {}
    for key, zones in zones_by_region.items():
        region = d.config.region(key)
        source = d.config.primary(region.cloud)
        assert source is not None
        common: dict[str, Any] = dict(
            zones=zones,
            region_key=key,
            region=region.region,
            source_region_key=source.name,
            safety=d.config.safety,
            previous_name=spec.renamed_from.get(key),
            opts=pulumi.ResourceOptions(parent=d.regions[key]),
        )
        if region.cloud == "aws":
            out[key] = AwsLakehouseReplica(f"{key}-lake-replica", spec, tags=d.tags, **common)
        else:
            out[key] = GcpLakehouseReplica(
                f"{key}-lake-replica",
                spec,
                project=d.config.gcp_project,  # type: ignore[arg-type]
                labels=gcp_labels(d.tags),
                **common,
            )
    return out


def _lakehouse(d: Deployment, spec: StorageSpec, key: str, replicas: list[Replica]) -> Lakehouse:
    """The lakehouse of the primary region `key`."""
    region = d.config.region(key)
    platform = d.regions[key]
    opts = pulumi.ResourceOptions(parent=platform)
    previous = spec.renamed_from.get(key)
    if region.cloud == "aws":
        scratch = (
            AwsScratchNetwork(platform.network.vpc_id, platform.network.private_subnet_ids, region.network.cidr)
            if spec.scratch
            else None
        )
        return AwsLakehouse(
            f"{key}-lake",
            spec,
            region=region.region,
            safety=d.config.safety,
            tags=d.tags,
            scratch_network=scratch,
            replicas=replicas,  # type: ignore[arg-type]
            previous_name=previous,
            opts=opts,
        )
    return GcpLakehouse(
        f"{key}-lake",
        spec,
        project=d.config.gcp_project,  # type: ignore[arg-type]
        region=region.region,
        safety=d.config.safety,
        labels=gcp_labels(d.tags),
        scratch_network=GcpScratchNetwork(platform.network.network.name, region.zones[0]) if spec.scratch else None,
        replicas=replicas,  # type: ignore[arg-type]
        previous_name=previous,
        opts=opts,
    )


def _identity(
    d: Deployment,
    key: str,
    workload: str,
    lake: Lakehouse,
    replica: Replica | None = None,
    namespace: k8s.core.v1.Namespace | None = None,
    namespace_name: str | None = None,
) -> WorkloadIdentity:
    """The workload's identity in region `key`, granted `ZONE_ACCESS[workload]` on the region's
    replica when it holds every zone the workload uses, else on the primary lakehouse."""
    platform = d.regions[key]
    zones = list(ZONE_ACCESS[workload])
    source: Lakehouse | Replica = replica if replica is not None and all(z in replica.buckets for z in zones) else lake
    buckets, uris = source.buckets, {z: source.uris[z] for z in zones}
    opts = pulumi.ResourceOptions(parent=platform.cluster, providers=[platform.k8s_provider])
    name = f"{key}-{workload}"
    if isinstance(lake, AwsLakehouse):
        key_arns = {source.region: source.key.arn}
        catalog = lake.database.name if (workload == "trainer" and lake.database is not None) else None
        policy = pulumi.Output.all(
            pulumi.Output.all(*[buckets[z].arn for z in zones]),
            pulumi.Output.all(*key_arns.values()),
            lake.account_id,
            catalog,
        ).apply(
            lambda a: json.dumps(
                s3_workload_policy(
                    workload,
                    dict(zip(zones, a[0], strict=True)),
                    dict(zip(key_arns, a[1], strict=True)),
                    {"region": lake.region, "account": a[2], "database": a[3]} if a[3] else None,
                )
            )
        )
        return EksWorkloadIdentity(
            name,
            workload,
            oidc_provider_arn=platform.cluster.oidc_provider_arn,  # type: ignore[union-attr]
            oidc_issuer=platform.cluster.oidc_issuer,  # type: ignore[union-attr]
            policy=policy,
            zone_uris=uris,
            tags=d.tags,
            namespace=namespace,
            namespace_name=namespace_name,
            allows=NAMESPACE_ALLOWS.get(workload, ()),
            opts=opts,
        )
    roles = [(b["zone"], buckets[b["zone"]].name, b["role"]) for b in gcs_workload_bindings(workload)]
    return GkeWorkloadIdentity(
        name,
        workload,
        project=d.config.gcp_project,  # type: ignore[arg-type]
        account_id=name[:30],
        bucket_roles=roles,
        zone_uris=uris,
        namespace=namespace,
        namespace_name=namespace_name,
        allows=NAMESPACE_ALLOWS.get(workload, ()),
        opts=opts,
    )


def _agent_identity(
    d: Deployment,
    key: str,
    lake: Lakehouse,
    replica: Replica | None,
    model: str,
    namespace: k8s.core.v1.Namespace | None,
) -> WorkloadIdentity:
    """The retraining agent's identity in serving region `key`: prefix-scoped grants
    (`agent_grants`) on the primary lakehouse's models zone (its region's part of the decision
    log) and on the region's copy of the models zone (candidates). Its ServiceAccount mounts a
    token only where the agent patches a canary (`agent_calls_api`)."""
    platform = d.regions[key]
    assert d.config.serving is not None, "agents exist only with serving"
    calls_api = agent_calls_api(d.config.serving, d.config.region(key))
    copy: Lakehouse | Replica = replica if replica is not None and "models" in replica.buckets else lake
    sources = {"models": lake, "models-copy": copy}
    grants = agent_grants(model, key)
    opts = pulumi.ResourceOptions(parent=platform.cluster, providers=[platform.k8s_provider])
    name = f"{key}-retrain-agent"
    uris = {"models": lake.uris["models"]}
    if isinstance(lake, AwsLakehouse):
        keys = {lake.region: lake.key.arn, copy.region: copy.key.arn}
        policy = pulumi.Output.all(
            pulumi.Output.all(*[sources[g["zone"]].buckets["models"].arn for g in grants]),
            pulumi.Output.all(*keys.values()),
        ).apply(
            lambda a: json.dumps(
                s3_prefix_policy(
                    [{**g, "bucket_arn": arn} for g, arn in zip(grants, a[0], strict=True)],
                    dict(zip(keys, a[1], strict=True)),
                )
            )
        )
        return EksWorkloadIdentity(
            name,
            "retrain-agent",
            oidc_provider_arn=platform.cluster.oidc_provider_arn,  # type: ignore[union-attr]
            oidc_issuer=platform.cluster.oidc_issuer,  # type: ignore[union-attr]
            policy=policy,
            zone_uris=uris,
            tags=d.tags,
            namespace=namespace,
            calls_api=calls_api,
            opts=opts,
        )
    roles: list[tuple[str, Any, str, Any]] = []
    for g in grants:
        bucket = sources[g["zone"]].buckets["models"].name
        use = "retrain-agent-own-prefix" if g["access"] == "create" else "retrain-agent-candidates"
        listing = g["access"] == "create"
        condition = bucket.apply(lambda b, p=g["prefix"], lst=listing: gcs_prefix_condition(b, p, listing=lst))
        roles += [(g["zone"], bucket, role, condition) for role in roles_for(use)]
    return GkeWorkloadIdentity(
        name,
        "retrain-agent",
        project=d.config.gcp_project,  # type: ignore[arg-type]
        account_id=name[:30],
        bucket_roles=roles,
        zone_uris=uris,
        namespace=namespace,
        calls_api=calls_api,
        opts=opts,
    )


# --------------------------------------------------------------------------- plan section
def _tiers(tiers: list[dict[str, Any]]) -> str:
    return " -> ".join(
        t["storageClass"] if t["tier"] == "hot" else f"{t['storageClass']} @{t['afterDays']}d" for t in tiers
    )


def storage_section(plan: Plan) -> dict[str, Any] | None:
    """Per zone bucket: region, tiers with transition ages, expiry, version retention, replicas,
    and the data guards of every data-holding resource."""
    rows, notes = [], []
    outputs = [o for t in (*LAKEHOUSE_TYPES, *REPLICA_TYPES) for o in plan.component_outputs(t)]
    for reg, out in outputs:
        region = plan.region_of(reg)
        for z in out.get("zones", []):
            rows.append(
                [
                    region,
                    z["zone"] + (f" (replica of {z['replicaOf']})" if z.get("replicaOf") else ""),
                    z["uri"],
                    _tiers(z["tiers"]),
                    f"{z['expireAfterDays']}d" if z.get("expireAfterDays") else "never",
                    f"{z['noncurrentExpireAfterDays']}d",
                    ", ".join(z.get("replicatedTo", [])) or "-",
                ]
            )
        if out.get("catalog"):
            c = out["catalog"]
            tables = ", ".join(f"{t['name']} ({t['zone']})" for t in c["tables"]) or "no tables"
            notes.append(f"{region}: {c['engine']} catalog {c['database']}: Iceberg tables {tables}")
        if out.get("scratch"):
            s = out["scratch"]
            links = ""
            if "importZones" in s:
                links = f"; linked to S3: read {', '.join(s['importZones'])}, read-write {', '.join(s['exportZones'])}"
            notes.append(f"{region}: scratch {s['kind']} {s['sizeGib']} GiB{links}")
        if out.get("streaming"):
            s = out["streaming"]
            notes.append(
                f"{region}: streaming {s['kind']} -> {s['target']} every {s['bufferSeconds']} s or {s['bufferMib']} MiB"
            )
    if not rows:
        return None
    data = [r for r in plan.resources if r.type in DATA_HOLDING_TYPES]
    guarded = [r for r in data if r.protect or r.retain_on_delete]
    notes.append(
        f"Data-holding resources (buckets, keys, tables, file systems): {len(data)}; "
        f"protected {sum(1 for r in data if r.protect)}, retained on delete "
        f"{sum(1 for r in data if r.retain_on_delete)}, unguarded {len(data) - len(guarded)}."
    )
    return {
        "title": "Storage",
        "columns": [
            "region",
            "zone",
            "bucket",
            "tiers (age since creation)",
            "expire",
            "old versions",
            "replicated to",
        ],
        "rows": rows,
        "notes": notes,
    }
