"""Hostile and careless clients on a real server on 127.0.0.1: partial and slow requests are cut
after their deadline while good requests keep succeeding, oversized headers get 431, an
oversized body gets a 413 that stock clients read, and the connection limit answers 503."""

from __future__ import annotations

import http.client
import json
import socket
import time

import httpx
import numpy as np
import pytest

from tests.server.server_helpers import FEATURES, MODEL_NAME, RunningServer, cluster_task, poll

INFER = f"/v2/models/{MODEL_NAME}/infer"
HEADER_TIMEOUT, BODY_TIMEOUT = 2.0, 1.0
MAX_BYTES, MAX_HEADER = 64 * 1024, 8 * 1024


@pytest.fixture(scope="module")
def hardened(start_server, mlp_artifact: str) -> RunningServer:
    return start_server(
        model=mlp_artifact,
        header_timeout_s=HEADER_TIMEOUT,
        body_timeout_s=BODY_TIMEOUT,
        max_header_bytes=MAX_HEADER,
        max_request_bytes=MAX_BYTES,
        keep_alive_timeout_s=1.0,
    )


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _read_until_closed(sock: socket.socket, timeout: float = 20.0) -> bytes:
    """Everything the server sends until it closes (bounded by ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _good_body() -> dict:
    return RunningServer.infer_body(cluster_task(1, seed=41)[0].numpy())


def test_partial_requests_are_cut_while_good_requests_succeed(hardened: RunningServer) -> None:
    partial = []
    try:
        for i in range(300):  # slowloris: request line and one header, never the end of the headers
            sock = _connect(hardened.url)
            sock.sendall(f"POST {INFER} HTTP/1.1\r\nhost: x\r\nx-slow-{i}: 1\r\n".encode())
            partial.append(sock)
        silent = _connect(hardened.url)  # connects and sends nothing at all
        with httpx.Client(base_url=hardened.url, timeout=30) as client:
            statuses = [client.post(INFER, json=_good_body()).status_code for _ in range(20)]
        assert statuses == [200] * 20
        started = time.monotonic()
        answers = [_read_until_closed(sock) for sock in partial]
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), {a[:40] for a in answers}
        assert b"request headers not received within 2 s" in answers[0]
        assert _read_until_closed(silent) == b""  # closed quietly
        assert time.monotonic() - started < 20
    finally:
        for sock in partial:
            sock.close()


def test_a_body_shorter_than_its_content_length_gets_408(hardened: RunningServer) -> None:
    sock = _connect(hardened.url)
    try:
        sock.sendall(f'POST {INFER} HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{{"inputs": '.encode())
        answer = _read_until_closed(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert b"request body not received within 1 s" in answer


def test_an_early_answer_is_the_only_answer_when_the_body_never_completes(hardened: RunningServer) -> None:
    sock = _connect(hardened.url)
    try:  # unknown model: 404 before the body is read; the body deadline then only closes
        sock.sendall(b"POST /v2/models/nope/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{")
        answer = _read_until_closed(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 404 ") and answer.count(b"HTTP/1.1 ") == 1, answer


def test_oversized_headers_get_431(hardened: RunningServer) -> None:
    sock = _connect(hardened.url)
    try:
        sock.sendall(f"GET /v2 HTTP/1.1\r\nhost: x\r\nx-big: {'a' * (4 * MAX_HEADER)}\r\n".encode())
        answer = _read_until_closed(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].startswith("request line and headers exceed")
    assert httpx.get(f"{hardened.url}/v2", headers={"x-ok": "a" * 1000}).status_code == 200


def test_413_is_read_by_a_client_that_writes_the_whole_body_first(hardened: RunningServer) -> None:
    host, port = hardened.url.removeprefix("http://").split(":")
    body = json.dumps(_good_body()).encode() + b" " * (16 * MAX_BYTES)  # 1 MiB: beyond the limit
    for _ in range(3):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("POST", INFER, body=body, headers={"content-type": "application/json"})
            response = conn.getresponse()
            assert response.status == 413
            assert response.getheader("connection") == "close"
            assert "exceeds the limit" in json.loads(response.read())["error"]
        finally:
            conn.close()


def test_idle_keep_alive_connections_close_after_the_timeout(hardened: RunningServer) -> None:
    sock = _connect(hardened.url)
    try:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        started = time.monotonic()
        answer = _read_until_closed(sock)  # the response, then the close after 1 s idle
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert 0.5 < time.monotonic() - started < 15


def test_connections_beyond_the_limit_get_503(start_server, mlp_artifact: str) -> None:
    running = start_server(model=mlp_artifact, max_connections=8, header_timeout_s=30)
    held = [_connect(running.url) for _ in range(8)]  # idle connections up to the limit
    try:
        poll(lambda: len(running.server.server_state.connections) >= 8, what="8 connections open")
        refused = httpx.post(f"{running.url}{INFER}", json=_good_body(), timeout=30)
        assert refused.status_code == 503
        assert refused.headers["connection"] == "close"
        # Connection 11 is past 1.25x the limit (10): answered 503 and closed on arrival.
        beyond = [_connect(running.url) for _ in range(3)]
        poll(lambda: len(running.server.server_state.connections) >= 10, what="10 connections open")
        answer = _read_until_closed(beyond[-1])
        assert answer.startswith(b"HTTP/1.1 503 ") and b"too many open connections" in answer, answer[:200]
        for sock in beyond:
            sock.close()
    finally:
        for sock in held:
            sock.close()
    x = np.zeros((1, FEATURES), dtype=np.float32)
    assert poll(
        lambda: httpx.post(f"{running.url}{INFER}", json=running.infer_body(x), timeout=30).status_code == 200,
        what="service after the connections closed",
    )
