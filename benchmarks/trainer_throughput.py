"""Trainer throughput against a bare PyTorch loop, and DDP 2-process against 1 process.

A. Ours vs bare (one process, same model, data, batch, optimizer, clipping, LR schedule and
   threads): the reference MLP (256 -> 3 x 1024 -> 10, the ``mlp`` preset) for ``2 * K`` steps;
   the first K warm up, samples/s is measured over the last K. Our wall-clock number is the
   trainer's own last telemetry window (its timer spans exactly those K steps and ends with a
   device sync); the bare loop is timed the same way. Both are also timed in process CPU
   seconds over the same K steps (for the trainer: between the two step records it writes),
   which a busy shared machine disturbs less than wall time. Repeats are interleaved
   (A B, B A, ...). A2 then alternates the trainer's own step and the bare step every 5 steps
   in one process, which cancels load drift and isolates the per-step overhead.
   Target: ours >= 0.95 x bare.
B. DDP: ``torchrun --nproc-per-node=2`` against ``--nproc-per-node=1`` (gloo on CPU, one thread
   per process, per-rank batch fixed, so the global batch doubles), global samples/s from the
   metrics log, interleaved. On a 2-core machine the ideal ratio is 2.0.
C. MFU only when CUDA is available: samples/s x 6 x parameters / peak FLOP/s (``--peak-tflops``).

    python benchmarks/trainer_throughput.py [--repeats 12] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from workloads.models import build_model
from workloads.trainer.config import TrainerConfig, merge, parse_overrides, preset
from workloads.trainer.data import load_dataset
from workloads.trainer.distributed import DistContext
from workloads.trainer.loop import Trainer, build_optimizer, lr_factor


def config_for(out: str, steps: int, threads: int) -> TrainerConfig:
    """The mlp preset, 2 x steps long, one telemetry window per half, no checkpoints or export."""
    overrides = [
        f"out={out}",
        f"train.steps={2 * steps}",
        f"train.log_every={steps}",
        f"train.threads={threads}",
        "optim.warmup_steps=5",
        "checkpoint.every=0",
        "checkpoint.resume=false",
        "export.enabled=false",
    ]
    return merge(preset("mlp"), parse_overrides(overrides))


class CpuClockedStream(io.StringIO):
    """A progress stream that notes the process CPU time whenever a step record is written."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu_marks: list[float] = []

    def write(self, text: str) -> int:
        if '"event":"step"' in text:
            self.cpu_marks.append(time.process_time())
        return super().write(text)


def ours(config: TrainerConfig, device: torch.device) -> tuple[float, float]:
    """(wall, CPU) samples/s of the trainer over its second half (its last telemetry window)."""
    stream = CpuClockedStream()
    Trainer(config, DistContext(0, 1, 0, device, None), stream=stream).train()
    steps = [json.loads(line) for line in stream.getvalue().splitlines() if '"event":"step"' in line]
    samples = config.train.log_every * config.train.batch_size
    return steps[-1]["samples_per_second"], samples / (stream.cpu_marks[-1] - stream.cpu_marks[-2])


def bare_step(
    config: TrainerConfig, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> Callable[[], torch.Tensor]:
    """A plain training step (fresh model, same init, optimizer, clipping and schedule as ours)."""
    torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed)
    kwargs = config.model.build_kwargs(config.data.in_features, config.data.num_classes)
    model = build_model(config.model.arch, **kwargs).to(device)
    optimizer = build_optimizer(model.parameters(), config)
    total, warmup, floor = config.train.steps, config.optim.warmup_steps, config.optim.min_lr_ratio
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total=total, warmup=warmup, min_ratio=floor)
    )
    batch, n = config.train.batch_size, len(x)
    bf16 = device.type == "cuda"
    state = {"perm": torch.randperm(n), "pos": 0}

    def step() -> torch.Tensor:
        if state["pos"] + batch > n:
            state["perm"], state["pos"] = torch.randperm(n), 0
        index = state["perm"][state["pos"] : state["pos"] + batch]
        state["pos"] += batch
        xb, yb = x[index].to(device, non_blocking=True), y[index].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def bare(config: TrainerConfig, device: torch.device) -> tuple[float, float]:
    """(wall, CPU) samples/s of the plain loop, timed over its second half.

    Like the trainer, each run loads its own copy of the data (untimed): reusing one warm copy
    across runs measurably favoured the bare loop on this machine.
    """
    data = load_dataset(config.data, config.train.seed)
    step = bare_step(config, data.train_x, data.train_y, device)
    half, batch = config.train.steps // 2, config.train.batch_size
    losses = torch.zeros((), device=device)
    for _ in range(half):
        losses += step()
    losses.item()
    started, started_cpu = time.perf_counter(), time.process_time()
    for _ in range(half):
        losses += step()
    losses.item()  # device sync, as the trainer does at a log step
    return half * batch / (time.perf_counter() - started), half * batch / (time.process_time() - started_cpu)


def per_step(config: TrainerConfig, device: torch.device, chunks: int, chunk: int) -> tuple[float, float]:
    """(wall, CPU) time ratio bare / ours per step, alternating every ``chunk`` steps.

    Ours is the trainer's own step (``Trainer._run_step``: sampler batches, accumulation,
    autocast, clipping, optimizer, schedule); alternating every few hundred milliseconds cancels
    load drift, so this isolates the trainer's per-step overhead.
    """
    trainer = Trainer(config, DistContext(0, 1, 0, device, None), stream=io.StringIO())
    data = trainer._build()
    trainer.batches.seek(0)
    plain = bare_step(config, data.train_x, data.train_y, device)
    spent = {"ours": [0.0, 0.0], "bare": [0.0, 0.0]}
    for index in range(2 * chunks + 2):
        which = "ours" if index % 2 == 0 else "bare"
        run = trainer._run_step if which == "ours" else plain
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(chunk):
            result = run()
        (result[0] if isinstance(result, tuple) else result).item()
        if index >= 2:  # the first chunk of each warms up
            spent[which][0] += time.perf_counter() - started
            spent[which][1] += time.process_time() - started_cpu
    return spent["bare"][0] / spent["ours"][0], spent["bare"][1] / spent["ours"][1]


def ddp(nproc: int, steps: int, out: Path) -> float:
    """Global samples/s of a torchrun launch, from the trainer's last telemetry window."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "workloads.trainer",
        "--preset",
        "mlp",
        "--out",
        str(out),
        *("--set", f"train.steps={2 * steps}", "--set", f"train.log_every={steps}"),
        *("--set", "train.threads=1", "--set", "optim.warmup_steps=5"),
        *("--set", "checkpoint.every=0", "--set", "export.enabled=false"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if '"event":"step"' in line][-1]["samples_per_second"]


def summary(label: str, values: list[float], unit: str = "samples/s") -> float:
    median = statistics.median(values)
    print(f"  {label:<26} median {median:8.1f} {unit:<18} runs {[round(v) for v in values]}")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=12, help="interleaved repeats per comparison")
    parser.add_argument("--steps", type=int, default=20, help="measured steps (as many again warm up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for part A")
    parser.add_argument("--ddp-steps", type=int, default=30, help="measured steps per DDP launch")
    parser.add_argument("--skip-ddp", action="store_true", help="run part A only")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU peak (H100 bf16 dense: 989)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"torch {torch.__version__}, device {device}, {os.cpu_count()} CPUs, threads {args.threads}")

    with tempfile.TemporaryDirectory(prefix="aicloud-bench-") as tmp:
        config = config_for(tmp, args.steps, args.threads)
        print(
            f"A. mlp 256->3x1024->10, batch {config.train.batch_size}, {args.steps} measured steps, "
            f"{args.repeats} interleaved repeats"
        )
        mine: list[tuple[float, float]] = []
        plain: list[tuple[float, float]] = []
        for repeat in range(args.repeats):
            for which in ("ours", "bare") if repeat % 2 == 0 else ("bare", "ours"):
                gc.collect()  # the previous run's objects must not weigh on the next one
                if which == "ours":
                    mine.append(ours(config, device))
                else:
                    plain.append(bare(config, device))
        cpu_ours = summary("trainer (CPU time)", [c for _, c in mine], "samples/CPU-s")
        cpu_bare = summary("bare loop (CPU time)", [c for _, c in plain], "samples/CPU-s")
        median_ours = summary("trainer (wall)", [w for w, _ in mine])
        median_bare = summary("bare loop (wall)", [w for w, _ in plain])
        pairs = [m[0] / p[0] for m, p in zip(mine, plain, strict=True)]
        print(
            f"RESULT A: trainer / bare = {cpu_ours / cpu_bare:.3f} in CPU time (ratio of medians); "
            f"wall clock: {median_ours / median_bare:.3f} (ratio of medians), "
            f"{statistics.median(pairs):.3f} (median of adjacent-pair ratios); target >= 0.95"
        )
        wall_ratio, cpu_ratio = per_step(config, device, chunks=3 * args.repeats, chunk=5)
        print(
            f"RESULT A2: per step, alternating every 5 steps ({3 * args.repeats} chunks each): "
            f"trainer / bare = {cpu_ratio:.3f} in CPU time, {wall_ratio:.3f} in wall time"
        )
        if device.type == "cuda":
            kwargs = config.model.build_kwargs(config.data.in_features, config.data.num_classes)
            params = sum(p.numel() for p in build_model(config.model.arch, **kwargs).parameters())
            mfu = median_ours * 6 * params / (args.peak_tflops * 1e12)
            print(
                f"RESULT C: MFU = {median_ours:.0f} samples/s x 6 x {params} params / "
                f"{args.peak_tflops} TFLOP/s = {mfu:.4f}"
            )
        else:
            print("C. MFU: not computed (needs CUDA; a CPU has no comparable peak)")

        if not args.skip_ddp:
            print(f"B. DDP on CPU/gloo, per-rank batch 256, 1 thread per process, {args.ddp_steps} measured steps")
            one, two = [], []
            for repeat in range(max(3, args.repeats // 2)):
                for nproc in (1, 2) if repeat % 2 == 0 else (2, 1):
                    result = ddp(nproc, args.ddp_steps, Path(tmp) / f"ddp-{repeat}-{nproc}")
                    (one if nproc == 1 else two).append(result)
            median_one, median_two = summary("1 process", one), summary("2 processes (DDP)", two)
            print(f"RESULT B: DDP 2-process / 1-process = {median_two / median_one:.3f} (ideal 2.0 on 2 free cores)")


if __name__ == "__main__":
    main()
