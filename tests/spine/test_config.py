"""Stack config validation: bad values fail before any resource exists, all at once, each error
naming the key path, the bad value and what is allowed."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stacks.config import ConfigError, load_stack, parse_stack_config

GOOD = {
    "environment": "prod",
    "owner": "ml-platform",
    "allowSpot": True,
    "gcpProject": "acme-ml-prod",
    "regions": [
        {
            "name": "aws-use1",
            "cloud": "aws",
            "region": "us-east-1",
            "primary": True,
            "nodePools": [
                {"name": "system", "machineType": "m6i.large", "minNodes": 1, "maxNodes": 3},
                {"name": "gpu", "machineType": "g6.xlarge", "role": "inference", "minNodes": 0, "maxNodes": 4},
            ],
        },
        {
            "name": "gcp-usc1",
            "cloud": "gcp",
            "region": "us-central1",
            "primary": True,
            "nodePools": [
                {"name": "system", "machineType": "e2-standard-4", "minNodes": 1, "maxNodes": 3},
                {"name": "gpu", "machineType": "g2-standard-8", "role": "inference", "maxNodes": 2},
            ],
        },
    ],
}


def errors_for(mutate) -> list[str]:
    raw = copy.deepcopy(GOOD)
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw, "t")
    return info.value.errors


def pool(raw, region=0, index=1):
    return raw["regions"][region]["nodePools"][index]


def test_good_config_validates():
    cfg = parse_stack_config(GOOD, "t")
    assert [r.name for r in cfg.regions] == ["aws-use1", "gcp-usc1"]
    assert cfg.safety.protect is True and cfg.safety.retain_on_delete is True


# Each case: (id, mutation, the one expected error line).
CASES = [
    (
        "unknown-environment",
        lambda r: r.update(environment="qa"),
        "aicloud:environment: Input should be 'dev', 'staging' or 'prod' (got 'qa')",
    ),
    (
        "unknown-machine-type",
        lambda r: pool(r).update(machineType="g9.xlarge"),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).machineType: unknown machine type 'g9.xlarge'; "
        "the catalog has: c6i.2xlarge, g5.12xlarge",
    ),
    (
        "gcp-type-in-aws-region",
        lambda r: pool(r).update(machineType="a2-highgpu-1g"),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).machineType: unknown machine type 'a2-highgpu-1g'",
    ),
    (
        "min-greater-than-max",
        lambda r: pool(r).update(minNodes=5, maxNodes=2),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).maxNodes: maxNodes (2) is less than minNodes (5) (got 2)",
    ),
    (
        "desired-outside-range",
        lambda r: pool(r).update(desiredNodes=9),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).desiredNodes: desiredNodes (9) must lie between "
        "minNodes (0) and maxNodes (4) (got 9)",
    ),
    (
        "gpu-type-not-offered-in-region",
        lambda r: (r["regions"][0].update(region="eu-west-1"), pool(r).update(machineType="p5e.48xlarge")),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).machineType: machine type 'p5e.48xlarge' is not "
        "offered in eu-west-1; it is offered in: us-east-1, us-east-2, us-west-2 (got 'p5e.48xlarge')",
    ),
    (
        "region-does-not-exist",
        lambda r: r["regions"][0].update(region="us-east-9"),
        "aicloud:regions[0](aws-use1).region: unknown aws region 'us-east-9'; known regions: ap-northeast-1",
    ),
    (
        "spot-in-stack-that-forbids-spot",
        lambda r: (r.update(allowSpot=False), pool(r).update(spot=True)),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).spot: spot capacity is forbidden in this stack "
        "(allowSpot: false); set spot: false or allow spot for the stack (got True)",
    ),
    (
        "unknown-key",
        lambda r: pool(r).update(minNode=1),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).minNode: unknown key (check the spelling; keys are camelCase)",
    ),
    (
        "unknown-cloud",
        lambda r: r["regions"][0].update(cloud="azure"),
        "aicloud:regions[0](aws-use1).cloud: Input should be 'aws' or 'gcp' (got 'azure')",
    ),
    (
        "negative-min-nodes",
        lambda r: pool(r).update(minNodes=-1),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).minNodes: Input should be greater than or equal to 0 (got -1)",
    ),
    (
        "zero-max-nodes",
        lambda r: pool(r).update(maxNodes=0),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).maxNodes: Input should be greater than or equal to 1 (got 0)",
    ),
    (
        "inference-role-on-cpu-machine",
        lambda r: pool(r).update(machineType="m6i.xlarge"),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).role: role 'inference' needs a GPU machine type; "
        "'m6i.xlarge' has no GPU (use role: general for CPU pools) (got 'inference')",
    ),
    (
        "bad-network-cidr",
        lambda r: r["regions"][0].update(network={"cidr": "10.0.0.0/8"}),
        "aicloud:regions[0](aws-use1).network.cidr: '10.0.0.0/8': prefix must be between /16 and /20 "
        "(got '10.0.0.0/8')",
    ),
    (
        "unsupported-kubernetes-version",
        lambda r: r["regions"][0].update(cluster={"version": "1.21"}),
        "aicloud:regions[0](aws-use1).cluster.version: unsupported Kubernetes version '1.21'; allowed: 1.30, 1.31",
    ),
    (
        "public-endpoint-without-allow-list",
        lambda r: r["regions"][0].update(cluster={"publicEndpoint": True}),
        "aicloud:regions[0](aws-use1).cluster: publicEndpoint: true needs publicAccessCidrs (an allow-list)",
    ),
    (
        "mig-on-non-mig-gpu",
        lambda r: pool(r, 1).update(gpuSharing="mig", migProfile="1g.10gb"),
        "aicloud:regions[1](gcp-usc1).nodePools[1](gpu).gpuSharing: gpuSharing 'mig' needs a MIG-capable GPU "
        "(A100, H100, H200); 'g2-standard-8' has nvidia-l4 (got 'mig')",
    ),
    (
        "mig-on-eks",
        lambda r: pool(r).update(machineType="p4d.24xlarge", gpuSharing="mig", migProfile="1g.5gb"),
        "aicloud:regions[0](aws-use1).nodePools[1](gpu).gpuSharing: gpuSharing 'mig' is supported on GKE only",
    ),
    (
        "no-system-pool",
        lambda r: r["regions"][0]["nodePools"].pop(0),
        "aicloud:regions[0](aws-use1).nodePools: needs a general pool without taints and minNodes >= 1 for system pods",
    ),
    (
        "duplicate-pool-names",
        lambda r: pool(r).update(name="system"),
        "aicloud:regions[0](aws-use1).nodePools: node pool names must be unique, repeated: system",
    ),
    (
        "two-primaries-one-cloud",
        lambda r: r["regions"].append({**copy.deepcopy(r["regions"][0]), "name": "aws-usw2", "region": "us-west-2"}),
        "aicloud:regions: exactly one aws region must be primary: true, found 2 (aws-use1, aws-usw2)",
    ),
    (
        "gcp-without-project",
        lambda r: r.pop("gcpProject"),
        "aicloud:gcpProject: required because the stack has GCP regions",
    ),
    (
        "too-many-zones",
        lambda r: r["regions"][1].update(network={"zones": 6}),
        "aicloud:regions[1](gcp-usc1).network.zones: us-central1 has 4 zones (us-central1-a, us-central1-b, "
        "us-central1-c, us-central1-f) (got 6)",
    ),
    (
        "missing-owner",
        lambda r: r.pop("owner"),
        "aicloud:owner: required key is missing",
    ),
]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_rejected_with_key_value_and_allowed(mutate, expected):
    errors = errors_for(mutate)
    assert any(e.startswith(expected) for e in errors), "\n".join(errors)


def test_every_error_is_listed_at_once():
    def many(r):
        r.update(environment="qa")
        pool(r).update(machineType="g9.xlarge", minNodes=5, maxNodes=2)
        r["regions"][1].update(region="mars-1")

    errors = errors_for(many)
    assert len(errors) == 4, errors
    assert {e.split(":")[1].split(".")[-1] for e in errors} >= {"environment", "machineType", "maxNodes"}


def test_shipped_stacks_validate():
    for stack in ("dev", "staging", "prod"):
        _, cfg = load_stack(stack)
        assert cfg.environment == stack


def test_config_error_exits_2_without_traceback(tmp_path: Path):
    raw = copy.deepcopy(GOOD)
    pool(raw).update(machineType="g9.xlarge", minNodes=5, maxNodes=2)
    (tmp_path / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": {f"aicloud:{k}": v for k, v in raw.items()}}))
    proc = subprocess.run(
        [sys.executable, "-m", "stacks.cli", "plan", "bad", "--stacks-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "stack 'bad': 2 config error(s):" in proc.stderr
    assert "nodePools[1](gpu).machineType: unknown machine type 'g9.xlarge'" in proc.stderr
    assert "nodePools[1](gpu).maxNodes: maxNodes (2) is less than minNodes (5)" in proc.stderr


def test_unknown_stack_names_the_stacks_that_exist(capsys):
    from stacks.cli import main

    assert main(["plan", "nope"]) == 2
    assert "stacks: dev, prod, staging" in capsys.readouterr().err
