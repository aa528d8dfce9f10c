"""Prometheus metrics of the model server, defined once.

:data:`METRICS` is the single definition of every metric the server exports (name, type, help,
labels); alert rules and dashboards import it (or :data:`METRIC_NAMES`) to check the names they
use. :class:`ServerMetrics` instantiates the definitions in a registry of its own, so several
servers can live in one process (tests), and renders the text exposition format for
``GET /metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contracts.serving import DRIFT_ROWS_METRIC, FEATURE_PSI_METRIC, REQUEST_DURATION_METRIC, REQUESTS_METRIC

__all__ = [
    "BATCH_SIZE",
    "CONTENT_TYPE",
    "DRIFT_ROWS",
    "FEATURE_PSI",
    "HELDOUT_ACCURACY",
    "INFLIGHT",
    "LAYER_PRECISION",
    "METRICS",
    "METRIC_NAMES",
    "MODEL_LOAD_SECONDS",
    "QUANTIZATION_AGREEMENT",
    "QUEUE_DEPTH",
    "READY",
    "REQUESTS",
    "REQUEST_LATENCY",
    "MetricSpec",
    "ServerMetrics",
]

PREFIX = "aicloud_server_"
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
"""Content type of the text exposition format served at ``/metrics``."""

# One series per metric and label set; the ``*_created`` companions only double the scrape size.
prometheus_client.disable_created_metrics()


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric: its full exposed name, type, help text and label names."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


REQUESTS = MetricSpec(
    REQUESTS_METRIC,
    "counter",
    "Inference requests answered, by model, version and HTTP status code.",
    ("model", "version", "status"),
)
REQUEST_LATENCY = MetricSpec(
    REQUEST_DURATION_METRIC,
    "histogram",
    "Inference request latency inside the server (body read to response), seconds.",
    ("model", "version"),
    (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
BATCH_SIZE = MetricSpec(
    f"{PREFIX}batch_size",
    "histogram",
    "Rows per forward pass of the model worker (dynamic batching).",
    ("model", "version"),
    (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
QUEUE_DEPTH = MetricSpec(
    f"{PREFIX}queue_depth",
    "gauge",
    "Requests waiting for the model worker.",
    ("model", "version"),
)
INFLIGHT = MetricSpec(
    f"{PREFIX}inflight_requests",
    "gauge",
    "Inference requests being handled (validated, queued or computing).",
)
READY = MetricSpec(
    f"{PREFIX}ready",
    "gauge",
    "1 when every model is loaded and the server is not shutting down, else 0.",
)
MODEL_LOAD_SECONDS = MetricSpec(
    f"{PREFIX}model_load_seconds",
    "gauge",
    "Seconds spent loading, quantizing, checking and warming up the model.",
    ("model", "version"),
)
QUANTIZATION_AGREEMENT = MetricSpec(
    f"{PREFIX}quantization_agreement",
    "gauge",
    "Top-1 agreement of the served model with the fp32 model on the artifact's held-out sample.",
    ("model", "version", "precision"),
)
HELDOUT_ACCURACY = MetricSpec(
    f"{PREFIX}heldout_accuracy",
    "gauge",
    "Accuracy on the artifact's held-out sample, of the fp32 model and of the served precision.",
    ("model", "version", "precision"),
)
LAYER_PRECISION = MetricSpec(
    f"{PREFIX}layer_precision",
    "gauge",
    "1 for the precision each linear layer is served at (auto on CPU chooses per layer).",
    ("model", "version", "layer", "precision"),
)
FEATURE_PSI = MetricSpec(
    FEATURE_PSI_METRIC,
    "gauge",
    "Population stability index of each input feature against the training reference "
    "(< 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift).",
    ("model", "version", "feature"),
)
DRIFT_ROWS = MetricSpec(
    DRIFT_ROWS_METRIC,
    "gauge",
    "Input rows behind the current feature_psi values.",
    ("model", "version"),
)

METRICS: tuple[MetricSpec, ...] = (
    REQUESTS,
    REQUEST_LATENCY,
    BATCH_SIZE,
    QUEUE_DEPTH,
    INFLIGHT,
    READY,
    MODEL_LOAD_SECONDS,
    QUANTIZATION_AGREEMENT,
    HELDOUT_ACCURACY,
    LAYER_PRECISION,
    FEATURE_PSI,
    DRIFT_ROWS,
)
"""Every metric the server exports; all names start with ``aicloud_server_``."""

METRIC_NAMES: frozenset[str] = frozenset(spec.name for spec in METRICS)
"""The exposed metric family names (histograms add ``_bucket``, ``_sum`` and ``_count``)."""


class ServerMetrics:
    """The metrics of one server instance, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        for spec in METRICS:
            kwargs = {"labelnames": spec.labels, "registry": self.registry}
            if spec.kind == "counter":
                metric: Counter | Gauge | Histogram = Counter(spec.name, spec.help, **kwargs)
            elif spec.kind == "gauge":
                metric = Gauge(spec.name, spec.help, **kwargs)
            else:
                metric = Histogram(spec.name, spec.help, buckets=spec.buckets, **kwargs)
            self._metrics[spec.name] = metric

    def __getitem__(self, spec: MetricSpec) -> Counter | Gauge | Histogram:
        """The live metric for ``spec`` (e.g. ``metrics[REQUESTS].labels(...).inc()``)."""
        return self._metrics[spec.name]

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return prometheus_client.generate_latest(self.registry)
