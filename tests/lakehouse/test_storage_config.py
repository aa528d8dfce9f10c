"""Storage config validation through `parse_stack_config`: bad values fail before any resource
exists, each error naming the full `aicloud:storage...` key path, the value and what is allowed."""

from __future__ import annotations

import copy

import pytest

from components.lakehouse.spec import DEFAULT_LIFECYCLE, StorageSpec, fsx_size_problem, storage_problems
from stacks.config import ConfigError, load_stack, parse_stack_config


def _region(name: str, cloud: str, region: str, primary: bool) -> dict:
    machine = "m6i.large" if cloud == "aws" else "e2-standard-4"
    pools = [{"name": "system", "machineType": machine, "minNodes": 1, "maxNodes": 2}]
    return {"name": name, "cloud": cloud, "region": region, "primary": primary, "nodePools": pools}


GOOD = {
    "environment": "prod",
    "owner": "ml-platform",
    "gcpProject": "acme-ml-test",
    "regions": [
        _region("aws-use1", "aws", "us-east-1", True),
        _region("aws-usw2", "aws", "us-west-2", False),
        _region("gcp-usc1", "gcp", "us-central1", True),
    ],
    "storage": {"scratch": {"sizeGib": 4800}, "replication": {"models": ["aws-usw2"]}},
}


def errors_for(mutate) -> list[str]:
    raw = copy.deepcopy(GOOD)
    mutate(raw["storage"])
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw, "t")
    return info.value.errors


def test_good_storage_config_validates_with_defaults_for_unnamed_zones():
    storage = parse_stack_config(GOOD, "t").storage
    assert storage is not None
    assert storage.replication == {"models": ["aws-usw2"]}
    assert storage.lifecycle("raw") == DEFAULT_LIFECYCLE["raw"]
    assert storage.lifecycle("checkpoints").expire_after_days == 90


CASES = [
    (
        "ages-out-of-order",
        lambda s: s.update(zones={"raw": {"tiers": {"warm": 90, "cold": 60}}}),
        "aicloud:storage.zones.raw.tiers: transition ages out of order: cold at 60 days must come after "
        "warm at 90 days (tiers get colder with age: warm < cold < archive)",
    ),
    (
        "unknown-tier",
        lambda s: s.update(zones={"raw": {"tiers": {"lukewarm": 40}}}),
        "aicloud:storage.zones.raw.tiers: unknown tier 'lukewarm'; allowed: warm, cold, archive",
    ),
    (
        "hot-is-not-a-transition",
        lambda s: s.update(zones={"curated": {"tiers": {"hot": 0, "warm": 40}}}),
        "aicloud:storage.zones.curated.tiers: 'hot' is where every object starts; list the ages at which "
        "objects move to warm, cold, archive",
    ),
    (
        "warm-too-early",
        lambda s: s.update(zones={"raw": {"tiers": {"warm": 7}}}),
        "aicloud:storage.zones.raw.tiers: warm at 7 days is too early: objects must stay hot at least 30 days "
        "(S3 STANDARD_IA and GCS Nearline minimum)",
    ),
    (
        "cold-too-soon-after-warm",
        lambda s: s.update(zones={"raw": {"tiers": {"warm": 30, "cold": 45}}}),
        "aicloud:storage.zones.raw.tiers: cold at 45 days is too soon after warm at 30 days: objects must "
        "stay warm at least 30 days (use >= 60)",
    ),
    (
        "expiry-before-last-transition",
        lambda s: s.update(zones={"checkpoints": {"tiers": {"warm": 30}, "expireAfterDays": 20}}),
        "aicloud:storage.zones.checkpoints: expireAfterDays (20) must be later than the last transition "
        "(warm at 30 days)",
    ),
    (
        "unknown-zone",
        lambda s: s.update(zones={"bronze": {}}),
        "aicloud:storage.zones: unknown zone 'bronze'; zones: raw, curated, features, checkpoints, models",
    ),
    (
        "scratch-below-fsx-minimum",
        lambda s: s.update(scratch={"sizeGib": 1000, "filestoreTier": "BASIC_HDD"}),
        "aicloud:storage.scratch.sizeGib: 1000 GiB is below the FSx for Lustre minimum of 1200 GiB; allowed: "
        "1200, 2400 or a multiple of 2400; 1000 GiB is outside the Filestore BASIC_HDD range of 1024 to "
        "65433 GiB (got 1000)",
    ),
    (
        "scratch-not-an-fsx-step",
        lambda s: s.update(scratch={"sizeGib": 3000}),
        "aicloud:storage.scratch.sizeGib: 3000 GiB is not an FSx for Lustre size; allowed: 1200, 2400 or a "
        "multiple of 2400 (nearest allowed: 2400 or 4800) (got 3000)",
    ),
    (
        "scratch-below-filestore-tier",
        lambda s: s.update(scratch={"sizeGib": 2400}),
        "aicloud:storage.scratch.sizeGib: 2400 GiB is outside the Filestore BASIC_SSD range of 2560 to "
        "65433 GiB (got 2400)",
    ),
    (
        "replication-target-not-in-stack",
        lambda s: s.update(replication={"models": ["aws-usw2", "aws-apne1"]}),
        "aicloud:storage.replication.models[1]: not a region of this stack; regions: aws-use1, aws-usw2, "
        "gcp-usc1 (got 'aws-apne1')",
    ),
    (
        "replication-target-is-the-source",
        lambda s: s.update(replication={"models": ["gcp-usc1"]}),
        "aicloud:storage.replication.models[0]: the primary gcp region holds the lakehouse itself; "
        "replicate to a non-primary region (got 'gcp-usc1')",
    ),
    (
        "replication-of-a-zone-that-is-not-replicable",
        lambda s: s.update(replication={"raw": ["aws-usw2"]}),
        "aicloud:storage.replication: zone 'raw' cannot be replicated; replicable zones: checkpoints, models",
    ),
    (
        "unknown-column-type",
        lambda s: s.update(catalog={"tables": [{"name": "t", "columns": [{"name": "a", "type": "varchar"}]}]}),
        "aicloud:storage.catalog.tables[0](t).columns[0](a).type: unknown column type 'varchar'; allowed: "
        "boolean, int, long, float, double, date, timestamp, timestamptz, string, binary, decimal(P,S) "
        "(got 'varchar')",
    ),
    (
        "table-outside-table-zones",
        lambda s: s.update(
            catalog={"tables": [{"name": "t", "zone": "raw", "columns": [{"name": "a", "type": "int"}]}]}
        ),
        "aicloud:storage.catalog.tables[0](t).zone: Input should be 'curated' or 'features' (got 'raw')",
    ),
    (
        "rename-of-a-region-without-lakehouse",
        lambda s: s.update(replication={}, renamedFrom={"aws-usw2": "old-lake"}),
        "aicloud:storage.renamedFrom: 'aws-usw2': holds no lakehouse or replica (lakehouses live in: aws-use1, "
        "gcp-usc1; replicas in: none)",
    ),
    (
        "streaming-buffer-too-long",
        lambda s: s.update(streaming={"bufferSeconds": 900}),
        "aicloud:storage.streaming.bufferSeconds: Input should be less than or equal to 600 (got 900)",
    ),
    (
        "misspelt-key",
        lambda s: s.update(replicaton={}),
        "aicloud:storage.replicaton: unknown key (check the spelling; keys are camelCase)",
    ),
]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_storage_config_is_rejected_with_a_clear_message(mutate, expected):
    assert errors_for(mutate) == [expected]


def test_all_storage_problems_are_reported_together():
    def two_problems(s):
        s["zones"] = {"raw": {"tiers": {"lukewarm": 40}}}
        s["scratch"] = {"sizeGib": 3000}

    assert [e.split(":")[1] for e in errors_for(two_problems)] == ["storage.zones.raw.tiers", "storage.scratch.sizeGib"]


def test_scratch_size_is_checked_only_against_the_clouds_of_the_stack():
    raw = copy.deepcopy(GOOD)
    raw["regions"] = raw["regions"][:2]  # AWS only: 2400 GiB is a fine FSx size
    raw.pop("gcpProject")
    raw["storage"]["scratch"] = {"sizeGib": 2400}
    assert parse_stack_config(raw, "t").storage.scratch.size_gib == 2400


@pytest.mark.parametrize(
    "size,ok", [(1200, True), (2400, True), (4800, True), (9600, True), (1199, False), (3600, False)]
)
def test_fsx_sizes_are_1200_then_multiples_of_2400(size, ok):
    assert (fsx_size_problem(size) is None) is ok


def test_without_a_stack_targets_and_sizes_wait_for_the_stacks_regions():
    # Targets and per-cloud sizes need the stack's regions: a StorageSpec alone cannot know them,
    # and `storage_problems` checks them against the clouds the stack really uses.
    assert StorageSpec(replication={"models": ["anywhere"]}).replication == {"models": ["anywhere"]}
    spec = StorageSpec.model_validate({"scratch": {"sizeGib": 2400}})
    both = parse_stack_config(GOOD, "t").regions
    (problem,) = storage_problems(spec, both)
    assert problem.loc == ("scratch", "sizeGib") and "Filestore BASIC_SSD range" in problem.message
    assert list(storage_problems(spec, [r for r in both if r.cloud == "aws"])) == []


def test_shipped_stacks_size_storage_per_environment():
    dev, staging, prod = (load_stack(s)[1].storage for s in ("dev", "staging", "prod"))
    assert dev is not None and dev.scratch is None and dev.streaming is None and dev.replication == {}
    assert staging is not None and staging.streaming is not None and staging.scratch is None
    assert prod is not None and prod.scratch is not None and prod.streaming is not None
    assert prod.replication["models"] == ["aws-usw2", "aws-euw1", "gcp-euw4"]


def test_a_replica_may_be_renamed_too():
    """`renamedFrom` used to work for primary regions only: a replica's rename replaced its buckets."""
    raw = copy.deepcopy(GOOD)
    raw["storage"]["renamedFrom"] = {"aws-usw2": "old-lake-replica", "aws-use1": "old-lake"}
    assert parse_stack_config(raw, "t").storage.renamed_from["aws-usw2"] == "old-lake-replica"
