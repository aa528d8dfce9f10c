"""Pure document builders: every lifecycle rule set, bucket and IAM policy, encryption and
replication configuration matches its golden file exactly, and follows the guardrails."""

from __future__ import annotations

import pytest

from components.lakehouse.documents import (
    ZONE_ACCESS,
    gcs_rules_to_pulumi,
    s3_workload_policy,
    snake_case,
    to_pulumi_args,
)
from components.lakehouse.spec import StorageSpec
from tests.lakehouse.samples import POLICY_DOCUMENTS, assert_golden, bucket_arn, documents, star_on_star

DOCS = documents()


@pytest.mark.parametrize("name", sorted(DOCS))
def test_document_matches_golden_file(name):
    assert_golden(name, DOCS[name])


@pytest.mark.parametrize("name", POLICY_DOCUMENTS)
def test_no_policy_grants_every_action_on_every_resource(name):
    assert star_on_star(DOCS[name]) == []


def test_star_on_star_scanner_catches_what_it_must():
    assert star_on_star({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    assert star_on_star({"Statement": {"Effect": "Allow", "NotAction": "iam:*", "Resource": ["*"]}})
    assert not star_on_star({"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]})
    assert not star_on_star({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b/*"}]})


def test_every_zone_bucket_policy_denies_plain_http():
    statement = DOCS["s3-bucket-policy-tls"]["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [bucket_arn("models"), bucket_arn("models") + "/*"]


def test_lifecycle_moves_objects_colder_with_age_and_cleans_up():
    raw = DOCS["s3-lifecycle-raw"]["Rules"][0]
    assert [(t["Days"], t["StorageClass"]) for t in raw["Transitions"]] == [
        (30, "STANDARD_IA"),
        (90, "GLACIER"),
        (365, "DEEP_ARCHIVE"),
    ]
    assert raw["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert raw["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    # Checkpoints keep the last 30 days hot, then expire at the configured age.
    ckpt = DOCS["s3-lifecycle-checkpoints"]["Rules"][0]
    assert ckpt["Transitions"] == [{"Days": 30, "StorageClass": "STANDARD_IA"}]
    assert ckpt["Expiration"] == {"Days": 120}
    gcs = DOCS["gcs-lifecycle-raw"]
    moves = [
        (r["condition"]["age"], r["action"]["storageClass"]) for r in gcs if r["action"]["type"] == "SetStorageClass"
    ]
    assert moves == [(30, "NEARLINE"), (90, "COLDLINE"), (365, "ARCHIVE")]
    # A transition only ever moves data from warmer classes, never back up.
    assert gcs[2]["condition"]["matchesStorageClass"] == ["STANDARD", "NEARLINE", "COLDLINE"]


def test_intelligent_tiering_replaces_standard_ia_as_the_warm_class():
    spec = StorageSpec(aws_warm_class="INTELLIGENT_TIERING")
    assert spec.tier_classes("aws") == {
        "hot": "STANDARD",
        "warm": "INTELLIGENT_TIERING",
        "cold": "GLACIER",
        "archive": "DEEP_ARCHIVE",
    }


def test_workload_grants_follow_least_privilege():
    trainer = {s["Sid"]: s for s in DOCS["iam-trainer"]["Statement"]}
    assert trainer["WriteObjects"]["Resource"] == [bucket_arn("checkpoints") + "/*", bucket_arn("models") + "/*"]
    assert bucket_arn("raw") not in str(DOCS["iam-trainer"])  # the trainer never touches raw data
    assert "s3:DeleteObjectVersion" not in str(DOCS["iam-trainer"])  # versions survive any mistake
    server = DOCS["iam-server"]["Statement"]
    assert [s["Sid"] for s in server] == ["ListZones", "ReadObjects", "UseZoneKeyUsEast1"]
    assert server[1]["Resource"] == [bucket_arn("models") + "/*"]
    assert server[2]["Action"] == ["kms:Decrypt"]
    assert DOCS["gcs-bindings-server"] == [{"zone": "models", "role": "roles/storage.objectViewer"}]
    assert set(ZONE_ACCESS["server"]) == {"models"}


def test_workload_policy_refuses_missing_zone_buckets():
    with pytest.raises(ValueError, match="trainer needs the buckets of zones checkpoints, curated, features"):
        s3_workload_policy("trainer", {"models": bucket_arn("models")}, {})


def test_irsa_trust_is_scoped_to_one_service_account():
    condition = DOCS["iam-trust-trainer"]["Statement"][0]["Condition"]["StringEquals"]
    host = "oidc.eks.us-east-1.amazonaws.com/id/ABCDEF0123456789"
    assert condition == {
        f"{host}:sub": "system:serviceaccount:aicloud-training:aicloud-trainer",
        f"{host}:aud": "sts.amazonaws.com",
    }


def test_s3_documents_convert_to_pulumi_arguments():
    assert snake_case("KMSMasterKeyID") == "kms_master_key_id"
    assert snake_case("SseKmsEncryptedObjects") == "sse_kms_encrypted_objects"
    assert snake_case("ID") == "id"
    assert to_pulumi_args(DOCS["s3-encryption"]) == {
        "rules": [
            {
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms",
                    "kms_master_key_id": DOCS["s3-encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"][
                        "KMSMasterKeyID"
                    ],
                },
                "bucket_key_enabled": True,
            }
        ]
    }
    rule = to_pulumi_args(DOCS["s3-replication-models"])["rules"][0]
    assert rule["destination"]["encryption_configuration"] == {
        "replica_kms_key_id": DOCS["s3-replication-models"]["Rules"][0]["Destination"]["EncryptionConfiguration"][
            "ReplicaKmsKeyID"
        ]
    }


def test_gcs_rules_convert_to_pulumi_arguments():
    rules = gcs_rules_to_pulumi(DOCS["gcs-lifecycle-checkpoints"])
    assert rules == [
        {
            "action": {"type": "SetStorageClass", "storage_class": "NEARLINE"},
            "condition": {"age": 30, "matches_storage_classes": ["STANDARD"]},
        },
        {"action": {"type": "Delete"}, "condition": {"age": 120, "with_state": "LIVE"}},
        {"action": {"type": "Delete"}, "condition": {"days_since_noncurrent_time": 14, "with_state": "ARCHIVED"}},
        {"action": {"type": "AbortIncompleteMultipartUpload"}, "condition": {"age": 7}},
    ]
