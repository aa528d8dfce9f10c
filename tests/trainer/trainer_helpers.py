"""Helpers for the trainer tests: torchrun launches, metrics records, exported weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

TORCHRUN_TIMEOUT_S = 120

# A tiny run whose training rows (1600) divide every global batch used below, so one process
# with batch 2b and two with batch b walk through identical epochs.
SMALL = [
    "data.num_samples=2000",
    "data.heldout_fraction=0.2",
    "train.steps=60",
    "train.log_every=5",
    "checkpoint.every=10",
    "checkpoint.keep_last=10",
]


def cli_args(*overrides: str) -> list[str]:
    """Command-line arguments for the debug preset with SMALL and then ``overrides`` applied."""
    return ["--preset", "debug", *(arg for o in (*SMALL, *overrides) for arg in ("--set", o))]


def torchrun(
    out: Path, *args: str, nproc: int = 2, max_restarts: int = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Launch the trainer under torchrun on CPU (gloo), standalone rendezvous on 127.0.0.1."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        f"--max-restarts={max_restarts}",
        "--monitor-interval=0.1",
        "-m",
        "workloads.trainer",
        "--out",
        str(out),
        *args,
    ]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return run_session(command, env=full_env, timeout=TORCHRUN_TIMEOUT_S)


def run_session(command: list[str], *, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in its own session; on timeout kill the whole session (workers too)."""
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def records(out: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The metrics log of a run, optionally only one event type."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    return [r for r in parsed if event is None or r["event"] == event]


def final_state(out: Path) -> dict[str, torch.Tensor]:
    """The exported fp32 weights of a finished run."""
    return torch.load(out / "model" / "model.pt", weights_only=True)
