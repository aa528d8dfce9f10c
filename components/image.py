"""Workload images: registries on each cloud, one build per workload, referenced by digest.

A stack's `aicloud:images` section names the workload images (`trainer`, `server`, ...). Each is
either built from its Dockerfile with `pulumi-docker-build` and pushed to registries the stack
creates, or pinned by digest (`image: repo@sha256:...`, for stacks that take images from CI).
Jobs and endpoints never use a tag: they get an `ImageRef` whose `ref` is `repository@digest`,
pointing at a registry in (or nearest to) their own region.

Where images live (`registry_regions`):
- AWS: one ECR repository per workload in the primary AWS region, the one the build pushes to;
  ECR replication (one `ReplicationConfiguration` per registry, in the primary region) copies
  every image to the AWS serving regions, where the stack pre-creates the destination
  repositories so they get the same settings (scan on push, immutable tags, KMS, lifecycle)
  instead of ECR's defaults. Other AWS regions pull from the primary.
- GCP: one Artifact Registry (Docker) repository per GCP primary or serving region holding every
  workload; Artifact Registry has no replication, so the one build pushes to each of them.
One build serves both clouds: the same manifest is pushed everywhere, so the digest is the same
in every registry.

Tags are immutable and name the content: `src-<hash>` of the Dockerfile, the files its `COPY`
and `ADD` instructions read, the build arguments and platforms, and the team's model packages, so
unchanged sources never push a second image under an existing tag.

A team's own model code (`aicloud:images.packages`) goes into every built image: a source path in
the repository (a directory with `pyproject.toml` or `setup.py`, e.g. `examples/resmlp`) or a
requirement pinned with `==` (`acme-models==1.4.2`). The Dockerfiles install them after our
package, constrained to the tested versions (`requirements/workloads.txt`), so the trainer can
import the factory that `model.factory` names and the server can rebuild it from the artifact.
`SOURCE_DATE_EPOCH` is pinned so a rebuild of unchanged sources reproduces the same digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp
from dockerfile import parse_string as parse_dockerfile
from pydantic import Field, field_validator

from components.base import DataSafety, Spec, child_opts, data_opts, gcp_labels, merge_tags, type_token
from components.platform import RegionSpec
from components.validation import Problem, check, is_valid

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root: build contexts, Dockerfiles and source paths are relative to it."""

PINNED_REF = re.compile(
    r"^(?P<repository>[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)
"""`registry/path/name[:tag]@sha256:<64 hex>`: an image reference pinned by digest."""

CACHE_TAG = "buildcache"
"""ECR tag of the BuildKit registry cache; the only tag exempt from immutability (it moves)."""
SOURCE_DATE_EPOCH = "0"
"""Fixed image timestamps, so rebuilding unchanged sources reproduces the same digest."""
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
PINNED_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
"""`name[extras]==version`: a package requirement pinned to one version."""


WORKLOADS_DOCKERFILE = "workloads/Dockerfile"
"""The workload images' Dockerfile: a shared `base` stage and one target stage per workload."""
WORKLOAD_BUILD_ARGS: dict[str, dict[str, str]] = {
    "trainer": {"VARIANT": "cuda"},
    "server": {"VARIANT": "cpu"},
}
"""Build arguments of the default Dockerfile's targets: the trainer runs on GPU pools (the CUDA
wheel); the server's default precision on CPU is int8, and a GPU endpoint sets
`buildArgs: {VARIANT: cuda}`."""


class WorkloadImageSpec(Spec):
    """One workload image: built from a Dockerfile (the default) or pinned by digest."""

    image: str | None = None
    """A reference pinned by digest, `registry/name[:tag]@sha256:<64 hex>` (e.g. pushed by CI):
    nothing is built and no registry is created for it. Conflicts with every build field."""
    dockerfile: str | None = None
    """Dockerfile path relative to the repository root; default `workloads/Dockerfile`, the
    multi-stage file with one target per workload (`trainer`, `server`)."""
    target: str | None = None
    """Build stage (`docker build --target`); default: the workload's name with the default
    Dockerfile, the file's last stage with another one."""
    context: str = "."
    """Build context relative to the repository root (default: the root itself)."""
    platforms: list[Literal["linux/amd64", "linux/arm64"]] = Field(
        default_factory=lambda: ["linux/amd64"], min_length=1
    )
    """Target platforms; GPU nodes in the catalog are all x86-64, hence `linux/amd64` alone."""
    build_args: dict[str, str] = Field(default_factory=dict)
    """`ARG` values for the build (never secrets: they are stored in the image)."""

    @field_validator("image")
    @classmethod
    def _pinned(cls, value: str | None) -> str | None:
        if value is not None and not PINNED_REF.match(value):
            raise ValueError(
                "image must be pinned by digest, `registry/name[:tag]@sha256:<64 hex digits>`; "
                "a tag alone is mutable and is rejected"
            )
        return value

    @check("image")
    def _pinned_or_built(self) -> Iterator[Problem]:
        if not is_valid(self):
            return  # which fields were set is known once the block is valid
        build_fields = sorted(self.model_fields_set - {"image"})
        if self.image is not None and build_fields:
            names = ", ".join(type(self).model_fields[f].alias or f for f in build_fields)
            yield Problem((), f"a pinned image is not built: remove {names} or remove image")

    @property
    def pinned(self) -> bool:
        return self.image is not None

    def dockerfile_path(self, workload: str) -> str:
        """The Dockerfile, relative to the repository root."""
        return self.dockerfile or WORKLOADS_DOCKERFILE

    def target_stage(self, workload: str) -> str | None:
        """The stage to build (None: the Dockerfile's last stage)."""
        if self.target is not None:
            return self.target
        return workload if self.dockerfile is None else None

    def effective_build_args(self, workload: str) -> dict[str, str]:
        """The workload's default build arguments (`WORKLOAD_BUILD_ARGS`) under `build_args`."""
        defaults = WORKLOAD_BUILD_ARGS.get(workload, {}) if self.dockerfile is None else {}
        return {**defaults, **self.build_args}


class ImagesSpec(Spec):
    """The `aicloud:images` section: the workload images of the stack and their registries."""

    workloads: dict[str, WorkloadImageSpec] = Field(min_length=1)
    """Images by workload name (`trainer`, `server`, ...); `{}` builds the workload's target of
    the default Dockerfile (`workloads/Dockerfile`)."""
    keep_last: int = Field(default=50, ge=1, le=1000)
    """Lifecycle: each repository keeps its newest N images (older ones are deleted)."""
    replicate: bool = True
    """Replicate ECR images from the primary AWS region to the AWS serving regions; off, those
    regions pull across regions from the primary."""
    build_on_preview: bool = False
    """Build images during `pulumi preview` too (never pushed). Off by default: GPU framework
    images take many minutes and previews should stay fast; `up` always builds."""
    packages: list[str] = Field(default_factory=list)
    """The team's model packages, installed into every built image (default none): each a source
    path relative to the repository root (a directory with `pyproject.toml` or `setup.py`) or a
    requirement pinned with `==` (`acme-models==1.4.2`; a range is rejected, it would not
    reproduce). Pinned images (`image:`) are built elsewhere and must contain them already."""

    @field_validator("packages")
    @classmethod
    def _packages(cls, value: list[str]) -> list[str]:
        problems = []
        for i, entry in enumerate(value):
            if PINNED_REQUIREMENT.match(entry):
                continue
            if any(op in entry for op in ("=", "<", ">", "~", "@")):
                problems.append(f"packages[{i}]: {entry!r} is not pinned; allowed: name==version or a source path")
            elif not _inside_repo(entry):
                problems.append(f"packages[{i}]: {entry!r} is outside the repository")
            elif not any((REPO_ROOT / entry / f).is_file() for f in ("pyproject.toml", "setup.py")):
                problems.append(
                    f"packages[{i}]: {entry!r} is neither a pinned requirement (name==version) nor a "
                    "directory under the repository root with pyproject.toml or setup.py"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return value

    def package_build_args(self) -> dict[str, str]:
        """`USER_PACKAGE_PATHS` and `USER_REQUIREMENTS` for the Dockerfiles (empty when none)."""
        if not self.packages:
            return {}
        requirements = [p for p in self.packages if PINNED_REQUIREMENT.match(p)]
        paths = [p.strip("/") for p in self.packages if p not in requirements]
        return {"USER_PACKAGE_PATHS": " ".join(paths), "USER_REQUIREMENTS": " ".join(requirements)}

    @field_validator("workloads")
    @classmethod
    def _workloads(cls, value: dict[str, WorkloadImageSpec]) -> dict[str, WorkloadImageSpec]:
        problems = []
        for name, spec in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
                problems.append(f"{name}: workload names are lower-case DNS labels of at most 31 characters")
                continue
            if spec.pinned:
                continue
            for key, rel in [("dockerfile", spec.dockerfile_path(name)), ("context", spec.context)]:
                if not _inside_repo(rel):
                    problems.append(f"{name}.{key}: {rel!r} is outside the repository")
                elif not (REPO_ROOT / rel).exists():
                    problems.append(f"{name}.{key}: {rel!r} does not exist under the repository root")
                elif key == "dockerfile" and (target := spec.target_stage(name)) is not None:
                    stages = dockerfile_stages((REPO_ROOT / rel).read_text())
                    if target not in stages:
                        allowed = ", ".join(stages) or "none (the file names no stage)"
                        problems.append(f"{name}.target: {target!r} is not a stage of {rel}; stages: {allowed}")
        if problems:
            raise ValueError("; ".join(problems))
        return value


def _inside_repo(rel: str) -> bool:
    path = (REPO_ROOT / rel).resolve()
    return path == REPO_ROOT or REPO_ROOT in path.parents


# --------------------------------------------------------------------------- pure helpers


def dockerfile_sources(dockerfile: str) -> list[str]:
    """The context paths a Dockerfile's `COPY`/`ADD` instructions read (stage copies and URLs
    excluded), in order of appearance. Parsed by Docker's own parser (BuildKit's, through the
    `dockerfile` package): line continuations, the escape directive, flags, the JSON-array form
    and heredocs are read as `docker build` reads them."""
    sources: list[str] = []
    for command in parse_dockerfile(dockerfile):
        if command.cmd.upper() not in ("COPY", "ADD"):
            continue
        if any(f.startswith("--from=") for f in command.flags):
            continue
        inline = {f"<<{h.name}" for h in command.heredocs} | {f"<<-{h.name}" for h in command.heredocs}
        paths = [a for a in command.value[:-1] if a not in inline and "://" not in a]
        sources += [a for a in paths if a not in sources]
    return sources


def dockerfile_stages(dockerfile: str) -> list[str]:
    """The named stages (`FROM image AS name`) of a Dockerfile, in order (Docker's own parser)."""
    return [
        c.value[2]
        for c in parse_dockerfile(dockerfile)
        if c.cmd.upper() == "FROM" and len(c.value) == 3 and c.value[1].upper() == "AS"
    ]


def _files(root: Path, pattern: str) -> list[Path]:
    out: list[Path] = []
    for base in sorted(root.glob(pattern.lstrip("/"))) if pattern not in (".", "./") else [root]:
        if base.is_file():
            out.append(base)
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
            out += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith((".pyc", ".pyo"))]
    return out


def source_tag(
    spec: WorkloadImageSpec, workload: str, root: Path = REPO_ROOT, packages: list[str] | tuple[str, ...] = ()
) -> str:
    """`src-<12 hex>`: a hash of everything that makes the image: the Dockerfile and the target
    stage, the names and bytes of every file its `COPY`/`ADD` instructions read (caches skipped),
    the build arguments and the platforms, and the model `packages` (the files under each source
    path, the pinned requirements as written). Unchanged inputs give the same tag, changed inputs
    a new one."""
    dockerfile = root / spec.dockerfile_path(workload)
    context = root / spec.context
    text = dockerfile.read_text()
    digest = hashlib.sha256(text.encode())
    build = [spec.effective_build_args(workload), spec.platforms, list(packages), spec.target_stage(workload)]
    digest.update(json.dumps(build, sort_keys=True).encode())
    source_paths = [p for p in packages if not PINNED_REQUIREMENT.match(p)]
    for pattern in [*dockerfile_sources(text), *source_paths]:
        for path in _files(context, pattern):
            digest.update(b"\0" + path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return f"src-{digest.hexdigest()[:12]}"


def digest_ref(repository: str, digest: str) -> str:
    """`repository@digest`, the only form jobs and endpoints use."""
    return f"{repository}@{digest}"


def split_pinned(ref: str) -> tuple[str, str]:
    """`(repository, digest)` of a pinned reference (its tag, if any, is dropped)."""
    m = PINNED_REF.match(ref)
    if m is None:
        raise ValueError(f"not an image reference pinned by digest: {ref!r}")
    return m.group("repository"), m.group("digest")


def ecr_lifecycle_policy(keep_last: int) -> str:
    """ECR lifecycle policy: keep the newest `keep_last` images of the repository."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"keep the newest {keep_last} images",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_last},
                    "action": {"type": "expire"},
                }
            ]
        }
    )


def ar_cleanup_policies(keep_last: int) -> list[dict]:
    """Artifact Registry cleanup: delete versions older than 30 days unless among the newest N
    (a KEEP policy wins over a DELETE policy that matches the same version)."""
    return [
        {"id": "delete-old", "action": "DELETE", "condition": {"tag_state": "ANY", "older_than": "2592000s"}},
        {"id": f"keep-newest-{keep_last}", "action": "KEEP", "most_recent_versions": {"keep_count": keep_last}},
    ]


def ecr_repository_name(stack: str, workload: str) -> str:
    """ECR repository name: the same in every region, so replication lands in pre-created repos."""
    return f"aicloud-{stack}/{workload}"


def ecr_host(account: str, region: str) -> str:
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def ar_repository_id(stack: str) -> str:
    return f"aicloud-{stack}"


def ar_host(region: str) -> str:
    return f"{region}-docker.pkg.dev"


Mode = Literal["push", "replica", "remote"]


@dataclass(frozen=True, slots=True)
class RegistryRegion:
    """How images reach one region of the stack."""

    key: str
    cloud: Literal["aws", "gcp"]
    region: str
    mode: Mode
    """`push`: the build pushes to a registry here; `replica`: ECR replication copies images here
    from the primary AWS region; `remote`: pods pull from the cloud's primary region."""


def registry_regions(regions: list[RegionSpec], *, replicate: bool) -> list[RegistryRegion]:
    """Decide, per region, where its images come from (see the module docstring)."""
    out = []
    for r in regions:
        if r.cloud == "aws":
            mode: Mode = "push" if r.primary else ("replica" if r.serving and replicate else "remote")
        else:
            mode = "push" if r.primary or r.serving else "remote"
        out.append(RegistryRegion(key=r.name, cloud=r.cloud, region=r.region, mode=mode))
    return out


def replication_rules(stack: str, account: str, destinations: list[str]) -> dict:
    """The ECR replication configuration: every `aicloud-<stack>/` repository to `destinations`."""
    return {
        "rules": [
            {
                "destinations": [{"region": region, "registry_id": account} for region in destinations],
                "repository_filters": [{"filter": f"aicloud-{stack}/", "filter_type": "PREFIX_MATCH"}],
            }
        ]
    }


# --------------------------------------------------------------------------- components


@dataclass(frozen=True)
class ImageRef:
    """A workload image as one region should pull it: by digest, never by tag."""

    workload: str
    repository: pulumi.Output[str]
    """Registry host and path, e.g. `123456789012.dkr.ecr.us-west-2.amazonaws.com/aicloud-prod/server`."""
    digest: pulumi.Output[str]
    """`sha256:<64 hex>` (a placeholder in the offline plan)."""
    ref: pulumi.Output[str] = field(init=False)
    """`repository@digest`: what pod specs put in `image`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ref", pulumi.Output.concat(self.repository, "@", self.digest))


class ImageRegistry(pulumi.ComponentResource):
    """The stack's registries shared by every workload: Artifact Registry repositories in the GCP
    push regions and the ECR replication configuration of the primary AWS region."""

    def __init__(
        self,
        name: str,
        spec: ImagesSpec,
        *,
        stack: str,
        regions: list[RegistryRegion],
        providers: Mapping[str, pulumi.ProviderResource],
        gcp_project: str | None,
        safety: DataSafety,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("images", "ImageRegistry"), name, None, opts)
        self.spec = spec
        self.stack = stack
        self.regions = regions
        self.providers = dict(providers)
        self.gcp_project = gcp_project
        self.safety = safety
        self.tags = tags
        built = any(not w.pinned for w in spec.workloads.values())
        aws_primary = next((r for r in regions if r.cloud == "aws" and r.mode == "push"), None)
        self.aws_primary = aws_primary
        self.account: pulumi.Output[str] | None = None
        if aws_primary is not None and built:
            self.account = aws.get_caller_identity_output(
                opts=pulumi.InvokeOutputOptions(provider=providers[aws_primary.key])
            ).account_id
        # An explicit builder provider (the local Docker daemon/BuildKit), never a default one.
        self.builder = docker_build.Provider(f"{name}-docker-build", opts=child_opts(self)) if built else None
        self.ar_repositories: dict[str, gcp.artifactregistry.Repository] = {}
        for r in regions:
            if r.cloud != "gcp" or r.mode != "push" or not built:
                continue
            self.ar_repositories[r.key] = gcp.artifactregistry.Repository(
                f"{name}-{r.key}",
                repository_id=ar_repository_id(stack),
                location=r.region,
                format="DOCKER",
                description=f"aicloud workload images of stack {stack}",
                docker_config={"immutable_tags": True},
                cleanup_policies=ar_cleanup_policies(spec.keep_last),
                labels=gcp_labels(tags),
                opts=data_opts(self, safety, provider=providers[r.key]),
            )
        replicas = [r.region for r in regions if r.mode == "replica"]
        self.replication: aws.ecr.ReplicationConfiguration | None = None
        if aws_primary is not None and replicas and self.account is not None:
            self.replication = aws.ecr.ReplicationConfiguration(
                f"{name}-replication",
                replication_configuration=self.account.apply(lambda a: replication_rules(stack, a, replicas)),
                opts=child_opts(self, provider=providers[aws_primary.key]),
            )
        self.register_outputs(
            {
                "regions": {r.key: r.mode for r in regions},
                "artifactRegistries": {
                    r.key: f"{ar_host(r.region)}/{gcp_project}/{ar_repository_id(stack)}"
                    for r in regions
                    if r.key in self.ar_repositories
                },
                "replicatesTo": replicas,
            }
        )

    def push_region(self, cloud: str) -> RegistryRegion | None:
        """The region of `cloud` whose registry the build pushes to (its primary region)."""
        return next((r for r in self.regions if r.cloud == cloud and r.mode == "push"), None)


class WorkloadImage(pulumi.ComponentResource):
    """One workload image: ECR repositories (primary + replicas), the build, and a digest-pinned
    `ImageRef` per region (`refs`). A pinned image creates nothing and refers to its digest."""

    refs: dict[str, ImageRef]
    digest: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        workload: str,
        spec: WorkloadImageSpec,
        *,
        registry: ImageRegistry,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("images", "WorkloadImage"), name, None, opts)
        self.workload = workload
        self.refs = {}
        self.tag: str | None = None
        """The immutable content tag (`src-<hash>`) of a built image."""
        if spec.image is not None:
            repository, digest = split_pinned(spec.image)
            self.digest = pulumi.Output.from_input(digest)
            for r in registry.regions:
                self.refs[r.key] = ImageRef(workload, pulumi.Output.from_input(repository), self.digest)
            self.register_outputs(self._outputs("pinned", None))
            return
        self.tag = source_tag(spec, workload, packages=registry.spec.packages)
        repositories = self._repositories(name, workload, registry)
        primary_repo: dict[str, pulumi.Output[str]] = {}
        credentials = []
        tags: list[pulumi.Output[str]] = []
        cache: pulumi.Output[str] | None = None
        aws_push = registry.push_region("aws")
        if aws_push is not None:
            assert registry.account is not None
            url = registry.account.apply(
                lambda a: f"{ecr_host(a, aws_push.region)}/{ecr_repository_name(registry.stack, workload)}"
            )
            primary_repo["aws"] = url
            tags.append(pulumi.Output.concat(url, ":", self.tag))
            cache = pulumi.Output.concat(url, ":", CACHE_TAG)
            token = aws.ecr.get_authorization_token_output(
                registry_id=registry.account,
                opts=pulumi.InvokeOutputOptions(provider=registry.providers[aws_push.key]),
            )
            credentials.append(
                {
                    "address": registry.account.apply(lambda a: ecr_host(a, aws_push.region)),
                    "username": token.user_name,
                    "password": token.password,
                }
            )
        gcp_push = [r for r in registry.regions if r.cloud == "gcp" and r.mode == "push"]
        if gcp_push:
            client = gcp.organizations.get_client_config_output(
                opts=pulumi.InvokeOutputOptions(provider=registry.providers[gcp_push[0].key])
            )
            for r in gcp_push:
                url = pulumi.Output.from_input(self._ar_repository(registry, r.region, workload))
                primary_repo.setdefault("gcp", url)
                tags.append(pulumi.Output.concat(url, ":", self.tag))
                credentials.append(
                    {"address": ar_host(r.region), "username": "oauth2accesstoken", "password": client.access_token}
                )
        dockerfile = spec.dockerfile_path(workload)
        self.image = docker_build.Image(
            f"{name}-build",
            push=True,
            context={"location": _from_cwd(spec.context)},
            dockerfile={"location": _from_cwd(dockerfile)},
            target=spec.target_stage(workload),
            platforms=list(spec.platforms),
            build_args={
                "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
                **registry.spec.package_build_args(),
                **spec.effective_build_args(workload),
            },
            tags=tags,
            labels={
                "org.opencontainers.image.title": workload,
                "org.opencontainers.image.version": self.tag,
                "aicloud.dev/stack": registry.stack,
            },
            registries=credentials,
            cache_from=[{"registry": {"ref": cache}}] if cache is not None else None,
            cache_to=(
                [{"registry": {"ref": cache, "mode": "max", "image_manifest": True, "oci_media_types": True}}]
                if cache is not None
                else None
            ),
            build_on_preview=registry.spec.build_on_preview,
            # Every destination (replicas included) exists before the first push, so ECR
            # replication never creates a repository with default settings.
            opts=child_opts(
                self, provider=registry.builder, depends_on=[*repositories, *registry.ar_repositories.values()]
            ),
        )
        self.digest = self.image.digest
        for r in registry.regions:
            self.refs[r.key] = ImageRef(workload, self._pull_repository(registry, r, primary_repo), self.digest)
        target = spec.target_stage(workload)
        self.register_outputs(self._outputs("build", f"{dockerfile}#{target}" if target else dockerfile))

    def _repositories(self, name: str, workload: str, registry: ImageRegistry) -> list[aws.ecr.Repository]:
        """ECR repositories in the AWS push and replica regions, each with its lifecycle policy."""
        repos = []
        for r in registry.regions:
            if r.cloud != "aws" or r.mode == "remote":
                continue
            repo = aws.ecr.Repository(
                f"{name}-{r.key}",
                name=ecr_repository_name(registry.stack, workload),
                image_scanning_configuration={"scan_on_push": True},
                # Immutable tags; only the build cache's tag may move.
                image_tag_mutability="IMMUTABLE_WITH_EXCLUSION",
                image_tag_mutability_exclusion_filters=[{"filter": f"{CACHE_TAG}*", "filter_type": "WILDCARD"}],
                encryption_configurations=[{"encryption_type": "KMS"}],
                tags=merge_tags(registry.tags, {"aicloud:workload": workload}, name=f"{name}-{r.key}"),
                opts=data_opts(self, registry.safety, provider=registry.providers[r.key]),
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-{r.key}-lifecycle",
                repository=repo.name,
                policy=ecr_lifecycle_policy(registry.spec.keep_last),
                opts=child_opts(repo, provider=registry.providers[r.key]),
            )
            repos.append(repo)
        return repos

    @staticmethod
    def _ar_repository(registry: ImageRegistry, region: str, workload: str) -> str:
        return f"{ar_host(region)}/{registry.gcp_project}/{ar_repository_id(registry.stack)}/{workload}"

    def _pull_repository(
        self, registry: ImageRegistry, r: RegistryRegion, primary: dict[str, pulumi.Output[str]]
    ) -> pulumi.Output[str]:
        if r.mode == "remote":
            return primary[r.cloud]
        if r.cloud == "gcp":
            return pulumi.Output.from_input(self._ar_repository(registry, r.region, self.workload))
        assert registry.account is not None
        return registry.account.apply(
            lambda a: f"{ecr_host(a, r.region)}/{ecr_repository_name(registry.stack, self.workload)}"
        )

    def _outputs(self, source: str, dockerfile: str | None) -> dict:
        return {
            "workload": self.workload,
            "source": source,
            "dockerfile": dockerfile,
            "tag": self.tag,
            "digest": self.digest,
            "refs": {k: ref.ref for k, ref in self.refs.items()},
        }


def _from_cwd(rel: str) -> str:
    """A repository path as seen from the program's working directory (Pulumi runs the program
    from `stacks/` or the root depending on the CLI version; the plan runs from anywhere)."""
    return os.path.relpath(REPO_ROOT / rel, Path.cwd())
