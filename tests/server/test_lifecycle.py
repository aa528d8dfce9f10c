"""Process lifecycle of ``python -m workloads.server``: graceful SIGTERM with requests in flight,
a failed load exits 1, and artifacts load from S3 (moto)."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import torch
from moto import mock_aws

from tests.server.server_helpers import MODEL_NAME, RunningServer, ServerProcess, cluster_task
from workloads import storage
from workloads.artifact import load_artifact, save_artifact
from workloads.drift import compute_reference
from workloads.server.loadgen import drain_load

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


def _read_response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (headers and Content-Length body): on a busy machine the body may
    arrive in a later segment than the headers, and a half-read response must not be mistaken for
    what the server sends next."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed mid-headers: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed mid-body: {data!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def test_sigterm_drain_loses_no_request_of_pooled_keep_alive_clients(tmp_path: Path, mlp_artifact: str) -> None:
    proc = ServerProcess(tmp_path, "--model", mlp_artifact, "--shutdown-drain-s", "1.5", "--drain-idle-s", "0.5")
    try:
        proc.wait_ready()
        body = orjson.dumps(RunningServer.infer_body(cluster_task(1, seed=22)[0].numpy()))
        # A keep-alive connection that stays idle through the drain: the server must close it.
        idle = socket.create_connection(("127.0.0.1", proc.port), timeout=30)
        idle.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _read_response(idle).startswith(b"HTTP/1.1 200 ")
        signalled: list[float] = []

        def sigterm() -> None:
            signalled.append(time.monotonic())
            proc.proc.send_signal(signal.SIGTERM)

        result = asyncio.run(drain_load(proc.port, INFER, body, concurrency=32, on_started=sigterm, router_lag_s=0.5))
        assert result.lost == 0 and result.failed == 0, result.errors[:5]
        assert result.ok > 32 and result.ok_after_signal > 0
        # Every response after SIGTERM told the client to close (allow the few already on their way).
        assert result.close_headers_after_signal >= result.ok_after_signal - 32
        assert idle.recv(4096) == b""  # the idle connection was closed by the server
        assert proc.proc.wait(timeout=30) == 0, proc.log()
        assert time.monotonic() - signalled[0] < 15  # drain 1.5 s + idle 0.5 s + request time
        idle.close()
    finally:
        proc.stop()


def test_a_model_that_cannot_load_exits_1_with_the_reason(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path, "--model", str(tmp_path / "no-such-artifact"))
    try:
        assert proc.proc.wait(timeout=60) == 1
        assert "manifest.json is missing" in proc.log()
    finally:
        proc.stop()


def _corrupt_copy(src: str, dst: Path, filename: str, data: bytes) -> str:
    """A copy of the artifact ``src`` with ``filename`` replaced (manifest sha256 kept in step)."""
    import hashlib
    import json
    import shutil

    shutil.copytree(src, dst)
    (dst / filename).write_bytes(data)
    if filename != "manifest.json":
        manifest = json.loads((dst / "manifest.json").read_text())
        manifest["files"][filename] = hashlib.sha256(data).hexdigest()
        (dst / "manifest.json").write_text(json.dumps(manifest))
    return str(dst)


def test_load_errors_name_the_bad_file(tmp_path: Path, mlp_artifact: str) -> None:
    from workloads.artifact import ArtifactError
    from workloads.server.model import ServedModel

    weights = (Path(mlp_artifact) / "model.pt").read_bytes()
    cases = [
        ("manifest.json", b"{not json", "manifest.json"),
        ("model.pt", weights[: len(weights) // 2], "model.pt"),
    ]
    for filename, data, named in cases:
        uri = _corrupt_copy(mlp_artifact, tmp_path / filename, filename, data)
        with pytest.raises(ArtifactError) as info:
            ServedModel.load(uri, version="1", precision="fp32", device="cpu")
        assert f"{uri}/{named}" in str(info.value), str(info.value)


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
