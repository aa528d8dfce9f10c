"""CI access: the OIDC trust between GitHub Actions and the clouds, and the two identities CI uses.

A stack with an `aicloud:ci` section creates, for its own environment:

- a **deploy** identity, trusted only by the GitHub environment named after the stack
  (`repo:<owner>/<repo>:environment:<stack>`), the one `.github/workflows/deploy-stack.yml` runs
  in. Give that environment a deployment branch policy of `main` only (and required reviewers for
  staging and prod): then no branch but `main` can ever obtain it.
- a **preview** identity, read-only, trusted only by `repo:<owner>/<repo>:environment:preview-<stack>`,
  the environment of the `pulumi-preview` job of `.github/workflows/preview.yml`. Give that
  environment required reviewers (the maintainers): a pull request's code reaches it only after a
  maintainer approves the run, and then can describe, not change. Inside the clusters it reads too
  (`pulumi preview` reads each cluster's API): an EKS access entry with `AmazonEKSViewPolicy` on
  every cluster (`stacks/steps/platform.py`), and on GKE a project role that maps to Kubernetes read
  (`roles/viewer` or `roles/container.viewer`, `GKE_OBJECT_READ_ROLES`). Its server-side dry-runs
  are refused (Kubernetes authorizes a dry-run like the write), and the provider then diffs that
  object client-side (README, "Deploy path").

On AWS: the account's IAM OIDC provider for `token.actions.githubusercontent.com` (one per
account: set `existingOidcProviderArn` where another stack made it), and two roles whose trust
policies require `aud = sts.amazonaws.com` and the exact `sub` above (`StringEquals`, no wildcard).
On GCP: a workload identity pool and provider whose attribute condition admits only this
repository's two environments, and two service accounts that only their environment may
impersonate.

The Pulumi side (not created here: it is an organisation setting) is the same split: register
GitHub as an OIDC issuer, with a policy that gives the `preview-<stack>` subject a token of a team
holding "Stack Read" (preview only) and the `<stack>` subject a token of a team with "Stack Write".

Pure helpers (`github_subject`, `aws_trust_policy`, `aws_preview_policy`,
`gcp_attribute_condition`) build the documents; `CiAccess` only wires them to resources.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
from pydantic import Field, field_validator

from components.base import Spec, merge_tags, type_token

GITHUB_ISSUER_HOST = "token.actions.githubusercontent.com"
GITHUB_ISSUER = f"https://{GITHUB_ISSUER_HOST}"
STS_AUDIENCE = "sts.amazonaws.com"

# Read-only managed policies: describe and list the control plane, no data reads (ViewOnlyAccess
# has no s3:GetObject, secretsmanager:GetSecretValue, ...).
AWS_VIEW_ONLY = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
# The deploy role creates IAM roles, KMS keys, clusters and buckets: narrow it with a permissions
# boundary (`deployPermissionsBoundary`) rather than a hand-made allow-list that drifts.
AWS_ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
# Managed policies that must never be on a preview role (they can change things).
AWS_WRITE_POLICIES = frozenset(
    {
        AWS_ADMIN,
        "arn:aws:iam::aws:policy/PowerUserAccess",
        "arn:aws:iam::aws:policy/IAMFullAccess",
    }
)
GCP_READ_ONLY_ROLES = frozenset(
    {"roles/viewer", "roles/container.viewer", "roles/iam.securityReviewer", "roles/browser"}
)
GKE_OBJECT_READ_ROLES = frozenset({"roles/viewer", "roles/container.viewer"})
"""Project roles whose `container.*` get/list permissions GKE maps to reading Kubernetes objects
(roles/browser and roles/iam.securityReviewer reach no object inside a cluster)."""
CI_ROLE_TAG = "aicloud:ci-role"
"""Tag naming the CI identity (`deploy` / `preview`) a role or an EKS access entry belongs to."""
GCP_DEFAULT_DEPLOY_ROLES = (
    "roles/container.admin",
    "roles/compute.admin",
    "roles/iam.serviceAccountAdmin",
    "roles/iam.serviceAccountUser",
    "roles/resourcemanager.projectIamAdmin",
    "roles/cloudkms.admin",
    "roles/bigquery.admin",
    "roles/artifactregistry.admin",
    "roles/file.editor",
    "roles/pubsub.admin",
    "roles/storagetransfer.admin",
)
"""What the stack program manages, service by service. No primitive role (owner/editor) and no
storage.admin (which reads every object): buckets get `GCP_BUCKET_PERMISSIONS` in a custom role."""
GCP_BUCKET_PERMISSIONS = (
    "storage.buckets.create",
    "storage.buckets.delete",
    "storage.buckets.get",
    "storage.buckets.list",
    "storage.buckets.update",
    "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy",
)
"""Bucket management without object access: the deployer creates the lakehouse, it never reads it."""

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_ENV = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


class AwsCiSpec(Spec):
    """The AWS half of `aicloud:ci` (created in the stack's primary AWS region's account)."""

    existing_oidc_provider_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com$"
    )
    """ARN of the account's GitHub OIDC provider when it already exists (an account has one per
    issuer URL); default: none, the provider is created here."""
    deploy_policy_arns: list[str] = Field(default_factory=lambda: [AWS_ADMIN], min_length=1)
    """Managed policies of the deploy role (default AdministratorAccess: the stack manages IAM)."""
    deploy_permissions_boundary: str | None = None
    """Permissions boundary ARN of the deploy role (default none)."""
    preview_policy_arns: list[str] = Field(default_factory=lambda: [AWS_VIEW_ONLY], min_length=1)
    """Managed policies of the preview role (default ViewOnlyAccess); write policies are refused."""

    @field_validator("preview_policy_arns")
    @classmethod
    def _read_only(cls, value: list[str]) -> list[str]:
        bad = sorted(set(value) & AWS_WRITE_POLICIES)
        if bad:
            raise ValueError(f"the preview role must stay read-only; remove {', '.join(bad)}")
        return value


class GcpCiSpec(Spec):
    """The GCP half of `aicloud:ci` (created in the stack's GCP project)."""

    repository_owner_id: str | None = Field(default=None, pattern=r"^\d+$")
    """Numeric id of the repository's owner; when set, the provider also checks
    `repository_owner_id`, which survives an owner being renamed and its name re-registered."""
    deploy_roles: list[str] = Field(default_factory=lambda: list(GCP_DEFAULT_DEPLOY_ROLES), min_length=1)
    """Project roles of the deploy service account (default `GCP_DEFAULT_DEPLOY_ROLES`), besides the
    custom bucket-management role it always gets."""
    preview_roles: list[str] = Field(default_factory=lambda: ["roles/viewer"], min_length=1)
    """Project roles of the preview service account (default roles/viewer); read-only roles only."""

    @field_validator("preview_roles")
    @classmethod
    def _read_only(cls, value: list[str]) -> list[str]:
        bad = sorted(set(value) - GCP_READ_ONLY_ROLES)
        if bad:
            raise ValueError(
                f"the preview service account must stay read-only ({', '.join(sorted(GCP_READ_ONLY_ROLES))}); "
                f"remove {', '.join(bad)}"
            )
        return value


class CiSpec(Spec):
    """`aicloud:ci`: the OIDC trust and the deploy and preview identities of this stack's CI."""

    repository: str
    """GitHub repository as `owner/name` (required)."""
    deploy_environment: str | None = None
    """GitHub environment of the deploy job; default: the stack's environment name."""
    preview_environment: str | None = None
    """GitHub environment of the preview job; default `preview-<environment>`. Must differ from
    the deploy environment (a preview must never obtain deploy rights)."""
    aws: AwsCiSpec | None = None
    """Create the AWS side (needs an AWS region in the stack); default: when the stack has one."""
    gcp: GcpCiSpec | None = None
    """Create the GCP side (needs a GCP region); default: when the stack has one."""

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not _REPO.match(value):
            raise ValueError("must be `owner/name` as GitHub spells it")
        return value

    @field_validator("deploy_environment", "preview_environment")
    @classmethod
    def _environment(cls, value: str | None) -> str | None:
        if value is not None and not _ENV.match(value):
            raise ValueError("GitHub environment names are letters, digits, `.`, `_` and `-`")
        return value

    def environments(self, stack_environment: str) -> tuple[str, str]:
        """(deploy, preview) GitHub environment names, defaults applied."""
        deploy = self.deploy_environment or stack_environment
        preview = self.preview_environment or f"preview-{stack_environment}"
        if deploy == preview:
            raise ValueError(f"ci: the deploy and preview environments must differ (both {deploy!r})")
        return deploy, preview


def github_subject(repository: str, environment: str) -> str:
    """The `sub` claim of a GitHub Actions job that runs in `environment`."""
    return f"repo:{repository}:environment:{environment}"


def aws_trust_policy(oidc_provider_arn: str, repository: str, environment: str) -> dict[str, Any]:
    """Trust policy of a CI role: GitHub tokens for STS, of exactly one repository environment."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GitHubActionsEnvironment",
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_ISSUER_HOST}:aud": STS_AUDIENCE,
                        f"{GITHUB_ISSUER_HOST}:sub": github_subject(repository, environment),
                    }
                },
            }
        ],
    }


def aws_preview_policy() -> dict[str, Any]:
    """Inline policy of the preview role beside ViewOnlyAccess: what `pulumi preview` of this
    program calls that ViewOnlyAccess lacks (the image component reads the ECR login)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PreviewInvokes",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken", "eks:DescribeCluster"],
                "Resource": "*",
            }
        ],
    }


def gcp_attribute_condition(repository: str, environments: list[str], owner_id: str | None = None) -> str:
    """CEL condition of the workload identity provider: this repository, these environments."""
    envs = ", ".join(f"'{e}'" for e in environments)
    condition = f"assertion.repository == '{repository}' && assertion.environment in [{envs}]"
    if owner_id:
        condition += f" && assertion.repository_owner_id == '{owner_id}'"
    return condition


GCP_ATTRIBUTE_MAPPING = {
    "google.subject": "assertion.sub",
    "attribute.repository": "assertion.repository",
    "attribute.environment": "assertion.environment",
    "attribute.ref": "assertion.ref",
}


def gcp_environment_member(pool_name: str, environment: str) -> str:
    """The principal set of every token of one GitHub environment admitted by the pool."""
    return f"principalSet://iam.googleapis.com/{pool_name}/attribute.environment/{environment}"


def _gcp_id(prefix: str, stack: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"{prefix}-{stack}".lower())[:limit].rstrip("-")


class CiAccess(pulumi.ComponentResource):
    """OIDC trust and the deploy and preview identities of one stack's CI."""

    deploy_environment: str
    preview_environment: str
    aws_deploy_role: aws.iam.Role | None = None
    aws_preview_role: aws.iam.Role | None = None
    gcp_provider_name: pulumi.Output[str] | None = None
    gcp_deploy_account: gcp.serviceaccount.Account | None = None
    gcp_preview_account: gcp.serviceaccount.Account | None = None

    def __init__(
        self,
        name: str,
        spec: CiSpec,
        *,
        stack: str,
        environment: str,
        aws_provider: pulumi.ProviderResource | None = None,
        gcp_provider: pulumi.ProviderResource | None = None,
        gcp_project: str | None = None,
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`aws_provider` / `gcp_provider`: the providers of the stack's primary regions (the side
        of a cloud without one is not created); `environment`: the stack's environment name."""
        super().__init__(type_token("ci", "CiAccess"), name, None, opts)
        self.deploy_environment, self.preview_environment = spec.environments(environment)
        outputs: dict[str, Any] = {
            "deployEnvironment": self.deploy_environment,
            "previewEnvironment": self.preview_environment,
        }
        if aws_provider is not None:
            self._aws(name, spec, stack, aws_provider, tags or {})
            outputs |= {"awsDeployRoleArn": self.aws_deploy_role.arn, "awsPreviewRoleArn": self.aws_preview_role.arn}
        if gcp_provider is not None and gcp_project:
            self._gcp(name, spec, stack, gcp_provider, gcp_project)
            outputs |= {
                "gcpWorkloadIdentityProvider": self.gcp_provider_name,
                "gcpDeployServiceAccount": self.gcp_deploy_account.email,
                "gcpPreviewServiceAccount": self.gcp_preview_account.email,
            }
        self.register_outputs(outputs)

    def _aws(self, name: str, spec: CiSpec, stack: str, provider: pulumi.ProviderResource, tags: dict) -> None:
        cfg = spec.aws or AwsCiSpec()
        opts = pulumi.ResourceOptions(parent=self, provider=provider)
        if cfg.existing_oidc_provider_arn:
            provider_arn: pulumi.Input[str] = cfg.existing_oidc_provider_arn
        else:
            oidc = aws.iam.OpenIdConnectProvider(
                f"{name}-github-oidc",
                url=GITHUB_ISSUER,
                client_id_lists=[STS_AUDIENCE],
                tags=merge_tags(tags, name=f"{name}-github-oidc"),
                opts=opts,
            )
            provider_arn = oidc.arn

        def role(kind: str, environment: str, policies: list[str], boundary: str | None) -> aws.iam.Role:
            r = aws.iam.Role(
                f"{name}-{kind}",
                description=f"aicloud {stack} CI {kind}: GitHub environment {environment} of {spec.repository}",
                assume_role_policy=pulumi.Output.from_input(provider_arn).apply(
                    lambda arn: json.dumps(aws_trust_policy(arn, spec.repository, environment))
                ),
                max_session_duration=7200 if kind == "deploy" else 3600,
                permissions_boundary=boundary,
                tags=merge_tags(tags, {CI_ROLE_TAG: kind}, name=f"{name}-{kind}"),
                opts=opts,
            )
            for i, arn in enumerate(policies):
                aws.iam.RolePolicyAttachment(
                    f"{name}-{kind}-policy-{i}",
                    role=r.name,
                    policy_arn=arn,
                    opts=pulumi.ResourceOptions(parent=r, provider=provider),
                )
            return r

        self.aws_deploy_role = role(
            "deploy", self.deploy_environment, cfg.deploy_policy_arns, cfg.deploy_permissions_boundary
        )
        self.aws_preview_role = role("preview", self.preview_environment, cfg.preview_policy_arns, None)
        aws.iam.RolePolicy(
            f"{name}-preview-invokes",
            role=self.aws_preview_role.id,
            policy=json.dumps(aws_preview_policy()),
            opts=pulumi.ResourceOptions(parent=self.aws_preview_role, provider=provider),
        )

    def _gcp(self, name: str, spec: CiSpec, stack: str, provider: pulumi.ProviderResource, project: str) -> None:
        cfg = spec.gcp or GcpCiSpec()
        opts = pulumi.ResourceOptions(parent=self, provider=provider)
        environments = [self.deploy_environment, self.preview_environment]
        pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            project=project,
            workload_identity_pool_id=_gcp_id("aicloud-gh", stack, 32),
            display_name=f"aicloud {stack} GitHub Actions"[:32],
            description=f"GitHub Actions of {spec.repository}, environments {', '.join(environments)}",
            opts=opts,
        )
        oidc = gcp.iam.WorkloadIdentityPoolProvider(
            f"{name}-github",
            project=project,
            workload_identity_pool_id=pool.workload_identity_pool_id,
            workload_identity_pool_provider_id="github",
            attribute_mapping=GCP_ATTRIBUTE_MAPPING,
            attribute_condition=gcp_attribute_condition(spec.repository, environments, cfg.repository_owner_id),
            oidc={"issuer_uri": GITHUB_ISSUER},
            opts=pulumi.ResourceOptions(parent=pool, provider=provider),
        )
        self.gcp_provider_name = oidc.name

        def account(kind: str, environment: str, roles: list[str]) -> gcp.serviceaccount.Account:
            sa = gcp.serviceaccount.Account(
                f"{name}-{kind}",
                project=project,
                account_id=_gcp_id(f"ci-{kind}", stack, 30),
                display_name=f"aicloud {stack} CI {kind} (GitHub environment {environment})",
                opts=opts,
            )
            gcp.serviceaccount.IAMMember(
                f"{name}-{kind}-wif",
                service_account_id=sa.name,
                role="roles/iam.workloadIdentityUser",
                member=pool.name.apply(lambda p: gcp_environment_member(p, environment)),
                opts=pulumi.ResourceOptions(parent=sa, provider=provider),
            )
            for role_name in roles:
                gcp.projects.IAMMember(
                    f"{name}-{kind}-{role_name.split('/')[-1].replace('.', '-')}",
                    project=project,
                    role=role_name,
                    member=sa.email.apply(lambda e: f"serviceAccount:{e}"),
                    opts=pulumi.ResourceOptions(parent=sa, provider=provider),
                )
            return sa

        buckets = gcp.projects.IAMCustomRole(
            f"{name}-deploy-buckets",
            project=project,
            role_id=re.sub(r"[^A-Za-z0-9_]", "_", f"aicloudCiBuckets_{stack}")[:64],
            title=f"aicloud {stack} CI: manage buckets (no object access)"[:100],
            permissions=list(GCP_BUCKET_PERMISSIONS),
            opts=opts,
        )
        self.gcp_deploy_account = account("deploy", self.deploy_environment, cfg.deploy_roles)
        gcp.projects.IAMMember(
            f"{name}-deploy-buckets",
            project=project,
            role=buckets.name,
            member=self.gcp_deploy_account.email.apply(lambda e: f"serviceAccount:{e}"),
            opts=pulumi.ResourceOptions(parent=self.gcp_deploy_account, provider=provider),
        )
        self.gcp_preview_account = account("preview", self.preview_environment, cfg.preview_roles)
