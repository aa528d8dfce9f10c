"""The `aicloud:monitoring` section: validation with errors that name the key, and the stacks'
plans (dev: monitoring only; prod: monitoring in every cluster, retraining in each cloud's
primary region) with the monitoring section of `aicloud plan`."""

from __future__ import annotations

import copy

import pytest

from stacks.config import load_stack, parse_stack_config
from stacks.plan import run_plan
from stacks.plan.sections import build_sections
from stacks.steps.monitoring import MONITORING_TYPE, RETRAINING_TYPE
from tests.stack_helpers import config_errors, raw_stack


@pytest.fixture(scope="module")
def prod_raw() -> dict:
    return raw_stack("prod")


def errors(raw: dict, mutate) -> list[str]:
    return [e for e in config_errors(raw, mutate, "prod") if e.startswith("aicloud:monitoring")]


def test_the_shipped_prod_monitoring_section_is_valid(prod_raw):
    spec = parse_stack_config(prod_raw, "prod").monitoring
    assert spec is not None and spec.retraining is not None
    assert spec.retention == "30d" and spec.retraining.job.pool == "retrain"


def test_bad_values_name_the_key_the_value_and_what_is_allowed(prod_raw):
    def mutate(raw):
        raw["monitoring"]["retention"] = "15days"
        raw["monitoring"]["alerts"]["errorRate"] = 2
        raw["monitoring"]["retraining"]["canaryPercent"] = 80

    found = errors(prod_raw, mutate)
    assert any(e.startswith("aicloud:monitoring.retention:") and "'15days'" in e for e in found), found
    assert any(e.startswith("aicloud:monitoring.alerts.errorRate:") and "less than 1" in e for e in found), found
    assert any(e.startswith("aicloud:monitoring.retraining.canaryPercent:") and "50" in e for e in found), found


def test_unknown_keys_are_errors(prod_raw):
    found = errors(prod_raw, lambda raw: raw["monitoring"]["alerts"].update(latencyP95Seconds=1))
    assert found == [
        "aicloud:monitoring.alerts.latencyP95Seconds: unknown key (check the spelling; keys are camelCase)"
    ]


def test_retraining_needs_serving_and_storage(prod_raw):
    def mutate(raw):
        del raw["serving"]
        del raw["storage"]

    found = errors(prod_raw, mutate)
    assert any("retraining needs aicloud:serving" in e for e in found), found
    assert any("retraining needs aicloud:storage" in e for e in found), found


def test_the_retraining_job_must_fit_every_primary_region(prod_raw):
    found = errors(prod_raw, lambda raw: raw["monitoring"]["retraining"]["job"].update(pool="train-spot"))
    # aws-use1 has a train-spot pool, gcp-usc1 has not.
    assert any("region 'gcp-usc1' has no node pool 'train-spot'" in e for e in found), found
    found = errors(prod_raw, lambda raw: raw["monitoring"]["retraining"]["job"].update(pool="system"))
    assert any("has no GPUs" in e for e in found), found


def test_planted_retraining_on_an_operator_nobody_installs_is_refused(prod_raw):
    """Retraining with PyTorchJobs where no v1 operator exists (it has no chart to install)."""
    found = errors(prod_raw, lambda raw: raw["monitoring"]["retraining"]["job"].update(backend="pytorchjob"))
    assert len(found) == 1 and found[0].startswith("aicloud:monitoring.retraining.job.backend: pytorchjob needs")

    def preinstalled(raw):
        raw["monitoring"]["retraining"]["job"].update(backend="pytorchjob")
        raw["training"]["operator"] = "preinstalled"

    raw = copy.deepcopy(prod_raw)
    preinstalled(raw)
    assert parse_stack_config(raw, "prod").monitoring.retraining.job.backend == "pytorchjob"


def test_the_pipeline_owns_data_and_export_overrides(prod_raw):
    found = errors(
        prod_raw, lambda raw: raw["monitoring"]["retraining"]["job"]["overrides"].update({"data.uri": "s3://x"})
    )
    assert any("data.uri" in e and "set by the retraining pipeline" in e for e in found), found


@pytest.fixture(scope="module")
def prod():
    return run_plan("prod")


def test_prod_monitors_every_cluster_and_retrains_in_each_clouds_primary_region(prod):
    plan = prod
    clusters = {out["region"] for _, out in plan.component_outputs(MONITORING_TYPE)}
    assert clusters == {r.name for r in plan.config.regions}
    retrain = {out["region"]: out for _, out in plan.component_outputs(RETRAINING_TYPE)}
    assert set(retrain) == {"aws-use1", "gcp-usc1"}
    assert retrain["aws-use1"]["decisions"].startswith("s3://") and retrain["gcp-usc1"]["decisions"].startswith("gs://")
    for reg, _ in plan.component_outputs(RETRAINING_TYPE):
        assert plan.region_of(reg) == reg.outputs["region"]


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_dev_and_staging_have_monitoring_and_no_retraining(stack):
    _, config = load_stack(stack)
    assert config.monitoring is not None and config.monitoring.retraining is None


def test_the_plan_has_a_monitoring_section(prod):
    section = build_sections(prod)["monitoring"]
    assert [row[0] for row in section["rows"]] == [r.name for r in prod.config.regions]
    # The coordinator where it trains; an agent (drift source, rollout target) in every serving region.
    cells = {row[0]: row[-1] for row in section["rows"]}
    assert cells["aws-use1"].startswith("coordinator `*/30 * * * *` -> retrain; agent -> manual")
    assert (
        cells["aws-usw2"]
        == cells["aws-euw1"]
        == cells["gcp-euw4"]
        == "agent -> manual (blue-green has no weighted canary)"
    )
    notes = " ".join(section["notes"])
    assert "AicloudServingLatencyHigh > 0.25" in notes and "AicloudFeatureDrift > 0.2" in notes
    assert "Retraining coordinated from aws-use1" in notes and "Retraining coordinated from gcp-usc1" in notes
    assert "agents in aws-use1, aws-usw2, aws-euw1" in notes and "agents in gcp-usc1, gcp-euw4" in notes
    for key in ("aws-use1", "aws-usw2", "aws-euw1", "gcp-usc1", "gcp-euw4"):
        assert f"Retraining agent in {key} " in notes and f"/decisions/regions/{key}/" in notes
