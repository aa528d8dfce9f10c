"""Zero-trust guardrails: what a stack must not switch off.

- every namespace enforces Pod Security Admission (`restricted`, or a lower level with a stated
  reason) and starts from a default-deny ingress NetworkPolicy; no Helm release creates a
  namespace behind the stack's back;
- NetworkPolicy allows name their peers and ports (an empty `from` admits every pod);
- pods mount a ServiceAccount token only where they call the Kubernetes API (and say so);
- Grafana's admin login is a generated secret, never a chart default or a literal;
- front doors listen with TLS (plain HTTP only as a redirect to HTTPS);
- the model server's `/metrics` is served on its own port, which no front door reaches.

The CI side (GitHub workflows, OIDC roles) is checked by `policies/workflows.py` and by
`ci-role-trust-pinned-to-environment` here.
"""

from __future__ import annotations

import json
from typing import Any

from pulumi_policy import ReportViolation

from policies.common import UNKNOWN, Res, Rule, StackView, as_dict, as_list, dig, pod_templates, truthy

NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
SERVICE = "kubernetes:core/v1:Service"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
TARGET_GROUP_BINDING = "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding"
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
PSA_LEVELS = ("restricted", "baseline", "privileged")
PSA_REASON = "aicloud.dev/pod-security-reason"
API_ACCESS = "aicloud.dev/kubernetes-api"
"""Annotation on a workload (or ServiceAccount) that mounts a token: why it calls the API."""
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "default")
METRICS_PORT_NAME = "metrics"
SERVER_MODULE = "workloads.server"
GITHUB_HOST = "token.actions.githubusercontent.com"


def k8s_name(res: Res) -> str:
    name = dig(res.props, "metadata.name")
    return name if isinstance(name, str) else res.name


# --------------------------------------------------------------------------- namespaces


def namespace_pod_security(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    meta = as_dict(res.props.get("metadata"))
    labels = meta.get("labels")
    if labels is UNKNOWN:
        return
    level = as_dict(labels).get(PSA_ENFORCE)
    name = k8s_name(res)
    if level is UNKNOWN:
        return
    if level not in PSA_LEVELS:
        report(
            f"Namespace '{name}' does not enforce a Pod Security Standard (label {PSA_ENFORCE} is "
            f"{repr(level) if level else 'missing'}). Create it with components.k8s_security.secure_namespace, "
            "which sets enforce: restricted."
        )
    elif level != "restricted" and not str(as_dict(meta.get("annotations")).get(PSA_REASON) or "").strip():
        report(
            f"Namespace '{name}' enforces only the {level} Pod Security Standard without a stated reason. Enforce "
            f"restricted, or record why the pods need more in the {PSA_REASON} annotation."
        )


def _default_deny(policy: Res) -> bool:
    spec = as_dict(policy.props.get("spec"))
    return (
        as_dict(spec.get("podSelector")) == {}
        and "Ingress" in as_list(spec.get("policyTypes"))
        and not as_list(spec.get("ingress"))
    )


def namespace_default_deny(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    policies = view.of_type(NETWORK_POLICY)
    for ns in view.of_type(NAMESPACE):
        name = k8s_name(ns)
        if name in SYSTEM_NAMESPACES:
            continue
        denied = any(
            dig(p.props, "metadata.namespace") in (name, UNKNOWN) and _default_deny(p) and view.same_scope(p, ns)
            for p in policies
        )
        if not denied:
            report(
                f"Namespace '{name}' has no default-deny ingress NetworkPolicy, so every pod in the cluster can "
                "reach every pod in it. Create it with components.k8s_security.secure_namespace (podSelector {}, "
                "policyTypes [Ingress], no rules) and allow only the traffic it needs.",
                ns.urn,
            )
    for rel in view.of_type(HELM_RELEASE):
        if truthy(rel.props.get("createNamespace")) is True:
            report(
                f"Helm release '{rel.props.get('name') or rel.name}' creates namespace "
                f"'{rel.props.get('namespace')}' itself, without Pod Security labels or a default-deny policy. "
                "Create the namespace with components.k8s_security.secure_namespace and set createNamespace: false.",
                rel.urn,
            )


def network_policy_explicit(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    spec = res.props.get("spec")
    if spec is UNKNOWN:
        return
    for i, rule in enumerate(as_list(as_dict(spec).get("ingress"))):
        rule = as_dict(rule)
        where = f"NetworkPolicy '{k8s_name(res)}' (ingress[{i}])"
        peers = rule.get("from")
        if peers is not UNKNOWN and not as_list(peers):
            report(
                f"{where} admits traffic from every source (no `from`). Name the peers: a namespaceSelector, a "
                "podSelector or the ipBlock of the load balancer."
            )
        ports = rule.get("ports")
        if ports is not UNKNOWN and not as_list(ports):
            report(f"{where} admits every port (no `ports`). List the ports the peers need.")


# --------------------------------------------------------------------------- service account tokens


def _api_reason(res: Res) -> bool:
    return bool(str(as_dict(dig(res.props, "metadata.annotations")).get(API_ACCESS) or "").strip())


def service_account_token(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    if res.type == SERVICE_ACCOUNT:
        flag = res.props.get("automountServiceAccountToken")
        if flag is UNKNOWN or truthy(flag) is False or _api_reason(res):
            return
        report(
            f"ServiceAccount '{k8s_name(res)}' mounts its token into every pod that uses it. Set "
            "automountServiceAccountToken: false, or annotate it with "
            f"{API_ACCESS} saying why its pods call the Kubernetes API."
        )
        return
    for tpl in pod_templates(res):
        flag = tpl.spec.get("automountServiceAccountToken")
        if flag is UNKNOWN or truthy(flag) is False or _api_reason(res):
            continue
        report(
            f"{res.kind} '{k8s_name(res)}' ({tpl.where}) mounts a ServiceAccount token. Set "
            f"automountServiceAccountToken: false on the pod, or annotate the {res.kind} with {API_ACCESS} "
            "saying why it calls the Kubernetes API."
        )


# --------------------------------------------------------------------------- Grafana


GRAFANA_CHARTS = {"kube-prometheus-stack": "grafana", "grafana": ""}


def grafana_admin(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    chart = res.props.get("chart")
    if chart not in GRAFANA_CHARTS:
        return
    values = res.props.get("values")
    if values is UNKNOWN:
        return
    prefix = GRAFANA_CHARTS[chart]
    grafana = as_dict(dig(values, prefix)) if prefix else as_dict(values)
    if prefix and grafana.get("enabled") is False:
        return
    name = res.props.get("name") or res.name
    key = f"{prefix}." if prefix else ""
    if grafana.get("adminPassword") not in (None, UNKNOWN):
        report(
            f"Helm release '{name}' sets Grafana's admin password in the chart values ({key}adminPassword), "
            "where anyone who can read the release sees it. Generate it (pulumi_random) into a Secret and "
            f"point {key}admin.existingSecret at it."
        )
    if not dig(grafana, "admin.existingSecret"):
        report(
            f"Helm release '{name}' leaves Grafana with the chart's default admin login. Generate the password "
            f"(pulumi_random) into a Secret and set {key}admin.existingSecret (with userKey and passwordKey)."
        )


# --------------------------------------------------------------------------- front doors


def listener_tls(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    p = res.props
    if res.type == "aws:lb/listener:Listener":
        protocol = p.get("protocol")
        if protocol is UNKNOWN or protocol in ("TLS", "HTTPS"):
            return
        actions = as_list(p.get("defaultActions"))
        redirect = [a for a in actions if as_dict(a).get("type") == "redirect"]
        if protocol == "HTTP" and redirect and all(dig(a, "redirect.protocol") == "HTTPS" for a in redirect):
            return
        report(
            f"Load balancer listener '{res.name}' serves plain {protocol or 'TCP'} on port {p.get('port')}. Listen "
            "with TLS (or HTTPS) and a certificate; plain HTTP only as a redirect to HTTPS."
        )
    elif res.type == "aws:globalaccelerator/listener:Listener":
        ranges = p.get("portRanges")
        if ranges is UNKNOWN:
            return
        plain_ports = [
            f"{dig(r, 'fromPort')}-{dig(r, 'toPort')}"
            for r in as_list(ranges)
            if UNKNOWN not in (dig(r, "fromPort"), dig(r, "toPort"))
            and (dig(r, "fromPort"), dig(r, "toPort")) != (443, 443)
        ]
        if plain_ports:
            report(
                f"Global Accelerator listener '{res.name}' accepts ports other than 443 ({', '.join(plain_ports)}); "
                "its endpoints would serve them in plain text. Accept only 443 and terminate TLS at the load "
                "balancer."
            )


def gcp_http_redirect_only(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    maps = view.of_type("gcp:compute/uRLMap:URLMap")
    for proxy in view.of_type("gcp:compute/targetHttpProxy:TargetHttpProxy"):
        targets = view.referenced(proxy, "urlMap", maps)
        if not targets:
            continue
        if all(truthy(dig(m.props, "defaultUrlRedirect.httpsRedirect")) is True for m in targets):
            continue
        report(
            f"HTTP proxy '{proxy.name}' serves the front door in plain HTTP. Point it at a URL map whose "
            "defaultUrlRedirect has httpsRedirect: true, so port 80 only redirects to HTTPS.",
            proxy.urn,
        )


# --------------------------------------------------------------------------- metrics off the front doors


def _server_containers(tpl: Any) -> list[dict[str, Any]]:
    out = []
    for c in as_list(tpl.spec.get("containers")):
        c = as_dict(c)
        words = [str(w) for w in [*as_list(c.get("command")), *as_list(c.get("args"))]]
        if SERVER_MODULE in words:
            out.append(c)
    return out


def metrics_port_private(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    """The server's metrics have their own port; Services that front doors reach do not expose it."""
    for res in view.resources:
        for tpl in pod_templates(res):
            for c in _server_containers(tpl):
                args = [str(a) for a in as_list(c.get("args"))]
                if "--metrics-port" not in args:
                    report(
                        f"{res.kind} '{k8s_name(res)}' serves the model server's /metrics on its inference port, "
                        "which the front doors route to. Pass --metrics-port (a port named "
                        f"'{METRICS_PORT_NAME}') so only Prometheus reaches the metrics.",
                        res.urn,
                    )
    exposed: dict[str, Res] = {}
    for svc in view.of_type(SERVICE):
        kind = dig(svc.props, "spec.type")
        neg = as_dict(dig(svc.props, "metadata.annotations")).get("cloud.google.com/neg")
        if kind in ("LoadBalancer", "NodePort") or (isinstance(neg, str) and "exposed_ports" in neg):
            exposed[svc.urn] = svc
    services = view.of_type(SERVICE)
    for tgb in view.of_type(TARGET_GROUP_BINDING):
        ref = dig(tgb.props, "spec.serviceRef.name")
        for svc in services:
            if k8s_name(svc) == ref and view.same_scope(svc, tgb):
                exposed[svc.urn] = svc
    for svc in exposed.values():
        for port in as_list(dig(svc.props, "spec.ports")):
            port = as_dict(port)
            if METRICS_PORT_NAME in (port.get("name"), port.get("targetPort")):
                report(
                    f"Service '{k8s_name(svc)}' is reached by a load balancer and exposes the '{METRICS_PORT_NAME}' "
                    "port. Keep metrics on a Service (or PodMonitor) that only Prometheus reaches.",
                    svc.urn,
                )


# --------------------------------------------------------------------------- CI roles


def ci_role_trust(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    doc = res.props.get("assumeRolePolicy")
    if doc is UNKNOWN or not isinstance(doc, str):
        return
    try:
        policy = json.loads(doc)
    except ValueError:
        return
    for stmt in as_list(policy.get("Statement")):
        stmt = as_dict(stmt)
        federated = str(dig(stmt, "Principal.Federated") or "")
        if GITHUB_HOST not in federated:
            continue
        cond = as_dict(stmt.get("Condition"))
        equals = as_dict(cond.get("StringEquals"))
        sub = equals.get(f"{GITHUB_HOST}:sub")
        aud = equals.get(f"{GITHUB_HOST}:aud")
        like = as_dict(cond.get("StringLike"))
        if (
            not isinstance(sub, str)
            or ":environment:" not in sub
            or "*" in sub
            or aud != "sts.amazonaws.com"
            or f"{GITHUB_HOST}:sub" in like
        ):
            report(
                f"IAM role '{res.name}' trusts GitHub Actions without pinning one repository environment. Require "
                f"StringEquals {GITHUB_HOST}:aud = sts.amazonaws.com and {GITHUB_HOST}:sub = "
                "repo:<owner>/<repo>:environment:<name> (no wildcard), so only that environment's reviewed "
                "jobs can assume it."
            )


RULES = [
    Rule(
        "kubernetes-namespace-require-pod-security",
        "Namespaces enforce a Pod Security Standard: restricted, or a lower level with a stated reason.",
        "security",
        namespace_pod_security,
        types=(NAMESPACE,),
    ),
    Rule(
        "kubernetes-namespace-require-default-deny",
        "Every namespace the stack creates has a default-deny ingress NetworkPolicy; no Helm release creates one.",
        "security",
        namespace_default_deny,
        stack=True,
    ),
    Rule(
        "kubernetes-network-policy-require-explicit-peers",
        "NetworkPolicy allows name their peers and ports (no rule admitting everyone).",
        "security",
        network_policy_explicit,
        types=(NETWORK_POLICY,),
    ),
    Rule(
        "kubernetes-pod-disallow-unneeded-token",
        "Pods and ServiceAccounts do not mount API tokens unless the workload states why it calls the API.",
        "security",
        service_account_token,
        types=("kubernetes:*",),
    ),
    Rule(
        "kubernetes-grafana-require-generated-admin",
        "Grafana's admin login is a generated Secret (admin.existingSecret), never a chart default or a literal.",
        "security",
        grafana_admin,
        types=(HELM_RELEASE,),
    ),
    Rule(
        "aicloud-front-door-require-tls",
        "Front-door listeners use TLS; plain HTTP only redirects to HTTPS.",
        "security",
        listener_tls,
        types=("aws:lb/listener:Listener", "aws:globalaccelerator/listener:Listener"),
    ),
    Rule(
        "gcp-front-door-http-redirect-only",
        "GCP front doors answer plain HTTP only with a redirect to HTTPS.",
        "security",
        gcp_http_redirect_only,
        stack=True,
    ),
    Rule(
        "aicloud-metrics-not-public",
        "The model server's /metrics has its own port, and no Service a load balancer reaches exposes it.",
        "security",
        metrics_port_private,
        stack=True,
    ),
    Rule(
        "ci-role-trust-pinned-to-environment",
        "IAM roles trusted by GitHub Actions require the STS audience and one exact repository environment.",
        "security",
        ci_role_trust,
        types=("aws:iam/role:Role",),
    ),
]
