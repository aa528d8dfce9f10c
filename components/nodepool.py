"""GPU node pools: one cloud-neutral spec, an EKS managed node group and a GKE node pool.

The pure helpers (`pool_taints`, `pool_labels`, `tolerations_for`, `pool_capacity`) decide what a
pool looks like; the two components only translate that into each cloud's resources. Every GPU pool
carries the `nvidia.com/gpu=present:NoSchedule` taint so only GPU workloads land on it, and labels
that name its pool, role, accelerator and capacity type so workloads and the device plugin can
select it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
from pydantic import Field, PrivateAttr

from components.base import Spec, child_opts, gcp_labels, merge_tags, type_token
from components.capacity import (
    COMPUTE_CLASS_LABEL,
    CapacityTier,
    chain_summary,
    compute_class_manifest,
    compute_class_name,
    gke_tier_args,
    tier_name,
    tier_zone,
)
from components.capacity import pool_problems as capacity_problems
from components.catalog import MachineType, load_catalog
from components.validation import Problem, check

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
LABEL_PREFIX = "aicloud.dev"
POOL_LABEL = f"{LABEL_PREFIX}/pool"
INTERRUPTIBLE_KEY = f"{LABEL_PREFIX}/interruptible"
"""Label and taint of interruptible pools: only workloads that tolerate it (they checkpoint and
resume, and are placed on the pool on purpose) land there."""
GPU_LABEL = f"{LABEL_PREFIX}/gpu"
ACCELERATOR_LABEL = f"{LABEL_PREFIX}/accelerator"
DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"

Effect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
_CLOUD_EFFECT = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


class Taint(Spec):
    """A Kubernetes node taint."""

    key: str = Field(min_length=1, max_length=253)
    value: str = ""
    effect: Effect = "NoSchedule"


class NodePoolSpec(Spec):
    """A node pool, cloud-neutral. The machine type decides the accelerator and GPUs per node."""

    name: str = Field(pattern=r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
    """Pool name, a DNS label of at most 32 characters; unique within its region."""
    machine_type: str = Field(min_length=1)
    """A machine type of the catalog (`components/catalog/gpus.yaml`) of the region's cloud,
    offered in the region (checked by the region, which knows its cloud)."""
    role: Literal["training", "inference", "general"] = "general"
    """What runs on the pool; training and inference pools must use GPU machine types."""
    min_nodes: int = Field(default=0, ge=0, le=1000)
    """Autoscaling floor; 0 lets the pool scale to zero when idle."""
    desired_nodes: int | None = Field(default=None, ge=0, le=1000)
    """Initial size; defaults to `minNodes`. The autoscaler owns it after creation."""
    max_nodes: int = Field(default=1, ge=1, le=1000)
    """Autoscaling ceiling (at least 1: EKS and GKE need room for one node)."""
    spot: bool = False
    """Spot (AWS) / Spot VMs (GCP) capacity instead of on-demand; refused when the stack says
    `allowSpot: false`."""
    interruptible: bool = False
    """The workloads on this pool tolerate losing a node (checkpointing trainers); prod spot pools
    must say so. The pool gets the `aicloud.dev/interruptible=true:NoSchedule` taint, so only
    workloads placed on it on purpose (which tolerate the pool's taints) run there."""
    disk_size_gb: int = Field(default=200, ge=50, le=16384)
    """Root volume size in GiB (container images of GPU frameworks are large)."""
    gpu_sharing: Literal["none", "time-slicing", "mig"] = "none"
    """GPU sharing: time-slicing (EKS via the device plugin, GKE natively) or MIG (GKE only)."""
    time_slicing_replicas: int = Field(default=4, ge=2, le=48)
    """With time-slicing: how many pods share one GPU."""
    mig_profile: str | None = Field(default=None, pattern=r"^[1-7]g\.\d+gb$")
    """With MIG: the partition size, e.g. `1g.10gb`."""
    zones: list[str] | None = None
    """Zones for the nodes; defaults to the zones of the region's network (on GKE, those of them
    that offer the pool's accelerator)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Extra node labels (merged over aicloud's own)."""
    taints: list[Taint] = Field(default_factory=list)
    """Extra taints; GPU pools always carry `nvidia.com/gpu=present:NoSchedule` as well."""
    capacity: list[CapacityTier] | None = None
    """Ordered capacity chain (GPU pools): reservation / capacityBlock / on-demand / flex / spot
    tiers with per-tier limits (see components/capacity.py). Conflicts with `spot`: put spot in the
    chain. Default: one tier, on-demand or spot per `spot`. Each tier renders with its own limit
    (`maxNodes` of the tier, else the pool's): Karpenter and GKE limit per NodePool / node pool, so
    the worst case is every tier at its limit."""

    _cloud: str | None = PrivateAttr(default=None)
    """The cloud of the region that holds the pool (set by `RegionSpec`; None for a pool validated
    on its own)."""

    @property
    def cloud(self) -> str | None:
        return self._cloud

    @check("capacity", "machine_type", "max_nodes", "spot")
    def _capacity(self) -> Iterator[Problem]:
        if self.capacity is not None:
            yield from capacity_problems(
                self.capacity, machine=_machine(self.machine_type), max_nodes=self.max_nodes, spot=self.spot
            )

    @check("machine_type", "role")
    def _role_needs_gpu(self) -> Iterator[Problem]:
        machine = _machine(self.machine_type)
        if self.role != "general" and machine is not None and not machine.is_gpu:
            yield Problem(
                ("role",),
                f"role {self.role!r} needs a GPU machine type; {machine.type!r} has no GPU "
                "(use role: general for CPU pools)",
                self.role,
            )

    @check("min_nodes", "max_nodes", "desired_nodes")
    def _scaling(self) -> Iterator[Problem]:
        low, high, desired = self.min_nodes, self.max_nodes, self.desired_nodes
        if low > high:
            yield Problem(("maxNodes",), f"maxNodes ({high}) is less than minNodes ({low})", high)
        elif desired is not None and not low <= desired <= high:
            yield Problem(
                ("desiredNodes",),
                f"desiredNodes ({desired}) must lie between minNodes ({low}) and maxNodes ({high})",
                desired,
            )

    @check("machine_type", "gpu_sharing", "mig_profile")
    def _sharing(self) -> Iterator[Problem]:
        machine = _machine(self.machine_type)
        if machine is None or self.gpu_sharing == "none":
            return
        if not machine.is_gpu:
            yield Problem(
                ("gpuSharing",), f"gpuSharing {self.gpu_sharing!r} needs a GPU machine type", self.gpu_sharing
            )
            return
        if self.gpu_sharing != "mig":
            return
        accel = load_catalog().accelerators.get(machine.gpu or "")
        if accel is None or not accel.mig:
            yield Problem(
                ("gpuSharing",),
                f"gpuSharing 'mig' needs a MIG-capable GPU (A100, H100, H200); {self.machine_type!r} has {machine.gpu}",
                "mig",
            )
        elif self.mig_profile is None:
            yield Problem(
                ("migProfile",),
                f"gpuSharing 'mig' needs migProfile; {accel.model} offers: {', '.join(accel.mig_profiles)}",
            )
        elif self.mig_profile not in accel.mig_profiles:
            # MIG profiles per GPU: components/catalog/gpus.yaml `mig_profiles` (GKE's supported
            # partitions; NVIDIA's MIG user guide for H200).
            yield Problem(
                ("migProfile",),
                f"{accel.model} has no MIG profile {self.mig_profile!r}; it offers: {', '.join(accel.mig_profiles)}",
                self.mig_profile,
            )

    @property
    def machine(self) -> MachineType | None:
        """The catalog entry of the machine type (type names are unique across clouds)."""
        return _machine(self.machine_type)

    @property
    def initial_nodes(self) -> int:
        return self.min_nodes if self.desired_nodes is None else self.desired_nodes


# --------------------------------------------------------------------------- pure helpers


def _machine(machine_type: str | None) -> MachineType | None:
    if machine_type is None:
        return None
    catalog = load_catalog()
    return catalog.machine("aws", machine_type) or catalog.machine("gcp", machine_type)


def pool_zones(spec: NodePoolSpec, region: str, network_zones: list[str] | tuple[str, ...]) -> list[str]:
    """The zones a pool's nodes go to: its own `zones`, else the network's zones that offer its
    machine type (the catalog records GCP GPU offerings per zone; a GKE node pool in a zone
    without its accelerator never gets a node there)."""
    if spec.zones:
        return list(spec.zones)
    machine = spec.machine
    return machine.zones_in(region, network_zones) if machine is not None else list(network_zones)


def compute_class(spec: NodePoolSpec) -> str | None:
    """The GKE ComputeClass that orders a GKE pool's capacity tiers (`aicloud-<pool>`); None for
    pools without a chain and on EKS (Karpenter weights order the tiers there)."""
    return compute_class_name(spec.name) if spec.capacity and spec.cloud == "gcp" else None


def pool_node_selector(spec: NodePoolSpec) -> dict[str, str]:
    """What a workload's pods select to run on the pool: its `aicloud.dev/pool` label and, on a GKE
    pool with a capacity chain, its ComputeClass (`cloud.google.com/compute-class`): GKE's
    autoscaler follows the class's tier priorities only for pods that select the class."""
    selector = {POOL_LABEL: spec.name}
    if cc := compute_class(spec):
        selector[COMPUTE_CLASS_LABEL] = cc
    return selector


def pool_taints(spec: NodePoolSpec) -> list[Taint]:
    """The pool's taints: the GPU taint on GPU pools, the interruptible taint on interruptible
    pools, the ComputeClass taint on a GKE pool with a capacity chain (GKE schedules a class's pods
    only on manually created node pools labelled and tainted with it), then the spec's own
    (deduplicated)."""
    taints: list[Taint] = []
    machine = spec.machine
    if machine is not None and machine.is_gpu:
        taints.append(Taint(key=GPU_TAINT_KEY, value="present", effect="NoSchedule"))
    if spec.interruptible:
        taints.append(Taint(key=INTERRUPTIBLE_KEY, value="true", effect="NoSchedule"))
    if cc := compute_class(spec):
        taints.append(Taint(key=COMPUTE_CLASS_LABEL, value=cc, effect="NoSchedule"))
    for t in spec.taints:
        if all((t.key, t.effect) != (s.key, s.effect) for s in taints):
            taints.append(t)
    return taints


def pool_labels(spec: NodePoolSpec, cloud: str) -> dict[str, str]:
    """Node labels: aicloud's pool/role/accelerator labels, the cloud's own, then the spec's."""
    machine = spec.machine
    labels = {
        POOL_LABEL: spec.name,
        f"{LABEL_PREFIX}/role": spec.role,
        f"{LABEL_PREFIX}/capacity": "spot" if spec.spot else "on-demand",
        GPU_LABEL: "true" if machine is not None and machine.is_gpu else "false",
    }
    if spec.interruptible:
        labels[INTERRUPTIBLE_KEY] = "true"
    if cloud == "gcp" and spec.capacity:
        labels[COMPUTE_CLASS_LABEL] = compute_class_name(spec.name)
    if machine is not None and machine.is_gpu:
        accel = load_catalog().accelerators[machine.gpu]  # type: ignore[index]
        labels[ACCELERATOR_LABEL] = accel.name
        if cloud == "aws" and accel.aws_label:
            labels["k8s.amazonaws.com/accelerator"] = accel.aws_label
        if spec.gpu_sharing == "time-slicing" and cloud == "aws":
            labels[DEVICE_PLUGIN_CONFIG_LABEL] = time_slicing_config_name(spec.time_slicing_replicas)
    return {**labels, **spec.labels}


def time_slicing_config_name(replicas: int) -> str:
    """Name of the device-plugin config that shares each GPU between `replicas` pods."""
    return f"time-slicing-{replicas}"


def gpu_nodes_only() -> dict[str, Any]:
    """Pod affinity that schedules only on GPU nodes (`aicloud.dev/gpu=true`): the device plugin and
    the DCGM exporter, which have nothing to do on a CPU node."""
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": GPU_LABEL, "operator": "In", "values": ["true"]}]}]
            }
        }
    }


def tolerations_for(taints: list[Taint] | list[dict[str, str]]) -> list[dict[str, str]]:
    """Kubernetes tolerations that match `taints` exactly (key, value, effect), deduplicated."""
    out: list[dict[str, str]] = []
    for t in taints:
        d = t if isinstance(t, dict) else t.model_dump()
        tol = {"key": d["key"], "operator": "Equal", "value": d.get("value", ""), "effect": d["effect"]}
        if not tol["value"]:
            tol = {"key": d["key"], "operator": "Exists", "effect": d["effect"]}
        if tol not in out:
            out.append(tol)
    return out


def pool_capacity(spec: NodePoolSpec, *, cloud: str, region: str) -> dict[str, Any]:
    """GPUs and cost per hour of the pool at its floor and at its ceiling (`reachableNodes`: the
    nodes its resources allow, above `maxNodes` when a capacity chain's tier limits add up to more).

    Prices: the catalog's on-demand list price in the cloud's reference region, times the
    region's price factor where the catalog records one (`priceFactor`, else None: reference
    price). Spot pools are a range: `costPerHour*Low` at the cloud's lowest spot discount and
    `costPerHour*` at its highest spot price (AWS: on-demand; GCP: 40 % of it)."""
    machine = spec.machine
    assert machine is not None, "spec validation guarantees a catalog machine"
    catalog = load_catalog()
    factor = catalog.price_factor(cloud, region)
    price = machine.price_per_hour * (factor or 1.0)
    low, high = catalog.prices[cloud]["spot_factor"] if spec.spot else (1.0, 1.0)
    chain = (
        chain_summary(
            spec.capacity, cloud=cloud, price_per_node=price, max_nodes=spec.max_nodes, gpus_per_node=machine.gpus
        )
        if spec.capacity
        else None
    )
    # Each tier of a chain is its own Karpenter NodePool / GKE node pool with its own limit: none
    # shares maxNodes, so the tiers together may launch more. GPUs and cost at max count what the
    # resources allow (the guardrails read the resources and count the same).
    reach = max(spec.max_nodes, chain["worstCaseNodes"]) if chain else spec.max_nodes
    return {
        "cloud": cloud,
        "region": region,
        "pool": spec.name,
        "role": spec.role,
        "machineType": machine.type,
        "gpu": machine.gpu,
        "gpusPerNode": machine.gpus,
        "gpuMemoryGiB": machine.gpu_memory_gib,
        "spot": spec.spot,
        "interruptible": spec.interruptible,
        "minNodes": spec.min_nodes,
        "maxNodes": spec.max_nodes,
        "reachableNodes": reach,
        "gpusMin": machine.gpus * spec.min_nodes,
        "gpusMax": machine.gpus * reach,
        "pricePerNodeHour": round(price, 4),
        "priceFactor": factor,
        "spotFactor": [low, high] if spec.spot else None,
        "diskGiB": spec.disk_size_gb,
        "costPerHourMin": round(price * high * spec.min_nodes, 4),
        "costPerHourMax": round(price * high * reach, 4),
        "costPerHourMinLow": round(price * low * spec.min_nodes, 4),
        "costPerHourMaxLow": round(price * low * reach, 4),
        "capacity": chain,
    }


def _cloud_taints(taints: list[Taint]) -> list[dict[str, str]]:
    return [{"key": t.key, "value": t.value, "effect": _CLOUD_EFFECT[t.effect]} for t in taints]


def autoscaler_tags(spec: NodePoolSpec, cluster_name: str) -> dict[str, str]:
    """Cluster Autoscaler tags so it can scale an EKS node group up from zero.

    With zero nodes the autoscaler cannot see a node's labels, taints or GPUs, so it reads them
    from these node-template tags on the group.
    """
    prefix = "k8s.io/cluster-autoscaler"
    tags = {f"{prefix}/enabled": "true", f"{prefix}/{cluster_name}": "owned"}
    for key, value in pool_labels(spec, "aws").items():
        tags[f"{prefix}/node-template/label/{key}"] = value
    for t in pool_taints(spec):
        tags[f"{prefix}/node-template/taint/{t.key}"] = f"{t.value}:{t.effect}"
    machine = spec.machine
    if machine is not None and machine.is_gpu:
        tags[f"{prefix}/node-template/resources/{GPU_RESOURCE}"] = str(machine.gpus)
    return tags


# --------------------------------------------------------------------------- components


class GpuNodePool(pulumi.ComponentResource):
    """Common outputs of a node pool on either cloud."""

    name: pulumi.Output[str]
    taints: list[dict[str, str]]
    labels: dict[str, str]
    capacity: dict[str, Any]

    def _register(
        self, spec: NodePoolSpec, cloud: str, region: str, pool_name: pulumi.Input[str], *, autoscaler: str
    ) -> None:
        self.spec = spec
        self.taints = [t.model_dump() for t in pool_taints(spec)]
        self.labels = pool_labels(spec, cloud)
        self.tolerations = tolerations_for(pool_taints(spec))
        self.capacity = pool_capacity(spec, cloud=cloud, region=region)
        self.name = pulumi.Output.from_input(pool_name)
        self.register_outputs(
            {
                "name": self.name,
                "taints": self.taints,
                "labels": self.labels,
                "capacity": self.capacity,
                "autoscaler": autoscaler,
            }
        )


class EksGpuNodePool(GpuNodePool):
    """An EKS pool: managed node groups on the NVIDIA AL2023 AMI with IMDSv2 and encrypted disks,
    scaled by the cluster's node autoscaler.

    - `autoscaler="karpenter"`: the floor (`minNodes`) is a fixed-size managed node group (none when
      0); the rest, up to `maxNodes`, is the EC2NodeClass + NodePool pair that
      `components.autoscaling.add_karpenter_nodes` adds to this component.
    - `autoscaler="cluster-autoscaler"`: one managed node group from minNodes to maxNodes with the
      autoscaler's node-template tags.
    """

    def __init__(
        self,
        name: str,
        spec: NodePoolSpec,
        *,
        region: str,
        cluster_name: pulumi.Input[str],
        cluster_version: str,
        node_role_arn: pulumi.Input[str],
        subnet_ids: pulumi.Input[list[str]],
        autoscaler: str = "cluster-autoscaler",
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("compute", "EksGpuNodePool"), name, None, opts)
        machine = spec.machine
        assert machine is not None
        base_tags = merge_tags(tags, {"aicloud:pool": spec.name}, name=name)
        self.node_group: aws.eks.NodeGroup | None = None
        self.node_pool: Any = None
        floor = spec.min_nodes if autoscaler == "karpenter" else None
        if floor is None or floor > 0:
            self.node_group = self._managed_group(
                name, spec, machine, base_tags, floor, autoscaler,
                cluster_name=cluster_name, cluster_version=cluster_version,
                node_role_arn=node_role_arn, subnet_ids=subnet_ids,
            )  # fmt: skip
        self.autoscaler = autoscaler
        pool_name = self.node_group.node_group_name if self.node_group is not None else spec.name
        self._register(spec, "aws", region, pool_name, autoscaler=autoscaler)

    def _managed_group(
        self,
        name: str,
        spec: NodePoolSpec,
        machine: MachineType,
        base_tags: dict[str, str],
        floor: int | None,
        autoscaler: str,
        *,
        cluster_name: pulumi.Input[str],
        cluster_version: str,
        node_role_arn: pulumi.Input[str],
        subnet_ids: pulumi.Input[list[str]],
    ) -> aws.eks.NodeGroup:
        """The managed node group: min..max for the Cluster Autoscaler, or the fixed floor of size
        `floor` under Karpenter."""
        # IMDSv2 only, hop limit 1: pods cannot borrow the node's credentials (they get IRSA).
        template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,
            },
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {
                        "volume_size": spec.disk_size_gb,
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            tag_specifications=[{"resource_type": "instance", "tags": base_tags}],
            tags=base_tags,
            opts=child_opts(self),
        )
        if autoscaler == "cluster-autoscaler":
            group_tags: pulumi.Input[dict[str, str]] = pulumi.Output.from_input(cluster_name).apply(
                lambda cn: {**base_tags, **autoscaler_tags(spec, cn)}
            )
            scaling = {"min_size": spec.min_nodes, "desired_size": spec.initial_nodes, "max_size": spec.max_nodes}
        else:
            group_tags = base_tags
            scaling = {"min_size": floor, "desired_size": floor, "max_size": floor}
        return aws.eks.NodeGroup(
            f"{name}-ng",
            cluster_name=cluster_name,
            node_role_arn=node_role_arn,
            subnet_ids=subnet_ids,
            version=cluster_version,
            instance_types=[machine.type],
            ami_type="AL2023_x86_64_NVIDIA" if machine.is_gpu else "AL2023_x86_64_STANDARD",
            capacity_type="SPOT" if spec.spot else "ON_DEMAND",
            scaling_config=scaling,
            update_config={"max_unavailable": 1},
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            labels=pool_labels(spec, "aws"),
            taints=_cloud_taints(pool_taints(spec)),
            tags=group_tags,
            # The cluster autoscaler owns the group's size after creation.
            opts=child_opts(self, ignore_changes=["scalingConfig.desiredSize"]),
        )


class GkeGpuNodePool(GpuNodePool):
    """A GKE node pool with guest accelerators and Google-managed NVIDIA driver install."""

    def __init__(
        self,
        name: str,
        spec: NodePoolSpec,
        *,
        region: str,
        zones: list[str],
        cluster: pulumi.Input[str],
        node_service_account: pulumi.Input[str],
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("compute", "GkeGpuNodePool"), name, None, opts)
        machine = spec.machine
        assert machine is not None
        node_zones = pool_zones(spec, region, zones)
        accelerators = []
        if machine.is_gpu:
            accel = load_catalog().accelerators[machine.gpu]  # type: ignore[index]
            guest: dict[str, Any] = {
                "type": accel.gke_type,
                "count": machine.gpus,
                "gpu_driver_installation_config": {"gpu_driver_version": "LATEST"},
            }
            if spec.gpu_sharing == "time-slicing":
                guest["gpu_sharing_config"] = {
                    "gpu_sharing_strategy": "TIME_SHARING",
                    "max_shared_clients_per_gpu": spec.time_slicing_replicas,
                }
            if spec.gpu_sharing == "mig":
                guest["gpu_partition_size"] = spec.mig_profile
            accelerators.append(guest)
        # One node pool per capacity tier (components/capacity.py); without a chain, one pool of the
        # spec's capacity type. GKE's autoscaler does not order node pools by itself: the pool's
        # ComputeClass (`compute_class_manifest`, applied by the region in the cluster) lists the
        # tier pools in chain order, and the tier label lets a workload require a tier.
        tiers: list[tuple[str, Any, int, int]] = [("", None, spec.min_nodes, spec.max_nodes)]
        if spec.capacity:
            tiers = [
                (
                    f"-{tier_name(t, j)}",
                    t,
                    spec.min_nodes if j == 0 else 0,
                    min(t.max_nodes or spec.max_nodes, spec.max_nodes),
                )
                for j, t in enumerate(spec.capacity)
            ]
        pools = []
        for suffix, tier, low, high in tiers:
            extra = (
                gke_tier_args(tier, training=spec.role == "training")
                if tier is not None
                else {"node_config": {}, "pool": {}}
            )
            tier_node = dict(extra["node_config"])
            labels = {**pool_labels(spec, "gcp"), **tier_node.pop("labels", {})}
            if tier is not None:
                labels[f"{LABEL_PREFIX}/capacity"] = "spot" if tier.kind == "spot" else "on-demand"
            spot = tier.kind == "spot" if tier is not None else spec.spot
            initial = math.ceil(spec.initial_nodes / len(node_zones)) if low else 0
            pools.append(
                gcp.container.NodePool(
                    f"{name}{suffix}-np",
                    cluster=cluster,
                    location=region,
                    node_locations=[tier_zone(tier)] if tier is not None and tier_zone(tier) else node_zones,
                    # initialNodeCount is per zone; the autoscaler limits below are totals.
                    initial_node_count=initial,
                    autoscaling={
                        "total_min_node_count": low,
                        "total_max_node_count": high,
                        "location_policy": "ANY" if spot or "queued_provisioning" in extra["pool"] else "BALANCED",
                    },
                    management={"auto_repair": True, "auto_upgrade": True},
                    node_config={
                        "machine_type": machine.type,
                        "disk_size_gb": spec.disk_size_gb,
                        "disk_type": "pd-balanced",
                        "spot": spot,
                        "guest_accelerators": accelerators,
                        "labels": labels,
                        "taints": _cloud_taints(pool_taints(spec)),
                        "resource_labels": gcp_labels(merge_tags(tags, {"aicloud-pool": spec.name})),
                        "service_account": node_service_account,
                        "oauth_scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                        "workload_metadata_config": {"mode": "GKE_METADATA"},
                        "shielded_instance_config": {"enable_secure_boot": True},
                        "metadata": {"disable-legacy-endpoints": "true"},
                        **tier_node,
                    },
                    **extra["pool"],
                    opts=child_opts(self, ignore_changes=["initialNodeCount", "nodeCount"]),
                )
            )
        pool = pools[0]
        self.tier_pools = pools
        self.node_pool = pool
        self.compute_class: Any = None
        self._register(spec, "gcp", region, pool.name, autoscaler="gke")

    def add_compute_class(self, name: str, k8s_provider: pulumi.ProviderResource) -> Any:
        """The pool's ComputeClass in its cluster: one `nodepools` priority per tier node pool, in
        chain order, with active migration back to the preferred tier (None without a chain).
        GKE serves the ComputeClass CRD itself (1.30.3-gke.1451000+)."""
        cc = compute_class(self.spec)
        if cc is None:
            return None
        names = pulumi.Output.all(*[p.name for p in self.tier_pools])
        manifest = names.apply(lambda ns: compute_class_manifest(cc, list(ns), pool=self.spec.name))
        self.compute_class = k8s.apiextensions.CustomResource(
            f"{name}-computeclass",
            api_version="cloud.google.com/v1",
            kind="ComputeClass",
            metadata={"name": cc, "labels": {POOL_LABEL: self.spec.name}},
            spec=manifest.apply(lambda m: m["spec"]),
            opts=child_opts(self, provider=k8s_provider, depends_on=list(self.tier_pools)),
        )
        return self.compute_class


def device_plugin_values(pools: list[NodePoolSpec]) -> dict[str, Any]:
    """Helm values for the NVIDIA device plugin on EKS.

    It tolerates every taint of every GPU pool (so no GPU pool sits idle because the plugin cannot
    land there) and is pinned to GPU nodes by aicloud's `gpu=true` label (so it never lands on CPU
    nodes). Pools that time-slice get a named sharing config selected by a node label.
    """
    gpu_pools = [p for p in pools if p.machine is not None and p.machine.is_gpu]
    taints = [t for p in gpu_pools for t in pool_taints(p)]
    configs = {"default": json.dumps({"version": "v1"})}
    for p in gpu_pools:
        if p.gpu_sharing == "time-slicing":
            configs[time_slicing_config_name(p.time_slicing_replicas)] = json.dumps(
                {
                    "version": "v1",
                    "sharing": {
                        "timeSlicing": {"resources": [{"name": GPU_RESOURCE, "replicas": p.time_slicing_replicas}]}
                    },
                }
            )
    return {
        "tolerations": tolerations_for(taints),
        "affinity": gpu_nodes_only(),
        "config": {"map": configs, "default": "default"},
        "priorityClassName": "system-node-critical",
    }
