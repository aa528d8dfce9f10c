"""A team's own model package (examples/resmlp, unknown to aicloud) trains with 2-process DDP
under torchrun on Parquet data streamed per rank, exports an artifact that names its factory and
package version, is served over HTTP by our model server on 127.0.0.1 and answers as the exported
model does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.server.server_helpers import free_port, wait_ready
from tests.trainer.test_stream import write_dataset
from tests.trainer.trainer_helpers import cli_args, records, run_session, torchrun
from workloads.artifact import ArtifactError, load_artifact

EXAMPLE_SRC = Path(__file__).resolve().parents[2] / "examples" / "resmlp" / "src"
FACTORY = ["model.factory=resmlp.model:build", "model.kwargs={width: 32, blocks: 2}"]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(EXAMPLE_SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


@pytest.fixture(scope="module")
def byo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example model, 2-process DDP, on the debug task streamed from Parquet (6 row groups)."""
    data = tmp_path_factory.mktemp("byo-data")
    write_dataset(data, files=2, rows=1000, row_group=500)
    out = tmp_path_factory.mktemp("byo")
    source = ["data.source=parquet", f"data.uri={data}", "data.read_rows=256"]
    proc = torchrun(out, *cli_args(*FACTORY, *source, "train.batch_size=16"), env=_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_example_package_is_not_a_builtin_model() -> None:
    from workloads import models

    assert "resmlp" not in Path(models.__file__).read_text()


def test_two_process_ddp_trains_the_factory_model(byo_run: Path) -> None:
    start = records(byo_run, "start")[0]
    assert start["world_size"] == 2 and start["data"] == "parquet"
    steps = records(byo_run, "step")
    assert steps[-1]["loss"] < steps[0]["loss"]
    export = records(byo_run, "export")[0]
    assert export["heldout_accuracy"] > 0.6  # 4 classes: chance is 0.25


def test_artifact_records_factory_arguments_and_package_version(byo_run: Path) -> None:
    manifest = json.loads((byo_run / "model" / "manifest.json").read_text())
    assert manifest["model"] == {
        "factory": "resmlp.model:build",
        "kwargs": {"in_features": 16, "num_classes": 4, "width": 32, "blocks": 2},
        "package": {"name": "resmlp", "version": "0.3.0"},
    }
    assert "arch" not in manifest["model"]


def test_artifact_files_are_group_readable(byo_run: Path) -> None:
    for path in [*(byo_run / "model").iterdir(), *(byo_run / "checkpoints").iterdir()]:
        assert path.stat().st_mode & 0o040, f"{path} is not group-readable"


def test_server_without_the_package_names_the_missing_factory(byo_run: Path) -> None:
    with pytest.raises(ArtifactError, match=r"cannot import module 'resmlp\.model'.*trained with resmlp==0\.3\.0"):
        load_artifact(str(byo_run / "model"))


def test_served_over_http_answers_like_the_exported_model(byo_run: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("wb")
    env = {**os.environ, **_env(), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "workloads.server", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--torch-threads", "1", "--model", str(byo_run / "model"), "--name", "resmlp"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(url, timeout=90, alive=lambda: proc.poll() is None)
        meta = httpx.get(f"{url}/v2/models/resmlp", timeout=10).json()
        assert meta["parameters"]["factory"] == "resmlp.model:build"
        # auto on CPU: every Linear layer of the factory's model gets its own precision, reported
        params = meta["parameters"]
        linears = ["stem", "blocks.0.up", "blocks.0.down", "blocks.1.up", "blocks.1.down", "head.1"]
        assert sorted(params["quantization_layers"]) == sorted(linears)
        assert params["quantization_selection"] == "per layer"
        kinds = set(params["quantization_layers"].values())
        assert params["quantization_precision"] == ("mixed" if len(kinds) > 1 else kinds.pop())

        sys.path.insert(0, str(EXAMPLE_SRC))
        try:
            artifact = load_artifact(str(byo_run / "model"))
        finally:
            sys.path.remove(str(EXAMPLE_SRC))
        x = artifact.heldout_x[:64].numpy()
        body = {
            "inputs": [{"name": "input__0", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
        }
        answer = httpx.post(f"{url}/v2/models/resmlp/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        output = answer.json()["outputs"][0]
        served = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
        with torch.no_grad():
            expected = artifact.model(torch.from_numpy(x)).numpy()
        # int8 layers (if any) round: logits within a tolerance, the same classes almost always
        assert np.abs(served - expected).max() < 0.25
        assert (served.argmax(1) == expected.argmax(1)).mean() >= 0.95
        accuracy = float((served.argmax(1) == artifact.heldout_y[:64].numpy()).mean())
        assert accuracy > 0.6
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()


def test_unknown_factory_fails_at_start_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "workloads.trainer", "--out", str(tmp_path / "x")]
    proc = run_session([*command, *cli_args("model.factory=nope.models:build")], env={**os.environ}, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.models" in lines[0] and "Traceback" not in proc.stderr
