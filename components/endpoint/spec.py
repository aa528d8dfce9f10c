"""The `aicloud:serving` section: typed settings of the model, image, pool, replicas, autoscaling,
release strategy and front door, each field checked on its own (cross-field checks: `validation`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from pydantic import Field, field_validator

from components.base import Spec
from components.image import PINNED_REF
from components.validation import Problem, check, namespace_name

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

    @check("min", "max")
    def _order(self) -> Iterator[Problem]:
        if self.min > self.max:
            yield Problem((), f"min ({self.min}) is greater than max ({self.max})")


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

    @check("mode", "prometheus_address")
    def _mode_fields(self) -> Iterator[Problem]:
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
        yield from (Problem((), p) for p in problems)


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

    @check("weights", "image", "model_uri")
    def _weights(self) -> Iterator[Problem]:
        total = self.weights.stable + self.weights.canary
        if total != 100:
            yield Problem(
                (),
                f"weights must sum to 100 (got stable {self.weights.stable} + canary {self.weights.canary} = {total})",
            )
        if self.image is None and self.model_uri is None:
            yield Problem((), "a canary needs image or modelUri (else it serves exactly what stable serves)")


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

    @check("image", "model_uri")
    def _differs(self) -> Iterator[Problem]:
        if self.image is None and self.model_uri is None:
            yield Problem((), "variant B needs image or modelUri (else both variants serve the same model)")


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

    @check("strategy", "canary", "blue_green", "ab", "max_surge", "max_unavailable")
    def _blocks(self) -> Iterator[Problem]:
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
        yield from (Problem((), p) for p in problems)

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
    """The GatewayClass: one aicloud installs in every serving cluster (`components.gateway.
    GATEWAY_CLASSES`: `istio`)."""
    install: bool = True
    """Install the class's implementation (Istio and the Gateway API CRDs) in every serving
    cluster; `false` when the cluster already runs it (the readiness check then reports the
    Gateway, since no controller of its class is in the stack)."""
    service_name: str | None = Field(default=None, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    """The data-plane Service the implementation creates for the Gateway, which the regional
    load balancer targets; default `<gateway>-<className>` (Istio's naming)."""

    @check("class_name")
    def _implemented(self) -> Iterator[Problem]:
        from components.gateway import GATEWAY_CLASSES

        if self.class_name not in GATEWAY_CLASSES:
            yield Problem(
                ("className",),
                f"no Gateway API implementation of class {self.class_name!r} is installed by aicloud or built "
                f"into the clouds it serves from; allowed: {', '.join(sorted(GATEWAY_CLASSES))} (GKE's gke-l7-* "
                "classes provision Google load balancers, not the in-cluster Service the front door targets)",
                self.class_name,
            )


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
    """ACM certificate per AWS serving region key (required for each): the front door listens only
    on 443 with TLS (an NLB cannot redirect plain HTTP, so port 80 is not served)."""
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

    @check("mode", "domain", "hosted_zone_id")
    def _dns(self) -> Iterator[Problem]:
        if self.mode == "route53" and not (self.domain and self.hosted_zone_id):
            yield Problem((), "mode 'route53' needs domain and hostedZoneId (the latency records live there)")
        elif bool(self.domain) != bool(self.hosted_zone_id):
            yield Problem((), "domain and hostedZoneId go together")


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
    namespace: str = DEFAULT_NAMESPACE
    """Namespace aicloud creates for the endpoint (and the server identity): a DNS label, not a
    system namespace or another aicloud workload's (`components.validation.namespace_name`)."""
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

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return namespace_name(value, default=DEFAULT_NAMESPACE)

    def region(self, key: str) -> RegionServing:
        return self.regions.get(key) or RegionServing()


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)
