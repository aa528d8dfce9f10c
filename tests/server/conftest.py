"""Fixtures for the model server tests: small trained artifacts and real servers on 127.0.0.1.

- ``mlp_artifact`` / ``transformer_artifact``: models trained for a moment on a seeded, easy
  synthetic task and exported with ``workloads.artifact.save_artifact`` (no trainer involved).
- ``server``: one in-process server (uvicorn in a thread, random free port) shared by a module;
  ``start_server`` starts more with other settings (all stop at the end of the module).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.server.server_helpers import CLASSES, FEATURES, RunningServer, free_port, train_artifact, wait_ready
from workloads.server.app import build_server
from workloads.server.config import ServerConfig


@pytest.fixture(scope="session")
def mlp_artifact(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A trained MLP 16 -> 64 -> 64 -> 4 artifact on local disk."""
    kwargs = {"in_features": FEATURES, "hidden": [64, 64], "num_classes": CLASSES}
    return train_artifact(tmp_path_factory.mktemp("mlp") / "model", "mlp", kwargs, steps=150)


@pytest.fixture(scope="session")
def transformer_artifact(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A trained one-layer tabular transformer artifact (d_model 32, 4 heads) on local disk."""
    kwargs = {
        "in_features": FEATURES,
        "num_classes": CLASSES,
        "d_model": 32,
        "nhead": 4,
        "num_layers": 1,
        "dim_feedforward": 64,
    }
    path = tmp_path_factory.mktemp("transformer") / "model"
    return train_artifact(path, "transformer", kwargs, steps=30, rows=256, version="7")


@pytest.fixture(scope="module")
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """Start in-process servers (``start_server(model=URI, **config)``); all stop at module end."""
    running: list[tuple[Any, threading.Thread, httpx.Client]] = []

    def start(**settings: Any) -> RunningServer:
        port = free_port()
        config = ServerConfig(host="127.0.0.1", port=port, torch_threads=1, log_level="warning", **settings)
        server, app = build_server(config)  # the hardened protocol and drain of the real server
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, alive=thread.is_alive)
        client = httpx.Client(base_url=url, timeout=30)
        running.append((server, thread, client))
        return RunningServer(url, app.state.server, client, server)

    yield start
    for server, thread, client in running:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def server(start_server: Callable[..., RunningServer], mlp_artifact: str) -> RunningServer:
    """The MLP artifact served int8 (explicitly: ``auto`` serves its small layers in fp32) with
    otherwise default settings."""
    return start_server(model=mlp_artifact, precision="int8")
