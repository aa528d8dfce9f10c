"""Workload identities: each workload (trainer, server) runs as its own Kubernetes ServiceAccount
bound to a cloud identity that holds only that workload's storage grants.

- EKS (IRSA): an IAM role trusted by the cluster's OIDC provider for exactly
  `system:serviceaccount:<namespace>:<service account>` (audience `sts.amazonaws.com`), with an
  inline least-privilege policy; the ServiceAccount carries `eks.amazonaws.com/role-arn`.
- GKE (Workload Identity): a Google service account that the Kubernetes ServiceAccount may
  impersonate (`roles/iam.workloadIdentityUser` for `<project>.svc.id.goog[<ns>/<sa>]`), with
  bucket-level roles; the ServiceAccount carries `iam.gke.io/gcp-service-account`.

Each identity also creates its workload's namespace (`aicloud-training` / `aicloud-serving`) and
exposes it, so the steps that deploy jobs and endpoints use the same objects:
`identity.namespace`, `identity.service_account_name`, `identity.namespace_resource`,
`identity.service_account` (depend on it), `identity.zone_uris` (the buckets it may use).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.base import merge_tags, type_token
from components.k8s_security import Allow, secure_namespace

TRAINING_NAMESPACE = "aicloud-training"
SERVING_NAMESPACE = "aicloud-serving"
IRSA_AUDIENCE = "sts.amazonaws.com"
EKS_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
GKE_SA_ANNOTATION = "iam.gke.io/gcp-service-account"
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "pulumi-aicloud"}


@dataclass(frozen=True, slots=True)
class Workload:
    """Where a workload runs in Kubernetes."""

    namespace: str
    service_account: str


API_ACCESS = "aicloud.dev/kubernetes-api"
"""Annotation stating why a workload's pods mount a ServiceAccount token (they call the API)."""
API_USERS: dict[str, str] = {
    "retrain": "launches the retraining job and patches the canary's weights (Roles of retraining.py)",
    "retrain-agent": "patches its region's canary when the coordinator instructs it (Role of retraining.py)",
}
"""Workloads that may call the Kubernetes API, and why; every other ServiceAccount mounts no token.
A workload listed here whose deployment never calls the API in a given region (a retraining agent
without a canary to patch) is created with `calls_api=False` and mounts none either."""


def token_use(workload: str, calls_api: bool | None = None) -> str | None:
    """Why `workload`'s pods mount a ServiceAccount token (its `API_USERS` reason), or None when
    they mount none. `calls_api`: what the caller knows of this deployment (None: as `API_USERS`
    says); claiming API calls for a workload `API_USERS` does not list is an error."""
    if calls_api is None:
        return API_USERS.get(workload)
    if calls_api and workload not in API_USERS:
        raise ValueError(
            f"workload {workload!r} does not call the Kubernetes API; allowed with calls_api: {', '.join(API_USERS)}"
        )
    return API_USERS[workload] if calls_api else None


WORKLOADS: dict[str, Workload] = {
    "trainer": Workload(TRAINING_NAMESPACE, "aicloud-trainer"),
    "server": Workload(SERVING_NAMESPACE, "aicloud-server"),
    # The drift-to-retraining trigger (a CronJob beside the training jobs it launches).
    "retrain": Workload(TRAINING_NAMESPACE, "aicloud-retrain"),
    # Its agent in every serving region (drift reports, the region's canary), beside it.
    "retrain-agent": Workload(TRAINING_NAMESPACE, "aicloud-retrain-agent"),
}
"""The workloads that get identities, with their namespace and ServiceAccount name."""


def workload_in(workload: str, namespace: str | None = None) -> Workload:
    """The workload's namespace and ServiceAccount, in `namespace` when the stack names one."""
    spec = WORKLOADS[workload]
    return spec if namespace is None else Workload(namespace, spec.service_account)


def service_account_subject(namespace: str, service_account: str) -> str:
    """The OIDC subject Kubernetes puts in a ServiceAccount's token."""
    return f"system:serviceaccount:{namespace}:{service_account}"


def irsa_trust_policy(oidc_provider_arn: str, oidc_issuer: str, namespace: str, service_account: str) -> dict[str, Any]:
    """Trust policy of an IRSA role: only tokens of exactly this ServiceAccount, issued by this
    cluster for STS, may assume it."""
    host = oidc_issuer.removeprefix("https://")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:sub": service_account_subject(namespace, service_account),
                        f"{host}:aud": IRSA_AUDIENCE,
                    }
                },
            }
        ],
    }


def workload_identity_member(project: str, namespace: str, service_account: str) -> str:
    """The IAM member a GKE ServiceAccount acts as (`<project>.svc.id.goog[<ns>/<sa>]`)."""
    return f"serviceAccount:{project}.svc.id.goog[{namespace}/{service_account}]"


def _labels(workload: str) -> dict[str, str]:
    return {**MANAGED_LABELS, "aicloud.dev/workload": workload}


class WorkloadIdentity(pulumi.ComponentResource):
    """What every workload identity exposes to the steps that deploy workloads."""

    workload: str
    namespace: str
    """Kubernetes namespace of the workload (created here)."""
    service_account_name: str
    """Name of the Kubernetes ServiceAccount pods must use (`serviceAccountName`)."""
    namespace_resource: k8s.core.v1.Namespace
    service_account: k8s.core.v1.ServiceAccount
    zone_uris: dict[str, pulumi.Output[str]]
    """Lakehouse zones this identity may use -> bucket URI (`s3://...`, `gs://...`)."""
    cloud: str
    calls_api: bool
    """Whether its pods mount a ServiceAccount token (the ServiceAccount's automount, `token_use`)."""

    def _kubernetes(
        self,
        name: str,
        workload: str,
        annotations: Mapping[str, pulumi.Input[str]],
        namespace: k8s.core.v1.Namespace | None,
        spec: Workload,
        allows: Sequence[Allow] = (),
        calls_api: bool | None = None,
    ) -> None:
        self.workload = workload
        self.namespace = spec.namespace
        self.service_account_name = spec.service_account
        # Workloads that share a namespace (trainer and retrain) share its object: one creates it,
        # with Pod Security `restricted`, default-deny ingress and `allows`.
        self.namespace_resource = namespace or secure_namespace(
            f"{name}-ns", spec.namespace, parent=self, labels=_labels(workload), allows=allows
        )
        api = token_use(workload, calls_api)
        self.calls_api = api is not None
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={
                "name": spec.service_account,
                "namespace": self.namespace_resource.metadata.name,
                "labels": _labels(workload),
                "annotations": {**annotations, **({API_ACCESS: api} if api else {})},
            },
            # Only workloads that call the Kubernetes API get a token in their pods.
            automount_service_account_token=api is not None,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _outputs(self, extra: dict[str, Any]) -> None:
        self.register_outputs(
            {
                "workload": self.workload,
                "cloud": self.cloud,
                "namespace": self.namespace,
                "serviceAccount": self.service_account_name,
                "zones": sorted(self.zone_uris),
                **extra,
            }
        )


class EksWorkloadIdentity(WorkloadIdentity):
    """IRSA: an IAM role for one ServiceAccount of one EKS cluster, with an inline policy."""

    role: aws.iam.Role

    def __init__(
        self,
        name: str,
        workload: str,
        *,
        oidc_provider_arn: pulumi.Input[str],
        oidc_issuer: pulumi.Input[str],
        policy: pulumi.Input[str],
        zone_uris: Mapping[str, pulumi.Output[str]],
        tags: dict[str, str] | None = None,
        namespace: k8s.core.v1.Namespace | None = None,
        namespace_name: str | None = None,
        allows: Sequence[Allow] = (),
        calls_api: bool | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`policy` is the role's permission policy as JSON (see
        `components.lakehouse.documents.s3_workload_policy`); the step providing this component
        passes the region's Kubernetes provider in `opts.providers`. `namespace`: the workload's
        namespace when another identity already creates it (else it is created here, with the
        NetworkPolicies of `allows`); `namespace_name`: the workload's namespace when the stack
        names its own (`serving.namespace`); `calls_api`: whether this deployment of the workload calls
        the Kubernetes API (None: as `API_USERS` says; see `token_use`)."""
        super().__init__(type_token("identity", "EksWorkloadIdentity"), name, None, opts)
        spec = workload_in(workload, namespace_name)
        self.cloud = "aws"
        self.zone_uris = dict(zone_uris)
        self.role = aws.iam.Role(
            f"{name}-role",
            description=f"aicloud {workload}: IRSA for {spec.namespace}/{spec.service_account}",
            assume_role_policy=pulumi.Output.all(oidc_provider_arn, oidc_issuer).apply(
                lambda a: json.dumps(irsa_trust_policy(a[0], a[1], spec.namespace, spec.service_account))
            ),
            max_session_duration=3600,
            tags=merge_tags(tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.iam.RolePolicy(
            f"{name}-storage",
            role=self.role.id,
            policy=policy,
            opts=pulumi.ResourceOptions(parent=self.role),
        )
        self._kubernetes(name, workload, {EKS_ROLE_ANNOTATION: self.role.arn}, namespace, spec, allows, calls_api)
        self._outputs({"roleArn": self.role.arn})


class GkeWorkloadIdentity(WorkloadIdentity):
    """GKE Workload Identity: a Google service account for one ServiceAccount, with bucket roles."""

    gcp_service_account: gcp.serviceaccount.Account

    def __init__(
        self,
        name: str,
        workload: str,
        *,
        project: str,
        account_id: str,
        bucket_roles: Sequence[tuple[str, pulumi.Input[str], str] | tuple[str, pulumi.Input[str], str, Any]],
        zone_uris: Mapping[str, pulumi.Output[str]],
        namespace: k8s.core.v1.Namespace | None = None,
        namespace_name: str | None = None,
        allows: Sequence[Allow] = (),
        calls_api: bool | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`bucket_roles`: `(zone, bucket name, role)` triples (see
        `components.lakehouse.documents.gcs_workload_bindings`), or with a fourth item, the IAM
        condition `{title, expression}` (an Output is fine) limiting the role to an object prefix
        (`gcs_prefix_condition`); `account_id`: 6-30 characters;
        `namespace_name`: the workload's namespace when the stack names its own (`serving.namespace`);
        `calls_api`: as for `EksWorkloadIdentity`."""
        super().__init__(type_token("identity", "GkeWorkloadIdentity"), name, None, opts)
        spec = workload_in(workload, namespace_name)
        self.cloud = "gcp"
        self.zone_uris = dict(zone_uris)
        gsa = gcp.serviceaccount.Account(
            f"{name}-gsa",
            account_id=account_id,
            project=project,
            display_name=f"aicloud {workload} ({spec.namespace}/{spec.service_account})",
            opts=pulumi.ResourceOptions(parent=self),
        )
        gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity",
            service_account_id=gsa.name,
            role="roles/iam.workloadIdentityUser",
            member=workload_identity_member(project, spec.namespace, spec.service_account),
            opts=pulumi.ResourceOptions(parent=gsa),
        )
        member = gsa.email.apply(lambda e: f"serviceAccount:{e}")
        for zone, bucket, role, *conditioned in bucket_roles:
            condition = conditioned[0] if conditioned else None
            gcp.storage.BucketIAMMember(
                # Unconditioned grants keep their names (one role per zone); conditioned ones name the role.
                f"{name}-{zone}" if condition is None else f"{name}-{zone}-{role.rsplit('.', 1)[-1]}",
                bucket=bucket,
                role=role,
                member=member,
                condition=condition,
                opts=pulumi.ResourceOptions(parent=gsa),
            )
        self.gcp_service_account = gsa
        self._kubernetes(name, workload, {GKE_SA_ANNOTATION: gsa.email}, namespace, spec, allows, calls_api)
        self._outputs({"gcpServiceAccount": gsa.email})
