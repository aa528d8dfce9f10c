"""The plan's cost estimate: what the planned resources cost per hour, and what that includes.

Counted from the plan itself (what the program really registered), priced from the catalog
(`components/catalog/gpus.yaml` for nodes, `prices.yaml` for the rest):

- nodes of every pool at min and max scale (`pool_capacity`: regional factor, spot as a range);
- node root volumes at their configured size, at min and max scale;
- Kubernetes control planes (EKS, GKE);
- NAT: AWS NAT gateways and their public IPv4 addresses; GCP Cloud NAT per VM (capped per gateway);
- load balancers: AWS NLBs, Global Accelerator, the GCP global load balancer's forwarding rules;
- storage at configured sizes: FSx for Lustre, Filestore, Prometheus volumes.

Usage-based charges (data processed, requests, egress, object storage by volume) depend on
traffic and data the plan cannot know: every figure lists them as excluded rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.catalog import load_catalog

Plan = Any
"""A `stacks.plan.model.Plan` (not imported: the plan model imports this module)."""

INCLUDES = (
    "nodes (catalog on-demand list price x regional factor; spot pools as a range)",
    "node root volumes",
    "control planes",
    "NAT gateways (and their public IPv4 addresses)",
    "load balancers and Global Accelerator (hourly part)",
    "FSx for Lustre / Filestore at configured size",
    "Prometheus volumes at configured size",
)
EXCLUDES = (
    "data processed by NAT and load balancers",
    "egress and inter-region transfer",
    "object storage (S3/GCS) by volume and requests",
    "KMS keys and requests",
    "image registries",
    "taxes and discounts (savings plans, committed use)",
)


@dataclass
class Line:
    """One priced item of the estimate (per hour at min and max scale)."""

    item: str
    cloud: str
    region: str
    quantity: str
    min: float
    max: float
    basis: str

    def to_json(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "cloud": self.cloud,
            "region": self.region,
            "quantity": self.quantity,
            "perHourMin": round(self.min, 4),
            "perHourMax": round(self.max, 4),
            "basis": self.basis,
        }


def _factor(cloud: str, region: str) -> tuple[float, str]:
    factor = load_catalog().price_factor(cloud, region)
    ref = load_catalog().references[cloud]["region"]
    if factor is None:
        return 1.0, f"{ref} list price (no factor recorded for {region})"
    return factor, f"{ref} list price x {factor:g}"


def cost_lines(plan: Plan) -> list[Line]:
    """Every priced item of the plan except the node-hours themselves (see `pool_capacity`)."""
    catalog = load_catalog()
    prices = catalog.prices
    month = float(prices["hours_per_month"])
    lines: list[Line] = []
    regions = {r.name: r for r in plan.config.regions}

    def where(reg: Any) -> tuple[str, str]:
        key = plan.region_of(reg)
        spec = regions.get(key)
        return (spec.cloud, spec.region) if spec is not None else (reg.type.split(":")[0], "global")

    def add(item: str, cloud: str, region: str, quantity: str, lo: float, hi: float, basis: str) -> None:
        lines.append(Line(item, cloud, region, quantity, lo, hi, basis))

    # Per-resource hourly items.
    hourly = {
        # The control plane fee is the same in every region (EKS and GKE pricing pages).
        "aws:eks/cluster:Cluster": ("control plane (EKS)", "control_plane_per_hour"),
        "gcp:container/cluster:Cluster": ("control plane (GKE)", "control_plane_per_hour"),
        "aws:ec2/natGateway:NatGateway": ("NAT gateway", "nat_gateway_per_hour"),
        "aws:ec2/eip:Eip": ("public IPv4 address", "public_ipv4_per_hour"),
        "aws:lb/loadBalancer:LoadBalancer": ("network load balancer", "load_balancer_per_hour"),
        "aws:globalaccelerator/accelerator:Accelerator": ("Global Accelerator", "global_accelerator_per_hour"),
        "gcp:compute/globalForwardingRule:GlobalForwardingRule": (
            "global LB forwarding rule",
            "load_balancer_per_hour",
        ),
    }
    counts: dict[tuple[str, str, str, str], int] = {}
    for reg in plan.resources:
        if reg.type in hourly:
            cloud, region = where(reg)
            item, key = hourly[reg.type]
            counts[(item, cloud, region, key)] = counts.get((item, cloud, region, key), 0) + 1
    for (item, cloud, region, key), n in counts.items():
        if region == "global" or key == "control_plane_per_hour":
            factor, basis = 1.0, "same list price in every region"
        else:
            factor, basis = _factor(cloud, region)
        price = float(prices[cloud][key]) * factor
        add(item, cloud, region, f"{n}", price * n, price * n, f"{basis}; ${prices[cloud][key]}/h each")

    # Cloud NAT (GCP): per VM of the region, capped per gateway.
    for reg in plan.of_type("gcp:compute/routerNat:RouterNat"):
        cloud, region = where(reg)
        key = plan.region_of(reg)
        pools = [p for p in plan.pools if p["regionKey"] == key]
        factor, basis = _factor(cloud, region)
        per_vm, cap = float(prices["gcp"]["nat_per_vm_hour"]), float(prices["gcp"]["nat_max_per_hour"])
        lo = min(per_vm * sum(p["minNodes"] for p in pools), cap) * factor
        hi = min(per_vm * sum(p.get("reachableNodes", p["maxNodes"]) for p in pools), cap) * factor
        add("Cloud NAT", cloud, region, "1 gateway", lo, hi, f"{basis}; ${per_vm}/VM-h up to ${cap}/h")

    # Node root volumes at configured size.
    for p in plan.pools:
        spec = regions.get(p["regionKey"])
        if spec is None:
            continue
        top = p.get("reachableNodes", p["maxNodes"])
        factor, basis = _factor(spec.cloud, spec.region)
        gb_month = float(prices[spec.cloud]["block_storage_gb_month"]) * factor
        disk = float(p.get("diskGiB") or 0)
        add(
            f"node volumes ({p['pool']})",
            spec.cloud,
            spec.region,
            f"{disk:g} GiB x {p['minNodes']}-{top} nodes",
            gb_month * disk * p["minNodes"] / month,
            gb_month * disk * top / month,
            f"{basis}; ${prices[spec.cloud]['block_storage_gb_month']}/GB-month",
        )

    # Scratch file systems at configured size.
    for reg in plan.of_type("aws:fsx/lustreFileSystem:LustreFileSystem"):
        cloud, region = where(reg)
        factor, basis = _factor(cloud, region)
        deploy = reg.inputs.get("deploymentType", "SCRATCH_2")
        key = deploy if deploy == "SCRATCH_2" else f"{deploy}-{reg.inputs.get('perUnitStorageThroughput')}"
        rate = prices["aws"]["fsx_lustre_gb_month"].get(key)
        size = float(reg.inputs.get("storageCapacity") or 0)
        if rate is not None:
            per_hour = float(rate) * factor * size / month
            add(
                "FSx for Lustre", cloud, region, f"{size:g} GiB {key}", per_hour, per_hour, f"{basis}; ${rate}/GB-month"
            )
    for reg in plan.of_type("gcp:filestore/instance:Instance"):
        cloud, region = where(reg)
        factor, basis = _factor(cloud, region)
        tier = reg.inputs.get("tier", "BASIC_SSD")
        shares = reg.inputs.get("fileShares") or {}
        share = shares[0] if isinstance(shares, list) and shares else shares
        size = float(share.get("capacityGb") or 0) if isinstance(share, dict) else 0.0
        rate = prices["gcp"]["filestore_gib_month"].get(tier)
        if rate is not None:
            per_hour = float(rate) * factor * size / month
            add("Filestore", cloud, region, f"{size:g} GiB {tier}", per_hour, per_hour, f"{basis}; ${rate}/GiB-month")

    # Prometheus volumes: one per cluster at `monitoring.storageGib`.
    monitoring = plan.config.monitoring
    if monitoring is not None:
        for spec in plan.config.regions:
            factor, basis = _factor(spec.cloud, spec.region)
            rate = float(prices[spec.cloud]["block_storage_gb_month"])
            per_hour = rate * factor * monitoring.storage_gib / month
            add(
                "Prometheus volume",
                spec.cloud,
                spec.region,
                f"{monitoring.storage_gib} GiB",
                per_hour,
                per_hour,
                f"{basis}; ${rate}/GB-month",
            )
    return lines


def estimate(plan: Plan) -> dict[str, Any]:
    """The stack's estimated cost per hour at min and max scale, with what it includes."""
    pools = plan.pools
    lines = cost_lines(plan)
    fixed_min = sum(line.min for line in lines)
    fixed_max = sum(line.max for line in lines)
    nodes = {
        "min": round(sum(p["costPerHourMin"] for p in pools), 2),
        "max": round(sum(p["costPerHourMax"] for p in pools), 2),
        "minLow": round(sum(p.get("costPerHourMinLow", p["costPerHourMin"]) for p in pools), 2),
        "maxLow": round(sum(p.get("costPerHourMaxLow", p["costPerHourMax"]) for p in pools), 2),
    }
    spot = [p for p in pools if p["spot"]]
    factors = sorted({f"{p['region']} x{p['priceFactor']:g}" for p in pools if p.get("priceFactor") not in (None, 1.0)})
    unpriced = sorted({p["region"] for p in pools if p.get("priceFactor") is None})
    return {
        "min": round(nodes["min"] + fixed_min, 2),
        "max": round(nodes["max"] + fixed_max, 2),
        "minLow": round(nodes["minLow"] + fixed_min, 2),
        "maxLow": round(nodes["maxLow"] + fixed_max, 2),
        "nodes": nodes,
        "other": {"min": round(fixed_min, 2), "max": round(fixed_max, 2)},
        "basis": "catalog list prices (reference regions us-east-1, us-central1) x regional factors"
        + (f" [{', '.join(factors)}]" if factors else "")
        + (f"; no factor recorded for {', '.join(unpriced)} (reference price)" if unpriced else "")
        + (
            f"; {len(spot)} spot pool(s) as a range: low = largest published spot discount, "
            "high = highest spot price (AWS on-demand, GCP 40 %)"
            if spot
            else ""
        ),
        "includes": list(INCLUDES),
        "excludes": list(EXCLUDES),
        "lines": [line.to_json() for line in lines],
    }


def cost_section(plan: Plan) -> dict[str, Any]:
    """The plan report's cost table: nodes, then each kind of priced item summed over regions
    (the JSON plan's `summary.costPerHour.lines` has them per region, with their basis)."""
    est = plan.summary()["costPerHour"]

    def money(x: float) -> str:
        return f"${x:,.2f}"

    def span(low: float, high: float) -> str:
        return money(high) if round(low, 2) == round(high, 2) else f"{money(low)}-{money(high)}"

    items: dict[str, list[dict[str, Any]]] = {}
    for ln in est["lines"]:
        kind = ln["item"].split(" (", 1)[0] if ln["item"].startswith("node volumes") else ln["item"]
        items.setdefault(kind, []).append(ln)
    rows = [
        [
            "nodes (see Node pools)",
            len(plan.pools),
            span(est["nodes"]["minLow"], est["nodes"]["min"]),
            span(est["nodes"]["maxLow"], est["nodes"]["max"]),
        ]
    ]
    for kind, lns in items.items():
        rows.append(
            [kind, len(lns), money(sum(x["perHourMin"] for x in lns)), money(sum(x["perHourMax"] for x in lns))]
        )
    rows.append(["total", "", span(est["minLow"], est["min"]), span(est["maxLow"], est["max"])])
    return {
        "title": "Cost per hour",
        "columns": ["item", "lines", "$/h min", "$/h max"],
        "rows": rows,
        "compact": ["_Cost per hour: see the summary above; every priced line is in the JSON plan._"],
        "notes": [
            "Includes: " + "; ".join(est["includes"]) + ".",
            "Excludes (usage-based): " + "; ".join(est["excludes"]) + ".",
            "Basis: " + est["basis"] + ".",
        ],
    }
