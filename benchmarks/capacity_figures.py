"""Capacity-chain figures of the prod review (issue 17): every GPU pool's chain with each tier's
price per node-hour and its source, its best and worst case per hour, how many prod GPU pools hold a
reservation, Capacity Block or flex-start tier; that the review Markdown shows the section; and the
GKE ComputeClasses (one per GKE pool with a chain) validated against the vendored CRD.

    python benchmarks/capacity_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.k8s_schema import object_errors  # noqa: E402
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
    level = {f["level"] for f in rule}
    print(f"aicloud-gpu-capacity-guaranteed-in-prod findings on prod: {len(rule)} {sorted(level)}")
    classes = [r for r in plan.resources if r.type == "kubernetes:cloud.google.com/v1:ComputeClass"]
    valid = [r for r in classes if not object_errors({k: v for k, v in r.inputs.items() if k != "name"}, "1.33")]
    gke_chains = [p for p in plan.pools if p["cloud"] == "gcp" and p.get("capacity")]
    print(
        f"GKE ComputeClasses: {len(classes)} for {len(gke_chains)} GKE pool(s) with a chain; "
        f"validated against the vendored CRD: {len(valid)}/{len(classes)}"
    )
    return 0 if len(shown) == len(gpu_pools) and len(valid) == len(classes) == len(gke_chains) else 1


if __name__ == "__main__":
    raise SystemExit(main())
