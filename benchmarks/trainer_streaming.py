"""Streaming data, preemption and a team's own model: the figures of issue 15.

A. Throughput: the ``mlp`` preset (256 -> 3 x 1024 -> 10, batch 256, one thread) on the same
   rows held in memory (``data.source=shards``, one ``.npz``) and streamed from Parquet
   (``data.source=parquet``, row groups of 16,384 rows), interleaved repeats. samples/s is the
   trainer's own telemetry over the last K of 2K steps. Target: streamed >= 0.9 x in memory.
B. Peak RSS: one fresh process per run streams ONE full epoch of a Parquet dataset (64 features,
   a small MLP, batch 4096) with the same ``data.read_rows``; the dataset is 1x and 10x the
   size, the 10x one ten times what its decoded rows would take in memory. Peak RSS is the
   process's ``ru_maxrss``. Target: 10x within a small margin of 1x (bounded by config).
C. Steps lost on SIGTERM: ``workloads.trainer.launch`` (torchrun, 2 processes, gloo) gets
   SIGTERM at a random step; the ``preempted`` record gives the step the signal arrived in and
   the checkpoint written. Lost = completed steps not in the checkpoint. For comparison, what a
   run without the handler would lose: the steps since the last periodic checkpoint
   (``checkpoint.every=50``). Target: <= 1.
D. The example package (examples/resmlp, not in workloads/models.py): trained with 2-process DDP,
   exported, served by ``python -m workloads.server`` on 127.0.0.1, held-out accuracy over HTTP.

    python benchmarks/trainer_streaming.py [--repeats 4] [--steps 30] [--parts ABCD]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SRC = ROOT / "examples" / "resmlp" / "src"


def _write_parquet(root: Path, x: np.ndarray, y: np.ndarray, *, rows_per_file: int, row_group: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, len(x), rows_per_file)):
        xs, ys = x[start : start + rows_per_file], y[start : start + rows_per_file]
        table = pa.table({**{f"f{j}": xs[:, j] for j in range(x.shape[1])}, "label": ys.astype(np.int32)})
        pq.write_table(table, root / f"part-{i:04d}.parquet", row_group_size=row_group)


# ------------------------------------------------------------------------------ A. throughput
def throughput(repeats: int, steps: int) -> None:
    import torch

    from workloads.trainer.config import merge, parse_overrides, preset
    from workloads.trainer.data import synthetic
    from workloads.trainer.distributed import DistContext
    from workloads.trainer.loop import Trainer

    cpu = DistContext(0, 1, 0, torch.device("cpu"), None)
    rows = 32768
    x, y = synthetic(rows, 256, 10, 0)
    work = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    (work / "shards").mkdir()
    np.savez(work / "shards" / "s.npz", x=x.numpy(), y=y.numpy())
    _write_parquet(work / "parquet", x.numpy(), y.numpy(), rows_per_file=rows, row_group=16384)

    def run(kind: str, i: int) -> float:
        source = ["data.source=shards", f"data.uri={work / 'shards'}"]
        if kind == "parquet":
            source = ["data.source=parquet", f"data.uri={work / 'parquet'}", "data.read_rows=16384"]
        overrides = [
            f"out={work / f'{kind}-{i}'}",
            *source,
            f"train.steps={2 * steps}",
            f"train.log_every={steps}",
            "train.threads=1",
            "optim.warmup_steps=5",
            "checkpoint.every=0",
            "export.enabled=false",
        ]
        stream = io.StringIO()
        Trainer(merge(preset("mlp"), parse_overrides(overrides)), cpu, stream=stream).train()
        records = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [r for r in records if r["event"] == "step"][-1]["samples_per_second"]

    results: dict[str, list[float]] = {"memory": [], "parquet": []}
    for i in range(repeats):
        for kind in ("memory", "parquet") if i % 2 == 0 else ("parquet", "memory"):
            results[kind].append(run(kind, i))
    memory, parquet = statistics.median(results["memory"]), statistics.median(results["parquet"])
    ratios = [p / m for p, m in zip(results["parquet"], results["memory"], strict=True)]
    print(f"A. in memory: median {memory:.0f} samples/s over {repeats} runs {[round(v) for v in results['memory']]}")
    print(f"   Parquet streamed: median {parquet:.0f} samples/s {[round(v) for v in results['parquet']]}")
    print(f"   streamed / in memory: {parquet / memory:.3f} (pairwise median {statistics.median(ratios):.3f})")


# --------------------------------------------------------------------------------- B. memory
def rss_child(data: str, rows: int) -> None:
    """One full epoch over ``data``; prints the peak RSS in MiB (run in a fresh process)."""
    import torch

    from workloads.trainer.config import merge, parse_overrides, preset
    from workloads.trainer.distributed import DistContext
    from workloads.trainer.loop import Trainer

    batch = 4096
    steps = int(rows * 0.9) // batch
    overrides = [
        f"out={tempfile.mkdtemp(prefix='rss-')}",
        "data.source=parquet",
        f"data.uri={data}",
        "data.in_features=64",
        "data.num_classes=4",
        "data.read_rows=16384",
        "data.heldout_max_rows=4096",
        "data.reference_rows=4096",
        "model.hidden=[64]",
        f"train.batch_size={batch}",
        f"train.steps={steps}",
        f"train.log_every={steps}",
        "train.threads=1",
        "optim.warmup_steps=1",
        "checkpoint.every=0",
    ]
    Trainer(merge(preset("debug"), parse_overrides(overrides)), DistContext(0, 1, 0, torch.device("cpu"), None),
            stream=io.StringIO()).train()  # fmt: skip
    print(json.dumps({"steps": steps, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory() -> None:
    from workloads.trainer.data import synthetic

    work = Path(tempfile.mkdtemp(prefix="rss-bench-"))
    base_rows = 131072
    x, y = synthetic(base_rows, 64, 4, 0)
    for scale in (1, 10):
        root = work / f"x{scale}"
        for copy in range(scale):  # the same rows again (a different file each): 10x the bytes
            _write_parquet(root / f"c{copy}", x.numpy(), y.numpy(), rows_per_file=65536, row_group=16384)
    for scale in (1, 10):
        rows = base_rows * scale
        started = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(work / f"x{scale}"), str(rows)],
            env=env, capture_output=True, text=True, check=True, timeout=900,
        )  # fmt: skip
        result = json.loads(out.stdout.strip().splitlines()[-1])
        decoded = rows * (64 * 4 + 8) / 2**20
        print(
            f"B. {scale:>2}x: {rows} rows ({decoded:.0f} MiB decoded), one epoch = {result['steps']} steps in "
            f"{time.perf_counter() - started:.1f} s: peak RSS {result['peak_rss_mib']:.0f} MiB"
        )


# ------------------------------------------------------------------------------- C. SIGTERM
def sigterm(repeats: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    lost, unhandled = [], []
    for i in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="sigterm-"))
        target = random.Random(i).randint(20, 140)
        command = [
            sys.executable, "-m", "workloads.trainer.launch", "--standalone", "--nproc-per-node=2",
            "--monitor-interval=0.1", "-m", "workloads.trainer", "--preset", "debug", "--out", str(out),
            "--set", "train.steps=100000", "--set", "train.log_every=1", "--set", "checkpoint.every=50",
        ]  # fmt: skip
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        log = out / "metrics.jsonl"
        while time.monotonic() < deadline:
            if log.exists() and any(json.loads(r).get("step", 0) >= target for r in log.read_text().splitlines()):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=300)
        records = [json.loads(r) for r in log.read_text().splitlines()]
        (pre,) = [r for r in records if r["event"] == "preempted"]
        completed = max(r["step"] for r in records if r["event"] == "step")
        lost.append(max(0, completed - pre["checkpoint_step"]))
        unhandled.append(pre["signal_step"] - (pre["signal_step"] // 50) * 50)
        print(
            f"C. run {i}: exit {proc.returncode}; SIGTERM during step {pre['signal_step'] + 1}, checkpoint at "
            f"{pre['checkpoint_step']}, last completed {completed}: lost {lost[-1]} (no handler: {unhandled[-1]})"
        )
    mean = statistics.mean(unhandled)
    print(f"   steps lost: max {max(lost)} over {repeats} runs; without the handler mean {mean:.0f}")


# --------------------------------------------------------------------------- D. example model
def example(steps: int) -> None:
    import httpx
    import torch

    out = Path(tempfile.mkdtemp(prefix="resmlp-"))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join([str(EXAMPLE_SRC), str(ROOT)]),
    }
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
        "workloads.trainer", "--preset", "debug", "--out", str(out), "--set", "model.factory=resmlp.model:build",
        "--set", "model.kwargs={width: 64, blocks: 2}", "--set", f"train.steps={steps}",
        "--set", "data.num_samples=16384", "--set", "export.heldout_samples=4096",
    ]  # fmt: skip
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=900)
    export = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines() if '"export"' in r][0]
    sys.path.insert(0, str(EXAMPLE_SRC))
    from workloads.artifact import load_artifact

    artifact = load_artifact(str(out / "model"))
    with socket_port() as port:
        server = subprocess.Popen(
            [sys.executable, "-m", "workloads.server", "--host", "127.0.0.1", "--port", str(port), "--torch-threads",
             "1", "--model", str(out / "model"), "--name", "resmlp"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        x, y = artifact.heldout_x.numpy(), artifact.heldout_y.numpy()
        parts = []
        for chunk in np.array_split(x, max(1, len(x) // 512)):  # the server's --max-request-rows is 1024
            tensor = {
                "name": "input__0",
                "shape": list(chunk.shape),
                "datatype": "FP32",
                "data": chunk.ravel().tolist(),
            }
            answer = httpx.post(f"{url}/v2/models/resmlp/infer", json={"inputs": [tensor]}, timeout=60)
            answer.raise_for_status()
            output = answer.json()["outputs"][0]
            parts.append(np.asarray(output["data"], dtype=np.float32).reshape(output["shape"]).argmax(1))
        served = np.concatenate(parts)
        with torch.no_grad():
            fp32 = artifact.model(artifact.heldout_x).argmax(1).numpy()
    finally:
        server.kill()
        server.wait(timeout=30)
    print(
        f"D. resmlp (2-process DDP, {steps} steps): held-out accuracy at export {export['heldout_accuracy']:.4f} over "
        f"{export['heldout_rows']} rows; served over HTTP (int8) {float((served == y).mean()):.4f} over {len(y)} "
        f"rows, top-1 agreement with fp32 {float((served == fp32).mean()):.4f}"
    )


class socket_port:  # noqa: N801 (a context manager used like a function)
    """A free TCP port on 127.0.0.1."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=4, help="interleaved repeats (A) and SIGTERM runs (C)")
    parser.add_argument("--steps", type=int, default=30, help="measured steps in A (as many again warm up)")
    parser.add_argument("--example-steps", type=int, default=300, help="training steps of the example (D)")
    parser.add_argument("--parts", default="ABCD", help="which parts to run")
    parser.add_argument("--rss-child", nargs=2, metavar=("DATA", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    if "A" in args.parts:
        throughput(args.repeats, args.steps)
    if "B" in args.parts:
        memory()
    if "C" in args.parts:
        sigterm(args.repeats)
    if "D" in args.parts:
        example(args.example_steps)


if __name__ == "__main__":
    main()
