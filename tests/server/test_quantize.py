"""Serving precisions: the rewritten transformer is exact, int8 agrees with fp32, bad settings fail."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from tests.server.server_helpers import CLASSES, FEATURES, cluster_task
from workloads.artifact import load_artifact, save_artifact
from workloads.drift import compute_reference
from workloads.models import build_model
from workloads.server import quantize
from workloads.server.config import ConfigError, ServerConfig, parse_args
from workloads.server.model import ServedModel
from workloads.server.quantize import (
    BatchInvariantLinear,
    EncoderLayer,
    RowwiseInt8Linear,
    int8_pays_by_shape,
    prepare_model,
    resolve_engine,
    serving_graph,
)


@pytest.mark.parametrize(("norm_first", "activation"), [(False, "relu"), (True, "gelu")])
def test_serving_graph_computes_the_same_function_as_the_stock_encoder(norm_first: bool, activation: str) -> None:
    torch.manual_seed(0)
    model = build_model("transformer", in_features=12, num_classes=3, d_model=32, nhead=4, num_layers=2)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation=activation, batch_first=True)
    layer.norm_first = norm_first
    model.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(32), enable_nested_tensor=False)
    model.eval()
    graph = serving_graph(model)
    layers = [m for m in graph.modules() if isinstance(m, EncoderLayer)]
    assert [layer.first_token_only for layer in layers] == [False, True]  # the head reads only CLS
    assert not any(isinstance(m, nn.MultiheadAttention) for m in graph.modules())
    for batch in (1, 7, 33):
        x = torch.randn(batch, 12)
        with torch.inference_mode():
            torch.testing.assert_close(graph(x), model(x), atol=1e-5, rtol=1e-5)


def test_int8_replaces_every_linear_with_a_rowwise_int8_one(transformer_artifact: str) -> None:
    model = load_artifact(transformer_artifact).model
    prepared = prepare_model(model, precision="int8", device=torch.device("cpu"), engine=resolve_engine("auto"))
    kinds = {type(m) for m in prepared.modules()}
    assert RowwiseInt8Linear in kinds
    assert nn.Linear not in kinds
    assert any(isinstance(m, nn.Linear) for m in model.modules())  # the original is untouched


@pytest.mark.parametrize("fixture", ["mlp_artifact", "transformer_artifact"])
def test_int8_top1_agrees_with_fp32_on_the_heldout_sample(fixture: str, request: pytest.FixtureRequest) -> None:
    uri = request.getfixturevalue(fixture)
    served = ServedModel.load(uri, version="1", precision="int8", device="cpu")
    artifact = load_artifact(uri)
    with torch.inference_mode():
        fp32_top1 = artifact.model(artifact.heldout_x).argmax(dim=1)
    int8_top1 = torch.from_numpy(served.predict(artifact.heldout_x.numpy())).argmax(dim=1)
    agreement = float((int8_top1 == fp32_top1).float().mean())
    assert agreement >= 0.99
    report = served.report
    assert report.precision == "int8" and report.engine == resolve_engine("auto")
    assert report.samples == len(artifact.heldout_x) == 512
    assert report.top1_agreement == pytest.approx(agreement, abs=1e-9)  # per-row scales: batch-independent
    assert report.fp32_accuracy == pytest.approx(float((fp32_top1 == artifact.heldout_y).float().mean()))
    assert report.served_accuracy >= report.fp32_accuracy - 0.01


def test_fp32_precision_serves_the_exact_model(mlp_artifact: str) -> None:
    served = ServedModel.load(mlp_artifact, version="1", precision="fp32", device="cpu")
    x = cluster_task(64, seed=3)[0]
    with torch.inference_mode():
        expected = load_artifact(mlp_artifact).model(x).numpy()
    torch.testing.assert_close(torch.from_numpy(served.predict(x.numpy())), torch.from_numpy(expected))
    assert served.report.top1_agreement == 1.0 and served.report.engine is None


def test_bf16_on_cpu_is_an_explicit_option(mlp_artifact: str) -> None:
    served = ServedModel.load(mlp_artifact, version="1", precision="bf16", device="cpu")
    out = served.predict(cluster_task(4, seed=3)[0].numpy())
    assert out.dtype.name == "float32" and out.shape == (4, 4)
    assert served.report.precision == "bf16" and served.report.top1_agreement >= 0.99


@pytest.fixture(scope="module")
def wide_mlp_artifact(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An (untrained, seeded) MLP 16 -> 1024 -> 1024 -> 4: one layer large enough for int8."""
    torch.manual_seed(0)
    kwargs = {"in_features": FEATURES, "hidden": [1024, 1024], "num_classes": CLASSES}
    model = build_model("mlp", **kwargs).eval()
    x = cluster_task(512, seed=2)[0]
    with torch.inference_mode():
        y = model(x).argmax(dim=1)
    return save_artifact(
        str(tmp_path_factory.mktemp("wide") / "model"), model=model, arch="mlp", kwargs=kwargs, heldout_x=x,
        heldout_y=y, reference=compute_reference(x.numpy()), name="wide", version="1",
    )  # fmt: skip


@pytest.fixture
def one_thread() -> Iterator[None]:
    """fp32 GEMMs split over threads are not batch invariant for every shape (K-split): pin the
    thread count so the shape-rule outcome below does not depend on the machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_auto_on_cpu_serves_int8_only_where_the_shape_pays(wide_mlp_artifact: str, one_thread: None) -> None:
    served = ServedModel.load(wide_mlp_artifact, version="1", device="cpu", calibration_s=0, warmup_batch=64)
    assert [(c.layer, c.in_features, c.out_features, c.rows, c.basis) for c in served.layer_choices] == [
        ("0", 16, 1024, 64, "shape rule"),
        ("2", 1024, 1024, 64, "shape rule"),
        ("4", 1024, 4, 64, "shape rule"),
    ]
    assert served.report.layers == {"0": "fp32", "2": "int8", "4": "fp32"}
    assert served.report.precision == "mixed" and served.report.engine == "rowwise"
    assert served.report.selection == "per layer" and served.report.calibration_batch == 64
    kinds = {name: type(m) for name, m in served.module.named_modules()}
    assert kinds["0"] is BatchInvariantLinear and kinds["2"] is RowwiseInt8Linear and kinds["4"] is BatchInvariantLinear
    assert served.report.top1_agreement >= 0.99
    # a row's logits are the same bits alone or batched with anything (int8 and padded fp32 mixed)
    rows = cluster_task(24, seed=32)[0].numpy()
    alone = np.concatenate([served.predict(rows[i : i + 1]) for i in range(len(rows))])
    outlier = np.full((1, FEATURES), 1e30, dtype=np.float32)
    for size in (5, 24):
        for start in range(0, len(rows), size):
            out = served.predict(np.concatenate([outlier, rows[start : start + size], -outlier]))[1:-1]
            assert np.array_equal(out, alone[start : start + size])
    one_row = ServedModel.load(wide_mlp_artifact, version="1", device="cpu", calibration_s=0, warmup_batch=1)
    assert one_row.report.layers == {"0": "fp32", "2": "int8", "4": "fp32"}  # 1024 x 1024 pays at one row too
    assert int8_pays_by_shape(1, 1024, 1024) and not int8_pays_by_shape(1, 512, 512)
    assert not int8_pays_by_shape(4096, 64, 64) and not int8_pays_by_shape(4096, 1024, 10)


@pytest.mark.parametrize("fixture", ["mlp_artifact", "transformer_artifact"])
def test_auto_serves_small_models_in_fp32(fixture: str, request: pytest.FixtureRequest, one_thread: None) -> None:
    served = ServedModel.load(request.getfixturevalue(fixture), version="1", device="cpu", calibration_s=0)
    assert set(served.report.layers.values()) == {"fp32"} and served.report.precision == "fp32"
    assert served.report.engine is None and served.report.top1_agreement == 1.0
    assert not any(isinstance(m, RowwiseInt8Linear) for m in served.module.modules())


def test_timed_layers_follow_their_timings_with_a_margin(
    wide_mlp_artifact: str, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    planted = {(16, 1024): (100.0, 95.0), (1024, 1024): (100.0, 50.0)}  # by shape: (fp32 us, int8 us)

    def fake_timing(fp32: nn.Module, int8: nn.Module, x: torch.Tensor, deadline: float):
        return planted.get((fp32.in_features, fp32.out_features))  # the 1024 -> 4 head: none (budget spent)

    monkeypatch.setattr(quantize, "_time_pair", fake_timing)
    choices = quantize.choose_layers(
        serving_graph(load_artifact(wide_mlp_artifact).model), cluster_task(32, seed=5)[0], budget_s=5.0
    )
    by_layer = {c.layer: (c.precision, c.basis, c.fp32_us, c.int8_us) for c in choices}
    assert by_layer == {
        "0": ("fp32", "timed", 100.0, 95.0),  # 5 % faster: within the margin, kept fp32
        "2": ("int8", "timed", 100.0, 50.0),
        "4": ("fp32", "shape rule", None, None),
    }


def test_an_fp32_kernel_that_mixes_rows_is_caught_and_that_layer_served_int8(
    wide_mlp_artifact: str, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    class LeakyLinear(BatchInvariantLinear):
        """Planted: an fp32 kernel whose rows see their batch (a batch mean leaks in)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + 1e-3 * x.mean()

    assert quantize._rows_invariant(BatchInvariantLinear(nn.Linear(64, 8)), torch.randn(40, 64), 40)
    assert not quantize._rows_invariant(LeakyLinear(nn.Linear(64, 8)), torch.randn(40, 64), 40)
    monkeypatch.setattr(quantize, "BatchInvariantLinear", LeakyLinear)
    served = ServedModel.load(wide_mlp_artifact, version="1", device="cpu", calibration_s=0, warmup_batch=16)
    assert {c.layer: (c.precision, c.basis) for c in served.layer_choices} == {
        "0": ("int8", "fp32 not batch invariant here"),
        "2": ("int8", "shape rule"),
        "4": ("int8", "fp32 not batch invariant here"),
    }
    assert served.report.precision == "int8"


def test_unsupported_engine_and_missing_cuda_fail_clearly(mlp_artifact: str) -> None:
    with pytest.raises(RuntimeError, match="quant_engine 'nope' is not supported"):
        resolve_engine("nope")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            ServedModel.load(mlp_artifact, version="1", device="cuda")


def test_config_reports_every_bad_value_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig(model="", port=0, b_weight=0.5, precision="int4", max_batch_size=0, max_queue_delay_ms=-1)
    message = str(info.value)
    for fragment in (
        "model='' is not allowed",
        "port=0 is not allowed: an integer in 1..65535",
        "b_weight=0.5 is not allowed: 0 unless model_b is set",
        "precision='int4' is not allowed: one of ['auto', 'fp32', 'int8', 'bf16']",
        "max_batch_size=0 is not allowed: an integer >= 1",
        "max_queue_delay_ms=-1 is not allowed",
    ):
        assert fragment in message


def test_command_line_maps_to_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    config = parse_args(["--model", "s3://b/m", "--model-b", "/tmp/m2", "--b-weight", "0.1", "--no-batching"])
    assert (config.model, config.model_b, config.b_weight, config.max_batch_size) == ("s3://b/m", "/tmp/m2", 0.1, 1)
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--model", "m", "--port", "70000"])
    assert exit_info.value.code == 2
    assert "port=70000 is not allowed" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [-1, 61, float("nan"), "1"])
def test_calibration_budget_is_bounded(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"calibration_s=.* is not allowed: a number in \[0, 60\]"):
        ServerConfig(model="m", calibration_s=bad)  # type: ignore[arg-type]
    assert parse_args(["--model", "m", "--calibration-s", "0"]).calibration_s == 0
    assert ServerConfig(model="m").calibration_s == 1.0


@pytest.mark.parametrize("precision", ["int8", "auto"])
def test_a_linear_used_twice_is_replaced_everywhere_and_stays_shared(precision: str, one_thread: None) -> None:
    shared = nn.Linear(8, 8)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(8, 3)).eval()
    if precision == "int8":
        graph = prepare_model(model, precision="int8", device=torch.device("cpu"), engine="rowwise")
    else:
        graph, choices = quantize.prepare_auto(model, torch.randn(4, 8), budget_s=0)
        assert [c.layer for c in choices] == ["0", "3"]  # one choice per distinct layer
    assert graph[0] is graph[2] and not isinstance(graph[2], nn.Linear)
    assert not any(type(m) is nn.Linear for m in graph.modules())
