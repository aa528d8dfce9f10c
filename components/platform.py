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

from components.base import DataSafety, Spec, child_opts, type_token
from components.catalog import load_catalog
from components.cluster import ClusterSpec, EksCluster, GkeCluster
from components.helm import helm_release
from components.network import AwsNetwork, GcpNetwork, NetworkSpec
from components.nodepool import (
    EksGpuNodePool,
    GkeGpuNodePool,
    GpuNodePool,
    NodePoolSpec,
    device_plugin_values,
    pool_taints,
)
from components.upstream import chart_pin

NVIDIA_DEVICE_PLUGIN_CHART = chart_pin("nvidia-device-plugin")


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
        self.release = helm_release(
            f"{name}-release",
            NVIDIA_DEVICE_PLUGIN_CHART,
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
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("platform", "RegionalPlatform"), name, None, opts)
        self.spec = spec
        zones = spec.zones
        if spec.cloud == "aws":
            network = AwsNetwork(f"{name}-net", spec.network, zones=zones, tags=tags, opts=child_opts(self))
            cluster = EksCluster(
                f"{name}-cluster",
                spec.cluster,
                region=spec.region,
                subnet_ids=network.private_subnet_ids,
                safety=safety,
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
                    tags=tags,
                    opts=child_opts(cluster),
                )
                for p in spec.node_pools
            }
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
                spec.cluster,
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
        self.network = network
        self.cluster = cluster
        self.pools = pools
        self.k8s_provider = cluster.k8s_provider
        self.register_outputs(
            {
                "cloud": spec.cloud,
                "region": spec.region,
                "zones": zones,
                "clusterName": cluster.cluster_name,
                "pools": sorted(pools),
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
