"""The documents the pure builders generate are accepted by the S3, IAM and KMS APIs (moto,
in process): lifecycle, encryption, versioning, public access block, ownership, bucket policies
(the log bucket's policy is checked by `put_bucket_logging`), replication, and the IAM grammar
of every role policy. Where moto only stores what it is given, the test asserts what the stored
document does (objects written without encryption headers come back encrypted with the zone's key;
logging is refused until the log bucket's policy admits it) or checks it against the cloud's rules
moto does not enforce (lifecycle transition minimums), never that moto echoes the input."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from components.identity import irsa_trust_policy
from components.lakehouse.documents import (
    firehose_role_policy,
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
from components.lakehouse.spec import ZONES
from tests.lakehouse.samples import ACCOUNT, OIDC_ARN, OIDC_ISSUER, full_spec

REGION = "us-east-1"
REPLICA_REGION = "us-west-2"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    """Clients of an in-process moto account (no endpoint overrides, fake credentials)."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield {
            "s3": boto3.client("s3", region_name=REGION),
            "s3_replica": boto3.client("s3", region_name=REPLICA_REGION),
            "iam": boto3.client("iam", region_name=REGION),
            "kms": boto3.client("kms", region_name=REGION),
            "kms_replica": boto3.client("kms", region_name=REPLICA_REGION),
        }


def _bucket(s3, name: str, region: str = REGION) -> str:
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=name, **kwargs)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def _arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


# S3's lifecycle rules (docs: "Transitioning objects using Amazon S3 Lifecycle"; moto does not
# enforce them): minimum days in the source class before a transition, and the class order.
_MIN_DAYS = {"STANDARD_IA": 30, "ONEZONE_IA": 30}
_MIN_GAP_AFTER = {("GLACIER", "DEEP_ARCHIVE"): 90, ("STANDARD_IA", "GLACIER"): 30, ("STANDARD_IA", "DEEP_ARCHIVE"): 30}
_ORDER = ["STANDARD", "INTELLIGENT_TIERING", "STANDARD_IA", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"]


def lifecycle_problems(config: dict) -> list[str]:
    problems = []
    for rule in config["Rules"]:
        steps = [(t["Days"], t["StorageClass"]) for t in rule.get("Transitions", [])]
        for days, cls in steps:
            if days < _MIN_DAYS.get(cls, 0):
                problems.append(f"{rule['ID']}: {cls} after {days} days (minimum {_MIN_DAYS[cls]})")
        for (d1, c1), (d2, c2) in zip(steps, steps[1:], strict=False):
            if _ORDER.index(c2) <= _ORDER.index(c1) or d2 - d1 < _MIN_GAP_AFTER.get((c1, c2), 1):
                problems.append(f"{rule['ID']}: {c1} at {d1} days then {c2} at {d2} days")
        expiry = rule.get("Expiration", {}).get("Days")
        if expiry is not None and steps and expiry <= steps[-1][0]:
            problems.append(f"{rule['ID']}: expires at {expiry} days, before its last transition")
    return problems


def test_the_lifecycle_checker_catches_what_s3_refuses():
    bad = {"Rules": [{"ID": "r", "Transitions": [{"Days": 7, "StorageClass": "STANDARD_IA"}]}]}
    assert lifecycle_problems(bad) == ["r: STANDARD_IA after 7 days (minimum 30)"]
    bad = {
        "Rules": [
            {
                "ID": "r",
                "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}, {"Days": 60, "StorageClass": "DEEP_ARCHIVE"}],
            }
        ]
    }
    assert lifecycle_problems(bad) == ["r: GLACIER at 30 days then DEEP_ARCHIVE at 60 days"]


def test_every_zone_bucket_configuration_is_accepted_and_does_what_it_says(aws):
    s3, kms = aws["s3"], aws["kms"]
    spec = full_spec()
    key_arn = kms.create_key(Policy=json.dumps(kms_key_policy(ACCOUNT, REGION)))["KeyMetadata"]["Arn"]
    for zone in ZONES:
        name = _bucket(s3, f"lake-{zone}")
        lifecycle = s3_lifecycle_configuration(
            zone, spec.lifecycle(zone), spec.tier_classes("aws"), spec.abort_incomplete_uploads_after_days
        )
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=lifecycle)
        assert lifecycle_problems(lifecycle) == [], zone
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=s3_encryption_configuration(key_arn))
        # A writer that sends no encryption headers still gets the zone's key (and the bucket key).
        s3.put_object(Bucket=name, Key="probe", Body=b"x")
        head = s3.head_object(Bucket=name, Key="probe")
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head.get("BucketKeyEnabled")) == (
            "aws:kms",
            key_arn,
            True,
        ), zone
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_ownership_controls(
            Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        )
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps(tls_only_bucket_policy(_arn(name))))
        # The policy refuses plain HTTP on the bucket and on every object in it.
        (deny,) = tls_only_bucket_policy(_arn(name))["Statement"]
        assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
        assert sorted(deny["Resource"]) == [_arn(name), f"{_arn(name)}/*"]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_log_bucket_policy_lets_s3_deliver_access_logs(aws):
    s3 = aws["s3"]
    spec = full_spec()
    logs = _bucket(s3, "lake-access-logs")
    s3.put_bucket_lifecycle_configuration(
        Bucket=logs,
        LifecycleConfiguration=s3_log_lifecycle_configuration(spec.access_log_retention_days, 7),
    )
    sources = [_bucket(s3, f"lake-{zone}") for zone in ZONES]
    # S3 (and moto) refuse logging into a bucket whose policy does not admit the logging service.
    with pytest.raises(s3.exceptions.ClientError, match="InvalidTargetBucketForLogging"):
        s3.put_bucket_logging(
            Bucket=sources[0], BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": logs, "TargetPrefix": "raw/"}}
        )
    s3.put_bucket_policy(Bucket=logs, Policy=json.dumps(log_bucket_policy(_arn(logs), map(_arn, sources), ACCOUNT)))
    for zone, source in zip(ZONES, sources, strict=True):
        status = {"LoggingEnabled": {"TargetBucket": logs, "TargetPrefix": f"{zone}/"}}
        s3.put_bucket_logging(Bucket=source, BucketLoggingStatus=status)
        assert s3.get_bucket_logging(Bucket=source)["LoggingEnabled"] == status["LoggingEnabled"]


def test_replication_configuration_and_role_are_accepted(aws):
    s3, s3_replica, iam = aws["s3"], aws["s3_replica"], aws["iam"]
    key_arn = aws["kms"].create_key()["KeyMetadata"]["Arn"]
    replica_key = aws["kms_replica"].create_key()["KeyMetadata"]["Arn"]
    source = _bucket(s3, "lake-models")
    replica = _bucket(s3_replica, "lake-replica-models", REPLICA_REGION)
    destinations = [{"region": REPLICA_REGION, "bucket_arn": _arn(replica), "key_arn": replica_key}]
    role = iam.create_role(
        RoleName="lake-models-replication",
        AssumeRolePolicyDocument=json.dumps(service_trust_policy("s3.amazonaws.com", ACCOUNT)),
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName="lake-models-replication",
        PolicyName="replication",
        PolicyDocument=json.dumps(replication_role_policy(_arn(source), key_arn, REGION, destinations)),
    )
    config = s3_replication_configuration(role, "models", destinations)
    s3.put_bucket_replication(Bucket=source, ReplicationConfiguration=config)
    # Replicas land in the replica region's bucket, re-encrypted with that region's key; only
    # KMS-encrypted objects (every object, given the default encryption) and delete markers.
    (rule,) = config["Rules"]
    assert rule["Destination"] == {"Bucket": _arn(replica), "EncryptionConfiguration": {"ReplicaKmsKeyID": replica_key}}
    assert rule["SourceSelectionCriteria"] == {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
    assert rule["DeleteMarkerReplication"] == {"Status": "Enabled"} and rule["Status"] == "Enabled"
    # The role may read the source and write the replica with the keys the rule names, nothing else.
    statements = replication_role_policy(_arn(source), key_arn, REGION, destinations)["Statement"]
    resources = {
        r for st in statements for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])
    }
    assert resources <= {_arn(source), f"{_arn(source)}/*", f"{_arn(replica)}/*", key_arn, replica_key}


def test_role_policies_pass_iam_policy_validation(aws):
    """moto validates IAM policy grammar (vendor-prefixed actions, ARN resources, condition keys)."""
    iam = aws["iam"]
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234"
    zones = {z: _arn(f"lake-{z}") for z in ZONES}
    documents = {
        "trainer": s3_workload_policy(
            "trainer", zones, {REGION: key}, {"region": REGION, "account": ACCOUNT, "database": "lake"}
        ),
        "server": s3_workload_policy("server", {"models": zones["models"]}, {REGION: key}),
        "firehose": firehose_role_policy(zones["raw"], key, REGION, "stream/"),
    }
    for name, document in documents.items():
        iam.create_policy(PolicyName=f"lake-{name}", PolicyDocument=json.dumps(document))
    # The validator does reject bad grammar, so passing above means something.
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.create_policy(
            PolicyName="broken",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3GetObject", "Resource": "*"}]}
            ),
        )
    trust = irsa_trust_policy(OIDC_ARN, OIDC_ISSUER, "aicloud-serving", "aicloud-server")
    iam.create_role(RoleName="lake-server", AssumeRolePolicyDocument=json.dumps(trust))
    # Only the server's ServiceAccount, with tokens issued for STS, may assume it.
    (statement,) = trust["Statement"]
    host = OIDC_ISSUER.removeprefix("https://")
    assert statement["Principal"] == {"Federated": OIDC_ARN}
    assert statement["Condition"]["StringEquals"] == {
        f"{host}:sub": "system:serviceaccount:aicloud-serving:aicloud-server",
        f"{host}:aud": "sts.amazonaws.com",
    }
