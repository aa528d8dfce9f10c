"""The retraining loop across serving regions: regional agents and the coordinator's side of them.

Cluster APIs and Prometheus are private to their region, so nothing here calls another region.
An **agent** (a CronJob in every serving region, ``python -m workloads.retrain agent``) and the
**coordinator** (the trigger in the cloud's primary region, :mod:`workloads.retrain.controller`)
share state through the lakehouse, under the decision log's prefix (layout in
:mod:`contracts.retrain`):

- each agent tick reads its region's Prometheus (the PSI per feature of replicas with enough
  rows, and the rows behind them) and writes a timestamped **drift report** for its region;
- the coordinator pools the fresh reports (:func:`pool_reports`): drift when any region with
  enough rows drifted, each region's verdict recorded, stale and missing reports named;
- after the gate, the coordinator writes one **rollout instruction** per region and cycle; the
  region's agent applies it once (:func:`apply_instruction`: the canary patches with the
  candidate's URI in that region's copy of the models zone) and writes back the **outcome**
  (``applied``, ``held``, ``endpoint-missing``, ``no-canary``), which the coordinator reads
  (:func:`outcomes`).

Every object is written once under a deterministic or timestamped name, so a tick of either side
that dies half way is simply run again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.retrain import (
    AgentSettings,
    Settings,
    canary_state_uri,
    drift_reports_prefix,
    read_path,
    render_canary_patch,
    rollout_prefix,
    rollout_uri,
)
from workloads import storage

__all__ = [
    "REPORT_SCHEMA",
    "apply_instruction",
    "latest_reports",
    "outcomes",
    "pool_reports",
    "run_agent",
    "write_instruction",
]

REPORT_SCHEMA = "aicloud-retrain-region/1"
FINAL_STATES = ("applied", "held", "endpoint-missing", "no-canary")
"""Outcomes an agent writes once per cycle (``not-replicated`` is retried, never written)."""


def _write_json(uri: str, doc: dict[str, Any]) -> dict[str, Any]:
    storage.write_bytes(uri, (json.dumps(doc, sort_keys=True) + "\n").encode())
    return doc


def _read_json(uri: str) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        return None


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


# ----------------------------------------------------------------------------------- agent


def _listed(prefix: str) -> set[str]:
    """Names of the objects directly under ``prefix``. The agent learns what exists only by
    listing its prefixes: its S3 grant lists them under an ``s3:prefix`` condition, and S3 answers
    a GET or HEAD of a missing key with 403 (not 404) to a caller without an unconditioned
    ``s3:ListBucket``."""
    return {u.rsplit("/", 1)[-1] for u in storage.list_prefix(prefix)}


def _replicated(candidate: str) -> bool:
    """Whether the candidate's artifact is complete at ``candidate`` (its manifest, written last
    by the trainer, and every file it lists): a replica gets objects one by one, in any order."""
    present = _listed(candidate)
    if "manifest.json" not in present:
        return False
    manifest = json.loads(storage.read_bytes(storage.join(candidate, "manifest.json")))
    return all(name in present for name in manifest.get("files", {}))


def apply_instruction(settings: AgentSettings, *, cluster: Any, now: datetime) -> dict[str, Any] | None:
    """Apply the newest rollout instruction for this region once; its outcome (None: none yet).

    A final outcome already written for the instruction's cycle is returned as it is (nothing is
    patched twice). ``applying`` is written before the patches: a tick that dies after patching
    re-applies the same patches on its next run instead of taking its own canary for a foreign one.
    """
    uris = [
        u for u in storage.list_prefix(rollout_prefix(settings.decisions_uri, settings.region)) if u.endswith(".json")
    ]
    if not uris:
        return None
    instruction = json.loads(storage.read_bytes(uris[-1]))
    cycle = instruction["cycle"]
    final_uri = canary_state_uri(settings.decisions_uri, settings.region, cycle)
    applying_uri = canary_state_uri(settings.decisions_uri, settings.region, cycle, applying=True)
    written = _listed(final_uri.rsplit("/", 1)[0])
    if final_uri.rsplit("/", 1)[-1] in written:
        return json.loads(storage.read_bytes(final_uri))
    base = {"region": settings.region, "cycle": cycle, "candidate": instruction["candidate"]}
    target = settings.canary
    if target is None:
        return _write_json(final_uri, {**base, "time": now.isoformat(), "state": "no-canary"})
    read = target.read
    endpoint = cluster.get(read.api_version, read.kind, read.namespace, read.name)
    if endpoint is None:
        reason = f"endpoint {read.kind} {read.namespace}/{read.name} not found"
        return _write_json(final_uri, {**base, "time": now.isoformat(), "state": "endpoint-missing", "reason": reason})
    applying = applying_uri.rsplit("/", 1)[-1] in written
    percent = read_path(endpoint, target.read_path)
    if not applying and isinstance(percent, int) and 0 < percent < 100:
        reason = f"a canary already runs at {percent} % on {read.kind} {read.namespace}/{read.name}"
        return _write_json(final_uri, {**base, "time": now.isoformat(), "state": "held", "reason": reason})
    if not _replicated(instruction["candidate"]):
        return {**base, "time": now.isoformat(), "state": "not-replicated"}
    if not applying:
        _write_json(applying_uri, {**base, "time": now.isoformat(), "state": "applying"})
    applied = []
    for ref, patch_type, template in target.patches:
        patch = render_canary_patch(template, model_uri=instruction["candidate"], percent=int(instruction["percent"]))
        cluster.patch(ref.api_version, ref.kind, ref.namespace, ref.name, patch, type=patch_type)
        applied.append({"kind": ref.kind, "name": ref.name, "type": patch_type, "patch": patch})
    return _write_json(
        final_uri,
        {**base, "time": now.isoformat(), "state": "applied", "percent": instruction["percent"], "patches": applied},
    )


def run_agent(settings: AgentSettings, *, metrics: Any, cluster: Any, now: datetime | None = None) -> dict[str, Any]:
    """One agent tick: apply the region's rollout instruction, then report the region's drift
    and the canary it sees. Returns the report it wrote."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    rollout = apply_instruction(settings, cluster=cluster, now=now)
    psi = metrics.vector(settings.drift_query, "feature")
    rows = metrics.vector(settings.samples_query, "model")
    canary: dict[str, Any] | None = None
    if settings.canary is not None:
        read = settings.canary.read
        endpoint = cluster.get(read.api_version, read.kind, read.namespace, read.name)
        canary = {
            "found": endpoint is not None,
            "percent": read_path(endpoint, settings.canary.read_path) if endpoint is not None else None,
        }
    report = {
        "schema": REPORT_SCHEMA,
        "time": now.isoformat(timespec="microseconds"),
        "region": settings.region,
        "model": settings.model,
        "psi": {k: round(v, 6) for k, v in sorted(psi.items())},
        "rows": int(sum(rows.values())),
        "canary": canary,
        "rollout": {k: rollout[k] for k in ("cycle", "state") if k in rollout} if rollout else None,
    }
    prefix = drift_reports_prefix(settings.decisions_uri, settings.region, now)
    return _write_json(storage.join(prefix, f"{_stamp(now)}.json"), report)


# ----------------------------------------------------------------------------- coordinator


def latest_reports(settings: Settings, now: datetime) -> dict[str, dict[str, Any] | None]:
    """The newest drift report of every region (today's or yesterday's), None where there is none."""
    out: dict[str, dict[str, Any] | None] = {}
    for target in settings.regions:
        newest = None
        for day in (now, now - timedelta(days=1)):
            uris = [
                u
                for u in storage.list_prefix(drift_reports_prefix(settings.decisions_uri, target.region, day))
                if u.endswith(".json")
            ]
            if uris:
                newest = json.loads(storage.read_bytes(uris[-1]))
                break
        out[target.region] = newest
    return out


def _age_minutes(report: dict[str, Any], now: datetime) -> float:
    return (now - datetime.fromisoformat(report["time"])).total_seconds() / 60


def pool_reports(settings: Settings, reports: dict[str, dict[str, Any] | None], now: datetime) -> dict[str, Any]:
    """The drift verdict over the regions' reports.

    Per region: ``missing`` (no report), ``stale`` (older than ``report_max_age_minutes``: ignored),
    ``insufficient-data`` (no replica with enough rows), ``drift`` or ``stable``. Pooled: ``drift``
    when ANY region with enough rows drifted (regions serve different populations: a shift in one
    region's inputs hurts that region's users however stable the others are, and averaging the
    regions would dilute it by their traffic); ``stable`` when every region with enough rows is
    stable; ``insufficient-data`` when no region has a fresh report with enough rows.
    """
    per_region: dict[str, dict[str, Any]] = {}
    for target in settings.regions:
        report = reports.get(target.region)
        if report is None:
            per_region[target.region] = {"status": "missing"}
            continue
        age = round(_age_minutes(report, now), 1)
        row: dict[str, Any] = {"time": report["time"], "ageMinutes": age, "rows": report.get("rows")}
        psi = report.get("psi") or {}
        if age > settings.report_max_age_minutes:
            row["status"] = "stale"
        elif not psi:
            row["status"] = "insufficient-data"
        else:
            drifted = sorted(f for f, v in psi.items() if v >= settings.drift_threshold)
            row.update(status="drift" if drifted else "stable", psi=psi, driftedFeatures=drifted)
        per_region[target.region] = row
    statuses = [r["status"] for r in per_region.values()]
    status = "drift" if "drift" in statuses else "stable" if "stable" in statuses else "insufficient-data"
    psi_max: dict[str, float] = {}
    for row in per_region.values():
        for feature, value in (row.get("psi") or {}).items():
            psi_max[feature] = max(psi_max.get(feature, 0.0), value)
    return {
        "status": status,
        "regions": per_region,
        "stale": sorted(k for k, r in per_region.items() if r["status"] == "stale"),
        "missing": sorted(k for k, r in per_region.items() if r["status"] == "missing"),
        "driftedRegions": sorted(k for k, r in per_region.items() if r["status"] == "drift"),
        "psi": dict(sorted(psi_max.items())),
    }


def write_instruction(settings: Settings, region: str, *, cycle: str, percent: int, now: datetime) -> str:
    """The cycle's rollout instruction for ``region`` (written once; an existing one is kept)."""
    target = next(t for t in settings.regions if t.region == region)
    uri = rollout_uri(settings.decisions_uri, region, cycle)
    if not storage.exists(uri):
        candidate = target.candidate_uri.replace(settings.placeholder, cycle)
        _write_json(
            uri,
            {"cycle": cycle, "region": region, "candidate": candidate, "percent": percent, "issued": now.isoformat()},
        )
    return uri


def outcomes(settings: Settings, cycle: str) -> dict[str, dict[str, Any] | None]:
    """Every region's written outcome of ``cycle`` (None: none yet)."""
    return {t.region: _read_json(canary_state_uri(settings.decisions_uri, t.region, cycle)) for t in settings.regions}


def instructed(settings: Settings, cycle: str) -> list[str]:
    """Regions holding an instruction of ``cycle``."""
    return [t.region for t in settings.regions if storage.exists(rollout_uri(settings.decisions_uri, t.region, cycle))]
