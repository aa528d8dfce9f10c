"""Workload images: registries per cloud (ECR with scan on push, immutable tags, KMS, lifecycle and
replication; Artifact Registry), content-named tags, one build, and refs by digest per region."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pytest
from dockerfile import parse_string as parse_dockerfile

from components.base import DataSafety
from components.image import (
    CACHE_TAG,
    ImageRegistry,
    ImagesSpec,
    WorkloadImage,
    WorkloadImageSpec,
    dockerfile_sources,
    registry_regions,
    source_tag,
)
from components.platform import RegionSpec
from stacks.plan.mocks import ACCOUNT

DIGEST = "sha256:" + "5" * 64
ECR_REPO = "aws:ecr/repository:Repository"
AR_REPO = "gcp:artifactregistry/repository:Repository"
IMAGE = "docker-build:index:Image"
BY_DIGEST = re.compile(r"^[a-z0-9.-]+(/[a-z0-9._-]+)+@(sha256:[0-9a-f]{64}|\$\{trainer-image-build\.digest\})$")


def region(name: str, cloud: str, where: str, primary: bool = False, serving: bool = True) -> RegionSpec:
    system = "m6i.large" if cloud == "aws" else "e2-standard-4"
    return RegionSpec.model_validate(
        {
            "name": name,
            "cloud": cloud,
            "region": where,
            "primary": primary,
            "serving": serving,
            "nodePools": [{"name": "system", "machineType": system, "minNodes": 1, "maxNodes": 2}],
        },
        context={},
    )


REGIONS = [
    region("aws-use1", "aws", "us-east-1", primary=True),
    region("aws-usw2", "aws", "us-west-2"),
    region("aws-euw1", "aws", "eu-west-1", serving=False),
    region("gcp-usc1", "gcp", "us-central1", primary=True),
    region("gcp-euw4", "gcp", "europe-west4"),
]


def program(workloads: dict, safety: DataSafety | None = None, replicate: bool = True, packages: list | None = None):
    safety = safety or DataSafety()
    extra = {"packages": packages} if packages is not None else {}
    spec = ImagesSpec.model_validate({"workloads": workloads, "keepLast": 7, "replicate": replicate, **extra})

    def run():
        providers = {
            r.name: (
                aws.Provider(f"aws-{r.name}", region=r.region)
                if r.cloud == "aws"
                else gcp.Provider(f"gcp-{r.name}", project="acme-test-1", region=r.region)
            )
            for r in REGIONS
        }
        registry = ImageRegistry(
            "images",
            spec,
            stack="test",
            regions=registry_regions(REGIONS, replicate=spec.replicate),
            providers=providers,
            gcp_project="acme-test-1",
            safety=safety,
            tags={"owner": "t"},
        )
        for name, w in spec.workloads.items():
            WorkloadImage(f"{name}-image", name, w, registry=registry, opts=pulumi.ResourceOptions(parent=registry))

    return run


def provider_region(regs, reg) -> str:
    return regs.one(reg.provider.split("::")[-2], reg.provider.split("::")[-1]).inputs["region"]


# --------------------------------------------------------------------------- pure helpers


def test_dockerfile_sources_reads_copy_and_add_but_not_stage_copies():
    text = (
        "FROM python:3.11 AS base\n"
        "COPY pyproject.toml README.md ./\n"
        "COPY --chown=10001:10001 workloads \\\n    ./workloads\n"
        'ADD ["conf/a b.yaml", "/etc/x"]\n'
        "COPY --from=base /opt /opt\n"
        "ADD https://example.com/x.tgz /tmp/\n"
        "RUN echo COPY not-a-source /x\n"
    )
    assert dockerfile_sources(text) == ["pyproject.toml", "README.md", "workloads", "conf/a b.yaml"]


def test_dockerfile_sources_reads_the_file_as_docker_does():
    """The escape directive, comments inside a continuation and heredocs (inline files, not context paths)."""
    text = (
        "# escape=`\n"
        "FROM scratch\n"
        "COPY a.txt `\n"
        "# a comment inside the instruction\n"
        "  b.txt /dst/\n"
        "COPY <<EOF /app/inline.txt\nhello\nEOF\n"
        "COPY c.txt /dst/\n"
    )
    assert dockerfile_sources(text) == ["a.txt", "b.txt", "c.txt"]


def _tree(root):
    (root / "app").mkdir()
    (root / "app" / "main.py").write_text("print(1)\n")
    (root / "app" / "__pycache__").mkdir()
    (root / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\x00cache")
    (root / "pyproject.toml").write_text("[project]\nname='x'\n")
    (root / "NOTES.md").write_text("not copied\n")
    (root / "Dockerfile").write_text("FROM scratch\nCOPY pyproject.toml ./\nCOPY app ./app\n")


def test_source_tag_names_exactly_what_the_dockerfile_copies(tmp_path):
    _tree(tmp_path)
    spec = WorkloadImageSpec(dockerfile="Dockerfile")
    tag = source_tag(spec, "x", tmp_path)
    assert re.fullmatch(r"src-[0-9a-f]{12}", tag)
    assert source_tag(spec, "x", tmp_path) == tag  # deterministic
    (tmp_path / "NOTES.md").write_text("edited, but not in the image\n")
    (tmp_path / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\x01other")
    assert source_tag(spec, "x", tmp_path) == tag
    (tmp_path / "app" / "main.py").write_text("print(2)\n")
    changed = source_tag(spec, "x", tmp_path)
    assert changed != tag
    assert source_tag(WorkloadImageSpec(dockerfile="Dockerfile", build_args={"X": "1"}), "x", tmp_path) != changed


def test_registry_regions_push_to_primaries_and_replicate_to_aws_serving_regions():
    modes = {r.key: r.mode for r in registry_regions(REGIONS, replicate=True)}
    assert modes == {
        "aws-use1": "push",
        "aws-usw2": "replica",
        "aws-euw1": "remote",
        "gcp-usc1": "push",
        "gcp-euw4": "push",
    }
    off = {r.key: r.mode for r in registry_regions(REGIONS, replicate=False)}
    assert off["aws-usw2"] == "remote"


# --------------------------------------------------------------------------- components


def test_ecr_repositories_scan_on_push_with_immutable_tags_kms_and_lifecycle(record):
    regs = record(program({"trainer": {}}))
    repos = regs.of_type(ECR_REPO)
    assert sorted(provider_region(regs, r) for r in repos) == ["us-east-1", "us-west-2"]  # not eu-west-1
    for repo in repos:
        assert repo.inputs["name"] == "aicloud-test/trainer"
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo.inputs["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
        assert repo.inputs["imageTagMutabilityExclusionFilters"] == [
            {"filter": f"{CACHE_TAG}*", "filterType": "WILDCARD"}
        ]
        assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
        (lifecycle,) = [c for c in regs.children_of(repo) if c.type == "aws:ecr/lifecyclePolicy:LifecyclePolicy"]
        (rule,) = json.loads(lifecycle.inputs["policy"])["rules"]
        assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 7}
        assert rule["action"] == {"type": "expire"}
        assert lifecycle.provider == repo.provider


def test_registries_hold_data_and_are_retained_and_protected(record):
    regs = record(program({"trainer": {}}, safety=DataSafety(protect=True)))
    for repo in regs.of_type(ECR_REPO) + regs.of_type(AR_REPO):
        assert repo.retain_on_delete and repo.protect, repo.name


def test_one_replication_configuration_in_the_primary_region_to_the_serving_regions(record):
    regs = record(program({"trainer": {}, "server": {}}))
    replication = regs.one("aws:ecr/replicationConfiguration:ReplicationConfiguration")
    assert provider_region(regs, replication) == "us-east-1"
    (rule,) = replication.inputs["replicationConfiguration"]["rules"]
    assert rule["destinations"] == [{"region": "us-west-2", "registryId": ACCOUNT}]
    assert rule["repositoryFilters"] == [{"filter": "aicloud-test/", "filterType": "PREFIX_MATCH"}]
    assert len(regs.of_type(ECR_REPO)) == 4  # 2 workloads x (primary + replica)


def test_artifact_registry_docker_repositories_in_the_gcp_push_regions(record):
    regs = record(program({"trainer": {}}))
    repos = regs.of_type(AR_REPO)
    assert sorted(r.inputs["location"] for r in repos) == ["europe-west4", "us-central1"]
    for repo in repos:
        assert repo.inputs["format"] == "DOCKER"
        assert repo.inputs["dockerConfig"] == {"immutableTags": True}
        assert repo.inputs["repositoryId"] == "aicloud-test"
        assert provider_region(regs, repo) == repo.inputs["location"]
        actions = {p["action"] for p in repo.inputs["cleanupPolicies"]}
        assert actions == {"DELETE", "KEEP"}


def test_one_build_pushes_a_content_tag_to_every_push_registry_after_they_exist(record):
    regs = record(program({"trainer": {}}))
    image = regs.one(IMAGE)
    tag = source_tag(WorkloadImageSpec(), "trainer")
    assert image.inputs["push"] is True
    assert sorted(image.inputs["tags"]) == sorted(
        [
            f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/aicloud-test/trainer:{tag}",
            f"us-central1-docker.pkg.dev/acme-test-1/aicloud-test/trainer:{tag}",
            f"europe-west4-docker.pkg.dev/acme-test-1/aicloud-test/trainer:{tag}",
        ]
    )
    assert image.inputs["dockerfile"]["location"].endswith("workloads/Dockerfile")
    assert image.inputs["target"] == "trainer"  # the trainer's stage of the shared Dockerfile
    assert image.inputs["buildArgs"]["VARIANT"] == "cuda"  # GPU pools: the CUDA wheel
    assert image.inputs["buildArgs"]["SOURCE_DATE_EPOCH"] == "0"
    assert image.inputs["buildOnPreview"] is False
    cache = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/aicloud-test/trainer:{CACHE_TAG}"
    assert image.inputs["cacheFrom"] == [{"registry": {"ref": cache}}]
    assert image.inputs["cacheTo"][0]["registry"]["ref"] == cache
    addresses = sorted(r.get("address") for r in image.inputs["registries"])
    assert addresses == sorted(
        [f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com", "us-central1-docker.pkg.dev", "europe-west4-docker.pkg.dev"]
    )
    repos = {r.urn for r in regs.of_type(ECR_REPO) + regs.of_type(AR_REPO)}
    assert repos <= set(image.depends_on)  # replica repositories exist before the first push
    assert regs.one("pulumi:providers:docker-build").urn == image.provider


def test_each_region_pulls_by_digest_from_its_nearest_registry(record):
    regs = record(program({"trainer": {}}))
    refs = regs.one("aicloud:images:WorkloadImage").outputs["refs"]
    assert set(refs) == {r.name for r in REGIONS}
    for ref in refs.values():
        assert BY_DIGEST.match(ref), ref
    ecr = f"{ACCOUNT}.dkr.ecr.%s.amazonaws.com/aicloud-test/trainer@${{trainer-image-build.digest}}"
    assert refs["aws-use1"] == ecr % "us-east-1"
    assert refs["aws-usw2"] == ecr % "us-west-2"  # the replica
    assert refs["aws-euw1"] == ecr % "us-east-1"  # not a replication target: pulls from the primary
    assert refs["gcp-euw4"].startswith("europe-west4-docker.pkg.dev/acme-test-1/aicloud-test/trainer@")


def test_a_pinned_image_builds_nothing_and_is_used_by_digest_everywhere(record):
    regs = record(program({"trainer": {"image": f"ghcr.io/acme/trainer:v3@{DIGEST}"}}))
    assert not regs.of_type(IMAGE) and not regs.of_type(ECR_REPO) and not regs.of_type(AR_REPO)
    assert not regs.of_type("aws:ecr/replicationConfiguration:ReplicationConfiguration")
    out = regs.one("aicloud:images:WorkloadImage").outputs
    assert out["source"] == "pinned" and out["digest"] == DIGEST
    assert set(out["refs"].values()) == {f"ghcr.io/acme/trainer@{DIGEST}"}  # the tag is dropped


@pytest.mark.parametrize(
    "bad", ["ghcr.io/acme/trainer:latest", "trainer", f"trainer@{DIGEST}", "ghcr.io/a/t@sha256:123"]
)
def test_unpinned_references_are_rejected(bad):
    with pytest.raises(ValueError, match="pinned by digest"):
        WorkloadImageSpec(image=bad)


# ------------------------------------------------------------------ reproducible workload images
ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "workloads" / "Dockerfile"
TARGETS = ["trainer", "server"]
LOCK = ROOT / "requirements" / "workloads.txt"


def _arg(text: str, name: str) -> str:
    (value,) = re.findall(rf"^ARG {name}=(\S*)$", text, flags=re.M)
    return value


def _lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name] = version
    return pins


def _stages(text: str) -> dict[str, tuple[str, list]]:
    """Stage name -> (what its FROM names, its instructions), read by Docker's own parser."""
    stages: dict[str, tuple[str, list]] = {}
    current: list | None = None
    for command in parse_dockerfile(text):
        if command.cmd.upper() == "FROM":
            assert len(command.value) == 3 and command.value[1].upper() == "AS", f"unnamed stage: {command.original}"
            current = []
            stages[command.value[2]] = (command.value[0], current)
        elif current is not None:
            current.append(command)
    return stages


def _chain(text: str, target: str) -> tuple[str, list[str]]:
    """The image `target` finally starts from and every instruction of its stages (base first)."""
    stages = _stages(text)
    lines: list[str] = []
    name = target
    while name in stages:
        parent, commands = stages[name]
        lines = [c.original for c in commands] + lines
        name = parent
    return name, lines


@pytest.mark.parametrize("target", TARGETS)
def test_images_install_the_tested_torch_on_a_base_pinned_by_digest(target: str):
    text = DOCKERFILE.read_text()
    tested_torch = importlib.metadata.version("torch").split("+")[0]
    assert _arg(text, "TORCH_VERSION") == tested_torch == _lock()["torch"]
    base = _arg(text, "BASE_IMAGE")
    assert re.fullmatch(r"[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base), base
    assert re.match(rf"python:{sys.version_info.major}\.{sys.version_info.minor}-", base)  # the tested Python
    # every stage starts from the pinned base or from a stage defined before it: no other image
    seen: list[str] = []
    for name, (parent, _) in _stages(text).items():
        assert parent == "${BASE_IMAGE}" or parent in seen, f"stage {name} starts from {parent}"
        seen.append(name)
    origin, lines = _chain(text, target)
    assert origin == "${BASE_IMAGE}"
    body = "\n".join(lines)
    # CPU and CUDA variants of the same torch version, from the PyTorch index of each
    assert 'cpu) index=cpu ;; cuda) index="${CUDA_INDEX}"' in body
    assert '"torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${index}"' in body
    assert "pip install -c requirements/workloads.txt -r /tmp/workloads.txt" in body


def test_one_dockerfile_with_a_target_per_workload_and_the_shared_steps_once():
    text = DOCKERFILE.read_text()
    stages = _stages(text)
    assert set(TARGETS) <= set(stages)
    parents = {stages[t][0] for t in TARGETS}
    assert len(parents) == 1 and parents <= set(stages)  # both targets build on one shared stage
    for target in TARGETS:
        assert not any("pip install" in c.original for c in stages[target][1]), target
    assert text.count('"torch==${TORCH_VERSION}"') == 1
    assert not (ROOT / "workloads" / "trainer" / "Dockerfile").exists()
    assert not (ROOT / "workloads" / "server" / "Dockerfile").exists()
    for target in TARGETS:  # the default spec of each workload builds its own target
        assert WorkloadImageSpec().target_stage(target) == target
        assert WorkloadImageSpec().dockerfile_path(target) == "workloads/Dockerfile"
    assert WorkloadImageSpec().effective_build_args("trainer") == {"VARIANT": "cuda"}
    assert WorkloadImageSpec(build_args={"VARIANT": "cpu"}).effective_build_args("trainer") == {"VARIANT": "cpu"}
    assert _arg(text, "VARIANT") == "cpu"  # a hand-made build without arguments is the CPU one


def test_a_target_that_is_not_a_stage_is_rejected_naming_the_stages():
    with pytest.raises(ValueError) as info:
        ImagesSpec.model_validate({"workloads": {"tool": {}}})
    message = str(info.value)
    assert "tool.target: 'tool' is not a stage of workloads/Dockerfile; stages: base, trainer, server" in message
    with pytest.raises(ValueError, match="trainer.target: 'trainr' is not a stage"):
        ImagesSpec.model_validate({"workloads": {"trainer": {"target": "trainr"}}})
    ok = ImagesSpec.model_validate({"workloads": {"tool": {"target": "server"}}})
    assert ok.workloads["tool"].target_stage("tool") == "server"


def test_the_target_and_its_build_args_change_the_tag():
    trainer, server = source_tag(WorkloadImageSpec(), "trainer"), source_tag(WorkloadImageSpec(), "server")
    assert trainer != server
    assert source_tag(WorkloadImageSpec(build_args={"VARIANT": "cpu"}), "trainer") != trainer


def test_the_lock_is_the_tested_environment_and_covers_the_workloads_extra():
    pins = _lock()
    for name, version in pins.items():
        installed = importlib.metadata.version(name)
        assert (installed.split("+")[0] if name == "torch" else installed) == version, (
            f"{name}: the tested environment has {installed}, the images install {version}; install with "
            "-c requirements/workloads.txt (README) or, to move the images, run make lock-workloads"
        )
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["workloads"]
    for requirement in extra:
        name = re.split(r"[\[<>=;~! ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, f"{name} (workloads extra) is not in {LOCK.name}; run make lock-workloads"


def test_model_packages_are_source_paths_or_pinned_requirements():
    spec = ImagesSpec.model_validate(
        {"workloads": {"trainer": {}}, "packages": ["examples/resmlp", "acme-models==1.4.2"]}
    )
    assert spec.package_build_args() == {
        "USER_PACKAGE_PATHS": "examples/resmlp",
        "USER_REQUIREMENTS": "acme-models==1.4.2",
    }
    for bad, reason in [
        ("acme-models>=1.4", r"packages\[0\]: 'acme-models>=1.4' is not pinned"),
        ("../elsewhere", r"packages\[0\]: '../elsewhere' is outside the repository"),
        ("workloads", r"packages\[0\]: 'workloads' is neither a pinned requirement"),
    ]:
        with pytest.raises(ValueError, match=reason):
            ImagesSpec.model_validate({"workloads": {"trainer": {}}, "packages": [bad]})


def test_model_package_files_change_the_image_tag(tmp_path):
    _tree(tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "pyproject.toml").write_text("[project]\nname='pkg'\n")
    spec = WorkloadImageSpec(dockerfile="Dockerfile")
    tag = source_tag(spec, "x", tmp_path, packages=["pkg"])
    assert tag != source_tag(spec, "x", tmp_path)
    (tmp_path / "pkg" / "model.py").write_text("def build(): ...\n")
    assert source_tag(spec, "x", tmp_path, packages=["pkg"]) != tag


def test_built_images_get_the_model_packages_as_build_args(record):
    regs = record(program({"trainer": {}, "server": {}}, packages=["examples/resmlp"]))
    for image in regs.of_type(IMAGE):
        assert image.inputs["buildArgs"]["USER_PACKAGE_PATHS"] == "examples/resmlp"
        assert image.inputs["buildArgs"]["USER_REQUIREMENTS"] == ""
