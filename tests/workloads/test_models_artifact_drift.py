"""workloads.models, workloads.artifact and workloads.drift."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from workloads import storage
from workloads.artifact import ArtifactError, load_artifact, save_artifact
from workloads.drift import bin_counts, compute_reference, psi
from workloads.models import build_model


def test_reference_mlp_layout() -> None:
    model = build_model("mlp", in_features=256, hidden=[1024, 1024, 1024], num_classes=10)
    expected = [
        (nn.Linear, 256, 1024),
        (nn.ReLU,),
        (nn.Linear, 1024, 1024),
        (nn.ReLU,),
        (nn.Linear, 1024, 1024),
        (nn.ReLU,),
        (nn.Linear, 1024, 10),
    ]
    assert len(model) == len(expected)
    for layer, spec in zip(model, expected, strict=True):
        assert type(layer) is spec[0]
        if isinstance(layer, nn.Linear):
            assert (layer.in_features, layer.out_features) == spec[1:]


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("mlp", {"in_features": 12, "hidden": [16], "num_classes": 3}),
        ("transformer", {"in_features": 12, "num_classes": 3, "d_model": 16, "nhead": 2}),
    ],
)
def test_models_map_fp32_features_to_logits(arch: str, kwargs: dict) -> None:
    out = build_model(arch, **kwargs)(torch.randn(5, 12))
    assert out.dtype == torch.float32 and out.shape == (5, 3)


def test_transformer_uses_cls_token_and_per_feature_embedding() -> None:
    model = build_model("transformer", in_features=6, num_classes=2, d_model=8, nhead=2)
    assert model.feature_weight.shape == (6, 8) and model.cls_token.shape == (1, 1, 8)
    assert model.encoder.layers[0].self_attn.batch_first
    assert model.head.in_features == 8 and model.head.out_features == 2


@pytest.mark.parametrize(
    ("arch", "kwargs", "message"),
    [
        ("cnn", {}, r"arch must be one of \['mlp', 'transformer'\], got 'cnn'"),
        ("mlp", {"in_features": 0, "hidden": [], "num_classes": 2}, "in_features.*got 0"),
        ("mlp", {"in_features": 4, "num_classes": 2}, "bad model kwargs"),
        ("transformer", {"in_features": 4, "num_classes": 2, "d_model": 10, "nhead": 4}, "divis"),
    ],
)
def test_build_model_rejects_bad_config(arch: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(arch, **kwargs)


@pytest.mark.parametrize("arch", ["mlp", "transformer"])
def test_artifact_roundtrip_gives_same_outputs(tmp_path, arch: str) -> None:
    torch.manual_seed(0)
    kwargs = (
        {"in_features": 8, "hidden": [32, 32], "num_classes": 4}
        if arch == "mlp"
        else {"in_features": 8, "num_classes": 4, "d_model": 16, "nhead": 2, "num_layers": 1}
    )
    model = build_model(arch, **kwargs).eval()
    x = torch.randn(64, 8)
    y = torch.randint(0, 4, (64,))
    reference = compute_reference(x.numpy())
    uri = f"file://{tmp_path}/m/3"
    assert (
        save_artifact(
            uri,
            model=model,
            arch=arch,
            kwargs=kwargs,
            heldout_x=x,
            heldout_y=y,
            reference=reference,
            name="demo",
            version=3,
            metrics={"loss": 0.5},
        )
        == uri
    )
    loaded = load_artifact(uri)
    assert not loaded.model.training
    torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)
    assert torch.equal(loaded.heldout_x, x) and torch.equal(loaded.heldout_y, y)
    assert loaded.heldout_y.dtype == torch.int64
    assert (loaded.name, loaded.version) == ("demo", "3")
    assert loaded.input_spec == {"name": "input__0", "datatype": "FP32", "shape": [-1, 8]}
    assert loaded.output_spec == {"name": "output__0", "datatype": "FP32", "shape": [-1, 4]}
    assert loaded.reference == json.loads(json.dumps(reference))
    assert loaded.manifest["metrics"] == {"loss": 0.5}
    assert set(loaded.manifest["files"]) == {"model.pt", "heldout.pt", "reference_stats.json"}
    # The exported files are plain torch files that load with weights_only=True.
    state = torch.load(tmp_path / "m/3/model.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state.values())


def _small_artifact(uri: str) -> None:
    kwargs = {"in_features": 3, "hidden": [4], "num_classes": 2}
    x = torch.randn(10, 3)
    save_artifact(
        uri,
        model=build_model("mlp", **kwargs),
        arch="mlp",
        kwargs=kwargs,
        heldout_x=x,
        heldout_y=torch.zeros(10, dtype=torch.int64),
        reference=compute_reference(x.numpy(), bins=4),
        name="small",
        version="1",
    )


def test_artifact_on_s3(s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/models/small/1"
    _small_artifact(uri)
    assert storage.list_prefix(uri)[-1] == f"{uri}/reference_stats.json"
    assert load_artifact(uri).name == "small"


def test_artifact_without_manifest_is_not_an_artifact(tmp_path) -> None:
    _small_artifact(str(tmp_path))
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_artifact(str(tmp_path))


def test_artifact_detects_corrupt_file(tmp_path) -> None:
    _small_artifact(str(tmp_path))
    blob = bytearray((tmp_path / "model.pt").read_bytes())
    blob[-30] ^= 0xFF
    (tmp_path / "model.pt").write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="model.pt does not match its sha256"):
        load_artifact(str(tmp_path))


def test_drift_psi_small_on_same_distribution_large_on_shift() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(20_000, 4))
    reference = compute_reference(train, bins=10)
    json.dumps(reference)  # JSON-serialisable
    assert len(reference["features"][0]["edges"]) == 9
    np.testing.assert_allclose(sum(reference["features"][0]["proportions"]), 1.0)
    same = psi(reference, rng.normal(size=(5_000, 4)))
    assert same.shape == (4,) and np.all(same < 0.02)
    shifted_input = rng.normal(size=(5_000, 4))
    shifted_input[:, 2] += 1.5
    shifted = psi(reference, shifted_input)
    assert shifted[2] > 0.5 and np.all(np.delete(shifted, 2) < 0.02)


def test_drift_streaming_counts_equal_batch_psi() -> None:
    rng = np.random.default_rng(1)
    reference = compute_reference(rng.uniform(size=(1_000, 3)), bins=5)
    live = rng.uniform(0.2, 1.3, size=(900, 3))
    counts = sum(bin_counts(reference, chunk) for chunk in np.array_split(live, 7))
    assert counts.dtype == np.int64 and counts.shape == (3, 5) and counts.sum() == 2_700
    np.testing.assert_allclose(psi(reference, counts), psi(reference, live))


def test_drift_without_observations_is_nan() -> None:
    reference = compute_reference(np.arange(20.0).reshape(10, 2), bins=2)
    assert np.isnan(psi(reference, np.zeros((2, 2), dtype=np.int64))).all()


# ------------------------------------------------------------------------- model factories
def test_auto_precision_is_int8_only_for_models_with_linear_layers() -> None:
    from torch import nn

    from workloads.artifact import serving_precision

    with_linear = nn.Sequential(nn.Linear(4, 4))
    without = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten())
    assert serving_precision(with_linear, "auto", "int8") == "int8"
    assert serving_precision(without, "auto", "int8") == "fp32"
    assert serving_precision(without, "int8", "int8") == "int8"  # an explicit request is kept
    assert serving_precision(without, "auto", "bf16") == "bf16"


def test_rebuild_model_names_the_missing_factory_and_the_trained_version() -> None:
    import pytest

    from workloads.artifact import ArtifactError, rebuild_model

    spec = {
        "factory": "acme_missing.models:build",
        "kwargs": {},
        "package": {"name": "acme-models", "version": "1.4.2"},
    }
    with pytest.raises(ArtifactError, match=r"cannot import module 'acme_missing\.models'.*acme-models==1\.4\.2"):
        rebuild_model(spec)
    with pytest.raises(ArtifactError, match=r"module 'workloads\.models' has no attribute 'nope'"):
        rebuild_model({"factory": "workloads.models:nope", "kwargs": {}})
