"""The global front door of an inference endpoint: one per cloud, over every serving region.

AWS (`GlobalEndpoint` with an `AwsFrontDoor`):
- Each AWS region gets an `AwsRegionalLoadBalancer`: a Network Load Balancer that Pulumi owns
  (so its ARN, DNS name and zone are real outputs the front door can reference), an IP target
  group health-checking the server's readiness path, and a `TargetGroupBinding` with which the
  AWS Load Balancer Controller (installed here with an IRSA role limited to those target groups,
  unless the cluster runs one: `installController: false`) keeps the target group's members
  equal to the ready pods of the endpoint's entry Service. (A `Service` of type LoadBalancer would leave the NLB to the
  controller, and its ARN unknown to the program.) The NLB is internal behind Global
  Accelerator and internet-facing for Route 53.
- TLS only: each NLB listens on 443 with the region's ACM certificate and nothing else (an NLB
  cannot redirect plain HTTP, so port 80 is not served at all).
- `accelerator` mode: a Global Accelerator with one TCP listener on 443 (TLS passes through to
  the NLBs) and one endpoint group per region holding that region's NLB, with the
  region's traffic dial. For NLB endpoints Global Accelerator uses the load balancer's own
  health, i.e. the target group's HTTP check on `/v2/health/ready`; the endpoint group carries
  the same check for documentation and for endpoint types that use it.
- `route53` mode: per region a Route 53 health check on the NLB's `/v2/health/ready` and a
  latency record aliasing the NLB (evaluating target health); dial 0 removes the record.

GCP (`GlobalEndpoint` with a `GcpFrontDoor`): a global external Application Load Balancer
(`EXTERNAL_MANAGED`): global address, Google-managed certificate, HTTPS proxy and forwarding rule
on 443, an HTTP-to-HTTPS redirect on 80, a URL map, and one backend service whose backends are
the standalone zonal NEGs GKE creates for the endpoint's entry Service (one per zone of each
region, referenced by name and zone), with a health check on `/v2/health/ready`, the region's
dial as capacity scaler, a firewall rule letting Google's health checkers and proxies reach the
pods, and an optional Cloud Armor policy.

Regional failover: a region whose health checks fail gets no traffic. On AWS, Global Accelerator
sends a client to the next closest endpoint group with a healthy endpoint (ignoring dials for
that failover); Route 53 stops answering with a record whose health check or alias target is
unhealthy. On GCP the load balancer sends nothing to unhealthy endpoints and spills a region's
share over to the other backends. A dial of 0 drains a region in normal operation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.base import child_opts, gcp_labels, merge_tags, type_token
from components.endpoint import READY_PATH, SERVICE_PORT, AwsFrontDoor, GcpFrontDoor
from components.helm import helm_release
from components.identity import irsa_trust_policy
from components.upstream import chart_pin

GCP_HEALTH_CHECK_RANGES = ["35.191.0.0/16", "130.211.0.0/22"]
"""Source ranges of Google's health checkers and global load balancer proxies."""
HEALTH_INTERVAL_S = 10
HEALTH_THRESHOLD = 3
"""Consecutive failed checks before a target (and, with none left, a region) takes no traffic."""


TLS_PORT = 443
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
"""TLS 1.3 and 1.2 only."""


def nlb_listener_ports() -> list[int]:
    """Ports the NLB (and Global Accelerator) listen on: 443 with TLS, nothing in plain text."""
    return [TLS_PORT]


AWS_LBC_CHART = chart_pin("aws-load-balancer-controller")
"""AWS Load Balancer Controller v2.16 (eks-charts): reconciles `TargetGroupBinding`s."""
LBC_NAMESPACE = "kube-system"
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"


@dataclass(frozen=True)
class EksAccess:
    """What installing the AWS Load Balancer Controller into an EKS cluster needs."""

    cluster_name: pulumi.Input[str]
    region: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]


def lbc_policy(target_group_arns: list[str], vpc_arn: str) -> dict[str, Any]:
    """Least privilege of the controller when it only binds pods to target groups aicloud made:
    describe calls (they take no resource), register/deregister in those target groups, and
    security group ingress rules (for the binding's `networking`) inside the region's VPC."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Describe",
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:DescribeLoadBalancers",
                    "elasticloadbalancing:DescribeListeners",
                    "elasticloadbalancing:DescribeTargetGroups",
                    "elasticloadbalancing:DescribeTargetGroupAttributes",
                    "elasticloadbalancing:DescribeTargetHealth",
                    "elasticloadbalancing:DescribeTags",
                    "ec2:DescribeAvailabilityZones",
                    "ec2:DescribeInstances",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcs",
                ],
                "Resource": "*",
            },
            {
                "Sid": "Targets",
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                "Resource": target_group_arns,
            },
            {
                "Sid": "PodIngress",
                "Effect": "Allow",
                "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
                "Resource": "arn:aws:ec2:*:*:security-group/*",
                "Condition": {"ArnEquals": {"ec2:Vpc": vpc_arn}},
            },
        ],
    }


class AwsRegionalLoadBalancer(pulumi.ComponentResource):
    """A region's entry for the AWS front door: NLB, IP target group, listeners, security group
    and the `TargetGroupBinding` that registers the entry Service's ready pods.

    Create it parented to the region's `InferenceEndpoint` (which carries the region's AWS and
    Kubernetes providers). The AWS Load Balancer Controller must run in the cluster.
    """

    arn: pulumi.Output[str]
    dns_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        service: str,
        namespace: str,
        target_port: int,
        vpc_id: pulumi.Input[str],
        vpc_cidr: str,
        subnet_ids: pulumi.Input[list[str]],
        internal: bool,
        certificate_arn: str | None,
        controller: EksAccess | None = None,
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`certificate_arn`: the region's ACM certificate (required: the NLB listens with TLS only).
        `controller`: install the AWS Load Balancer Controller (IRSA role with `lbc_policy`, Helm
        release) into the cluster; None when the cluster already runs one."""
        if not certificate_arn:
            raise ValueError(f"{name}: the front door listens with TLS only and needs an ACM certificate")
        super().__init__(type_token("serving", "AwsRegionalLoadBalancer"), name, None, opts)
        ports = nlb_listener_ports()
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=vpc_id,
            description=f"NLB of {service}: clients on {', '.join(map(str, ports))}, targets on {target_port}",
            # Global Accelerator preserves client addresses, so clients arrive from anywhere.
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": p,
                    "to_port": p,
                    "cidr_blocks": ["0.0.0.0/0"],
                    "description": f"clients on {p}",
                }
                for p in ports
            ],
            egress=[
                {
                    "protocol": "tcp",
                    "from_port": target_port,
                    "to_port": target_port,
                    "cidr_blocks": [vpc_cidr],
                    "description": "to the pods",
                }
            ],
            tags=merge_tags(tags, name=f"{name}-sg"),
            opts=child_opts(self),
        )
        lb = aws.lb.LoadBalancer(
            f"{name}-nlb",
            load_balancer_type="network",
            internal=internal,
            subnets=subnet_ids,
            security_groups=[sg.id],
            enable_cross_zone_load_balancing=True,
            tags=merge_tags(tags, name=f"{name}-nlb"),
            opts=child_opts(self),
        )
        tg = aws.lb.TargetGroup(
            f"{name}-tg",
            target_type="ip",
            protocol="TCP",
            port=target_port,
            vpc_id=vpc_id,
            deregistration_delay=30,
            health_check={
                "enabled": True,
                "protocol": "HTTP",
                "path": READY_PATH,
                "port": "traffic-port",
                "matcher": "200",
                "interval": HEALTH_INTERVAL_S,
                "healthy_threshold": 2,
                "unhealthy_threshold": HEALTH_THRESHOLD,
            },
            tags=merge_tags(tags, name=f"{name}-tg"),
            opts=child_opts(lb),
        )
        for port in ports:
            aws.lb.Listener(
                f"{name}-{port}",
                load_balancer_arn=lb.arn,
                port=port,
                protocol="TLS",
                certificate_arn=certificate_arn,
                ssl_policy=TLS_POLICY,
                default_actions=[{"type": "forward", "target_group_arn": tg.arn}],
                tags=merge_tags(tags),
                opts=child_opts(lb),
            )
        self.controller: k8s.helm.v3.Release | None = None
        if controller is not None:
            self.controller = self._controller(name, controller, vpc_id, tg.arn, tags)
        self.binding = k8s.apiextensions.CustomResource(
            f"{name}-tgb",
            api_version="elbv2.k8s.aws/v1beta1",
            kind="TargetGroupBinding",
            metadata={
                "name": f"{service}-nlb",
                "namespace": namespace,
                "labels": {"app.kubernetes.io/part-of": "aicloud", "app.kubernetes.io/managed-by": "pulumi-aicloud"},
            },
            spec={
                "targetGroupARN": tg.arn,
                "targetType": "ip",
                "serviceRef": {"name": service, "port": SERVICE_PORT},
                "networking": {
                    "ingress": [
                        {
                            "from": [{"securityGroup": {"groupID": sg.id}}],
                            "ports": [{"protocol": "TCP", "port": target_port}],
                        }
                    ]
                },
            },
            # The binding's CRD and webhook come with the controller.
            opts=child_opts(self, depends_on=[self.controller] if self.controller else None),
        )
        self.arn = lb.arn
        self.dns_name = lb.dns_name
        self.zone_id = lb.zone_id
        self.ports = ports
        self.client_ip_preservation = False
        """Global Accelerator cannot preserve client IPs through an NLB with a TLS listener."""
        self.register_outputs(
            {
                "arn": self.arn,
                "dnsName": self.dns_name,
                "internal": internal,
                "ports": ports,
                "targetGroupArn": tg.arn,
                "healthCheckPath": READY_PATH,
                "controller": AWS_LBC_CHART["version"] if controller is not None else "existing",
            }
        )

    def _controller(
        self,
        name: str,
        eks: EksAccess,
        vpc_id: pulumi.Input[str],
        target_group_arn: pulumi.Output[str],
        tags: dict[str, str] | None,
    ) -> k8s.helm.v3.Release:
        trust = pulumi.Output.all(eks.oidc_provider_arn, eks.oidc_issuer).apply(
            lambda a: json.dumps(irsa_trust_policy(a[0], a[1], LBC_NAMESPACE, LBC_SERVICE_ACCOUNT))
        )
        role = aws.iam.Role(
            f"{name}-lbc-role",
            description=f"AWS Load Balancer Controller of {name} (IRSA, target group binding only)",
            assume_role_policy=trust,
            tags=merge_tags(tags),
            opts=child_opts(self),
        )
        aws.iam.RolePolicy(
            f"{name}-lbc-policy",
            role=role.id,
            policy=pulumi.Output.all(target_group_arn, vpc_id).apply(
                lambda a: json.dumps(lbc_policy([a[0]], f"arn:aws:ec2:{eks.region}:*:vpc/{a[1]}"))
            ),
            opts=child_opts(role),
        )
        return helm_release(
            f"{name}-lbc",
            AWS_LBC_CHART,
            release_name="aws-load-balancer-controller",
            namespace=LBC_NAMESPACE,
            values={
                "clusterName": eks.cluster_name,
                "region": eks.region,
                "vpcId": vpc_id,
                "replicaCount": 2,
                "serviceAccount": {
                    "create": True,
                    "name": LBC_SERVICE_ACCOUNT,
                    "annotations": {"eks.amazonaws.com/role-arn": role.arn},
                },
                # Bind target groups only: leave other Services of type LoadBalancer alone.
                "enableServiceMutatorWebhook": False,
            },
            opts=child_opts(self),
        )


@dataclass
class RegionalBackend:
    """One region behind a front door."""

    region_key: str
    region: str
    dial: int
    """0-100: AWS traffic dial, GCP capacity scaler x 100."""
    lb: AwsRegionalLoadBalancer | None = None
    """AWS: the region's NLB."""
    neg_name: str | None = None
    """GCP: name of the entry Service's standalone NEGs."""
    zones: list[str] = field(default_factory=list)
    """GCP: zones where the NEGs exist (the cluster's node zones)."""
    network: pulumi.Input[str] | None = None
    """GCP: the region's VPC network (for the health-check firewall rule)."""
    target_port: int = SERVICE_PORT
    """GCP: the pods' port the firewall must open."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """Resources that must exist first (the annotated entry Service: its NEGs)."""


def neg_url(project: str, zone: str, neg: str) -> str:
    """Reference to a zonal NEG by project, zone and name."""
    return f"projects/{project}/zones/{zone}/networkEndpointGroups/{neg}"


def cloud_armor_rules(denied: list[str], rate_per_minute: int | None) -> list[dict[str, Any]]:
    """Cloud Armor rules: deny listed ranges, throttle each client IP, allow the rest."""
    everyone = {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": ["*"]}}
    rules: list[dict[str, Any]] = []
    if denied:
        rules.append(
            {
                "action": "deny(403)",
                "priority": 1000,
                "description": "denied source ranges",
                "match": {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": list(denied)}},
            }
        )
    if rate_per_minute:
        rules.append(
            {
                "action": "throttle",
                "priority": 2000,
                "description": f"at most {rate_per_minute} requests per minute per client IP",
                "match": everyone,
                "rate_limit_options": {
                    "conform_action": "allow",
                    "exceed_action": "deny(429)",
                    "enforce_on_key": "IP",
                    "rate_limit_threshold": {"count": rate_per_minute, "interval_sec": 60},
                },
            }
        )
    rules.append({"action": "allow", "priority": 2147483647, "description": "default", "match": everyone})
    return rules


class GlobalEndpoint(pulumi.ComponentResource):
    """One front door for a cloud over the endpoint's regions (see the module docstring).

    Create it with a provider that is not pinned to a serving region: Global Accelerator's API
    lives in us-west-2, and GCP's global resources need only the project.
    """

    def __init__(
        self,
        name: str,
        door: AwsFrontDoor | GcpFrontDoor,
        backends: list[RegionalBackend],
        *,
        model: str,
        project: str | None = None,
        max_rate_per_endpoint: float = 20.0,
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("serving", "GlobalEndpoint"), name, None, opts)
        if not backends:
            raise ValueError(f"global endpoint {name} has no regional backends")
        self.name = name
        self.tags = tags or {}
        if isinstance(door, AwsFrontDoor):
            self.cloud: Literal["aws", "gcp"] = "aws"
            outputs = self._accelerator(door, backends) if door.mode == "accelerator" else self._route53(door, backends)
        else:
            if not project:
                raise ValueError("a GCP global endpoint needs the project")
            self.cloud = "gcp"
            outputs = self._gcp(door, backends, project=project, rate=max_rate_per_endpoint, model=model)
        self.address = outputs["address"]
        """The front door's address: accelerator DNS name, Route 53 domain or global IP."""
        self.register_outputs({"cloud": self.cloud, "model": model, "healthCheckPath": READY_PATH, **outputs})

    # ------------------------------------------------------------------ AWS

    def _accelerator(self, door: AwsFrontDoor, backends: list[RegionalBackend]) -> dict[str, Any]:
        name = self.name
        # Listen where every region's NLB listens (443, TLS).
        ports = sorted(set.intersection(*(set(b.lb.ports) for b in backends if b.lb is not None)))
        accelerator = aws.globalaccelerator.Accelerator(
            f"{name}-ga",
            ip_address_type="IPV4",
            enabled=True,
            tags=merge_tags(self.tags, name=f"{name}-ga"),
            opts=child_opts(self),
        )
        listener = aws.globalaccelerator.Listener(
            f"{name}-listener",
            accelerator_arn=accelerator.arn,
            protocol="TCP",
            client_affinity="NONE",
            port_ranges=[{"from_port": p, "to_port": p} for p in ports],
            opts=child_opts(accelerator),
        )
        regions = []
        for b in backends:
            assert b.lb is not None, f"AWS backend {b.region_key} needs its load balancer"
            aws.globalaccelerator.EndpointGroup(
                f"{name}-{b.region_key}",
                listener_arn=listener.arn,
                endpoint_group_region=b.region,
                traffic_dial_percentage=b.dial,
                health_check_protocol="HTTPS",
                health_check_path=READY_PATH,
                health_check_port=TLS_PORT,
                health_check_interval_seconds=HEALTH_INTERVAL_S,
                threshold_count=HEALTH_THRESHOLD,
                endpoint_configurations=[
                    {
                        "endpoint_id": b.lb.arn,
                        "weight": 128,
                        "client_ip_preservation_enabled": b.lb.client_ip_preservation,
                    }
                ],
                opts=child_opts(listener),
            )
            regions.append({"regionKey": b.region_key, "region": b.region, "dial": b.dial, "target": b.lb.arn})
        out: dict[str, Any] = {
            "mode": "accelerator",
            "address": accelerator.dns_name,
            "ports": ports,
            "regions": regions,
        }
        if door.domain and door.hosted_zone_id:
            aws.route53.Record(
                f"{name}-dns",
                zone_id=door.hosted_zone_id,
                name=door.domain,
                type="A",
                aliases=[
                    {
                        "name": accelerator.dns_name,
                        "zone_id": accelerator.hosted_zone_id,
                        "evaluate_target_health": True,
                    }
                ],
                opts=child_opts(accelerator),
            )
            out["domain"] = door.domain
        self.accelerator = accelerator
        return out

    def _route53(self, door: AwsFrontDoor, backends: list[RegionalBackend]) -> dict[str, Any]:
        name = self.name
        regions = []
        for b in backends:
            assert b.lb is not None, f"AWS backend {b.region_key} needs its load balancer"
            check = aws.route53.HealthCheck(
                f"{name}-{b.region_key}-health",
                type="HTTPS",
                fqdn=b.lb.dns_name,
                port=TLS_PORT,
                resource_path=READY_PATH,
                request_interval=HEALTH_INTERVAL_S,
                failure_threshold=HEALTH_THRESHOLD,
                tags=merge_tags(self.tags, name=f"{name}-{b.region_key}"),
                opts=child_opts(self),
            )
            if b.dial > 0:
                aws.route53.Record(
                    f"{name}-{b.region_key}",
                    zone_id=door.hosted_zone_id,
                    name=door.domain,
                    type="A",
                    set_identifier=b.region_key,
                    latency_routing_policies=[{"region": b.region}],
                    health_check_id=check.id,
                    aliases=[{"name": b.lb.dns_name, "zone_id": b.lb.zone_id, "evaluate_target_health": True}],
                    opts=child_opts(check),
                )
            regions.append({"regionKey": b.region_key, "region": b.region, "dial": b.dial, "target": b.lb.dns_name})
        return {
            "mode": "route53",
            "address": door.domain,
            "domain": door.domain,
            "ports": [TLS_PORT],
            "regions": regions,
        }

    # ------------------------------------------------------------------ GCP

    def _gcp(
        self, door: GcpFrontDoor, backends: list[RegionalBackend], *, project: str, rate: float, model: str
    ) -> dict[str, Any]:
        name = self.name
        labels = gcp_labels(self.tags)
        health = gcp.compute.HealthCheck(
            f"{name}-health",
            description=f"Readiness of the {model} model servers",
            check_interval_sec=HEALTH_INTERVAL_S,
            timeout_sec=5,
            healthy_threshold=2,
            unhealthy_threshold=HEALTH_THRESHOLD,
            http_health_check={"port_specification": "USE_SERVING_PORT", "request_path": READY_PATH},
            opts=child_opts(self),
        )
        for b in backends:
            gcp.compute.Firewall(
                f"{name}-{b.region_key}-lb",
                network=b.network,
                direction="INGRESS",
                description="Google health checkers and load balancer proxies to the model servers",
                source_ranges=GCP_HEALTH_CHECK_RANGES,
                allows=[{"protocol": "tcp", "ports": [str(b.target_port)]}],
                opts=child_opts(self),
            )
        policy = None
        if door.cloud_armor is not None:
            policy = gcp.compute.SecurityPolicy(
                f"{name}-armor",
                description=f"Cloud Armor of the {model} endpoint",
                type="CLOUD_ARMOR",
                rules=cloud_armor_rules(door.cloud_armor.denied_cidrs, door.cloud_armor.rate_limit_per_minute),
                opts=child_opts(self),
            )
        regions = []
        groups = []
        for b in backends:
            assert b.neg_name is not None, f"GCP backend {b.region_key} needs its NEG name"
            for zone in b.zones:
                groups.append(
                    {
                        "group": neg_url(project, zone, b.neg_name),
                        "balancing_mode": "RATE",
                        "max_rate_per_endpoint": rate,
                        "capacity_scaler": b.dial / 100,
                    }
                )
            regions.append(
                {
                    "regionKey": b.region_key,
                    "region": b.region,
                    "dial": b.dial,
                    "target": f"{b.neg_name} in {', '.join(b.zones)}",
                }
            )
        backend = gcp.compute.BackendService(
            f"{name}-backend",
            description=f"{model} model servers in {', '.join(b.region_key for b in backends)}",
            protocol="HTTP",
            load_balancing_scheme="EXTERNAL_MANAGED",
            health_checks=health.id,
            backends=groups,
            security_policy=policy.id if policy is not None else None,
            timeout_sec=60,
            connection_draining_timeout_sec=30,
            log_config={"enable": True, "sample_rate": 1.0},
            opts=child_opts(self, depends_on=[d for b in backends for d in b.depends_on] or None),
        )
        url_map = gcp.compute.URLMap(f"{name}-urls", default_service=backend.id, opts=child_opts(self))
        cert = gcp.compute.ManagedSslCertificate(
            f"{name}-cert", managed={"domains": list(door.domains)}, opts=child_opts(self)
        )
        proxy = gcp.compute.TargetHttpsProxy(
            f"{name}-https", url_map=url_map.id, ssl_certificates=[cert.id], opts=child_opts(self)
        )
        address = gcp.compute.GlobalAddress(
            f"{name}-ip", ip_version="IPV4", address_type="EXTERNAL", labels=labels, opts=child_opts(self)
        )
        gcp.compute.GlobalForwardingRule(
            f"{name}-443",
            target=proxy.id,
            ip_address=address.id,
            ip_protocol="TCP",
            port_range="443",
            load_balancing_scheme="EXTERNAL_MANAGED",
            labels=labels,
            opts=child_opts(proxy),
        )
        redirect = gcp.compute.URLMap(
            f"{name}-redirect",
            default_url_redirect={
                "https_redirect": True,
                "strip_query": False,
                "redirect_response_code": "MOVED_PERMANENTLY_DEFAULT",
            },
            opts=child_opts(self),
        )
        http_proxy = gcp.compute.TargetHttpProxy(f"{name}-http", url_map=redirect.id, opts=child_opts(self))
        gcp.compute.GlobalForwardingRule(
            f"{name}-80",
            target=http_proxy.id,
            ip_address=address.id,
            ip_protocol="TCP",
            port_range="80",
            load_balancing_scheme="EXTERNAL_MANAGED",
            labels=labels,
            opts=child_opts(http_proxy),
        )
        self.backend_service = backend
        return {
            "mode": "global-external-alb",
            "address": address.address,
            "domains": list(door.domains),
            "ports": [443, 80],
            "cloudArmor": policy is not None,
            "regions": regions,
        }
