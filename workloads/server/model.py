"""A served model: the artifact loaded, prepared for the hardware, checked and warmed up.

Lifecycle (as in KServe's ``Model``): :meth:`ServedModel.load` returns a ready model;
:meth:`ServedModel.predict` runs one forward pass on float32 rows and is called only by the
model worker thread (see :mod:`workloads.server.batching`).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from workloads import drift, storage
from workloads.artifact import ArtifactError, load_artifact, serving_precision
from workloads.server.protocol import TensorSpec
from workloads.server.quantize import (
    LayerChoice,
    compute_dtype,
    layer_precisions,
    prepare_auto,
    prepare_model,
    resolve_device,
    resolve_engine,
    resolve_precision,
)

__all__ = ["DriftMonitor", "QuantizationReport", "ServedModel"]

log = logging.getLogger("workloads.server")

_EVAL_CHUNK = 512
"""Rows per forward pass when scoring the held-out sample at load time."""


@dataclass(frozen=True, slots=True)
class QuantizationReport:
    """What serving at ``precision`` costs on the artifact's held-out sample."""

    precision: str
    """``fp32``, ``int8``, ``bf16``, or ``mixed`` (``auto`` on CPU chose int8 for some layers and
    fp32 for others; ``layers`` says which)."""
    engine: str | None
    """Quantized CPU engine (int8 on CPU only)."""
    samples: int
    fp32_accuracy: float
    served_accuracy: float
    top1_agreement: float
    """Share of held-out rows whose top-1 class equals the fp32 model's."""
    max_abs_logit_diff: float
    layers: dict[str, str] = field(default_factory=dict)
    """Precision of each linear layer of the serving graph, by qualified name."""
    selection: str = "requested"
    """``requested`` (one precision for every layer) or ``per layer`` (``auto`` on CPU)."""
    calibration_batch: int | None = None
    """Rows per batch the per-layer choice was made for (``auto`` on CPU)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (model metadata ``parameters``)."""
        return asdict(self)


_ARTIFACT_FILES = (
    ("manifest.json", "JSON"),
    ("model.pt", "torch"),
    ("heldout.pt", "torch"),
    ("reference_stats.json", "JSON"),
)


def _diagnose(uri: str) -> str | None:
    """Which file of the artifact at ``uri`` does not parse, and why (None if every file parses).

    Only runs after a load failed, so the files are read a second time only on that path.
    """
    for filename, kind in _ARTIFACT_FILES:
        path = storage.join(uri, filename)
        try:
            data = storage.read_bytes(path)
        except FileNotFoundError:
            return f"{path} is missing"
        except Exception:  # noqa: BLE001 - storage errors are reported by the original exception
            return None
        try:
            if kind == "JSON":
                json.loads(data)
            else:
                torch.load(io.BytesIO(data), weights_only=True)
        except Exception as exc:  # noqa: BLE001 - this is the diagnosis
            return f"{path} ({len(data)} bytes) is not a valid {kind} file: {type(exc).__name__}: {exc}"
    return None


def _calibration_batch(heldout: torch.Tensor, rows: int, features: int) -> torch.Tensor:
    """``rows`` rows to calibrate on: the artifact's held-out rows, repeated as needed (random
    normal rows, seeded, when it has none)."""
    if len(heldout) == 0:
        return torch.randn(rows, features, generator=torch.Generator().manual_seed(0))
    return heldout.float().repeat(-(-rows // len(heldout)), 1)[:rows].contiguous()


def _describe(choice: LayerChoice) -> str:
    timing = f", fp32 {choice.fp32_us:.0f} us / int8 {choice.int8_us:.0f} us" if choice.fp32_us is not None else ""
    return (
        f"{choice.layer} {choice.in_features}x{choice.out_features} on {choice.rows} rows: "
        f"{choice.precision} ({choice.basis}{timing})"
    )


class DriftMonitor:
    """Streams input rows into per-feature bin counts against the artifact's drift reference.

    Rows are buffered and binned in chunks (``workloads.drift.bin_counts`` costs per feature, so
    chunks amortise it); PSI covers the last complete window plus the current partial one.
    """

    def __init__(self, reference: dict[str, Any], window: int, chunk: int = 256) -> None:
        self.reference = reference
        self.window = window
        self.chunk = min(chunk, window)
        shape = (len(reference["features"]), int(reference["bins"]))
        self._lock = threading.Lock()
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._current = np.zeros(shape, dtype=np.int64)
        self._previous = np.zeros(shape, dtype=np.int64)

    def observe(self, x: np.ndarray) -> None:
        """Record rows ``[N, F]`` (called by the model worker after each batch)."""
        with self._lock:
            self._buffer.append(x)
            self._buffered += len(x)
            if self._buffered >= self.chunk:
                self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        rows = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer, self._buffered = [], 0
        self._current += drift.bin_counts(self.reference, rows)
        if self._current[0].sum() >= self.window:
            self._previous, self._current = self._current, np.zeros_like(self._current)

    def snapshot(self) -> tuple[np.ndarray, int]:
        """PSI per feature ``[F]`` and the number of rows behind it (PSI is nan with no rows)."""
        with self._lock:
            self._flush()
            counts = self._previous + self._current
        return drift.psi(self.reference, counts), int(counts[0].sum())


class ServedModel:
    """One model version as served: spec, prepared module, quantization report and drift."""

    def __init__(
        self,
        *,
        name: str,
        version: str,
        uri: str,
        manifest: dict[str, Any],
        module: torch.nn.Module,
        device: torch.device,
        dtype: torch.dtype,
        input_spec: TensorSpec,
        output_spec: TensorSpec,
        report: QuantizationReport,
        drift_monitor: DriftMonitor | None,
        load_seconds: float,
    ) -> None:
        self.name = name
        self.version = version
        self.uri = uri
        self.manifest = manifest
        self.module = module
        self.device = device
        self.dtype = dtype
        self.input_spec = input_spec
        self.output_spec = output_spec
        self.output_names = (output_spec.name,)
        self.num_outputs = output_spec.shape[-1]
        self.report = report
        self.drift = drift_monitor
        self.load_seconds = load_seconds
        self.layer_choices: list[LayerChoice] = []
        """How ``auto`` on CPU chose each layer's precision (timings included); empty otherwise."""

    @classmethod
    def load(
        cls,
        uri: str,
        *,
        version: str,
        name: str | None = None,
        precision: str = "auto",
        quant_engine: str = "auto",
        device: str = "auto",
        drift_window: int = 10_000,
        warmup_batch: int = 64,
        calibration_s: float = 1.0,
    ) -> ServedModel:
        """Load the artifact at ``uri``, prepare it for ``precision`` and score the cost.

        ``auto`` on CPU chooses int8 or fp32 per linear layer for batches of ``warmup_batch``
        rows (the configured maximum batch), timing both kernels for up to ``calibration_s``
        seconds (0: the shape rule alone; see :func:`workloads.server.quantize.prepare_auto`).

        The served and fp32 models both run over the artifact's held-out sample; their top-1
        agreement and accuracies are logged and kept in :attr:`report`.
        """
        start = time.perf_counter()
        try:
            artifact = load_artifact(uri)
        except ArtifactError:
            raise
        except Exception as exc:  # a corrupt file: say which one
            reason = _diagnose(uri) or f"{type(exc).__name__}: {exc}"
            raise ArtifactError(f"cannot load the artifact at {uri}: {reason}") from exc
        input_spec = TensorSpec.from_manifest(artifact.input_spec)
        output_spec = TensorSpec.from_manifest(artifact.output_spec)
        if input_spec.datatype != "FP32" or len(input_spec.shape) != 2:
            raise ValueError(f"{uri}: the server handles one FP32 [-1, F] input, got {input_spec}")
        torch_device = resolve_device(device)
        resolved = serving_precision(artifact.model, precision, resolve_precision(precision, torch_device))
        engine = resolve_engine(quant_engine) if (resolved, torch_device.type) == ("int8", "cpu") else None
        choices: list[LayerChoice] = []
        if precision == "auto" and resolved == "int8" and torch_device.type == "cpu":
            example = _calibration_batch(artifact.heldout_x, warmup_batch, input_spec.shape[1])
            module, choices = prepare_auto(artifact.model, example, budget_s=calibration_s)
            kinds = {c.precision for c in choices} or {"fp32"}
            resolved = "mixed" if len(kinds) > 1 else kinds.pop()
            engine = engine if resolved != "fp32" else None
        else:
            module = prepare_model(artifact.model, precision=resolved, device=torch_device, engine=engine or "")
        layers = {c.layer: c.precision for c in choices} if choices else layer_precisions(module)
        served = cls(
            name=name or artifact.name,
            version=version,
            uri=uri,
            manifest=artifact.manifest,
            module=module,
            device=torch_device,
            dtype=compute_dtype(resolved, torch_device),
            input_spec=input_spec,
            output_spec=output_spec,
            report=QuantizationReport(
                resolved, engine, 0, 0.0, 0.0, 0.0, 0.0, layers=layers,
                selection="per layer" if choices else "requested",
                calibration_batch=warmup_batch if choices else None,
            ),
            drift_monitor=None,
            load_seconds=0.0,
        )  # fmt: skip
        served.layer_choices = choices
        served.report = served._score(artifact.model, artifact.heldout_x, artifact.heldout_y)
        if artifact.reference.get("features"):
            served.drift = DriftMonitor(artifact.reference, drift_window)
        features = input_spec.shape[1]
        for rows in (1, warmup_batch):
            served.predict(np.zeros((rows, features), dtype=np.float32))
        served.load_seconds = time.perf_counter() - start
        r = served.report
        log.info(
            "loaded %s version %s from %s: precision %s%s on %s; held-out %d rows: top-1 "
            "agreement with fp32 %.4f, accuracy fp32 %.4f, served %.4f; %.2f s",
            served.name, version, uri, resolved, f" ({engine})" if engine else "",
            torch_device, r.samples, r.top1_agreement, r.fp32_accuracy, r.served_accuracy,
            served.load_seconds,
        )  # fmt: skip
        if choices:
            log.info(
                "%s version %s: precision per layer at batch %d (auto): %s",
                served.name, version, warmup_batch, "; ".join(_describe(c) for c in choices),
            )  # fmt: skip
        return served

    def _score(self, reference: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> QuantizationReport:
        base = self.report
        if len(x) == 0:
            return base
        fp32_top, served_top, max_diff = [], [], 0.0
        with torch.inference_mode():
            for chunk in torch.split(x, _EVAL_CHUNK):
                ref = reference(chunk)
                out = torch.from_numpy(self.predict(chunk.numpy()))
                fp32_top.append(ref.argmax(dim=1))
                served_top.append(out.argmax(dim=1))
                max_diff = max(max_diff, float((ref - out).abs().max()))
        fp32_pred, served_pred = torch.cat(fp32_top), torch.cat(served_top)
        return QuantizationReport(
            precision=base.precision,
            engine=base.engine,
            samples=len(x),
            fp32_accuracy=float((fp32_pred == y).float().mean()),
            served_accuracy=float((served_pred == y).float().mean()),
            top1_agreement=float((served_pred == fp32_pred).float().mean()),
            max_abs_logit_diff=max_diff,
            layers=base.layers,
            selection=base.selection,
            calibration_batch=base.calibration_batch,
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits float32 ``[B, C]`` for rows float32 ``[B, F]`` (model worker thread only)."""
        with torch.inference_mode():
            inputs = torch.from_numpy(x)
            if self.device.type != "cpu" or self.dtype != torch.float32:
                inputs = inputs.to(self.device, self.dtype)
            out = self.module(inputs)
            if out.dtype != torch.float32 or out.device.type != "cpu":
                out = out.to("cpu", torch.float32)
            return out.numpy()

    def metadata(self, versions: list[str]) -> dict[str, Any]:
        """The protocol's model metadata response, plus serving details in ``parameters``.

        The artifact's storage URI is not exposed (it names buckets and paths): it is logged at load.
        """
        return {
            "name": self.name,
            "versions": versions,
            "platform": "pytorch_statedict",
            "inputs": [self.input_spec.metadata()],
            "outputs": [self.output_spec.metadata()],
            "parameters": {
                "artifact_name": self.manifest.get("name"),
                "artifact_version": self.manifest.get("version"),
                "arch": self.manifest.get("model", {}).get("arch"),
                "factory": self.manifest.get("model", {}).get("factory"),
                "device": str(self.device),
                "load_seconds": round(self.load_seconds, 4),
                **{f"quantization_{k}": v for k, v in self.report.as_dict().items()},
                **(
                    {"quantization_layer_choices": [c.as_dict() for c in self.layer_choices]}
                    if self.layer_choices
                    else {}
                ),
            },
        }
