"""The shipped stacks keep every zero-trust guardrail, and a stack that switches one off is
flagged by the offline plan (the same rules the policy pack runs in `pulumi preview`)."""

from __future__ import annotations

import pytest

import components.endpoint.manifests as endpoint_manifests
import components.k8s_security as k8s_security
import components.monitoring as monitoring
from policies.zero_trust import RULES
from stacks.plan import run_plan

ZERO_TRUST = {r.name for r in RULES}


@pytest.fixture(scope="module")
def dev():
    return run_plan("dev")


def _flagged(plan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in plan.findings:
        if f["policy"] in ZERO_TRUST:
            out.setdefault(f["policy"], []).append(f["message"])
    return out


def test_dev_passes_every_zero_trust_rule(dev):
    assert _flagged(dev) == {}


def test_every_namespace_of_dev_has_psa_and_default_deny(dev):
    namespaces = {r.inputs["metadata"]["name"]: r for r in dev.of_type("kubernetes:core/v1:Namespace")}
    assert set(namespaces) >= {"aicloud-serving", "aicloud-training", "monitoring", "aicloud-node-agents"}
    denied = {
        r.inputs["metadata"]["namespace"]
        for r in dev.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if r.inputs["metadata"]["name"] == k8s_security.DEFAULT_DENY
    }
    assert denied == set(namespaces)
    levels = {n: r.inputs["metadata"]["labels"][k8s_security.PSA_ENFORCE] for n, r in namespaces.items()}
    assert {n for n, level in levels.items() if level != "restricted"} == {"aicloud-node-agents"}


def test_switching_off_psa_labels_is_flagged(monkeypatch):
    monkeypatch.setattr(k8s_security, "psa_labels", lambda level="restricted": {})
    assert "kubernetes-namespace-require-pod-security" in _flagged(run_plan("dev"))


def test_switching_off_the_metrics_port_is_flagged(monkeypatch):
    real = endpoint_manifests.server_args

    def without_metrics_port(plan, track):
        args = real(plan, track)
        i = args.index("--metrics-port")
        return args[:i] + args[i + 2 :]

    monkeypatch.setattr(endpoint_manifests, "server_args", without_metrics_port)
    assert "aicloud-metrics-not-public" in _flagged(run_plan("dev"))


def test_chart_default_grafana_login_is_flagged(monkeypatch):
    real = monitoring.prometheus_stack_values

    def default_login(spec):
        values = real(spec)
        values["grafana"].pop("admin")
        return values

    monkeypatch.setattr(monitoring, "prometheus_stack_values", default_login)
    assert "kubernetes-grafana-require-generated-admin" in _flagged(run_plan("dev"))
