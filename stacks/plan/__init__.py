"""The offline plan: what a stack would create, without a cloud, credentials or the Pulumi CLI.

`run_plan("prod")` reads `stacks/Pulumi.prod.yaml`, validates it, runs the real stack program
(`stacks.program.deploy`) under Pulumi's mock runtime, and returns a `Plan`: every resource with
its inputs, parent, provider and data-safety options, plus the outputs components registered
(node pool capacity, storage tiers, endpoints...). Renderers turn it into a table, JSON, Markdown.
"""

from __future__ import annotations

import contextvars
import gc
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime.config import set_all_config
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from stacks.config import STACKS_DIR, StackConfig, load_stack
from stacks.plan.mocks import UNKNOWN, PlanMocks, RecordingMonitor, Registration, open_event_loop

PROJECT = "aicloud"
REGION_TYPE = "aicloud:platform:RegionalPlatform"


@dataclass
class Plan:
    """The resources a stack would create, in registration order."""

    stack: str
    config: StackConfig
    resources: list[Registration]
    findings: list[dict[str, Any]] = field(default_factory=list)
    """Policy verdicts, filled by the policy pack when it runs over the plan."""
    policy_levels: dict[str, str] = field(default_factory=dict)
    """Enforcement level of every rule of the pack for this stack (`disabled` ones included)."""
    stack_view: Any = None
    """The policy pack's view of the resources (`policies.common.StackView`), once evaluated."""

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

    # ------------------------------------------------------------------ summary

    @property
    def pools(self) -> list[dict[str, Any]]:
        """The capacity record of every node pool (GPUs and cost at min and max)."""
        # Pulumi drops None values from registered outputs: `gpu` is absent on CPU pools.
        return [
            {"gpu": None, **r.outputs["capacity"], "regionKey": self.region_of(r)}
            for r in self.resources
            if r.type.startswith("aicloud:compute:") and "capacity" in r.outputs
        ]

    def summary(self) -> dict[str, Any]:
        from stacks.plan.readiness import figures as readiness_figures

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
            "costPerHour": {
                "min": round(sum(p["costPerHourMin"] for p in pools), 2),
                "max": round(sum(p["costPerHourMax"] for p in pools), 2),
                "basis": "on-demand list price in each cloud's reference region (catalog)",
            },
            "protected": sum(1 for r in self.resources if r.protect),
            "retainOnDelete": sum(1 for r in self.resources if r.retain_on_delete),
            "policy": {
                "mandatory": sum(1 for f in self.findings if f["level"] == "mandatory"),
                "advisory": sum(1 for f in self.findings if f["level"] == "advisory"),
            },
            "readiness": readiness_figures(self),
        }

    def to_json(self) -> dict[str, Any]:
        from stacks.plan.sections import build_sections

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


def record(program: Callable[[], Any], *, stack: str, flat_config: dict[str, str] | None = None) -> list[Registration]:
    """Run `program` under the mock runtime and return what it registered, in order.

    Each call runs in a fresh context (the runtime keeps its settings in context variables), so
    plans and tests never see each other's resources.
    """

    def _run() -> list[Registration]:
        open_event_loop()
        mocks = PlanMocks()
        # The SDK allocates many short-lived objects per resource; with hundreds of thousands of
        # long-lived objects from the provider SDKs in the heap, full collections dominate the run
        # (measured: 7.3 s -> 3.8-5.2 s of CPU for the prod plan). The run is bounded, so cycles
        # are left for after it.
        gc_enabled = gc.isenabled()
        gc.disable()
        # Source positions serve the real engine's diagnostics only; capturing a Python stack
        # per resource is an eighth of a mock run, so the plan skips it.
        stack_trace = pulumi_resource._get_stack_trace
        pulumi_resource._get_stack_trace = source_pb2.StackTrace
        monitor = RecordingMonitor(mocks, stack=stack, project=PROJECT)
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
        set_all_config(dict(flat_config or {}))
        try:
            _sync_await(run_pulumi_func(program))
        finally:
            pulumi_resource._get_stack_trace = stack_trace
            if gc_enabled:
                gc.enable()
        return list(monitor.registrations.values())

    return contextvars.Context().run(_run)


def run_program(stack: str, flat_config: dict[str, str], config: StackConfig) -> Plan:
    """Run `stacks.program.deploy` under the mock runtime with the engine-encoded config."""
    from stacks.program import deploy

    resources = record(lambda: deploy(stack, config), stack=stack, flat_config=flat_config)
    return Plan(stack=stack, config=config, resources=resources)


def run_plan(
    stack: str,
    stacks_dir: Path = STACKS_DIR,
    *,
    policies: bool = True,
    enforcement: dict[str, str] | None = None,
) -> Plan:
    """Validate `stacks/Pulumi.<stack>.yaml` and plan it (raises `ConfigError` on bad config).

    `enforcement` overrides rule levels after the stack's own (`{"all": "advisory"}`, `{rule: level}`).
    """
    flat, config = load_stack(stack, stacks_dir)
    plan = run_program(stack, flat, config)
    if policies:
        from stacks.plan.policy import evaluate, rule_levels

        plan.findings = evaluate(plan, enforcement)
        plan.policy_levels = rule_levels(plan, enforcement)
    return plan
