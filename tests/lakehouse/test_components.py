"""Lakehouse and identity components under the mock engine: what each bucket, key, table, file
system, stream and replica looks like, who may do what, that everything stays under the region's
provider, that data is guarded, and that a rename moves resources instead of replacing them."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import pytest

from components.base import DataSafety
from components.identity import EksWorkloadIdentity, GkeWorkloadIdentity
from components.lakehouse import (
    AwsLakehouse,
    AwsLakehouseReplica,
    AwsScratchNetwork,
    GcpLakehouse,
    GcpLakehouseReplica,
    GcpScratchNetwork,
    StorageSpec,
)
from components.lakehouse.documents import gcs_workload_bindings, s3_lifecycle_configuration, to_pulumi_args
from components.lakehouse.gcs_roles import REQUIRED, missing
from components.lakehouse.spec import ZONES
from stacks.plan import record as record_program
from stacks.steps.storage import DATA_HOLDING_TYPES
from tests.conftest import Recorded
from tests.lakehouse.samples import full_spec

SAFETY = DataSafety(protect=True, retain_on_delete=True)
BUCKET = "aws:s3/bucket:Bucket"
GCS_BUCKET = "gcp:storage/bucket:Bucket"


def _camel(value):
    """Pulumi snake_case arguments as the engine sees them (camelCase keys)."""
    if isinstance(value, dict):
        return {k.split("_")[0] + "".join(p.title() for p in k.split("_")[1:]): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def aws_program(spec: StorageSpec, name: str = "lake", previous: str | None = None, safety: DataSafety = SAFETY):
    def program():
        use1 = aws.Provider("aws-use1", region="us-east-1")
        usw2 = aws.Provider("aws-usw2", region="us-west-2")
        replica = AwsLakehouseReplica(
            f"{name}-replica",
            spec,
            zones=["models"],
            region_key="aws-usw2",
            region="us-west-2",
            source_region_key="aws-use1",
            safety=safety,
            tags={"team": "ml"},
            previous_name=f"{previous}-replica" if previous else None,
            opts=pulumi.ResourceOptions(providers=[usw2]),
        )
        AwsLakehouse(
            name,
            spec,
            region="us-east-1",
            safety=safety,
            tags={"team": "ml"},
            scratch_network=AwsScratchNetwork("vpc-1", ["subnet-a", "subnet-b"], "10.0.0.0/16"),
            replicas=[replica],
            previous_name=previous,
            opts=pulumi.ResourceOptions(providers=[use1]),
        )

    return program


def gcp_program(spec: StorageSpec, name: str = "lake", previous: str | None = None):
    def program():
        usc1 = gcp.Provider("gcp-usc1", project="acme-ml-test", region="us-central1")
        euw4 = gcp.Provider("gcp-euw4", project="acme-ml-test", region="europe-west4")
        replica = GcpLakehouseReplica(
            f"{name}-replica",
            spec,
            zones=["models"],
            region_key="gcp-euw4",
            project="acme-ml-test",
            region="europe-west4",
            source_region_key="gcp-usc1",
            safety=SAFETY,
            labels={"team": "ml"},
            previous_name=f"{previous}-replica" if previous else None,
            opts=pulumi.ResourceOptions(providers=[euw4]),
        )
        GcpLakehouse(
            name,
            spec,
            project="acme-ml-test",
            region="us-central1",
            safety=SAFETY,
            labels={"team": "ml"},
            scratch_network=GcpScratchNetwork("vpc", "us-central1-a"),
            replicas=[replica],
            previous_name=previous,
            opts=pulumi.ResourceOptions(providers=[usc1]),
        )

    return program


@pytest.fixture(scope="module")
def spec() -> StorageSpec:
    return full_spec()


def _recorded(program) -> Recorded:
    return Recorded(record_program(program, stack="test"))


@pytest.fixture(scope="module")
def aws_regs(spec):
    """The full AWS lakehouse with a replica, recorded once for the module's read-only checks."""
    return _recorded(aws_program(spec))


@pytest.fixture(scope="module")
def gcp_regs(spec):
    return _recorded(gcp_program(spec))


# ---------------------------------------------------------------------------------------- AWS
def test_aws_lakehouse_has_one_bucket_per_zone_plus_access_logs(aws_regs):
    names = sorted(r.name for r in aws_regs.of_type(BUCKET) if r.name.startswith("lake-") and "replica" not in r.name)
    assert names == sorted([f"lake-{z}" for z in ZONES] + ["lake-logs"])


def test_every_s3_bucket_is_private_versioned_encrypted_tls_only_and_never_force_destroyed(aws_regs):
    for bucket in aws_regs.of_type(BUCKET):
        assert bucket.inputs["forceDestroy"] is False, bucket.name
        children = {r.type.split(":")[-1]: r for r in aws_regs.children_of(bucket)}
        assert children["BucketVersioning"].inputs["versioningConfiguration"] == {"status": "Enabled"}
        block = children["BucketPublicAccessBlock"].inputs
        assert all(
            block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )
        assert children["BucketOwnershipControls"].inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
        sse = children["BucketServerSideEncryptionConfiguration"].inputs["rules"][0]
        assert sse["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
        assert sse["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].endswith("-key.arn}")
        policies = [
            r
            for r in aws_regs.of_type("aws:s3/bucketPolicy:BucketPolicy")
            if r.inputs["bucket"] == f"${{{bucket.name}.id}}"
        ]
        statements = [s for p in policies for s in json.loads(p.inputs["policy"])["Statement"]]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
        )


def test_zone_buckets_log_to_the_log_bucket_under_their_zone_prefix(aws_regs):
    logging = {r.inputs["bucket"]: r.inputs for r in aws_regs.of_type("aws:s3/bucketLogging:BucketLogging")}
    for zone in ZONES:
        assert logging[f"${{lake-{zone}.id}}"] == {
            "bucket": f"${{lake-{zone}.id}}",
            "targetBucket": "${lake-logs.id}",
            "targetPrefix": f"{zone}/",
        }
    # Log delivery waits for the log bucket policy that admits the S3 logging service.
    log_policy = aws_regs.named("lake-logs-policy")
    assert all(log_policy.urn in aws_regs.named(f"lake-{z}-logging").depends_on for z in ZONES)


def test_lifecycle_rules_are_the_pure_documents(aws_regs, spec):
    for zone in ZONES:
        expected = s3_lifecycle_configuration(zone, spec.lifecycle(zone), spec.tier_classes("aws"), 7)
        assert aws_regs.named(f"lake-{zone}-lifecycle").inputs["rules"] == _camel(to_pulumi_args(expected)["rules"])


def test_data_holding_resources_are_protected_and_retained_and_their_settings_are_not(aws_regs):
    data = [r for r in aws_regs if r.type in DATA_HOLDING_TYPES]
    assert {r.type for r in data} == {
        BUCKET,
        "aws:kms/key:Key",
        "aws:glue/catalogDatabase:CatalogDatabase",
        "aws:glue/catalogTable:CatalogTable",
        "aws:fsx/lustreFileSystem:LustreFileSystem",
    }
    assert all(r.protect and r.retain_on_delete for r in data)
    settings = [
        r for r in aws_regs if r.custom and r.type not in DATA_HOLDING_TYPES and not r.type.startswith("pulumi:")
    ]
    assert settings and not any(r.protect for r in settings)


def test_safety_comes_from_the_stack(record, spec):
    regs = record(aws_program(spec, safety=DataSafety(protect=False, retain_on_delete=True)))
    data = [r for r in regs if r.type in DATA_HOLDING_TYPES]
    assert data and all(r.retain_on_delete and not r.protect for r in data)


def test_every_aws_resource_uses_its_regions_provider(aws_regs):
    providers = {r.urn: r.inputs["region"] for r in aws_regs.of_type("pulumi:providers:aws")}
    for reg in aws_regs:
        if reg.custom and reg.type.startswith("aws:"):
            expected = "us-west-2" if reg.name.startswith("lake-replica") else "us-east-1"
            assert providers.get(reg.provider) == expected, reg.name


def test_key_rotates_and_its_policy_admits_log_delivery_and_fsx(aws_regs):
    key = aws_regs.named("lake-key")
    assert key.inputs["enableKeyRotation"] is True and key.inputs["rotationPeriodInDays"] == 365
    sids = [s["Sid"] for s in json.loads(key.inputs["policy"])["Statement"]]
    assert sids == ["AccountAdministersKeyThroughIam", "S3ServerAccessLogDelivery", "FsxLustreDataRepositoryAccess"]


def test_glue_tables_are_iceberg_with_the_configured_schema(aws_regs):
    table = aws_regs.one("aws:glue/catalogTable:CatalogTable")
    assert table.inputs["name"] == "events" and table.inputs["databaseName"] == "lake_test"
    assert table.inputs["openTableFormatInput"] == {"icebergInput": {"metadataOperation": "CREATE", "version": "2"}}
    sd = table.inputs["storageDescriptor"]
    assert sd["location"] == "s3://${lake-curated.id}/tables/events/"
    assert [(c["name"], c["type"]) for c in sd["columns"]] == [
        ("event_id", "string"),
        ("event_time", "timestamp"),
        ("count", "bigint"),
        ("score", "decimal(9,6)"),
    ]


def test_fsx_scratch_is_sized_from_config_and_linked_to_the_zone_buckets(aws_regs):
    fs = aws_regs.one("aws:fsx/lustreFileSystem:LustreFileSystem")
    assert fs.inputs["storageCapacity"] == 4800 and fs.inputs["deploymentType"] == "PERSISTENT_2"
    assert fs.inputs["kmsKeyId"] == "${lake-key.arn}" and fs.inputs["subnetIds"] == "subnet-a"
    links = {
        r.inputs["fileSystemPath"]: r.inputs
        for r in aws_regs.of_type("aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation")
    }
    assert sorted(links) == ["/checkpoints", "/curated", "/features"]
    assert links["/curated"]["dataRepositoryPath"] == "s3://${lake-curated.id}/"
    assert "autoExportPolicy" not in links["/curated"]["s3"]
    assert links["/checkpoints"]["s3"]["autoExportPolicy"] == {"events": ["NEW", "CHANGED", "DELETED"]}
    assert all(link["deleteDataInFilesystem"] is False for link in links.values())
    group = aws_regs.one("aws:ec2/securityGroup:SecurityGroup")
    assert {(r["fromPort"], r["toPort"]) for r in group.inputs["ingress"]} == {(988, 988), (1018, 1023)}
    assert all(r["cidrBlocks"] == ["10.0.0.0/16"] for r in group.inputs["ingress"] + group.inputs["egress"])


def test_firehose_streams_into_the_raw_zone_prefix_encrypted(aws_regs):
    stream = aws_regs.one("aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream")
    s3 = stream.inputs["extendedS3Configuration"]
    assert s3["bucketArn"] == "${lake-raw.arn}" and s3["prefix"].startswith("stream/")
    assert (s3["bufferingInterval"], s3["bufferingSize"]) == (120, 16)
    assert stream.inputs["serverSideEncryption"]["keyType"] == "CUSTOMER_MANAGED_CMK"
    role_policy = json.loads(aws_regs.named("lake-stream-policy").inputs["policy"])
    deliver = next(s for s in role_policy["Statement"] if s["Sid"] == "DeliverObjects")
    assert deliver["Resource"] == ["${lake-raw.arn}/stream/*", "${lake-raw.arn}/stream-errors/*"]


def test_models_replicate_to_the_replica_region_with_its_key(aws_regs):
    config = aws_regs.one("aws:s3/bucketReplicationConfig:BucketReplicationConfig")
    assert config.inputs["bucket"] == "${lake-models.id}"
    rule = config.inputs["rules"][0]
    assert rule["destination"] == {
        "bucket": "${lake-replica-models.arn}",
        "encryptionConfiguration": {"replicaKmsKeyId": "${lake-replica-key.arn}"},
    }
    versioning = {aws_regs.named("lake-models-versioning").urn, aws_regs.named("lake-replica-models-versioning").urn}
    assert versioning <= set(config.depends_on)
    policy = json.loads(aws_regs.named("lake-models-replication-policy").inputs["policy"])
    write = next(s for s in policy["Statement"] if s["Sid"] == "WriteReplicas")
    assert write["Resource"] == ["${lake-replica-models.arn}/*"]


def test_component_outputs_describe_zones_tiers_and_replicas(aws_regs):
    out = aws_regs.one("aicloud:storage:AwsLakehouse").outputs
    models = next(z for z in out["zones"] if z["zone"] == "models")
    assert models["uri"] == "s3://${lake-models.id}" and models["replicatedTo"] == ["aws-usw2"]
    assert [t["storageClass"] for t in models["tiers"]] == ["STANDARD", "STANDARD_IA"]
    assert out["scratch"]["sizeGib"] == 4800 and out["streaming"]["kind"] == "firehose"


# ---------------------------------------------------------------------------------------- GCP
def test_every_gcs_bucket_is_private_versioned_cmek_encrypted_and_logged(gcp_regs):
    buckets = gcp_regs.of_type(GCS_BUCKET)
    assert len(buckets) == 8  # five zones + logs, replica models + logs
    for b in buckets:
        i = b.inputs
        assert i["uniformBucketLevelAccess"] is True and i["publicAccessPrevention"] == "enforced"
        assert i["versioning"] == {"enabled": True} and i["forceDestroy"] is False
        assert i["encryption"]["defaultKmsKeyName"].endswith("-key.id}")
        assert b.protect and b.retain_on_delete
        if not b.name.endswith("-logs"):
            assert i["logging"]["logBucket"].endswith("-logs.name}")


def test_gcs_service_agent_may_use_the_key_before_any_bucket_exists(gcp_regs):
    grant = gcp_regs.named("lake-key-storage-agent")
    assert grant.inputs["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    assert (
        grant.inputs["member"] == "serviceAccount:service-${project.number}@gs-project-accounts.iam.gserviceaccount.com"
    )
    assert grant.urn in gcp_regs.named("lake-models").depends_on


def test_gcs_lifecycle_walks_standard_nearline_coldline_archive(gcp_regs):
    rules = gcp_regs.named("lake-raw").inputs["lifecycleRules"]
    moves = [
        (r["condition"]["age"], r["action"]["storageClass"]) for r in rules if r["action"]["type"] == "SetStorageClass"
    ]
    assert moves == [(30, "NEARLINE"), (90, "COLDLINE"), (365, "ARCHIVE")]


def test_bigquery_biglake_iceberg_tables_and_connection_grants(gcp_regs):
    table = gcp_regs.one("gcp:bigquery/table:Table")
    assert table.inputs["biglakeConfiguration"] == {
        "connectionId": "${lake-biglake.name}",
        "storageUri": "gs://${lake-curated.name}/tables/events/",
        "fileFormat": "PARQUET",
        "tableFormat": "ICEBERG",
    }
    assert [f["type"] for f in json.loads(table.inputs["schema"])] == ["STRING", "TIMESTAMP", "INT64", "NUMERIC"]
    grants = [r for r in gcp_regs.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
              if r.inputs["member"] == "serviceAccount:${lake-biglake.serviceAccountId}"]  # fmt: skip
    assert grants and {g.inputs["bucket"] for g in grants} == {"${lake-curated.name}"}
    # Bucket read including storage.buckets.get, object read and write (BigQuery Iceberg tables).
    assert missing([g.inputs["role"] for g in grants], REQUIRED["biglake"]) == set()


def test_the_transfer_agent_can_read_the_source_and_write_the_replica(gcp_regs):
    agent = "serviceAccount:project-${project.number}@storage-transfer-service.iam.gserviceaccount.com"
    by_bucket: dict[str, list[str]] = {}
    for r in gcp_regs.of_type("gcp:storage/bucketIAMMember:BucketIAMMember"):
        if "storage-transfer-service" in str(r.inputs["member"]):
            by_bucket.setdefault(r.inputs["bucket"], []).append(r.inputs["role"])
    assert missing(by_bucket["${lake-models.name}"], REQUIRED["transfer-source"]) == set()
    assert missing(by_bucket["${lake-replica-models.name}"], REQUIRED["transfer-sink"]) == set()
    assert "roles/storage.legacyBucketOwner" not in {r for roles in by_bucket.values() for r in roles}
    assert agent  # the member the component names (project number of the stack's project)


def test_filestore_pubsub_and_transfer_replication(gcp_regs):
    fs = gcp_regs.one("gcp:filestore/instance:Instance")
    assert fs.inputs["fileShares"]["capacityGb"] == 4800 and fs.inputs["location"] == "us-central1-a"
    sub = gcp_regs.one("gcp:pubsub/subscription:Subscription").inputs["cloudStorageConfig"]
    assert sub == {
        "bucket": "${lake-raw.name}",
        "filenamePrefix": "stream/",
        "maxDuration": "120s",
        "maxBytes": 16 * 1024 * 1024,
    }
    job = gcp_regs.one("gcp:storage/transferJob:TransferJob").inputs["replicationSpec"]
    assert job["gcsDataSource"] == {"bucketName": "${lake-models.name}"}
    assert job["gcsDataSink"] == {"bucketName": "${lake-replica-models.name}"}


# ------------------------------------------------------------------------------------ renames
@pytest.mark.parametrize("program", [aws_program, gcp_program], ids=["aws", "gcp"])
def test_renaming_a_lakehouse_plans_no_replacement(record, spec, program):
    before = record(program(spec, name="lake"))
    after = record(program(spec, name="lakehouse", previous="lake"))
    old = {r.urn for r in before if not r.type.startswith("pulumi:providers:")}
    renamed = [r for r in after if not r.type.startswith("pulumi:providers:")]
    assert len(renamed) == len(old)
    for reg in renamed:
        assert reg.urn not in old, reg.urn
        matches = old & set(reg.aliases)
        assert len(matches) == 1, f"{reg.urn} keeps no old resource: {reg.aliases}"
    assert {u for r in renamed for u in r.aliases} >= old  # every old resource is carried over


# ---------------------------------------------------------------------------------- identities
def test_irsa_identity_trusts_exactly_its_service_account(record):
    def program():
        cluster = k8s.Provider("cluster", kubeconfig="{}")
        EksWorkloadIdentity(
            "use1-trainer",
            "trainer",
            oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/oidc.eks.example/id/X",
            oidc_issuer="https://oidc.eks.example/id/X",
            policy=json.dumps({"Version": "2012-10-17", "Statement": []}),
            zone_uris={"models": pulumi.Output.from_input("s3://models")},
            opts=pulumi.ResourceOptions(providers=[cluster]),
        )

    regs = record(program)
    trust = json.loads(regs.one("aws:iam/role:Role").inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Federated": "arn:aws:iam::123456789012:oidc-provider/oidc.eks.example/id/X"}
    assert trust["Condition"]["StringEquals"] == {
        "oidc.eks.example/id/X:sub": "system:serviceaccount:aicloud-training:aicloud-trainer",
        "oidc.eks.example/id/X:aud": "sts.amazonaws.com",
    }
    sa = regs.one("kubernetes:core/v1:ServiceAccount")
    assert sa.inputs["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "${use1-trainer-role.arn}"}
    assert (sa.inputs["metadata"]["name"], sa.inputs["metadata"]["namespace"]) == (
        "aicloud-trainer",
        "aicloud-training",
    )
    ns = regs.one("kubernetes:core/v1:Namespace")
    assert ns.inputs["metadata"]["name"] == "aicloud-training"
    cluster = regs.one("pulumi:providers:kubernetes")
    assert sa.provider == ns.provider == cluster.urn


def test_gke_identity_binds_its_service_account_and_grants_bucket_roles(record):
    def program():
        cluster = k8s.Provider("cluster", kubeconfig="{}")
        GkeWorkloadIdentity(
            "usc1-server",
            "server",
            project="acme-ml-test",
            account_id="usc1-server",
            bucket_roles=[(b["zone"], "lake-models", b["role"]) for b in gcs_workload_bindings("server")],
            zone_uris={"models": pulumi.Output.from_input("gs://lake-models")},
            opts=pulumi.ResourceOptions(providers=[cluster]),
        )

    regs = record(program)
    wi = regs.one("gcp:serviceaccount/iAMMember:IAMMember")
    assert wi.inputs["role"] == "roles/iam.workloadIdentityUser"
    assert wi.inputs["member"] == "serviceAccount:acme-ml-test.svc.id.goog[aicloud-serving/aicloud-server]"
    grant = regs.one("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert (grant.inputs["bucket"], grant.inputs["role"]) == ("lake-models", "roles/storage.objectViewer")
    assert grant.inputs["member"] == "serviceAccount:${usc1-server-gsa.email}"
    sa = regs.one("kubernetes:core/v1:ServiceAccount")
    assert sa.inputs["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": "${usc1-server-gsa.email}"}


def test_an_identity_mounts_a_token_only_for_a_workload_that_calls_the_api(record):
    """`calls_api` narrows API_USERS per deployment (an agent without a canary); claiming API
    calls for a workload API_USERS does not list fails, naming the allowed ones."""
    from components.identity import API_ACCESS, API_USERS, token_use

    assert token_use("retrain-agent") == API_USERS["retrain-agent"]
    assert token_use("retrain-agent", calls_api=False) is None
    assert token_use("server") is None and token_use("server", calls_api=False) is None
    with pytest.raises(ValueError, match=r"'server'.*allowed with calls_api: retrain, retrain-agent"):
        token_use("server", calls_api=True)

    def program():
        cluster = k8s.Provider("cluster", kubeconfig="{}")
        for name, calls in (("quiet", False), ("patching", True)):
            EksWorkloadIdentity(
                f"use1-{name}-agent",
                "retrain-agent",
                oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/oidc.eks.example/id/X",
                oidc_issuer="https://oidc.eks.example/id/X",
                policy=json.dumps({"Version": "2012-10-17", "Statement": []}),
                zone_uris={"models": pulumi.Output.from_input("s3://models")},
                namespace_name=f"ns-{name}",
                calls_api=calls,
                opts=pulumi.ResourceOptions(providers=[cluster]),
            )

    accounts = {r.name: r.inputs for r in record(program).of_type("kubernetes:core/v1:ServiceAccount")}
    quiet, patching = accounts["use1-quiet-agent-sa"], accounts["use1-patching-agent-sa"]
    assert quiet["automountServiceAccountToken"] is False and API_ACCESS not in quiet["metadata"]["annotations"]
    assert patching["automountServiceAccountToken"] is True
    assert patching["metadata"]["annotations"][API_ACCESS] == API_USERS["retrain-agent"]
