"""The whole pack over real plans: the shipped stacks pass every mandatory rule, and a stack with
planted violations (tests/policies/Pulumi.planted.yaml) has every one of them reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies.common import StackView
from policies.config import pack_config, parse_overrides, resolve
from policies.registry import BY_NAME, RULES
from stacks.cli import main
from stacks.plan import run_plan
from stacks.plan.policy import evaluate, policy_resources

HERE = Path(__file__).parent

PLANTED = {
    "aicloud-data-protected-in-prod": {"aws-use1-cluster-secrets-key", "aws-euw1-cluster-secrets-key"},
    "aicloud-region-allowed": {"aws-aws-euw1"},
    "aicloud-cluster-deletion-protected-in-prod": {"aws-euw1-cluster-eks"},
    "aicloud-gpu-cost-ceiling": {None},
    # Pools without a floor are Karpenter NodePools only (the default EKS autoscaler).
    "aicloud-gpus-per-pool-ceiling": {"aws-use1-train-nodepool"},
    "aws-eks-cluster-disallow-public-endpoint": {"aws-use1-cluster-eks"},
    "aicloud-spot-interruptible-in-prod": {"aws-use1-batch-nodepool"},
    "aicloud-deployer-reaches-cluster-api": {"aws-euw1-cluster-eks"},
    # The same private cluster, and the pull-request preview runs on the same (hosted) runner.
    "aicloud-preview-reaches-cluster-api": {"aws-euw1-cluster-eks"},
    "aicloud-gpu-capacity-guaranteed-in-prod": {"aws-use1-train-nodepool"},
    "aicloud-gpu-device-plugin-selects-pools": {"aws-use1-nvidia-device-plugin-release"},
    "aicloud-gpu-request-on-gpu-pool": {"aws-euw1-classifier-deploy-stable"},
    "gcp-container-cluster-disallow-public-endpoint": {"gcp-usc1-cluster-gke"},
    "aicloud-inference-min-replicas": {
        "aws-use1-classifier-deploy-stable",
        "aws-euw1-classifier-deploy-stable",
        "gcp-usc1-classifier-deploy-stable",
    },
}
"""Rule -> the resources it must name (None: a stack-wide finding), one entry per planted violation."""


@pytest.fixture(scope="module")
def planted():
    return run_plan("planted", HERE, policies=False)


@pytest.fixture(scope="module", params=["dev", "staging", "prod"])
def shipped(request):
    return run_plan(request.param)


def test_shipped_stacks_have_no_mandatory_violation(shipped):
    mandatory = [f"{f['policy']} on {f['name']}: {f['message']}" for f in shipped.findings if f["level"] == "mandatory"]
    assert mandatory == []


def test_the_pack_sees_what_it_judges_in_prod(shipped):
    """Not vacuous: prod has GPU pools, GPU workloads and inference endpoints the rules look at."""
    if shipped.stack != "prod":
        pytest.skip("prod only")
    from policies.availability import endpoints
    from policies.common import pools
    from policies.gpu import _gpu_pods

    view = StackView([res for _, res in policy_resources(shipped)])
    assert sum(p.is_gpu for p in pools(view)) >= 5
    assert len(list(_gpu_pods(view))) >= 5
    assert len(list(endpoints(view))) >= 5


def test_every_planted_violation_is_reported(planted):
    findings = evaluate(planted)
    reported: dict[str, set[str | None]] = {}
    for f in findings:
        reported.setdefault(f["policy"], set()).add(f["name"])
    assert reported == PLANTED
    assert len(PLANTED) >= 10
    assert {f["level"] for f in findings} == {"mandatory"}


def test_enforcement_levels_come_from_stack_and_command_line(planted):
    advisory = evaluate(planted, parse_overrides(["aicloud-gpu-cost-ceiling=advisory"]))
    levels = {f["policy"]: f["level"] for f in advisory}
    assert levels["aicloud-gpu-cost-ceiling"] == "advisory"
    assert levels["aicloud-region-allowed"] == "mandatory"
    assert evaluate(planted, parse_overrides(["disabled"])) == []
    only_regions = evaluate(planted, parse_overrides(["disabled", "aicloud-region-allowed=mandatory"]))
    assert [f["policy"] for f in only_regions] == ["aicloud-region-allowed"]


def test_every_rule_is_mandatory_by_default_unless_listed_advisory_with_a_reason():
    from contracts.guardrails import ADVISORY_BY_DEFAULT

    levels = {rule.name: rule.level.value for rule in RULES}
    assert {n for n, lvl in levels.items() if lvl != "mandatory"} == set(ADVISORY_BY_DEFAULT)
    assert {levels[n] for n in ADVISORY_BY_DEFAULT} == {"advisory"}
    assert all(len(reason) > 40 for reason in ADVISORY_BY_DEFAULT.values())


def test_capacity_guardrail_is_advisory_by_default_and_mandatory_in_prod(planted):
    from policies.capacity import guaranteed_capacity
    from policies.config import PolicySpec

    rule = "aicloud-gpu-capacity-guaranteed-in-prod"
    assert BY_NAME[rule].level.value == "advisory"
    assert {env: resolve(BY_NAME[rule], pack_config(env))[0] for env in ("dev", "staging", "prod")} == {
        "dev": "advisory",
        "staging": "advisory",
        "prod": "mandatory",
    }
    # A prod stack may still lower it on purpose; the environment's level comes before the stack's.
    lowered = pack_config("prod", PolicySpec(enforcement={rule: "advisory"}))
    assert resolve(BY_NAME[rule], lowered)[0] == "advisory"
    # The rule judges any stack (the level, not the rule, depends on the environment): the planted
    # H100 training pool without a reserved tier is reported; in the planted prod stack, as mandatory.
    view = StackView([res for _, res in policy_resources(planted)])
    found: list[str] = []
    guaranteed_capacity(view, {}, lambda message, urn=None: found.append(message))
    assert found and "has no capacity chain" in found[0]
    assert {f["level"] for f in evaluate(planted) if f["policy"] == rule} == {"mandatory"}


def test_bad_enforcement_override_names_the_choices():
    with pytest.raises(ValueError, match="unknown rule 'no-such-rule'"):
        parse_overrides(["no-such-rule=advisory"])
    with pytest.raises(ValueError, match="level must be one of advisory, mandatory, remediate, disabled"):
        parse_overrides(["aicloud-gpu-cost-ceiling=warn"])


def test_pack_config_carries_the_policy_section(planted, capsys):
    config = pack_config(planted.config.environment, planted.config.policy)
    assert set(config) == set(BY_NAME)
    assert config["aicloud-region-allowed"] == {
        "enforcementLevel": "mandatory",
        "allowedRegions": ["us-east-1", "us-central1"],
    }
    assert config["aicloud-gpu-cost-ceiling"]["maxGpuCostPerHour"] == 100
    assert config["aicloud-data-protected-in-prod"]["environment"] == "prod"
    from policies.config import main as config_main

    assert config_main(["planted", "--stacks-dir", str(HERE)]) == 0
    assert json.loads(capsys.readouterr().out) == config
    level, props = resolve(BY_NAME["aicloud-gpus-per-pool-ceiling"], {"all": "advisory", **config})
    assert (level, props) == ("mandatory", {"maxGpusPerPool": 16})
    level, _ = resolve(BY_NAME["aicloud-gpus-per-pool-ceiling"], {"all": {"enforcementLevel": "advisory"}})
    assert level == "advisory"


def test_rule_names_are_unique_described_and_documented():
    assert len(BY_NAME) == len(RULES) >= 30
    readme = (HERE.parents[1] / "policies" / "README.md").read_text()
    for rule in RULES:
        assert rule.description.endswith("."), rule.name
        areas = {"security", "data-safety", "gpu", "placement", "cost", "availability", "readiness", "platform"}
        assert rule.area in areas
        assert f"| `{rule.name}` |" in readme, f"{rule.name} is missing from policies/README.md"


def test_plan_command_fails_on_mandatory_violations(capsys):
    args = ["plan", "planted", "--stacks-dir", str(HERE), "--summary"]
    assert main(args) == 1
    out = capsys.readouterr()
    assert "aicloud-region-allowed" in out.out
    assert "mandatory policy violation(s)" in out.err


def test_plan_command_writes_the_review_against_an_older_plan(planted, tmp_path, capsys):
    """--enforcement lets it pass; --against, --markdown and --diagram write the review's parts."""
    old = planted.to_json()
    group = next(r for r in old["resources"] if r["name"] == "aws-use1-serve-ng")
    group["inputs"]["instanceTypes"] = ["g5.xlarge"]  # the PR moves the pool to g6e: a replacement
    (tmp_path / "old.json").write_text(json.dumps(old))
    review, diagram = tmp_path / "planted.md", tmp_path / "planted.svg"
    args = ["plan", "planted", "--stacks-dir", str(HERE), "--summary", "--enforcement", "advisory"]
    args += ["--against", str(tmp_path / "old.json"), "--markdown", str(review), "--diagram", str(diagram)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 added, 0 removed, 0 changed, 1 replaced, 0 renamed" in out
    assert "instanceTypes" in out
    page = review.read_text()
    assert "### Changes against `planted` base plan" in page and "**replaced**: instanceTypes" in page
    assert "| ⚠️ 1 | `aicloud-region-allowed` | placement | advisory |" in page
    assert diagram.read_text().startswith("<svg")
