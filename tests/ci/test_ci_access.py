"""`aicloud:ci`: the OIDC trust and the deploy / read-only preview identities, per environment.

The trust documents are checked as documents (exact subjects, no wildcard), accepted by moto's IAM
(which parses trust policies the way IAM does), and as created under the mock runtime.
"""

from __future__ import annotations

import json

import boto3
import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pytest
from moto import mock_aws

from components.ci import (
    AWS_VIEW_ONLY,
    CiAccess,
    CiSpec,
    aws_preview_policy,
    aws_trust_policy,
    gcp_attribute_condition,
    github_subject,
)
from tests.stack_helpers import config_errors, raw_stack

REPO = "ml-platform/aicloud"
PROVIDER_ARN = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"


def test_deploy_trust_admits_exactly_one_environment_of_one_repository():
    doc = aws_trust_policy(PROVIDER_ARN, REPO, "prod")
    (stmt,) = doc["Statement"]
    assert stmt["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert set(stmt["Condition"]) == {"StringEquals"}  # no StringLike: no wildcard subjects
    assert stmt["Condition"]["StringEquals"] == {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": "repo:ml-platform/aicloud:environment:prod",
    }
    assert "*" not in json.dumps(stmt["Condition"])


def test_preview_subject_is_not_the_deploy_subject():
    spec = CiSpec(repository=REPO)
    deploy, preview = spec.environments("prod")
    assert (deploy, preview) == ("prod", "preview-prod")
    assert github_subject(REPO, preview) != github_subject(REPO, deploy)


def test_trust_and_preview_policies_are_accepted_by_iam():
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        arn = iam.create_open_id_connect_provider(
            Url="https://token.actions.githubusercontent.com", ClientIDList=["sts.amazonaws.com"]
        )["OpenIDConnectProviderArn"]
        assert arn.endswith(":oidc-provider/token.actions.githubusercontent.com")
        iam.create_role(RoleName="deploy", AssumeRolePolicyDocument=json.dumps(aws_trust_policy(arn, REPO, "prod")))
        iam.create_role(
            RoleName="preview", AssumeRolePolicyDocument=json.dumps(aws_trust_policy(arn, REPO, "preview-prod"))
        )
        iam.create_policy(PolicyName="preview-invokes", PolicyDocument=json.dumps(aws_preview_policy()))
        got = iam.get_role(RoleName="preview")["Role"]["AssumeRolePolicyDocument"]
        assert got["Statement"][0]["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == (
            "repo:ml-platform/aicloud:environment:preview-prod"
        )


def test_preview_inline_policy_only_reads():
    actions = [a for s in aws_preview_policy()["Statement"] for a in s["Action"]]
    verbs = {a.split(":")[1] for a in actions}
    assert all(v.startswith(("Get", "Describe", "List")) for v in verbs), verbs


def test_gcp_provider_condition_pins_repository_and_both_environments():
    cond = gcp_attribute_condition(REPO, ["prod", "preview-prod"], "4242")
    assert cond == (
        "assertion.repository == 'ml-platform/aicloud' && assertion.environment in ['prod', 'preview-prod']"
        " && assertion.repository_owner_id == '4242'"
    )


def _build(spec: CiSpec, environment: str = "prod"):
    def program():
        aws_p = aws.Provider("aws-use1", region="us-east-1")
        gcp_p = gcp.Provider("gcp-usc1", project="aicloud-test", region="us-central1")
        CiAccess(
            "ci",
            spec,
            stack=environment,
            environment=environment,
            aws_provider=aws_p,
            gcp_provider=gcp_p,
            gcp_project="aicloud-test",
            opts=pulumi.ResourceOptions(),
        )

    return program


def test_component_creates_both_roles_with_their_own_subjects(record):
    regs = record(_build(CiSpec(repository=REPO)))
    roles = {r.name: json.loads(r.inputs["assumeRolePolicy"]) for r in regs.of_type("aws:iam/role:Role")}
    assert set(roles) == {"ci-deploy", "ci-preview"}
    sub = "token.actions.githubusercontent.com:sub"
    assert roles["ci-deploy"]["Statement"][0]["Condition"]["StringEquals"][sub].endswith(":environment:prod")
    assert roles["ci-preview"]["Statement"][0]["Condition"]["StringEquals"][sub].endswith(":environment:preview-prod")
    attached = {
        r.name: r.inputs["policyArn"] for r in regs.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert attached["ci-preview-policy-0"] == AWS_VIEW_ONLY
    assert regs.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs["clientIdLists"] == [
        "sts.amazonaws.com"
    ]


def test_component_binds_each_gcp_account_to_its_environment_only(record):
    regs = record(_build(CiSpec(repository=REPO)))
    provider = regs.one("gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
    assert "assertion.environment in ['prod', 'preview-prod']" in provider.inputs["attributeCondition"]
    members = {r.name: r.inputs["member"] for r in regs.of_type("gcp:serviceaccount/iAMMember:IAMMember")}
    assert members["ci-deploy-wif"].endswith("/attribute.environment/prod")
    assert members["ci-preview-wif"].endswith("/attribute.environment/preview-prod")
    roles = {r.name: r.inputs["role"] for r in regs.of_type("gcp:projects/iAMMember:IAMMember")}
    assert {v for k, v in roles.items() if k.startswith("ci-preview-")} == {"roles/viewer"}


def test_existing_oidc_provider_is_reused(record):
    spec = CiSpec.model_validate({"repository": REPO, "aws": {"existingOidcProviderArn": PROVIDER_ARN}})
    regs = record(_build(spec))
    assert regs.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    role = regs.one("aws:iam/role:Role", "ci-deploy")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"]["Federated"] == PROVIDER_ARN


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda r: r["ci"].update(aws={"previewPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}),
            "aicloud:ci.aws.previewPolicyArns: the preview role must stay read-only; remove "
            "arn:aws:iam::aws:policy/AdministratorAccess",
        ),
        (
            lambda r: r["ci"].update(gcp={"previewRoles": ["roles/editor"]}),
            "aicloud:ci.gcp.previewRoles: the preview service account must stay read-only",
        ),
        (
            lambda r: r["ci"].update(previewEnvironment="prod"),
            "aicloud:ci: the deploy and preview environments must differ (both 'prod')",
        ),
        (lambda r: r["ci"].update(repository="not a repo"), "aicloud:ci.repository: must be `owner/name`"),
    ],
)
def test_bad_ci_config_names_the_key(mutate, expected):
    errors = config_errors(raw_stack("prod"), mutate, "prod")
    assert any(e.startswith(expected) for e in errors), errors


def test_ci_for_a_cloud_the_stack_lacks_is_refused():
    errors = config_errors(raw_stack("dev"), lambda r: r["ci"].update(gcp={}), "dev")
    assert any("aicloud:ci.gcp: the stack has no gcp region to create it in" in e for e in errors), errors
