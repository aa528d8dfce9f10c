"""One step of the drift-to-retraining loop, run by the CronJob on every tick.

The loop is a small state machine whose state is the decision log itself, so a tick is
idempotent, survives restarts and leaves an audit trail (every tick appends one decision):

1. The newest decision launched a training job (``training-launched``/``training-running``):
   read the job. Still running -> ``training-running``. Failed or gone -> ``training-failed``.
   Succeeded -> score the candidate and the current model on the candidate's held-out rows
   (fresh data neither was trained on); ``gate-rejected`` when the candidate is worse, else roll
   it out as a canary through the endpoint's release settings (``canary-started``), unless a
   canary is already running there or the endpoint is missing (``canary-held``).
2. The newest decision started a canary (``canary-started``/``canary-pending``) and the stack
   still serves the same current model -> ``canary-pending``: the canary is promoted or rolled
   back by the endpoint's release strategy, and the drift the old model sees must not launch a
   second run meanwhile.
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

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from workloads import storage
from workloads.retrain.clients import JobState, job_state
from workloads.retrain.decisions import DecisionLog
from workloads.retrain.detect import DEFAULT_ALPHA, detect
from workloads.retrain.gate import decide_rollout, evaluate_gate

__all__ = [
    "MODEL_URI",
    "PERCENT",
    "CanaryTarget",
    "Settings",
    "render_canary_patch",
    "render_job",
    "run_name",
    "run_once",
]

MODEL_URI = "${MODEL_URI}"
"""Placeholder in the canary patch for the candidate's artifact URI."""
PERCENT = "${PERCENT}"
"""Placeholder (a whole string value) in the canary patch for the canary's traffic percent."""


@dataclass(kw_only=True, slots=True)
class CanaryTarget:
    """The endpoint object whose canary settings the trigger may patch, and how."""

    api_version: str
    kind: str
    namespace: str
    name: str
    patch: dict[str, Any]
    """JSON merge patch with the ``${MODEL_URI}`` and ``${PERCENT}`` placeholders."""
    active_path: list[str]
    """Keys leading to the canary's traffic percent in the object; a value > 0 means a canary runs."""


@dataclass(kw_only=True, slots=True)
class Settings:
    """What one trigger watches and may do; rendered by the RetrainingPipeline component."""

    model: str
    """Served model name (the ``model`` label of the server's metrics)."""
    prometheus_url: str
    drift_query: str
    """PromQL giving the PSI per ``feature`` of replicas whose drift window has enough rows."""
    drift_threshold: float
    """PSI at or above which a feature has drifted (also the effect floor of the array check)."""
    min_samples: int
    """Rows needed behind the server's PSI and in the fresh-data sample."""
    canary_percent: int
    current_model: str
    """URI of the artifact the endpoint serves now."""
    runs_uri: str
    """Prefix of retraining runs; run ``r`` exports its candidate to ``<runs_uri>/<r>/model``."""
    decisions_uri: str
    """Prefix of the append-only decision log."""
    job: dict[str, Any]
    """The training job manifest, with ``placeholder`` wherever the run name goes."""
    placeholder: str
    run_prefix: str
    """Run names are ``<run_prefix>-<UTC yymmddHHMM>``."""
    canary: CanaryTarget
    fresh_data: str | None = None
    """Shards of fresh lakehouse data to confirm drift on (None: Prometheus alone decides)."""
    alpha: float = DEFAULT_ALPHA
    min_eval_rows: int = 100
    """Held-out rows the gate needs to compare the models at all."""
    cooldown_minutes: int = 24 * 60
    """Wait after a cycle that ended without a canary before launching another run."""

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.drift_threshold < 10:
            problems.append(f"driftThreshold: got {self.drift_threshold!r}; allowed: a PSI in (0, 10)")
        if self.min_samples < 1:
            problems.append(f"minSamples: got {self.min_samples!r}; allowed: an integer >= 1")
        if not 1 <= self.canary_percent <= 50:
            problems.append(f"canaryPercent: got {self.canary_percent!r}; allowed: 1..50")
        if self.placeholder not in json.dumps(self.job):
            problems.append(f"job: the placeholder {self.placeholder!r} does not occur in the job template")
        if self.cooldown_minutes < 0:
            problems.append(f"cooldownMinutes: got {self.cooldown_minutes!r}; allowed: an integer >= 0")
        if len(self.run_prefix) > 29:
            problems.append(f"runPrefix: {self.run_prefix!r} is longer than 29 characters")
        if problems:
            raise ValueError("retraining settings: " + "; ".join(problems))

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Settings:
        """Settings from the rendered JSON (camelCase keys, as in the ConfigMap)."""
        canary = doc["canary"]
        return cls(
            model=doc["model"],
            prometheus_url=doc["prometheusUrl"],
            drift_query=doc["driftQuery"],
            drift_threshold=float(doc["driftThreshold"]),
            min_samples=int(doc["minSamples"]),
            canary_percent=int(doc["canaryPercent"]),
            current_model=doc["currentModel"],
            runs_uri=doc["runsUri"],
            decisions_uri=doc["decisionsUri"],
            job=doc["job"],
            placeholder=doc["placeholder"],
            run_prefix=doc["runPrefix"],
            canary=CanaryTarget(
                api_version=canary["apiVersion"],
                kind=canary["kind"],
                namespace=canary["namespace"],
                name=canary["name"],
                patch=canary["patch"],
                active_path=list(canary["activePath"]),
            ),
            fresh_data=doc.get("freshData"),
            alpha=float(doc.get("alpha", DEFAULT_ALPHA)),
            min_eval_rows=int(doc.get("minEvalRows", 100)),
            cooldown_minutes=int(doc.get("cooldownMinutes", 24 * 60)),
        )


class Metrics(Protocol):
    def vector(self, query: str, label: str) -> dict[str, float]: ...


class Cluster(Protocol):
    def create(self, manifest: dict[str, Any]) -> dict[str, Any]: ...
    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def merge_patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None: ...


def run_name(prefix: str, now: datetime) -> str:
    """A run name that is a DNS label of at most 40 characters."""
    return f"{prefix}-{now.astimezone(UTC).strftime('%y%m%d%H%M')}"


def render_job(template: dict[str, Any], placeholder: str, name: str) -> dict[str, Any]:
    """The template with the run name in place of every occurrence of the placeholder."""
    return json.loads(json.dumps(template).replace(placeholder, name))


def render_canary_patch(patch: Any, *, model_uri: str, percent: int) -> Any:
    """The canary patch with the candidate's URI and the traffic percent filled in."""
    if isinstance(patch, dict):
        return {k: render_canary_patch(v, model_uri=model_uri, percent=percent) for k, v in patch.items()}
    if isinstance(patch, list):
        return [render_canary_patch(v, model_uri=model_uri, percent=percent) for v in patch]
    if patch == PERCENT:
        return percent
    if isinstance(patch, str):
        return patch.replace(MODEL_URI, model_uri)
    return patch


def _dig(obj: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _candidate_uri(settings: Settings, run: str) -> str:
    return storage.join(settings.runs_uri, run, "model")


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
    if kind in ("canary-started", "canary-pending") and last.get("currentModel") == settings.current_model:
        _, rec = log.append("canary-pending", **base, cycle=last.get("cycle"), candidate=last.get("candidate"))
        return rec
    until = last.get("cooldownUntil")
    if kind in _ENDS_WITHOUT_CANARY and until and now < datetime.fromisoformat(until):
        _, rec = log.append("cooldown", **base, cycle=last.get("cycle"), cooldownUntil=until)
        return rec
    return _look_for_drift(settings, metrics=metrics, cluster=cluster, log=log, base=base, now=now)


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
    manifest = render_job(settings.job, settings.placeholder, run)
    cluster.create(manifest)
    _, rec = log.append(
        "training-launched",
        **base,
        cycle=run,
        job={"apiVersion": manifest["apiVersion"], "kind": manifest["kind"], **_where(manifest)},
        candidate=_candidate_uri(settings, run),
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
    from workloads.artifact import load_artifact

    current = load_artifact(settings.current_model)
    candidate = load_artifact(last["candidate"])
    gate = evaluate_gate(
        current.model, candidate.model, candidate.heldout_x, candidate.heldout_y, min_rows=settings.min_eval_rows
    )
    target = settings.canary
    endpoint = cluster.get(target.api_version, target.kind, target.namespace, target.name)
    active = endpoint is None or bool(_dig(endpoint, target.active_path) or 0)
    rollout = decide_rollout(gate, canary_percent=settings.canary_percent, canary_active=active)
    details = {**base, **cycle, "gate": gate.as_dict(), "rollout": rollout.as_dict()}
    if endpoint is None and rollout.action == "hold":
        details["rollout"]["reason"] = f"endpoint {target.kind} {target.namespace}/{target.name} not found"
    if rollout.action == "canary":
        patch = render_canary_patch(target.patch, model_uri=last["candidate"], percent=rollout.percent)
        cluster.merge_patch(target.api_version, target.kind, target.namespace, target.name, patch)
        _, rec = log.append("canary-started", **details, patch=patch)
        return rec
    _, rec = log.append("gate-rejected" if rollout.action == "reject" else "canary-held", **details, **cooldown)
    return rec
