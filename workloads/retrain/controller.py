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
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from contracts.retrain import Settings, render_canary_patch, render_job, run_name
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


def _dig(obj: Any, path: list[str | int]) -> Any:
    for key in path:
        if isinstance(key, int) and isinstance(obj, list) and -len(obj) <= key < len(obj):
            obj = obj[key]
        elif isinstance(key, str) and isinstance(obj, dict):
            obj = obj.get(key)
        else:
            return None
    return obj


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
_ENDS_WITHOUT_CANARY = ("gate-rejected", "training-failed", "canary-held", "cooldown")


def _look_for_drift(
    settings: Settings, *, metrics: Metrics, cluster: Cluster, log: DecisionLog, base: dict[str, Any], now: datetime
) -> dict[str, Any]:
    psi = metrics.vector(settings.drift_query, "feature")
    served = {"psi": {k: round(v, 6) for k, v in sorted(psi.items())}, "threshold": settings.drift_threshold}
    if not psi:
        _, rec = log.append(
            "insufficient-data", **base, source="prometheus", minSamples=settings.min_samples, served=served
        )
        return rec
    drifted = sorted(f for f, v in psi.items() if v >= settings.drift_threshold)
    if not drifted:
        _, rec = log.append("no-drift", **base, served=served)
        return rec
    served["driftedFeatures"] = drifted
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
    target = settings.canary
    endpoint = None
    if target is not None:
        read = target.read
        endpoint = cluster.get(read.api_version, read.kind, read.namespace, read.name)
    percent = _dig(endpoint, target.read_path) if target is not None else None
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
