"""The plan as data: every resource a stack would create, with the outputs components registered.

`Plan` is what the program's steps read to build their report sections and what the renderers
(`stacks.plan.render`, `stacks.plan.diagram`) and the policy run read; it imports neither the
program nor the renderers, so the steps can import it without a circle.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from components.helm import RELEASE_TYPE, release_record
from stacks.config import StackConfig
from stacks.plan.mocks import UNKNOWN, Registration

REGION_TYPE = "aicloud:platform:RegionalPlatform"

Section = dict[str, Any]
"""A report table: `title`, `columns`, `rows`, optional `notes`."""
SectionBuilder = Callable[["Plan"], Section | None]

REPORT_SECTIONS: list[tuple[str, SectionBuilder]] = []
"""The report's sections in display order, each built from the plan (None: the stack has none).
`stacks.plan.sections` fills it with the steps' builders; Python runs `stacks/plan/__init__.py`, which
imports it, before any module of the package (this one included), so the list is complete whenever
a `Plan` exists, and the model never imports the program's steps."""


def build_sections(plan: Plan) -> dict[str, Section]:
    """Every section the stack has, by key, in display order."""
    out = {}
    for key, builder in REPORT_SECTIONS:
        section = builder(plan)
        if section is not None:
            out[key] = section
    return out


@dataclass
class Plan:
    """The resources a stack would create, parents first (`stacks.plan.canonical_order`)."""

    stack: str
    config: StackConfig
    resources: list[Registration]
    findings: list[dict[str, Any]] = field(default_factory=list)
    """Policy verdicts, filled by the policy pack when it runs over the plan."""
    policy_levels: dict[str, str] = field(default_factory=dict)
    stack_view: Any = None
    """The policy pack's view of the resources (`policies.common.StackView`), once evaluated: the
    readiness report is computed on it once and read by the Readiness sections."""
    """Enforcement level of every rule of the pack for this stack (`disabled` ones included)."""

    def __post_init__(self) -> None:
        self._by_urn = {r.urn: r for r in self.resources}

    def get(self, urn: str | None) -> Registration | None:
        return self._by_urn.get(urn) if urn else None

    def of_type(self, *types: str) -> list[Registration]:
        """Resources whose type is one of `types`."""
        return [r for r in self.resources if r.type in types]

    def children(self, urn: str) -> list[Registration]:
        return [r for r in self.resources if r.parent == urn]

    def ancestors(self, reg: Registration) -> list[Registration]:
        out, node = [], self.get(reg.parent)
        while node is not None:
            out.append(node)
            node = self.get(node.parent)
        return out

    def region_of(self, reg: Registration) -> str:
        """The stack region key a resource belongs to (`global` when it spans regions)."""
        if reg.type in ("pulumi:providers:aws", "pulumi:providers:gcp"):
            return reg.name.split("-", 1)[1]
        for node in [reg, *self.ancestors(reg)]:
            if node.type == REGION_TYPE:
                return node.name
            provider = self.get(node.provider)
            if provider is not None and provider.type in ("pulumi:providers:aws", "pulumi:providers:gcp"):
                return provider.name.split("-", 1)[1]
        return "global"

    def component_of(self, reg: Registration) -> str:
        """Name of the nearest aicloud component that holds the resource."""
        for node in self.ancestors(reg):
            if node.type.startswith("aicloud:") and node.type != REGION_TYPE:
                return node.name
        return reg.name if reg.type.startswith("aicloud:") else "-"

    def component_outputs(self, type_: str) -> list[tuple[Registration, dict[str, Any]]]:
        """The registered outputs of every component of `type_`."""
        return [(r, r.outputs) for r in self.resources if r.type == type_]

    def helm_releases(self) -> list[dict[str, Any]]:
        """Every Helm release of the stack (`components.helm`): the cluster (region key) and
        component it belongs to, chart, version, repository, namespace, values, and whether
        `components/upstream/pins.yaml` pins exactly that chart."""
        return [
            {
                "urn": r.urn,
                "cluster": self.region_of(r),
                "component": self.component_of(r),
                **release_record(r.inputs).to_json(),
            }
            for r in self.resources
            if r.type == RELEASE_TYPE
        ]

    # ------------------------------------------------------------------ summary

    @property
    def pools(self) -> list[dict[str, Any]]:
        """The capacity record of every node pool (GPUs and cost at min and max), in the stack
        config's order: regions as listed, each region's pools as listed."""
        # Pulumi drops None values from registered outputs: `gpu` is absent on CPU pools.
        records = [
            {"gpu": None, **r.outputs["capacity"], "regionKey": self.region_of(r)}
            for r in self.resources
            if r.type.startswith("aicloud:compute:") and "capacity" in r.outputs
        ]
        order = {
            (spec.name, pool.name): (i, j)
            for i, spec in enumerate(self.config.regions)
            for j, pool in enumerate(spec.node_pools)
        }
        last = (len(order), 0)
        return sorted(records, key=lambda p: (*order.get((p["regionKey"], p["pool"]), last), p["regionKey"], p["pool"]))

    def summary(self) -> dict[str, Any]:
        from stacks.plan.cost import estimate

        pools = self.pools
        gpus: dict[str, dict[str, int]] = defaultdict(lambda: {"min": 0, "max": 0})
        for p in pools:
            if p["gpu"]:
                gpus[p["gpu"]]["min"] += p["gpusMin"]
                gpus[p["gpu"]]["max"] += p["gpusMax"]
        custom = [r for r in self.resources if r.custom]
        return {
            "resources": len(custom),
            "components": len(self.resources) - len(custom),
            "byCloud": dict(Counter(r.type.split(":")[0] for r in custom if not r.type.startswith("pulumi:"))),
            "regions": [r.name for r in self.config.regions],
            "gpus": dict(sorted(gpus.items())),
            "costPerHour": estimate(self),
            "protected": sum(1 for r in self.resources if r.protect),
            "retainOnDelete": sum(1 for r in self.resources if r.retain_on_delete),
            "policy": {
                "mandatory": sum(1 for f in self.findings if f["level"] == "mandatory"),
                "advisory": sum(1 for f in self.findings if f["level"] == "advisory"),
            },
        }

    def to_json(self) -> dict[str, Any]:
        """The plan as one JSON document: resources, pools, report sections, policy verdicts, summary."""
        return {
            "stack": self.stack,
            "environment": self.config.environment,
            "resources": [
                {
                    "urn": r.urn,
                    "type": r.type,
                    "name": r.name,
                    "parent": r.parent,
                    "provider": r.provider,
                    "region": self.region_of(r),
                    "component": self.component_of(r),
                    "custom": r.custom,
                    "inputs": r.inputs,
                    "outputs": r.outputs if not r.custom else None,
                    "protect": r.protect,
                    "retainOnDelete": r.retain_on_delete,
                    "aliases": r.aliases,
                    "ignoreChanges": r.ignore_changes,
                }
                for r in self.resources
            ],
            "pools": self.pools,
            "sections": build_sections(self),
            "policy": self.findings,
            "summary": self.summary(),
        }


def is_unknown(value: Any) -> bool:
    """Whether a value is only known after apply."""
    return isinstance(value, str) and bool(UNKNOWN.match(value))
