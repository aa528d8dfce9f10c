"""A keep-alive load generator that behaves like clients behind kube-proxy during a pod's drain.

Used by ``benchmarks/server_throughput.py`` and the drain tests. Each of ``concurrency`` workers
keeps one HTTP/1.1 connection and sends batch-1 inference requests back to back, reusing the
connection (keep-alive) until the server closes it (``Connection: close``). It opens a new
connection only while the *router* still routes to the server: the router polls
``/v2/health/ready`` and stops routing ``router_lag_s`` after it first sees 503, as kube-proxy or
a load balancer does after its next probe (Kubernetes endpoints). Connections already open keep
carrying requests (kube-proxy pins established connections), which is what lost requests when
the server closed them while a request was on its way.

Counted per request: ``ok`` (200), ``failed`` (any other status), ``lost`` (written on an open
connection, no complete response: reset or closed), ``refused`` (a new connection was refused:
never sent). Before reusing a connection a worker checks it was not closed by the server while
idle, as pooled clients (urllib3, httpcore) do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from contracts.serving import READY_PATH

__all__ = ["DrainResult", "drain_load"]


@dataclass(slots=True)
class DrainResult:
    """Outcome of one :func:`drain_load` run."""

    ok: int = 0
    failed: int = 0
    lost: int = 0
    refused: int = 0
    connections: int = 0
    ok_after_signal: int = 0
    """Requests answered 200 after ``on_started`` returned (during the drain)."""
    close_headers_after_signal: int = 0
    """Responses after the signal that carried ``Connection: close``."""
    errors: list[str] = field(default_factory=list)


def _closed_by_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the server closed this idle connection (its FIN already reached the reader)."""
    return reader.at_eof() or writer.is_closing()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, connection_close) of one response with a Content-Length body."""
    status_line = await reader.readuntil(b"\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length, close = 0, False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and b"close" in value.lower():
            close = True
    await reader.readexactly(length)
    return int(status_line[9:12]), close


async def drain_load(
    port: int,
    path: str,
    body: bytes,
    *,
    concurrency: int = 32,
    warmup_s: float = 0.5,
    on_started: Callable[[], None],
    router_lag_s: float = 0.5,
    probe_interval_s: float = 0.05,
    deadline_s: float = 60.0,
    host: str = "127.0.0.1",
) -> DrainResult:
    """Load the server for ``warmup_s``, call ``on_started`` (send SIGTERM there), and keep the
    load on until every worker has stopped because the router stopped routing (see the module
    docstring). Bounded by ``deadline_s``."""
    result = DrainResult()
    request = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    routing = True
    signalled = asyncio.Event()
    stop_at = time.monotonic() + deadline_s

    async def router() -> None:
        nonlocal routing
        await signalled.wait()
        while time.monotonic() < stop_at:
            try:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(f"GET {READY_PATH} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode())
                status, _ = await _read_response(reader)
                writer.close()
            except (OSError, asyncio.IncompleteReadError):
                status = 0
            if status != 200:
                await asyncio.sleep(router_lag_s)  # the balancer acts on its next probe
                routing = False
                return
            await asyncio.sleep(probe_interval_s)
        routing = False

    async def worker() -> None:
        reader = writer = None
        try:
            while time.monotonic() < stop_at:
                if writer is not None and _closed_by_peer(reader, writer):
                    writer.close()
                    reader = writer = None
                if writer is None:
                    if not routing:
                        return
                    try:
                        reader, writer = await asyncio.open_connection(host, port)
                    except OSError:
                        result.refused += 1
                        return
                    result.connections += 1
                after_signal = signalled.is_set()
                try:
                    writer.write(request)
                    status, close = await asyncio.wait_for(_read_response(reader), timeout=30)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
                    result.lost += 1
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    writer.close()
                    reader = writer = None
                    continue
                if status == 200:
                    result.ok += 1
                    result.ok_after_signal += after_signal
                else:
                    result.failed += 1
                    result.errors.append(f"status {status}")
                result.close_headers_after_signal += after_signal and close
                if close:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    async def conductor() -> None:
        await asyncio.sleep(warmup_s)
        on_started()
        signalled.set()

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await asyncio.gather(conductor(), router(), *tasks)
    with contextlib.suppress(Exception):
        await asyncio.sleep(0)
    return result
