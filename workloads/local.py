"""The local end-to-end run, one command (``aicloud local``): train, export, quantize, serve, query.

1. Train the trainer's ``debug`` preset with 2-process DDP on CPU (gloo) under torchrun:
   ``python -m torch.distributed.run --standalone --nproc_per_node=2 -m workloads.trainer
   --preset debug --out <workdir>/run``; the trainer exports the serving artifact to
   ``<workdir>/run/model``.
2. Start the model server (``python -m workloads.server``) on 127.0.0.1 on a free port; it loads
   the artifact, prepares it (auto on CPU: int8 for the layers where it is faster than fp32)
   and scores the quantization on the held-out sample.
3. Send the artifact's held-out rows as single-row Open Inference Protocol requests, then print
   the served accuracy, the quantization report and the request latency.
4. Stop the server with SIGTERM (graceful: it must exit 0).

Everything runs on this machine's CPU, with nothing but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from workloads.artifact import load_artifact

__all__ = ["main"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aicloud local", description="Train, quantize, serve and query a model on this machine's CPU."
    )
    parser.add_argument("--workdir", help="keep the run here (default: a temporary directory, removed at the end)")
    parser.add_argument("--preset", default="debug", help="trainer preset (default: debug)")
    parser.add_argument("--nproc", type=int, default=2, help="DDP processes for training (default: 2)")
    parser.add_argument("--precision", default="auto", help="server precision: auto, fp32, int8, bf16")
    parser.add_argument("--requests", type=int, default=128, help="held-out rows sent as requests (default: 128)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for training (default: 300)")
    return parser


def _train(args: argparse.Namespace, out: Path) -> str:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
        "-m", "workloads.trainer", "--preset", args.preset, "--out", str(out),
    ]  # fmt: skip
    print(f"[1/4] training: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
        raise RuntimeError(f"training failed with exit code {done.returncode}")
    artifact = out / "model"
    print(f"      trained and exported {artifact} in {time.perf_counter() - start:.1f} s", flush=True)
    return str(artifact)


def _serve(artifact: str, precision: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "workloads.server", "--model", artifact, "--host", "127.0.0.1",
        "--port", str(port), "--precision", precision, "--log-level", "warning",
    ]  # fmt: skip
    print(f"[2/4] serving on {url}: {' '.join(cmd[1:])}", flush=True)
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the child holds its own descriptor
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not become ready within 120 s")


def _query(url: str, artifact: str, requests: int) -> tuple[dict, float, list[float]]:
    loaded = load_artifact(artifact)
    name = loaded.name
    x = loaded.heldout_x[:requests].numpy()
    y = loaded.heldout_y[:requests].numpy()
    print(f"[3/4] sending {len(x)} held-out rows of {name!r} as single-row requests", flush=True)
    latencies, predictions = [], []
    with httpx.Client(base_url=url, timeout=30) as client:
        metadata = client.get(f"/v2/models/{name}").json()
        for row in x:
            body = {"inputs": [{"name": "input__0", "shape": [1, len(row)], "datatype": "FP32", "data": row.tolist()}]}
            start = time.perf_counter()
            response = client.post(f"/v2/models/{name}/infer", json=body)
            latencies.append((time.perf_counter() - start) * 1e3)
            response.raise_for_status()
            predictions.append(int(np.argmax(response.json()["outputs"][0]["data"])))
    accuracy = float((np.asarray(predictions) == y).mean())
    return metadata, accuracy, latencies


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def _layers(layers: dict[str, str]) -> str:
    """``name precision, ...`` (the first 8, then a count)."""
    shown = ", ".join(f"{name} {precision}" for name, precision in list(layers.items())[:8])
    return shown + (f", ... ({len(layers)} in all)" if len(layers) > 8 else "") if layers else "none"


def main(argv: list[str] | None = None) -> int:
    """Run the local end-to-end; 0 on success, 1 if a step failed, 2 on bad usage."""
    args = _parser().parse_args(argv)
    if args.nproc < 1 or args.requests < 1:
        print("--nproc and --requests must be at least 1", file=sys.stderr)
        return 2
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="aicloud-local-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        artifact = _train(args, workdir / "run")
        proc, url = _serve(artifact, args.precision, workdir / "server.log")
        metadata, accuracy, latencies = _query(url, artifact, args.requests)
        params = metadata["parameters"]
        lat = np.asarray(latencies)
        print(
            f"      served accuracy {accuracy:.4f} on {len(lat)} rows, one row per request\n"
            f"      quantization: {params['quantization_precision']}"
            f" ({params['quantization_engine'] or 'no engine'}): top-1 agreement with fp32"
            f" {params['quantization_top1_agreement']:.4f}, held-out accuracy fp32"
            f" {params['quantization_fp32_accuracy']:.4f} / served {params['quantization_served_accuracy']:.4f}"
            f" over {params['quantization_samples']} rows scored in batches at load\n"
            f"      layers ({params['quantization_selection']}): {_layers(params['quantization_layers'])}\n"
            f"      latency per request: p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms",
            flush=True,
        )
        code = _stop(proc)
        proc = None
        print(f"[4/4] server stopped with SIGTERM, exit code {code}", flush=True)
        return 0 if code == 0 else 1
    except (RuntimeError, subprocess.TimeoutExpired, httpx.HTTPError) as exc:
        print(f"aicloud local failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
