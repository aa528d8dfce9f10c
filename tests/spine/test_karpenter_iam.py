"""Karpenter's AWS side (controller policy, node role, interruption queue and its rules) held
against Karpenter's own template at the pinned version: the getting-started CloudFormation of
aws/karpenter-provider-aws v1.14.1, vendored under components/upstream/manifests/
karpenter-cloudformation (pins.yaml, refreshed by components/upstream/refresh.py).

A permission the controller calls that our policy lacks shows only on a real cloud, and late: without
`iam:ListInstanceProfiles` the EC2NodeClass finalizer (instance-profile cleanup) fails on every
delete, so `pulumi destroy` or replacing a node class hangs on the finalizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import upstream
from components.autoscaling import (
    INTERRUPTION_EVENTS,
    event_pattern,
    interruption_queue_policy,
    karpenter_controller_policy,
    karpenter_values,
)

TEMPLATE = Path(upstream.__file__).parent / "manifests" / "karpenter-cloudformation" / "cloudformation.yaml"
CLUSTER, REGION, ACCOUNT = "c1", "us-west-2", "123456789012"
NODE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/c1-karpenter-node"
QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:c1-interruption"
SUBSTITUTIONS = {
    "${ClusterName}": CLUSTER,
    "${AWS::Partition}": "aws",
    "${AWS::Region}": REGION,
    "${AWS::AccountId}": ACCOUNT,
    "${AWS::URLSuffix}": "amazonaws.com",
    "${KarpenterNodeRole.Arn}": NODE_ROLE,
    "${KarpenterInterruptionQueue.Arn}": QUEUE,
}

NOT_NEEDED = {
    # aicloud creates the node role's instance profile and names it in EC2NodeClass
    # `spec.instanceProfile` (never `spec.role`), so Karpenter creates, tags and deletes none.
    "AllowScopedInstanceProfileCreationActions": "instanceProfile",
    "AllowScopedInstanceProfileTagActions": "instanceProfile",
    "AllowScopedInstanceProfileActions": "instanceProfile",
    # Read only when `settings.enableZonalShift` is on (chart default false; aicloud leaves it off).
    "AllowZonalShiftStatusReadOnly": "enableZonalShift",
}
"""Upstream statements the controller needs only for a configuration aicloud does not use."""


class _CfnLoader(yaml.SafeLoader):
    pass


def _sub(loader: yaml.Loader, node: yaml.Node) -> str:
    text = loader.construct_scalar(node)
    for key, value in SUBSTITUTIONS.items():
        text = text.replace(key, value)
    assert "${" not in text, f"unsubstituted reference in {text[:200]}"
    return text


_CfnLoader.add_constructor("!Sub", _sub)
_CfnLoader.add_constructor("!Ref", lambda loader, node: {"Ref": loader.construct_scalar(node)})
_CfnLoader.add_constructor("!GetAtt", lambda loader, node: {"GetAtt": loader.construct_scalar(node)})


def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)["Resources"]


def upstream_controller_statements() -> list[dict[str, Any]]:
    out = []
    for res in template().values():
        if res["Type"] == "AWS::IAM::ManagedPolicy":
            out += json.loads(res["Properties"]["PolicyDocument"])["Statement"]
    return out


def _set(value: Any) -> set[str]:
    return {value} if isinstance(value, str) else set(value)


def missing_grants(ours: dict[str, Any], statements: list[dict[str, Any]], skip: dict[str, str]) -> list[str]:
    """Upstream grants (Sid: action on resource) that our policy lacks, Sid by Sid; a statement of
    ours must allow at least the upstream actions on the same resources."""
    by_sid = {s.get("Sid"): s for s in ours["Statement"]}
    out = []
    for stmt in statements:
        sid = stmt["Sid"]
        if sid in skip:
            continue
        mine = by_sid.get(sid)
        for action in sorted(_set(stmt["Action"])):
            if mine is None or action not in _set(mine["Action"]):
                out.append(f"{sid}: {action}")
        if mine is not None and _set(mine["Resource"]) != _set(stmt["Resource"]):
            out.append(f"{sid}: resources {sorted(_set(mine['Resource']))} != {sorted(_set(stmt['Resource']))}")
    return out


def _normal(value: Any, queue_ref: Any = None) -> Any:
    """A policy statement as IAM reads it: YAML booleans are the strings IAM compares, the
    template's queue reference is the queue's ARN."""
    if value == queue_ref and queue_ref is not None:
        return QUEUE
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return {k: _normal(v, queue_ref) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v, queue_ref) for v in value]
    return value


def ours() -> dict[str, Any]:
    return karpenter_controller_policy(
        cluster_name=CLUSTER,
        cluster_arn=f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
        region=REGION,
        node_role_arn=NODE_ROLE,
        queue_arn=QUEUE,
    )


def test_the_controller_policy_grants_everything_the_upstream_template_grants():
    statements = upstream_controller_statements()
    assert {s["Sid"] for s in statements} >= set(NOT_NEEDED)
    assert missing_grants(ours(), statements, NOT_NEEDED) == []


def test_a_planted_missing_action_is_reported():
    policy = ours()
    for stmt in policy["Statement"]:
        if stmt["Sid"] == "AllowInstanceProfileReadActions":
            stmt["Action"] = ["iam:GetInstanceProfile"]
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != "AllowUnscopedInstanceProfileListAction"]
    assert missing_grants(policy, upstream_controller_statements(), NOT_NEEDED) == [
        "AllowUnscopedInstanceProfileListAction: iam:ListInstanceProfiles"
    ]


def test_what_the_skipped_statements_depend_on_holds():
    values = karpenter_values(cluster_name=CLUSTER, cluster_endpoint="https://e", queue_name="q", role_arn="r",
                              system_pool="system")  # fmt: skip
    chart_default = upstream.chart_truth("karpenter").values["settings"]["enableZonalShift"]
    assert chart_default is False and "enableZonalShift" not in values["settings"]


def test_scoped_conditions_match_upstream_where_both_grant():
    """Same Sid, same condition keys and values (the cluster scoping), except PassRole, which
    upstream also allows to the China partition's EC2 service principal."""
    by_sid = {s["Sid"]: s for s in ours()["Statement"]}
    for stmt in upstream_controller_statements():
        if stmt["Sid"] in NOT_NEEDED or stmt["Sid"] == "AllowPassingInstanceRole":
            continue
        assert by_sid[stmt["Sid"]].get("Condition") == stmt.get("Condition"), stmt["Sid"]
    passed = by_sid["AllowPassingInstanceRole"]["Condition"]["StringEquals"]["iam:PassedToService"]
    assert passed == "ec2.amazonaws.com"


def test_queue_policy_rules_and_node_role_match_upstream():
    res = template()
    queue = res["KarpenterInterruptionQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] == 300 and queue["SqsManagedSseEnabled"] is True
    up_policy = res["KarpenterInterruptionQueuePolicy"]["Properties"]["PolicyDocument"]
    mine = interruption_queue_policy(QUEUE)
    assert mine["Id"] == up_policy["Id"]
    queue_ref = {"GetAtt": "KarpenterInterruptionQueue.Arn"}
    assert [_normal(st, queue_ref) for st in up_policy["Statement"]] == [_normal(st) for st in mine["Statement"]]
    rules = [r["Properties"] for r in res.values() if r["Type"] == "AWS::Events::Rule"]
    assert all(t["Arn"] == queue_ref for r in rules for t in r["Targets"])
    patterns = sorted(json.dumps(r["EventPattern"], sort_keys=True) for r in rules)
    assert patterns == sorted(json.dumps(event_pattern(e), sort_keys=True) for e in INTERRUPTION_EVENTS)
    managed = {a.rsplit("/", 1)[1] for a in res["KarpenterNodeRole"]["Properties"]["ManagedPolicyArns"]}
    from tests.endpoints.endpoint_helpers import stack_plan

    plan = stack_plan("dev")
    attached = {
        r.inputs["policyArn"].rsplit("/", 1)[1]
        for r in plan.resources
        if r.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
        and r.inputs["role"] == "${aws-use1-karpenter-node-role.name}"
    }
    assert attached == managed


# ----------------------------------------------------------------------------- the controller's pods


def pending_replicas(values: dict[str, Any], floor: int) -> list[str]:
    """Karpenter replicas that can never schedule: the chart's merged values ask for more replicas
    than the managed nodes they may run on, under a required anti-affinity per hostname (its own
    nodeAffinity keeps them off every node Karpenter launches)."""
    anti = (values.get("affinity") or {}).get("podAntiAffinity") or {}
    required = anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    per_host = any(t.get("topologyKey") == "kubernetes.io/hostname" for t in required)
    if per_host and values.get("replicas", 1) > floor:
        return [f"{values['replicas']} replicas, one per node, on {floor} managed node(s)"]
    return []


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_karpenter_replica_finds_a_managed_node(stack):
    from policies.readiness.helm import merged_values
    from tests.endpoints.endpoint_helpers import stack_plan

    plan = stack_plan(stack)
    truth = upstream.chart_truth("karpenter")
    releases = [
        r for r in plan.resources if r.type == "kubernetes:helm.sh/v3:Release" and r.name.endswith("-karpenter-release")
    ]
    assert releases
    for release in releases:
        values = merged_values(truth, release.inputs["values"])
        region = release.name.removesuffix("-karpenter-release")
        pool = values["nodeSelector"]["aicloud.dev/pool"]
        groups = [
            r for r in plan.resources
            if r.type == "aws:eks/nodeGroup:NodeGroup" and r.name.startswith(f"{region}-")
            and r.inputs["labels"].get("aicloud.dev/pool") == pool
        ]  # fmt: skip
        assert len(groups) == 1, release.name
        assert pending_replicas(values, groups[0].inputs["scalingConfig"]["minSize"]) == [], release.name


def test_a_planted_second_replica_on_one_system_node_is_reported():
    truth = upstream.chart_truth("karpenter")
    from policies.readiness.helm import merged_values

    chart_default = merged_values(truth, {})
    assert chart_default["replicas"] == 2  # upstream's default, with the per-host anti-affinity
    assert pending_replicas(chart_default, 1) == ["2 replicas, one per node, on 1 managed node(s)"]
    ours = karpenter_values(cluster_name=CLUSTER, cluster_endpoint="https://e", queue_name="q", role_arn="r",
                            system_pool="system", system_nodes=1)  # fmt: skip
    assert pending_replicas(merged_values(truth, ours), 1) == []
