"""Figures of the shipped stacks' plans (issues 3 and 7), from the offline plan of each stack:

1. data safety: every data-holding resource (buckets, file systems, tables, datasets, keys) and
   whether it is protected and/or retained on delete;
2. IAM: every policy document in the plan (bucket, key, role and trust policies), its statements,
   and the statements that grant every action on every resource (target: 0);
3. the prod review page (`aicloud plan prod --markdown`): its length against GitHub's comment
   limit (65,536; target under 65,000) and its sections; and the policy verdicts per stack.

    python benchmarks/stack_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stacks.plan import run_plan  # noqa: E402
from stacks.plan.render import GITHUB_COMMENT_LIMIT, render_markdown  # noqa: E402
from stacks.steps.storage import DATA_HOLDING_TYPES  # noqa: E402
from tests.lakehouse.samples import star_on_star  # noqa: E402
from tests.lakehouse.test_storage_plan import _policy_documents  # noqa: E402


def main() -> int:
    for name in ("dev", "staging", "prod"):
        plan = run_plan(name)
        data = [r for r in plan.resources if r.custom and r.type in DATA_HOLDING_TYPES]
        guarded = [r for r in data if r.protect or r.retain_on_delete]
        both = [r for r in data if r.protect and r.retain_on_delete]
        docs = [doc for r in plan.resources if r.custom for doc in _policy_documents(r.inputs)]
        statements = sum(len(d["Statement"]) if isinstance(d["Statement"], list) else 1 for d in docs)
        stars = [s for d in docs for s in star_on_star(d)]
        levels = [f.get("level") or f.get("enforcementLevel") for f in plan.findings]
        mandatory = sum(1 for lv in levels if lv == "mandatory")
        print(
            f"{name:8} data-holding {len(guarded)}/{len(data)} guarded ({len(both)} protected and retained); "
            f"IAM documents {len(docs)}, statements {statements}, '*' on '*' {len(stars)}; "
            f"policy findings {len(plan.findings)} ({mandatory} mandatory)"
        )
        if name == "prod":
            md = render_markdown(plan)
            sections = [line[4:] for line in md.splitlines() if line.startswith("### ")]
            print(f"prod review Markdown: {len(md):,} characters (GitHub limit {GITHUB_COMMENT_LIMIT:,}); "
                  f"sections: {', '.join(sections)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
