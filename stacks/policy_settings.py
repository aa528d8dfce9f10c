"""The stack's `aicloud:policy` section: the settings the policy pack reads (`policies.config` turns
them into policy-pack config). Rule names and levels come from `contracts.guardrails`, so the stack
config never imports the pack."""

from __future__ import annotations

from pydantic import Field, field_validator

from components.base import Spec
from components.catalog import CLOUDS, load_catalog
from contracts.guardrails import RULE_NAMES, Level


class PolicySpec(Spec):
    """Guardrail settings of a stack (`aicloud:policy`)."""

    allowed_regions: list[str] = Field(default_factory=list)
    """Cloud regions (either cloud) resources may live in, for data residency; empty allows every region."""
    max_gpu_cost_per_hour: float | None = Field(default=None, gt=0)
    """Ceiling on the GPU pools' on-demand USD per hour at max scale (catalog prices); none by default."""
    max_gpus_per_pool: int | None = Field(default=None, ge=1)
    """Ceiling on the GPUs one node pool can scale to; none by default."""
    enforcement: dict[str, Level] = Field(default_factory=dict)
    """Enforcement level per rule name (`all` for every rule): advisory, mandatory, remediate, disabled."""

    @field_validator("allowed_regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        known = sorted({r for c in CLOUDS for r in load_catalog().region_names(c)})
        unknown = [r for r in regions if r not in known]
        if unknown:
            raise ValueError(f"unknown region(s) {', '.join(unknown)}; known regions: {', '.join(known)}")
        return regions

    @field_validator("enforcement")
    @classmethod
    def _known_rules(cls, levels: dict[str, str]) -> dict[str, str]:
        unknown = sorted(k for k in levels if k != "all" and k not in RULE_NAMES)
        if unknown:
            raise ValueError(f"unknown rule(s) {', '.join(unknown)}; rules: all, {', '.join(sorted(RULE_NAMES))}")
        return levels
