"""Policy verdicts over a plan: the guardrail pack's rules run on the planned resources.

The rules are the pack's own (`policies/registry.py`) and are called through pulumi-policy's objects
with the arguments the Pulumi CLI would send: resource rules get each resource's inputs (camelCase),
options and provider; stack rules get every resource with its outputs, parent and dependencies. The
stack's `aicloud:policy` section becomes the pack config exactly as `python -m policies.config` writes
it for `pulumi preview --policy-pack-config`, so a review without the CLI shows the same verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import unknown_checking_proxy

if TYPE_CHECKING:
    from stacks.plan.mocks import Registration
    from stacks.plan.model import Plan


def _options(reg: Registration) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=reg.protect,
        ignore_changes=list(reg.ignore_changes),
        delete_before_replace=None,
        aliases=list(reg.aliases),
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=reg.parent,
    )


def policy_resources(plan: Plan) -> list[tuple[Registration, PolicyResource]]:
    """Every planned resource as the CLI hands it to a policy pack (stack props are outputs)."""
    providers: dict[str, PolicyProviderResource] = {}
    for reg in plan.resources:
        if reg.type.startswith("pulumi:providers:"):
            providers[reg.urn] = PolicyProviderResource(reg.type, unknown_checking_proxy(reg.inputs), reg.urn, reg.name)
    out = []
    for reg in plan.resources:
        props = (reg.outputs or reg.inputs) if reg.custom else reg.outputs
        res = PolicyResource(
            resource_type=reg.type,
            props=unknown_checking_proxy(dict(props)),
            urn=reg.urn,
            name=reg.name,
            opts=_options(reg),
            provider=providers.get(reg.provider or ""),
            parent=None,
            dependencies=[],
            property_dependencies={},
        )
        out.append((reg, res))
    by_urn = {reg.urn: res for reg, res in out}
    for reg, res in out:
        res.parent = by_urn.get(reg.parent or "")
        res.dependencies = [by_urn[d] for d in reg.depends_on if d in by_urn]
    return out


def rule_levels(plan: Plan, enforcement: Mapping[str, str] | None = None) -> dict[str, str]:
    """The enforcement level of every rule for this plan's stack (after `enforcement` overrides)."""
    from policies.config import pack_config, resolve
    from policies.registry import RULES

    config = pack_config(plan.config.environment, plan.config.policy, enforcement)
    return {rule.name: resolve(rule, config)[0] for rule in RULES}


def evaluate(plan: Plan, enforcement: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every violation the policy pack reports on `plan`, as JSON-ready records.

    `enforcement` overrides levels after the stack's own (`{"all": "advisory"}`, `{rule: level}`).
    """
    from policies.config import pack_config, resolve
    from policies.registry import RULES

    config = pack_config(plan.config.environment, plan.config.policy, enforcement)
    resources = policy_resources(plan)
    stack_resources = [res for _, res in resources]
    # Stack rules share one view of this list (`StackView.of`); the plan's Readiness section reads
    # the report the readiness rules computed on it.
    from policies.common import StackView

    plan.stack_view = StackView.of(stack_resources)
    inputs: dict[str, Any] = {}  # URN -> its inputs as the CLI wraps them, built on first use
    findings: list[dict[str, Any]] = []
    for rule in RULES:
        level, props = resolve(rule, config)
        if level == "disabled":
            continue
        verdict = "advisory" if level == "advisory" else "mandatory"
        policy = rule.policy()

        def record(message: str, urn: str | None, *, rule_name: str = rule.name, verdict: str = verdict) -> None:
            reg = plan.get(urn)
            findings.append(
                {
                    "policy": rule_name,
                    "level": verdict,
                    "message": message,
                    "urn": urn,
                    "name": reg.name if reg else None,
                    "type": reg.type if reg else None,
                }
            )

        if rule.stack:
            policy.validate(StackValidationArgs(stack_resources, props), lambda msg, urn=None, r=record: r(msg, urn))
            continue
        for reg, res in resources:
            if rule.applies(reg.type):
                if reg.urn not in inputs:
                    inputs[reg.urn] = unknown_checking_proxy(dict(reg.inputs))
                args = ResourceValidationArgs(
                    reg.type, inputs[reg.urn], reg.urn, reg.name, res.opts, res.provider, props
                )
                policy.validate(args, lambda msg, urn=None, r=record, u=reg.urn: r(msg, u))
    return findings
