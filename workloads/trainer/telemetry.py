"""Rank-0 telemetry: progress output, a JSON-lines metrics log and a Prometheus endpoint.

Every record is a flat JSON object with an ``event`` key (``start``, ``resume``, ``step``,
``checkpoint``, ``export``, ``done``). Records go to the metrics log, to the progress output
(a one-line bar when stderr is a terminal, else the JSON line itself on stderr) and, for the
keys named in :data:`METRICS`, to the Prometheus gauges.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from workloads import storage

__all__ = ["MetricDef", "METRICS", "PROMETHEUS_CONTENT_TYPE", "render_prometheus", "Telemetry"]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


def render_prometheus(values: dict[str, float]) -> str:
    """Prometheus text exposition of the metrics in ``values`` (keyed by metric name)."""
    lines = []
    for metric in METRICS:
        if metric.name in values:
            lines += [
                f"# HELP {metric.name} {metric.help}",
                f"# TYPE {metric.name} {metric.kind}",
                f"{metric.name} {float(values[metric.name])!r}",
            ]
    return "\n".join(lines) + "\n"


class _MetricsServer:
    """A tiny threaded HTTP server answering ``GET /metrics``."""

    def __init__(self, host: str, port: int, values: dict[str, float], lock: threading.Lock):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                with lock:
                    body = render_prometheus(values).encode()
                self.send_response(200)
                self.send_header("Content-Type", PROMETHEUS_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # scrapes are not worth a log line each

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


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
        self._values: dict[str, float] = {}
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
        self._server = _MetricsServer(host, port, self._values, self._lock) if port is not None else None
        self.port = self._server.port if self._server else None

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
                    self._values[metric.name] = value
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
            self._server.close()
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
