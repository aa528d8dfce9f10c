"""``aicloud local`` end to end: 2-process DDP training on CPU, auto-precision serving, queries, SIGTERM."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workloads.local import main


@pytest.mark.timeout(180)  # about 20-40 s on 2 cores: torchrun training dominates
def test_local_run_trains_serves_and_stops_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workdir", str(tmp_path), "--requests", "32"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "run" / "model" / "manifest.json").exists()
    served = re.search(r"served accuracy (\S+) on 32 rows", out)
    assert served and float(served.group(1)) >= 0.6  # the debug preset learns its synthetic task
    # auto: each layer at the faster of int8 and fp32 (the debug preset's small layers: fp32)
    agreement = re.search(r"quantization: (fp32|int8|mixed) \((\w+|no engine)\): top-1 agreement with fp32 (\S+),", out)
    assert agreement and float(agreement.group(3)) >= 0.99
    assert re.search(r"layers \(per layer\): \S+ (fp32|int8)", out)
    assert re.search(r"latency per request: p50 \S+ ms, p99 \S+ ms", out)
    assert "server stopped with SIGTERM, exit code 0" in out


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--requests", "0"]) == 2
    assert "--requests must be at least 1" in capsys.readouterr().err


def test_aicloud_local_passes_every_option_to_the_local_run(capsys: pytest.CaptureFixture[str]) -> None:
    from stacks.cli import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["local", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: aicloud local" in out and "--workdir" in out and "--precision" in out
