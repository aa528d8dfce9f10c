"""The HTTP server: Open Inference Protocol v2 routes on Starlette, run by uvicorn.

Routes (``{name}`` is the served model name; ``/versions/{version}`` is optional everywhere)::

    GET  /v2                                   server metadata
    GET  /v2/health/live                       200 while the process runs
    GET  /v2/health/ready                      200 when every model is loaded, 503 otherwise
    GET  /v2/models/{name}[/versions/{v}]      model metadata (+ quantization report)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer
    GET  /metrics                              Prometheus text format (on ``--metrics-port``
                                               alone when that is set)

Two artifacts are served as versions "1" (``--model``) and "2" (``--model-b``) of one name;
requests without a version go to "1", or to "2" with probability ``--b-weight`` (a canary dial).

Lifecycle: the listener opens at once (live) and the models load in the background (ready when
done; a load failure stops the process with exit code 1). On SIGTERM readiness turns false at
once and every response from then on carries ``Connection: close``; the server keeps serving for
``--shutdown-drain-s``, then closes the listener, finishes in-flight and queued requests, closes
each idle keep-alive connection once it has been idle ``--drain-idle-s`` (one on which a request
is arriving is answered first) and exits 0.

Connections (:class:`HardenedHttpToolsProtocol`, uvicorn's httptools protocol plus what uvicorn
does not bound): header and body read deadlines (408), a header size limit (431), a connection
limit (503), the keep-alive timeout, and the drain above.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
import logging
import os
import random
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

import numpy as np
import orjson
import torch
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from contracts.serving import LIVE_PATH, METRICS_PATH, READY_PATH
from workloads.server import metrics as m
from workloads.server.batching import DynamicBatcher
from workloads.server.config import ServerConfig
from workloads.server.model import ServedModel
from workloads.server.protocol import (
    BINARY_HEADER,
    EXTENSIONS,
    InvalidInput,
    ModelNotFound,
    NotReady,
    PayloadTooLarge,
    ProtocolError,
    decode_infer_request,
    encode_infer_response,
    error_body,
)

__all__ = ["SERVER_NAME", "HardenedHttpToolsProtocol", "ServerState", "build_server", "create_app", "run_server"]

log = logging.getLogger("workloads.server")

SERVER_NAME = "aicloud-server"
try:
    SERVER_VERSION = importlib.metadata.version("aicloud")
except importlib.metadata.PackageNotFoundError:  # running from a source tree without install
    SERVER_VERSION = "0+unknown"

_JSON = "application/json"
_BINARY_HEADER = BINARY_HEADER.encode()
_INFER_HEADERS = frozenset({b"content-length", b"expect", _BINARY_HEADER})
"""Request headers the inference path reads (ASGI header names are lower case)."""


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status, headers, _JSON)


def _error(exc: ProtocolError) -> Response:
    return Response(error_body(exc.message), exc.status, exc.headers, _JSON)


class ServerState:
    """Everything one server instance holds: config, models, batcher, metrics and flags."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = m.ServerMetrics()
        self.models: dict[str, ServedModel] = {}
        """Served versions by version string ("1", and "2" with ``model_b``)."""
        self.name: str | None = None
        self.load_error: str | None = None
        self.draining = False
        self._random = random.Random()
        self._batch_size = self.metrics[m.BATCH_SIZE]
        self.batcher = DynamicBatcher(
            max_batch_size=config.max_batch_size,
            max_queue_delay_s=config.max_queue_delay_ms / 1000.0,
            max_queue_size=config.max_queue_size,
            retry_after_s=config.retry_after_s,
            on_batch=lambda model, rows: self._batch_size.labels(model.name, model.version).observe(rows),
        )

    @property
    def ready(self) -> bool:
        """Every model is loaded, none failed, and no shutdown has begun."""
        return bool(self.models) and self.load_error is None and not self.draining

    def load_models(self) -> None:
        """Load every configured artifact (blocking; run off the event loop)."""
        cfg = self.config
        try:
            first = ServedModel.load(
                cfg.model, version="1", name=cfg.name, precision=cfg.precision,
                quant_engine=cfg.quant_engine, device=cfg.device,
                drift_window=cfg.drift_window, warmup_batch=cfg.max_batch_size,
                calibration_s=cfg.calibration_s,
            )  # fmt: skip
            loaded = {"1": first}
            if cfg.model_b is not None:
                second = ServedModel.load(
                    cfg.model_b, version="2", name=first.name, precision=cfg.precision,
                    quant_engine=cfg.quant_engine, device=cfg.device,
                    drift_window=cfg.drift_window, warmup_batch=cfg.max_batch_size,
                    calibration_s=cfg.calibration_s,
                )  # fmt: skip
                if (second.input_spec, second.output_spec) != (first.input_spec, first.output_spec):
                    raise ValueError(
                        f"model_b {cfg.model_b} has inputs/outputs {second.input_spec}, "
                        f"{second.output_spec}; version 2 must match version 1: "
                        f"{first.input_spec}, {first.output_spec}"
                    )
                loaded["2"] = second
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("model load failed")
            raise
        for served in loaded.values():
            labels = (served.name, served.version)
            r = served.report
            self.metrics[m.MODEL_LOAD_SECONDS].labels(*labels).set(served.load_seconds)
            self.metrics[m.QUANTIZATION_AGREEMENT].labels(*labels, r.precision).set(r.top1_agreement)
            self.metrics[m.HELDOUT_ACCURACY].labels(*labels, "fp32").set(r.fp32_accuracy)
            self.metrics[m.HELDOUT_ACCURACY].labels(*labels, r.precision).set(r.served_accuracy)
            for layer, precision in r.layers.items():
                self.metrics[m.LAYER_PRECISION].labels(*labels, layer, precision).set(1)
        self.name = first.name
        self.models = loaded
        # Move everything loaded so far (torch, the models) out of the collector's reach: full
        # collections then scan only request garbage, which cut the c=64 p99 about threefold.
        gc.collect()
        gc.freeze()

    def resolve(self, name: str, version: str | None) -> ServedModel:
        """The model for a request path, or a 503 (still loading) / 404 (unknown) error."""
        if not self.models:
            raise NotReady(f"model load failed: {self.load_error}" if self.load_error else "models are loading")
        if name != self.name:
            raise ModelNotFound(f"unknown model {name!r}; this server serves {self.name!r}")
        if version is None:
            if "2" in self.models and self._random.random() < self.config.b_weight:
                return self.models["2"]
            return self.models["1"]
        served = self.models.get(version)
        if served is None:
            raise ModelNotFound(f"unknown version {version!r} of model {name!r}; versions: {list(self.models)}")
        return served

    def render_metrics(self) -> bytes:
        """Refresh the gauges that are sampled at scrape time and render all metrics."""
        self.metrics[m.READY].set(1 if self.ready else 0)
        for served in self.models.values():
            labels = (served.name, served.version)
            self.metrics[m.QUEUE_DEPTH].labels(*labels).set(self.batcher.depth(served))
            if served.drift is None:
                continue
            values, rows = served.drift.snapshot()
            self.metrics[m.DRIFT_ROWS].labels(*labels).set(rows)
            if rows:
                psi_gauge = self.metrics[m.FEATURE_PSI]
                for feature, value in enumerate(values.tolist()):
                    psi_gauge.labels(*labels, str(feature)).set(value)
        return self.metrics.render()


_DISCARD_LIMIT = 64 * 1024 * 1024
"""Most bytes of an oversized body read and thrown away before its 413, so that clients that
write the whole body before reading (Python's http.client, many proxies) read the 413 instead of
a connection reset. Larger bodies get the 413 at once (and may see the reset)."""


async def _discard(receive: Receive, received: int) -> None:
    """Read and drop the rest of a body (up to :data:`_DISCARD_LIMIT` bytes in all)."""
    while received <= _DISCARD_LIMIT:
        message = await receive()
        received += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return


async def _read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The request body from ASGI ``receive``, refusing more than ``limit`` bytes (413).

    A body over the limit is drained first (bounded, see :data:`_DISCARD_LIMIT`) unless the
    client waits for ``100 Continue``; the 413 carries ``Connection: close`` either way. The time
    spent is bounded by the connection's body deadline (``--body-timeout-s``).
    """
    declared = headers.get(b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput(f"Content-Length {declared.decode(errors='replace')!r} is not a number")
        if int(declared) > limit:
            message = f"request body of {int(declared)} bytes exceeds the limit of {limit}"
            if int(declared) <= _DISCARD_LIMIT and headers.get(b"expect", b"").lower() != b"100-continue":
                await _discard(receive, 0)
            raise PayloadTooLarge(message)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _discard(receive, size)
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _check_finite(y: np.ndarray, x: np.ndarray) -> None:
    """400 when the model's outputs for this request are not finite (inputs too large for it)."""
    if np.isfinite(y).all():
        return
    rows = np.flatnonzero(~np.isfinite(y).all(axis=1))
    shown = rows[:10].tolist()
    raise InvalidInput(
        f"the model's outputs are not finite for rows {shown}{' ...' if len(rows) > 10 else ''} of "
        f"inputs[0]: their values (largest magnitude {float(np.abs(x[rows]).max()):.3g}) overflow this "
        "model's arithmetic"
    )


def _infer_path(path: str) -> tuple[str, str | None] | None:
    """``(name, version)`` for ``/v2/models/{name}[/versions/{version}]/infer``, else None."""
    parts = path.split("/")
    if parts[-1] != "infer" or parts[1:3] != ["v2", "models"] or not parts[3]:
        return None
    if len(parts) == 5:
        return parts[3], None
    if len(parts) == 7 and parts[4] == "versions" and parts[5]:
        return parts[3], parts[5]
    return None


class _InferFastPath:
    """ASGI middleware that answers ``.../infer`` itself, before Starlette's routing.

    Inference is the hot path: handling it here skips the router's regex matching, the exception
    middleware and the Request/Response objects (about a fifth of the per-request CPU under
    load). Every other route, and any unexpected error (500 via the app's handler), stays with
    Starlette.
    """

    def __init__(self, app: ASGIApp, infer: Callable[[Receive, dict[bytes, bytes], str, str | None], Any]) -> None:
        self.app = app
        self.infer = infer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = _infer_path(scope["path"]) if scope["type"] == "http" else None
        if target is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":
            found = {key: value for key, value in scope["headers"] if key in _INFER_HEADERS}
            status, body, headers = await self.infer(receive, found, *target)
        else:
            message = f"{scope['method']} is not allowed on {scope['path']}; use POST"
            status, body, headers = 405, error_body(message), {"allow": "POST"}
        raw = [(key.encode(), value.encode()) for key, value in headers.items()]
        if "content-type" not in headers:
            raw.append((b"content-type", _JSON.encode()))
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def create_app(config: ServerConfig, *, on_load_failure: Callable[[], None] | None = None) -> Starlette:
    """The Starlette application for ``config``; ``app.state.server`` is its :class:`ServerState`.

    Models start loading when the app starts (lifespan); ``on_load_failure`` is called if that
    fails (``run_server`` uses it to stop the process).
    """
    state = ServerState(config)
    requests_total = state.metrics[m.REQUESTS]
    latency = state.metrics[m.REQUEST_LATENCY]
    inflight = state.metrics[m.INFLIGHT]
    max_bytes, max_rows = config.max_request_bytes, config.max_request_rows

    async def server_metadata(request: Request) -> Response:
        return _json({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)})

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        return _json({"ready": state.ready}, 200 if state.ready else 503)

    async def model_metadata(request: Request) -> Response:
        version = request.path_params.get("version")
        try:
            served = state.resolve(request.path_params["name"], version)
        except ProtocolError as exc:
            return _error(exc)
        return _json(served.metadata([version] if version else list(state.models)))

    async def model_ready(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            served = state.resolve(name, request.path_params.get("version"))
        except ModelNotFound as exc:
            return _error(exc)
        except NotReady:
            return _json({"name": name, "ready": False}, 503)
        ok = not state.draining
        return _json({"name": served.name, "version": served.version, "ready": ok}, 200 if ok else 503)

    async def infer(
        receive: Receive, headers: dict[bytes, bytes], name: str, version: str | None
    ) -> tuple[int, bytes, dict[str, str]]:
        start = time.perf_counter()
        label_model, label_version, status = "", "", 500
        inflight.inc()
        try:
            served = state.resolve(name, version)
            label_model, label_version = served.name, served.version
            body = await _read_body(receive, headers, max_bytes)
            json_length = headers.get(_BINARY_HEADER)
            if json_length is not None and not json_length.isdigit():
                shown = json_length.decode(errors="replace")
                raise InvalidInput(f"Inference-Header-Content-Length {shown!r} is not a number")
            parsed = decode_infer_request(
                body,
                input_spec=served.input_spec,
                output_names=served.output_names,
                max_rows=max_rows,
                json_length=None if json_length is None else int(json_length),
            )
            y = await state.batcher.submit(served, parsed.x)
            _check_finite(y, parsed.x)
            payload, response_headers = encode_infer_response(
                model_name=served.name,
                model_version=served.version,
                request=parsed,
                output_name=served.output_spec.name,
                y=y,
            )
            status = 200
            return 200, payload, response_headers
        except ProtocolError as exc:
            status = exc.status
            return exc.status, error_body(exc.message), exc.headers
        finally:
            inflight.dec()
            requests_total.labels(label_model, label_version, str(status)).inc()
            if label_model:
                latency.labels(label_model, label_version).observe(time.perf_counter() - start)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(state.render_metrics(), 200, media_type=m.CONTENT_TYPE)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _json({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code)

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _json({"error": f"internal server error: {type(exc).__name__}"}, 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.batcher.start(asyncio.get_running_loop())
        metrics_listener = None
        if config.metrics_port is not None:
            metrics_listener = await serve_metrics(state, config.host, config.metrics_port)
        loader = asyncio.create_task(asyncio.to_thread(state.load_models))

        def loaded(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None and on_load_failure:
                on_load_failure()

        loader.add_done_callback(loaded)
        yield
        state.draining = True
        if metrics_listener is not None:
            metrics_listener.close()
        await asyncio.to_thread(state.batcher.close, config.graceful_timeout_s)

    model_routes = []
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        model_routes += [
            Route(prefix, model_metadata, methods=["GET"]),
            Route(prefix + "/ready", model_ready, methods=["GET"]),
        ]
    app = Starlette(
        routes=[
            Route("/v2", server_metadata, methods=["GET"]),
            Route(LIVE_PATH, live, methods=["GET"]),
            Route(READY_PATH, ready, methods=["GET"]),
            *model_routes,
            *([Route(METRICS_PATH, metrics_endpoint, methods=["GET"])] if config.metrics_port is None else []),
        ],
        middleware=[Middleware(_InferFastPath, infer=infer)],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.server = state
    return app


def _raw_response(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` error response, written by the protocol itself."""
    body = error_body(message)
    phrase = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}[status]
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: {_JSON}\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class HardenedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits uvicorn leaves open, and a lossless drain.

    uvicorn covers, through its own settings: the keep-alive idle timeout (``timeout_keep_alive``)
    and the connection limit for requests (``limit_concurrency``: 503 once a request's headers
    arrive on a connection beyond it). It does not cover, so this class does:

    - a header deadline: from a connection's opening (or a keep-alive request's first byte) to
      the end of the headers, ``header_timeout_s``; then 408 (or a silent close if nothing was
      sent) and the connection closes. uvicorn arms no timer on a new connection and cancels
      its keep-alive timer at the first byte, so partial requests (slowloris) were held forever;
    - a body deadline: from the end of the headers to the end of the body, ``body_timeout_s``
      (a Content-Length larger than the body sent was never answered); then 408 and close;
    - a header size limit, ``max_header_bytes`` (httptools/llhttp has none, and uvicorn's
      ``h11_max_incomplete_event_size`` applies to h11 only): 431 and close;
    - a hard cap on open connections at 1.25 x ``limit_concurrency``: uvicorn counts connections
      but never refuses one, so idle connections beyond the limit held file descriptors;
    - the drain (:meth:`begin_drain`, :meth:`shutdown`): once the server drains, every response
      carries ``Connection: close``, and an idle connection is closed only after ``drain_idle_s``
      without a byte (uvicorn closed idle keep-alive connections at once when the listener
      closed, losing requests already on their way).

    The settings are class attributes, bound per server by :func:`build_server`.
    """

    header_timeout_s = 10.0
    body_timeout_s = 30.0
    max_header_bytes = 32 * 1024
    hard_connection_cap = 1250
    drain_idle_s = 1.0
    server_state_ref: ServerState | None = None
    LINGER_S = 2.0
    """Most seconds a refused connection keeps reading (and dropping) input before it closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = "headers"  # "headers" (awaiting or reading them), "body", "done"
        self._header_bytes = 0
        self._discarding = False

    # -- timers ---------------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _arm_idle_close(self) -> None:
        """Close this connection if no byte arrives within ``drain_idle_s`` (uvicorn cancels its
        keep-alive timer, which this reuses, on every byte received)."""
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(self.drain_idle_s, self.timeout_keep_alive_handler)

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``Connection: close`` and close, or only close when a response
        is already on this connection (one answer per request, never two)."""
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() sees a disconnect, its send() is dropped
            cycle.message_event.set()
        pending = cycle is not None and not cycle.response_complete and self._phase == "headers"
        if (self._phase == "body" and cycle is not None and cycle.response_started) or pending:
            self._linger_close()  # the request's answer went out (or a pipelined one is pending)
            return
        if status == 408 and self._phase == "headers" and not self._header_bytes:
            self.transport.close()  # nothing sent: close quietly, like an idle keep-alive timeout
            return
        self.transport.write(_raw_response(status, message))
        self._linger_close()

    def _linger_close(self) -> None:
        """Send FIN after the response but keep reading (and dropping) what the client still
        sends for up to :attr:`LINGER_S`: closing with unread input makes the kernel reset the
        connection, and the client would see the reset instead of the error response."""
        self._discarding = True
        self._disarm()
        self._unset_keepalive_if_required()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._deadline = self.loop.call_later(self.LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def eof_received(self) -> bool | None:
        if self._discarding:
            self.transport.close()
        return None

    def _expired(self) -> None:
        self._deadline = None
        if self._discarding:
            return
        if self._phase == "headers":
            self._refuse(408, f"request headers not received within {self.header_timeout_s:g} s")
        elif self._phase == "body":
            self._refuse(408, f"request body not received within {self.body_timeout_s:g} s")

    @property
    def _draining(self) -> bool:
        state = self.server_state_ref
        return state is not None and state.draining

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.hard_connection_cap:
            self.transport.write(_raw_response(503, "too many open connections; retry later"))
            self._linger_close()
            return
        self._arm(self.header_timeout_s)
        if self._draining:
            self._arm_idle_close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._phase != "body":
            self._header_bytes += len(data)
        super().data_received(data)
        if self._phase == "headers" and self._header_bytes > self.max_header_bytes:
            self._refuse(431, f"request line and headers exceed {self.max_header_bytes} bytes")

    # -- httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != "headers":
            self._phase = "headers"
            self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase, self._header_bytes = "body", 0
        self._arm(self.body_timeout_s)
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # the response carries Connection: close

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = "done"
        self._disarm()

    # -- drain ----------------------------------------------------------------------------------
    def _idle(self) -> bool:
        return (
            (self.cycle is None or self.cycle.response_complete)
            and not (self._phase == "headers" and self._header_bytes)
            and self._phase != "body"
        )

    def begin_drain(self) -> None:
        """The server started draining: answer with ``Connection: close`` from now on; an idle
        connection closes after ``drain_idle_s`` without a byte."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif self._idle():
            self._arm_idle_close()

    def shutdown(self) -> None:
        """The listener closed (uvicorn): finish the request in progress with ``Connection:
        close``; an idle connection is not cut now but after ``drain_idle_s`` without a byte, so
        a request already on its way is still answered."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif self._idle() and self.timeout_keep_alive_task is None:
            self._arm_idle_close()


async def serve_metrics(state: ServerState, host: str, port: int) -> asyncio.Server:
    """A listener on ``port`` answering ``GET /metrics`` (and 404 to anything else), one response
    per connection: the scrape port, kept apart from the inference port the front doors reach."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, path, *_ = head.split(b"\r\n", 1)[0].split(b" ") + [b"", b""]
            if method in (b"GET", b"HEAD") and path.split(b"?", 1)[0] == METRICS_PATH.encode():
                body, status, ctype = state.render_metrics(), b"200 OK", m.CONTENT_TYPE.encode()
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                + (b"" if method == b"HEAD" else body)
            )  # fmt: skip
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


class _GracefulServer(uvicorn.Server):
    """uvicorn with the shutdown this server promises: SIGTERM/SIGINT turn readiness false at
    once and start the connections' drain (``Connection: close`` on every response), serving goes
    on for ``shutdown_drain_s``, then uvicorn's graceful shutdown finishes in-flight requests,
    and the process exits 0 (uvicorn alone would re-raise the signal)."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[Any] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def _drain_connections(self) -> None:
        for connection in list(self.server_state.connections):
            begin = getattr(connection, "begin_drain", None)
            if begin is not None:
                begin()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.state.draining:  # a second signal: stop draining (and on SIGINT, stop waiting)
            self.force_exit = self.should_exit and sig == signal.SIGINT
            self.should_exit = True
            return
        self.state.draining = True
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self.loop.call_soon_threadsafe(self._drain_connections)
        delay = self.state.config.shutdown_drain_s
        log.info("signal %s: readiness false; closing the listener in %.1f s", sig, delay)
        if delay > 0:
            timer = threading.Timer(delay, lambda: setattr(self, "should_exit", True))
            timer.daemon = True
            timer.start()
        else:
            self.should_exit = True


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _connection_limit(wanted: int) -> int:
    """``wanted``, lowered so that 1.25x it (the hard cap) stays below the file descriptor limit."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    usable = max(2, int((soft - 64) / 1.25))  # 64 for the model files, logs and sockets
    if usable < wanted:
        log.warning("max_connections %d lowered to %d: the file descriptor limit is %d", wanted, usable, soft)
    return min(wanted, usable)


def build_server(
    config: ServerConfig, *, on_load_failure: Callable[[], None] | None = None
) -> tuple[_GracefulServer, Starlette]:
    """The uvicorn server (hardened protocol, graceful drain) and the app for ``config``."""
    server: _GracefulServer | None = None

    def stop() -> None:
        if on_load_failure is not None:
            on_load_failure()
        if server is not None:
            server.should_exit = True

    app = create_app(config, on_load_failure=stop)
    state: ServerState = app.state.server
    limit = _connection_limit(config.max_connections)
    protocol = type(
        "HardenedHttpToolsProtocol",
        (HardenedHttpToolsProtocol,),
        {
            "header_timeout_s": config.header_timeout_s,
            "body_timeout_s": config.body_timeout_s,
            "max_header_bytes": config.max_header_bytes,
            "hard_connection_cap": max(limit + 1, int(limit * 1.25)),
            "drain_idle_s": config.drain_idle_s,
            "server_state_ref": state,
        },
    )
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=protocol,
        log_level=config.log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        lifespan="on",
        limit_concurrency=limit,
        timeout_keep_alive=config.keep_alive_timeout_s,  # type: ignore[arg-type]  # used as a float
        timeout_graceful_shutdown=config.graceful_timeout_s,  # type: ignore[arg-type]
    )
    server = _GracefulServer(uv_config, state)
    return server, app


def run_server(config: ServerConfig) -> int:
    """Serve until SIGTERM/SIGINT; return the process exit code (0, or 1 if loading failed)."""
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(config.torch_threads or _usable_cpus())
    server, app = build_server(config)
    server.run()
    return 1 if app.state.server.load_error else 0
