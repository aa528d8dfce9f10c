"""The lakehouse on GCP: GCS zone buckets with tiering, Cloud KMS, usage logs, a BigQuery dataset
with BigLake Iceberg tables, Filestore scratch, Pub/Sub ingestion, and cross-bucket replication.

GCS serves HTTPS only, so no bucket policy is needed for TLS; uniform bucket-level access and
enforced public access prevention replace ACLs and public grants.

Replication uses Storage Transfer Service cross-bucket replication jobs rather than dual-region
buckets: dual-regions pair regions of one continent only (prod serves from us-central1 and
europe-west4), a dual-region would double the cost of zones that need no copy, and a replica
bucket has its own key, location and lifecycle like its AWS counterpart. Replication copies new
and changed objects within minutes (no RPO guarantee); deletes are not replicated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.base import DataSafety, type_token
from components.lakehouse.common import (
    Naming,
    catalog_record,
    replication_targets,
    scratch_record,
    streaming_record,
    zone_records,
)
from components.lakehouse.documents import (
    bigquery_schema,
    gcs_lifecycle_rules,
    gcs_log_lifecycle_rules,
    gcs_rules_to_pulumi,
)
from components.lakehouse.gcs_roles import roles_for
from components.lakehouse.spec import ZONES, StorageSpec

KMS_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"


def _short(role: str) -> str:
    """`roles/storage.legacyBucketReader` -> `legacybucketreader` (a resource name suffix)."""
    return role.rsplit(".", 1)[-1].lower()


USAGE_LOG_WRITER = "group:cloud-storage-analytics@google.com"
"""The Google group that writes GCS usage and storage logs into a log bucket."""


def service_agents(project_number: str) -> dict[str, str]:
    """IAM members of the Google-managed service agents the lakehouse grants access to."""
    return {
        "storage": f"serviceAccount:service-{project_number}@gs-project-accounts.iam.gserviceaccount.com",
        "pubsub": f"serviceAccount:service-{project_number}@gcp-sa-pubsub.iam.gserviceaccount.com",
        "transfer": f"serviceAccount:project-{project_number}@storage-transfer-service.iam.gserviceaccount.com",
    }


@dataclass(frozen=True)
class GcpScratchNetwork:
    """Where the Filestore instance goes: the region's VPC and a zone."""

    network: pulumi.Input[str]
    """The VPC network name."""
    zone: str


def _first_ip(instance: gcp.filestore.Instance) -> pulumi.Output[str | None]:
    """The NFS server address of a Filestore instance (known once it exists)."""
    return instance.networks.apply(lambda nets: next(iter(nets[0].ip_addresses or []), None) if nets else None)


class _GcpZoneStore:
    """The regional core both GCP components share: a key ring and key usable by the GCS service
    agent, a usage-log bucket and one hardened, logged bucket per zone."""

    def __init__(
        self,
        owner: pulumi.ComponentResource,
        naming: Naming,
        spec: StorageSpec,
        zones: Sequence[str],
        *,
        project: str,
        region: str,
        safety: DataSafety,
        labels: dict[str, str],
    ) -> None:
        number = gcp.organizations.get_project_output(
            project_id=project, opts=pulumi.InvokeOptions(parent=owner)
        ).number
        self.agents = number.apply(service_agents)
        ring = gcp.kms.KeyRing(
            naming("keyring"), location=region, project=project, opts=naming.data_opts(owner, "keyring", safety)
        )
        self.key = gcp.kms.CryptoKey(
            naming("key"),
            key_ring=ring.id,
            purpose="ENCRYPT_DECRYPT",
            rotation_period=f"{spec.key_rotation_days * 86400}s",
            labels=labels,
            opts=naming.data_opts(ring, "key", safety),
        )
        agent_access = gcp.kms.CryptoKeyIAMMember(
            naming("key-storage-agent"),
            crypto_key_id=self.key.id,
            role=KMS_ROLE,
            member=self.agents["storage"],
            opts=naming.opts(self.key, "key-storage-agent"),
        )
        retention = gcs_log_lifecycle_rules(spec.access_log_retention_days)
        self.log_bucket = self._bucket(owner, naming, "logs", region, retention, None, labels, safety, [agent_access])
        gcp.storage.BucketIAMMember(
            naming("logs-writer"),
            bucket=self.log_bucket.name,
            role="roles/storage.objectCreator",
            member=USAGE_LOG_WRITER,
            opts=naming.opts(self.log_bucket, "logs-writer"),
        )
        classes = spec.tier_classes("gcp")
        self.buckets: dict[str, gcp.storage.Bucket] = {
            zone: self._bucket(
                owner,
                naming,
                zone,
                region,
                gcs_lifecycle_rules(spec.lifecycle(zone), classes, spec.abort_incomplete_uploads_after_days),
                {"log_bucket": self.log_bucket.name, "log_object_prefix": zone},
                {**labels, "aicloud-zone": zone},
                safety,
                [agent_access],
            )
            for zone in zones
        }

    def _bucket(
        self,
        owner: pulumi.ComponentResource,
        naming: Naming,
        role: str,
        region: str,
        rules: list[dict[str, Any]],
        logging: dict[str, Any] | None,
        labels: dict[str, str],
        safety: DataSafety,
        depends_on: list[pulumi.Resource],
    ) -> gcp.storage.Bucket:
        """A private (uniform access, public access prevention), versioned, CMEK-encrypted
        bucket with lifecycle rules and a 7-day soft-delete window, never force-destroyed."""
        return gcp.storage.Bucket(
            naming(role),
            location=region.upper(),
            storage_class="STANDARD",
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning={"enabled": True},
            encryption={"default_kms_key_name": self.key.id},
            lifecycle_rules=gcs_rules_to_pulumi(rules),
            logging=logging,
            soft_delete_policy={"retention_duration_seconds": 7 * 86400},
            force_destroy=False,
            labels=labels,
            opts=naming.data_opts(owner, role, safety, depends_on=depends_on),
        )

    def records(
        self, spec: StorageSpec, replicated: dict[str, list[str]] | None = None, replica_of: str | None = None
    ) -> list[dict[str, Any]]:
        """The zone records of the plan (see `zone_record`)."""
        buckets = {zone: (b.name, b.name.apply(lambda n: f"gs://{n}")) for zone, b in self.buckets.items()}
        return zone_records(spec, "gcp", buckets, replicated, replica_of)


class GcpLakehouseReplica(pulumi.ComponentResource):
    """Copies of replicated zones in a non-primary GCP region: same hardening and tiers, the
    region's own key (CMEK keys must share the bucket's location) and log bucket."""

    buckets: dict[str, gcp.storage.Bucket]

    def __init__(
        self,
        name: str,
        spec: StorageSpec,
        *,
        zones: Sequence[str],
        region_key: str,
        project: str,
        region: str,
        source_region_key: str,
        safety: DataSafety,
        labels: dict[str, str],
        previous_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        naming = Naming(name, previous_name)
        super().__init__(type_token("storage", "GcpLakehouseReplica"), name, None, naming.component_opts(opts))
        self.cloud, self.region_key, self.region = "gcp", region_key, region
        store = _GcpZoneStore(self, naming, spec, zones, project=project, region=region, safety=safety, labels=labels)
        self.key = store.key
        self.buckets = store.buckets
        self.uris = {z: b.name.apply(lambda n: f"gs://{n}") for z, b in self.buckets.items()}
        self.register_outputs(
            {
                "cloud": "gcp",
                "region": region,
                "keyId": self.key.id,
                "logBucket": store.log_bucket.name,
                "zones": store.records(spec, replica_of=source_region_key),
            }
        )


class GcpLakehouse(pulumi.ComponentResource):
    """The lakehouse of the primary GCP region (one bucket per zone, as on AWS: bucket-level IAM
    needs no prefix conditions, and only replicated zones pay for copies)."""

    buckets: dict[str, gcp.storage.Bucket]
    uris: dict[str, pulumi.Output[str]]
    key: gcp.kms.CryptoKey
    dataset: gcp.bigquery.Dataset | None
    scratch: gcp.filestore.Instance | None
    topic: gcp.pubsub.Topic | None

    def __init__(
        self,
        name: str,
        spec: StorageSpec,
        *,
        project: str,
        region: str,
        safety: DataSafety,
        labels: dict[str, str],
        scratch_network: GcpScratchNetwork | None = None,
        replicas: Sequence[GcpLakehouseReplica] = (),
        previous_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        naming = Naming(name, previous_name)
        super().__init__(type_token("storage", "GcpLakehouse"), name, None, naming.component_opts(opts))
        if spec.scratch is not None and scratch_network is None:
            raise ValueError(f"{name}: storage.scratch needs the region's network (scratch_network)")
        self.project, self.region = project, region
        store = _GcpZoneStore(self, naming, spec, ZONES, project=project, region=region, safety=safety, labels=labels)
        self.key = store.key
        self.buckets = store.buckets
        self.uris = {z: b.name.apply(lambda n: f"gs://{n}") for z, b in self.buckets.items()}
        self.dataset = self._catalog(naming, spec, safety, labels) if spec.catalog else None
        self.scratch = (
            self._scratch(naming, spec, scratch_network, safety, labels) if spec.scratch and scratch_network else None
        )
        self.topic = self._streaming(naming, spec, store, labels) if spec.streaming else None
        replicated = self._replication(naming, spec, store, replicas)
        self.register_outputs(
            {
                "cloud": "gcp",
                "region": region,
                "keyId": self.key.id,
                "logBucket": store.log_bucket.name,
                "zones": store.records(spec, replicated),
                "catalog": catalog_record(spec, "bigquery-biglake"),
                "scratch": scratch_record(spec, "gcp", _first_ip(self.scratch) if self.scratch else None),
                "streaming": streaming_record(spec, "pubsub", self.topic.name if self.topic else None),
            }
        )

    def _catalog(
        self, naming: Naming, spec: StorageSpec, safety: DataSafety, labels: dict[str, str]
    ) -> gcp.bigquery.Dataset:
        """A BigQuery dataset with BigLake-managed Iceberg tables whose Parquet data lives in the
        table's zone bucket, written through a BigLake connection."""
        catalog = spec.catalog
        assert catalog is not None
        dataset = gcp.bigquery.Dataset(
            naming("catalog"),
            dataset_id=catalog.database,
            project=self.project,
            location=self.region,
            description="aicloud lakehouse tables (Apache Iceberg, BigLake)",
            delete_contents_on_destroy=False,
            labels=labels,
            opts=naming.data_opts(self, "catalog", safety),
        )
        if not catalog.tables:
            return dataset
        connection = gcp.bigquery.Connection(
            naming("biglake"),
            connection_id=f"{catalog.database}_biglake",
            project=self.project,
            location=self.region,
            description="BigLake Iceberg tables of the aicloud lakehouse",
            cloud_resource={},
            opts=naming.opts(dataset, "biglake"),
        )
        member = connection.cloud_resource.apply(lambda c: f"serviceAccount:{c.service_account_id}")
        # Bucket read (including storage.buckets.get) and object read/write, as roles computed
        # from their permission lists (components.lakehouse.gcs_roles).
        grants = [
            gcp.storage.BucketIAMMember(
                naming(f"biglake-{zone}-{_short(role)}"),
                bucket=self.buckets[zone].name,
                role=role,
                member=member,
                opts=naming.opts(connection, f"biglake-{zone}-{_short(role)}"),
            )
            for zone in sorted({t.zone for t in catalog.tables})
            for role in roles_for("biglake")
        ]
        for table in catalog.tables:
            role = f"table-{table.name.replace('_', '-')}"
            gcp.bigquery.Table(
                naming(role),
                dataset_id=dataset.dataset_id,
                table_id=table.name,
                project=self.project,
                description=table.description or None,
                deletion_protection=True,
                schema=json.dumps(bigquery_schema(table.columns)),
                biglake_configuration={
                    "connection_id": connection.name,
                    "storage_uri": self.uris[table.zone].apply(lambda u, t=table.name: f"{u}/tables/{t}/"),
                    "file_format": "PARQUET",
                    "table_format": "ICEBERG",
                },
                labels=labels,
                opts=naming.data_opts(dataset, role, safety, depends_on=grants),
            )
        return dataset

    def _scratch(
        self,
        naming: Naming,
        spec: StorageSpec,
        network: GcpScratchNetwork,
        safety: DataSafety,
        labels: dict[str, str],
    ) -> gcp.filestore.Instance:
        """A Filestore instance (NFS) on the region's VPC. Filestore has no bucket link like FSx:
        jobs stage data from the zone buckets themselves."""
        scratch = spec.scratch
        assert scratch is not None
        return gcp.filestore.Instance(
            naming("scratch"),
            location=network.zone,
            project=self.project,
            tier=scratch.filestore_tier,
            file_shares={"name": "scratch", "capacity_gb": scratch.size_gib},
            networks=[{"network": network.network, "modes": ["MODE_IPV4"], "connect_mode": "DIRECT_PEERING"}],
            labels=labels,
            opts=naming.data_opts(self, "scratch", safety),
        )

    def _streaming(
        self, naming: Naming, spec: StorageSpec, store: _GcpZoneStore, labels: dict[str, str]
    ) -> gcp.pubsub.Topic:
        """A topic and a Cloud Storage subscription writing batches under the raw zone's stream
        prefix, as the Pub/Sub service agent (granted create and bucket read on raw only)."""
        streaming = spec.streaming
        assert streaming is not None
        raw = self.buckets["raw"]
        topic = gcp.pubsub.Topic(
            naming("stream"),
            project=self.project,
            message_retention_duration="86400s",
            labels=labels,
            opts=naming.opts(self, "stream"),
        )
        grants = [
            gcp.storage.BucketIAMMember(
                naming(f"stream-{role.split('.')[-1].lower()}"),
                bucket=raw.name,
                role=role,
                member=store.agents["pubsub"],
                opts=naming.opts(topic, f"stream-{role.split('.')[-1].lower()}"),
            )
            for role in ("roles/storage.objectCreator", "roles/storage.legacyBucketReader")
        ]
        gcp.pubsub.Subscription(
            naming("stream-to-raw"),
            topic=topic.id,
            project=self.project,
            ack_deadline_seconds=300,
            message_retention_duration="604800s",
            cloud_storage_config={
                "bucket": raw.name,
                "filename_prefix": streaming.prefix,
                "max_duration": f"{streaming.buffer_seconds}s",
                "max_bytes": streaming.buffer_mib * 1024 * 1024,
            },
            labels=labels,
            opts=naming.opts(topic, "stream-to-raw", depends_on=grants),
        )
        return topic

    def _replication(
        self,
        naming: Naming,
        spec: StorageSpec,
        store: _GcpZoneStore,
        replicas: Sequence[GcpLakehouseReplica],
    ) -> dict[str, list[str]]:
        """One Storage Transfer cross-bucket replication job per (zone, replica); the transfer
        service agent gets the roles that grant what it needs on the source and the replica
        (`gcs_roles.REQUIRED`: object get and list on both, write on the replica) and, as the
        cross-bucket replication guide asks, the Pub/Sub roles for change notifications.
        Returns zone -> replica keys."""
        replicated: dict[str, list[str]] = {}
        agent = store.agents["transfer"]
        if any(zone in r.buckets for zone in spec.replication for r in replicas):
            # Replication jobs watch the source through Pub/Sub: the transfer agent manages the
            # subscription, the Cloud Storage agent publishes the bucket's change notifications.
            for role, member in (("roles/pubsub.editor", agent), ("roles/pubsub.publisher", store.agents["storage"])):
                gcp.projects.IAMMember(
                    naming(f"replication-{role.split('.')[-1]}"),
                    project=self.project,
                    role=role,
                    member=member,
                    opts=naming.opts(self, f"replication-{role.split('.')[-1]}"),
                )
        for zone, targets in replication_targets(spec, replicas):
            replicated[zone] = [r.region_key for r in targets]
            source = self.buckets[zone]
            source_grants = [
                gcp.storage.BucketIAMMember(
                    naming(f"{zone}-transfer-source-{_short(r)}"),
                    bucket=source.name,
                    role=r,
                    member=agent,
                    opts=naming.opts(source, f"{zone}-transfer-source-{_short(r)}"),
                )
                for r in roles_for("transfer-source")
            ]
            for replica in targets:
                role = f"{zone}-to-{replica.region_key}"
                sink_grants = [
                    gcp.storage.BucketIAMMember(
                        naming(f"{role}-sink-{_short(r)}"),
                        bucket=replica.buckets[zone].name,
                        role=r,
                        member=agent,
                        opts=naming.opts(source, f"{role}-sink-{_short(r)}"),
                    )
                    for r in roles_for("transfer-sink")
                ]
                gcp.storage.TransferJob(
                    naming(role),
                    project=self.project,
                    description=f"aicloud: replicate {zone} from {self.region} to {replica.region}",
                    replication_spec={
                        "gcs_data_source": {"bucket_name": source.name},
                        "gcs_data_sink": {"bucket_name": replica.buckets[zone].name},
                        "transfer_options": {"delete_objects_unique_in_sink": False, "overwrite_when": "DIFFERENT"},
                    },
                    opts=naming.opts(source, role, depends_on=[*source_grants, *sink_grants]),
                )
        return replicated
