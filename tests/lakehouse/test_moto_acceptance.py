"""The documents the pure builders generate are accepted by the S3, IAM and KMS APIs (moto,
in process): lifecycle, encryption, versioning, public access block, ownership, bucket policies
(the log bucket's policy is checked by `put_bucket_logging`), replication, and the IAM grammar
of every role policy. Each put is read back and compared."""

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


def test_every_zone_bucket_configuration_is_accepted_and_read_back(aws):
    s3, kms = aws["s3"], aws["kms"]
    spec = full_spec()
    key_arn = kms.create_key(Policy=json.dumps(kms_key_policy(ACCOUNT, REGION)))["KeyMetadata"]["Arn"]
    policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    assert policy == kms_key_policy(ACCOUNT, REGION)
    for zone in ZONES:
        name = _bucket(s3, f"lake-{zone}")
        lifecycle = s3_lifecycle_configuration(
            zone, spec.lifecycle(zone), spec.tier_classes("aws"), spec.abort_incomplete_uploads_after_days
        )
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=lifecycle)
        assert s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"] == lifecycle["Rules"]
        encryption = s3_encryption_configuration(key_arn)
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=encryption)
        got = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]
        assert got["Rules"] == encryption["Rules"]
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
        assert json.loads(s3.get_bucket_policy(Bucket=name)["Policy"]) == tls_only_bucket_policy(_arn(name))


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
    got = s3.get_bucket_replication(Bucket=source)["ReplicationConfiguration"]
    assert got["Role"] == role
    assert got["Rules"][0]["Destination"] == config["Rules"][0]["Destination"]
    # (moto keeps ID, priority, filter and destination; it drops SourceSelectionCriteria and
    # DeleteMarkerReplication, which the golden file pins instead.)
    for key in ("ID", "Priority", "Status", "Filter"):
        assert got["Rules"][0][key] == config["Rules"][0][key], key


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
    role = iam.create_role(RoleName="lake-server", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    assert role["AssumeRolePolicyDocument"] == trust
