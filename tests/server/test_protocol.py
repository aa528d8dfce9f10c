"""Open Inference Protocol v2 endpoints of a real server on 127.0.0.1 (int8 MLP)."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch

from tests.server.server_helpers import (
    CLASSES,
    FEATURES,
    MODEL_NAME,
    RunningServer,
    cluster_task,
    feature_psi,
    poll,
)
from workloads.artifact import load_artifact
from workloads.server import metrics


def test_server_metadata_names_the_server_and_binary_extension(server: RunningServer) -> None:
    response = server.client.get("/v2")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "aicloud-server"
    assert isinstance(body["version"], str) and body["version"]
    assert body["extensions"] == ["binary_tensor_data"]


def test_health_endpoints_answer_200_when_loaded(server: RunningServer) -> None:
    assert server.client.get("/v2/health/live").json() == {"live": True}
    assert server.client.get("/v2/health/ready").json() == {"ready": True}
    for path in (f"/v2/models/{MODEL_NAME}/ready", f"/v2/models/{MODEL_NAME}/versions/1/ready"):
        response = server.client.get(path)
        assert response.status_code == 200, path
        assert response.json()["ready"] is True


def test_model_metadata_follows_the_spec_and_reports_quantization(server: RunningServer) -> None:
    for path in (f"/v2/models/{MODEL_NAME}", f"/v2/models/{MODEL_NAME}/versions/1"):
        body = server.client.get(path).json()
        assert body["name"] == MODEL_NAME
        assert body["versions"] == ["1"]
        assert body["inputs"] == [{"name": "input__0", "datatype": "FP32", "shape": [-1, FEATURES]}]
        assert body["outputs"] == [{"name": "output__0", "datatype": "FP32", "shape": [-1, CLASSES]}]
        params = body["parameters"]
        assert params["quantization_precision"] == "int8"
        assert params["quantization_engine"] == "rowwise"
        assert "artifact_uri" not in params  # storage locations stay in the server's log
        assert params["quantization_samples"] == 512
        assert params["quantization_top1_agreement"] >= 0.99


def test_infer_returns_fp32_logits_matching_the_model(server: RunningServer, mlp_artifact: str) -> None:
    x, _ = cluster_task(5, seed=9)
    response = server.client.post(
        f"/v2/models/{MODEL_NAME}/infer", json=server.infer_body(x.numpy(), id="req-42", parameters={"note": "x"})
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["model_name"] == MODEL_NAME
    assert body["model_version"] == "1"
    assert body["id"] == "req-42"
    [out] = body["outputs"]
    assert out["name"] == "output__0" and out["datatype"] == "FP32" and out["shape"] == [5, CLASSES]
    logits = np.asarray(out["data"], dtype=np.float32).reshape(5, CLASSES)
    with torch.no_grad():
        expected = load_artifact(mlp_artifact).model(x).numpy()
    # int8 dynamic quantization: close to fp32, same top-1 class.
    np.testing.assert_allclose(logits, expected, atol=0.1)
    assert (logits.argmax(1) == expected.argmax(1)).all()


def test_nested_and_flat_data_give_the_same_answer(server: RunningServer) -> None:
    x = cluster_task(3, seed=4)[0].numpy()
    flat = server.client.post(f"/v2/models/{MODEL_NAME}/infer", json=server.infer_body(x)).json()
    nested_body = server.infer_body(x)
    nested_body["inputs"][0]["data"] = x.tolist()
    nested = server.client.post(f"/v2/models/{MODEL_NAME}/versions/1/infer", json=nested_body).json()
    np.testing.assert_allclose(flat["outputs"][0]["data"], nested["outputs"][0]["data"], atol=1e-2)
    assert "id" not in flat  # no id in the request: none in the response


def test_requested_outputs_and_binary_tensor_data_extension(server: RunningServer) -> None:
    x = cluster_task(4, seed=5)[0].numpy()
    json_part = json.dumps(
        {
            "inputs": [
                {
                    "name": "input__0",
                    "shape": [4, FEATURES],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "output__0", "parameters": {"binary_data": True}}],
        }
    ).encode()
    response = server.client.post(
        f"/v2/models/{MODEL_NAME}/infer",
        content=json_part + x.astype("<f4").tobytes(),
        headers={"Inference-Header-Content-Length": str(len(json_part)), "content-type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    header_length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:header_length])
    [out] = header["outputs"]
    assert out["parameters"]["binary_data_size"] == 4 * CLASSES * 4 and "data" not in out
    binary = np.frombuffer(response.content[header_length:], dtype="<f4").reshape(4, CLASSES)
    as_json = server.client.post(f"/v2/models/{MODEL_NAME}/infer", json=server.infer_body(x)).json()
    np.testing.assert_allclose(binary.ravel(), as_json["outputs"][0]["data"], atol=1e-2)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models/nope", 404),
        ("GET", "/v2/models/nope/ready", 404),
        ("GET", f"/v2/models/{MODEL_NAME}/versions/9", 404),
        ("GET", f"/v2/models/{MODEL_NAME}/versions/9/ready", 404),
        ("POST", f"/v2/models/{MODEL_NAME}/versions/9/infer", 404),
        ("POST", "/v2/models/nope/infer", 404),
        ("GET", "/v3/unknown", 404),
        ("GET", f"/v2/models/{MODEL_NAME}/infer", 405),
        ("DELETE", "/v2", 405),
    ],
)
def test_errors_use_the_protocol_error_object(server: RunningServer, method: str, path: str, status: int) -> None:
    response = server.client.request(method, path, json={"inputs": []})
    assert response.status_code == status
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"]


def test_metrics_expose_every_defined_family_with_the_prefix(server: RunningServer) -> None:
    x = cluster_task(300, seed=3)[0].numpy()  # enough rows for a drift chunk
    assert server.client.post(f"/v2/models/{MODEL_NAME}/infer", json=server.infer_body(x)).status_code == 200
    server.client.post("/v2/models/nope/infer", json={})
    # The batch observers (batch size, drift) run after the response: wait for them (bounded).
    poll(lambda: re.search(r"^aicloud_server_drift_rows\{.*\} [1-9]", server.client.get("/metrics").text, re.M),
         what="drift rows observed")  # fmt: skip
    response = server.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    families = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))
    exposed = {name.removesuffix("_total") for name in metrics.METRIC_NAMES}
    assert exposed <= {f.removesuffix("_total") for f in families}
    assert all(f.startswith("aicloud_server_") for f in families)
    # prometheus_client renders label pairs sorted by name.
    ok = rf'^aicloud_server_requests_total\{{model="{MODEL_NAME}",status="200",version="1"\}} [1-9]'
    assert re.search(ok, text, flags=re.M)
    assert re.search(r'^aicloud_server_requests_total\{model="",status="404",version=""\} [1-9]', text, flags=re.M)
    agreement = re.search(
        rf'^aicloud_server_quantization_agreement\{{model="{MODEL_NAME}",precision="int8",version="1"\}} (\S+)',
        text,
        flags=re.M,
    )
    assert agreement and float(agreement.group(1)) >= 0.99
    psi = feature_psi(text)
    assert sorted(psi) == list(range(FEATURES))
    # Same distribution as the training reference: no feature drifts significantly.
    assert max(psi.values()) < 0.25
    assert re.search(r"^aicloud_server_batch_size_count\{.*\} [1-9]", text, flags=re.M)
    assert re.search(rf'^aicloud_server_model_load_seconds\{{model="{MODEL_NAME}",version="1"\}} ', text, flags=re.M)
    layers = re.findall(rf'^aicloud_server_layer_precision\{{layer="(\S+)",model="{MODEL_NAME}",precision="int8",'
                        r'version="1"\} 1\.0$', text, flags=re.M)  # fmt: skip
    assert sorted(layers) == ["0", "2", "4"]  # the MLP's three Linear layers, all int8 as requested


def test_auto_reports_the_precision_of_every_layer_in_metadata_metrics_and_log(
    start_server, mlp_artifact: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="workloads.server"):
        auto = start_server(model=mlp_artifact, calibration_s=0.3)
    params = auto.client.get(f"/v2/models/{MODEL_NAME}").json()["parameters"]
    assert params["quantization_selection"] == "per layer" and params["quantization_calibration_batch"] == 64
    assert set(params["quantization_layers"]) == {"0", "2", "4"}
    choices = params["quantization_layer_choices"]
    assert [c["layer"] for c in choices] == ["0", "2", "4"]
    for c in choices:
        assert params["quantization_layers"][c["layer"]] == c["precision"]
        assert c["rows"] == 64 and c["basis"] in ("timed", "shape rule", "fp32 not batch invariant here")
        if c["basis"] == "timed":  # the faster kernel won (int8 by at least the margin)
            assert (c["precision"] == "int8") == (c["int8_us"] < 0.9 * c["fp32_us"]), c
    kinds = set(params["quantization_layers"].values())
    assert params["quantization_precision"] == ("mixed" if len(kinds) > 1 else kinds.pop())
    text = auto.client.get("/metrics").text
    for layer, precision in params["quantization_layers"].items():
        series = f'aicloud_server_layer_precision{{layer="{layer}",model="{MODEL_NAME}",precision="{precision}",'
        assert series + 'version="1"} 1.0' in text
    logged = [r.getMessage() for r in caplog.records if "precision per layer" in r.getMessage()]
    assert logged and all(f"{c['layer']} " in logged[0] for c in choices), logged


def test_shifted_inputs_raise_the_feature_psi(start_server, mlp_artifact: str) -> None:
    running = start_server(model=mlp_artifact, drift_window=256)
    x = cluster_task(512, seed=6)[0].numpy()
    x[:, 3] += 4.0  # feature 3 moves far outside its training range
    body = running.infer_body(x)
    assert running.client.post(f"/v2/models/{MODEL_NAME}/infer", json=body).status_code == 200
    # The drift observer runs after the response went out: wait for it (bounded), never read once.
    psi = poll(
        lambda: (p := feature_psi(running.client.get("/metrics").text)) and len(p) == FEATURES and p,
        what="feature_psi for every feature",
    )
    assert psi[3] > 1.0
    assert max(v for f, v in psi.items() if f != 3) < 0.25


def test_two_versions_serve_side_by_side_and_canary_weight_splits(
    start_server, mlp_artifact: str, transformer_artifact: str
) -> None:
    running = start_server(model=mlp_artifact, model_b=transformer_artifact, b_weight=0.5)
    meta = running.client.get(f"/v2/models/{MODEL_NAME}").json()
    assert meta["versions"] == ["1", "2"]
    assert running.client.get(f"/v2/models/{MODEL_NAME}/versions/2").json()["parameters"]["arch"] == "transformer"
    x = cluster_task(2, seed=8)[0].numpy()
    v2 = running.client.post(f"/v2/models/{MODEL_NAME}/versions/2/infer", json=running.infer_body(x)).json()
    assert v2["model_version"] == "2"
    seen = {
        running.client.post(f"/v2/models/{MODEL_NAME}/infer", json=running.infer_body(x)).json()["model_version"]
        for _ in range(40)
    }
    assert seen == {"1", "2"}  # P(all 40 to one side) = 2 * 0.5**40
