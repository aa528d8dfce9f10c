"""Every chart is installed through `components.helm.helm_release`, pinned in one place, and can be
read back from the plan with its cluster."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from components.helm import RELEASE_TYPE, helm_release, release_record
from components.upstream import chart_pin, pins
from stacks.plan import run_plan

ROOT = Path(__file__).resolve().parents[2]


def test_an_index_chart_names_chart_version_and_repository_from_the_pins(record):
    regs = record(lambda: helm_release("r", "keda", namespace="keda", release_name="keda", create_namespace=True))
    inputs = regs.one(RELEASE_TYPE).inputs
    pin = pins()["charts"]["keda"]
    assert inputs["chart"] == "keda"
    assert inputs["version"] == str(pin["version"])
    assert inputs["repositoryOpts"] == {"repo": pin["repo"]}
    assert inputs["namespace"] == "keda" and inputs["name"] == "keda" and inputs["createNamespace"] is True


def test_an_oci_chart_is_pulled_by_its_reference_without_a_repository(record):
    regs = record(lambda: helm_release("k", "karpenter", namespace="kube-system", values={"replicas": 2}))
    inputs = regs.one(RELEASE_TYPE).inputs
    assert inputs["chart"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert inputs["version"] == chart_pin("karpenter")["version"]
    assert "repositoryOpts" not in inputs
    rec = release_record(inputs)
    assert (rec.chart, rec.repo, rec.pinned, rec.values) == (
        "karpenter",
        "oci://public.ecr.aws/karpenter/karpenter",
        True,
        {"replicas": 2},
    )


def test_an_unpinned_chart_name_is_refused():
    with pytest.raises(KeyError):
        helm_release("x", "no-such-chart", namespace="default")


@pytest.mark.parametrize(
    "inputs",
    [
        {"chart": "keda", "version": "0.0.1", "repositoryOpts": {"repo": "https://kedacore.github.io/charts"}},
        {"chart": "keda", "version": "2.17.2", "repositoryOpts": {"repo": "https://example.com/charts"}},
        {"chart": "home-made", "version": "1.0.0", "repositoryOpts": {"repo": "https://example.com/charts"}},
    ],
)
def test_a_release_off_its_pin_is_recorded_as_unpinned(inputs):
    assert release_record(inputs).pinned is False


def test_no_component_writes_a_release_by_hand():
    """`helm.v3.Release(` (or a v4 Chart) appears only in the helper."""
    offenders = []
    for folder in ("components", "stacks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "components" / "helm.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    target = ast.unparse(node.func)
                    if target.endswith(("helm.v3.Release", "helm.v4.Chart", "helm.v3.Chart")):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_the_plan_records_every_release_with_its_cluster():
    plan = run_plan("prod", policies=False)
    releases = plan.helm_releases()
    assert len(releases) == len(plan.of_type(RELEASE_TYPE)) > 0
    regions = {r.name for r in plan.config.regions}
    assert {r["cluster"] for r in releases} <= regions
    by_chart = {r["chart"] for r in releases}
    assert {"kube-prometheus-stack", "keda", "nvidia-device-plugin"} <= by_chart
    # training-operator publishes no chart (FIELD-NOTES): it is the one release nothing can pin.
    assert {r["chart"] for r in releases if not r["pinned"]} <= {"training-operator"}
