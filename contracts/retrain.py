"""The contract between the RetrainingPipeline component and the retraining trigger: the settings
JSON the component renders into a ConfigMap and ``python -m workloads.retrain`` reads, and the
placeholders it fills in at run time. Plain Python (no numpy or torch), so the component can build
and check the same object the trigger will load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "AGENT_STATES",
    "DEFAULT_ALPHA",
    "MODEL_URI",
    "PERCENT",
    "STABLE_PERCENT",
    "AgentSettings",
    "CanaryTarget",
    "ObjectRef",
    "RegionTarget",
    "Settings",
    "canary_state_uri",
    "drift_reports_prefix",
    "region_prefix",
    "render_canary_patch",
    "read_path",
    "render_job",
    "rollout_prefix",
    "rollout_uri",
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


# ----------------------------------------------------------------------------- regional layout
# Cluster APIs and Prometheus are private to each region, so the coordinator (the trigger in the
# cloud's primary region) and the agents (one per serving region) never call each other: they
# share state through the lakehouse, under the decision log's prefix:
#
#   <decisions>/<stamp>-<kind>-<token>.json                    the coordinator's decisions
#   <decisions>/regions/<region>/drift/<YYYYMMDD>/<stamp>.json   the agent's drift reports
#   <decisions>/regions/<region>/rollout/<cycle>.json           the coordinator's instruction
#   <decisions>/regions/<region>/canary/<cycle>.json            the agent's outcome for it
#   <decisions>/regions/<region>/canary/<cycle>.applying.json   written before its patches
#
# Each agent's identity may list, read and create objects under `<decisions>/regions/<region>/`
# only (never delete or overwrite), and read candidates in its region's copy of the models zone
# (to see that one has fully arrived before its canary loads it).

REGIONS_DIR = "regions"
AGENT_STATES = ("applied", "held", "endpoint-missing", "no-canary", "not-replicated")
"""What an agent records for an instruction: the canary runs the candidate (`applied`); another
canary already runs there (`held`); the endpoint object is not in the cluster
(`endpoint-missing`); the region's endpoint has no weighted canary (`no-canary`, a guard: the
coordinator instructs canary regions only); the candidate has not reached the region's copy of the
models zone yet (`not-replicated`: only reported, retried on the next tick, never final)."""


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def region_prefix(decisions_uri: str, region: str) -> str:
    """The part of the lake one region's agent may read and write."""
    return _join(decisions_uri, REGIONS_DIR, region) + "/"


def drift_reports_prefix(decisions_uri: str, region: str, day: datetime) -> str:
    """One UTC day's drift reports of a region (a day per prefix keeps every listing short)."""
    return _join(region_prefix(decisions_uri, region), "drift", day.astimezone(UTC).strftime("%Y%m%d")) + "/"


def rollout_prefix(decisions_uri: str, region: str) -> str:
    return _join(region_prefix(decisions_uri, region), "rollout") + "/"


def rollout_uri(decisions_uri: str, region: str, cycle: str) -> str:
    """The coordinator's instruction of one cycle to one region (written once, never rewritten)."""
    return _join(region_prefix(decisions_uri, region), "rollout", f"{cycle}.json")


def canary_state_uri(decisions_uri: str, region: str, cycle: str, *, applying: bool = False) -> str:
    """The agent's outcome of one cycle's instruction (``applying``: its marker before patching)."""
    name = f"{cycle}.applying.json" if applying else f"{cycle}.json"
    return _join(region_prefix(decisions_uri, region), "canary", name)


@dataclass(kw_only=True, slots=True)
class RegionTarget:
    """One serving region the coordinator covers (rendered from the stack's serving regions)."""

    region: str
    candidate_uri: str
    """Where that region's servers find a run's candidate (the region's copy of the models zone,
    a replica or the primary lakehouse), with the settings' placeholder for the run name."""
    canary: bool
    """Whether the region's endpoint has a weighted canary (else ``candidate-ready`` for a person)."""

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RegionTarget:
        return cls(region=doc["region"], candidate_uri=doc["candidateUri"], canary=bool(doc["canary"]))

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "candidateUri": self.candidate_uri, "canary": self.canary}


@dataclass(kw_only=True, slots=True)
class AgentSettings:
    """What one regional agent reads and may do; rendered by the RetrainingAgent component."""

    model: str
    region: str
    prometheus_url: str
    """The region's own Prometheus (never another region's)."""
    drift_query: str
    samples_query: str
    """PromQL giving the rows behind the drift windows that count (replicas with enough rows)."""
    decisions_uri: str
    """The coordinator's decision log (the agent writes under ``regions/<region>/`` only)."""
    canary: CanaryTarget | None
    """The region's endpoint objects carrying the canary (None: no weighted canary there)."""

    def __post_init__(self) -> None:
        if not self.region or "/" in self.region:
            raise ValueError(f"retraining agent settings: region: got {self.region!r}; allowed: a region key")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AgentSettings:
        return cls(
            model=doc["model"],
            region=doc["region"],
            prometheus_url=doc["prometheusUrl"],
            drift_query=doc["driftQuery"],
            samples_query=doc["samplesQuery"],
            decisions_uri=doc["decisionsUri"],
            canary=CanaryTarget.from_json(doc["canary"]) if doc.get("canary") else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "role": "agent",
            "model": self.model,
            "region": self.region,
            "prometheusUrl": self.prometheus_url,
            "driftQuery": self.drift_query,
            "samplesQuery": self.samples_query,
            "decisionsUri": self.decisions_uri,
            "canary": self.canary.to_json() if self.canary is not None else None,
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
    regions: list[RegionTarget] = field(default_factory=list)
    """Serving regions whose agents report drift and apply rollouts, the first one first (staged);
    empty: the single-region loop (drift from ``prometheus_url``, canary patched here)."""
    report_max_age_minutes: int = 90
    """Drift reports older than this are stale: ignored, and named in the decision."""
    stage_minutes: int = 60
    """How long the first region's canary must hold before the other regions get the candidate."""

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
        if not 1 <= self.report_max_age_minutes <= 24 * 60:
            problems.append(f"reportMaxAgeMinutes: got {self.report_max_age_minutes!r}; allowed: 1..1440")
        if self.stage_minutes < 0:
            problems.append(f"stageMinutes: got {self.stage_minutes!r}; allowed: an integer >= 0")
        names = [r.region for r in self.regions]
        if len(set(names)) != len(names):
            problems.append(f"regions: {names} names a region twice")
        for r in self.regions:
            if self.placeholder not in r.candidate_uri:
                problems.append(f"regions.{r.region}.candidateUri: the placeholder {self.placeholder!r} does not occur")
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
            regions=[RegionTarget.from_json(r) for r in doc.get("regions") or []],
            report_max_age_minutes=int(doc.get("reportMaxAgeMinutes", 90)),
            stage_minutes=int(doc.get("stageMinutes", 60)),
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
        if self.regions:
            doc["regions"] = [r.to_json() for r in self.regions]
            doc["reportMaxAgeMinutes"] = self.report_max_age_minutes
            doc["stageMinutes"] = self.stage_minutes
        return doc


def read_path(obj: Any, path: list[str | int]) -> Any:
    """The value at `path` (keys and list indexes, as `CanaryTarget.read_path`) in `obj`; None
    where the path leaves the object."""
    for key in path:
        if isinstance(key, int) and isinstance(obj, list) and -len(obj) <= key < len(obj):
            obj = obj[key]
        elif isinstance(key, str) and isinstance(obj, dict):
            obj = obj.get(key)
        else:
            return None
    return obj


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
