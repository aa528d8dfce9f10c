"""`aicloud:training` and `aicloud:images` validation: bad values fail before any resource exists,
each error naming the `aicloud:training...` / `aicloud:images...` key path and what is allowed."""

from __future__ import annotations

import copy

import pytest

from stacks.config import ConfigError, parse_stack_config

DIGEST = "sha256:" + "0123456789abcdef" * 4

GOOD = {
    "environment": "staging",
    "owner": "ml-platform",
    "gcpProject": "acme-ml-test",
    "regions": [
        {
            "name": "aws-usw2",
            "cloud": "aws",
            "region": "us-west-2",
            "primary": True,
            "nodePools": [
                {"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 3},
                {"name": "train", "machineType": "g6e.12xlarge", "role": "training", "maxNodes": 4},
            ],
        },
        {
            "name": "aws-euw1",
            "cloud": "aws",
            "region": "eu-west-1",
            "nodePools": [
                {"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 3},
                {"name": "serve", "machineType": "g5.xlarge", "role": "inference", "maxNodes": 2},
            ],
        },
        {
            "name": "gcp-usc1",
            "cloud": "gcp",
            "region": "us-central1",
            "primary": True,
            "nodePools": [
                {"name": "system", "machineType": "e2-standard-4", "minNodes": 1, "maxNodes": 3},
                {"name": "train", "machineType": "a3-highgpu-8g", "role": "training", "maxNodes": 2},
            ],
        },
    ],
    "images": {"workloads": {"trainer": {}}},
    "training": {"jobs": [{"name": "llm", "pool": "train", "nodes": 2}]},
}


def errors_for(mutate) -> list[str]:
    raw = copy.deepcopy(GOOD)
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw, "t")
    return info.value.errors


def job(raw, index=0) -> dict:
    return raw["training"]["jobs"][index]


def only(errors: list[str], prefix: str) -> str:
    assert len(errors) == 1, errors
    assert errors[0].startswith(prefix), errors
    return errors[0]


def test_good_config_validates_and_defaults_to_the_first_primary_region():
    cfg = parse_stack_config(GOOD, "t")
    (spec,) = cfg.training.jobs
    assert spec.backend == "trainjob" and spec.region is None and spec.schedule == "none"
    assert cfg.training.operator == "install"
    assert cfg.images.workloads["trainer"].dockerfile_path("trainer") == "workloads/Dockerfile"
    assert cfg.images.workloads["trainer"].target_stage("trainer") == "trainer"


def test_pool_must_exist_in_the_region():
    err = only(errors_for(lambda r: job(r).update(pool="trian")), "aicloud:training.jobs:")
    assert "no node pool 'trian'" in err and "pools: system, train" in err


def test_pool_must_have_gpus_unless_cpu_is_allowed():
    err = only(errors_for(lambda r: job(r).update(pool="system", nodes=1)), "aicloud:training.jobs:")
    assert "pool 'system' (m6i.large) has no GPUs" in err and "allowCpu: true" in err
    parse_stack_config({**GOOD, "training": {"jobs": [{"name": "smoke", "pool": "system", "allowCpu": True}]}}, "t")


def test_region_must_be_a_primary_region():
    err = only(errors_for(lambda r: job(r).update(region="aws-euw1", pool="serve")), "aicloud:training.jobs:")
    assert "'aws-euw1' is not a primary region" in err
    err = only(errors_for(lambda r: job(r).update(region="aws-use9")), "aicloud:training.jobs:")
    assert "region 'aws-use9' is not in the stack" in err and "aws-usw2, gcp-usc1" in err


def test_a_job_on_the_gcp_primary_uses_that_regions_pool():
    def gcp(raw):
        job(raw).update(region="gcp-usc1", nodes=3)

    err = only(errors_for(gcp), "aicloud:training.jobs:")
    assert "needs up to 3 nodes but pool 'train' has maxNodes 2" in err


def test_nodes_and_elastic_range_must_fit_the_pool():
    err = only(errors_for(lambda r: job(r).update(nodes=5)), "aicloud:training.jobs:")
    assert "needs up to 5 nodes but pool 'train' has maxNodes 4" in err

    def elastic(r):
        r["training"]["operator"] = "preinstalled"
        job(r).update(backend="pytorchjob", elastic={"minNodes": 1, "maxNodes": 6})

    err = only(errors_for(elastic), "aicloud:training.jobs:")
    assert "needs up to 6 nodes" in err


def test_elastic_range_must_contain_nodes_and_be_ordered():
    err = only(
        errors_for(lambda r: job(r).update(elastic={"minNodes": 3, "maxNodes": 4})), "aicloud:training.jobs[0](llm)"
    )
    assert "nodes (2) must lie within elastic 3..4" in err
    errs = errors_for(lambda r: job(r).update(elastic={"minNodes": 3, "maxNodes": 2}))
    assert any(e.startswith("aicloud:training.jobs[0](llm).elastic") and "greater than maxNodes" in e for e in errs)


def test_elastic_pytorchjob_needs_a_worker():
    def elastic(r):
        r["training"]["operator"] = "preinstalled"
        job(r).update(backend="pytorchjob", nodes=1, elastic={"minNodes": 1, "maxNodes": 2})

    err = only(errors_for(elastic), "aicloud:training.jobs[0](llm)")
    assert "needs nodes >= 2" in err


def test_a_trainjob_cannot_be_elastic():
    err = only(errors_for(lambda r: job(r).update(elastic={"minNodes": 1, "maxNodes": 2})), "aicloud:training.jobs[0]")
    assert "backend trainjob cannot be elastic" in err and "indexed-job" in err


def test_planted_pytorchjob_with_an_operator_to_install_fails_naming_the_key():
    """The v1 training operator has no chart: asking the stack to install it is refused at plan time."""
    err = only(errors_for(lambda r: job(r).update(backend="pytorchjob")), "aicloud:training.jobs[0](llm).backend:")
    assert "pytorchjob needs the Kubeflow training operator v1" in err
    assert "no Helm chart" in err
    raw = copy.deepcopy(GOOD)
    raw["training"]["operator"] = "preinstalled"
    job(raw).update(backend="pytorchjob")
    assert parse_stack_config(raw, "t").training.jobs[0].backend == "pytorchjob"


def test_active_jobs_in_a_pool_must_fit_it_at_once():
    def crowd(raw):
        raw["training"]["jobs"].append(
            {
                "name": "sweep",
                "pool": "train",
                "nodes": 1,
                "sweep": {"grid": {"optim.lr": [1, 2, 3, 4]}, "maxConcurrent": 3},
            }
        )

    err = only(errors_for(crowd), "aicloud:training.jobs:")
    assert "pool aws-usw2/train: active jobs need up to 5 nodes at once (llm 2, sweep 3)" in err
    assert "maxNodes 4" in err


def test_a_sweep_beyond_its_limit_is_allowed_because_the_rest_waits_suspended():
    def bounded(raw):
        job(raw).update(
            nodes=1, sweep={"grid": {"optim.lr": [1, 2, 3], "train.batch_size": [32, 64]}, "maxConcurrent": 2}
        )

    cfg = (lambda raw: (bounded(raw), parse_stack_config(raw, "t"))[1])(copy.deepcopy(GOOD))
    assert cfg.training.jobs[0].sweep.size == 6


def test_sweep_grid_is_bounded_and_keys_are_trainer_keys():
    err = only(
        errors_for(lambda r: job(r).update(sweep={"grid": {"optim.lr": list(range(9)), "train.seed": list(range(8))}})),
        "aicloud:training.jobs[0](llm).sweep.grid",
    )
    assert "72 trials; at most 64" in err
    err = only(
        errors_for(lambda r: job(r).update(sweep={"grid": {"Optim LR": [1]}})),
        "aicloud:training.jobs[0](llm).sweep.grid",
    )
    assert "not a trainer key" in err
    errs = errors_for(lambda r: job(r).update(sweep={"grid": {"optim.lr": []}}))
    assert any("needs at least one value" in e for e in errs)


def test_overrides_cannot_set_the_run_directory():
    err = only(
        errors_for(lambda r: job(r).update(overrides={"out": "s3://x/y"})), "aicloud:training.jobs[0](llm).overrides"
    )
    assert "use the job's `out` field" in err


def test_job_names_are_dns_labels_and_unique():
    errs = errors_for(lambda r: job(r).update(name="LLM_1"))
    assert any(e.startswith("aicloud:training.jobs[0]") and ".name" in e for e in errs)
    err = only(
        errors_for(lambda r: r["training"]["jobs"].append({"name": "llm", "pool": "train", "nodes": 1})),
        "aicloud:training.jobs:",
    )
    assert "repeated: llm" in err


def test_backend_and_operator_choices_are_checked():
    errs = errors_for(lambda r: job(r).update(backend="mpijob"))
    assert any(e.startswith("aicloud:training.jobs[0](llm).backend") and "pytorchjob" in e for e in errs)
    errs = errors_for(lambda r: r["training"].update(operator="maybe"))
    assert any(e.startswith("aicloud:training.operator") for e in errs)
    errs = errors_for(lambda r: job(r).update(schedule="0 3 * * *"))
    assert any(e.startswith("aicloud:training.jobs[0](llm).schedule") for e in errs)


def test_a_job_needs_an_image_built_or_pinned():
    err = only(errors_for(lambda r: r.pop("images")), "aicloud:training.jobs:")
    assert "no image" in err and "aicloud:images.workloads.trainer" in err

    def pinned(raw):
        raw.pop("images")
        job(raw)["image"] = f"ghcr.io/acme/trainer@{DIGEST}"

    cfg = (lambda raw: (pinned(raw), parse_stack_config(raw, "t"))[1])(copy.deepcopy(GOOD))
    assert cfg.training.jobs[0].image.endswith(DIGEST)


def test_a_dataset_needs_the_lakehouse():
    err = only(errors_for(lambda r: job(r).update(dataset="features/clicks/v3")), "aicloud:training.jobs:")
    assert "dataset needs the lakehouse (aicloud:storage)" in err
    errs = errors_for(lambda r: job(r).update(dataset="clicks"))
    assert any(e.startswith("aicloud:training.jobs[0](llm).dataset") for e in errs)


def test_unknown_keys_are_rejected():
    err = only(errors_for(lambda r: job(r).update(gpus=8)), "aicloud:training.jobs[0](llm).gpus")
    assert "unknown key" in err


# --------------------------------------------------------------------------- images


def test_a_pinned_image_needs_a_digest_not_just_a_tag():
    err = only(
        errors_for(lambda r: r["images"]["workloads"].update(trainer={"image": "ghcr.io/acme/trainer:v1"})),
        "aicloud:images.workloads.trainer.image",
    )
    assert "pinned by digest" in err and "'ghcr.io/acme/trainer:v1'" in err
    errs = errors_for(lambda r: r["images"]["workloads"].update(trainer={"image": "trainer@sha256:abc"}))
    assert errs and errs[0].startswith("aicloud:images.workloads.trainer.image")


def test_a_tagged_reference_with_a_digest_is_accepted():
    raw = copy.deepcopy(GOOD)
    raw["images"]["workloads"]["trainer"] = {
        "image": f"123456789012.dkr.ecr.us-west-2.amazonaws.com/ml/trainer:v1@{DIGEST}"
    }
    assert parse_stack_config(raw, "t").images.workloads["trainer"].pinned


def test_a_pinned_image_is_not_built():
    err = only(
        errors_for(
            lambda r: r["images"]["workloads"].update(
                trainer={"image": f"ghcr.io/a/t@{DIGEST}", "platforms": ["linux/arm64"]}
            )
        ),
        "aicloud:images.workloads.trainer",
    )
    assert "remove platforms or remove image" in err


def test_the_dockerfile_must_exist_in_the_repository():
    err = only(
        errors_for(lambda r: r["images"]["workloads"].update(tool={"dockerfile": "workloads/tool/Dockerfile"})),
        "aicloud:images.workloads",
    )
    assert "tool.dockerfile: 'workloads/tool/Dockerfile' does not exist" in err
    # without a dockerfile, a workload is a target of workloads/Dockerfile: it must be a stage there
    err = only(errors_for(lambda r: r["images"]["workloads"].update(tool={})), "aicloud:images.workloads")
    assert "tool.target: 'tool' is not a stage of workloads/Dockerfile; stages: base, trainer, server" in err
    err = only(
        errors_for(lambda r: r["images"]["workloads"].update(trainer={"dockerfile": "../../etc/passwd"})),
        "aicloud:images.workloads",
    )
    assert "outside the repository" in err


def test_keep_last_is_bounded():
    err = only(errors_for(lambda r: r["images"].update(keepLast=0)), "aicloud:images.keepLast")
    assert "greater than or equal to 1" in err


def test_an_elastic_indexed_job_runs_exactly_its_nodes():
    err = only(
        errors_for(lambda r: job(r).update(backend="indexed-job", elastic={"minNodes": 1, "maxNodes": 3})),
        "aicloud:training.jobs[0](llm)",
    )
    assert "elastic maxNodes (3) must equal nodes (2)" in err


def test_jobs_are_not_checked_against_regions_that_are_themselves_invalid():
    errs = errors_for(lambda r: r["regions"][0].update(region="us-nowhere-1"))
    assert errs == [errs[0]] and errs[0].startswith("aicloud:regions[0](aws-usw2).region")
