"""What every rule module shares: reading props safely, the stack as a graph, pods, pools, config.

Rules read only what a real `pulumi preview` gives a policy pack (type, props, options, provider,
URN, parent, dependencies) plus the pack's config, so the same code runs under the Pulumi CLI and
inside `aicloud plan`. Two kinds of "not known yet" reach a rule:

- under the CLI, props computed at apply time are sentinels that raise `UnknownValueError` when read;
- in the offline plan they are placeholders such as `${lake-bucket.arn}`.

`plain()` turns either into the `UNKNOWN` marker, so a rule sees plain dicts and lists. A rule treats
`UNKNOWN` as "the cloud fills this in": a key that will exist counts as set, a value it cannot read is
not judged now (policies run again at `pulumi up`, when every input of a resource is known).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from components.catalog import MachineType, load_catalog


class _Unknown:
    """A value only known after apply."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
"""Marker for a prop that is computed at apply time."""

_PLACEHOLDER = re.compile(r"^\$\{[^}]+\}$")

# Labels and taints aicloud's node pools carry (components/nodepool.py).
POOL_LABEL = "aicloud.dev/pool"
ROLE_LABEL = "aicloud.dev/role"
GPU_LABEL = "aicloud.dev/gpu"
INTERRUPTIBLE_LABEL = "aicloud.dev/interruptible"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"

ENVIRONMENTS = ("dev", "staging", "prod")


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def plain(value: Any) -> Any:
    """A plain copy of props: dicts, lists and whole numbers as ints, with every apply-time value
    replaced by `UNKNOWN`."""
    if isinstance(value, str):
        return UNKNOWN if _PLACEHOLDER.match(value) else value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the engine sends every number as a double: 2.0 nodes are 2 nodes
    if isinstance(value, Mapping):
        out = {}
        for key in list(value):
            try:
                out[key] = plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = []
        for i in range(len(value)):
            try:
                items.append(plain(value[i]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def dig(node: Any, path: str, default: Any = None) -> Any:
    """The value at a dotted path (`vpcConfig.publicAccessCidrs`); `UNKNOWN` if a step is unknown."""
    for part in path.split("."):
        if node is UNKNOWN:
            return UNKNOWN
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def as_list(value: Any) -> list[Any]:
    """A list prop as a list (`None` and unknown lists become empty)."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def truthy(value: Any) -> bool | None:
    """A boolean prop that may arrive as a string ("true"); None when unset, UNKNOWN stays UNKNOWN."""
    if value is UNKNOWN or value is None:
        return value
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def stack_of(urn: str) -> str:
    """The stack name in a URN (`urn:pulumi:<stack>::<project>::...`)."""
    parts = urn.split(":")
    return parts[2] if len(parts) > 2 else ""


def environment(config: Mapping[str, Any], urn: str | None) -> str | None:
    """The stack's environment: the rule's `environment` config, else the stack name if it is one."""
    env = config.get("environment")
    if env in ENVIRONMENTS:
        return env
    stack = stack_of(urn or "")
    return stack if stack in ENVIRONMENTS else None


def quote_list(items: Iterable[str]) -> str:
    return ", ".join(items)


# --------------------------------------------------------------------------- rule construction

Check = Callable[..., None]


@dataclass(frozen=True)
class Rule:
    """Metadata of one guardrail; `policy()` turns it into a pulumi-policy object."""

    name: str
    description: str
    area: str
    check: Check
    stack: bool = False
    level: EnforcementLevel = EnforcementLevel.MANDATORY
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    """JSON-schema properties of the rule's config (Pulumi fills their `default`)."""
    types: tuple[str, ...] = ()
    """Resource types a resource rule looks at (a trailing `*` matches a prefix); empty: every type."""

    def applies(self, type_: str) -> bool:
        return not self.types or any(type_.startswith(t[:-1]) if t.endswith("*") else type_ == t for t in self.types)

    def defaults(self) -> dict[str, Any]:
        return {k: v["default"] for k, v in self.config.items() if "default" in v}

    def policy(self) -> ResourceValidationPolicy | StackValidationPolicy:
        schema = PolicyConfigSchema(properties=self.config) if self.config else None
        kwargs = dict(
            name=self.name,
            description=self.description,
            enforcement_level=self.level,
            config_schema=schema,
            tags=[self.area],
        )
        if self.stack:
            return StackValidationPolicy(validate=self._stack, **kwargs)
        return ResourceValidationPolicy(validate=self._resource, **kwargs)

    def _resource(self, args: ResourceValidationArgs, report: ReportViolation) -> None:
        if not self.applies(args.resource_type):
            return
        res = Res(
            type=args.resource_type,
            name=args.name,
            urn=args.urn,
            props=plain(args.props),
            protect=bool(getattr(args.opts, "protect", False)),
            provider_props=plain(args.provider.props) if args.provider is not None else None,
            provider_urn=args.provider.urn if args.provider is not None else None,
        )
        self.check(res, self._config(args.get_config()), report)

    def _stack(self, args: StackValidationArgs, report: ReportViolation) -> None:
        self.check(StackView.of(args.resources), self._config(args.get_config()), report)

    def _config(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The rule's config: schema defaults, then what the pack was given (numbers as the engine
        sends them, doubles, made whole where they are)."""
        return plain({**self.defaults(), **dict(given or {})})


# --------------------------------------------------------------------------- resources and the stack


@dataclass(eq=False)
class Res:
    """One resource as a rule sees it: plain props and the links a policy pack is given."""

    type: str
    name: str
    urn: str
    props: dict[str, Any]
    protect: bool = False
    provider_props: dict[str, Any] | None = None
    provider_urn: str | None = None
    parent: Res | None = None
    dependencies: list[Res] = field(default_factory=list)
    property_dependencies: dict[str, list[Res]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """Last segment of the type token (`Deployment` of `kubernetes:apps/v1:Deployment`)."""
        return self.type.rsplit(":", 1)[-1]

    def ancestors(self) -> Iterable[Res]:
        node = self.parent
        seen = 0
        while node is not None and seen < 64:
            yield node
            node = node.parent
            seen += 1


CLUSTER_COMPONENTS = ("aicloud:compute:EksCluster", "aicloud:compute:GkeCluster")
REGION_COMPONENT = "aicloud:platform:RegionalPlatform"


class StackView:
    """Every resource of the stack, linked by parent, dependencies and provider."""

    def __init__(self, resources: Sequence[Any]) -> None:
        self.resources: list[Res] = []
        by_urn: dict[str, Res] = {}
        for r in resources:
            provider = getattr(r, "provider", None)
            res = Res(
                type=r.resource_type,
                name=r.name,
                urn=r.urn,
                props=plain(r.props),
                protect=bool(getattr(r.opts, "protect", False)),
                provider_props=plain(provider.props) if provider is not None else None,
                provider_urn=provider.urn if provider is not None else None,
            )
            by_urn[r.urn] = res
            self.resources.append(res)
        self.by_urn = by_urn
        self.providers: dict[str, dict[str, Any]] = {}
        """Provider URN -> provider props, from the resources' providers and provider resources."""
        for r, res in zip(resources, self.resources, strict=True):
            parent = getattr(r, "parent", None)
            if parent is not None:
                res.parent = by_urn.get(parent.urn)
            res.dependencies = [by_urn[d.urn] for d in getattr(r, "dependencies", []) or [] if d.urn in by_urn]
            res.property_dependencies = {
                k: [by_urn[d.urn] for d in v if d.urn in by_urn]
                for k, v in (getattr(r, "property_dependencies", {}) or {}).items()
            }
            if res.provider_urn and res.provider_props is not None:
                self.providers.setdefault(res.provider_urn, res.provider_props)
            if res.type.startswith("pulumi:providers:"):
                self.providers.setdefault(res.urn, res.props)
        self._scopes: dict[str, tuple[str | None, str | None]] = {}

    _last: tuple[Sequence[Any], StackView] | None = None

    @classmethod
    def of(cls, resources: Sequence[Any]) -> StackView:
        """The view of `resources`, reused while the same list is validated by one rule after another
        (the offline plan hands every stack rule one list; the CLI gives each rule its own)."""
        if cls._last is None or cls._last[0] is not resources:
            cls._last = (resources, cls(resources))
        return cls._last[1]

    def of_type(self, *types: str) -> list[Res]:
        return [r for r in self.resources if r.type in types]

    def scope(self, res: Res) -> tuple[str | None, str | None]:
        """(cluster component URN, region component URN) the resource belongs to.

        Kubernetes objects belong to the cluster of their provider; other resources to the cluster
        and region components above them.
        """
        if res.urn in self._scopes:
            return self._scopes[res.urn]
        chains = []
        provider = self.by_urn.get(res.provider_urn or "")
        if provider is not None and provider.type == "pulumi:providers:kubernetes":
            chains.append(provider.ancestors())
        chains.append(res.ancestors())
        cluster = region = None
        for chain in chains:
            for node in chain:
                if cluster is None and node.type in CLUSTER_COMPONENTS:
                    cluster = node.urn
                if region is None and node.type == REGION_COMPONENT:
                    region = node.urn
            if cluster or region:
                break
        self._scopes[res.urn] = (cluster, region)
        return cluster, region

    def same_scope(self, a: Res, b: Res) -> bool:
        """Whether two resources live in the same cluster (or region, when no cluster is known)."""
        ca, ra = self.scope(a)
        cb, rb = self.scope(b)
        if ca and cb:
            return ca == cb
        if ra and rb:
            return ra == rb
        return True

    def referenced(self, res: Res, prop: str, candidates: Sequence[Res]) -> list[Res]:
        """The candidates `res` points at through `prop` (e.g. the bucket of a bucket policy).

        Uses, in order: the property's dependencies, a known value equal to a candidate's name or
        id, the offline plan's `${name.attr}` placeholder, the resource's parent, and its
        dependencies.
        """
        ids = {c.urn for c in candidates}
        deps = [d for d in res.property_dependencies.get(prop, []) if d.urn in ids]
        if deps:
            return deps
        value = res.props.get(prop)
        raw = value if isinstance(value, str) else None
        if raw:
            hits = [c for c in candidates if raw in (c.props.get("bucket"), c.props.get("name"), c.props.get("id"))]
            if hits:
                return hits
        if res.parent is not None and res.parent.urn in ids:
            return [res.parent]
        return [d for d in res.dependencies if d.urn in ids]


# --------------------------------------------------------------------------- cloud helpers


def machine(cloud: str, type_: Any) -> MachineType | None:
    return load_catalog().machine(cloud, type_) if isinstance(type_, str) else None


_AWS_GPU_FAMILY = re.compile(r"^(p\d+[a-z]*|g\d+[a-z]*|gr\d+[a-z]*)\.")


def aws_gpus(instance_type: Any) -> int | None:
    """GPUs per node of an EC2 type: the catalog's count; None for a GPU family not in the catalog."""
    m = machine("aws", instance_type)
    if m is not None:
        return m.gpus
    if isinstance(instance_type, str) and _AWS_GPU_FAMILY.match(instance_type):
        return None
    return 0


def policy_json(value: Any) -> dict[str, Any] | None:
    """An IAM-style policy document from a JSON string or an object; None when unknown or invalid."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except json.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None
    return None


# --------------------------------------------------------------------------- Kubernetes pods


@dataclass
class PodTemplate:
    """A pod spec inside a workload, with the labels its pods get."""

    where: str
    """Where the spec sits, for messages (`spec.template.spec`)."""
    spec: dict[str, Any]
    labels: dict[str, Any]


def _replica_templates(spec: dict[str, Any]) -> list[PodTemplate]:
    out = []
    for key, replicas in spec.items():
        if key.endswith("ReplicaSpecs") and isinstance(replicas, dict):
            for role, rs in replicas.items():
                tpl = dig(rs, "template")
                if isinstance(dig(tpl, "spec"), dict):
                    out.append(
                        PodTemplate(
                            f"spec.{key}.{role}.template.spec", tpl["spec"], as_dict(dig(tpl, "metadata.labels"))
                        )
                    )
    return out


def pod_templates(res: Res) -> list[PodTemplate]:
    """Every pod spec a Kubernetes workload creates (Deployments, Jobs, PyTorchJobs, KServe...)."""
    if not res.type.startswith("kubernetes:") or res.kind.endswith("Patch") or res.kind.endswith("List"):
        return []
    props = res.props
    spec = as_dict(props.get("spec"))
    kind = res.kind
    found: list[PodTemplate] = []
    if kind == "Pod":
        found.append(PodTemplate("spec", spec, as_dict(dig(props, "metadata.labels"))))
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"):
        tpl = as_dict(spec.get("template"))
        if isinstance(tpl.get("spec"), dict):
            found.append(PodTemplate("spec.template.spec", tpl["spec"], as_dict(dig(tpl, "metadata.labels"))))
    elif kind == "CronJob":
        tpl = as_dict(dig(spec, "jobTemplate.spec.template"))
        if isinstance(tpl.get("spec"), dict):
            found.append(
                PodTemplate("spec.jobTemplate.spec.template.spec", tpl["spec"], as_dict(dig(tpl, "metadata.labels")))
            )
    elif kind == "JobSet":
        for i, job in enumerate(as_list(spec.get("replicatedJobs"))):
            tpl = as_dict(dig(job, "template.spec.template"))
            if isinstance(tpl.get("spec"), dict):
                found.append(
                    PodTemplate(
                        f"spec.replicatedJobs[{i}].template.spec.template.spec",
                        tpl["spec"],
                        as_dict(dig(tpl, "metadata.labels")),
                    )
                )
    elif kind == "InferenceService":
        for part in ("predictor", "transformer", "explainer"):
            component = spec.get(part)
            if isinstance(component, dict):
                pod = dict(component)
                model = component.get("model")
                if isinstance(model, dict):
                    pod["containers"] = [*as_list(component.get("containers")), {"name": "kserve-container", **model}]
                found.append(PodTemplate(f"spec.{part}", pod, as_dict(dig(props, "metadata.labels"))))
    else:
        found += _replica_templates(spec)
    return found


def containers(pod: dict[str, Any], *, init: bool = True) -> list[dict[str, Any]]:
    keys = ("initContainers", "containers") if init else ("containers",)
    return [c for key in keys for c in as_list(pod.get(key)) if isinstance(c, dict)]


def gpu_request(container: dict[str, Any]) -> Any:
    """The container's nvidia.com/gpu limit (or request); 0 when none."""
    resources = container.get("resources")
    if resources is UNKNOWN:
        return UNKNOWN
    for part in ("limits", "requests"):
        amount = as_dict(as_dict(resources).get(part)).get(GPU_RESOURCE)
        if amount is UNKNOWN:
            return UNKNOWN
        if amount not in (None, 0, "0"):
            return amount
    return 0


def requests_gpu(pod: dict[str, Any]) -> bool:
    return any(gpu_request(c) not in (0, UNKNOWN) for c in containers(pod))


def _required_terms(pod: dict[str, Any]) -> list[Any]:
    path = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
    return as_list(dig(pod, path))


def selects_nodes(pod: dict[str, Any]) -> bool:
    """Whether the pod is pinned to some nodes (nodeSelector or required node affinity)."""
    return bool(as_dict(pod.get("nodeSelector"))) or bool(_required_terms(pod))


def _expression_matches(expr: Any, labels: dict[str, Any]) -> bool:
    key, op = dig(expr, "key"), dig(expr, "operator")
    values = [v for v in as_list(dig(expr, "values")) if isinstance(v, str)]
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return True  # Gt/Lt: numeric labels aicloud does not set; do not rule the node out


def schedulable_on(pod: dict[str, Any], labels: dict[str, Any]) -> bool:
    """Whether the pod's node selection admits nodes with `labels` (taints aside)."""
    selector = as_dict(pod.get("nodeSelector"))
    if any(labels.get(k) != v for k, v in selector.items() if v is not UNKNOWN):
        return False
    terms = _required_terms(pod)
    if not terms:
        return True
    return any(all(_expression_matches(e, labels) for e in as_list(dig(t, "matchExpressions"))) for t in terms)


_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


def taint(raw: Any) -> Taint | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
        return None
    effect = str(raw.get("effect") or "NoSchedule")
    value = raw.get("value")
    return Taint(raw["key"], value if isinstance(value, str) else "", _EFFECTS.get(effect, effect))


def tolerates(tolerations: Any, t: Taint) -> bool:
    """Kubernetes' matching: key (or empty key with Exists), effect (or any), Exists or equal value."""
    for tol in as_list(tolerations):
        if not isinstance(tol, dict):
            continue
        key, op = tol.get("key") or "", tol.get("operator") or "Equal"
        effect = tol.get("effect") or ""
        if effect and _EFFECTS.get(effect, effect) != t.effect:
            continue
        if not key:
            if op == "Exists":
                return True
            continue
        if key != t.key:
            continue
        if op == "Exists" or (tol.get("value") or "") == t.value:
            return True
    return False


# --------------------------------------------------------------------------- node pools


@dataclass
class Pool:
    """A node pool (EKS node group or GKE node pool) as the GPU and cost rules see it."""

    res: Res
    cloud: str
    label: str | None
    """The `aicloud.dev/pool` label: what workloads select."""
    machine_type: Any
    gpus_per_node: int | None
    """None when the machine type is a GPU type the catalog does not price."""
    min_nodes: Any
    max_nodes: Any
    taints: list[Taint]
    labels: dict[str, Any]
    spot: Any
    price: float | None

    @property
    def is_gpu(self) -> bool:
        return self.gpus_per_node is None or self.gpus_per_node > 0

    @property
    def display(self) -> str:
        return self.res.name


KARPENTER_NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"


def _requirement(reqs: list[Any], key: str) -> list[Any] | None:
    for r in reqs:
        if isinstance(r, dict) and r.get("key") == key and r.get("operator") == "In":
            return as_list(r.get("values"))
    return None


def _karpenter_pool(res: Res) -> Pool:
    """A Karpenter NodePool: the nodes it launches carry its template's labels and taints; it holds
    no node at rest and at most `limits.nodes` (or as many as its cpu/GPU limits allow)."""
    template = as_dict(dig(res.props, "spec.template"))
    reqs = as_list(dig(template, "spec.requirements"))
    types = _requirement(reqs, "node.kubernetes.io/instance-type") or []
    mtype = types[0] if len(types) == 1 else (UNKNOWN if not types else types[0])
    m = machine("aws", mtype)
    capacity = _requirement(reqs, "karpenter.sh/capacity-type")
    limits = as_dict(dig(res.props, "spec.limits"))
    high: Any = None
    if str(limits.get("nodes", "")).isdigit():
        high = int(limits["nodes"])
    elif m is not None and m.gpus and str(limits.get(GPU_RESOURCE, "")).isdigit():
        high = int(limits[GPU_RESOURCE]) // m.gpus
    labels = as_dict(dig(template, "metadata.labels"))
    return Pool(
        res=res,
        cloud="aws",
        label=labels.get(POOL_LABEL),
        machine_type=mtype,
        gpus_per_node=aws_gpus(mtype) if mtype is not UNKNOWN else 0,
        min_nodes=0,
        max_nodes=high,
        taints=[t for t in map(taint, as_list(dig(template, "spec.taints"))) if t],
        labels=labels,
        spot=capacity == ["spot"] if capacity is not None else False,
        price=m.price_per_hour if m else None,
    )


def pool_of(res: Res) -> Pool | None:
    """A node pool record for an EKS NodeGroup, Karpenter NodePool or GKE NodePool resource; None
    for other types."""
    p = res.props
    if res.type == KARPENTER_NODEPOOL:
        return _karpenter_pool(res)
    if res.type == "aws:eks/nodeGroup:NodeGroup":
        types = as_list(p.get("instanceTypes"))
        mtype = types[0] if types else UNKNOWN if p.get("instanceTypes") is UNKNOWN else None
        m = machine("aws", mtype)
        return Pool(
            res=res,
            cloud="aws",
            label=as_dict(p.get("labels")).get(POOL_LABEL),
            machine_type=mtype,
            gpus_per_node=aws_gpus(mtype) if mtype is not UNKNOWN else 0,
            min_nodes=dig(p, "scalingConfig.minSize"),
            max_nodes=dig(p, "scalingConfig.maxSize"),
            taints=[t for t in map(taint, as_list(p.get("taints"))) if t],
            labels=as_dict(p.get("labels")),
            spot=(p.get("capacityType") == "SPOT") if p.get("capacityType") is not UNKNOWN else UNKNOWN,
            price=m.price_per_hour if m else None,
        )
    if res.type == "gcp:container/nodePool:NodePool":
        cfg = as_dict(p.get("nodeConfig"))
        mtype = cfg.get("machineType")
        m = machine("gcp", mtype)
        accel = sum(int(a.get("count") or 0) for a in as_list(cfg.get("guestAccelerators")) if isinstance(a, dict))
        gpus = m.gpus if m is not None else accel
        auto = as_dict(p.get("autoscaling"))
        zones = len(as_list(p.get("nodeLocations"))) or 1
        if "totalMaxNodeCount" in auto or "totalMinNodeCount" in auto:
            low, high = auto.get("totalMinNodeCount", 0), auto.get("totalMaxNodeCount")
        elif "maxNodeCount" in auto:
            per_zone = lambda v: v * zones if isinstance(v, int) else v  # noqa: E731
            low, high = per_zone(auto.get("minNodeCount", 0)), per_zone(auto.get("maxNodeCount"))
        else:
            count = p.get("nodeCount", p.get("initialNodeCount"))
            low = high = count * zones if isinstance(count, int) else count
        spot = cfg.get("spot") if cfg.get("spot") is not None else cfg.get("preemptible")
        return Pool(
            res=res,
            cloud="gcp",
            label=as_dict(cfg.get("labels")).get(POOL_LABEL),
            machine_type=mtype,
            gpus_per_node=gpus,
            min_nodes=low,
            max_nodes=high,
            taints=[t for t in map(taint, as_list(cfg.get("taints"))) if t],
            labels=as_dict(cfg.get("labels")),
            spot=truthy(spot) if spot is not None else False,
            price=m.price_per_hour if m else None,
        )
    return None


def pools(view: StackView) -> list[Pool]:
    return [p for p in (pool_of(r) for r in view.resources) if p is not None]


def money(x: float) -> str:
    return f"${x:,.2f}"
