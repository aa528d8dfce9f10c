"""The prod review shows every GPU pool's capacity chain with per-tier prices, best and worst case;
the prod capacity guardrail asks H100/H200 training pools for a reserved/block/flex tier."""

from __future__ import annotations

import pytest

from components.capacity import CapacityTier, chain_summary, guaranteed_first
from stacks.plan import run_plan
from stacks.plan.sections import capacity_section


@pytest.fixture(scope="module")
def prod():
    return run_plan("prod")


def tiers(*raw):
    return [CapacityTier.model_validate(t) for t in raw]


def test_chain_prices_best_and_worst_case():
    chain = tiers({"reservation": "cr-0abc", "maxNodes": 2, "pricePerHour": 40.0}, "on-demand", "spot")
    s = chain_summary(chain, cloud="aws", price_per_node=55.04, max_nodes=4, gpus_per_node=8)
    assert [t["pricePerNodeHour"] for t in s["tiers"]] == [[40.0, 40.0], [55.04, 55.04], [5.504, 55.04]]
    # best: 4 nodes from the cheapest (spot at 10 %); worst: every tier at its limit (2 + 4 + 4)
    assert s["bestCasePerHour"] == round(4 * 5.504, 4)
    assert s["worstCaseNodes"] == 10
    assert s["worstCasePerHour"] == round(2 * 40 + 4 * 55.04 + 4 * 55.04, 4)
    assert s["gangTiers"] == ["res0", "od"] and s["largestGang"] == 4
    assert s["guaranteedBeforeOnDemand"] is True


def test_guaranteed_means_before_on_demand():
    assert guaranteed_first(tiers({"flex": {}}, "on-demand")) is True
    assert guaranteed_first(tiers("on-demand", {"reservation": "r"})) is False
    assert guaranteed_first(tiers("spot")) is False


def test_prod_review_shows_every_gpu_pool_chain_and_cost(prod):
    section = capacity_section(prod)
    gpu_pools = [p for p in prod.pools if p["gpu"]]
    named = {(r[0], r[1]) for r in section["rows"] if r[0]}
    assert named == {(p["regionKey"], p["pool"]) for p in gpu_pools}
    assert all(r[5].startswith("$") for r in section["rows"])
    aws = [r for r in section["rows"] if r[3].startswith(("1. capacity-block", "2. reservation", "3. on-demand"))]
    assert [r[3].split(" ")[1] for r in aws] == ["capacity-block", "reservation", "on-demand"]
    assert section["notes"][0] == "2 of 10 GPU pools hold a reserved, Capacity Block or flex-start tier."


def test_prod_passes_the_capacity_guardrail(prod):
    assert not [f for f in prod.findings if f["policy"] == "aicloud-gpu-capacity-guaranteed-in-prod"]


def test_prod_eks_train_pool_renders_one_karpenter_nodepool_per_tier(prod):
    pools = {
        r.name: r.inputs["spec"]
        for r in prod.resources
        if r.type == "kubernetes:karpenter.sh/v1:NodePool"
        and r.name.startswith("aws-use1-train-")
        and not r.name.startswith("aws-use1-train-spot")
    }
    assert sorted(pools) == [
        "aws-use1-train-block0-nodepool",
        "aws-use1-train-od-nodepool",
        "aws-use1-train-res1-nodepool",
    ]
    weights = {n: s["weight"] for n, s in pools.items()}
    assert weights == {
        "aws-use1-train-block0-nodepool": 100,
        "aws-use1-train-res1-nodepool": 90,
        "aws-use1-train-od-nodepool": 80,
    }
    types = {
        n: next(r["values"] for r in s["template"]["spec"]["requirements"] if r["key"] == "karpenter.sh/capacity-type")
        for n, s in pools.items()
    }
    assert types["aws-use1-train-block0-nodepool"] == ["reserved"] and types["aws-use1-train-od-nodepool"] == [
        "on-demand"
    ]
    classes = {
        r.name: r.inputs["spec"].get("capacityReservationSelectorTerms")
        for r in prod.resources
        if r.type == "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass" and r.name.startswith("aws-use1-train-")
    }
    assert classes["aws-use1-train-block0-nodeclass"] == [{"id": "cr-0a1b2c3d4e5f60718"}]
    assert classes["aws-use1-train-res1-nodeclass"] == [{"id": "cr-0f9e8d7c6b5a40312"}]
