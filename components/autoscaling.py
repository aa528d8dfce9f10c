"""Node autoscaling on EKS: Karpenter (the default) or the Cluster Autoscaler.

EKS managed node groups never resize themselves, so every EKS cluster gets a node autoscaler:

- **Karpenter** (`cluster.autoscaler: karpenter`, the default). Its controller runs on the managed
  node group of the system pool (the chart's default affinity keeps it off nodes it launched); each
  node pool becomes an `EC2NodeClass` + `NodePool` pair rendered by the pure helpers below from the
  pool's `NodePoolSpec`: the same labels and taints as the managed group, the pool's one instance
  type, its capacity type and zones, and limits of (maxNodes - minNodes) x the machine's resources.
  A pool's floor (`minNodes`) stays a fixed-size managed node group (Karpenter keeps no idle nodes),
  so "minNodes 2, maxNodes 12" is two managed nodes plus up to ten Karpenter nodes. Spot
  interruptions, rebalance recommendations, instance state changes and scheduled health events reach
  the controller through an SQS queue fed by EventBridge rules, so it drains a node before AWS takes
  it. IAM follows the upstream getting-started template, scoped to the cluster's tags; the instance
  profile is ours (`EC2NodeClass.spec.instanceProfile`), so the controller needs no IAM write access.
- **Cluster Autoscaler** (`cluster.autoscaler: cluster-autoscaler`): the managed node groups keep
  their min..max and the node-template tags (`components.nodepool.autoscaler_tags`) so it can scale
  them from zero; the controller has its own IRSA role.

Field names follow the upstream v1 CRDs (`karpenter.sh/v1` NodePool, `karpenter.k8s.aws/v1`
EC2NodeClass, Karpenter 1.14.1) and the charts' values files at the pinned versions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.base import child_opts, merge_tags, type_token
from components.capacity import karpenter_tier_pools
from components.helm import helm_release
from components.identity import irsa_trust_policy
from components.nodepool import POOL_LABEL, EksGpuNodePool, NodePoolSpec, pool_labels, pool_taints
from components.upstream import chart_pin

KARPENTER_CHART = chart_pin("karpenter")
"""Karpenter's OCI chart (it ships the NodePool, NodeClaim and EC2NodeClass CRDs)."""
CLUSTER_AUTOSCALER_CHART = chart_pin("cluster-autoscaler")
KARPENTER_NAMESPACE = "kube-system"
KARPENTER_SERVICE_ACCOUNT = "karpenter"
CLUSTER_AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"
NODEPOOL_API = "karpenter.sh/v1"
NODECLASS_API = "karpenter.k8s.aws/v1"
AMI_ALIAS = "al2023@latest"
"""AL2023 EKS-optimized AMIs; Karpenter picks the NVIDIA variant for GPU instance types. (`@latest`
follows AWS's releases: node drift replaces nodes when a new AMI ships, within disruption budgets.)"""

INTERRUPTION_EVENTS: dict[str, tuple[str, str]] = {
    "scheduled-change": ("aws.health", "AWS Health Event"),
    "spot-interruption": ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
    "rebalance": ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
    "instance-state-change": ("aws.ec2", "EC2 Instance State-change Notification"),
    "capacity-reservation-interruption": ("aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning"),
}
"""EventBridge rules feeding Karpenter's interruption queue (upstream cloudformation.yaml)."""


# --------------------------------------------------------------------------- pure helpers


def burst_nodes(spec: NodePoolSpec) -> int:
    """Nodes Karpenter may add above the pool's fixed managed floor."""
    return spec.max_nodes - spec.min_nodes


def pool_limits(spec: NodePoolSpec, nodes: int) -> dict[str, str]:
    """NodePool `limits` for `nodes` nodes of the pool's machine type (cpu, memory, GPUs, nodes)."""
    machine = spec.machine
    assert machine is not None, "spec validation guarantees a catalog machine"
    limits = {
        "cpu": str(machine.vcpus * nodes),
        "memory": f"{int(machine.memory_gib * nodes)}Gi",
        "nodes": str(nodes),
    }
    if machine.is_gpu:
        limits["nvidia.com/gpu"] = str(machine.gpus * nodes)
    return limits


def node_class_name(spec: NodePoolSpec) -> str:
    return spec.name


def node_class_manifest(
    spec: NodePoolSpec,
    *,
    cluster_name: str,
    instance_profile: str,
    subnet_ids: list[str],
    security_group_ids: list[str],
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The pool's EC2NodeClass: AL2023, our instance profile, the cluster's private subnets and
    security group, IMDSv2 with hop limit 1, an encrypted gp3 root volume of the pool's size."""
    return {
        "apiVersion": NODECLASS_API,
        "kind": "EC2NodeClass",
        "metadata": {"name": node_class_name(spec)},
        "spec": {
            "amiSelectorTerms": [{"alias": AMI_ALIAS}],
            "instanceProfile": instance_profile,
            "subnetSelectorTerms": [{"id": s} for s in subnet_ids],
            "securityGroupSelectorTerms": [{"id": g} for g in security_group_ids],
            "metadataOptions": {
                "httpEndpoint": "enabled",
                "httpTokens": "required",
                "httpPutResponseHopLimit": 1,
            },
            "blockDeviceMappings": [
                {
                    "deviceName": "/dev/xvda",
                    "rootVolume": True,
                    "ebs": {
                        "volumeSize": f"{spec.disk_size_gb}Gi",
                        "volumeType": "gp3",
                        "encrypted": True,
                        "deleteOnTermination": True,
                    },
                }
            ],
            # Karpenter adds `kubernetes.io/cluster/<cluster>: owned`, `eks:eks-cluster-name` and its
            # own keys to what it launches (the controller policy's conditions require them); the
            # CRD refuses them here (EC2NodeClass `spec.tags` CEL rules).
            "tags": {**(tags or {}), "aicloud:pool": spec.name},
        },
    }


def node_pool_manifest(spec: NodePoolSpec, *, zones: list[str]) -> dict[str, Any]:
    """The pool's Karpenter NodePool: nodes that look exactly like the managed group's (labels,
    taints), of the pool's one instance type and capacity type, in its zones, up to the burst limits.

    Training pools are consolidated only when empty (a running job is never packed elsewhere);
    other pools also when under-utilized. At most one node of a pool is disrupted at a time.
    """
    machine = spec.machine
    assert machine is not None
    training = spec.role == "training"
    return {
        "apiVersion": NODEPOOL_API,
        "kind": "NodePool",
        "metadata": {"name": spec.name},
        "spec": {
            "template": {
                "metadata": {"labels": pool_labels(spec, "aws")},
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.k8s.aws",
                        "kind": "EC2NodeClass",
                        "name": node_class_name(spec),
                    },
                    "taints": [t.model_dump() for t in pool_taints(spec)],
                    "requirements": [
                        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [machine.type]},
                        {
                            "key": "karpenter.sh/capacity-type",
                            "operator": "In",
                            "values": ["spot" if spec.spot else "on-demand"],
                        },
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": list(spec.zones or zones)},
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                    ],
                    "expireAfter": "720h",
                },
            },
            "limits": pool_limits(spec, burst_nodes(spec)),
            "disruption": {
                "consolidationPolicy": "WhenEmpty" if training else "WhenEmptyOrUnderutilized",
                "consolidateAfter": "10m" if training else "2m",
                "budgets": [{"nodes": "1"}],
            },
        },
    }


def karpenter_controller_policy(
    *, cluster_name: str, cluster_arn: str, region: str, node_role_arn: str, queue_arn: str
) -> dict[str, Any]:
    """The controller's permissions (upstream getting-started template at the pinned version, less
    the instance-profile write actions: aicloud creates the instance profile itself; and less the
    zonal-shift read, for `settings.enableZonalShift`, which aicloud leaves off). Held against the
    vendored template in tests/spine/test_karpenter_iam.py."""
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    arn = node_role_arn.split(":")
    account = arn[4] if len(arn) == 6 and arn[4] else "*"  # the node role's account is the cluster's
    request_owned = {
        f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned",
        "aws:RequestTag/eks:eks-cluster-name": cluster_name,
    }
    ec2 = f"arn:aws:ec2:{region}"
    created = [
        f"{ec2}:*:{kind}/*"
        for kind in ("fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request")
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowScopedEC2InstanceAccessActions",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Resource": [
                    f"{ec2}::image/*",
                    f"{ec2}::snapshot/*",
                    f"{ec2}:*:security-group/*",
                    f"{ec2}:*:subnet/*",
                    f"{ec2}:*:capacity-reservation/*",
                    f"{ec2}:*:placement-group/*",
                ],
            },
            {
                "Sid": "AllowScopedEC2LaunchTemplateAccessActions",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Resource": f"{ec2}:*:launch-template/*",
                "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}},
            },
            {
                "Sid": "AllowScopedEC2InstanceActionsWithTags",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
                "Resource": created,
                "Condition": {
                    "StringEquals": request_owned,
                    "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedResourceCreationTagging",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": created,
                "Condition": {
                    "StringEquals": {
                        **request_owned,
                        "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                    },
                    "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedResourceTagging",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": f"{ec2}:*:instance/*",
                "Condition": {
                    "StringEquals": owned,
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                    "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                    "ForAllValues:StringEquals": {
                        "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                    },
                },
            },
            {
                "Sid": "AllowScopedDeletion",
                "Effect": "Allow",
                "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
                "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
                "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}},
            },
            {
                "Sid": "AllowPassingInstanceRole",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": node_role_arn,
                "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            },
            {
                # The EC2NodeClass finalizer lists the instance profiles Karpenter may have made for
                # the class (even with `spec.instanceProfile`): without it no node class deletes.
                "Sid": "AllowUnscopedInstanceProfileListAction",
                "Effect": "Allow",
                "Action": "iam:ListInstanceProfiles",
                "Resource": "*",
            },
            {
                "Sid": "AllowInstanceProfileReadActions",
                "Effect": "Allow",
                "Action": ["iam:GetInstanceProfile"],
                "Resource": f"arn:aws:iam::{account}:instance-profile/*",
            },
            {
                "Sid": "AllowAPIServerEndpointDiscovery",
                "Effect": "Allow",
                "Action": "eks:DescribeCluster",
                "Resource": cluster_arn,
            },
            {
                "Sid": "AllowInterruptionQueueActions",
                "Effect": "Allow",
                "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
                "Resource": queue_arn,
            },
            {
                "Sid": "AllowRegionalReadActions",
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeCapacityReservations",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstances",
                    "ec2:DescribeInstanceStatus",
                    "ec2:DescribeInstanceTypeOfferings",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplates",
                    "ec2:DescribePlacementGroups",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSpotPriceHistory",
                    "ec2:DescribeSubnets",
                ],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
            },
            {
                "Sid": "AllowSSMReadActions",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": f"arn:aws:ssm:{region}::parameter/aws/service/*",
            },
            {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Action": "pricing:GetProducts", "Resource": "*"},
        ],
    }


def interruption_queue_policy(queue_arn: str) -> dict[str, Any]:
    """Queue policy: EventBridge (and SQS) may send; nothing may use the queue without TLS."""
    return {
        "Version": "2012-10-17",
        "Id": "EC2InterruptionPolicy",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
            },
            {
                "Sid": "DenyHTTP",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": queue_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def event_pattern(event: str) -> dict[str, list[str]]:
    source, detail_type = INTERRUPTION_EVENTS[event]
    return {"source": [source], "detail-type": [detail_type]}


def karpenter_values(
    *,
    cluster_name: str,
    cluster_endpoint: str,
    queue_name: str,
    role_arn: str,
    system_pool: str,
    system_nodes: int = 2,
) -> dict[str, Any]:
    """Chart values: the cluster and queue, the IRSA role, and the controller on the system pool's
    managed nodes (the chart's own affinity already keeps it off the nodes it launches). The chart
    runs 2 replicas with a required anti-affinity on `kubernetes.io/hostname`: on a system pool of
    fewer managed nodes the extra replica would stay Pending for good (no node of Karpenter's may
    take it) and, with the chart's PodDisruptionBudget (maxUnavailable 1) already spent on it,
    block every drain of the system nodes; so one replica per system node, at most 2."""
    return {
        "replicas": max(1, min(2, system_nodes)),
        "settings": {
            "clusterName": cluster_name,
            "clusterEndpoint": cluster_endpoint,
            "interruptionQueue": queue_name,
        },
        "serviceAccount": {
            "name": KARPENTER_SERVICE_ACCOUNT,
            "annotations": {"eks.amazonaws.com/role-arn": role_arn},
        },
        "nodeSelector": {"kubernetes.io/os": "linux", POOL_LABEL: system_pool},
        "controller": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
    }


def cluster_autoscaler_policy(cluster_name: str) -> dict[str, Any]:
    """Cluster Autoscaler's permissions: read everywhere, resize only groups tagged for this cluster."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeAutoScalingInstances",
                    "autoscaling:DescribeLaunchConfigurations",
                    "autoscaling:DescribeScalingActivities",
                    "autoscaling:DescribeTags",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:GetInstanceTypesFromInstanceRequirements",
                    "eks:DescribeNodegroup",
                ],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                "Resource": "*",
                "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}},
            },
        ],
    }


def cluster_autoscaler_values(
    *, cluster_name: str, region: str, role_arn: str, version: str, system_pool: str
) -> dict[str, Any]:
    """Chart values: auto-discovery by the node groups' tags, the IRSA role, an image matching the
    cluster's minor version (the autoscaler's compatibility rule), and the controller on the system pool."""
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},
        "image": {"tag": f"v{version}.0"},
        "rbac": {
            "serviceAccount": {
                "name": CLUSTER_AUTOSCALER_SERVICE_ACCOUNT,
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            }
        },
        "extraArgs": {
            "balance-similar-node-groups": True,
            "skip-nodes-with-system-pods": False,
            "expander": "least-waste",
        },
        "nodeSelector": {POOL_LABEL: system_pool},
    }


# --------------------------------------------------------------------------- components


def _irsa_role(
    name: str, parent: pulumi.Resource, cluster: Any, namespace: str, sa: str, tags: dict[str, str] | None
) -> aws.iam.Role:
    return aws.iam.Role(
        name,
        assume_role_policy=pulumi.Output.all(cluster.oidc_provider_arn, cluster.oidc_issuer).apply(
            lambda a: json.dumps(irsa_trust_policy(a[0], a[1], namespace, sa))
        ),
        tags=merge_tags(tags),
        opts=child_opts(parent),
    )


class Karpenter(pulumi.ComponentResource):
    """Karpenter in one EKS cluster: controller role (IRSA), node role with its instance profile and
    access entry, the interruption queue with its EventBridge rules, and the controller (Helm).

    Create it under the region's AWS provider; `k8s_provider` is the cluster's Kubernetes provider.
    The pools' NodePool/EC2NodeClass pairs are created by `EksGpuNodePool` from `node_class_inputs`.
    """

    release: k8s.helm.v3.Release
    node_role_arn: pulumi.Output[str]
    instance_profile: pulumi.Output[str]
    queue_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        cluster: Any,
        region: str,
        system_pool: str,
        k8s_provider: k8s.Provider,
        system_nodes: int = 2,
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("compute", "Karpenter"), name, None, opts)
        node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            tags=merge_tags(tags),
            opts=child_opts(self),
        )
        for policy in (
            "AmazonEKSWorkerNodePolicy",
            "AmazonEKS_CNI_Policy",
            "AmazonEC2ContainerRegistryPullOnly",
            "AmazonSSMManagedInstanceCore",
        ):
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy}",
                role=node_role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                opts=child_opts(node_role),
            )
        profile = aws.iam.InstanceProfile(
            f"{name}-node-profile", role=node_role.name, tags=merge_tags(tags), opts=child_opts(node_role)
        )
        # Nodes Karpenter launches join the cluster through this access entry (API authentication mode).
        aws.eks.AccessEntry(
            f"{name}-node-access",
            cluster_name=cluster.cluster_name,
            principal_arn=node_role.arn,
            type="EC2_LINUX",
            tags=merge_tags(tags),
            opts=child_opts(node_role),
        )
        queue = aws.sqs.Queue(
            f"{name}-interruption",
            message_retention_seconds=300,
            sqs_managed_sse_enabled=True,
            tags=merge_tags(tags),
            opts=child_opts(self),
        )
        aws.sqs.QueuePolicy(
            f"{name}-interruption-policy",
            queue_url=queue.url,
            policy=queue.arn.apply(lambda arn: json.dumps(interruption_queue_policy(arn))),
            opts=child_opts(queue),
        )
        for event in INTERRUPTION_EVENTS:
            rule = aws.cloudwatch.EventRule(
                f"{name}-{event}",
                event_pattern=json.dumps(event_pattern(event)),
                description=f"Karpenter interruption handling: {INTERRUPTION_EVENTS[event][1]}",
                tags=merge_tags(tags),
                opts=child_opts(queue),
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{event}-target",
                rule=rule.name,
                arn=queue.arn,
                target_id="KarpenterInterruptionQueueTarget",
                opts=child_opts(rule),
            )
        role = _irsa_role(f"{name}-controller", self, cluster, KARPENTER_NAMESPACE, KARPENTER_SERVICE_ACCOUNT, tags)
        aws.iam.RolePolicy(
            f"{name}-controller-policy",
            role=role.id,
            policy=pulumi.Output.all(cluster.cluster_name, cluster.cluster_arn, node_role.arn, queue.arn).apply(
                lambda a: json.dumps(
                    karpenter_controller_policy(
                        cluster_name=a[0], cluster_arn=a[1], region=region, node_role_arn=a[2], queue_arn=a[3]
                    )
                )
            ),
            opts=child_opts(role),
        )
        values = pulumi.Output.all(cluster.cluster_name, cluster.endpoint, queue.name, role.arn).apply(
            lambda a: karpenter_values(
                cluster_name=a[0],
                cluster_endpoint=a[1],
                queue_name=a[2],
                role_arn=a[3],
                system_pool=system_pool,
                system_nodes=system_nodes,
            )
        )
        self.release = helm_release(
            f"{name}-release",
            "karpenter",
            namespace=KARPENTER_NAMESPACE,
            release_name="karpenter",
            values=values,
            opts=child_opts(self, provider=k8s_provider),
        )
        self.node_role_arn = node_role.arn
        self.instance_profile = profile.name
        self.queue_name = queue.name
        self.register_outputs(
            {
                "chart": KARPENTER_CHART,
                "queue": queue.name,
                "interruptionEvents": sorted(INTERRUPTION_EVENTS),
                "nodeRoleArn": node_role.arn,
                "instanceProfile": profile.name,
            }
        )


class ClusterAutoscaler(pulumi.ComponentResource):
    """The Cluster Autoscaler (Helm) with its IRSA role, scaling the cluster's tagged node groups."""

    def __init__(
        self,
        name: str,
        *,
        cluster: Any,
        region: str,
        version: str,
        system_pool: str,
        k8s_provider: k8s.Provider,
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("compute", "ClusterAutoscaler"), name, None, opts)
        role = _irsa_role(f"{name}-role", self, cluster, KARPENTER_NAMESPACE, CLUSTER_AUTOSCALER_SERVICE_ACCOUNT, tags)
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=cluster.cluster_name.apply(lambda cn: json.dumps(cluster_autoscaler_policy(cn))),
            opts=child_opts(role),
        )
        values = pulumi.Output.all(cluster.cluster_name, role.arn).apply(
            lambda a: cluster_autoscaler_values(
                cluster_name=a[0], region=region, role_arn=a[1], version=version, system_pool=system_pool
            )
        )
        self.release = helm_release(
            f"{name}-release",
            "cluster-autoscaler",
            namespace=KARPENTER_NAMESPACE,
            release_name="cluster-autoscaler",
            values=values,
            opts=child_opts(self, provider=k8s_provider),
        )
        self.register_outputs({"chart": CLUSTER_AUTOSCALER_CHART})


@dataclass(frozen=True)
class KarpenterNodes:
    """What a pool's EC2NodeClass and NodePool need from its cluster."""

    controller: Karpenter
    k8s_provider: pulumi.ProviderResource
    cluster_name: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    security_group_id: pulumi.Input[str]
    zones: list[str]


def add_karpenter_nodes(pool: EksGpuNodePool, spec: NodePoolSpec, nodes: KarpenterNodes, *, name: str) -> Any:
    """The pool's EC2NodeClass + NodePool (children of the pool component, applied after Karpenter's
    chart has installed the CRDs); None when the pool has no room above its floor."""
    if burst_nodes(spec) <= 0:
        return None
    tags = {"aicloud:pool": spec.name}
    node_class = pulumi.Output.all(
        nodes.cluster_name, nodes.controller.instance_profile, nodes.subnet_ids, nodes.security_group_id
    ).apply(
        lambda a: node_class_manifest(
            spec, cluster_name=a[0], instance_profile=a[1], subnet_ids=list(a[2]), security_group_ids=[a[3]], tags=tags
        )
    )
    nc = k8s.apiextensions.CustomResource(
        f"{name}-nodeclass",
        api_version=NODECLASS_API,
        kind="EC2NodeClass",
        metadata={"name": node_class_name(spec)},
        spec=node_class.apply(lambda m: m["spec"]),
        opts=child_opts(pool, provider=nodes.k8s_provider, depends_on=[nodes.controller.release]),
    )
    manifest = node_pool_manifest(spec, zones=nodes.zones)
    if spec.capacity:
        return _tier_node_pools(pool, spec, nodes, name=name, manifest=manifest, node_class=node_class, nc=nc)
    return k8s.apiextensions.CustomResource(
        f"{name}-nodepool",
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        spec=manifest["spec"],
        opts=child_opts(pool, provider=nodes.k8s_provider, depends_on=[nodes.controller.release, nc]),
    )


def _tier_node_pools(
    pool: EksGpuNodePool,
    spec: NodePoolSpec,
    nodes: KarpenterNodes,
    *,
    name: str,
    manifest: dict[str, Any],
    node_class: pulumi.Output[dict[str, Any]],
    nc: Any,
) -> Any:
    """A capacity chain's NodePools (one per tier, weighted along the chain) and, for reserved tiers,
    an EC2NodeClass each that selects its reservation (components.capacity.karpenter_tier_pools)."""
    base_class = {
        "apiVersion": NODECLASS_API,
        "kind": "EC2NodeClass",
        "metadata": {"name": node_class_name(spec)},
        "spec": {},
    }
    burst = burst_nodes(spec)
    first = None
    for tier_pool, tier_class in karpenter_tier_pools(
        manifest, base_class, spec.capacity or [], limits=lambda n: pool_limits(spec, min(n, burst))
    ):
        tier = tier_pool["metadata"]["name"].removeprefix(f"{spec.name}-")
        deps = [nodes.controller.release, nc]
        if tier_class is not None:
            terms = tier_class["spec"]["capacityReservationSelectorTerms"]
            deps.append(
                k8s.apiextensions.CustomResource(
                    f"{name}-{tier}-nodeclass",
                    api_version=NODECLASS_API,
                    kind="EC2NodeClass",
                    metadata=tier_class["metadata"],
                    spec=node_class.apply(lambda m, t=terms: {**m["spec"], "capacityReservationSelectorTerms": t}),
                    opts=child_opts(pool, provider=nodes.k8s_provider, depends_on=[nodes.controller.release]),
                )
            )
        res = k8s.apiextensions.CustomResource(
            f"{name}-{tier}-nodepool",
            api_version=tier_pool["apiVersion"],
            kind=tier_pool["kind"],
            metadata=tier_pool["metadata"],
            spec=tier_pool["spec"],
            opts=child_opts(pool, provider=nodes.k8s_provider, depends_on=deps),
        )
        first = first or res
    return first
