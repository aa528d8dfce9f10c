"""Shared building blocks for every aicloud component.

- `Spec`: the base of every cloud-neutral, typed component spec. Specs are pydantic models with
  camelCase aliases, so the same class validates a stack's YAML config (`nodePools[0].minNodes`)
  and is used from Python (`NodePoolSpec(min_nodes=0)`). Unknown keys are errors, not ignored.
  Cross-field rules are `@check` methods (`components.validation`): all problems at once.
- `child_opts`: resource options for a child, parented to its component.
- `data_opts`: the options every data-holding resource gets (retain on delete, protect in prod).
- `merge_tags`: tags/labels merged once, in one order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components.validation import validate_field, validate_model

PACKAGE = "aicloud"


class Spec(BaseModel):
    """Base class of typed component specs (camelCase in YAML, snake_case in Python)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # One validation style (`components.validation`): field constraints for single values,
    # `@check` methods for everything that reads more than one field; every problem at once.
    @field_validator("*", mode="wrap")
    @classmethod
    def _record_field(cls, value: Any, handler: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        field = cls.model_fields.get(name)
        return validate_field(value, handler, name, field.annotation if field else None)

    @model_validator(mode="wrap")
    @classmethod
    def _run_checks(cls, data: Any, handler: Any) -> Any:
        return validate_model(cls, data, handler)


@dataclass(frozen=True, slots=True)
class DataSafety:
    """How resources that hold data are guarded against deletion.

    `retain_on_delete` keeps the cloud resource when Pulumi deletes it (default on everywhere);
    `protect` makes Pulumi refuse to delete or replace it at all (default on in prod).
    """

    protect: bool = False
    retain_on_delete: bool = True


DATA_HOLDING: dict[str, str] = {
    "aws:s3/bucket:Bucket": "S3 bucket",
    "aws:s3/bucketV2:BucketV2": "S3 bucket",
    "aws:s3/directoryBucket:DirectoryBucket": "S3 directory bucket",
    "aws:kms/key:Key": "KMS key",
    "aws:glue/catalogDatabase:CatalogDatabase": "Glue database",
    "aws:glue/catalogTable:CatalogTable": "Glue table",
    "aws:fsx/lustreFileSystem:LustreFileSystem": "FSx for Lustre file system",
    "aws:efs/fileSystem:FileSystem": "EFS file system",
    "aws:ecr/repository:Repository": "ECR repository",
    "aws:kinesis/stream:Stream": "Kinesis stream",
    "aws:dynamodb/table:Table": "DynamoDB table",
    "gcp:storage/bucket:Bucket": "GCS bucket",
    "gcp:kms/keyRing:KeyRing": "Cloud KMS key ring",
    "gcp:kms/cryptoKey:CryptoKey": "Cloud KMS key",
    "gcp:bigquery/dataset:Dataset": "BigQuery dataset",
    "gcp:bigquery/table:Table": "BigQuery table",
    "gcp:biglake/catalog:Catalog": "BigLake catalog",
    "gcp:biglake/database:Database": "BigLake database",
    "gcp:biglake/table:Table": "BigLake table",
    "gcp:filestore/instance:Instance": "Filestore instance",
    "gcp:parallelstore/instance:Instance": "Parallelstore instance",
    "gcp:artifactregistry/repository:Repository": "Artifact Registry repository",
}
"""Resource types that hold data (or the keys to it), with the name messages use: the one list the
policy pack (`policies.data_safety`), the plan's storage section and its diagram read. Each must be
created with `data_opts` (protected in prod, retained on delete)."""


def child_opts(parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
    """Options for a child resource: parented to `parent` (providers are inherited from it)."""
    return pulumi.ResourceOptions(parent=parent, **kwargs)


def data_opts(parent: pulumi.Resource, safety: DataSafety, **kwargs: Any) -> pulumi.ResourceOptions:
    """Options for a child resource that holds data (buckets, file systems, tables, keys)."""
    return pulumi.ResourceOptions(
        parent=parent,
        protect=safety.protect,
        retain_on_delete=safety.retain_on_delete,
        **kwargs,
    )


def custom_resource(logical: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """A rendered custom-resource manifest (`apiVersion`, `kind`, `metadata`, `spec`) created as a
    `kubernetes.apiextensions.CustomResource` named `logical`."""
    import pulumi_kubernetes as k8s

    return k8s.apiextensions.CustomResource(
        logical,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        spec=manifest.get("spec"),
        opts=opts,
    )


def merge_tags(*layers: Mapping[str, str] | None, name: str | None = None) -> dict[str, str]:
    """Merge tag layers left to right; `name` becomes the `Name` tag (AWS console display)."""
    merged: dict[str, str] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    if name is not None:
        merged["Name"] = name
    return merged


_LABEL_BAD = re.compile(r"[^a-z0-9_-]")


def gcp_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """GCP labels from tags: lower-case keys and values of `[a-z0-9_-]`, at most 63 characters."""
    out: dict[str, str] = {}
    for k, v in tags.items():
        key = _LABEL_BAD.sub("-", k.lower())[:63]
        if key == "name":
            continue
        out[key] = _LABEL_BAD.sub("-", str(v).lower())[:63]
    return out


def type_token(module: str, name: str) -> str:
    """The `aicloud:<module>:<Type>` token of a component."""
    return f"{PACKAGE}:{module}:{name}"


def renamed(name: str, renames: Mapping[str, str]) -> str | None:
    """`name` as it was before the region-key renames `{new key: old key}`: every `-`-delimited
    occurrence of a new key replaced by its old one; None when the name carries no renamed key."""
    out = name
    for new, old in renames.items():
        out = re.sub(rf"(?<![a-z0-9]){re.escape(new)}(?![a-z0-9])", old, out)
    return out if out != name else None


def rename_transformation(renames: Mapping[str, str]) -> Any:
    """A stack transformation giving every resource whose name carries a renamed region key an
    alias to its previous name (same parent type chain: the URN differs only by name)."""

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        previous = renamed(args.name, renames)
        if previous is None:
            return None
        extra = pulumi.ResourceOptions(aliases=[pulumi.Alias(name=previous)])
        return pulumi.ResourceTransformationResult(
            props=args.props, opts=pulumi.ResourceOptions.merge(args.opts, extra)
        )

    return transform
