"""KServe rendering: the endpoint as one InferenceService (Serverless mode, custom predictor)."""

from __future__ import annotations

from typing import Any

from components.endpoint.manifests import _meta, _scrape_annotations, pod_spec
from components.endpoint.release import EndpointPlan
from contracts.serving import METRICS_PORT

KNATIVE_NAMESPACE = "knative-serving"
KNATIVE_FEATURES = "config-features"
"""Knative Serving's feature-flag ConfigMap (installed with Knative, patched here)."""
KNATIVE_POD_FLAGS = {
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "tolerations": "kubernetes.podspec-tolerations",
    "affinity": "kubernetes.podspec-affinity",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
}
"""Pod fields Knative rejects unless its feature flag is `enabled` (all default `disabled`)."""
KNATIVE_PORT_NAMES = ("http1", "h2c")
"""The only container port names Knative accepts (the protocol its queue-proxy speaks to the pod)."""


def knative_features(predictor: dict[str, Any]) -> dict[str, str]:
    """The Knative feature flags the predictor's pod fields need, all `enabled`."""
    return {flag: "enabled" for field, flag in KNATIVE_POD_FLAGS.items() if predictor.get(field)}


def knative_features_patch(predictor: dict[str, Any]) -> dict[str, Any]:
    """A server-side-apply patch of Knative's `config-features` enabling those flags."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": KNATIVE_FEATURES,
            "namespace": KNATIVE_NAMESPACE,
            "annotations": {"pulumi.com/patchForce": "true"},
        },
        "data": knative_features(predictor),
    }


def served_track(plan: EndpointPlan) -> Any:
    """The track the InferenceService's spec carries. KServe's canary is the *previous revision*:
    with the canary at 0 % the spec is the stable model (on a first install the only revision is
    what every request gets); config validation refuses a canary above 0 % (validation.py)."""
    if plan.strategy == "canary" and plan.track("canary").weight == 0:
        return plan.track("stable")
    return plan.tracks[-1]


def inference_service_manifest(plan: EndpointPlan, service_account: str) -> dict[str, Any]:
    """A KServe InferenceService (Serverless mode) running the server as a custom predictor;
    a canary is `canaryTrafficPercent` of the latest revision. Valid under Knative: one port named
    `http1`, probes on that port, no `terminationGracePeriodSeconds` (Knative derives it from the
    revision timeout), and node placement only with the feature flags `knative_features_patch`
    turns on."""
    track = served_track(plan)
    pod = pod_spec(plan, track, service_account, container_name="kserve-container")
    container = pod["containers"][0]
    # Knative allows a single port and no startup probe; the readiness probe gates traffic. The
    # metrics port is still served (--metrics-port) and scraped by annotation, just not declared.
    container.pop("startupProbe")
    container["ports"] = [
        {**p, "name": KNATIVE_PORT_NAMES[0]} for p in container["ports"] if p["containerPort"] != METRICS_PORT
    ]
    container["readinessProbe"]["initialDelaySeconds"] = 5
    for probe in ("readinessProbe", "livenessProbe"):
        container.get(probe, {}).get("httpGet", {}).pop("port", None)  # Knative probes the serving port
    pod.pop("terminationGracePeriodSeconds", None)
    a = plan.spec.autoscaling
    predictor: dict[str, Any] = {
        "minReplicas": plan.tracks[0].min_replicas,
        "maxReplicas": plan.tracks[0].max_replicas,
        "scaleMetric": "rps",
        "scaleTarget": max(1, round(a.requests_per_second)),
        **{k: v for k, v in pod.items() if k != "topologySpreadConstraints"},
    }
    predictor["topologySpreadConstraints"] = [
        {**c, "labelSelector": {"matchLabels": {"serving.kserve.io/inferenceservice": plan.model}}}
        for c in pod["topologySpreadConstraints"]
    ]
    if plan.strategy == "canary":
        predictor["canaryTrafficPercent"] = plan.track("canary").weight
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _meta(
            plan,
            plan.model,
            annotations={"serving.kserve.io/deploymentMode": "Serverless", **_scrape_annotations()},
        ),
        "spec": {"predictor": predictor},
    }
