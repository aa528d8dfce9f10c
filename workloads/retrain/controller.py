"""One step of the drift-to-retraining loop, run by the CronJob on every tick.

The loop is a small state machine whose state is the decision log itself, so a tick is
idempotent, survives restarts and leaves an audit trail (every tick appends one decision):

1. The newest decision launched a training job (``training-launched``/``training-running``):
   read the job. Still running -> ``training-running``. Failed or gone -> ``training-failed``.
   Succeeded -> score the candidate and the current model on the candidate's held-out rows
   (fresh data neither was trained on); ``gate-rejected`` when the candidate is worse, else roll
   it out as a canary through the endpoint's release settings (``canary-started``), unless a
   canary is already running there or the endpoint is missing (``canary-held``). An endpoint
   whose release strategy has no canary gets nothing patched: ``candidate-ready`` for a person.
2. The newest decision put a candidate out (``canary-started``, ``candidate-ready``,
   ``canary-pending``) and the stack still serves the same current model -> ``canary-pending``:
   the canary is promoted or rolled back through the endpoint's release strategy, and the drift
   the old model sees must not launch a second run meanwhile.
3. The newest decision ended a cycle without a canary (``gate-rejected``, ``training-failed``,
   ``canary-held``) less than ``cooldownMinutes`` ago -> ``cooldown`` (no GPU hours burnt on a
   retry every tick).
4. Otherwise look for drift: the per-feature PSI the model server exports, read from Prometheus
   (only replicas whose drift window holds at least ``minSamples`` rows count). No replica with
   enough rows -> ``insufficient-data``; every feature below the threshold -> ``no-drift``. When
   fresh lakehouse data is configured the drift must also show there, on real arrays
   (:func:`workloads.retrain.detect.detect`), else ``drift-unconfirmed``: retraining on data that
   looks like the old data would teach the model nothing. Drift -> create the training job from
   the rendered template (a new run name replaces the template's placeholder everywhere: job
   name, run directory, model version) -> ``training-launched``.

Across serving regions (``settings.regions``; :mod:`workloads.retrain.regional`): step 4 reads the
regions' drift reports from the lake instead of a Prometheus (drift if any region with enough rows
drifted; stale and missing reports are named), and a passing candidate is not patched here: the
first canary region gets a rollout instruction (``canary-rolling-out``), the others once its canary
has held for ``stageMinutes``; each region's agent applies its own canary and writes back
``applied`` / ``held`` / ``endpoint-missing``. Every region answered -> ``canary-started`` (some
applied) or ``canary-held`` (none did); a first canary rolled back before the stage ended ->
``rollout-stopped``. Regions without a weighted canary are recorded ``candidate-ready``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from contracts.retrain import Settings, read_path, render_canary_patch, render_job, rollout_uri, run_name
from workloads import storage
from workloads.retrain import regional
from workloads.retrain.clients import JobState, job_state
from workloads.retrain.decisions import DecisionLog
from workloads.retrain.detect import detect
from workloads.retrain.gate import decide_rollout, evaluate_gate

__all__ = ["Cluster", "Metrics", "run_once"]


class Metrics(Protocol):
    def vector(self, query: str, label: str) -> dict[str, float]: ...


class Cluster(Protocol):
    def create(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any], *, type: str = "merge"
    ) -> None: ...


def run_once(
    settings: Settings,
    *,
    metrics: Metrics,
    cluster: Cluster,
    log: DecisionLog | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One tick of the loop; returns the decision it appended to the log."""
    log = log or DecisionLog(settings.decisions_uri)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    last = log.latest() or {}
    kind = last.get("kind")
    base = {"model": settings.model, "currentModel": settings.current_model}
    if kind in ("training-launched", "training-running"):
        return _follow_training(settings, last, cluster=cluster, log=log, base=base, now=now)
    if kind == "canary-rolling-out":
        return _follow_rollout(settings, last, log=log, base=base, now=now)
    if kind in _AWAITS_PROMOTION and last.get("currentModel") == settings.current_model:
        _, rec = log.append("canary-pending", **base, cycle=last.get("cycle"), candidate=last.get("candidate"))
        return rec
    until = last.get("cooldownUntil")
    if kind in _ENDS_WITHOUT_CANARY and until and now < datetime.fromisoformat(until):
        _, rec = log.append("cooldown", **base, cycle=last.get("cycle"), cooldownUntil=until)
        return rec
    return _look_for_drift(settings, metrics=metrics, cluster=cluster, log=log, base=base, now=now)


_AWAITS_PROMOTION = ("canary-started", "candidate-ready", "canary-pending")
"""A candidate is out (canary) or waiting for a person; the stack's current model has not changed."""
_ENDS_WITHOUT_CANARY = ("gate-rejected", "training-failed", "canary-held", "rollout-stopped", "cooldown")


def _served_drift(
    settings: Settings, *, metrics: Metrics, log: DecisionLog, base: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What the servers see: ``(served, decision)``, where a decision ends the tick (no drift or
    not enough rows). Single region: this cluster's Prometheus. Several: the regions' reports."""
    if settings.regions:
        pooled = regional.pool_reports(settings, regional.latest_reports(settings, now), now)
        served = {"source": "regional-reports", "threshold": settings.drift_threshold, **pooled}
        if pooled["status"] == "insufficient-data":
            _, rec = log.append(
                "insufficient-data", **base, source="regional-reports", minSamples=settings.min_samples, served=served
            )
            return served, rec
        if pooled["status"] == "stable":
            _, rec = log.append("no-drift", **base, served=served)
            return served, rec
        served["driftedFeatures"] = sorted(
            {f for r in pooled["regions"].values() for f in r.get("driftedFeatures", [])}
        )
        return served, None
    psi = metrics.vector(settings.drift_query, "feature")
    served = {"psi": {k: round(v, 6) for k, v in sorted(psi.items())}, "threshold": settings.drift_threshold}
    if not psi:
        _, rec = log.append(
            "insufficient-data", **base, source="prometheus", minSamples=settings.min_samples, served=served
        )
        return served, rec
    drifted = sorted(f for f, v in psi.items() if v >= settings.drift_threshold)
    if not drifted:
        _, rec = log.append("no-drift", **base, served=served)
        return served, rec
    served["driftedFeatures"] = drifted
    return served, None


def _look_for_drift(
    settings: Settings, *, metrics: Metrics, cluster: Cluster, log: DecisionLog, base: dict[str, Any], now: datetime
) -> dict[str, Any]:
    served, ended = _served_drift(settings, metrics=metrics, log=log, base=base, now=now)
    if ended is not None:
        return ended
    confirmed: dict[str, Any] | None = None
    if settings.fresh_data is not None:
        from workloads.artifact import load_artifact
        from workloads.trainer.data import read_shards

        current = load_artifact(settings.current_model)
        kwargs = current.manifest["model"]["kwargs"]
        x, _ = read_shards(settings.fresh_data, int(kwargs["in_features"]), int(kwargs["num_classes"]))
        report = detect(
            current.reference,
            x.numpy(),
            min_psi=settings.drift_threshold,
            alpha=settings.alpha,
            min_rows=settings.min_samples,
        )
        confirmed = report.as_dict()
        if not report.drifted:
            kind = "insufficient-data" if report.status == "insufficient-data" else "drift-unconfirmed"
            _, rec = log.append(kind, **base, source="fresh-data", served=served, freshData=confirmed)
            return rec
    run = run_name(settings.run_prefix, now)
    manifests = [render_job(m, settings.placeholder, run) for m in settings.jobs]
    for manifest in manifests:
        cluster.create(manifest)
    job = manifests[-1]
    _, rec = log.append(
        "training-launched",
        **base,
        cycle=run,
        job={"apiVersion": job["apiVersion"], "kind": job["kind"], **_where(job)},
        candidate=settings.candidate_uri.replace(settings.placeholder, run),
        served=served,
        freshData=confirmed,
    )
    return rec


def _where(manifest: dict[str, Any]) -> dict[str, str]:
    return {"namespace": manifest["metadata"]["namespace"], "name": manifest["metadata"]["name"]}


def _follow_training(
    settings: Settings, last: dict[str, Any], *, cluster: Cluster, log: DecisionLog, base: dict[str, Any], now: datetime
) -> dict[str, Any]:
    job = last["job"]
    cycle = {"cycle": last["cycle"], "job": job, "candidate": last["candidate"]}
    cooldown = {"cooldownUntil": (now + timedelta(minutes=settings.cooldown_minutes)).isoformat()}
    state: JobState = job_state(cluster.get(job["apiVersion"], job["kind"], job["namespace"], job["name"]))
    if state == "running":
        _, rec = log.append("training-running", **base, **cycle)
        return rec
    if state in ("failed", "missing"):
        _, rec = log.append("training-failed", **base, **cycle, jobState=state, **cooldown)
        return rec
    from workloads.artifact import ArtifactError, load_artifact

    current = load_artifact(settings.current_model)
    try:
        candidate = load_artifact(last["candidate"])
    except ArtifactError as exc:
        # The job finished without a complete export: nothing to evaluate.
        _, rec = log.append("training-failed", **base, **cycle, jobState=state, reason=str(exc), **cooldown)
        return rec
    gate = evaluate_gate(
        current.model, candidate.model, candidate.heldout_x, candidate.heldout_y, min_rows=settings.min_eval_rows
    )
    if settings.regions:
        return _start_regional_rollout(settings, last, gate, log=log, base=base, cycle=cycle, now=now)
    target = settings.canary
    endpoint = None
    if target is not None:
        read = target.read
        endpoint = cluster.get(read.api_version, read.kind, read.namespace, read.name)
    percent = read_path(endpoint, target.read_path) if target is not None else None
    active = target is not None and (endpoint is None or (isinstance(percent, int) and 0 < percent < 100))
    rollout = decide_rollout(
        gate, canary_percent=settings.canary_percent, canary_active=active, can_canary=target is not None
    )
    details = {**base, **cycle, "gate": gate.as_dict(), "rollout": rollout.as_dict()}
    if target is not None and endpoint is None and rollout.action == "hold":
        read = target.read
        details["rollout"]["reason"] = f"endpoint {read.kind} {read.namespace}/{read.name} not found"
    if rollout.action == "canary":
        assert target is not None
        applied = []
        for ref, patch_type, template in target.patches:
            patch = render_canary_patch(template, model_uri=last["candidate"], percent=rollout.percent)
            cluster.patch(ref.api_version, ref.kind, ref.namespace, ref.name, patch, type=patch_type)
            applied.append({"kind": ref.kind, "name": ref.name, "type": patch_type, "patch": patch})
        _, rec = log.append("canary-started", **details, patches=applied)
        return rec
    if rollout.action == "manual":
        _, rec = log.append("candidate-ready", **details)
        return rec
    _, rec = log.append("gate-rejected" if rollout.action == "reject" else "canary-held", **details, **cooldown)
    return rec


# ------------------------------------------------------------------------- several regions
NO_ANSWER_MINUTES = 24 * 60
"""An instructed region whose agent wrote no outcome for this long counts as ``no-answer``."""


def _start_regional_rollout(
    settings: Settings,
    last: dict[str, Any],
    gate: Any,
    *,
    log: DecisionLog,
    base: dict[str, Any],
    cycle: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """A gated candidate across the serving regions: regions without a weighted canary get
    ``candidate-ready``; the first canary region gets its instruction (the others follow once its
    canary holds, :func:`_follow_rollout`)."""
    cooldown = {"cooldownUntil": (now + timedelta(minutes=settings.cooldown_minutes)).isoformat()}
    canary_regions = [t.region for t in settings.regions if t.canary]
    rollout = decide_rollout(
        gate, canary_percent=settings.canary_percent, canary_active=False, can_canary=bool(canary_regions)
    )
    regions = {t.region: {"state": "candidate-ready" if not t.canary else "waiting"} for t in settings.regions}
    details = {**base, **cycle, "gate": gate.as_dict(), "rollout": rollout.as_dict()}
    if rollout.action == "reject":
        _, rec = log.append("gate-rejected", **details, **cooldown)
        return rec
    if rollout.action == "manual":
        _, rec = log.append("candidate-ready", **details, regions=regions)
        return rec
    first = canary_regions[0]
    regional.write_instruction(settings, first, cycle=last["cycle"], percent=rollout.percent, now=now)
    regions[first] = {"state": "instructed", "wave": 1}
    _, rec = log.append("canary-rolling-out", **details, regions=regions)
    return rec


def _follow_rollout(
    settings: Settings, last: dict[str, Any], *, log: DecisionLog, base: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """One look at a staged rollout, from the lake alone (restart-safe).

    Canary regions are instructed one at a time until one applies the canary; once that canary has
    held for ``stage_minutes`` (its agent's fresh report, newer than the stage, still sees it
    between 0 and 100 %), the remaining regions are instructed together. A first canary that
    was rolled back meanwhile (0 %) stops the rollout (``rollout-stopped``). When every instructed
    region has an outcome: ``canary-started`` if any applied, else ``canary-held``.
    """
    name = last["cycle"]
    percent = int(last["rollout"]["percent"])
    cycle = {"cycle": name, "job": last.get("job"), "candidate": last["candidate"], "gate": last.get("gate")}
    cooldown = {"cooldownUntil": (now + timedelta(minutes=settings.cooldown_minutes)).isoformat()}
    done = regional.outcomes(settings, name)
    sent = regional.instructed(settings, name)
    reports = regional.latest_reports(settings, now)
    canary_regions = [t.region for t in settings.regions if t.canary]
    regions: dict[str, dict[str, Any]] = {}
    for t in settings.regions:
        if not t.canary:
            regions[t.region] = {"state": "candidate-ready"}
        elif done.get(t.region) is not None:
            out = done[t.region]
            regions[t.region] = {k: out[k] for k in ("state", "time", "reason", "percent") if k in out}
        elif t.region in sent:
            note = (reports.get(t.region) or {}).get("rollout") or {}
            regions[t.region] = {"state": "instructed"}
            if note.get("cycle") == name and note.get("state") == "not-replicated":
                regions[t.region]["waitingFor"] = "the candidate to reach the region's models copy"
        else:
            regions[t.region] = {"state": "waiting"}
    issued = {
        r: datetime.fromisoformat(
            json.loads(storage.read_bytes(rollout_uri(settings.decisions_uri, r, name)))["issued"]
        )
        for r in sent
    }
    for r in sent:
        if regions[r]["state"] == "instructed" and now - issued[r] >= timedelta(minutes=NO_ANSWER_MINUTES):
            regions[r] = {
                "state": "no-answer",
                "reason": f"no outcome from the agent {NO_ANSWER_MINUTES} min after the instruction",
            }
    applied = [r for r in canary_regions if regions[r]["state"] == "applied"]
    pending = [r for r in sent if regions[r]["state"] == "instructed"]
    details = {**base, **cycle, "rollout": last["rollout"]}
    if not applied:
        if pending:
            _, rec = log.append("canary-rolling-out", **details, regions=regions)
            return rec
        nxt = next((r for r in canary_regions if r not in sent), None)
        if nxt is None:
            _, rec = log.append("canary-held", **details, regions=regions, **cooldown)
            return rec
        regional.write_instruction(settings, nxt, cycle=name, percent=percent, now=now)
        regions[nxt] = {"state": "instructed", "wave": 1}
        _, rec = log.append("canary-rolling-out", **details, regions=regions)
        return rec
    first = applied[0]
    rest = [r for r in canary_regions if r not in sent]
    if rest:
        since = datetime.fromisoformat(done[first]["time"])
        report = reports.get(first)
        seen = (report or {}).get("canary") or {}
        fresh = report is not None and datetime.fromisoformat(report["time"]) >= since + timedelta(
            minutes=settings.stage_minutes
        )
        fresh = fresh and (now - datetime.fromisoformat(report["time"])) <= timedelta(
            minutes=settings.report_max_age_minutes
        )
        observed = seen.get("percent")
        if fresh and isinstance(observed, int) and observed <= 0:
            for r in rest:
                regions[r] = {"state": "not-instructed", "reason": f"the canary in {first} was rolled back"}
            _, rec = log.append("rollout-stopped", **details, regions=regions, **cooldown)
            return rec
        if not (fresh and isinstance(observed, int) and observed > 0):
            regions[first]["stage"] = (
                f"holding until {settings.stage_minutes} min after it applied, seen by a fresh report"
            )
            _, rec = log.append("canary-rolling-out", **details, regions=regions)
            return rec
        for r in rest:
            regional.write_instruction(settings, r, cycle=name, percent=percent, now=now)
            regions[r] = {"state": "instructed", "wave": 2}
        _, rec = log.append("canary-rolling-out", **details, regions=regions)
        return rec
    if pending:
        _, rec = log.append("canary-rolling-out", **details, regions=regions)
        return rec
    _, rec = log.append("canary-started", **details, regions=regions)
    return rec
