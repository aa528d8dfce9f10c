"""The Gateway API implementation behind serving's `gateway: {className: ...}`.

A `Gateway` and its `HTTPRoute`s do nothing without a controller that implements the Gateway's
class in the same cluster, and the API server rejects them without the Gateway API CRDs. Where a
stack routes serving through a Gateway, `IstioGatewayImplementation` installs, per serving cluster:

- the Gateway API CRDs, standard channel, exactly as kubernetes-sigs/gateway-api publishes them
  (v1.5.1, vendored verbatim under `components/upstream/manifests/gateway-api`);
- Istio's `base` chart (Istio's own CRDs) and `istiod` (pinned in `components/upstream/pins.yaml`),
  in `istio-system`, a `restricted` namespace that admits only xDS from Gateway data planes and the
  API server's calls to istiod's webhooks;
- istiod then serves the GatewayClass `istio` and, for each Gateway of that class, provisions its
  data plane in the Gateway's namespace: a ServiceAccount, a Deployment `<gateway>-istio` and a
  Service of the same name, rendered from the chart's `files/kube-gateway.yaml`.

Two values make that data plane fit aicloud's clusters: `gateways.seccompProfile: RuntimeDefault`,
without which Pod Security `restricted` (every aicloud namespace) rejects the Deployment's pods
(the template sets no seccomp profile by default), and the Gateway annotation
`networking.istio.io/service-type: ClusterIP` (set by the endpoint), without which istiod creates a
Service of type LoadBalancer, i.e. a second, public load balancer beside the front door.

`GATEWAY_CLASSES` lists the classes a stack may name; any other fails at plan time. GKE's own
classes (`gke-l7-*`) are not among them: they provision Google load balancers, not an in-cluster
data-plane Service, and aicloud's global front door targets that Service's NEGs.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.base import child_opts, type_token
from components.helm import helm_release
from components.k8s_security import Allow, from_cidrs, secure_namespace
from components.nodepool import POOL_LABEL
from components.upstream import chart_pin, manifests

ISTIO_CLASS = "istio"
GATEWAY_CLASSES: dict[str, str] = {
    ISTIO_CLASS: "Istio: aicloud installs istiod (and the Gateway API CRDs) in every serving cluster",
}
"""Gateway classes a stack may name, and what implements each."""
ISTIO_NAMESPACE = "istio-system"
ISTIO_BASE_CHART = chart_pin("base")
ISTIOD_CHART = chart_pin("istiod")
GATEWAY_API_BUNDLE = "gateway-api"
SERVICE_TYPE_ANNOTATION = "networking.istio.io/service-type"
"""Gateway annotation istiod reads for the type of the data-plane Service it creates (default
LoadBalancer; pilot/pkg/config/kube/gatewaycommon/deploymentcontroller.go)."""
ISTIO_GATEWAY_POD_LABELS = {"gateway.istio.io/managed": "istio.io-gateway-controller"}
"""Label istiod puts on every Gateway data-plane pod it provisions (files/kube-gateway.yaml)."""
ISTIOD_PORTS = {"xds": 15012, "webhook": 15017}
"""istiod's ports (the chart's deployment.yaml): xDS and certificates over mTLS (the data plane's
`CA_ADDR` and discovery address), webhooks."""


def istio_allows() -> tuple[Allow, ...]:
    """Who may reach istiod (its namespace denies everything else)."""
    return (
        Allow(
            "gateway-xds",
            "Gateway data planes (any namespace) fetch their configuration and certificates from istiod",
            peers=[{"namespaceSelector": {}, "podSelector": {"matchLabels": dict(ISTIO_GATEWAY_POD_LABELS)}}],
            ports=[(ISTIOD_PORTS["xds"], "TCP")],
            pods={"app": "istiod"},
        ),
        Allow(
            "api-server",
            "the API server calls istiod's validating and defaulting webhooks; its source is the control "
            "plane, which no selector names",
            peers=from_cidrs(["0.0.0.0/0"]),
            ports=[(ISTIOD_PORTS["webhook"], "TCP")],
            pods={"app": "istiod"},
        ),
    )


def gateway_api_crds() -> list[dict[str, Any]]:
    """The Gateway API CRDs (standard channel) as upstream publishes them."""
    return [d for d in manifests(GATEWAY_API_BUNDLE) if d.get("kind") == "CustomResourceDefinition"]


def istiod_values(system_pool: str | None) -> dict[str, Any]:
    """istiod's values: the control plane on the system pool (if given), `restricted`-compatible
    pods for itself and for every Gateway data plane it provisions."""
    runtime_default = {"type": "RuntimeDefault"}
    values: dict[str, Any] = {
        "seccompProfile": dict(runtime_default),
        "gateways": {"seccompProfile": dict(runtime_default)},
    }
    if system_pool:
        values["nodeSelector"] = {POOL_LABEL: system_pool}
    return values


class IstioGatewayImplementation(pulumi.ComponentResource):
    """Gateway API CRDs, Istio's base chart and istiod in one cluster (create it with the
    cluster's Kubernetes provider)."""

    ready: list[pulumi.Resource]
    """What Gateways and HTTPRoutes must be applied after (the CRDs and istiod)."""

    def __init__(self, name: str, *, system_pool: str | None, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("serving", "GatewayImplementation"), name, None, opts)
        crds = [
            k8s.apiextensions.v1.CustomResourceDefinition(
                f"{name}-crd-{doc['spec']['names']['plural']}",
                metadata=doc["metadata"],
                spec=doc["spec"],
                opts=child_opts(self),
            )
            for doc in gateway_api_crds()
        ]
        ns = secure_namespace(
            f"{name}-ns",
            ISTIO_NAMESPACE,
            parent=self,
            labels={"app.kubernetes.io/part-of": "aicloud"},
            allows=istio_allows(),
        )
        base = helm_release(
            f"{name}-base",
            ISTIO_BASE_CHART,
            release_name="istio-base",
            namespace=ISTIO_NAMESPACE,
            opts=child_opts(self, depends_on=[ns]),
        )
        self.istiod = helm_release(
            f"{name}-istiod",
            ISTIOD_CHART,
            release_name="istiod",
            namespace=ISTIO_NAMESPACE,
            values=istiod_values(system_pool),
            opts=child_opts(self, depends_on=[ns, base, *crds]),
        )
        self.ready = [*crds, self.istiod]
        self.register_outputs(
            {
                "gatewayClass": ISTIO_CLASS,
                "istio": ISTIOD_CHART["version"],
                "gatewayApi": sorted(d["metadata"]["name"] for d in gateway_api_crds()),
            }
        )
