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


# ----------------------------------------------------------------------------- CEL rules of the CRDs


@pytest.mark.parametrize("stack", STACKS)
def test_every_custom_resource_passes_the_cel_rules_of_its_upstream_crd(stack):
    """The API server runs a CRD's `x-kubernetes-validations` on create: a custom resource that fits
    the structural schema can still be refused (Karpenter's EC2NodeClass refuses any `spec.tags` key
    starting with `kubernetes.io/cluster`; Karpenter adds that tag itself)."""
    from components.k8s_cel import rule_checks, rule_violations

    plan = stack_plan(stack)
    problems, evaluated = [], 0
    for reg, obj in kubernetes_objects(plan.resources):
        problems += [f"{reg.name}: {p}" for p in rule_violations(obj)]
        evaluated += sum(1 for c in rule_checks(obj) if c.outcome in ("passed", "failed"))
    assert problems == []
    assert evaluated > 0, f"{stack}: no CEL rule evaluated"


def test_a_planted_restricted_tag_or_label_is_refused_as_the_api_server_would():
    from components.autoscaling import node_class_manifest, node_pool_manifest
    from components.k8s_cel import evaluate, rule_violations
    from tests.spine.test_platform import pool

    node_class = node_class_manifest(
        pool("train"), cluster_name="c1", instance_profile="p", subnet_ids=["subnet-1"], security_group_ids=["sg-1"]
    )
    assert rule_violations(node_class) == []
    planted = {**node_class, "spec": {**node_class["spec"], "tags": {"kubernetes.io/cluster/c1": "owned"}}}
    assert rule_violations(planted) == [
        "EC2NodeClass/train at .spec.tags: tag contains a restricted tag matching kubernetes.io/cluster/"
    ]
    both = {**node_class, "spec": {**node_class["spec"], "role": "r"}}
    assert "must specify exactly one of ['role', 'instanceProfile']" in " ".join(rule_violations(both))
    node_pool = node_pool_manifest(pool("train"), zones=["us-west-2a"])
    assert rule_violations(node_pool) == []
    labels = node_pool["spec"]["template"]["metadata"]["labels"]
    planted_pool = {**node_pool, "spec": {**node_pool["spec"], "template": {
        **node_pool["spec"]["template"], "metadata": {"labels": {**labels, "karpenter.sh/owner": "x"}}}}}  # fmt: skip
    assert rule_violations(planted_pool) == [
        'NodePool/train at .spec.template.metadata.labels: label domain "karpenter.sh" is restricted'
    ]
    spec = node_pool["spec"]["template"]["spec"]
    empty_in = [*spec["requirements"], {"key": "aicloud.dev/tier", "operator": "In", "values": []}]
    planted_req = {**node_pool, "spec": {**node_pool["spec"], "template": {
        **node_pool["spec"]["template"], "spec": {**spec, "requirements": empty_in}}}}  # fmt: skip
    assert rule_violations(planted_req) == [
        "NodePool/train at .spec.template.spec.requirements: requirements with operator 'In' must have a value defined"
    ]
    # The evaluator's own semantics: CEL's `!` and `||`, macros over map keys, presence with has(),
    # ternaries (right-associative, inside macros too).
    assert evaluate("self.x ? 1 == 2 : self.y ? true : false", {"x": False, "y": True}) is True
    assert evaluate("self.x ? 1 == 2 : self.y ? true : false", {"x": True, "y": True}) is False
    assert evaluate("self.all(k, !k.startsWith('a') || k == 'ab')", {"ab": 1, "b": 2}) is True
    assert evaluate("self.exists(x, has(x.id))", [{"tags": {}}, {"id": "i"}]) is True
    assert evaluate("self.exists(x, has(x.id))", [{"tags": {}}]) is False


# The Kubernetes CEL library functions celpy lacks, held to the examples of their documentation
# (https://kubernetes.io/docs/reference/using-api/cel/ regex library; cel-go ext Strings, which
# Kubernetes enables: https://pkg.go.dev/github.com/google/cel-go/ext#Strings).
KUBERNETES_LIBRARY_EXAMPLES = [
    ("'abc 123'.find('[0-9]+') == '123'", True),
    ("'abc'.find('[0-9]+') == ''", True),
    ("'123 abc 456'.findAll('[0-9]+') == ['123', '456']", True),
    ("'123 abc 456'.findAll('[0-9]+', 1) == ['123']", True),
    ("'hello hello hello'.split(' ') == ['hello', 'hello', 'hello']", True),
    ("'hello hello hello'.split(' ', 0) == []", True),
    ("'hello hello hello'.split(' ', 1) == ['hello hello hello']", True),
    ("'hello hello hello'.split(' ', 2) == ['hello', 'hello hello']", True),
    ("'hello hello hello'.split(' ', -1) == ['hello', 'hello', 'hello']", True),
    ("['hello', 'mellow'].join() == 'hellomellow'", True),
    ("['hello', 'mellow'].join(' ') == 'hello mellow'", True),
    ("[].join() == ''", True),
    ("'TacoCÆt Xii'.lowerAscii() == 'tacocÆt xii'", True),
    ("'TacoCÆt Xii'.upperAscii() == 'TACOCÆT XII'", True),
    ("'  \\ttrim\\n    '.trim() == 'trim'", True),
    ("'hello hello'.replace('he', 'we') == 'wello wello'", True),
    ("'hello hello'.replace('he', 'we', -1) == 'wello wello'", True),
    ("'hello hello'.replace('he', 'we', 1) == 'wello hello'", True),
    ("'hello hello'.replace('he', 'we', 0) == 'hello hello'", True),
    ("'hello mellow'.indexOf('') == 0", True),
    ("'hello mellow'.indexOf('ello') == 1", True),
    ("'hello mellow'.indexOf('jello') == -1", True),
    ("'hello mellow'.indexOf('', 2) == 2", True),
    ("'hello mellow'.indexOf('ello', 2) == 7", True),
    ("'hello mellow'.lastIndexOf('') == 12", True),
    ("'hello mellow'.lastIndexOf('ello') == 7", True),
    ("'hello mellow'.lastIndexOf('jello') == -1", True),
    ("'hello mellow'.lastIndexOf('ello', 6) == 1", True),
    ("'tacocat'.substring(4) == 'cat'", True),
    ("'tacocat'.substring(0, 4) == 'taco'", True),
    ("'hello'.charAt(4) == 'o'", True),
    ("'hello'.charAt(5) == ''", True),
]
KUBERNETES_LIBRARY_ERRORS = [
    "'hello mellow'.indexOf('ello', 20) == 0",
    "'hello mellow'.lastIndexOf('ello', -1) == 0",
    "'tacocat'.substring(-1) == ''",
    "'tacocat'.substring(2, 1) == ''",
    "'hello'.charAt(-1) == ''",
]


@pytest.mark.parametrize(("rule", "expected"), KUBERNETES_LIBRARY_EXAMPLES)
def test_the_kubernetes_cel_library_adapter_answers_as_documented(rule, expected):
    from components.k8s_cel import evaluate

    assert evaluate(rule, None) is expected


@pytest.mark.parametrize("rule", KUBERNETES_LIBRARY_ERRORS)
def test_the_kubernetes_cel_library_adapter_errors_where_documented(rule):
    from components.k8s_cel import _walk

    (check,) = _walk({"x-kubernetes-validations": [{"rule": rule}]}, "x", "")
    assert check.outcome.startswith("skipped: "), check


def test_every_adapter_function_is_held_to_a_documented_example():
    from components.k8s_cel import KUBERNETES_FUNCTIONS

    untested = [f for f in KUBERNETES_FUNCTIONS if not any(f".{f}(" in rule for rule, _ in KUBERNETES_LIBRARY_EXAMPLES)]
    assert untested == []


def test_self_is_bound_as_the_api_server_binds_it():
    """Kubernetes' CEL type mapping, escaped property names, defaults, root metadata."""
    from components.k8s_cel import evaluate

    schema = {
        "type": "object",
        "properties": {
            "namespace": {"type": "string"},
            "x-prop": {"type": "string"},
            "ratio": {"type": "number"},
            "count": {"type": "integer"},
            "timeout": {"type": "string", "format": "duration"},
            "group": {"type": "string", "default": ""},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "metadata": {"type": "object"},
        },
    }
    obj = {"namespace": "ns", "x-prop": "v", "ratio": 1, "count": 2, "timeout": "90s", "labels": {"a-b": "c"}}
    assert evaluate("self.__namespace__ == 'ns' && self.x__dash__prop == 'v'", obj, schema)
    assert evaluate("type(self.ratio) == double && type(self.count) == int", obj, schema)
    assert evaluate("self.timeout > duration('1m')", obj, schema)
    assert evaluate("has(self.group) && self.group == ''", obj, schema)  # defaulted before validation
    assert evaluate("self.labels['a-b'] == 'c'", obj, schema)  # map keys are not escaped
    meta = {**obj, "metadata": {"name": "n", "labels": {"k": "v"}}}
    assert evaluate("self.metadata.name == 'n' && !has(self.metadata.labels)", meta, schema, root=True)
    assert not evaluate("!has(self.metadata.labels)", meta, schema)  # below the root: all fields


def test_rules_it_cannot_run_are_skipped_never_passed():
    from components.k8s_cel import Unsupported, _walk, evaluate

    for rule in ("self == oldSelf", "self.isSorted()", "url(self).getHost() == 'a'", "[1, 2].min() == 1"):
        with pytest.raises(Unsupported):
            evaluate(rule, [1])
    schema = {"x-kubernetes-validations": [{"rule": "self == oldSelf"}, {"rule": "self.missing == 1"},
                                           {"rule": "self.size()"}, {"rule": "size(self) == 0"}]}  # fmt: skip
    outcomes = [c.outcome.split(":")[0] for c in _walk(schema, {"a": 1}, "")]
    assert outcomes == ["skipped", "skipped", "skipped", "failed"]
