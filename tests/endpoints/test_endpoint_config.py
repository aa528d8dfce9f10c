"""`aicloud:serving` validation: settings that would be ignored, unsafe or unschedulable fail
before anything exists, each error naming its `aicloud:serving...` key path."""

from __future__ import annotations

import copy

import pytest

from tests.endpoints.endpoint_helpers import CANARY, IMAGE_B, config, errors

GATEWAY = {"gateway": {"className": "istio"}}


def test_good_sections_validate():
    cfg = config({**GATEWAY, "release": {"strategy": "canary", "canary": CANARY, "maxSurge": 0, "maxUnavailable": 1}})
    assert cfg.serving is not None and cfg.serving.release.canary is not None
    assert cfg.serving.release.canary.weights.canary == 10
    blue_green = config({"release": {"strategy": "blue-green", "maxSurge": 0, "maxUnavailable": 1}})
    assert blue_green.serving.release.blue_green is None  # the block's defaults apply
    assert config({"backend": "kserve", "autoscaling": {"mode": "knative"}}).serving.backend == "kserve"


# (id, serving changes, the expected error, as its start).
CASES = [
    (
        "mutable-tag",
        {"image": "ghcr.io/acme-ml/aicloud-server:latest"},
        "aicloud:serving.image: image must be pinned by digest",
    ),
    (
        "canary-weights-not-100",
        {**GATEWAY, "release": {"strategy": "canary", "canary": {**CANARY, "weights": {"stable": 90, "canary": 20}}}},
        "aicloud:serving.release.canary: weights must sum to 100 (got stable 90 + canary 20 = 110)",
    ),
    (
        "canary-without-router",
        {"release": {"strategy": "canary", "canary": CANARY, "maxSurge": 0, "maxUnavailable": 1}},
        "aicloud:serving.release.strategy: strategy 'canary' on backend 'deployment' needs a router that can "
        "weight traffic",
    ),
    (
        "canary-without-version",
        {**GATEWAY, "release": {"strategy": "canary", "canary": {"weights": {"stable": 90, "canary": 10}}}},
        "aicloud:serving.release.canary: a canary needs image or modelUri",
    ),
    (
        "canary-same-as-stable",
        {
            **GATEWAY,
            "release": {
                "strategy": "canary",
                "maxSurge": 0,
                "maxUnavailable": 1,
                "canary": {
                    "modelUri": {"aws": "s3://models/clf/v1", "gcp": "gs://models/clf/v1"},
                    "weights": CANARY["weights"],
                },
            },
        },
        "aicloud:serving.release.canary: the canary's image and modelUri equal stable's",
    ),
    (
        "canary-block-with-rolling",
        {"release": {"strategy": "rolling", "canary": CANARY}},
        "aicloud:serving.release: canary is set but strategy is 'rolling', so it would be ignored",
    ),
    (
        "kserve-blue-green",
        {"backend": "kserve", "autoscaling": {"mode": "knative"}, "release": {"strategy": "blue-green"}},
        "aicloud:serving.release.strategy: backend 'kserve' cannot do blue-green",
    ),
    (
        "kserve-canary-replicas",
        {
            "backend": "kserve",
            "autoscaling": {"mode": "knative"},
            "replicas": {"min": 1, "max": 1},
            "release": {
                "strategy": "canary",
                "canary": {**CANARY, "replicas": 2, "weights": {"stable": 100, "canary": 0}},
            },
        },
        "aicloud:serving.release.canary.replicas: KServe sizes the canary revision itself",
    ),
    (
        "kserve-canary-above-zero-on-a-fresh-install",
        {
            "backend": "kserve",
            "autoscaling": {"mode": "knative"},
            "release": {"strategy": "canary", "canary": CANARY},
        },
        "aicloud:serving.release.canary.weights.canary: backend 'kserve' splits traffic",
    ),
    (
        "kserve-hpa",
        {"backend": "kserve"},
        "aicloud:serving.autoscaling.mode: backend 'kserve' (Serverless) autoscales with Knative only",
    ),
    (
        "ab-without-variant",
        {**GATEWAY, "release": {"strategy": "ab"}},
        "aicloud:serving.release: strategy 'ab' needs an ab block",
    ),
    (
        "ab-same-variant",
        {
            **GATEWAY,
            "release": {"strategy": "ab", "ab": {"image": "ghcr.io/acme-ml/aicloud-server@sha256:" + "a" * 64}},
        },
        "aicloud:serving.release.ab: variant B's image and modelUri equal variant A's",
    ),
    (
        "no-rollout-progress",
        {"release": {"maxSurge": 0, "maxUnavailable": 0}},
        "aicloud:serving.release: maxSurge and maxUnavailable cannot both be 0",
    ),
    (
        "keda-without-prometheus",
        {"autoscaling": {"mode": "keda"}},
        "aicloud:serving.autoscaling: mode 'keda' needs prometheusAddress",
    ),
    (
        "ignored-autoscaling-field",
        {"autoscaling": {"mode": "cpu", "requestsPerSecond": 50}},
        "aicloud:serving.autoscaling: requestsPerSecond is not used by mode 'cpu'",
    ),
    (
        "unknown-pool",
        {"pool": "gpu"},
        "aicloud:serving.pool: region aws-use1 has no node pool 'gpu'; pools: system, serve",
    ),
    (
        "cpu-replica-on-gpu-pool",
        {"resources": {"gpus": 0}},
        "aicloud:serving.resources.gpus: pool 'serve' in aws-use1 is a GPU pool",
    ),
    (
        "wrong-cloud-artifact",
        {"modelUri": "s3://models/clf/v1"},
        "aicloud:serving.modelUri: gcp regions read artifacts from gs://",
    ),
    (
        "override-unknown-region",
        {"regions": {"aws-euw1": {"dial": 50}}},
        "aicloud:serving.regions.aws-euw1: not a serving region of this stack",
    ),
    (
        "route53-partial-dial",
        {
            "regions": {"aws-usw2": {"dial": 30}},
            "global": {"aws": {"mode": "route53", "domain": "clf.example.com", "hostedZoneId": "Z123"}},
        },
        "aicloud:serving.regions.aws-usw2.dial: Route 53 latency records cannot split a region's share",
    ),
    (
        "route53-without-zone",
        {"global": {"aws": {"mode": "route53"}}},
        "aicloud:serving.global.aws: mode 'route53' needs domain and hostedZoneId",
    ),
    (
        "all-regions-drained",
        {"regions": {"gcp-usc1": {"dial": 0}}, "global": {"gcp": {"domains": ["clf.example.com"]}}},
        "aicloud:serving.global.gcp: every gcp region has dial 0",
    ),
    (
        "certificates-for-some-regions",
        {"global": {"aws": {"certificateArns": {"aws-use1": "arn:aws:acm:us-east-1:123456789012:certificate/x"}}}},
        "aicloud:serving.global.aws.certificateArns: needs one certificate for each AWS serving region",
    ),
    (
        "kserve-behind-front-door",
        {"backend": "kserve", "autoscaling": {"mode": "knative"}, "global": {"gcp": {"domains": ["clf.example.com"]}}},
        "aicloud:serving.global: a global front door needs backend 'deployment'",
    ),
]


@pytest.mark.parametrize(("serving", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_serving_config_is_rejected(serving, expected):
    errs = errors(serving)
    assert any(e.startswith(expected) for e in errs), "\n".join(errs)
    assert all(e.startswith("aicloud:serving") for e in errs), errs


def test_gpu_surge_is_bounded_by_the_pool():
    # Pools have 4 nodes x 1 L4: stable max 2 (+1 surge) + canary 1 (+1 surge) = 5 GPUs > 4.
    canary = {**GATEWAY, "release": {"strategy": "canary", "canary": CANARY}}
    errs = errors(canary)
    assert errs == [
        f"aicloud:serving.release.maxSurge: in {region} a rollout may need 5 GPUs [(stable 2+1 surge + "
        "canary 1+1 surge) pods x 1 GPU] but pool 'serve' has at most 4 (4 nodes x 1); lower replicas.max, "
        "the canary/standby replicas or maxSurge, raise the pool's maxNodes, or set allowGpuSurge: true (got 1)"
        for region in ("aws-use1", "aws-usw2", "gcp-usc1")
    ]
    # Replacing pods one at a time instead of surging fits: 2 + 1 = 3 GPUs.
    fitted = config({**canary, "release": {**canary["release"], "maxSurge": 0, "maxUnavailable": 1}})
    assert fitted.serving is not None
    # Or the stack accepts the surge explicitly.
    assert config({**canary, "allowGpuSurge": True}).serving.allow_gpu_surge is True


def test_blue_green_standby_counts_against_the_pool():
    errs = errors(
        {"replicas": {"min": 1, "max": 2}, "release": {"strategy": "blue-green", "blueGreen": {"standbyReplicas": 2}}}
    )
    assert errs[0].startswith("aicloud:serving.release.maxSurge: in aws-use1 a rollout may need 6 GPUs")


def test_errors_are_collected_not_first_only():
    def keys(errs: list[str]) -> list[str]:
        return sorted({e.split(": ", 1)[0] for e in errs})

    # Field errors together...
    errs = errors({"image": "ghcr.io/x/server:v1", "autoscaling": {"mode": "keda"}, "replicas": {"min": 3, "max": 2}})
    assert keys(errs) == ["aicloud:serving.autoscaling", "aicloud:serving.image", "aicloud:serving.replicas"], errs
    # ...and, once the section is well-formed, every check against the stack together.
    errs = errors({"pool": "gpu", "regions": {"nowhere": {}}, "modelUri": "s3://models/clf/v1"})
    assert keys(errs) == ["aicloud:serving.modelUri", "aicloud:serving.pool", "aicloud:serving.regions.nowhere"], errs


def test_variant_images_must_be_pinned_too():
    errs = errors(
        {**GATEWAY, "release": {"strategy": "ab", "ab": {"image": IMAGE_B.replace("@sha256:" + "b" * 64, ":b")}}}
    )
    assert errs[0].startswith("aicloud:serving.release.ab.image: image must be pinned by digest")


def test_a_built_server_on_gpus_needs_the_cuda_build():
    """The endpoint starts the server with `--device cuda` on a GPU pool; the default server build
    installs the CPU torch wheel (VARIANT=cpu), which cannot load a model onto a GPU."""
    from stacks.config import parse_stack_config
    from tests.stack_helpers import config_errors, raw_stack

    raw = raw_stack("dev")

    def on_gpus(cfg: dict) -> None:
        pools = cfg["regions"][0]["nodePools"]
        pools.append({"name": "serve", "machineType": "g6.xlarge", "role": "inference", "minNodes": 1, "maxNodes": 3})
        cfg["serving"]["pool"] = "serve"

    errors = config_errors(raw, on_gpus, "dev")
    assert any(
        e.startswith("aicloud:images.workloads.server.buildArgs.VARIANT:") and "aws-use1" in e and "cuda" in e
        for e in errors
    ), errors

    fixed = copy.deepcopy(raw)
    on_gpus(fixed)
    fixed["images"]["workloads"]["server"] = {"buildArgs": {"VARIANT": "cuda"}}
    assert parse_stack_config(fixed, "dev").images.workloads["server"].effective_build_args("server") == {
        "VARIANT": "cuda"
    }
    # The shipped dev stack serves on CPU with the CPU build: nothing to report.
    assert parse_stack_config(copy.deepcopy(raw), "dev").serving is not None
