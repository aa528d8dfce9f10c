"""One retraining loop, tick by tick, on real artifacts and real fresh-data shards in a local
lakehouse: the settings are the ones the RetrainingPipeline renders (same code), Prometheus and
the Kubernetes API are stand-ins that answer what each scenario needs and record what the
trigger sends. Plus the thin clients' request shapes and the command line's exit codes."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from components.retraining import Lake, settings_for
from contracts.retrain import Settings
from tests.monitoring.specs import TRAINER, aws_region, retraining, serving
from workloads.artifact import save_artifact
from workloads.drift import compute_reference
from workloads.models import build_model
from workloads.retrain import __main__ as cli
from workloads.retrain.clients import PrometheusClient, PrometheusError, job_state, parse_vector
from workloads.retrain.controller import run_once
from workloads.retrain.decisions import DecisionLog
from workloads.trainer.data import synthetic

F, C = 16, 3
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Prometheus:
    """Answers the drift query with the PSI per feature a scenario sets."""

    def __init__(self) -> None:
        self.psi: dict[str, float] = {}
        self.queries: list[str] = []

    def vector(self, query: str, label: str) -> dict[str, float]:
        self.queries.append(query)
        assert label == "feature"
        return dict(self.psi)


class Cluster:
    """Records creates and patches; `get` answers from `objects` (None: not found)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.patches: list[tuple[str, str, str, dict[str, Any]]] = []

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.created.append(manifest)
        self.objects[(manifest["kind"], manifest["metadata"]["name"])] = manifest
        return manifest

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, name))

    def patch(self, api_version, kind, namespace, name, patch, *, type="merge") -> None:
        self.patches.append((kind, name, type, patch))


def fit(x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("mlp", in_features=F, hidden=[32], num_classes=C)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def models():
    """A fitted model and an untrained one, and the shifted fresh data (feature 0 + 0.5 sd)."""
    x, y = synthetic(3000, F, C, seed=5)
    fresh_x = x.clone()
    fresh_x[:, 0] += 0.5
    return {"good": fit(x, y, 120), "bad": fit(x, y, 0), "x": x, "y": y, "fresh_x": fresh_x}


def export(uri: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, version: str) -> None:
    save_artifact(
        uri,
        model=model,
        arch="mlp",
        kwargs={"in_features": F, "hidden": [32], "num_classes": C},
        heldout_x=x[-300:],
        heldout_y=y[-300:],
        reference=compute_reference(x[:2000].numpy()),
        name="clf",
        version=version,
    )


def shard(path: Path, x: torch.Tensor, y: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, x=x.numpy(), y=y.numpy())
    path.write_bytes(buf.getvalue())


def setup(tmp_path: Path, models, *, strategy="canary", shifted=True, current="bad", **spec) -> Settings:
    lake = Lake(str(tmp_path / "features"), str(tmp_path / "checkpoints"), str(tmp_path / "models"))
    current_uri = str(tmp_path / "models" / "clf" / "v1")
    export(current_uri, models[current], models["x"], models["y"], "1")
    fresh = models["fresh_x"] if shifted else models["x"]
    shard(tmp_path / "features" / "clf" / "fresh" / "part-0.npz", fresh[:1500], models["y"][:1500])
    return settings_for(
        retraining(**spec),
        serving(strategy, current_uri),
        aws_region(),
        trainer_image=TRAINER,
        server_image=None,
        lake=lake,
        namespace="aicloud-training",
        job_service_account="aicloud-trainer",
    )


def finish_job(cluster: Cluster, decision: dict, state: str) -> None:
    name = decision["job"]["name"]
    obj = cluster.objects[(decision["job"]["kind"], name)]
    obj["status"] = {"conditions": [{"type": state, "status": "True"}]}


def tick(settings, prom, cluster, when):
    return run_once(settings, metrics=prom, cluster=cluster, now=when)


def test_drift_trains_gates_and_starts_a_canary(tmp_path, models):
    settings = setup(tmp_path, models)
    prom, cluster = Prometheus(), Cluster()
    cluster.objects[("HTTPRoute", "clf")] = {"spec": {"rules": [{"backendRefs": [{"weight": 100}, {"weight": 0}]}]}}

    prom.psi = {"0": 0.02, "1": 0.01}
    assert tick(settings, prom, cluster, T0)["kind"] == "no-drift"
    assert 'model="clf"' in prom.queries[0] and ">= 500" in prom.queries[0]

    prom.psi = {"0": 0.31, "1": 0.02}
    launched = tick(settings, prom, cluster, T0 + timedelta(minutes=30))
    assert launched["kind"] == "training-launched"
    assert launched["freshData"]["drifted_features"] == [0]
    [job] = cluster.created
    run = launched["cycle"]
    assert run == "rt-clf-2611251230" and job["kind"] == "TrainJob" and job["metadata"]["name"] == run
    args = job["spec"]["trainer"]["args"]
    candidate = launched["candidate"]
    assert candidate == str(tmp_path / "models" / "clf" / "retrain" / run)
    assert f"export.uri={candidate}" in args
    assert f"data.uri={tmp_path / 'features' / 'clf' / 'fresh'}" in args
    assert f"export.version={json.dumps(run)}" in args
    assert "yymmddhhmm" not in json.dumps(job)

    assert tick(settings, prom, cluster, T0 + timedelta(hours=1))["kind"] == "training-running"

    # The job's trainer exports the candidate: fitted on the fresh data, held-out rows from it.
    export(candidate, models["good"], models["fresh_x"], models["y"], run)
    finish_job(cluster, launched, "Succeeded")
    started = tick(settings, prom, cluster, T0 + timedelta(hours=2))
    assert started["kind"] == "canary-started", started
    assert started["gate"]["passed"] and started["gate"]["candidate_accuracy"] >= started["gate"]["current_accuracy"]
    (dep_kind, dep, dep_type, dep_patch), (route_kind, route, route_type, route_patch) = cluster.patches
    assert (dep_kind, dep, dep_type) == ("Deployment", "clf-canary", "strategic")
    container = dep_patch["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "server" and container["args"][container["args"].index("--model") + 1] == candidate
    assert (route_kind, route, route_type) == ("HTTPRoute", "clf", "merge")
    assert [b["weight"] for b in route_patch["spec"]["rules"][0]["backendRefs"]] == [90, 10]

    assert tick(settings, prom, cluster, T0 + timedelta(hours=3))["kind"] == "canary-pending"
    assert len(cluster.created) == 1, "no second run while the canary is out"

    promoted = Settings.from_json({**settings.to_json(), "currentModel": candidate})
    prom.psi = {"0": 0.01}
    assert tick(promoted, prom, cluster, T0 + timedelta(hours=4))["kind"] == "no-drift"
    kinds = [e["kind"] for e in DecisionLog(settings.decisions_uri).entries()]
    assert kinds == [
        "no-drift",
        "training-launched",
        "training-running",
        "canary-started",
        "canary-pending",
        "no-drift",
    ]


def test_drift_that_the_fresh_data_does_not_show_launches_nothing(tmp_path, models):
    settings = setup(tmp_path, models, shifted=False)
    prom, cluster = Prometheus(), Cluster()
    prom.psi = {"0": 0.4}
    decision = tick(settings, prom, cluster, T0)
    assert decision["kind"] == "drift-unconfirmed" and decision["freshData"]["status"] == "stable"
    assert cluster.created == []


def test_no_replica_with_enough_rows_is_insufficient_data(tmp_path, models):
    settings = setup(tmp_path, models)
    decision = tick(settings, Prometheus(), Cluster(), T0)
    assert decision["kind"] == "insufficient-data" and decision["source"] == "prometheus"


def launch(settings, prom, cluster) -> dict:
    prom.psi = {"0": 0.5}
    decision = tick(settings, prom, cluster, T0)
    assert decision["kind"] == "training-launched"
    return decision


def test_a_worse_candidate_is_rejected_then_the_loop_cools_down(tmp_path, models):
    settings = setup(tmp_path, models, current="good")
    prom, cluster = Prometheus(), Cluster()
    launched = launch(settings, prom, cluster)
    export(launched["candidate"], models["bad"], models["fresh_x"], models["y"], "2")
    finish_job(cluster, launched, "Succeeded")
    rejected = tick(settings, prom, cluster, T0 + timedelta(hours=1))
    assert rejected["kind"] == "gate-rejected" and not rejected["gate"]["passed"]
    assert cluster.patches == []
    assert tick(settings, prom, cluster, T0 + timedelta(hours=2))["kind"] == "cooldown"
    assert tick(settings, prom, cluster, T0 + timedelta(hours=26))["kind"] == "training-launched"


def test_a_failed_job_or_a_missing_export_ends_the_run(tmp_path, models):
    settings = setup(tmp_path, models)
    prom, cluster = Prometheus(), Cluster()
    launched = launch(settings, prom, cluster)
    finish_job(cluster, launched, "Failed")
    failed = tick(settings, prom, cluster, T0 + timedelta(hours=1))
    assert failed["kind"] == "training-failed" and failed["jobState"] == "failed"

    settings = setup(tmp_path / "b", models)
    cluster = Cluster()
    launched = launch(settings, prom, cluster)
    finish_job(cluster, launched, "Succeeded")
    failed = tick(settings, prom, cluster, T0 + timedelta(hours=1))
    assert failed["kind"] == "training-failed" and "manifest.json is missing" in failed["reason"]


def test_a_running_canary_is_not_replaced(tmp_path, models):
    settings = setup(tmp_path, models)
    prom, cluster = Prometheus(), Cluster()
    cluster.objects[("HTTPRoute", "clf")] = {"spec": {"rules": [{"backendRefs": [{"weight": 80}, {"weight": 20}]}]}}
    launched = launch(settings, prom, cluster)
    export(launched["candidate"], models["good"], models["fresh_x"], models["y"], "2")
    finish_job(cluster, launched, "Succeeded")
    held = tick(settings, prom, cluster, T0 + timedelta(hours=1))
    assert held["kind"] == "canary-held" and held["rollout"]["action"] == "hold"
    assert cluster.patches == []


def test_without_a_canary_strategy_a_passing_candidate_waits_for_a_person(tmp_path, models):
    settings = setup(tmp_path, models, strategy="blue-green")
    assert settings.canary is None
    prom, cluster = Prometheus(), Cluster()
    launched = launch(settings, prom, cluster)
    export(launched["candidate"], models["good"], models["fresh_x"], models["y"], "2")
    finish_job(cluster, launched, "Complete")
    ready = tick(settings, prom, cluster, T0 + timedelta(hours=1))
    assert ready["kind"] == "candidate-ready" and ready["rollout"]["action"] == "manual"
    assert cluster.patches == []
    assert tick(settings, prom, cluster, T0 + timedelta(hours=2))["kind"] == "canary-pending"


def test_kserve_canary_patch_sets_the_traffic_percent_and_the_candidate():
    settings = settings_for(
        retraining(),
        serving("canary", backend="kserve"),
        aws_region(),
        trainer_image=TRAINER,
        server_image=None,
        lake=Lake("s3://f", "s3://c", "s3://m"),
        namespace="aicloud-training",
        job_service_account="aicloud-trainer",
    )
    target = settings.canary
    assert target is not None and target.read.kind == "InferenceService"
    assert target.read_path == ["spec", "predictor", "canaryTrafficPercent"]
    [(ref, kind, patch)] = target.patches
    assert kind == "merge" and patch["spec"]["predictor"]["canaryTrafficPercent"] == "${PERCENT}"
    assert "${MODEL_URI}" in patch["spec"]["predictor"]["containers"][0]["args"]


def test_settings_survive_the_configmap_round_trip(tmp_path, models):
    settings = setup(tmp_path, models)
    again = Settings.from_json(json.loads(json.dumps(settings.to_json())))
    assert again == settings


# ------------------------------------------------------------------------------- clients


def test_prometheus_answers_are_parsed_and_errors_raised():
    ok = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {"feature": "3"}, "value": [1.7e9, "0.27"]}]},
    }
    assert parse_vector(ok, "feature") == {"3": 0.27}
    with pytest.raises(PrometheusError, match="bad_data"):
        parse_vector({"status": "error", "errorType": "bad_data", "error": "parse error"}, "feature")
    with pytest.raises(PrometheusError, match="vector"):
        parse_vector({"status": "success", "data": {"resultType": "matrix", "result": []}}, "feature")


def test_prometheus_client_sends_an_instant_query():
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})

    client = PrometheusClient("http://prom:9090/", transport=httpx.MockTransport(answer))
    assert client.vector("up", "job") == {}
    assert seen[0].url.path == "/api/v1/query" and seen[0].url.params["query"] == "up"


def test_job_states():
    assert job_state(None) == "missing"
    assert job_state({"status": {}}) == "running"
    assert job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "succeeded"
    assert job_state({"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}) == "succeeded"
    assert job_state({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "failed"
    assert job_state({"status": {"conditions": [{"type": "Failed", "status": "False"}]}}) == "running"


def test_cli_rejects_bad_settings_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "settings.json"
    bad.write_text(json.dumps({"model": "clf"}))
    assert cli.main(["--settings", str(bad)]) == cli.EXIT_USAGE
    assert "settings error" in capsys.readouterr().err
