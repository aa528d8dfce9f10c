"""The machine and region catalog: data files read once, exposed as small typed records.

`gpus.yaml` lists every machine type a node pool may use (GPU model, GPUs per node, GPU memory,
vCPU, memory, on-demand price per hour in a reference region, the regions that offer it and, for
GCP GPU types, the zones), regional price factors and each GPU's MIG profiles; `regions.yaml`
lists the regions aicloud knows and their zones; `prices.yaml` the hourly and monthly prices of
what is not a node (control planes, NAT, load balancers, storage). Config validation, the node
pool components, the offline plan's cost figures and the cost guardrail all read this one source.
`refresh.py` documents how the files are rebuilt from the clouds' own listings, and when.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

Cloud = Literal["aws", "gcp"]
CLOUDS: tuple[Cloud, ...] = ("aws", "gcp")
_HERE = Path(__file__).parent
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it (same documents, a tenth of the pure-Python parser's time:
the catalog is read by every plan, inside config validation)."""


@dataclass(frozen=True, slots=True)
class Accelerator:
    """A GPU model and how each cloud's Kubernetes integration names it."""

    name: str
    """Cloud-neutral name, e.g. `nvidia-l4`."""
    model: str
    """Human-readable model, e.g. `NVIDIA L4`."""
    aws_label: str | None
    """Value of the `k8s.amazonaws.com/accelerator` node label on EKS."""
    gke_type: str | None
    """GKE `guest_accelerator.type` (None where GKE does not offer it)."""
    mig: bool
    """Whether the GPU supports Multi-Instance GPU partitioning."""
    mig_profiles: tuple[str, ...] = ()
    """The MIG partition sizes the GPU offers (`1g.10gb`...), smallest first."""


@dataclass(frozen=True, slots=True)
class MachineType:
    """One machine type of the catalog."""

    cloud: Cloud
    type: str
    family: str
    gpus: int
    """GPUs per node (0 for general-purpose machines)."""
    vcpus: int
    memory_gib: float
    price_per_hour: float
    """On-demand USD per node-hour in the cloud's reference region."""
    regions: frozenset[str] | None
    """Regions that offer the type; None means every region of the cloud."""
    gpu: str | None = None
    """Cloud-neutral accelerator name (see `Accelerator`)."""
    gpu_memory_gib: float = 0
    zones: dict[str, tuple[str, ...]] | None = None
    """Zones of each region that offer the type (GCP GPU types); None: not recorded per zone."""

    @property
    def is_gpu(self) -> bool:
        return self.gpus > 0

    def offered_in(self, region: str) -> bool:
        return self.regions is None or region in self.regions

    def zones_in(self, region: str, candidates: tuple[str, ...] | list[str]) -> list[str]:
        """The zones among `candidates` (of `region`) that offer the type: all of them when the
        catalog does not record zones for it."""
        if self.zones is None:
            return list(candidates)
        offered = self.zones.get(region, ())
        return [z for z in candidates if z in offered]


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything in the catalog files, indexed for lookups."""

    machines: dict[tuple[str, str], MachineType]
    accelerators: dict[str, Accelerator]
    regions: dict[str, dict[str, tuple[str, ...]]]
    references: dict[str, dict[str, str]]
    price_factors: dict[str, dict[str, float]]
    """Ratio of a region's on-demand list price to the cloud's reference region, where recorded."""
    prices: dict[str, Any]
    """Prices of what is not a node (`prices.yaml`)."""

    def machine(self, cloud: str, type_: str) -> MachineType | None:
        return self.machines.get((cloud, type_))

    def machine_types(self, cloud: str) -> list[str]:
        return sorted(t for c, t in self.machines if c == cloud)

    def zones(self, cloud: str, region: str) -> tuple[str, ...]:
        return self.regions.get(cloud, {}).get(region, ())

    def region_names(self, cloud: str) -> list[str]:
        return sorted(self.regions.get(cloud, {}))

    def price_factor(self, cloud: str, region: str) -> float | None:
        """The region's price factor against the reference region; None when not recorded."""
        return self.price_factors.get(cloud, {}).get(region)


@functools.cache
def load_catalog() -> Catalog:
    """Read and index the catalog files (cached: the files are read once per process)."""
    gpus = yaml.load((_HERE / "gpus.yaml").read_text(), Loader=_Loader)
    regions = yaml.load((_HERE / "regions.yaml").read_text(), Loader=_Loader)
    accelerators = {
        name: Accelerator(
            name=name,
            model=a["model"],
            aws_label=a.get("aws_label"),
            gke_type=a.get("gke_type"),
            mig=bool(a.get("mig", False)),
            mig_profiles=tuple(a.get("mig_profiles", ())),
        )
        for name, a in gpus["accelerators"].items()
    }
    machines: dict[tuple[str, str], MachineType] = {}
    for m in gpus["machines"]:
        offered = m["regions"]
        machines[(m["cloud"], m["type"])] = MachineType(
            cloud=m["cloud"],
            type=m["type"],
            family=m["family"],
            gpus=int(m["gpus"]),
            vcpus=int(m["vcpus"]),
            memory_gib=float(m["memory_gib"]),
            price_per_hour=float(m["price_per_hour"]),
            regions=None if offered == "all" else frozenset(offered),
            gpu=m.get("gpu"),
            gpu_memory_gib=float(m.get("gpu_memory_gib", 0)),
            zones=(
                {r: tuple(z) for r, z in m["zones"].items() if offered == "all" or r in offered}
                if "zones" in m
                else None
            ),
        )
    return Catalog(
        machines=machines,
        accelerators=accelerators,
        regions={c: {r: tuple(z) for r, z in regions[c].items()} for c in CLOUDS},
        references=gpus["references"],
        price_factors={c: {r: float(f) for r, f in gpus.get("price_factors", {}).get(c, {}).items()} for c in CLOUDS},
        prices=yaml.load((_HERE / "prices.yaml").read_text(), Loader=_Loader),
    )
