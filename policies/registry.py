"""Every guardrail of the aicloud pack, in one list: the pack (`policies/__main__.py`) and the
offline plan (`stacks/plan/policy.py`) both take their rules from here."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel

from contracts.guardrails import ADVISORY_BY_DEFAULT, RULE_NAMES
from policies import availability, capacity, data_safety, gpu, placement, platform, readiness, security, zero_trust
from policies.common import Rule

PACK_NAME = "aicloud-guardrails"

RULES: list[Rule] = [
    *security.RULES,
    *zero_trust.RULES,
    *data_safety.RULES,
    *gpu.RULES,
    *placement.RULES,
    *capacity.RULES,
    *availability.RULES,
    *platform.RULES,
    *readiness.RULES,
]

BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}

if set(BY_NAME) != set(RULE_NAMES):
    raise ImportError(
        "contracts.guardrails.RULE_NAMES must name every rule of the pack: "
        f"missing {sorted(set(BY_NAME) - set(RULE_NAMES))}, unknown {sorted(set(RULE_NAMES) - set(BY_NAME))}"
    )

_ADVISORY = {rule.name for rule in RULES if rule.level == EnforcementLevel.ADVISORY}
if _ADVISORY != set(ADVISORY_BY_DEFAULT) or any(
    rule.level not in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY) for rule in RULES
):
    raise ImportError(
        "every rule is mandatory by default except contracts.guardrails.ADVISORY_BY_DEFAULT (advisory, with a "
        f"reason): advisory here {sorted(_ADVISORY)}, listed {sorted(ADVISORY_BY_DEFAULT)}"
    )
