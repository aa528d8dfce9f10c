"""KServe rendering: the endpoint as one InferenceService (Serverless mode, custom predictor)."""

from __future__ import annotations

from typing import Any

from components.endpoint.manifests import _meta, _scrape_annotations, pod_spec
from components.endpoint.release import EndpointPlan
from contracts.serving import METRICS_PORT


def inference_service_manifest(plan: EndpointPlan, service_account: str) -> dict[str, Any]:
    """A KServe InferenceService (Serverless mode) running the server as a custom predictor;
    a canary is `canaryTrafficPercent` of the latest revision."""
    track = plan.tracks[-1]
    pod = pod_spec(plan, track, service_account, container_name="kserve-container")
    container = pod["containers"][0]
    # Knative allows a single port and no startup probe; the readiness probe gates traffic. The
    # metrics port is still served (--metrics-port) and scraped by annotation, just not declared.
    container.pop("startupProbe")
    container["ports"] = [p for p in container["ports"] if p["containerPort"] != METRICS_PORT]
    container["readinessProbe"]["initialDelaySeconds"] = 5
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
