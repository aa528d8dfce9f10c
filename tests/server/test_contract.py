"""The server and the endpoint component share one contract (`contracts.serving`): the same port,
probe paths, metrics path and request metric, as the same objects, and a server started with the
component's own command line answers the component's probes and scrape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from dockerfile import parse_string as parse_dockerfile

import components.endpoint as endpoint
import components.endpoint.manifests as manifests
import components.foundations as foundations
import components.monitoring as monitoring
import contracts.serving as contract
from tests.endpoints.endpoint_helpers import plans
from tests.server.server_helpers import RunningServer, free_port
from workloads.server import app, config, loadgen, metrics

ROOT = Path(__file__).resolve().parents[2]


def test_the_server_and_the_component_use_the_contracts_objects():
    for name in ("READY_PATH", "LIVE_PATH", "METRICS_PATH"):
        assert getattr(app, name) is getattr(contract, name) is getattr(manifests, name), name
    assert loadgen.READY_PATH is contract.READY_PATH is endpoint.READY_PATH
    assert metrics.REQUESTS.name is contract.REQUESTS_METRIC is manifests.REQUESTS_METRIC
    # what monitoring (alerts, the retraining trigger) and the metrics adapter read
    assert monitoring.REQUESTS is contract.REQUESTS_METRIC is foundations.REQUEST_COUNTER
    assert monitoring.FEATURE_PSI is contract.FEATURE_PSI_METRIC is metrics.FEATURE_PSI.name
    assert monitoring.DRIFT_ROWS is contract.DRIFT_ROWS_METRIC is metrics.DRIFT_ROWS.name
    assert metrics.REQUEST_LATENCY.name is contract.REQUEST_DURATION_METRIC
    assert monitoring.REQUEST_LATENCY_BUCKET == f"{metrics.REQUEST_LATENCY.name}_bucket"
    assert metrics.REQUEST_LATENCY.kind == "histogram"
    assert metrics.REQUESTS.name in metrics.METRIC_NAMES
    assert config.SERVER_PORT is contract.SERVER_PORT is manifests.SERVER_PORT
    assert config.ServerConfig(model="m").port is contract.SERVER_PORT
    assert config.build_parser().get_default("port") is contract.SERVER_PORT


def test_the_servers_routes_are_the_contract_paths():
    served = {route.path for route in app.create_app(config.ServerConfig(model="m")).routes}
    assert {contract.READY_PATH, contract.LIVE_PATH, contract.METRICS_PATH} <= served
    # with a metrics port, /metrics leaves the inference port (it is served on the other listener)
    split = {route.path for route in app.create_app(config.ServerConfig(model="m", metrics_port=9464)).routes}
    assert contract.METRICS_PATH not in split and contract.READY_PATH in split


def test_a_server_started_with_the_components_command_line_answers_its_probes_and_scrape(
    start_server: Callable[..., RunningServer], mlp_artifact: str
):
    plan = next(iter(plans().values()))
    (track, *_) = plan.tracks
    pod = manifests.pod_spec(plan, track, "sa")
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    cfg = config.parse_args(container["args"])
    # the ports the component declares are the ones the server listens on with those arguments
    assert ports == {contract.PORT_NAME: cfg.port, contract.METRICS_PORT_NAME: cfg.metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == contract.PORT_NAME
    # run it (the model and ports moved to this machine: the contract ports may be taken here)
    metrics_port = free_port()
    running = start_server(model=mlp_artifact, metrics_port=metrics_port, name=cfg.name)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert running.client.get(container[probe]["httpGet"]["path"]).status_code == 200, probe
    body = {"inputs": [{"name": "input__0", "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16}]}
    answered = running.client.post(f"/v2/models/{cfg.name}/infer", json=body)
    assert answered.status_code == 200, answered.text
    annotations = manifests._scrape_annotations()
    scrape = httpx.get(f"http://127.0.0.1:{metrics_port}{annotations['prometheus.io/path']}", timeout=10)
    assert scrape.status_code == 200
    assert annotations["prometheus.io/port"] == str(cfg.metrics_port)
    # the series the autoscaler's query sums is the one the server counts this request in
    query = manifests.request_rate_query(plan, track.name)
    assert f"{contract.REQUESTS_METRIC}{{" in query
    assert f'{contract.REQUESTS_METRIC}{{model="{cfg.name}",status="200",version="1"}} 1.0' in scrape.text


def test_the_server_image_listens_probes_and_runs_as_the_contract_says():
    """The `server` target of workloads/Dockerfile (read by Docker's own parser) cannot import the
    contract, so its port, health check and user are checked against it here."""
    stage: list = []
    for command in parse_dockerfile((ROOT / "workloads" / "Dockerfile").read_text()):
        if command.cmd.upper() == "FROM":
            stage = [] if command.value[-1] == "server" else None
        elif stage is not None:
            stage.append(command)
    assert stage, "no server stage"
    by_cmd = {c.cmd.upper(): c for c in stage}
    assert by_cmd["EXPOSE"].value == (str(contract.SERVER_PORT),)
    assert by_cmd["USER"].value == (f"{contract.RUN_AS_USER}:{contract.RUN_AS_USER}",)
    assert f"--uid {contract.RUN_AS_USER} " in by_cmd["RUN"].original
    health = " ".join(by_cmd["HEALTHCHECK"].value)
    assert f"http://127.0.0.1:{contract.SERVER_PORT}{contract.READY_PATH}" in health
    entry = list(by_cmd["ENTRYPOINT"].value)
    assert entry[:3] == ["python", "-m", "workloads.server"]
    assert config.parse_args([*entry[3:], "--model", "m"]).port == contract.SERVER_PORT
