"""Figures of the serving capability (issue 6), measured on the offline plans.

1. Strict schema validation: every Kubernetes object of every stack (dev, staging, prod) against
   its cluster version's OpenAPI schema or aicloud's CRD schemas (`components.k8s_schema`).
2. Prod front doors: one `GlobalEndpoint` per cloud, with an endpoint group (AWS) or NEG
   backends (GCP) in every serving region of that cloud.
3. What the serving step costs `aicloud plan prod`: the plan with and without `deploy_serving`,
   alternating in one process (imports warm), wall and CPU seconds per run.

    python benchmarks/serving_figures.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

from components.k8s_schema import SKIPPED_TYPES, UnknownKind, kubernetes_objects, validate_object
from stacks import program
from stacks.plan import Plan, run_plan
from stacks.steps.serving import deploy_serving


def schema_figures(plan: Plan) -> tuple[int, int, list[str]]:
    """(objects, valid objects, problems) of a plan."""
    valid, problems = 0, []
    for reg, obj in kubernetes_objects(plan.resources):
        version = plan.config.region(plan.region_of(reg)).cluster.version
        try:
            found = validate_object(obj, version)
        except UnknownKind as exc:
            found = [str(exc)]
        valid += not found
        problems += [f"{reg.name}: {p}" for p in found]
    return len(kubernetes_objects(plan.resources)), valid, problems


def front_door_figures(plan: Plan) -> list[str]:
    lines = []
    for _, out in sorted(plan.component_outputs("aicloud:serving:GlobalEndpoint"), key=lambda e: e[1]["cloud"]):
        serving = sorted(r.name for r in plan.config.regions if r.serving and r.cloud == out["cloud"])
        covered = sorted(r["regionKey"] for r in out["regions"])
        lines.append(
            f"  {out['cloud']}: {out['mode']}, {len(covered)}/{len(serving)} serving regions "
            f"({', '.join(covered)}){'' if covered == serving else '  MISSING ' + str(set(serving) - set(covered))}"
        )
    groups = plan.of_type("aws:globalaccelerator/endpointGroup:EndpointGroup")
    lines.append(
        f"  AWS endpoint groups: {len(groups)} ({', '.join(sorted(g.inputs['endpointGroupRegion'] for g in groups))})"
    )
    for backend in plan.of_type("gcp:compute/backendService:BackendService"):
        negs = Counter(b["group"].split("/networkEndpointGroups/")[1] for b in backend.inputs["backends"])
        lines.append(
            f"  GCP NEG backends: {sum(negs.values())} ({', '.join(f'{k} x{v}' for k, v in sorted(negs.items()))})"
        )
    return lines


def timed_plan(with_serving: bool) -> tuple[float, float, int]:
    steps = [s for s in program.STEPS if s is not deploy_serving]
    program.STEPS[:] = steps + [deploy_serving] if with_serving else steps
    wall, cpu = time.perf_counter(), time.process_time()
    plan = run_plan("prod")
    return time.perf_counter() - wall, time.process_time() - cpu, len(plan.resources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print("1. strict schema validation of every Kubernetes object")
    total = total_valid = 0
    for stack in ("dev", "staging", "prod"):
        plan = run_plan(stack, policies=False)
        count, valid, problems = schema_figures(plan)
        helm = sum(1 for r in plan.resources if r.type in SKIPPED_TYPES)
        total, total_valid = total + count, total_valid + valid
        print(f"  {stack}: {valid}/{count} objects valid ({helm} Helm releases skipped)")
        for p in problems[:10]:
            print(f"    {p}")
    print(f"  all stacks: {total_valid}/{total} = {100 * total_valid / total:.1f}%")

    print("2. prod front doors")
    for line in front_door_figures(run_plan("prod", policies=False)):
        print(line)

    print(f"3. aicloud plan prod (policies on), with and without the serving step, {args.repeats} runs each")
    runs: dict[bool, list[tuple[float, float, int]]] = {True: [], False: []}
    timed_plan(True)  # warm imports and caches
    for _ in range(args.repeats):
        for with_serving in (True, False):
            runs[with_serving].append(timed_plan(with_serving))
    for with_serving, label in ((False, "without serving"), (True, "with serving   ")):
        walls = [r[0] for r in runs[with_serving]]
        cpus = [r[1] for r in runs[with_serving]]
        print(
            f"  {label}: {runs[with_serving][0][2]} registrations, wall median {statistics.median(walls):.2f} s "
            f"(min {min(walls):.2f}), CPU median {statistics.median(cpus):.2f} s"
        )
    ratio = statistics.median(r[1] for r in runs[True]) / statistics.median(r[1] for r in runs[False])
    print(f"  CPU ratio with/without: {ratio:.2f}")


if __name__ == "__main__":
    main()
