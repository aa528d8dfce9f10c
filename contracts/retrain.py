"""The contract between the RetrainingPipeline component and the retraining trigger: the settings
JSON the component renders into a ConfigMap and ``python -m workloads.retrain`` reads, and the
placeholders it fills in at run time. Plain Python (no numpy or torch), so the component can build
and check the same object the trigger will load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DEFAULT_ALPHA",
    "MODEL_URI",
    "PERCENT",
    "STABLE_PERCENT",
    "CanaryTarget",
    "ObjectRef",
    "Settings",
    "render_canary_patch",
    "render_job",
    "run_name",
]

DEFAULT_ALPHA = 0.01
"""Family-wise false-alarm probability of one drift check over all features."""

MODEL_URI = "${MODEL_URI}"
"""Placeholder in the canary patches for the candidate's artifact URI."""
PERCENT = "${PERCENT}"
"""Placeholder (a whole string value) in the canary patches for the canary's traffic percent."""
STABLE_PERCENT = "${STABLE_PERCENT}"
"""Placeholder (a whole string value) for the stable track's percent (100 - the canary's)."""


@dataclass(kw_only=True, slots=True)
class ObjectRef:
    """A namespaced Kubernetes object."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ObjectRef:
        return cls(api_version=doc["apiVersion"], kind=doc["kind"], namespace=doc["namespace"], name=doc["name"])

    def to_json(self) -> dict[str, str]:
        return {"apiVersion": self.api_version, "kind": self.kind, "namespace": self.namespace, "name": self.name}


@dataclass(kw_only=True, slots=True)
class CanaryTarget:
    """How the endpoint's canary is read and set (rendered from the endpoint's own manifests)."""

    read: ObjectRef
    """The object holding the canary's traffic percent."""
    read_path: list[str | int]
    """Keys (and list indexes) to that percent; a canary runs while it is strictly between 0 and 100."""
    patches: list[tuple[ObjectRef, str, dict[str, Any]]]
    """(object, patch type ``merge`` or ``strategic``, patch with the ``${MODEL_URI}``,
    ``${PERCENT}`` and ``${STABLE_PERCENT}`` placeholders), applied in order."""

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CanaryTarget:
        return cls(
            read=ObjectRef.from_json(doc["read"]),
            read_path=list(doc["read"]["path"]),
            patches=[(ObjectRef.from_json(p), p["type"], p["patch"]) for p in doc["patches"]],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "read": {**self.read.to_json(), "path": list(self.read_path)},
            "patches": [{**ref.to_json(), "type": kind, "patch": patch} for ref, kind, patch in self.patches],
        }


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
    candidate_uri: str
    """Where a run's trainer exports its candidate, with ``placeholder`` for the run name."""
    decisions_uri: str
    """Prefix of the append-only decision log."""
    jobs: list[dict[str, Any]]
    """Manifests to create for a run, in order (the last is the training job that is followed),
    with ``placeholder`` wherever the run name goes."""
    placeholder: str
    run_prefix: str
    """Run names are ``<run_prefix>-<UTC yymmddHHMM>``."""
    canary: CanaryTarget | None
    """None: the endpoint's release strategy has no canary; passing candidates wait for a person."""
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
        if not self.jobs or self.placeholder not in json.dumps(self.jobs[-1]):
            problems.append(f"jobs: the placeholder {self.placeholder!r} does not occur in the training job")
        if self.placeholder not in self.candidate_uri:
            problems.append(f"candidateUri: the placeholder {self.placeholder!r} does not occur in it")
        if self.cooldown_minutes < 0:
            problems.append(f"cooldownMinutes: got {self.cooldown_minutes!r}; allowed: an integer >= 0")
        if len(self.run_prefix) > 29:
            problems.append(f"runPrefix: {self.run_prefix!r} is longer than 29 characters")
        if problems:
            raise ValueError("retraining settings: " + "; ".join(problems))

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Settings:
        """Settings from the rendered JSON (camelCase keys, as in the ConfigMap)."""
        return cls(
            model=doc["model"],
            prometheus_url=doc["prometheusUrl"],
            drift_query=doc["driftQuery"],
            drift_threshold=float(doc["driftThreshold"]),
            min_samples=int(doc["minSamples"]),
            canary_percent=int(doc["canaryPercent"]),
            current_model=doc["currentModel"],
            candidate_uri=doc["candidateUri"],
            decisions_uri=doc["decisionsUri"],
            jobs=list(doc["jobs"]),
            placeholder=doc["placeholder"],
            run_prefix=doc["runPrefix"],
            canary=CanaryTarget.from_json(doc["canary"]) if doc.get("canary") else None,
            fresh_data=doc.get("freshData"),
            alpha=float(doc.get("alpha", DEFAULT_ALPHA)),
            min_eval_rows=int(doc.get("minEvalRows", 100)),
            cooldown_minutes=int(doc.get("cooldownMinutes", 24 * 60)),
        )

    def to_json(self) -> dict[str, Any]:
        """The settings as the ConfigMap holds them (the inverse of ``from_json``)."""
        doc: dict[str, Any] = {
            "model": self.model,
            "prometheusUrl": self.prometheus_url,
            "driftQuery": self.drift_query,
            "driftThreshold": self.drift_threshold,
            "minSamples": self.min_samples,
            "canaryPercent": self.canary_percent,
            "currentModel": self.current_model,
            "candidateUri": self.candidate_uri,
            "decisionsUri": self.decisions_uri,
            "jobs": self.jobs,
            "placeholder": self.placeholder,
            "runPrefix": self.run_prefix,
            "canary": self.canary.to_json() if self.canary is not None else None,
            "alpha": self.alpha,
            "minEvalRows": self.min_eval_rows,
            "cooldownMinutes": self.cooldown_minutes,
        }
        if self.fresh_data is not None:
            doc["freshData"] = self.fresh_data
        return doc


def run_name(prefix: str, now: datetime) -> str:
    """A run name that is a DNS label of at most 40 characters."""
    return f"{prefix}-{now.astimezone(UTC).strftime('%y%m%d%H%M')}"


def render_job(template: dict[str, Any], placeholder: str, name: str) -> dict[str, Any]:
    """The template with the run name in place of every occurrence of the placeholder."""
    return json.loads(json.dumps(template).replace(placeholder, name))


def render_canary_patch(patch: Any, *, model_uri: str, percent: int) -> Any:
    """A canary patch with the candidate's URI and the traffic percents filled in."""
    if isinstance(patch, dict):
        return {k: render_canary_patch(v, model_uri=model_uri, percent=percent) for k, v in patch.items()}
    if isinstance(patch, list):
        return [render_canary_patch(v, model_uri=model_uri, percent=percent) for v in patch]
    if patch == PERCENT:
        return percent
    if patch == STABLE_PERCENT:
        return 100 - percent
    if isinstance(patch, str):
        return patch.replace(MODEL_URI, model_uri)
    return patch
