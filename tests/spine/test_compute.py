"""GPU compute components under the mock engine: taints, labels, scaling, spot, providers and
regions, the device plugin's tolerations, private clusters with workload identity."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pytest

from components.base import DataSafety
from components.network import NetworkSpec, subnet_plan
from components.nodepool import NodePoolSpec, Taint, device_plugin_values, pool_capacity, tolerations_for
from components.platform import RegionalPlatform, RegionSpec

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
INTERRUPTIBLE_TAINT = {"key": "aicloud.dev/interruptible", "value": "true", "effect": "NO_SCHEDULE"}


def aws_region(autoscaler: str = "cluster-autoscaler", **pool_overrides) -> RegionSpec:
    """An EKS region with a system pool and a spot GPU pool; the managed node groups carry the whole
    min..max under the Cluster Autoscaler (Karpenter's pools: tests/spine/test_autoscaling.py)."""
    gpu = {
        "name": "gpu",
        "machineType": "g6.12xlarge",
        "role": "training",
        "minNodes": 0,
        "maxNodes": 3,
        "spot": True,
        "interruptible": True,
        **pool_overrides,
    }
    return RegionSpec.model_validate(
        {
            "name": "aws-usw2",
            "cloud": "aws",
            "region": "us-west-2",
            "primary": True,
            "network": {"cidr": "10.1.0.0/16", "zones": 3},
            "cluster": {"autoscaler": autoscaler},
            "nodePools": [{"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 2}, gpu],
        },
        context={},
    )


def gcp_region(**pool_overrides) -> RegionSpec:
    gpu = {
        "name": "gpu",
        "machineType": "a2-highgpu-8g",
        "role": "training",
        "minNodes": 1,
        "maxNodes": 4,
        **pool_overrides,
    }
    return RegionSpec.model_validate(
        {
            "name": "gcp-usc1",
            "cloud": "gcp",
            "region": "us-central1",
            "primary": True,
            "nodePools": [{"name": "system", "machineType": "e2-standard-4", "minNodes": 1, "maxNodes": 2}, gpu],
        },
        context={},
    )


def build_aws(spec: RegionSpec, safety: DataSafety | None = None):
    safety = safety or DataSafety()
    provider = aws.Provider("aws-aws-usw2", region=spec.region)
    RegionalPlatform(
        spec.name, spec, safety=safety, tags={"owner": "t"}, opts=pulumi.ResourceOptions(providers=[provider])
    )


def build_gcp(spec: RegionSpec):
    provider = gcp.Provider("gcp-gcp-usc1", project="acme-test-1", region=spec.region)
    RegionalPlatform(
        spec.name,
        spec,
        safety=DataSafety(),
        tags={"owner": "t"},
        gcp_project="acme-test-1",
        opts=pulumi.ResourceOptions(providers=[provider]),
    )


# ----------------------------------------------------------------------------- EKS


def test_eks_gpu_pool_is_tainted_so_only_gpu_workloads_land(record):
    regs = record(lambda: build_aws(aws_region()))
    ng = regs.one("aws:eks/nodeGroup:NodeGroup", "aws-usw2-gpu-ng")
    # Interruptible (spot) pools also keep workloads that did not choose them off their nodes.
    assert ng.inputs["taints"] == [GPU_TAINT, INTERRUPTIBLE_TAINT]
    system = regs.one("aws:eks/nodeGroup:NodeGroup", "aws-usw2-system-ng")
    assert system.inputs["taints"] == []


def test_eks_gpu_pool_uses_nvidia_ami_spot_and_accelerator_labels(record):
    regs = record(lambda: build_aws(aws_region()))
    ng = regs.one("aws:eks/nodeGroup:NodeGroup", "aws-usw2-gpu-ng")
    assert ng.inputs["amiType"] == "AL2023_x86_64_NVIDIA"
    assert ng.inputs["capacityType"] == "SPOT"
    assert ng.inputs["instanceTypes"] == ["g6.12xlarge"]
    labels = ng.inputs["labels"]
    assert labels["aicloud.dev/pool"] == "gpu"
    assert labels["aicloud.dev/gpu"] == "true"
    assert labels["aicloud.dev/accelerator"] == "nvidia-l4"
    assert labels["k8s.amazonaws.com/accelerator"] == "nvidia-l4"
    assert labels["aicloud.dev/capacity"] == "spot"


def test_eks_pool_scales_to_zero_and_autoscaler_owns_desired_size(record):
    regs = record(lambda: build_aws(aws_region(minNodes=0, maxNodes=3)))
    ng = regs.one("aws:eks/nodeGroup:NodeGroup", "aws-usw2-gpu-ng")
    assert ng.inputs["scalingConfig"] == {"minSize": 0, "desiredSize": 0, "maxSize": 3}
    assert "scalingConfig.desiredSize" in ng.ignore_changes
    # Scale-from-zero needs node-template tags so the autoscaler knows the GPUs and the taint.
    tags = ng.inputs["tags"]
    assert tags["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"] == "4"
    assert tags["k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"] == "present:NoSchedule"


def test_eks_nodes_require_imdsv2_and_encrypted_disks(record):
    regs = record(lambda: build_aws(aws_region(diskSizeGb=500)))
    lt = regs.one("aws:ec2/launchTemplate:LaunchTemplate", "aws-usw2-gpu-lt")
    assert lt.inputs["metadataOptions"]["httpTokens"] == "required"
    assert lt.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
    ebs = lt.inputs["blockDeviceMappings"][0]["ebs"]
    assert ebs["volumeSize"] == 500 and ebs["encrypted"] == "true"


def test_device_plugin_tolerates_every_gpu_taint_and_runs_only_on_gpu_nodes(record):
    extra = [{"key": "team", "value": "research", "effect": "NoSchedule"}]
    regs = record(lambda: build_aws(aws_region(taints=extra)))
    release = regs.one("kubernetes:helm.sh/v3:Release", "aws-usw2-nvidia-device-plugin-release")
    values = release.inputs["values"]
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in values[
        "tolerations"
    ]
    assert {"key": "team", "operator": "Equal", "value": "research", "effect": "NoSchedule"} in values["tolerations"]
    terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "aicloud.dev/gpu", "operator": "In", "values": ["true"]}]}]
    # Installed in the region's cluster, through the cluster's own Kubernetes provider.
    provider = regs.named("aws-usw2-cluster-k8s")
    assert release.provider == provider.urn


def test_device_plugin_is_not_installed_without_gpu_pools(record):
    spec = RegionSpec.model_validate(
        {
            "name": "aws-usw2",
            "cloud": "aws",
            "region": "us-west-2",
            "primary": True,
            "nodePools": [{"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 2}],
        },
        context={},
    )
    regs = record(lambda: build_aws(spec))
    charts = [r.inputs["chart"] for r in regs.of_type("kubernetes:helm.sh/v3:Release")]
    assert "nvidia-device-plugin" not in charts and charts  # the foundations and autoscaler still come


def test_time_slicing_pool_selects_its_device_plugin_config(record):
    regs = record(lambda: build_aws(aws_region(gpuSharing="time-slicing", timeSlicingReplicas=8)))
    ng = regs.one("aws:eks/nodeGroup:NodeGroup", "aws-usw2-gpu-ng")
    assert ng.inputs["labels"]["nvidia.com/device-plugin.config"] == "time-slicing-8"
    values = regs.one("kubernetes:helm.sh/v3:Release", "aws-usw2-nvidia-device-plugin-release").inputs["values"]
    assert '"replicas": 8' in values["config"]["map"]["time-slicing-8"]


def test_every_aws_resource_uses_the_region_provider_never_the_default(record):
    regs = record(lambda: build_aws(aws_region()))
    provider = regs.one("pulumi:providers:aws")
    assert provider.inputs["region"] == "us-west-2"
    aws_resources = [r for r in regs if r.custom and r.type.startswith("aws:")]
    assert aws_resources
    assert {r.provider for r in aws_resources} == {provider.urn}
    assert not [r for r in regs if r.type == "pulumi:providers:aws" and r.name.startswith("default")]


def test_eks_cluster_is_private_with_irsa_and_encrypted_secrets(record):
    regs = record(lambda: build_aws(aws_region(), DataSafety(protect=True)))
    cluster = regs.one("aws:eks/cluster:Cluster")
    assert cluster.inputs["vpcConfig"]["endpointPublicAccess"] is False
    assert cluster.inputs["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster.inputs["encryptionConfig"]["resources"] == ["secrets"]
    oidc = regs.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    key = regs.one("aws:kms/key:Key")
    assert key.protect and key.retain_on_delete


def test_network_spreads_private_subnets_over_zones_with_nat(record):
    regs = record(lambda: build_aws(aws_region()))
    private = [r for r in regs.of_type("aws:ec2/subnet:Subnet") if "private" in r.name]
    assert sorted(r.inputs["availabilityZone"] for r in private) == ["us-west-2a", "us-west-2b", "us-west-2c"]
    assert len(regs.of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert all(r.inputs.get("mapPublicIpOnLaunch") is not True for r in private)


def test_subnet_plan_never_overlaps():
    import ipaddress

    blocks = subnet_plan("10.0.0.0/16", ["a", "b", "c", "d", "e", "f"])
    nets = [ipaddress.ip_network(b[k]) for b in blocks for k in ("private", "public")]
    assert all(not x.overlaps(y) for i, x in enumerate(nets) for y in nets[i + 1 :])
    assert NetworkSpec(cidr="10.2.0.0/20").cidr == "10.2.0.0/20"


# ----------------------------------------------------------------------------- GKE


def test_gke_pool_has_guest_accelerators_managed_driver_and_taint(record):
    regs = record(lambda: build_gcp(gcp_region()))
    pool = regs.one("gcp:container/nodePool:NodePool", "gcp-usc1-gpu-np")
    cfg = pool.inputs["nodeConfig"]
    assert cfg["guestAccelerators"] == [
        {"type": "nvidia-tesla-a100", "count": 8, "gpuDriverInstallationConfig": {"gpuDriverVersion": "LATEST"}}
    ]
    assert cfg["taints"] == [GPU_TAINT]
    assert cfg["labels"]["aicloud.dev/accelerator"] == "nvidia-a100-40gb"
    assert cfg["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
    assert pool.inputs["autoscaling"]["totalMinNodeCount"] == 1
    assert pool.inputs["autoscaling"]["totalMaxNodeCount"] == 4
    assert set(pool.ignore_changes) >= {"initialNodeCount", "nodeCount"}


def test_gke_spot_pool_and_gpu_sharing(record):
    regs = record(
        lambda: build_gcp(gcp_region(machineType="a2-ultragpu-1g", spot=True, gpuSharing="mig", migProfile="1g.10gb"))
    )
    cfg = regs.one("gcp:container/nodePool:NodePool", "gcp-usc1-gpu-np").inputs["nodeConfig"]
    assert cfg["spot"] is True
    assert cfg["guestAccelerators"][0]["gpuPartitionSize"] == "1g.10gb"


def test_gke_cluster_is_private_with_workload_identity(record):
    regs = record(lambda: build_gcp(gcp_region()))
    cluster = regs.one("gcp:container/cluster:Cluster")
    assert cluster.inputs["workloadIdentityConfig"] == {"workloadPool": "acme-test-1.svc.id.goog"}
    assert cluster.inputs["privateClusterConfig"]["enablePrivateNodes"] is True
    assert cluster.inputs["privateClusterConfig"]["enablePrivateEndpoint"] is True
    assert cluster.inputs["removeDefaultNodePool"] is True
    provider = regs.one("pulumi:providers:gcp")
    assert {r.provider for r in regs if r.custom and r.type.startswith("gcp:")} == {provider.urn}
    # GKE manages its own device plugin, metrics-server and storage driver: no Helm release.
    assert regs.of_type("kubernetes:helm.sh/v3:Release") == []


# ----------------------------------------------------------------------------- pure helpers


def test_tolerations_match_taints_exactly():
    taints = [Taint(key="nvidia.com/gpu", value="present"), Taint(key="dedicated", effect="NoExecute")]
    assert tolerations_for(taints) == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"},
    ]


def test_capacity_counts_gpus_and_cost_at_min_and_max():
    spec = NodePoolSpec(name="t", machine_type="p5.48xlarge", role="training", min_nodes=1, max_nodes=4)
    cap = pool_capacity(spec, cloud="aws", region="us-east-1")
    assert (cap["gpusMin"], cap["gpusMax"]) == (8, 32)
    assert cap["costPerHourMax"] == pytest.approx(4 * 55.04)


def test_device_plugin_values_ignore_cpu_pools():
    cpu = NodePoolSpec(name="sys", machine_type="m6i.large", min_nodes=1, taints=[Taint(key="cpu-only")])
    gpu = NodePoolSpec(name="gpu", machine_type="g5.xlarge", role="inference")
    values = device_plugin_values([cpu, gpu])
    assert [t["key"] for t in values["tolerations"]] == ["nvidia.com/gpu"]


@pulumi.runtime.test
def test_pool_outputs_resolve_to_the_capacity_record():
    from components.nodepool import EksGpuNodePool

    spec = NodePoolSpec(name="gpu", machine_type="g5.12xlarge", role="inference", min_nodes=1, max_nodes=2)
    pool = EksGpuNodePool(
        "p", spec, region="us-east-1", cluster_name="c", cluster_version="1.33", node_role_arn="arn", subnet_ids=["s"]
    )

    def check(name):
        assert name == "${p-ng.nodeGroupName}"
        assert pool.capacity["gpusMax"] == 8

    return pool.name.apply(check)
