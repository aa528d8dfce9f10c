"""Zero-trust guardrails: each starts from a happy-path resource (or stack), changes one field and
asserts the exact message; the shipped stacks pass every one of them."""

from __future__ import annotations

import json

import pytest
from policy_harness import DELETE, Spec, change, check_resource, messages, put

from components.k8s_security import Allow, default_deny_ingress, from_prometheus, namespace_manifest
from components.k8s_security import allow_ingress as allow_doc

NS = "kubernetes:core/v1:Namespace"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
RELEASE = "kubernetes:helm.sh/v3:Release"


def ns_stack() -> list[Spec]:
    return [
        Spec(NS, "serving-ns", namespace_manifest("aicloud-serving")),
        Spec(NETPOL, "serving-deny", default_deny_ingress("aicloud-serving"), parent="serving-ns"),
    ]


# --------------------------------------------------------------------------- pod security


def test_restricted_namespace_passes():
    assert check_resource("kubernetes-namespace-require-pod-security", NS, namespace_manifest("x")) == []


def test_namespace_without_psa_labels_is_reported():
    props = put(namespace_manifest("x"), "metadata.labels", {"app": "x"})
    assert check_resource("kubernetes-namespace-require-pod-security", NS, props) == [
        "Namespace 'x' does not enforce a Pod Security Standard (label pod-security.kubernetes.io/enforce is "
        "missing). Create it with components.k8s_security.secure_namespace, which sets enforce: restricted."
    ]


def test_privileged_namespace_without_a_reason_is_reported():
    props = namespace_manifest("agents", level="privileged", reason="hostPath")
    assert check_resource("kubernetes-namespace-require-pod-security", NS, props) == []
    props = put(props, "metadata.annotations", DELETE)
    assert check_resource("kubernetes-namespace-require-pod-security", NS, props) == [
        "Namespace 'agents' enforces only the privileged Pod Security Standard without a stated reason. Enforce "
        "restricted, or record why the pods need more in the aicloud.dev/pod-security-reason annotation."
    ]


# --------------------------------------------------------------------------- default deny


def test_namespace_with_default_deny_passes():
    assert messages("kubernetes-namespace-require-default-deny", ns_stack()) == []


def test_namespace_without_default_deny_is_reported():
    stack = [s for s in ns_stack() if s.name != "serving-deny"]
    assert messages("kubernetes-namespace-require-default-deny", stack) == [
        "Namespace 'aicloud-serving' has no default-deny ingress NetworkPolicy, so every pod in the cluster can "
        "reach every pod in it. Create it with components.k8s_security.secure_namespace (podSelector {}, "
        "policyTypes [Ingress], no rules) and allow only the traffic it needs."
    ]


def test_a_policy_that_admits_something_is_not_a_default_deny():
    stack = change(ns_stack(), "serving-deny", "spec.ingress", [{"from": [from_prometheus()]}])
    assert len(messages("kubernetes-namespace-require-default-deny", stack)) == 1


def test_helm_release_creating_its_namespace_is_reported():
    stack = [*ns_stack(), Spec(RELEASE, "keda", {"name": "keda", "namespace": "keda", "createNamespace": True})]
    assert messages("kubernetes-namespace-require-default-deny", stack) == [
        "Helm release 'keda' creates namespace 'keda' itself, without Pod Security labels or a default-deny policy. "
        "Create the namespace with components.k8s_security.secure_namespace and set createNamespace: false."
    ]


# --------------------------------------------------------------------------- explicit allows


def test_allow_with_peers_and_ports_passes():
    doc = allow_doc("ns", Allow("scrape", "why", peers=[from_prometheus()], ports=[(9464, "TCP")]))
    assert check_resource("kubernetes-network-policy-require-explicit-peers", NETPOL, doc) == []


def test_allow_from_everyone_is_reported():
    doc = allow_doc("ns", Allow("scrape", "why", peers=[from_prometheus()], ports=[(9464, "TCP")]))
    bad = put(doc, "spec.ingress[0].from", DELETE)
    assert check_resource("kubernetes-network-policy-require-explicit-peers", NETPOL, bad) == [
        "NetworkPolicy 'allow-scrape' (ingress[0]) admits traffic from every source (no `from`). Name the peers: a "
        "namespaceSelector, a podSelector or the ipBlock of the load balancer."
    ]
    bad = put(doc, "spec.ingress[0].ports", [])
    assert check_resource("kubernetes-network-policy-require-explicit-peers", NETPOL, bad) == [
        "NetworkPolicy 'allow-scrape' (ingress[0]) admits every port (no `ports`). List the ports the peers need."
    ]


# --------------------------------------------------------------------------- service account tokens

DEPLOYMENT = {
    "kind": "Deployment",
    "metadata": {"name": "server"},
    "spec": {
        "template": {
            "spec": {"automountServiceAccountToken": False, "containers": [{"name": "server", "image": "s:1"}]}
        }
    },
}


def test_pod_without_token_passes():
    assert check_resource("kubernetes-pod-disallow-unneeded-token", "kubernetes:apps/v1:Deployment", DEPLOYMENT) == []


def test_pod_mounting_a_token_without_a_reason_is_reported():
    props = put(DEPLOYMENT, "spec.template.spec.automountServiceAccountToken", DELETE)
    assert check_resource("kubernetes-pod-disallow-unneeded-token", "kubernetes:apps/v1:Deployment", props) == [
        "Deployment 'server' (spec.template.spec) mounts a ServiceAccount token. Set automountServiceAccountToken: "
        "false on the pod, or annotate the Deployment with aicloud.dev/kubernetes-api saying why it calls the "
        "Kubernetes API."
    ]
    props = put(props, "metadata.annotations", {"aicloud.dev/kubernetes-api": "patches the canary"})
    assert check_resource("kubernetes-pod-disallow-unneeded-token", "kubernetes:apps/v1:Deployment", props) == []


def test_service_account_mounting_its_token_is_reported():
    sa = {"kind": "ServiceAccount", "metadata": {"name": "aicloud-server"}}
    assert check_resource("kubernetes-pod-disallow-unneeded-token", "kubernetes:core/v1:ServiceAccount", sa) == [
        "ServiceAccount 'aicloud-server' mounts its token into every pod that uses it. Set "
        "automountServiceAccountToken: false, or annotate it with aicloud.dev/kubernetes-api saying why its pods "
        "call the Kubernetes API."
    ]
    ok = {**sa, "automountServiceAccountToken": False}
    assert check_resource("kubernetes-pod-disallow-unneeded-token", "kubernetes:core/v1:ServiceAccount", ok) == []


# --------------------------------------------------------------------------- Grafana

KPS = {
    "name": "kps",
    "chart": "kube-prometheus-stack",
    "values": {"grafana": {"enabled": True, "admin": {"existingSecret": "grafana-admin"}}},
}


def test_grafana_with_generated_secret_passes():
    assert check_resource("kubernetes-grafana-require-generated-admin", RELEASE, KPS) == []


def test_grafana_with_chart_default_login_is_reported():
    props = put(KPS, "values.grafana.admin", DELETE)
    assert check_resource("kubernetes-grafana-require-generated-admin", RELEASE, props) == [
        "Helm release 'kps' leaves Grafana with the chart's default admin login. Generate the password "
        "(pulumi_random) into a Secret and set grafana.admin.existingSecret (with userKey and passwordKey)."
    ]


def test_grafana_password_literal_is_reported():
    props = put(KPS, "values.grafana.adminPassword", "prom-operator")
    assert check_resource("kubernetes-grafana-require-generated-admin", RELEASE, props) == [
        "Helm release 'kps' sets Grafana's admin password in the chart values (grafana.adminPassword), where anyone "
        "who can read the release sees it. Generate it (pulumi_random) into a Secret and point "
        "grafana.admin.existingSecret at it."
    ]


# --------------------------------------------------------------------------- front doors


LISTENER = "aws:lb/listener:Listener"


def test_tls_listener_passes():
    assert check_resource("aicloud-front-door-require-tls", LISTENER, {"port": 443, "protocol": "TLS"}) == []


def test_plain_tcp_listener_is_reported():
    assert check_resource(
        "aicloud-front-door-require-tls", LISTENER, {"port": 80, "protocol": "TCP"}, name="nlb-80"
    ) == [
        "Load balancer listener 'nlb-80' serves plain TCP on port 80. Listen with TLS (or HTTPS) and a certificate; "
        "plain HTTP only as a redirect to HTTPS."
    ]


def test_http_listener_that_only_redirects_passes():
    props = {
        "port": 80,
        "protocol": "HTTP",
        "defaultActions": [{"type": "redirect", "redirect": {"protocol": "HTTPS"}}],
    }
    assert check_resource("aicloud-front-door-require-tls", LISTENER, props) == []


def test_accelerator_listening_on_80_is_reported():
    props = {"portRanges": [{"fromPort": 80, "toPort": 80}, {"fromPort": 443, "toPort": 443}]}
    got = check_resource("aicloud-front-door-require-tls", "aws:globalaccelerator/listener:Listener", props, name="ga")
    assert got == [
        "Global Accelerator listener 'ga' accepts ports other than 443 (80-80); its endpoints would serve them in "
        "plain text. Accept only 443 and terminate TLS at the load balancer."
    ]


def gcp_door() -> list[Spec]:
    return [
        Spec("gcp:compute/uRLMap:URLMap", "redirect", {"defaultUrlRedirect": {"httpsRedirect": True}}),
        Spec("gcp:compute/targetHttpProxy:TargetHttpProxy", "http", {"urlMap": "redirect"}, deps=["redirect"]),
    ]


def test_gcp_http_proxy_on_a_redirect_passes():
    assert messages("gcp-front-door-http-redirect-only", gcp_door()) == []


def test_gcp_http_proxy_serving_the_backend_is_reported():
    stack = change(gcp_door(), "redirect", "defaultUrlRedirect", DELETE)
    stack = change(stack, "redirect", "defaultService", "backend")
    assert messages("gcp-front-door-http-redirect-only", stack) == [
        "HTTP proxy 'http' serves the front door in plain HTTP. Point it at a URL map whose defaultUrlRedirect has "
        "httpsRedirect: true, so port 80 only redirects to HTTPS."
    ]


# --------------------------------------------------------------------------- metrics


def server_stack() -> list[Spec]:
    pod = {
        "containers": [
            {
                "name": "server",
                "command": ["python", "-m", "workloads.server"],
                "args": ["--port", "8080", "--metrics-port", "9464"],
                "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9464}],
            }
        ]
    }
    return [
        Spec(
            "kubernetes:apps/v1:Deployment",
            "clf-stable",
            {"kind": "Deployment", "metadata": {"name": "clf-stable"}, "spec": {"template": {"spec": pod}}},
        ),
        Spec(
            "kubernetes:core/v1:Service",
            "clf",
            {"metadata": {"name": "clf"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
        ),
        Spec(
            "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding",
            "clf-tgb",
            {"metadata": {"name": "clf-nlb"}, "spec": {"serviceRef": {"name": "clf", "port": 80}}},
        ),
    ]


def test_server_with_its_own_metrics_port_passes():
    assert messages("aicloud-metrics-not-public", server_stack()) == []


def test_server_serving_metrics_on_the_inference_port_is_reported():
    stack = change(server_stack(), "clf-stable", "spec.template.spec.containers[0].args", ["--port", "8080"])
    assert messages("aicloud-metrics-not-public", stack) == [
        "Deployment 'clf-stable' serves the model server's /metrics on its inference port, which the front doors "
        "route to. Pass --metrics-port (a port named 'metrics') so only Prometheus reaches the metrics."
    ]


def test_load_balanced_service_exposing_metrics_is_reported():
    ports = [
        {"name": "http", "port": 80, "targetPort": "http"},
        {"name": "metrics", "port": 9464, "targetPort": "metrics"},
    ]
    stack = change(server_stack(), "clf", "spec.ports", ports)
    assert messages("aicloud-metrics-not-public", stack) == [
        "Service 'clf' is reached by a load balancer and exposes the 'metrics' port. Keep metrics on a Service (or "
        "PodMonitor) that only Prometheus reaches."
    ]


# --------------------------------------------------------------------------- CI roles


def trust(sub: str, op: str = "StringEquals") -> dict:
    host = "token.actions.githubusercontent.com"
    cond = {"StringEquals": {f"{host}:aud": "sts.amazonaws.com"}}
    cond.setdefault(op, {})[f"{host}:sub"] = sub
    return {
        "assumeRolePolicy": json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{host}"},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": cond,
                    }
                ],
            }
        )
    }


def test_ci_role_pinned_to_an_environment_passes():
    props = trust("repo:acme/aicloud:environment:preview-prod")
    assert check_resource("ci-role-trust-pinned-to-environment", "aws:iam/role:Role", props) == []


@pytest.mark.parametrize(
    "sub, op",
    [
        ("repo:acme/aicloud:*", "StringLike"),
        ("repo:acme/aicloud:ref:refs/heads/main", "StringEquals"),
        ("repo:acme/aicloud:environment:*", "StringEquals"),
    ],
)
def test_ci_role_trusting_branches_or_wildcards_is_reported(sub, op):
    got = check_resource("ci-role-trust-pinned-to-environment", "aws:iam/role:Role", trust(sub, op), name="ci-deploy")
    assert got == [
        "IAM role 'ci-deploy' trusts GitHub Actions without pinning one repository environment. Require StringEquals "
        "token.actions.githubusercontent.com:aud = sts.amazonaws.com and token.actions.githubusercontent.com:sub = "
        "repo:<owner>/<repo>:environment:<name> (no wildcard), so only that environment's reviewed jobs can assume it."
    ]
