"""Capacity chains: where a GPU pool's nodes come from, in priority order.

"Offered in the region" is not "obtainable": a pool names an ordered chain of capacity tiers,
cloud-neutral in config, each with an optional node limit:

    capacity:
      - {reservation: cr-0123456789abcdef0, zone: us-east-1a, maxNodes: 2}   # ODCR / GCE reservation
      - {capacityBlock: cr-0fedcba9876543210, instanceType: p5.48xlarge}       # EC2 Capacity Block for ML
      - on-demand
      - {flex: {maxRunDuration: 7d}, maxNodes: 4}                             # GKE DWS flex-start
      - spot

The autoscaler tries the tiers in order (EKS: one Karpenter NodePool per tier, weights falling
along the chain, `karpenter.sh/capacity-type` `reserved` / `on-demand` / `spot`, reserved tiers
selecting their reservation by id in the EC2NodeClass; GKE: one node pool per tier with
reservation affinity, flex-start or Spot VMs, ordered by a ComputeClass whose priorities name the
tier pools in chain order, with active migration back to the preferred tier; the pool's pods
select that class). Every node carries `aicloud.dev/capacity-tier`
naming its tier, so a training job can require one and dashboards can tell them apart.

This module holds the spec, its checks (pool-level here; cloud and region aware in
`chain_problems`, which the region calls), the per-tier prices and cost range the plan shows,
and the pure manifest helpers the components render. It imports only the catalog.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, model_validator

from components.base import Spec
from components.catalog import MachineType, load_catalog
from components.validation import INVALID, Problem, check, is_valid

TIER_LABEL = "aicloud.dev/capacity-tier"
"""Node label naming the tier a node came from (`reservation`, `capacity-block`, `on-demand`,
`flex`, `spot`)."""
KARPENTER_CAPACITY_TYPE = "karpenter.sh/capacity-type"
COMPUTE_CLASS_LABEL = "cloud.google.com/compute-class"
"""GKE's node label and taint key that associate a manually created node pool with a ComputeClass,
and the nodeSelector key by which pods request the class (GKE docs, "About custom ComputeClasses":
"Configure manually-created node pools for ComputeClass use")."""
COMPUTE_CLASS_API = "cloud.google.com/v1"

TierKind = Literal["reservation", "capacity-block", "on-demand", "flex", "spot"]
TIER_KINDS: tuple[str, ...] = ("reservation", "capacity-block", "on-demand", "flex", "spot")
GUARANTEED: frozenset[str] = frozenset({"reservation", "capacity-block", "flex"})
"""Tiers that hold capacity for the pool (not subject to the zone running out of on-demand)."""

# EC2 Capacity Blocks for ML are sold for these families only (Amazon EC2 User Guide, "Capacity
# Blocks for ML", supported instance types: p4d, p4de, p5, p5e, p5en, p6-b200, trn1, trn2).
CAPACITY_BLOCK_FAMILIES = frozenset({"p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "trn1", "trn2"})
# GKE flex-start (Dynamic Workload Scheduler) runs GPU machine series A4, A3, A2 and G2 (GKE docs
# "About GPU obtainability with flex-start"); a VM runs at most 7 days (maxRunDuration).
FLEX_FAMILIES_PREFIX = ("a4", "a3", "a2", "g2")
FLEX_MAX_RUN_SECONDS = 7 * 24 * 3600
# The GPU classes that most often cannot be had on demand (the prod capacity policy's scope).
SCARCE_GPUS = frozenset({"nvidia-h100", "nvidia-h200", "nvidia-b200"})

_AWS_CR_ID = re.compile(r"^cr-[0-9a-z]+$")  # the EC2NodeClass CRD's pattern for a reservation id
_AWS_CR_ARN = re.compile(r"^arn:aws[\w-]*:ec2:(?P<region>[a-z0-9-]+):\d{12}:capacity-reservation/(?P<id>cr-[0-9a-z]+)$")
_GCP_RESERVATION = re.compile(
    r"^(projects/(?P<project>[a-z][a-z0-9-]+)/)?(zones/(?P<zone>[a-z0-9-]+)/)?(reservations/)?(?P<name>[a-z]([-a-z0-9]*[a-z0-9])?)$"
)
_DURATION = re.compile(r"^(?P<n>[1-9]\d*)(?P<unit>[smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    m = _DURATION.match(text)
    assert m is not None
    return int(m["n"]) * _UNIT[m["unit"]]


class FlexSpec(Spec):
    """DWS flex-start settings (GKE)."""

    max_run_duration: str = Field(default="7d", pattern=_DURATION.pattern)
    """How long a flex-start node may run before GKE reclaims it (`90m`, `24h`, `7d`; at most 7d)."""
    queued: bool = False
    """Queued provisioning (training pools only): nodes come only through ProvisioningRequests (Kueue
    or the job controller must create them), all of a gang at once or none. Off: plain flex-start,
    which the cluster autoscaler provisions for pending pods."""


class CapacityTier(Spec):
    """One tier of a chain. Exactly one of `reservation`, `capacityBlock`, `onDemand`, `flex`,
    `spot`; the strings `on-demand` and `spot` are short for `{onDemand: true}` / `{spot: true}`."""

    reservation: str | None = Field(default=None, min_length=1)
    """A reservation to consume: EC2 On-Demand Capacity Reservation id (`cr-...`) or ARN; GCE
    reservation name or `projects/P/zones/Z/reservations/N`."""
    capacity_block: str | None = Field(default=None, min_length=1)
    """An EC2 Capacity Block for ML (its reservation id `cr-...`); AWS only."""
    on_demand: bool = False
    flex: FlexSpec | None = None
    """GKE Dynamic Workload Scheduler flex-start (queued provisioning for training pools)."""
    spot: bool = False
    zone: str | None = None
    """The zone the reservation or block is in (required where the id does not say it)."""
    instance_type: str | None = None
    """The instance type the Capacity Block was bought for (must be the pool's)."""
    max_nodes: int | None = Field(default=None, ge=1, le=1000)
    """Nodes this tier may provide (default: the pool's maxNodes; a reservation's size)."""
    price_per_hour: float | None = Field(default=None, ge=0)
    """Contracted USD per node-hour: a Capacity Block's effective rate (required there: AWS prices
    each block at purchase), a committed-use or Savings Plan rate, a flex-start SKU's price.
    Default (components/catalog/prices.yaml `capacity_tiers`): reservations at the on-demand rate
    they bill at; flex-start at the on-demand list price as an upper bound."""

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        if data == "on-demand":
            return {"onDemand": True}
        if data == "spot":
            return {"spot": True}
        return data

    @property
    def kind(self) -> str:
        kinds = self.kinds
        return kinds[0] if len(kinds) == 1 else "invalid"

    @property
    def kinds(self) -> list[str]:
        out = []
        if self.reservation is not None:
            out.append("reservation")
        if self.capacity_block is not None:
            out.append("capacity-block")
        if self.on_demand:
            out.append("on-demand")
        if self.flex is not None:
            out.append("flex")
        if self.spot:
            out.append("spot")
        return out

    @check("reservation", "capacity_block", "on_demand", "flex", "spot", "zone", "instance_type")
    def _one_kind(self) -> Iterator[Problem]:
        kinds = self.kinds
        if len(kinds) != 1:
            yield Problem(
                (),
                "a capacity tier names exactly one of reservation, capacityBlock, on-demand, flex, spot "
                f"(found {', '.join(kinds) or 'none'})",
            )
            return
        if self.zone is not None and kinds[0] not in ("reservation", "capacity-block"):
            yield Problem(("zone",), "zone applies to reservation and capacityBlock tiers only", self.zone)
        if self.instance_type is not None and kinds[0] != "capacity-block":
            yield Problem(("instanceType",), "instanceType applies to capacityBlock tiers only", self.instance_type)

    @check("capacity_block", "price_per_hour")
    def _block_price(self) -> Iterator[Problem]:
        # AWS sets Capacity Block prices by supply and demand and bills a block at the rate of its
        # purchase (aws.amazon.com/ec2/capacityblocks/pricing): there is no list price to assume.
        if self.capacity_block is not None and self.price_per_hour is None:
            yield Problem(
                ("pricePerHour",),
                "a Capacity Block is priced when it is bought (AWS re-prices blocks by supply and demand): set "
                "pricePerHour to its effective USD per instance-hour (upfront fee / hours / instances)",
            )

    @check("flex")
    def _flex(self) -> Iterator[Problem]:
        if self.flex is not None and is_valid(self.flex):
            if duration_seconds(self.flex.max_run_duration) > FLEX_MAX_RUN_SECONDS:
                yield Problem(
                    ("flex", "maxRunDuration"), "flex-start VMs run at most 7 days (7d)", self.flex.max_run_duration
                )


def tier_zone(tier: CapacityTier) -> str | None:
    """The zone a reservation or Capacity Block tier is bound to: its `zone`, else the zone its GCE
    reservation path names; None when unbound."""
    if tier.zone:
        return tier.zone
    m = _GCP_RESERVATION.match(tier.reservation or "")
    return m["zone"] if m is not None and m["zone"] else None


def tier_name(tier: CapacityTier, index: int) -> str:
    """A short DNS-label name per tier, unique within the chain (`res0`, `block1`, `od`, `flex`, `spot`)."""
    return {"reservation": f"res{index}", "capacity-block": f"block{index}", "on-demand": "od"}.get(
        tier.kind, tier.kind
    )


def pool_problems(chain: list[Any], *, machine: MachineType | None, max_nodes: Any, spot: Any) -> Iterator[Problem]:
    """Pool-level problems of a chain (paths relative to the pool): repeated tiers, limits above the
    pool's, a Capacity Block for another instance type, a chain on a CPU pool or next to `spot`."""
    if not chain:
        yield Problem(("capacity",), "a capacity chain needs at least one tier (or leave capacity out)")
        return
    if machine is not None and not machine.is_gpu:
        yield Problem(("capacity",), f"capacity chains are for GPU pools; {machine.type!r} has no GPU")
    if spot is True:
        yield Problem(
            ("spot",), "spot and capacity are mutually exclusive: put `spot` in the capacity chain instead", True
        )
    seen: dict[str, int] = {}
    for j, t in enumerate(chain):
        if not is_valid(t) or t.kind == "invalid":
            continue
        key = {
            "reservation": f"reservation {t.reservation}",
            "capacity-block": f"capacityBlock {t.capacity_block}",
        }.get(t.kind, t.kind)
        if key in seen:
            yield Problem(("capacity", j), f"{key} repeats tier {seen[key]}; each tier appears once in a chain")
        seen.setdefault(key, j)
        if t.max_nodes is not None and isinstance(max_nodes, int) and t.max_nodes > max_nodes:
            yield Problem(
                ("capacity", j, "maxNodes"),
                f"a tier cannot hold more than the pool's maxNodes ({max_nodes})",
                t.max_nodes,
            )
        if t.kind == "capacity-block" and machine is not None and t.instance_type not in (None, machine.type):
            yield Problem(
                ("capacity", j, "instanceType"),
                f"the Capacity Block is for {t.instance_type}, the pool runs {machine.type}; a block serves only "
                "its own instance type",
                t.instance_type,
            )


def chain_problems(
    chain: list[Any], *, cloud: str, region: str, machine: MachineType, pool_zones: list[str] | None
) -> Iterator[Problem]:
    """Cloud- and region-aware problems of a chain (paths relative to the pool): a reservation in
    another region or zone, a Capacity Block on GCP or for a family EC2 sells none for, flex-start on
    AWS or on a GCP type that lacks it."""
    region_zones = load_catalog().zones(cloud, region)
    for j, t in enumerate(chain):
        if not is_valid(t) or t.kind == "invalid":
            continue
        at = ("capacity", j)
        zone = t.zone
        if t.kind == "reservation":
            ref = t.reservation
            if cloud == "aws":
                arn = _AWS_CR_ARN.match(ref)
                if arn is None and not _AWS_CR_ID.match(ref):
                    yield Problem((*at, "reservation"), "an EC2 capacity reservation is an id `cr-...` or its ARN", ref)
                elif arn is not None and arn["region"] != region:
                    yield Problem(
                        (*at, "reservation"),
                        f"the reservation is in {arn['region']}, the pool in {region}; a reservation serves only "
                        "its own region",
                        ref,
                    )
            else:
                m = _GCP_RESERVATION.match(ref)
                if m is None:
                    yield Problem(
                        (*at, "reservation"), "a GCE reservation is a name or projects/P/zones/Z/reservations/N", ref
                    )
                elif m["zone"]:
                    if zone is not None and zone != m["zone"]:
                        yield Problem((*at, "zone"), f"the reservation path names zone {m['zone']}", zone)
                    zone = m["zone"]
        if t.kind == "capacity-block":
            if cloud != "aws":
                yield Problem(
                    (*at, "capacityBlock"),
                    "Capacity Blocks are EC2's; on GKE use a reservation or flex-start (flex)",
                    t.capacity_block,
                )
                continue
            if not _AWS_CR_ID.match(t.capacity_block):
                yield Problem((*at, "capacityBlock"), "a Capacity Block is a reservation id `cr-...`", t.capacity_block)
            if machine.family not in CAPACITY_BLOCK_FAMILIES:
                yield Problem(
                    (*at, "capacityBlock"),
                    f"EC2 sells Capacity Blocks for {', '.join(sorted(CAPACITY_BLOCK_FAMILIES))} only, not "
                    f"{machine.type}",
                    t.capacity_block,
                )
        if t.kind in ("reservation", "capacity-block") and zone is not None:
            if zone not in region_zones:
                yield Problem(
                    (*at, "zone"),
                    f"{zone} is not a zone of {region} ({', '.join(region_zones)}); a reservation serves only its "
                    "own zone",
                    zone,
                )
            elif pool_zones is not None and zone not in pool_zones:
                yield Problem(
                    (*at, "zone"),
                    f"the pool's nodes go to {', '.join(pool_zones)}, not {zone}; add the zone to the pool's zones",
                    zone,
                )
        if t.kind == "flex":
            if cloud != "gcp":
                yield Problem(
                    (*at, "flex"),
                    "flex-start (Dynamic Workload Scheduler) is GKE's; on EKS use a capacityBlock or reservation",
                )
            elif not machine.family.startswith(FLEX_FAMILIES_PREFIX):
                yield Problem(
                    (*at, "flex"),
                    f"GKE flex-start runs A4, A3, A2 and G2 GPU machines, not {machine.type}",
                )


# --------------------------------------------------------------------------- prices and cost


def tier_prices(tier: CapacityTier, *, cloud: str, on_demand: float) -> dict[str, Any]:
    """A tier's USD per node-hour as a range [low, high], where the price comes from, and whether
    the range is only an upper bound (`upperBound`: the real price is lower, not known here).

    A tier's `pricePerHour` (a committed or contracted rate) wins; otherwise the catalog's
    `capacity_tiers` rule of the cloud (components/catalog/prices.yaml, with sources): reservations
    bill at the on-demand rate, a Capacity Block must carry its price (config validation), flex-start
    is at most the on-demand list price; spot is the cloud's spot range."""
    if tier.kind == "spot":
        low, high = load_catalog().prices[cloud]["spot_factor"]
        return {
            "low": round(on_demand * low, 4),
            "high": round(on_demand * high, 4),
            "source": "spot range (catalog)",
            "upperBound": False,
        }
    if tier.price_per_hour is not None:
        return {"low": tier.price_per_hour, "high": tier.price_per_hour, "source": "config", "upperBound": False}
    rule = load_catalog().prices[cloud].get("capacity_tiers", {}).get(tier.kind, "on-demand")
    if rule == "config":  # refused by CapacityTier's own check: kept as a guard
        raise ValueError(f"a {tier.kind} tier needs pricePerHour")
    source = {
        "reservation": "on-demand rate (reservations bill at it)",
        "flex": "at most on-demand list (flex-start is discounted; set pricePerHour)",
    }.get(tier.kind, "on-demand list")
    bound = rule == "at-most-on-demand"
    return {"low": round(on_demand, 4), "high": round(on_demand, 4), "source": source, "upperBound": bound}


def chain_summary(
    chain: list[CapacityTier], *, cloud: str, price_per_node: float, max_nodes: int, gpus_per_node: int
) -> dict[str, Any]:
    """The chain as the plan shows it: per tier its kind, node limit, price range per node-hour and
    whether it can serve gang-scheduled training (all of a gang from one tier, none lost to
    preemption: every tier but spot); the best case (the pool's maxNodes from the cheapest tiers,
    spot at its lowest; `bestCaseUpperBound` when a tier it uses is priced at an upper bound), the
    worst case (every tier at its limit at its highest price: Karpenter and GKE limit each tier's
    NodePool / node pool, none shares the pool's maxNodes) and the committed cost per hour
    (reservations and Capacity Blocks at their limit, billed even when idle)."""
    tiers = []
    for j, t in enumerate(chain):
        price = tier_prices(t, cloud=cloud, on_demand=price_per_node)
        nodes = min(t.max_nodes or max_nodes, max_nodes)
        tiers.append(
            {
                "tier": tier_name(t, j),
                "kind": t.kind,
                "ref": t.reservation or t.capacity_block or (t.flex.max_run_duration if t.flex else None),
                "zone": t.zone,
                "maxNodes": nodes,
                "pricePerNodeHour": [price["low"], price["high"]],
                "priceSource": price["source"],
                "priceUpperBound": price["upperBound"],
                "gang": t.kind != "spot",
            }
        )
    left, best, best_bound = max_nodes, 0.0, False
    for t in sorted(tiers, key=lambda x: x["pricePerNodeHour"][0]):
        take = min(left, t["maxNodes"])
        best += take * t["pricePerNodeHour"][0]
        best_bound = best_bound or (take > 0 and t["priceUpperBound"])
        left -= take
    exposure = sum(t["maxNodes"] for t in tiers)
    return {
        "tiers": tiers,
        "bestCasePerHour": round(best, 4),
        "bestCaseNodes": max_nodes - left,
        "bestCaseUpperBound": best_bound,
        # Reservations and Capacity Blocks bill whether nodes run or not (the catalog's sources):
        # this much per hour is spent even at 0 nodes while they are held.
        "committedPerHour": round(
            sum(
                t["maxNodes"] * t["pricePerNodeHour"][0]
                for t in tiers
                if t["kind"] in ("reservation", "capacity-block")
            ),
            4,
        ),
        "worstCasePerHour": round(sum(t["maxNodes"] * t["pricePerNodeHour"][1] for t in tiers), 4),
        "worstCaseNodes": exposure,
        "gangTiers": [t["tier"] for t in tiers if t["gang"]],
        "largestGang": max((t["maxNodes"] for t in tiers if t["gang"]), default=0),
        "guaranteedBeforeOnDemand": guaranteed_first(chain),
        "gpusPerNode": gpus_per_node,
    }


def guaranteed_first(chain: list[CapacityTier]) -> bool:
    """Whether a reservation, Capacity Block or flex-start tier comes before any on-demand tier."""
    for t in chain:
        if t.kind in GUARANTEED:
            return True
        if t.kind == "on-demand":
            return False
    return False


# --------------------------------------------------------------------------- EKS (Karpenter)


KARPENTER_TYPE = {"reservation": "reserved", "capacity-block": "reserved", "on-demand": "on-demand", "spot": "spot"}
TOP_WEIGHT = 100


def tier_weight(index: int) -> int:
    """Karpenter NodePool weight of the chain's `index`-th tier: higher goes first (1..100)."""
    return max(TOP_WEIGHT - 10 * index, 1)


def karpenter_tier_pools(
    base_pool: dict[str, Any], base_class: dict[str, Any], chain: list[CapacityTier], *, limits: Any
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """One Karpenter NodePool per tier from the pool's single-tier NodePool and EC2NodeClass
    manifests: named `<pool>-<tier>`, weighted along the chain, its `karpenter.sh/capacity-type`
    requirement the tier's (`reserved` for reservations and Capacity Blocks), the tier label on its
    nodes and its own limits (`limits(nodes)`). Reserved tiers get an EC2NodeClass of their own that
    selects their reservation by id (`capacityReservationSelectorTerms`); others share the base class."""
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    name = base_pool["metadata"]["name"]
    for j, t in enumerate(chain):
        if t.kind == "flex":  # rejected on AWS by chain_problems
            continue
        tier = tier_name(t, j)
        pool = copy.deepcopy(base_pool)
        pool["metadata"]["name"] = f"{name}-{tier}"
        spec = pool["spec"]
        spec["weight"] = tier_weight(j)
        template = spec["template"]
        template["metadata"].setdefault("labels", {})[TIER_LABEL] = t.kind
        reqs = [r for r in template["spec"]["requirements"] if r["key"] != KARPENTER_CAPACITY_TYPE]
        reqs.append({"key": KARPENTER_CAPACITY_TYPE, "operator": "In", "values": [KARPENTER_TYPE[t.kind]]})
        node_class = None
        if t.kind in ("reservation", "capacity-block"):
            node_class = copy.deepcopy(base_class)
            node_class["metadata"]["name"] = f"{base_class['metadata']['name']}-{tier}"
            ref = t.reservation or t.capacity_block or ""
            arn = _AWS_CR_ARN.match(ref)
            node_class["spec"]["capacityReservationSelectorTerms"] = [{"id": arn["id"] if arn else ref}]
            template["spec"]["nodeClassRef"] = {
                **template["spec"]["nodeClassRef"],
                "name": node_class["metadata"]["name"],
            }
            if t.zone:
                reqs = [r for r in reqs if r["key"] != "topology.kubernetes.io/zone"]
                reqs.append({"key": "topology.kubernetes.io/zone", "operator": "In", "values": [t.zone]})
        template["spec"]["requirements"] = reqs
        if t.max_nodes is not None:
            spec["limits"] = limits(t.max_nodes)
        out.append((pool, node_class))
    return out


# --------------------------------------------------------------------------- GKE


def gke_tier_args(tier: CapacityTier, *, training: bool) -> dict[str, Any]:
    """What a tier changes on a `gcp.container.NodePool` (pulumi_gcp argument names): `node_config`
    keys (`reservation_affinity`, `spot`, `flex_start`, `max_run_duration`) and pool keys
    (`queued_provisioning` for training pools on flex-start)."""
    node: dict[str, Any] = {"labels": {TIER_LABEL: tier.kind}}
    pool: dict[str, Any] = {}
    if tier.kind == "reservation":
        # A reservation of another project (shared) is named `projects/P/reservations/N` (GKE
        # "Consuming reserved zonal resources"); the zone is the node pool's placement, not the name.
        m = _GCP_RESERVATION.match(tier.reservation or "")
        value = tier.reservation if m is None else m["name"]
        if m is not None and m["project"]:
            value = f"projects/{m['project']}/reservations/{m['name']}"
        node["reservation_affinity"] = {
            "consume_reservation_type": "SPECIFIC_RESERVATION",
            "key": "compute.googleapis.com/reservation-name",
            "values": [value],
        }
    else:
        node["reservation_affinity"] = {"consume_reservation_type": "NO_RESERVATION"}
    if tier.kind == "spot":
        node["spot"] = True
    if tier.kind == "flex":
        assert tier.flex is not None
        node["flex_start"] = True
        node["max_run_duration"] = f"{duration_seconds(tier.flex.max_run_duration)}s"
        if training and tier.flex.queued:
            # Queued provisioning: a training gang's nodes are provisioned all at once or not at
            # all (GKE ProvisioningRequest); it needs autoscaling with location policy ANY.
            pool["queued_provisioning"] = {"enabled": True}
    return {"node_config": node, "pool": pool}


def compute_class_name(pool: str) -> str:
    """The ComputeClass of GKE pool `pool` (a class name may not start with `gke` or `autopilot`)."""
    return f"aicloud-{pool}"


def compute_class_manifest(name: str, tier_pools: list[str], *, pool: str) -> dict[str, Any]:
    """A GKE ComputeClass that orders a chain's tier node pools (GKE docs, "About custom
    ComputeClasses"):

    - one `nodepools` priority rule per tier, in chain order: the tiers are manually created node
      pools that already carry their provisioning model (reservation affinity, flex-start, Spot), and
      "to consume reservations in manually created node pools" GKE names them in `nodepools` rules;
      such a rule takes no other field, and a list inside one rule has no order, hence one pool per
      rule;
    - `activeMigration.optimizeRulePriority`: when a preferred tier has room again, GKE replaces
      nodes of later tiers with nodes of earlier ones (respecting PodDisruptionBudgets and pods
      annotated `cluster-autoscaler.kubernetes.io/safe-to-evict: "false"`);
    - `nodePoolAutoCreation` off: only the tier pools serve the class, never a pool GKE makes up;
    - `whenUnsatisfiable: DoNotScaleUp`: when every tier is exhausted pods wait (the default from
      GKE 1.33; set explicitly so an upgrade does not change it).
    """
    return {
        "apiVersion": COMPUTE_CLASS_API,
        "kind": "ComputeClass",
        "metadata": {"name": name, "labels": {"aicloud.dev/pool": pool}},
        "spec": {
            "priorities": [{"nodepools": [p]} for p in tier_pools],
            "activeMigration": {"optimizeRulePriority": True},
            "nodePoolAutoCreation": {"enabled": False},
            "whenUnsatisfiable": "DoNotScaleUp",
        },
    }


def chain_kinds(chain: list[Any] | None) -> list[str]:
    """The kinds of a (valid) chain in order; [] when there is none."""
    return [t.kind for t in (chain or []) if t is not INVALID]
