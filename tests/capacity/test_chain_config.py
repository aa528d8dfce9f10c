"""Capacity chains in config: every planted misconfiguration fails at plan time naming its key."""

from __future__ import annotations

import copy

import pytest

from stacks.config import ConfigError, load_stack, parse_stack_config

P5 = {"name": "train", "machineType": "p5.48xlarge", "role": "training", "maxNodes": 4}
A3 = {"name": "train", "machineType": "a3-highgpu-8g", "role": "training", "maxNodes": 2}
GOOD = {
    "environment": "prod",
    "owner": "ml-platform",
    "allowSpot": True,
    "gcpProject": "acme-ml-prod",
    "regions": [
        {
            "name": "aws-use1",
            "cloud": "aws",
            "region": "us-east-1",
            "primary": True,
            "nodePools": [
                {"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 3},
                {
                    **P5,
                    "capacity": [
                        {"reservation": "cr-0f9e8d7c6b5a40312", "zone": "us-east-1a", "maxNodes": 2},
                        {
                            "capacityBlock": "cr-0a1b2c3d4e5f60718",
                            "instanceType": "p5.48xlarge",
                            "maxNodes": 4,
                            "pricePerHour": 40.0,
                        },
                        "on-demand",
                        "spot",
                    ],
                },
            ],
        },
        {
            "name": "gcp-usc1",
            "cloud": "gcp",
            "region": "us-central1",
            "primary": True,
            "nodePools": [
                {"name": "system", "machineType": "e2-standard-4", "minNodes": 1, "maxNodes": 3},
                {
                    **A3,
                    "capacity": [
                        {"reservation": "projects/acme-ml-prod/zones/us-central1-a/reservations/h100", "maxNodes": 1},
                        {"flex": {"maxRunDuration": "7d"}},
                        "on-demand",
                    ],
                },
            ],
        },
    ],
}


def errors_for(mutate) -> list[str]:
    raw = copy.deepcopy(GOOD)
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw, "t")
    return info.value.errors


def chain(raw, region):
    return raw["regions"][region]["nodePools"][1]["capacity"]


def test_good_chains_validate_in_order():
    cfg = parse_stack_config(GOOD, "t")
    kinds = [t.kind for t in cfg.regions[0].node_pools[1].capacity]
    assert kinds == ["reservation", "capacity-block", "on-demand", "spot"]
    assert [t.kind for t in cfg.regions[1].node_pools[1].capacity] == ["reservation", "flex", "on-demand"]


AWS = "aicloud:regions[0](aws-use1).nodePools[1](train)"
GCP = "aicloud:regions[1](gcp-usc1).nodePools[1](train)"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        # a reservation in another region (ARN) or zone
        (
            lambda r: chain(r, 0)[0].update(
                reservation="arn:aws:ec2:us-west-2:123456789012:capacity-reservation/cr-0f9e8d7c6b5a40312"
            ),
            f"{AWS}.capacity[0].reservation: the reservation is in us-west-2, the pool in us-east-1",
        ),
        (
            lambda r: chain(r, 0)[0].update(zone="us-west-2a"),
            f"{AWS}.capacity[0].zone: us-west-2a is not a zone of us-east-1",
        ),
        (
            lambda r: r["regions"][0]["nodePools"][1].update(zones=["us-east-1b"]),
            f"{AWS}.capacity[0].zone: the pool's nodes go to us-east-1b, not us-east-1a",
        ),
        (
            lambda r: chain(r, 1)[0].update(reservation="projects/acme-ml-prod/zones/us-central1-b/reservations/h100"),
            f"{GCP}.capacity[0].zone: the pool's nodes go to us-central1-a, us-central1-c, not us-central1-b",
        ),
        (
            lambda r: chain(r, 1)[0].update(reservation="projects/acme-ml-prod/zones/europe-west4-b/reservations/h"),
            f"{GCP}.capacity[0].zone: europe-west4-b is not a zone of us-central1",
        ),
        # a Capacity Block for another instance type, or on a family EC2 sells none for, or on GCP
        (
            lambda r: chain(r, 0)[1].update(instanceType="p5e.48xlarge"),
            f"{AWS}.capacity[1].instanceType: the Capacity Block is for p5e.48xlarge, the pool runs p5.48xlarge",
        ),
        (
            lambda r: r["regions"][0]["nodePools"][1].update(
                machineType="g6e.xlarge",
                role="inference",
                capacity=[{"capacityBlock": "cr-0a1b2c3d4e5f60718", "pricePerHour": 5.0}, "on-demand"],
            ),
            f"{AWS}.capacity[0].capacityBlock: EC2 sells Capacity Blocks for ",
        ),
        (
            lambda r: chain(r, 1).insert(0, {"capacityBlock": "cr-0a1b2c3d4e5f60718", "pricePerHour": 40.0}),
            f"{GCP}.capacity[0].capacityBlock: Capacity Blocks are EC2's",
        ),
        # a Capacity Block without its price (AWS prices each block when it is bought)
        (
            lambda r: chain(r, 0)[1].pop("pricePerHour"),
            f"{AWS}.capacity[1].pricePerHour: a Capacity Block is priced when it is bought",
        ),
        # flex-start on a cloud / type that lacks it, or for longer than 7 days
        (
            lambda r: chain(r, 0).insert(2, {"flex": {}}),
            f"{AWS}.capacity[2].flex: flex-start (Dynamic Workload Scheduler) is GKE's",
        ),
        (
            lambda r: chain(r, 1)[1].update(flex={"maxRunDuration": "8d"}),
            f"{GCP}.capacity[1].flex.maxRunDuration: flex-start VMs run at most 7 days",
        ),
        # spot when the stack forbids it; spot next to a chain; limits; shape
        (
            lambda r: r.update(allowSpot=False),
            f"{AWS}.capacity[3]: spot capacity is forbidden in this stack (allowSpot: false)",
        ),
        (
            lambda r: r["regions"][0]["nodePools"][1].update(spot=True),
            f"{AWS}.spot: spot and capacity are mutually exclusive",
        ),
        (
            lambda r: chain(r, 0)[0].update(maxNodes=5),
            f"{AWS}.capacity[0].maxNodes: a tier cannot hold more than the pool's maxNodes (4)",
        ),
        (
            lambda r: chain(r, 0).append("on-demand"),
            f"{AWS}.capacity[4]: on-demand repeats tier 2",
        ),
        (
            lambda r: chain(r, 0)[0].update(spot=True),
            f"{AWS}.capacity[0]: a capacity tier names exactly one of reservation, capacityBlock, on-demand, flex",
        ),
        (
            lambda r: chain(r, 0)[0].update(reservation="my-odcr"),
            f"{AWS}.capacity[0].reservation: an EC2 capacity reservation is an id `cr-...` or its ARN",
        ),
        (
            lambda r: r["regions"][0]["nodePools"][0].update(capacity=["on-demand"]),
            "aicloud:regions[0](aws-use1).nodePools[0](system).capacity: capacity chains are for GPU pools",
        ),
    ],
)
def test_planted_misconfiguration_names_the_key(mutate, expected):
    errors = errors_for(mutate)
    assert any(e.startswith(expected) for e in errors), errors


def test_shipped_prod_stack_uses_chains_for_its_h100_training_pools():
    _, cfg = load_stack("prod")
    chains = {(r.name, p.name): [t.kind for t in p.capacity] for r in cfg.regions for p in r.node_pools if p.capacity}
    assert chains == {
        ("aws-use1", "train"): ["capacity-block", "reservation", "on-demand"],
        ("gcp-usc1", "train"): ["reservation", "flex"],
    }


def test_training_job_tiers_must_be_in_the_pool_chain_and_gangs_avoid_spot_alone():
    from tests.stack_helpers import config_errors, raw_stack

    raw = raw_stack("prod")

    def job(**kw):
        return lambda r: r["training"]["jobs"][1].update(**kw)

    errors = config_errors(raw, job(capacityTiers=["capacity-block"]), "prod")
    assert any("job 'pretrain-gcp': capacityTiers capacity-block not in pool 'train'" in e for e in errors), errors

    def spot_gang(r):
        r["regions"][3]["nodePools"][1]["capacity"].append("spot")
        r["training"]["jobs"][1]["capacityTiers"] = ["spot"]

    errors = config_errors(raw, spot_gang, "prod")
    assert any("a gang of 2 nodes on spot alone" in e for e in errors), errors


def test_training_pods_require_their_tiers_and_serving_prefers_non_spot():
    from components.endpoint.manifests import tier_preference
    from components.nodepool import NodePoolSpec
    from components.training import PoolShape, pod_spec

    pool = NodePoolSpec.model_validate({**P5, "capacity": ["on-demand", "spot"]})
    spec = pod_spec(
        pool=PoolShape.of(pool), image="i", args=[], service_account="sa", share=0.5, tiers=["reservation", "flex"]
    )
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term == {
        "matchExpressions": [{"key": "aicloud.dev/capacity-tier", "operator": "In", "values": ["reservation", "flex"]}]
    }
    pref = tier_preference(pool)["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert pref == [
        {
            "weight": 100,
            "preference": {
                "matchExpressions": [{"key": "aicloud.dev/capacity-tier", "operator": "NotIn", "values": ["spot"]}]
            },
        }
    ]
    assert tier_preference(NodePoolSpec.model_validate(P5)) == {}
