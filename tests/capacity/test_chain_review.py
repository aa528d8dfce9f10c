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
    # The reservation bills while held, nodes or not: 2 x 40.
    assert s["committedPerHour"] == 80.0
    assert [t["priceSource"] for t in s["tiers"]] == ["config", "on-demand list", "spot range (catalog)"]


def test_tier_prices_come_from_config_or_the_catalogs_sourced_rules():
    from components.catalog import load_catalog

    rules = {c: load_catalog().prices[c]["capacity_tiers"] for c in ("aws", "gcp")}
    assert rules == {
        "aws": {"reservation": "on-demand", "capacity-block": "config"},
        "gcp": {"reservation": "on-demand", "flex": "at-most-on-demand"},
    }
    # A reservation without a committed price bills at on-demand; with one, at it.
    s = chain_summary(tiers({"reservation": "r", "maxNodes": 1}, "on-demand"), cloud="gcp", price_per_node=88.25,
                      max_nodes=2, gpus_per_node=8)  # fmt: skip
    assert s["tiers"][0]["pricePerNodeHour"] == [88.25, 88.25] and s["committedPerHour"] == 88.25
    assert s["tiers"][0]["priceSource"].startswith("on-demand rate")
    # Flex-start without a price: the on-demand list as an upper bound, and the best case says so.
    s = chain_summary(tiers({"flex": {}}, "on-demand"), cloud="gcp", price_per_node=88.25, max_nodes=2, gpus_per_node=8)
    assert s["tiers"][0]["priceUpperBound"] is True and s["bestCaseUpperBound"] is True
    assert s["committedPerHour"] == 0
    # With its SKU price set, flex-start is cheaper and best < worst.
    s = chain_summary(tiers({"flex": {}, "pricePerHour": 40.0, "maxNodes": 1}, "on-demand"), cloud="gcp",
                      price_per_node=88.25, max_nodes=2, gpus_per_node=8)  # fmt: skip
    assert s["bestCaseUpperBound"] is False
    assert (s["bestCasePerHour"], s["worstCasePerHour"]) == (40.0 + 88.25, 40.0 + 2 * 88.25)


def test_a_capacity_block_without_its_price_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="a Capacity Block is priced when it is bought"):
        CapacityTier.model_validate({"capacityBlock": "cr-0abc"})
    assert CapacityTier.model_validate({"capacityBlock": "cr-0abc", "pricePerHour": 39.33}).price_per_hour == 39.33


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
    # Per-tier prices and where they come from: the block's from config, the ODCR at the on-demand rate.
    assert [(r[5], r[6]) for r in aws] == [
        ("$39.33", "from config"),
        ("$55.04", "on-demand rate (reservations bill at it)"),
        ("$55.04", "on-demand list"),
    ]
    assert aws[0][9] == "$133.70"  # 2 x 39.33 + 55.04 billed while held
    gcp = next(i for i, r in enumerate(section["rows"]) if r[:2] == ["gcp-usc1", "train"])
    flex = section["rows"][gcp + 1]
    assert flex[3] == "2. flex 7d" and flex[6].startswith("at most on-demand list")
    assert section["rows"][gcp][8].startswith("≤ $176.50 (2 nodes)")


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
