"""Shared inputs of the lakehouse tests: a full storage spec, fixed ARNs, every rendered document,
and the golden-file comparison (regenerate on purpose with `UPDATE_GOLDEN=1`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from components.identity import irsa_trust_policy
from components.lakehouse.documents import (
    bigquery_schema,
    firehose_role_policy,
    gcs_lifecycle_rules,
    gcs_log_lifecycle_rules,
    gcs_workload_bindings,
    glue_columns,
    kms_key_policy,
    log_bucket_policy,
    replication_role_policy,
    s3_encryption_configuration,
    s3_lifecycle_configuration,
    s3_log_lifecycle_configuration,
    s3_replication_configuration,
    s3_workload_policy,
    service_trust_policy,
    tls_only_bucket_policy,
)
from components.lakehouse.spec import ZONES, StorageSpec

GOLDEN = Path(__file__).parent / "golden"
ACCOUNT = "123456789012"
REGION = "us-east-1"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
REPLICA_KEY_ARN = f"arn:aws:kms:us-west-2:{ACCOUNT}:key/66666666-7777-8888-9999-000000000000"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/lake-replication"
OIDC_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.{REGION}.amazonaws.com/id/ABCDEF0123456789"
OIDC_ISSUER = f"https://oidc.eks.{REGION}.amazonaws.com/id/ABCDEF0123456789"


def bucket_name(zone: str) -> str:
    return f"lake-{zone}"


def bucket_arn(zone: str) -> str:
    return f"arn:aws:s3:::{bucket_name(zone)}"


FULL_STORAGE: dict[str, Any] = {
    "zones": {"checkpoints": {"tiers": {"warm": 30}, "expireAfterDays": 120, "noncurrentExpireAfterDays": 14}},
    "catalog": {
        "database": "lake_test",
        "tables": [
            {
                "name": "events",
                "zone": "curated",
                "columns": [
                    {"name": "event_id", "type": "string", "required": True},
                    {"name": "event_time", "type": "timestamptz", "required": True},
                    {"name": "count", "type": "long", "description": "events in the window"},
                    {"name": "score", "type": "decimal(9,6)"},
                ],
            }
        ],
    },
    "scratch": {"sizeGib": 4800, "fsxDeploymentType": "PERSISTENT_2"},
    "streaming": {"bufferSeconds": 120, "bufferMib": 16},
    "replication": {"models": ["aws-usw2"]},
}
"""A storage section using every feature (valid for an AWS-only stack)."""


def full_spec() -> StorageSpec:
    return StorageSpec.model_validate(FULL_STORAGE)


DESTINATIONS = [{"region": "us-west-2", "bucket_arn": "arn:aws:s3:::lake-replica-models", "key_arn": REPLICA_KEY_ARN}]


def documents() -> dict[str, Any]:
    """Every document the lakehouse renders, by golden-file name, from `full_spec()` and fixed ARNs."""
    spec = full_spec()
    aws_classes, gcp_classes = spec.tier_classes("aws"), spec.tier_classes("gcp")
    abort = spec.abort_incomplete_uploads_after_days
    docs: dict[str, Any] = {}
    for zone in ZONES:
        docs[f"s3-lifecycle-{zone}"] = s3_lifecycle_configuration(zone, spec.lifecycle(zone), aws_classes, abort)
        docs[f"gcs-lifecycle-{zone}"] = gcs_lifecycle_rules(spec.lifecycle(zone), gcp_classes, abort)
    docs["s3-lifecycle-logs"] = s3_log_lifecycle_configuration(spec.access_log_retention_days, abort)
    docs["gcs-lifecycle-logs"] = gcs_log_lifecycle_rules(spec.access_log_retention_days)
    docs["s3-encryption"] = s3_encryption_configuration(KEY_ARN)
    docs["s3-bucket-policy-tls"] = tls_only_bucket_policy(bucket_arn("models"))
    docs["s3-bucket-policy-logs"] = log_bucket_policy(bucket_arn("logs"), [bucket_arn(z) for z in ZONES], ACCOUNT)
    docs["s3-replication-models"] = s3_replication_configuration(ROLE_ARN, "models", DESTINATIONS)
    docs["iam-replication-role"] = replication_role_policy(bucket_arn("models"), KEY_ARN, REGION, DESTINATIONS)
    docs["iam-firehose-role"] = firehose_role_policy(bucket_arn("raw"), KEY_ARN, REGION, "stream/")
    docs["iam-trust-firehose"] = service_trust_policy("firehose.amazonaws.com", ACCOUNT, "sts:ExternalId")
    docs["kms-key-policy"] = kms_key_policy(ACCOUNT, REGION)
    docs["iam-trainer"] = s3_workload_policy(
        "trainer",
        {z: bucket_arn(z) for z in ZONES},
        {REGION: KEY_ARN},
        {"region": REGION, "account": ACCOUNT, "database": "lake_test"},
    )
    docs["iam-server"] = s3_workload_policy("server", {"models": bucket_arn("models")}, {REGION: KEY_ARN})
    docs["iam-trust-trainer"] = irsa_trust_policy(OIDC_ARN, OIDC_ISSUER, "aicloud-training", "aicloud-trainer")
    docs["gcs-bindings-trainer"] = gcs_workload_bindings("trainer")
    docs["gcs-bindings-server"] = gcs_workload_bindings("server")
    table = spec.catalog.tables[0]  # type: ignore[union-attr]
    docs["glue-columns-events"] = glue_columns(table.columns)
    docs["bigquery-schema-events"] = bigquery_schema(table.columns)
    return docs


POLICY_DOCUMENTS = (
    "s3-bucket-policy-tls",
    "s3-bucket-policy-logs",
    "iam-replication-role",
    "iam-firehose-role",
    "iam-trust-firehose",
    "kms-key-policy",
    "iam-trainer",
    "iam-server",
    "iam-trust-trainer",
)
"""The documents in IAM policy grammar."""


def assert_golden(name: str, value: Any) -> None:
    """`value` equals `golden/<name>.json` exactly; `UPDATE_GOLDEN=1` rewrites the file instead."""
    path = GOLDEN / f"{name}.json"
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
        return
    assert path.exists(), f"no golden file {path}; run with UPDATE_GOLDEN=1 to create it on purpose"
    assert json.loads(path.read_text()) == value, f"{name} differs from {path} (UPDATE_GOLDEN=1 to accept)"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def star_on_star(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Allow statements that grant every action (`*`, or `NotAction`) on every resource (`*`)."""
    bad = []
    for statement in _as_list(document.get("Statement", [])):
        if statement.get("Effect") != "Allow":
            continue
        actions = _as_list(statement.get("Action", []))
        every_action = any(a in ("*", "*:*") for a in actions) or "NotAction" in statement
        if every_action and ("*" in _as_list(statement.get("Resource", [])) or "NotResource" in statement):
            bad.append(statement)
    return bad
