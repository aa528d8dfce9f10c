"""Platform guardrails: the deployer can reach every cluster it configures, and every EKS pool that
may grow has a node autoscaler that grows it.

- `aicloud-deployer-reaches-cluster-api`: for each cluster that gets Kubernetes objects from the
  stack, the cluster's API endpoint access (EKS `vpcConfig`, GKE private cluster config and
  authorized networks) against where `pulumi up` runs (the `aicloud:platform:DeployPath`
  component's outputs; a stack without one is deployed from a GitHub-hosted runner, the default
  workflow). Decided by `components.deploy.cluster_reach`.
- `aicloud-eks-node-autoscaler-installed`: an EKS managed node group whose size may vary needs the
  Cluster Autoscaler in its cluster; a Karpenter NodePool needs Karpenter's controller there.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation

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
        "aicloud-eks-node-autoscaler-installed",
        "Every EKS node group that may change size, and every Karpenter NodePool, has its autoscaler running.",
        "platform",
        node_autoscaler_installed,
        stack=True,
    ),
]
