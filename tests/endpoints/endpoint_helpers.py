"""Shared inputs of the endpoint tests: a small two-cloud stack, a serving section, and the
stacks' plans (each computed once per test session)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import pytest

from components.endpoint import EndpointPlan, plan_endpoint
from stacks.config import ConfigError, StackConfig, parse_stack_config
from stacks.plan import Plan, run_plan

IMAGE = "ghcr.io/acme-ml/aicloud-server@sha256:" + "a" * 64
IMAGE_B = "ghcr.io/acme-ml/aicloud-server@sha256:" + "b" * 64

STACK: dict[str, Any] = {
    "environment": "prod",
    "owner": "ml-platform",
    "gcpProject": "acme-ml-test",
    "regions": [
        {
            "name": "aws-use1",
            "cloud": "aws",
            "region": "us-east-1",
            "primary": True,
            "nodePools": [
                {"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 3},
                {"name": "serve", "machineType": "g6.xlarge", "role": "inference", "minNodes": 1, "maxNodes": 4},
            ],
        },
        {
            "name": "aws-usw2",
            "cloud": "aws",
            "region": "us-west-2",
            "nodePools": [
                {"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 3},
                {"name": "serve", "machineType": "g6.xlarge", "role": "inference", "minNodes": 1, "maxNodes": 4},
            ],
        },
        {
            "name": "gcp-usc1",
            "cloud": "gcp",
            "region": "us-central1",
            "primary": True,
            "nodePools": [
                {"name": "system", "machineType": "e2-standard-4", "minNodes": 1, "maxNodes": 3},
                {"name": "serve", "machineType": "g2-standard-8", "role": "inference", "minNodes": 1, "maxNodes": 4},
            ],
        },
    ],
}

SERVING: dict[str, Any] = {
    "model": "clf",
    "image": IMAGE,
    "modelUri": {"aws": "s3://models/clf/v1", "gcp": "gs://models/clf/v1"},
    "replicas": {"min": 1, "max": 2},
}

CANARY = {
    "modelUri": {"aws": "s3://models/clf/v2", "gcp": "gs://models/clf/v2"},
    "weights": {"stable": 90, "canary": 10},
}


def stack(
    serving: dict[str, Any] | None = None, mutate: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """The raw stack values with a serving section (SERVING updated with `serving`)."""
    raw = copy.deepcopy(STACK)
    raw["serving"] = {**copy.deepcopy(SERVING), **copy.deepcopy(serving or {})}
    if (raw["serving"].get("autoscaling") or {}).get("mode") == "metric":
        raw["monitoring"] = {}  # prometheus-adapter serves the metric from the stack's Prometheus
    if mutate is not None:
        mutate(raw)
    return raw


def config(serving: dict[str, Any] | None = None) -> StackConfig:
    return parse_stack_config(stack(serving), "test")


def errors(serving: dict[str, Any] | None = None, mutate: Callable[[dict[str, Any]], None] | None = None) -> list[str]:
    """The config errors of a stack whose serving section is SERVING updated with `serving`."""
    with pytest.raises(ConfigError) as info:
        parse_stack_config(stack(serving, mutate), "test")
    return info.value.errors


def plans(serving: dict[str, Any] | None = None) -> dict[str, EndpointPlan]:
    """The endpoint plan of every serving region of the test stack, by region key."""
    cfg = config(serving)
    assert cfg.serving is not None
    return {r.name: plan_endpoint(cfg.serving, r) for r in cfg.regions if r.serving}


@functools.cache
def stack_plan(name: str) -> Plan:
    """The offline plan of `stacks/Pulumi.<name>.yaml` (policies off; cached per session)."""
    return run_plan(name, policies=False)
