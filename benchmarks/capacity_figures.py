"""Capacity-chain figures of the prod review (issue 17): every GPU pool's chain with each tier's
price per node-hour, its best and worst case per hour, and how many prod GPU pools hold a
reservation, Capacity Block or flex-start tier; and that the review Markdown shows the section.

    python benchmarks/capacity_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stacks.plan import run_plan  # noqa: E402
from stacks.plan.render import render_markdown  # noqa: E402
from stacks.plan.sections import capacity_section  # noqa: E402


def main() -> int:
    plan = run_plan("prod")
    section = capacity_section(plan)
    gpu_pools = [p for p in plan.pools if p["gpu"]]
    shown = {(r[0], r[1]) for r in section["rows"] if r[0]}
    print(f"prod GPU pools: {len(gpu_pools)}; shown with a chain row: {len(shown)}")
    for row in section["rows"]:
        print("  " + " | ".join(str(c) for c in row))
    print(section["notes"][0])
    markdown = render_markdown(plan)
    print(
        f"review Markdown: {len(markdown):,} chars; 'Capacity chains' section present: {'Capacity chains' in markdown}"
    )
    rule = [f for f in plan.findings if f["policy"] == "aicloud-gpu-capacity-guaranteed-in-prod"]
    print(f"aicloud-gpu-capacity-guaranteed-in-prod findings on prod: {len(rule)}")
    return 0 if len(shown) == len(gpu_pools) else 1


if __name__ == "__main__":
    raise SystemExit(main())
