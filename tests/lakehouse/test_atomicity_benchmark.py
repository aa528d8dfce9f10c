"""The atomicity benchmark itself works: three short trials (one per crash mode) against a real
`moto_server` on 127.0.0.1 leave the previous checkpoint intact (the 20-trial figure is measured
by `python benchmarks/storage_atomicity.py`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "storage_atomicity.py"


def test_killed_writers_never_damage_the_previous_checkpoint(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("storage_atomicity", BENCHMARK)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    results = bench.run(trials=3, size_mib=11, seed=1, verbose=False)
    assert [t.mode for t in results] == ["after", "during", "put"]
    assert all(t.killed for t in results)
    assert all(t.intact for t in results)
    assert [t.dangling_uploads for t in results] == [1, 1, 0]
