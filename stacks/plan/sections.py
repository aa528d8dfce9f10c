"""Sections of the plan report: compute (regions, pools, GPUs, cost) and, as capabilities land,
storage, endpoints and monitoring. Each builder reads component outputs from the plan and returns
a table (`title`, `columns`, `rows`, optional `notes`) or None when the stack has nothing of it.
"""

from __future__ import annotations

from stacks.plan.cost import cost_section
from stacks.plan.model import REPORT_SECTIONS, Plan, Section, SectionBuilder, build_sections
from stacks.plan.readiness import clusters_section, findings_section, workloads_section
from stacks.steps.monitoring import monitoring_section
from stacks.steps.platform import access_section, platform_section
from stacks.steps.serving import endpoints_section, traffic_section
from stacks.steps.storage import storage_section
from stacks.steps.training import images_section, training_section

__all__ = ["SECTIONS", "Section", "SectionBuilder", "build_sections", "pools_section", "regions_section"]


def _money(x: float) -> str:
    return f"${x:,.2f}"


def _endpoint(plan: Plan, key: str) -> str:
    """`private`, or `private+allow-list` when the public endpoint admits listed CIDRs only."""
    access = next((r.outputs.get("apiAccess") for r in plan.of_type("aicloud:platform:RegionalPlatform")
                   if r.name == key), None) or {}  # fmt: skip
    return "private+allow-list" if access.get("public") else "private"


def regions_section(plan: Plan) -> Section:
    """Per region: cloud, cluster, resources, GPUs and cost at min and max scale."""
    rows = []
    for spec in plan.config.regions:
        pools = [p for p in plan.pools if p["regionKey"] == spec.name]
        count = sum(1 for r in plan.resources if r.custom and plan.region_of(r) == spec.name)
        rows.append(
            [
                spec.name,
                spec.cloud,
                spec.region,
                "yes" if spec.primary else "",
                f"k8s {spec.cluster.version} {_endpoint(plan, spec.name)}",
                count,
                f"{sum(p['gpusMin'] for p in pools)}-{sum(p['gpusMax'] for p in pools)}",
                _money(sum(p["costPerHourMin"] for p in pools)),
                _money(sum(p["costPerHourMax"] for p in pools)),
            ]
        )
    return {
        "title": "Regions",
        "columns": ["region key", "cloud", "region", "primary", "cluster", "resources", "GPUs", "$/h min", "$/h max"],
        "rows": rows,
    }


def pools_section(plan: Plan) -> Section:
    """Every node pool with its machine, GPUs, scaling, capacity type and cost."""
    rows = [
        [
            p["regionKey"],
            p["pool"],
            p["role"],
            p["machineType"],
            f"{p['gpusPerNode']} x {p['gpu']}" if p["gpu"] else "-",
            f"{p['minNodes']}-{p['maxNodes']}"
            + (
                f" (tiers allow {p['reachableNodes']})"
                if p.get("reachableNodes", p["maxNodes"]) > p["maxNodes"]
                else ""
            ),
            " > ".join(t["tier"] for t in p["capacity"]["tiers"])
            if p.get("capacity")
            else ("spot" if p["spot"] else "on-demand"),
            f"{p['gpusMin']}-{p['gpusMax']}",
            _money(p["costPerHourMin"]),
            _money(p["costPerHourMax"]),
        ]
        for p in plan.pools
    ]
    return {
        "title": "Node pools",
        "columns": [
            "region",
            "pool",
            "role",
            "machine",
            "GPUs/node",
            "nodes",
            "capacity",
            "GPUs",
            "$/h min",
            "$/h max",
        ],
        "rows": rows,
        "notes": [
            "Cost: catalog on-demand list price per node-hour x the region's price factor; spot pools at their "
            "highest price (AWS on-demand, GCP 40 %); the Cost section shows the spot range and everything else.",
            *(
                [
                    "`tiers allow N`: the chain's tiers each have their own limit (a Karpenter NodePool / GKE node "
                    "pool per tier) and add up to more than maxNodes; GPUs and cost at max count the N nodes."
                ]
                if any(p.get("reachableNodes", p["maxNodes"]) > p["maxNodes"] for p in plan.pools)
                else []
            ),
        ],
    }


def capacity_section(plan: Plan) -> Section:
    """Every GPU pool's capacity chain: each tier's limit, price per node-hour and where it comes
    from, whether it can serve a gang; the pool's best and worst case per hour at max and what its
    reservations cost while held. Pools without a chain show their one tier."""
    rows = []
    gpu_pools = [p for p in plan.pools if p["gpu"]]
    held = 0
    for p in gpu_pools:
        chain = p.get("capacity")
        if chain is None:
            price = p["pricePerNodeHour"]
            low, high = p.get("spotFactor") or (1.0, 1.0)
            tier = "spot" if p["spot"] else "on-demand"
            rows.append(
                [
                    p["regionKey"],
                    p["pool"],
                    p["machineType"],
                    f"1. {tier}",
                    p["maxNodes"],
                    f"{_money(price * low)}-{_money(price * high)}" if p["spot"] else _money(price),
                    "spot range (catalog)" if p["spot"] else "on-demand list",
                    "no" if p["spot"] else f"up to {p['maxNodes']}",
                    f"{_money(p['costPerHourMaxLow'])} / {_money(p['costPerHourMax'])}",
                    _money(0),
                ]
            )
            continue
        held += any(t["kind"] in ("reservation", "capacity-block", "flex") for t in chain["tiers"])
        best = ("≤ " if chain.get("bestCaseUpperBound") else "") + _money(chain["bestCasePerHour"])
        for j, t in enumerate(chain["tiers"]):
            low, high = t["pricePerNodeHour"]
            ref = f" {t['ref']}" if t.get("ref") else ""
            rows.append(
                [
                    p["regionKey"] if j == 0 else "",
                    p["pool"] if j == 0 else "",
                    p["machineType"] if j == 0 else "",
                    f"{j + 1}. {t['kind']}{ref}" + (f" ({t['zone']})" if t.get("zone") else ""),
                    t["maxNodes"],
                    _money(low) if low == high else f"{_money(low)}-{_money(high)}",
                    "from config" if t["priceSource"] == "config" else t["priceSource"],
                    f"up to {t['maxNodes']}" if t["gang"] else "no",
                    (
                        f"{best} ({chain['bestCaseNodes']} nodes) / "
                        f"{_money(chain['worstCasePerHour'])} ({chain['worstCaseNodes']} nodes)"
                    )
                    if j == 0
                    else "",
                    _money(chain.get("committedPerHour", 0)) if j == 0 else "",
                ]
            )
    return {
        "title": "Capacity chains",
        "columns": [
            "region",
            "pool",
            "machine",
            "tier",
            "max nodes",
            "$/node-h",
            "price from",
            "gang",
            "best / worst $/h at max",
            "held $/h",
        ],  # fmt: skip
        "rows": rows,
        "notes": [
            f"{held} of {len(gpu_pools)} GPU pools hold a reserved, Capacity Block or flex-start tier.",
            "Tiers are tried in order (EKS: Karpenter NodePool weights; GKE: the pool's ComputeClass, one "
            "node-pool priority per tier, with active migration back to the preferred tier). Gang: the most "
            "nodes of one gang one tier can hold (spot: none, a preemption breaks the gang). Best case: the "
            "pool's maxNodes from the cheapest tiers, spot at its lowest (≤: a tier priced at its upper "
            "bound); worst case: every tier at its limit at its highest price (limits are per tier). Held: "
            "what reservations and Capacity Blocks bill per hour while held, nodes or not.",
            "Prices: a tier's pricePerHour from config (required for a Capacity Block, priced at purchase); "
            "else reservations at the on-demand rate they bill at, flex-start at most the on-demand list "
            "(sources in components/catalog/prices.yaml).",
        ],
    }


# Report sections in display order; capabilities add their builder here.
SECTIONS: list[tuple[str, SectionBuilder]] = REPORT_SECTIONS
SECTIONS += [
    ("regions", regions_section),
    ("pools", pools_section),
    ("platform", platform_section),
    ("access", access_section),
    ("capacity", capacity_section),
    ("storage", storage_section),
    ("images", images_section),
    ("training", training_section),
    ("endpoints", endpoints_section),
    ("traffic", traffic_section),
    ("monitoring", monitoring_section),
    ("cost", cost_section),
    ("readiness", clusters_section),
    ("readinessWorkloads", workloads_section),
    ("readinessFindings", findings_section),
]
