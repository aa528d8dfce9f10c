"""Serving through a Gateway: the class's implementation (Istio) is installed where the Gateway is,
its data plane is admitted by the serving namespace's Pod Security level, lands on a pool, and is
reached through the NetworkPolicies; each planted gap is reported by the readiness check."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import upstream
from components.endpoint.manifests import GATEWAY_NAME_LABEL
from components.gateway import (
    GATEWAY_CLASSES,
    ISTIO_GATEWAY_POD_LABELS,
    ISTIO_NAMESPACE,
    ISTIOD_PORTS,
    SERVICE_TYPE_ANNOTATION,
    gateway_api_crds,
    istio_allows,
    istiod_values,
)
from components.k8s_security import namespace_manifests
from policies.readiness.admission import violations
from policies.readiness.gateways import istio_data_plane
from policies.readiness.helm import merged_values
from stacks.plan import run_plan
from stacks.plan.readiness import readiness_report
from tests.readiness.test_readiness import _k8s, findings, healthy, messages, release
from tests.stack_helpers import config_errors, raw_stack

POD = "spec.template.spec"
STACKS = Path(__file__).resolve().parents[2] / "stacks"


def _with_gateway(spec: dict[str, Any], *, implementation: bool = True, crds: bool = True) -> dict[str, Any]:
    """`healthy()` serving through an Istio Gateway in a `restricted` namespace, with a general
    pool for the data plane, the Gateway API CRDs and istiod (unless told otherwise)."""
    spec["pools"].append(
        {"name": "system", "instanceTypes": ["m6i.xlarge"], "labels": {"aicloud.dev/pool": "system"}, "taints": [],
         "scalingConfig": {"minSize": 2, "maxSize": 4, "desiredSize": 2}}
    )  # fmt: skip
    spec["objects"] += namespace_manifests("serving")[:1]
    server = next(o for o in spec["objects"] if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    server["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    server["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    if crds:
        spec["objects"] += [copy.deepcopy(d) for d in gateway_api_crds()]
    if implementation:
        spec["releases"] += [
            {"name": "istio-base", "chart": "base", "version": "1.30.3", "namespace": ISTIO_NAMESPACE,
             "repositoryOpts": {"repo": "https://istio-release.storage.googleapis.com/charts"}, "values": {}},
            {"name": "istiod", "chart": "istiod", "version": "1.30.3", "namespace": ISTIO_NAMESPACE,
             "repositoryOpts": {"repo": "https://istio-release.storage.googleapis.com/charts"},
             "values": istiod_values("system")},
        ]  # fmt: skip
    spec["objects"] += [
        _k8s("gateway.networking.k8s.io/v1", "Gateway", "gw", spec={"gatewayClassName": "istio", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Same"}}}]})
        | {"metadata": {"name": "gw", "namespace": "serving", "annotations": {SERVICE_TYPE_ANNOTATION: "ClusterIP"}}},
        _k8s("gateway.networking.k8s.io/v1", "HTTPRoute", "server", spec={
            "parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "server", "port": 80}]}]}),
    ]  # fmt: skip
    return spec


def test_a_gateway_with_its_implementation_has_no_finding():
    spec = _with_gateway(healthy())
    assert findings(spec) == []


def test_a_gateway_whose_class_has_no_controller_is_reported_with_its_route():
    spec = _with_gateway(healthy(), implementation=False)
    assert findings(spec, "readiness-crd-controller") == [
        ("readiness-crd-controller", "Gateway/gw", "spec.gatewayClassName"),
        ("readiness-crd-controller", "HTTPRoute/server", "spec.parentRefs[0]"),
    ]
    assert "the istiod chart" in messages(spec, "readiness-crd-controller")[0]


def test_gateway_api_objects_without_their_crds_are_reported():
    spec = _with_gateway(healthy(), crds=False)
    assert findings(spec, "readiness-crd-controller") == [
        ("readiness-crd-controller", "Gateway/gw", "kind"),
        ("readiness-crd-controller", "HTTPRoute/server", "kind"),
    ]


def test_a_route_to_a_gateway_the_stack_does_not_render_is_reported():
    spec = _with_gateway(healthy())
    next(o for o in spec["objects"] if o["kind"] == "HTTPRoute")["spec"]["parentRefs"] = [{"name": "elsewhere"}]
    assert findings(spec, "readiness-crd-controller") == [
        ("readiness-crd-controller", "HTTPRoute/server", "spec.parentRefs[0]")
    ]


def test_the_istio_data_plane_without_a_seccomp_profile_is_rejected_by_restricted():
    spec = _with_gateway(healthy())
    release(spec, "istiod")["values"]["gateways"] = {}
    assert findings(spec, "readiness-pod-admission") == [
        ("readiness-pod-admission", "Deployment/gw-istio", f"{POD}.containers[0].securityContext.seccompProfile")
    ]
    assert "enforces Pod Security 'restricted'" in messages(spec, "readiness-pod-admission")[0]


def test_the_istio_data_plane_needs_an_untainted_pool():
    spec = _with_gateway(healthy())
    spec["pools"] = [p for p in spec["pools"] if p["name"] != "system"]
    assert findings(spec, "readiness-schedulable") == [
        ("readiness-schedulable", "Deployment/gw-istio", "spec.template.spec")
    ]


def test_pod_security_reports_a_server_that_runs_as_root_in_a_restricted_namespace():
    spec = _with_gateway(healthy())
    server = next(o for o in spec["objects"] if o["kind"] == "Deployment")
    server["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0}
    got = findings(spec, "readiness-pod-admission")
    assert got and got[0][:2] == ("readiness-pod-admission", "Deployment/server")


def test_pod_security_levels():
    ok = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}}}],
    }  # fmt: skip
    assert violations(ok, "restricted") == []
    bad = copy.deepcopy(ok)
    bad["hostNetwork"] = True
    bad["volumes"] = [{"name": "h", "hostPath": {"path": "/"}}]
    assert [w for w, _ in violations(bad, "baseline")] == ["hostNetwork", "volumes[0]"]
    bad = copy.deepcopy(ok)
    bad["securityContext"]["sysctls"] = [{"name": "net.core.somaxconn", "value": "1024"}]
    assert [w for w, _ in violations(bad, "restricted")] == ["securityContext.sysctls[0]"]
    assert violations(bad, "privileged") == []


# --------------------------------------------------------------------------- the model against Istio's template


def test_the_data_plane_model_follows_the_vendored_istio_template():
    """Each fragment `istio_data_plane` reproduces, as the pinned istiod chart's template says it."""
    template = upstream.chart_file("istiod", "files/kube-gateway.yaml")
    for fragment in (
        "{{- if .Values.gateways.securityContext }}\n"
        "        {{- toYaml .Values.gateways.securityContext | nindent 8 }}",
        '        sysctls:\n        - name: net.ipv4.ip_unprivileged_port_start\n          value: "0"',
        "      {{- if .Values.gateways.seccompProfile }}\n        seccompProfile:",
        "      - name: istio-proxy",
        "        {{- if .Values.global.proxy.resources }}\n        resources:",
        "          capabilities:\n            drop:\n            - ALL\n          allowPrivilegeEscalation: false\n"
        "          privileged: false\n          readOnlyRootFilesystem: true\n"
        '          runAsUser: {{ .ProxyUID | default "1337" }}\n'
        '          runAsGroup: {{ .ProxyGID | default "1337" }}\n'
        "          runAsNonRoot: true",
        '            "gateway.networking.k8s.io/gateway-name" .Name',
        '            "gateway.istio.io/managed" "istio.io-gateway-controller"',
        "  name: {{.DeploymentName | quote}}",
        "      - emptyDir:\n          medium: Memory\n        name: istio-envoy",
        "      - name: istio-podinfo\n        downwardAPI:",
        "      - name: istio-token\n        projected:",
    ):
        assert fragment in template, fragment
    # The data plane reaches istiod on the port istiod's allow admits (CA and discovery address).
    assert f".svc:{ISTIOD_PORTS['xds']}" in template
    # No node selection: the pods go to any untainted node.
    assert "nodeSelector" not in template and "tolerations" not in template
    # The only volume types the template uses (restricted allows all of them).
    volumes = template.split("      volumes:", 1)[1].split("---", 1)[0]
    for kind in ("hostPath", "nfs", "iscsi"):
        assert kind not in volumes
    # The chart defaults leave the seccomp profile unset: without our value, restricted rejects the pods.
    defaults = upstream.chart_truth("istiod").values
    assert defaults["gateways"]["seccompProfile"] == {} and defaults["gateways"]["securityContext"] == {}
    merged = merged_values(upstream.chart_truth("istiod"), istiod_values("system"))
    pod = istio_data_plane({"metadata": {"name": "gw", "namespace": "serving"}, "spec": {}}, merged)[1]
    assert pod["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "100m",
        "memory": "128Mi",
    }


def test_the_gateway_crds_are_the_upstream_standard_channel_bundle():
    crds = gateway_api_crds()
    names = {d["metadata"]["name"] for d in crds}
    assert {"gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io",
            "gatewayclasses.gateway.networking.k8s.io"} <= names  # fmt: skip
    assert {d["metadata"]["annotations"]["gateway.networking.k8s.io/channel"] for d in crds} == {"standard"}
    assert {d["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] for d in crds} == {"v1.5.1"}
    sources = yaml.safe_load((Path(upstream.HERE) / "manifests/gateway-api/SOURCES.yaml").read_text())
    assert len(sources["files"]) == len(crds) and all(len(f["sha256"]) == 64 for f in sources["files"])


def test_istio_charts_are_published_at_the_pinned_version():
    for name in ("base", "istiod"):
        truth = upstream.chart_truth(name)
        assert truth.version in truth.published_versions and truth.published_kind == "release_builder"


# --------------------------------------------------------------------------- network paths


def test_network_policies_let_the_front_door_gateway_and_istiod_traffic_through():
    from components.endpoint import plan_endpoint
    from components.endpoint.manifests import network_policy_manifests
    from stacks.config import parse_stack_config

    config = parse_stack_config(raw_stack("staging"), "staging")
    region = config.region("aws-usw2")
    plan = plan_endpoint(config.serving, region)
    policies = network_policy_manifests(plan, [region.network.cidr])
    merged = merged_values(upstream.chart_truth("istiod"), istiod_values("system"))
    gw = {"metadata": {"name": plan.gateway_name, "namespace": plan.namespace}, "spec": {"gatewayClassName": "istio"}}
    pod_labels = istio_data_plane(gw, merged)[1]["spec"]["template"]["metadata"]["labels"]

    def admits(policy: dict[str, Any], labels: dict[str, str], port: int) -> bool:
        sel = policy["spec"]["podSelector"].get("matchLabels", {})
        return all(labels.get(k) == v for k, v in sel.items()) and any(
            p["port"] == port for rule in policy["spec"]["ingress"] for p in rule["ports"]
        )

    # The front door's load balancer reaches the data plane on the listener port...
    front = [p for p in policies if p["metadata"]["name"] == f"allow-{plan.gateway_name}-front-door"]
    assert front and admits(front[0], pod_labels, 80)
    # ...and the data plane reaches the servers: the allow's peer selects the data plane's labels.
    to_servers = next(p for p in policies if p["metadata"]["name"] == f"allow-{plan.model}-gateway")
    peer = to_servers["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert peer == {GATEWAY_NAME_LABEL: plan.gateway_name} and all(pod_labels.get(k) == v for k, v in peer.items())
    # istiod admits xDS from every namespace's data planes.
    xds = next(a for a in istio_allows() if a.name == "gateway-xds")
    assert all(pod_labels.get(k) == v for k, v in ISTIO_GATEWAY_POD_LABELS.items())
    assert xds.peers == [{"namespaceSelector": {}, "podSelector": {"matchLabels": ISTIO_GATEWAY_POD_LABELS}}]
    assert (ISTIOD_PORTS["xds"], "TCP") in xds.ports


# --------------------------------------------------------------------------- config and the shipped stack


def test_a_gateway_class_nothing_implements_fails_at_plan_time():
    def mutate(raw: dict[str, Any]) -> None:
        raw["serving"]["gateway"]["className"] = "nginx"

    errors = config_errors(raw_stack("staging"), mutate, "staging")
    assert any("serving.gateway.className" in e and "'nginx'" in e and "allowed: istio" in e for e in errors), errors
    assert sorted(GATEWAY_CLASSES) == ["istio"]


@pytest.fixture(scope="module")
def staging_without_istio(tmp_path_factory: pytest.TempPathFactory):
    doc = yaml.safe_load((STACKS / "Pulumi.staging.yaml").read_text())
    doc["config"]["aicloud:serving"]["gateway"]["install"] = False
    folder = tmp_path_factory.mktemp("stacks")
    (folder / "Pulumi.staging.yaml").write_text(yaml.safe_dump(doc))
    return run_plan("staging", folder)


def test_the_shipped_staging_stack_without_its_gateway_implementation_is_reported(staging_without_istio):
    got = {(f.rule, f.cluster, f.resource) for f in readiness_report(staging_without_istio).findings}
    assert got == {
        ("readiness-crd-controller", region, resource)
        for region in ("aws-usw2", "gcp-usc1")
        for resource in ("Gateway/classifier-gw", "HTTPRoute/classifier")
    }
    types = {r.type for r in staging_without_istio.resources}
    assert "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition" not in types
