"""Release strategies resolved for one region: `plan_endpoint` turns the serving section and the
region's node pool into an `EndpointPlan` (tracks per strategy, their weights and replicas, GPUs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from components.endpoint.spec import Cloud, ModelUri, ServingSpec, Strategy, Track
from components.nodepool import NodePoolSpec, pool_taints, tolerations_for
from components.platform import RegionSpec

# --------------------------------------------------------------------------- per-region plan


@dataclass(frozen=True, slots=True)
class TrackPlan:
    """One Deployment (or KServe revision) of the endpoint in a region."""

    name: str
    """`stable`, `canary`, `blue`, `green`, `a` or `b`."""
    image: Any
    """Image reference pinned by digest (a Pulumi output when it comes from `aicloud:images`)."""
    model_uri: str
    min_replicas: int
    max_replicas: int
    weight: int
    """Percent of unmatched requests it receives."""
    role: str
    """What the track is in its strategy: primary, canary, active, standby, variant-b."""

    @property
    def replicas(self) -> str:
        return (
            str(self.min_replicas)
            if self.min_replicas == self.max_replicas
            else f"{self.min_replicas}-{self.max_replicas}"
        )


@dataclass(frozen=True, slots=True)
class EndpointPlan:
    """`ServingSpec` resolved for one region: pool, GPUs, tracks and routing."""

    region_key: str
    cloud: Cloud
    region: str
    k8s_version: str
    spec: ServingSpec
    pool: NodePoolSpec
    gpus_per_replica: int
    gpu_units_per_node: int
    """`nvidia.com/gpu` a node of the pool advertises (GPUs x time-slicing replicas / MIG slices)."""
    tracks: tuple[TrackPlan, ...]
    dial: int
    tolerations: list[dict[str, str]] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    @property
    def strategy(self) -> Strategy:
        return self.spec.release.strategy

    @property
    def gpu_capacity(self) -> int:
        """`nvidia.com/gpu` the pool can ever offer (max nodes x units per node)."""
        return self.pool.max_nodes * self.gpu_units_per_node

    @property
    def gpu_demand(self) -> int:
        """Worst-case GPUs during a rollout: every track at its max plus surge per Deployment.

        On KServe two revisions run during any rollout and each may scale to max.
        """
        if self.gpus_per_replica == 0:
            return 0
        if self.spec.backend == "kserve":
            return 2 * self.tracks[0].max_replicas * self.gpus_per_replica
        pods = sum(t.max_replicas + self.spec.release.max_surge for t in self.tracks)
        return pods * self.gpus_per_replica

    def gpu_breakdown(self) -> str:
        if self.spec.backend == "kserve":
            return f"2 revisions x {self.tracks[0].max_replicas} replicas x {self.gpus_per_replica} GPU"
        surge = self.spec.release.max_surge
        parts = " + ".join(f"{t.name} {t.max_replicas}+{surge} surge" for t in self.tracks)
        return f"({parts}) pods x {self.gpus_per_replica} GPU"

    @property
    def gateway_name(self) -> str:
        return f"{self.model}-gw"

    @property
    def entry_service(self) -> str | None:
        """The Service a regional load balancer sends traffic to (None on KServe)."""
        if self.spec.backend == "kserve":
            return None
        gw = self.spec.gateway
        if gw is None:
            return self.model
        return gw.service_name or f"{self.gateway_name}-{gw.class_name}"

    @property
    def neg_name(self) -> str:
        """Name of the standalone zonal NEGs GKE creates for the entry Service."""
        return f"{self.region_key}-{self.model}-neg"

    def track(self, name: str) -> TrackPlan:
        return next(t for t in self.tracks if t.name == name)


def _uri_for(uri: ModelUri, cloud: str) -> str | None:
    return uri if isinstance(uri, str) else uri.get(cloud)  # type: ignore[call-overload]


def gpu_units_per_node(pool: NodePoolSpec) -> int:
    """`nvidia.com/gpu` one node of the pool advertises: GPUs, times the time-slicing replicas,
    or times the MIG slices of the profile (`1g` -> 7, `2g` -> 3, `3g` -> 2, else 1)."""
    machine = pool.machine
    gpus = machine.gpus if machine is not None else 0
    if pool.gpu_sharing == "time-slicing":
        return gpus * pool.time_slicing_replicas
    if pool.gpu_sharing == "mig" and pool.mig_profile:
        return gpus * max(1, 7 // int(pool.mig_profile[0]))
    return gpus


def resolve_pool(spec: ServingSpec, region: RegionSpec) -> NodePoolSpec:
    """The node pool the endpoint runs on in `region` (ValueError naming the choices)."""
    names = [p.name for p in region.node_pools]
    if spec.pool is not None:
        pool = next((p for p in region.node_pools if p.name == spec.pool), None)
        if pool is None:
            raise ValueError(f"region {region.name} has no node pool {spec.pool!r}; pools: {', '.join(names)}")
        if pool.role == "training":
            raise ValueError(
                f"pool {spec.pool!r} in {region.name} is a training pool; serve from an inference or general pool"
            )
        return pool
    inference = [p for p in region.node_pools if p.role == "inference"]
    if len(inference) != 1:
        raise ValueError(
            f"region {region.name} has {len(inference)} inference pools "
            f"({', '.join(p.name for p in inference) or 'none'}); set serving.pool (pools: {', '.join(names)})"
        )
    return inference[0]


IMAGES_SERVER = "<aicloud:images server>"
"""Stands for the `server` image of `aicloud:images` where only the config is at hand."""


def plan_endpoint(spec: ServingSpec, region: RegionSpec, *, default_image: Any = None) -> EndpointPlan:
    """Resolve the serving spec for one region (pure; `validate_serving` has checked it).

    `default_image`: the region's `server` image reference from `aicloud:images` (a string or a
    Pulumi output), used where neither `serving.image` nor a track names one.
    """
    pool = resolve_pool(spec, region)
    units = gpu_units_per_node(pool)
    gpus = spec.resources.gpus if spec.resources.gpus is not None else (1 if units else 0)
    replicas = spec.region(region.name).replicas or spec.replicas
    cloud = region.cloud

    def version(track: Track | None) -> tuple[Any, str]:
        image = (track.image if track else None) or spec.image or default_image or IMAGES_SERVER
        uri = (track.model_uri if track else None) or spec.model_uri
        return image, _uri_for(uri, cloud) or ""

    image, uri = version(None)
    release = spec.release
    tracks: list[TrackPlan]
    if release.strategy == "canary":
        c = release.canary
        assert c is not None
        c_image, c_uri = version(c)
        if spec.backend == "kserve":
            # KServe keeps the last rolled-out revision as stable itself and sizes both alike.
            stable = TrackPlan(
                "stable", "(previous revision)", "", replicas.min, replicas.max, c.weights.stable, "primary"
            )
            canary = TrackPlan("canary", c_image, c_uri, replicas.min, replicas.max, c.weights.canary, "canary")
        else:
            stable = TrackPlan("stable", image, uri, replicas.min, replicas.max, c.weights.stable, "primary")
            n = c.replicas or 1
            canary = TrackPlan("canary", c_image, c_uri, n, n, c.weights.canary, "canary")
        tracks = [stable, canary]
    elif release.strategy == "blue-green":
        bg = release.blue_green_or_default
        tracks = []
        for colour in ("blue", "green"):
            c_image, c_uri = version(getattr(bg, colour))
            if colour == bg.active:
                tracks.append(TrackPlan(colour, c_image, c_uri, replicas.min, replicas.max, 100, "active"))
            else:
                n = bg.standby_replicas
                tracks.append(TrackPlan(colour, c_image, c_uri, n, n, 0, "standby"))
    elif release.strategy == "ab":
        ab = release.ab
        assert ab is not None
        b_image, b_uri = version(ab)
        tracks = [
            TrackPlan("a", image, uri, replicas.min, replicas.max, 100, "primary"),
            TrackPlan("b", b_image, b_uri, ab.replicas, ab.replicas, 0, "variant-b"),
        ]
    else:
        tracks = [TrackPlan("stable", image, uri, replicas.min, replicas.max, 100, "primary")]
    return EndpointPlan(
        region_key=region.name,
        cloud=cloud,
        region=region.region,
        k8s_version=region.cluster.version,
        spec=spec,
        pool=pool,
        gpus_per_replica=gpus,
        gpu_units_per_node=units,
        tracks=tuple(tracks),
        dial=spec.region(region.name).dial,
        tolerations=tolerations_for(pool_taints(pool)),
    )
