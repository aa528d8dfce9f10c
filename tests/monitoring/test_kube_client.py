"""The retraining trigger's Kubernetes client is the official `kubernetes` client: its dynamic
client finds each kind's REST resource through API discovery. Here it talks to a local HTTP stub
whose discovery documents are generated from the vendored upstream CRDs (`spec.names.plural`,
scope) and, for the built-in kinds the trigger touches, from the resource names a Kubernetes 1.33
API server serves; the requests it sends must use those paths. The hand-written client it
replaces (kind + "s") is planted to show the check catches a wrong plural."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from components.upstream import crd, crd_index
from workloads.retrain.clients import KubeClient

kubernetes = pytest.importorskip("kubernetes")

BUILTIN = {
    # group/version -> (resource, kind, namespaced), as `kubectl api-resources` lists them (1.33).
    "v1": [("services", "Service", True), ("configmaps", "ConfigMap", True), ("namespaces", "Namespace", False)],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True), ("ingresses", "Ingress", True)],
}


def discovery() -> dict[str, list[tuple[str, str, bool]]]:
    """group/version -> resources: the built-ins above plus every vendored CRD version."""
    out = {gv: list(rs) for gv, rs in BUILTIN.items()}
    for key in crd_index():
        group_version, kind = key.rsplit("/", 1)
        truth = crd(group_version, kind)
        out.setdefault(group_version, []).append((truth.plural, kind, truth.scope == "Namespaced"))
    return out


class _Api(BaseHTTPRequestHandler):
    resources: dict[str, list[tuple[str, str, bool]]] = {}
    seen: list[tuple[str, str, str]] = []
    auth: list[str] = []
    objects: dict[str, dict[str, Any]] = {}

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _resource_list(self, group_version: str) -> dict[str, Any]:
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": [
                {"name": n, "singularName": "", "namespaced": ns, "kind": k, "verbs": verbs}
                for n, k, ns in self.resources[group_version]
            ],
        }

    def _discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            return {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/api/v1":
            return self._resource_list("v1")
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for gv in self.resources:
                if "/" in gv:
                    group, version = gv.split("/")
                    groups.setdefault(group, []).append(version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in groups.items()
                ],
            }
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 3 and f"{parts[1]}/{parts[2]}" in self.resources:
            return self._resource_list(f"{parts[1]}/{parts[2]}")
        return None

    def _record(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null") if length else None
        self.seen.append((self.command, self.path, self.headers.get("Content-Type", "")))
        self.auth.append(self.headers.get("Authorization", ""))
        return body

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        doc = self._discovery(self.path.split("?")[0])
        if doc is not None:
            return self._send(200, doc)
        self._record()
        obj = self.objects.get(self.path)
        if obj is None:
            return self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                    "reason": "NotFound", "message": "not found"})  # fmt: skip
        return self._send(200, obj)

    def do_POST(self) -> None:  # noqa: N802
        body = self._record() or {}
        self.objects[f"{self.path}/{body['metadata']['name']}"] = body
        self._send(201, body)

    def do_PATCH(self) -> None:  # noqa: N802
        self._record()
        name = self.path.rsplit("/", 1)[1]
        self._send(
            200, self.objects.get(self.path, {"apiVersion": "v1", "kind": "Patched", "metadata": {"name": name}})
        )


@pytest.fixture()
def api() -> Iterator[tuple[str, type[_Api]]]:
    handler = type("Api", (_Api,), {"resources": discovery(), "seen": [], "auth": [], "objects": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def client(url: str, tmp_path) -> KubeClient:
    from kubernetes import client as k8s_client

    # A bearer token, as the in-cluster config sends the service-account token.
    config = k8s_client.Configuration(host=url, api_key={"authorization": "bearer t0k"})
    return KubeClient(k8s_client.ApiClient(config))


def test_the_trigger_creates_reads_and_patches_at_the_paths_discovery_names(api, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the discovery cache
    url, handler = api
    kube = client(url, tmp_path)
    job = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "j", "namespace": "ns"},
    }
    assert kube.create(job)["metadata"]["name"] == "j"
    assert kube.get("trainer.kubeflow.org/v1alpha1", "TrainJob", "ns", "j")["kind"] == "TrainJob"
    assert kube.get("apps/v1", "Deployment", "srv", "clf-canary") is None
    kube.patch("apps/v1", "Deployment", "srv", "clf-canary", {"a": 1}, type="strategic")
    kube.patch("gateway.networking.k8s.io/v1", "HTTPRoute", "srv", "clf", {"b": 2})
    kube.patch("serving.kserve.io/v1beta1", "InferenceService", "srv", "clf", {"c": 3})
    with pytest.raises(ValueError, match="patch type"):
        kube.patch("v1", "Service", "srv", "x", {}, type="json")
    kube.close()
    assert [(m, p) for m, p, _ in handler.seen] == [
        ("POST", "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ns/trainjobs"),
        ("GET", "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ns/trainjobs/j"),
        ("GET", "/apis/apps/v1/namespaces/srv/deployments/clf-canary"),
        ("PATCH", "/apis/apps/v1/namespaces/srv/deployments/clf-canary"),
        ("PATCH", "/apis/gateway.networking.k8s.io/v1/namespaces/srv/httproutes/clf"),
        ("PATCH", "/apis/serving.kserve.io/v1beta1/namespaces/srv/inferenceservices/clf"),
    ]
    assert set(handler.auth) == {"bearer t0k"}
    types = [t for m, _, t in handler.seen if m == "PATCH"]
    assert types[0].startswith("application/strategic-merge-patch+json")
    assert all(t.startswith("application/merge-patch+json") for t in types[1:])


def _path_problems(paths: dict[str, str]) -> list[str]:
    """Each vendored CRD's create path must end in its `spec.names.plural`."""
    problems = []
    for key, path in paths.items():
        group_version, kind = key.rsplit("/", 1)
        if not path.endswith(f"/{crd(group_version, kind).plural}"):
            problems.append(f"{kind}: {path}")
    return problems


def test_every_vendored_kind_is_created_at_its_crds_plural(api, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    url, handler = api
    kube = client(url, tmp_path)
    paths = {}
    for key in crd_index():
        group_version, kind = key.rsplit("/", 1)
        if crd(group_version, kind).scope != "Namespaced":
            continue
        kube.create({"apiVersion": group_version, "kind": kind, "metadata": {"name": "x", "namespace": "ns"}})
        paths[key] = handler.seen[-1][1]
    kube.close()
    assert len(paths) >= 15
    assert _path_problems(paths) == []


def test_planted_kind_plus_s_pluralisation_is_reported():
    """What the hand-written client did: `/namespaces/<ns>/<kind.lower()>s`."""

    def planted_path(api_version: str, kind: str, namespace: str) -> str:
        return f"/apis/{api_version}/namespaces/{namespace}/{kind.lower()}s"

    paths = {
        key: planted_path(key.rsplit("/", 1)[0], key.rsplit("/", 1)[1], "ns")
        for key in crd_index()
        if crd(*key.rsplit("/", 1)).scope == "Namespaced"
    }
    assert "EC2NodeClass" not in " ".join(_path_problems(paths))  # cluster-scoped, not created by the trigger
    assert _path_problems({"gateway.networking.k8s.io/v1/GatewayClass": planted_path(
        "gateway.networking.k8s.io/v1", "GatewayClass", "ns")}) == [
        "GatewayClass: /apis/gateway.networking.k8s.io/v1/namespaces/ns/gatewayclasss"
    ]  # fmt: skip
