"""The components under Pulumi's mock runtime: what they register, under which provider, with
which health checks and dials (regional failover is a health check plus a dial per region)."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.endpoint import READY_PATH, AwsFrontDoor, GcpFrontDoor, InferenceEndpoint
from components.global_endpoint import (
    GCP_HEALTH_CHECK_RANGES,
    HEALTH_THRESHOLD,
    LBC_SERVICE_ACCOUNT,
    AwsRegionalLoadBalancer,
    EksAccess,
    GlobalEndpoint,
    RegionalBackend,
)
from tests.endpoints.endpoint_helpers import CANARY, config, plans

EG = "aws:globalaccelerator/endpointGroup:EndpointGroup"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/abc"


def aws_regions(program_dials: dict[str, int], *, internal: bool, controller: bool = False):
    """Three AWS regional load balancers (fake network inputs) as front-door backends."""
    backends = []
    for key, region in (("aws-use1", "us-east-1"), ("aws-usw2", "us-west-2"), ("aws-euw1", "eu-west-1")):
        provider = aws.Provider(f"aws-{key}", region=region)
        lb = AwsRegionalLoadBalancer(
            f"{key}-clf-lb",
            service="clf",
            namespace="aicloud-serving",
            target_port=8080,
            vpc_id=f"vpc-{key}",
            vpc_cidr="10.0.0.0/16",
            subnet_ids=[f"subnet-{key}-a", f"subnet-{key}-b"],
            internal=internal,
            certificate_arn=CERT,
            controller=EksAccess(f"{key}-eks", region, f"arn:oidc-{key}", f"https://oidc.{key}/id/X")
            if controller
            else None,
            opts=pulumi.ResourceOptions(providers=[provider, k8s.Provider(f"k8s-{key}", kubeconfig="{}")]),
        )
        backends.append(RegionalBackend(key, region, program_dials.get(key, 100), lb=lb))
    return backends


def test_inference_endpoint_uses_the_region_k8s_provider(record):
    plan = plans(
        {
            "gateway": {"className": "istio"},
            "release": {"strategy": "canary", "canary": CANARY, "maxSurge": 0, "maxUnavailable": 1},
        }
    )["aws-usw2"]

    def program():
        provider = k8s.Provider("k8s-aws-usw2", kubeconfig="{}")
        InferenceEndpoint("aws-usw2-clf", plan, opts=pulumi.ResourceOptions(providers=[provider]))

    regs = record(program)
    provider = regs.one("pulumi:providers:kubernetes")
    endpoint = regs.one("aicloud:serving:InferenceEndpoint")
    # The Gateway's implementation (Istio and the Gateway API CRDs) is a component of its own.
    implementation = regs.one("aicloud:serving:GatewayImplementation")
    assert implementation.parent == endpoint.urn
    installed = [r for r in regs if r.type.startswith("kubernetes:") and endpoint.urn not in (r.parent,)]
    assert {r.inputs.get("chart") for r in installed if r.type == "kubernetes:helm.sh/v3:Release"} == {"base", "istiod"}
    assert all(r.provider == provider.urn for r in installed)
    objects = [r for r in regs if r.type.startswith("kubernetes:") and r.parent == endpoint.urn]
    assert sorted((r.inputs["kind"], r.inputs["metadata"]["name"]) for r in objects) == [
        ("Deployment", "clf-canary"),
        ("Deployment", "clf-stable"),
        ("Gateway", "clf-gw"),
        ("HTTPRoute", "clf"),
        ("HorizontalPodAutoscaler", "clf-canary"),
        ("HorizontalPodAutoscaler", "clf-stable"),
        ("Namespace", "aicloud-serving"),
        # deny by default; the gateway's data plane reaches the servers, Prometheus the metrics port
        ("NetworkPolicy", "allow-clf-gateway"),
        ("NetworkPolicy", "allow-clf-metrics"),
        ("NetworkPolicy", "default-deny-ingress"),
        ("PodDisruptionBudget", "clf"),
        ("Service", "clf"),
        ("Service", "clf-canary"),
        ("ServiceAccount", "clf"),
    ]
    for r in objects:
        assert r.provider == provider.urn, r.name
        assert r.parent == endpoint.urn
    # Workloads wait for their namespace and service account.
    ns, sa = regs.named("aws-usw2-clf-ns"), regs.named("aws-usw2-clf-sa")
    assert {ns.urn, sa.urn} <= set(regs.named("aws-usw2-clf-deploy-stable").depends_on)
    out = endpoint.outputs
    assert [(t["name"], t["weight"]) for t in out["tracks"]] == [("stable", 90), ("canary", 10)]
    assert out["entryService"] == "clf-gw-istio" and out["readyPath"] == READY_PATH


def test_existing_workload_identity_is_used(record):
    plan = plans({})["aws-use1"]

    class Identity:
        service_account_name = "server"
        namespace = "aicloud-serving"

    regs = record(lambda: InferenceEndpoint("aws-use1-clf", plan, identity=Identity()))
    kinds = {r.inputs["kind"] for r in regs if r.type.startswith("kubernetes:")}
    assert "Namespace" not in kinds and "ServiceAccount" not in kinds
    deploy = regs.named("aws-use1-clf-deploy-stable")
    assert deploy.inputs["spec"]["template"]["spec"]["serviceAccountName"] == "server"


def test_accelerator_has_one_endpoint_group_per_region(record):
    def program():
        backends = aws_regions({"aws-euw1": 20}, internal=True)
        ga_provider = aws.Provider("aws-global", region="us-west-2")
        door = AwsFrontDoor(mode="accelerator", domain="clf.example.com", hosted_zone_id="Z123")
        GlobalEndpoint("clf-aws", door, backends, model="clf", opts=pulumi.ResourceOptions(providers=[ga_provider]))

    regs = record(program)
    groups = {r.inputs["endpointGroupRegion"]: r for r in regs.of_type(EG)}
    assert sorted(groups) == ["eu-west-1", "us-east-1", "us-west-2"]
    ga_provider = regs.named("aws-global")
    assert ga_provider.inputs["region"] == "us-west-2"
    for region, g in groups.items():
        # Failover: a region whose readiness check fails stops receiving traffic.
        assert g.inputs["healthCheckPath"] == READY_PATH and g.inputs["healthCheckProtocol"] == "HTTPS"
        assert g.inputs["thresholdCount"] == HEALTH_THRESHOLD
        assert g.inputs["trafficDialPercentage"] == (20 if region == "eu-west-1" else 100)
        (endpoint,) = g.inputs["endpointConfigurations"]
        key = {"us-east-1": "aws-use1", "us-west-2": "aws-usw2", "eu-west-1": "aws-euw1"}[region]
        assert endpoint["endpointId"] == f"${{{key}-clf-lb-nlb.arn}}"
        assert endpoint["clientIpPreservationEnabled"] is False  # TLS listeners forbid it
        assert g.provider == ga_provider.urn
    listener = regs.one("aws:globalaccelerator/listener:Listener")
    # TLS only: nothing is served in plain text.
    assert listener.inputs["portRanges"] == [{"fromPort": 443, "toPort": 443}]
    # The NLBs the groups point at check the same readiness path.
    for tg in regs.of_type("aws:lb/targetGroup:TargetGroup"):
        assert tg.inputs["healthCheck"]["path"] == READY_PATH and tg.inputs["targetType"] == "ip"
    for lb in regs.of_type("aws:lb/loadBalancer:LoadBalancer"):
        assert lb.inputs["internal"] is True and lb.inputs["loadBalancerType"] == "network"
        assert lb.provider.endswith(f"::aws-{lb.name.split('-clf')[0]}")
    dns = regs.one("aws:route53/record:Record")
    assert dns.inputs["aliases"][0]["name"] == "${clf-aws-ga.dnsName}"
    listeners = regs.of_type("aws:lb/listener:Listener")
    assert len(listeners) == 3
    assert all(
        (r.inputs["port"], r.inputs["protocol"], r.inputs["certificateArn"]) == (443, "TLS", CERT) for r in listeners
    )


def test_target_group_binding_registers_the_entry_service(record):
    regs = record(lambda: aws_regions({}, internal=True))
    bindings = regs.of_type("kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding")
    assert len(bindings) == 3
    spec = regs.named("aws-use1-clf-lb-tgb").inputs["spec"]
    assert spec["serviceRef"] == {"name": "clf", "port": 80}
    assert spec["targetGroupARN"] == "${aws-use1-clf-lb-tg.arn}"
    assert spec["networking"]["ingress"][0]["from"] == [{"securityGroup": {"groupID": "${aws-use1-clf-lb-sg.id}"}}]


def test_load_balancer_controller_may_only_touch_its_target_group(record):
    regs = record(lambda: aws_regions({}, internal=True, controller=True))
    trust = json.loads(regs.named("aws-use1-clf-lb-lbc-role").inputs["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert condition["oidc.aws-use1/id/X:sub"] == f"system:serviceaccount:kube-system:{LBC_SERVICE_ACCOUNT}"
    policy = json.loads(regs.named("aws-use1-clf-lb-lbc-policy").inputs["policy"])
    targets = next(s for s in policy["Statement"] if s["Sid"] == "Targets")
    assert targets["Resource"] == ["${aws-use1-clf-lb-tg.arn}"]
    ingress = next(s for s in policy["Statement"] if s["Sid"] == "PodIngress")
    assert ingress["Condition"] == {"ArnEquals": {"ec2:Vpc": "arn:aws:ec2:us-east-1:*:vpc/vpc-aws-use1"}}
    release = regs.named("aws-use1-clf-lb-lbc")
    assert release.inputs["values"]["clusterName"] == "aws-use1-eks"
    assert release.inputs["values"]["enableServiceMutatorWebhook"] is False
    assert release.urn in regs.named("aws-use1-clf-lb-tgb").depends_on


def test_keda_is_installed_before_scaled_objects(record):
    keda = {
        "autoscaling": {"mode": "keda", "prometheusAddress": "http://prom:9090"},
        "release": {"maxSurge": 0, "maxUnavailable": 1},
    }
    regs = record(lambda: InferenceEndpoint("aws-use1-clf", plans(keda)["aws-use1"]))
    release = regs.named("aws-use1-clf-keda")
    assert release.inputs["chart"] == "keda" and release.inputs["namespace"] == "keda"
    assert release.urn in regs.named("aws-use1-clf-scaler-stable").depends_on
    without = {**keda, "autoscaling": {**keda["autoscaling"], "installKeda": False}}
    regs = record(lambda: InferenceEndpoint("aws-use1-clf", plans(without)["aws-use1"]))
    assert not regs.of_type("kubernetes:helm.sh/v3:Release")


def test_route53_latency_records_follow_health_and_dials(record):
    def program():
        backends = aws_regions({"aws-usw2": 0}, internal=False)
        door = AwsFrontDoor(mode="route53", domain="clf.example.com", hosted_zone_id="Z123")
        GlobalEndpoint("clf-aws", door, backends, model="clf")

    regs = record(program)
    checks = regs.of_type("aws:route53/healthCheck:HealthCheck")
    assert len(checks) == 3
    for c in checks:
        assert c.inputs["resourcePath"] == READY_PATH and c.inputs["failureThreshold"] == HEALTH_THRESHOLD
    records = {r.inputs["setIdentifier"]: r for r in regs.of_type("aws:route53/record:Record")}
    assert sorted(records) == ["aws-euw1", "aws-use1"]  # dial 0 drains aws-usw2
    use1 = records["aws-use1"].inputs
    assert use1["latencyRoutingPolicies"] == [{"region": "us-east-1"}]
    assert use1["healthCheckId"] == "${clf-aws-aws-use1-health.id}"
    assert use1["aliases"][0]["evaluateTargetHealth"] is True
    assert all(lb.inputs["internal"] is False for lb in regs.of_type("aws:lb/loadBalancer:LoadBalancer"))


def test_gcp_load_balancer_has_a_neg_backend_per_region_zone(record):
    zones = {
        "gcp-usc1": ["us-central1-a", "us-central1-b"],
        "gcp-euw4": ["europe-west4-a", "europe-west4-b", "europe-west4-c"],
    }

    def program():
        backends = [
            RegionalBackend(key, key, dial, neg_name=f"{key}-clf-neg", zones=zones[key], network=f"net-{key}")
            for key, dial in (("gcp-usc1", 100), ("gcp-euw4", 40))
        ]
        door = GcpFrontDoor(
            domains=["clf.example.com"], cloud_armor={"denied_cidrs": ["203.0.113.0/24"], "rate_limit_per_minute": 600}
        )
        GlobalEndpoint(
            "clf-gcp",
            door,
            backends,
            model="clf",
            project="acme-ml-test",
            max_rate_per_endpoint=30,
            opts=pulumi.ResourceOptions(providers=[gcp.Provider("gcp-global", project="acme-ml-test")]),
        )

    regs = record(program)
    backend = regs.one("gcp:compute/backendService:BackendService").inputs
    groups = {b["group"]: b for b in backend["backends"]}
    assert len(groups) == 5  # 2 + 3 zones
    assert (
        groups["projects/acme-ml-test/zones/europe-west4-c/networkEndpointGroups/gcp-euw4-clf-neg"]["capacityScaler"]
        == 0.4
    )
    assert (
        groups["projects/acme-ml-test/zones/us-central1-a/networkEndpointGroups/gcp-usc1-clf-neg"]["capacityScaler"]
        == 1
    )
    assert all(b["balancingMode"] == "RATE" and b["maxRatePerEndpoint"] == 30 for b in groups.values())
    assert backend["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    health = regs.one("gcp:compute/healthCheck:HealthCheck")
    assert backend["healthChecks"] == f"${{{health.name}.id}}"
    assert health.inputs["httpHealthCheck"] == {"portSpecification": "USE_SERVING_PORT", "requestPath": READY_PATH}
    assert health.inputs["unhealthyThreshold"] == HEALTH_THRESHOLD
    firewalls = regs.of_type("gcp:compute/firewall:Firewall")
    assert sorted(f.inputs["network"] for f in firewalls) == ["net-gcp-euw4", "net-gcp-usc1"]
    assert all(f.inputs["sourceRanges"] == GCP_HEALTH_CHECK_RANGES for f in firewalls)
    rules = regs.one("gcp:compute/securityPolicy:SecurityPolicy").inputs["rules"]
    assert [r["action"] for r in rules] == ["deny(403)", "throttle", "allow"]
    assert rules[1]["rateLimitOptions"]["rateLimitThreshold"] == {"count": 600, "intervalSec": 60}
    assert backend["securityPolicy"] == "${clf-gcp-armor.id}"
    ports = sorted(r.inputs["portRange"] for r in regs.of_type("gcp:compute/globalForwardingRule:GlobalForwardingRule"))
    assert ports == ["443", "80"]
    assert regs.one("gcp:compute/managedSslCertificate:ManagedSslCertificate").inputs["managed"] == {
        "domains": ["clf.example.com"]
    }
    out = regs.one("aicloud:serving:GlobalEndpoint").outputs
    assert out["address"] == "${clf-gcp-ip.address}" and len(out["regions"]) == 2


def test_endpoint_outputs_are_json(record):
    plan = plans({})["gcp-usc1"]
    regs = record(lambda: InferenceEndpoint("gcp-usc1-clf", plan, neg=True))
    out = regs.one("aicloud:serving:InferenceEndpoint").outputs
    assert json.loads(json.dumps(out))["negName"] == "gcp-usc1-clf-neg"
    svc = regs.named("gcp-usc1-clf-svc")
    assert json.loads(svc.inputs["metadata"]["annotations"]["cloud.google.com/neg"]) == {
        "exposed_ports": {"80": {"name": "gcp-usc1-clf-neg"}}
    }
    assert config({}).serving is not None


def test_kserve_turns_on_the_knative_flags_its_predictor_needs_before_creating_it(record):
    kserve = {
        "backend": "kserve",
        "autoscaling": {"mode": "knative"},
        "release": {"strategy": "canary", "canary": {**CANARY, "weights": {"stable": 100, "canary": 0}}},
    }
    regs = record(lambda: InferenceEndpoint("aws-use1-clf", plans(kserve)["aws-use1"]))
    patch = regs.one("kubernetes:core/v1:ConfigMapPatch")
    assert patch.inputs["metadata"]["namespace"] == "knative-serving"
    assert patch.inputs["metadata"]["name"] == "config-features"
    assert patch.inputs["data"]["kubernetes.podspec-tolerations"] == "enabled"
    assert patch.inputs["data"]["kubernetes.podspec-nodeselector"] == "enabled"
    isvc = regs.one("kubernetes:serving.kserve.io/v1beta1:InferenceService")
    assert patch.urn in isvc.depends_on
