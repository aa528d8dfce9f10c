"""The names the stack config and the policy pack share: every rule of the pack and the levels a
stack may set for it (`aicloud:policy.enforcement`).

The stack config validates `enforcement` keys against `RULE_NAMES` without importing the pack
(policies read config types, never the reverse); `policies.registry` fails at import when its rules
and this list differ, so the two cannot drift. Add a rule's name here when you add the rule.
"""

from __future__ import annotations

from typing import Literal, get_args

Level = Literal["advisory", "mandatory", "remediate", "disabled"]
LEVELS: tuple[str, ...] = get_args(Level)

RULE_NAMES: tuple[str, ...] = (
    "aws-s3-bucket-disallow-unencrypted",
    "gcp-storage-bucket-disallow-unencrypted",
    "aws-s3-bucket-disallow-public-access",
    "gcp-storage-bucket-disallow-public-access",
    "aws-s3-bucket-require-tls",
    "aws-ec2-security-group-disallow-public-admin-ports",
    "gcp-compute-firewall-disallow-public-admin-ports",
    "aws-eks-cluster-disallow-public-endpoint",
    "gcp-container-cluster-disallow-public-endpoint",
    "aws-ec2-require-imdsv2",
    "gcp-container-node-pool-require-gke-metadata",
    "kubernetes-pod-require-non-root",
    "aicloud-kms-key-rotation-enabled",
    "kubernetes-namespace-require-pod-security",
    "kubernetes-namespace-require-default-deny",
    "kubernetes-network-policy-require-explicit-peers",
    "kubernetes-pod-disallow-unneeded-token",
    "kubernetes-grafana-require-generated-admin",
    "aicloud-front-door-require-tls",
    "gcp-front-door-http-redirect-only",
    "aicloud-metrics-not-public",
    "ci-role-trust-pinned-to-environment",
    "aicloud-data-protected-in-prod",
    "aicloud-cluster-deletion-protected-in-prod",
    "aws-s3-bucket-versioning-enabled",
    "gcp-storage-bucket-versioning-enabled",
    "aicloud-data-disallow-force-destroy",
    "aicloud-gpu-pool-tainted",
    "aicloud-gpu-workload-tolerates-pool",
    "aicloud-gpu-request-on-gpu-pool",
    "aicloud-gpu-device-plugin-tolerates-pools",
    "aicloud-gpu-device-plugin-selects-pools",
    "aicloud-gpu-device-plugin-present",
    "aicloud-gpu-device-plugin-gpu-nodes-only",
    "aicloud-region-allowed",
    "aicloud-spot-interruptible-in-prod",
    "aicloud-gpu-capacity-guaranteed-in-prod",
    "aicloud-gpu-cost-ceiling",
    "aicloud-gpus-per-pool-ceiling",
    "aicloud-inference-min-replicas",
    "aicloud-inference-disruption-budget",
    "aicloud-inference-probes",
    "aicloud-deployer-reaches-cluster-api",
    "aicloud-preview-reaches-cluster-api",
    "aicloud-eks-node-autoscaler-installed",
    "readiness-crd-schema",
    "readiness-crd-controller",
    "readiness-helm-chart",
    "readiness-helm-values",
    "readiness-pod-admission",
    "readiness-storage",
    "readiness-metrics",
    "readiness-schedulable",
    "readiness-capacity",
    "readiness-identity",
)
"""Every rule of the aicloud pack."""

ADVISORY_BY_DEFAULT: dict[str, str] = {
    "aicloud-gpu-capacity-guaranteed-in-prod": (
        "a training pool of H100/H200-class GPUs without a reservation, Capacity Block or flex-start tier "
        "still runs when the zone has on-demand GPUs; outside prod that is a warning worth reading, in prod "
        "(ENVIRONMENT_LEVELS) a run that waits days for GPUs is an outage"
    ),
}
"""The rules the pack ships at `advisory` instead of `mandatory`, each with the reason. Every other
rule is mandatory by default (tests/policies assert it); a stack raises or lowers any rule with
`aicloud:policy.enforcement`."""

ENVIRONMENT_LEVELS: dict[str, dict[str, Level]] = {
    "prod": {"aicloud-gpu-capacity-guaranteed-in-prod": "mandatory"},
}
"""Levels an environment gets before the stack's own `enforcement` (which still wins): prod makes
the capacity guardrail mandatory, so every prod stack (not only the shipped one) is held to it."""
