"""Placement and cost guardrails: regions on the stack's allow-list (data residency), spot capacity in
prod only where workloads survive interruption, and ceilings on GPU cost per hour and GPUs per pool.

The ceilings and the allow-list come from the stack's `aicloud:policy` section, handed to the pack as
its config (see `policies/config.py`); a rule whose setting is absent checks nothing.
"""

from __future__ import annotations

import re
from typing import Any

from pulumi_policy import ReportViolation

from components.catalog import load_catalog
from policies.common import (
    INTERRUPTIBLE_LABEL,
    UNKNOWN,
    Pool,
    PoolGroup,
    Rule,
    StackView,
    dig,
    environment,
    money,
    pool_groups,
    pools,
    truthy,
)
from policies.data_safety import ENVIRONMENT_CONFIG

_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
_GCP_ZONE = re.compile(r"^([a-z]+-[a-z]+\d+)-[a-z]$")


def _provider_kind(urn: str) -> str:
    """`aws` of `urn:...::pulumi:providers:aws::name` (the type is the URN's last but one segment)."""
    type_ = urn.split("::")[-2] if urn.count("::") >= 2 else ""
    return type_.rsplit(":", 1)[-1] if type_.startswith("pulumi:providers:") else ""


def _gcp_region(value: Any) -> str | None:
    """The region of a GCP location or zone; None for multi-regions (US, EU) it cannot pin down."""
    if not isinstance(value, str):
        return None
    value = value.lower()
    if _GCP_REGION.match(value):
        return value
    zone = _GCP_ZONE.match(value)
    return zone.group(1) if zone else None


def allowed_regions(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    allowed = [r for r in config.get("allowedRegions") or [] if isinstance(r, str)]
    if not allowed:
        return
    listed = ", ".join(allowed)
    fix = "Deploy to an allowed region, or add it to aicloud:policy.allowedRegions if data may live there."
    for urn, props in sorted(view.providers.items()):
        kind = _provider_kind(urn)
        if kind not in ("aws", "gcp"):
            continue
        name = urn.rsplit("::", 1)[-1]
        region = props.get("region")
        if region is UNKNOWN:
            continue
        if region is None and kind == "aws":
            report(
                f"AWS provider '{name}' sets no region, so it falls back to the environment's default region. "
                "Set region explicitly on the provider.",
                urn,
            )
        elif region is not None and region not in allowed:
            report(
                f"Provider '{name}' deploys to {region}, which is not an allowed region of this stack "
                f"({listed}). {fix}",
                urn,
            )
    # A resource placed apart from its provider's region (AWS `region` override, GCP location).
    for res in view.resources:
        if res.type.startswith("aws:"):
            region = res.props.get("region")
        elif res.type.startswith("gcp:"):
            region = _gcp_region(res.props.get("region")) or _gcp_region(res.props.get("location"))
        else:
            continue
        provider_region = view.providers.get(res.provider_urn or "", {}).get("region")
        if isinstance(region, str) and region not in allowed and region != provider_region:
            report(
                f"{res.type} '{res.name}' is placed in {region}, which is not an allowed region of this stack "
                f"({listed}). {fix}",
                res.urn,
            )


def _interruptible(view: StackView, pool: Pool) -> bool:
    """A pool says its workloads survive interruption: by node label or its component's outputs."""
    if str(pool.labels.get(INTERRUPTIBLE_LABEL, "")).lower() == "true":
        return True
    return any(dig(node.props, "capacity.interruptible") is True for node in pool.res.ancestors())


def spot_interruptible(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    every = pools(view)
    if not every or environment(config, every[0].res.urn) != "prod":
        return
    for pool in every:
        if truthy(pool.spot) is True and not _interruptible(view, pool):
            report(
                f"Node pool '{pool.res.name}' uses spot capacity in prod but is not marked interruptible, so "
                "workloads that cannot survive losing a node may land on it. Set interruptible: true on the pool "
                "if its workloads checkpoint and resume, or use on-demand capacity (spot: false).",
                pool.res.urn,
            )


def _pool_region(view: StackView, pool: Pool) -> str | None:
    """The cloud region a pool's nodes run in: its region component's, else its provider's (a GKE
    node pool's location; a Karpenter NodePool's EKS cluster's provider)."""
    _, region = view.scope(pool.res)
    node = view.by_urn.get(region or "")
    if node is not None and isinstance(node.props.get("region"), str):
        return node.props["region"]
    if pool.cloud == "gcp":
        return _gcp_region(pool.res.props.get("location"))
    own = view.providers.get(pool.res.provider_urn or "", {}).get("region")
    if isinstance(own, str):
        return own
    for cluster in view.of_type("aws:eks/cluster:Cluster"):
        if view.same_scope(cluster, pool.res):
            found = view.providers.get(cluster.provider_urn or "", {}).get("region")
            if isinstance(found, str):
                return found
    return None


def _node_price(view: StackView, pool: Pool) -> float | None:
    """On-demand price per node-hour in the pool's region: the catalog's reference price x the
    region's factor (the plan's Node pools and Cost sections price nodes the same way)."""
    if pool.price is None:
        return None
    region = _pool_region(view, pool)
    factor = load_catalog().price_factor(pool.cloud, region) if region else None
    return pool.price * (factor or 1.0)


def gpu_cost_ceiling(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    limit = config.get("maxGpuCostPerHour")
    if not isinstance(limit, int | float):
        return
    costs: list[tuple[PoolGroup, float]] = []
    unbounded: list[str] = []
    for group in pool_groups(view):
        if not group.is_gpu:
            continue
        unbounded += [m.res.name for m in group.unbounded]
        cost = 0.0
        for m in group.members:
            price = _node_price(view, m)
            if m.is_gpu and price is not None and isinstance(m.max_nodes, int):
                cost += price * m.max_nodes
        costs.append((group, cost))
    if unbounded:
        report(
            f"GPU node pools {', '.join(unbounded)} have no upper bound (a Karpenter NodePool without limits), so "
            f"this stack's GPU cost per hour has no ceiling; aicloud:policy.maxGpuCostPerHour is {money(limit)}. "
            "Give every GPU NodePool limits (aicloud renders them from the pool's maxNodes)."
        )
    total = sum(cost for _, cost in costs)
    if total <= limit:
        return
    top = sorted(costs, key=lambda gc: -gc[1])[:3]
    largest = ", ".join(f"{g.name} ({g.breakdown()}, {money(c)}/h)" for g, c in top)
    report(
        f"The GPU node pools of this stack can cost {money(total)} per hour at max scale, above its ceiling of "
        f"{money(limit)} (aicloud:policy.maxGpuCostPerHour); the largest are {largest}. Lower maxNodes, choose "
        "cheaper machine types, or raise the ceiling."
    )


def gpus_per_pool(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    limit = config.get("maxGpusPerPool")
    if not isinstance(limit, int):
        return
    for group in pool_groups(view):
        first = group.members[0].res.urn
        if group.unbounded:
            report(
                f"Node pool '{group.name}' can scale without bound ({', '.join(m.res.name for m in group.unbounded)} "
                f"has no limits), past this stack's ceiling of {limit} GPUs per pool (aicloud:policy.maxGpusPerPool). "
                "Give the NodePool limits.",
                first,
            )
            continue
        gpus = group.gpus_at_max()
        if gpus is not None and gpus > limit:
            per_node = sorted({m.gpus_per_node for m in group.members if m.gpus_per_node})
            report(
                f"Node pool '{group.name}' can scale to {gpus} GPUs ({group.breakdown()} with "
                f"{', '.join(map(str, per_node))} each), above this stack's ceiling of {limit} GPUs per pool "
                "(aicloud:policy.maxGpusPerPool). Lower maxNodes or raise the ceiling.",
                first,
            )


RULES = [
    Rule(
        "aicloud-region-allowed",
        "Resources live only in the stack's allowed regions (data residency); providers name their region.",
        "placement",
        allowed_regions,
        stack=True,
        config={
            "allowedRegions": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Cloud regions resources may live in (aicloud:policy.allowedRegions); empty allows all.",
            }
        },
    ),
    Rule(
        "aicloud-spot-interruptible-in-prod",
        "In prod, spot node pools are marked interruptible (their workloads checkpoint and resume).",
        "placement",
        spot_interruptible,
        stack=True,
        config=ENVIRONMENT_CONFIG,
    ),
    Rule(
        "aicloud-gpu-cost-ceiling",
        "The GPU node pools' on-demand cost per hour at max scale (regional prices) stays under the stack's ceiling.",
        "cost",
        gpu_cost_ceiling,
        stack=True,
        config={
            "maxGpuCostPerHour": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "USD per hour at max scale at catalog on-demand prices x the region's factor "
                "(aicloud:policy.maxGpuCostPerHour).",
            }
        },
    ),
    Rule(
        "aicloud-gpus-per-pool-ceiling",
        "No node pool (all its node groups, NodePools and tiers together) can scale past the stack's ceiling of "
        "GPUs per pool.",
        "cost",
        gpus_per_pool,
        stack=True,
        config={
            "maxGpusPerPool": {
                "type": "integer",
                "minimum": 1,
                "description": "GPUs per pool at max scale (aicloud:policy.maxGpusPerPool).",
            }
        },
    ),
]
