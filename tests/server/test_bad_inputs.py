"""A corpus of bad requests: each is answered 4xx with the protocol's error object, none reaches
the model, and the server serves normally afterwards (zero 5xx)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.server.server_helpers import FEATURES, MODEL_NAME, RunningServer, cluster_task

MAX_BYTES, MAX_ROWS = 64 * 1024, 256
INFER = f"/v2/models/{MODEL_NAME}/infer"


def _tensor(**overrides: object) -> dict:
    """A valid one-row input tensor with fields replaced (or removed when the value is ``...``)."""
    tensor = {"name": "input__0", "shape": [1, FEATURES], "datatype": "FP32", "data": [0.5] * FEATURES}
    tensor.update(overrides)
    return {key: value for key, value in tensor.items() if value is not ...}


def _body(**overrides: object) -> bytes:
    return json.dumps({"inputs": [_tensor(**overrides)]}).encode()


def _binary(header: dict, payload: bytes, header_length: str | None = None) -> tuple[bytes, dict[str, str]]:
    json_part = json.dumps(header).encode()
    return json_part + payload, {"Inference-Header-Content-Length": header_length or str(len(json_part))}


_good_binary_header = {"inputs": [_tensor(data=..., parameters={"binary_data_size": FEATURES * 4})]}

# (case id, path, body bytes, extra headers, expected status)
CORPUS: list[tuple[str, str, bytes, dict[str, str], int]] = [
    ("not-json", INFER, b"this is not json", {}, 400),
    ("empty-body", INFER, b"", {}, 400),
    ("truncated-json", INFER, _body()[:-7], {}, 400),
    ("json-array", INFER, b"[1, 2, 3]", {}, 400),
    ("no-inputs", INFER, b"{}", {}, 400),
    ("inputs-not-list", INFER, b'{"inputs": {"name": "input__0"}}', {}, 400),
    ("inputs-empty", INFER, b'{"inputs": []}', {}, 400),
    ("two-inputs", INFER, json.dumps({"inputs": [_tensor(), _tensor()]}).encode(), {}, 400),
    ("input-not-object", INFER, b'{"inputs": ["input__0"]}', {}, 400),
    ("wrong-input-name", INFER, _body(name="input__1"), {}, 400),
    ("wrong-datatype", INFER, _body(datatype="INT64"), {}, 400),
    ("fp64-datatype", INFER, _body(datatype="FP64"), {}, 400),
    ("missing-datatype", INFER, _body(datatype=...), {}, 400),
    ("null-datatype", INFER, _body(datatype=None), {}, 400),
    ("missing-shape", INFER, _body(shape=...), {}, 400),
    ("shape-rank-1", INFER, _body(shape=[FEATURES]), {}, 400),
    ("shape-wrong-features", INFER, _body(shape=[1, FEATURES - 1], data=[0.5] * (FEATURES - 1)), {}, 400),
    ("shape-zero-batch", INFER, _body(shape=[0, FEATURES], data=[]), {}, 400),
    ("shape-negative", INFER, _body(shape=[-1, FEATURES]), {}, 400),
    ("shape-strings", INFER, _body(shape=["1", str(FEATURES)]), {}, 400),
    ("missing-data", INFER, _body(data=...), {}, 400),
    ("null-data", INFER, _body(data=None), {}, 400),
    ("data-too-short", INFER, _body(data=[0.5] * (FEATURES - 1)), {}, 400),
    ("data-too-long", INFER, _body(data=[0.5] * (FEATURES + 1)), {}, 400),
    ("data-not-list", INFER, _body(data="0.5"), {}, 400),
    ("data-strings", INFER, _body(data=["0.5"] * FEATURES), {}, 400),
    ("data-nulls", INFER, _body(data=[None] * FEATURES), {}, 400),
    ("data-bools", INFER, _body(data=[True] * FEATURES), {}, 400),
    ("data-objects", INFER, _body(data=[{"v": 1}] * FEATURES), {}, 400),
    ("data-ragged", INFER, _body(shape=[2, FEATURES], data=[[0.5] * FEATURES, [0.5] * 3]), {}, 400),
    ("data-nested-too-deep", INFER, _body(data=[[[0.5]] * FEATURES]), {}, 400),
    ("data-nan", INFER, _body(data=[float("nan")] + [0.5] * (FEATURES - 1)), {}, 400),
    ("data-infinity", INFER, _body(data=[float("inf")] + [0.5] * (FEATURES - 1)), {}, 400),
    ("data-overflows-fp32", INFER, _body(data=[1e39] + [0.5] * (FEATURES - 1)), {}, 400),
    ("data-huge-int", INFER, _body(data=[10**40] + [1] * (FEATURES - 1)), {}, 400),
    ("deeply-nested-json", INFER, b"[" * 5000 + b"]" * 5000, {}, 400),
    ("id-not-string", INFER, json.dumps({"id": 7, "inputs": [_tensor()]}).encode(), {}, 400),
    ("parameters-not-object", INFER, json.dumps({"parameters": [1], "inputs": [_tensor()]}).encode(), {}, 400),
    ("parameter-value-object", INFER, json.dumps({"parameters": {"a": {}}, "inputs": [_tensor()]}).encode(), {}, 400),
    ("outputs-not-list", INFER, json.dumps({"inputs": [_tensor()], "outputs": "output__0"}).encode(), {}, 400),
    ("unknown-output", INFER, json.dumps({"inputs": [_tensor()], "outputs": [{"name": "logits"}]}).encode(), {}, 400),
    (
        "binary-output-flag-not-bool",
        INFER,
        json.dumps({"inputs": [_tensor()], "parameters": {"binary_data_output": "yes"}}).encode(),
        {},
        400,
    ),
    ("binary-header-beyond-body", INFER, *_binary(_good_binary_header, b"\0" * FEATURES * 4, "999999"), 400),
    ("binary-header-not-number", INFER, *_binary(_good_binary_header, b"\0" * FEATURES * 4, "ten"), 400),
    ("binary-size-mismatch", INFER, *_binary(_good_binary_header, b"\0" * (FEATURES * 4 - 4)), 400),
    (
        "binary-nan",
        INFER,
        *_binary(_good_binary_header, b"\x00\x00\xc0\x7f" + b"\0" * (FEATURES * 4 - 4)),
        400,
    ),
    ("too-many-rows", INFER, _body(shape=[MAX_ROWS + 1, FEATURES], data=[0.5] * FEATURES * (MAX_ROWS + 1)), {}, 413),
    ("body-too-large", INFER, b" " * (MAX_BYTES + 1) + _body(), {}, 413),
    ("unknown-model", "/v2/models/other/infer", _body(), {}, 404),
    ("unknown-version", f"/v2/models/{MODEL_NAME}/versions/3/infer", _body(), {}, 404),
]


@pytest.fixture(scope="module")
def guarded(start_server, mlp_artifact: str) -> RunningServer:
    return start_server(model=mlp_artifact, max_request_bytes=MAX_BYTES, max_request_rows=MAX_ROWS)


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 20
    assert len({case for case, *_ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("case", "path", "body", "headers", "status"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_request_is_answered_4xx_with_an_error_object(
    guarded: RunningServer, case: str, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = guarded.client.post(path, content=body, headers={"content-type": "application/json", **headers})
    assert response.status_code == status, response.text
    error = response.json()
    assert list(error) == ["error"] and len(error["error"]) > 10


def test_chunked_body_over_the_limit_is_413(guarded: RunningServer) -> None:
    def chunks():
        for _ in range(MAX_BYTES // 1024 + 2):
            yield b" " * 1024

    response = guarded.client.post(INFER, content=chunks())
    assert response.status_code == 413


def test_messages_name_the_offending_field(guarded: RunningServer) -> None:
    def error(**overrides: object) -> str:
        return guarded.client.post(INFER, content=_body(**overrides)).json()["error"]

    assert "inputs[0].datatype" in error(datatype="INT64") and "FP32" in error(datatype="INT64")
    assert f"[batch, {FEATURES}]" in error(shape=[1, 3], data=[1, 2, 3])
    assert "NaN" in error(data=[float("nan")] * FEATURES)
    assert "inputs[0].name must be 'input__0'" in error(name="x")


def test_server_still_serves_after_the_corpus_and_answered_no_5xx(guarded: RunningServer) -> None:
    for _case, path, body, headers, _ in CORPUS:  # again, back to back on one connection
        guarded.client.post(path, content=body, headers=headers)
    x = cluster_task(2, seed=11)[0].numpy()
    response = guarded.client.post(INFER, json=guarded.infer_body(x))
    assert response.status_code == 200
    assert httpx.get(f"{guarded.url}/v2/health/ready").status_code == 200
    text = guarded.client.get("/metrics").text
    statuses = re.findall(r'^aicloud_server_requests_total\{.*status="(\d+)".*\} (\S+)', text, flags=re.M)
    assert statuses and all(not status.startswith("5") for status, _ in statuses)
