"""Policy verdicts over a plan: the guardrail pack's rules run on the planned resources.

The rules themselves live in `policies/` (issue 7 lands them); until then no rule is registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stacks.plan import Plan


def evaluate(plan: Plan) -> list[dict[str, Any]]:
    """Every violation the policy pack reports on `plan`, as JSON-ready records."""
    return []
