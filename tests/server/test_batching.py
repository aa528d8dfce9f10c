"""Dynamic batching on one worker thread: batched forward passes, backpressure, isolation of a
failing request, and draining on close."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from tests.server.server_helpers import MODEL_NAME, cluster_task
from workloads.server.batching import DynamicBatcher
from workloads.server.model import ServedModel
from workloads.server.protocol import NotReady, ServerBusy

INFER = f"/v2/models/{MODEL_NAME}/infer"


@pytest.fixture(scope="module")
def fp32_model(mlp_artifact: str) -> ServedModel:
    return ServedModel.load(mlp_artifact, version="1", precision="fp32", device="cpu")


def _run(coro_factory: Callable[[asyncio.AbstractEventLoop], object]) -> object:
    async def main() -> object:
        return await coro_factory(asyncio.get_running_loop())  # type: ignore[misc]

    return asyncio.run(main())


def test_concurrent_requests_share_one_forward_pass(fp32_model: ServedModel) -> None:
    batches: list[int] = []
    rows = [cluster_task(n, seed=n)[0].numpy() for n in (1, 3, 2, 1, 5)]

    async def scenario(loop: asyncio.AbstractEventLoop) -> list[np.ndarray]:
        batcher = DynamicBatcher(
            max_batch_size=64,
            max_queue_delay_s=0.2,
            max_queue_size=16,
            on_batch=lambda model, n: batches.append(n),
        )
        batcher.start(loop)
        try:
            return await asyncio.gather(*(batcher.submit(fp32_model, x) for x in rows))
        finally:
            await asyncio.to_thread(batcher.close)

    outputs = _run(scenario)
    assert batches == [12]  # all five requests in one forward pass
    for x, y in zip(rows, outputs, strict=True):  # each caller gets exactly its own rows back
        np.testing.assert_allclose(y, fp32_model.predict(x), atol=1e-5)


def test_max_batch_size_splits_batches(fp32_model: ServedModel) -> None:
    batches: list[int] = []

    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        batcher = DynamicBatcher(
            max_batch_size=4, max_queue_delay_s=0.2, max_queue_size=16, on_batch=lambda m, n: batches.append(n)
        )
        batcher.start(loop)
        x = cluster_task(1, seed=0)[0].numpy()
        await asyncio.gather(*(batcher.submit(fp32_model, x) for _ in range(10)))
        await asyncio.to_thread(batcher.close)

    _run(scenario)
    assert sum(batches) == 10 and max(batches) == 4


def test_full_queue_refuses_with_retry_after_and_close_drains(mlp_artifact: str) -> None:
    model = ServedModel.load(mlp_artifact, version="1", precision="fp32", device="cpu")
    release, busy_worker = threading.Event(), threading.Event()
    real_predict = model.predict

    def blocking_predict(x: np.ndarray) -> np.ndarray:
        busy_worker.set()
        release.wait(10)
        return real_predict(x)

    model.predict = blocking_predict  # type: ignore[method-assign]
    x = cluster_task(1, seed=0)[0].numpy()

    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        batcher = DynamicBatcher(max_batch_size=1, max_queue_delay_s=0.0, max_queue_size=3, retry_after_s=2)
        batcher.start(loop)
        first = batcher.submit(model, x)
        assert await asyncio.to_thread(busy_worker.wait, 10)  # the worker holds request 1
        queued = [batcher.submit(model, x) for _ in range(3)]
        with pytest.raises(ServerBusy) as busy:
            batcher.submit(model, x)
        assert busy.value.status == 503 and busy.value.headers == {"retry-after": "2"}
        assert batcher.depth(model) == 3
        release.set()
        await asyncio.to_thread(batcher.close)  # finishes every queued request before it returns
        results = await asyncio.gather(first, *queued)
        assert all(r.shape == (1, 4) for r in results)
        with pytest.raises(NotReady):
            batcher.submit(model, x)

    _run(scenario)


def test_failing_request_does_not_poison_its_batch(
    start_server, mlp_artifact: str, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_server(model=mlp_artifact, max_queue_delay_ms=300)
    served = running.state.models["1"]
    real_predict = served.predict

    def predict(x: np.ndarray) -> np.ndarray:  # a model that cannot handle one particular row
        if (x[:, 0] == 12345.0).any():
            raise RuntimeError("kernel failure on row")
        return real_predict(x)

    served.predict = predict  # type: ignore[method-assign]
    try:
        good = cluster_task(8, seed=12)[0].numpy()
        poison = good[:1].copy()
        poison[0, 0] = 12345.0

        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
                bodies = [running.infer_body(good[i : i + 1]) for i in range(8)] + [running.infer_body(poison)]
                return await asyncio.gather(*(client.post(INFER, json=b) for b in bodies))

        responses = asyncio.run(fire())
    finally:
        served.predict = real_predict  # type: ignore[method-assign]
    assert [r.status_code for r in responses] == [200] * 8 + [500]
    assert "inference failed: kernel failure on row" in responses[-1].json()["error"]
    # They really were one batch: it failed as a whole, then ran again request by request.
    assert "batch of 9 requests failed (kernel failure on row); retrying one by one" in caplog.text


def test_overload_is_answered_503_and_the_server_recovers(start_server, mlp_artifact: str) -> None:
    running = start_server(model=mlp_artifact, max_queue_size=4, max_batch_size=1, retry_after_s=3)
    served = running.state.models["1"]
    real_predict = served.predict

    def slow_predict(x: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return real_predict(x)

    served.predict = slow_predict  # type: ignore[method-assign]
    x = cluster_task(1, seed=13)[0].numpy()
    try:

        async def flood() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=40)
            async with httpx.AsyncClient(base_url=running.url, timeout=30, limits=limits) as client:
                return await asyncio.gather(*(client.post(INFER, json=running.infer_body(x)) for _ in range(40)))

        responses = asyncio.run(flood())
    finally:
        served.predict = real_predict  # type: ignore[method-assign]
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    assert statuses.count(200) >= 4  # at least the queue capacity
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "3"
    assert "queue is full" in rejected.json()["error"]
    assert running.client.post(INFER, json=running.infer_body(x)).status_code == 200
    assert running.client.get("/v2/health/live").status_code == 200
