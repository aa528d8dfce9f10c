"""Program step for inference endpoints and their global front doors, and its plan sections.

`deploy_serving` (after compute, images and the lakehouse's identities):
- one `InferenceEndpoint` per serving region, parented to the region's platform with the
  region's Kubernetes provider, using the server's workload identity when the lakehouse step made
  one and the region's `server` image from `aicloud:images` unless `serving.image` pins one;
- for a cloud with a front door (`serving.global.aws` / `.gcp`): the regional entries (an
  `AwsRegionalLoadBalancer` per AWS region; GKE standalone NEGs on the entry Service per GCP
  region) and one `GlobalEndpoint` over them, built with a provider of its own that is not pinned
  to a serving region (`aws-global` in us-west-2, the Global Accelerator API's region;
  `gcp-global` with the project only).

Sections: `endpoints` (per region: release and rollout state, replicas, autoscaling, GPUs at the
rollout's worst case against the pool's maximum) and `traffic` (per front door and region: dial,
target, health check).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp

from components.base import child_opts, gcp_labels
from components.endpoint import SERVER_PORT, SERVICE_PORT, InferenceEndpoint, plan_endpoint
from components.global_endpoint import (
    GCP_HEALTH_CHECK_RANGES,
    AwsRegionalLoadBalancer,
    EksAccess,
    GlobalEndpoint,
    RegionalBackend,
)

if TYPE_CHECKING:
    from stacks.deployment import Deployment
    from stacks.plan.model import Plan

GLOBAL_ACCELERATOR_REGION = "us-west-2"
"""Global Accelerator's API is served from us-west-2 only, whatever regions it fronts."""


def deploy_serving(d: Deployment) -> None:
    """Inference endpoints in every serving region and a global front door per cloud."""
    spec = d.config.serving
    if spec is None:
        return
    backends: dict[str, list[RegionalBackend]] = defaultdict(list)
    for region in d.config.regions:
        if not region.serving:
            continue
        key = region.name
        platform = d.regions[key]
        image = d.images.get(key, {}).get("server")
        plan = plan_endpoint(spec, region, default_image=image.ref if image is not None else None)
        door = getattr(spec.front_door, region.cloud)
        identity = getattr(d, "identities", {}).get(key, {}).get("server")
        # Where the front door's load balancer connects from: the NLB's addresses in the VPC (IP
        # targets, client addresses not preserved), or Google's front ends.
        cidrs = None
        if door is not None:
            cidrs = [region.network.cidr] if region.cloud == "aws" else list(GCP_HEALTH_CHECK_RANGES)
        endpoint = InferenceEndpoint(
            f"{key}-{spec.model}",
            plan,
            identity=identity,
            front_door_cidrs=cidrs,
            neg=door is not None and region.cloud == "gcp",
            system_pool=region.system_pool.name,
            opts=pulumi.ResourceOptions(
                parent=platform, providers=[platform.k8s_provider], depends_on=platform.system_nodes
            ),
        )
        d.outputs[f"{key}:serving"] = {"namespace": plan.namespace, "service": plan.model}
        if door is None or plan.entry_service is None:
            continue
        # Through a gateway the load balancer reaches the gateway's pods (port 80), else the servers.
        target_port = SERVICE_PORT if spec.gateway is not None else SERVER_PORT
        entry_deps = [endpoint.entry] if endpoint.entry is not None else []
        if region.cloud == "aws":
            accelerator = door.mode == "accelerator"
            network = platform.network
            lb = AwsRegionalLoadBalancer(
                f"{key}-{spec.model}-lb",
                service=plan.entry_service,
                namespace=plan.namespace,
                target_port=target_port,
                vpc_id=network.vpc_id,
                vpc_cidr=region.network.cidr,
                # Behind Global Accelerator the NLB needs no public address.
                subnet_ids=network.private_subnet_ids if accelerator else network.public_subnet_ids,
                internal=accelerator,
                certificate_arn=door.certificate_arns.get(key),
                controller=EksAccess(
                    cluster_name=platform.cluster.cluster_name,
                    region=region.region,
                    oidc_provider_arn=platform.cluster.oidc_provider_arn,
                    oidc_issuer=platform.cluster.oidc_issuer,
                )
                if door.install_controller
                else None,
                tags=d.tags,
                opts=child_opts(endpoint, depends_on=entry_deps or None),
            )
            backends["aws"].append(RegionalBackend(key, region.region, plan.dial, lb=lb))
        else:
            backends["gcp"].append(
                RegionalBackend(
                    key,
                    region.region,
                    plan.dial,
                    neg_name=plan.neg_name,
                    zones=region.zones,
                    network=platform.network.network_id,
                    target_port=target_port,
                    depends_on=entry_deps,
                )
            )
    for cloud, regional in backends.items():
        door = getattr(spec.front_door, cloud)
        if cloud == "aws":
            provider: pulumi.ProviderResource = aws.Provider(
                "aws-global", region=GLOBAL_ACCELERATOR_REGION, default_tags={"tags": d.tags}
            )
        else:
            provider = gcp.Provider("gcp-global", project=d.config.gcp_project, default_labels=gcp_labels(d.tags))
        rate = getattr(door, "max_rate_per_endpoint", None) or spec.autoscaling.requests_per_second
        front = GlobalEndpoint(
            f"{spec.model}-{cloud}",
            door,
            regional,
            model=spec.model,
            project=d.config.gcp_project,
            max_rate_per_endpoint=rate,
            tags=d.tags,
            opts=pulumi.ResourceOptions(providers=[provider]),
        )
        d.outputs[f"serving:{cloud}:address"] = front.address


# --------------------------------------------------------------------------- plan sections


def _short(image: Any) -> str:
    """`...@sha256:0123abcd…` -> `sha256:0123abcd`; other references as they are."""
    text = str(image)
    if "@sha256:" in text:
        repo, digest = text.rsplit("@", 1)
        return f"{repo.rsplit('/', 1)[-1]}@{digest[:15]}"
    return text


def endpoints_section(plan: Plan) -> dict[str, Any] | None:
    """Per serving region: release, rollout state (tracks, weights, replicas, images),
    autoscaling, and GPUs at the rollout's worst case against the pool's maximum."""
    rows = []
    order = [r.name for r in plan.config.regions]
    endpoints = sorted(
        plan.component_outputs("aicloud:serving:InferenceEndpoint"), key=lambda e: order.index(e[1]["regionKey"])
    )
    for _, out in endpoints:
        tracks = []
        for t in out["tracks"]:
            route = f"{t['weight']}%"
            if out["strategy"] == "ab" and t["name"] == "b":
                route = out.get("abMatch", "header")
            elif out["strategy"] == "blue-green":
                route = t["role"]
            tracks.append(f"{t['name']} {route} x{t['replicas']} {_short(t['image'])}")
        gpus = f"{out['gpuDemand']}/{out['gpuCapacity']}" if out["gpusPerReplica"] else "CPU"
        rows.append(
            [
                out["regionKey"],
                out["model"],
                f"{out['backend']} via {out['router']}",
                out["pool"],
                out["strategy"] + (f" (active {out['active']})" if out.get("active") else ""),
                "; ".join(tracks),
                out["autoscaling"],
                gpus,
                f"{out['dial']}%",
            ]
        )
    if not rows:
        return None
    return {
        "title": "Inference endpoints",
        "columns": ["region", "model", "backend", "pool", "release", "tracks", "autoscaling", "GPUs", "dial"],
        "rows": rows,
        "notes": [
            "tracks: name, share of requests (or role / header match), replicas, image by digest.",
            "GPUs: worst case during a rollout (every track at max + maxSurge per Deployment) / the pool's maximum.",
        ],
    }


def traffic_section(plan: Plan) -> dict[str, Any] | None:
    """Per global front door and region: mode, address, dial, target and health check."""
    rows = []
    fronted: set[str] = set()
    for _, out in sorted(plan.component_outputs("aicloud:serving:GlobalEndpoint"), key=lambda e: e[1]["cloud"]):
        for r in out["regions"]:
            fronted.add(r["regionKey"])
            rows.append(
                [
                    out["cloud"],
                    out["mode"],
                    out.get("domain") or ", ".join(out.get("domains") or []) or str(out.get("address")),
                    r["regionKey"],
                    f"{r['dial']}%",
                    str(r["target"]),
                    f"HTTP {out['healthCheckPath']}",
                ]
            )
    for _, out in plan.component_outputs("aicloud:serving:InferenceEndpoint"):
        if out["regionKey"] not in fronted:
            rows.append([out["cloud"], "in-cluster only", f"{out['service']}.{out['namespace']}", out["regionKey"],
                         "-", out.get("entryService") or out["service"], f"probe {out['readyPath']}"])  # fmt: skip
    if not rows:
        return None
    return {
        "title": "Traffic",
        "columns": ["cloud", "front door", "address", "region", "dial", "target", "health check"],
        "rows": rows,
        "notes": [
            "A region whose health check fails gets no traffic: its share fails over to the closest healthy region.",
            "dial: share of the region's traffic it keeps (AWS traffic dial, GCP capacity scaler); 0 drains it.",
        ],
    }
