"""One region of the platform: network, cluster, node pools and (on EKS) the NVIDIA device plugin.

`RegionSpec` is what a stack says about a region; `RegionalPlatform` builds it under the region's
own provider (passed by the stack as `providers=` on this component and inherited by every child,
so nothing silently falls back to a default region).
"""

from __future__ import annotations

from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, ValidationInfo, field_validator, model_validator

from components.autoscaling import ClusterAutoscaler, Karpenter, KarpenterNodes, add_karpenter_nodes
from components.base import DataSafety, Spec, child_opts, type_token
from components.catalog import load_catalog
from components.cluster import AUTOSCALERS, ClusterSpec, EksCluster, GkeCluster
from components.deploy import DeploySpec, cluster_reach, effective_public_cidrs
from components.foundations import ClusterFoundations
from components.network import AwsNetwork, GcpNetwork, NetworkSpec
from components.nodepool import (
    EksGpuNodePool,
    GkeGpuNodePool,
    GpuNodePool,
    NodePoolSpec,
    device_plugin_values,
    pool_taints,
)

NVIDIA_DEVICE_PLUGIN_CHART = {
    "chart": "nvidia-device-plugin",
    "version": "0.17.1",
    "repo": "https://nvidia.github.io/k8s-device-plugin",
}


class RegionSpec(Spec):
    """One region of a stack: where, which network, which cluster, which node pools."""

    name: str = Field(pattern=r"^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")
    """Short key of the region in this stack (e.g. `aws-use1`); prefixes every resource name."""
    cloud: Literal["aws", "gcp"]
    region: str
    """Cloud region, e.g. `us-east-1` or `us-central1`; must be in the catalog's region list."""
    primary: bool = False
    """The primary region holds the lakehouse and runs training and retraining."""
    serving: bool = True
    """Whether inference endpoints are deployed in this region."""
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    gke_master_cidr: str = "172.16.0.0/28"
    """GKE only: the /28 range of the control plane's private endpoint."""
    node_pools: list[NodePoolSpec] = Field(min_length=1)
    """Node pools; at least one untainted general pool is needed for system pods."""

    @model_validator(mode="before")
    @classmethod
    def _context(cls, data: Any, info: ValidationInfo) -> Any:
        # Let nested pool validators check the catalog against this region's cloud and region.
        if isinstance(info.context, dict) and isinstance(data, dict):
            info.context["cloud"] = data.get("cloud")
            info.context["region"] = data.get("region")
        return data

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str, info: ValidationInfo) -> str:
        cloud = info.data.get("cloud")
        if cloud is None:
            return value
        known = load_catalog().region_names(cloud)
        if value not in known:
            raise ValueError(f"unknown {cloud} region {value!r}; known regions: {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RegionSpec:
        problems = []
        zones = load_catalog().zones(self.cloud, self.region)
        if self.network.zones > len(zones):
            problems.append(f"network.zones is {self.network.zones} but {self.region} has {len(zones)} zones")
        names = [p.name for p in self.node_pools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"node pool names must be unique, repeated: {', '.join(dupes)}")
        for p in self.node_pools:
            machine = load_catalog().machine(self.cloud, p.machine_type)
            if machine is None:
                problems.append(f"node pool {p.name!r}: {p.machine_type!r} is not a {self.cloud} machine type")
            bad = [z for z in p.zones or [] if z not in zones]
            if bad:
                problems.append(f"node pool {p.name!r}: zones {bad} are not in {self.region} ({', '.join(zones)})")
            if self.cloud == "aws" and p.gpu_sharing == "mig":
                problems.append(
                    f"node pool {p.name!r}: gpuSharing 'mig' is supported on GKE only "
                    "(EKS needs the NVIDIA GPU operator's MIG manager); use 'time-slicing'"
                )
        allowed = AUTOSCALERS[self.cloud]
        if self.cluster.autoscaler is not None and self.cluster.autoscaler not in allowed:
            other = "EKS" if self.cloud == "gcp" else "GKE"
            problems.append(
                f"cluster.autoscaler: {self.cluster.autoscaler!r} works on {other} only; on {self.cloud} use "
                f"{' or '.join(repr(a) for a in allowed)} (got {self.cluster.autoscaler!r})"
            )
        if self.cloud == "gcp" and self.cluster.admins:
            problems.append(
                "cluster.admins: EKS access entries exist on AWS only; on GKE grant roles/container.admin "
                "through IAM instead"
            )
        if not any(p.role == "general" and not pool_taints(p) and p.min_nodes >= 1 for p in self.node_pools):
            problems.append(
                "needs a general pool without taints and minNodes >= 1 for system pods "
                "(CoreDNS, the device plugin's controller, metrics)"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def zones(self) -> list[str]:
        return list(load_catalog().zones(self.cloud, self.region)[: self.network.zones])

    @property
    def system_pool(self) -> NodePoolSpec:
        """The first untainted general pool with a floor: system pods and controllers run there."""
        return next(p for p in self.node_pools if p.role == "general" and not pool_taints(p) and p.min_nodes >= 1)

    @property
    def autoscaler(self) -> str:
        return self.cluster.autoscaler_for(self.cloud)

    def cluster_for(self, deploy: DeploySpec) -> ClusterSpec:
        """The cluster spec with the deployer's egress added to its public endpoint's allow-list."""
        cidrs = effective_public_cidrs(
            self.cluster.public_endpoint, self.cluster.public_access_cidrs, self.name, deploy
        )
        return self.cluster.model_copy(update={"public_endpoint": bool(cidrs), "public_access_cidrs": cidrs})


class NvidiaDevicePlugin(pulumi.ComponentResource):
    """The NVIDIA device plugin (Helm) on an EKS cluster, tolerating every GPU pool's taints and
    scheduled on GPU nodes only. (GKE installs and manages its own device plugin.)"""

    def __init__(
        self,
        name: str,
        pools: list[NodePoolSpec],
        *,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("compute", "NvidiaDevicePlugin"), name, None, opts)
        values = device_plugin_values(pools)
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            chart=NVIDIA_DEVICE_PLUGIN_CHART["chart"],
            version=NVIDIA_DEVICE_PLUGIN_CHART["version"],
            repository_opts={"repo": NVIDIA_DEVICE_PLUGIN_CHART["repo"]},
            namespace="kube-system",
            values=values,
            opts=child_opts(self),
        )
        self.tolerations = values["tolerations"]
        self.register_outputs({"tolerations": self.tolerations, "chart": NVIDIA_DEVICE_PLUGIN_CHART})


class RegionalPlatform(pulumi.ComponentResource):
    """Network, cluster, node pools and GPU plumbing of one region."""

    cluster: EksCluster | GkeCluster
    pools: dict[str, GpuNodePool]
    k8s_provider: k8s.Provider

    def __init__(
        self,
        name: str,
        spec: RegionSpec,
        *,
        safety: DataSafety,
        tags: dict[str, str],
        gcp_project: str | None = None,
        deploy: DeploySpec | None = None,
        custom_metrics: list[str] | None = None,
        prometheus_url: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`deploy`: where `pulumi up` runs (its egress joins the API allow-list, its role gets an
        access entry); `custom_metrics`: per-pod metrics the region's autoscalers read, served by
        prometheus-adapter from `prometheus_url`."""
        super().__init__(type_token("platform", "RegionalPlatform"), name, None, opts)
        self.spec = spec
        deploy = deploy or DeploySpec()
        cluster_spec = spec.cluster_for(deploy)
        zones = spec.zones
        self.autoscaler: Karpenter | ClusterAutoscaler | None = None
        if spec.cloud == "aws":
            network = AwsNetwork(f"{name}-net", spec.network, zones=zones, tags=tags, opts=child_opts(self))
            cluster = EksCluster(
                f"{name}-cluster",
                cluster_spec,
                region=spec.region,
                subnet_ids=network.private_subnet_ids,
                safety=safety,
                deploy_role_arn=deploy.aws_role_arn,
                tags=tags,
                opts=child_opts(self),
            )
            pools: dict[str, GpuNodePool] = {
                p.name: EksGpuNodePool(
                    f"{name}-{p.name}",
                    p,
                    region=spec.region,
                    cluster_name=cluster.cluster_name,
                    cluster_version=spec.cluster.version,
                    node_role_arn=cluster.node_role_arn,
                    subnet_ids=network.private_subnet_ids,
                    autoscaler=spec.autoscaler,
                    tags=tags,
                    opts=child_opts(cluster),
                )
                for p in spec.node_pools
            }
            # The controllers run on the system pool's managed nodes, so they wait for them (the
            # node group itself: the pool component also holds the NodePool that waits for Karpenter).
            system = [g for g in [pools[spec.system_pool.name].node_group] if g is not None]  # type: ignore[attr-defined]
            if spec.autoscaler == "karpenter":
                karpenter = Karpenter(
                    f"{name}-karpenter",
                    cluster=cluster,
                    region=spec.region,
                    system_pool=spec.system_pool.name,
                    k8s_provider=cluster.k8s_provider,
                    tags=tags,
                    opts=child_opts(cluster, depends_on=system),
                )
                nodes = KarpenterNodes(
                    controller=karpenter,
                    k8s_provider=cluster.k8s_provider,
                    cluster_name=cluster.cluster_name,
                    subnet_ids=network.private_subnet_ids,
                    security_group_id=cluster.security_group_id,
                    zones=zones,
                )
                for p in spec.node_pools:
                    add_karpenter_nodes(pools[p.name], p, nodes, name=f"{name}-{p.name}")  # type: ignore[arg-type]
                self.autoscaler = karpenter
            else:
                self.autoscaler = ClusterAutoscaler(
                    f"{name}-cluster-autoscaler",
                    cluster=cluster,
                    region=spec.region,
                    version=spec.cluster.version,
                    system_pool=spec.system_pool.name,
                    k8s_provider=cluster.k8s_provider,
                    tags=tags,
                    opts=child_opts(cluster, depends_on=system),
                )
            if any(p.machine is not None and p.machine.is_gpu for p in spec.node_pools):
                self.device_plugin: NvidiaDevicePlugin | None = NvidiaDevicePlugin(
                    f"{name}-nvidia-device-plugin",
                    spec.node_pools,
                    opts=child_opts(cluster, providers=[cluster.k8s_provider], depends_on=list(pools.values())),
                )
            else:
                self.device_plugin = None
        else:
            if not gcp_project:
                raise ValueError("a GCP region needs the stack's gcpProject")
            network = GcpNetwork(f"{name}-net", spec.network, region=spec.region, zones=zones, opts=child_opts(self))
            cluster = GkeCluster(
                f"{name}-cluster",
                cluster_spec,
                project=gcp_project,
                region=spec.region,
                network=network.network_id,
                subnetwork=network.subnetwork_id,
                master_cidr=spec.gke_master_cidr,
                tags=tags,
                opts=child_opts(self),
            )
            pools = {
                p.name: GkeGpuNodePool(
                    f"{name}-{p.name}",
                    p,
                    region=spec.region,
                    zones=zones,
                    cluster=cluster.cluster_id,
                    node_service_account=cluster.node_service_account,
                    tags=tags,
                    opts=child_opts(cluster),
                )
                for p in spec.node_pools
            }
            self.device_plugin = None
        self.foundations = ClusterFoundations(
            f"{name}-foundations",
            cloud=spec.cloud,
            cluster=cluster,
            k8s_provider=cluster.k8s_provider,
            custom_metrics=custom_metrics,
            prometheus_url=prometheus_url,
            tags=tags,
            opts=child_opts(cluster),
        )
        self.network = network
        self.cluster = cluster
        self.pools = pools
        self.k8s_provider = cluster.k8s_provider
        reach = cluster_reach(
            region_key=spec.name,
            private_access=True,
            public=cluster_spec.public_endpoint,
            public_cidrs=list(cluster_spec.public_access_cidrs),
            runner=deploy.runner,
            egress_cidrs=list(deploy.egress_cidrs),
            network=deploy.network,
        )
        self.register_outputs(
            {
                "cloud": spec.cloud,
                "region": spec.region,
                "zones": zones,
                "clusterName": cluster.cluster_name,
                "pools": sorted(pools),
                "autoscaler": spec.autoscaler,
                "apiAccess": {
                    "public": cluster_spec.public_endpoint,
                    "publicCidrs": list(cluster_spec.public_access_cidrs),
                    "route": reach.route,
                    "detail": reach.detail,
                },
            }
        )

    def pool(self, name: str) -> GpuNodePool:
        """The pool called `name`, with a clear error naming the pools that exist."""
        try:
            return self.pools[name]
        except KeyError:
            raise KeyError(
                f"region {self.spec.name!r} has no node pool {name!r}; pools: {', '.join(sorted(self.pools))}"
            ) from None
