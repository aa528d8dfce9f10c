"""The retraining decisions on real data: drift on shifted vs unshifted arrays, the chi-square
test against scipy, the evaluation gate on trained vs untrained models, the rollout decision,
and the decision log that only ever appends (local files and S3 under moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from workloads import storage
from workloads.drift import compute_reference
from workloads.models import build_model
from workloads.retrain.decisions import SCHEMA, DecisionLog
from workloads.retrain.detect import chi2_sf, detect, homogeneity_test
from workloads.retrain.gate import GateResult, accuracy, decide_rollout, evaluate_gate
from workloads.trainer.data import synthetic

FEATURES = 8


def reference(seed: int) -> dict:
    return compute_reference(np.random.default_rng(seed).standard_normal((8000, FEATURES)))


# ----------------------------------------------------------------------------------- drift


@pytest.mark.parametrize("seed", range(5))
def test_a_half_sd_mean_shift_on_one_feature_is_flagged_on_that_feature(seed):
    rng = np.random.default_rng(100 + seed)
    ref = reference(seed)
    live = rng.standard_normal((1000, FEATURES))
    live[:, seed % FEATURES] += 0.5
    report = detect(ref, live)
    assert report.status == "drift"
    assert report.drifted_features == [seed % FEATURES]


def test_twenty_unshifted_samples_raise_no_alarm():
    rng = np.random.default_rng(7)
    ref = reference(7)
    reports = [detect(ref, rng.standard_normal((1000, FEATURES))) for _ in range(20)]
    assert [r.status for r in reports] == ["stable"] * 20
    assert max(r.max_psi for r in reports) < 0.1


def test_small_noisy_samples_need_significance_not_just_psi():
    rng = np.random.default_rng(3)
    ref = reference(3)
    live = rng.standard_normal((150, FEATURES))
    report = detect(ref, live, min_rows=100)
    # 150 rows put the PSI of pure noise near the 0.1 floor; the test keeps it stable.
    assert report.status == "stable"


def test_too_few_rows_is_insufficient_data_not_a_verdict():
    ref = reference(1)
    live = np.random.default_rng(1).standard_normal((999, FEATURES)) + 3.0
    report = detect(ref, live, min_rows=1000)
    assert report.status == "insufficient-data" and not report.drifted
    assert report.max_psi > 1.0


def test_report_is_json_ready():
    ref = reference(2)
    live = np.random.default_rng(2).standard_normal((1000, FEATURES))
    live[:, 1] *= 2.0
    doc = json.loads(json.dumps(detect(ref, live).as_dict()))
    assert doc["status"] == "drift" and doc["drifted_features"] == [1]
    assert len(doc["features"]) == FEATURES


def test_chi_square_tail_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for x, k in [(0.5, 1), (3.0, 2), (9.0, 9), (16.9, 9), (40.0, 9), (250.0, 9), (0.01, 4), (1200.0, 19)]:
        assert chi2_sf(x, k) == pytest.approx(stats.chi2.sf(x, k), rel=1e-9, abs=1e-300)


def test_homogeneity_test_matches_scipy_contingency():
    stats = pytest.importorskip("scipy.stats")
    a, b = np.array([120, 80, 100, 0]), np.array([30, 35, 40, 0])
    statistic, p = homogeneity_test(a, b)
    expected = stats.chi2_contingency(np.stack([a[:3], b[:3]]), correction=False)
    assert statistic == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)


# ------------------------------------------------------------------------------------ gate


@pytest.fixture(scope="module")
def task():
    x, y = synthetic(3000, 16, 3, seed=11)
    return x[:2400], y[:2400], x[2400:], y[2400:]


@pytest.fixture(scope="module")
def good(task) -> torch.nn.Module:
    """A small MLP fitted to the task (full-batch Adam, a fraction of a second)."""
    x, y, _, _ = task
    torch.manual_seed(0)
    model = build_model("mlp", in_features=16, hidden=[32], num_classes=3)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def untrained() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model("mlp", in_features=16, hidden=[32], num_classes=3).eval()


def test_a_better_candidate_passes_and_a_worse_one_is_rejected(task, good):
    _, _, hx, hy = task
    bad = untrained()
    assert accuracy(good, hx, hy) > accuracy(bad, hx, hy) + 0.2
    passed = evaluate_gate(bad, good, hx, hy)
    assert passed.passed and passed.candidate_accuracy > passed.current_accuracy
    rejected = evaluate_gate(good, bad, hx, hy)
    assert not rejected.passed and "<" in rejected.reason


def test_an_equally_good_candidate_passes(task, good):
    _, _, hx, hy = task
    assert evaluate_gate(good, good, hx, hy).passed


def test_too_few_held_out_rows_never_pass(task, good):
    _, _, hx, hy = task
    result = evaluate_gate(untrained(), good, hx[:50], hy[:50], min_rows=100)
    assert not result.passed and result.current_accuracy is None


def gate(passed: bool) -> GateResult:
    return GateResult(passed, 0.8, 0.9 if passed else 0.7, 500, 0.0, "reason")


def test_rollout_decision():
    assert decide_rollout(gate(True), canary_percent=10, canary_active=False).action == "canary"
    assert decide_rollout(gate(True), canary_percent=10, canary_active=False).percent == 10
    assert decide_rollout(gate(True), canary_percent=10, canary_active=True).action == "hold"
    assert decide_rollout(gate(False), canary_percent=10, canary_active=False).action == "reject"
    assert decide_rollout(gate(True), canary_percent=10, canary_active=False, can_canary=False).action == "manual"
    with pytest.raises(ValueError, match="canary_percent"):
        decide_rollout(gate(True), canary_percent=80, canary_active=False)


# ------------------------------------------------------------------------------ decision log


def fixed_clock():
    return datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)


def test_decisions_are_appended_one_object_each_and_never_overwritten(tmp_path):
    log = DecisionLog(str(tmp_path / "decisions"), clock=fixed_clock)
    uris = [log.append("no-drift", model="m", i=i)[0] for i in range(5)]
    # Same microsecond five times: five objects all the same, none replaced.
    assert len(set(uris)) == 5 and log.uris() == sorted(uris)
    assert [e["i"] for e in log.entries()] == sorted(range(5), key=lambda i: uris[i])
    assert all(e["schema"] == SCHEMA and e["time"].startswith("2026-11-25T12:00:00.123456") for e in log.entries())
    first = storage.read_bytes(uris[0])
    log.append("training-launched", model="m")
    assert storage.read_bytes(uris[0]) == first


def test_names_sort_chronologically_and_latest_is_the_newest(tmp_path):
    times = iter([datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)])
    log = DecisionLog(str(tmp_path), clock=lambda: next(times))
    for kind in ("no-drift", "training-launched", "training-running"):
        log.append(kind, model="m")
    assert log.latest()["kind"] == "training-running"
    assert [e["kind"] for e in log.entries()] == ["no-drift", "training-launched", "training-running"]


def test_decision_log_on_s3(s3_bucket):
    log = DecisionLog(f"s3://{s3_bucket}/models/m/retrain/decisions")
    uri, rec = log.append("no-drift", model="m", served={"psi": {"0": 0.01}})
    assert uri.startswith(f"s3://{s3_bucket}/models/m/retrain/decisions/") and uri.endswith("-no-drift-" + uri[-13:])
    log.append("training-launched", model="m", cycle="rt-m-2611251200")
    assert [e["kind"] for e in log.entries()] == ["no-drift", "training-launched"]
    assert json.loads(storage.read_bytes(uri)) == rec


def test_bad_kinds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        DecisionLog(str(tmp_path)).append("../escape", model="m")
