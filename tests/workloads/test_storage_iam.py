"""`workloads.storage` as each workload, under the IAM policy the components render for it,
evaluated by moto, with S3's 403-for-a-missing-key answer planted (`tests.s3_iam`).

Audit of the callers of `workloads.storage` against their grants (`ZONE_ACCESS`, `agent_grants`):
- trainer (resume probe `checkpoint.load_latest`, metrics `exists`, data `exists`/`list_prefix`,
  artifact export), server (`load_artifact`), retrain coordinator (`DecisionLog.append`'s
  `exists`, `write_instruction`, `instructed`) hold an unconditioned `s3:ListBucket` on every zone
  they use: a missing key is a 404 to them;
- the retraining agents hold `s3:ListBucket` only under an `s3:prefix` condition: a missing key
  is a 403 to them, which `exists`/`read_bytes` now resolve by a listing of the key itself;
- a URI outside every grant (no listing either) is a `PermissionError` naming the permission.
"""

from __future__ import annotations

import json

import pytest

from components.lakehouse.documents import ZONE_ACCESS, s3_prefix_policy, s3_workload_policy
from components.retraining import agent_grants
from tests.s3_iam import as_role, lists_bucket_unconditioned
from workloads import storage

OWN = "clf/retrain/decisions/regions/aws-usw2/"
CANDIDATE = "clf/retrain/rt-clf-2611251230/"


def agent_policy() -> dict:
    grants = [{**g, "bucket_arn": f"arn:aws:s3:::{g['zone']}"} for g in agent_grants("clf", "aws-usw2")]
    return s3_prefix_policy(grants, {})


def workload_policy(workload: str) -> dict:
    return s3_workload_policy(workload, {z: f"arn:aws:s3:::{z}" for z in ZONE_ACCESS[workload]}, {})


def code(call) -> str:
    try:
        call()
    except Exception as exc:  # botocore ClientError
        return str(exc.response["Error"]["Code"])  # type: ignore[attr-defined]
    return "ok"


def test_the_rendered_policies_decide_which_workloads_see_404_for_a_missing_key():
    assert not lists_bucket_unconditioned([agent_policy()], "models")
    assert not lists_bucket_unconditioned([agent_policy()], "models-copy")
    for workload, zones in ZONE_ACCESS.items():
        for zone in zones:
            assert lists_bucket_unconditioned([workload_policy(workload)], zone), (workload, zone)


def test_s3_answers_the_agent_403_and_the_trainer_404_for_a_missing_key(monkeypatch):
    """The planted rule, through moto: the agent's HEAD/GET of a missing key under its own prefix
    is refused (what made `exists` raise before), the trainer's is a plain 404."""
    with as_role(monkeypatch, agent_policy(), {"models": {}, "models-copy": {}}) as s3:
        assert code(lambda: s3.head_object(Bucket="models", Key=f"{OWN}rollout/c1.json")) == "403"
        assert code(lambda: s3.get_object(Bucket="models", Key=f"{OWN}rollout/c1.json")) == "AccessDenied"
        s3.put_object(Bucket="models", Key=f"{OWN}drift/r.json", Body=b"{}")
        assert code(lambda: s3.head_object(Bucket="models", Key=f"{OWN}drift/r.json")) == "ok"
    with as_role(monkeypatch, workload_policy("trainer"), {"checkpoints": {}}) as s3:
        assert code(lambda: s3.head_object(Bucket="checkpoints", Key="run/step-1.pt")) == "404"
        assert code(lambda: s3.get_object(Bucket="checkpoints", Key="run/step-1.pt")) == "NoSuchKey"


def test_the_agent_tells_missing_from_present_under_its_prefix_grant(monkeypatch):
    from workloads.retrain.regional import _read_json

    buckets = {"models": {}, "models-copy": {f"{CANDIDATE}manifest.json": b'{"files": {}}'}}
    with as_role(monkeypatch, agent_policy(), buckets):
        own = f"s3://models/{OWN}canary/c1.json"
        assert storage.exists(own) is False
        with pytest.raises(FileNotFoundError):
            storage.read_bytes(own)
        assert _read_json(own) is None  # the agent's "no outcome yet"
        storage.write_bytes(own, b'{"state": "held"}\n')
        assert storage.exists(own) is True
        assert _read_json(own) == {"state": "held"}
        # A key that only shares the prefix of an existing one is still missing.
        assert storage.exists(own.removesuffix(".json")) is False
        assert storage.exists(f"s3://models-copy/{CANDIDATE}manifest.json") is True
        assert storage.exists(f"s3://models-copy/{CANDIDATE}model.pt") is False
        with pytest.raises(FileNotFoundError):
            storage.read_bytes(f"s3://models-copy/{CANDIDATE}model.pt")


def test_a_refusal_that_no_listing_can_explain_names_the_missing_permission(monkeypatch):
    buckets = {"models": {}, "models-copy": {"clf/v7/manifest.json": b"{}"}, "audit-logs": {"a.log": b"x"}}
    with as_role(monkeypatch, agent_policy(), buckets):
        for uri in ("s3://audit-logs/a.log", "s3://audit-logs/missing.log"):
            with pytest.raises(PermissionError, match=r"s3:ListBucket on arn:aws:s3:::audit-logs"):
                storage.exists(uri)
            with pytest.raises(PermissionError, match=r"s3:ListBucket on arn:aws:s3:::audit-logs"):
                storage.read_bytes(uri)
        # Present but not readable (the served model is outside the candidates' prefix): refused, never "missing".
        with pytest.raises(PermissionError, match=r"s3:GetObject|s3:ListBucket"):
            storage.read_bytes("s3://models-copy/clf/v7/manifest.json")


def test_the_trainer_resume_probe_and_metrics_see_missing_objects_as_missing(monkeypatch):
    from workloads.trainer import checkpoint

    with as_role(monkeypatch, workload_policy("trainer"), {z: {} for z in ZONE_ACCESS["trainer"]}):
        assert checkpoint.load_latest("s3://checkpoints/run-1") is None
        assert storage.exists("s3://checkpoints/run-1/metrics.jsonl") is False
        with pytest.raises(FileNotFoundError):
            storage.read_bytes("s3://models/clf/v1/manifest.json")
        storage.write_bytes("s3://checkpoints/run-1/metrics.jsonl", b"{}\n")
        assert storage.exists("s3://checkpoints/run-1/metrics.jsonl") is True
        # The start-up write probe (put, delete) and the resume clean-up (multipart uploads) are granted.
        storage.write_bytes("s3://models/clf/.aicloud-probe-0", b"")
        storage.delete("s3://models/clf/.aicloud-probe-0")
        assert storage.clean_temp("s3://checkpoints/run-1") == []
        # The server's bucket-less URIs: a zone the trainer was never granted.
        with pytest.raises(PermissionError, match="s3:ListBucket on arn:aws:s3:::audit-logs"):
            storage.exists("s3://audit-logs/x")


def test_the_server_reports_a_missing_artifact_not_a_permission_error(monkeypatch):
    from workloads.artifact import ArtifactError, load_artifact

    with as_role(monkeypatch, workload_policy("server"), {"models": {}, "audit-logs": {}}):
        with pytest.raises(ArtifactError, match="no artifact at s3://models/clf/v1"):
            load_artifact("s3://models/clf/v1")


def test_the_coordinator_appends_decisions_under_its_grant(monkeypatch):
    from workloads.retrain.decisions import DecisionLog

    with as_role(monkeypatch, workload_policy("retrain"), {z: {} for z in ZONE_ACCESS["retrain"]}):
        log = DecisionLog("s3://models/clf/retrain/decisions")
        uri, record = log.append("skip", reason="no drift")
        assert storage.exists(uri) and log.entries() == [record]


def test_an_agent_tick_runs_under_its_rendered_grant_with_403_for_missing(monkeypatch):
    """The aws-usw2 agent's whole tick as its role (S3 policy from `agent_grants`, 403 for a
    missing key planted): it reads the coordinator's instruction and the replicated candidate,
    patches its canary once, and writes its outcome and drift report under its own prefix; a
    second tick finds the outcome and patches nothing."""
    from components.retraining import agent_settings_for
    from contracts.retrain import canary_state_uri, rollout_uri
    from tests.monitoring.specs import aws_region, retraining, serving
    from tests.monitoring.test_controller import T0
    from tests.monitoring.test_regional import Cluster, Prometheus
    from workloads.retrain.regional import run_agent

    decisions = "s3://models/clf/retrain/decisions"
    settings = agent_settings_for(
        retraining(), serving("canary"), aws_region(name="aws-usw2", region="us-west-2", primary=False),
        decisions_uri=decisions,
    )  # fmt: skip
    cycle = "rt-clf-2611251230"
    candidate = f"s3://models-copy/{CANDIDATE}".rstrip("/")
    instruction = {"cycle": cycle, "region": "aws-usw2", "candidate": candidate, "percent": 10, "issued": "x"}
    buckets = {
        "models": {
            rollout_uri(decisions, "aws-usw2", cycle).removeprefix("s3://models/"): json.dumps(instruction).encode()
        },
        "models-copy": {f"{CANDIDATE}manifest.json": b'{"files": {"model.pt": "x"}}', f"{CANDIDATE}model.pt": b"w"},
    }
    cluster, prom = Cluster(), Prometheus({"0": 0.3}, rows=2000)
    with as_role(monkeypatch, agent_policy(), buckets):
        report = run_agent(settings, metrics=prom, cluster=cluster, now=T0)
        assert report["rollout"] == {"cycle": cycle, "state": "applied"}
        outcome = json.loads(storage.read_bytes(canary_state_uri(decisions, "aws-usw2", cycle)))
        assert outcome["state"] == "applied" and outcome["candidate"] == candidate
        patched = len(cluster.patches)
        assert patched > 0
        run_agent(settings, metrics=prom, cluster=cluster, now=T0)
        assert len(cluster.patches) == patched, "the outcome was found: nothing is patched twice"
