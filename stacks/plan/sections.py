"""Sections of the plan report: compute (regions, pools, GPUs, cost) and, as capabilities land,
storage, endpoints and monitoring. Each builder reads component outputs from the plan and returns
a table (`title`, `columns`, `rows`, optional `notes`) or None when the stack has nothing of it.
"""

from __future__ import annotations

from stacks.plan.cost import cost_section
from stacks.plan.model import REPORT_SECTIONS, Plan, Section, SectionBuilder, build_sections
from stacks.plan.readiness import clusters_section, findings_section, workloads_section
from stacks.steps.monitoring import monitoring_section
from stacks.steps.serving import endpoints_section, traffic_section
from stacks.steps.storage import storage_section
from stacks.steps.training import images_section, training_section

__all__ = ["SECTIONS", "Section", "SectionBuilder", "build_sections", "pools_section", "regions_section"]


def _money(x: float) -> str:
    return f"${x:,.2f}"


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
                f"k8s {spec.cluster.version}" + (" public" if spec.cluster.public_endpoint else " private"),
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
            f"{p['minNodes']}-{p['maxNodes']}",
            "spot" if p["spot"] else "on-demand",
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
            "highest price (AWS on-demand, GCP 40 %); the Cost section shows the spot range and everything else."
        ],
    }


# Report sections in display order; capabilities add their builder here.
SECTIONS: list[tuple[str, SectionBuilder]] = REPORT_SECTIONS
SECTIONS += [
    ("regions", regions_section),
    ("pools", pools_section),
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
