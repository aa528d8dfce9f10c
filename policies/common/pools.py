"""Node pools as the rules see them, from either cloud's node-pool resources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policies.common.cloud import aws_gpus, machine
from policies.common.pods import Taint, taint
from policies.common.stack import Res, StackView
from policies.common.values import GPU_RESOURCE, POOL_LABEL, UNKNOWN, as_dict, as_list, dig, quantity, truthy

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


INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


def karpenter_pool(res: Res) -> Pool | None:
    """A Karpenter `NodePool` as a pool: its template's labels (and single-valued `In`
    requirements) and taints, the largest catalog instance type it allows, at least 0 nodes and at
    most what its `limits` admit (`nodes`, or cpu/memory/GPUs over the machine's; unbounded without
    limits). None when it allows no catalog type."""
    tpl = as_dict(dig(res.props, "spec.template"))
    labels = dict(as_dict(dig(tpl, "metadata.labels")))
    types: list[str] = []
    spot: Any = False
    for req in as_list(dig(tpl, "spec.requirements")):
        key, op, values = dig(req, "key"), dig(req, "operator"), as_list(dig(req, "values"))
        if op == "In" and len(values) == 1 and isinstance(values[0], str):
            labels.setdefault(key, values[0])
        if key == INSTANCE_TYPE_LABEL and op == "In":
            types = [v for v in values if isinstance(v, str)]
        if key == "karpenter.sh/capacity-type" and op == "In":
            spot = "spot" in values
    machines = [m for m in (machine("aws", t) for t in types) if m is not None]
    if not machines:
        return None
    m = max(machines, key=lambda m: (m.gpus, m.vcpus, m.memory_gib))
    limits = as_dict(dig(res.props, "spec.limits"))
    per_node = {"cpu": m.vcpus, "memory": m.memory_gib * 2**30, GPU_RESOURCE: m.gpus, "nodes": 1}
    bounds = [
        int(q // per_node[n])
        for n, raw in limits.items()
        if n in per_node and per_node[n] and (q := quantity(raw)) is not None
    ]
    return Pool(
        res=res,
        cloud="aws",
        label=labels.get(POOL_LABEL),
        machine_type=m.type,
        gpus_per_node=m.gpus,
        min_nodes=0,
        max_nodes=min(bounds) if bounds else None,
        taints=[t for t in map(taint, as_list(dig(tpl, "spec.taints"))) if t],
        labels=labels,
        spot=spot,
        price=m.price_per_hour,
    )


def pool_of(res: Res) -> Pool | None:
    """A node pool record for an EKS NodeGroup, Karpenter NodePool or GKE NodePool resource; None
    for other types."""
    p = res.props
    if res.type == KARPENTER_NODEPOOL:
        return karpenter_pool(res)
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


@dataclass
class PoolGroup:
    """One aicloud node pool as the clouds hold it: every node-pool resource of one cluster that
    carries the same `aicloud.dev/pool` label. An EKS pool under Karpenter is a fixed managed node
    group (its floor) plus a NodePool per capacity tier (the rest, bounded by `limits`); a GKE pool
    with a capacity chain is one node pool per tier. Its GPUs and cost at max scale are the sums of
    its members: each member bounds only its own part, none shares the others' limit. A resource
    without the label is a group of its own."""

    key: tuple[str, str]
    members: list[Pool]

    @property
    def name(self) -> str:
        """The member's name for a pool of one resource, else `<label> (<member>, <member>)`."""
        if len(self.members) == 1:
            return self.members[0].res.name
        return f"{self.key[1]} ({', '.join(m.res.name for m in self.members)})"

    @property
    def is_gpu(self) -> bool:
        return any(m.is_gpu for m in self.members)

    @property
    def unbounded(self) -> list[Pool]:
        """GPU members with no upper bound (a Karpenter NodePool without `limits`)."""
        return [m for m in self.members if m.is_gpu and m.max_nodes is None]

    def gpus_at_max(self) -> int | None:
        """GPUs of every member at its max; None when a GPU member's size or GPUs are unknown."""
        total = 0
        for m in self.members:
            if not m.is_gpu:
                continue
            if m.gpus_per_node is None or not isinstance(m.max_nodes, int):
                return None
            total += m.gpus_per_node * m.max_nodes
        return total

    def breakdown(self) -> str:
        """`3 x g6.xlarge`, or for several members `2 + 10 x g6e.xlarge` (their maxima, in order)."""
        sizes = " + ".join(str(m.max_nodes) if m.max_nodes is not None else "unbounded" for m in self.members)
        types = sorted({str(m.machine_type) for m in self.members})
        return f"{sizes} x {', '.join(types)}"


def pool_groups(view: StackView) -> list[PoolGroup]:
    """The stack's node pools grouped into aicloud pools (`PoolGroup`), in resource order."""
    groups: dict[tuple[str, str], PoolGroup] = {}
    for p in pools(view):
        cluster, region = view.scope(p.res)
        label = p.label if isinstance(p.label, str) and p.label else None
        key = (cluster or region or p.res.urn, label) if label else (p.res.urn, p.res.name)
        groups.setdefault(key, PoolGroup(key=(key[0], label or p.res.name), members=[])).members.append(p)
    return list(groups.values())


def money(x: float) -> str:
    return f"${x:,.2f}"
