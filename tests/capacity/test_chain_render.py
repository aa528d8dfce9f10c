"""Rendered capacity tiers: Karpenter NodePools / EC2NodeClasses per tier validate against the
vendored upstream CRDs (karpenter 1.14.1); GKE tier arguments use pulumi_gcp's own NodePool names."""

from __future__ import annotations

import inspect

import pulumi_gcp as gcp

from components.capacity import TIER_LABEL, CapacityTier, gke_tier_args, karpenter_tier_pools
from components.k8s_schema import validate_object

# The single-tier NodePool / EC2NodeClass a pool renders without a chain (issue 12's shape).
BASE_POOL = {
    "apiVersion": "karpenter.sh/v1",
    "kind": "NodePool",
    "metadata": {"name": "train"},
    "spec": {
        "template": {
            "metadata": {"labels": {"aicloud.dev/pool": "train"}},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "train"},
                "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
                "requirements": [
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p5.48xlarge"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a", "us-east-1b"]},
                ],
            },
        },
        "limits": {"cpu": "768", "nvidia.com/gpu": "32"},
        "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "10m"},
    },
}
BASE_CLASS = {
    "apiVersion": "karpenter.k8s.aws/v1",
    "kind": "EC2NodeClass",
    "metadata": {"name": "train"},
    "spec": {
        "amiSelectorTerms": [{"alias": "al2023@latest"}],
        "role": "node-role",
        "subnetSelectorTerms": [{"id": "subnet-0abc"}],
        "securityGroupSelectorTerms": [{"id": "sg-0abc"}],
    },
}
CHAIN = [
    CapacityTier.model_validate(t)
    for t in (
        {
            "reservation": "arn:aws:ec2:us-east-1:123456789012:capacity-reservation/cr-0f9e8d7c6b5a40312",
            "zone": "us-east-1a",
            "maxNodes": 2,
        },
        {"capacityBlock": "cr-0a1b2c3d4e5f60718", "instanceType": "p5.48xlarge", "maxNodes": 4, "pricePerHour": 40.0},
        "on-demand",
        "spot",
    )
]


def limits(nodes):
    return {"cpu": str(192 * nodes), "nvidia.com/gpu": str(8 * nodes)}


def test_one_weighted_nodepool_per_tier_with_its_capacity_type():
    out = karpenter_tier_pools(BASE_POOL, BASE_CLASS, CHAIN, limits=limits)
    pools = [p for p, _ in out]
    assert [p["metadata"]["name"] for p in pools] == ["train-res0", "train-block1", "train-od", "train-spot"]
    assert [p["spec"]["weight"] for p in pools] == [100, 90, 80, 70]
    types = [
        next(
            r["values"]
            for r in p["spec"]["template"]["spec"]["requirements"]
            if r["key"] == "karpenter.sh/capacity-type"
        )
        for p in pools
    ]
    assert types == [["reserved"], ["reserved"], ["on-demand"], ["spot"]]
    assert [p["spec"]["template"]["metadata"]["labels"][TIER_LABEL] for p in pools] == [
        "reservation",
        "capacity-block",
        "on-demand",
        "spot",
    ]
    assert pools[0]["spec"]["limits"] == limits(2)
    assert pools[2]["spec"]["limits"] == BASE_POOL["spec"]["limits"]


def test_reserved_tiers_select_their_reservation_by_id():
    out = karpenter_tier_pools(BASE_POOL, BASE_CLASS, CHAIN, limits=limits)
    classes = [c for _, c in out]
    assert classes[0]["spec"]["capacityReservationSelectorTerms"] == [{"id": "cr-0f9e8d7c6b5a40312"}]
    assert classes[1]["spec"]["capacityReservationSelectorTerms"] == [{"id": "cr-0a1b2c3d4e5f60718"}]
    assert classes[2] is None and classes[3] is None
    assert out[0][0]["spec"]["template"]["spec"]["nodeClassRef"]["name"] == "train-res0"
    zone = [
        r for r in out[0][0]["spec"]["template"]["spec"]["requirements"] if r["key"] == "topology.kubernetes.io/zone"
    ]
    assert zone == [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"]}]


def test_rendered_tiers_validate_against_the_upstream_crds():
    out = karpenter_tier_pools(BASE_POOL, BASE_CLASS, CHAIN, limits=limits)
    docs = [d for pair in out for d in pair if d is not None]
    assert len(docs) == 6
    for doc in docs:
        assert validate_object(doc, "1.33") == [], doc["metadata"]["name"]


def test_a_planted_bad_tier_fails_the_crd():
    bad = CapacityTier.model_validate({"reservation": "not-an-id"})
    ((pool, node_class),) = karpenter_tier_pools(BASE_POOL, BASE_CLASS, [bad], limits=limits)
    errors = validate_object(node_class, "1.33")
    assert errors and "capacityReservationSelectorTerms[0].id" in errors[0]


def test_gke_tier_arguments_are_pulumi_gcp_nodepool_arguments():
    node_args = set(inspect.signature(gcp.container.outputs.NodePoolNodeConfig.__init__).parameters)
    pool_args = set(inspect.signature(gcp.container.NodePool._internal_init).parameters)
    for raw in (
        {"reservation": "projects/acme-ml-prod/zones/us-central1-a/reservations/h100"},
        {"flex": {"queued": True}},
        "spot",
        "on-demand",
    ):
        args = gke_tier_args(CapacityTier.model_validate(raw), training=True)
        assert set(args["node_config"]) <= node_args, raw
        assert set(args["pool"]) <= pool_args, raw
    flex = gke_tier_args(CapacityTier.model_validate({"flex": {"maxRunDuration": "7d", "queued": True}}), training=True)
    assert flex["node_config"]["flex_start"] is True and flex["node_config"]["max_run_duration"] == "604800s"
    assert flex["pool"] == {"queued_provisioning": {"enabled": True}}
    res = gke_tier_args(
        CapacityTier.model_validate({"reservation": "projects/acme-ml-prod/zones/us-central1-a/reservations/h100"}),
        training=True,
    )
    assert res["node_config"]["reservation_affinity"] == {
        "consume_reservation_type": "SPECIFIC_RESERVATION",
        "key": "compute.googleapis.com/reservation-name",
        "values": ["projects/acme-ml-prod/reservations/h100"],
    }
