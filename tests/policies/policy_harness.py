"""Call guardrails the way the Pulumi CLI does: resource rules with `ResourceValidationArgs`, stack
rules with `StackValidationArgs` over `PolicyResource`s linked by parent, provider and dependencies.

Tests build a happy-path stack from `Spec`s, change one field, and assert the exact message.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import unknown_checking_proxy

from policies.registry import BY_NAME

STACK = "prod"


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:{STACK}::aicloud::{type_}::{name}"


@dataclass
class Spec:
    """One resource of a test stack; `parent`, `provider` and `deps` name other specs."""

    type: str
    name: str
    props: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    provider: str | None = None
    deps: list[str] = field(default_factory=list)
    protect: bool = False


def _opts(spec: Spec) -> PolicyResourceOptions:
    return PolicyResourceOptions(spec.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def build(specs: list[Spec]) -> list[PolicyResource]:
    """PolicyResources with parents, providers and dependencies resolved by name."""
    by_name = {s.name: s for s in specs}
    providers = {
        s.name: PolicyProviderResource(
            s.type, unknown_checking_proxy(copy.deepcopy(s.props)), urn(s.type, s.name), s.name
        )
        for s in specs
        if s.type.startswith("pulumi:providers:")
    }
    out = {
        s.name: PolicyResource(
            s.type,
            unknown_checking_proxy(copy.deepcopy(s.props)),
            urn(s.type, s.name),
            s.name,
            _opts(s),
            providers.get(s.provider or ""),
            None,
            [],
            {},
        )
        for s in specs
    }
    for s in specs:
        out[s.name].parent = out.get(s.parent or "")
        out[s.name].dependencies = [out[d] for d in s.deps if d in by_name]
    return list(out.values())


def check_stack(rule: str, specs: list[Spec], config: dict[str, Any] | None = None) -> list[tuple[str, str | None]]:
    """(message, urn) of every violation a stack rule reports."""
    policy = BY_NAME[rule].policy()
    found: list[tuple[str, str | None]] = []
    args = StackValidationArgs(build(specs), {**BY_NAME[rule].defaults(), **(config or {})})
    policy.validate(args, lambda message, urn=None: found.append((message, urn)))
    return found


def messages(rule: str, specs: list[Spec], config: dict[str, Any] | None = None) -> list[str]:
    return [m for m, _ in check_stack(rule, specs, config)]


def check_resource(
    rule: str, type_: str, props: dict[str, Any], *, name: str = "r", config: dict[str, Any] | None = None
) -> list[str]:
    """Messages of a resource rule on one resource's inputs."""
    policy = BY_NAME[rule].policy()
    found: list[str] = []
    spec = Spec(type_, name, props)
    args = ResourceValidationArgs(
        type_,
        unknown_checking_proxy(copy.deepcopy(props)),
        urn(type_, name),
        name,
        _opts(spec),
        None,
        {**BY_NAME[rule].defaults(), **(config or {})},
    )
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def put(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `obj` with `path` (dots; `[i]` for list items) set, or removed when value is DELETE."""
    out = copy.deepcopy(obj)
    node: Any = out
    parts = path.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if value is DELETE:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


DELETE = object()


def change(specs: list[Spec], name: str, path: str, value: Any) -> list[Spec]:
    """The stack with one prop of one resource changed."""
    return [
        Spec(s.type, s.name, put(s.props, path, value), s.parent, s.provider, s.deps, s.protect)
        if s.name == name
        else s
        for s in specs
    ]


def without(specs: list[Spec], name: str) -> list[Spec]:
    return [s for s in specs if s.name != name]
