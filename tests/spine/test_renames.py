"""Renames keep data: renaming a region's key (`regions[].renamedFrom`) or a lakehouse/replica
component (`storage.renamedFrom`) must carry every data-holding resource over (its old URN among
the new one's aliases), in primary and non-primary regions alike. Planted: the same rename
without `renamedFrom`, whose data-holding resources are reported as replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.base import renamed
from policies.data_safety import DATA_HOLDING
from stacks.plan import run_plan

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"


def _plan(tmp_path: Path, name: str, text: str):
    (tmp_path / f"Pulumi.{name}.yaml").write_text(text)
    return run_plan(name, tmp_path, policies=False)


def _renamed_prod(old: str, new: str, *, declare: bool) -> str:
    doc = yaml.safe_load((STACKS_DIR / "Pulumi.prod.yaml").read_text().replace(old, new))
    if declare:
        region = next(r for r in doc["config"]["aicloud:regions"] if r["name"] == new)
        region["renamedFrom"] = old
    return yaml.safe_dump(doc, sort_keys=False)


def replaced(before, after) -> list[str]:
    """Data-holding resources of `before` that `after` neither keeps nor aliases."""
    carried = {r.urn for r in after.resources} | {a for r in after.resources for a in r.aliases}
    return sorted(r.urn for r in before.resources if r.type in DATA_HOLDING and r.urn not in carried)


@pytest.fixture(scope="module")
def prod():
    return run_plan("prod")


@pytest.mark.parametrize("old,new", [("aws-usw2", "aws-west"), ("aws-use1", "aws-east")])
def test_renaming_a_region_key_carries_every_data_holding_resource(prod, tmp_path, old, new):
    """A non-primary serving region (replica lakehouse, ECR replica repositories) and the AWS
    primary region (lakehouse, cluster secret keys, ECR repositories)."""
    after = _plan(tmp_path, "prod", _renamed_prod(old, new, declare=True))
    data = [
        r for r in prod.resources if r.type in DATA_HOLDING and renamed(r.name, {new: old}) is None and old in r.name
    ]
    assert data, "the renamed region holds data-holding resources"
    assert replaced(prod, after) == []


def test_planted_region_rename_without_renamed_from_is_reported(prod, tmp_path):
    after = _plan(tmp_path, "prod", _renamed_prod("aws-usw2", "aws-west", declare=False))
    lost = replaced(prod, after)
    assert lost and all("aws-usw2" in urn for urn in lost)
    kinds = {urn.split("::")[-2].rsplit("$", 1)[-1] for urn in lost}
    assert {"aws:ecr/repository:Repository", "aws:s3/bucket:Bucket", "aws:kms/key:Key"} <= kinds


def test_renamed_replaces_whole_key_tokens_only():
    assert renamed("aws-west-lake-replica-models", {"aws-west": "aws-usw2"}) == "aws-usw2-lake-replica-models"
    assert renamed("trainer-image-aws-west", {"aws-west": "aws-usw2"}) == "trainer-image-aws-usw2"
    assert renamed("aws-west2-cluster", {"aws-west": "aws-usw2"}) is None
