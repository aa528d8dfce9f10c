"""The two services the retraining trigger talks to: Prometheus (HTTP API) and Kubernetes (the
official `kubernetes` client with the pod's service account). Both are thin; the shapes they read
are parsed by pure functions here, so they are tested without a cluster.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

__all__ = [
    "JobState",
    "KubeClient",
    "PrometheusClient",
    "PrometheusError",
    "job_state",
    "parse_vector",
]

_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class PrometheusError(RuntimeError):
    """The Prometheus API answered with an error or an unexpected shape."""


def parse_vector(payload: dict[str, Any], label: str) -> dict[str, float]:
    """``{label value: sample}`` from an instant-query answer of result type ``vector``."""
    if payload.get("status") != "success":
        raise PrometheusError(f"query failed: {payload.get('errorType')}: {payload.get('error')}")
    data = payload.get("data") or {}
    if data.get("resultType") != "vector":
        raise PrometheusError(f"expected a vector result, got {data.get('resultType')!r}")
    out: dict[str, float] = {}
    for sample in data.get("result", []):
        key = sample.get("metric", {}).get(label, "")
        out[key] = float(sample["value"][1])
    return out


class PrometheusClient:
    """Instant queries against ``<url>/api/v1/query``."""

    def __init__(self, url: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=_TIMEOUT, transport=transport)

    def vector(self, query: str, label: str) -> dict[str, float]:
        """Run ``query``; the value of each series keyed by its ``label``."""
        response = self._client.get("/api/v1/query", params={"query": query})
        try:
            payload = response.json()
        except ValueError as exc:
            raise PrometheusError(f"HTTP {response.status_code}: not JSON: {response.text[:200]}") from exc
        return parse_vector(payload, label)

    def close(self) -> None:
        self._client.close()


JobState = Literal["running", "succeeded", "failed", "missing"]


def job_state(obj: dict[str, Any] | None) -> JobState:
    """State of a batch/v1 Job or a kubeflow.org PyTorchJob from its status conditions."""
    if obj is None:
        return "missing"
    conditions = {
        c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, dict)
    }
    if conditions.get("Failed") == "True":
        return "failed"
    if conditions.get("Complete") == "True" or conditions.get("Succeeded") == "True":
        return "succeeded"
    return "running"


_PATCH_TYPES = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json"}


class KubeClient:
    """Create, read and patch namespaced objects through the official Kubernetes client's dynamic
    client: the REST resource of every kind (its plural) comes from the API server's discovery,
    never from a guess. In a pod it authenticates with the pod's service account."""

    def __init__(self, api_client: Any | None = None) -> None:
        from kubernetes import client, config, dynamic

        if api_client is None:
            config.load_incluster_config()
            api_client = client.ApiClient()
        self._api = api_client
        self._dynamic = dynamic.DynamicClient(api_client)

    def _resource(self, api_version: str, kind: str) -> Any:
        return self._dynamic.resources.get(api_version=api_version, kind=kind)

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        return resource.create(body=manifest, namespace=meta["namespace"]).to_dict()

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self._resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any], *, type: str = "merge"
    ) -> None:
        """Patch an object: ``merge`` (JSON merge patch, RFC 7386) or ``strategic`` (Kubernetes'
        strategic merge patch: lists of containers merge by name; built-in kinds only)."""
        if type not in _PATCH_TYPES:
            raise ValueError(f"patch type must be one of {sorted(_PATCH_TYPES)}, got {type!r}")
        self._resource(api_version, kind).patch(
            body=patch, name=name, namespace=namespace, content_type=_PATCH_TYPES[type]
        )

    def close(self) -> None:
        self._api.close()
