"""Model server throughput and latency, all figures in one run.

    python benchmarks/server_throughput.py [--duration 4] [--json out.json] [--hostile-only]
                                           [--in-process-only] [--crossover] [--alternate ROUNDS]

1. In process, one torch thread, pinned to the server core: forward time at batch 1 and 32 for
   fp32 (stock PyTorch module and the server's fp32 serving graph), int8 (the server's per-row
   int8 on every layer), auto (the server's default: int8 or fp32 per layer, calibrated at
   batch 32 as a server with --max-batch-size 32 does at load), torch.ao's per-batch int8 (the
   cost baseline) and bf16, for (a) the reference MLP 256 -> 3 x 1024 -> 10 and (b) the trainer's
   default transformer preset (dims read from workloads.trainer.config), all in one interleaved
   run; and co-batched victims whose result an outlier row changes. ``--crossover`` adds the
   per-layer sweep behind the shape rule (int8 vs fp32 per Linear shape and row count);
   ``--alternate N`` runs only an HTTP c=64 comparison of auto and fp32 servers that are up at
   once, in N alternating load windows (ratios that the machine's changing load hits alike).
2. Over HTTP on 127.0.0.1: the server (``python -m workloads.server``) pinned to core 0, this
   closed-loop load generator (asyncio streams, keep-alive, one connection per concurrent client,
   batch-1 JSON requests) pinned to core 1; requests/s, p50 and p99 at concurrency 1, 8 and 64
   with dynamic batching on and off.
3. The server's added latency: served p50 at concurrency 1 minus the in-process batch-1 forward of
   the same prepared model, timed on the server's core just before that server's HTTP runs.
4. Hostile clients and shutdown (:func:`hostile`): co-batched victims over HTTP, good requests
   while 300 partial connections are held, requests lost in a SIGTERM drain at c=32 (3 runs).

The machine is shared: the script prints ``os.getloadavg()`` before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import orjson
import torch
import uvloop

from workloads.artifact import save_artifact
from workloads.drift import compute_reference
from workloads.models import build_model
from workloads.server.quantize import (
    BatchInvariantLinear,
    RowwiseInt8Linear,
    int8_pays_by_shape,
    prepare_auto,
    prepare_model,
    resolve_engine,
    serving_graph,
)
from workloads.trainer.config import preset

SERVER_CPU, CLIENT_CPU = 0, 1
CONCURRENCY = (1, 8, 64)


def model_specs() -> dict[str, tuple[str, dict]]:
    """(arch, kwargs) of the two benchmarked models."""
    transformer = preset("transformer")
    return {
        "mlp": ("mlp", {"in_features": 256, "hidden": [1024, 1024, 1024], "num_classes": 10}),
        "transformer": (
            "transformer",
            transformer.model.build_kwargs(transformer.data.in_features, transformer.data.num_classes),
        ),
    }


# ------------------------------------------------------------------------------ in process
def _time_interleaved(cases: dict[str, tuple[torch.nn.Module, torch.Tensor]], seconds: float) -> dict[str, float]:
    """Median milliseconds per forward of each case, timed in interleaved blocks of 10 calls so
    that load from other processes hits every case alike; the order is shuffled every round (with
    a fixed order, the case run right after a similar one measured up to 10 % faster)."""
    samples: dict[str, list[float]] = {key: [] for key in cases}
    with torch.inference_mode():
        for module, x in cases.values():
            for _ in range(5):
                module(x)
        keys, rng = list(cases), random.Random(0)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds * len(cases) or min(map(len, samples.values())) < 5:
            rng.shuffle(keys)
            for key in keys:
                module, x = cases[key]
                t0 = time.perf_counter()
                for _ in range(10):
                    module(x)
                samples[key].append((time.perf_counter() - t0) / 10 * 1e3)
    return {key: statistics.median(values) for key, values in samples.items()}


def _per_batch_int8(model: torch.nn.Module, engine: str) -> torch.nn.Module:
    """torch.ao dynamic quantization (one activation scale per batch): what the server served
    before per-row scales, kept here to measure what batch invariance costs."""
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(serving_graph(model), {torch.nn.Linear}, dtype=torch.qint8)


def in_process(seconds: float) -> dict[str, dict[str, float]]:
    """Forward ms by model, variant and batch size (one thread, pinned to the server core).

    Variants: ``fp32_stock`` (the workloads.models module), ``fp32`` / ``bf16`` (the server's
    serving graph), ``int8`` (the server's per-row int8, ``RowwiseInt8Linear``, every layer),
    ``auto`` (int8 or fp32 per layer, calibrated at batch 32 for 1 s, as the server does at load)
    and ``int8_per_batch`` (torch.ao dynamic quantization on fbgemm, one activation scale per
    batch: not batch invariant, the cost baseline).
    """
    os.sched_setaffinity(0, {SERVER_CPU})
    torch.set_num_threads(1)
    engine = resolve_engine("auto")
    per_batch_engine = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else "qnnpack"
    cpu = torch.device("cpu")
    results: dict[str, dict[str, float]] = {}
    for name, (arch, kwargs) in model_specs().items():
        torch.manual_seed(0)
        model = build_model(arch, **kwargs).eval()
        auto, choices = prepare_auto(model, torch.randn(32, kwargs["in_features"]), budget_s=1.0)
        modules = {
            "fp32_stock": (model, torch.float32),
            "fp32": (prepare_model(model, precision="fp32", device=cpu, engine=engine), torch.float32),
            "bf16": (prepare_model(model, precision="bf16", device=cpu, engine=engine), torch.bfloat16),
            "int8": (prepare_model(model, precision="int8", device=cpu, engine=engine), torch.float32),
            "auto": (auto, torch.float32),
            "int8_per_batch": (_per_batch_int8(model, per_batch_engine), torch.float32),
        }
        row: dict[str, float] = {}
        for batch in (1, 32):
            cases = {
                key: (module, torch.randn(batch, kwargs["in_features"]).to(dtype))
                for key, (module, dtype) in modules.items()
            }
            for key, ms in _time_interleaved(cases, seconds).items():
                row[f"{key}_b{batch}_ms"] = ms
            row[f"int8_speedup_b{batch}"] = row[f"fp32_b{batch}_ms"] / row[f"int8_b{batch}_ms"]
            row[f"int8_vs_stock_b{batch}"] = row[f"fp32_stock_b{batch}_ms"] / row[f"int8_b{batch}_ms"]
            row[f"int8_vs_per_batch_b{batch}"] = row[f"int8_per_batch_b{batch}_ms"] / row[f"int8_b{batch}_ms"]
            row[f"int8_samples_per_s_b{batch}"] = batch * 1e3 / row[f"int8_b{batch}_ms"]
            row[f"auto_speedup_b{batch}"] = row[f"fp32_b{batch}_ms"] / row[f"auto_b{batch}_ms"]
        row["engine"] = engine  # type: ignore[assignment]
        row["auto_layers"] = {c.layer: f"{c.precision} ({c.basis})" for c in choices}  # type: ignore[assignment]
        results[name] = row
    return results


CROSSOVER_SHAPES = ((64, 64), (128, 128), (256, 256), (256, 512), (512, 512), (256, 1024), (1024, 256),
                    (1024, 1024), (1024, 10), (64, 1024))  # fmt: skip
CROSSOVER_ROWS = (1, 32, 256)


def crossover(seconds: float) -> list[dict]:
    """int8 (per-row) vs fp32 (the server's batch-invariant fp32) per Linear shape and row count,
    one thread on the server core: the measurements behind ``quantize.int8_pays_by_shape``."""
    os.sched_setaffinity(0, {SERVER_CPU})
    torch.set_num_threads(1)
    out = []
    for rows in CROSSOVER_ROWS:
        for k, n in CROSSOVER_SHAPES:
            torch.manual_seed(0)
            linear = torch.nn.Linear(k, n)
            x = torch.randn(rows, k)
            ms = _time_interleaved(
                {"fp32": (BatchInvariantLinear(linear), x), "int8": (RowwiseInt8Linear(linear), x)}, seconds
            )
            out.append({"rows": rows, "in": k, "out": n, "fp32_us": ms["fp32"] * 1e3, "int8_us": ms["int8"] * 1e3,
                        "int8_speedup": ms["fp32"] / ms["int8"],
                        "rule_int8": int8_pays_by_shape(rows, k, n)})  # fmt: skip
            r = out[-1]
            agrees = (r["int8_speedup"] > 1) == r["rule_int8"]
            print(f"  rows {rows:4d} {k:5d} x {n:<5d} fp32 {r['fp32_us']:8.1f} us  int8 {r['int8_us']:8.1f} us  "
                  f"{r['int8_speedup']:5.2f}x  rule: {'int8' if r['rule_int8'] else 'fp32'}"
                  f"{'' if agrees else '  (rule differs)'}", flush=True)  # fmt: skip
    return out


def victims_in_process(rounds: int = 20, victims: int = 16) -> dict[str, dict[str, int]]:
    """Co-batched victims whose result changes, in process, for the reference MLP: each round
    batches ``victims`` rows with one attacker row (100, 1e30 or 3e38) and compares every victim
    with its output alone (changed: top-1 differs or max abs diff > 1e-4 x its max |logit|)."""
    torch.manual_seed(0)
    arch, kwargs = model_specs()["mlp"]
    model = build_model(arch, **kwargs).eval()
    cpu = torch.device("cpu")
    variants = {
        "int8": prepare_model(model, precision="int8", device=cpu, engine=resolve_engine("auto")),
        "int8_per_batch": _per_batch_int8(model, "fbgemm"),
        "fp32": prepare_model(model, precision="fp32", device=cpu, engine=""),
    }
    gen = torch.Generator().manual_seed(7)
    out: dict[str, dict[str, int]] = {}
    with torch.inference_mode():
        for key, module in variants.items():
            changed = total = failed = 0
            for r in range(rounds):
                x = torch.randn(victims, kwargs["in_features"], generator=gen)
                attacker = torch.full((1, kwargs["in_features"]), (100.0, 1e30, 3e38)[r % 3])
                alone = torch.cat([module(x[i : i + 1]) for i in range(victims)])
                try:
                    batched = module(torch.cat([x[: victims // 2], attacker, x[victims // 2 :]]))
                except RuntimeError:  # torch.ao at 3e38: the server retried such a batch row by row
                    failed += 1
                    total += victims
                    continue
                batched = torch.cat([batched[: victims // 2], batched[victims // 2 + 1 :]])
                scale = alone.abs().amax(dim=1)
                bad = (batched.argmax(1) != alone.argmax(1)) | ~((batched - alone).abs().amax(1) <= 1e-4 * scale)
                changed += int(bad.sum())
                total += victims
            out[key] = {"changed": changed, "victims": total, "failed_batches": failed}
    return out


# ------------------------------------------------------------------------------ over HTTP
@dataclass(slots=True)
class LoadResult:
    """One closed-loop run."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float


async def _client(host: str, port: int, bodies: list[bytes], path: str, stop_at: float,
                  warm_until: float, latencies: list[float], errors: list[int]) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    heads = [
        (f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
         f"content-length: {len(body)}\r\n\r\n").encode() + body
        for body in bodies
    ]  # fmt: skip
    i = 0
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            writer.write(heads[i % len(heads)])
            i += 1
            status_line = await reader.readuntil(b"\r\n")
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if t0 >= warm_until:
                if status_line[9:12] == b"200":
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors.append(int(status_line[9:12]))
    finally:
        writer.close()


async def _load(port: int, path: str, bodies: list[bytes], concurrency: int, seconds: float,
                warmup: float) -> LoadResult:  # fmt: skip
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    warm_until, stop_at = start + warmup, start + warmup + seconds
    await asyncio.gather(*(
        _client("127.0.0.1", port, bodies, path, stop_at, warm_until, latencies, errors)
        for _ in range(concurrency)
    ))  # fmt: skip
    elapsed = time.perf_counter() - warm_until
    lat = np.asarray(latencies) * 1e3
    return LoadResult(
        concurrency=concurrency,
        requests=len(latencies),
        errors=len(errors),
        seconds=round(elapsed, 3),
        rps=len(latencies) / elapsed,
        p50_ms=float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        p99_ms=float(np.percentile(lat, 99)) if len(lat) else float("nan"),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("server did not become ready")


def _forward_on_server_core(module: torch.nn.Module, features: int, seconds: float) -> float:
    """In-process batch-1 forward ms on the server's core, measured while the server idles."""
    os.sched_setaffinity(0, {SERVER_CPU})
    try:
        return _time_interleaved({"forward": (module, torch.randn(1, features))}, seconds)["forward"]
    finally:
        os.sched_setaffinity(0, {CLIENT_CPU})


def serve_and_load(artifact: str, features: int, *, precision: str, batching: bool, seconds: float,
                   warmup: float, module: torch.nn.Module) -> tuple[list[LoadResult], float]:  # fmt: skip
    """Start a pinned server, run the closed loop at each concurrency, stop the server; also time
    ``module`` (the same model, prepared in process) at batch 1 in the same time window."""
    port = _free_port()
    cmd = [
        "taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "workloads.server",
        "--model", artifact, "--host", "127.0.0.1", "--port", str(port),
        "--precision", precision, "--torch-threads", "1", "--log-level", "warning",
    ]  # fmt: skip
    if not batching:
        cmd.append("--no-batching")
    proc = subprocess.Popen(cmd)
    try:
        _wait_ready(port, proc)
        rng = np.random.default_rng(0)
        bodies = [
            orjson.dumps({"inputs": [{"name": "input__0", "shape": [1, features],
                                      "datatype": "FP32",
                                      "data": rng.standard_normal(features, dtype=np.float32)}]},
                         option=orjson.OPT_SERIALIZE_NUMPY)
            for _ in range(64)
        ]  # fmt: skip
        path = "/v2/models/bench/infer"
        forward_ms = _forward_on_server_core(module, features, 1.0)
        return [uvloop.run(_load(port, path, bodies, c, seconds, warmup)) for c in CONCURRENCY], forward_ms
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def over_http(seconds: float, warmup: float, *, matrix: bool = True, hostile_too: bool = True) -> dict[str, dict]:
    """HTTP runs for each model, precision and batching mode (client pinned to its core), with
    the added latency: served p50 at concurrency 1 minus the in-process batch-1 forward."""
    os.sched_setaffinity(0, {CLIENT_CPU})
    torch.set_num_threads(1)
    results: dict[str, dict] = {}
    plan = [
        ("mlp", "fp32", True), ("mlp", "fp32", False),
        ("mlp", "int8", True), ("mlp", "int8", False),
        ("mlp", "auto", True),
        ("transformer", "fp32", True),
        ("transformer", "int8", True), ("transformer", "int8", False),
        ("transformer", "auto", True),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        artifacts, models = {}, {}
        for name, (arch, kwargs) in model_specs().items():
            torch.manual_seed(0)
            model = models[name] = build_model(arch, **kwargs).eval()
            x = torch.randn(256, kwargs["in_features"])
            with torch.no_grad():
                y = model(x).argmax(dim=1)
            artifacts[name] = save_artifact(
                str(Path(tmp) / name), model=model, arch=arch, kwargs=kwargs, heldout_x=x,
                heldout_y=y, reference=compute_reference(x.numpy()), name="bench", version=1,
            )  # fmt: skip
        if hostile_too:
            results["hostile"] = hostile(artifacts["mlp"], model_specs()["mlp"][1]["in_features"], seconds)
        for name, precision, batching in plan if matrix else []:
            key = f"{name}/{precision}/batching={'on' if batching else 'off'}"
            features = model_specs()[name][1]["in_features"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if precision == "auto":  # as the server calibrates it (64 rows: its max batch size)
                    module = prepare_auto(models[name], torch.randn(64, features), budget_s=1.0)[0]
                else:
                    module = prepare_model(models[name], precision=precision, device=torch.device("cpu"),
                                           engine=resolve_engine("auto"))  # fmt: skip
            runs, forward_ms = serve_and_load(
                artifacts[name], features, precision=precision, batching=batching,
                seconds=seconds, warmup=warmup, module=module,
            )  # fmt: skip
            added_ms = runs[0].p50_ms - forward_ms
            results[key] = {"runs": [asdict(r) for r in runs], "forward_b1_ms": forward_ms, "added_ms": added_ms}
            for r in runs:
                print(f"  {key:36s} c={r.concurrency:<3d} {r.rps:8.0f} req/s  p50 "
                      f"{r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  errors {r.errors}")  # fmt: skip
            print(f"  {key:36s} added latency: c=1 p50 {runs[0].p50_ms:.3f} ms - in-process forward "
                  f"{forward_ms:.3f} ms = {added_ms:.3f} ms")  # fmt: skip
    return results


def alternate(seconds: float, warmup: float, rounds: int) -> dict[str, dict]:
    """HTTP c=64 (batching on), fp32 and auto servers of each model up at once, load windows
    alternating between them ``rounds`` times (order flipped each round), so that the machine's
    load hits both alike: the auto/fp32 req/s ratio per round and its median."""
    os.sched_setaffinity(0, {CLIENT_CPU})
    torch.set_num_threads(1)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (arch, kwargs) in model_specs().items():
            torch.manual_seed(0)
            model = build_model(arch, **kwargs).eval()
            x = torch.randn(256, kwargs["in_features"])
            with torch.no_grad():
                y = model(x).argmax(dim=1)
            artifact = save_artifact(
                str(Path(tmp) / name), model=model, arch=arch, kwargs=kwargs, heldout_x=x,
                heldout_y=y, reference=compute_reference(x.numpy()), name="bench", version=1,
            )  # fmt: skip
            rng = np.random.default_rng(0)
            bodies = [
                orjson.dumps({"inputs": [{"name": "input__0", "shape": [1, kwargs["in_features"]], "datatype": "FP32",
                                          "data": rng.standard_normal(kwargs["in_features"], dtype=np.float32)}]},
                             option=orjson.OPT_SERIALIZE_NUMPY)
                for _ in range(64)
            ]  # fmt: skip
            servers = {p: _start_server(artifact, "--precision", p) for p in ("fp32", "auto")}
            try:
                rps: dict[str, list[float]] = {"fp32": [], "auto": []}
                order = ["fp32", "auto"]
                for _ in range(rounds):
                    for precision in order:
                        port = servers[precision][1]
                        run = uvloop.run(_load(port, "/v2/models/bench/infer", bodies, 64, seconds, warmup))
                        rps[precision].append(run.rps)
                    order.reverse()
            finally:
                for proc, _ in servers.values():
                    _stop(proc)
            ratios = [a / f for a, f in zip(rps["auto"], rps["fp32"], strict=True)]
            results[name] = {"fp32_rps": rps["fp32"], "auto_rps": rps["auto"], "ratios": ratios,
                             "median_ratio": statistics.median(ratios)}  # fmt: skip
            print(f"  {name} c=64 auto/fp32 alternating, {rounds} rounds: median {statistics.median(ratios):.2f} "
                  f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}; fp32 median "
                  f"{statistics.median(rps['fp32']):.0f}, auto {statistics.median(rps['auto']):.0f} req/s)",
                  flush=True)  # fmt: skip
    return results


def _start_server(artifact: str, *extra: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    cmd = [
        "taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "workloads.server",
        "--model", artifact, "--host", "127.0.0.1", "--port", str(port),
        "--torch-threads", "1", "--log-level", "warning", *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd)
    _wait_ready(port, proc)
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=60)


def hostile(artifact: str, features: int, seconds: float, drain_runs: int = 3) -> dict:
    """Hostile clients and shutdown against the MLP int8 server (pinned like the HTTP runs):

    - co-batched victims over HTTP: rounds of 16 victims and one attacker (100, 1e30, 3e38) sent
      at once (queue delay 5 ms so they share forward passes); a victim changed if its top-1
      differs from its answer alone or its logits by more than 1e-4 x its max |logit|;
    - good requests (closed loop, c=8, ``seconds``) while 300 partial connections are held;
    - requests lost in a SIGTERM drain under keep-alive load at c=32 (``workloads.server.loadgen``;
      ``--shutdown-drain-s 1.5``), ``drain_runs`` runs.
    """
    import socket

    import httpx

    from workloads.server.loadgen import drain_load

    os.sched_setaffinity(0, {CLIENT_CPU})
    path = "/v2/models/bench/infer"
    rng = np.random.default_rng(1)
    results: dict = {}

    def body(x: np.ndarray) -> bytes:
        return orjson.dumps({"inputs": [{"name": "input__0", "shape": list(x.shape), "datatype": "FP32", "data": x}]},
                            option=orjson.OPT_SERIALIZE_NUMPY)  # fmt: skip

    proc, port = _start_server(artifact, "--max-queue-delay-ms", "5")
    try:
        url = f"http://127.0.0.1:{port}{path}"
        changed = total = refused_attackers = 0
        with httpx.Client(timeout=30) as client:
            for r in range(12):
                victims = rng.standard_normal((16, features), dtype=np.float32)
                alone = [
                    np.asarray(client.post(url, content=body(v[None])).json()["outputs"][0]["data"]) for v in victims
                ]
                attacker = np.full((1, features), (100.0, 1e30, 3e38)[r % 3], dtype=np.float32)

                async def burst(victims: np.ndarray = victims, attacker: np.ndarray = attacker) -> list:
                    async with httpx.AsyncClient(timeout=30) as ac:
                        bodies = [body(v[None]) for v in victims] + [body(attacker)]
                        return await asyncio.gather(*(ac.post(url, content=b) for b in bodies))

                responses = asyncio.run(burst())
                refused_attackers += responses[-1].status_code == 400
                for want, response in zip(alone, responses[:-1], strict=True):
                    got = np.asarray(response.json()["outputs"][0]["data"]) if response.status_code == 200 else None
                    ok = (
                        got is not None
                        and got.argmax() == want.argmax()
                        and np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
                    )
                    changed += not ok
                    total += 1
        results["victims_http"] = {"changed": changed, "victims": total, "attackers_refused_400": refused_attackers}
        print(f"  co-batched victims changed (HTTP, int8): {changed} of {total}; attackers answered 400: "
              f"{refused_attackers} of 12", flush=True)  # fmt: skip

        held = []
        for i in range(300):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\nx-slow-{i}: 1\r\n".encode())
            held.append(sock)
        good = [body(rng.standard_normal((1, features), dtype=np.float32))]
        run = uvloop.run(_load(port, path, good, 8, seconds, 0.5))
        for sock in held:
            sock.close()
        results["partial_connections"] = {"held": len(held), "good_ok": run.requests, "good_errors": run.errors,
                                          "rps": run.rps}  # fmt: skip
        print(f"  good requests while 300 partial connections held: {run.requests} ok, {run.errors} errors "
              f"({run.rps:.0f} req/s at c=8)", flush=True)  # fmt: skip
    finally:
        _stop(proc)

    drains = []
    for _ in range(drain_runs):
        proc, port = _start_server(artifact, "--shutdown-drain-s", "1.5")
        try:
            signalled: list[float] = []

            def sigterm(proc: subprocess.Popen = proc, signalled: list[float] = signalled) -> None:
                signalled.append(time.monotonic())
                proc.terminate()

            r = asyncio.run(drain_load(port, path, good[0], concurrency=32, warmup_s=1.0, on_started=sigterm))
            code = proc.wait(timeout=60)
            drains.append({"ok": r.ok, "ok_after_sigterm": r.ok_after_signal, "lost": r.lost, "failed": r.failed,
                           "exit_code": code, "exit_s": round(time.monotonic() - signalled[0], 2)})  # fmt: skip
            print(f"  drain c=32: {r.ok} ok ({r.ok_after_signal} after SIGTERM), lost {r.lost}, failed {r.failed}, "
                  f"exit {code} after {drains[-1]['exit_s']} s", flush=True)  # fmt: skip
        finally:
            _stop(proc)
    results["drain"] = drains
    return results


def main(argv: list[str] | None = None) -> int:
    """Run everything and print a summary (and write JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per HTTP run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per run")
    parser.add_argument("--forward-seconds", type=float, default=1.0, help="per in-process case")
    parser.add_argument("--json", help="write all results here")
    parser.add_argument("--in-process-only", action="store_true", help="the in-process table and victims only")
    parser.add_argument("--crossover", action="store_true", help="also the per-layer int8/fp32 sweep")
    parser.add_argument("--alternate", type=int, default=0, metavar="ROUNDS",
                        help="only: HTTP c=64 auto vs fp32 servers, ROUNDS alternating windows")  # fmt: skip
    parser.add_argument(
        "--hostile-only",
        action="store_true",
        help="in process and hostile clients only (skip the HTTP throughput matrix)",
    )
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two CPUs (server core and client core)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    print(f"load average before: {load_before}")
    if args.alternate:
        alternating = alternate(args.duration, args.warmup, args.alternate)
        print(f"load average after: {os.getloadavg()}")
        if args.json:
            Path(args.json).write_text(json.dumps({"load_before": load_before, "load_after": os.getloadavg(),
                                                   "alternating": alternating}, indent=2))  # fmt: skip
        return 0
    forward = in_process(args.forward_seconds)
    for name, row in forward.items():
        print(f"in-process {name} (int8: {row['engine']}; auto layers: {row['auto_layers']}):")
        for batch in (1, 32):
            print(f"  batch {batch:2d}: fp32 stock {row[f'fp32_stock_b{batch}_ms']:.3f} ms, "
                  f"fp32 {row[f'fp32_b{batch}_ms']:.3f} ms, int8 {row[f'int8_b{batch}_ms']:.3f} ms "
                  f"({row[f'int8_speedup_b{batch}']:.2f}x vs fp32, "
                  f"{row[f'int8_vs_stock_b{batch}']:.2f}x vs stock; "
                  f"{row[f'int8_samples_per_s_b{batch}']:.0f} samples/s), "
                  f"bf16 {row[f'bf16_b{batch}_ms']:.3f} ms, per-batch int8 (torch.ao fbgemm) "
                  f"{row[f'int8_per_batch_b{batch}_ms']:.3f} ms")  # fmt: skip
        print(f"  side by side, batch 1 / 32, vs the fp32 serving graph: int8 {row['int8_speedup_b1']:.2f}x / "
              f"{row['int8_speedup_b32']:.2f}x, auto {row['auto_speedup_b1']:.2f}x / {row['auto_speedup_b32']:.2f}x "
              f"(auto {row['auto_b1_ms']:.3f} / {row['auto_b32_ms']:.3f} ms)")  # fmt: skip
    sweep = None
    if args.crossover:
        print("per-layer crossover (fp32 = the server's batch-invariant fp32 Linear):")
        sweep = crossover(args.forward_seconds / 4)
    victims = victims_in_process()
    for key, v in victims.items():
        print(
            f"in-process co-batched victims changed ({key}): {v['changed']} of {v['victims']} "
            f"(batches that raised: {v['failed_batches']})"
        )
    if args.in_process_only:
        if args.json:
            Path(args.json).write_text(json.dumps({"load_before": load_before, "load_after": os.getloadavg(),
                                                   "in_process": forward, "crossover": sweep, "victims_in_process":
                                                   victims}, indent=2))  # fmt: skip
        print(f"load average after: {os.getloadavg()}")
        return 0
    http = over_http(args.duration, args.warmup, matrix=not args.hostile_only)
    hostile_results = http.pop("hostile")
    added = None
    if not args.hostile_only:
        added = http["mlp/int8/batching=on"]["added_ms"]
        print(f"added latency (mlp int8, batching on, c=1): {added:.3f} ms")
        t_on = http["transformer/int8/batching=on"]["runs"][2]["rps"]
        t_off = http["transformer/int8/batching=off"]["runs"][2]["rps"]
        print(f"transformer int8 c=64: batching on/off = {t_on:.0f}/{t_off:.0f} = {t_on / t_off:.2f}x")
        m_int8 = http["mlp/int8/batching=on"]["runs"][2]["rps"]
        m_fp32 = http["mlp/fp32/batching=on"]["runs"][2]["rps"]
        print(f"mlp c=64 batching on: int8/fp32 = {m_int8:.0f}/{m_fp32:.0f} = {m_int8 / m_fp32:.2f}x")
        for name in ("mlp", "transformer"):
            a = http[f"{name}/auto/batching=on"]["runs"][2]["rps"]
            f = http[f"{name}/fp32/batching=on"]["runs"][2]["rps"]
            print(f"{name} c=64 batching on: auto/fp32 = {a:.0f}/{f:.0f} = {a / f:.2f}x")
    load_after = os.getloadavg()
    print(f"load average after: {load_after}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "load_before": load_before, "load_after": load_after, "in_process": forward,
            "http": http, "added_latency_ms": added, "victims_in_process": victims, "hostile": hostile_results,
            "crossover": sweep,
        }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
