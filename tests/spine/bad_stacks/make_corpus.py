"""Regenerate the bad-stack corpus from the shipped stacks: `python tests/spine/bad_stacks/make_corpus.py`.

Each case copies a shipped `stacks/Pulumi.<env>.yaml`, plants one or several mistakes a platform
team makes when editing by hand or with `pulumi config set`, and records in its header the stack
it derives from and every key path the validation must name (`# expect: aicloud:<path>`) or, for
a file that is not a stack at all, a phrase the error must contain (`# expect-text: ...`). The
test (`test_bad_stacks.py`) runs `aicloud plan` on each and requires exit 2, no traceback, every
expected path named and no other path. Regenerate after changing a shipped stack, and review the
diff: a case must still plant exactly the mistakes its name says.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
STACKS = HERE.parents[2] / "stacks"
SECURE = {"secure": "v1:3hW8VtkQWmcF9c1t:Ep2oqwBf4dOCq3AZ9ZLWQxYq4nkhAQ=="}


def stack(env: str) -> dict[str, Any]:
    return yaml.safe_load((STACKS / f"Pulumi.{env}.yaml").read_text())["config"]


def region(c: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in c["aicloud:regions"] if r["name"] == name)


def pool(c: dict[str, Any], region_name: str, name: str) -> dict[str, Any]:
    return next(p for p in region(c, region_name)["nodePools"] if p["name"] == name)


Mutation = Callable[[dict[str, Any]], None]
CASES: list[tuple[str, str, list[Mutation], list[str]]] = []


def case(name: str, env: str, expect: list[str], *mutations: Mutation) -> None:
    CASES.append((name, env, list(mutations), expect))


# ----------------------------------------------------------------- one mistake each
case(
    "allowspot-no-with-a-spot-pool",
    "dev",
    ["regions[0](aws-use1).nodePools[1](gpu).spot"],
    lambda c: c.update({"aicloud:allowSpot": "no"}),
)
case(
    "allowspot-uppercase-false",
    "prod",
    ["regions[0](aws-use1).nodePools[2](train-spot).spot"],
    lambda c: c.update({"aicloud:allowSpot": "FALSE"}),
)
case(
    "allowspot-zero",
    "staging",
    ["regions[0](aws-usw2).nodePools[1](train).spot"],
    lambda c: c.update({"aicloud:allowSpot": "0"}),
)
case("allowspot-not-a-boolean", "dev", ["allowSpot"], lambda c: c.update({"aicloud:allowSpot": "sometimes"}))
case("environment-typo", "staging", ["environment"], lambda c: c.update({"aicloud:environment": "stage"}))
case("owner-empty", "dev", ["owner"], lambda c: c.update({"aicloud:owner": ""}))
case(
    "misspelt-top-level-key",
    "dev",
    ["allowSpto"],
    lambda c: c.update({"aicloud:allowSpto": c.pop("aicloud:allowSpot")}),
)
case(
    "cidr-overlaps-another-region",
    "prod",
    ["regions[1](aws-usw2).network.cidr"],
    lambda c: region(c, "aws-usw2")["network"].update(cidr="10.30.128.0/20"),
)
case(
    "cidr-not-a-network",
    "dev",
    ["regions[0](aws-use1).network.cidr"],
    lambda c: region(c, "aws-use1")["network"].update(cidr="10.10.0.0/8"),
)
case(
    "gke-pods-range-overlaps-nodes",
    "prod",
    ["regions[3](gcp-usc1).network.podsCidr"],
    lambda c: region(c, "gcp-usc1")["network"].update(podsCidr="10.40.0.0/14"),
)
case(
    "gke-master-range-not-a-28",
    "prod",
    ["regions[3](gcp-usc1).gkeMasterCidr"],
    lambda c: region(c, "gcp-usc1").update(gkeMasterCidr="172.16.0.0/24"),
)
case("tag-key-with-aws-prefix", "dev", ["tags.aws:team"], lambda c: c.update({"aicloud:tags": {"aws:team": "ml"}}))
case(
    "tag-key-uppercase-on-gcp",
    "prod",
    ["tags.CostCenter"],
    lambda c: c["aicloud:tags"].update({"CostCenter": "ml-310"}),
)
case("tag-key-leading-digit-on-gcp", "staging", ["tags.1team"], lambda c: c.update({"aicloud:tags": {"1team": "ml"}}))
case("tag-key-non-ascii-on-gcp", "prod", ["tags.équipe"], lambda c: c["aicloud:tags"].update({"équipe": "ml"}))
case(
    "tag-value-uppercase-on-gcp",
    "prod",
    ["tags.cost-center"],
    lambda c: c["aicloud:tags"].update({"cost-center": "ML-310"}),
)
case(
    "deep-archive-too-soon-after-glacier",
    "prod",
    ["storage.zones.raw.tiers.archive"],
    lambda c: c["aicloud:storage"]["zones"]["raw"].update(tiers={"warm": 30, "cold": 90, "archive": 120}),
)
case(
    "lifecycle-tiers-out-of-order",
    "dev",
    ["storage.zones.checkpoints.tiers"],
    lambda c: c["aicloud:storage"]["zones"]["checkpoints"].update(tiers={"warm": 30, "cold": 20}),
)
case(
    "mig-profile-a100-40gb-has-not",
    "prod",
    ["regions[3](gcp-usc1).nodePools[1](train).migProfile"],
    lambda c: pool(c, "gcp-usc1", "train").update(machineType="a2-highgpu-8g", gpuSharing="mig", migProfile="1g.10gb"),
)
case(
    "mig-profile-h100-has-not",
    "prod",
    ["regions[3](gcp-usc1).nodePools[1](train).migProfile"],
    lambda c: pool(c, "gcp-usc1", "train").update(gpuSharing="mig", migProfile="3g.20gb"),
)
case(
    "mig-on-eks",
    "prod",
    ["regions[0](aws-use1).nodePools[1](train).gpuSharing"],
    lambda c: pool(c, "aws-use1", "train").update(gpuSharing="mig", migProfile="1g.10gb"),
)
case(
    "filestore-zonal-off-step",
    "prod",
    ["storage.scratch.sizeGib"],
    lambda c: c["aicloud:storage"]["scratch"].update(filestoreTier="ZONAL", sizeGib=4900),
)
case(
    "fsx-size-off-step",
    "prod",
    ["storage.scratch.sizeGib"],
    lambda c: c["aicloud:storage"]["scratch"].update(sizeGib=3000),
)
case(
    "eks-network-in-one-zone",
    "dev",
    ["regions[0](aws-use1).network.zones"],
    lambda c: region(c, "aws-use1")["network"].update(zones=1),
)
case(
    "more-zones-than-the-region-has",
    "prod",
    ["regions[2](aws-euw1).network.zones"],
    lambda c: region(c, "aws-euw1")["network"].update(zones=4),
)
case(
    "gke-pool-zone-without-its-gpu",
    "prod",
    ["regions[3](gcp-usc1).nodePools[1](train).zones"],
    lambda c: pool(c, "gcp-usc1", "train").update(zones=["us-central1-b"]),
)
case(
    "serving-namespace-kube-system",
    "dev",
    ["serving.namespace"],
    lambda c: c["aicloud:serving"].update(namespace="kube-system"),
)
case(
    "serving-namespace-of-monitoring",
    "prod",
    ["serving.namespace"],
    lambda c: c["aicloud:serving"].update(namespace="monitoring"),
)
case(
    "gpu-type-not-offered-in-region",
    "prod",
    ["regions[2](aws-euw1).nodePools[1](serve).machineType"],
    lambda c: pool(c, "aws-euw1", "serve").update(machineType="p5e.48xlarge"),
)
case(
    "unknown-machine-type",
    "dev",
    ["regions[0](aws-use1).nodePools[1](gpu).machineType"],
    lambda c: pool(c, "aws-use1", "gpu").update(machineType="g7.xlarge"),
)
case(
    "min-nodes-above-max",
    "dev",
    ["regions[0](aws-use1).nodePools[1](gpu).maxNodes"],
    lambda c: pool(c, "aws-use1", "gpu").update(minNodes=3),
)
case(
    "unknown-region",
    "prod",
    ["regions[2](aws-euw1).region"],
    lambda c: region(c, "aws-euw1").update(region="eu-west-9"),
)
case(
    "kubernetes-version-unsupported",
    "staging",
    ["regions[1](gcp-usc1).cluster.version"],
    lambda c: region(c, "gcp-usc1")["cluster"].update(version="1.28"),
)
case("gcp-project-missing", "prod", ["gcpProject"], lambda c: c.pop("aicloud:gcpProject"))
case("lake-uri-without-storage", "dev", ["serving.modelUri"], lambda c: c.pop("aicloud:storage"))
case("training-job-pool-typo", "dev", ["training.jobs"], lambda c: c["aicloud:training"]["jobs"][0].update(pool="gpus"))
case("serving-pool-missing", "dev", ["serving.pool"], lambda c: c["aicloud:serving"].update(pool="cpu"))
case(
    "monitoring-retention-unit",
    "dev",
    ["monitoring.retention"],
    lambda c: c["aicloud:monitoring"].update(retention="7days"),
)
case(
    "policy-unknown-region",
    "dev",
    ["policy.allowedRegions"],
    lambda c: c["aicloud:policy"].update(allowedRegions=["us-east-7"]),
)
case(
    "storage-unknown-zone",
    "staging",
    ["storage.zones"],
    lambda c: c["aicloud:storage"]["zones"].update(bronze={"tiers": {"warm": 30}}),
)
case(
    "secret-where-a-number-is-needed",
    "dev",
    ["monitoring.storageGib"],
    lambda c: c["aicloud:monitoring"].update(storageGib=SECURE),
)

case(
    "unknown-cloud",
    "prod",
    ["regions[2](aws-euw1).cloud"],
    lambda c: region(c, "aws-euw1").update(cloud="azure"),
)
case(
    "region-list-not-a-list",
    "dev",
    ["regions"],
    lambda c: c.update({"aicloud:regions": "aws-use1"}),
)

# ----------------------------------------------------------------- several mistakes at once
case(
    "several-dev-edits",
    "dev",
    ["owner", "regions[0](aws-use1).network.zones", "regions[0](aws-use1).nodePools[1](gpu).spot", "serving.namespace"],
    lambda c: c.update({"aicloud:owner": "", "aicloud:allowSpot": "off"}),
    lambda c: region(c, "aws-use1")["network"].update(zones=1),
    lambda c: c["aicloud:serving"].update(namespace="default"),
)
case(
    "several-prod-network-and-tags",
    "prod",
    ["regions[1](aws-usw2).network.cidr", "regions[4](gcp-euw4).network.cidr", "tags.aws:owner", "tags.CostCenter"],
    lambda c: region(c, "aws-usw2")["network"].update(cidr="10.30.0.0/17"),
    lambda c: region(c, "gcp-euw4")["network"].update(cidr="10.40.0.0/20"),
    lambda c: c["aicloud:tags"].update({"aws:owner": "x", "CostCenter": "y"}),
)
case(
    "several-prod-gpu-pools",
    "prod",
    [
        "regions[3](gcp-usc1).nodePools[1](train).migProfile",
        "regions[2](aws-euw1).nodePools[1](serve).machineType",
        "regions[0](aws-use1).nodePools[1](train).maxNodes",
    ],
    lambda c: pool(c, "gcp-usc1", "train").update(gpuSharing="mig", migProfile="3g.20gb"),
    lambda c: pool(c, "aws-euw1", "serve").update(machineType="p5e.48xlarge"),
    lambda c: pool(c, "aws-use1", "train").update(minNodes=5),
)
case(
    "several-prod-storage",
    "prod",
    [
        "storage.zones.raw.tiers.archive",
        "storage.scratch.sizeGib",
        "storage.streaming.bufferSeconds",
        "storage.replication.models[0]",
    ],
    lambda c: c["aicloud:storage"]["zones"]["raw"].update(tiers={"warm": 30, "cold": 90, "archive": 100}),
    lambda c: c["aicloud:storage"]["scratch"].update(sizeGib=3000),
    lambda c: c["aicloud:storage"]["streaming"].update(bufferSeconds=900),
    lambda c: c["aicloud:storage"]["replication"].update(models=["aws-use9", "aws-euw1", "gcp-euw4"]),
)
case(
    "several-stack-level-and-field-level",
    "prod",
    ["environment", "gcpProject", "regions[3](gcp-usc1).cluster.version", "monitoring.retention"],
    lambda c: c.update({"aicloud:environment": "production"}),
    lambda c: c.pop("aicloud:gcpProject"),
    lambda c: region(c, "gcp-usc1")["cluster"].update(version="1.21"),
    lambda c: c["aicloud:monitoring"].update(retention="30 days"),
)
case(
    "several-staging-edits",
    "staging",
    ["allowSpot", "regions[1](gcp-usc1).nodePools[1](serve).zones", "storage.zones", "training.jobs"],
    lambda c: c.update({"aicloud:allowSpot": "maybe"}),
    lambda c: pool(c, "gcp-usc1", "serve").update(zones=["us-central1-f"]),
    lambda c: c["aicloud:storage"]["zones"].update({"bronze": {}}),
    lambda c: c["aicloud:training"]["jobs"][0].update(pool="trian"),
)
case(
    "several-secrets-and-bad-values",
    "prod",
    ["regions[0](aws-use1).nodePools[1](train).maxNodes", "serving.namespace", "tags.Team"],
    lambda c: c.update({"aicloud:gcpProject": SECURE}),
    lambda c: c["aicloud:serving"]["global"]["aws"].update(hostedZoneId=SECURE),
    lambda c: pool(c, "aws-use1", "train").update(maxNodes=SECURE),
    lambda c: c["aicloud:serving"].update(namespace="kube-public"),
    lambda c: c["aicloud:tags"].update({"Team": SECURE}),
)
case(
    "several-without-storage-section",
    "prod",
    [
        "serving.modelUri",
        "serving.release.blueGreen.green.modelUri",
        "monitoring.retraining",
        "regions[0](aws-use1).network.zones",
    ],
    lambda c: c.pop("aicloud:storage"),
    lambda c: region(c, "aws-use1")["network"].update(zones=1),
)
case(
    "several-dev-pools-and-jobs",
    "dev",
    [
        "regions[0](aws-use1).nodePools[1](gpu).machineType",
        "regions[0](aws-use1).nodePools[0](system).minNodes",
        "training.jobs[0](debug).nodes",
    ],
    lambda c: pool(c, "aws-use1", "gpu").update(machineType="a2-highgpu-1g"),
    lambda c: pool(c, "aws-use1", "system").update(minNodes=-1),
    lambda c: c["aicloud:training"]["jobs"][0].update(nodes=0),
)

case(
    "several-references-beside-a-broken-region",
    "prod",
    ["regions[2](aws-euw1).region", "serving.pool", "training.jobs", "owner"],
    lambda c: region(c, "aws-euw1").update(region="eu-west-9"),
    lambda c: c["aicloud:serving"].update(pool="serv"),
    lambda c: c["aicloud:training"]["jobs"][0].update(pool="trian"),
    lambda c: c.update({"aicloud:owner": ""}),
)

# ----------------------------------------------------------------- files that are not stacks
TEXT_CASES: dict[str, tuple[str, bytes, str]] = {
    "duplicate-key": ("dev", b"", "duplicate key 'aicloud:owner'"),
    "not-a-mapping": (
        "dev",
        b"- aicloud:environment: dev\n- aicloud:owner: ml-platform\n",
        "a stack file is a mapping",
    ),
    "config-not-a-mapping": ("dev", b"config:\n  - aicloud:environment\n", "`config` must be a mapping"),
    "not-yaml": ("dev", b"config:\n  aicloud:regions: [\n", "not valid YAML"),
    "binary": ("dev", bytes(range(256)) * 4, "not a text file"),
}


def main() -> None:
    for old in HERE.glob("*.yaml"):
        old.unlink()
    for name, env, mutations, expect in CASES:
        config = copy.deepcopy(stack(env))
        for m in mutations:
            m(config)
        head = [f"# derived-from: stacks/Pulumi.{env}.yaml", *(f"# expect: aicloud:{e}" for e in expect)]
        body = yaml.safe_dump({"config": config}, sort_keys=False, allow_unicode=True, width=120)
        (HERE / f"{name}.yaml").write_text("\n".join(head) + "\n" + body)
    for name, (env, data, text) in TEXT_CASES.items():
        if name == "duplicate-key":
            src = (STACKS / f"Pulumi.{env}.yaml").read_text()
            data = src.replace(
                "  aicloud:owner: ml-platform\n", "  aicloud:owner: ml-platform\n  aicloud:owner: ml-infra\n"
            )
            data = data.encode()
        head = f"# derived-from: stacks/Pulumi.{env}.yaml\n# expect-text: {text}\n".encode()
        (HERE / f"{name}.yaml").write_bytes(data if name == "binary" else head + data)
        if name == "binary":
            (HERE / f"{name}.expect").write_text(f"# derived-from: stacks/Pulumi.{env}.yaml\n# expect-text: {text}\n")
    print(f"{len(CASES) + len(TEXT_CASES)} cases")


if __name__ == "__main__":
    main()
