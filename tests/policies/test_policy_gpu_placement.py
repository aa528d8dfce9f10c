"""GPU, placement/cost, availability and data-safety guardrails on a small happy-path cluster.

The cluster mirrors what aicloud builds: a cluster component with its Kubernetes provider, a CPU
pool and a tainted GPU pool, the NVIDIA device plugin, and an inference Deployment with an HPA and a
PodDisruptionBudget. Each test changes one field and asserts the exact message.
"""

from __future__ import annotations

from policy_harness import DELETE, Spec, change, check_resource, check_stack, messages, put, urn, without

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
K8S = "pulumi:providers:kubernetes"
PROD = {"environment": "prod"}


def node_group(pool: str, machine: str, *, gpu: bool, role: str, max_nodes: int = 2, spot: bool = False) -> dict:
    return {
        "instanceTypes": [machine],
        "amiType": "AL2023_x86_64_NVIDIA" if gpu else "AL2023_x86_64_STANDARD",
        "capacityType": "SPOT" if spot else "ON_DEMAND",
        "scalingConfig": {"minSize": 0, "desiredSize": 0, "maxSize": max_nodes},
        "launchTemplate": {"id": "lt-1", "version": "1"},
        "labels": {"aicloud.dev/pool": pool, "aicloud.dev/role": role, "aicloud.dev/gpu": "true" if gpu else "false"},
        "taints": [GPU_TAINT] if gpu else [],
    }


def server(**pod: object) -> dict:
    spec = {
        "securityContext": {"runAsNonRoot": True},
        "nodeSelector": {"aicloud.dev/pool": "serve"},
        "tolerations": [GPU_TOLERATION],
        "containers": [
            {
                "name": "server",
                "image": "server:1",
                "resources": {"limits": {"nvidia.com/gpu": 1}},
                "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
                "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": 8080}},
            }
        ],
        **pod,
    }
    return {
        "kind": "Deployment",
        "metadata": {"name": "server", "namespace": "serving"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "server"}},
            "template": {"metadata": {"labels": {"app": "server"}}, "spec": spec},
        },
    }


def cluster() -> list[Spec]:
    return [
        Spec("pulumi:providers:aws", "aws-use1", {"region": "us-east-1"}),
        Spec("aicloud:platform:RegionalPlatform", "use1", provider="aws-use1"),
        Spec("aicloud:compute:EksCluster", "use1-cluster", parent="use1"),
        Spec(K8S, "use1-k8s", {"kubeconfig": "{}"}, parent="use1-cluster"),
        Spec(
            "aicloud:compute:EksGpuNodePool",
            "use1-system",
            {"capacity": {"interruptible": False}},
            parent="use1-cluster",
        ),
        Spec(
            "aws:eks/nodeGroup:NodeGroup",
            "use1-system-ng",
            node_group("system", "m6i.large", gpu=False, role="general"),
            parent="use1-system",
            provider="aws-use1",
        ),
        Spec(
            "aicloud:compute:EksGpuNodePool",
            "use1-serve",
            {"capacity": {"interruptible": False}},
            parent="use1-cluster",
        ),
        Spec(
            "aws:eks/nodeGroup:NodeGroup",
            "use1-serve-ng",
            node_group("serve", "g6.xlarge", gpu=True, role="inference"),
            parent="use1-serve",
            provider="aws-use1",
        ),
        Spec(
            "kubernetes:helm.sh/v3:Release",
            "use1-device-plugin",
            {
                "chart": "nvidia-device-plugin",
                "values": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {"key": "aicloud.dev/gpu", "operator": "In", "values": ["true"]}
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                },
            },
            parent="use1-cluster",
            provider="use1-k8s",
        ),
        Spec("kubernetes:apps/v1:Deployment", "use1-server", server(), parent="use1", provider="use1-k8s"),
        Spec(
            "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
            "use1-server-hpa",
            {
                "metadata": {"name": "server", "namespace": "serving"},
                "spec": {
                    "minReplicas": 2,
                    "maxReplicas": 8,
                    "scaleTargetRef": {"kind": "Deployment", "name": "server"},
                },
            },
            parent="use1",
            provider="use1-k8s",
        ),
        Spec(
            "kubernetes:policy/v1:PodDisruptionBudget",
            "use1-server-pdb",
            {
                "metadata": {"name": "server", "namespace": "serving"},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "server"}}},
            },
            parent="use1",
            provider="use1-k8s",
        ),
    ]


GPU_RULES = (
    "aicloud-gpu-workload-tolerates-pool",
    "aicloud-gpu-request-on-gpu-pool",
    "aicloud-gpu-device-plugin-tolerates-pools",
    "aicloud-gpu-device-plugin-present",
)
STACK_RULES_PROD = (
    "aicloud-spot-interruptible-in-prod",
    "aicloud-inference-min-replicas",
    "aicloud-inference-disruption-budget",
    "aicloud-inference-probes",
)


def test_happy_cluster_passes_every_gpu_placement_and_availability_rule():
    for rule in GPU_RULES:
        assert messages(rule, cluster()) == [], rule
    for rule in STACK_RULES_PROD:
        assert messages(rule, cluster(), PROD) == [], rule
    assert messages("aicloud-region-allowed", cluster(), {"allowedRegions": ["us-east-1"]}) == []
    assert messages("aicloud-gpu-cost-ceiling", cluster(), {"maxGpuCostPerHour": 2.0}) == []
    assert messages("aicloud-gpus-per-pool-ceiling", cluster(), {"maxGpusPerPool": 2}) == []


# --------------------------------------------------------------------------- GPU


def test_gpu_pool_without_taint_is_reported():
    props = node_group("serve", "g6.xlarge", gpu=True, role="inference")
    assert check_resource("aicloud-gpu-pool-tainted", "aws:eks/nodeGroup:NodeGroup", props, name="ng") == []
    assert check_resource(
        "aicloud-gpu-pool-tainted", "aws:eks/nodeGroup:NodeGroup", put(props, "taints", []), name="ng"
    ) == [
        "GPU node pool 'ng' (g6.xlarge) has no nvidia.com/gpu NoSchedule taint, so ordinary pods can fill its GPU "
        "nodes. Add the taint nvidia.com/gpu=present:NoSchedule (aicloud's node pool components add it to every GPU "
        "machine type)."
    ]


def test_gke_gpu_pool_without_taint_is_reported():
    props = {
        "nodeConfig": {"machineType": "g2-standard-8", "taints": [GPU_TAINT], "labels": {"aicloud.dev/pool": "serve"}}
    }
    assert check_resource("aicloud-gpu-pool-tainted", "gcp:container/nodePool:NodePool", props, name="np") == []
    assert check_resource(
        "aicloud-gpu-pool-tainted", "gcp:container/nodePool:NodePool", put(props, "nodeConfig.taints", []), name="np"
    ) == [
        "GPU node pool 'np' (g2-standard-8) has no nvidia.com/gpu NoSchedule taint, so ordinary pods can fill its GPU "
        "nodes. Add the taint nvidia.com/gpu=present:NoSchedule (aicloud's node pool components add it to every GPU "
        "machine type)."
    ]


def test_gpu_workload_without_the_pools_toleration_is_reported():
    stack = change(cluster(), "use1-server", "spec.template.spec.tolerations", [])
    assert check_stack("aicloud-gpu-workload-tolerates-pool", stack) == [
        (
            "Deployment 'server' requests nvidia.com/gpu on node pool 'serve' but does not tolerate its taint "
            "nvidia.com/gpu=present:NoSchedule. Add the matching tolerations (components.nodepool.tolerations_for "
            "builds them from the pool's taints), or its pods stay Pending.",
            urn("kubernetes:apps/v1:Deployment", "use1-server"),
        )
    ]


def test_gpu_workload_on_a_cpu_pool_is_reported():
    stack = change(cluster(), "use1-server", "spec.template.spec.nodeSelector", {"aicloud.dev/pool": "system"})
    assert messages("aicloud-gpu-request-on-gpu-pool", stack) == [
        "Deployment 'server' requests nvidia.com/gpu but can only land on node pools without GPUs: 'system' "
        "(m6i.large). Its pods can never schedule; select a GPU pool with nodeSelector aicloud.dev/pool."
    ]


def test_gpu_workload_selecting_a_missing_pool_is_reported():
    stack = change(cluster(), "use1-server", "spec.template.spec.nodeSelector", {"aicloud.dev/pool": "serv"})
    assert messages("aicloud-gpu-request-on-gpu-pool", stack) == [
        "Deployment 'server' requests nvidia.com/gpu but its node selection matches no node pool of its cluster. "
        "Select an existing GPU pool with nodeSelector aicloud.dev/pool."
    ]


def test_gpu_pools_of_another_cluster_do_not_count():
    """The workload's cluster has only CPU pools; a GPU pool exists in another region's cluster."""
    other = [
        Spec("aicloud:compute:EksCluster", "usw2-cluster"),
        Spec(
            "aws:eks/nodeGroup:NodeGroup",
            "usw2-serve-ng",
            node_group("serve", "g6.xlarge", gpu=True, role="inference"),
            parent="usw2-cluster",
        ),
    ]
    stack = [*without(cluster(), "use1-serve-ng"), *other]
    stack = change(stack, "use1-server", "spec.template.spec.nodeSelector", DELETE)
    assert messages("aicloud-gpu-request-on-gpu-pool", stack) == [
        "Deployment 'server' requests nvidia.com/gpu but its cluster has no GPU node pool. Add a GPU pool to the "
        "region, or deploy the workload where one exists."
    ]


def test_device_plugin_missing_a_pool_taint_is_reported():
    stack = change(
        cluster(), "use1-serve-ng", "taints", [GPU_TAINT, {"key": "dedicated", "value": "llm", "effect": "NO_SCHEDULE"}]
    )
    stack = change(
        stack,
        "use1-server",
        "spec.template.spec.tolerations",
        [GPU_TOLERATION, {"key": "dedicated", "operator": "Exists"}],
    )
    assert messages("aicloud-gpu-workload-tolerates-pool", stack) == []
    assert messages("aicloud-gpu-device-plugin-tolerates-pools", stack) == [
        "The NVIDIA device plugin 'use1-device-plugin' does not tolerate the taint dedicated=llm:NoSchedule of GPU "
        "node pool 'serve', so it never runs there and the pool's GPUs stay invisible to Kubernetes. Add the "
        "tolerations to the chart's values (components.nodepool.device_plugin_values builds them from every GPU pool)."
    ]


def test_eks_gpu_pool_without_device_plugin_is_reported():
    assert messages("aicloud-gpu-device-plugin-present", without(cluster(), "use1-device-plugin")) == [
        "EKS GPU node pool 'use1-serve-ng' has no NVIDIA device plugin in its cluster, so its GPUs are never "
        "advertised to Kubernetes and GPU pods stay Pending. Install the nvidia-device-plugin Helm chart in the "
        "cluster (aicloud's RegionalPlatform does this in every EKS region with GPU pools)."
    ]


def test_device_plugin_not_pinned_to_gpu_nodes_is_reported():
    plugin = next(s for s in cluster() if s.name == "use1-device-plugin")
    release = "kubernetes:helm.sh/v3:Release"
    assert check_resource("aicloud-gpu-device-plugin-gpu-nodes-only", release, plugin.props, name="dp") == []
    loose = put(plugin.props, "values.affinity", DELETE)
    assert check_resource("aicloud-gpu-device-plugin-gpu-nodes-only", release, loose, name="dp") == [
        "The NVIDIA device plugin 'dp' is not pinned to GPU nodes, so its DaemonSet also lands on CPU nodes. Add a "
        "required node affinity (or a nodeSelector) on aicloud.dev/gpu=true to its values."
    ]
    pinned = put(loose, "values.nodeSelector", {"nvidia.com/gpu.present": "true"})
    assert check_resource("aicloud-gpu-device-plugin-gpu-nodes-only", release, pinned, name="dp") == []


# --------------------------------------------------------------------------- placement and cost


def test_provider_outside_the_allowed_regions_is_reported():
    stack = change(cluster(), "aws-use1", "region", "eu-west-1")
    assert check_stack("aicloud-region-allowed", stack, {"allowedRegions": ["us-east-1", "us-west-2"]}) == [
        (
            "Provider 'aws-use1' deploys to eu-west-1, which is not an allowed region of this stack (us-east-1, "
            "us-west-2). Deploy to an allowed region, or add it to aicloud:policy.allowedRegions if data may "
            "live there.",
            urn("pulumi:providers:aws", "aws-use1"),
        )
    ]


def test_aws_provider_without_region_is_reported():
    stack = change(cluster(), "aws-use1", "region", DELETE)
    assert messages("aicloud-region-allowed", stack, {"allowedRegions": ["us-east-1"]}) == [
        "AWS provider 'aws-use1' sets no region, so it falls back to the environment's default region. Set region "
        "explicitly on the provider."
    ]


def test_gcp_resource_placed_apart_from_its_provider_is_reported():
    stack = [
        Spec("pulumi:providers:gcp", "gcp-usc1", {"project": "p", "region": "us-central1"}),
        Spec("gcp:storage/bucket:Bucket", "lake", {"location": "EUROPE-WEST4"}, provider="gcp-usc1"),
    ]
    assert messages("aicloud-region-allowed", stack, {"allowedRegions": ["us-central1"]}) == [
        "gcp:storage/bucket:Bucket 'lake' is placed in europe-west4, which is not an allowed region of this stack "
        "(us-central1). Deploy to an allowed region, or add it to aicloud:policy.allowedRegions if data may live there."
    ]


def test_spot_pool_in_prod_must_be_interruptible():
    stack = change(cluster(), "use1-serve-ng", "capacityType", "SPOT")
    assert messages("aicloud-spot-interruptible-in-prod", stack, {"environment": "dev"}) == []
    assert messages("aicloud-spot-interruptible-in-prod", stack, PROD) == [
        "Node pool 'use1-serve-ng' uses spot capacity in prod but is not marked interruptible, so workloads that "
        "cannot survive losing a node may land on it. Set interruptible: true on the pool if its workloads "
        "checkpoint and resume, or use on-demand capacity (spot: false)."
    ]
    marked = change(stack, "use1-serve", "capacity.interruptible", True)
    assert messages("aicloud-spot-interruptible-in-prod", marked, PROD) == []


def test_gpu_cost_over_the_ceiling_is_reported():
    stack = change(cluster(), "use1-serve-ng", "scalingConfig.maxSize", 3)
    assert messages("aicloud-gpu-cost-ceiling", stack, {"maxGpuCostPerHour": 2.0}) == [
        "The GPU node pools of this stack can cost $2.41 per hour at max scale, above its ceiling of $2.00 "
        "(aicloud:policy.maxGpuCostPerHour); the largest are use1-serve-ng (3 x g6.xlarge, $2.41/h). Lower maxNodes, "
        "choose cheaper machine types, or raise the ceiling."
    ]
    assert messages("aicloud-gpu-cost-ceiling", stack, {}) == []  # no ceiling configured


def test_pool_over_the_gpu_ceiling_is_reported():
    stack = change(cluster(), "use1-serve-ng", "instanceTypes", ["g6.12xlarge"])
    assert messages("aicloud-gpus-per-pool-ceiling", stack, {"maxGpusPerPool": 4}) == [
        "Node pool 'use1-serve-ng' can scale to 8 GPUs (2 x g6.12xlarge with 4 each), above this stack's ceiling of "
        "4 GPUs per pool (aicloud:policy.maxGpusPerPool). Lower maxNodes or raise the ceiling."
    ]


# --------------------------------------------------------------------------- availability


def test_inference_endpoint_scaling_to_one_replica_is_reported():
    stack = change(cluster(), "use1-server-hpa", "spec.minReplicas", 1)
    assert messages("aicloud-inference-min-replicas", stack, {"environment": "staging"}) == []
    assert messages("aicloud-inference-min-replicas", stack, PROD) == [
        "Inference endpoint 'server' can scale down to 1 replica(s) in prod (HorizontalPodAutoscaler 'server' "
        "minReplicas). Set minReplicas to at least 2 so a pod restart or a node drain does not take the region's "
        "endpoint down."
    ]


def test_inference_endpoint_with_one_replica_and_no_autoscaler_is_reported():
    stack = change(without(cluster(), "use1-server-hpa"), "use1-server", "spec.replicas", 1)
    assert messages("aicloud-inference-min-replicas", stack, PROD) == [
        "Inference endpoint 'server' runs 1 replica(s) in prod and has no autoscaler. Set spec.replicas (or an "
        "autoscaler's minReplicas) to at least 2 so a pod restart or a node drain does not take the region's "
        "endpoint down."
    ]


def test_keda_scaled_object_floor_defaults_to_zero():
    keda = Spec(
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
        "use1-server-keda",
        {"metadata": {"name": "server", "namespace": "serving"}, "spec": {"scaleTargetRef": {"name": "server"}}},
        parent="use1",
        provider="use1-k8s",
    )
    stack = [*without(cluster(), "use1-server-hpa"), keda]
    assert messages("aicloud-inference-min-replicas", stack, PROD) == [
        "Inference endpoint 'server' can scale down to 0 replica(s) in prod (ScaledObject 'server' minReplicaCount). "
        "Set minReplicaCount to at least 2 so a pod restart or a node drain does not take the region's endpoint down."
    ]


def test_inference_endpoint_without_disruption_budget_is_reported():
    wrong_selector = change(cluster(), "use1-server-pdb", "spec.selector.matchLabels", {"app": "other"})
    expected = [
        "Inference endpoint 'server' has no PodDisruptionBudget in prod, so a node drain or a cluster upgrade can "
        "evict all its pods at once. Add a PodDisruptionBudget whose selector matches its pod labels "
        "(maxUnavailable: 1)."
    ]
    assert messages("aicloud-inference-disruption-budget", without(cluster(), "use1-server-pdb"), PROD) == expected
    assert messages("aicloud-inference-disruption-budget", wrong_selector, PROD) == expected


def test_inference_endpoint_without_liveness_probe_is_reported():
    stack = change(cluster(), "use1-server", "spec.template.spec.containers[0].livenessProbe", DELETE)
    assert messages("aicloud-inference-probes", stack, PROD) == [
        "Container 'server' of inference endpoint 'server' has no livenessProbe in prod, so a hung server is never "
        "restarted. Add livenessProbe against the model server's health endpoints (/v2/health/ready, /v2/health/live)."
    ]


def test_non_inference_deployments_are_not_endpoints():
    """A CPU Deployment on the system pool is not held to the endpoint rules."""
    worker = server(nodeSelector={"aicloud.dev/pool": "system"}, tolerations=[])
    worker["spec"]["template"]["spec"]["containers"][0] = {"name": "worker", "image": "worker:1"}
    worker["spec"]["replicas"] = 1
    stack = [
        *cluster(),
        Spec(
            "kubernetes:apps/v1:Deployment", "use1-worker", put(worker, "metadata.name", "worker"), provider="use1-k8s"
        ),
    ]
    for rule in ("aicloud-inference-min-replicas", "aicloud-inference-probes", "aicloud-inference-disruption-budget"):
        assert messages(rule, stack, PROD) == [], rule


# --------------------------------------------------------------------------- data safety


def test_data_resource_unprotected_in_prod_is_reported():
    bucket = Spec("aws:s3/bucket:Bucket", "lake", {"bucket": "acme-lake"}, protect=True)
    assert messages("aicloud-data-protected-in-prod", [bucket], PROD) == []
    bucket.protect = False
    assert messages("aicloud-data-protected-in-prod", [bucket], {"environment": "dev"}) == []
    assert messages("aicloud-data-protected-in-prod", [bucket], PROD) == [
        "S3 bucket 'lake' holds data but is not protected in this prod stack, so a change could delete or replace it. "
        "Create it with components.base.data_opts (protect is on in prod) or set the protect resource option."
    ]


def test_cluster_without_deletion_protection_in_prod_is_reported():
    eks = Spec("aws:eks/cluster:Cluster", "use1-eks", {"deletionProtection": True})
    assert messages("aicloud-cluster-deletion-protected-in-prod", [eks], PROD) == []
    eks.props["deletionProtection"] = False
    assert messages("aicloud-cluster-deletion-protected-in-prod", [eks], {"environment": "dev"}) == []
    assert messages("aicloud-cluster-deletion-protected-in-prod", [eks], PROD) == [
        "EKS cluster 'use1-eks' has deletionProtection off in this prod stack, so one delete takes down every "
        "workload on it. Leave cluster.deletionProtection unset (on in prod) or set it to true."
    ]


def test_environment_falls_back_to_the_stack_name():
    """Without config (a bare `pulumi preview --policy-pack`), the `prod` stack is prod."""
    bucket = Spec("aws:s3/bucket:Bucket", "lake", {"bucket": "acme-lake"})
    assert len(messages("aicloud-data-protected-in-prod", [bucket], {})) == 1


def test_s3_versioning():
    bucket = Spec("aws:s3/bucket:Bucket", "lake", {"bucket": "acme-lake"})
    versioning = Spec(
        "aws:s3/bucketVersioning:BucketVersioning",
        "lake-versioning",
        {"bucket": "acme-lake", "versioningConfiguration": {"status": "Enabled"}},
        deps=["lake"],
    )
    assert messages("aws-s3-bucket-versioning-enabled", [bucket, versioning]) == []
    assert messages(
        "aws-s3-bucket-versioning-enabled",
        change([bucket, versioning], "lake-versioning", "versioningConfiguration.status", "Suspended"),
    ) == [
        "S3 bucket 'lake' has versioning 'Suspended'. Set versioningConfiguration.status to 'Enabled' so overwritten "
        "and deleted objects can be recovered."
    ]
    assert messages("aws-s3-bucket-versioning-enabled", [bucket]) == [
        "S3 bucket 'lake' has no versioning, so an overwrite or a delete loses the object. Add an "
        "aws.s3.BucketVersioning with versioningConfiguration.status 'Enabled'."
    ]


def test_gcs_versioning():
    props = {"location": "US", "versioning": {"enabled": True}}
    assert (
        check_resource("gcp-storage-bucket-versioning-enabled", "gcp:storage/bucket:Bucket", props, name="lake") == []
    )
    assert check_resource(
        "gcp-storage-bucket-versioning-enabled",
        "gcp:storage/bucket:Bucket",
        put(props, "versioning", DELETE),
        name="lake",
    ) == [
        "GCS bucket 'lake' has no object versioning, so an overwrite or a delete loses the object. Set "
        "versioning.enabled to true (and let lifecycle rules expire old versions)."
    ]


def test_force_destroy_flags():
    rule = "aicloud-data-disallow-force-destroy"
    assert check_resource(rule, "aws:s3/bucket:Bucket", {"bucket": "b"}, name="lake") == []
    assert check_resource(rule, "aws:s3/bucket:Bucket", {"forceDestroy": True}, name="lake") == [
        "S3 bucket 'lake' sets forceDestroy, so deleting the resource deletes every object in it. Remove forceDestroy "
        "(it defaults to false)."
    ]
    assert check_resource(rule, "aws:ecr/repository:Repository", {"forceDelete": True}, name="trainer") == [
        "ECR repository 'trainer' sets forceDelete, so deleting the resource deletes every image in it. Remove "
        "forceDelete (it defaults to false)."
    ]
    assert check_resource(rule, "gcp:bigquery/dataset:Dataset", {"deleteContentsOnDestroy": True}, name="features") == [
        "BigQuery dataset 'features' sets deleteContentsOnDestroy, so deleting the resource deletes every table in "
        "it. Remove deleteContentsOnDestroy (it defaults to false)."
    ]
    assert check_resource(rule, "gcp:bigquery/table:Table", {"deletionProtection": False}, name="events") == [
        "BigQuery table 'events' turns deletionProtection off, so deleting the resource deletes its rows. Remove "
        "deletionProtection: false (it defaults to true)."
    ]


def test_device_plugin_whose_affinity_excludes_a_gpu_pool_is_reported():
    labels = {"aicloud.dev/pool": "serve", "aicloud.dev/role": "inference", "aicloud.dev/gpu": "false"}
    stack = change(cluster(), "use1-serve-ng", "labels", labels)
    assert messages("aicloud-gpu-device-plugin-selects-pools", cluster()) == []
    assert messages("aicloud-gpu-device-plugin-selects-pools", stack) == [
        "The NVIDIA device plugin 'use1-device-plugin' is never scheduled onto GPU node pool 'serve': its node "
        "selection excludes the pool's labels, so the pool's GPUs stay invisible to Kubernetes. Keep aicloud's "
        "aicloud.dev/gpu=true label on every GPU pool, or widen the plugin's nodeSelector/affinity to match it."
    ]
