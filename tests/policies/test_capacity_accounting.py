"""GPU capacity counted once, and all of it, now that an aicloud pool is several cloud resources.

On EKS under Karpenter a pool is a fixed managed node group (its floor, minNodes) plus a Karpenter
NodePool per capacity tier (the rest, bounded by `limits`); on GKE a pool with a capacity chain is one
node pool per tier. The plan's Regions, Node pools and Cost sections count pools from the spec; the
cost guardrails (`aicloud-gpu-cost-ceiling`, `aicloud-gpus-per-pool-ceiling`) count the resources.
These tests hold the two against each other on the shipped stacks (no double count, no miss) and
plant, per cloud, a pool whose GPUs only exceed the ceiling once its parts are added up.
"""

from __future__ import annotations

import copy
from collections import defaultdict

import pytest
import yaml

from policies.common import StackView, pool_groups
from policies.placement import _node_price, gpu_cost_ceiling, gpus_per_pool
from stacks.config import STACKS_DIR
from stacks.plan import run_plan
from stacks.plan.model import Plan
from stacks.plan.policy import policy_resources
from stacks.plan.sections import regions_section
from tests.endpoints.endpoint_helpers import stack_plan

NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"


def _view(plan: Plan) -> StackView:
    return StackView([res for _, res in policy_resources(plan)])


def _run(check, view: StackView, config: dict) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    check(view, config, lambda message, urn=None: found.append((message, urn)))
    return found


def _region_key(view: StackView, group) -> str:
    _, region = view.scope(group.members[0].res)
    return view.by_urn[region].name


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_resources_hold_exactly_the_gpus_and_cost_the_plan_sections_show(stack):
    plan = stack_plan(stack)
    view = _view(plan)
    gpus_max: dict[str, int] = defaultdict(int)
    gpus_min: dict[str, int] = defaultdict(int)
    cost_max: dict[str, float] = defaultdict(float)
    for group in pool_groups(view):
        region = _region_key(view, group)
        gpus_max[region] += group.gpus_at_max() or 0
        for m in group.members:
            gpus_min[region] += (m.gpus_per_node or 0) * (m.min_nodes if isinstance(m.min_nodes, int) else 0)
            spot_high = 0.4 if (m.cloud == "gcp" and m.spot is True) else 1.0  # the plan's highest spot price
            cost_max[region] += (_node_price(view, m) or 0.0) * spot_high * (m.max_nodes or 0)
    section = regions_section(plan)
    assert len(section["rows"]) == len(plan.config.regions)
    for row in section["rows"]:
        region, shown_gpus, shown_max = row[0], row[6], row[8]
        assert shown_gpus == f"{gpus_min[region]}-{gpus_max[region]}", region
        assert shown_max == f"${cost_max[region]:,.2f}", region
    # The Cost section's node line sums the same records.
    assert plan.summary()["costPerHour"]["nodes"]["max"] == pytest.approx(sum(cost_max.values()), abs=0.02)
    # Each aicloud pool of the plan is one group of resources: none counted twice, none missed.
    groups = {(_region_key(view, g), g.key[1]) for g in pool_groups(view)}
    assert groups == {(p["regionKey"], p["pool"]) for p in plan.pools}


def test_the_cost_ceiling_counts_every_gpu_pool_of_prod_once_at_regional_prices():
    plan = stack_plan("prod")
    view = _view(plan)
    gpu_total = round(sum(p["costPerHourMax"] for p in plan.pools if p["gpu"]), 2)
    assert any(p["priceFactor"] not in (None, 1.0) for p in plan.pools if p["gpu"])  # a priced-up region is in
    assert _run(gpu_cost_ceiling, view, {"maxGpuCostPerHour": gpu_total + 0.02}) == []
    over = _run(gpu_cost_ceiling, view, {"maxGpuCostPerHour": gpu_total - 0.02})
    assert len(over) == 1
    assert f"can cost ${gpu_total:,.2f} per hour at max scale" in over[0][0]


def test_eks_pool_split_into_floor_group_and_karpenter_nodepool_counts_both_parts():
    """prod aws-use1 `serve`: 2 x g6e.xlarge in the managed node group + 10 in the NodePool = 12 GPUs.
    Each part alone (2, 10) is under a ceiling of 11; the pool is not."""
    view = _view(stack_plan("prod"))
    found = _run(gpus_per_pool, view, {"maxGpusPerPool": 11})
    serve = [m for m, urn in found if "aws-use1-serve-ng" in m]
    assert serve == [
        "Node pool 'serve (aws-use1-serve-ng, aws-use1-serve-nodepool)' can scale to 12 GPUs (2 + 10 x g6e.xlarge "
        "with 1 each), above this stack's ceiling of 11 GPUs per pool (aicloud:policy.maxGpusPerPool). Lower "
        "maxNodes or raise the ceiling."
    ]


def test_eks_capacity_chain_tiers_add_up():
    """prod aws-use1 `train`: three Karpenter NodePools (capacity block 2, reservation 1, on-demand 1) of
    p5.48xlarge, 8 GPUs each: 32 GPUs, though no tier alone passes 16."""
    view = _view(stack_plan("prod"))
    found = [m for m, _ in _run(gpus_per_pool, view, {"maxGpusPerPool": 20}) if "'train (aws-use1-train-block0" in m]
    assert len(found) == 1 and "can scale to 32 GPUs" in found[0]
    assert not [m for m, _ in _run(gpus_per_pool, view, {"maxGpusPerPool": 32}) if "train (" in m]


def test_gke_capacity_chain_node_pools_add_up():
    """prod gcp-usc1 `train`: one GKE node pool per tier, 1 node of 8 GPUs each: 16 GPUs."""
    view = _view(stack_plan("prod"))
    found = [m for m, _ in _run(gpus_per_pool, view, {"maxGpusPerPool": 12}) if "gcp-usc1-train" in m]
    assert len(found) == 1 and "can scale to 16 GPUs" in found[0]


def test_a_gpu_nodepool_without_limits_is_unbounded_for_both_ceilings():
    plan = copy.deepcopy(stack_plan("dev"))
    gpu = next(r for r in plan.resources if r.type == NODEPOOL and "gpu" in r.name)
    del gpu.inputs["spec"]["limits"]
    view = _view(plan)
    per_pool = _run(gpus_per_pool, view, {"maxGpusPerPool": 64})
    assert len(per_pool) == 1 and "without bound" in per_pool[0][0] and gpu.name in per_pool[0][0]
    cost = _run(gpu_cost_ceiling, view, {"maxGpuCostPerHour": 10_000})
    assert len(cost) == 1 and "no upper bound" in cost[0][0] and gpu.name in cost[0][0]


def _plan_with(tmp_path, stack: str, change) -> Plan:
    doc = yaml.safe_load((STACKS_DIR / f"Pulumi.{stack}.yaml").read_text())
    change(doc["config"])
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(doc))
    return run_plan(stack, tmp_path, policies=False)


def _pool(config: dict, region: str, pool: str) -> dict:
    spec = next(r for r in config["aicloud:regions"] if r["name"] == region)
    return next(p for p in spec["nodePools"] if p["name"] == pool)


@pytest.mark.parametrize(
    ("stack", "region", "pool", "gpus_per_node"),
    [("dev", "aws-use1", "gpu", 1), ("staging", "gcp-usc1", "serve", 1)],
)
def test_a_chain_whose_tiers_add_up_past_max_nodes_is_counted_as_the_resources_allow(
    tmp_path, stack, region, pool, gpus_per_node
):
    """maxNodes 4 and [on-demand (2 nodes), spot (default: 4)]: one Karpenter NodePool / GKE node pool
    per tier, each with its own limit, so the cloud may launch 6. The plan counts 6 (Node pools marks
    it), the resources hold 6, and the per-pool ceiling sees 6 GPUs."""

    def chain(c):
        spec = _pool(c, region, pool)
        spec.update(maxNodes=4, capacity=[{"onDemand": True, "maxNodes": 2}, "spot"])
        spec.pop("spot", None)

    plan = _plan_with(tmp_path, stack, chain)
    record = next(p for p in plan.pools if (p["regionKey"], p["pool"]) == (region, pool))
    assert (record["maxNodes"], record["reachableNodes"], record["gpusMax"]) == (4, 6, 6 * gpus_per_node)
    assert record["costPerHourMax"] == pytest.approx(6 * record["pricePerNodeHour"], abs=1e-3)
    view = _view(plan)
    (group,) = [g for g in pool_groups(view) if (_region_key(view, g), g.key[1]) == (region, pool)]
    assert group.gpus_at_max() == 6 * gpus_per_node and len(group.members) >= 2
    row = next(r for r in plan.to_json()["sections"]["pools"]["rows"] if r[:2] == [region, pool])
    assert row[5] == f"{record['minNodes']}-4 (tiers allow 6)"
    regions = {r[0]: r for r in regions_section(plan)["rows"]}
    total = sum(g.gpus_at_max() or 0 for g in pool_groups(view) if _region_key(view, g) == region)
    assert regions[region][6].endswith(f"-{total}")
    found = [m for m, _ in _run(gpus_per_pool, view, {"maxGpusPerPool": 5}) if f"'{pool} (" in m]
    assert len(found) == 1 and f"can scale to {6 * gpus_per_node} GPUs" in found[0]
