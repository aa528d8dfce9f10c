"""Every Kubernetes object in every stack's plan passes strict schema validation, offline.

Built-in kinds are checked against the OpenAPI schema of the region's cluster version (bundled by
`kubernetes-validate`); custom resources against their upstream CRDs vendored at the pinned
version (`components/upstream`; an unknown kind fails: vendor its CRD). Helm releases are not objects and are skipped.
"""

from __future__ import annotations

import pytest

from components.k8s_schema import SKIPPED_TYPES, kubernetes_objects, validate_object
from tests.endpoints.endpoint_helpers import stack_plan

STACKS = ["dev", "staging", "prod"]


def cluster_version(plan, reg) -> str:
    key = plan.region_of(reg)
    return plan.config.region(key).cluster.version


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_object_passes_strict_validation(stack):
    plan = stack_plan(stack)
    objects = kubernetes_objects(plan.resources)
    assert objects, f"{stack} renders no Kubernetes objects"
    problems = []
    for reg, obj in objects:
        problems += [f"{reg.name}: {p}" for p in validate_object(obj, cluster_version(plan, reg))]
    assert problems == []
    # Everything of a kubernetes:* type was either validated or is a Helm release.
    k8s_types = [r for r in plan.resources if r.custom and r.type.startswith("kubernetes:")]
    assert len(objects) + sum(1 for r in k8s_types if r.type in SKIPPED_TYPES) == len(k8s_types)
