"""Serving precisions: the rewritten transformer is exact, int8 agrees with fp32, bad settings fail."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.server.server_helpers import cluster_task
from workloads.artifact import load_artifact
from workloads.models import build_model
from workloads.server.config import ConfigError, ServerConfig, parse_args
from workloads.server.model import ServedModel
from workloads.server.quantize import EncoderLayer, RowwiseInt8Linear, prepare_model, resolve_engine, serving_graph


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


def test_auto_precision_is_int8_on_cpu(mlp_artifact: str) -> None:
    assert ServedModel.load(mlp_artifact, version="1", device="cpu").report.precision == "int8"


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
