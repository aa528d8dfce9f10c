"""The plan's cost estimate, checked against figures worked out by hand from the price lists
(`components/catalog/gpus.yaml`, `prices.yaml`), not by re-running the code's own sums."""

from __future__ import annotations

import pytest

from components.catalog import load_catalog
from components.nodepool import NodePoolSpec, pool_capacity
from stacks.plan import run_plan

HOURS = 730


@pytest.fixture(scope="module")
def dev():
    return run_plan("dev", policies=False)


def test_dev_costs_what_its_parts_cost(dev):
    # system: m6i.large $0.096/h x 1..3; gpu: g6.xlarge $0.8048/h x 0..2 on spot (AWS: 10 %..100 %).
    # Fixed: one EKS control plane $0.10, one NAT gateway $0.045 with one public IPv4 $0.005.
    # Volumes: 200 GiB per node at $0.08/GB-month; Prometheus 20 GiB.
    volumes_min = 200 * 1 * 0.08 / HOURS
    volumes_max = 200 * (3 + 2) * 0.08 / HOURS
    prometheus = 20 * 0.08 / HOURS
    fixed = 0.10 + 0.045 + 0.005 + prometheus
    cost = dev.summary()["costPerHour"]
    assert cost["min"] == pytest.approx(0.096 + fixed + volumes_min, abs=0.01)
    assert cost["max"] == pytest.approx(0.096 * 3 + 0.8048 * 2 + fixed + volumes_max, abs=0.01)
    assert cost["maxLow"] == pytest.approx(0.096 * 3 + 0.8048 * 2 * 0.10 + fixed + volumes_max, abs=0.01)


def test_every_figure_says_what_it_includes_and_excludes(dev):
    cost = dev.summary()["costPerHour"]
    included = " ".join(cost["includes"])
    for part in ("control planes", "NAT", "load balancers", "Global Accelerator", "FSx", "Filestore", "spot"):
        assert part in included, part
    assert any("data processed" in e for e in cost["excludes"])
    assert "spot pool(s) as a range" in cost["basis"]
    section = dev.to_json()["sections"]["cost"]
    assert any(note.startswith("Includes:") for note in section["notes"])


def test_prod_prices_global_doors_scratch_and_regional_factors():
    plan = run_plan("prod", policies=False)
    lines = plan.summary()["costPerHour"]["lines"]
    items = {(ln["item"], ln["region"]): ln for ln in lines}
    assert items[("Global Accelerator", "global")]["perHourMax"] == pytest.approx(0.025)
    assert items[("global LB forwarding rule", "global")]["perHourMax"] == pytest.approx(2 * 0.025)
    # prod: 4800 GiB PERSISTENT_2 at 250 MB/s/TiB ($0.21/GB-month); Filestore BASIC_SSD ($0.30/GiB-month).
    assert items[("FSx for Lustre", "us-east-1")]["perHourMax"] == pytest.approx(4800 * 0.21 / HOURS, abs=1e-3)
    assert items[("Filestore", "us-central1")]["perHourMax"] == pytest.approx(4800 * 0.30 / HOURS, abs=1e-3)
    assert items[("NAT gateway", "eu-west-1")]["perHourMax"] == pytest.approx(3 * 0.045 * 1.12, abs=1e-3)
    # Control planes cost the same everywhere.
    assert items[("control plane (EKS)", "eu-west-1")]["perHourMax"] == pytest.approx(0.10)
    euw1 = next(p for p in plan.pools if p["regionKey"] == "aws-euw1" and p["pool"] == "serve")
    assert euw1["pricePerNodeHour"] == pytest.approx(1.006 * 1.12, abs=1e-3)


def test_a_region_without_a_recorded_factor_is_priced_at_the_reference_and_says_so():
    assert load_catalog().price_factor("aws", "ca-central-1") is None
    spec = NodePoolSpec(name="gpu", machine_type="g5.xlarge", max_nodes=2)
    cap = pool_capacity(spec, cloud="aws", region="ca-central-1")
    assert cap["priceFactor"] is None and cap["pricePerNodeHour"] == pytest.approx(1.006)


def test_gcp_spot_is_a_range_below_on_demand():
    spec = NodePoolSpec(name="gpu", machine_type="g2-standard-8", max_nodes=10, spot=True)
    cap = pool_capacity(spec, cloud="gcp", region="us-central1")
    assert cap["costPerHourMax"] == pytest.approx(0.8536 * 10 * 0.40, abs=1e-3)
    assert cap["costPerHourMaxLow"] == pytest.approx(0.8536 * 10 * 0.09, abs=1e-3)
