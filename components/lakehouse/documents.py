"""Pure builders of every document the lakehouse hands to a cloud: lifecycle rules, bucket and IAM
policies, encryption and replication configurations, workload grants, table schemas.

Every builder takes plain values (ARNs, names, specs) and returns JSON-ready data in the cloud
API's own shape (S3 API PascalCase, GCS JSON API camelCase, IAM policy grammar), so the same
document is compared against golden files, sent to moto's S3 API, and (through `to_pulumi_args`)
handed to the Pulumi resources. No builder grants a `*` action on a `*` resource.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from components.lakehouse.spec import TIERS, ColumnSpec, StorageSpec, ZoneLifecycle

POLICY_VERSION = "2012-10-17"

ZONE_ACCESS: dict[str, dict[str, str]] = {
    # The trainer reads prepared data, resumes from and writes checkpoints, publishes models.
    "trainer": {"curated": "read", "features": "read", "checkpoints": "write", "models": "write"},
    # The model server only loads published models.
    "server": {"models": "read"},
    # The retraining trigger reads fresh features and scores the current and candidate models;
    # it appends its decisions to the models zone (new objects only: the log is never rewritten).
    "retrain": {"features": "read", "models": "write"},
}
"""What each workload may do in each zone: `read` (list, get) or `write` (read, put, delete the
current version; never delete versions, so nothing written is lost)."""

GCS_ROLES = {"read": "roles/storage.objectViewer", "write": "roles/storage.objectUser"}
"""GCS bucket role per access level (objectUser: read, create, overwrite, delete objects)."""

S3_READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]
S3_WRITE_ACTIONS = [
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]
S3_LIST_ACTIONS = ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]
GLUE_READ_ACTIONS = ["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartitions"]

_GLUE_TYPES = {"long": "bigint", "timestamptz": "timestamp"}
_BIGQUERY_TYPES = {
    "boolean": "BOOL",
    "int": "INT64",
    "long": "INT64",
    "float": "FLOAT64",
    "double": "FLOAT64",
    "date": "DATE",
    "timestamp": "DATETIME",
    "timestamptz": "TIMESTAMP",
    "string": "STRING",
    "binary": "BYTES",
}


# ------------------------------------------------------------------------------------ lifecycle
def s3_lifecycle_configuration(
    zone: str, lifecycle: ZoneLifecycle, tier_classes: Mapping[str, str], abort_days: int
) -> dict[str, Any]:
    """The S3 `LifecycleConfiguration` of a zone bucket (as `put_bucket_lifecycle_configuration`
    takes it): tier transitions, expiry, noncurrent-version expiry, aborted multipart uploads."""
    rule: dict[str, Any] = {
        "ID": f"{zone}-tiers",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
    }
    if lifecycle.tiers:
        rule["Transitions"] = [
            {"Days": age, "StorageClass": tier_classes[tier]} for tier, age in lifecycle.tiers.items()
        ]
    if lifecycle.expire_after_days is not None:
        rule["Expiration"] = {"Days": lifecycle.expire_after_days}
    rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": lifecycle.noncurrent_expire_after_days}
    rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": abort_days}
    # Delete markers with no versions left behind them only slow listings down.
    cleanup = {
        "ID": f"{zone}-delete-markers",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    }
    rules = [rule] if lifecycle.expire_after_days is not None else [rule, cleanup]
    return {"Rules": rules}


def s3_log_lifecycle_configuration(retention_days: int, abort_days: int) -> dict[str, Any]:
    """Lifecycle of the access-log bucket: logs expire after `retention_days`."""
    return {
        "Rules": [
            {
                "ID": "access-logs-expiry",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "Expiration": {"Days": retention_days},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": abort_days},
            }
        ]
    }


def gcs_lifecycle_rules(
    lifecycle: ZoneLifecycle, tier_classes: Mapping[str, str], abort_days: int
) -> list[dict[str, Any]]:
    """The GCS lifecycle rules of a zone bucket (JSON API shape): each transition only moves
    objects that are still in a warmer class, so rules never move data back up."""
    warmer = [tier_classes["hot"]]
    rules: list[dict[str, Any]] = []
    for tier in TIERS:
        if tier not in lifecycle.tiers:
            continue
        rules.append(
            {
                "action": {"type": "SetStorageClass", "storageClass": tier_classes[tier]},
                "condition": {"age": lifecycle.tiers[tier], "matchesStorageClass": list(warmer)},
            }
        )
        warmer.append(tier_classes[tier])
    if lifecycle.expire_after_days is not None:
        rules.append({"action": {"type": "Delete"}, "condition": {"age": lifecycle.expire_after_days, "isLive": True}})
    rules.append(
        {
            "action": {"type": "Delete"},
            "condition": {"daysSinceNoncurrentTime": lifecycle.noncurrent_expire_after_days, "isLive": False},
        }
    )
    rules.append({"action": {"type": "AbortIncompleteMultipartUpload"}, "condition": {"age": abort_days}})
    return rules


def gcs_log_lifecycle_rules(retention_days: int) -> list[dict[str, Any]]:
    """Lifecycle of the usage-log bucket (GCS JSON API shape): logs expire after `retention_days`."""
    return [
        {"action": {"type": "Delete"}, "condition": {"age": retention_days, "isLive": True}},
        {"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": 1, "isLive": False}},
    ]


def tier_plan(spec: StorageSpec, zone: str, cloud: str) -> list[dict[str, Any]]:
    """Tiers of a zone for the plan report: `[{tier, storageClass, afterDays}]`, hot first."""
    classes = spec.tier_classes(cloud)
    lifecycle = spec.lifecycle(zone)
    return [{"tier": "hot", "storageClass": classes["hot"], "afterDays": 0}] + [
        {"tier": t, "storageClass": classes[t], "afterDays": age} for t, age in lifecycle.tiers.items()
    ]


# ------------------------------------------------------------------------- S3 bucket documents
def s3_encryption_configuration(key_arn: Any) -> dict[str, Any]:
    """Default encryption with the lakehouse's customer-managed KMS key (S3 bucket keys on, to
    cut KMS requests)."""
    return {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                "BucketKeyEnabled": True,
            }
        ]
    }


def deny_insecure_transport(bucket_arn: str) -> dict[str, Any]:
    """The statement that refuses every request not made over TLS."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def tls_only_bucket_policy(bucket_arn: str) -> dict[str, Any]:
    """Bucket policy of a zone bucket: TLS only."""
    return {"Version": POLICY_VERSION, "Statement": [deny_insecure_transport(bucket_arn)]}


def log_bucket_policy(log_bucket_arn: str, source_bucket_arns: Sequence[str], account_id: str) -> dict[str, Any]:
    """Bucket policy of the access-log bucket: the S3 logging service may write logs of this
    account's zone buckets only, and every request must use TLS."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "AllowServerAccessLogs",
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"{log_bucket_arn}/*",
                "Condition": {
                    "ArnLike": {"aws:SourceArn": list(source_bucket_arns)},
                    "StringEquals": {"aws:SourceAccount": account_id},
                },
            },
            deny_insecure_transport(log_bucket_arn),
        ],
    }


def s3_replication_configuration(role_arn: str, zone: str, destinations: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """S3 `ReplicationConfiguration` copying a zone bucket to each destination
    (`{region, bucket_arn, key_arn}`), re-encrypting with the destination region's key.
    Deletes (delete markers) replicate too, so a rollback in the primary is seen everywhere."""
    return {
        "Role": role_arn,
        "Rules": [
            {
                "ID": f"{zone}-to-{d['region']}",
                "Priority": i,
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "DeleteMarkerReplication": {"Status": "Enabled"},
                "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
                "Destination": {
                    "Bucket": d["bucket_arn"],
                    "EncryptionConfiguration": {"ReplicaKmsKeyID": d["key_arn"]},
                },
            }
            for i, d in enumerate(destinations, start=1)
        ],
    }


# ------------------------------------------------------------------------------ IAM documents
def service_trust_policy(service: str, account_id: str, condition_key: str = "aws:SourceAccount") -> dict[str, Any]:
    """Trust policy letting an AWS service assume a role on behalf of this account only (the
    confused-deputy guard: `aws:SourceAccount`, or `sts:ExternalId` where the service documents
    it, as Firehose does)."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {condition_key: account_id}},
            }
        ],
    }


def _via_s3(region: str) -> dict[str, Any]:
    return {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}


def replication_role_policy(
    source_bucket_arn: str, source_key_arn: str, source_region: str, destinations: Sequence[Mapping[str, str]]
) -> dict[str, Any]:
    """Permissions of the S3 replication role: read the source versions, write replicas, decrypt
    with the source key and encrypt with each destination's key, through S3 only."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadSourceConfiguration",
            "Effect": "Allow",
            "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
            "Resource": source_bucket_arn,
        },
        {
            "Sid": "ReadSourceVersions",
            "Effect": "Allow",
            "Action": [
                "s3:GetObjectVersionForReplication",
                "s3:GetObjectVersionAcl",
                "s3:GetObjectVersionTagging",
            ],
            "Resource": f"{source_bucket_arn}/*",
        },
        {
            "Sid": "WriteReplicas",
            "Effect": "Allow",
            "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
            "Resource": [f"{d['bucket_arn']}/*" for d in destinations],
        },
        {
            "Sid": "DecryptSource",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": source_key_arn,
            "Condition": _via_s3(source_region),
        },
    ]
    for d in destinations:
        statements.append(
            {
                "Sid": f"EncryptReplicas{_sid(d['region'])}",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                "Resource": d["key_arn"],
                "Condition": _via_s3(d["region"]),
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def firehose_role_policy(bucket_arn: str, key_arn: str, region: str, prefix: str) -> dict[str, Any]:
    """Permissions of the Firehose delivery role: write under the streaming prefix of the raw
    zone bucket (and its error prefix), encrypting with the lakehouse key."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "LocateBucket",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                "Resource": bucket_arn,
            },
            {
                "Sid": "DeliverObjects",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                "Resource": [f"{bucket_arn}/{prefix}*", f"{bucket_arn}/{firehose_error_prefix(prefix)}*"],
            },
            {
                "Sid": "EncryptObjects",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": key_arn,
                "Condition": _via_s3(region),
            },
        ],
    }


def firehose_error_prefix(prefix: str) -> str:
    """Where Firehose puts records it could not deliver (next to the stream prefix)."""
    return f"{prefix.rstrip('/')}-errors/"


KMS_ADMIN_ACTIONS = [
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
]
KMS_USE_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]


def kms_key_policy(account_id: str, region: str) -> dict[str, Any]:
    """Key policy of a lakehouse key (in a key policy, `Resource: *` means this key).

    - The account administers and uses the key through IAM policies (so the key never becomes
      unmanageable), with the administration actions listed rather than `kms:*`.
    - S3 server access logging may encrypt log objects with it (the log bucket uses this key too).
    - FSx for Lustre's per-file-system S3 roles may use it through S3: data repository
      associations with SSE-KMS buckets need it, and service-linked roles take no IAM policies.
    """
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "AccountAdministersKeyThroughIam",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                "Action": KMS_ADMIN_ACTIONS + KMS_USE_ACTIONS,
                "Resource": "*",
            },
            {
                "Sid": "S3ServerAccessLogDelivery",
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "kms:GenerateDataKey",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
            {
                "Sid": "FsxLustreDataRepositoryAccess",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": KMS_USE_ACTIONS,
                "Resource": "*",
                "Condition": {
                    "ArnLike": {
                        "aws:PrincipalArn": f"arn:aws:iam::{account_id}:role/aws-service-role/"
                        "s3.data-source.lustre.fsx.amazonaws.com/AWSServiceRoleForFSxS3Access_*"
                    },
                    "StringEquals": {
                        "kms:CallerAccount": account_id,
                        "kms:ViaService": f"s3.{region}.amazonaws.com",
                    },
                },
            },
        ],
    }


def s3_workload_policy(
    workload: str,
    bucket_arns: Mapping[str, str],
    key_arns: Mapping[str, str],
    catalog: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Least-privilege S3 policy of a workload (`ZONE_ACCESS`): list and read its zones, write the
    zones it writes, use the zone keys through S3 only, and (trainer) read the table catalog.

    `bucket_arns`: zone -> bucket ARN (the workload's region's copy); `key_arns`: region -> key
    ARN of those buckets; `catalog`: `{region, account, database}` of the Glue database.
    """
    access = ZONE_ACCESS[workload]
    missing = sorted(set(access) - set(bucket_arns))
    if missing:
        raise ValueError(f"{workload} needs the buckets of zones {', '.join(missing)}")
    zones = [z for z in access if z in bucket_arns]
    writes = [z for z in zones if access[z] == "write"]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListZones",
            "Effect": "Allow",
            "Action": S3_LIST_ACTIONS,
            "Resource": [bucket_arns[z] for z in zones],
        },
        {
            "Sid": "ReadObjects",
            "Effect": "Allow",
            "Action": S3_READ_ACTIONS,
            "Resource": [f"{bucket_arns[z]}/*" for z in zones],
        },
    ]
    if writes:
        statements.append(
            {
                "Sid": "WriteObjects",
                "Effect": "Allow",
                "Action": S3_WRITE_ACTIONS,
                "Resource": [f"{bucket_arns[z]}/*" for z in writes],
            }
        )
    for region, key_arn in sorted(key_arns.items()):
        statements.append(
            {
                "Sid": f"UseZoneKey{_sid(region)}",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"] if writes else ["kms:Decrypt"],
                "Resource": key_arn,
                "Condition": _via_s3(region),
            }
        )
    if catalog is not None:
        base = f"arn:aws:glue:{catalog['region']}:{catalog['account']}"
        statements.append(
            {
                "Sid": "ReadCatalog",
                "Effect": "Allow",
                "Action": GLUE_READ_ACTIONS,
                "Resource": [
                    f"{base}:catalog",
                    f"{base}:database/{catalog['database']}",
                    f"{base}:table/{catalog['database']}/*",
                ],
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def s3_prefix_policy(grants: Sequence[Mapping[str, str]], key_arns: Mapping[str, str]) -> dict[str, Any]:
    """Least-privilege S3 policy scoped to key prefixes rather than whole zones (the retraining
    agents: each may touch its own region's part of the decision log and read candidates).

    `grants`: `{bucket_arn, prefix, access}` with access `read` (list the prefix, get) or
    `create` (also put; never delete: what an agent writes is not rewritten); `key_arns`: region ->
    key ARN of those buckets (used through S3 only).
    """
    if not grants:
        raise ValueError("a prefix policy needs at least one grant")
    for g in grants:
        if g["access"] not in ("read", "create"):
            raise ValueError(f"prefix grant access: got {g['access']!r}; allowed: read, create")
        if not g["prefix"] or g["prefix"].startswith("/") or "*" in g["prefix"]:
            raise ValueError(
                f"prefix grant prefix: got {g['prefix']!r}; allowed: a key prefix without '/' first or '*'"
            )
    statements: list[dict[str, Any]] = []
    for i, g in enumerate(grants):
        statements.append(
            {
                "Sid": f"ListPrefix{i}",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": g["bucket_arn"],
                "Condition": {"StringLike": {"s3:prefix": [g["prefix"], f"{g['prefix']}*"]}},
            }
        )
    statements.append(
        {
            "Sid": "ReadPrefixes",
            "Effect": "Allow",
            "Action": S3_READ_ACTIONS,
            "Resource": [f"{g['bucket_arn']}/{g['prefix']}*" for g in grants],
        }
    )
    creates = [g for g in grants if g["access"] == "create"]
    if creates:
        statements.append(
            {
                "Sid": "CreateObjects",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": [f"{g['bucket_arn']}/{g['prefix']}*" for g in creates],
            }
        )
    for region, key_arn in sorted(key_arns.items()):
        statements.append(
            {
                "Sid": f"UseZoneKey{_sid(region)}",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"] if creates else ["kms:Decrypt"],
                "Resource": key_arn,
                "Condition": _via_s3(region),
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def gcs_prefix_condition(bucket: str, prefix: str, *, listing: bool) -> dict[str, str]:
    """IAM condition limiting a bucket role to objects under `prefix` (bucket needs uniform
    bucket-level access). `listing`: also allow `objects.list` requests for that prefix, whose
    resource is the bucket (the `storage.googleapis.com/objectListPrefix` request attribute)."""
    if not prefix or prefix.startswith("/") or '"' in prefix or '"' in bucket:
        raise ValueError(f"GCS prefix condition: bad bucket/prefix {bucket!r}/{prefix!r}")
    expression = f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{prefix}")'
    if listing:
        expression += f' || api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("{prefix}")'
    title = f"prefix {prefix}"[:100]
    return {"title": title, "expression": expression}


def gcs_workload_bindings(workload: str) -> list[dict[str, str]]:
    """Bucket IAM bindings of a workload on GCS: one role per zone bucket it may use
    (`[{zone, role}]`). Zones are separate buckets, so no prefix conditions are needed."""
    return [{"zone": z, "role": GCS_ROLES[level]} for z, level in ZONE_ACCESS[workload].items()]


def _sid(text: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^a-zA-Z0-9]+", text) if part)


# ------------------------------------------------------------------------------------- tables
def glue_type(column: ColumnSpec) -> str:
    """The Glue (Hive) type of an Iceberg column type."""
    return _GLUE_TYPES.get(column.type, column.type)


def glue_columns(columns: Sequence[ColumnSpec]) -> list[dict[str, str]]:
    """Glue storage-descriptor columns of a table."""
    return [
        {"name": c.name, "type": glue_type(c), **({"comment": c.description} if c.description else {})} for c in columns
    ]


def bigquery_schema(columns: Sequence[ColumnSpec]) -> list[dict[str, str]]:
    """BigQuery schema fields of a table."""
    out = []
    for c in columns:
        if c.type.startswith("decimal("):
            precision, scale = c.type[len("decimal(") : -1].split(",")
            field = {"name": c.name, "type": "NUMERIC" if int(precision) <= 29 else "BIGNUMERIC"}
            field.update(precision=precision, scale=scale)
        else:
            field = {"name": c.name, "type": _BIGQUERY_TYPES[c.type]}
        field["mode"] = "REQUIRED" if c.required else "NULLABLE"
        if c.description:
            field["description"] = c.description
        out.append(field)
    return out


# -------------------------------------------------------------------- shape conversion helpers
_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(key: str) -> str:
    """`KMSMasterKeyID` -> `kms_master_key_id`, `NoncurrentDays` -> `noncurrent_days`."""
    return _SNAKE.sub("_", key).lower()


def to_pulumi_args(doc: Any) -> Any:
    """An S3 API document (PascalCase keys) as Pulumi resource arguments (snake_case keys)."""
    if isinstance(doc, Mapping):
        return {snake_case(k): to_pulumi_args(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [to_pulumi_args(v) for v in doc]
    return doc


def gcs_rules_to_pulumi(rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """GCS JSON API lifecycle rules as `gcp.storage.Bucket` `lifecycle_rules` arguments."""
    out = []
    for rule in rules:
        action = {"type": rule["action"]["type"]}
        if "storageClass" in rule["action"]:
            action["storage_class"] = rule["action"]["storageClass"]
        cond = rule["condition"]
        condition: dict[str, Any] = {}
        if "age" in cond:
            condition["age"] = cond["age"]
        if "matchesStorageClass" in cond:
            condition["matches_storage_classes"] = cond["matchesStorageClass"]
        if "daysSinceNoncurrentTime" in cond:
            condition["days_since_noncurrent_time"] = cond["daysSinceNoncurrentTime"]
        if "isLive" in cond:
            condition["with_state"] = "LIVE" if cond["isLive"] else "ARCHIVED"
        out.append({"action": action, "condition": condition})
    return out
