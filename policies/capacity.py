"""Capacity guardrail: prod training pools of the scarcest GPUs (H100/H200/B200) hold capacity that
does not depend on the zone having on-demand GPUs left: a reservation, a Capacity Block or
flex-start tier before on-demand in their capacity chain (components/capacity.py).

The pack ships the rule advisory (`contracts.guardrails.ADVISORY_BY_DEFAULT`): in dev and staging
a training pool that waits for on-demand GPUs is worth a warning, not a blocked preview. Prod
stacks get it mandatory (`contracts.guardrails.ENVIRONMENT_LEVELS`, applied by
`policies.config.pack_config`); any stack can still set it with `aicloud:policy.enforcement`.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel, ReportViolation

from components.capacity import SCARCE_GPUS
from policies.common import Rule, StackView, dig, pools

ROLE_LABEL = "aicloud.dev/role"
ACCELERATOR_LABEL = "aicloud.dev/accelerator"


def guaranteed_capacity(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    every = pools(view)
    seen: set[str] = set()
    for pool in every:
        if pool.labels.get(ROLE_LABEL) != "training" or pool.labels.get(ACCELERATOR_LABEL) not in SCARCE_GPUS:
            continue
        owner = next((n for n in pool.res.ancestors() if dig(n.props, "capacity.pool") is not None), None)
        key = owner.urn if owner is not None else pool.res.urn
        if key in seen:
            continue
        seen.add(key)
        chain = dig(owner.props, "capacity.capacity") if owner is not None else None
        if isinstance(chain, dict) and chain.get("guaranteedBeforeOnDemand") is True:
            continue
        kinds = " > ".join(t.get("kind", "?") for t in chain.get("tiers", [])) if isinstance(chain, dict) else None
        name = dig(owner.props, "capacity.pool") if owner is not None else pool.res.name
        report(
            f"Training pool '{name}' ({pool.labels.get(ACCELERATOR_LABEL)}) has "
            + (f"the capacity chain {kinds}" if kinds else "no capacity chain")
            + ", so it waits on on-demand GPUs the zone may not have. Put a reservation, capacityBlock (EKS) or "
            "flex (GKE) tier before on-demand in the pool's `capacity`.",
            pool.res.urn,
        )


RULES = [
    Rule(
        "aicloud-gpu-capacity-guaranteed-in-prod",
        "Training pools of H100/H200-class GPUs hold a reservation, Capacity Block or flex-start tier before "
        "on-demand (advisory by default, mandatory in prod stacks).",
        "placement",
        guaranteed_capacity,
        stack=True,
        level=EnforcementLevel.ADVISORY,
    ),
]
