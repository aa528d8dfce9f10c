"""The endpoints in the real stacks (offline plan): prod serves every serving region behind one
front door per cloud, dev has one endpoint and no front door, every regional object sits under
its own region's providers."""

from __future__ import annotations

from collections import Counter

from components.endpoint import READY_PATH
from tests.endpoints.endpoint_helpers import stack_plan

ENDPOINT = "aicloud:serving:InferenceEndpoint"
FRONT_DOOR = "aicloud:serving:GlobalEndpoint"


def serving_regions(plan, cloud=None):
    return [r for r in plan.config.regions if r.serving and (cloud is None or r.cloud == cloud)]


def test_prod_has_one_front_door_per_cloud_over_every_serving_region():
    plan = stack_plan("prod")
    doors = {out["cloud"]: (reg, out) for reg, out in plan.component_outputs(FRONT_DOOR)}
    assert sorted(doors) == ["aws", "gcp"]
    for cloud, (_, out) in doors.items():
        assert sorted(r["regionKey"] for r in out["regions"]) == sorted(r.name for r in serving_regions(plan, cloud))
        assert out["healthCheckPath"] == READY_PATH
    # AWS: an endpoint group per region, each on that region's NLB.
    groups = plan.of_type("aws:globalaccelerator/endpointGroup:EndpointGroup")
    assert sorted(g.inputs["endpointGroupRegion"] for g in groups) == sorted(
        r.region for r in serving_regions(plan, "aws")
    )
    for g in groups:
        assert g.inputs["healthCheckPath"] == READY_PATH
        key = next(r.name for r in plan.config.regions if r.region == g.inputs["endpointGroupRegion"])
        assert g.inputs["endpointConfigurations"][0]["endpointId"] == f"${{{key}-classifier-lb-nlb.arn}}"
    # GCP: one backend service with a NEG backend in every zone of every GCP serving region.
    (backend,) = plan.of_type("gcp:compute/backendService:BackendService")
    per_region = Counter(b["group"].split("/networkEndpointGroups/")[1] for b in backend.inputs["backends"])
    assert per_region == {f"{r.name}-classifier-neg": len(r.zones) for r in serving_regions(plan, "gcp")}


def test_prod_endpoints_are_blue_green_in_every_serving_region():
    plan = stack_plan("prod")
    endpoints = {out["regionKey"]: out for _, out in plan.component_outputs(ENDPOINT)}
    assert sorted(endpoints) == sorted(r.name for r in serving_regions(plan))
    for out in endpoints.values():
        assert out["strategy"] == "blue-green" and out["active"] == "blue"
        assert out["gpuDemand"] <= out["gpuCapacity"]


def test_regional_objects_use_their_regions_providers():
    plan = stack_plan("prod")
    by_urn = {r.urn: r for r in plan.resources}
    for reg in plan.resources:
        if not reg.custom:
            continue
        serving = [a for a in plan.ancestors(reg) if a.type == ENDPOINT]
        if not serving:
            continue
        key = serving[0].outputs["regionKey"]
        provider = by_urn[reg.provider]
        if reg.type.startswith("kubernetes:"):
            assert provider.name == f"{key}-cluster-k8s", reg.name
        else:
            assert provider.name == f"aws-{key}", reg.name
    # Global resources use providers of their own, never a serving region's.
    for reg in plan.of_type(
        "aws:globalaccelerator/accelerator:Accelerator", "gcp:compute/backendService:BackendService"
    ):
        assert plan.region_of(reg) == "global"
    assert (
        plan.get(plan.of_type("aws:globalaccelerator/accelerator:Accelerator")[0].provider).inputs["region"]
        == "us-west-2"
    )


def test_dev_has_one_endpoint_and_no_front_door():
    plan = stack_plan("dev")
    (endpoint,) = [out for _, out in plan.component_outputs(ENDPOINT)]
    assert endpoint["gpusPerReplica"] == 0 and endpoint["pool"] == "system"
    assert not plan.component_outputs(FRONT_DOOR)
    assert not plan.of_type("aws:lb/loadBalancer:LoadBalancer")


def test_staging_canary_splits_90_10_behind_route53_and_the_gcp_balancer():
    plan = stack_plan("staging")
    routes = plan.of_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute")
    assert len(routes) == 2
    for route in routes:
        refs = route.inputs["spec"]["rules"][0]["backendRefs"]
        assert [r["weight"] for r in refs] == [90, 10]
    doors = {out["cloud"]: out["mode"] for _, out in plan.component_outputs(FRONT_DOOR)}
    assert doors == {"aws": "route53", "gcp": "global-external-alb"}


def test_plan_sections_show_endpoints_and_traffic():
    sections = stack_plan("prod").to_json()["sections"]
    endpoints, traffic = sections["endpoints"], sections["traffic"]
    assert [row[0] for row in endpoints["rows"]] == ["aws-use1", "aws-usw2", "aws-euw1", "gcp-usc1", "gcp-euw4"]
    assert all("blue active" in row[5] and "green standby" in row[5] for row in endpoints["rows"])
    assert sorted(row[3] for row in traffic["rows"]) == ["aws-euw1", "aws-use1", "aws-usw2", "gcp-euw4", "gcp-usc1"]
    assert {row[1] for row in traffic["rows"]} == {"accelerator", "global-external-alb"}
    dev = stack_plan("dev").to_json()["sections"]["traffic"]
    assert [row[1] for row in dev["rows"]] == ["in-cluster only"]
