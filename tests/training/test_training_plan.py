"""End to end: the shipped stacks plan their images and training jobs; jobs run in the primary
regions under that region's cluster provider, and the trainer accepts the arguments they render."""

from __future__ import annotations

import json

import pytest

from stacks.plan import run_plan
from stacks.plan.sections import build_sections

STACKS = ("staging", "prod")
JOB_TYPES = ("kubernetes:kubeflow.org/v1:PyTorchJob", "kubernetes:batch/v1:Job")


@pytest.fixture(scope="module")
def plans():
    return {s: run_plan(s, policies=False) for s in STACKS}


def pod_templates(reg) -> list[dict]:
    spec = reg.inputs["spec"]
    if "pytorchReplicaSpecs" in spec:
        return [r["template"] for r in spec["pytorchReplicaSpecs"].values()]
    return [spec["template"]]


def test_prod_plans_training_in_both_primary_regions(plans):
    section = build_sections(plans["prod"])["training"]
    rows = {row[1]: row for row in section["rows"]}
    assert rows["pretrain"][:5] == ["aws-use1", "pretrain", "pytorchjob", "train", "4 (2-4) x 8 nvidia-h100"]
    assert rows["pretrain-gcp"][:5] == ["gcp-usc1", "pretrain-gcp", "indexed-job", "train", "2 x 8 nvidia-h100"]
    assert all("@" in row[-1] for row in rows.values())  # images by digest
    assert "images" in build_sections(plans["prod"])


def test_staging_sweep_shows_its_waiting_trials(plans):
    section = build_sections(plans["staging"])["training"]
    (row,) = section["rows"]
    assert row[1] == "lr-sweep" and row[6] == "6 (2 active)"
    assert any("4 sweep trial(s) are created suspended" in n for n in section["notes"])


@pytest.mark.parametrize("stack", STACKS)
def test_jobs_live_under_their_primary_region_and_its_cluster_provider(plans, stack):
    plan = plans[stack]
    jobs = plan.of_type(*JOB_TYPES)
    assert jobs
    for job in jobs:
        key = plan.region_of(job)
        assert plan.config.region(key).primary
        provider = plan.get(job.provider)
        assert provider is not None and provider.type == "pulumi:providers:kubernetes", job.urn
        assert plan.region_of(provider) == key  # the region's own cluster, never a default provider


@pytest.mark.parametrize("stack", STACKS)
def test_jobs_run_as_the_lakehouse_trainer_identity(plans, stack):
    plan = plans[stack]
    identities = {
        (r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"])
        for r in plan.of_type("kubernetes:core/v1:ServiceAccount")
    }
    for job in plan.of_type(*JOB_TYPES):
        namespace = job.inputs["metadata"]["namespace"]
        for template in pod_templates(job):
            assert (namespace, template["spec"]["serviceAccountName"]) in identities, job.urn


@pytest.mark.parametrize("stack", STACKS)
def test_the_trainer_accepts_every_rendered_command_line(plans, stack, capsys):
    from workloads.trainer.cli import main  # imports torch: only this test pays for it

    for job in plans[stack].of_type(*JOB_TYPES):
        container = pod_templates(job)[0]["spec"]["containers"][0]
        args = container["args"]
        assert container["command"] == ["torchrun"] and args[:2] == ["-m", "workloads.trainer"]
        assert main([*args[2:], "--print-config"]) == 0, capsys.readouterr().err
        config = json.loads(capsys.readouterr().out)
        assert config["out"] == args[args.index("--out") + 1]
