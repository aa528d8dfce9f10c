"""Availability guardrails for prod inference endpoints: at least two replicas, a disruption budget,
and readiness and liveness probes.

An inference endpoint is a KServe InferenceService, or a Deployment/StatefulSet whose labels say so
(`aicloud.dev/role: inference`, or `app.kubernetes.io/component` or `app.kubernetes.io/name` one of
inference, predictor, model-server, serving) or whose pods can only land on inference node pools.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pulumi_policy import ReportViolation

from policies.common import (
    ROLE_LABEL,
    UNKNOWN,
    PodTemplate,
    Res,
    Rule,
    StackView,
    as_dict,
    as_list,
    containers,
    dig,
    environment,
    pod_templates,
    pools,
    schedulable_on,
    selects_nodes,
)
from policies.data_safety import ENVIRONMENT_CONFIG
from policies.security import k8s_name

ENDPOINT_KINDS = ("Deployment", "StatefulSet", "InferenceService")
INFERENCE_COMPONENTS = {"inference", "predictor", "model-server", "serving"}
"""`app.kubernetes.io/component` or `app.kubernetes.io/name` values that mark an inference server."""
SCALERS = (
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
    "kubernetes:autoscaling/v2beta2:HorizontalPodAutoscaler",
    "kubernetes:autoscaling/v1:HorizontalPodAutoscaler",
    "kubernetes:keda.sh/v1alpha1:ScaledObject",
)
DISRUPTION_BUDGETS = ("kubernetes:policy/v1:PodDisruptionBudget", "kubernetes:policy/v1beta1:PodDisruptionBudget")
MIN_REPLICAS = 2


def _namespace(res: Res) -> Any:
    ns = dig(res.props, "metadata.namespace")
    return UNKNOWN if ns is UNKNOWN else ns or "default"


def _same_namespace(a: Res, b: Res) -> bool:
    na, nb = _namespace(a), _namespace(b)
    return UNKNOWN in (na, nb) or na == nb


def endpoints(view: StackView) -> Iterator[tuple[Res, PodTemplate]]:
    """Every inference endpoint of the stack with its (first) pod template."""
    every = pools(view)
    for res in view.resources:
        if res.kind not in ENDPOINT_KINDS or not res.type.startswith("kubernetes:"):
            continue
        templates = pod_templates(res)
        if not templates:
            continue
        tpl = templates[0]
        labels = {**as_dict(dig(res.props, "metadata.labels")), **tpl.labels}
        if res.kind == "InferenceService" or labels.get(ROLE_LABEL) == "inference":
            yield res, tpl
        elif INFERENCE_COMPONENTS & {labels.get("app.kubernetes.io/component"), labels.get("app.kubernetes.io/name")}:
            yield res, tpl
        elif selects_nodes(tpl.spec):
            landing = [p for p in every if view.same_scope(res, p.res) and schedulable_on(tpl.spec, p.labels)]
            if landing and all(p.labels.get(ROLE_LABEL) == "inference" for p in landing):
                yield res, tpl


def _prod(view: StackView, config: dict[str, Any]) -> bool:
    return bool(view.resources) and environment(config, view.resources[0].urn) == "prod"


def _scalers(view: StackView, res: Res) -> list[Res]:
    name = k8s_name(res)
    found = []
    for scaler in view.of_type(*SCALERS):
        if not view.same_scope(scaler, res) or not _same_namespace(scaler, res):
            continue
        ref = dig(scaler.props, "spec.scaleTargetRef")
        targets = dig(ref, "name") == name and (dig(ref, "kind") or "Deployment") == res.kind
        if targets or res in scaler.dependencies:
            found.append(scaler)
    return found


def min_replicas(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    if not _prod(view, config):
        return
    for res, _ in endpoints(view):
        what = f"Inference endpoint '{k8s_name(res)}'"
        if res.kind == "InferenceService":
            floor = dig(res.props, "spec.predictor.minReplicas", 1)
            if isinstance(floor, int) and floor < MIN_REPLICAS:
                report(
                    f"{what} can scale down to {floor} replica(s) in prod (spec.predictor.minReplicas). Set "
                    f"minReplicas to at least {MIN_REPLICAS} so a pod restart or a node drain does not take the "
                    "region's endpoint down.",
                    res.urn,
                )
            continue
        scalers = _scalers(view, res)
        for scaler in scalers:
            keda = scaler.kind == "ScaledObject"
            field = "minReplicaCount" if keda else "minReplicas"
            floor = dig(scaler.props, f"spec.{field}", 0 if keda else 1)
            if isinstance(floor, int) and floor < MIN_REPLICAS:
                report(
                    f"{what} can scale down to {floor} replica(s) in prod ({scaler.kind} '{k8s_name(scaler)}' "
                    f"{field}). Set {field} to at least {MIN_REPLICAS} so a pod restart or a node drain does not "
                    "take the region's endpoint down.",
                    res.urn,
                )
        if not scalers:
            replicas = dig(res.props, "spec.replicas", 1)
            if isinstance(replicas, int) and replicas < MIN_REPLICAS:
                report(
                    f"{what} runs {replicas} replica(s) in prod and has no autoscaler. Set spec.replicas (or an "
                    f"autoscaler's minReplicas) to at least {MIN_REPLICAS} so a pod restart or a node drain does "
                    "not take the region's endpoint down.",
                    res.urn,
                )


def _selector_matches(selector: Any, labels: dict[str, Any]) -> bool:
    if selector is UNKNOWN:
        return True
    match = as_dict(dig(selector, "matchLabels"))
    if any(v is not UNKNOWN and labels.get(k) != v for k, v in match.items()):
        return False
    for expr in as_list(dig(selector, "matchExpressions")):
        key, op, values = dig(expr, "key"), dig(expr, "operator"), as_list(dig(expr, "values"))
        ok = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op, True)
        if not ok:
            return False
    return bool(match) or bool(as_list(dig(selector, "matchExpressions")))


def disruption_budget(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    if not _prod(view, config):
        return
    budgets = view.of_type(*DISRUPTION_BUDGETS)
    for res, tpl in endpoints(view):
        if res.kind == "InferenceService":
            continue  # KServe owns the pods it creates
        covered = any(
            view.same_scope(b, res)
            and _same_namespace(b, res)
            and _selector_matches(dig(b.props, "spec.selector"), tpl.labels)
            for b in budgets
        )
        if not covered:
            report(
                f"Inference endpoint '{k8s_name(res)}' has no PodDisruptionBudget in prod, so a node drain or a "
                "cluster upgrade can evict all its pods at once. Add a PodDisruptionBudget whose selector matches "
                "its pod labels (maxUnavailable: 1).",
                res.urn,
            )


def probes(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    if not _prod(view, config):
        return
    for res, tpl in endpoints(view):
        for c in containers(tpl.spec, init=False):
            missing = [p for p in ("readinessProbe", "livenessProbe") if c.get(p) is None]
            if not missing:
                continue
            effects = {
                "readinessProbe": "traffic reaches it before the model is loaded",
                "livenessProbe": "a hung server is never restarted",
            }
            report(
                f"Container '{c.get('name', '?')}' of inference endpoint '{k8s_name(res)}' has no "
                f"{' or '.join(missing)} in prod, so {' and '.join(effects[m] for m in missing)}. Add "
                f"{' and '.join(missing)} against the model server's health endpoints (/v2/health/ready, "
                "/v2/health/live).",
                res.urn,
            )


RULES = [
    Rule(
        "aicloud-inference-min-replicas",
        "In prod, inference endpoints keep at least two replicas (Deployment replicas or autoscaler floor).",
        "availability",
        min_replicas,
        stack=True,
        config=ENVIRONMENT_CONFIG,
    ),
    Rule(
        "aicloud-inference-disruption-budget",
        "In prod, every inference endpoint has a PodDisruptionBudget.",
        "availability",
        disruption_budget,
        stack=True,
        config=ENVIRONMENT_CONFIG,
    ),
    Rule(
        "aicloud-inference-probes",
        "In prod, inference endpoint containers have readiness and liveness probes.",
        "availability",
        probes,
        stack=True,
        config=ENVIRONMENT_CONFIG,
    ),
]
