"""Kubernetes manifests (plain dicts) of an endpoint: namespace, Deployments, Services, Gateway and
HTTPRoute, autoscalers, disruption budget, and the NetworkPolicies that let exactly the front door
(or gateway, or Knative) reach the inference port and Prometheus the metrics port."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from components.capacity import TIER_LABEL
from components.endpoint.release import EndpointPlan, TrackPlan
from components.endpoint.spec import APP, LAKE_CONFIG_MAP
from components.gateway import ISTIO_CLASS, SERVICE_TYPE_ANNOTATION
from components.k8s_security import (
    Allow,
    allow_ingress,
    from_cidrs,
    from_namespace,
    from_pods,
    from_prometheus,
    namespace_manifests,
)
from components.nodepool import GPU_RESOURCE, pool_node_selector
from contracts.lake import lake_env, split_lake
from contracts.serving import (
    LIVE_PATH,
    METRICS_PATH,
    METRICS_PORT,
    METRICS_PORT_NAME,
    PORT_NAME,
    READY_PATH,
    REQUESTS_METRIC,
    RUN_AS_USER,
    SERVER_PORT,
    SERVICE_PORT,
)

# --------------------------------------------------------------------------- manifests


def _labels(plan: EndpointPlan, track: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": plan.model,
        "app.kubernetes.io/part-of": "aicloud",
        "app.kubernetes.io/managed-by": "pulumi-aicloud",
    }
    if track is not None:
        labels["aicloud.dev/track"] = track
    return labels


def _selector(plan: EndpointPlan, track: str | None = None) -> dict[str, str]:
    sel = {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": plan.model}
    if track is not None:
        sel["aicloud.dev/track"] = track
    return sel


def _meta(
    plan: EndpointPlan, name: str, track: str | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": plan.namespace, "labels": _labels(plan, track)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def deployment_name(plan: EndpointPlan, track: str) -> str:
    return f"{plan.model}-{track}"


def namespace_manifest(plan: EndpointPlan) -> list[dict[str, Any]]:
    """The serving namespace (Pod Security `restricted`) and its default-deny ingress policy."""
    return namespace_manifests(plan.namespace, labels={"app.kubernetes.io/part-of": "aicloud"})


def service_account_manifest(plan: EndpointPlan, name: str) -> dict[str, Any]:
    """A plain service account (used when the stack has no workload identity for the server); the
    server never calls the Kubernetes API, so no token is mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(plan, name),
        "automountServiceAccountToken": False,
    }


KNATIVE_NAMESPACES = ("knative-serving", "istio-system")
"""Where serverless KServe traffic comes from: Knative's activator and the ingress gateway."""
QUEUE_PROXY_PORTS = (8012, 8013)
"""Knative queue-proxy (the sidecar in front of a serverless KServe container): http1 and h2c."""
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
"""Label Gateway API implementations (Istio, ...) put on the data-plane pods of a Gateway."""


def network_policy_manifests(plan: EndpointPlan, front_door_cidrs: list[str] | None) -> list[dict[str, Any]]:
    """Who may reach the endpoint's pods (the namespace denies everything else):

    - Prometheus, on the metrics port only;
    - the front door's load balancer (`front_door_cidrs`: where its connections come from), on
      the inference port of the servers, or of the gateway's data plane when there is one;
    - the gateway's data plane, on the servers' inference port;
    - on KServe, Knative's activator and ingress gateway, on the queue-proxy ports.
    """
    ns = plan.namespace
    kserve = plan.spec.backend == "kserve"
    pods = {"serving.kserve.io/inferenceservice": plan.model} if kserve else _selector(plan)
    allows = [
        Allow(
            f"{plan.model}-metrics",
            "Prometheus scrapes the model server's metrics port (not routed by any front door)",
            peers=[from_prometheus()],
            ports=[(METRICS_PORT, "TCP")],
            pods=pods,
        )
    ]
    if kserve:
        allows.append(
            Allow(
                f"{plan.model}-knative",
                "serverless KServe: the Knative activator and ingress gateway reach the queue-proxy",
                peers=[from_namespace(n) for n in KNATIVE_NAMESPACES],
                ports=[(p, "TCP") for p in QUEUE_PROXY_PORTS],
                pods=pods,
            )
        )
    elif plan.spec.gateway is not None:
        gateway_pods = {GATEWAY_NAME_LABEL: plan.gateway_name}
        allows.append(
            Allow(
                f"{plan.model}-gateway",
                "the Gateway's data plane routes requests to the servers",
                peers=[from_pods(gateway_pods)],
                ports=[(SERVER_PORT, "TCP")],
                pods=pods,
            )
        )
        if front_door_cidrs:
            allows.append(
                Allow(
                    f"{plan.gateway_name}-front-door",
                    "the regional load balancer of the front door reaches the Gateway's data plane",
                    peers=from_cidrs(front_door_cidrs),
                    ports=[(SERVICE_PORT, "TCP")],
                    pods=gateway_pods,
                )
            )
    elif front_door_cidrs:
        allows.append(
            Allow(
                f"{plan.model}-front-door",
                "the regional load balancer of the front door reaches the servers' inference port",
                peers=from_cidrs(front_door_cidrs),
                ports=[(SERVER_PORT, "TCP")],
                pods=pods,
            )
        )
    return [allow_ingress(ns, a) for a in allows]


def uses_lake(uri: str) -> bool:
    """Whether a model URI names a lakehouse zone (`lake://<zone>/...`)."""
    return split_lake(uri) is not None


def lake_config_map(plan: EndpointPlan, zone_uris: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap `lake://` URIs resolve through (`AICLOUD_LAKE_<ZONE>` per zone the server may use)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(plan, LAKE_CONFIG_MAP),
        "data": {lake_env(zone): uri for zone, uri in sorted(zone_uris.items())},
    }


KEEP_ALIVE_S = {"gcp": 620, "aws": 75}
"""The server's keep-alive timeout per cloud, above the idle timeout its front door keeps on
backend connections (GCP's global external Application Load Balancer: 600 s; an AWS ALB: 60 s by
default), so the server never closes a connection the balancer is about to reuse (a 502)."""
GRACEFUL_TIMEOUT_S = 30
"""The server's bound on the slowest request after its listener closes (`--graceful-timeout-s`)."""
DRAIN_IDLE_S = 1
"""During the drain, the server closes a connection idle this long (`--drain-idle-s`)."""


def server_args(plan: EndpointPlan, track: TrackPlan) -> list[str]:
    """Command-line of `python -m workloads.server` for a track."""
    return [
        "--model", track.model_uri,
        "--name", plan.model,
        "--host", "0.0.0.0",
        "--port", str(SERVER_PORT),
        "--metrics-port", str(METRICS_PORT),
        "--device", "cuda" if plan.gpus_per_replica else "cpu",
        "--shutdown-drain-s", str(plan.spec.drain_seconds),
        "--graceful-timeout-s", str(GRACEFUL_TIMEOUT_S),
        "--drain-idle-s", str(DRAIN_IDLE_S),
        "--keep-alive-timeout-s", str(KEEP_ALIVE_S.get(plan.cloud, 75)),
    ]  # fmt: skip


def termination_grace_seconds(plan: EndpointPlan) -> int:
    """The pod's `terminationGracePeriodSeconds`: the server exits at most drain_seconds (not
    ready, serving with `Connection: close`) + the graceful timeout (in-flight requests; idle
    connections close after DRAIN_IDLE_S) after SIGTERM; 15 s more for the batcher to finish and
    the process to exit before the kubelet's SIGKILL."""
    return plan.spec.drain_seconds + GRACEFUL_TIMEOUT_S + 15


def tier_preference(pool: Any) -> dict[str, Any]:
    """Serving prefers the pool's non-spot capacity tiers and spills to spot (a preferred node
    affinity on `aicloud.dev/capacity-tier`); nothing when the pool's chain has no spot tier."""
    kinds = [t.kind for t in pool.capacity or []]
    if "spot" not in kinds or kinds == ["spot"]:
        return {}
    term = {"matchExpressions": [{"key": TIER_LABEL, "operator": "NotIn", "values": ["spot"]}]}
    return {
        "affinity": {
            "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": term}]}
        }
    }


def pod_spec(
    plan: EndpointPlan, track: TrackPlan, service_account: str, *, container_name: str = "server"
) -> dict[str, Any]:
    """The pod of a track: probes on the server's health paths, pool placement, zone spread,
    restricted security context and a writable /tmp."""
    res = plan.spec.resources
    requests: dict[str, str] = {"cpu": res.cpu, "memory": res.memory}
    limits: dict[str, str] = {"memory": res.memory}
    if plan.gpus_per_replica:
        requests[GPU_RESOURCE] = str(plan.gpus_per_replica)
        limits[GPU_RESOURCE] = str(plan.gpus_per_replica)
    else:
        limits["cpu"] = res.cpu
    probe = {"port": PORT_NAME, "scheme": "HTTP"}
    period = 5
    container = {
        "name": container_name,
        "image": track.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "workloads.server"],
        "args": server_args(plan, track),
        "ports": [
            {"name": PORT_NAME, "containerPort": SERVER_PORT, "protocol": "TCP"},
            {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "AICLOUD_TRACK", "value": track.name},
        ],
        **({"envFrom": [{"configMapRef": {"name": LAKE_CONFIG_MAP}}]} if uses_lake(track.model_uri) else {}),
        "resources": {"requests": requests, "limits": limits},
        "startupProbe": {
            "httpGet": {"path": READY_PATH, **probe},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": max(1, plan.spec.startup_seconds // period),
        },
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, **probe},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, **probe},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "serviceAccountName": service_account,
        # The server never calls the Kubernetes API.
        "automountServiceAccountToken": False,
        # Readiness turns false at SIGTERM, load balancers drain for drain_seconds, then the
        # server finishes in-flight requests (its graceful timeout, GRACEFUL_TIMEOUT_S).
        "terminationGracePeriodSeconds": termination_grace_seconds(plan),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "nodeSelector": pool_node_selector(plan.pool),
        **tier_preference(plan.pool),
        "tolerations": [dict(t) for t in plan.tolerations],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                # GPUs are scarce per zone: prefer spreading, never leave a replica pending for it.
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": _selector(plan, track.name)},
            }
        ],
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": res.scratch}}],
    }


def _scrape_annotations() -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT), "prometheus.io/path": METRICS_PATH}


def deployment_manifest(plan: EndpointPlan, track: TrackPlan, service_account: str) -> dict[str, Any]:
    """A track's Deployment; its replica count belongs to the track's autoscaler."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(plan, deployment_name(plan, track.name), track.name),
        "spec": {
            "selector": {"matchLabels": _selector(plan, track.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": plan.spec.release.max_surge,
                    "maxUnavailable": plan.spec.release.max_unavailable,
                },
            },
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": plan.spec.startup_seconds + 300,
            "template": {
                "metadata": {"labels": _labels(plan, track.name), "annotations": _scrape_annotations()},
                "spec": pod_spec(plan, track, service_account),
            },
        },
    }


def service_manifest(
    plan: EndpointPlan, name: str, track: str | None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A ClusterIP Service on port 80 selecting one track (or every track with None)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(plan, name, annotations=annotations),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(plan, track),
            "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def pdb_manifest(plan: EndpointPlan) -> dict[str, Any]:
    """At most one replica of the model down at a time through voluntary disruptions; replicas
    that never became ready may always be evicted (they serve nothing)."""
    selector = {"serving.kserve.io/inferenceservice": plan.model} if plan.spec.backend == "kserve" else _selector(plan)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(plan, plan.model),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def request_rate_query(plan: EndpointPlan, track: str) -> str:
    """PromQL: requests per second the track's pods answer."""
    pods = f"{deployment_name(plan, track)}-[a-z0-9]+-[a-z0-9]+"
    return f'sum(rate({REQUESTS_METRIC}{{namespace="{plan.namespace}",pod=~"{pods}"}}[2m]))'


def autoscaler_manifest(plan: EndpointPlan, track: TrackPlan) -> dict[str, Any]:
    """The track's HPA or KEDA ScaledObject (min = max pins a fixed-size track)."""
    a = plan.spec.autoscaling
    name = deployment_name(plan, track.name)
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    behavior = {"scaleDown": {"stabilizationWindowSeconds": a.scale_down_stabilization_seconds}}
    if a.mode == "keda":
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": _meta(plan, name, track.name),
            "spec": {
                "scaleTargetRef": target,
                "minReplicaCount": track.min_replicas,
                "maxReplicaCount": track.max_replicas,
                "pollingInterval": 15,
                "cooldownPeriod": a.scale_down_stabilization_seconds,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}},
                "triggers": [
                    {
                        "type": "prometheus",
                        "metadata": {
                            "serverAddress": a.prometheus_address or "",
                            "query": request_rate_query(plan, track.name),
                            "threshold": f"{a.requests_per_second:g}",
                        },
                    }
                ],
            },
        }
    if a.mode == "metric":
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": a.metric},
                "target": {"type": "AverageValue", "averageValue": f"{a.requests_per_second:g}"},
            },
        }
    else:
        metric = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization},
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(plan, name, track.name),
        "spec": {
            "scaleTargetRef": target,
            "minReplicas": track.min_replicas,
            "maxReplicas": track.max_replicas,
            "metrics": [metric],
            "behavior": behavior,
        },
    }


def gateway_manifest(plan: EndpointPlan, annotations: dict[str, str] | None) -> dict[str, Any]:
    """The Gateway (HTTP on 80) the endpoint's HTTPRoute attaches to; `annotations` reach the
    data-plane Service through `spec.infrastructure` (GKE NEG annotation)."""
    gw = plan.spec.gateway
    assert gw is not None
    spec: dict[str, Any] = {
        "gatewayClassName": gw.class_name,
        "listeners": [
            {
                "name": "http",
                "port": SERVICE_PORT,
                "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "Same"}},
            }
        ],
    }
    if annotations:
        spec["infrastructure"] = {"annotations": dict(annotations)}
    meta = _meta(plan, plan.gateway_name)
    if gw.class_name == ISTIO_CLASS:
        # istiod would otherwise give the data plane a Service of type LoadBalancer: a second,
        # public load balancer beside the front door (which reaches the pods itself).
        meta["annotations"] = {**meta.get("annotations", {}), SERVICE_TYPE_ANNOTATION: "ClusterIP"}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta,
        "spec": spec,
    }


def route_manifest(plan: EndpointPlan) -> dict[str, Any]:
    """The HTTPRoute: weights for a canary, a header match for A/B, one backend otherwise."""

    def ref(service: str, weight: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": service, "port": SERVICE_PORT}
        if weight is not None:
            out["weight"] = weight
        return out

    release = plan.spec.release
    if plan.strategy == "canary":
        rules = [
            {
                "backendRefs": [
                    ref(plan.model, plan.track("stable").weight),
                    ref(f"{plan.model}-canary", plan.track("canary").weight),
                ]
            }
        ]
    elif plan.strategy == "ab":
        assert release.ab is not None
        rules = [
            {
                "matches": [{"headers": [{"type": "Exact", "name": release.ab.header, "value": release.ab.value}]}],
                "backendRefs": [ref(f"{plan.model}-b")],
            },
            {"backendRefs": [ref(plan.model)]},
        ]
    else:
        rules = [{"backendRefs": [ref(plan.model)]}]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(plan, plan.model),
        "spec": {"parentRefs": [{"name": plan.gateway_name}], "rules": rules},
    }


def neg_annotation(neg_name: str, port: int = SERVICE_PORT) -> dict[str, str]:
    """GKE standalone NEG annotation: one zonal NEG named `neg_name` per zone for `port`."""
    return {"cloud.google.com/neg": json.dumps({"exposed_ports": {str(port): {"name": neg_name}}})}
