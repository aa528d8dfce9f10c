"""Entry point of the aicloud guardrails policy pack: `pulumi preview --policy-pack policies`.

The Pulumi CLI runs this file (it is the pack's `main`); constructing `PolicyPack` starts the
analyzer's gRPC server and blocks, so nothing else imports this module. The rules live in importable
modules (`policies/registry.py`) that the offline plan and the tests call directly.
"""

import sys
from pathlib import Path

# The CLI runs the pack from this directory; the rules import `components.catalog` from the repository.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies.registry import PACK_NAME, RULES  # noqa: E402

PolicyPack(
    name=PACK_NAME,
    policies=[rule.policy() for rule in RULES],
    enforcement_level=EnforcementLevel.MANDATORY,
    description="aicloud guardrails: security, data safety, GPU scheduling, placement and cost, availability.",
)
