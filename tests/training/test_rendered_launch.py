"""The command a training pod runs really trains: an indexed Job of two CPU "nodes" is rendered,
and its container's torchrun command line and `PET_*` environment are launched as two local
torchrun agents meeting at a c10d rendezvous (gloo on CPU, file:// lakehouse zones).

Only two values are swapped for local ones: the rendezvous host (pod 0's cluster DNS name) and the
metrics port (a free port instead of 9090 on a shared machine)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

from components.nodepool import NodePoolSpec
from components.training import (
    PoolShape,
    TrainingJobSpec,
    indexed_job_manifests,
    run_locations,
    sweep_trials,
)

TIMEOUT_S = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_agents_run_the_rendered_pod_command_to_completion(tmp_path):
    pool = NodePoolSpec.model_validate({"name": "cpu", "machineType": "m6i.xlarge", "maxNodes": 2}, context={})
    spec = TrainingJobSpec.model_validate(
        {
            "name": "smoke",
            "pool": "cpu",
            "nodes": 2,
            "allowCpu": True,
            "backend": "indexed-job",
            "preset": "debug",
            "overrides": {"train.steps": 6, "data.num_samples": 400, "checkpoint.every": 3, "train.log_every": 3},
        }
    )
    (trial,) = sweep_trials(spec)
    zones = {"checkpoints": f"file://{tmp_path}/checkpoints", "models": f"file://{tmp_path}/models"}
    job, _ = indexed_job_manifests(
        spec,
        trial,
        pool=PoolShape.of(pool),
        image="unused@sha256:" + "0" * 64,
        run=run_locations(spec, trial, zones),
        namespace="aicloud-training",
        service_account="aicloud-trainer",
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PET_RDZV_ENDPOINT"].startswith("smoke-0.smoke.aicloud-training.svc.")
    env["PET_RDZV_ENDPOINT"] = f"127.0.0.1:{free_port()}"
    args = list(container["args"])
    args[args.index("--metrics-port") + 1] = str(free_port())
    assert container["command"] == ["python", "-m", "workloads.trainer.launch"]
    command = [sys.executable, *container["command"][1:], *args]  # the image's python = this one
    base = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    agents = [
        subprocess.Popen(
            command,
            env={**base, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    try:
        logs = [a.communicate(timeout=TIMEOUT_S)[0] for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)
                a.communicate()
    assert [a.returncode for a in agents] == [0, 0], "\n".join(logs)[-4000:]
    run_dir = tmp_path / "checkpoints" / "smoke"
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert steps and steps[-1]["step"] == 6
    assert any((run_dir / "checkpoints").iterdir())
    assert (tmp_path / "models" / "smoke").is_dir()  # the artifact went to the models zone
