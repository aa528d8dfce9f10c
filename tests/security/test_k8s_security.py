"""Namespaces that trust nothing by default: PSA labels, default-deny ingress, explicit allows.

Every rendered manifest is checked against the Kubernetes OpenAPI schema in strict mode
(kubernetes-validate's bundled schemas, via components.k8s_schema)."""

from __future__ import annotations

import pulumi
import pytest

from components.k8s_schema import validate_object
from components.k8s_security import (
    DEFAULT_DENY,
    EPHEMERAL_PORTS,
    PSA_ENFORCE,
    PSA_REASON,
    Allow,
    allow_ingress,
    default_deny_ingress,
    from_cidrs,
    from_namespace,
    from_pods,
    namespace_manifest,
    namespace_manifests,
    secure_namespace,
)

K8S = "1.33"


def test_namespace_enforces_restricted_and_warns_and_audits_restricted():
    labels = namespace_manifest("aicloud-serving")["metadata"]["labels"]
    assert labels[PSA_ENFORCE] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_relaxed_level_needs_a_reason_and_records_it():
    with pytest.raises(ValueError, match="needs a stated reason"):
        namespace_manifest("agents", level="privileged")
    doc = namespace_manifest("agents", level="privileged", reason="hostPath for the kubelet socket")
    assert doc["metadata"]["labels"][PSA_ENFORCE] == "privileged"
    assert doc["metadata"]["annotations"][PSA_REASON] == "hostPath for the kubelet socket"
    # warn/audit stay at restricted: the relaxation is visible in every warning
    assert doc["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"


def test_default_deny_selects_every_pod_and_admits_nothing():
    doc = default_deny_ingress("ns")
    assert doc["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert doc["metadata"]["name"] == DEFAULT_DENY


def test_an_allow_names_peers_and_ports():
    allow = Allow(
        "trainer-peers",
        "rendezvous and NCCL between the pods of a job",
        peers=[from_pods({"job": "a"})],
        ports=[(29400, "TCP"), (*EPHEMERAL_PORTS, "TCP")],
        pods={"job": "a"},
    )
    doc = allow_ingress("aicloud-training", allow)
    (rule,) = doc["spec"]["ingress"]
    assert rule["ports"] == [
        {"protocol": "TCP", "port": 29400},
        {"protocol": "TCP", "port": 32768, "endPort": 60999},
    ]
    assert doc["metadata"]["annotations"]["aicloud.dev/why"].startswith("rendezvous")


@pytest.mark.parametrize("peers, ports, match", [([], [(80, "TCP")], "name the peers"), ([{}], [], "name the ports")])
def test_an_allow_without_peers_or_ports_is_refused(peers, ports, match):
    with pytest.raises(ValueError, match=match):
        allow_ingress("ns", Allow("x", "y", peers=peers, ports=ports))


def test_every_manifest_is_valid_kubernetes_in_strict_mode():
    docs = namespace_manifests(
        "aicloud-serving",
        allows=[
            Allow("lb", "front door", peers=from_cidrs(["10.0.0.0/16"]), ports=[(8080, "TCP")]),
            Allow(
                "scrape", "prometheus", peers=[from_namespace("monitoring", {"app": "p"})], ports=[("metrics", "TCP")]
            ),
            Allow("nccl", "peers", peers=[from_pods({"a": "b"})], ports=[(*EPHEMERAL_PORTS, "TCP")], pods={"a": "b"}),
        ],
    )
    problems = [p for d in docs for p in validate_object(d, K8S)]
    assert problems == []


def test_strict_validation_catches_a_misspelt_field():
    doc = default_deny_ingress("ns")
    doc["spec"]["policyType"] = ["Ingress"]
    assert validate_object(doc, K8S)


def test_secure_namespace_creates_the_namespace_and_its_policies_as_children(record):
    def program():
        parent = pulumi.ComponentResource("test:index:Parent", "p")
        secure_namespace(
            "p-ns",
            "aicloud-x",
            parent=parent,
            allows=[Allow("lb", "front door", peers=from_cidrs(["10.0.0.0/16"]), ports=[(8080, "TCP")])],
        )

    regs = record(program)
    ns = regs.one("kubernetes:core/v1:Namespace")
    assert ns.inputs["metadata"]["labels"][PSA_ENFORCE] == "restricted"
    policies = regs.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    assert sorted(p.inputs["metadata"]["name"] for p in policies) == ["allow-lb", DEFAULT_DENY]
    assert all(p.parent == ns.urn for p in policies)
