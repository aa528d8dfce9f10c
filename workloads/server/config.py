"""Server configuration: one typed dataclass, validated in one place, and the command line.

``python -m workloads.server --model URI [--model-b URI] --port 8080 ...`` parses into
:class:`ServerConfig`; every bad value fails before anything is loaded, with one message per
problem naming the option, the bad value and what is allowed.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Literal, get_args

from contracts.serving import SERVER_PORT

__all__ = [
    "ConfigError",
    "Device",
    "Precision",
    "QuantEngine",
    "ServerConfig",
    "build_parser",
    "parse_args",
]

Precision = Literal["auto", "fp32", "int8", "bf16"]
QuantEngine = Literal["auto", "rowwise"]
Device = Literal["auto", "cpu", "cuda"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class ConfigError(ValueError):
    """One or more server settings are invalid; the message lists every problem."""


@dataclass(kw_only=True, slots=True)
class ServerConfig:
    """Settings of one model server process (defaults suit one pod with one or two CPU cores)."""

    model: str
    """URI of the serving artifact served as version "1" (local path, file://, s3://, gs://)."""
    model_b: str | None = None
    """URI of a second artifact served as version "2" of the same model name (A/B, canary)."""
    name: str | None = None
    """Served model name; default: the ``name`` in the manifest of ``model``."""
    b_weight: float = 0.0
    """Share in [0, 1] of requests without a version that go to version "2" (a canary dial).
    0 sends them all to version "1"; needs ``model_b`` when above 0. Explicit
    ``/versions/{v}/`` requests always reach that version."""
    host: str = "0.0.0.0"
    """Address to listen on (``0.0.0.0`` in a pod; tests use ``127.0.0.1``)."""
    port: int = SERVER_PORT
    """TCP port, 1-65535."""
    metrics_port: int | None = None
    """Serve ``/metrics`` on this port only, not on ``port``: in a cluster the inference port is
    what load balancers and front doors reach, and the metrics (model names, traffic, drift) are
    for Prometheus alone. Default: on ``port`` (local use)."""
    precision: Precision = "auto"
    """``auto``: on CPU, int8 for the Linear layers where it is faster than fp32 and fp32 for
    the others (``calibration_s``); bf16 on CUDA. ``int8`` on CPU quantizes every Linear layer;
    on CUDA it needs torchao (int8 weight-only). ``fp32`` serves unquantized."""
    calibration_s: float = 1.0
    """``auto`` precision on CPU: at load, time each linear layer's int8 and fp32 kernels on the
    rows it sees at ``max_batch_size`` for at most this many seconds in all, and serve each layer
    at the faster one. Layers the time does not reach, or all with 0, follow a measured shape
    rule (deterministic). At most 60."""
    quant_engine: QuantEngine = "auto"
    """CPU int8 kernel; ``auto`` is ``rowwise``: int8 weights per output channel, activations
    quantized per row at run time, so a request's result never depends on its batch (see
    :class:`workloads.server.quantize.RowwiseInt8Linear`)."""
    device: Device = "auto"
    """``auto``: CUDA when available, else CPU."""
    torch_threads: int = 0
    """Intra-op threads of the model worker; 0 means one per CPU this process may run on."""
    max_batch_size: int = 64
    """Most rows in one forward pass; 1 disables dynamic batching (``--no-batching``). A single
    request with more rows (up to ``max_request_rows``) runs as a batch of its own."""
    max_queue_delay_ms: float = 0.0
    """How long the worker may hold the oldest queued request waiting for more rows. 0 batches
    whatever queued up during the previous forward pass, which adds no latency when idle."""
    max_queue_size: int = 512
    """Requests waiting for the worker before new ones are refused with 503 + Retry-After."""
    max_request_bytes: int = 8 * 1024 * 1024
    """Largest accepted request body in bytes (413 above)."""
    max_request_rows: int = 1024
    """Most rows (batch dimension) in one request (413 above)."""
    drift_window: int = 10_000
    """Rows per drift window: the PSI gauges cover the last complete window plus the current
    partial one."""
    shutdown_drain_s: float = 0.0
    """After SIGTERM, keep serving (readiness already false) this long so load balancers stop
    routing here before the listener closes; then in-flight and queued requests finish."""
    graceful_timeout_s: float = 30.0
    """Upper bound on waiting for in-flight requests after the listener closed."""
    retry_after_s: int = 1
    """Retry-After seconds sent with 503 when the queue is full."""
    header_timeout_s: float = 10.0
    """Most seconds from a connection's opening (or a keep-alive request's first byte) to the end
    of the request headers; then 408 and the connection closes (slow or partial clients)."""
    body_timeout_s: float = 30.0
    """Most seconds from the end of the headers to the end of the body (e.g. a Content-Length
    larger than the body sent); then 408 and the connection closes."""
    max_header_bytes: int = 32 * 1024
    """Largest request line plus headers in bytes; beyond: 431 and the connection closes."""
    max_connections: int = 1000
    """Open connections per process. Requests on connections beyond it get 503 (uvicorn's
    ``limit_concurrency``); connections beyond 1.25x it are closed on arrival. Lowered to stay
    below the process's file descriptor limit."""
    keep_alive_timeout_s: float = 75.0
    """Idle keep-alive connections close after this long. Keep it above the idle timeout of the
    load balancer in front (AWS ALB: 60 s) so the server never closes a connection the balancer
    is about to reuse."""
    drain_idle_s: float = 1.0
    """During shutdown, close a connection once it has been idle this long (a request in flight,
    or one already arriving, is answered with ``Connection: close`` instead)."""
    log_level: LogLevel = "info"
    """Log level of the server and uvicorn."""

    def __post_init__(self) -> None:
        errors: list[str] = []

        def bad(key: str, allowed: str) -> None:
            errors.append(f"{key}={getattr(self, key)!r} is not allowed: {allowed}")

        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_num(value: object) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

        if not isinstance(self.model, str) or not self.model:
            bad("model", "a non-empty artifact URI")
        if self.model_b is not None and (not isinstance(self.model_b, str) or not self.model_b):
            bad("model_b", "an artifact URI or None")
        if self.name is not None and (not isinstance(self.name, str) or not self.name or "/" in self.name):
            bad("name", "a non-empty model name without '/'")
        if not is_num(self.b_weight) or not 0.0 <= self.b_weight <= 1.0:
            bad("b_weight", "a number in [0, 1]")
        elif self.b_weight > 0 and self.model_b is None:
            bad("b_weight", "0 unless model_b is set (there is no version 2 to send traffic to)")
        if not isinstance(self.host, str) or not self.host:
            bad("host", "a non-empty address")
        if not is_int(self.port) or not 1 <= self.port <= 65535:
            bad("port", "an integer in 1..65535")
        if self.metrics_port is not None and (
            not is_int(self.metrics_port) or not 1 <= self.metrics_port <= 65535 or self.metrics_port == self.port
        ):
            bad("metrics_port", "an integer in 1..65535 other than port, or None")
        for key, literal in (
            ("precision", Precision),
            ("quant_engine", QuantEngine),
            ("device", Device),
            ("log_level", LogLevel),
        ):
            if getattr(self, key) not in get_args(literal):
                bad(key, f"one of {list(get_args(literal))}")
        for key, low in (
            ("torch_threads", 0),
            ("max_batch_size", 1),
            ("max_queue_size", 1),
            ("max_request_bytes", 1024),
            ("max_request_rows", 1),
            ("drift_window", 1),
            ("retry_after_s", 1),
            ("max_header_bytes", 1024),
            ("max_connections", 2),
        ):
            if not is_int(getattr(self, key)) or getattr(self, key) < low:
                bad(key, f"an integer >= {low}")
        for key in ("max_queue_delay_ms", "shutdown_drain_s", "graceful_timeout_s"):
            if not is_num(getattr(self, key)) or getattr(self, key) < 0:
                bad(key, "a finite number >= 0")
        if not is_num(self.calibration_s) or not 0 <= self.calibration_s <= 60:
            bad("calibration_s", "a number in [0, 60] (seconds; 0: the shape rule alone)")
        for key in ("header_timeout_s", "body_timeout_s", "keep_alive_timeout_s", "drain_idle_s"):
            if not is_num(getattr(self, key)) or getattr(self, key) <= 0:
                bad(key, "a finite number > 0")
        if errors:
            raise ConfigError("invalid server config: " + "; ".join(errors))


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m workloads.server`` argument parser (one option per config field)."""
    parser = argparse.ArgumentParser(
        prog="python -m workloads.server",
        description="Quantized model server speaking the Open Inference Protocol v2 over HTTP.",
    )
    parser.add_argument("--model", required=True, help="artifact URI served as version 1")
    parser.add_argument("--model-b", help="second artifact URI served as version 2 (A/B, canary)")
    parser.add_argument("--name", help="served model name (default: the manifest name)")
    parser.add_argument("--b-weight", type=float, default=0.0, help="share of unversioned "
                        "requests sent to version 2, 0..1 (default 0)")  # fmt: skip
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=SERVER_PORT)
    parser.add_argument("--metrics-port", type=int, default=None, help="serve /metrics on this port "
                        "only (default: on --port)")  # fmt: skip
    parser.add_argument("--precision", default="auto", choices=get_args(Precision))
    parser.add_argument("--calibration-s", type=float, default=1.0, help="auto on CPU: seconds to time "
                        "int8 vs fp32 per layer at load (0: shape rule only; default 1)")  # fmt: skip
    parser.add_argument("--quant-engine", default="auto", choices=get_args(QuantEngine))
    parser.add_argument("--device", default="auto", choices=get_args(Device))
    parser.add_argument("--torch-threads", type=int, default=0, help="0: one per usable CPU")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--no-batching", action="store_true", help="max batch size 1")
    parser.add_argument("--max-queue-delay-ms", type=float, default=0.0)
    parser.add_argument("--max-queue-size", type=int, default=512)
    parser.add_argument("--max-request-bytes", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--max-request-rows", type=int, default=1024)
    parser.add_argument("--drift-window", type=int, default=10_000)
    parser.add_argument("--shutdown-drain-s", type=float, default=0.0)
    parser.add_argument("--graceful-timeout-s", type=float, default=30.0)
    parser.add_argument("--retry-after-s", type=int, default=1)
    parser.add_argument("--header-timeout-s", type=float, default=10.0)
    parser.add_argument("--body-timeout-s", type=float, default=30.0)
    parser.add_argument("--max-header-bytes", type=int, default=32 * 1024)
    parser.add_argument("--max-connections", type=int, default=1000)
    parser.add_argument("--keep-alive-timeout-s", type=float, default=75.0)
    parser.add_argument("--drain-idle-s", type=float, default=1.0)
    parser.add_argument("--log-level", default="info", choices=get_args(LogLevel))
    return parser


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    """Parse the command line into a validated :class:`ServerConfig` (exit 2 on bad input)."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    if args.pop("no_batching"):
        args["max_batch_size"] = 1
    try:
        return ServerConfig(**args)
    except ConfigError as exc:
        parser.error(str(exc))
