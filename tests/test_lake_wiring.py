"""The stacks wire the lakehouse into the workloads that use it:

- serving `modelUri: lake://models/...` resolves, per serving region, to the models bucket the
  server's identity may read (the region's replica or the primary), through a ConfigMap the
  endpoint's pods load (`AICLOUD_LAKE_MODELS`); the retraining loop resolves it to its own lake;
- the drift-to-retraining trigger runs as a workload identity of its own (reads features, appends
  to models), in the trainer's namespace, without a second Namespace object.
"""

from __future__ import annotations

import json

import pytest

from tests.endpoints.endpoint_helpers import stack_plan
from tests.stack_helpers import config_errors, raw_stack

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def _lake_config_maps(plan):
    return {plan.region_of(r): r for r in plan.of_type(CONFIG_MAP) if r.inputs["metadata"]["name"] == "aicloud-lake"}


@pytest.mark.parametrize("name", ["dev", "staging", "prod"])
def test_every_serving_region_resolves_lake_models_to_its_server_identitys_bucket(name):
    plan = stack_plan(name)
    serving = [r.name for r in plan.config.regions if r.serving]
    maps = _lake_config_maps(plan)
    assert sorted(maps) == sorted(serving)
    identities = {
        plan.region_of(r): out
        for t in ("aicloud:identity:EksWorkloadIdentity", "aicloud:identity:GkeWorkloadIdentity")
        for r, out in plan.component_outputs(t)
        if out["workload"] == "server"
    }
    for key, cm in maps.items():
        assert cm.inputs["metadata"]["namespace"] == identities[key]["namespace"]
        (uri,) = cm.inputs["data"].values()
        assert list(cm.inputs["data"]) == ["AICLOUD_LAKE_MODELS"]
        region = plan.config.region(key)
        # The bucket is named at create time: the plan shows the zone bucket's output, never a guess.
        assert uri.startswith("s3://${" if region.cloud == "aws" else "gs://${"), uri
        replica = any(key in targets for targets in plan.config.storage.replication.values())
        assert ("lake-replica-models" in uri) == replica, (key, uri)
    for dep in plan.of_type(DEPLOYMENT):
        if dep.inputs["metadata"]["namespace"] != plan.config.serving.namespace:
            continue
        (container,) = dep.inputs["spec"]["template"]["spec"]["containers"]
        assert container["args"][container["args"].index("--model") + 1].startswith("lake://models/classifier/")
        assert container["envFrom"] == [{"configMapRef": {"name": "aicloud-lake"}}]


def test_the_retraining_loop_runs_as_its_own_least_privilege_identity():
    plan = stack_plan("prod")
    retrain = {
        plan.region_of(r): (r, out)
        for t in ("aicloud:identity:EksWorkloadIdentity", "aicloud:identity:GkeWorkloadIdentity")
        for r, out in plan.component_outputs(t)
        if out["workload"] == "retrain"
    }
    assert sorted(retrain) == ["aws-use1", "gcp-usc1"]
    for key, (_reg, out) in retrain.items():
        assert out["namespace"] == "aicloud-training" and out["serviceAccount"] == "aicloud-retrain"
        assert out["zones"] == ["features", "models"]
        # One Namespace object per cluster for the trainer and the trigger.
        namespaces = [
            r for r in plan.of_type("kubernetes:core/v1:Namespace")
            if r.inputs["metadata"]["name"] == "aicloud-training" and plan.region_of(r) == key
        ]  # fmt: skip
        assert len(namespaces) == 1
    (role,) = [r for r in plan.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == "aws-use1-retrain-storage"]
    doc = json.loads(role.inputs["policy"])
    sids = {s["Sid"]: s for s in doc["Statement"]}
    assert [r.split("${")[1].split(".")[0] for r in sids["ReadObjects"]["Resource"]] == [
        "aws-use1-lake-features",
        "aws-use1-lake-models",
    ]
    assert [r.split("${")[1].split(".")[0] for r in sids["WriteObjects"]["Resource"]] == ["aws-use1-lake-models"]
    assert "ReadCatalog" not in sids
    # The trigger's CronJob uses that service account and no plain one is created beside it.
    # Beside it, the region's retraining agent (every serving region has one) runs as its own.
    for key in retrain:
        crons = {
            r.inputs["metadata"]["name"]: r
            for r in plan.of_type("kubernetes:batch/v1:CronJob")
            if plan.region_of(r) == key
        }
        assert sorted(crons) == ["retrain-classifier", "retrain-classifier-agent"]
        pod = crons["retrain-classifier"].inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "aicloud-retrain"
        agent_pod = crons["retrain-classifier-agent"].inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert agent_pod["serviceAccountName"] == "aicloud-retrain-agent"
        plain = [
            r for r in plan.of_type("kubernetes:core/v1:ServiceAccount")
            if plan.region_of(r) == key and r.inputs["metadata"]["name"] == "aicloud-retrain"
        ]  # fmt: skip
        assert len(plain) == 1 and plain[0].inputs["metadata"]["annotations"], plain


def test_the_retraining_settings_name_the_current_model_in_the_real_bucket():
    plan = stack_plan("prod")
    checked = 0
    for cm in plan.of_type(CONFIG_MAP):
        name = cm.inputs["metadata"]["name"]
        # The coordinators' settings (the regional agents' name no model: they only report and patch).
        if not name.startswith("retrain-") or name.endswith("-agent-settings"):
            continue
        settings = json.loads(cm.inputs["data"]["settings.json"])
        current = settings["currentModel"]
        assert current.startswith(("s3://${", "gs://${")) and current.endswith("/classifier/v7"), current
        checked += 1
    assert checked == 2


@pytest.fixture(scope="module")
def dev_raw() -> dict:
    return raw_stack("dev")


def _errors(raw: dict, mutate) -> list[str]:
    return config_errors(raw, mutate, "dev")


def test_a_lake_uri_outside_the_models_zone_is_rejected(dev_raw):
    found = _errors(dev_raw, lambda raw: raw["serving"].update(modelUri="lake://curated/classifier/v1"))
    assert any(
        e.startswith("aicloud:serving.modelUri:") and "models zone only" in e and "lake://curated/classifier/v1" in e
        for e in found
    ), found


def test_a_lake_uri_without_a_lakehouse_is_rejected(dev_raw):
    def mutate(raw):
        raw.pop("storage")

    found = _errors(dev_raw, mutate)
    assert any(
        e.startswith("aicloud:serving.modelUri:") and "add aicloud:storage" in e and "lake://models/classifier/v1" in e
        for e in found
    ), found
