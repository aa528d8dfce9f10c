"""The pure manifest builders: probes on the server's real paths and arguments, pool placement,
security, release strategies (weights, selector switch, header match) and strict schemas."""

from __future__ import annotations

import itertools

import pytest

from components.endpoint import (
    LIVE_PATH,
    READY_PATH,
    REQUESTS_METRIC,
    SERVER_PORT,
    gpu_units_per_node,
    neg_annotation,
    render_endpoint,
    server_args,
)
from components.k8s_schema import identity_problems, validate_object
from components.nodepool import GPU_RESOURCE, POOL_LABEL, NodePoolSpec
from tests.endpoints.endpoint_helpers import CANARY, IMAGE_B, plans

GATEWAY = {"gateway": {"className": "istio"}}
FIT = {"maxSurge": 0, "maxUnavailable": 1}  # the test pools hold 4 GPUs
STRATEGIES = {
    "rolling": {"release": {"strategy": "rolling"}},
    "canary": {**GATEWAY, "release": {"strategy": "canary", "canary": {**CANARY, "replicas": 1}, **FIT}},
    "blue-green": {"release": {"strategy": "blue-green", "blueGreen": {"green": {"image": IMAGE_B}}, **FIT}},
    "ab": {**GATEWAY, "release": {"strategy": "ab", "ab": {"image": IMAGE_B}, **FIT}},
    "kserve-canary": {
        "backend": "kserve",
        "autoscaling": {"mode": "knative"},
        "replicas": {"min": 1, "max": 2},
        # KServe's canary is the previous revision: the config deploys the stable model (canary 0).
        "release": {"strategy": "canary", "canary": {**CANARY, "weights": {"stable": 100, "canary": 0}}},
    },
    "keda": {"autoscaling": {"mode": "keda", "prometheusAddress": "http://prom:9090"}, "release": FIT},
    "custom-metric": {"autoscaling": {"mode": "metric", "requestsPerSecond": 25}, "release": FIT},
}


def render(serving, region="aws-use1", **kw):
    plan = plans(serving)[region]
    return plan, render_endpoint(plan, service_account="clf", create_identity=True, **kw)


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def named(objs, kind, name):
    (found,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_probe_paths_are_the_servers_routes():
    from workloads.server.app import create_app
    from workloads.server.config import ServerConfig
    from workloads.server.metrics import REQUESTS

    routes = {r.path for r in create_app(ServerConfig(model="file:///unused")).routes}
    assert READY_PATH == "/v2/health/ready" and LIVE_PATH == "/v2/health/live"
    assert {READY_PATH, LIVE_PATH, "/metrics"} <= routes
    assert REQUESTS_METRIC == REQUESTS.name
    _, objs = render({})
    container = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": "http", "scheme": "HTTP"}
    assert container["startupProbe"]["httpGet"]["path"] == READY_PATH
    assert container["livenessProbe"]["httpGet"]["path"] == LIVE_PATH
    assert container["ports"] == [
        {"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"},
        # metrics on their own port, which no front door reaches
        {"name": "metrics", "containerPort": 9464, "protocol": "TCP"},
    ]


def test_server_arguments_parse_with_the_servers_own_cli():
    from workloads.server.config import parse_args

    plan = plans({})["gcp-usc1"]
    cfg = parse_args(server_args(plan, plan.tracks[0]))
    assert (cfg.model, cfg.name, cfg.port, cfg.device) == ("gs://models/clf/v1", "clf", SERVER_PORT, "cuda")
    assert cfg.shutdown_drain_s == plan.spec.drain_seconds
    # The pod outlives the server's drain plus its graceful timeout.
    _, objs = render({}, "gcp-usc1")
    grace = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > cfg.shutdown_drain_s + cfg.graceful_timeout_s
    assert cfg.drain_idle_s < cfg.graceful_timeout_s  # idle connections close inside the grace period


@pytest.mark.parametrize(("region", "front_door_idle_s"), [("gcp-usc1", 600), ("aws-use1", 60)])
def test_server_keep_alive_outlasts_the_front_doors_idle_timeout(region: str, front_door_idle_s: int):
    from workloads.server.config import parse_args

    plan = plans({})[region]
    cfg = parse_args(server_args(plan, plan.tracks[0]))
    # GCP's global external Application LB keeps backend connections 600 s, an AWS ALB 60 s: a
    # server that closes first races the balancer's reuse (502s).
    assert cfg.keep_alive_timeout_s > front_door_idle_s


def test_gpu_pod_lands_on_its_pool_and_holds_one_gpu():
    plan, objs = render({})
    pod = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["nodeSelector"] == {POOL_LABEL: "serve"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    ]
    assert container["resources"]["limits"][GPU_RESOURCE] == "1"
    assert container["resources"]["requests"][GPU_RESOURCE] == "1"
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"]["matchLabels"]["aicloud.dev/track"] == "stable"


def test_cpu_pool_gets_cpu_limits_and_no_tolerations():
    _, objs = render({"pool": "system"})
    pod = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert GPU_RESOURCE not in limits and limits["cpu"] == "2"
    assert pod["tolerations"] == [] and pod["nodeSelector"] == {POOL_LABEL: "system"}
    assert "--device" in (args := pod["containers"][0]["args"]) and args[args.index("--device") + 1] == "cpu"


def test_pods_run_restricted():
    _, objs = render({})
    ns = named(objs, "Namespace", "aicloud-serving")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}]
    assert pod["serviceAccountName"] == "clf"


def test_disruption_budget_and_autoscaler_bounds():
    _, objs = render({"replicas": {"min": 1, "max": 2}})
    (pdb,) = by_kind(objs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    (hpa,) = by_kind(objs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 2)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "clf-stable"}
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    # The autoscaler owns the replica count: the Deployment never sets it.
    assert "replicas" not in by_kind(objs, "Deployment")[0]["spec"]


def test_keda_scales_on_the_servers_request_rate():
    _, objs = render(STRATEGIES["keda"])
    (scaler,) = by_kind(objs, "ScaledObject")
    trigger = scaler["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["serverAddress"] == "http://prom:9090"
    assert trigger["metadata"]["query"].startswith(f'sum(rate({REQUESTS_METRIC}{{namespace="aicloud-serving"')
    assert trigger["metadata"]["threshold"] == "20"
    assert (scaler["spec"]["minReplicaCount"], scaler["spec"]["maxReplicaCount"]) == (1, 2)


def test_canary_weights_sum_to_100_on_the_route():
    plan, objs = render(STRATEGIES["canary"])
    (route,) = by_kind(objs, "HTTPRoute")
    (rule,) = route["spec"]["rules"]
    weights = {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}
    assert weights == {"clf": 90, "clf-canary": 10} and sum(weights.values()) == 100
    assert route["spec"]["parentRefs"] == [{"name": "clf-gw"}]
    # Each weighted Service selects exactly its track.
    assert named(objs, "Service", "clf")["spec"]["selector"]["aicloud.dev/track"] == "stable"
    assert named(objs, "Service", "clf-canary")["spec"]["selector"]["aicloud.dev/track"] == "canary"
    canary = named(objs, "Deployment", "clf-canary")["spec"]["template"]["spec"]["containers"][0]
    assert canary["args"][canary["args"].index("--model") + 1] == "s3://models/clf/v2"
    # The fixed-size canary is pinned by its autoscaler (min = max).
    hpa = named(objs, "HorizontalPodAutoscaler", "clf-canary")["spec"]
    assert hpa["minReplicas"] == hpa["maxReplicas"] == 1
    assert sum(t.weight for t in plan.tracks) == 100


def test_kserve_canary_uses_canary_traffic_percent():
    _, objs = render(STRATEGIES["kserve-canary"])
    (isvc,) = by_kind(objs, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 0
    assert predictor["containers"][0]["name"] == "kserve-container"
    assert predictor["containers"][0]["readinessProbe"]["httpGet"]["path"] == READY_PATH
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert not by_kind(objs, "Deployment") and not by_kind(objs, "HTTPRoute")


def test_blue_green_switch_changes_only_the_selector():
    blue_cfg = STRATEGIES["blue-green"]
    green_cfg = {
        "release": {**blue_cfg["release"], "blueGreen": {**blue_cfg["release"]["blueGreen"], "active": "green"}}
    }
    _, blue = render(blue_cfg, entry_annotations=neg_annotation("x"))
    _, green = render(green_cfg, entry_annotations=neg_annotation("x"))

    def key(o):
        return (o["kind"], o["metadata"]["name"])

    # Same objects (nothing created, deleted or replaced)...
    assert [key(o) for o in blue] == [key(o) for o in green]
    changed = {key(b) for b, g in zip(blue, green, strict=True) if b != g}
    # ...the Services and the colours' autoscalers change, nothing else.
    assert changed == {
        ("Service", "clf"),
        ("Service", "clf-preview"),
        ("HorizontalPodAutoscaler", "clf-blue"),
        ("HorizontalPodAutoscaler", "clf-green"),
    }
    for name in ("clf", "clf-preview"):
        b, g = named(blue, "Service", name), named(green, "Service", name)
        assert {k: v for k, v in b.items() if k != "spec"} == {k: v for k, v in g.items() if k != "spec"}
        assert {k: v for k, v in b["spec"].items() if k != "selector"} == {
            k: v for k, v in g["spec"].items() if k != "selector"
        }
    assert named(blue, "Service", "clf")["spec"]["selector"]["aicloud.dev/track"] == "blue"
    assert named(green, "Service", "clf")["spec"]["selector"]["aicloud.dev/track"] == "green"
    # The standby colour stays warm at standbyReplicas; the active one autoscales.
    assert named(blue, "HorizontalPodAutoscaler", "clf-green")["spec"]["maxReplicas"] == 1
    assert named(green, "HorizontalPodAutoscaler", "clf-green")["spec"]["maxReplicas"] == 2


def test_ab_routes_the_header_to_variant_b():
    _, objs = render(STRATEGIES["ab"])
    (route,) = by_kind(objs, "HTTPRoute")
    first, default = route["spec"]["rules"]
    assert first["matches"] == [{"headers": [{"type": "Exact", "name": "x-variant", "value": "b"}]}]
    assert first["backendRefs"] == [{"name": "clf-b", "port": 80}]
    assert default == {"backendRefs": [{"name": "clf", "port": 80}]}
    b = named(objs, "Deployment", "clf-b")["spec"]["template"]["spec"]["containers"][0]
    assert b["image"] == IMAGE_B


def test_neg_annotation_goes_on_the_entry():
    _, plain = render({}, "gcp-usc1", entry_annotations=neg_annotation("gcp-usc1-clf-neg"))
    ann = named(plain, "Service", "clf")["metadata"]["annotations"]["cloud.google.com/neg"]
    assert ann == '{"exposed_ports": {"80": {"name": "gcp-usc1-clf-neg"}}}'
    # Through a gateway, the gateway's data plane is the entry.
    _, routed = render(STRATEGIES["canary"], "gcp-usc1", entry_annotations=neg_annotation("n"))
    gw = named(routed, "Gateway", "clf-gw")
    assert "cloud.google.com/neg" in gw["spec"]["infrastructure"]["annotations"]
    assert "annotations" not in named(routed, "Service", "clf")["metadata"]


@pytest.mark.parametrize(
    ("strategy", "region"), list(itertools.product(STRATEGIES, ["aws-use1", "gcp-usc1"])), ids=lambda v: str(v)
)
def test_every_rendered_object_passes_strict_schema_validation(strategy, region):
    plan, objs = render(STRATEGIES[strategy], region, entry_annotations=neg_annotation("n"))
    for obj in objs:
        assert validate_object(obj, plan.k8s_version) == []
        assert identity_problems(obj) == []


def test_schema_validation_catches_a_misplaced_field():
    plan, objs = render({})
    deploy = by_kind(objs, "Deployment")[0]
    deploy["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "n"},
        "spec": {"parentRefs": [{"name": "g"}], "rules": [{"backendRefs": [{"name": "s", "weight": -1}]}]},
    }
    assert validate_object(deploy, "1.33") == [
        "Deployment/clf-stable at .spec.template.spec.containers[0]: Additional properties are not allowed "
        "('readinessprobe' was unexpected)"
    ]
    assert validate_object(route, "1.33") == [
        "HTTPRoute/r at .spec.rules[0].backendRefs[0].weight: -1 is less than the minimum of 0"
    ]


def test_gpu_units_follow_sharing():
    ts = NodePoolSpec(name="p", machine_type="g6.12xlarge", gpu_sharing="time-slicing", time_slicing_replicas=4)
    mig = NodePoolSpec(name="p", machine_type="a2-highgpu-1g", gpu_sharing="mig", mig_profile="2g.10gb")
    assert gpu_units_per_node(ts) == 16  # 4 GPUs x 4 slices
    assert gpu_units_per_node(mig) == 3  # 1 A100 x 3 2g slices
    assert gpu_units_per_node(NodePoolSpec(name="p", machine_type="m6i.large")) == 0


@pytest.mark.parametrize("strategy", ["rolling", "canary", "kserve-canary"])
def test_lake_model_uris_load_the_zone_configmap_in_every_server_container(strategy):
    import dataclasses

    plan = plans(STRATEGIES[strategy])["aws-use1"]
    lake = tuple(dataclasses.replace(t, model_uri=f"lake://models/clf/{t.name}") for t in plan.tracks)
    plan = dataclasses.replace(plan, tracks=lake)
    with pytest.raises(ValueError, match=r"lake://models/clf/.*no server identity with access to the models zone"):
        render_endpoint(plan, service_account="clf", create_identity=True)
    objs = render_endpoint(
        plan, service_account="clf", create_identity=True, zone_uris={"models": "s3://bkt-models-1a2b"}
    )
    config_map = named(objs, "ConfigMap", "aicloud-lake")
    assert config_map["metadata"]["namespace"] == plan.namespace
    assert config_map["data"] == {"AICLOUD_LAKE_MODELS": "s3://bkt-models-1a2b"}
    # Created before anything that runs the server.
    kinds = [o["kind"] for o in objs]
    assert kinds.index("ConfigMap") < min(kinds.index(k) for k in ("Deployment", "InferenceService") if k in kinds)
    containers = [c for o in by_kind(objs, "Deployment") for c in o["spec"]["template"]["spec"]["containers"]]
    containers += [c for o in by_kind(objs, "InferenceService") for c in o["spec"]["predictor"]["containers"]]
    # One container per Deployment track; KServe runs both revisions from one InferenceService.
    assert len(containers) == (1 if strategy == "kserve-canary" else len(plan.tracks))
    for c in containers:
        assert c["envFrom"] == [{"configMapRef": {"name": "aicloud-lake"}}]
        assert "lake://models/clf/" in " ".join(c["args"])
    for o in objs:
        assert validate_object(o, "1.33") == [], o["kind"]


# --------------------------------------------------------------------------- KServe under Knative


def knative_problems(isvc: dict, features: dict[str, str]) -> list[str]:
    """What Knative Serving's webhook refuses in an InferenceService's predictor pod (its
    PodSpec validation: one port named h2c/http1, no terminationGracePeriodSeconds, placement
    fields only with their feature flag `enabled` in config-features)."""
    from components.endpoint.kserve import KNATIVE_POD_FLAGS

    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    problems = []
    ports = container.get("ports", [])
    if len(ports) > 1:
        problems.append("more than one container port")
    problems += [f"port name {p['name']!r}" for p in ports if p.get("name") not in ("h2c", "http1")]
    if "terminationGracePeriodSeconds" in predictor:
        problems.append("terminationGracePeriodSeconds")
    problems += [
        f"{field} without {flag}"
        for field, flag in KNATIVE_POD_FLAGS.items()
        if predictor.get(field) and features.get(flag) != "enabled"
    ]
    return problems


def test_the_inference_service_is_valid_under_knative_with_the_flags_it_turns_on(record):
    from components.endpoint.kserve import knative_features

    _, objs = render(STRATEGIES["kserve-canary"])
    (isvc,) = by_kind(objs, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    assert predictor["nodeSelector"] and predictor["tolerations"]  # GPU pool placement is kept
    assert knative_problems(isvc, knative_features(predictor)) == []
    assert predictor["containers"][0]["ports"] == [{"name": "http1", "containerPort": SERVER_PORT, "protocol": "TCP"}]


def test_a_first_install_serves_the_stable_model():
    _, objs = render(STRATEGIES["kserve-canary"])
    (isvc,) = by_kind(objs, "InferenceService")
    args = " ".join(isvc["spec"]["predictor"]["containers"][0]["args"])
    assert CANARY["modelUri"]["aws"] not in args


def test_planted_shipped_predictor_is_refused_by_knative():
    """What aicloud rendered before: port `http`, the Deployment's grace period, placement with
    Knative's flags at their defaults (disabled)."""
    _, objs = render(STRATEGIES["kserve-canary"])
    (isvc,) = by_kind(objs, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    predictor["containers"][0]["ports"][0]["name"] = "http"
    predictor["terminationGracePeriodSeconds"] = 60
    found = knative_problems(isvc, {})
    assert found[:2] == ["port name 'http'", "terminationGracePeriodSeconds"]
    assert "nodeSelector without kubernetes.podspec-nodeselector" in found
    assert "tolerations without kubernetes.podspec-tolerations" in found
