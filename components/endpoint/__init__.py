"""Inference endpoints: the model server deployed in one region's cluster, with safe releases.

A stack's `aicloud:serving` section (`ServingSpec`) says which model, which image (pinned by
digest), which node pool, how many replicas, how to autoscale and how to release. For each
serving region, `plan_endpoint` resolves it against that region's node pool into an
`EndpointPlan` (tracks, replicas, GPUs), the pure `render_endpoint` turns the plan into
Kubernetes manifests (plain dicts), and `InferenceEndpoint` creates them as typed resources (or
`CustomResource`s for CRDs) under the region's Kubernetes provider.

Release strategies (`release.strategy`):
- `rolling`: one Deployment (`<model>-stable`), rolling updates bounded by `maxSurge`.
- `canary`: `<model>-stable` and `<model>-canary` behind a Gateway API `HTTPRoute` whose
  backendRefs carry the weights (backend `deployment`), or KServe's `canaryTrafficPercent`
  (backend `kserve`). Weights must sum to 100.
- `blue-green`: `<model>-blue` and `<model>-green`; the Service `<model>` selects the active
  colour. Switching (and switching back) changes only the Service's selector, and the standby
  colour stays warm (`standbyReplicas`) so a switch is instant.
- `ab`: `<model>-a` serves by default, `<model>-b` gets requests whose header matches
  (`x-variant: b`), through an `HTTPRoute` match.

Every Deployment's replica count is owned by an autoscaler (HPA, or a KEDA `ScaledObject`);
tracks with a fixed size (canary, A/B variant B, blue-green standby) get an autoscaler pinned to
min = max, so no replica count flips owner when a strategy or the active colour changes.

Validation (`serving_problems`, run by the stack config before anything exists) rejects every
setting that would be silently ignored (a canary without a router that can weight traffic,
weights that do not sum to 100, a canary identical to stable, blocks of another strategy) and
any rollout whose worst case (every track at its maximum plus `maxSurge` per Deployment) needs
more GPUs than the node pool can ever have, unless `allowGpuSurge: true`.

The package, one job per module: `spec` (the typed section), `validation` (cross-field and stack
checks), `release` (strategies resolved per region into an `EndpointPlan`), `manifests`
(Kubernetes objects), `kserve` (the InferenceService), `render` (all objects in order) and
`component` (`InferenceEndpoint`). The server's ports, paths and metric names are
`contracts.serving`. Every public name is importable from `components.endpoint`.
"""

from __future__ import annotations

from components.endpoint.component import KEDA_CHART, InferenceEndpoint, create_object, endpoint_outputs
from components.endpoint.kserve import inference_service_manifest
from components.endpoint.manifests import (
    autoscaler_manifest,
    deployment_manifest,
    deployment_name,
    gateway_manifest,
    lake_config_map,
    namespace_manifest,
    neg_annotation,
    pdb_manifest,
    pod_spec,
    request_rate_query,
    route_manifest,
    server_args,
    service_account_manifest,
    service_manifest,
    uses_lake,
)
from components.endpoint.release import (
    IMAGES_SERVER,
    EndpointPlan,
    TrackPlan,
    gpu_units_per_node,
    plan_endpoint,
    resolve_pool,
)
from components.endpoint.render import render_endpoint
from components.endpoint.spec import (
    APP,
    DEFAULT_NAMESPACE,
    LAKE_CONFIG_MAP,
    AbSpec,
    Autoscaling,
    AwsFrontDoor,
    BlueGreenSpec,
    CanarySpec,
    CanaryWeights,
    Cloud,
    CloudArmorSpec,
    GatewaySpec,
    GcpFrontDoor,
    GlobalSpec,
    ModelUri,
    RegionServing,
    ReleaseSpec,
    Replicas,
    Resources,
    ServingSpec,
    Strategy,
    Track,
)
from components.endpoint.validation import (
    Problem,
    model_uris,
    serving_problems,
    validate_serving,
)
from contracts.serving import (
    LIVE_PATH,
    METRICS_PATH,
    PORT_NAME,
    READY_PATH,
    REQUESTS_METRIC,
    RUN_AS_USER,
    SERVER_PORT,
    SERVICE_PORT,
)

__all__ = [
    "APP",
    "AbSpec",
    "Autoscaling",
    "AwsFrontDoor",
    "BlueGreenSpec",
    "CanarySpec",
    "CanaryWeights",
    "Cloud",
    "CloudArmorSpec",
    "DEFAULT_NAMESPACE",
    "EndpointPlan",
    "GatewaySpec",
    "GcpFrontDoor",
    "GlobalSpec",
    "IMAGES_SERVER",
    "InferenceEndpoint",
    "KEDA_CHART",
    "LAKE_CONFIG_MAP",
    "LIVE_PATH",
    "METRICS_PATH",
    "ModelUri",
    "PORT_NAME",
    "Problem",
    "READY_PATH",
    "REQUESTS_METRIC",
    "RUN_AS_USER",
    "RegionServing",
    "ReleaseSpec",
    "Replicas",
    "Resources",
    "SERVER_PORT",
    "SERVICE_PORT",
    "ServingSpec",
    "Strategy",
    "Track",
    "TrackPlan",
    "autoscaler_manifest",
    "create_object",
    "deployment_manifest",
    "deployment_name",
    "endpoint_outputs",
    "gateway_manifest",
    "gpu_units_per_node",
    "inference_service_manifest",
    "lake_config_map",
    "model_uris",
    "namespace_manifest",
    "neg_annotation",
    "pdb_manifest",
    "plan_endpoint",
    "pod_spec",
    "render_endpoint",
    "request_rate_query",
    "resolve_pool",
    "route_manifest",
    "server_args",
    "service_account_manifest",
    "service_manifest",
    "serving_problems",
    "uses_lake",
    "validate_serving",
]
