"""Regional networks: a VPC with private subnets across zones and NAT egress, on AWS and GCP.

Nodes live in private subnets only; egress goes through NAT (one shared gateway by default, one
per zone when `nat: per-zone` buys zone-independent egress). The subnet layout is computed by the
pure function `subnet_plan`, so it is testable without Pulumi.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
from pydantic import Field, field_validator

from components.base import Spec, child_opts, merge_tags, type_token


def ipv4_network(value: str, *, min_prefix: int, max_prefix: int) -> str:
    """`value` if it is an IPv4 network in CIDR notation with a prefix in range (ValueError if not)."""
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 network in CIDR notation ({exc})") from None
    if not min_prefix <= net.prefixlen <= max_prefix:
        raise ValueError(f"{value!r}: prefix must be between /{min_prefix} and /{max_prefix}")
    return value


class NetworkSpec(Spec):
    """A regional network."""

    cidr: str = "10.0.0.0/16"
    """VPC (AWS) or node subnet (GCP) range, /16 to /20; split into /(n+4) subnets per zone. Must
    not overlap another region's network in the stack (peering and routing between them)."""
    zones: int = Field(default=3, ge=1, le=6)
    """How many zones to spread subnets over (at most what the region has)."""
    nat: Literal["single", "per-zone"] = "single"
    """`single`: one NAT gateway (cheaper); `per-zone`: egress survives a zone outage (AWS)."""
    pods_cidr: str = "100.64.0.0/14"
    """GKE only: secondary range for pods (VPC-native)."""
    services_cidr: str = "100.68.0.0/20"
    """GKE only: secondary range for services."""

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        return ipv4_network(v, min_prefix=16, max_prefix=20)

    @field_validator("pods_cidr", "services_cidr")
    @classmethod
    def _secondary(cls, v: str) -> str:
        return ipv4_network(v, min_prefix=8, max_prefix=24)


def overlaps(a: str, b: str) -> bool:
    """Whether two CIDR ranges share an address."""
    return ipaddress.IPv4Network(a).overlaps(ipaddress.IPv4Network(b))


def subnet_plan(cidr: str, zones: list[str]) -> list[dict[str, str]]:
    """Private and public subnet ranges per zone: /(n+4) blocks, privates first, publics from 8."""
    net = ipaddress.IPv4Network(cidr)
    blocks = list(net.subnets(new_prefix=net.prefixlen + 4))
    return [{"zone": z, "private": str(blocks[i]), "public": str(blocks[8 + i])} for i, z in enumerate(zones)]


class AwsNetwork(pulumi.ComponentResource):
    """A VPC with one private and one public subnet per zone, an internet gateway and NAT."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        spec: NetworkSpec,
        *,
        zones: list[str],
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("network", "AwsNetwork"), name, None, opts)
        plan = subnet_plan(spec.cidr, zones)
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=spec.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=merge_tags(tags, name=f"{name}-vpc"),
            opts=child_opts(self),
        )
        # An internet gateway is needed even for private nodes: NAT gateways egress through it.
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags=merge_tags(tags, name=f"{name}-igw"), opts=child_opts(vpc)
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags=merge_tags(tags, name=f"{name}-public-rt"),
            opts=child_opts(vpc),
        )
        public, private, nats = [], [], []
        for i, block in enumerate(plan):
            zone = block["zone"]
            pub = aws.ec2.Subnet(
                f"{name}-public-{zone}",
                vpc_id=vpc.id,
                cidr_block=block["public"],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags=merge_tags(tags, {"kubernetes.io/role/elb": "1"}, name=f"{name}-public-{zone}"),
                opts=child_opts(vpc),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}", subnet_id=pub.id, route_table_id=public_rt.id, opts=child_opts(pub)
            )
            public.append(pub)
            if spec.nat == "per-zone" or i == 0:
                eip = aws.ec2.Eip(
                    f"{name}-nat-{zone}",
                    domain="vpc",
                    tags=merge_tags(tags, name=f"{name}-nat-{zone}"),
                    opts=child_opts(pub),
                )
                nats.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{zone}",
                        allocation_id=eip.id,
                        subnet_id=pub.id,
                        tags=merge_tags(tags, name=f"{name}-nat-{zone}"),
                        opts=child_opts(pub, depends_on=[igw]),
                    )
                )
            priv = aws.ec2.Subnet(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                cidr_block=block["private"],
                availability_zone=zone,
                tags=merge_tags(tags, {"kubernetes.io/role/internal-elb": "1"}, name=f"{name}-private-{zone}"),
                opts=child_opts(vpc),
            )
            rt = aws.ec2.RouteTable(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nats[-1].id}],
                tags=merge_tags(tags, name=f"{name}-private-{zone}"),
                opts=child_opts(priv),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}", subnet_id=priv.id, route_table_id=rt.id, opts=child_opts(priv)
            )
            private.append(priv)
        self.vpc = vpc
        self.vpc_id = vpc.id
        self.zones = zones
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public])
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "privateSubnetIds": self.private_subnet_ids,
                "publicSubnetIds": self.public_subnet_ids,
                "zones": zones,
            }
        )


class GcpNetwork(pulumi.ComponentResource):
    """A custom-mode VPC with one regional subnet (pod and service ranges) and Cloud NAT."""

    network_id: pulumi.Output[str]
    subnetwork_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        spec: NetworkSpec,
        *,
        region: str,
        zones: list[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("network", "GcpNetwork"), name, None, opts)
        network = gcp.compute.Network(
            f"{name}-vpc",
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            opts=child_opts(self),
        )
        subnet = gcp.compute.Subnetwork(
            f"{name}-nodes",
            network=network.id,
            region=region,
            ip_cidr_range=spec.cidr,
            private_ip_google_access=True,
            secondary_ip_ranges=[
                {"range_name": "pods", "ip_cidr_range": spec.pods_cidr},
                {"range_name": "services", "ip_cidr_range": spec.services_cidr},
            ],
            log_config={"aggregation_interval": "INTERVAL_5_MIN", "flow_sampling": 0.5},
            opts=child_opts(network),
        )
        router = gcp.compute.Router(f"{name}-router", network=network.id, region=region, opts=child_opts(network))
        gcp.compute.RouterNat(
            f"{name}-nat",
            router=router.name,
            region=region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config={"enable": True, "filter": "ERRORS_ONLY"},
            opts=child_opts(router),
        )
        self.network = network
        self.network_id = network.id
        self.subnetwork_id = subnet.id
        self.zones = zones
        self.register_outputs({"networkId": self.network_id, "subnetworkId": self.subnetwork_id, "zones": zones})
