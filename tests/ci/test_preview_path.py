"""The pull-request preview path: it reaches every cluster API, reads there, and writes nothing.

What `pulumi preview` needs from each cluster (pulumi-kubernetes 4.x, provider/pkg/provider/provider.go
at 94977969, and the issues cited in the README's Deploy path): a network path to the API and an
identity the cluster authenticates (else the provider marks the cluster unreachable and previews every
object without it, no error); discovery and OpenAPI reads (Check validates against the schema); and a
server-side dry-run per created or changed object, which Kubernetes authorizes like the write itself,
so a read-only identity is refused and the provider falls back to a client-side diff for that object.

The design under test: the preview job runs on `aicloud:deploy.previewRunsOn` (default `runsOn`),
self-hosted runners in the deploy network; the CI preview role gets an EKS access entry with
`AmazonEKSViewPolicy` only (GKE: roles/viewer); `aicloud-preview-reaches-cluster-api` reports a
cluster the preview cannot reach or read, or where its identity could write (each case planted).
The preview role's IAM side is evaluated by moto: no write the stack's deploy makes is permitted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count
from moto.iam.access_control import IAMPolicy, PermissionResult

from components.cluster import EKS_ADMIN_POLICY, EKS_VIEW_POLICY
from components.deploy import DeploySpec, preview_reach
from policies import workflows as wfr
from policies.common import StackView
from policies.platform import preview_reaches_cluster
from stacks.config import STACKS_DIR
from stacks.plan import run_plan
from stacks.plan.model import Plan
from stacks.plan.policy import policy_resources
from tests.endpoints.endpoint_helpers import stack_plan
from tests.s3_iam import ACCOUNT, outcomes, role_session
from tests.stack_helpers import config_errors, raw_stack

ROOT = Path(__file__).resolve().parents[2]
RULE = "aicloud-preview-reaches-cluster-api"
ENTRY = "aws:eks/accessEntry:AccessEntry"
ASSOCIATION = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"


def _plan_with(tmp_path: Path, change, stack: str = "dev") -> Plan:
    doc = yaml.safe_load((STACKS_DIR / f"Pulumi.{stack}.yaml").read_text())
    change(doc["config"])
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(doc))
    return run_plan(stack, tmp_path)


def _view(plan: Plan) -> StackView:
    return StackView([res for _, res in policy_resources(plan)])


def _messages(view: StackView) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    preview_reaches_cluster(view, {}, lambda message, urn=None: found.append((message, urn.rsplit("::", 1)[-1])))
    return found


# --------------------------------------------------------------------------- config and route


def test_preview_runners_default_to_the_deployers_and_share_its_network():
    spec = DeploySpec(runner="self-hosted", runs_on=["self-hosted", "deployer"], egress_cidrs=["203.0.113.10/32"])
    assert spec.preview_labels == ["self-hosted", "deployer"] and spec.preview_runner == "self-hosted"
    allow_listed = {"region_key": "aws-use1", "private_access": True, "public": True}
    assert preview_reach(spec, **allow_listed, public_cidrs=["203.0.113.10/32"]).route == "allow-listed"
    hosted = spec.model_copy(update={"preview_runs_on": ["ubuntu-latest"]})
    reach = preview_reach(hosted, **allow_listed, public_cidrs=["203.0.113.10/32"])
    assert reach.route == "unreachable" and "GitHub-hosted runner has no fixed address" in reach.detail
    inside = DeploySpec(runner="self-hosted", runs_on=["self-hosted"], network="aws-use1")
    private = preview_reach(inside, region_key="aws-use1", private_access=True, public=False, public_cidrs=[])
    assert private.route == "private"


def test_an_empty_preview_runner_list_fails_naming_the_key():
    errors = config_errors(raw_stack("dev"), lambda c: c["deploy"].update(previewRunsOn=[]), "dev")
    assert any("deploy.previewRunsOn" in e for e in errors), errors


def test_shipped_stacks_preview_on_their_own_runners_in_the_deploy_network():
    for name in ("dev", "staging", "prod"):
        deploy = raw_stack(name)["deploy"]
        assert deploy["previewRunsOn"] == ["self-hosted", "linux", "aicloud-previewer"], name
        assert set(deploy["previewRunsOn"]) != set(deploy["runsOn"]), name  # never the deployer's machines
        plan = stack_plan(name)
        accesses = [r.outputs["apiAccess"] for r in plan.of_type("aicloud:platform:RegionalPlatform")]
        assert accesses and {a["previewRoute"] for a in accesses} == {"allow-listed"}, name
        assert _messages(_view(plan)) == [], name


# --------------------------------------------------------------------------- the workflow


@pytest.fixture(scope="module")
def preview() -> wfr.Workflow:
    return next(w for w in wfr.load(ROOT / ".github" / "workflows") if w.name == "preview.yml")


def test_the_preview_job_runs_on_each_stacks_preview_runners(preview):
    job = preview.jobs["pulumi-preview"]
    assert set(job["needs"]) == {"plan", "route"}
    assert job["runs-on"] == "${{ matrix.runs-on }}"
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.route.outputs.matrix) }}"
    assert job["environment"] == "preview-${{ matrix.stack }}"  # the approval gate stays
    route = preview.jobs["route"]
    assert route["permissions"] == {"contents": "read"} and "environment" not in route
    assert not any("id-token" in str(s) or "secrets." in str(s) for s in route["steps"])


def test_the_preview_never_refreshes_and_checks_its_cluster_tools_first(preview):
    steps = preview.jobs["pulumi-preview"]["steps"]
    run = next(i for i, s in enumerate(steps) if s.get("uses", "").startswith("pulumi/actions@"))
    assert steps[run]["with"]["command"] == "preview"
    assert str(steps[run]["with"].get("refresh", "false")).lower() == "false"  # Helm state is in Secrets
    tools = next(i for i, s in enumerate(steps) if "gke-gcloud-auth-plugin" in s.get("run", ""))
    assert tools < run and "command -v aws" in steps[tools]["run"]
    env = json.dumps(preview.jobs["pulumi-preview"].get("env", {})) + json.dumps([s.get("env") for s in steps])
    assert "SKIP_UPDATE_UNREACHABLE" not in env  # it would preview old inputs: changes hidden


@pytest.mark.skipif(not (shutil.which("jq") and shutil.which("yq")), reason="needs jq and a jq-syntax yq")
def test_the_route_expression_picks_preview_runners_then_deploy_runners_then_hosted(preview, tmp_path):
    """The route step's yq expression is jq syntax (`//` alternatives); run it through the local
    jq-compatible yq and the step's own jq line, per shipped stack and for a stack with no deploy section."""
    script = preview.jobs["route"]["steps"][-1]["run"]
    expr = script.split("yq -o=json -I=0 '", 1)[1].split("'", 1)[0]
    jq_line = script.split("include=$(jq -c ", 1)[1].split(" <<<", 1)[0]
    program = jq_line[jq_line.index("'") + 1 : jq_line.rindex("'")]
    plain = tmp_path / "Pulumi.bare.yaml"
    plain.write_text("config:\n  aicloud:owner: x\n")
    cases = {s: STACKS_DIR / f"Pulumi.{s}.yaml" for s in ("dev", "staging", "prod")} | {"bare": plain}
    include = "[]"
    for stack, path in cases.items():
        labels = subprocess.run(["yq", "-c", expr, str(path)], capture_output=True, text=True, check=True).stdout
        args = ["jq", "-c", "--arg", "s", stack, "--argjson", "l", labels.strip(), program]
        include = subprocess.run(args, input=include, capture_output=True, text=True, check=True).stdout.strip()
    matrix = {row["stack"]: row["runs-on"] for row in json.loads(include)}
    assert matrix["dev"] == matrix["prod"] == ["self-hosted", "linux", "aicloud-previewer"]
    assert matrix["bare"] == ["ubuntu-latest"]


def test_the_kubernetes_providers_preview_as_they_apply():
    """Server-side apply on (previews are dry-runs; refused for the read-only identity, diffed
    client-side), and neither unreachable switch: `skipUpdateUnreachable` previews old inputs (hides
    changes), `deleteUnreachable` drops state. Same settings for preview and up."""
    for stack in ("dev", "staging"):
        providers = stack_plan(stack).of_type("pulumi:providers:kubernetes")
        assert providers, stack
        for p in providers:
            assert str(p.inputs.get("enableServerSideApply")).lower() == "true", p.name
            assert not {"skipUpdateUnreachable", "deleteUnreachable"} & set(p.inputs), p.name


def test_deploys_check_the_cluster_tools_too():
    stack = next(w for w in wfr.load(ROOT / ".github" / "workflows") if w.name == "deploy-stack.yml")
    steps = stack.jobs["up"]["steps"]
    tools = next(i for i, s in enumerate(steps) if "gke-gcloud-auth-plugin" in s.get("run", ""))
    assert tools < next(i for i, s in enumerate(steps) if s.get("uses", "").startswith("pulumi/actions@"))


# --------------------------------------------------------------------------- the identity


def test_the_preview_role_reads_every_eks_cluster_with_the_view_policy_only():
    plan = stack_plan("prod")
    entries = {r.name: r for r in plan.of_type(ENTRY)}
    eks = [s.name for s in plan.config.regions if s.cloud == "aws"]
    for region in eks:
        entry = entries[f"{region}-ci-preview-access"]
        assert entry.inputs["principalArn"] == "${ci-preview.arn}"
        assert entry.inputs["tags"]["aicloud:ci-role"] == "preview"
        assert "kubernetesGroups" not in entry.inputs
        (assoc,) = plan.children(entry.urn)
        assert assoc.inputs["policyArn"] == EKS_VIEW_POLICY
        assert assoc.inputs["accessScope"] == {"type": "cluster"}
        deploy = entries[f"{region}-ci-deploy-access"]
        assert [c.inputs["policyArn"] for c in plan.children(deploy.urn)] == [EKS_ADMIN_POLICY]
    preview_policies = {
        a.inputs["policyArn"]
        for a in plan.of_type(ASSOCIATION)
        if a.inputs["principalArn"] == "${ci-preview.arn}" or "ci-preview" in a.name
    }
    assert preview_policies == {EKS_VIEW_POLICY}


def _preview_role_policies(plan: Plan) -> tuple[list[str], list[dict]]:
    """The managed policy ARNs and inline documents the stack gives its CI preview role."""
    managed = [
        r.inputs["policyArn"]
        for r in plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.name.startswith("ci-preview-policy-")
    ]
    inline = [
        json.loads(r.inputs["policy"])
        for r in plan.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.name.startswith("ci-preview-")
    ]
    return managed, inline


WRITES = [
    "iam:CreateRole", "iam:AttachRolePolicy", "iam:PutRolePolicy", "iam:PassRole", "iam:CreateOpenIDConnectProvider",
    "eks:CreateCluster", "eks:UpdateClusterConfig", "eks:CreateAccessEntry", "eks:AssociateAccessPolicy",
    "eks:CreateNodegroup", "eks:CreateAddon", "ec2:RunInstances", "ec2:CreateVpc", "ec2:CreateTags",
    "ec2:AuthorizeSecurityGroupIngress", "ec2:CreateLaunchTemplate", "s3:CreateBucket", "s3:PutObject",
    "s3:DeleteObject", "s3:PutBucketPolicy", "s3:PutLifecycleConfiguration", "kms:CreateKey",
    "kms:ScheduleKeyDeletion", "kms:Decrypt", "s3:GetObject", "secretsmanager:GetSecretValue", "ecr:PutImage",
    "sqs:CreateQueue", "sqs:SendMessage", "events:PutRule", "globalaccelerator:CreateAccelerator",
    "elasticloadbalancing:CreateLoadBalancer", "fsx:CreateFileSystem", "glue:CreateTable", "sts:AssumeRole",
]  # fmt: skip
"""What the stack's deploy writes (and the data it must not read: objects, secrets, KMS decrypt)."""
READS = ["ecr:GetAuthorizationToken", "eks:DescribeCluster", "eks:ListClusters", "ec2:DescribeVpcs"]
"""What `pulumi preview` of this program calls (without `--refresh` the providers read nothing; the
program's invokes are sts:GetCallerIdentity, which needs no permission, and the image component's ECR
login), the kubeconfig's cluster lookup, and two of ViewOnlyAccess's describes."""


def test_moto_evaluates_the_preview_role_as_read_only():
    managed, inline = _preview_role_policies(stack_plan("dev"))
    assert managed and inline
    with mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        iam = boto3.client("iam", region_name="us-east-1")
        documents = list(inline)
        for arn in managed:
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            documents.append(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])
        policies = [IAMPolicy(json.dumps(d) if isinstance(d, dict) else d) for d in documents]

        def permitted(action: str) -> bool:
            results = [p.is_action_permitted(action, "*") for p in policies]
            return PermissionResult.PERMITTED in results and PermissionResult.DENIED not in results

        assert [a for a in WRITES if permitted(a)] == []
        assert [a for a in READS if not permitted(a)] == []
        # Not vacuous: the same evaluation of a write policy (one the config refuses) permits writes.
        power = "arn:aws:iam::aws:policy/PowerUserAccess"
        version = iam.get_policy(PolicyArn=power)["Policy"]["DefaultVersionId"]
        doc = iam.get_policy_version(PolicyArn=power, VersionId=version)["PolicyVersion"]["Document"]
        policies.append(IAMPolicy(json.dumps(doc) if isinstance(doc, dict) else doc))
        assert {"eks:CreateCluster", "s3:PutObject", "ec2:RunInstances"} <= {a for a in WRITES if permitted(a)}
        # Every action the role's policies name is a read verb.
        verbs = ("Describe", "List", "Get", "BatchGet", "View", "Search", "Lookup", "Is", "GET")
        named = [
            a
            for d in documents
            for s in d["Statement"]
            for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        ]
        assert len(named) > 500 and [a for a in named if not a.split(":", 1)[1].startswith(verbs)] == []


TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
]}  # fmt: skip


@set_initial_no_auth_action_count(4)
def _as_preview_role(managed: list[str], inline: list[dict]) -> dict[str, str]:
    s = role_session("ci-preview", inline=inline, managed=managed)
    calls = {
        "iam:ListRoles": lambda: s.client("iam").list_roles(),
        "s3:ListBuckets": lambda: s.client("s3").list_buckets(),
        "ec2:DescribeVpcs": lambda: s.client("ec2").describe_vpcs(),
        "iam:CreateRole": lambda: s.client("iam").create_role(RoleName="x", AssumeRolePolicyDocument=json.dumps(TRUST)),
        "iam:AttachRolePolicy": lambda: s.client("iam").attach_role_policy(RoleName="ci-preview", PolicyArn=managed[0]),
        "s3:CreateBucket": lambda: s.client("s3").create_bucket(Bucket="preview-writes"),
        "ec2:CreateVpc": lambda: s.client("ec2").create_vpc(CidrBlock="10.0.0.0/16"),
    }
    return outcomes(calls)


def test_moto_refuses_the_preview_roles_writes_when_it_calls_them():
    managed, inline = _preview_role_policies(stack_plan("dev"))
    with mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        result = _as_preview_role(managed, inline)
    assert result == {
        "iam:ListRoles": "allowed",
        "s3:ListBuckets": "allowed",
        "ec2:DescribeVpcs": "allowed",
        "iam:CreateRole": "AccessDenied",
        "iam:AttachRolePolicy": "AccessDenied",
        "s3:CreateBucket": "AccessDenied",
        "ec2:CreateVpc": "AccessDenied",
    }


# --------------------------------------------------------------------------- the policy, planted


def test_a_preview_on_hosted_runners_cannot_reach_the_allow_listed_api(tmp_path):
    plan = _plan_with(tmp_path, lambda c: c["aicloud:deploy"].update(previewRunsOn=["ubuntu-latest"]))
    findings = [f for f in plan.findings if f["policy"] == RULE]
    assert [(f["name"], f["level"]) for f in findings] == [("aws-use1-cluster-eks", "mandatory")]
    assert "GitHub-hosted runner has no fixed address" in findings[0]["message"]
    assert [f for f in plan.findings if f["policy"] == "aicloud-deployer-reaches-cluster-api"] == []
    access = plan.to_json()["sections"]["access"]
    assert access["columns"][5:] == ["preview route", "preview reads"]
    assert access["rows"][0][4] == "allow-listed" and access["rows"][0][5].startswith("unreachable")


def test_a_preview_runner_outside_a_private_only_cluster_network_is_reported(tmp_path):
    def inside(c):
        c["aicloud:deploy"] = {"runner": "self-hosted", "runsOn": ["self-hosted"], "network": "aws-use1"}

    assert [f for f in _plan_with(tmp_path, inside).findings if f["policy"] == RULE] == []

    def hosted_preview(c):
        inside(c)
        c["aicloud:deploy"]["previewRunsOn"] = ["ubuntu-latest"]

    (finding,) = [f for f in _plan_with(tmp_path, hosted_preview).findings if f["policy"] == RULE]
    assert "private API endpoint only; a GitHub-hosted runner cannot reach it" in finding["message"]


def _drop(plan: Plan, pred) -> StackView:
    return StackView([res for reg, res in policy_resources(plan) if not pred(reg)])


def test_a_preview_role_without_an_access_entry_is_reported():
    plan = stack_plan("dev")
    view = _drop(plan, lambda r: r.type in (ENTRY, ASSOCIATION) and "ci-preview" in r.name)
    ((message, name),) = _messages(view)
    assert name == "aws-use1-cluster-eks" and "no access entry there, so EKS answers its requests 401" in message


def test_a_preview_entry_that_can_write_is_reported():
    plan = stack_plan("dev")
    resources = []
    for reg, res in policy_resources(plan):
        if reg.type == ASSOCIATION and reg.name == "aws-use1-ci-preview-access-policy":
            res.props = {**res.props, "policyArn": EKS_ADMIN_POLICY}
        resources.append(res)
    ((message, _),) = _messages(StackView(resources))
    assert "not associated with AmazonEKSViewPolicy" in message
    assert f"also associated with {EKS_ADMIN_POLICY}: a preview must not write" in message


def test_a_gke_preview_account_without_a_read_role_is_reported(tmp_path):
    def browser_only(c):
        c["aicloud:ci"]["gcp"] = {"previewRoles": ["roles/browser"]}

    plan = _plan_with(tmp_path, browser_only, "staging")
    ((message, name),) = _messages(_view(plan))
    assert name == "gcp-usc1-cluster-gke"
    assert "has roles/browser, none of which GKE maps to reading Kubernetes objects" in message
    access = plan.to_json()["sections"]["access"]
    assert dict((row[0], row[6]) for row in access["rows"])["gcp-usc1"] == "nothing (no GKE read role)"


def test_a_gke_preview_account_with_a_write_role_is_reported():
    plan = stack_plan("staging")
    resources = []
    for reg, res in policy_resources(plan):
        if reg.type == "gcp:projects/iAMMember:IAMMember" and reg.name == "ci-preview-viewer":
            res.props = {**res.props, "role": "roles/container.developer"}
        resources.append(res)
    ((message, _),) = _messages(StackView(resources))
    assert "none of which GKE maps" in message and "also holds roles/container.developer" in message


def test_container_viewer_is_a_read_role_for_the_preview(tmp_path):
    plan = _plan_with(
        tmp_path, lambda c: c["aicloud:ci"].update(gcp={"previewRoles": ["roles/container.viewer"]}), "staging"
    )
    assert [f for f in plan.findings if f["policy"] == RULE] == []


def test_without_aicloud_ci_only_the_route_is_judged(tmp_path):
    plan = _plan_with(tmp_path, lambda c: c.pop("aicloud:ci"))
    assert not [r for r in plan.of_type(ENTRY) if "ci-" in r.name]
    assert [f for f in plan.findings if f["policy"] == RULE] == []
    assert plan.to_json()["sections"]["access"]["rows"][0][6] == "-"
