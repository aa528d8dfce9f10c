"""Inference endpoints: the model server deployed in one region's cluster, with safe releases.

A stack's `aicloud:serving` section (`ServingSpec`) says which model, which image (pinned by
digest), which node pool, how many replicas, how to autoscale and how to release. For each
serving region, `plan_endpoint` resolves it against that region's node pool into an
`EndpointPlan` (tracks, replicas, GPUs), the pure `render_endpoint` turns the plan into
Kubernetes manifests (plain dicts), and `InferenceEndpoint` creates them as typed resources (or
`CustomResource`s for CRDs) under the region's Kubernetes provider.

Release strategies (`release.strategy`):
- `rolling`: one Deployment (`<model>-stable`), rolling updates bounded by `maxSurge`.
- `canary`: `<model>-stable` and `<model>-canary` behind a Gateway API `HTTPRoute` whose
  backendRefs carry the weights (backend `deployment`), or KServe's `canaryTrafficPercent`
  (backend `kserve`). Weights must sum to 100.
- `blue-green`: `<model>-blue` and `<model>-green`; the Service `<model>` selects the active
  colour. Switching (and switching back) changes only the Service's selector, and the standby
  colour stays warm (`standbyReplicas`) so a switch is instant.
- `ab`: `<model>-a` serves by default, `<model>-b` gets requests whose header matches
  (`x-variant: b`), through an `HTTPRoute` match.

Every Deployment's replica count is owned by an autoscaler (HPA, or a KEDA `ScaledObject`);
tracks with a fixed size (canary, A/B variant B, blue-green standby) get an autoscaler pinned to
min = max, so no replica count flips owner when a strategy or the active colour changes.

Validation (`validate_serving`, run by the stack config before anything exists) rejects every
setting that would be silently ignored (a canary without a router that can weight traffic,
weights that do not sum to 100, a canary identical to stable, blocks of another strategy) and
any rollout whose worst case (every track at its maximum plus `maxSurge` per Deployment) needs
more GPUs than the node pool can ever have, unless `allowGpuSurge: true`.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import ValidationError

from components.base import Spec, child_opts, type_token
from components.image import PINNED_REF
from components.nodepool import GPU_RESOURCE, POOL_LABEL, NodePoolSpec, pool_taints, tolerations_for
from components.platform import RegionSpec
from components.upstream import chart_pin
from workloads.storage import lake_env, split_lake

# --------------------------------------------------------------------------- the server's contract

SERVER_PORT = 8080
"""The model server's HTTP port (`python -m workloads.server --port`, default 8080)."""
PORT_NAME = "http"
READY_PATH = "/v2/health/ready"
"""Open Inference Protocol v2 readiness: 200 once every model is loaded, 503 before and while
draining. Readiness and startup probes and every load balancer health check use it."""
LIVE_PATH = "/v2/health/live"
"""Open Inference Protocol v2 liveness: 200 while the process runs."""
METRICS_PATH = "/metrics"
REQUESTS_METRIC = "aicloud_server_requests_total"
"""The server's request counter (`workloads.server.metrics.REQUESTS`), the KEDA trigger's input."""
SERVICE_PORT = 80
"""Port of the model's Services inside the cluster (forwarded to the pod's `http` port)."""
RUN_AS_USER = 10001
"""Non-root user and group the server runs as (any non-zero id works: the image needs no home)."""
DEFAULT_NAMESPACE = "aicloud-serving"
APP = "model-server"

Cloud = Literal["aws", "gcp"]
Strategy = Literal["rolling", "canary", "blue-green", "ab"]
ModelUri = str | dict[Cloud, str]
"""An artifact URI for every cloud (`s3://...`), or one per cloud (`{aws: s3://.., gcp: gs://..}`)."""

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_URI_SCHEMES = {"aws": "s3://", "gcp": "gs://"}
LAKE_CONFIG_MAP = "aicloud-lake"
"""ConfigMap in the serving namespace: `AICLOUD_LAKE_<ZONE>` -> the zone's URI. Model URIs under the
lakehouse's `models` zone (`lake://models/<model>/<version>`) resolve through it, in every serving
region to the models bucket its server identity may read (the region's replica or the primary)."""
_HTTP_HEADER = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"


def _pinned(value: str) -> str:
    if not PINNED_REF.match(value):
        raise ValueError(
            "image must be pinned by digest, `registry/name@sha256:<64 hex digits>`; a tag such as "
            "`:latest` can point at a different image on the next pull, so a replica restarted "
            "tomorrow could serve another model"
        )
    return value


# --------------------------------------------------------------------------- config


class Replicas(Spec):
    """Replica bounds of the serving track in one region (the autoscaler's floor and ceiling)."""

    min: int = Field(default=1, ge=1, le=1000)
    """Floor; at least 1 so the endpoint answers without a cold start."""
    max: int = Field(default=3, ge=1, le=1000)
    """Ceiling; bounded by the node pool's GPUs (see `allowGpuSurge`)."""

    @model_validator(mode="after")
    def _order(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Resources(Spec):
    """What one server replica requests."""

    cpu: str = Field(default="2", pattern=_QUANTITY.pattern)
    """CPU request (a Kubernetes quantity); also the CPU limit of CPU-only replicas."""
    memory: str = Field(default="8Gi", pattern=_QUANTITY.pattern)
    """Memory request and limit."""
    gpus: int | None = Field(default=None, ge=0, le=16)
    """`nvidia.com/gpu` per replica; default 1 on a GPU pool and 0 on a CPU pool. A GPU pool
    needs at least 1 (else the replica would hold a GPU node without using it)."""
    scratch: str = Field(default="4Gi", pattern=_QUANTITY.pattern)
    """Size limit of the `/tmp` emptyDir (the root filesystem is read-only; artifacts download
    there)."""


class Autoscaling(Spec):
    """How replicas follow load.

    `cpu`: HPA (autoscaling/v2) on CPU utilisation. `metric`: HPA on a per-pod custom metric
    (served by prometheus-adapter). `keda`: a KEDA ScaledObject on the request rate read from
    Prometheus. `knative`: KServe's Knative autoscaler on requests per second (backend kserve
    only, which accepts nothing else).
    """

    mode: Literal["cpu", "metric", "keda", "knative"] = "cpu"
    target_cpu_utilization: int = Field(default=70, ge=10, le=100)
    """`cpu` only: average CPU utilisation (% of the request) the HPA holds."""
    requests_per_second: float = Field(default=20.0, gt=0)
    """`metric`, `keda`, `knative`: requests per second one replica should carry."""
    metric: str = Field(default="aicloud_server_requests_per_second", pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    """`metric` only: the per-pod custom metric the HPA reads (a prometheus-adapter rule)."""
    prometheus_address: str | None = Field(default=None, pattern=r"^https?://\S+$")
    """`keda` only (required there): the Prometheus the ScaledObject queries."""
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)
    """How long load must stay low before replicas are removed (GPU pods start slowly)."""
    install_keda: bool = True
    """`keda` only: install KEDA (Helm) in each serving cluster; false when one runs already."""

    @model_validator(mode="after")
    def _mode_fields(self) -> Autoscaling:
        used = {
            "cpu": {"target_cpu_utilization"},
            "metric": {"requests_per_second", "metric"},
            "keda": {"requests_per_second", "prometheus_address", "install_keda"},
            "knative": {"requests_per_second"},
        }[self.mode]
        mode_fields = {"target_cpu_utilization", "requests_per_second", "metric", "prometheus_address", "install_keda"}
        ignored = sorted((self.model_fields_set & mode_fields) - used)
        problems = [f"{_camel(k)} is not used by mode {self.mode!r} (it would be ignored); remove it" for k in ignored]
        if self.mode == "keda" and not self.prometheus_address:
            problems.append("mode 'keda' needs prometheusAddress (the Prometheus KEDA queries)")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class Track(Spec):
    """A model version: image and artifact; unset fields fall back to the stable ones."""

    image: str | None = None
    """Server image pinned by digest; default `serving.image`."""
    model_uri: ModelUri | None = None
    """Artifact URI (or one per cloud); default `serving.modelUri`."""

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else _pinned(value)


class CanaryWeights(Spec):
    """Percent of requests for each track; they must sum to 100."""

    stable: int = Field(ge=0, le=100)
    canary: int = Field(ge=0, le=100)


class CanarySpec(Track):
    """A canary: a second model version receiving `weights.canary` percent of requests."""

    weights: CanaryWeights
    replicas: int | None = Field(default=None, ge=1, le=100)
    """Canary replicas per region (backend deployment; default 1). KServe sizes the canary
    itself, so it is an error there."""

    @model_validator(mode="after")
    def _weights(self) -> CanarySpec:
        total = self.weights.stable + self.weights.canary
        if total != 100:
            raise ValueError(
                f"weights must sum to 100 (got stable {self.weights.stable} + canary {self.weights.canary} = {total})"
            )
        if self.image is None and self.model_uri is None:
            raise ValueError("a canary needs image or modelUri (else it serves exactly what stable serves)")
        return self


class BlueGreenSpec(Spec):
    """Two colours; the Service sends every request to `active`."""

    active: Literal["blue", "green"] = "blue"
    """The colour that serves; switching is this one change (the Service's selector follows)."""
    standby_replicas: int = Field(default=1, ge=1, le=100)
    """Replicas of the standby colour in each region, kept warm so a switch is instant and a
    switch back finds capacity. Raise it to the active colour's load before switching."""
    blue: Track = Field(default_factory=Track)
    green: Track = Field(default_factory=Track)


class AbSpec(Track):
    """A/B test: requests whose `header` equals `value` go to variant B."""

    header: str = Field(default="x-variant", pattern=_HTTP_HEADER, max_length=256)
    value: str = Field(default="b", min_length=1, max_length=4096)
    replicas: int = Field(default=1, ge=1, le=100)
    """Variant B replicas per region."""

    @model_validator(mode="after")
    def _differs(self) -> AbSpec:
        if self.image is None and self.model_uri is None:
            raise ValueError("variant B needs image or modelUri (else both variants serve the same model)")
        return self


class ReleaseSpec(Spec):
    """How new versions roll out. Only the block of the chosen strategy may be present."""

    strategy: Strategy = "rolling"
    max_surge: int = Field(default=1, ge=0, le=100)
    """Extra pods per Deployment during a rolling update (each holds `resources.gpus` GPUs)."""
    max_unavailable: int = Field(default=0, ge=0, le=100)
    """Pods per Deployment that may be down during a rolling update."""
    canary: CanarySpec | None = None
    blue_green: BlueGreenSpec | None = None
    ab: AbSpec | None = None

    @model_validator(mode="after")
    def _blocks(self) -> ReleaseSpec:
        problems = []
        blocks = {"canary": self.canary, "blue-green": self.blue_green, "ab": self.ab}
        for strategy, block in blocks.items():
            key = _camel(strategy.replace("-", "_"))
            if block is not None and strategy != self.strategy:
                problems.append(
                    f"{key} is set but strategy is {self.strategy!r}, so it would be ignored; "
                    f"remove it or set strategy: {strategy}"
                )
        if self.strategy == "canary" and self.canary is None:
            problems.append("strategy 'canary' needs a canary block (image or modelUri, weights)")
        if self.strategy == "ab" and self.ab is None:
            problems.append("strategy 'ab' needs an ab block (variant B's image or modelUri)")
        if self.max_surge == 0 and self.max_unavailable == 0:
            problems.append("maxSurge and maxUnavailable cannot both be 0 (a rollout could never progress)")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def blue_green_or_default(self) -> BlueGreenSpec:
        return self.blue_green or BlueGreenSpec()


class GatewaySpec(Spec):
    """An in-cluster Gateway API implementation that routes the endpoint's traffic.

    Needed for weighted canaries and A/B header routing on backend `deployment`. aicloud creates
    the `Gateway` and `HTTPRoute`; the implementation (named by `className`, e.g. Istio) must be
    installed in the cluster and runs the data plane.
    """

    class_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    """The GatewayClass, e.g. `istio`."""
    service_name: str | None = Field(default=None, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    """The data-plane Service the implementation creates for the Gateway, which the regional
    load balancer targets; default `<gateway>-<className>` (Istio's naming)."""


class AwsFrontDoor(Spec):
    """The global front door over the AWS serving regions."""

    mode: Literal["accelerator", "route53"] = "accelerator"
    """`accelerator`: AWS Global Accelerator (two anycast IPs, internal NLBs per region).
    `route53`: latency-based DNS records with health checks (internet-facing NLBs)."""
    domain: str | None = Field(default=None, pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$")
    """DNS name of the endpoint; required for route53, optional alias to the accelerator."""
    hosted_zone_id: str | None = Field(default=None, pattern=r"^Z[A-Z0-9]{1,31}$")
    """Route 53 hosted zone of `domain`; required with `domain`."""
    certificate_arns: dict[str, str] = Field(default_factory=dict)
    """ACM certificate per AWS serving region key for a TLS listener on 443; all or none."""
    install_controller: bool = True
    """Install the AWS Load Balancer Controller in each AWS serving cluster (false when the
    platform already runs one: it must then reconcile `TargetGroupBinding`s)."""

    @field_validator("certificate_arns")
    @classmethod
    def _arns(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(
            k for k, v in value.items() if not re.match(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/\S+$", v)
        )
        if bad:
            raise ValueError(f"not ACM certificate ARNs: {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _dns(self) -> AwsFrontDoor:
        if self.mode == "route53" and not (self.domain and self.hosted_zone_id):
            raise ValueError("mode 'route53' needs domain and hostedZoneId (the latency records live there)")
        if bool(self.domain) != bool(self.hosted_zone_id):
            raise ValueError("domain and hostedZoneId go together")
        return self


class CloudArmorSpec(Spec):
    """A Cloud Armor policy on the GCP backend service."""

    denied_cidrs: list[str] = Field(default_factory=list)
    """Source ranges refused with 403."""
    rate_limit_per_minute: int | None = Field(default=None, ge=10)
    """Requests per minute per client IP above which requests get 429."""


class GcpFrontDoor(Spec):
    """The global external Application Load Balancer over the GCP serving regions."""

    domains: list[str] = Field(min_length=1)
    """Names of the Google-managed certificate (their DNS must point at the global address)."""
    cloud_armor: CloudArmorSpec | None = None
    max_rate_per_endpoint: float | None = Field(default=None, gt=0)
    """Requests per second per pod the load balancer aims for; default the autoscaling target."""


class GlobalSpec(Spec):
    """One front door per cloud; a cloud without a block gets none."""

    aws: AwsFrontDoor | None = None
    gcp: GcpFrontDoor | None = None


class RegionServing(Spec):
    """Per-region settings of the endpoint."""

    replicas: Replicas | None = None
    """Replica bounds here (default `serving.replicas`)."""
    dial: int = Field(default=100, ge=0, le=100)
    """Percent of the traffic the front door would send this region that it does send (AWS
    traffic dial, GCP capacity scaler); 0 drains the region. Route 53 mode allows only 0 or 100."""


class ServingSpec(Spec):
    """The `aicloud:serving` section: one model served from every serving region."""

    model: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$")
    """Served model name, a DNS label of at most 32 characters; names every object."""
    image: str | None = None
    """The server image, pinned by digest (`registry/name@sha256:<64 hex>`); default the `server`
    workload of `aicloud:images` (pulled from the registry nearest each region)."""
    model_uri: ModelUri
    """Artifact URI: `lake://models/<path>` (the lakehouse's models zone, resolved per region to the
    bucket the server identity reads), or `s3://` for AWS regions and `gs://` for GCP ones (one per
    cloud)."""
    namespace: str = Field(default=DEFAULT_NAMESPACE, pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    backend: Literal["deployment", "kserve"] = "deployment"
    """`deployment`: Deployments, Services, autoscalers aicloud renders. `kserve`: a KServe
    InferenceService (Serverless mode; KServe and Knative must be installed)."""
    pool: str | None = None
    """Node pool the replicas run on in every serving region; default the region's only
    `inference` pool."""
    resources: Resources = Field(default_factory=Resources)
    replicas: Replicas = Field(default_factory=Replicas)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    gateway: GatewaySpec | None = None
    """Route through a Gateway API Gateway (required for canary and ab on backend deployment)."""
    regions: dict[str, RegionServing] = Field(default_factory=dict)
    """Per-region overrides by region key (only serving regions)."""
    allow_gpu_surge: bool = False
    """Allow a rollout whose worst case needs more GPUs than the pool's maximum."""
    release: ReleaseSpec = Field(default_factory=ReleaseSpec)
    front_door: GlobalSpec = Field(default_factory=GlobalSpec, alias="global")
    """Global front doors (`aicloud:serving.global`)."""
    startup_seconds: int = Field(default=600, ge=30, le=3600)
    """How long a replica may take to load its model before it is restarted."""
    drain_seconds: int = Field(default=15, ge=0, le=300)
    """After SIGTERM the server reports not-ready this long, so load balancers stop sending."""

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else _pinned(value)

    def region(self, key: str) -> RegionServing:
        return self.regions.get(key) or RegionServing()


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


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


# --------------------------------------------------------------------------- validation

Problem = tuple[tuple[str | int, ...], str, Any]
"""(key path below `serving`, message, offending value)."""


def model_uris(spec: ServingSpec) -> list[tuple[tuple[str | int, ...], ModelUri]]:
    """Every model URI the serving config names, with its key path under `serving`."""
    release = spec.release
    uris: list[tuple[tuple[str | int, ...], ModelUri]] = [(("modelUri",), spec.model_uri)]
    for path, track in (
        (("release", "canary"), release.canary),
        (("release", "ab"), release.ab),
        (("release", "blueGreen", "blue"), release.blue_green.blue if release.blue_green else None),
        (("release", "blueGreen", "green"), release.blue_green.green if release.blue_green else None),
    ):
        if track is not None and track.model_uri is not None:
            uris.append(((*path, "modelUri"), track.model_uri))
    return uris


def serving_problems(spec: ServingSpec, regions: list[RegionSpec] | None) -> list[Problem]:
    """Every check that needs more than one field of the section, or the stack's regions
    (`None` when the regions themselves are invalid: those checks are skipped then)."""
    out: list[Problem] = []
    release = spec.release

    # Backend, router and strategy must fit together: nothing may be silently ignored.
    if spec.backend == "kserve":
        if release.strategy in ("blue-green", "ab"):
            out.append(
                (
                    ("release", "strategy"),
                    f"backend 'kserve' cannot do {release.strategy}: KServe routes "
                    "by canaryTrafficPercent only; use backend 'deployment' (with a gateway)",
                    release.strategy,
                )
            )
        if release.canary is not None and release.canary.replicas is not None:
            out.append(
                (
                    ("release", "canary", "replicas"),
                    "KServe sizes the canary revision itself (it would ignore this); remove it",
                    release.canary.replicas,
                )
            )
        if spec.autoscaling.mode != "knative":
            out.append(
                (
                    ("autoscaling", "mode"),
                    "backend 'kserve' (Serverless) autoscales with Knative only; set mode: knative",
                    spec.autoscaling.mode,
                )
            )
        if spec.gateway is not None:
            out.append((("gateway",), "backend 'kserve' routes through KServe's own ingress; remove gateway", None))
        if spec.front_door.aws is not None or spec.front_door.gcp is not None:
            out.append(
                (
                    ("global",),
                    "a global front door needs backend 'deployment': KServe's ingress "
                    "gateway belongs to the KServe install, so aicloud cannot point a load balancer at it",
                    None,
                )
            )
    else:
        if spec.autoscaling.mode == "knative":
            out.append(
                (("autoscaling", "mode"), "mode 'knative' needs backend 'kserve'; use cpu, metric or keda", "knative")
            )
        if release.strategy in ("canary", "ab") and spec.gateway is None:
            what = "weight traffic" if release.strategy == "canary" else "route by header"
            out.append(
                (
                    ("release", "strategy"),
                    f"strategy {release.strategy!r} on backend 'deployment' needs a "
                    f"router that can {what}: set serving.gateway (Gateway API HTTPRoute), or use backend "
                    "'kserve' for a canary",
                    release.strategy,
                )
            )

    # A second version must differ from the first.
    if release.canary is not None:
        c = release.canary
        if (c.image or spec.image) == spec.image and (c.model_uri or spec.model_uri) == spec.model_uri:
            out.append(
                (
                    ("release", "canary"),
                    "the canary's image and modelUri equal stable's: it would serve the same model",
                    None,
                )
            )
    if release.ab is not None:
        b = release.ab
        if (b.image or spec.image) == spec.image and (b.model_uri or spec.model_uri) == spec.model_uri:
            out.append(
                (("release", "ab"), "variant B's image and modelUri equal variant A's: both serve the same model", None)
            )
    if regions is None:
        return out

    serving = [r for r in regions if r.serving]
    keys = {r.name for r in serving}
    if not serving:
        out.append(((), "no region has serving: true; remove the serving section or mark a region serving", None))
    for key in sorted(set(spec.regions) - keys):
        out.append(
            (
                ("regions", key),
                f"not a serving region of this stack (serving regions: {', '.join(sorted(keys)) or 'none'})",
                key,
            )
        )

    # Artifacts must be readable from each cloud.
    uris = model_uris(spec)
    for cloud in sorted({r.cloud for r in serving}):
        for path, uri in uris:
            got = _uri_for(uri, cloud)
            if got is None:
                out.append((path, f"no URI for {cloud} (serving regions on {cloud} need one)", uri))
            elif (lake := split_lake(got)) is not None:
                if lake[0] != "models" or not lake[1]:
                    out.append(
                        (
                            path,
                            "the server reads the lakehouse's models zone only: use lake://models/<path>",
                            got,
                        )
                    )
            elif "://" in got and not got.startswith((_URI_SCHEMES[cloud], "file://", "https://")):
                out.append(
                    (
                        path,
                        f"{cloud} regions read artifacts from {_URI_SCHEMES[cloud]} (their workload "
                        "identity has no other cloud's credentials); give one URI per cloud",
                        got,
                    )
                )

    # Pools, GPUs per replica and the rollout's GPU bound, per region.
    for region in serving:
        try:
            plan = plan_endpoint(spec, region)
        except ValueError as exc:
            out.append((("pool",), str(exc), spec.pool))
            continue
        units = plan.gpu_units_per_node
        if spec.resources.gpus is not None:
            if units and spec.resources.gpus == 0:
                out.append(
                    (
                        ("resources", "gpus"),
                        f"pool {plan.pool.name!r} in {region.name} is a GPU pool; a "
                        "replica without a GPU would hold a GPU node idle (use a CPU pool or gpus >= 1)",
                        0,
                    )
                )
            elif not units and spec.resources.gpus > 0:
                out.append(
                    (
                        ("resources", "gpus"),
                        f"pool {plan.pool.name!r} in {region.name} has no GPUs; choose a GPU pool or gpus: 0",
                        spec.resources.gpus,
                    )
                )
            elif units and spec.resources.gpus > units:
                out.append(
                    (
                        ("resources", "gpus"),
                        f"a node of pool {plan.pool.name!r} in {region.name} offers "
                        f"{units} {GPU_RESOURCE}; a replica asking for more never schedules",
                        spec.resources.gpus,
                    )
                )
        if plan.gpus_per_replica and plan.gpu_demand > plan.gpu_capacity and not spec.allow_gpu_surge:
            out.append(
                (
                    ("release", "maxSurge"),
                    f"in {region.name} a rollout may need {plan.gpu_demand} GPUs "
                    f"[{plan.gpu_breakdown()}] but pool {plan.pool.name!r} has at most {plan.gpu_capacity} "
                    f"({plan.pool.max_nodes} nodes x {units}); lower replicas.max, the canary/standby "
                    "replicas or maxSurge, raise the pool's maxNodes, or set allowGpuSurge: true",
                    release.max_surge,
                )
            )

    # Front doors.
    for cloud in ("aws", "gcp"):
        door = getattr(spec.front_door, cloud)
        in_cloud = [r.name for r in serving if r.cloud == cloud]
        if door is None:
            continue
        if not in_cloud:
            out.append((("global", cloud), f"there is no {cloud} serving region to put behind it", None))
            continue
        if all(spec.region(k).dial == 0 for k in in_cloud):
            out.append(
                (
                    ("global", cloud),
                    f"every {cloud} region has dial 0: the front door would have nowhere to send traffic",
                    None,
                )
            )
    aws_door = spec.front_door.aws
    if aws_door is not None:
        aws_keys = sorted(r.name for r in serving if r.cloud == "aws")
        if aws_door.certificate_arns and set(aws_door.certificate_arns) != set(aws_keys):
            out.append(
                (
                    ("global", "aws", "certificateArns"),
                    f"needs one certificate for each AWS serving region ({', '.join(aws_keys)})",
                    sorted(aws_door.certificate_arns),
                )
            )
        if aws_door.mode == "route53":
            for key in aws_keys:
                dial = spec.region(key).dial
                if dial not in (0, 100):
                    out.append(
                        (
                            ("regions", key, "dial"),
                            "Route 53 latency records cannot split a region's "
                            "share: use 0 (drained) or 100, or mode accelerator for partial dials",
                            dial,
                        )
                    )
    return out


def validate_serving(
    raw: Any, regions: list[RegionSpec] | None, *, server_image: bool | None = False
) -> ServingSpec | None:
    """Validate the section and check it against the stack's (already validated) regions.

    `server_image`: whether `aicloud:images` builds or pins a `server` image (None: unknown,
    because that section is itself invalid). Raises pydantic's `ValidationError` with every
    problem at its key path; `StackConfig` prefixes them with `serving`.
    """
    if raw is None:
        return None
    spec = raw if isinstance(raw, ServingSpec) else ServingSpec.model_validate(raw)
    problems = serving_problems(spec, regions)
    if spec.image is None and server_image is False:
        problems.insert(
            0, (("image",), "no image; pin one (`image: repo@sha256:...`) or add aicloud:images.workloads.server", None)
        )
    if problems:
        raise ValidationError.from_exception_data(
            "ServingSpec",
            [
                {"type": "value_error", "loc": loc, "input": value, "ctx": {"error": ValueError(msg)}}
                for loc, msg, value in problems
            ],
        )
    return spec


def serving_field(value: Any, info: ValidationInfo) -> ServingSpec | None:
    """Before-validator of `StackConfig.serving`: validates with the stack's regions and images
    in view (declare the field after `regions` and `images`)."""
    if "images" in info.data:
        images = info.data["images"]
        server_image: bool | None = images is not None and "server" in images.workloads
    else:
        server_image = None
    return validate_serving(value, info.data.get("regions"), server_image=server_image)


ServingField = Annotated[ServingSpec | None, BeforeValidator(serving_field)]
"""Type of `StackConfig.serving`: the section, validated against the stack's regions and images."""


# --------------------------------------------------------------------------- manifests


def _labels(plan: EndpointPlan, track: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": plan.model,
        "app.kubernetes.io/part-of": "aicloud",
        "app.kubernetes.io/managed-by": "pulumi-aicloud",
    }
    if track is not None:
        labels["aicloud.dev/track"] = track
    return labels


def _selector(plan: EndpointPlan, track: str | None = None) -> dict[str, str]:
    sel = {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": plan.model}
    if track is not None:
        sel["aicloud.dev/track"] = track
    return sel


def _meta(
    plan: EndpointPlan, name: str, track: str | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": plan.namespace, "labels": _labels(plan, track)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def deployment_name(plan: EndpointPlan, track: str) -> str:
    return f"{plan.model}-{track}"


def namespace_manifest(plan: EndpointPlan) -> dict[str, Any]:
    """The serving namespace, enforcing the `restricted` Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": plan.namespace,
            "labels": {
                "app.kubernetes.io/part-of": "aicloud",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def service_account_manifest(plan: EndpointPlan, name: str) -> dict[str, Any]:
    """A plain service account (used when the stack has no workload identity for the server)."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(plan, name)}


def uses_lake(uri: str) -> bool:
    """Whether a model URI names a lakehouse zone (`lake://<zone>/...`)."""
    return split_lake(uri) is not None


def lake_config_map(plan: EndpointPlan, zone_uris: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap `lake://` URIs resolve through (`AICLOUD_LAKE_<ZONE>` per zone the server may use)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(plan, LAKE_CONFIG_MAP),
        "data": {lake_env(zone): uri for zone, uri in sorted(zone_uris.items())},
    }


def server_args(plan: EndpointPlan, track: TrackPlan) -> list[str]:
    """Command-line of `python -m workloads.server` for a track."""
    return [
        "--model", track.model_uri,
        "--name", plan.model,
        "--host", "0.0.0.0",
        "--port", str(SERVER_PORT),
        "--device", "cuda" if plan.gpus_per_replica else "cpu",
        "--shutdown-drain-s", str(plan.spec.drain_seconds),
    ]  # fmt: skip


def pod_spec(
    plan: EndpointPlan, track: TrackPlan, service_account: str, *, container_name: str = "server"
) -> dict[str, Any]:
    """The pod of a track: probes on the server's health paths, pool placement, zone spread,
    restricted security context and a writable /tmp."""
    res = plan.spec.resources
    requests: dict[str, str] = {"cpu": res.cpu, "memory": res.memory}
    limits: dict[str, str] = {"memory": res.memory}
    if plan.gpus_per_replica:
        requests[GPU_RESOURCE] = str(plan.gpus_per_replica)
        limits[GPU_RESOURCE] = str(plan.gpus_per_replica)
    else:
        limits["cpu"] = res.cpu
    probe = {"port": PORT_NAME, "scheme": "HTTP"}
    period = 5
    container = {
        "name": container_name,
        "image": track.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "workloads.server"],
        "args": server_args(plan, track),
        "ports": [{"name": PORT_NAME, "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "AICLOUD_TRACK", "value": track.name},
        ],
        **({"envFrom": [{"configMapRef": {"name": LAKE_CONFIG_MAP}}]} if uses_lake(track.model_uri) else {}),
        "resources": {"requests": requests, "limits": limits},
        "startupProbe": {
            "httpGet": {"path": READY_PATH, **probe},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": max(1, plan.spec.startup_seconds // period),
        },
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, **probe},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, **probe},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "serviceAccountName": service_account,
        # Readiness turns false at SIGTERM, load balancers drain for drain_seconds, then the
        # server finishes in-flight requests (its own graceful timeout is 30 s).
        "terminationGracePeriodSeconds": plan.spec.drain_seconds + 45,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "nodeSelector": {POOL_LABEL: plan.pool.name},
        "tolerations": [dict(t) for t in plan.tolerations],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                # GPUs are scarce per zone: prefer spreading, never leave a replica pending for it.
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": _selector(plan, track.name)},
            }
        ],
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": res.scratch}}],
    }


def _scrape_annotations() -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(SERVER_PORT), "prometheus.io/path": METRICS_PATH}


def deployment_manifest(plan: EndpointPlan, track: TrackPlan, service_account: str) -> dict[str, Any]:
    """A track's Deployment; its replica count belongs to the track's autoscaler."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(plan, deployment_name(plan, track.name), track.name),
        "spec": {
            "selector": {"matchLabels": _selector(plan, track.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": plan.spec.release.max_surge,
                    "maxUnavailable": plan.spec.release.max_unavailable,
                },
            },
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": plan.spec.startup_seconds + 300,
            "template": {
                "metadata": {"labels": _labels(plan, track.name), "annotations": _scrape_annotations()},
                "spec": pod_spec(plan, track, service_account),
            },
        },
    }


def service_manifest(
    plan: EndpointPlan, name: str, track: str | None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A ClusterIP Service on port 80 selecting one track (or every track with None)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(plan, name, annotations=annotations),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(plan, track),
            "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def pdb_manifest(plan: EndpointPlan) -> dict[str, Any]:
    """At most one replica of the model down at a time through voluntary disruptions; replicas
    that never became ready may always be evicted (they serve nothing)."""
    selector = {"serving.kserve.io/inferenceservice": plan.model} if plan.spec.backend == "kserve" else _selector(plan)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(plan, plan.model),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def request_rate_query(plan: EndpointPlan, track: str) -> str:
    """PromQL: requests per second the track's pods answer."""
    pods = f"{deployment_name(plan, track)}-[a-z0-9]+-[a-z0-9]+"
    return f'sum(rate({REQUESTS_METRIC}{{namespace="{plan.namespace}",pod=~"{pods}"}}[2m]))'


def autoscaler_manifest(plan: EndpointPlan, track: TrackPlan) -> dict[str, Any]:
    """The track's HPA or KEDA ScaledObject (min = max pins a fixed-size track)."""
    a = plan.spec.autoscaling
    name = deployment_name(plan, track.name)
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    behavior = {"scaleDown": {"stabilizationWindowSeconds": a.scale_down_stabilization_seconds}}
    if a.mode == "keda":
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": _meta(plan, name, track.name),
            "spec": {
                "scaleTargetRef": target,
                "minReplicaCount": track.min_replicas,
                "maxReplicaCount": track.max_replicas,
                "pollingInterval": 15,
                "cooldownPeriod": a.scale_down_stabilization_seconds,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}},
                "triggers": [
                    {
                        "type": "prometheus",
                        "metadata": {
                            "serverAddress": a.prometheus_address or "",
                            "query": request_rate_query(plan, track.name),
                            "threshold": f"{a.requests_per_second:g}",
                        },
                    }
                ],
            },
        }
    if a.mode == "metric":
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": a.metric},
                "target": {"type": "AverageValue", "averageValue": f"{a.requests_per_second:g}"},
            },
        }
    else:
        metric = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization},
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(plan, name, track.name),
        "spec": {
            "scaleTargetRef": target,
            "minReplicas": track.min_replicas,
            "maxReplicas": track.max_replicas,
            "metrics": [metric],
            "behavior": behavior,
        },
    }


def gateway_manifest(plan: EndpointPlan, annotations: dict[str, str] | None) -> dict[str, Any]:
    """The Gateway (HTTP on 80) the endpoint's HTTPRoute attaches to; `annotations` reach the
    data-plane Service through `spec.infrastructure` (GKE NEG annotation)."""
    gw = plan.spec.gateway
    assert gw is not None
    spec: dict[str, Any] = {
        "gatewayClassName": gw.class_name,
        "listeners": [
            {
                "name": "http",
                "port": SERVICE_PORT,
                "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "Same"}},
            }
        ],
    }
    if annotations:
        spec["infrastructure"] = {"annotations": dict(annotations)}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": _meta(plan, plan.gateway_name),
        "spec": spec,
    }


def route_manifest(plan: EndpointPlan) -> dict[str, Any]:
    """The HTTPRoute: weights for a canary, a header match for A/B, one backend otherwise."""

    def ref(service: str, weight: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": service, "port": SERVICE_PORT}
        if weight is not None:
            out["weight"] = weight
        return out

    release = plan.spec.release
    if plan.strategy == "canary":
        rules = [
            {
                "backendRefs": [
                    ref(plan.model, plan.track("stable").weight),
                    ref(f"{plan.model}-canary", plan.track("canary").weight),
                ]
            }
        ]
    elif plan.strategy == "ab":
        assert release.ab is not None
        rules = [
            {
                "matches": [{"headers": [{"type": "Exact", "name": release.ab.header, "value": release.ab.value}]}],
                "backendRefs": [ref(f"{plan.model}-b")],
            },
            {"backendRefs": [ref(plan.model)]},
        ]
    else:
        rules = [{"backendRefs": [ref(plan.model)]}]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(plan, plan.model),
        "spec": {"parentRefs": [{"name": plan.gateway_name}], "rules": rules},
    }


def inference_service_manifest(plan: EndpointPlan, service_account: str) -> dict[str, Any]:
    """A KServe InferenceService (Serverless mode) running the server as a custom predictor;
    a canary is `canaryTrafficPercent` of the latest revision."""
    track = plan.tracks[-1]
    pod = pod_spec(plan, track, service_account, container_name="kserve-container")
    container = pod["containers"][0]
    # Knative allows a single port and no startup probe; the readiness probe gates traffic.
    container.pop("startupProbe")
    container["readinessProbe"]["initialDelaySeconds"] = 5
    a = plan.spec.autoscaling
    predictor: dict[str, Any] = {
        "minReplicas": plan.tracks[0].min_replicas,
        "maxReplicas": plan.tracks[0].max_replicas,
        "scaleMetric": "rps",
        "scaleTarget": max(1, round(a.requests_per_second)),
        **{k: v for k, v in pod.items() if k != "topologySpreadConstraints"},
    }
    predictor["topologySpreadConstraints"] = [
        {**c, "labelSelector": {"matchLabels": {"serving.kserve.io/inferenceservice": plan.model}}}
        for c in pod["topologySpreadConstraints"]
    ]
    if plan.strategy == "canary":
        predictor["canaryTrafficPercent"] = plan.track("canary").weight
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _meta(
            plan,
            plan.model,
            annotations={"serving.kserve.io/deploymentMode": "Serverless", **_scrape_annotations()},
        ),
        "spec": {"predictor": predictor},
    }


def neg_annotation(neg_name: str, port: int = SERVICE_PORT) -> dict[str, str]:
    """GKE standalone NEG annotation: one zonal NEG named `neg_name` per zone for `port`."""
    return {"cloud.google.com/neg": json.dumps({"exposed_ports": {str(port): {"name": neg_name}}})}


def render_endpoint(
    plan: EndpointPlan,
    *,
    service_account: str,
    create_identity: bool,
    entry_annotations: Mapping[str, str] | None = None,
    zone_uris: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every Kubernetes object of the endpoint in one region, in creation order.

    `create_identity`: also render the namespace and a plain service account (when the stack
    has no workload identity for the server). `entry_annotations` go on the entry Service (or
    the Gateway's data plane) the regional load balancer targets. `zone_uris`: the lakehouse
    zones the server identity may read (zone -> URI), required when a track serves a
    `lake://models/...` URI.
    """
    ann = dict(entry_annotations or {})
    out: list[dict[str, Any]] = []
    if create_identity:
        out += [namespace_manifest(plan), service_account_manifest(plan, service_account)]
    lake = sorted({t.model_uri for t in plan.tracks if uses_lake(t.model_uri)})
    if lake:
        if not zone_uris or "models" not in zone_uris:
            raise ValueError(
                f"model URIs {', '.join(lake)} name the lakehouse, but region {plan.region_key!r} has no "
                "server identity with access to the models zone (add aicloud:storage)"
            )
        out.append(lake_config_map(plan, zone_uris))
    if plan.spec.backend == "kserve":
        return [*out, inference_service_manifest(plan, service_account), pdb_manifest(plan)]
    for track in plan.tracks:
        out.append(deployment_manifest(plan, track, service_account))
    routed = plan.spec.gateway is not None
    main_ann = None if routed else ann
    if plan.strategy == "blue-green":
        bg = plan.spec.release.blue_green_or_default
        standby = "green" if bg.active == "blue" else "blue"
        out.append(service_manifest(plan, plan.model, bg.active, main_ann))
        # Smoke-test the standby colour here before switching.
        out.append(service_manifest(plan, f"{plan.model}-preview", standby))
    else:
        primary = plan.tracks[0].name
        out.append(service_manifest(plan, plan.model, primary, main_ann))
        if len(plan.tracks) > 1:
            second = plan.tracks[1].name
            out.append(service_manifest(plan, f"{plan.model}-{second}", second))
    if routed:
        out += [gateway_manifest(plan, ann or None), route_manifest(plan)]
    out += [autoscaler_manifest(plan, t) for t in plan.tracks]
    out.append(pdb_manifest(plan))
    return out


# --------------------------------------------------------------------------- component

KEDA_CHART = chart_pin("keda")
"""KEDA (Helm), installed per serving cluster for `autoscaling.mode: keda` unless `installKeda: false`."""

_TYPED: dict[tuple[str, str], tuple[str, str]] = {
    ("v1", "Namespace"): ("core.v1", "Namespace"),
    ("v1", "ServiceAccount"): ("core.v1", "ServiceAccount"),
    ("v1", "ConfigMap"): ("core.v1", "ConfigMap"),
    ("v1", "Service"): ("core.v1", "Service"),
    ("apps/v1", "Deployment"): ("apps.v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"): ("policy.v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("autoscaling.v2", "HorizontalPodAutoscaler"),
}
"""Typed pulumi-kubernetes class (module under `pulumi_kubernetes`, name) per apiVersion and kind;
looked up on use, so reading the config does not import the Kubernetes SDK's modules."""
_SHORT = {
    "Namespace": "ns",
    "ServiceAccount": "sa",
    "ConfigMap": "cm",
    "Service": "svc",
    "Deployment": "deploy",
    "PodDisruptionBudget": "pdb",
    "HorizontalPodAutoscaler": "hpa",
    "ScaledObject": "scaler",
    "Gateway": "gateway",
    "HTTPRoute": "route",
    "InferenceService": "isvc",
}


def create_object(logical: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Create a manifest as its typed Kubernetes resource, or a `CustomResource` for CRDs."""
    typed = _TYPED.get((manifest["apiVersion"], manifest["kind"]))
    if typed is None:
        return k8s.apiextensions.CustomResource(
            logical,
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest.get("spec"),
            opts=opts,
        )
    module, name = typed
    cls = getattr(importlib.import_module(f"pulumi_kubernetes.{module}"), name)
    kwargs = {k: manifest[k] for k in ("metadata", "spec", "data") if k in manifest}
    return cls(logical, **kwargs, opts=opts)


class InferenceEndpoint(pulumi.ComponentResource):
    """The model server in one region's cluster (create it with the region's Kubernetes
    provider in `opts.providers`, parented to the region's platform)."""

    plan: EndpointPlan
    objects: dict[str, pulumi.CustomResource]
    entry: pulumi.CustomResource | None
    """The object the regional load balancer depends on (entry Service or Gateway)."""

    def __init__(
        self,
        name: str,
        plan: EndpointPlan,
        *,
        identity: Any = None,
        neg: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`identity`: the server's workload identity (`.service_account_name`, `.namespace`),
        or None to create the namespace and a plain service account. `neg`: annotate the entry
        for GKE standalone NEGs (`plan.neg_name`) so a global load balancer can reach it."""
        super().__init__(type_token("serving", "InferenceEndpoint"), name, None, opts)
        if identity is not None and identity.namespace != plan.namespace:
            raise ValueError(
                f"the server identity lives in namespace {identity.namespace!r} "
                f"but serving.namespace is {plan.namespace!r}"
            )
        sa = identity.service_account_name if identity is not None else plan.model
        manifests = render_endpoint(
            plan,
            service_account=sa,
            create_identity=identity is None,
            entry_annotations=neg_annotation(plan.neg_name) if neg else None,
            zone_uris=getattr(identity, "zone_uris", None),
        )
        deps = [identity] if isinstance(identity, pulumi.Resource) else []
        self.plan = plan
        self.objects = {}
        self.keda: k8s.helm.v3.Release | None = None
        auto = plan.spec.autoscaling
        if plan.spec.backend == "deployment" and auto.mode == "keda" and auto.install_keda:
            self.keda = k8s.helm.v3.Release(
                f"{name}-keda",
                name="keda",
                chart=KEDA_CHART["chart"],
                version=KEDA_CHART["version"],
                repository_opts={"repo": KEDA_CHART["repo"]},
                namespace="keda",
                create_namespace=True,
                opts=child_opts(self),
            )
        first: list[pulumi.Resource] = []
        for m in manifests:
            kind, obj_name = m["kind"], m["metadata"]["name"]
            suffix = obj_name.removeprefix(plan.model).lstrip("-")
            logical = "-".join(p for p in (name, _SHORT.get(kind, kind.lower()), suffix) if p)
            if kind == "Namespace":
                logical = f"{name}-ns"
            depends = [*deps, *first] if kind not in ("Namespace",) else deps
            if kind == "ScaledObject" and self.keda is not None:
                depends = [*depends, self.keda]  # its CRD comes with KEDA
            extra: dict[str, Any] = {}
            if kind == "Deployment":
                # Pulumi waits for the rollout: a GPU node may first have to join, then the model load.
                wait = f"{(plan.spec.startup_seconds + 900) // 60}m"
                extra["custom_timeouts"] = pulumi.CustomTimeouts(create=wait, update=wait)
            res = create_object(logical, m, child_opts(self, depends_on=depends or None, **extra))
            if kind in ("Namespace", "ServiceAccount", "ConfigMap"):
                first.append(res)
            self.objects[f"{kind}/{obj_name}"] = res
        entry_kind = "Gateway" if plan.spec.gateway is not None else "Service"
        self.entry = self.objects.get(f"{entry_kind}/{plan.gateway_name if entry_kind == 'Gateway' else plan.model}")
        self.manifests = manifests
        self.register_outputs(endpoint_outputs(plan, neg=neg))


def endpoint_outputs(plan: EndpointPlan, *, neg: bool) -> dict[str, Any]:
    """What the plan and stack outputs show of an endpoint."""
    spec = plan.spec
    out: dict[str, Any] = {
        "regionKey": plan.region_key,
        "cloud": plan.cloud,
        "region": plan.region,
        "model": plan.model,
        "namespace": plan.namespace,
        "backend": spec.backend,
        "strategy": plan.strategy,
        "pool": plan.pool.name,
        "gpusPerReplica": plan.gpus_per_replica,
        "gpuDemand": plan.gpu_demand,
        "gpuCapacity": plan.gpu_capacity,
        "autoscaling": spec.autoscaling.mode,
        "tracks": [
            {
                "name": t.name,
                "role": t.role,
                "image": t.image,
                "modelUri": t.model_uri,
                "replicas": t.replicas,
                "weight": t.weight,
            }
            for t in plan.tracks
        ],
        "service": plan.model,
        "readyPath": READY_PATH,
        "livePath": LIVE_PATH,
        "dial": plan.dial,
        "router": f"gateway/{spec.gateway.class_name}"
        if spec.gateway
        else ("kserve" if spec.backend == "kserve" else "service"),
    }
    if plan.entry_service:
        out["entryService"] = plan.entry_service
        out["entryPort"] = SERVICE_PORT
    if neg:
        out["negName"] = plan.neg_name
    if plan.strategy == "ab" and spec.release.ab is not None:
        out["abMatch"] = f"{spec.release.ab.header}: {spec.release.ab.value}"
    if plan.strategy == "blue-green":
        out["active"] = spec.release.blue_green_or_default.active
    return out
