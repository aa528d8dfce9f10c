"""Process lifecycle of ``python -m workloads.server``: graceful SIGTERM with requests in flight,
a failed load exits 1, and artifacts load from S3 (moto)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from moto import mock_aws

from tests.server.server_helpers import MODEL_NAME, RunningServer, ServerProcess, cluster_task
from workloads import storage
from workloads.artifact import load_artifact, save_artifact
from workloads.drift import compute_reference

INFER = f"/v2/models/{MODEL_NAME}/infer"


def test_sigterm_finishes_every_request_in_flight_and_exits_0(tmp_path: Path, mlp_artifact: str) -> None:
    # A long queue delay keeps the requests waiting in the batcher from before SIGTERM until after
    # the drain period, when the listener is already closed.
    proc = ServerProcess(
        tmp_path,
        "--model", mlp_artifact, "--max-queue-delay-ms", "3000", "--max-batch-size", "1000",
        "--shutdown-drain-s", "1.0",
    )  # fmt: skip
    probe = httpx.Client(base_url=proc.url, timeout=10)
    try:
        proc.wait_ready()
        x = cluster_task(16, seed=21)[0].numpy()
        results: list[httpx.Response | Exception | None] = [None] * 16

        def send(i: int) -> None:
            try:
                results[i] = httpx.post(
                    proc.url + INFER, json=RunningServer.infer_body(x[i : i + 1], id=f"r{i}"), timeout=30
                )
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                results[i] = exc

        threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while "aicloud_server_inflight_requests 16.0" not in probe.get("/metrics").text:
            assert time.monotonic() < deadline, "the requests never reached the server"
            time.sleep(0.05)
        proc.proc.send_signal(signal.SIGTERM)
        ready = probe.get("/v2/health/ready")
        assert ready.status_code == 503 and ready.json() == {"ready": False}  # at once
        assert probe.get("/v2/health/live").status_code == 200  # still serving while draining
        for thread in threads:
            thread.join(timeout=30)
        assert proc.proc.wait(timeout=30) == 0, proc.log()
        assert [getattr(r, "status_code", r) for r in results] == [200] * 16
        assert [r.json()["id"] for r in results] == [f"r{i}" for i in range(16)]  # type: ignore[union-attr]
        with pytest.raises(httpx.ConnectError):
            httpx.get(proc.url + "/v2/health/live", timeout=2)
    finally:
        probe.close()
        proc.stop()


def test_a_model_that_cannot_load_exits_1_with_the_reason(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, "--model", str(tmp_path / "no-such-artifact"))
    try:
        assert proc.proc.wait(timeout=60) == 1
        assert "manifest.json is missing" in proc.log()
    finally:
        proc.stop()


def test_artifact_loads_from_s3(start_server, mlp_artifact: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    storage._s3_client_for.cache_clear()
    local = load_artifact(mlp_artifact)
    try:
        with mock_aws():
            storage.s3_client().create_bucket(Bucket="models")
            uri = save_artifact(
                "s3://models/clusters/v1",
                model=local.model,
                arch=local.manifest["model"]["arch"],
                kwargs=local.manifest["model"]["kwargs"],
                heldout_x=local.heldout_x,
                heldout_y=local.heldout_y,
                reference=compute_reference(local.heldout_x.numpy()),
                name=MODEL_NAME,
                version="1",
            )
            running = start_server(model=uri)
    finally:
        storage._s3_client_for.cache_clear()
    meta = running.client.get(f"/v2/models/{MODEL_NAME}").json()
    assert "artifact_uri" not in meta["parameters"] and "s3://" not in str(meta)  # no storage location
    assert meta["parameters"]["quantization_top1_agreement"] >= 0.99
    x = cluster_task(3, seed=5)[0]
    out = running.client.post(INFER, json=running.infer_body(x.numpy())).json()["outputs"][0]
    with torch.no_grad():
        expected = local.model(x).argmax(dim=1).tolist()
    assert torch.tensor(out["data"]).reshape(3, -1).argmax(dim=1).tolist() == expected
