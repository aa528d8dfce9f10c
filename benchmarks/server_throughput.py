"""Model server throughput and latency, all figures in one run.

    python benchmarks/server_throughput.py [--duration 4] [--json out.json]

1. In process, one torch thread, pinned to the server core: forward time at batch 1 and 32 for
   fp32 (stock PyTorch module and the server's fp32 serving graph), int8 (the server's dynamic
   quantization) and bf16, for (a) the reference MLP 256 -> 3 x 1024 -> 10 and (b) the trainer's
   default transformer preset (dims read from workloads.trainer.config).
2. Over HTTP on 127.0.0.1: the server (``python -m workloads.server``) pinned to core 0, this
   closed-loop load generator (asyncio streams, keep-alive, one connection per concurrent client,
   batch-1 JSON requests) pinned to core 1; requests/s, p50 and p99 at concurrency 1, 8 and 64
   with dynamic batching on and off.
3. The server's added latency: served p50 at concurrency 1 minus the in-process batch-1 forward of
   the same prepared model, timed on the server's core just before that server's HTTP runs.

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
from workloads.server.quantize import prepare_model, resolve_engine
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


def in_process(seconds: float) -> dict[str, dict[str, float]]:
    """Forward ms by model, variant and batch size (one thread, pinned to the server core).

    Variants: ``fp32_stock`` (the workloads.models module), ``fp32`` / ``bf16`` (the server's
    serving graph), ``int8`` (the server's choice of engine) and ``int8_<engine>`` for every
    supported engine, so the engine choice is measured, not assumed.
    """
    os.sched_setaffinity(0, {SERVER_CPU})
    torch.set_num_threads(1)
    engine = resolve_engine("auto")
    engines = [e for e in ("fbgemm", "x86", "onednn") if e in torch.backends.quantized.supported_engines]
    cpu = torch.device("cpu")
    results: dict[str, dict[str, float]] = {}
    for name, (arch, kwargs) in model_specs().items():
        torch.manual_seed(0)
        model = build_model(arch, **kwargs).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            modules = {
                "fp32_stock": (model, torch.float32),
                "fp32": (prepare_model(model, precision="fp32", device=cpu, engine=engine), torch.float32),
                "bf16": (prepare_model(model, precision="bf16", device=cpu, engine=engine), torch.bfloat16),
                **{f"int8_{e}": (prepare_model(model, precision="int8", device=cpu, engine=e), torch.float32)
                   for e in engines},
            }  # fmt: skip
        torch.backends.quantized.engine = engine
        modules["int8"] = modules[f"int8_{engine}"]
        row: dict[str, float] = {}
        for batch in (1, 32):
            cases = {
                key: (module, torch.randn(batch, kwargs["in_features"]).to(dtype))
                for key, (module, dtype) in modules.items()
                if key != "int8"
            }
            for key, ms in _time_interleaved(cases, seconds).items():
                row[f"{key}_b{batch}_ms"] = ms
            row[f"int8_b{batch}_ms"] = row[f"int8_{engine}_b{batch}_ms"]
            row[f"int8_speedup_b{batch}"] = row[f"fp32_b{batch}_ms"] / row[f"int8_b{batch}_ms"]
            row[f"int8_vs_stock_b{batch}"] = row[f"fp32_stock_b{batch}_ms"] / row[f"int8_b{batch}_ms"]
            row[f"int8_samples_per_s_b{batch}"] = batch * 1e3 / row[f"int8_b{batch}_ms"]
        row["engine"] = engine  # type: ignore[assignment]
        row["engines"] = engines  # type: ignore[assignment]
        results[name] = row
    return results


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


def over_http(seconds: float, warmup: float) -> dict[str, dict]:
    """HTTP runs for each model, precision and batching mode (client pinned to its core), with
    the added latency: served p50 at concurrency 1 minus the in-process batch-1 forward."""
    os.sched_setaffinity(0, {CLIENT_CPU})
    torch.set_num_threads(1)
    results: dict[str, dict] = {}
    plan = [
        ("mlp", "fp32", True), ("mlp", "fp32", False),
        ("mlp", "int8", True), ("mlp", "int8", False),
        ("transformer", "fp32", True),
        ("transformer", "int8", True), ("transformer", "int8", False),
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
        for name, precision, batching in plan:
            key = f"{name}/{precision}/batching={'on' if batching else 'off'}"
            features = model_specs()[name][1]["in_features"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
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


def main(argv: list[str] | None = None) -> int:
    """Run everything and print a summary (and write JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per HTTP run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per run")
    parser.add_argument("--forward-seconds", type=float, default=1.0, help="per in-process case")
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two CPUs (server core and client core)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    print(f"load average before: {load_before}")
    forward = in_process(args.forward_seconds)
    for name, row in forward.items():
        print(f"in-process {name} ({row['engine']}):")
        for batch in (1, 32):
            print(f"  batch {batch:2d}: fp32 stock {row[f'fp32_stock_b{batch}_ms']:.3f} ms, "
                  f"fp32 {row[f'fp32_b{batch}_ms']:.3f} ms, int8 {row[f'int8_b{batch}_ms']:.3f} ms "
                  f"({row[f'int8_speedup_b{batch}']:.2f}x vs fp32, "
                  f"{row[f'int8_vs_stock_b{batch}']:.2f}x vs stock; "
                  f"{row[f'int8_samples_per_s_b{batch}']:.0f} samples/s), "
                  f"bf16 {row[f'bf16_b{batch}_ms']:.3f} ms")  # fmt: skip
            engines = ", ".join(f"{e} {row[f'int8_{e}_b{batch}_ms']:.3f}" for e in row["engines"])
            print(f"            int8 by engine (ms): {engines}")
    http = over_http(args.duration, args.warmup)
    added = http["mlp/int8/batching=on"]["added_ms"]
    print(f"added latency (mlp int8, batching on, c=1): {added:.3f} ms")
    t_on = http["transformer/int8/batching=on"]["runs"][2]["rps"]
    t_off = http["transformer/int8/batching=off"]["runs"][2]["rps"]
    print(f"transformer int8 c=64: batching on/off = {t_on:.0f}/{t_off:.0f} = {t_on / t_off:.2f}x")
    load_after = os.getloadavg()
    print(f"load average after: {load_after}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "load_before": load_before, "load_after": load_after, "in_process": forward,
            "http": http, "added_latency_ms": added,
        }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
