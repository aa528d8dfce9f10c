"""Training data streamed from Parquet files or an Iceberg table, with bounded memory.

The dataset is a list of *units*, one per Parquet row group, in a fixed order (files sorted by
path, row groups in file order); each unit knows its global row offset from the file footers, so
nothing but footers is read to plan. Every row has a global index ``g``; a seeded hash of ``g``
puts it in the held-out split (``data.heldout_fraction``), so the split is the same on every rank,
every run and every sharding, and the held-out rows and the drift reference come from the same
source as the training rows.

Sharding: the ranks and their DataLoader workers form ``S = world_size * max(workers, 1)`` slots.
Epoch ``e`` shuffles the units (seeded by ``e``); position ``p = e * U + i`` of that endless
sequence belongs to slot ``p % S``, so every slot reads whole row groups and no two slots read the
same one in an epoch. A slot decodes ``data.read_rows`` rows at a time, permutes them (seeded by
epoch, unit and chunk), drops the held-out rows and cuts consecutive micro-batches, carrying the
remainder into the next unit. A slot's stream is therefore a pure function of the seed, and a
resumed run skips exactly the micro-batches already drawn (``seek``) using footer row counts,
decoding only the one partly consumed row group.

Memory per slot is about one read chunk decoded (``read_rows`` rows) plus Arrow's buffers for the
row group's column chunks; it does not grow with the dataset. Steps, not epochs, end training, so
ranks never disagree on the number of batches.

Iceberg: the table's current snapshot is planned through pyiceberg (a Glue catalog on AWS, a SQL
catalog in tests) and its Parquet data files are read as above. Tables with row-level deletes are
refused (compact them first).
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from workloads import storage
from workloads.trainer.config import ConfigError, DataConfig

__all__ = ["DataError", "Unit", "StreamSource", "StreamData", "open_stream", "heldout_mask", "SlotStream"]

PARQUET_SUFFIXES = (".parquet", ".parq")
"""File suffixes read under a Parquet ``data.uri`` prefix; other objects are ignored."""


class DataError(ConfigError):
    """The data cannot be used as configured: missing files, columns, types or permission."""


# ------------------------------------------------------------------------------- filesystems
def _filesystem(uri: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the path inside it for a local, file://, s3://, gs:// or lake:// URI.

    S3 honours ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` like :mod:`workloads.storage`.
    """
    from pyarrow import fs as pafs

    real = storage.resolve(uri)
    if "://" not in real:
        return pafs.LocalFileSystem(), os.path.abspath(real)
    scheme, rest = real.split("://", 1)
    if scheme == "file":
        return pafs.LocalFileSystem(), rest
    if scheme == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        kwargs: dict[str, Any] = {}
        if endpoint:
            kwargs["endpoint_override"] = endpoint
            if endpoint.startswith("http://"):
                kwargs["scheme"] = "http"
        if region:
            kwargs["region"] = region
        return pafs.S3FileSystem(**kwargs), rest
    if scheme == "gs":
        return pafs.GcsFileSystem(), rest
    raise DataError(
        f"data.uri: unsupported scheme {scheme!r} in {uri!r}; allowed: local path, file://, s3://, gs://, lake://"
    )


def _open_parquet(uri: str) -> Any:
    import pyarrow.parquet as pq

    fs, path = _filesystem(uri)
    try:
        return pq.ParquetFile(fs.open_input_file(path))
    except FileNotFoundError as exc:
        raise DataError(f"data: {uri} does not exist") from exc
    except PermissionError as exc:
        raise DataError(f"data: permission denied reading {uri} ({exc})") from exc
    except OSError as exc:
        text = str(exc)
        if "ACCESS_DENIED" in text.upper() or "AccessDenied" in text or "403" in text:
            raise DataError(f"data: permission denied reading {uri}: {text.splitlines()[0]}") from exc
        raise DataError(f"data: cannot read {uri} as Parquet: {text.splitlines()[0] if text else exc!r}") from exc


# ------------------------------------------------------------------------------------ planning
@dataclass(frozen=True, slots=True)
class Unit:
    """One Parquet row group: the smallest piece a slot reads."""

    uri: str
    row_group: int
    rows: int
    offset: int
    """Global index of the unit's first row."""


@dataclass(frozen=True, slots=True)
class StreamSource:
    """What a stream reads: the units in global order and the column mapping."""

    units: tuple[Unit, ...]
    features: tuple[str, ...]
    widths: tuple[int, ...]
    """Width of each feature column (1 for scalars, the list size for fixed-size lists)."""
    label: str
    total_rows: int


def _parquet_files(uri: str) -> list[str]:
    if uri.endswith(PARQUET_SUFFIXES):
        try:
            if storage.exists(uri):
                return [uri]
        except Exception as exc:
            raise DataError(f"data.uri: cannot check {uri}: {exc}") from exc
    try:
        found = [u for u in storage.list_prefix(uri) if u.endswith(PARQUET_SUFFIXES)]
    except ValueError as exc:
        raise DataError(f"data.uri: {exc}") from exc
    except Exception as exc:  # e.g. botocore ClientError AccessDenied
        raise DataError(f"data.uri: cannot list {uri}: {exc}") from exc
    if not found:
        raise DataError(f"data.uri: no {'/'.join(PARQUET_SUFFIXES)} files under {uri!r}")
    return found


def _iceberg_files(config: DataConfig) -> list[str]:
    try:
        from pyiceberg.catalog import load_catalog
        from pyiceberg.exceptions import NoSuchTableError
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise DataError("data.source 'iceberg' needs pyiceberg: pip install 'aicloud[workloads]'") from exc
    try:
        catalog = load_catalog(config.catalog_name, **{k: str(v) for k, v in config.catalog.items()})
    except Exception as exc:
        raise DataError(f"data.catalog: cannot open catalog {config.catalog_name!r} ({config.catalog}): {exc}") from exc
    try:
        table = catalog.load_table(config.table)
    except NoSuchTableError as exc:
        raise DataError(f"data.table: no Iceberg table {config.table!r} in catalog {config.catalog_name!r}") from exc
    files = []
    for task in table.scan().plan_files():
        if task.delete_files:
            raise DataError(
                f"data.table: {config.table} has row-level delete files; the trainer reads data files "
                "only, so compact the table (rewrite data files) first"
            )
        files.append(task.file.file_path)
    if not files:
        raise DataError(f"data.table: Iceberg table {config.table!r} has no data files in its current snapshot")
    return sorted(files)


def _feature_widths(schema: Any, config: DataConfig, where: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    import pyarrow as pa

    names = list(schema.names)
    if config.label not in names:
        raise DataError(f"data.label: column {config.label!r} is not in {where} (columns: {', '.join(names)})")
    if not pa.types.is_integer(schema.field(config.label).type):
        raise DataError(
            f"data.label: column {config.label!r} in {where} is {schema.field(config.label).type}, not an integer"
        )
    features = tuple(config.features) or tuple(n for n in names if n != config.label)
    widths = []
    for name in features:
        if name not in names:
            raise DataError(f"data.features: column {name!r} is not in {where} (columns: {', '.join(names)})")
        kind = schema.field(name).type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            widths.append(1)
        elif pa.types.is_fixed_size_list(kind) and (
            pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)
        ):
            widths.append(kind.list_size)
        else:
            raise DataError(
                f"data.features: column {name!r} in {where} is {kind}; "
                "allowed: a number or a fixed-size list of numbers"
            )
    if sum(widths) != config.in_features:
        raise DataError(
            f"data.in_features: got {config.in_features}; the feature columns of {where} ({', '.join(features)}) "
            f"are {sum(widths)} wide"
        )
    return features, tuple(widths)


def plan(config: DataConfig) -> StreamSource:
    """The units and column mapping of a ``parquet`` or ``iceberg`` data config (footers only)."""
    files = _iceberg_files(config) if config.source == "iceberg" else _parquet_files(str(config.uri))
    first = _open_parquet(files[0])
    features, widths = _feature_widths(first.schema_arrow, config, files[0])
    units: list[Unit] = []
    offset = 0
    for index, uri in enumerate(files):
        meta = (first if index == 0 else _open_parquet(uri)).metadata
        if index and meta.schema.to_arrow_schema().names != first.schema_arrow.names:
            _feature_widths(meta.schema.to_arrow_schema(), config, uri)  # names the missing column
        for rg in range(meta.num_row_groups):
            rows = meta.row_group(rg).num_rows
            if rows:
                units.append(Unit(uri, rg, rows, offset))
                offset += rows
    if not units:
        raise DataError(f"data: {config.uri or config.table} holds no rows")
    return StreamSource(tuple(units), features, widths, config.label, offset)


# ----------------------------------------------------------------------------------- the rows
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def heldout_mask(indices: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Whether each global row index is held out: a splitmix64 hash of ``index + seed`` below
    ``fraction`` (the same on every rank, run and sharding)."""
    with np.errstate(over="ignore"):
        z = indices.astype(np.uint64) + np.uint64(seed + 1) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53) < fraction


def _columns_to_numpy(
    batch: Any, source: StreamSource, in_features: int, num_classes: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa

    n = batch.num_rows
    x = np.empty((n, in_features), dtype=np.float32)
    col = 0
    for name, width in zip(source.features, source.widths, strict=True):
        array = batch.column(name)
        if array.null_count:
            raise DataError(f"data.features: column {name!r} in {where} has nulls")
        if width == 1:
            x[:, col] = array.to_numpy(zero_copy_only=False)
        else:
            assert isinstance(array.type, pa.FixedSizeListType)
            x[:, col : col + width] = array.flatten().to_numpy(zero_copy_only=False).reshape(n, width)
        col += width
    labels = batch.column(source.label)
    if labels.null_count:
        raise DataError(f"data.label: column {source.label!r} in {where} has nulls")
    y = labels.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f"data.label: labels in {where} must be in [0, data.num_classes={num_classes})")
    return x, y


def _read_chunks(unit: Unit, source: StreamSource, config: DataConfig) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(global offset, x, y)`` of each decoded chunk of ``read_rows`` rows of ``unit``."""
    file = _open_parquet(unit.uri)
    start = unit.offset
    columns = [*source.features, source.label]
    for batch in file.iter_batches(batch_size=config.read_rows, row_groups=[unit.row_group], columns=columns):
        x, y = _columns_to_numpy(batch, source, config.in_features, config.num_classes, unit.uri)
        yield start, x, y
        start += batch.num_rows


def rows_where(
    source: StreamSource, config: DataConfig, seed: int, *, heldout: bool, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` held-out (or training) rows in global order: the evaluation set and the
    drift reference sample (read once, on rank 0, at export)."""
    xs, ys, count = [], [], 0
    for unit in source.units:
        for start, x, y in _read_chunks(unit, source, config):
            keep = heldout_mask(np.arange(start, start + len(x)), config.heldout_fraction, seed) == heldout
            xs.append(x[keep][: limit - count])
            ys.append(y[keep][: limit - count])
            count += len(xs[-1])
            if count >= limit:
                return np.concatenate(xs), np.concatenate(ys)
    if not count:
        return np.zeros((0, config.in_features), np.float32), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)


# ----------------------------------------------------------------------------------- streaming
class SlotStream:
    """The endless micro-batch stream of one slot (rank x worker); see the module docstring."""

    def __init__(
        self, source: StreamSource, config: DataConfig, *, seed: int, slot: int, slots: int, batch_size: int
    ) -> None:
        self.source, self.config = source, config
        self.seed, self.slot, self.slots, self.batch_size = seed, slot, slots, batch_size

    def _units(self) -> Iterator[tuple[int, int, Unit]]:
        """``(epoch, unit index, unit)`` of this slot, endlessly."""
        count = len(self.source.units)
        position = 0
        epoch = 0
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(count)
            for i in range(count):
                if (position + i) % self.slots == self.slot:
                    yield epoch, int(order[i]), self.source.units[int(order[i])]
            position += count
            epoch += 1

    def _train_rows(self, unit: Unit) -> int:
        mask = heldout_mask(np.arange(unit.offset, unit.offset + unit.rows), self.config.heldout_fraction, self.seed)
        return int((~mask).sum())

    def rows(self, skip_rows: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Permuted training rows chunk by chunk, after skipping the first ``skip_rows``."""
        for epoch, index, unit in self._units():
            if skip_rows:
                n = self._train_rows(unit)
                if skip_rows >= n:
                    skip_rows -= n
                    continue
            for chunk, (start, x, y) in enumerate(_read_chunks(unit, self.source, self.config)):
                keep = ~heldout_mask(np.arange(start, start + len(x)), self.config.heldout_fraction, self.seed)
                x, y = x[keep], y[keep]
                order = np.random.default_rng([self.seed, epoch, index, chunk]).permutation(len(x))
                x, y = x[order], y[order]
                if skip_rows:
                    cut = min(skip_rows, len(x))
                    x, y, skip_rows = x[cut:], y[cut:], skip_rows - cut
                if len(x):
                    yield x, y

    def batches(self, skip_batches: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Micro-batches ``(x FP32 [B, F], y INT64 [B])`` after skipping ``skip_batches``."""
        b = self.batch_size
        pending_x: list[np.ndarray] = []
        pending_y: list[np.ndarray] = []
        pending = 0
        for x, y in self.rows(skip_batches * b):
            start = 0
            if pending:  # complete the batch begun in the previous chunk
                take = min(b - pending, len(x))
                pending_x.append(x[:take])
                pending_y.append(y[:take])
                pending += take
                start = take
                if pending < b:
                    continue
                yield torch.from_numpy(np.concatenate(pending_x)), torch.from_numpy(np.concatenate(pending_y))
                pending_x, pending_y, pending = [], [], 0
            while start + b <= len(x):
                yield torch.from_numpy(x[start : start + b]), torch.from_numpy(y[start : start + b])
                start += b
            if start < len(x):
                pending_x, pending_y, pending = [x[start:]], [y[start:]], len(x) - start


class _RankDataset(IterableDataset):
    """The slots of one rank as a DataLoader dataset (one slot per worker process)."""

    def __init__(
        self,
        source: StreamSource,
        config: DataConfig,
        *,
        seed: int,
        rank: int,
        world_size: int,
        batch_size: int,
        skip: int,
    ) -> None:
        self.source, self.config = source, config
        self.seed, self.rank, self.world_size, self.batch_size, self.skip = seed, rank, world_size, batch_size, skip

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        # Uninterrupted, batch j comes from slot role j % workers (the DataLoader takes batch k
        # from worker k % workers). A loader started after ``skip`` batches begins again at
        # worker 0, so worker w plays role (w + skip) % workers, which produced
        # ceil((skip - role) / workers) of the first ``skip`` batches.
        role = (worker + self.skip) % workers
        skip = max(0, (self.skip - role + workers - 1) // workers)
        stream = SlotStream(
            self.source, self.config, seed=self.seed, slot=self.rank * workers + role,
            slots=self.world_size * workers, batch_size=self.batch_size,
        )  # fmt: skip
        return stream.batches(skip)


def _ignore_sigterm(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM: torchrun signals the whole process group of a worker,
    and a loader that died under the training process would fail the step that preemption lets
    finish. The workers end with the training process (the DataLoader's own watchdog)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class StreamBatches:
    """This rank's micro-batches from a stream source; same interface as ``data.BatchStream``."""

    def __init__(
        self,
        source: StreamSource,
        config: DataConfig,
        *,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        device: torch.device,
    ) -> None:
        self.source, self.config = source, config
        self.batch_size, self.rank, self.world_size, self.seed, self.device = batch_size, rank, world_size, seed, device
        train_rows = round(source.total_rows * (1 - config.heldout_fraction))
        self.batches_per_epoch = train_rows // (batch_size * world_size)
        if self.batches_per_epoch < 1:
            raise DataError(
                f"train.batch_size: {batch_size} x {world_size} ranks needs more than the "
                f"{train_rows} training rows; lower the batch size or add data"
            )
        self._iterator: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._skip = 0

    def seek(self, micro_batches_done: int) -> None:
        """Continue as if ``micro_batches_done`` micro-batches had been drawn already."""
        self._skip = micro_batches_done
        self._iterator = None

    def _start(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dataset = _RankDataset(
            self.source, self.config, seed=self.seed, rank=self.rank, world_size=self.world_size,
            batch_size=self.batch_size, skip=self._skip,
        )  # fmt: skip
        if not self.config.workers:
            return iter(dataset)
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.config.workers,
            prefetch_factor=self.config.prefetch,
            persistent_workers=True,
            pin_memory=self.device.type == "cuda",
            # spawn, not fork: Arrow's thread pools and the AWS SDK do not survive a fork
            multiprocessing_context="spawn",
            worker_init_fn=_ignore_sigterm,
        )
        return iter(loader)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next micro-batch ``(x, y)`` on the training device."""
        if self._iterator is None:
            self._iterator = self._start()
        x, y = next(self._iterator)
        non_blocking = self.device.type == "cuda"
        return x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)


@dataclass(slots=True)
class StreamData:
    """A streamed dataset: planned at start, held-out rows and drift sample read at export."""

    source: StreamSource
    config: DataConfig
    seed: int
    reference_rows: int

    @property
    def train_rows(self) -> int:
        """Training rows (expected count from the held-out fraction; exact split is per row)."""
        return round(self.source.total_rows * (1 - self.config.heldout_fraction))

    def heldout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to ``data.heldout_max_rows`` held-out rows (global order)."""
        x, y = rows_where(self.source, self.config, self.seed, heldout=True, limit=self.config.heldout_max_rows)
        if not len(x):
            raise DataError(
                f"data.heldout_fraction {self.config.heldout_fraction} selected no rows of {self.source.total_rows}"
            )
        return torch.from_numpy(x), torch.from_numpy(y)

    def reference_sample(self) -> np.ndarray:
        """Up to ``reference_rows`` training rows for the drift reference."""
        return rows_where(self.source, self.config, self.seed, heldout=False, limit=self.reference_rows)[0]


def open_stream(config: DataConfig, seed: int) -> StreamData:
    """Plan a ``parquet`` / ``iceberg`` source (footers only; raises DataError naming the problem)."""
    return StreamData(plan(config), dataclasses.replace(config), seed, config.reference_rows)
