"""End to end: the shipped stacks plan their images and training jobs; jobs run in the primary
regions under that region's cluster provider, and the trainer accepts the arguments they render."""

from __future__ import annotations

import copy
import json

import pytest

from components.nodepool import NodePoolSpec
from components.training import TrainerIdentity, TrainingJob, TrainingJobSpec
from stacks.plan import Plan, run_plan
from stacks.plan.sections import build_sections
from stacks.steps.training import training_section

STACKS = ("prod",)
"""prod has both backends in both clouds; the spine's plan tests run every stack already."""
JOB_TYPES = (
    "kubernetes:kubeflow.org/v1:PyTorchJob",
    "kubernetes:batch/v1:Job",
    "kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob",
)
RUNTIME = "kubernetes:trainer.kubeflow.org/v1alpha1:ClusterTrainingRuntime"


@pytest.fixture(scope="module")
def plans():
    return {s: run_plan(s, policies=False) for s in STACKS}


def pod_templates(reg, plan) -> list[dict]:
    """The pod templates a job's pods come from; a TrainJob's is its runtime's, with the trial's
    image, command and arguments (what the Trainer puts into the runtime's `node` container)."""
    spec = reg.inputs["spec"]
    if "runtimeRef" in spec:
        (runtime,) = [r for r in plan.of_type(RUNTIME) if r.inputs["metadata"]["name"] == spec["runtimeRef"]["name"]]
        (replicated,) = runtime.inputs["spec"]["template"]["spec"]["replicatedJobs"]
        template = copy.deepcopy(replicated["template"]["spec"]["template"])
        (container,) = template["spec"]["containers"]
        container.update({k: spec["trainer"][k] for k in ("image", "command", "args")})
        return [template]
    if "pytorchReplicaSpecs" in spec:
        return [r["template"] for r in spec["pytorchReplicaSpecs"].values()]
    return [spec["template"]]


def test_prod_plans_training_in_both_primary_regions(plans):
    section = build_sections(plans["prod"])["training"]
    rows = {row[1]: row for row in section["rows"]}
    assert rows["pretrain"][:5] == ["aws-use1", "pretrain", "indexed-job", "train", "4 (2-4) x 8 nvidia-h100"]
    assert rows["pretrain-gcp"][:5] == ["gcp-usc1", "pretrain-gcp", "indexed-job", "train", "2 x 8 nvidia-h100"]
    assert all("@" in row[-1] for row in rows.values())  # images by digest
    assert "images" in build_sections(plans["prod"])


def test_the_training_section_shows_a_sweeps_waiting_trials(record):
    pool = NodePoolSpec.model_validate({"name": "train", "machineType": "g6e.12xlarge", "maxNodes": 2}, context={})
    sweep = {"grid": {"optim.lr": [1, 2, 3], "train.batch_size": [64, 128]}, "maxConcurrent": 2}
    spec = TrainingJobSpec.model_validate({"name": "lr-sweep", "pool": "train", "sweep": sweep})
    identity = TrainerIdentity("aicloud-training", "aicloud-trainer")
    image = "ghcr.io/acme/trainer@sha256:" + "1" * 64
    regs = record(lambda: TrainingJob("s", spec, pool=pool, image=image, identity=identity, region_key="aws-usw2"))
    section = training_section(Plan(stack="t", config=None, resources=list(regs)))  # type: ignore[arg-type]
    (row,) = section["rows"]
    assert row == ["aws-usw2", "lr-sweep", "trainjob", "train", "1 x 4 nvidia-l40s", "debug", "6 (2 active)",
                   "ghcr.io/…/trainer@sha256:111111111111…"]  # fmt: skip
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
        for template in pod_templates(job, plan):
            assert (namespace, template["spec"]["serviceAccountName"]) in identities, job.urn


@pytest.mark.parametrize("stack", STACKS)
def test_the_trainer_accepts_every_rendered_command_line(plans, stack, capsys):
    from workloads.trainer.cli import main  # imports torch: only this test pays for it

    for job in plans[stack].of_type(*JOB_TYPES):
        container = pod_templates(job, plans[stack])[0]["spec"]["containers"][0]
        args = container["args"]
        assert container["command"] == ["python", "-m", "workloads.trainer.launch"] and args[:2] == [
            "-m",
            "workloads.trainer",
        ]
        assert main([*args[2:], "--print-config"]) == 0, capsys.readouterr().err
        config = json.loads(capsys.readouterr().out)
        assert config["out"] == args[args.index("--out") + 1]
