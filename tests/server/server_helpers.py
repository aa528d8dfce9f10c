"""Helpers for the model server tests: a seeded synthetic task, artifact export, free ports,
in-process servers and ``python -m workloads.server`` subprocesses."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from workloads.artifact import save_artifact
from workloads.drift import compute_reference
from workloads.models import build_model
from workloads.server.app import ServerState

MODEL_NAME = "clusters"
FEATURES, CLASSES = 16, 4


def feature_psi(metrics_text: str, version: str = "1") -> dict[int, float]:
    """The ``aicloud_server_feature_psi`` values of MODEL_NAME/version by feature index."""
    pattern = rf'^aicloud_server_feature_psi\{{feature="(\d+)",model="{MODEL_NAME}",version="{version}"\}} (\S+)'
    return {int(f): float(v) for f, v in re.findall(pattern, metrics_text, flags=re.M)}


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_task(rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters around fixed class centres (learnable to ~100% accuracy)."""
    gen = torch.Generator().manual_seed(1234)
    centres = torch.randn(CLASSES, FEATURES, generator=gen) * 2.0
    gen.manual_seed(seed)
    y = torch.randint(0, CLASSES, (rows,), generator=gen)
    x = centres[y] + torch.randn(rows, FEATURES, generator=gen)
    return x, y


def train_artifact(
    path: Path, arch: str, kwargs: dict[str, Any], *, steps: int, rows: int = 1024, version: str = "1"
) -> str:
    """Train ``arch`` full-batch on ``rows`` rows of the cluster task and export it to ``path``."""
    torch.manual_seed(0)
    model = build_model(arch, **kwargs)
    x, y = cluster_task(rows, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a second thread only spins on a busy 2-core machine
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    heldout_x, heldout_y = cluster_task(512, seed=2)
    return save_artifact(
        str(path),
        model=model,
        arch=arch,
        kwargs=kwargs,
        heldout_x=heldout_x,
        heldout_y=heldout_y,
        reference=compute_reference(x.numpy()),
        name=MODEL_NAME,
        version=version,
        metrics={"steps": steps},
    )


@dataclass
class RunningServer:
    """A server running in this process."""

    url: str
    state: ServerState
    client: httpx.Client
    server: Any = None
    """The uvicorn server object (``workloads.server.app.build_server``)."""

    @staticmethod
    def infer_body(x: np.ndarray, **extra: Any) -> dict[str, Any]:
        """An OIP v2 inference request for rows ``x``."""
        return {
            "inputs": [{"name": "input__0", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
            **extra,
        }


def poll(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Call ``condition`` until it returns a truthy value (returned) or ``timeout`` seconds pass.

    For state that changes after a response went out (metrics, drift, connection closes): never
    sleep a fixed time and read once, which flakes on a busy machine.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last value {value!r})")
        time.sleep(interval)


def wait_ready(url: str, timeout: float = 60.0, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert alive(), "server stopped before it was ready"
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout} s")


class ServerProcess:
    """``python -m workloads.server`` as a subprocess on a free port (output kept in a file)."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"server-{self.port}.log"
        self._log = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "workloads.server", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen([*cmd, "--torch-threads", "1", *args], stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until /v2/health/ready answers 200."""
        wait_ready(self.url, timeout, alive=lambda: self.proc.poll() is None)

    def log(self) -> str:
        """Everything the process printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the process if it is still running and close the log."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()
