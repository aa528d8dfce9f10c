"""What the AWS and GCP lakehouses share: child naming with rename aliases, the record of a zone
that both register as component outputs (read by the plan's storage section), and which replicas
each replicated zone is copied to."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pulumi

from components.base import DataSafety
from components.lakehouse.documents import tier_plan
from components.lakehouse.spec import StorageSpec


@dataclass(frozen=True, slots=True)
class Naming:
    """Names children `f"{name}-{role}"`; with `previous` (the component's old name) every child
    also gets an alias to its old name, so renaming the component moves resources instead of
    replacing them. (Aliases carry no parent: the alias resolves under the child's current
    parent, whose type chain, and so the URN prefix, a rename does not change.)"""

    name: str
    previous: str | None = None

    def __call__(self, role: str) -> str:
        return f"{self.name}-{role}"

    def component_opts(self, opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
        """The component's own options, with an alias to its previous name."""
        extra = pulumi.ResourceOptions(aliases=[pulumi.Alias(name=self.previous)] if self.previous else None)
        return pulumi.ResourceOptions.merge(opts, extra)

    def opts(self, parent: pulumi.Resource, role: str, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options of the child called `self(role)`, parented to `parent`. Children that hold no
        data are not protected even under a protected parent (Pulumi would inherit it), so a
        config change can still replace or drop them (a lifecycle or replication rule)."""
        aliases = [pulumi.Alias(name=f"{self.previous}-{role}")] if self.previous else None
        kwargs.setdefault("protect", False)
        return pulumi.ResourceOptions(parent=parent, aliases=aliases, **kwargs)

    def data_opts(
        self, parent: pulumi.Resource, role: str, safety: DataSafety, **kwargs: Any
    ) -> pulumi.ResourceOptions:
        """Options of a data-holding child: as `opts`, plus protect / retain on delete."""
        return self.opts(parent, role, protect=safety.protect, retain_on_delete=safety.retain_on_delete, **kwargs)


def zone_record(
    spec: StorageSpec,
    zone: str,
    cloud: str,
    bucket: pulumi.Input[str],
    uri: pulumi.Input[str],
    replicated_to: list[str] | None = None,
    replica_of: str | None = None,
) -> dict[str, Any]:
    """A zone as registered in component outputs: bucket, URI, tiers with ages, retention."""
    lifecycle = spec.lifecycle(zone)
    record: dict[str, Any] = {
        "zone": zone,
        "bucket": bucket,
        "uri": uri,
        "tiers": tier_plan(spec, zone, cloud),
        "expireAfterDays": lifecycle.expire_after_days,
        "noncurrentExpireAfterDays": lifecycle.noncurrent_expire_after_days,
        "replicatedTo": replicated_to or [],
    }
    if replica_of:
        record["replicaOf"] = replica_of
    return record


def zone_records(
    spec: StorageSpec,
    cloud: str,
    buckets: Mapping[str, tuple[pulumi.Input[str], pulumi.Input[str]]],
    replicated: Mapping[str, list[str]] | None = None,
    replica_of: str | None = None,
) -> list[dict[str, Any]]:
    """`zone_record` of every zone in `buckets` (zone -> (bucket id, URI)), in their order."""
    return [
        zone_record(
            spec,
            zone,
            cloud,
            bucket,
            uri,
            replicated_to=(replicated or {}).get(zone),
            replica_of=replica_of,
        )
        for zone, (bucket, uri) in buckets.items()
    ]


class _Replica(Protocol):
    region_key: str
    buckets: Mapping[str, Any]


R = TypeVar("R", bound=_Replica)


def replication_targets(spec: StorageSpec, replicas: Sequence[R]) -> Iterator[tuple[str, list[R]]]:
    """`(zone, replicas holding a copy of it)` for every replicated zone that has at least one."""
    for zone in spec.replication:
        targets = [r for r in replicas if zone in r.buckets]
        if targets:
            yield zone, targets


def catalog_record(spec: StorageSpec, engine: str) -> dict[str, Any] | None:
    """The catalog as registered in component outputs (None without a catalog)."""
    if spec.catalog is None:
        return None
    return {
        "engine": engine,
        "database": spec.catalog.database,
        "tables": [{"name": t.name, "zone": t.zone, "columns": len(t.columns)} for t in spec.catalog.tables],
    }


def scratch_record(spec: StorageSpec, cloud: str, endpoint: pulumi.Input[str] | None) -> dict[str, Any] | None:
    """The scratch file system as registered in component outputs (None without one)."""
    s = spec.scratch
    if s is None:
        return None
    if cloud == "aws":
        return {
            "kind": f"FSx for Lustre {s.fsx_deployment_type}",
            "sizeGib": s.size_gib,
            "importZones": s.import_zones,
            "exportZones": s.export_zones,
            "endpoint": endpoint,
        }
    return {"kind": f"Filestore {s.filestore_tier}", "sizeGib": s.size_gib, "endpoint": endpoint}


def streaming_record(spec: StorageSpec, kind: str, stream: pulumi.Input[str] | None) -> dict[str, Any] | None:
    """Streaming ingestion as registered in component outputs (None without it)."""
    s = spec.streaming
    if s is None:
        return None
    return {
        "kind": kind,
        "stream": stream,
        "target": f"raw/{s.prefix}",
        "bufferSeconds": s.buffer_seconds,
        "bufferMib": s.buffer_mib,
    }
