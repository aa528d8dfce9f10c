"""`Rule`: one named check with its enforcement level and config schema, as a pulumi-policy policy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.common.stack import Res, StackView
from policies.common.values import plain

# --------------------------------------------------------------------------- rule construction

Check = Callable[..., None]


@dataclass(frozen=True)
class Rule:
    """Metadata of one guardrail; `policy()` turns it into a pulumi-policy object."""

    name: str
    description: str
    area: str
    check: Check
    stack: bool = False
    level: EnforcementLevel = EnforcementLevel.MANDATORY
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    """JSON-schema properties of the rule's config (Pulumi fills their `default`)."""
    types: tuple[str, ...] = ()
    """Resource types a resource rule looks at (a trailing `*` matches a prefix); empty: every type."""

    def applies(self, type_: str) -> bool:
        return not self.types or any(type_.startswith(t[:-1]) if t.endswith("*") else type_ == t for t in self.types)

    def defaults(self) -> dict[str, Any]:
        return {k: v["default"] for k, v in self.config.items() if "default" in v}

    def policy(self) -> ResourceValidationPolicy | StackValidationPolicy:
        schema = PolicyConfigSchema(properties=self.config) if self.config else None
        kwargs = dict(
            name=self.name,
            description=self.description,
            enforcement_level=self.level,
            config_schema=schema,
            tags=[self.area],
        )
        if self.stack:
            return StackValidationPolicy(validate=self._stack, **kwargs)
        return ResourceValidationPolicy(validate=self._resource, **kwargs)

    def _resource(self, args: ResourceValidationArgs, report: ReportViolation) -> None:
        if not self.applies(args.resource_type):
            return
        res = Res(
            type=args.resource_type,
            name=args.name,
            urn=args.urn,
            props=plain(args.props),
            protect=bool(getattr(args.opts, "protect", False)),
            provider_props=plain(args.provider.props) if args.provider is not None else None,
            provider_urn=args.provider.urn if args.provider is not None else None,
        )
        self.check(res, self._config(args.get_config()), report)

    def _stack(self, args: StackValidationArgs, report: ReportViolation) -> None:
        self.check(StackView.of(args.resources), self._config(args.get_config()), report)

    def _config(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The rule's config: schema defaults, then what the pack was given (numbers as the engine
        sends them, doubles, made whole where they are)."""
        return plain({**self.defaults(), **dict(given or {})})
