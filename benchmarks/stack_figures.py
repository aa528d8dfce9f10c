"""Figures of the shipped stacks' plans (issues 3 and 7), from the offline plan of each stack:

1. data safety: every data-holding resource (buckets, file systems, tables, datasets, keys) and
   whether it is protected and/or retained on delete;
2. IAM: every policy document in the plan (bucket, key, role and trust policies), its statements,
   and the statements that grant every action on every resource (target: 0);
3. the prod review page (`aicloud plan prod --markdown`): its length against GitHub's comment
   limit (65,536; target under 65,000) and its sections; and the policy verdicts per stack;
4. readiness (issue 13): custom resources validated against the vendored upstream CRDs, Helm value
   keys checked against the pinned charts (target: 0 unknown), pod templates that fit a pool at max
   scale, readiness findings (mandatory: 0), and the wall time of each plan with the check on
   (target for prod: under 10 s on this machine; the check's own share is printed too);
5. day one on a real cloud (issue 12): node pools whose floor is below the worst-case demand of the
   workloads placed on them and that no autoscaler grows (target 0), pools whose autoscaler cannot
   reach their maximum, volume claims without a StorageClass whose provisioner is installed (target
   0), custom resources without their controller and Helm releases from charts that cannot be
   resolved (readiness findings), and clusters the deployer cannot reach (target 0); serving
   regions whose drift the retraining loop reads and to which it rolls out (target: all).

    python benchmarks/stack_figures.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stacks.plan import run_plan  # noqa: E402
from stacks.plan.readiness import figures as readiness_figures  # noqa: E402
from stacks.plan.readiness import readiness_report  # noqa: E402
from stacks.plan.render import GITHUB_COMMENT_LIMIT, render_markdown  # noqa: E402
from stacks.steps.monitoring import retraining_coverage  # noqa: E402
from stacks.steps.platform import pool_scaling, volume_claims  # noqa: E402
from stacks.steps.storage import DATA_HOLDING_TYPES  # noqa: E402
from tests.lakehouse.samples import star_on_star  # noqa: E402
from tests.lakehouse.test_storage_plan import _policy_documents  # noqa: E402


def main() -> int:
    for name in ("dev", "staging", "prod"):
        started, cpu = time.perf_counter(), time.process_time()
        plan = run_plan(name)
        readiness_report(plan)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
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
        r = readiness_figures(plan)
        check = time.process_time()
        plan.stack_view._readiness = None
        readiness_report(plan)  # again on the same view, schemas loaded: the check's own cost
        check = time.process_time() - check
        print(
            f"{name:8} readiness: {r['customResourcesValidated']} custom resources validated against upstream CRDs "
            f"({r['objectsValidated']} objects in all); Helm keys {r['helmKeysChecked']} checked, "
            f"{r['helmKeysUnknown']} unknown; {r['workloadsSchedulable']}/{r['workloads']} pod templates fit a pool; "
            f"findings {r['findings']} ({r['mandatory']} mandatory); plan with the check {wall:.1f} s wall, "
            f"{cpu:.1f} s CPU (the check alone, schemas loaded: {check:.2f} s CPU)"
        )
        pools = pool_scaling(plan)
        claims = volume_claims(plan)
        found = [f["policy"] for f in plan.findings]
        regions = plan.of_type("aicloud:platform:RegionalPlatform")
        short = ", ".join(f"{p['region']}/{p['pool']} {p['demand']} > {p['maxNodes']}" for p in pools if p["short"])
        unreachable = [r.name for r in regions if (r.outputs.get("apiAccess") or {}).get("route") == "unreachable"]
        print(
            f"{name:8} day one: pools {len(pools)}, floor < worst-case demand without an autoscaler "
            f"{sum(p['stuck'] for p in pools)}, autoscaler short of maxNodes "
            f"{sum(p['reachable'] < p['maxNodes'] for p in pools)}, demand above maxNodes "
            f"{sum(p['short'] for p in pools)} ({short or '-'}); "
            f"volume claims {len(claims)}, without a provisioner {sum(not c['served'] for c in claims)}; "
            f"custom resources without their controller {found.count('readiness-crd-controller')}, "
            f"unresolvable charts {found.count('readiness-helm-chart')}; "
            f"clusters the deployer cannot reach {len(unreachable)}/{len(regions)}"
        )
        cover = retraining_coverage(plan)
        print(
            f"{name:8} retraining: serving regions covered by drift reports and rollout "
            + (f"{len(cover['covered'])}/{len(cover['serving'])}" if cover else "- (no retraining)")
            + (f" (missing: {', '.join(cover['missing'])})" if cover and cover["missing"] else "")
        )
        if name == "prod":
            cmd = [sys.executable, "-m", "stacks.cli", "plan", "prod", "--summary", "--quiet"]
            started = time.perf_counter()
            done = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *cmd], capture_output=True, text=True,
                                  cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
            user, system, kb = (float(x) for x in done.stderr.split()[-3:])
            took = time.perf_counter() - started
            print(f"prod     `aicloud plan prod --summary` in a fresh process: {took:.1f} s wall, "
                  f"{user + system:.1f} s CPU, {kb / 1024:.0f} MB peak RSS at {plan.summary()['resources']} resources "
                  "(wall exceeds CPU when the machine's 2 cores are shared; "
                  "benchmarks/plan_before_after.py compares with an earlier commit)")  # fmt: skip
            md = render_markdown(plan)
            sections = [line[4:] for line in md.splitlines() if line.startswith("### ")]
            print(f"prod review Markdown: {len(md):,} characters (GitHub limit {GITHUB_COMMENT_LIMIT:,}); "
                  f"sections: {', '.join(sections)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
