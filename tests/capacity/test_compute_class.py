"""GKE orders a pool's capacity tiers with a ComputeClass: one `nodepools` rule per tier node pool
in chain order, active migration back to the preferred tier; the tier pools carry the class's label
and taint and the pool's pods select the class (GKE docs, "About custom ComputeClasses"). Every
rendered ComputeClass validates against the CRD schema GKE serves (vendored from
datreeio/CRDs-catalog, components/upstream/crds/cloud.google.com)."""

from __future__ import annotations

import copy
import re

import pytest

from components import upstream
from components.capacity import COMPUTE_CLASS_LABEL, compute_class_manifest
from components.k8s_schema import object_errors
from policies.common import Res, pod_templates
from stacks.plan import run_plan
from tests.stack_helpers import config_errors, raw_stack

CC_TYPE = "kubernetes:cloud.google.com/v1:ComputeClass"
GKE_POOL = "gcp:container/nodePool:NodePool"


@pytest.fixture(scope="module")
def prod():
    return run_plan("prod")


def test_the_vendored_crd_is_gkes_cluster_scoped_computeclass_served_by_gke_itself():
    truth = upstream.crd("cloud.google.com/v1", "ComputeClass")
    assert truth is not None
    assert (truth.scope, truth.plural, truth.installed_by) == ("Cluster", "computeclasses", None)
    assert (truth.provided_by, truth.provided_since) == ("gke", "1.30.3-gke.1451000")
    # The JSON-schema adapter gave back a structural schema: no `additionalProperties: false` left,
    # the free-form maps (`nodeLabels`) keep theirs.
    text = repr(truth.schema)
    assert "'additionalProperties': False" not in text
    rule = truth.schema["properties"]["spec"]["properties"]["priorities"]["items"]
    assert rule["properties"]["nodeLabels"]["additionalProperties"] == {"type": "string"}


def test_a_rendered_computeclass_validates_and_a_planted_mistake_is_reported():
    manifest = compute_class_manifest("aicloud-train", ["train-res0", "train-flex"], pool="train")
    assert object_errors(manifest, "1.33") == []
    bad = copy.deepcopy(manifest)
    bad["spec"]["activeMigration"] = {"optimiseRulePriority": True}  # misspelt: required field missing
    bad["spec"]["whenUnsatisfiable"] = "Wait"
    errors = [(where, msg) for where, msg, _ in object_errors(bad, "1.33")]
    assert any(w == ".spec.whenUnsatisfiable" and "'Wait' is not one of" in m for w, m in errors), errors
    assert any(w == ".spec.activeMigration" and "optimiseRulePriority" in m for w, m in errors), errors
    assert any(w == ".spec.activeMigration" and "'optimizeRulePriority' is a required property" in m for w, m in errors)


def test_each_nodepools_rule_stands_alone_as_the_crds_validation_rule_demands():
    # The CRD's x-kubernetes-validations (CEL, not evaluated by the offline validator) say
    # "Nodepool field cannot be set along with other fields": our rules carry nothing else.
    truth = upstream.crd("cloud.google.com/v1", "ComputeClass")
    rules = truth.schema["properties"]["spec"]["properties"]["priorities"]["items"]["x-kubernetes-validations"]
    assert {"message": "Nodepool field cannot be set along with other fields",
            "rule": "has(self.nodepools) ? (size(dyn(self)) == 1) : true"} in rules  # fmt: skip
    manifest = compute_class_manifest("aicloud-train", ["a", "b", "c"], pool="train")
    assert [list(r) for r in manifest["spec"]["priorities"]] == [["nodepools"]] * 3
    assert [r["nodepools"] for r in manifest["spec"]["priorities"]] == [["a"], ["b"], ["c"]]


def _templates(r):
    return pod_templates(Res(type=r.type, name=r.name, urn=r.urn, props=r.inputs))


def _placeholder_name(value: str) -> str:
    m = re.fullmatch(r"\$\{(.+)\.name\}", value)
    assert m, value
    return m[1]


def test_prod_orders_every_gke_chain_with_a_computeclass_that_validates(prod):
    classes = [r for r in prod.resources if r.type == CC_TYPE]
    gke_chains = [p for p in prod.pools if p["cloud"] == "gcp" and p.get("capacity")]
    assert len(classes) == len(gke_chains) == 1
    validated = [r for r in classes if object_errors({k: v for k, v in r.inputs.items() if k != "name"}, "1.33") == []]
    assert len(validated) == len(classes)
    (cc,) = classes
    spec = cc.inputs["spec"]
    assert spec["activeMigration"] == {"optimizeRulePriority": True}
    assert spec["nodePoolAutoCreation"] == {"enabled": False}
    # One rule per tier, in the chain's order (reservation, then flex-start).
    order = [_placeholder_name(rule["nodepools"][0]) for rule in spec["priorities"]]
    assert order == ["gcp-usc1-train-res0-np", "gcp-usc1-train-flex-np"]
    pools = {r.name: r for r in prod.resources if r.type == GKE_POOL}
    name = cc.inputs["metadata"]["name"]
    for logical in order:
        cfg = pools[logical].inputs["nodeConfig"]
        assert cfg["labels"][COMPUTE_CLASS_LABEL] == name
        assert {"key": COMPUTE_CLASS_LABEL, "value": name, "effect": "NO_SCHEDULE"} in cfg["taints"]
    # No other node pool is associated with the class.
    others = [n for n, r in pools.items() if n not in order and COMPUTE_CLASS_LABEL in r.inputs["nodeConfig"]["labels"]]
    assert others == []


def test_prod_pods_on_the_gke_chain_select_the_class_and_tolerate_its_taint(prod):
    name = "aicloud-train"
    on_pool = []
    for r in prod.resources:
        if not r.type.startswith("kubernetes:"):
            continue
        for t in _templates(r):
            sel = t.spec.get("nodeSelector") or {}
            if sel.get("aicloud.dev/pool") == "train" and r.name.startswith("gcp-usc1"):
                on_pool.append(r.name)
                assert sel.get(COMPUTE_CLASS_LABEL) == name, r.name
                assert {"key": COMPUTE_CLASS_LABEL, "operator": "Equal", "value": name, "effect": "NoSchedule"} in (
                    t.spec.get("tolerations") or []
                ), r.name
    assert on_pool, "the prod GKE train pool runs the pretraining job"


def test_eks_pools_have_no_computeclass(prod):
    for r in prod.resources:
        if r.type.startswith("kubernetes:") and r.name.startswith("aws-"):
            for t in _templates(r):
                assert COMPUTE_CLASS_LABEL not in (t.spec.get("nodeSelector") or {}), r.name


def test_a_gke_chain_on_kubernetes_1_30_fails_at_plan_time_naming_the_key():
    raw = raw_stack("prod")

    def mutate(cfg):
        region = next(r for r in cfg["regions"] if r["name"] == "gcp-usc1")
        region["cluster"]["version"] = "1.30"

    errors = config_errors(raw, mutate, "prod")
    assert any("regions[" in e and "cluster.version" in e and "ComputeClass" in e and "1.31" in e for e in errors), (
        errors
    )


def test_gke_chain_training_pods_are_not_moved_by_active_migration_mid_run(prod):
    # GKE's active migration does not evict pods annotated safe-to-evict "false": a running gang
    # stays on its tier; serving pods (PodDisruptionBudgets) do move back to the preferred tier.
    job = next(r for r in prod.resources if r.name == "gcp-usc1-training-pretrain-gcp-job")
    meta = job.inputs["spec"]["template"]["metadata"]
    assert meta["annotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    # On EKS the pods carry Karpenter's own annotation instead (issue 17 audit): Karpenter drifts
    # nodes at every `al2023@latest` AMI release and would drain a running gang; it neither drifts
    # nor consolidates a node running a `karpenter.sh/do-not-disrupt: "true"` pod.
    aws = next(r for r in prod.resources if r.name == "aws-use1-training-pretrain-job")
    assert aws.inputs["spec"]["template"]["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": "true"}
    runtimes = [r for r in prod.resources if r.type.endswith(":ClusterTrainingRuntime") and r.name.startswith("aws-")]
    assert runtimes
    for runtime in runtimes:
        for rj in runtime.inputs["spec"]["template"]["spec"]["replicatedJobs"]:
            meta = rj["template"]["spec"]["template"]["metadata"]
            assert meta["annotations"] == {"karpenter.sh/do-not-disrupt": "true"}, runtime.name
