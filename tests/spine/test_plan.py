"""End to end: `aicloud plan` runs the real program of every shipped stack under the mock runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from components.catalog import load_catalog
from components.nodepool import pool_capacity
from stacks.plan import run_plan
from stacks.plan.render import render_markdown, render_text

STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="module")
def plans():
    return {s: run_plan(s) for s in STACKS}


@pytest.mark.parametrize("stack", STACKS)
def test_plan_json_has_the_documented_shape(plans, stack):
    doc = plans[stack].to_json()
    assert doc["stack"] == stack
    for res in doc["resources"]:
        assert {"urn", "type", "name", "parent", "provider", "inputs", "protect", "retainOnDelete"} <= set(res)
    summary = doc["summary"]
    assert summary["resources"] == sum(1 for r in doc["resources"] if r["custom"])
    assert set(summary["costPerHour"]) >= {"min", "max"}
    assert summary["costPerHour"]["min"] <= summary["costPerHour"]["max"]
    json.dumps(doc)  # serialisable as is


@pytest.mark.parametrize("stack", STACKS)
def test_every_cloud_resource_uses_its_regions_explicit_provider(plans, stack):
    plan = plans[stack]
    providers = {r.urn: r for r in plan.resources if r.type.startswith("pulumi:providers:")}
    for reg in plan.resources:
        # random (generated credentials) has no region and talks to no cloud.
        if not reg.custom or reg.type.startswith(("pulumi:", "kubernetes:", "random:")):
            continue
        provider = providers.get(reg.provider)
        assert provider is not None, f"{reg.urn} has no explicit provider"
        key = plan.region_of(reg)
        if key != "global":
            assert provider.inputs["region"] == plan.config.region(key).region, reg.urn


@pytest.mark.parametrize("stack", STACKS)
def test_kubernetes_objects_go_to_their_regions_cluster(plans, stack):
    plan = plans[stack]
    for reg in plan.resources:
        if reg.custom and reg.type.startswith("kubernetes:"):
            provider = plan.get(reg.provider)
            assert provider is not None and provider.type == "pulumi:providers:kubernetes", reg.urn
            assert plan.region_of(provider) == plan.region_of(reg), reg.urn


def test_dev_is_one_aws_region_with_a_spot_pool_that_scales_to_zero(plans):
    plan = plans["dev"]
    assert [r.cloud for r in plan.config.regions] == ["aws"]
    gpu = [p for p in plan.pools if p["gpu"]]
    assert gpu and all(p["minNodes"] == 0 and p["spot"] for p in gpu)


def test_staging_spans_aws_and_gcp(plans):
    assert sorted(r.cloud for r in plans["staging"].config.regions) == ["aws", "gcp"]


def test_prod_has_training_and_inference_pools_with_on_demand_floors(plans):
    plan = plans["prod"]
    clouds = [r.cloud for r in plan.config.regions]
    assert clouds.count("aws") >= 3 and clouds.count("gcp") >= 2
    roles = {p["role"] for p in plan.pools}
    assert {"training", "inference"} <= roles
    for p in plan.pools:
        if p["role"] == "inference":
            assert p["minNodes"] >= 1 and not p["spot"], p


@pytest.mark.parametrize("stack", STACKS)
def test_pools_and_gpu_totals_match_the_config_priced_from_the_catalog(plans, stack):
    """Expected figures come from the stack's config and the catalog alone, not from the plan: every
    configured pool appears once, under its own region key, with its own machine's GPUs and price,
    and the summary's GPU and node-cost totals are theirs (a pool dropped, counted twice, filed
    under another region or priced as another machine fails here)."""
    plan = plans[stack]
    expected_pools: dict[tuple[str, str], dict] = {}
    gpus: dict[str, dict[str, int]] = defaultdict(lambda: {"min": 0, "max": 0})
    for region in plan.config.regions:
        for pool in region.node_pools:
            machine = load_catalog().machine(region.cloud, pool.machine_type)
            expected_pools[(region.name, pool.name)] = {
                "machineType": pool.machine_type,
                "gpu": machine.gpu,
                "gpusMax": machine.gpus * pool.max_nodes,
                "costPerHourMax": pool_capacity(pool, cloud=region.cloud, region=region.region)["costPerHourMax"],
            }
            if machine.gpus:
                gpus[machine.gpu]["min"] += machine.gpus * pool.min_nodes
                gpus[machine.gpu]["max"] += machine.gpus * pool.max_nodes
    planned = [(p["regionKey"], p["pool"]) for p in plan.pools]
    assert sorted(planned) == sorted(expected_pools)  # each once, in its own region
    for p in plan.pools:
        want = expected_pools[(p["regionKey"], p["pool"])]
        assert {k: p[k] for k in want} == pytest.approx(want), p["pool"]
    summary = plan.summary()
    assert summary["gpus"] == dict(sorted(gpus.items()))
    node_cost = sum(e["costPerHourMax"] for e in expected_pools.values())
    assert summary["costPerHour"]["nodes"]["max"] == pytest.approx(node_cost, abs=0.01)
    other = sum(line["perHourMax"] for line in summary["costPerHour"]["lines"])
    assert summary["costPerHour"]["max"] == pytest.approx(node_cost + other, abs=0.02)


def test_values_known_only_after_apply_are_shown_as_such(plans):
    text = render_text(plans["dev"])
    assert "(known after apply)" in text
    assert "${" not in text.split("== Regions ==")[0].split("key inputs", 1)[1]


def test_markdown_review_has_summary_and_sections(plans):
    md = render_markdown(plans["prod"])
    assert md.startswith("## aicloud plan: `prod` (prod)")
    for title in ("### Regions", "### Node pools", "### Policy verdicts"):
        assert title in md


def test_cli_writes_json_and_markdown(tmp_path: Path):
    out_json, out_md = tmp_path / "dev.json", tmp_path / "dev.md"
    proc = subprocess.run(
        [sys.executable, "-m", "stacks.cli", "plan", "dev", "--json", str(out_json), "--markdown", str(out_md)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "== Summary ==" in proc.stdout
    assert "Exception" not in proc.stderr
    doc = json.loads(out_json.read_text())
    assert doc["stack"] == "dev" and doc["summary"]["resources"] > 20
    assert out_md.read_text().startswith("## aicloud plan: `dev`")


@pytest.mark.parametrize("stack", STACKS)
def test_clusters_are_deletion_protected_exactly_in_prod(plans, stack):
    """`cluster.deletionProtection` unset means on in prod (it used to become False everywhere)."""
    plan = plans[stack]
    clusters = [r for r in plan.resources if r.type in ("aws:eks/cluster:Cluster", "gcp:container/cluster:Cluster")]
    assert clusters
    for reg in clusters:
        assert reg.inputs.get("deletionProtection") is (stack == "prod"), reg.urn
