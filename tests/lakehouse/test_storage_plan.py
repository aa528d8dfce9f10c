"""The shipped stacks end to end (offline plan): nothing that holds data can be lost, no policy
grants every action on every resource, identities land where workloads run, and the plan report
shows zones, tiers and guards."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from stacks.plan import run_plan
from stacks.steps.storage import DATA_HOLDING_TYPES
from tests.lakehouse.samples import star_on_star

BROAD_GCP_ROLES = {"roles/owner", "roles/editor", "roles/storage.admin", "roles/iam.serviceAccountTokenCreator"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}


@pytest.fixture(scope="module")
def prod():
    return run_plan("prod", policies=False)


@pytest.fixture(scope="module")
def prod_json(prod):
    return prod.to_json()


def _policy_documents(value: Any) -> list[dict[str, Any]]:
    """Every IAM-grammar document inside resource inputs (JSON strings or objects)."""
    found = []
    if isinstance(value, str) and value.lstrip().startswith("{") and "Statement" in value:
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    if isinstance(value, dict):
        if "Statement" in value:
            found.append(value)
        else:
            for v in value.values():
                found += _policy_documents(v)
    elif isinstance(value, list):
        for v in value:
            found += _policy_documents(v)
    return found


def test_every_data_holding_resource_is_protected_or_retained_in_the_plan_json(prod_json):
    data = [r for r in prod_json["resources"] if r["type"] in DATA_HOLDING_TYPES]
    counts = Counter(r["type"] for r in data)
    # primary: 5 zones + logs; us-west-2: models, checkpoints + logs; eu-west-1: models + logs
    assert counts["aws:s3/bucket:Bucket"] == 6 + 3 + 2
    assert counts["gcp:storage/bucket:Bucket"] == 6 + 2
    assert counts["aws:fsx/lustreFileSystem:LustreFileSystem"] == 1
    assert counts["gcp:filestore/instance:Instance"] == 1
    unguarded = [r["urn"] for r in data if not (r["protect"] or r["retainOnDelete"])]
    assert unguarded == []
    # prod defaults: both guards on.
    assert all(r["protect"] and r["retainOnDelete"] for r in data)


def test_no_policy_in_the_prod_plan_grants_every_action_on_every_resource(prod):
    documents = [doc for r in prod.resources if r.custom for doc in _policy_documents(r.inputs)]
    assert len(documents) >= 30  # bucket, key, role and trust policies of the lakehouses and identities (40 now)
    offenders = [s for doc in documents for s in star_on_star(doc)]
    assert offenders == []


def test_no_gcp_grant_is_primitive_broad_or_public(prod):
    members = [
        r
        for r in prod.resources
        if r.type.startswith("gcp:") and (r.type.endswith("IAMMember") or r.type.endswith("IAMBinding"))
    ]
    assert members
    for r in members:
        assert r.inputs["role"] not in BROAD_GCP_ROLES, r.urn
        assert not (set(r.inputs.get("members", [r.inputs.get("member")])) & PUBLIC_MEMBERS), r.urn


def test_identities_go_where_workloads_run(prod):
    where: dict[str, set[str]] = {}
    for t in ("aicloud:identity:EksWorkloadIdentity", "aicloud:identity:GkeWorkloadIdentity"):
        for reg, out in prod.component_outputs(t):
            where.setdefault(out["workload"], set()).add(prod.region_of(reg))
    assert where["trainer"] == {"aws-use1", "gcp-usc1"}
    assert where["server"] == {"aws-use1", "aws-usw2", "aws-euw1", "gcp-usc1", "gcp-euw4"}


def test_servers_in_replica_regions_read_their_local_models_replica(prod):
    policy = json.loads(next(r for r in prod.resources if r.name == "aws-euw1-server-storage").inputs["policy"])
    resources = [
        res
        for s in policy["Statement"]
        for res in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert "${aws-euw1-lake-replica-models.arn}/*" in resources
    assert "${aws-euw1-lake-replica-key.arn}" in resources
    assert not any("aws-use1" in res for res in resources)
    gcs = [
        r
        for r in prod.resources
        if r.name.startswith("gcp-euw4-server-") and r.type.endswith("bucketIAMMember:BucketIAMMember")
    ]
    assert [r.inputs["bucket"] for r in gcs] == ["${gcp-euw4-lake-replica-models.name}"]


def test_plan_report_has_a_storage_section(prod_json):
    section = prod_json["sections"]["storage"]
    assert section["columns"][:4] == ["region", "zone", "bucket", "tiers (age since creation)"]
    rows = {(r[0], r[1]): r for r in section["rows"]}
    assert rows[("aws-use1", "raw")][3] == "STANDARD -> STANDARD_IA @30d -> GLACIER @90d -> DEEP_ARCHIVE @365d"
    assert rows[("gcp-usc1", "models")][6] == "gcp-euw4"
    assert ("aws-usw2", "models (replica of aws-use1)") in rows
    assert any("unguarded 0" in note for note in section["notes"])


def test_dev_has_one_small_bucket_set_without_scratch_streaming_or_replicas():
    dev = run_plan("dev", policies=False)
    types = Counter(r.type for r in dev.resources)
    assert types["aicloud:storage:AwsLakehouse"] == 1 and types["aws:s3/bucket:Bucket"] == 6
    for absent in (
        "aws:fsx/lustreFileSystem:LustreFileSystem",
        "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream",
        "aws:s3/bucketReplicationConfig:BucketReplicationConfig",
        "aicloud:storage:AwsLakehouseReplica",
    ):
        assert types[absent] == 0, absent
    # dev is not protected by default, but data is still retained when Pulumi deletes it.
    data = [r for r in dev.resources if r.type in DATA_HOLDING_TYPES]
    assert all(r.retain_on_delete and not r.protect for r in data)
