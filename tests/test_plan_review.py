"""Stack reviews: the plan diff (added, removed, changed, replaced, renamed by alias), the stack
diagram, and the Markdown review page with its size budget."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pytest

from stacks.cli import main
from stacks.config import parse_stack_config
from stacks.plan import Plan, record, run_plan
from stacks.plan.diagram import render_svg
from stacks.plan.diff import diff_plans, input_changes, render_markdown, render_text
from stacks.plan.render import render_markdown as review_markdown

POLICY_DIR = Path(__file__).parent / "policies"
CONFIG = parse_stack_config(
    {
        "environment": "dev",
        "owner": "ml-platform",
        "regions": [
            {
                "name": "aws-use1",
                "cloud": "aws",
                "region": "us-east-1",
                "primary": True,
                "nodePools": [{"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 2}],
            }
        ],
    },
    "test",
)


def program(*, new: bool, region: str = "us-east-1"):
    """Old and new versions of a small stack with one of each kind of difference."""

    def run() -> None:
        provider = aws.Provider("aws-use1", region=region)
        opts = pulumi.ResourceOptions(provider=provider)
        aws.ec2.Vpc("net-vpc", cidr_block="10.1.0.0/16" if new else "10.0.0.0/16", opts=opts)  # replaced
        aws.s3.Bucket("lake", bucket="acme-lake", tags={"tier": "hot" if new else "warm"}, opts=opts)  # changed
        if new:
            logs = aws.s3.Bucket(
                "logs",
                bucket="acme-logs",
                opts=pulumi.ResourceOptions(provider=provider, aliases=[pulumi.Alias(name="old-logs")]),
            )
            aws.s3.Bucket("features", bucket="acme-features", opts=opts)  # added
        else:
            logs = aws.s3.Bucket("old-logs", bucket="acme-logs", opts=opts)
            aws.s3.Bucket("scratch", bucket="acme-scratch", opts=opts)  # removed
        # Refers to the renamed bucket's id: unchanged, since the alias keeps the same bucket.
        aws.s3.BucketPolicy("logs-policy", bucket=logs.id, policy="{}", opts=opts)
        aws.eks.NodeGroup(
            "gpu-ng",
            cluster_name="c",
            node_role_arn="arn:aws:iam::123456789012:role/n",
            subnet_ids=["subnet-1"],
            scaling_config={"min_size": 0, "desired_size": 3 if new else 1, "max_size": 4},
            opts=pulumi.ResourceOptions(provider=provider, ignore_changes=["scalingConfig.desiredSize"]),
        )

    return run


def plan_json(run) -> dict:
    return Plan(stack="test", config=CONFIG, resources=record(run, stack="test")).to_json()


@pytest.fixture(scope="module")
def plans():
    return plan_json(program(new=False)), plan_json(program(new=True))


def test_diff_reports_each_kind_of_difference(plans):
    diff = diff_plans(*plans)
    kinds = {(e.kind, e.name) for e in diff.entries}
    assert kinds == {
        ("replaced", "net-vpc"),
        ("changed", "lake"),
        ("renamed", "logs"),
        ("added", "features"),
        ("removed", "scratch"),
    }
    vpc = next(e for e in diff.entries if e.name == "net-vpc")
    assert vpc.reasons == ["cidrBlock"]
    assert [(c.path, c.old, c.new) for c in vpc.changes] == [("cidrBlock", "10.0.0.0/16", "10.1.0.0/16")]
    lake = next(e for e in diff.entries if e.name == "lake")
    assert [(c.path, c.old, c.new) for c in lake.changes] == [("tags.tier", "warm", "hot")]
    logs = next(e for e in diff.entries if e.name == "logs")
    assert logs.old_urn.endswith("::old-logs") and logs.changes == []
    # gpu-ng's desired size changed, but the autoscaler owns it (ignoreChanges): not a change.
    assert diff.counts == {"added": 1, "removed": 1, "changed": 1, "replaced": 1, "renamed": 1, "unchanged": 3}


def test_a_new_provider_region_replaces_everything_it_manages(plans):
    moved = plan_json(program(new=False, region="us-west-2"))
    diff = diff_plans(plans[0], moved)
    assert {e.name for e in diff.of("replaced")} == {
        "aws-use1",
        "net-vpc",
        "lake",
        "old-logs",
        "logs-policy",
        "scratch",
        "gpu-ng",
    }
    lake = next(e for e in diff.entries if e.name == "lake")
    assert lake.reasons == ["provider aws-use1 is replaced"]


def test_input_changes_walk_objects_and_lists():
    old = {"a": {"b": 1, "c": [{"x": 1}, {"x": 2}]}, "tags": ["a"]}
    new = {"a": {"b": 2, "c": [{"x": 1}, {"x": 3}]}, "tags": ["a", "b"]}
    assert [(c.path, c.old, c.new) for c in input_changes(old, new)] == [
        ("a.b", 1, 2),
        ("a.c[1].x", 2, 3),
        ("tags", ["a"], ["a", "b"]),
    ]


def test_diff_renders_for_terminal_and_review(plans):
    diff = diff_plans(*plans)
    text = render_text(diff)
    assert (
        text.splitlines()[0] == "Diff test -> test: 1 added, 1 removed, 1 changed, 1 replaced, 1 renamed, 3 unchanged"
    )
    assert "      replaced because: cidrBlock" in text
    md = render_markdown(diff)
    assert "renamed from `old-logs` (alias, not recreated)" in md
    assert "**replaced**: cidrBlock" in md
    assert len(render_markdown(diff, limit=400)) <= 500  # cut to the budget, with a pointer to the CLI


def test_diff_command(tmp_path, plans, capsys):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(plans[0]))
    new.write_text(json.dumps(plans[1]))
    assert main(["diff", str(old), str(new), "--json", str(tmp_path / "d.json")]) == 0
    assert "1 replaced" in capsys.readouterr().out
    assert json.loads((tmp_path / "d.json").read_text())["counts"]["renamed"] == 1
    assert main(["diff", str(old), str(tmp_path / "missing.json")]) == 2


@pytest.fixture(scope="module")
def planted():
    return run_plan("planted", POLICY_DIR)


def test_review_page_has_every_part_and_fits_a_comment(planted, plans):
    diff_md = render_markdown(diff_plans(*plans))
    page = review_markdown(planted, diff_markdown=diff_md)
    for heading in (
        "## aicloud plan: `planted` (prod) - ❌ blocked by policy",
        "### Changes against",
        "### Regions",
        "### Node pools",
        "### Policy verdicts",
    ):
        assert heading in page
    assert "`aicloud-region-allowed`" in page and "Resources by region and component" in page
    small = review_markdown(planted, limit=9_000)
    assert len(small) <= 9_000
    assert "### Policy verdicts" in small and "more violation(s) in the JSON plan" in small


def test_diagram_is_an_svg_with_a_column_per_region(planted, tmp_path):
    svg = render_svg(planted)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for region in (
        "aws-use1 · AWS us-east-1 · primary",
        "aws-euw1 · AWS eu-west-1",
        "gcp-usc1 · GCP us-central1 · primary",
    ):
        assert region in texts
    assert "pool train (training)" in texts and "p5.48xlarge · 8×nvidia-h100" in texts
    assert any(t.startswith("endpoint classifier") for t in texts)
    if shutil.which("rsvg-convert"):
        src, png = tmp_path / "planted.svg", tmp_path / "planted.png"
        src.write_text(svg)
        subprocess.run(["rsvg-convert", "-o", str(png), str(src)], check=True, timeout=60)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
