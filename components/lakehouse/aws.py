"""The lakehouse on AWS: S3 zone buckets with tiering, KMS, access logs, a Glue Iceberg catalog,
FSx for Lustre scratch linked to the buckets, Firehose ingestion, and S3 replication.

`AwsLakehouse` lives in the primary AWS region; `AwsLakehouseReplica` holds the copies of
replicated zones in another region (its own key and log bucket: S3 access logs and SSE-KMS keys
are regional). Every document comes from `components.lakehouse.documents`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.base import DataSafety, merge_tags, type_token
from components.lakehouse.common import (
    Naming,
    catalog_record,
    replication_targets,
    scratch_record,
    streaming_record,
    zone_records,
)
from components.lakehouse.documents import (
    firehose_error_prefix,
    firehose_role_policy,
    glue_columns,
    kms_key_policy,
    log_bucket_policy,
    replication_role_policy,
    s3_encryption_configuration,
    s3_lifecycle_configuration,
    s3_log_lifecycle_configuration,
    s3_replication_configuration,
    service_trust_policy,
    tls_only_bucket_policy,
    to_pulumi_args,
)
from components.lakehouse.spec import ZONES, StorageSpec

LUSTRE_PORTS = ((988, 988), (1018, 1023))
"""TCP ports FSx for Lustre clients and servers use."""


@dataclass(frozen=True)
class AwsScratchNetwork:
    """Where the FSx for Lustre file system goes: the region's VPC and private subnets."""

    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    """Private subnets; the file system uses the first (FSx for Lustre is single-AZ)."""
    cidr: str
    """The VPC range, allowed to reach the Lustre ports."""


@dataclass
class _Bucket:
    """A hardened bucket and the children later resources must wait for."""

    bucket: aws.s3.Bucket
    versioning: aws.s3.BucketVersioning
    policy: aws.s3.BucketPolicy | None = None


def _hardened_bucket(
    owner: pulumi.ComponentResource,
    naming: Naming,
    role: str,
    *,
    encryption: dict[str, Any],
    lifecycle: dict[str, Any],
    safety: DataSafety,
    tags: dict[str, str],
    tls_policy: bool = True,
) -> _Bucket:
    """A private, versioned, encrypted bucket with lifecycle rules and (by default) a TLS-only
    policy: ACLs disabled, all public access blocked, never force-destroyed."""
    name = naming(role)
    bucket = aws.s3.Bucket(
        name,
        force_destroy=False,
        tags=merge_tags(tags, name=name),
        opts=naming.data_opts(owner, role, safety),
    )
    aws.s3.BucketOwnershipControls(
        naming(f"{role}-ownership"),
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        opts=naming.opts(bucket, f"{role}-ownership"),
    )
    block = aws.s3.BucketPublicAccessBlock(
        naming(f"{role}-public-access"),
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=naming.opts(bucket, f"{role}-public-access"),
    )
    versioning = aws.s3.BucketVersioning(
        naming(f"{role}-versioning"),
        bucket=bucket.id,
        versioning_configuration={"status": "Enabled"},
        opts=naming.opts(bucket, f"{role}-versioning"),
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        naming(f"{role}-encryption"),
        bucket=bucket.id,
        rules=to_pulumi_args(encryption)["rules"],
        opts=naming.opts(bucket, f"{role}-encryption"),
    )
    aws.s3.BucketLifecycleConfiguration(
        naming(f"{role}-lifecycle"),
        bucket=bucket.id,
        rules=to_pulumi_args(lifecycle)["rules"],
        opts=naming.opts(bucket, f"{role}-lifecycle", depends_on=[versioning]),
    )
    policy = None
    if tls_policy:
        policy = aws.s3.BucketPolicy(
            naming(f"{role}-policy"),
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_bucket_policy(arn))),
            opts=naming.opts(bucket, f"{role}-policy", depends_on=[block]),
        )
    return _Bucket(bucket, versioning, policy)


class _AwsZoneStore:
    """The regional core both AWS components share: a KMS key, an access-log bucket and one
    hardened, logged bucket per zone."""

    def __init__(
        self,
        owner: pulumi.ComponentResource,
        naming: Naming,
        spec: StorageSpec,
        zones: Sequence[str],
        *,
        region: str,
        account_id: pulumi.Output[str],
        safety: DataSafety,
        tags: dict[str, str],
    ) -> None:
        self.key = aws.kms.Key(
            naming("key"),
            description=f"aicloud lakehouse {naming.name}: default encryption of the zone buckets",
            enable_key_rotation=True,
            rotation_period_in_days=spec.key_rotation_days,
            deletion_window_in_days=30,
            policy=account_id.apply(lambda acct: json.dumps(kms_key_policy(acct, region))),
            tags=merge_tags(tags, name=naming("key")),
            opts=naming.data_opts(owner, "key", safety),
        )
        logs = _hardened_bucket(
            owner,
            naming,
            "logs",
            encryption=s3_encryption_configuration(self.key.arn),
            lifecycle=s3_log_lifecycle_configuration(
                spec.access_log_retention_days, spec.abort_incomplete_uploads_after_days
            ),
            safety=safety,
            tags=tags,
            tls_policy=False,
        )
        classes = spec.tier_classes("aws")
        self.buckets: dict[str, _Bucket] = {
            zone: _hardened_bucket(
                owner,
                naming,
                zone,
                encryption=s3_encryption_configuration(self.key.arn),
                lifecycle=s3_lifecycle_configuration(
                    zone, spec.lifecycle(zone), classes, spec.abort_incomplete_uploads_after_days
                ),
                safety=safety,
                tags=merge_tags(tags, {"aicloud:zone": zone}),
            )
            for zone in zones
        }
        sources = [b.bucket.arn for b in self.buckets.values()]
        log_policy = aws.s3.BucketPolicy(
            naming("logs-policy"),
            bucket=logs.bucket.id,
            policy=pulumi.Output.all(logs.bucket.arn, account_id, *sources).apply(
                lambda a: json.dumps(log_bucket_policy(a[0], a[2:], a[1]))
            ),
            opts=naming.opts(logs.bucket, "logs-policy"),
        )
        for zone, b in self.buckets.items():
            aws.s3.BucketLogging(
                naming(f"{zone}-logging"),
                bucket=b.bucket.id,
                target_bucket=logs.bucket.id,
                target_prefix=f"{zone}/",
                opts=naming.opts(b.bucket, f"{zone}-logging", depends_on=[log_policy]),
            )
        self.log_bucket = logs.bucket

    def records(
        self, spec: StorageSpec, replicated: dict[str, list[str]] | None = None, replica_of: str | None = None
    ) -> list[dict[str, Any]]:
        """The zone records of the plan (see `zone_record`)."""
        buckets = {zone: (b.bucket.id, _uri(b.bucket)) for zone, b in self.buckets.items()}
        return zone_records(spec, "aws", buckets, replicated, replica_of)


def _uri(bucket: aws.s3.Bucket) -> pulumi.Output[str]:
    """`s3://<name>` of a bucket (an S3 bucket's id is its name)."""
    return bucket.id.apply(lambda name: f"s3://{name}")


def _account_id(owner: pulumi.Resource) -> pulumi.Output[str]:
    """The AWS account, looked up through the owner's (regional) provider."""
    return aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=owner)).account_id


class AwsLakehouseReplica(pulumi.ComponentResource):
    """Copies of replicated zones in a non-primary AWS region: same hardening and tiers, the
    region's own KMS key and access-log bucket. Filled by the primary's S3 replication."""

    buckets: dict[str, aws.s3.Bucket]
    key: aws.kms.Key

    def __init__(
        self,
        name: str,
        spec: StorageSpec,
        *,
        zones: Sequence[str],
        region_key: str,
        region: str,
        source_region_key: str,
        safety: DataSafety,
        tags: dict[str, str],
        previous_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        naming = Naming(name, previous_name)
        super().__init__(type_token("storage", "AwsLakehouseReplica"), name, None, naming.component_opts(opts))
        self.cloud, self.region_key, self.region = "aws", region_key, region
        store = _AwsZoneStore(
            self, naming, spec, zones, region=region, account_id=_account_id(self), safety=safety, tags=tags
        )
        self.key = store.key
        self.buckets = {z: b.bucket for z, b in store.buckets.items()}
        self.versioning = {z: b.versioning for z, b in store.buckets.items()}
        self.uris = {z: _uri(b) for z, b in self.buckets.items()}
        self.register_outputs(
            {
                "cloud": "aws",
                "region": region,
                "keyArn": self.key.arn,
                "logBucket": store.log_bucket.id,
                "zones": store.records(spec, replica_of=source_region_key),
            }
        )


class AwsLakehouse(pulumi.ComponentResource):
    """The lakehouse of the primary AWS region.

    One bucket per zone rather than one bucket with zone prefixes: each workload's IAM policy
    names whole buckets (no prefix conditions to get wrong), lifecycle, replication and FSx links
    are per bucket, and only the zones that need it (models, checkpoints) pay for replicas.
    """

    buckets: dict[str, aws.s3.Bucket]
    uris: dict[str, pulumi.Output[str]]
    key: aws.kms.Key
    account_id: pulumi.Output[str]
    database: aws.glue.CatalogDatabase | None
    scratch: aws.fsx.LustreFileSystem | None
    stream: aws.kinesis.FirehoseDeliveryStream | None

    def __init__(
        self,
        name: str,
        spec: StorageSpec,
        *,
        region: str,
        safety: DataSafety,
        tags: dict[str, str],
        scratch_network: AwsScratchNetwork | None = None,
        replicas: Sequence[AwsLakehouseReplica] = (),
        previous_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        naming = Naming(name, previous_name)
        super().__init__(type_token("storage", "AwsLakehouse"), name, None, naming.component_opts(opts))
        if spec.scratch is not None and scratch_network is None:
            raise ValueError(f"{name}: storage.scratch needs the region's network (scratch_network)")
        self.region = region
        self.account_id = _account_id(self)
        store = _AwsZoneStore(
            self, naming, spec, ZONES, region=region, account_id=self.account_id, safety=safety, tags=tags
        )
        self.key = store.key
        self.buckets = {z: b.bucket for z, b in store.buckets.items()}
        self.uris = {z: _uri(b) for z, b in self.buckets.items()}
        self.database = self._catalog(naming, spec, safety, tags) if spec.catalog else None
        self.scratch = (
            self._scratch(naming, spec, scratch_network, safety, tags) if spec.scratch and scratch_network else None
        )
        self.stream = self._streaming(naming, spec, tags) if spec.streaming else None
        replicated = self._replication(naming, spec, store, replicas, tags)
        self.register_outputs(
            {
                "cloud": "aws",
                "region": region,
                "keyArn": self.key.arn,
                "logBucket": store.log_bucket.id,
                "zones": store.records(spec, replicated),
                "catalog": catalog_record(spec, "glue"),
                "scratch": scratch_record(spec, "aws", self.scratch.dns_name if self.scratch else None),
                "streaming": streaming_record(spec, "firehose", self.stream.name if self.stream else None),
            }
        )

    # ----------------------------------------------------------------------------- catalog
    def _catalog(
        self, naming: Naming, spec: StorageSpec, safety: DataSafety, tags: dict[str, str]
    ) -> aws.glue.CatalogDatabase:
        """A Glue database with one Iceberg table per configured table, data in its zone bucket."""
        catalog = spec.catalog
        assert catalog is not None
        database = aws.glue.CatalogDatabase(
            naming("catalog"),
            name=catalog.database,
            description="aicloud lakehouse tables (Apache Iceberg)",
            tags=merge_tags(tags),
            opts=naming.data_opts(self, "catalog", safety),
        )
        for table in catalog.tables:
            role = f"table-{table.name.replace('_', '-')}"
            aws.glue.CatalogTable(
                naming(role),
                name=table.name,
                database_name=database.name,
                description=table.description or None,
                table_type="EXTERNAL_TABLE",
                open_table_format_input={"iceberg_input": {"metadata_operation": "CREATE", "version": "2"}},
                storage_descriptor={
                    "location": self.uris[table.zone].apply(lambda u, t=table.name: f"{u}/tables/{t}/"),
                    "columns": glue_columns(table.columns),
                },
                opts=naming.data_opts(database, role, safety),
            )
        return database

    # ----------------------------------------------------------------------------- scratch
    def _scratch(
        self,
        naming: Naming,
        spec: StorageSpec,
        network: AwsScratchNetwork,
        safety: DataSafety,
        tags: dict[str, str],
    ) -> aws.fsx.LustreFileSystem:
        """FSx for Lustre in the first private subnet, reachable from the VPC on the Lustre ports,
        with each linked zone bucket mounted at `/<zone>` through a data repository association."""
        scratch = spec.scratch
        assert scratch is not None
        rules = [
            {"protocol": "tcp", "from_port": lo, "to_port": hi, "cidr_blocks": [network.cidr], "self": True}
            for lo, hi in LUSTRE_PORTS
        ]
        group = aws.ec2.SecurityGroup(
            naming("scratch-sg"),
            vpc_id=network.vpc_id,
            description="FSx for Lustre: Lustre traffic within the VPC",
            ingress=rules,
            egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": [network.cidr]}],
            tags=merge_tags(tags, name=naming("scratch-sg")),
            opts=naming.opts(self, "scratch-sg"),
        )
        persistent = scratch.fsx_deployment_type == "PERSISTENT_2"
        fs = aws.fsx.LustreFileSystem(
            naming("scratch"),
            storage_capacity=scratch.size_gib,
            deployment_type=scratch.fsx_deployment_type,
            per_unit_storage_throughput=scratch.fsx_throughput_per_tib if persistent else None,
            # SCRATCH_2 is always encrypted with an AWS-managed key; PERSISTENT_2 takes ours.
            kms_key_id=self.key.arn if persistent else None,
            file_system_type_version="2.15",
            data_compression_type="LZ4",
            # One subnet: FSx for Lustre is single-AZ (pulumi-aws 7 takes a single id here).
            subnet_ids=pulumi.Output.from_input(network.subnet_ids).apply(lambda ids: list(ids)[0]),
            security_group_ids=[group.id],
            tags=merge_tags(tags, name=naming("scratch")),
            opts=naming.data_opts(self, "scratch", safety),
        )
        everything = ["NEW", "CHANGED", "DELETED"]
        links = [(z, False) for z in scratch.import_zones] + [(z, True) for z in scratch.export_zones]
        for zone, export in links:
            s3: dict[str, Any] = {"auto_import_policy": {"events": everything}}
            if export:
                s3["auto_export_policy"] = {"events": everything}
            aws.fsx.DataRepositoryAssociation(
                naming(f"scratch-{zone}"),
                file_system_id=fs.id,
                file_system_path=f"/{zone}",
                data_repository_path=self.uris[zone].apply(lambda u: f"{u}/"),
                batch_import_meta_data_on_create=True,
                delete_data_in_filesystem=False,
                s3=s3,
                tags=merge_tags(tags),
                opts=naming.opts(fs, f"scratch-{zone}"),
            )
        return fs

    # --------------------------------------------------------------------------- streaming
    def _streaming(self, naming: Naming, spec: StorageSpec, tags: dict[str, str]) -> aws.kinesis.FirehoseDeliveryStream:
        """A Direct PUT Firehose stream delivering gzip batches under the raw zone's stream prefix."""
        streaming = spec.streaming
        assert streaming is not None
        raw = self.buckets["raw"]
        role = aws.iam.Role(
            naming("stream-role"),
            assume_role_policy=self.account_id.apply(
                lambda acct: json.dumps(service_trust_policy("firehose.amazonaws.com", acct, "sts:ExternalId"))
            ),
            tags=merge_tags(tags),
            opts=naming.opts(self, "stream-role"),
        )
        policy = aws.iam.RolePolicy(
            naming("stream-policy"),
            role=role.id,
            policy=pulumi.Output.all(raw.arn, self.key.arn).apply(
                lambda a: json.dumps(firehose_role_policy(a[0], a[1], self.region, streaming.prefix))
            ),
            opts=naming.opts(role, "stream-policy"),
        )
        return aws.kinesis.FirehoseDeliveryStream(
            naming("stream"),
            destination="extended_s3",
            server_side_encryption={"enabled": True, "key_type": "CUSTOMER_MANAGED_CMK", "key_arn": self.key.arn},
            extended_s3_configuration={
                "role_arn": role.arn,
                "bucket_arn": raw.arn,
                "prefix": f"{streaming.prefix}!{{timestamp:yyyy/MM/dd/HH}}/",
                "error_output_prefix": (
                    f"{firehose_error_prefix(streaming.prefix)}!{{firehose:error-output-type}}/!{{timestamp:yyyy/MM/dd}}/"
                ),
                "buffering_interval": streaming.buffer_seconds,
                "buffering_size": streaming.buffer_mib,
                "compression_format": "GZIP",
                "kms_key_arn": self.key.arn,
            },
            tags=merge_tags(tags),
            opts=naming.opts(self, "stream", depends_on=[policy]),
        )

    # ------------------------------------------------------------------------- replication
    def _replication(
        self,
        naming: Naming,
        spec: StorageSpec,
        store: _AwsZoneStore,
        replicas: Sequence[AwsLakehouseReplica],
        tags: dict[str, str],
    ) -> dict[str, list[str]]:
        """S3 replication of each replicated zone to its replicas, with a role that can read this
        bucket and write only those replicas. Returns zone -> replica region keys."""
        replicated: dict[str, list[str]] = {}
        for zone, targets in replication_targets(spec, replicas):
            replicated[zone] = [r.region_key for r in targets]
            source = store.buckets[zone]
            role = aws.iam.Role(
                naming(f"{zone}-replication-role"),
                assume_role_policy=self.account_id.apply(
                    lambda acct: json.dumps(service_trust_policy("s3.amazonaws.com", acct))
                ),
                tags=merge_tags(tags),
                opts=naming.opts(self, f"{zone}-replication-role"),
            )
            destinations = pulumi.Output.all(
                *[
                    pulumi.Output.all(r.region, r.buckets[zone].arn, r.key.arn).apply(
                        lambda a: {"region": a[0], "bucket_arn": a[1], "key_arn": a[2]}
                    )
                    for r in targets
                ]
            )
            policy = aws.iam.RolePolicy(
                naming(f"{zone}-replication-policy"),
                role=role.id,
                policy=pulumi.Output.all(source.bucket.arn, self.key.arn, destinations).apply(
                    lambda a: json.dumps(replication_role_policy(a[0], a[1], self.region, a[2]))
                ),
                opts=naming.opts(role, f"{zone}-replication-policy"),
            )
            config = pulumi.Output.all(role.arn, destinations).apply(
                lambda a, z=zone: to_pulumi_args(s3_replication_configuration(a[0], z, a[1]))
            )
            aws.s3.BucketReplicationConfig(
                naming(f"{zone}-replication"),
                bucket=source.bucket.id,
                role=config["role"],
                rules=config["rules"],
                opts=naming.opts(
                    source.bucket,
                    f"{zone}-replication",
                    depends_on=[source.versioning, policy, *[r.versioning[zone] for r in targets]],
                ),
            )
        return replicated
