"""`--metrics-port`: the metrics are served on their own port and not on the inference port, which
is what load balancers and front doors reach."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.server.server_helpers import RunningServer, free_port
from workloads.server.config import ConfigError, ServerConfig


def test_metrics_leave_the_inference_port(start_server: Callable[..., RunningServer], mlp_artifact: str) -> None:
    port = free_port()
    running = start_server(model=mlp_artifact, metrics_port=port)
    assert running.client.get("/metrics").status_code == 404
    scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert scrape.status_code == 200 and "aicloud_server_requests_total" in scrape.text
    assert scrape.headers["content-type"].startswith("text/plain")
    # the metrics port serves nothing else
    assert httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=10).status_code == 404


@pytest.mark.parametrize("metrics_port", [8080, 0, 70000])
def test_metrics_port_must_be_another_valid_port(metrics_port: int) -> None:
    with pytest.raises(ConfigError, match="metrics_port"):
        ServerConfig(model="m", port=8080, metrics_port=metrics_port)
