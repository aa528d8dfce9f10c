"""Trainer pieces in one process: config, CLI, schedule, batching, telemetry, checkpoints, shards."""

from __future__ import annotations

import io
import json
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from prometheus_client import generate_latest

from workloads import storage
from workloads.artifact import load_artifact
from workloads.trainer import METRICS, PRESETS, cli
from workloads.trainer import checkpoint as ckpt
from workloads.trainer.config import ConfigError, TrainerConfig, merge, parse_overrides, preset
from workloads.trainer.data import BatchStream
from workloads.trainer.distributed import DistContext
from workloads.trainer.loop import Trainer, lr_factor
from workloads.trainer.telemetry import Telemetry

CPU = DistContext(0, 1, 0, torch.device("cpu"), None)


def small(out: Path | str, *overrides: str) -> TrainerConfig:
    """The debug preset shrunk to 30 steps with a checkpoint every 10."""
    base = ["train.steps=30", "checkpoint.every=10", "checkpoint.keep_last=5", f"out={out}"]
    return merge(preset("debug"), parse_overrides([*base, *overrides]))


def train(config: TrainerConfig) -> None:
    Trainer(config, CPU, stream=io.StringIO()).train()


def weights(out: Path | str) -> dict[str, torch.Tensor]:
    return load_artifact(storage.join(str(out), "model")).model.state_dict()


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_complete_and_valid(name: str) -> None:
    config = preset(name)
    assert merge(config, {}) == config  # survives a dict round trip through validation


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.stepz=3"], r"train\.stepz: got 3; allowed: one of train\.steps, "),
        (["train.steps=0"], r"train\.steps: got 0; allowed: an integer >= 1"),
        (["train.device=tpu"], r"train\.device: got 'tpu'; allowed: 'auto', 'cpu', 'cuda'"),
        (["model.arch=cnn"], r"model\.arch: got 'cnn'; allowed: 'mlp', 'transformer'"),
        (["model.hidden=[8, -1]"], r"model\.hidden\[\]: got -1|model\.hidden: got \[8, -1\]"),
        (["model.d_model=30", "model.nhead=4"], r"model\.d_model: got 30; allowed: a multiple of"),
        (["optim.lr=fast"], r"optim\.lr: got 'fast'; allowed: a number"),
        (["data.source=shards"], r"data\.uri: got None; allowed: a shard prefix URI"),
        (["optim.warmup_steps=500"], r"optim\.warmup_steps: got 500; allowed: fewer than train\.steps"),
        (["metrics.port=70000"], r"metrics\.port: got 70000"),
        (["train=3"], r"train: got 3; allowed: a mapping"),
    ],
)
def test_bad_config_names_key_value_and_allowed(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        merge(preset("debug"), parse_overrides(overrides))


def test_overrides_parse_yaml_values_and_coerce_lossless() -> None:
    config = merge(
        preset("debug"),
        parse_overrides(["model.hidden=[8, 8]", "optim.lr=1", "export.version=7", "metrics.port=null"]),
    )
    assert config.model.hidden == [8, 8]
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.export.version == "7"
    assert config.metrics.port is None


def test_cli_exit_codes_and_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--preset", "debug", "--set", "train.steps=-1", "--out", str(tmp_path)]) == 2
    assert "train.steps: got -1" in capsys.readouterr().err
    assert cli.main(["--preset", "debug"]) == 2
    assert "out: got None" in capsys.readouterr().err
    assert cli.main(["--preset", "nope"]) == 2  # argparse usage error
    config_file = tmp_path / "run.yaml"
    config_file.write_text("train: {steps: 7}\nmodel: {hidden: [8]}\n")
    code = cli.main(["--preset", "debug", "--config", str(config_file), "--out", "s3://b/r", "--print-config"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["train"]["steps"], printed["model"]["hidden"], printed["out"]) == (7, [8], "s3://b/r")


def test_cli_training_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save({"x": torch.zeros(4, 3), "y": torch.zeros(4, dtype=torch.int64)}, tmp_path / "a.pt")
    args = ["--preset", "debug", "--set", "data.source=shards", "--set", f"data.uri={tmp_path}"]
    assert cli.main([*args, "--out", str(tmp_path / "out")]) == 1
    assert "x must be [n, 16]" in capsys.readouterr().err


# ---------------------------------------------------------------------------- schedule/data
def test_lr_schedule_warms_up_then_decays_to_floor() -> None:
    factors = [lr_factor(s, total=100, warmup=10, min_ratio=0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] == pytest.approx(0.1)


def test_ranks_split_the_global_batch_and_seek_resumes() -> None:
    x = torch.arange(96, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(96)

    def stream(rank: int, world: int, batch: int) -> BatchStream:
        return BatchStream(x, y, batch_size=batch, rank=rank, world_size=world, seed=3, device=torch.device("cpu"))

    one, r0, r1 = stream(0, 1, 8), stream(0, 2, 4), stream(1, 2, 4)
    for _ in range(30):  # crosses epoch boundaries (12 batches per epoch)
        whole = set(one.next()[1].tolist())
        parts = set(r0.next()[1].tolist()) | set(r1.next()[1].tolist())
        assert whole == parts
    fresh, resumed = stream(1, 2, 4), stream(1, 2, 4)
    drawn = [fresh.next()[1] for _ in range(17)]
    resumed.seek(13)
    assert torch.equal(resumed.next()[1], drawn[13])


# ---------------------------------------------------------------------------------- telemetry
def test_metric_names_are_prefixed_and_unique() -> None:
    names = [m.name for m in METRICS]
    assert len(set(names)) == len(names)
    assert all(n.startswith("aicloud_trainer_") for n in names)
    assert {"aicloud_trainer_loss", "aicloud_trainer_samples_per_second"} <= set(names)
    assert {"aicloud_trainer_step", "aicloud_trainer_step_seconds"} <= set(names)


def test_prometheus_endpoint_serves_latest_values(tmp_path: Path) -> None:
    telemetry = Telemetry(metrics_uri=str(tmp_path / "m.jsonl"), total_steps=10, port=0, host="127.0.0.1")
    try:
        telemetry.record("step", step=3, loss=0.5, samples_per_second=100.0, step_seconds=0.25)
        url = f"http://127.0.0.1:{telemetry.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    finally:
        telemetry.close()
    assert "# TYPE aicloud_trainer_loss gauge\naicloud_trainer_loss 0.5\n" in body
    assert "aicloud_trainer_step 3.0" in body and "aicloud_trainer_step_seconds 0.25" in body
    assert "aicloud_trainer_grad_norm" not in body  # never recorded, never exported
    assert json.loads((tmp_path / "m.jsonl").read_text())["loss"] == 0.5
    fresh = Telemetry(metrics_uri=str(tmp_path / "n.jsonl"), total_steps=1)
    fresh.close()
    assert generate_latest(fresh.registry) == b""  # nothing recorded, nothing exported


def test_progress_is_a_bar_on_a_terminal_and_json_otherwise(tmp_path: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, expect_json in ((io.StringIO(), True), (Terminal(), False)):
        telemetry = Telemetry(metrics_uri=str(tmp_path / "p.jsonl"), total_steps=4, stream=stream)
        telemetry.record("step", step=2, loss=1.0, samples_per_second=10.0)
        telemetry.close()
        text = stream.getvalue()
        if expect_json:
            assert json.loads(text.splitlines()[0])["step"] == 2
        else:
            assert text.startswith("\rstep 2/4 [###############") and "loss 1.0000" in text


# -------------------------------------------------------------------------------- checkpoints
def test_crash_during_checkpoint_save_keeps_previous_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference_out, crashed_out = tmp_path / "reference", tmp_path / "crashed"
    train(small(reference_out))
    real_replace = os.replace

    def crash_on_step_20(src: str, dst: str) -> None:
        if str(dst).endswith("ckpt-000000020.pt"):
            raise OSError("simulated crash while committing the step-20 checkpoint")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_step_20)
    with pytest.raises(OSError, match="simulated crash"):
        train(small(crashed_out))
    monkeypatch.setattr(os, "replace", real_replace)
    root = str(crashed_out / "checkpoints")
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [10]
    latest = ckpt.load_latest(root)
    assert latest is not None and latest.step == 10 and latest.state["step"] == 10

    train(small(crashed_out))
    resume = [json.loads(line) for line in (crashed_out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resume if r["event"] == "resume"] == [10]
    for name, tensor in weights(reference_out).items():
        torch.testing.assert_close(weights(crashed_out)[name], tensor, rtol=0, atol=0)


def test_corrupt_newest_checkpoint_is_skipped_and_replaced(tmp_path: Path) -> None:
    train(small(tmp_path))
    root = str(tmp_path / "checkpoints")
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [10, 20, 30]
    newest = tmp_path / "checkpoints" / "ckpt-000000030.pt"
    newest.write_bytes(newest.read_bytes()[:-100])  # torn by a non-atomic copy, say
    (tmp_path / "checkpoints" / "ckpt-000000040.pt").write_bytes(b"garbage")
    latest = ckpt.load_latest(root)
    assert latest is not None and latest.step == 20
    assert latest.skipped == [str(tmp_path / "checkpoints" / n) for n in ("ckpt-000000040.pt", "ckpt-000000030.pt")]

    train(small(tmp_path))  # resumes from 20, rewrites 30, drops the abandoned 40
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [10, 20, 30]
    assert ckpt.load_latest(root).skipped == []


def test_keep_last_prunes_old_checkpoints(tmp_path: Path) -> None:
    train(small(tmp_path, "checkpoint.keep_last=2", "checkpoint.every=5"))
    assert [s for s, _ in ckpt.list_checkpoints(str(tmp_path / "checkpoints"))] == [25, 30]


# ----------------------------------------------------------------------------- shards and S3
def test_trains_from_s3_shards_into_s3(s3_bucket: str) -> None:
    generator = np.random.default_rng(0)
    x = generator.normal(size=(600, 16)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0).astype(np.int64)
    data = f"s3://{s3_bucket}/data"
    buffer = io.BytesIO()
    np.savez(buffer, x=x[:300], y=y[:300])
    storage.write_bytes(f"{data}/part-0.npz", buffer.getvalue())
    buffer = io.BytesIO()
    torch.save({"x": torch.from_numpy(x[300:]), "y": torch.from_numpy(y[300:])}, buffer)
    storage.write_bytes(f"{data}/part-1.pt", buffer.getvalue())
    storage.write_bytes(f"{data}/README.txt", b"not a shard")

    out = f"s3://{s3_bucket}/runs/r1"
    train(small(out, "data.source=shards", f"data.uri={data}", "train.steps=20"))
    artifact = load_artifact(f"{out}/model")
    assert artifact.input_spec["shape"] == [-1, 16]
    assert artifact.manifest["metrics"]["heldout_rows"] == 60
    assert [s for s, _ in ckpt.list_checkpoints(f"{out}/checkpoints")] == [10, 20]
    log = [json.loads(line) for line in storage.read_bytes(f"{out}/metrics.jsonl").decode().splitlines()]
    assert [r["event"] for r in log][-2:] == ["export", "done"]
