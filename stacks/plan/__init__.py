"""The offline plan: what a stack would create, without a cloud, credentials or the Pulumi CLI.

`run_plan("prod")` reads `stacks/Pulumi.prod.yaml`, validates it, runs the real stack program
(`stacks.program.deploy`) under Pulumi's mock runtime, and returns a `Plan`: every resource with
its inputs, parent, provider and data-safety options, plus the outputs components registered
(node pool capacity, storage tiers, endpoints...). Renderers turn it into a table, JSON, Markdown.
"""

from __future__ import annotations

import contextvars
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime.config import set_all_config
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from stacks.config import STACKS_DIR, StackConfig, load_stack

# Fills the report's section list (`stacks.plan.model.REPORT_SECTIONS`) with the steps' builders.
from stacks.plan import sections as _sections  # noqa: F401
from stacks.plan.mocks import PlanMocks, RecordingMonitor, Registration, open_event_loop
from stacks.plan.model import REGION_TYPE, Plan, is_unknown

__all__ = ["PROJECT", "REGION_TYPE", "Plan", "is_unknown", "canonical_order", "record", "run_plan", "run_program"]

PROJECT = "aicloud"


def canonical_order(registrations: list[Registration]) -> list[Registration]:
    """The registrations in an order that depends on the program only: parents before their
    children, siblings by (name, type), walked depth-first from the roots.

    The engine receives registrations as their inputs resolve, so the arrival order changes from
    run to run (and with the interpreter's hash seed); every table, list and verdict of the plan
    reads this order, so the same stack gives the same report on every run."""
    by_urn = {r.urn: r for r in registrations}
    children: dict[str | None, list[Registration]] = {}
    for r in registrations:
        children.setdefault(r.parent if r.parent in by_urn else None, []).append(r)
    out: list[Registration] = []
    stack = sorted(children.get(None, []), key=lambda r: (r.name, r.type, r.urn), reverse=True)
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(sorted(children.get(node.urn, []), key=lambda r: (r.name, r.type, r.urn), reverse=True))
    return out


def record(program: Callable[[], Any], *, stack: str, flat_config: dict[str, str] | None = None) -> list[Registration]:
    """Run `program` under the mock runtime and return what it registered, in `canonical_order`.

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
        return canonical_order(list(monitor.registrations.values()))

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
