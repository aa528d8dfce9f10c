"""Gateway API: which controller serves a Gateway's class, and what it creates in the cluster.

A Gateway needs the Gateway API CRDs and a controller of its `gatewayClassName` in the same
cluster; an HTTPRoute needs the Gateway it attaches to. Where the implementation provisions a data
plane per Gateway in the Gateway's namespace (Istio: a ServiceAccount, a Deployment and a Service,
rendered by istiod from the istiod chart's `files/kube-gateway.yaml`), those pods must be admitted
by that namespace's Pod Security level and fit a node pool like the stack's own: `data_plane`
returns them as the controller renders them, for the rest of the readiness check.

`data_plane` follows the pinned template (`components/upstream/charts/istiod/files/kube-gateway.yaml`)
for everything admission and scheduling read: the pod's securityContext (the chart's
`gateways.securityContext`, else the sysctl `net.ipv4.ip_unprivileged_port_start=0` and the
chart's `gateways.seccompProfile`), the istio-proxy container's securityContext and ports, its
resources (`global.proxy.resources`), its volumes, and no node selector or tolerations;
tests/readiness checks each of those fragments against the vendored template.
"""

from __future__ import annotations

from typing import Any

GATEWAY_GROUP = "gateway.networking.k8s.io"
GKE_GATEWAY_CLASSES = (
    "gke-l7-global-external-managed",
    "gke-l7-regional-external-managed",
    "gke-l7-rilb",
    "gke-l7-gxlb",
)
"""The GatewayClasses GKE's Gateway controller serves when the cluster's `gatewayApiConfig` is on."""
GATEWAY_NAME_LABEL = f"{GATEWAY_GROUP}/gateway-name"


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def istio_data_plane(gateway: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    """The ServiceAccount and Deployment istiod creates for `gateway` (a Gateway of class `istio`),
    with the istiod release's merged `values`."""
    meta = _d(gateway.get("metadata"))
    name, namespace = str(meta.get("name")), str(meta.get("namespace") or "default")
    deployment = f"{name}-{_d(gateway.get('spec')).get('gatewayClassName', 'istio')}"
    gateways = _d(values.get("gateways"))
    proxy = _d(_d(values.get("global")).get("proxy"))
    if gateways.get("securityContext"):
        pod_sc = dict(gateways["securityContext"])
    else:
        pod_sc = {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]}
        if gateways.get("seccompProfile"):
            pod_sc["seccompProfile"] = dict(gateways["seccompProfile"])
    labels = {
        "sidecar.istio.io/inject": "false",
        "service.istio.io/canonical-name": deployment,
        "service.istio.io/canonical-revision": "latest",
        GATEWAY_NAME_LABEL: name,
        f"{GATEWAY_GROUP}/gateway-class-name": "istio",
        "gateway.istio.io/managed": "istio.io-gateway-controller",
    }
    container: dict[str, Any] = {
        "name": "istio-proxy",
        "image": "istio/proxyv2",
        "securityContext": {
            "capabilities": {"drop": ["ALL"]},
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsUser": 1337,
            "runAsGroup": 1337,
            "runAsNonRoot": True,
        },
        "ports": [
            {"containerPort": 15020, "name": "metrics", "protocol": "TCP"},
            {"containerPort": 15021, "name": "status-port", "protocol": "TCP"},
            {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"},
        ],
    }
    if proxy.get("resources"):
        container["resources"] = {k: v for k, v in proxy["resources"].items() if v is not None}
    volumes = [
        {"name": "workload-socket", "emptyDir": {}},
        {"name": "credential-socket", "emptyDir": {}},
        {"name": "workload-certs", "emptyDir": {}},
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
        {"name": "istio-data", "emptyDir": {}},
        {"name": "istio-podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
        {"name": "istio-token", "projected": {"sources": [
            {"serviceAccountToken": {"path": "istio-token", "expirationSeconds": 43200, "audience": "istio-ca"}}]}},
        {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
    ]  # fmt: skip
    owner = {"aicloud.dev/provisioned-by": f"istiod for Gateway {namespace}/{name}"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": deployment, "namespace": namespace, "annotations": dict(owner)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": deployment, "namespace": namespace, "annotations": dict(owner)},
            "spec": {
                "selector": {"matchLabels": {GATEWAY_NAME_LABEL: name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": pod_sc,
                        "serviceAccountName": deployment,
                        "containers": [container],
                        "volumes": volumes,
                    },
                },
            },
        },
    ]
