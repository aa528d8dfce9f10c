"""The two services the retraining trigger talks to: Prometheus (HTTP API) and Kubernetes (in-cluster
REST API with the pod's service account). Both are thin; the shapes they read and write are built
and parsed by pure functions here, so they are tested without a cluster.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import httpx

from contracts.retrain import plural

__all__ = [
    "JobState",
    "KubeClient",
    "PrometheusClient",
    "PrometheusError",
    "job_state",
    "parse_vector",
    "resource_path",
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


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """REST path of a namespaced object."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural(kind)}"
    return f"{path}/{name}" if name else path


_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_PATCH_TYPES = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json"}


class KubeClient:
    """Create, read and merge-patch namespaced objects with the pod's service-account token."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if base_url is None:
            host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            base_url = f"https://{host}:{port}"
        if token is None:
            token = (_SA_DIR / "token").read_text().strip()
        verify: Any = ca_file or (str(_SA_DIR / "ca.crt") if (_SA_DIR / "ca.crt").exists() else True)
        self._client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            verify=verify,
            timeout=_TIMEOUT,
            transport=transport,
        )

    def _check(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code >= 400:
            raise RuntimeError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        path = resource_path(manifest["apiVersion"], manifest["kind"], meta["namespace"])
        return self._check(self._client.post(path, json=manifest), f"create {manifest['kind']} {meta['name']}")

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        response = self._client.get(resource_path(api_version, kind, namespace, name))
        if response.status_code == 404:
            return None
        return self._check(response, f"get {kind} {namespace}/{name}")

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any], *, type: str = "merge"
    ) -> None:
        """Patch an object: ``merge`` (JSON merge patch, RFC 7386) or ``strategic`` (Kubernetes'
        strategic merge patch: lists of containers merge by name; built-in kinds only)."""
        if type not in _PATCH_TYPES:
            raise ValueError(f"patch type must be one of {sorted(_PATCH_TYPES)}, got {type!r}")
        self._check(
            self._client.patch(
                resource_path(api_version, kind, namespace, name),
                content=json.dumps(patch),
                headers={"Content-Type": _PATCH_TYPES[type]},
            ),
            f"patch {kind} {namespace}/{name}",
        )

    def close(self) -> None:
        self._client.close()
