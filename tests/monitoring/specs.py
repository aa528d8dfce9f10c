"""Specs shared by the observability tests: a region with CPU, training and serving pools, and
serving specs for each release strategy."""

from __future__ import annotations

from typing import Any

from components.endpoint import ServingSpec, validate_serving
from components.monitoring import RetrainingSpec
from components.platform import RegionSpec

IMAGE = "ghcr.io/acme/aicloud-server@sha256:" + "a" * 64
TRAINER = "ghcr.io/acme/aicloud-trainer@sha256:" + "b" * 64


def aws_region(**extra: Any) -> RegionSpec:
    return RegionSpec.model_validate(
        {
            "name": "aws-use1",
            "cloud": "aws",
            "region": "us-east-1",
            "primary": True,
            "network": {"cidr": "10.1.0.0/16", "zones": 3},
            "nodePools": [
                {"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 3},
                {"name": "train", "machineType": "g6.12xlarge", "role": "training", "maxNodes": 2},
                {"name": "serve", "machineType": "g6e.xlarge", "role": "inference", "minNodes": 1, "maxNodes": 8},
            ],
            **extra,
        },
        context={},
    )


def gcp_region() -> RegionSpec:
    return RegionSpec.model_validate(
        {
            "name": "gcp-usc1",
            "cloud": "gcp",
            "region": "us-central1",
            "primary": True,
            "nodePools": [
                {"name": "system", "machineType": "e2-standard-4", "minNodes": 1, "maxNodes": 2},
                {"name": "train", "machineType": "a2-highgpu-8g", "role": "training", "maxNodes": 2},
            ],
        },
        context={},
    )


def serving(strategy: str, model_uri: str = "s3://acme-models/clf/v1", *, backend: str = "deployment") -> ServingSpec:
    release: dict[str, Any] = {"strategy": strategy}
    raw: dict[str, Any] = {"model": "clf", "image": IMAGE, "modelUri": model_uri, "pool": "serve", "backend": backend}
    if strategy == "canary":
        release["canary"] = {"modelUri": model_uri.rsplit("/", 1)[0] + "/v0", "weights": {"stable": 100, "canary": 0}}
        if backend == "deployment":
            raw["gateway"] = {"className": "istio"}
    if backend == "kserve":
        raw["autoscaling"] = {"mode": "knative"}
    raw["release"] = release
    spec = validate_serving(raw, [aws_region()], server_image=True)
    assert spec is not None
    return spec


def retraining(**overrides: Any) -> RetrainingSpec:
    raw = {
        "freshData": "clf/fresh",
        "minSamples": 500,
        "driftThreshold": 0.1,
        "canaryPercent": 10,
        "cooldownHours": 24,
        "job": {"pool": "train", "preset": "debug", "image": TRAINER},
        **overrides,
    }
    return RetrainingSpec.model_validate(raw)
