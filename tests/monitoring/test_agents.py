"""The retraining agents as infrastructure: the RetrainingAgent component under the mock engine
(its CronJob, its Role limited to the region's canary objects by name, its settings as the agent
loads them), and the shipped prod stack planned whole: an agent in every serving region with an
identity its cloud trusts, grants scoped to its region's prefix of the decision log, and a
coordinator whose settings cover exactly the serving regions of its cloud. A prod variant with a
canary release shows each region's Role naming its own endpoint objects."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import boto3
import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from components.identity import API_ACCESS, API_USERS
from components.lakehouse.documents import gcs_prefix_condition, s3_prefix_policy
from components.lakehouse.gcs_roles import missing, role_permissions, roles_for
from components.retraining import AGENT_SERVICE_ACCOUNT, RetrainingAgent, agent_grants, agent_prefix_key
from contracts.retrain import AgentSettings, Settings
from stacks.plan import run_plan
from stacks.steps.monitoring import AGENT_TYPE, RETRAINING_TYPE, retraining_coverage
from tests.monitoring.specs import TRAINER, aws_region, retraining, serving
from tests.monitoring.test_components import assert_valid
from tests.s3_iam import outcomes, role_session

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
CRON = "kubernetes:batch/v1:CronJob"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"


def agent(strategy="canary", *, backend="deployment", identity=None):
    provider = k8s.Provider("k8s-aws-usw2")
    RetrainingAgent(
        "aws-usw2-retrain-agent",
        retraining(),
        serving=serving(strategy, backend=backend),
        region=aws_region(name="aws-usw2", region="us-west-2", primary=False),
        coordinator="aws-use1",
        trainer_image=TRAINER,
        decisions_uri=pulumi.Output.from_input("s3://acme-models/clf/retrain/decisions"),
        identity=identity,
        opts=pulumi.ResourceOptions(providers=[provider]),
    )


def pod_of(cron) -> dict:
    return cron.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_the_agent_is_a_cronjob_of_the_trainer_image_running_the_agent_tick(record):
    regs = record(agent)
    cron = regs.one(CRON)
    pod = pod_of(cron)
    [container] = pod["containers"]
    assert container["image"] == TRAINER
    assert container["command"] == ["python", "-m", "workloads.retrain"]
    assert container["args"] == ["agent", "--settings", "/etc/aicloud-retrain/settings.json"]
    assert pod["serviceAccountName"] == AGENT_SERVICE_ACCOUNT and pod["automountServiceAccountToken"] is True
    assert cron.inputs["spec"]["concurrencyPolicy"] == "Forbid"
    # The monitoring namespace admits Prometheus queries from pods with the trigger's name label.
    assert cron.inputs["metadata"]["labels"]["app.kubernetes.io/name"] == "aicloud-retrain"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_the_agents_role_patches_its_regions_canary_objects_by_name_only(record):
    regs = record(agent)
    [role] = regs.of_type(ROLE)
    assert role.inputs["metadata"]["namespace"] == "aicloud-serving"
    assert sorted(role.inputs["rules"], key=lambda r: r["resources"]) == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["clf-canary"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["httproutes"],
            "resourceNames": ["clf"],
            "verbs": ["get", "patch"],
        },
    ]
    [binding] = regs.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    assert binding.inputs["subjects"] == [
        {"kind": "ServiceAccount", "name": AGENT_SERVICE_ACCOUNT, "namespace": "aicloud-training"}
    ]


def test_the_kserve_agent_names_the_inference_service(record):
    [role] = record(lambda: agent(backend="kserve")).of_type(ROLE)
    assert role.inputs["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "resourceNames": ["clf"],
            "verbs": ["get", "patch"],
        }
    ]


def test_without_a_canary_the_agent_has_no_role_and_mounts_no_token(record):
    regs = record(lambda: agent("blue-green"))
    assert regs.of_type(ROLE) == []
    pod = pod_of(regs.one(CRON))
    assert pod["automountServiceAccountToken"] is False
    assert regs.one(AGENT_TYPE).outputs["rollout"].startswith("manual")
    # Without an identity the agent creates its ServiceAccount: it mounts no token either.
    [sa] = regs.of_type(SERVICE_ACCOUNT)
    assert sa.inputs["automountServiceAccountToken"] is False
    assert API_ACCESS not in (sa.inputs["metadata"].get("annotations") or {})


def test_with_a_canary_the_agents_own_service_account_says_why_it_mounts_a_token(record):
    [sa] = record(agent).of_type(SERVICE_ACCOUNT)
    assert sa.inputs["automountServiceAccountToken"] is True
    assert sa.inputs["metadata"]["annotations"] == {API_ACCESS: API_USERS["retrain-agent"]}


def test_the_agent_settings_configmap_is_what_the_agent_loads(record):
    regs = record(agent)
    [cm] = [m for m in regs.of_type(CONFIG_MAP) if m.inputs["metadata"]["name"] == "retrain-clf-agent-settings"]
    doc = json.loads(cm.inputs["data"]["settings.json"])
    settings = AgentSettings.from_json(doc)
    assert settings.to_json() == doc, "the rendered settings round-trip through the contract"
    assert settings.region == "aws-usw2" and settings.prometheus_url.startswith("http://prometheus-operated.monitoring")
    assert settings.decisions_uri == "s3://acme-models/clf/retrain/decisions"
    assert settings.canary is not None and settings.canary.read.kind == "HTTPRoute"
    assert 'model="clf"' in settings.samples_query and ">= 500" in settings.samples_query
    volumes = pod_of(regs.one(CRON))["volumes"]
    assert {"name": "settings", "configMap": {"name": "retrain-clf-agent-settings"}} in volumes
    assert regs.one(AGENT_TYPE).outputs["prefix"] == "s3://acme-models/clf/retrain/decisions/regions/aws-usw2/"


@pytest.mark.parametrize(
    "strategy,backend", [("canary", "deployment"), ("canary", "kserve"), ("blue-green", "deployment")]
)
def test_agent_objects_pass_strict_schema_validation(record, strategy, backend):
    assert_valid(record(lambda: agent(strategy, backend=backend)))


# ------------------------------------------------------------------------------- grants


def test_an_agents_s3_grants_stop_at_its_prefix():
    grants = [{**g, "bucket_arn": f"arn:aws:s3:::{g['zone']}"} for g in agent_grants("clf", "aws-usw2")]
    policy = s3_prefix_policy(grants, {"us-east-1": "arn:aws:kms:us-east-1:1:key/a"})
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["CreateObjects"]["Action"] == ["s3:PutObject"], "never delete or overwrite-by-delete"
    assert by_sid["CreateObjects"]["Resource"] == ["arn:aws:s3:::models/clf/retrain/decisions/regions/aws-usw2/*"]
    assert by_sid["ReadPrefixes"]["Resource"] == [
        "arn:aws:s3:::models/clf/retrain/decisions/regions/aws-usw2/*",
        "arn:aws:s3:::models-copy/clf/retrain/rt-clf-*",
    ]
    assert by_sid["ListPrefix0"]["Condition"] == {
        "StringLike": {
            "s3:prefix": ["clf/retrain/decisions/regions/aws-usw2/", "clf/retrain/decisions/regions/aws-usw2/*"]
        }
    }
    text = json.dumps(policy)
    assert "aws-use1" not in text and '"*"' not in text and "s3:DeleteObject" not in text
    with pytest.raises(ValueError, match="allowed: read, create"):
        s3_prefix_policy([{**grants[0], "access": "write"}], {})
    with pytest.raises(ValueError, match="prefix"):
        s3_prefix_policy([{**grants[0], "prefix": "clf/*"}], {})


def test_an_agents_gcs_roles_are_computed_from_the_vendored_permission_lists():
    own, candidates = roles_for("retrain-agent-own-prefix"), roles_for("retrain-agent-candidates")
    assert not missing(own, frozenset({"storage.objects.create", "storage.objects.get", "storage.objects.list"}))
    assert not any("storage.objects.delete" in role_permissions(r) for r in (*own, *candidates))
    assert not any(r.startswith("roles/storage.legacy") for r in (*own, *candidates))
    condition = gcs_prefix_condition("b", agent_prefix_key("clf", "gcp-euw4"), listing=True)
    prefix = "clf/retrain/decisions/regions/gcp-euw4/"
    assert condition["expression"] == (
        f'resource.name.startsWith("projects/_/buckets/b/objects/{prefix}") || '
        f'api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("{prefix}")'
    )


# ------------------------------------------------------------------------------ stacks


@pytest.fixture(scope="module")
def prod():
    return run_plan("prod", policies=False)


def serving_regions(plan, cloud=None):
    return [r.name for r in plan.config.regions if r.serving and (cloud is None or r.cloud == cloud)]


def test_prod_has_an_agent_in_every_serving_region_and_the_coordinators_cover_them_all(prod):
    agents = {out["region"]: out for _, out in prod.component_outputs(AGENT_TYPE)}
    assert sorted(agents) == sorted(serving_regions(prod))
    for reg, out in prod.component_outputs(AGENT_TYPE):
        assert prod.region_of(reg) == out["region"], "each agent runs in its own region's cluster"
        coordinator = prod.config.primary(prod.config.region(out["region"]).cloud).name
        assert out["coordinator"] == coordinator
        assert out["prefix"].endswith(f"/classifier/retrain/decisions/regions/{out['region']}/")
    coordinators = {out["region"]: out for _, out in prod.component_outputs(RETRAINING_TYPE)}
    for key, out in coordinators.items():
        cloud = prod.config.region(key).cloud
        assert out["regions"] == serving_regions(prod, cloud)
    covered = sum(len(o["regions"]) for o in coordinators.values())
    assert covered == len(serving_regions(prod)) == 5
    cover = retraining_coverage(prod)
    assert cover is not None and cover["covered"] == serving_regions(prod) and cover["missing"] == []


def test_the_coverage_figure_names_a_serving_region_left_without_an_agent(prod):
    from stacks.plan.model import Plan

    without = [r for r in prod.resources if not (r.type == AGENT_TYPE and r.outputs.get("region") == "aws-euw1")]
    cover = retraining_coverage(Plan(stack=prod.stack, config=prod.config, resources=without))
    assert cover is not None and cover["missing"] == ["aws-euw1"] and len(cover["covered"]) == 4


def test_prod_coordinator_settings_round_trip_and_name_every_regions_copy(prod):
    for reg in prod.resources:
        if reg.type == CONFIG_MAP and reg.inputs["metadata"]["name"] == "retrain-classifier-settings":
            doc = json.loads(reg.inputs["data"]["settings.json"])
            settings = Settings.from_json(doc)
            assert Settings.from_json(settings.to_json()) == settings
            key = prod.region_of(reg)
            cloud = prod.config.region(key).cloud
            assert [t.region for t in settings.regions] == serving_regions(prod, cloud)
            assert all(not t.canary for t in settings.regions), "prod is blue-green"
            replicas = {t.region: t.candidate_uri for t in settings.regions}
            for region, uri in replicas.items():
                # A region with a models replica reads candidates from it; the primary from its lakehouse.
                assert ("replica" in uri) == (region != key), (region, uri)


def test_prod_agents_have_identities_their_clusters_trust(prod):
    for key in serving_regions(prod):
        sa = next(
            r
            for r in prod.resources
            if r.type == "kubernetes:core/v1:ServiceAccount" and r.name == f"{key}-retrain-agent-sa"
        )
        assert prod.region_of(sa) == key
        assert sa.inputs["metadata"]["namespace"] == "aicloud-training"
        if key.startswith("aws"):
            role = next(
                r for r in prod.resources if r.type == "aws:iam/role:Role" and r.name == f"{key}-retrain-agent-role"
            )
            trust = json.loads(role.inputs["assumeRolePolicy"])
            [statement] = trust["Statement"]
            assert f"{key}-cluster-oidc" in statement["Principal"]["Federated"], "this region's cluster OIDC provider"
            assert "system:serviceaccount:aicloud-training:aicloud-retrain-agent" in json.dumps(statement["Condition"])
            policy = next(
                r
                for r in prod.resources
                if r.type == "aws:iam/rolePolicy:RolePolicy" and r.name == f"{key}-retrain-agent-storage"
            )
            doc = json.loads(policy.inputs["policy"])
            writes = next(s for s in doc["Statement"] if s["Sid"] == "CreateObjects")["Resource"]
            assert writes == [f"${{aws-use1-lake-models.arn}}/classifier/retrain/decisions/regions/{key}/*"]
        else:
            grants = [
                r
                for r in prod.resources
                if r.type == "gcp:storage/bucketIAMMember:BucketIAMMember"
                and r.name.startswith(f"{key}-retrain-agent-")
            ]
            assert grants and all(g.inputs.get("condition") for g in grants), "every GCS grant is prefix-conditioned"
            creator = [g for g in grants if g.inputs["role"] == "roles/storage.objectCreator"]
            assert [g.inputs["bucket"] for g in creator] == ["${gcp-usc1-lake-models.name}"]
            assert (
                f"/objects/classifier/retrain/decisions/regions/{key}/" in creator[0].inputs["condition"]["expression"]
            )


def test_readiness_passes_the_agents_identities_and_reports_a_planted_wrong_trust(prod):
    from stacks.plan.model import Plan
    from stacks.plan.policy import evaluate

    def identity_findings(plan):
        return [f for f in evaluate(plan, {"all": "advisory"}) if f["policy"] == "readiness-identity"]

    assert identity_findings(prod) == []
    # Planted: aws-usw2's agent role trusts the coordinator's ServiceAccount instead of the agent's.
    resources = []
    for reg in prod.resources:
        if reg.type == "aws:iam/role:Role" and reg.name == "aws-usw2-retrain-agent-role":
            wrong = reg.inputs["assumeRolePolicy"].replace(
                "aicloud-training:aicloud-retrain-agent", "aicloud-training:aicloud-retrain"
            )
            reg = dataclasses.replace(
                reg,
                inputs={**reg.inputs, "assumeRolePolicy": wrong},
                outputs={**reg.outputs, "assumeRolePolicy": wrong},
            )
        resources.append(reg)
    found = identity_findings(Plan(stack=prod.stack, config=prod.config, resources=resources))
    assert found and all("aws-usw2" in (f["message"] + str(f["name"])) for f in found), found
    assert any("aicloud-retrain-agent" in f["message"] for f in found), found


@pytest.fixture(scope="module")
def prod_canary(tmp_path_factory):
    """prod with a 10 % canary release (through an Istio gateway) instead of blue-green."""
    doc = yaml.safe_load((STACKS_DIR / "Pulumi.prod.yaml").read_text())
    srv = doc["config"]["aicloud:serving"]
    srv["gateway"] = {"className": "istio"}
    srv["release"] = {
        "strategy": "canary",
        "maxSurge": 1,
        "maxUnavailable": 0,
        "canary": {"modelUri": "lake://models/classifier/v8", "weights": {"stable": 100, "canary": 0}, "replicas": 1},
    }
    tmp = tmp_path_factory.mktemp("prodcanary")
    (tmp / "Pulumi.prodcanary.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return run_plan("prodcanary", tmp, policies=False)


def test_with_a_canary_each_regions_agent_may_patch_only_its_own_endpoint(prod_canary):
    plan = prod_canary
    roles = {
        plan.region_of(r): r.inputs
        for r in plan.resources
        if r.type == ROLE and r.inputs["metadata"]["name"] == "retrain-classifier-agent"
    }
    assert sorted(roles) == sorted(serving_regions(plan))
    for key, role in roles.items():
        assert role["metadata"]["namespace"] == plan.config.serving.namespace
        names = sorted(n for rule in role["rules"] for n in rule["resourceNames"])
        assert names == ["classifier", "classifier-canary"], key
        assert all(rule["verbs"] == ["get", "patch"] for rule in role["rules"])
    # The coordinators no longer patch anything: their Roles stay in the training namespace.
    for r in plan.resources:
        if r.type == ROLE and r.inputs["metadata"]["name"] == "retrain-classifier":
            assert r.inputs["metadata"]["namespace"] == "aicloud-training"
    agents = {out["region"]: out for _, out in plan.component_outputs(AGENT_TYPE)}
    assert all(out["canary"] and out["rollout"].startswith("canary") for out in agents.values())
    for reg in plan.resources:
        if reg.type == CONFIG_MAP and reg.inputs["metadata"]["name"] == "retrain-classifier-agent-settings":
            settings = AgentSettings.from_json(json.loads(reg.inputs["data"]["settings.json"]))
            assert settings.region == plan.region_of(reg)
            assert settings.canary is not None and settings.canary.read.name == "classifier"


def _agent_service_accounts(plan) -> dict[str, dict]:
    return {
        plan.region_of(r): r.inputs
        for r in plan.resources
        if r.type == SERVICE_ACCOUNT and r.name.endswith("-retrain-agent-sa")
    }


def _agent_pods(plan) -> dict[str, dict]:
    return {
        plan.region_of(r): pod_of(r)
        for r in plan.resources
        if r.type == CRON and r.inputs["metadata"]["name"] == "retrain-classifier-agent"
    }


def test_an_agents_identity_mounts_a_token_only_where_it_patches_a_canary(prod, prod_canary):
    """prod is blue-green: no agent calls the Kubernetes API, so no agent's ServiceAccount (the
    identity component's, on EKS and GKE alike) mounts a token or claims API access; with a canary
    release every agent's does, saying why."""
    for plan, calls in ((prod, False), (prod_canary, True)):
        accounts, pods = _agent_service_accounts(plan), _agent_pods(plan)
        assert sorted(accounts) == sorted(pods) == sorted(serving_regions(plan))
        for key, sa in accounts.items():
            annotations = sa["metadata"].get("annotations") or {}
            assert sa["automountServiceAccountToken"] is calls, (plan.stack, key)
            assert pods[key]["automountServiceAccountToken"] is calls, (plan.stack, key)
            assert annotations.get(API_ACCESS) == (API_USERS["retrain-agent"] if calls else None), (plan.stack, key)
    # The coordinators call the API in both (they launch training jobs).
    for plan in (prod, prod_canary):
        for r in plan.resources:
            if r.type == SERVICE_ACCOUNT and r.name.endswith("-retrain-sa"):
                assert r.inputs["automountServiceAccountToken"] is True


def test_a_bad_stage_or_report_window_fails_at_plan_time_naming_the_key():
    from tests.stack_helpers import config_errors, raw_stack

    def mutate(raw):
        raw["monitoring"]["retraining"]["reportMaxAgeMinutes"] = 0
        raw["monitoring"]["retraining"]["stageMinutes"] = -5

    found = config_errors(raw_stack("prod"), mutate, "prod")
    assert any(e.startswith("aicloud:monitoring.retraining.reportMaxAgeMinutes:") and "0" in e for e in found), found
    assert any(e.startswith("aicloud:monitoring.retraining.stageMinutes:") and "-5" in e for e in found), found


@set_initial_no_auth_action_count(6)
def _as_agent(policy: dict) -> dict[str, str]:
    """Call S3 as a role holding `policy` (moto evaluates the role's policy on every call)."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    s3.create_bucket(Bucket="models-copy")
    s3.put_object(Bucket="models-copy", Key="clf/retrain/rt-clf-2611251230/manifest.json", Body=b"{}")
    s = role_session("agent", inline=[policy]).client("s3")
    own = "clf/retrain/decisions/regions/aws-usw2/"
    calls = {
        "put own report": lambda: s.put_object(Bucket="models", Key=f"{own}drift/r.json", Body=b"{}"),
        "read own report": lambda: s.get_object(Bucket="models", Key=f"{own}drift/r.json"),
        "list own instructions": lambda: s.list_objects_v2(Bucket="models", Prefix=f"{own}rollout/"),
        "put another region's": lambda: s.put_object(
            Bucket="models", Key="clf/retrain/decisions/regions/aws-use1/canary/x.json", Body=b"{}"
        ),
        "put a coordinator decision": lambda: s.put_object(
            Bucket="models", Key="clf/retrain/decisions/20261125T120000Z-x.json", Body=b"{}"
        ),
        "delete own report": lambda: s.delete_object(Bucket="models", Key=f"{own}drift/r.json"),
        "read a candidate": lambda: s.get_object(
            Bucket="models-copy", Key="clf/retrain/rt-clf-2611251230/manifest.json"
        ),
        "write a candidate": lambda: s.put_object(
            Bucket="models-copy", Key="clf/retrain/rt-clf-2611251230/model.pt", Body=b"x"
        ),
        "read the served model": lambda: s.get_object(Bucket="models-copy", Key="clf/v7/manifest.json"),
    }
    return outcomes(calls)


def test_moto_lets_an_agent_touch_its_regions_prefix_and_candidates_only(monkeypatch):
    """moto evaluates actions and resources (it does not evaluate the `s3:prefix` condition of
    ListBucket: that statement is checked as written in the test above)."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    grants = [{**g, "bucket_arn": f"arn:aws:s3:::{g['zone']}"} for g in agent_grants("clf", "aws-usw2")]
    with mock_aws():
        result = _as_agent(s3_prefix_policy(grants, {}))
    assert result == {
        "put own report": "allowed",
        "read own report": "allowed",
        "list own instructions": "allowed",
        "put another region's": "AccessDenied",
        "put a coordinator decision": "AccessDenied",
        "delete own report": "AccessDenied",
        "read a candidate": "allowed",
        "write a candidate": "AccessDenied",
        "read the served model": "AccessDenied",
    }


def test_the_monitoring_namespace_admits_the_agents_prometheus_queries(record):
    """The agent reads its region's Prometheus: the monitoring namespace's explicit allow must
    select the agent's pods (namespace and labels) on Prometheus' port. Planted: pods without the
    trigger's name label are not selected."""
    from components.k8s_security import NAMESPACE_NAME_LABEL
    from components.monitoring import MONITORING_ALLOWS

    pod_labels = record(agent).one(CRON).inputs["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    allow = next(a for a in MONITORING_ALLOWS if a.name == "prometheus-queries")

    def admitted(namespace: str, labels: dict) -> bool:
        return any(
            peer["namespaceSelector"]["matchLabels"] == {NAMESPACE_NAME_LABEL: namespace}
            and all(labels.get(k) == v for k, v in peer.get("podSelector", {}).get("matchLabels", {}).items())
            for peer in allow.peers
        )

    assert (9090, "TCP") in allow.ports
    assert admitted("aicloud-training", pod_labels)
    assert not admitted("aicloud-training", {**pod_labels, "app.kubernetes.io/name": "something-else"})
    assert not admitted("aicloud-serving", pod_labels)
