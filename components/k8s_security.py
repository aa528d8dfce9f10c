"""Namespaces that trust nothing by default: Pod Security Admission labels and NetworkPolicies.

Every namespace aicloud creates goes through `secure_namespace`, which creates, as one unit:

- the Namespace with Pod Security Admission labels: `enforce` at the namespace's level
  (`restricted` unless a reason is given for `baseline` or `privileged`, recorded in the
  `aicloud.dev/pod-security-reason` annotation), and `warn`/`audit` at `restricted` so every
  relaxation stays visible in the API server's warnings and audit log;
- a default-deny **ingress** NetworkPolicy (`default-deny-ingress`: every pod, no rule), so a pod
  is reachable only through an explicit allow;
- one NetworkPolicy per `Allow`: these pods, these ports, from these peers.

Egress is not denied by default: workloads reach object storage, registries and cloud APIs whose
addresses are not stable CIDRs, and a NetworkPolicy cannot name a DNS host. Ingress is where the
issue was (anyone in the cluster could reach the model server, Prometheus, Grafana and the
trainers' rendezvous ports).

Pure helpers (`psa_labels`, `namespace_manifest`, `default_deny_ingress`, `allow_ingress`,
peer builders) return plain manifests, validated in the tests against the Kubernetes OpenAPI
schema (kubernetes-validate, strict); `secure_namespace` only creates them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

PsaLevel = Literal["restricted", "baseline", "privileged"]
PSA_PREFIX = "pod-security.kubernetes.io"
PSA_ENFORCE = f"{PSA_PREFIX}/enforce"
PSA_REASON = "aicloud.dev/pod-security-reason"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Label the API server sets on every namespace to its name (selectable in NetworkPolicies)."""
DEFAULT_DENY = "default-deny-ingress"
MANAGED = {"app.kubernetes.io/managed-by": "pulumi-aicloud"}

MONITORING_NAMESPACE = "monitoring"
"""Namespace of Prometheus and Grafana (components.monitoring)."""
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
"""Labels the Prometheus operator puts on every Prometheus pod."""

EPHEMERAL_PORTS = (32768, 60999)
"""Linux's default `net.ipv4.ip_local_port_range`: where NCCL's and gloo's bootstrap and data
sockets listen (they bind port 0), so trainer pods must reach each other on it."""


def psa_labels(level: PsaLevel = "restricted") -> dict[str, str]:
    """PSA labels: enforce `level`; warn and audit at `restricted` whatever is enforced."""
    return {
        PSA_ENFORCE: level,
        f"{PSA_ENFORCE}-version": "latest",
        f"{PSA_PREFIX}/warn": "restricted",
        f"{PSA_PREFIX}/warn-version": "latest",
        f"{PSA_PREFIX}/audit": "restricted",
        f"{PSA_PREFIX}/audit-version": "latest",
    }


def namespace_manifest(
    name: str,
    *,
    level: PsaLevel = "restricted",
    reason: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Namespace with PSA labels; a level below `restricted` needs a `reason`."""
    if level != "restricted" and not (reason and reason.strip()):
        raise ValueError(f"namespace {name!r}: pod security level {level!r} needs a stated reason")
    metadata: dict[str, Any] = {"name": name, "labels": {**MANAGED, **(labels or {}), **psa_labels(level)}}
    if level != "restricted":
        metadata["annotations"] = {PSA_REASON: reason}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def default_deny_ingress(namespace: str) -> dict[str, Any]:
    """A NetworkPolicy selecting every pod of `namespace` with no ingress rule: nothing gets in
    unless another policy allows it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": DEFAULT_DENY, "namespace": namespace, "labels": dict(MANAGED)},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


# ---------------------------------------------------------------------------------------- peers


def from_namespace(namespace: str, pods: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Pods (all, or those matching `pods`) of another namespace, by its name label."""
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
    if pods is not None:
        peer["podSelector"] = {"matchLabels": dict(pods)}
    return peer


def from_prometheus() -> dict[str, Any]:
    """The Prometheus pods of the monitoring namespace (the scrapers)."""
    return from_namespace(MONITORING_NAMESPACE, PROMETHEUS_POD_LABELS)


def from_pods(pods: Mapping[str, str]) -> dict[str, Any]:
    """Pods of the policy's own namespace matching `pods`."""
    return {"podSelector": {"matchLabels": dict(pods)}}


def from_cidrs(cidrs: Sequence[str]) -> list[dict[str, Any]]:
    """Addresses outside the cluster's pods (load balancers, health checkers), one peer each."""
    return [{"ipBlock": {"cidr": c}} for c in cidrs]


# --------------------------------------------------------------------------------------- allows


@dataclass(frozen=True)
class Allow:
    """One explicit ingress allow: to `pods` (label selector, empty = all) on `ports`, from `peers`.

    `ports` are `(port, protocol)` or `(first, last, protocol)` for a range; named ports (str) are
    resolved per pod by Kubernetes. A reason (`why`) is kept as an annotation: reviews read it.
    """

    name: str
    why: str
    peers: list[dict[str, Any]]
    ports: list[tuple[Any, ...]]
    pods: Mapping[str, str] = field(default_factory=dict)


def _port(entry: tuple[Any, ...]) -> dict[str, Any]:
    if len(entry) == 3:
        first, last, proto = entry
        return {"protocol": proto, "port": first, "endPort": last}
    port, proto = entry
    return {"protocol": proto, "port": port}


def allow_ingress(namespace: str, allow: Allow) -> dict[str, Any]:
    """The NetworkPolicy of one `Allow`."""
    if not allow.peers:
        raise ValueError(f"allow {allow.name!r} in {namespace!r}: name the peers (an empty `from` admits everyone)")
    if not allow.ports:
        raise ValueError(f"allow {allow.name!r} in {namespace!r}: name the ports (none would admit every port)")
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"allow-{allow.name}",
            "namespace": namespace,
            "labels": dict(MANAGED),
            "annotations": {"aicloud.dev/why": allow.why},
        },
        "spec": {
            "podSelector": {"matchLabels": dict(allow.pods)} if allow.pods else {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": list(allow.peers), "ports": [_port(p) for p in allow.ports]}],
        },
    }


def namespace_manifests(
    name: str,
    *,
    level: PsaLevel = "restricted",
    reason: str | None = None,
    labels: Mapping[str, str] | None = None,
    allows: Sequence[Allow] = (),
) -> list[dict[str, Any]]:
    """The Namespace, its default-deny policy and its allows, in creation order."""
    return [
        namespace_manifest(name, level=level, reason=reason, labels=labels),
        default_deny_ingress(name),
        *(allow_ingress(name, a) for a in allows),
    ]


def secure_namespace(
    resource_name: str,
    name: str,
    *,
    parent: pulumi.Resource,
    level: PsaLevel = "restricted",
    reason: str | None = None,
    labels: Mapping[str, str] | None = None,
    allows: Sequence[Allow] = (),
    opts: pulumi.ResourceOptions | None = None,
) -> k8s.core.v1.Namespace:
    """Create the namespace `name` with its PSA labels, default-deny ingress and allows.

    The policies are children of the Namespace resource (they go with it); `opts` are merged into
    the Namespace's options (e.g. `depends_on`). Returns the Namespace.
    """
    ns_doc, deny, *allowed = namespace_manifests(name, level=level, reason=reason, labels=labels, allows=allows)
    ns = k8s.core.v1.Namespace(
        resource_name,
        metadata=ns_doc["metadata"],
        opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=parent), opts),
    )
    under = pulumi.ResourceOptions(parent=ns, depends_on=[ns])
    for doc in (deny, *allowed):
        k8s.networking.v1.NetworkPolicy(
            f"{resource_name}-{doc['metadata']['name']}",
            metadata=doc["metadata"],
            spec=doc["spec"],
            opts=under,
        )
    return ns
