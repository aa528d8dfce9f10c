"""Security figures of the shipped stacks and workflows (README, "Security").

    python benchmarks/security_scan.py [--checkov PATH] [--json OUT]

1. Renders every Kubernetes object the shipped stacks (dev, staging, prod) create, through the
   offline plan (Helm releases are not templated offline: their charts are upstream's), writes
   them as YAML, and runs checkov's Kubernetes checks over them. A failed check counts unless it
   is a documented exception in `EXCEPTIONS` (check id, the objects it applies to, and why).
2. Counts, over the same objects, namespaces without Pod Security Admission enforce labels and
   namespaces without a default-deny ingress NetworkPolicy.
3. Audits the GitHub workflows (policies/workflows.py): credential-holding jobs reachable from an
   unreviewed branch, and actions not pinned by commit SHA.

checkov is large and pins its own dependencies: install it into its own environment
(`python -m venv /tmp/checkov && /tmp/checkov/bin/pip install checkov`) and pass `--checkov
/tmp/checkov/bin/checkov`, or have `checkov` on PATH. Without it, step 1 is skipped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.identity import API_ACCESS  # noqa: E402
from components.k8s_schema import kubernetes_objects  # noqa: E402
from components.k8s_security import PSA_ENFORCE  # noqa: E402
from policies import workflows  # noqa: E402
from stacks.plan import run_plan  # noqa: E402

STACKS = ("dev", "staging", "prod")


def _requests_gpu(obj: dict[str, Any]) -> bool:
    return "nvidia.com/gpu" in json.dumps(obj.get("spec") or {})


def _batch_or_gpu(obj: dict[str, Any]) -> bool:
    return obj.get("kind") in ("Job", "CronJob") or _requests_gpu(obj)


def _calls_the_api(obj: dict[str, Any]) -> bool:
    return API_ACCESS in ((obj.get("metadata") or {}).get("annotations") or {})


@dataclass(frozen=True)
class Exception_:
    """A checkov check that is expected to fail on some objects, and why."""

    check: str
    title: str
    applies: Callable[[dict[str, Any]], bool]
    """Which rendered objects it covers."""
    why: str


EXCEPTIONS: tuple[Exception_, ...] = (
    Exception_(
        "CKV_K8S_11",
        "CPU limits on GPU and batch pods",
        _batch_or_gpu,
        "Pods that request GPUs (serving on GPU pools, training) and batch pods (training Jobs, the retraining "
        "CronJob) set CPU requests and memory limits but no CPU limit: a CFS quota throttles the data-loading and "
        "batching threads that keep the GPU busy and protects no one (the CPU request already reserves the share). "
        "CPU-only serving Deployments do set CPU limits.",
    ),
    Exception_(
        "CKV_K8S_38",
        "ServiceAccount token in the retraining trigger",
        _calls_the_api,
        "The retraining CronJob is the one workload that calls the Kubernetes API (it launches the training job; "
        "with a canary release its regional agents patch their canary's weights; Roles limited to those named "
        "objects); it says so in its aicloud.dev/kubernetes-api annotation. Every other pod, an agent without a "
        "canary included, has automountServiceAccountToken: false.",
    ),
)


def render(stacks: tuple[str, ...] = STACKS) -> dict[str, list[dict[str, Any]]]:
    """The Kubernetes objects of each stack, as their manifests (inputs of the registrations)."""
    out = {}
    for stack in stacks:
        plan = run_plan(stack, policies=False)
        out[stack] = [obj for _, obj in kubernetes_objects(plan.resources)]
    return out


def namespace_figures(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Namespaces (created as objects) without PSA enforce labels / without a default-deny policy."""
    namespaces = [o for o in objects if o.get("kind") == "Namespace"]
    names = [(o.get("metadata") or {}).get("name") for o in namespaces]
    no_psa = [
        n for n, o in zip(names, namespaces, strict=True) if PSA_ENFORCE not in (o["metadata"].get("labels") or {})
    ]
    denied = {
        (o.get("metadata") or {}).get("namespace")
        for o in objects
        if o.get("kind") == "NetworkPolicy"
        and (o.get("spec") or {}).get("podSelector") in ({}, None)
        and "Ingress" in (o.get("spec") or {}).get("policyTypes", [])
        and not (o.get("spec") or {}).get("ingress")
    }
    no_deny = [n for n in names if n not in denied]
    return {"withoutPsa": no_psa, "withoutDefaultDeny": no_deny}


def _exception_for(check: str, obj: dict[str, Any] | None) -> Exception_ | None:
    for e in EXCEPTIONS:
        if e.check == check and obj is not None and e.applies(obj):
            return e
    return None


def _checkov_id(obj: dict[str, Any]) -> str:
    """checkov's resource id of an object: `Kind.namespace.name`."""
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}.{meta.get('namespace', 'default')}.{meta.get('name')}"


def run_checkov(exe: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """checkov's Kubernetes checks over `objects`: failures split into documented and not."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, obj in enumerate(objects):
            clean = json.loads(json.dumps(obj, default=str))
            (Path(tmp) / f"{i:04d}-{obj.get('kind', 'x').lower()}.yaml").write_text(yaml.safe_dump(clean))
        res = subprocess.run(
            [exe, "-d", tmp, "--framework", "kubernetes", "-o", "json", "--quiet", "--compact", "--skip-download"],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    if not res.stdout.strip():
        raise RuntimeError(f"checkov printed nothing (exit {res.returncode}): {res.stderr[-2000:]}")
    report = json.loads(res.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [f for r in reports for f in (r.get("results") or {}).get("failed_checks", [])]
    passed = sum((r.get("summary") or {}).get("passed", 0) for r in reports)  # --quiet lists failures only
    by_id = {_checkov_id(o): o for o in objects}
    documented, open_ = [], []
    for f in failed:
        resource = f.get("resource", "")  # `Kind.namespace.name`
        entry = {"check": f["check_id"], "resource": resource, "title": f.get("check_name")}
        (documented if _exception_for(f["check_id"], by_id.get(resource)) else open_).append(entry)
    return {"passed": passed, "failedDocumented": documented, "failedOpen": open_}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkov", default=shutil.which("checkov"), help="checkov executable")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--stacks", nargs="*", default=list(STACKS))
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    rendered = render(tuple(args.stacks))
    figures: dict[str, Any] = {"stacks": {}}
    for stack, objects in rendered.items():
        kinds = Counter(o.get("kind") for o in objects)
        entry: dict[str, Any] = {
            "objects": len(objects),
            "kinds": dict(sorted(kinds.items())),
            **namespace_figures(objects),
        }
        if args.checkov:
            entry["checkov"] = run_checkov(args.checkov, objects)
        figures["stacks"][stack] = entry
    wfs = workflows.load(ROOT / ".github" / "workflows")
    figures["workflows"] = {
        "credentialJobsReachableUnreviewed": workflows.credential_jobs_reachable_unreviewed(wfs),
        "unpinnedActions": workflows.unpinned_actions(wfs),
        "violations": [str(v) for v in workflows.check(wfs)],
    }
    figures["exceptions"] = [{"check": e.check, "title": e.title, "why": e.why} for e in EXCEPTIONS]
    figures["seconds"] = round(time.perf_counter() - t0, 1)

    for stack, e in figures["stacks"].items():
        line = f"{stack}: {e['objects']} objects; namespaces without PSA: {len(e['withoutPsa'])}, "
        line += f"without default-deny: {len(e['withoutDefaultDeny'])}"
        if "checkov" in e:
            c = e["checkov"]
            line += f"; checkov passed {c['passed']}, failed documented {len(c['failedDocumented'])}, "
            line += f"failed not documented {len(c['failedOpen'])}"
        print(line)
        for f in e.get("checkov", {}).get("failedOpen", []):
            print(f"  {f['check']} {f['resource']}: {f['title']}")
    w = figures["workflows"]
    reachable = len(w["credentialJobsReachableUnreviewed"])
    print(
        f"workflows: credential jobs reachable from an unreviewed branch: {reachable}; "
        f"unpinned actions: {w['unpinnedActions']}"
    )
    if not args.checkov:
        print("checkov not found: pass --checkov PATH (see the module docstring)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    bad = sum(len(e["withoutPsa"]) + len(e["withoutDefaultDeny"]) for e in figures["stacks"].values())
    bad += sum(len(e.get("checkov", {}).get("failedOpen", [])) for e in figures["stacks"].values())
    bad += len(w["credentialJobsReachableUnreviewed"]) + w["unpinnedActions"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
