"""Rank-0 telemetry: progress output, a JSON-lines metrics log and a Prometheus endpoint.

Every record is a flat JSON object with an ``event`` key (``start``, ``resume``, ``step``,
``checkpoint``, ``export``, ``done``). Records go to the metrics log, to the progress output
(a one-line bar when stderr is a terminal, else the JSON line itself on stderr) and, for the
keys named in :data:`METRICS`, to Prometheus gauges served by ``prometheus_client`` (its own
registry per run, so tests and embedding processes never collide with the default registry).
A gauge is created on its first value: a metric never recorded is never exported as a false 0.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from workloads import storage

__all__ = ["MetricDef", "METRICS", "Telemetry"]


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One exported Prometheus metric and the record key that feeds it."""

    name: str
    """Metric name (always prefixed ``aicloud_trainer_``)."""
    help: str
    """HELP text."""
    key: str
    """Key of the telemetry record whose value the gauge takes."""
    kind: str = "gauge"
    """Prometheus TYPE."""


METRICS: tuple[MetricDef, ...] = (
    MetricDef("aicloud_trainer_step", "Optimizer steps completed.", "step"),
    MetricDef("aicloud_trainer_loss", "Training loss, mean over ranks and the last interval.", "loss"),
    MetricDef(
        "aicloud_trainer_samples_per_second",
        "Training samples per second over all ranks in the last interval.",
        "samples_per_second",
    ),
    MetricDef("aicloud_trainer_step_seconds", "Mean wall time per optimizer step.", "step_seconds"),
    MetricDef("aicloud_trainer_learning_rate", "Learning rate of the last step.", "lr"),
    MetricDef("aicloud_trainer_grad_norm", "Global gradient norm before clipping.", "grad_norm"),
    MetricDef("aicloud_trainer_checkpoint_step", "Step of the last checkpoint written.", "checkpoint_step"),
    MetricDef("aicloud_trainer_world_size", "Number of training processes.", "world_size"),
    MetricDef(
        "aicloud_trainer_restarts",
        "Elastic restarts so far (TORCHELASTIC_RESTART_COUNT).",
        "restarts",
    ),
)
"""Every metric the trainer exports; the single definition other code imports and checks."""


class Telemetry:
    """Progress, metrics log and Prometheus gauges for one run (use on rank 0 only)."""

    def __init__(
        self,
        *,
        metrics_uri: str,
        total_steps: int,
        port: int | None = None,
        host: str = "0.0.0.0",
        stream: IO[str] | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._total = total_steps
        self.registry = CollectorRegistry(auto_describe=True)
        """The run's Prometheus registry (served at ``/metrics`` when ``port`` is set)."""
        self._gauges: dict[str, Gauge] = {}
        self._lock = threading.Lock()
        self._uri = metrics_uri
        path = storage.local_path(metrics_uri)
        self._file: IO[str] | None = None
        self._remote_lines: list[str] = []
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        elif storage.exists(metrics_uri):  # continue the log of a resumed run
            self._remote_lines = storage.read_bytes(metrics_uri).decode().splitlines()
        self._server = None
        self.port: int | None = None
        if port is not None:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
            self.port = int(self._server.server_address[1])

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Emit one record and return it."""
        record = {"event": event, "time": round(time.time(), 3), **fields}
        line = json.dumps(record, separators=(",", ":"))
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        else:
            self._remote_lines.append(line)
        with self._lock:
            for metric in METRICS:
                value = fields.get(metric.key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    if metric.name not in self._gauges:
                        self._gauges[metric.name] = Gauge(metric.name, metric.help, registry=self.registry)
                    self._gauges[metric.name].set(value)
        self._show(record, line)
        return record

    def _show(self, record: dict[str, Any], line: str) -> None:
        if not self._tty:
            self._stream.write(line + "\n")
        elif record["event"] == "step":
            done = record["step"] / self._total
            bar = "#" * int(done * 30)
            self._stream.write(
                f"\rstep {record['step']}/{self._total} [{bar:<30}] loss {record['loss']:.4f} "
                f"{record['samples_per_second']:.0f} samples/s"
            )
        else:
            detail = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("event", "time"))
            self._stream.write(f"\r\033[K{record['event']}: {detail}\n")
        self._stream.flush()

    def sync(self) -> None:
        """Upload the whole metrics log when it lives in object storage (local logs are live)."""
        if self._file is None:
            storage.write_bytes(self._uri, ("\n".join(self._remote_lines) + "\n").encode())

    def close(self) -> None:
        """Sync the log, stop the endpoint and end the progress line."""
        self.sync()
        if self._file is not None:
            self._file.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
