"""The crash-window benchmark itself works and our checkpoint sequence survives its kills: a
process saving real trainer checkpoints is SIGKILLed inside the local write (temporary file
complete, not renamed), inside an S3 multipart upload (`moto_server` on 127.0.0.1) and between the
write and the pruning, and resume finds an intact checkpoint no older than the last completed save,
with every left-over removed by `storage.clean_temp` (the full figure: `python
benchmarks/checkpoint_crash.py`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "checkpoint_crash.py"


def test_killed_checkpoint_sequences_resume_from_an_intact_checkpoint(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("checkpoint_crash", BENCHMARK)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    results = bench.run(
        repeats=1,
        steps=4,
        size_mib=11,
        seed=1,
        points={"local": ("rename",), "s3": ("part2", "written")},
        verbose=False,
    )
    assert [(t.backend, t.point) for t in results] == [("local", "rename"), ("s3", "part2"), ("s3", "written")]
    assert all(t.killed and t.intact and t.finished for t in results)
    # Killed inside the write: the previous checkpoint; killed after it: the new one.
    assert [t.step - t.resumed_step for t in results] == [1, 1, 0]
    assert [t.leftovers for t in results] == [1, 1, 0]
    assert all(t.cleaned == t.leftovers for t in results)
