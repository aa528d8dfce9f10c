"""Data-safety guardrails: data-holding resources protected in prod, object versioning on, and no
flag that deletes the data together with the resource."""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation

from components.base import DATA_HOLDING
from policies.common import UNKNOWN, Res, Rule, StackView, dig, environment, truthy
from policies.security import GCS_BUCKET, S3_BUCKETS

ENVIRONMENT_CONFIG = {
    "environment": {
        "type": "string",
        "enum": ["dev", "staging", "prod"],
        "description": "The stack's environment (aicloud:environment); defaults to the stack name.",
    }
}

S3_VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")


def protected_in_prod(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    data = [r for r in view.resources if r.type in DATA_HOLDING]
    if not data or environment(config, data[0].urn) != "prod":
        return
    for res in data:
        if not res.protect:
            report(
                f"{DATA_HOLDING[res.type]} '{res.name}' holds data but is not protected in this prod stack, so a "
                "change could delete or replace it. Create it with components.base.data_opts (protect is on in "
                "prod) or set the protect resource option.",
                res.urn,
            )


CLUSTERS = {"aws:eks/cluster:Cluster": "EKS cluster", "gcp:container/cluster:Cluster": "GKE cluster"}
"""Cluster types with a `deletionProtection` flag (deleting one deletes every workload and secret in it)."""


def clusters_deletion_protected_in_prod(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    clusters = view.of_type(*CLUSTERS)
    if not clusters or environment(config, clusters[0].urn) != "prod":
        return
    for res in clusters:
        value = truthy(res.props.get("deletionProtection"))
        if value is not True and value is not UNKNOWN:
            report(
                f"{CLUSTERS[res.type]} '{res.name}' has deletionProtection off in this prod stack, so one "
                "delete takes down every workload on it. Leave cluster.deletionProtection unset (on in prod) "
                "or set it to true.",
                res.urn,
            )


def s3_versioning(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    buckets = view.of_type(*S3_BUCKETS)
    status: dict[str, Any] = {}
    for versioning in view.of_type(*S3_VERSIONING):
        value = dig(versioning.props, "versioningConfiguration.status")
        for bucket in view.referenced(versioning, "bucket", buckets):
            status[bucket.urn] = value
    for bucket in buckets:
        inline = truthy(dig(bucket.props, "versioning.enabled"))
        value = status.get(bucket.urn, "Enabled" if inline is True else UNKNOWN if inline is UNKNOWN else None)
        if value in ("Enabled", UNKNOWN):
            continue
        if value is None:
            report(
                f"S3 bucket '{bucket.name}' has no versioning, so an overwrite or a delete loses the object. Add "
                "an aws.s3.BucketVersioning with versioningConfiguration.status 'Enabled'.",
                bucket.urn,
            )
        else:
            report(
                f"S3 bucket '{bucket.name}' has versioning '{value}'. Set versioningConfiguration.status to "
                "'Enabled' so overwritten and deleted objects can be recovered.",
                bucket.urn,
            )


def gcs_versioning(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    enabled = truthy(dig(res.props, "versioning.enabled"))
    if enabled is not True and enabled is not UNKNOWN:
        report(
            f"GCS bucket '{res.name}' has no object versioning, so an overwrite or a delete loses the object. "
            "Set versioning.enabled to true (and let lifecycle rules expire old versions)."
        )


DESTROY_FLAGS: dict[str, tuple[str, str, bool]] = {
    "aws:s3/bucket:Bucket": ("forceDestroy", "every object in it", True),
    "aws:s3/bucketV2:BucketV2": ("forceDestroy", "every object in it", True),
    "gcp:storage/bucket:Bucket": ("forceDestroy", "every object in it", True),
    "aws:ecr/repository:Repository": ("forceDelete", "every image in it", True),
    "gcp:bigquery/dataset:Dataset": ("deleteContentsOnDestroy", "every table in it", True),
    "gcp:bigquery/table:Table": ("deletionProtection", "its rows", False),
}
"""Per type: the flag, what it takes down with the resource, and the value that is dangerous."""


def no_force_destroy(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    flag, what, dangerous = DESTROY_FLAGS[res.type]
    if truthy(res.props.get(flag)) is not dangerous:
        return
    label = DATA_HOLDING[res.type]
    if dangerous:
        report(
            f"{label} '{res.name}' sets {flag}, so deleting the resource deletes {what}. Remove {flag} "
            "(it defaults to false)."
        )
    else:
        report(
            f"{label} '{res.name}' turns {flag} off, so deleting the resource deletes {what}. Remove "
            f"{flag}: false (it defaults to true)."
        )


RULES = [
    Rule(
        "aicloud-data-protected-in-prod",
        "In prod, data-holding resources (buckets, file systems, tables, datasets, keys, registries) are "
        "protected from deletion and replacement.",
        "data-safety",
        protected_in_prod,
        stack=True,
        config=ENVIRONMENT_CONFIG,
    ),
    Rule(
        "aicloud-cluster-deletion-protected-in-prod",
        "In prod, EKS and GKE clusters have deletion protection on.",
        "data-safety",
        clusters_deletion_protected_in_prod,
        stack=True,
        config=ENVIRONMENT_CONFIG,
    ),
    Rule(
        "aws-s3-bucket-versioning-enabled",
        "S3 buckets keep object versions (versioning Enabled).",
        "data-safety",
        s3_versioning,
        stack=True,
    ),
    Rule(
        "gcp-storage-bucket-versioning-enabled",
        "GCS buckets keep object versions.",
        "data-safety",
        gcs_versioning,
        types=(GCS_BUCKET,),
    ),
    Rule(
        "aicloud-data-disallow-force-destroy",
        "No data-holding resource deletes its contents when the resource is deleted (forceDestroy, "
        "forceDelete, deleteContentsOnDestroy off; BigQuery deletionProtection on).",
        "data-safety",
        no_force_destroy,
        types=tuple(DESTROY_FLAGS),
    ),
]
