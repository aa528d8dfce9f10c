"""GPU-ready Kubernetes clusters: EKS on AWS, GKE on GCP. Private API endpoints by default,
workload identity on (IRSA through an OIDC provider on EKS, Workload Identity on GKE), control
plane audit logs on, and a Kubernetes provider bound to the cluster for everything deployed in it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
from pydantic import Field, field_validator

from components.base import DataSafety, Spec, child_opts, data_opts, gcp_labels, merge_tags, type_token
from components.validation import Problem, check

SUPPORTED_VERSIONS = ("1.30", "1.31", "1.32", "1.33", "1.34")
EKS_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
EKS_VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
"""EKS's read-only access policy (like Kubernetes' `view` ClusterRole: get/list/watch, no Secrets)."""
Autoscaler = Literal["karpenter", "cluster-autoscaler", "gke"]
AUTOSCALERS: dict[str, tuple[str, ...]] = {"aws": ("karpenter", "cluster-autoscaler"), "gcp": ("gke",)}
"""The node autoscalers each cloud supports; the first is the default."""


class ClusterSpec(Spec):
    """A Kubernetes cluster."""

    version: str = "1.33"
    """Kubernetes minor version; one of SUPPORTED_VERSIONS."""
    public_endpoint: bool = False
    """Expose the API server publicly (private by default); needs `publicAccessCidrs`."""
    public_access_cidrs: list[str] = Field(default_factory=list)
    """CIDRs allowed to reach a public API endpoint (the allow-list)."""
    deletion_protection: bool | None = None
    """Refuse to delete the cluster; defaults to on in prod, off elsewhere (`protected`)."""
    autoscaler: Autoscaler | None = None
    """Node autoscaler: `karpenter` (EKS default), `cluster-autoscaler` (EKS, scales the managed
    node groups), `gke` (GKE's built-in autoscaler, the only choice there)."""
    admins: list[str] = Field(default_factory=list)
    """EKS only: IAM role/user ARNs given cluster-admin through EKS access entries (the stack's
    deploy identity, `aicloud:deploy.awsRoleArn`, is added to every cluster on its own)."""

    @field_validator("admins")
    @classmethod
    def _admin_arns(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not a.startswith("arn:aws") or ":iam::" not in a]
        if bad:
            raise ValueError(f"admins must be IAM role or user ARNs (arn:aws:iam::<account>:role/<name>), got {bad}")
        if len(set(v)) != len(v):
            raise ValueError("admins lists an ARN twice")
        return v

    def autoscaler_for(self, cloud: str) -> str:
        """The node autoscaler in effect on `cloud` (the cloud's default when unset)."""
        return self.autoscaler or AUTOSCALERS[cloud][0]

    def protected(self, environment: str) -> bool:
        """Deletion protection in `environment`: the configured value, else on in prod only."""
        return self.deletion_protection if self.deletion_protection is not None else environment == "prod"

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if v not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported Kubernetes version {v!r}; allowed: {', '.join(SUPPORTED_VERSIONS)}")
        return v

    @check("public_endpoint", "public_access_cidrs")
    def _allow_list(self) -> Iterator[Problem]:
        if self.public_endpoint and not self.public_access_cidrs:
            yield Problem(
                (),
                "publicEndpoint: true needs publicAccessCidrs (an allow-list); "
                "leave the endpoint private or list the networks that may reach it",
            )


def assume_role_policy(service: str) -> str:
    """Trust policy letting an AWS service assume a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def eks_kubeconfig(name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (no static credentials)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", name, "--region", region],
                        }
                    },
                }
            ],
        }
    )


def gke_kubeconfig(name: str, endpoint: str, ca_data: str) -> str:
    """A kubeconfig that authenticates with gke-gcloud-auth-plugin."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": name, "cluster": {"server": f"https://{endpoint}", "certificate-authority-data": ca_data}}
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "gke-gcloud-auth-plugin",
                            "provideClusterInfo": True,
                        }
                    },
                }
            ],
        }
    )


def admin_principals(spec: ClusterSpec, deploy_role_arn: str | None) -> list[str]:
    """Who gets a cluster-admin access entry: the deploy identity first, then `cluster.admins`."""
    return list(dict.fromkeys([*([deploy_role_arn] if deploy_role_arn else []), *spec.admins]))


def endpoint_access(spec: ClusterSpec) -> dict[str, Any]:
    """How the cluster's API can be reached: always from inside its network, and from the listed
    CIDRs when the public endpoint is on."""
    return {"private": True, "public": spec.public_endpoint, "publicCidrs": list(spec.public_access_cidrs)}


class GpuCluster(pulumi.ComponentResource):
    """Common outputs of a cluster on either cloud."""

    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    k8s_provider: k8s.Provider
    cloud: str
    region: str
    version: str

    def _finish(self, outputs: dict[str, Any]) -> None:
        self.k8s_provider = k8s.Provider(
            f"{self._name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=child_opts(self),
        )
        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "endpoint": self.endpoint,
                "kubeconfig": pulumi.Output.secret(self.kubeconfig),
                "cloud": self.cloud,
                "region": self.region,
                "version": self.version,
                **outputs,
            }
        )


class EksCluster(GpuCluster):
    """An EKS cluster with secrets encrypted by its own KMS key, an OIDC provider for IRSA, a node
    role for managed node groups, and the core add-ons."""

    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    """The cluster security group EKS creates (control plane <-> nodes); Karpenter's nodes join it."""

    def __init__(
        self,
        name: str,
        spec: ClusterSpec,
        *,
        region: str,
        subnet_ids: pulumi.Input[list[str]],
        safety: DataSafety,
        deploy_role_arn: str | None = None,
        environment: str = "dev",
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`deploy_role_arn`: the identity `pulumi up` runs as; it gets an explicit admin access entry
        (and the implicit creator entry is turned off, so the two never collide). Without it the
        creator keeps EKS's bootstrap admin entry."""
        super().__init__(type_token("compute", "EksCluster"), name, None, opts)
        self._name = name
        self.cloud, self.region, self.version = "aws", region, spec.version
        role = aws.iam.Role(
            f"{name}-cluster-role",
            assume_role_policy=assume_role_policy("eks.amazonaws.com"),
            tags=merge_tags(tags),
            opts=child_opts(self),
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy",
            role=role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=child_opts(role),
        )
        key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"Envelope encryption of Kubernetes secrets in {name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=merge_tags(tags),
            opts=data_opts(self, safety),
        )
        cluster = aws.eks.Cluster(
            f"{name}-eks",
            role_arn=role.arn,
            version=spec.version,
            vpc_config={
                "subnet_ids": subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": spec.public_endpoint,
                "public_access_cidrs": spec.public_access_cidrs or None,
            },
            access_config={
                "authentication_mode": "API",
                "bootstrap_cluster_creator_admin_permissions": deploy_role_arn is None,
            },
            encryption_config={"provider": {"key_arn": key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=["api", "audit", "authenticator"],
            deletion_protection=spec.protected(environment),
            tags=merge_tags(tags, name=f"{name}-eks"),
            opts=child_opts(self),
        )
        issuer = cluster.identities.apply(lambda ids: ids[0]["oidcs"][0]["issuer"])
        oidc = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc",
            url=issuer,
            client_id_lists=["sts.amazonaws.com"],
            tags=merge_tags(tags),
            opts=child_opts(cluster),
        )
        node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
            tags=merge_tags(tags),
            opts=child_opts(self),
        )
        for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"):
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy}",
                role=node_role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                opts=child_opts(node_role),
            )
        for addon in ("vpc-cni", "coredns", "kube-proxy"):
            aws.eks.Addon(
                f"{name}-{addon}",
                cluster_name=cluster.name,
                addon_name=addon,
                resolve_conflicts_on_update="OVERWRITE",
                opts=child_opts(cluster),
            )
        self.admins = admin_principals(spec, deploy_role_arn)
        for i, principal in enumerate(self.admins):
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{i}",
                cluster_name=cluster.name,
                principal_arn=principal,
                type="STANDARD",
                tags=merge_tags(tags),
                opts=child_opts(cluster),
            )
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{i}-policy",
                cluster_name=cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=EKS_ADMIN_POLICY,
                access_scope={"type": "cluster"},
                opts=child_opts(entry),
            )
        self.cluster = cluster
        self.cluster_name = cluster.name
        self.cluster_arn = cluster.arn
        self.security_group_id = cluster.vpc_config.apply(lambda v: (v or {}).get("cluster_security_group_id"))
        self.endpoint = cluster.endpoint
        self.oidc_issuer = issuer
        self.oidc_provider_arn = oidc.arn
        self.node_role_arn = node_role.arn
        self.kubeconfig = pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority).apply(
            lambda a: eks_kubeconfig(a[0], a[1], a[2]["data"], region)
        )
        self._finish(
            {
                "oidcProviderArn": self.oidc_provider_arn,
                "nodeRoleArn": self.node_role_arn,
                "admins": self.admins,
                "endpointAccess": endpoint_access(spec),
            }
        )


class GkeCluster(GpuCluster):
    """A regional GKE cluster: private nodes, Workload Identity, no default node pool, and a node
    service account with only the logging, monitoring and image-pull roles."""

    node_service_account: pulumi.Output[str]
    workload_pool: str

    def __init__(
        self,
        name: str,
        spec: ClusterSpec,
        *,
        project: str,
        region: str,
        network: pulumi.Input[str],
        subnetwork: pulumi.Input[str],
        master_cidr: str,
        environment: str = "dev",
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("compute", "GkeCluster"), name, None, opts)
        self._name = name
        self.cloud, self.region, self.version = "gcp", region, spec.version
        node_sa = gcp.serviceaccount.Account(
            f"{name}-nodes",
            account_id=f"{name}-nodes"[:30],
            display_name=f"GKE nodes of {name}",
            opts=child_opts(self),
        )
        for role in ("roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/artifactregistry.reader"):
            gcp.projects.IAMMember(
                f"{name}-nodes-{role.split('/')[1]}",
                project=project,
                role=role,
                member=node_sa.email.apply(lambda e: f"serviceAccount:{e}"),
                opts=child_opts(node_sa),
            )
        self.workload_pool = f"{project}.svc.id.goog"
        cluster = gcp.container.Cluster(
            f"{name}-gke",
            location=region,
            network=network,
            subnetwork=subnetwork,
            # GKE needs a default pool to exist at creation; it is removed at once in favour of
            # aicloud's own pools.
            remove_default_node_pool=True,
            initial_node_count=1,
            min_master_version=spec.version,
            release_channel={"channel": "REGULAR"},
            networking_mode="VPC_NATIVE",
            ip_allocation_policy={
                "cluster_secondary_range_name": "pods",
                "services_secondary_range_name": "services",
            },
            private_cluster_config={
                "enable_private_nodes": True,
                "enable_private_endpoint": not spec.public_endpoint,
                "master_ipv4_cidr_block": master_cidr,
            },
            master_authorized_networks_config={
                "cidr_blocks": [
                    {"cidr_block": c, "display_name": f"allow-{i}"} for i, c in enumerate(spec.public_access_cidrs)
                ]
            },
            workload_identity_config={"workload_pool": self.workload_pool},
            logging_config={"enable_components": ["SYSTEM_COMPONENTS", "APISERVER", "WORKLOADS"]},
            enable_shielded_nodes=True,
            deletion_protection=spec.protected(environment),
            resource_labels=gcp_labels(merge_tags(tags)),
            opts=child_opts(self, ignore_changes=["initialNodeCount"]),
        )
        self.cluster = cluster
        self.cluster_name = cluster.name
        self.cluster_id = cluster.id
        self.endpoint = cluster.endpoint
        self.node_service_account = node_sa.email
        self.kubeconfig = pulumi.Output.all(cluster.name, cluster.endpoint, cluster.master_auth).apply(
            lambda a: gke_kubeconfig(a[0], a[1], (a[2] or {}).get("cluster_ca_certificate", ""))
        )
        self._finish(
            {
                "workloadPool": self.workload_pool,
                "nodeServiceAccount": self.node_service_account,
                "endpointAccess": endpoint_access(spec),
            }
        )
