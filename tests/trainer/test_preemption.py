"""Preemption and output hygiene: SIGTERM to the pod's first process (the launcher) makes every
rank finish its step, checkpoint and exit with the retryable code 143; bad output URIs fail at
start in one line; interrupted checkpoint temp files are removed; ``resume=false`` never deletes
an earlier run's checkpoints."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.trainer.test_stream import write_dataset
from tests.trainer.trainer_helpers import TORCHRUN_TIMEOUT_S, cli_args, records, run_session
from workloads import storage
from workloads.trainer.cli import EXIT_PREEMPTED


def _launch(out: Path, *args: str) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "workloads.trainer.launch", "--standalone", "--nproc-per-node=2",
        "--monitor-interval=0.1", "-m", "workloads.trainer", "--out", str(out), *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _wait_for_step(out: Path, proc: subprocess.Popen[str], step: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    log = out / "metrics.jsonl"
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if log.exists() and any(r.get("step", 0) >= step for r in map(json.loads, log.read_text().splitlines())):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no step {step} within {timeout} s")


def test_sigterm_to_the_launcher_checkpoints_every_rank_and_exits_retryable(tmp_path: Path) -> None:
    """Parquet with one DataLoader worker per rank: torchrun signals each worker's whole process
    group, so the loader processes get SIGTERM too and must not take the step down with them."""
    data, out = tmp_path / "data", tmp_path / "run"
    write_dataset(data, files=2, rows=1000, row_group=250)
    stream = ["data.source=parquet", f"data.uri={data}", "data.read_rows=256", "data.workers=1"]
    proc = _launch(out, *cli_args(*stream, "train.steps=100000", "train.log_every=1", "checkpoint.every=100000"))
    try:
        _wait_for_step(out, proc, 3, timeout=TORCHRUN_TIMEOUT_S)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=TORCHRUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == EXIT_PREEMPTED, stderr[-3000:]
    (preempted,) = records(out, "preempted")
    last_logged = max(r["step"] for r in records(out, "step"))
    # no completed step is lost: the checkpoint holds every step that finished
    assert preempted["checkpoint_step"] >= last_logged
    assert preempted["checkpoint_step"] - preempted["signal_step"] in (0, 1)
    assert (out / "checkpoints" / f"ckpt-{preempted['checkpoint_step']:09d}.pt").exists()
    assert stderr.count("preempted by SIGTERM") == 2  # both ranks


def _trainer(*args: str, out: Path | str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "workloads.trainer", "--out", str(out), *args]
    return run_session(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=timeout)


@pytest.mark.parametrize(
    ("args", "out", "message"),
    [
        (
            (),
            "ftp://host/runs/a",
            r"^config error: out: cannot write 'ftp://host/runs/a': unsupported storage scheme 'ftp'",
        ),
        (
            (),
            "lake://nozone-x/runs/a",
            r"^config error: out: cannot write 'lake://nozone-x/runs/a': .*AICLOUD_LAKE_NOZONE_X is not set",
        ),
        (
            ("--set", "export.uri=gs:///nobucket"),
            None,
            r"^config error: export\.uri: cannot write 'gs:///nobucket': gs URI has no bucket",
        ),
        (
            ("--set", "metrics.uri=s3://"),
            None,
            r"^config error: metrics\.uri: cannot write 's3://': s3 URI has no bucket",
        ),
        (
            ("--config", "lake://nozone-y/c.yaml"),
            None,
            r"^config error: --config lake://nozone-y/c\.yaml: cannot resolve",
        ),
        (("--config", "/nonexistent/c.yaml"), None, r"^config error: --config: /nonexistent/c\.yaml does not exist"),
    ],
)
def test_bad_uris_fail_at_start_in_one_line(
    tmp_path: Path, args: tuple[str, ...], out: str | None, message: str
) -> None:
    proc = _trainer(*cli_args(), *args, out=out or tmp_path / "run")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_unwritable_output_fails_before_training(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    proc = _trainer(*cli_args(), out=blocked / "run")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("config error: out: cannot write")


def test_resume_false_on_a_used_output_refuses_and_keeps_the_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _trainer(*cli_args("train.steps=20"), out=out).returncode == 0
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    proc = _trainer(*cli_args("train.steps=20", "checkpoint.resume=false"), out=out)
    assert proc.returncode == 2
    assert "checkpoint.resume: got False but" in proc.stderr and "new --out" in proc.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_temp_files_of_an_interrupted_checkpoint_are_removed_at_start(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    ckpts.mkdir(parents=True)
    leftover = ckpts / ".aicloud-tmp-killed-mid-write"
    leftover.write_bytes(b"half a checkpoint")
    assert _trainer(*cli_args("train.steps=10", "checkpoint.every=5"), out=out).returncode == 0
    assert not leftover.exists()
    assert {p.name for p in ckpts.iterdir()} == {"ckpt-000000005.pt", "ckpt-000000010.pt"}
    assert all(p.stat().st_mode & 0o777 == storage.FILE_MODE for p in ckpts.iterdir())


def test_clean_temp_aborts_incomplete_s3_multipart_uploads(s3_bucket: str) -> None:
    client = storage.s3_client()
    client.create_multipart_upload(Bucket=s3_bucket, Key="runs/a/checkpoints/ckpt-000000010.pt")
    client.create_multipart_upload(Bucket=s3_bucket, Key="runs/b/checkpoints/ckpt-000000010.pt")
    removed = storage.clean_temp(f"s3://{s3_bucket}/runs/a/checkpoints")
    assert len(removed) == 1 and "runs/a/checkpoints/ckpt-000000010.pt#" in removed[0]
    left = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert [u["Key"] for u in left] == ["runs/b/checkpoints/ckpt-000000010.pt"]
