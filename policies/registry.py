"""Every guardrail of the aicloud pack, in one list: the pack (`policies/__main__.py`) and the
offline plan (`stacks/plan/policy.py`) both take their rules from here."""

from __future__ import annotations

from policies import availability, data_safety, gpu, placement, readiness, security
from policies.common import Rule

PACK_NAME = "aicloud-guardrails"

RULES: list[Rule] = [
    *security.RULES,
    *data_safety.RULES,
    *gpu.RULES,
    *placement.RULES,
    *availability.RULES,
    *readiness.RULES,
]

BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}
