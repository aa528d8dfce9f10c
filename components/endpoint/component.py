"""`InferenceEndpoint`: the component that creates an endpoint's rendered objects under the region's
Kubernetes provider (typed resources, or `CustomResource`s for CRDs)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.base import child_opts, custom_resource, type_token
from components.endpoint.kserve import knative_features, knative_features_patch
from components.endpoint.manifests import neg_annotation
from components.endpoint.release import EndpointPlan
from components.endpoint.render import render_endpoint
from components.gateway import ISTIO_CLASS, IstioGatewayImplementation
from components.helm import helm_release
from components.k8s_security import Allow, from_cidrs, from_pods, secure_namespace
from components.upstream import chart_pin
from contracts.serving import (
    LIVE_PATH,
    READY_PATH,
    SERVICE_PORT,
)

# --------------------------------------------------------------------------- component

KEDA_CHART = chart_pin("keda")
"""KEDA (Helm), installed per serving cluster for `autoscaling.mode: keda` unless `installKeda: false`."""
KEDA_NAMESPACE = "keda"
KEDA_ALLOWS = (
    Allow(
        "api-server",
        "the API server calls KEDA's metrics API (aggregation, 6443) and admission webhooks (9443); its "
        "source is the control plane, which no selector names",
        peers=from_cidrs(["0.0.0.0/0"]),
        ports=[(6443, "TCP"), (9443, "TCP")],
    ),
    Allow(
        "keda-internal",
        "the metrics API server asks the operator over gRPC",
        peers=[from_pods({})],
        ports=[(9666, "TCP")],
    ),
)
"""Who may reach KEDA's pods (its namespace denies everything else)."""

_TYPED: dict[tuple[str, str], tuple[str, str]] = {
    ("v1", "Namespace"): ("core.v1", "Namespace"),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networking.v1", "NetworkPolicy"),
    ("v1", "ServiceAccount"): ("core.v1", "ServiceAccount"),
    ("v1", "ConfigMap"): ("core.v1", "ConfigMap"),
    ("v1", "Service"): ("core.v1", "Service"),
    ("apps/v1", "Deployment"): ("apps.v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"): ("policy.v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("autoscaling.v2", "HorizontalPodAutoscaler"),
}
"""Typed pulumi-kubernetes class (module under `pulumi_kubernetes`, name) per apiVersion and kind;
looked up on use, so reading the config does not import the Kubernetes SDK's modules."""
_SHORT = {
    "Namespace": "ns",
    "NetworkPolicy": "netpol",
    "ServiceAccount": "sa",
    "ConfigMap": "cm",
    "Service": "svc",
    "Deployment": "deploy",
    "PodDisruptionBudget": "pdb",
    "HorizontalPodAutoscaler": "hpa",
    "ScaledObject": "scaler",
    "Gateway": "gateway",
    "HTTPRoute": "route",
    "InferenceService": "isvc",
}


def create_object(logical: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Create a manifest as its typed Kubernetes resource, or a `CustomResource` for CRDs."""
    typed = _TYPED.get((manifest["apiVersion"], manifest["kind"]))
    if typed is None:
        return custom_resource(logical, manifest, opts)
    module, name = typed
    cls = getattr(importlib.import_module(f"pulumi_kubernetes.{module}"), name)
    kwargs = {k: manifest[k] for k in ("metadata", "spec", "data") if k in manifest}
    if "automountServiceAccountToken" in manifest:
        kwargs["automount_service_account_token"] = manifest["automountServiceAccountToken"]
    return cls(logical, **kwargs, opts=opts)


class InferenceEndpoint(pulumi.ComponentResource):
    """The model server in one region's cluster (create it with the region's Kubernetes
    provider in `opts.providers`, parented to the region's platform)."""

    plan: EndpointPlan
    objects: dict[str, pulumi.CustomResource]
    entry: pulumi.CustomResource | None
    """The object the regional load balancer depends on (entry Service or Gateway)."""

    def __init__(
        self,
        name: str,
        plan: EndpointPlan,
        *,
        identity: Any = None,
        neg: bool = False,
        front_door_cidrs: list[str] | None = None,
        system_pool: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`identity`: the server's workload identity (`.service_account_name`, `.namespace`),
        or None to create the namespace and a plain service account. `neg`: annotate the entry
        for GKE standalone NEGs (`plan.neg_name`) so a global load balancer can reach it.
        `front_door_cidrs`: where that load balancer connects from (its NetworkPolicy peers).
        `system_pool`: the region's system pool, where the Gateway implementation's controller
        runs (None: any untainted node)."""
        super().__init__(type_token("serving", "InferenceEndpoint"), name, None, opts)
        if identity is not None and identity.namespace != plan.namespace:
            raise ValueError(
                f"the server identity lives in namespace {identity.namespace!r} "
                f"but serving.namespace is {plan.namespace!r}"
            )
        sa = identity.service_account_name if identity is not None else plan.model
        manifests = render_endpoint(
            plan,
            service_account=sa,
            create_identity=identity is None,
            entry_annotations=neg_annotation(plan.neg_name) if neg else None,
            zone_uris=getattr(identity, "zone_uris", None),
            front_door_cidrs=front_door_cidrs,
        )
        deps = [identity] if isinstance(identity, pulumi.Resource) else []
        self.plan = plan
        self.objects = {}
        self.keda: k8s.helm.v3.Release | None = None
        auto = plan.spec.autoscaling
        if plan.spec.backend == "deployment" and auto.mode == "keda" and auto.install_keda:
            keda_ns = secure_namespace(
                f"{name}-keda-ns", KEDA_NAMESPACE, parent=self, labels={"app.kubernetes.io/part-of": "aicloud"},
                allows=KEDA_ALLOWS,
            )  # fmt: skip
            self.keda = helm_release(
                f"{name}-keda",
                KEDA_CHART,
                release_name="keda",
                namespace=KEDA_NAMESPACE,
                opts=child_opts(self, depends_on=[keda_ns]),
            )
        self.gateway_implementation: IstioGatewayImplementation | None = None
        gw = plan.spec.gateway
        if plan.spec.backend == "deployment" and gw is not None and gw.install and gw.class_name == ISTIO_CLASS:
            self.gateway_implementation = IstioGatewayImplementation(
                f"{name}-{gw.class_name}", system_pool=system_pool, opts=child_opts(self)
            )
        self.knative_features: k8s.core.v1.ConfigMapPatch | None = None
        isvc = next((m for m in manifests if m["kind"] == "InferenceService"), None)
        if isvc is not None and knative_features(isvc["spec"]["predictor"]):
            patch = knative_features_patch(isvc["spec"]["predictor"])
            self.knative_features = k8s.core.v1.ConfigMapPatch(
                f"{name}-knative-features", metadata=patch["metadata"], data=patch["data"], opts=child_opts(self)
            )
            deps = [*deps, self.knative_features]
        first: list[pulumi.Resource] = []
        for m in manifests:
            kind, obj_name = m["kind"], m["metadata"]["name"]
            suffix = obj_name.removeprefix(plan.model).lstrip("-")
            logical = "-".join(p for p in (name, _SHORT.get(kind, kind.lower()), suffix) if p)
            if kind == "Namespace":
                logical = f"{name}-ns"
            depends = [*deps, *first] if kind not in ("Namespace",) else deps
            if kind == "ScaledObject" and self.keda is not None:
                depends = [*depends, self.keda]  # its CRD comes with KEDA
            if kind in ("Gateway", "HTTPRoute") and self.gateway_implementation is not None:
                depends = [*depends, *self.gateway_implementation.ready]  # CRDs and controller
            extra: dict[str, Any] = {}
            if kind == "Deployment":
                # Pulumi waits for the rollout: a GPU node may first have to join, then the model load.
                wait = f"{(plan.spec.startup_seconds + 900) // 60}m"
                extra["custom_timeouts"] = pulumi.CustomTimeouts(create=wait, update=wait)
            res = create_object(logical, m, child_opts(self, depends_on=depends or None, **extra))
            if kind in ("Namespace", "ServiceAccount", "ConfigMap"):
                first.append(res)
            self.objects[f"{kind}/{obj_name}"] = res
        entry_kind = "Gateway" if plan.spec.gateway is not None else "Service"
        self.entry = self.objects.get(f"{entry_kind}/{plan.gateway_name if entry_kind == 'Gateway' else plan.model}")
        self.manifests = manifests
        self.register_outputs(endpoint_outputs(plan, neg=neg))


def endpoint_outputs(plan: EndpointPlan, *, neg: bool) -> dict[str, Any]:
    """What the plan and stack outputs show of an endpoint."""
    spec = plan.spec
    out: dict[str, Any] = {
        "regionKey": plan.region_key,
        "cloud": plan.cloud,
        "region": plan.region,
        "model": plan.model,
        "namespace": plan.namespace,
        "backend": spec.backend,
        "strategy": plan.strategy,
        "pool": plan.pool.name,
        "gpusPerReplica": plan.gpus_per_replica,
        "gpuDemand": plan.gpu_demand,
        "gpuCapacity": plan.gpu_capacity,
        "autoscaling": spec.autoscaling.mode,
        "tracks": [
            {
                "name": t.name,
                "role": t.role,
                "image": t.image,
                "modelUri": t.model_uri,
                "replicas": t.replicas,
                "weight": t.weight,
            }
            for t in plan.tracks
        ],
        "service": plan.model,
        "readyPath": READY_PATH,
        "livePath": LIVE_PATH,
        "dial": plan.dial,
        "router": f"gateway/{spec.gateway.class_name}"
        if spec.gateway
        else ("kserve" if spec.backend == "kserve" else "service"),
    }
    if plan.entry_service:
        out["entryService"] = plan.entry_service
        out["entryPort"] = SERVICE_PORT
    if neg:
        out["negName"] = plan.neg_name
    if plan.strategy == "ab" and spec.release.ab is not None:
        out["abMatch"] = f"{spec.release.ab.header}: {spec.release.ab.value}"
    if plan.strategy == "blue-green":
        out["active"] = spec.release.blue_green_or_default.active
    return out
