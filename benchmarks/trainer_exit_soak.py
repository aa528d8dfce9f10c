"""Exit soak: N consecutive 2-process debug runs under torchrun (gloo, CPU); count exit codes.

Target: every run exits 0 (50/50). torch + gloo can abort while the process tears down
("terminate called without an active exception"); the trainer's exit path (barrier,
destroy_process_group, flush, os._exit) is meant to prevent that.

``--naive N`` additionally runs N launches of the same training through an entry point that ends
with a normal interpreter exit (``sys.exit(main())``: same barrier and destroy, but full Python
finalisation), to show whether the immediate exit is what makes the difference on this machine.

    python benchmarks/trainer_exit_soak.py            # 50 runs
    python benchmarks/trainer_exit_soak.py --runs 20 --naive 20
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAIVE_ENTRY = "import sys\nfrom workloads.trainer.cli import main\nsys.exit(main())\n"
ABORT_MARK = "terminate called"


def launch(target: list[str], out: Path, timeout: float) -> tuple[int, bool, float]:
    """One torchrun launch; returns (exit code, abort message seen, seconds)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        *target,
        "--preset",
        "debug",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return 124, False, time.perf_counter() - started
    return proc.returncode, ABORT_MARK in stderr, time.perf_counter() - started


def soak(label: str, target: list[str], runs: int, timeout: float) -> None:
    codes: collections.Counter[int] = collections.Counter()
    aborts, seconds = 0, []
    with tempfile.TemporaryDirectory(prefix="aicloud-soak-") as tmp:
        for i in range(runs):
            code, aborted, elapsed = launch(target, Path(tmp) / f"run{i}", timeout)
            codes[code] += 1
            aborts += aborted
            seconds.append(elapsed)
            print(f"{label} run {i + 1}/{runs}: exit {code}{' (abort message)' if aborted else ''}", flush=True)
    clean = codes.get(0, 0)
    print(
        f"RESULT {label}: {clean}/{runs} exited 0; exit codes {dict(sorted(codes.items()))}; "
        f"runs printing '{ABORT_MARK}': {aborts}; mean {sum(seconds) / runs:.1f} s per run",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50, help="runs of the trainer as shipped (default 50)")
    parser.add_argument("--naive", type=int, default=0, help="runs with a normal interpreter exit (default 0)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run before it is killed")
    args = parser.parse_args()
    soak("trainer", ["-m", "workloads.trainer"], args.runs, args.timeout)
    if args.naive:
        with tempfile.TemporaryDirectory(prefix="aicloud-naive-") as tmp:
            entry = Path(tmp) / "naive_entry.py"
            entry.write_text(NAIVE_ENTRY)
            soak("naive-exit", [str(entry)], args.naive, args.timeout)


if __name__ == "__main__":
    main()
