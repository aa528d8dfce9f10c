"""Custom resources without their controller: every training kind a stack creates, and every kind
its retraining trigger will create at run time (the job templates in its settings), must be served
by a chart installed in that cluster (the vendored CRD names the chart that installs it). The
shipped stacks pass; a stack whose retraining runs where no operator is installed is reported."""

from __future__ import annotations

import json

import pytest

from components.k8s_schema import is_builtin
from components.upstream import crd
from stacks.plan import run_plan

STACKS = ("dev", "staging", "prod")
K8S_VERSION = "1.33"


@pytest.fixture(scope="module")
def plans():
    return {s: run_plan(s) for s in STACKS}


def orphans(plan, *, drop_release_of: str | None = None) -> list[str]:
    """`<region>: <kind> <name>` for each custom object (created now, or templated for the
    retraining trigger) whose CRD's chart is not installed in its region."""
    installed: dict[str, set[str]] = {}
    for r in plan.helm_releases():
        if r["urn"] != drop_release_of:
            installed.setdefault(r["cluster"], set()).add(r["chart"])
    objects = []
    for reg in plan.resources:
        if reg.custom and reg.type.startswith("kubernetes:") and "apiVersion" in reg.inputs:
            objects.append((plan.region_of(reg), reg.inputs))
        if reg.type == "kubernetes:core/v1:ConfigMap" and "settings.json" in (reg.inputs.get("data") or {}):
            for job in json.loads(reg.inputs["data"]["settings.json"]).get("jobs", []):
                objects.append((plan.region_of(reg), job))
    out = []
    for region, obj in objects:
        api, kind = obj["apiVersion"], obj["kind"]
        if "/" not in api or is_builtin(api, kind, K8S_VERSION):
            continue
        truth = crd(api, kind)
        if truth is None or truth.group not in ("trainer.kubeflow.org", "jobset.x-k8s.io", "kubeflow.org"):
            continue  # other areas' kinds (monitoring, serving) are theirs to check
        if truth.installed_by not in installed.get(region, set()):
            out.append(f"{region}: {kind} {obj['metadata'].get('name')}")
    return sorted(out)


@pytest.mark.parametrize("stack", STACKS)
def test_every_training_kind_has_its_operator_in_its_cluster(plans, stack):
    assert orphans(plans[stack]) == []


def test_prod_retraining_installs_the_trainer_in_both_primary_regions(plans):
    releases = [r for r in plans["prod"].helm_releases() if r["chart"] == "kubeflow-trainer"]
    assert sorted(r["cluster"] for r in releases) == ["aws-use1", "gcp-usc1"]
    assert all(r["pinned"] for r in releases)


def test_staging_sweep_runs_on_the_trainer_installed_by_the_stack(plans):
    plan = plans["staging"]
    assert plan.of_type("kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob")
    assert [r["cluster"] for r in plan.helm_releases() if r["chart"] == "kubeflow-trainer"] == ["aws-usw2"]


def test_planted_retraining_without_its_operator_is_reported(plans):
    """Retraining that launches TrainJobs where no Trainer is installed (what prod did with
    PyTorchJobs on the GCP primary region)."""
    plan = plans["prod"]
    gcp = next(r for r in plan.helm_releases() if r["chart"] == "kubeflow-trainer" and r["cluster"] == "gcp-usc1")
    assert orphans(plan, drop_release_of=gcp["urn"]) == ["gcp-usc1: ClusterTrainingRuntime aicloud-retrain-classifier",
                                                         "gcp-usc1: TrainJob rt-classifier-yymmddhhmm"]  # fmt: skip
