"""End to end: `aicloud plan` runs the real program of every shipped stack under the mock runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_totals_add_up_to_the_pools_and_the_other_priced_items(plans):
    plan = plans["prod"]
    summary = plan.summary()
    cost = summary["costPerHour"]
    assert cost["nodes"]["max"] == pytest.approx(sum(p["costPerHourMax"] for p in plan.pools), abs=0.01)
    other = sum(line["perHourMax"] for line in cost["lines"])
    assert cost["max"] == pytest.approx(cost["nodes"]["max"] + other, abs=0.02)
    h100 = [p for p in plan.pools if p["gpu"] == "nvidia-h100"]
    assert summary["gpus"]["nvidia-h100"]["max"] == sum(p["gpusMax"] for p in h100)


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
