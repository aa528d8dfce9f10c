"""Real multi-process runs: torchrun on CPU with gloo."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from tests.trainer.trainer_helpers import SMALL, cli_args, final_state, records, torchrun
from workloads.artifact import load_artifact
from workloads.trainer.config import merge, parse_overrides, preset
from workloads.trainer.distributed import DistContext
from workloads.trainer.loop import Trainer


def test_two_process_ddp_loss_falls(ddp_run: Path) -> None:
    (start,) = records(ddp_run, "start")
    assert (start["world_size"], start["backend"], start["global_batch"]) == (2, "gloo", 32)
    losses = [r["loss"] for r in records(ddp_run, "step")]
    assert len(losses) == 12
    assert losses[-1] < 0.75 * losses[0], losses
    artifact = load_artifact(str(ddp_run / "model"))
    assert artifact.manifest["metrics"]["heldout_accuracy"] > 0.6


def test_ddp_matches_one_process_with_double_batch(ddp_run: Path, tmp_path: Path) -> None:
    """2 ranks x batch 16 and 1 process x batch 32 see the same rows per step: same weights."""
    overrides = parse_overrides([*SMALL, "train.batch_size=32", f"out={tmp_path}"])
    config = merge(preset("debug"), overrides)
    Trainer(config, DistContext(0, 1, 0, torch.device("cpu"), None), stream=io.StringIO()).train()
    single, ddp = final_state(tmp_path), final_state(ddp_run)
    assert single.keys() == ddp.keys()
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], rtol=0, atol=1e-5, msg=name)


def test_sigkilled_worker_is_restarted_and_resumes_exactly(ddp_run: Path, tmp_path: Path) -> None:
    kill_step, every = 27, 10
    proc = torchrun(
        tmp_path,
        *cli_args("train.batch_size=16"),
        max_restarts=1,
        env={"AICLOUD_TRAINER_FAULT": f"sigkill:rank=1:step={kill_step}"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    starts = records(tmp_path, "start")
    assert [s["restarts"] for s in starts] == [0, 1]
    (resume,) = records(tmp_path, "resume")
    assert resume["step"] == 20 and resume["skipped"] == []
    assert 0 <= kill_step - resume["step"] < every  # nothing lost beyond the checkpoint interval
    # The second attempt trains exactly the steps after the checkpoint.
    logged = [r["step"] for r in records(tmp_path, "step")]
    assert logged == [5, 10, 15, 20, 25, *range(25, 61, 5)]
    resumed, reference = final_state(tmp_path), final_state(ddp_run)
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=0, atol=0, msg=name)
