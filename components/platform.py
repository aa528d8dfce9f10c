"""One region of the platform: network, cluster, node pools and (on EKS) the NVIDIA device plugin.

`RegionSpec` is what a stack says about a region; `RegionalPlatform` builds it under the region's
own provider (passed by the stack as `providers=` on this component and inherited by every child,
so nothing silently falls back to a default region).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, field_validator, model_validator

from components.autoscaling import ClusterAutoscaler, Karpenter, KarpenterNodes, add_karpenter_nodes
from components.base import DataSafety, Spec, child_opts, type_token
from components.capacity import chain_problems
from components.catalog import load_catalog
from components.cluster import AUTOSCALERS, ClusterSpec, EksCluster, GkeCluster
from components.deploy import DeploySpec, cluster_reach, effective_public_cidrs, preview_reach
from components.foundations import ClusterFoundations
from components.helm import helm_release
from components.network import AwsNetwork, GcpNetwork, NetworkSpec, ipv4_network, overlaps
from components.nodepool import (
    EksGpuNodePool,
    GkeGpuNodePool,
    GpuNodePool,
    NodePoolSpec,
    device_plugin_values,
    pool_taints,
)
from components.upstream import chart_pin
from components.validation import INVALID, Problem, check, is_valid, repeated

EKS_MIN_ZONES = 2
"""EKS needs subnets in at least two availability zones (Amazon EKS User Guide, VPC and subnet
requirements)."""

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
    """The VPC: CIDR (must not overlap another region's), zones (at most the region's; at least 2
    on EKS), NAT."""
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    renamed_from: str | None = Field(default=None, pattern=r"^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")
    """The region's previous key when it is renamed: every resource whose name carries the key
    (all of the region's, and its registry repositories) gets an alias to its old name, so the
    rename moves them instead of replacing them (`components.base.renamed`)."""
    gke_master_cidr: str = "172.16.0.0/28"
    """GKE only: the /28 range of the control plane's private endpoint."""
    node_pools: list[NodePoolSpec] = Field(min_length=1)
    """Node pools; at least one untainted general pool is needed for system pods."""

    @model_validator(mode="after")
    def _pools_know_their_cloud(self) -> RegionSpec:
        # A pool's ComputeClass, its taint and the pods' selector depend on the cloud it runs on
        # (`components.nodepool.compute_class`).
        for p in self.node_pools:
            if isinstance(p, NodePoolSpec):
                p._cloud = self.cloud
        return self

    @field_validator("gke_master_cidr")
    @classmethod
    def _master_cidr(cls, value: str) -> str:
        # GKE: the private control plane's range is a /28 (GKE docs, "Creating a private cluster").
        return ipv4_network(value, min_prefix=28, max_prefix=28)

    @check("cloud", "region")
    def _known_region(self) -> Iterator[Problem]:
        known = load_catalog().region_names(self.cloud)
        if self.region not in known:
            yield Problem(
                ("region",),
                f"unknown {self.cloud} region {self.region!r}; known regions: {', '.join(known)}",
                self.region,
            )

    @check("cloud", "region", "network")
    def _zones(self) -> Iterator[Problem]:
        zones = load_catalog().zones(self.cloud, self.region)
        want = self.network.zones
        if not zones or want is INVALID:
            return
        if want > len(zones):
            yield Problem(("network", "zones"), f"{self.region} has {len(zones)} zones ({', '.join(zones)})", want)
        if self.cloud == "aws" and want < EKS_MIN_ZONES:
            # EKS: "subnets in at least two different Availability Zones" (Amazon EKS User Guide,
            # "View Amazon EKS networking requirements for VPC and subnets").
            yield Problem(("network", "zones"), f"EKS needs subnets in at least {EKS_MIN_ZONES} zones", want)

    @check("network")
    def _gke_ranges(self) -> Iterator[Problem]:
        # GCP: a subnet's primary and secondary ranges must not overlap each other, and the
        # private control plane's /28 must not overlap them (VPC docs, "Subnets: IPv4 ranges";
        # GKE docs, "Creating a private cluster": master-ipv4-cidr must not overlap).
        if self.cloud != "gcp" or not is_valid(self.network) or self.gke_master_cidr is INVALID:
            return
        ranges = [
            (("network", "cidr"), self.network.cidr),
            (("network", "podsCidr"), self.network.pods_cidr),
            (("network", "servicesCidr"), self.network.services_cidr),
            (("gkeMasterCidr",), self.gke_master_cidr),
        ]
        for i, (loc, cidr) in enumerate(ranges):
            for other_loc, other in ranges[:i]:
                if overlaps(cidr, other):
                    yield Problem(loc, f"overlaps {'.'.join(map(str, other_loc))} ({other}) in the same VPC", cidr)

    @check("cloud", "region", "node_pools")
    def _pools(self) -> Iterator[Problem]:
        catalog = load_catalog()
        region_known = self.region in catalog.region_names(self.cloud)
        zones = catalog.zones(self.cloud, self.region)
        network_zones = list(zones[: self.network.zones]) if is_valid(self.network) else None
        names = [p.name for p in self.node_pools if p.name is not INVALID]
        for name in repeated(names):
            yield Problem(("nodePools",), f"node pool names must be unique, repeated: {name}")
        for i, p in enumerate(self.node_pools):
            if p.machine_type is INVALID:
                continue
            machine = catalog.machine(self.cloud, p.machine_type)
            if machine is None:
                yield Problem(
                    ("nodePools", i, "machineType"),
                    f"unknown machine type {p.machine_type!r}; the catalog has: "
                    f"{', '.join(catalog.machine_types(self.cloud))}",
                    p.machine_type,
                )
                continue
            if self.cloud == "aws" and p.gpu_sharing == "mig":
                yield Problem(
                    ("nodePools", i, "gpuSharing"),
                    "gpuSharing 'mig' is supported on GKE only (EKS needs the NVIDIA GPU operator's MIG manager); "
                    "use 'time-slicing'",
                    "mig",
                )
            if region_known:
                yield from self._pool_placement(i, p, machine, network_zones)
                if p.capacity and is_valid(p.zones):
                    zones_used = (
                        list(p.zones) if p.zones else (network_zones and machine.zones_in(self.region, network_zones))
                    )
                    for q in chain_problems(
                        p.capacity, cloud=self.cloud, region=self.region, machine=machine, pool_zones=zones_used
                    ):
                        yield Problem(("nodePools", i, *q.loc), q.message, q.got)
        pools = self.node_pools
        if all(is_valid(p) for p in pools) and not any(
            p.role == "general" and not pool_taints(p) and p.min_nodes >= 1 for p in pools
        ):
            yield Problem(
                ("nodePools",),
                "needs a general pool without taints and minNodes >= 1 for system pods "
                "(CoreDNS, the device plugin's controller, metrics)",
            )

    @check("cloud", "cluster", "node_pools")
    def _compute_class_version(self) -> Iterator[Problem]:
        # GKE serves custom ComputeClasses from 1.30.3-gke.1451000 (GKE docs, "About custom
        # ComputeClasses"); a stack pins the minor and GKE picks the patch, so 1.30 may predate it.
        chains = [p.name for p in self.node_pools if is_valid(p) and p.capacity]
        if self.cloud == "gcp" and chains and self.cluster.version == "1.30":
            yield Problem(
                ("cluster", "version"),
                f"pools {', '.join(chains)} have capacity chains, ordered on GKE by a ComputeClass, which GKE "
                "serves from 1.30.3-gke.1451000 on; 1.30 may run an earlier patch: use 1.31 or later",
                "1.30",
            )

    @check("cloud", "cluster")
    def _autoscaler(self) -> Iterator[Problem]:
        allowed = AUTOSCALERS[self.cloud]
        chosen = self.cluster.autoscaler
        if chosen is not None and chosen not in allowed:
            other = "EKS" if self.cloud == "gcp" else "GKE"
            yield Problem(
                ("cluster", "autoscaler"),
                f"{chosen!r} works on {other} only; on {self.cloud} use {' or '.join(repr(a) for a in allowed)}",
                chosen,
            )
        if self.cloud == "gcp" and self.cluster.admins:
            yield Problem(
                ("cluster", "admins"),
                "EKS access entries exist on AWS only; on GKE grant roles/container.admin through IAM instead",
                self.cluster.admins,
            )

    def _pool_placement(self, i: int, p: Any, machine: Any, network_zones: list[str] | None) -> Iterator[Problem]:
        """Is the pool's machine type offered in the region, and in the zones it would use?"""
        zones = load_catalog().zones(self.cloud, self.region)
        if not machine.offered_in(self.region):
            offered = ", ".join(sorted(machine.regions or ()))
            yield Problem(
                ("nodePools", i, "machineType"),
                f"machine type {p.machine_type!r} is not offered in {self.region}; it is offered in: {offered}",
                p.machine_type,
            )
            return
        offering = machine.zones_in(self.region, zones)
        if p.zones is not INVALID and p.zones:
            bad = [z for z in p.zones if z not in zones]
            if bad:
                yield Problem(
                    ("nodePools", i, "zones"), f"{', '.join(bad)} not in {self.region} ({', '.join(zones)})", p.zones
                )
            lacking = [z for z in p.zones if z in zones and z not in offering]
            if lacking:
                yield Problem(
                    ("nodePools", i, "zones"),
                    f"{', '.join(lacking)} do not offer {p.machine_type} ({machine.gpu}); "
                    f"zones that do: {', '.join(offering)}",
                    p.zones,
                )
        elif network_zones is not None and not machine.zones_in(self.region, network_zones):
            yield Problem(
                ("nodePools", i, "machineType"),
                f"none of the network's zones ({', '.join(network_zones)}) offers {p.machine_type} ({machine.gpu}); "
                f"zones of {self.region} that do: {', '.join(offering)} (set the pool's zones or more network zones)",
                p.machine_type,
            )

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
        cluster = self.cluster
        cidrs = effective_public_cidrs(cluster.public_endpoint, cluster.public_access_cidrs, self.name, deploy)
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
        environment: str = "dev",
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
                environment=environment,
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
            floor = pools[spec.system_pool.name].node_group  # type: ignore[attr-defined]
            system = [floor] if floor is not None else []
            if spec.autoscaler == "karpenter":
                karpenter = Karpenter(
                    f"{name}-karpenter",
                    cluster=cluster,
                    region=spec.region,
                    system_pool=spec.system_pool.name,
                    system_nodes=spec.system_pool.min_nodes,
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
                environment=environment,
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
            for p in spec.node_pools:
                pools[p.name].add_compute_class(f"{name}-{p.name}", cluster.k8s_provider)  # type: ignore[attr-defined]
            self.device_plugin = None
            system = [pools[spec.system_pool.name]]  # GKE removes its default pool: no node before this one
        self.foundations = ClusterFoundations(
            f"{name}-foundations",
            cloud=spec.cloud,
            cluster=cluster,
            k8s_provider=cluster.k8s_provider,
            custom_metrics=custom_metrics,
            prometheus_url=prometheus_url,
            tags=tags,
            # Its add-on and Helm releases wait for their pods to run (EKS add-on create waits while
            # DEGRADED, Helm's wait gives up after 300 s): the system pool's nodes must exist first.
            opts=child_opts(cluster, depends_on=system),
        )
        self.system_nodes: list[pulumi.Resource] = list(system)
        """The system pool's floor: what anything whose pods must run during `up` waits for."""
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
        preview = preview_reach(
            deploy,
            region_key=spec.name,
            private_access=True,
            public=cluster_spec.public_endpoint,
            public_cidrs=list(cluster_spec.public_access_cidrs),
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
                    "previewRoute": preview.route,
                    "previewDetail": preview.detail,
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
