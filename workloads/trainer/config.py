"""Typed trainer configuration, named presets and ``section.field=value`` overrides.

Every section is a ``@dataclass(kw_only=True, slots=True)`` whose ``__post_init__`` checks its own
fields; errors are :class:`ConfigError` naming the key, the bad value and what is allowed. A config
is built from a preset (a function returning a complete :class:`TrainerConfig`), then a mapping
from ``--config FILE`` (YAML or JSON, nested by section), then ``--set`` overrides, and is
validated as a whole each time it is rebuilt (see :func:`merge`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args, get_origin

import yaml

from workloads.models import FACTORY_RE, Arch

__all__ = [
    "ConfigError",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "CheckpointConfig",
    "MetricsConfig",
    "ExportConfig",
    "TrainerConfig",
    "PRESETS",
    "preset",
    "merge",
    "parse_overrides",
    "to_dict",
]


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key, the value and what is allowed."""


def _fail(key: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ConfigError(f"{key}: got {value!r}; allowed: {allowed}")


def _positive(section: str, name: str, value: Any, *, zero_ok: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero_ok else 1):
        _fail(f"{section}.{name}", value, "an integer >= 0" if zero_ok else "an integer >= 1")


def _choice(section: str, name: str, value: Any, literal: Any) -> None:
    if value not in get_args(literal):
        _fail(f"{section}.{name}", value, ", ".join(repr(v) for v in get_args(literal)))


@dataclass(kw_only=True, slots=True)
class ModelConfig:
    """Which model to train; input and output widths come from ``data``."""

    SECTION: ClassVar[str] = "model"

    arch: Arch = "mlp"
    """Architecture from workloads.models: "mlp" or "transformer" (ignored when ``factory`` is set)."""
    factory: str | None = None
    """Bring your own model: ``"package.module:callable"`` returning an ``nn.Module`` that maps FP32
    ``[B, in_features]`` to logits ``[B, num_classes]``. It is called as ``callable(in_features=F,
    num_classes=C, **kwargs)``; the package must be importable in the trainer and server images
    (``aicloud:images`` builds it in). Conflicts with the ``arch``-specific fields."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """factory only: extra keyword arguments (JSON values), recorded in the artifact."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """mlp only: widths of the hidden layers."""
    d_model: int = 64
    """transformer only: token width; must be divisible by ``nhead``."""
    nhead: int = 4
    """transformer only: attention heads."""
    num_layers: int = 2
    """transformer only: encoder layers."""
    dim_feedforward: int = 128
    """transformer only: width of the feed-forward block."""
    dropout: float = 0.0
    """transformer only: dropout probability in [0, 1)."""

    def __post_init__(self) -> None:
        _choice(self.SECTION, "arch", self.arch, Arch)
        if self.factory is not None and not FACTORY_RE.match(str(self.factory)):
            _fail("model.factory", self.factory, "an import path 'package.module:callable' or null")
        if not isinstance(self.kwargs, dict) or not all(isinstance(k, str) for k in self.kwargs):
            _fail("model.kwargs", self.kwargs, "a mapping of keyword names to values")
        if self.kwargs and self.factory is None:
            _fail("model.kwargs", self.kwargs, "{} unless model.factory is set (arch models take their own fields)")
        for reserved in ("in_features", "num_classes"):
            if reserved in self.kwargs:
                _fail(f"model.kwargs.{reserved}", self.kwargs[reserved], f"unset: data.{reserved} supplies it")
        if not isinstance(self.hidden, list) or not self.hidden:
            _fail("model.hidden", self.hidden, "a non-empty list of integers >= 1")
        for width in self.hidden:
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                _fail("model.hidden", self.hidden, "a non-empty list of integers >= 1")
        for name in ("d_model", "nhead", "num_layers", "dim_feedforward"):
            _positive(self.SECTION, name, getattr(self, name))
        if self.d_model % self.nhead:
            _fail("model.d_model", self.d_model, f"a multiple of model.nhead ({self.nhead})")
        if not 0.0 <= self.dropout < 1.0:
            _fail("model.dropout", self.dropout, "a number in [0, 1)")

    def build_kwargs(self, in_features: int, num_classes: int) -> dict[str, Any]:
        """Keyword arguments for the factory, or for ``workloads.models.build_model(self.arch, ...)``."""
        if self.factory is not None:
            return {"in_features": in_features, "num_classes": num_classes, **self.kwargs}
        if self.arch == "mlp":
            return {
                "in_features": in_features,
                "hidden": list(self.hidden),
                "num_classes": num_classes,
            }
        return {
            "in_features": in_features,
            "num_classes": num_classes,
            "d_model": self.d_model,
            "nhead": self.nhead,
            "num_layers": self.num_layers,
            "dim_feedforward": self.dim_feedforward,
            "dropout": self.dropout,
        }


@dataclass(kw_only=True, slots=True)
class DataConfig:
    """The training data: a synthetic learnable task or shards at a URI."""

    SECTION: ClassVar[str] = "data"

    source: Literal["synthetic", "shards", "parquet", "iceberg"] = "synthetic"
    """"synthetic": generated in process from ``train.seed`` (labels from a fixed random teacher
    network, so the task is learnable); "shards": ``.pt``/``.npz`` files under ``uri`` (held in
    memory); "parquet": Parquet files under ``uri``, streamed by row group with bounded memory
    (workloads.trainer.stream); "iceberg": the Iceberg table ``table`` of ``catalog``, streamed
    the same way."""
    uri: str | None = None
    """shards and parquet (required there): prefix holding the files, or one ``.parquet`` file
    (local path, file://, s3://, gs://, lake://<zone>/<prefix>). Shards hold ``x`` (float [n,
    in_features]) and ``y`` (int [n], < num_classes)."""
    table: str | None = None
    """iceberg only (required there): the table identifier, ``namespace.table``."""
    catalog: dict[str, Any] = field(default_factory=dict)
    """iceberg only: pyiceberg catalog properties, e.g. ``{type: glue}`` on AWS or ``{type: sql,
    uri: "sqlite:////tmp/catalog.db", warehouse: "file:///tmp/wh"}``; empty uses pyiceberg's own
    configuration (``~/.pyiceberg.yaml`` / ``PYICEBERG_CATALOG__*`` variables)."""
    catalog_name: str = "default"
    """iceberg only: the catalog's name (as pyiceberg's configuration knows it)."""
    features: list[str] = field(default_factory=list)
    """parquet/iceberg: feature columns in order (numbers, or fixed-size lists of numbers); empty
    takes every column except ``label``. Their total width must equal ``in_features``."""
    label: str = "label"
    """parquet/iceberg: the integer label column."""
    read_rows: int = 65536
    """parquet/iceberg: rows decoded per read; with ``workers`` this bounds the data's memory
    (about workers x (read_rows x row bytes x 3 + one row group's column chunks))."""
    workers: int = 0
    """parquet/iceberg: DataLoader worker processes per rank (0 reads in the training process)."""
    prefetch: int = 2
    """parquet/iceberg with workers: micro-batches each worker prepares ahead."""
    heldout_max_rows: int = 65536
    """parquet/iceberg: at most this many held-out rows are read for the final evaluation."""
    reference_rows: int = 65536
    """parquet/iceberg: training rows sampled (in global order) for the drift reference."""
    num_samples: int = 8192
    """synthetic only: rows generated (before the held-out split)."""
    in_features: int = 32
    """Input width F. For shards it must match the data."""
    num_classes: int = 4
    """Number of classes C. For shards every label must be below it."""
    heldout_fraction: float = 0.1
    """Fraction of rows held out from training (evaluated at the end, sampled into the artifact)."""

    def __post_init__(self) -> None:
        _choice(self.SECTION, "source", self.source, Literal["synthetic", "shards", "parquet", "iceberg"])
        if self.source in ("shards", "parquet") and not self.uri:
            what = "a shard prefix URI" if self.source == "shards" else "a Parquet prefix or file URI"
            _fail("data.uri", self.uri, f"{what} (required when data.source={self.source!r})")
        if self.source == "iceberg" and not (isinstance(self.table, str) and "." in self.table):
            _fail("data.table", self.table, "'namespace.table' (required when data.source='iceberg')")
        for name in ("read_rows", "prefetch", "heldout_max_rows", "reference_rows"):
            _positive(self.SECTION, name, getattr(self, name))
        _positive(self.SECTION, "workers", self.workers, zero_ok=True)
        if not isinstance(self.label, str) or not self.label:
            _fail("data.label", self.label, "a column name")
        if self.label in self.features:
            _fail("data.features", self.features, f"columns other than the label {self.label!r}")
        for name in ("num_samples", "in_features"):
            _positive(self.SECTION, name, getattr(self, name))
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            _fail("data.num_classes", self.num_classes, "an integer >= 2")
        if self.num_classes < 2:
            _fail("data.num_classes", self.num_classes, "an integer >= 2")
        if not 0.0 < self.heldout_fraction < 0.5:
            _fail("data.heldout_fraction", self.heldout_fraction, "a number in (0, 0.5)")


@dataclass(kw_only=True, slots=True)
class OptimConfig:
    """Optimizer, learning-rate schedule (linear warmup then cosine decay) and clipping."""

    SECTION: ClassVar[str] = "optim"

    name: Literal["adamw", "sgd"] = "adamw"
    """Optimizer."""
    lr: float = 1e-3
    """Peak learning rate (reached after warmup)."""
    weight_decay: float = 0.0
    """Decoupled weight decay (adamw) or L2 penalty (sgd)."""
    momentum: float = 0.9
    """sgd only: momentum in [0, 1)."""
    warmup_steps: int = 0
    """Linear warmup from 0 to ``lr`` over this many optimizer steps."""
    min_lr_ratio: float = 0.1
    """The cosine decay ends at ``lr * min_lr_ratio`` on the last step; in [0, 1]."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""

    def __post_init__(self) -> None:
        _choice(self.SECTION, "name", self.name, Literal["adamw", "sgd"])
        for name, value in (("lr", self.lr), ("weight_decay", self.weight_decay)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                _fail(f"optim.{name}", value, "a number >= 0")
        if self.lr <= 0:
            _fail("optim.lr", self.lr, "a number > 0")
        if not 0.0 <= self.momentum < 1.0:
            _fail("optim.momentum", self.momentum, "a number in [0, 1)")
        _positive(self.SECTION, "warmup_steps", self.warmup_steps, zero_ok=True)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            _fail("optim.min_lr_ratio", self.min_lr_ratio, "a number in [0, 1]")
        if isinstance(self.grad_clip, bool) or self.grad_clip < 0:
            _fail("optim.grad_clip", self.grad_clip, "a number >= 0 (0 disables clipping)")


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """The training loop."""

    SECTION: ClassVar[str] = "train"

    steps: int = 100
    """Optimizer steps to run in total (a resumed run continues up to this number)."""
    batch_size: int = 64
    """Micro-batch size per rank; the global batch is batch_size * world_size * grad_accum."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    seed: int = 0
    """Seed for model init, synthetic data, the held-out split and data order."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """"auto": cuda (NCCL) when available, else cpu (gloo)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Autocast dtype; "auto" is bf16 on cuda and fp32 on cpu. Weights stay fp32."""
    log_every: int = 10
    """Steps between progress/metrics records (loss is averaged over ranks at these steps)."""
    threads: int = 0
    """torch intra-op threads per process; 0 leaves torch's default (torchrun sets
    OMP_NUM_THREADS=1 for several processes)."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "log_every"):
            _positive(self.SECTION, name, getattr(self, name))
        _positive(self.SECTION, "seed", self.seed, zero_ok=True)
        _positive(self.SECTION, "threads", self.threads, zero_ok=True)
        _choice(self.SECTION, "device", self.device, Literal["auto", "cpu", "cuda"])
        _choice(self.SECTION, "precision", self.precision, Literal["auto", "fp32", "bf16"])


@dataclass(kw_only=True, slots=True)
class CheckpointConfig:
    """Periodic checkpoints (written by rank 0 only, atomically) and automatic resume."""

    SECTION: ClassVar[str] = "checkpoint"

    every: int = 50
    """Save every this many optimizer steps and at the last step; 0 disables checkpoints."""
    keep_last: int = 3
    """Number of newest checkpoints kept; older ones are deleted after each save."""
    resume: bool = True
    """Resume from the newest valid checkpoint under ``<out>/checkpoints`` when one exists."""

    def __post_init__(self) -> None:
        _positive(self.SECTION, "every", self.every, zero_ok=True)
        _positive(self.SECTION, "keep_last", self.keep_last)
        if not isinstance(self.resume, bool):
            _fail("checkpoint.resume", self.resume, "true or false")


@dataclass(kw_only=True, slots=True)
class MetricsConfig:
    """Where metrics go besides the progress output on rank 0."""

    SECTION: ClassVar[str] = "metrics"

    uri: str | None = None
    """JSON-lines metrics file; default ``<out>/metrics.jsonl``. Object-store URIs are rewritten
    whole at every checkpoint and at the end."""
    port: int | None = None
    """Serve Prometheus text format on this port (rank 0; 0 picks a free port); None disables."""
    host: str = "0.0.0.0"
    """Address the Prometheus endpoint binds."""

    def __post_init__(self) -> None:
        if self.port is not None and (
            isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port < 65536
        ):
            _fail("metrics.port", self.port, "an integer in [0, 65535] or null")


@dataclass(kw_only=True, slots=True)
class ExportConfig:
    """The serving artifact written at the end (workloads.artifact)."""

    SECTION: ClassVar[str] = "export"

    enabled: bool = True
    """Export the artifact after the last step."""
    uri: str | None = None
    """Artifact prefix; default ``<out>/model``."""
    name: str = "model"
    """Model name recorded in the manifest."""
    version: str = "1"
    """Model version recorded in the manifest."""
    heldout_samples: int = 256
    """Held-out rows stored in heldout.pt (at most the held-out split)."""
    drift_bins: int = 10
    """Quantile bins of the drift reference."""

    def __post_init__(self) -> None:
        _positive(self.SECTION, "heldout_samples", self.heldout_samples)
        if isinstance(self.drift_bins, bool) or not isinstance(self.drift_bins, int):
            _fail("export.drift_bins", self.drift_bins, "an integer >= 2")
        if self.drift_bins < 2:
            _fail("export.drift_bins", self.drift_bins, "an integer >= 2")
        if not self.name or not isinstance(self.name, str):
            _fail("export.name", self.name, "a non-empty string")


@dataclass(kw_only=True, slots=True)
class TrainerConfig:
    """A complete trainer run."""

    out: str | None = None
    """Run directory (local path, file://, s3://, gs://) for checkpoints, metrics and the model.
    Required."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model section."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data section."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer section."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Loop section."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint section."""
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    """Metrics section."""
    export: ExportConfig = field(default_factory=ExportConfig)
    """Export section."""

    def __post_init__(self) -> None:
        if self.out is not None and (not isinstance(self.out, str) or not self.out):
            _fail("out", self.out, "a local path or a file://, s3://, gs:// URI")
        if self.optim.warmup_steps >= self.train.steps:
            _fail(
                "optim.warmup_steps",
                self.optim.warmup_steps,
                f"fewer than train.steps ({self.train.steps})",
            )


# ----------------------------------------------------------------------------------- presets
def _debug() -> TrainerConfig:
    """A tiny MLP on synthetic data: a few seconds on a laptop CPU, checkpoints included."""
    return TrainerConfig(
        model=ModelConfig(arch="mlp", hidden=[64, 64]),
        data=DataConfig(num_samples=4096, in_features=16, num_classes=4),
        optim=OptimConfig(lr=3e-3, warmup_steps=5),
        train=TrainConfig(steps=60, batch_size=32, log_every=10),
        checkpoint=CheckpointConfig(every=20, keep_last=2),
        export=ExportConfig(name="debug-mlp", heldout_samples=128),
    )


def _mlp() -> TrainerConfig:
    """The reference MLP (256 -> 3 x 1024 -> 10) on synthetic data."""
    return TrainerConfig(
        model=ModelConfig(arch="mlp", hidden=[1024, 1024, 1024]),
        data=DataConfig(num_samples=65536, in_features=256, num_classes=10),
        optim=OptimConfig(lr=1e-3, warmup_steps=100, weight_decay=0.01),
        train=TrainConfig(steps=2000, batch_size=256, log_every=50),
        checkpoint=CheckpointConfig(every=500, keep_last=3),
        export=ExportConfig(name="mlp"),
    )


def _transformer() -> TrainerConfig:
    """The small tabular transformer on synthetic data."""
    return TrainerConfig(
        model=ModelConfig(arch="transformer", d_model=64, nhead=4, num_layers=2),
        data=DataConfig(num_samples=32768, in_features=32, num_classes=4),
        optim=OptimConfig(lr=5e-4, warmup_steps=100, weight_decay=0.01),
        train=TrainConfig(steps=1000, batch_size=128, log_every=50),
        checkpoint=CheckpointConfig(every=250, keep_last=3),
        export=ExportConfig(name="transformer"),
    )


PRESETS: dict[str, Callable[[], TrainerConfig]] = {
    "debug": _debug,
    "mlp": _mlp,
    "transformer": _transformer,
}
"""Named presets; each returns a complete config (``out`` left to the caller)."""


def preset(name: str) -> TrainerConfig:
    """The named preset's config."""
    if name not in PRESETS:
        _fail("preset", name, ", ".join(repr(n) for n in PRESETS))
    return PRESETS[name]()


# ------------------------------------------------------------------------- dict round trips
def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts and lists (JSON/YAML ready)."""
    return dataclasses.asdict(config)


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Coerce ``value`` to ``annotation`` where lossless (int -> float), else fail on ``key``."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(key, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] + " or null")
    if origin is Literal:
        if value not in get_args(annotation):
            _fail(key, value, ", ".join(repr(v) for v in get_args(annotation)))
        return value
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            _fail(key, value, "a mapping with string keys")
        return dict(value)
    if origin is list:
        if not isinstance(value, list | tuple):
            _fail(key, value, "a list")
        (item,) = get_args(annotation)
        return [_check_type(f"{key}[]", v, item) for v in value]
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(key, value, "a number")
        return float(value)
    if annotation is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # e.g. --set export.version=2
    if annotation in (int, str, bool):
        if isinstance(value, bool) != (annotation is bool) or not isinstance(value, annotation):
            _fail(key, value, f"a value of type {annotation.__name__}")
        return value
    return value


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            _fail(f"{prefix}{key}", value, "one of " + ", ".join(f"{prefix}{n}" for n in names))
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, Mapping):
                _fail(f"{prefix}{key}", value, "a mapping of that section's fields")
            kwargs[key] = _build(annotation, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_type(f"{prefix}{key}", value, annotation)
    return cls(**kwargs)


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge(config: TrainerConfig, update: Mapping[str, Any]) -> TrainerConfig:
    """A new, fully validated config: ``config`` with the nested mapping ``update`` applied."""
    return _build(TrainerConfig, _deep_merge(to_dict(config), update), "")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.steps=20", "model.hidden=[32, 32]"]`` as a nested mapping (values are YAML)."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            _fail("--set", item, "section.field=value, e.g. train.steps=20")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                _fail("--set", item, f"one value per key ({key} is set twice)")
        node[leaf] = yaml.safe_load(raw) if raw.strip() else ""
    return nested
