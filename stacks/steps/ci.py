"""The CI access step: with `aicloud:ci`, the OIDC trust and the deploy and preview identities.

IAM is global on AWS, so the AWS side uses the provider of the stack's primary AWS region; the GCP
side, the primary GCP region's provider (the stack's project). The outputs `ci:*` are the values the
workflows read from their GitHub environments' variables (see .github/workflows/).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi

from components.ci import CiAccess

if TYPE_CHECKING:
    from stacks.deployment import Deployment


def deploy_ci(d: Deployment) -> None:
    """`CiAccess` for this stack's environment, when the stack has an `aicloud:ci` section."""
    spec = d.config.ci
    if spec is None:
        return
    aws_primary = d.config.primary("aws")
    gcp_primary = d.config.primary("gcp")
    access = CiAccess(
        "ci",
        spec,
        stack=d.stack,
        environment=d.config.environment,
        aws_provider=d.providers[aws_primary.name] if aws_primary else None,
        gcp_provider=d.providers[gcp_primary.name] if gcp_primary else None,
        gcp_project=d.config.gcp_project,
        tags=d.tags,
        opts=pulumi.ResourceOptions(),
    )
    d.outputs["ci:deployEnvironment"] = access.deploy_environment
    d.outputs["ci:previewEnvironment"] = access.preview_environment
    if access.aws_deploy_role is not None:
        d.outputs["ci:aws:deployRoleArn"] = access.aws_deploy_role.arn
        d.outputs["ci:aws:previewRoleArn"] = access.aws_preview_role.arn
    if access.gcp_provider_name is not None:
        d.outputs["ci:gcp:workloadIdentityProvider"] = access.gcp_provider_name
        d.outputs["ci:gcp:deployServiceAccount"] = access.gcp_deploy_account.email
        d.outputs["ci:gcp:previewServiceAccount"] = access.gcp_preview_account.email
