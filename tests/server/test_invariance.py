"""Batching is invisible: a request's result is the same alone or batched with anything, including
adversarial requests; inputs the model cannot compute get 400, never 200 with non-finite logits."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from tests.server.server_helpers import FEATURES, MODEL_NAME, RunningServer, cluster_task

INFER = f"/v2/models/{MODEL_NAME}/infer"
VICTIMS = 12
ATTACKS = [100.0, 1e30, 3e38]


@pytest.fixture(scope="module", params=["int8", "fp32"])
def batched(request: pytest.FixtureRequest, start_server, mlp_artifact: str) -> RunningServer:
    # A queue delay makes concurrent requests wait for each other: they share forward passes.
    return start_server(model=mlp_artifact, precision=request.param, max_queue_delay_ms=150, max_batch_size=256)


def _logits(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    out = response.json()["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def test_adversarial_neighbours_never_change_a_victims_result(batched: RunningServer) -> None:
    served = batched.state.models["1"]
    batch_rows: list[int] = []
    real_predict = served.predict

    def recording_predict(x: np.ndarray) -> np.ndarray:
        batch_rows.append(len(x))
        return real_predict(x)

    victims = cluster_task(VICTIMS, seed=31)[0].numpy()
    alone = [_logits(batched.client.post(INFER, json=batched.infer_body(victims[i : i + 1]))) for i in range(VICTIMS)]
    served.predict = recording_predict  # type: ignore[method-assign]
    try:
        for value in ATTACKS:
            attacker = np.full((2, FEATURES), value, dtype=np.float32)
            attacker[:, ::2] *= -1

            async def round_trip(attacker: np.ndarray = attacker) -> list[httpx.Response]:
                async with httpx.AsyncClient(base_url=batched.url, timeout=30) as client:
                    bodies = [batched.infer_body(victims[i : i + 1]) for i in range(VICTIMS)]
                    bodies.insert(VICTIMS // 2, batched.infer_body(attacker))
                    return await asyncio.gather(*(client.post(INFER, json=b) for b in bodies))

            batch_rows.clear()
            responses = asyncio.run(round_trip())
            attack_response = responses.pop(VICTIMS // 2)
            # The attacker is served (finite logits) or refused (400): never 200 with nulls.
            assert attack_response.status_code in (200, 400), attack_response.text
            if attack_response.status_code == 200:
                assert np.isfinite(_logits(attack_response)).all()
            assert max(batch_rows) > 2, f"no co-batching happened: batches {batch_rows}"
            for i, response in enumerate(responses):
                got, want = _logits(response), alone[i]
                assert got.argmax() == want.argmax(), (value, i)
                scale = float(np.abs(want).max())
                assert float(np.abs(got - want).max()) <= 1e-4 * scale, (value, i, got, want)
    finally:
        served.predict = real_predict  # type: ignore[method-assign]


@pytest.mark.parametrize("precision", ["int8", "auto"])
@pytest.mark.parametrize("fixture", ["mlp_artifact", "transformer_artifact"])
def test_int8_rows_are_bit_identical_in_any_batch(fixture: str, precision: str, request: pytest.FixtureRequest) -> None:
    """int8 and auto (fp32 layers padded to whole row blocks, int8 where it pays; here all fp32)."""
    from workloads.server.model import ServedModel

    served = ServedModel.load(request.getfixturevalue(fixture), version="1", precision=precision, device="cpu")
    assert precision == "int8" or served.report.selection == "per layer"
    rows = cluster_task(40, seed=32)[0].numpy()
    alone = np.concatenate([served.predict(rows[i : i + 1]) for i in range(len(rows))])
    outlier = np.full((1, FEATURES), 1e30, dtype=np.float32)
    for size in (2, 7, 40):
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            out = served.predict(np.concatenate([outlier, chunk, -outlier]))[1:-1]
            assert np.array_equal(out, alone[start : start + len(chunk)])


@pytest.mark.parametrize("value", [3e38, -3e38])
def test_inputs_that_overflow_the_model_get_400(batched: RunningServer, value: float) -> None:
    x = np.full((2, FEATURES), value, dtype=np.float32)
    x[0] = cluster_task(1, seed=33)[0].numpy()  # row 0 is fine, row 1 overflows
    response = batched.client.post(INFER, json=batched.infer_body(x))
    assert response.status_code == 400, response.text
    assert "not finite for rows [1]" in response.json()["error"]


def test_out_of_range_and_boolean_values_in_fp32_data_get_400(batched: RunningServer) -> None:
    good = [0.5] * FEATURES
    for data, fragment in (
        ([3.5e38] + good[1:], "outside the FP32 range"),
        ([True] + good[1:], "booleans"),
        ([False] + good[1:], "booleans"),
        ([good[:-1] + [True]], "booleans"),  # nested rows
    ):
        body = json.dumps({"inputs": [{"name": "input__0", "shape": [1, FEATURES], "datatype": "FP32", "data": data}]})
        response = batched.client.post(INFER, content=body)
        assert response.status_code == 400, (data, response.text)
        assert fragment in response.json()["error"]
    # "true" elsewhere in the body (a parameter) is fine.
    body = {"inputs": [{"name": "input__0", "shape": [1, FEATURES], "datatype": "FP32", "data": good}],
            "parameters": {"binary_data_output": False}, "id": "true"}  # fmt: skip
    assert batched.client.post(INFER, json=body).status_code == 200
