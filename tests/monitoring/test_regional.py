"""The retraining loop over several serving regions, tick by tick: the coordinator (``run_once``
with ``settings.regions``) and one agent per region (``run_agent``), sharing nothing but a real
lake (local directories; S3 under moto). Settings are the ones the components render; each
region has its own Prometheus and Kubernetes stand-ins, and none of them is reachable from
another region's code. Candidates are real artifacts; a region's copy of the models zone gets
the candidate only when the test "replicates" it."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from components.retraining import Lake, agent_settings_for, region_target, settings_for
from contracts.retrain import (
    AgentSettings,
    Settings,
    canary_state_uri,
    drift_reports_prefix,
    rollout_uri,
)
from tests.monitoring.specs import TRAINER, aws_region, retraining, serving
from tests.monitoring.test_controller import T0, export, finish_job, shard
from tests.monitoring.test_controller import models as models  # noqa: F401 (the fixture, by its name)
from workloads import storage
from workloads.retrain import __main__ as cli
from workloads.retrain.controller import run_once
from workloads.retrain.decisions import DecisionLog
from workloads.retrain.regional import pool_reports, run_agent

REGIONS = ("aws-use1", "aws-usw2", "aws-euw1")
ROUTE = ("HTTPRoute", "clf")


class Prometheus:
    """One region's Prometheus: PSI per feature and the rows behind it."""

    def __init__(self, psi: dict[str, float] | None = None, rows: int = 0) -> None:
        self.psi = dict(psi or {})
        self.rows = rows

    def vector(self, query: str, label: str) -> dict[str, float]:
        if label == "feature":
            return dict(self.psi)
        assert label == "model" and "aicloud_server_drift_rows" in query
        return {"clf": float(self.rows)} if self.rows else {}


class Cluster:
    """One region's API: objects by (kind, name); patches recorded and applied as weights."""

    def __init__(self, route_weights: tuple[int, int] | None = (100, 0)) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.patches: list[tuple[str, str, str, dict[str, Any]]] = []
        self.fail_after: int | None = None
        if route_weights is not None:
            self.set_weights(*route_weights)

    def set_weights(self, stable: int, canary: int) -> None:
        self.objects[ROUTE] = {"spec": {"rules": [{"backendRefs": [{"weight": stable}, {"weight": canary}]}]}}

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.created.append(manifest)
        self.objects[(manifest["kind"], manifest["metadata"]["name"])] = manifest
        return manifest

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, name))

    def patch(self, api_version, kind, namespace, name, patch, *, type="merge") -> None:
        if self.fail_after is not None and len(self.patches) >= self.fail_after:
            raise ConnectionError("the API server went away mid-rollout")
        self.patches.append((kind, name, type, patch))
        if kind == "HTTPRoute":
            self.objects[ROUTE] = {"spec": json.loads(json.dumps(patch["spec"]))}


def region_spec(key: str):
    return aws_region(
        name=key,
        region={"aws-use1": "us-east-1", "aws-usw2": "us-west-2"}.get(key, "eu-central-1"),
        primary=key == "aws-use1",
    )


class World:
    """A primary lakehouse, a models copy per secondary region, a coordinator and three agents."""

    def __init__(self, tmp_path: Path, models, *, strategy: str = "canary", lake_root: str | None = None, **spec):
        root = lake_root or str(tmp_path)
        self.tmp = tmp_path
        self.lake = Lake(f"{root}/features", f"{root}/checkpoints", f"{root}/models")
        current = f"{root}/models/clf/v1"
        export(current, models["bad"], models["x"], models["y"], "1")
        shard(tmp_path / "features" / "clf" / "fresh" / "part-0.npz", models["fresh_x"][:1500], models["y"][:1500])
        if lake_root is not None:  # fresh data stays local; the decision log and models are on S3
            self.lake = Lake(str(tmp_path / "features"), f"{root}/checkpoints", f"{root}/models")
        self.spec = retraining(**spec)
        self.serving = serving(strategy, current)
        self.copies = {
            k: self.lake.models if k == "aws-use1" else str(tmp_path / f"replica-{k}" / "models") for k in REGIONS
        }
        targets = [region_target(self.serving, region_spec(k), self.copies[k]) for k in REGIONS]
        self.settings = settings_for(
            self.spec,
            self.serving,
            region_spec("aws-use1"),
            trainer_image=TRAINER,
            server_image=None,
            lake=self.lake,
            namespace="aicloud-training",
            job_service_account="aicloud-trainer",
            regions=targets,
        )
        self.agents = {
            k: agent_settings_for(self.spec, self.serving, region_spec(k), decisions_uri=self.settings.decisions_uri)
            for k in REGIONS
        }
        self.prom = {k: Prometheus() for k in REGIONS}
        self.clusters = {k: Cluster() for k in REGIONS}
        self.control = Cluster(route_weights=None)  # the primary region's API as the coordinator sees it

    def agent(self, key: str, when) -> dict[str, Any]:
        return run_agent(self.agents[key], metrics=self.prom[key], cluster=self.clusters[key], now=when)

    def coordinator(self, when) -> dict[str, Any]:
        # A fresh log object on every tick: the lake is the only state.
        return run_once(
            self.settings,
            metrics=_Unreachable(),
            cluster=self.control,
            log=DecisionLog(self.settings.decisions_uri),
            now=when,
        )

    def replicate(self, key: str, cycle: str) -> None:
        src = Path(self.lake.models) / "clf" / "retrain" / cycle
        shutil.copytree(src, Path(self.copies[key]) / "clf" / "retrain" / cycle)

    def kinds(self) -> list[str]:
        return [e["kind"] for e in DecisionLog(self.settings.decisions_uri).entries()]


class _Unreachable:
    """The coordinator never queries a Prometheus when it covers regions (theirs are private)."""

    def vector(self, query: str, label: str) -> dict[str, float]:
        raise AssertionError("the coordinator queried a Prometheus across regions")


def train_candidate(w: World, models, when) -> dict[str, Any]:
    """Drift in aws-usw2 only (aws-use1 stable, aws-euw1's report stale) -> a passing candidate."""
    w.prom["aws-use1"].psi, w.prom["aws-use1"].rows = {"0": 0.02, "1": 0.01}, 4000
    w.prom["aws-usw2"].psi, w.prom["aws-usw2"].rows = {"0": 0.35, "1": 0.02}, 2500
    w.prom["aws-euw1"].psi, w.prom["aws-euw1"].rows = {"0": 0.9}, 9000
    w.agent("aws-euw1", when - timedelta(hours=3))  # its agent has been down since: stale
    w.agent("aws-use1", when)
    w.agent("aws-usw2", when)
    launched = w.coordinator(when)
    assert launched["kind"] == "training-launched", launched
    export(launched["candidate"], models["good"], models["fresh_x"], models["y"], launched["cycle"])
    finish_job(w.control, launched, "Succeeded")
    return launched


def test_drift_in_one_region_trains_and_the_canary_is_staged_region_by_region(tmp_path, models):
    w = World(tmp_path, models)
    t = T0
    launched = train_candidate(w, models, t)
    served = launched["served"]
    assert served["source"] == "regional-reports"
    assert served["driftedRegions"] == ["aws-usw2"] and served["driftedFeatures"] == ["0"]
    assert served["stale"] == ["aws-euw1"] and served["regions"]["aws-euw1"]["status"] == "stale"
    assert served["regions"]["aws-use1"]["status"] == "stable" and served["regions"]["aws-use1"]["rows"] == 4000
    cycle = launched["cycle"]

    # Gate passes: only the first canary region is instructed, with its own copy's URI.
    out = w.coordinator(t + timedelta(hours=1))
    assert out["kind"] == "canary-rolling-out" and out["gate"]["passed"]
    assert out["regions"]["aws-use1"]["state"] == "instructed" and out["regions"]["aws-usw2"]["state"] == "waiting"
    assert storage.exists(rollout_uri(w.settings.decisions_uri, "aws-use1", cycle))
    assert not storage.exists(rollout_uri(w.settings.decisions_uri, "aws-usw2", cycle))
    assert all(not c.patches for c in w.clusters.values()) and not w.control.patches, "the coordinator patches nothing"

    # aws-use1's agent applies its canary (the candidate is in the primary lakehouse already).
    w.agent("aws-use1", t + timedelta(hours=1, minutes=5))
    (dep_kind, dep, _, dep_patch), (route_kind, *_rest) = w.clusters["aws-use1"].patches
    container = dep_patch["spec"]["template"]["spec"]["containers"][0]
    assert (dep_kind, dep) == ("Deployment", "clf-canary")
    assert container["args"][container["args"].index("--model") + 1] == launched["candidate"]
    assert route_kind == "HTTPRoute"

    # Its canary has not held for stageMinutes yet: nobody else gets the candidate.
    out = w.coordinator(t + timedelta(hours=1, minutes=10))
    assert out["kind"] == "canary-rolling-out" and out["regions"]["aws-use1"]["state"] == "applied"
    assert "holding" in out["regions"]["aws-use1"]["stage"]
    assert not storage.exists(rollout_uri(w.settings.decisions_uri, "aws-usw2", cycle))

    # An hour later its agent still sees the canary at 10 %: the other regions follow.
    w.agent("aws-use1", t + timedelta(hours=2, minutes=10))
    out = w.coordinator(t + timedelta(hours=2, minutes=15))
    assert out["regions"]["aws-usw2"] == {"state": "instructed", "wave": 2}
    assert out["regions"]["aws-euw1"] == {"state": "instructed", "wave": 2}

    # aws-usw2's replica does not have the candidate yet: nothing patched, the agent says why.
    w.agent("aws-usw2", t + timedelta(hours=2, minutes=20))
    assert w.clusters["aws-usw2"].patches == []
    out = w.coordinator(t + timedelta(hours=2, minutes=25))
    assert out["kind"] == "canary-rolling-out" and "waitingFor" in out["regions"]["aws-usw2"]

    # Replicated: the canary there loads the region's own copy.
    w.replicate("aws-usw2", cycle)
    w.agent("aws-usw2", t + timedelta(hours=2, minutes=30))
    container = w.clusters["aws-usw2"].patches[0][3]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][container["args"].index("--model") + 1] == f"{w.copies['aws-usw2']}/clf/retrain/{cycle}"

    # aws-euw1's endpoint is gone: its agent records it, and the rollout ends with every region's outcome.
    del w.clusters["aws-euw1"].objects[ROUTE]
    w.replicate("aws-euw1", cycle)
    w.agent("aws-euw1", t + timedelta(hours=2, minutes=30))
    done = w.coordinator(t + timedelta(hours=2, minutes=35))
    assert done["kind"] == "canary-started"
    assert {k: v["state"] for k, v in done["regions"].items()} == {
        "aws-use1": "applied",
        "aws-usw2": "applied",
        "aws-euw1": "endpoint-missing",
    }
    assert "not found" in done["regions"]["aws-euw1"]["reason"]
    assert w.coordinator(t + timedelta(hours=3))["kind"] == "canary-pending"
    assert len(w.control.created) == 1, "one training run for the whole cloud"


def test_a_region_whose_canary_is_busy_is_held_and_the_next_one_goes_first(tmp_path, models):
    w = World(tmp_path, models)
    w.clusters["aws-use1"].set_weights(80, 20)  # a person's canary already runs there
    launched = train_candidate(w, models, T0)
    cycle = launched["cycle"]
    for k in ("aws-usw2", "aws-euw1"):
        w.replicate(k, cycle)
    assert w.coordinator(T0 + timedelta(hours=1))["regions"]["aws-use1"]["state"] == "instructed"
    w.agent("aws-use1", T0 + timedelta(hours=1, minutes=5))
    assert w.clusters["aws-use1"].patches == [], "a running canary is never replaced"
    out = w.coordinator(T0 + timedelta(hours=1, minutes=10))
    assert out["regions"]["aws-use1"]["state"] == "held" and "20 %" in out["regions"]["aws-use1"]["reason"]
    assert out["regions"]["aws-usw2"] == {"state": "instructed", "wave": 1}
    w.agent("aws-usw2", T0 + timedelta(hours=1, minutes=15))
    assert len(w.clusters["aws-usw2"].patches) == 2
    # Re-running the agent changes nothing: the outcome is written once.
    w.agent("aws-usw2", T0 + timedelta(hours=1, minutes=20))
    assert len(w.clusters["aws-usw2"].patches) == 2
    w.agent("aws-usw2", T0 + timedelta(hours=2, minutes=20))
    out = w.coordinator(T0 + timedelta(hours=2, minutes=25))
    assert out["regions"]["aws-euw1"]["state"] == "instructed"
    w.agent("aws-euw1", T0 + timedelta(hours=2, minutes=30))
    done = w.coordinator(T0 + timedelta(hours=2, minutes=35))
    assert done["kind"] == "canary-started"
    assert [done["regions"][k]["state"] for k in REGIONS] == ["held", "applied", "applied"]


def test_when_no_region_can_take_the_canary_the_cycle_is_held_then_cools_down(tmp_path, models):
    w = World(tmp_path, models)
    w.clusters["aws-use1"].set_weights(50, 50)
    del w.clusters["aws-usw2"].objects[ROUTE]
    w.clusters["aws-euw1"].set_weights(90, 10)
    launched = train_candidate(w, models, T0)
    t = T0 + timedelta(hours=1)
    for step in range(3):
        w.coordinator(t + timedelta(minutes=10 * step))
        for k in REGIONS:
            w.agent(k, t + timedelta(minutes=10 * step + 5))
    held = w.coordinator(t + timedelta(minutes=40))
    assert held["kind"] == "canary-held", held
    assert [held["regions"][k]["state"] for k in REGIONS] == ["held", "endpoint-missing", "held"]
    assert all(not c.patches for c in w.clusters.values())
    assert w.coordinator(t + timedelta(hours=2))["kind"] == "cooldown"
    assert launched["cycle"] in held["cycle"]


def test_a_first_canary_rolled_back_before_the_stage_ends_stops_the_rollout(tmp_path, models):
    w = World(tmp_path, models)
    train_candidate(w, models, T0)
    w.coordinator(T0 + timedelta(hours=1))
    w.agent("aws-use1", T0 + timedelta(hours=1, minutes=5))
    w.clusters["aws-use1"].set_weights(100, 0)  # a person rolled it back
    w.agent("aws-use1", T0 + timedelta(hours=2, minutes=10))
    stopped = w.coordinator(T0 + timedelta(hours=2, minutes=15))
    assert stopped["kind"] == "rollout-stopped"
    assert stopped["regions"]["aws-usw2"]["state"] == "not-instructed"
    assert "rolled back" in stopped["regions"]["aws-usw2"]["reason"]
    assert w.coordinator(T0 + timedelta(hours=3))["kind"] == "cooldown"


def test_an_agent_that_dies_between_its_patches_finishes_them_on_its_next_tick(tmp_path, models):
    w = World(tmp_path, models)
    launched = train_candidate(w, models, T0)
    w.coordinator(T0 + timedelta(hours=1))
    cluster = w.clusters["aws-use1"]
    cluster.fail_after = 1  # the Deployment is patched, the HTTPRoute is not
    with pytest.raises(ConnectionError):
        w.agent("aws-use1", T0 + timedelta(hours=1, minutes=5))
    marker = canary_state_uri(w.settings.decisions_uri, "aws-use1", launched["cycle"], applying=True)
    assert storage.exists(marker)
    assert not storage.exists(canary_state_uri(w.settings.decisions_uri, "aws-use1", launched["cycle"]))
    # The coordinator, restarted meanwhile, waits (the lake says: instructed, no outcome).
    assert w.coordinator(T0 + timedelta(hours=1, minutes=6))["kind"] == "canary-rolling-out"
    cluster.fail_after = None
    # Even once the route shows the canary's weight, the marker says it is ours: patched again, applied.
    cluster.set_weights(90, 10)
    w.agent("aws-use1", T0 + timedelta(hours=1, minutes=10))
    outcome = json.loads(storage.read_bytes(canary_state_uri(w.settings.decisions_uri, "aws-use1", launched["cycle"])))
    assert outcome["state"] == "applied"
    assert [p[0] for p in cluster.patches] == ["Deployment", "Deployment", "HTTPRoute"]


def test_a_restarted_coordinator_never_rewrites_an_instruction(tmp_path, models):
    w = World(tmp_path, models)
    launched = train_candidate(w, models, T0)
    uri = rollout_uri(w.settings.decisions_uri, "aws-use1", launched["cycle"])
    w.coordinator(T0 + timedelta(hours=1))
    first = storage.read_bytes(uri)
    # Every tick reads the lake afresh; the pending instruction is the same object, byte for byte.
    for minutes in (5, 10, 15):
        assert w.coordinator(T0 + timedelta(hours=1, minutes=minutes))["kind"] == "canary-rolling-out"
    assert storage.read_bytes(uri) == first


def test_stale_and_missing_reports_are_named_and_never_decide(tmp_path, models):
    w = World(tmp_path, models)
    w.prom["aws-usw2"].psi, w.prom["aws-usw2"].rows = {"0": 0.8}, 3000
    w.agent("aws-usw2", T0 - timedelta(hours=2))  # drifted, but two hours old
    w.prom["aws-use1"].psi = {}  # no replica with enough rows
    w.agent("aws-use1", T0)
    decision = w.coordinator(T0)
    assert decision["kind"] == "insufficient-data" and decision["source"] == "regional-reports"
    served = decision["served"]
    assert served["stale"] == ["aws-usw2"] and served["missing"] == ["aws-euw1"]
    assert served["regions"]["aws-use1"]["status"] == "insufficient-data"
    assert w.control.created == []


def test_pooling_rule_any_region_with_enough_rows_drifted():
    settings = Settings.from_json(
        {
            **_settings_doc(),
            "regions": [{"region": k, "candidateUri": f"s3://m/{k}/rt-clf-yymmddhhmm", "canary": True} for k in "abc"],
        }
    )
    now = T0
    fresh = now.isoformat()
    reports = {
        "a": {"time": fresh, "psi": {"0": 0.05}, "rows": 900},
        "b": {"time": fresh, "psi": {"0": 0.11, "3": 0.4}, "rows": 600},
        "c": {"time": (now - timedelta(days=1)).isoformat(), "psi": {"0": 5.0}, "rows": 1},
    }
    pooled = pool_reports(settings, reports, now)
    assert pooled["status"] == "drift" and pooled["driftedRegions"] == ["b"] and pooled["stale"] == ["c"]
    assert pooled["regions"]["b"]["driftedFeatures"] == ["0", "3"]
    assert pooled["psi"] == {"0": 0.11, "3": 0.4}, "stale PSI never counts"
    reports["b"]["psi"] = {"0": 0.02}
    assert pool_reports(settings, reports, now)["status"] == "stable"


def test_without_a_canary_every_region_records_candidate_ready(tmp_path, models):
    w = World(tmp_path, models, strategy="blue-green")
    assert all(a.canary is None for a in w.agents.values())
    train_candidate(w, models, T0)
    ready = w.coordinator(T0 + timedelta(hours=1))
    assert ready["kind"] == "candidate-ready" and ready["rollout"]["action"] == "manual"
    assert {v["state"] for v in ready["regions"].values()} == {"candidate-ready"}
    assert all(not c.patches for c in w.clusters.values())
    assert w.coordinator(T0 + timedelta(hours=2))["kind"] == "canary-pending"


def test_reports_and_instructions_live_under_each_regions_prefix_on_s3(tmp_path, models, s3_bucket):
    w = World(tmp_path, models, lake_root=f"s3://{s3_bucket}")
    launched = train_candidate(w, models, T0)
    day = drift_reports_prefix(w.settings.decisions_uri, "aws-usw2", T0)
    assert day.startswith(f"s3://{s3_bucket}/models/clf/retrain/decisions/regions/aws-usw2/drift/20261125/")
    [report] = [u for u in storage.list_prefix(day) if u.endswith(".json")]
    assert json.loads(storage.read_bytes(report))["psi"] == {"0": 0.35, "1": 0.02}
    out = w.coordinator(T0 + timedelta(hours=1))
    assert out["kind"] == "canary-rolling-out"
    w.agent("aws-use1", T0 + timedelta(hours=1, minutes=5))
    outcome = storage.read_bytes(canary_state_uri(w.settings.decisions_uri, "aws-use1", launched["cycle"]))
    assert json.loads(outcome)["state"] == "applied"
    # The decision log lists only the coordinator's own decisions, not the regions' objects below it.
    assert w.kinds() == ["training-launched", "canary-rolling-out"]


def test_agent_settings_round_trip_and_bad_ones_exit_with_2(tmp_path, models, capsys, monkeypatch):
    w = World(tmp_path, models)
    agent = w.agents["aws-usw2"]
    assert AgentSettings.from_json(json.loads(json.dumps(agent.to_json()))) == agent
    assert Settings.from_json(json.loads(json.dumps(w.settings.to_json()))) == w.settings
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(agent.to_json()))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**agent.to_json(), "region": "a/b"}))
    assert cli.main(["agent", "--settings", str(bad)]) == cli.EXIT_USAGE
    assert "region" in capsys.readouterr().err


def _settings_doc() -> dict[str, Any]:
    return {
        "model": "clf",
        "prometheusUrl": "http://p:9090",
        "driftQuery": "q",
        "driftThreshold": 0.1,
        "minSamples": 500,
        "canaryPercent": 10,
        "currentModel": "s3://m/clf/v1",
        "candidateUri": "s3://m/clf/retrain/rt-clf-yymmddhhmm",
        "decisionsUri": "s3://m/clf/retrain/decisions",
        "jobs": [{"kind": "Job", "metadata": {"name": "rt-clf-yymmddhhmm"}}],
        "placeholder": "rt-clf-yymmddhhmm",
        "runPrefix": "rt-clf",
        "canary": None,
    }


def test_the_cli_runs_an_agent_tick_against_a_real_http_prometheus(tmp_path, models, capsys):
    """`python -m workloads.retrain agent` with a blue-green region's settings: no Kubernetes API
    (its pod mounts no token), its Prometheus over HTTP on 127.0.0.1, its report in the lake."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            query = parse_qs(urlparse(self.path).query)["query"][0]
            seen.append(query)
            if "aicloud_server_drift_rows" in query and "feature" not in query:
                result = [{"metric": {"model": "clf"}, "value": [1.7e9, "2400"]}]
            else:
                result = [{"metric": {"feature": "0"}, "value": [1.7e9, "0.27"]}]
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        w = World(tmp_path, models, strategy="blue-green")
        doc = {**w.agents["aws-usw2"].to_json(), "prometheusUrl": f"http://127.0.0.1:{server.server_address[1]}"}
        path = tmp_path / "agent-settings.json"
        path.write_text(json.dumps(doc))
        assert cli.main(["agent", "--settings", str(path)]) == cli.EXIT_OK
    finally:
        server.shutdown()
        thread.join(timeout=5)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["region"] == "aws-usw2" and printed["psi"] == {"0": 0.27} and printed["rows"] == 2400
    assert len(seen) == 2
    reports = [
        u for u in storage.list_prefix(f"{w.settings.decisions_uri}/regions/aws-usw2/drift") if u.endswith(".json")
    ]
    assert len(reports) == 1 and json.loads(storage.read_bytes(reports[0])) == printed


def test_an_agent_never_reads_or_heads_an_object_it_has_not_listed(tmp_path, models, monkeypatch):
    """S3 answers a GET or HEAD of a missing key with 403, not 404, to a caller without an
    unconditioned s3:ListBucket, which an agent's prefix-scoped grant is: planted here, every
    read of a missing object and every HEAD fails as S3 would fail it for the agent."""
    w = World(tmp_path, models)
    launched = train_candidate(w, models, T0)
    w.coordinator(T0 + timedelta(hours=1))
    w.coordinator(T0 + timedelta(hours=1, minutes=1))
    real_read = storage.read_bytes

    def read_as_agent(uri):
        try:
            return real_read(uri)
        except FileNotFoundError as exc:
            raise PermissionError(f"AccessDenied: {uri}") from exc

    def head_as_agent(uri):
        raise PermissionError(f"AccessDenied (HeadObject without s3:ListBucket): {uri}")

    monkeypatch.setattr(storage, "read_bytes", read_as_agent)
    monkeypatch.setattr(storage, "exists", head_as_agent)
    # aws-usw2 is not instructed yet, aws-use1 applies, then both tick again (outcome written).
    for minutes in (5, 10):
        for key in REGIONS:
            w.agent(key, T0 + timedelta(hours=1, minutes=minutes))
    monkeypatch.undo()
    outcome = json.loads(storage.read_bytes(canary_state_uri(w.settings.decisions_uri, "aws-use1", launched["cycle"])))
    assert outcome["state"] == "applied" and len(w.clusters["aws-use1"].patches) == 2


def test_the_agent_path_never_imports_torch():
    """An agent tick is I/O only: its small CronJob (512Mi requested) must not pay for torch."""
    import subprocess
    import sys

    code = (
        "import sys; from workloads.retrain import __main__, regional; "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
