"""The tiered-storage lakehouse: one cloud-neutral spec (`StorageSpec`), pure document builders
(`documents`), and its AWS (`AwsLakehouse`, `AwsLakehouseReplica`) and GCP (`GcpLakehouse`,
`GcpLakehouseReplica`) implementations.

Layout: one bucket per zone (raw, curated, features, checkpoints, models) in the primary region
of each cloud, not one bucket with zone prefixes. Per-zone buckets let IAM grant whole buckets
(no prefix conditions, which GCS supports only through IAM conditions), give each zone its own
lifecycle, replication and scratch link, and let only the zones that need copies (models,
checkpoints) be replicated. The price is more buckets to name, which the components do.
"""

from components.lakehouse.aws import AwsLakehouse, AwsLakehouseReplica, AwsScratchNetwork
from components.lakehouse.gcp import GcpLakehouse, GcpLakehouseReplica, GcpScratchNetwork
from components.lakehouse.spec import DEFAULT_LIFECYCLE, ZONES, StorageField, StorageSpec

__all__ = [
    "DEFAULT_LIFECYCLE",
    "ZONES",
    "AwsLakehouse",
    "AwsLakehouseReplica",
    "AwsScratchNetwork",
    "GcpLakehouse",
    "GcpLakehouseReplica",
    "GcpScratchNetwork",
    "StorageField",
    "StorageSpec",
]
