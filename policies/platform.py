"""Platform guardrails: the deployer can reach every cluster it configures, and every EKS pool that
may grow has a node autoscaler that grows it.

- `aicloud-deployer-reaches-cluster-api`: for each cluster that gets Kubernetes objects from the
  stack, the cluster's API endpoint access (EKS `vpcConfig`, GKE private cluster config and
  authorized networks) against where `pulumi up` runs (the `aicloud:platform:DeployPath`
  component's outputs; a stack without one is deployed from a GitHub-hosted runner, the default
  workflow). Decided by `components.deploy.cluster_reach`.
- `aicloud-preview-reaches-cluster-api`: the pull-request `pulumi preview` reads each such cluster:
  its runner (`previewRunsOn`) reaches the API (`components.deploy.preview_reach`), and the stack's
  read-only CI preview identity (`aicloud:ci`) can read objects there and write nothing: on EKS an
  access entry tagged `aicloud:ci-role=preview` associated with `AmazonEKSViewPolicy` only, on GKE
  a project role GKE maps to Kubernetes read (`roles/viewer`, `roles/container.viewer`) and no
  other role. Without `aicloud:ci` the stack names no preview identity, and only the route is judged.
- `aicloud-eks-node-autoscaler-installed`: an EKS managed node group whose size may vary needs the
  Cluster Autoscaler in its cluster; a Karpenter NodePool needs Karpenter's controller there.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation

from components.ci import CI_ROLE_TAG, GCP_READ_ONLY_ROLES, GKE_OBJECT_READ_ROLES
from components.cluster import EKS_VIEW_POLICY
from components.deploy import cluster_reach
from policies.common import (
    REGION_COMPONENT,
    UNKNOWN,
    Res,
    Rule,
    StackView,
    as_dict,
    as_list,
    dig,
    truthy,
)

DEPLOY_PATH = "aicloud:platform:DeployPath"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
GKE_CLUSTER = "gcp:container/cluster:Cluster"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
KARPENTER_NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
IAM_ROLE = "aws:iam/role:Role"
ACCESS_ENTRY = "aws:eks/accessEntry:AccessEntry"
ACCESS_POLICY = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
GCP_ACCOUNT = "gcp:serviceaccount/account:Account"
GCP_PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
PREVIEW_ACCOUNT_PREFIX = "ci-preview-"
"""`accountId` prefix of the CI preview service account (`components.ci.CiAccess`)."""


def _access(res: Res) -> tuple[bool, bool, list[str]] | None:
    """(private endpoint, public endpoint, public CIDRs) of a cluster resource; None if unknown."""
    p = res.props
    if res.type == EKS_CLUSTER:
        vpc = as_dict(p.get("vpcConfig"))
        private, public = truthy(vpc.get("endpointPrivateAccess")), truthy(vpc.get("endpointPublicAccess"))
        cidrs = vpc.get("publicAccessCidrs")
        if UNKNOWN in (private, public, cidrs):
            return None
        public = True if public is None else public  # EKS default: public
        cidrs = as_list(cidrs) or ["0.0.0.0/0"]
        return bool(private), bool(public), [c for c in cidrs if isinstance(c, str)]
    private_endpoint = truthy(dig(p, "privateClusterConfig.enablePrivateEndpoint"))
    if private_endpoint is UNKNOWN:
        return None
    blocks = dig(p, "masterAuthorizedNetworksConfig.cidrBlocks")
    if blocks is UNKNOWN:
        return None
    cidrs = [b.get("cidrBlock") for b in as_list(blocks) if isinstance(b, dict) and isinstance(b.get("cidrBlock"), str)]
    return True, not private_endpoint, cidrs or ["0.0.0.0/0"]


def _region_key(view: StackView, res: Res) -> str | None:
    _, region = view.scope(res)
    node = view.by_urn.get(region or "")
    return node.name if node is not None and node.type == REGION_COMPONENT else None


def _k8s_objects(view: StackView) -> dict[str, int]:
    """Cluster component URN -> number of Kubernetes objects applied to it."""
    counts: dict[str, int] = {}
    for res in view.resources:
        if not res.type.startswith("kubernetes:") or res.type.startswith("pulumi:providers:"):
            continue
        provider = view.by_urn.get(res.provider_urn or "")
        if provider is None:
            continue
        cluster, _ = view.scope(res)
        if cluster:
            counts[cluster] = counts.get(cluster, 0) + 1
    return counts


def deployer_reaches_cluster(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    paths = view.of_type(DEPLOY_PATH)
    deploy = paths[0].props if paths else {}
    runner = deploy.get("runner") or "github-hosted"
    egress = [c for c in as_list(deploy.get("egressCidrs")) if isinstance(c, str)]
    network = deploy.get("network") if isinstance(deploy.get("network"), str) else None
    where = deploy.get("appliedFrom") or "a GitHub-hosted runner (the default deploy workflow)"
    objects = _k8s_objects(view)
    for res in view.of_type(EKS_CLUSTER, GKE_CLUSTER):
        cluster, _ = view.scope(res)
        count = objects.get(cluster or "", 0)
        access = _access(res)
        if not count or access is None:
            continue
        private, public, cidrs = access
        region = _region_key(view, res) or "?"
        reach = cluster_reach(
            region_key=region,
            private_access=private,
            public=public,
            public_cidrs=cidrs,
            runner=str(runner),
            egress_cidrs=egress,
            network=network,
        )
        if reach.ok:
            continue
        report(
            f"Cluster '{res.name}' (region {region}) gets {count} Kubernetes objects from `pulumi up`, but the "
            f"deployer, {where}, cannot reach its API: {reach.detail}. Run the deploy on a self-hosted runner with "
            "fixed egress addresses (aicloud:deploy.runner: self-hosted, egressCidrs, which join the API's "
            "allow-list) or inside the region's network (aicloud:deploy.network); see the README's Deploy path.",
            res.urn,
        )


def _tagged_preview(res: Res) -> bool:
    return as_dict(res.props.get("tags")).get(CI_ROLE_TAG) == "preview"


def _preview_route(view: StackView, res: Res, deploy: dict[str, Any]) -> str | None:
    """Why the preview runner cannot reach this cluster's API; None when it can (or unknown)."""
    access = _access(res)
    if access is None:
        return None
    labels = [x for x in as_list(deploy.get("previewRunsOn") or deploy.get("runsOn")) if isinstance(x, str)]
    preview = "self-hosted" if "self-hosted" in labels else "github-hosted"
    shared = preview == "self-hosted" and deploy.get("runner") == "self-hosted"
    private, public, cidrs = access
    reach = cluster_reach(
        region_key=_region_key(view, res) or "?",
        private_access=private,
        public=public,
        public_cidrs=cidrs,
        runner=preview,
        egress_cidrs=[c for c in as_list(deploy.get("egressCidrs")) if isinstance(c, str)] if shared else [],
        network=deploy.get("network") if shared and isinstance(deploy.get("network"), str) else None,
    )
    if reach.ok:
        return None
    where = deploy.get("previewedFrom") or "a GitHub-hosted runner (the default preview workflow)"
    return f"the preview runner, {where}, cannot reach its API: {reach.detail}"


def _eks_preview_read(view: StackView, cluster: Res) -> list[str]:
    """What is wrong with the preview identity's access to one EKS cluster (empty: reads, cannot write)."""
    entries = [e for e in view.of_type(ACCESS_ENTRY) if _tagged_preview(e) and view.same_scope(e, cluster)]
    if not entries:
        return ["the CI preview role has no access entry there, so EKS answers its requests 401 and the provider "
                "previews without the cluster"]  # fmt: skip
    policies = [
        a.props.get("policyArn")
        for a in view.of_type(ACCESS_POLICY)
        if a.parent is not None and any(a.parent.urn == e.urn for e in entries)
    ]
    problems = []
    if EKS_VIEW_POLICY not in policies:
        problems.append(
            "the CI preview role's access entry is not associated with AmazonEKSViewPolicy, so it reads nothing"
        )
    writes = sorted({str(p) for p in policies if p != EKS_VIEW_POLICY and p is not UNKNOWN})
    groups = [g for e in entries for g in as_list(e.props.get("kubernetesGroups"))]
    if writes:
        problems.append(f"the CI preview role is also associated with {', '.join(writes)}: a preview must not write")
    if groups:
        problems.append(f"the CI preview role's access entry maps Kubernetes groups {groups}, whose RBAC may write")
    return problems


def _gke_preview_read(view: StackView) -> list[str]:
    """What is wrong with the preview service account's project roles for reading GKE objects."""
    accounts = [
        a for a in view.of_type(GCP_ACCOUNT) if str(a.props.get("accountId", "")).startswith(PREVIEW_ACCOUNT_PREFIX)
    ]
    roles = {
        m.props.get("role")
        for m in view.of_type(GCP_PROJECT_MEMBER)
        if m.parent is not None and any(m.parent.urn == a.urn for a in accounts)
    }
    problems = []
    if not roles & GKE_OBJECT_READ_ROLES:
        problems.append(
            f"the CI preview service account has {', '.join(sorted(map(str, roles))) or 'no project role'}, none of "
            f"which GKE maps to reading Kubernetes objects ({', '.join(sorted(GKE_OBJECT_READ_ROLES))})"
        )
    writes = sorted(str(r) for r in roles - GCP_READ_ONLY_ROLES if r is not UNKNOWN)
    if writes:
        problems.append(f"the CI preview service account also holds {', '.join(writes)}: a preview must not write")
    return problems


def preview_reaches_cluster(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    paths = view.of_type(DEPLOY_PATH)
    deploy = paths[0].props if paths else {}
    objects = _k8s_objects(view)
    aws_identity = any(_tagged_preview(r) for r in view.of_type(IAM_ROLE))
    gcp_identity = any(
        str(a.props.get("accountId", "")).startswith(PREVIEW_ACCOUNT_PREFIX) for a in view.of_type(GCP_ACCOUNT)
    )
    for res in view.of_type(EKS_CLUSTER, GKE_CLUSTER):
        cluster, _ = view.scope(res)
        count = objects.get(cluster or "", 0)
        if not count:
            continue
        problems = [p for p in [_preview_route(view, res, deploy)] if p]
        if res.type == EKS_CLUSTER and aws_identity:
            problems += _eks_preview_read(view, res)
        if res.type == GKE_CLUSTER and gcp_identity:
            problems += _gke_preview_read(view)
        if not problems:
            continue
        region = _region_key(view, res) or "?"
        report(
            f"Cluster '{res.name}' (region {region}) gets {count} Kubernetes objects, but the pull-request `pulumi "
            f"preview` cannot read it: {'; '.join(problems)}. Such a preview shows input-level diffs only (no "
            "server-side dry-run, schema or live state) and fails on `--refresh`. Run it on self-hosted runners in "
            "the deploy network (aicloud:deploy.previewRunsOn, default runsOn) and let aicloud:ci give the preview "
            "identity read-only cluster access (README: Deploy path).",
            res.urn,
        )


def _releases(view: StackView, word: str) -> list[Res]:
    return [r for r in view.of_type(HELM_RELEASE) if word in str(r.props.get("chart", ""))]


def node_autoscaler_installed(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    scalers = _releases(view, "cluster-autoscaler")
    karpenters = _releases(view, "karpenter")
    for res in view.of_type("aws:eks/nodeGroup:NodeGroup"):
        low, high = dig(res.props, "scalingConfig.minSize"), dig(res.props, "scalingConfig.maxSize")
        if not isinstance(low, int | float) or not isinstance(high, int | float) or high <= low:
            continue
        if any(view.same_scope(res, s) for s in scalers):
            continue
        report(
            f"EKS node group '{res.name}' may hold {int(low)} to {int(high)} nodes, but no node autoscaler runs in "
            "its cluster: EKS never resizes a managed node group by itself, so it stays at its desired size while "
            "pods wait. Install the Cluster Autoscaler (cluster.autoscaler: cluster-autoscaler) or let Karpenter "
            "scale the pool (cluster.autoscaler: karpenter).",
            res.urn,
        )
    for res in view.of_type(KARPENTER_NODEPOOL):
        if not any(view.same_scope(res, k) for k in karpenters):
            report(
                f"Karpenter NodePool '{res.name}' has no Karpenter controller in its cluster, so no node is ever "
                "launched for it. Install Karpenter's chart in the cluster (cluster.autoscaler: karpenter).",
                res.urn,
            )


RULES = [
    Rule(
        "aicloud-deployer-reaches-cluster-api",
        "The machine running `pulumi up` can reach the API of every cluster the stack applies objects to.",
        "platform",
        deployer_reaches_cluster,
        stack=True,
    ),
    Rule(
        "aicloud-preview-reaches-cluster-api",
        "The pull-request `pulumi preview` reaches and reads (read-only) every cluster the stack applies objects to.",
        "platform",
        preview_reaches_cluster,
        stack=True,
    ),
    Rule(
        "aicloud-eks-node-autoscaler-installed",
        "Every EKS node group that may change size, and every Karpenter NodePool, has its autoscaler running.",
        "platform",
        node_autoscaler_installed,
        stack=True,
    ),
]
