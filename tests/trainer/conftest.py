"""Fixtures for the trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.trainer_helpers import cli_args, torchrun
from tests.workloads.conftest import s3_bucket  # noqa: F401  (the one moto S3 fixture)


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted 2-process DDP run (per-rank batch 16) shared by several tests."""
    out = tmp_path_factory.mktemp("ddp")
    proc = torchrun(out, *cli_args("train.batch_size=16"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out
