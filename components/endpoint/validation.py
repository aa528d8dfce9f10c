"""Validation of the serving section against itself and the stack (regions, images, GPUs), before
any resource exists: every problem is collected with its key path."""

from __future__ import annotations

from typing import Any

from pydantic_core import ValidationError

from components.endpoint.release import _uri_for, plan_endpoint
from components.endpoint.spec import _URI_SCHEMES, ModelUri, ServingSpec
from components.nodepool import GPU_RESOURCE
from components.platform import RegionSpec
from contracts.lake import split_lake

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


def serving_problems(spec: ServingSpec, regions: list[RegionSpec] | None, *, complete: bool = True) -> list[Problem]:
    """Every check that needs more than one field of the section, or the stack's regions
    (`None` when no region can be told apart: those checks are skipped then). `complete`: whether
    `regions` are all the stack's regions; when some are invalid, each valid serving region is still
    checked (pools, GPUs, URIs) but nothing that compares against the whole set of regions."""
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
        canary = release.canary
        if release.strategy == "canary" and canary is not None and canary.weights.canary > 0:
            out.append(
                (
                    ("release", "canary", "weights", "canary"),
                    "backend 'kserve' splits traffic between the InferenceService's previous revision and its "
                    "new one, so a deploy with a canary above 0 serves the canary model alone on a new cluster: "
                    "set weights.canary 0 (the stable model); the retraining loop rolls candidates out as "
                    "KServe canaries once the stable revision runs",
                    canary.weights.canary,
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
    if not complete:
        return out + _per_region_problems(spec, serving)
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

    out += _per_region_problems(spec, serving)

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
        if set(aws_door.certificate_arns) != set(aws_keys):
            out.append(
                (
                    ("global", "aws", "certificateArns"),
                    f"needs one certificate for each AWS serving region ({', '.join(aws_keys)}): the front door "
                    "listens with TLS only",
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


def _per_region_problems(spec: ServingSpec, serving: list[RegionSpec]) -> list[Problem]:
    """Checks of the section against each (valid) serving region: artifacts, pools, GPUs."""
    out: list[Problem] = []
    release = spec.release
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
