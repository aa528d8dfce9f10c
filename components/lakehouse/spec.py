"""The cloud-neutral spec of the lakehouse: zones, tiers, catalog, scratch, streaming, replication.

A stack says it under `aicloud:storage:`. The same spec builds the AWS lakehouse (S3, KMS, Glue,
FSx for Lustre, Firehose) and the GCP one (GCS, Cloud KMS, BigQuery/BigLake, Filestore,
Pub/Sub). Defaults live in `DEFAULT_LIFECYCLE` and the field defaults below, nowhere else.

Tiers are named neutrally and mapped per cloud in `TIER_CLASSES`:

    hot      -> S3 STANDARD                         | GCS STANDARD
    warm     -> S3 STANDARD_IA or INTELLIGENT_TIERING | GCS NEARLINE
    cold     -> S3 GLACIER (Flexible Retrieval)      | GCS COLDLINE
    archive  -> S3 DEEP_ARCHIVE                      | GCS ARCHIVE

Objects start hot; a zone's `tiers` say at which age (days since creation) they move colder.
Checks that need the rest of the stack (replication targets must be regions of the stack, the
scratch size and lifecycle minimums must suit the clouds the stack uses) are `storage_problems`,
which `StackConfig` runs against its valid regions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, field_validator

from components.base import Spec
from components.validation import INVALID, Problem, check, repeated

ZONES: tuple[str, ...] = ("raw", "curated", "features", "checkpoints", "models")
"""The lakehouse zones, in data-flow order. Each zone is its own bucket (see `components.lakehouse`)."""
TIERS: tuple[str, ...] = ("warm", "cold", "archive")
"""Tiers objects can move to, from warmest to coldest (every object starts `hot`)."""
REPLICABLE_ZONES: tuple[str, ...] = ("checkpoints", "models")
"""Zones that may be replicated to other regions."""
TABLE_ZONES: tuple[str, ...] = ("curated", "features")
"""Zones that hold catalog (Iceberg) tables."""

MIN_WARM_DAYS = 30
"""S3 refuses transitions to STANDARD_IA before 30 days; GCS Nearline bills 30 days minimum."""
MIN_DAYS_AFTER_WARM = 30
"""Objects must sit 30 days in STANDARD_IA before S3 moves them colder (Nearline: 30-day minimum)."""
MIN_DAYS_IN_GLACIER = 90
"""S3 moves objects from GLACIER to DEEP_ARCHIVE no sooner than 90 days (S3 lifecycle constraints)."""

TIER_CLASSES: dict[str, dict[str, str]] = {
    "aws": {"hot": "STANDARD", "cold": "GLACIER", "archive": "DEEP_ARCHIVE"},
    "gcp": {"hot": "STANDARD", "warm": "NEARLINE", "cold": "COLDLINE", "archive": "ARCHIVE"},
}
"""Storage class of each tier per cloud; the AWS warm class comes from `awsWarmClass`."""

FSX_MIN_GIB = 1200
FSX_STEP_GIB = 2400
FILESTORE_LIMITS: dict[str, tuple[int, int]] = {
    "BASIC_HDD": (1024, 65433),
    "BASIC_SSD": (2560, 65433),
    "ZONAL": (1024, 102400),
}
"""Capacity range in GiB of each Filestore tier aicloud supports (Filestore docs, "Service tiers")."""
FILESTORE_ZONAL_STEPS: tuple[tuple[int, int, int], ...] = ((1024, 9984, 256), (10240, 102400, 2560))
"""Zonal tier sizes: 1-9.75 TiB in 256 GiB steps, 10-100 TiB in 2.5 TiB steps (Filestore docs,
"Service tiers"); the basic tiers grow in 1 GiB steps."""

COLUMN_TYPES: tuple[str, ...] = (
    "boolean",
    "int",
    "long",
    "float",
    "double",
    "date",
    "timestamp",
    "timestamptz",
    "string",
    "binary",
)
"""Iceberg primitive column types (plus `decimal(P,S)`), mapped to Glue and BigQuery types."""
_DECIMAL = re.compile(r"^decimal\((\d{1,2}),\s*(\d{1,2})\)$")
_IDENT = r"^[a-z_][a-z0-9_]{0,127}$"


def _fsx_sizes_hint(size: int) -> str:
    lower = max(FSX_MIN_GIB, size // FSX_STEP_GIB * FSX_STEP_GIB)
    upper = (size // FSX_STEP_GIB + 1) * FSX_STEP_GIB
    return f"nearest allowed: {lower} or {upper}"


def fsx_size_problem(size_gib: int) -> str | None:
    """Why `size_gib` is not a valid SCRATCH_2/PERSISTENT_2 FSx for Lustre capacity, or None."""
    if size_gib < FSX_MIN_GIB:
        return (
            f"{size_gib} GiB is below the FSx for Lustre minimum of {FSX_MIN_GIB} GiB; "
            f"allowed: {FSX_MIN_GIB}, {FSX_STEP_GIB} or a multiple of {FSX_STEP_GIB}"
        )
    if size_gib != FSX_MIN_GIB and size_gib % FSX_STEP_GIB:
        return (
            f"{size_gib} GiB is not an FSx for Lustre size; allowed: {FSX_MIN_GIB}, {FSX_STEP_GIB} "
            f"or a multiple of {FSX_STEP_GIB} ({_fsx_sizes_hint(size_gib)})"
        )
    return None


def filestore_size_problem(size_gib: int, tier: str) -> str | None:
    """Why `size_gib` does not fit the Filestore `tier`, or None."""
    low, high = FILESTORE_LIMITS[tier]
    if not low <= size_gib <= high:
        return f"{size_gib} GiB is outside the Filestore {tier} range of {low} to {high} GiB"
    if tier == "ZONAL":
        for start, end, step in FILESTORE_ZONAL_STEPS:
            if start <= size_gib <= end:
                if (size_gib - start) % step:
                    below = start + (size_gib - start) // step * step
                    return (
                        f"{size_gib} GiB is not a Filestore ZONAL size: {start}-{end} GiB grows in {step} GiB "
                        f"steps (nearest: {below} or {below + step})"
                    )
                return None
        return f"{size_gib} GiB is not a Filestore ZONAL size: 9984 GiB is followed by 10240 GiB"
    return None


class ZoneLifecycle(Spec):
    """How objects of one zone age through the tiers, and when versions are cleaned up."""

    tiers: dict[str, int] = Field(default_factory=dict)
    """Age in days (since creation) at which objects move to each tier: `{warm: 30, cold: 90,
    archive: 365}`. Tiers are `warm`, `cold`, `archive`; any may be left out; ages must grow from
    warm to archive. Warm needs at least 30 days, and each tier after warm 30 more days."""
    expire_after_days: int | None = Field(default=None, ge=1, le=36500)
    """Delete current objects at this age (a versioned bucket keeps them as noncurrent versions
    until `noncurrentExpireAfterDays`); default: never. Must come after the last transition."""
    noncurrent_expire_after_days: int = Field(default=30, ge=1, le=3650)
    """Delete overwritten or deleted (noncurrent) versions this many days after they stop being
    current: the window in which a bad overwrite can be undone."""

    @field_validator("tiers")
    @classmethod
    def _known_tiers(cls, value: dict[str, int]) -> dict[str, int]:
        problems = []
        for tier, age in value.items():
            if tier == "hot":
                problems.append(
                    f"'hot' is where every object starts; list the ages at which objects move to {', '.join(TIERS)}"
                )
            elif tier not in TIERS:
                problems.append(f"unknown tier {tier!r}; allowed: {', '.join(TIERS)}")
            elif not isinstance(age, int) or age < 0:
                problems.append(f"{tier}: age must be a whole number of days >= 0 (got {age!r})")
        if problems:
            raise ValueError("; ".join(problems))
        ordered = sorted(value.items(), key=lambda kv: TIERS.index(kv[0]))
        for (colder, age), (warmer, warmer_age) in zip(ordered[1:], ordered, strict=False):
            if age <= warmer_age:
                raise ValueError(
                    f"transition ages out of order: {colder} at {age} days must come after "
                    f"{warmer} at {warmer_age} days (tiers get colder with age: "
                    f"{' < '.join(TIERS)})"
                )
        if "warm" in value:
            warm = value["warm"]
            if warm < MIN_WARM_DAYS:
                raise ValueError(
                    f"warm at {warm} days is too early: objects must stay hot at least "
                    f"{MIN_WARM_DAYS} days (S3 STANDARD_IA and GCS Nearline minimum)"
                )
            for tier, age in ordered:
                if tier != "warm" and age < warm + MIN_DAYS_AFTER_WARM:
                    raise ValueError(
                        f"{tier} at {age} days is too soon after warm at {warm} days: objects "
                        f"must stay warm at least {MIN_DAYS_AFTER_WARM} days (use >= "
                        f"{warm + MIN_DAYS_AFTER_WARM})"
                    )
        return dict(ordered)

    @check("expire_after_days", "tiers")
    def _expiry_after_tiers(self) -> Iterator[Problem]:
        if self.expire_after_days is not None and self.tiers:
            tier, age = max(self.tiers.items(), key=lambda kv: kv[1])
            if self.expire_after_days <= age:
                yield Problem(
                    (),
                    f"expireAfterDays ({self.expire_after_days}) must be later than the last "
                    f"transition ({tier} at {age} days)",
                )


DEFAULT_LIFECYCLE: dict[str, ZoneLifecycle] = {
    # Landed data is rarely re-read after curation, but kept for reprocessing: archive it.
    "raw": ZoneLifecycle(tiers={"warm": 30, "cold": 90, "archive": 365}),
    "curated": ZoneLifecycle(tiers={"warm": 90, "cold": 365}),
    # Features are recomputable from curated data: short version history.
    "features": ZoneLifecycle(tiers={"warm": 60}, noncurrent_expire_after_days=14),
    # Keep the last 30 days of checkpoints hot for resume, then warm; delete after 90 days.
    "checkpoints": ZoneLifecycle(tiers={"warm": 30}, expire_after_days=90, noncurrent_expire_after_days=7),
    # Models are never deleted by age; old versions stay a year for rollback.
    "models": ZoneLifecycle(tiers={"warm": 90}, noncurrent_expire_after_days=365),
}
"""The lifecycle of every zone unless the stack overrides it."""


class ColumnSpec(Spec):
    """One column of a catalog table."""

    name: str = Field(pattern=_IDENT)
    """Column name: lower-case letters, digits and underscores."""
    type: str
    """Iceberg type: boolean, int, long, float, double, date, timestamp, timestamptz, string,
    binary or decimal(P,S)."""
    required: bool = False
    """Whether the column may not be null."""
    description: str = ""

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        m = _DECIMAL.match(value)
        if m:
            precision, scale = int(m.group(1)), int(m.group(2))
            if not 1 <= precision <= 38 or scale > precision:
                raise ValueError(f"decimal({precision},{scale}) needs 1 <= P <= 38 and S <= P")
            return f"decimal({precision},{scale})"
        if value not in COLUMN_TYPES:
            raise ValueError(f"unknown column type {value!r}; allowed: {', '.join(COLUMN_TYPES)}, decimal(P,S)")
        return value


class TableSpec(Spec):
    """An Iceberg table in the catalog (Glue on AWS, BigQuery BigLake on GCP)."""

    name: str = Field(pattern=_IDENT)
    """Table name, unique in the catalog: lower-case letters, digits and underscores."""
    zone: Literal["curated", "features"] = "curated"
    """The zone (bucket) that holds the table's data files."""
    columns: list[ColumnSpec] = Field(min_length=1)
    """The schema, in order."""
    description: str = ""

    @check("columns")
    def _unique_columns(self) -> Iterator[Problem]:
        dupes = repeated(c.name for c in self.columns if c.name is not INVALID)
        if dupes:
            yield Problem((), f"column names must be unique, repeated: {', '.join(dupes)}")


class CatalogSpec(Spec):
    """The table catalog: one Glue database / BigQuery dataset with Iceberg tables."""

    database: str = Field(default="aicloud_lake", pattern=r"^[a-z][a-z0-9_]{0,63}$")
    """Glue database and BigQuery dataset name."""
    tables: list[TableSpec] = Field(default_factory=list)

    @check("tables")
    def _unique_tables(self) -> Iterator[Problem]:
        dupes = repeated(t.name for t in self.tables if t.name is not INVALID)
        if dupes:
            yield Problem((), f"table names must be unique, repeated: {', '.join(dupes)}")


class ScratchSpec(Spec):
    """A high-throughput scratch file system for training, in the primary region of each cloud:
    FSx for Lustre linked to the zone buckets (AWS), Filestore (GCP)."""

    fsx_deployment_type: Literal["SCRATCH_2", "PERSISTENT_2"] = "SCRATCH_2"
    """SCRATCH_2: cheapest, no replication (data lives in S3 anyway); PERSISTENT_2: replicated
    servers, encrypted with the lakehouse key."""
    fsx_throughput_per_tib: Literal[125, 250, 500, 1000] = 250
    """PERSISTENT_2 only: MB/s per TiB of storage."""
    filestore_tier: Literal["BASIC_HDD", "BASIC_SSD", "ZONAL"] = "BASIC_SSD"
    """Filestore service tier."""
    size_gib: int = Field(ge=1)
    """Capacity in GiB, checked against every cloud of the stack. FSx for Lustre: 1200, 2400 or a
    multiple of 2400. Filestore: the tier's range (BASIC_HDD and ZONAL from 1024, BASIC_SSD from
    2560 GiB)."""
    import_zones: list[Literal["raw", "curated", "features", "checkpoints", "models"]] = Field(
        default_factory=lambda: ["curated", "features"]
    )
    """FSx: zones mounted read-only under `/<zone>`, kept in sync from S3 (new, changed, deleted)."""
    export_zones: list[Literal["raw", "curated", "features", "checkpoints", "models"]] = Field(
        default_factory=lambda: ["checkpoints"]
    )
    """FSx: zones mounted under `/<zone>` in both directions: synced from S3 and exported back as
    files change (checkpoints written on the scratch file system land in the bucket)."""

    @check("import_zones", "export_zones")
    def _links(self) -> Iterator[Problem]:
        both = sorted(set(self.import_zones) & set(self.export_zones))
        if both:
            yield Problem((), f"a zone is linked once, in importZones or exportZones, not both: {', '.join(both)}")


class StreamingSpec(Spec):
    """Streaming ingestion into the raw zone: Firehose (AWS), Pub/Sub -> Cloud Storage (GCP)."""

    buffer_seconds: int = Field(default=300, ge=60, le=600)
    """Flush a file at least this often (Firehose 60-900 s, Pub/Sub 1-10 min: 60-600 fits both)."""
    buffer_mib: int = Field(default=64, ge=1, le=128)
    """...or when this many MiB have arrived (Firehose allows 1-128 MiB)."""
    prefix: str = Field(default="stream/", pattern=r"^[a-z0-9][a-z0-9_/-]{0,62}/$")
    """Key prefix in the raw zone bucket; ends with `/`."""


ReplicaTarget = str
"""A replication target: a non-primary region key of the stack (checked by `storage_problems`)."""


class StorageSpec(Spec):
    """The lakehouse of a stack: built in the primary region of each cloud the stack uses."""

    zones: dict[str, ZoneLifecycle] = Field(default_factory=dict)
    """Lifecycle overrides by zone (raw, curated, features, checkpoints, models). A zone named
    here replaces its default lifecycle (`DEFAULT_LIFECYCLE`); every zone always exists."""
    aws_warm_class: Literal["STANDARD_IA", "INTELLIGENT_TIERING"] = "STANDARD_IA"
    """S3 class of the warm tier: Standard-IA (predictable) or Intelligent-Tiering (S3 moves
    objects back to frequent access when read)."""
    abort_incomplete_uploads_after_days: int = Field(default=7, ge=1, le=365)
    """Abort multipart uploads (and free their parts) left incomplete this long."""
    access_log_retention_days: int = Field(default=365, ge=1, le=3650)
    """Delete access logs at this age."""
    key_rotation_days: int = Field(default=365, ge=90, le=2560)
    """Rotation period of the customer-managed keys (AWS KMS allows 90-2560 days)."""
    catalog: CatalogSpec | None = None
    """The Iceberg table catalog; none when absent."""
    scratch: ScratchSpec | None = None
    """The training scratch file system; none when absent."""
    streaming: StreamingSpec | None = None
    """Streaming ingestion into the raw zone; none when absent."""
    replication: dict[str, list[ReplicaTarget]] = Field(default_factory=dict)
    """Zones copied to other regions of the stack: `{models: [aws-usw2, gcp-euw4]}` (checkpoints
    and models only). Each target is a non-primary region key; it gets a replica bucket fed from
    its cloud's primary region."""
    renamed_from: dict[str, str] = Field(default_factory=dict)
    """Previous component names of the lakehouse (primary region key) or of a replica (its
    region key), so a rename keeps every resource (aliases) instead of replacing it."""

    @field_validator("replication")
    @classmethod
    def _unique_targets(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for zone, targets in value.items():
            dupes = sorted({t for t in targets if targets.count(t) > 1})
            if dupes:
                raise ValueError(f"{zone}: targets repeated: {', '.join(dupes)}")
        return value

    @field_validator("zones", mode="before")
    @classmethod
    def _zone_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = [k for k in value if k not in ZONES]
            if unknown:
                raise ValueError(f"unknown zone {', '.join(repr(k) for k in unknown)}; zones: {', '.join(ZONES)}")
        return value

    @field_validator("replication", mode="before")
    @classmethod
    def _replicable_zones(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = [k for k in value if k not in REPLICABLE_ZONES]
            if unknown:
                raise ValueError(
                    f"zone {', '.join(repr(k) for k in unknown)} cannot be replicated; "
                    f"replicable zones: {', '.join(REPLICABLE_ZONES)}"
                )
        return value

    def lifecycle(self, zone: str) -> ZoneLifecycle:
        """The effective lifecycle of `zone` (override or default)."""
        return self.zones.get(zone, DEFAULT_LIFECYCLE[zone])

    def tier_classes(self, cloud: str) -> dict[str, str]:
        """Storage class of each tier on `cloud`."""
        if cloud == "aws":
            return {**TIER_CLASSES["aws"], "warm": self.aws_warm_class}
        return dict(TIER_CLASSES[cloud])


def storage_problems(spec: StorageSpec, regions: list[Any]) -> Iterator[Problem]:
    """Checks of the lakehouse against the stack's valid regions (`StackConfig` reports them under
    `storage`): replication targets, renamed lakehouses, scratch sizes and lifecycle minimums per
    cloud the stack uses (only those clouds: an AWS-only stack has no Filestore to size). `spec`
    may be partly valid (`components.validation.Partial`): invalid parts are skipped."""
    by_name = {r.name: r for r in regions}
    clouds = {r.cloud for r in regions}
    for zone, targets in (spec.replication or {}).items():
        for i, target in enumerate(targets):
            region = by_name.get(target)
            if region is None:
                yield Problem(
                    ("replication", zone, i), f"not a region of this stack; regions: {', '.join(by_name)}", target
                )
            elif region.primary:
                yield Problem(
                    ("replication", zone, i),
                    f"the primary {region.cloud} region holds the lakehouse itself; replicate to a non-primary region",
                    target,
                )
    primaries = [r.name for r in regions if r.primary]
    targets = sorted({t for ts in (spec.replication or {}).values() for t in ts})
    holders = [*primaries, *targets]
    bad = [k for k in spec.renamed_from or {} if k not in holders]
    if bad:
        yield Problem(
            ("renamedFrom",),
            f"{', '.join(repr(k) for k in bad)}: holds no lakehouse or replica (lakehouses live in: "
            f"{', '.join(primaries)}; replicas in: {', '.join(targets) or 'none'})",
        )
    scratch = spec.scratch
    if scratch and scratch.size_gib and scratch.filestore_tier:
        size = scratch.size_gib
        problems = []
        if "aws" in clouds and (p := fsx_size_problem(size)):
            problems.append(p)
        if "gcp" in clouds and (p := filestore_size_problem(size, scratch.filestore_tier)):
            problems.append(p)
        if problems:
            yield Problem(("scratch", "sizeGib"), "; ".join(problems), size)
    # GCS refuses none of these transitions: its minimum storage durations (Nearline 30, Coldline
    # 90, Archive 365 days; Cloud Storage docs, "Storage classes") are billed, not enforced, and
    # the 30-day warm minimum above already applies to both clouds.
    zones = spec.zones
    if "aws" in clouds and zones is not INVALID:
        for zone in ZONES:
            lifecycle = zones.get(zone, DEFAULT_LIFECYCLE[zone])
            tiers = lifecycle.tiers or {}
            cold, archive = tiers.get("cold"), tiers.get("archive")
            # S3: objects must stay at least 90 days in S3 Glacier Flexible Retrieval before a
            # lifecycle rule moves them to Glacier Deep Archive (Amazon S3 User Guide, "Transitioning
            # objects using Amazon S3 Lifecycle", constraints).
            if cold is not None and archive is not None and archive < cold + MIN_DAYS_IN_GLACIER:
                yield Problem(
                    ("zones", zone, "tiers", "archive"),
                    f"archive at {archive} days is too soon after cold at {cold} days on AWS: S3 keeps objects "
                    f"{MIN_DAYS_IN_GLACIER} days in GLACIER before DEEP_ARCHIVE (use >= {cold + MIN_DAYS_IN_GLACIER})",
                    archive,
                )


StorageField = StorageSpec | None
"""The type of `StackConfig.storage` (checked against the stack's regions by `StackConfig`)."""
