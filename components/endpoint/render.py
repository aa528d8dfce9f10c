"""Every Kubernetes object of an endpoint in one region, in creation order, for either backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.endpoint.kserve import inference_service_manifest
from components.endpoint.manifests import (
    autoscaler_manifest,
    deployment_manifest,
    gateway_manifest,
    lake_config_map,
    namespace_manifest,
    network_policy_manifests,
    pdb_manifest,
    route_manifest,
    service_account_manifest,
    service_manifest,
    uses_lake,
)
from components.endpoint.release import EndpointPlan


def render_endpoint(
    plan: EndpointPlan,
    *,
    service_account: str,
    create_identity: bool,
    entry_annotations: Mapping[str, str] | None = None,
    zone_uris: Mapping[str, Any] | None = None,
    front_door_cidrs: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Every Kubernetes object of the endpoint in one region, in creation order.

    `create_identity`: also render the namespace and a plain service account (when the stack
    has no workload identity for the server). `entry_annotations` go on the entry Service (or
    the Gateway's data plane) the regional load balancer targets. `zone_uris`: the lakehouse
    zones the server identity may read (zone -> URI), required when a track serves a
    `lake://models/...` URI. `front_door_cidrs`: where the front door's load balancer connects
    from (None: no front door, nothing outside the namespace reaches the inference port).
    """
    ann = dict(entry_annotations or {})
    out: list[dict[str, Any]] = []
    if create_identity:
        out += [*namespace_manifest(plan), service_account_manifest(plan, service_account)]
    out += network_policy_manifests(plan, front_door_cidrs)
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
