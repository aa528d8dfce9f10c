"""The typed schema of a stack, and how it is read from `stacks/Pulumi.<env>.yaml`.

Everything a stack can say lives under the `aicloud:` namespace of its Pulumi config. The same
code path serves the Pulumi program (config arrives from the engine, objects as JSON strings) and
the offline plan (which reads the YAML file and hands the values over exactly as the engine would).

Validation happens before any resource exists and reports every problem at once, each as
`aicloud:<key path>: <what is wrong and what is allowed> (got <value>)`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from components.base import DataSafety, Spec
from components.ci import CiSpec
from components.deploy import DeploySpec
from components.endpoint import ServingSpec, model_uris, plan_endpoint, serving_problems, uses_lake
from components.image import ImagesSpec
from components.lakehouse.spec import StorageField, storage_problems
from components.monitoring import MonitoringField, retraining_problems
from components.network import overlaps
from components.platform import RegionSpec
from components.training import TrainingSpec, check_against_stack
from components.validation import (
    CHECK_ERROR,
    INVALID,
    NOTHING,
    SECRET,
    Partial,
    Problem,
    check,
    is_valid,
    repeated,
    valid,
)
from stacks.policy_settings import PolicySpec

NAMESPACE = "aicloud"
STACKS_DIR = Path(__file__).parent
"""The stacks shipped with this repository (used when no Pulumi project is found)."""
Environment = Literal["dev", "staging", "prod"]

# Tag keys and values per cloud. AWS: "Tag naming limits and requirements" (AWS General
# Reference, Tagging AWS resources): keys 1-128 and values 0-256 Unicode characters of letters,
# digits, spaces and `_ . : / = + - @`; the `aws:` prefix is reserved for AWS. GCP: "Requirements
# for labels" (Resource Manager docs, Labels overview): keys 1-63 characters starting with a
# lowercase letter, keys and values of lowercase letters, digits, `_` and `-`. GCP also allows
# international lowercase letters; aicloud's tags are one set for both clouds and land in
# Kubernetes and billing exports that want ASCII, so a GCP stack takes ASCII only.
_AWS_TAG = re.compile(r"^[\w .:/=+\-@]*$")
_GCP_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_GCP_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def tag_problems(key: str, value: str, clouds: set[str]) -> list[str]:
    """Why a stack tag is not a valid AWS tag / GCP label for the clouds the stack uses."""
    out = []
    if "aws" in clouds:
        if key.lower().startswith("aws:"):
            out.append("key prefix 'aws:' is reserved for AWS; choose another key")
        elif not 1 <= len(key) <= 128 or not _AWS_TAG.match(key):
            out.append("key must be 1-128 letters, digits, spaces or _ . : / = + - @ (AWS tags)")
        if value != SECRET and (len(value) > 256 or not _AWS_TAG.match(value)):
            out.append("value must be at most 256 letters, digits, spaces or _ . : / = + - @ (AWS tags)")
    if "gcp" in clouds:
        if not _GCP_KEY.match(key):
            out.append(
                "key must start with a lowercase letter and hold at most 63 lowercase letters, digits, _ or - "
                "(GCP labels)"
            )
        if value != SECRET and not _GCP_VALUE.match(value):
            out.append("value must hold at most 63 lowercase letters, digits, _ or - (GCP labels)")
    return out


class DataSafetySpec(Spec):
    """How data-holding resources (buckets, file systems, tables, keys) are guarded."""

    protect: bool | None = None
    """Pulumi refuses to delete or replace them; defaults to on in prod, off elsewhere."""
    retain_on_delete: bool = True
    """Keep the cloud resource when Pulumi deletes it (default on everywhere)."""


class StackConfig(Spec):
    """Everything one stack (environment) declares."""

    environment: Environment
    """`dev`, `staging` or `prod`; prod turns on protection and deletion guards by default."""
    owner: str = Field(min_length=1)
    """Team that owns the stack; becomes the `owner` tag on every resource."""
    allow_spot: bool = True
    """Whether node pools may use spot capacity."""
    gcp_project: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
    """GCP project id; required when any region is on GCP."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Extra tags (AWS) / labels (GCP) for every resource; keys and values must be valid for every
    cloud the stack uses (`tag_problems`: no `aws:` prefix; GCP label characters and length)."""
    data_safety: DataSafetySpec = Field(default_factory=DataSafetySpec)
    regions: list[RegionSpec] = Field(min_length=1)
    """The regions of the stack, each with its network, cluster and node pools."""
    policy: PolicySpec = Field(default_factory=PolicySpec)
    """Guardrail settings: allowed regions, GPU cost and size ceilings, enforcement per rule."""
    images: ImagesSpec | None = None
    """Workload images (trainer, server): built and pushed to the stack's registries, or pinned."""
    training: TrainingSpec | None = None
    """Training jobs and sweeps on the GPU pools of the primary regions."""
    serving: ServingSpec | None = None
    """Inference endpoints in the serving regions, their releases and global front doors."""
    storage: StorageField = None
    """The lakehouse (zones, tiers, catalog, scratch, streaming, replication) in each cloud's
    primary region, and the trainer's and server's workload identities."""
    monitoring: MonitoringField = None
    """Prometheus, Grafana, DCGM, alerts in every cluster; drift-triggered retraining (`retraining`)."""
    ci: CiSpec | None = None
    """CI access (optional): the GitHub OIDC trust and this stack's deploy and read-only preview
    identities (see components/ci.py)."""
    deploy: DeploySpec = Field(default_factory=DeploySpec)
    """Where `pulumi up` runs (runner, its fixed egress, the network it is in) and the identity of
    the first run: decides how it reaches each cluster's API (components/deploy.py)."""

    @check("regions")
    def _regions(self) -> Iterator[Problem]:
        regions = self.regions
        names = [r.name for r in regions if r.name is not INVALID]
        for name in repeated(names):
            yield Problem(("regions",), f"region names must be unique, repeated: {name}")
        places = [f"{r.cloud}/{r.region}" for r in regions if r.cloud is not INVALID and r.region is not INVALID]
        for place in repeated(places):
            yield Problem(("regions",), f"each cloud region may appear once, repeated: {place}")
        if all(r.cloud is not INVALID for r in regions):
            for cloud in sorted({r.cloud for r in regions}):
                members = [r for r in regions if r.cloud == cloud]
                if any(r.primary is INVALID for r in members):
                    continue
                primaries = [str(r.name) for r in members if r.primary]
                if len(primaries) != 1:
                    yield Problem(
                        ("regions",),
                        f"exactly one {cloud} region must be primary: true, found {len(primaries)} "
                        f"({', '.join(primaries) or 'none'})",
                    )
        # Networks of one stack must not overlap: VPC peering and routes between them need
        # disjoint ranges (AWS VPC peering: "You cannot create a VPC peering connection between
        # VPCs that have matching or overlapping IPv4 CIDR blocks"; GCP VPC Network Peering:
        # "Subnet IP ranges must not overlap across peered networks").
        # The default range (10.0.0.0/16) is the same everywhere: it is compared only with ranges
        # a stack sets, so multi-region stacks that keep it everywhere stay valid until one is set.
        seen: list[tuple[str, str, bool]] = []
        for i, r in enumerate(regions):
            net = r.network
            cidr = net.cidr if net is not INVALID else INVALID
            if cidr is INVALID:
                continue
            explicit = is_valid(net) and "cidr" in net.model_fields_set or isinstance(net, Partial)
            for other_name, other, other_explicit in seen:
                if (explicit or other_explicit) and overlaps(cidr, other):
                    yield Problem(
                        ("regions", i, "network", "cidr"), f"overlaps region {other_name}'s network ({other})", cidr
                    )
            seen.append((str(r.name), cidr, explicit))

    @check("regions", "allow_spot")
    def _spot(self) -> Iterator[Problem]:
        if self.allow_spot:
            return
        for i, r in enumerate(self.regions):
            for j, p in enumerate(r.node_pools or []):
                if p is not INVALID and p.spot is True:
                    yield Problem(
                        ("regions", i, "nodePools", j, "spot"),
                        "spot capacity is forbidden in this stack (allowSpot: false); "
                        "set spot: false or allow spot for the stack",
                        True,
                    )
                for k, tier in enumerate(p.capacity or [] if p is not INVALID else []):
                    if tier is not INVALID and tier.spot is True:
                        yield Problem(
                            ("regions", i, "nodePools", j, "capacity", k),
                            "spot capacity is forbidden in this stack (allowSpot: false); "
                            "drop the spot tier from the chain or allow spot for the stack",
                            "spot",
                        )

    @check("regions", "gcp_project")
    def _gcp_project(self) -> Iterator[Problem]:
        if any(r.cloud == "gcp" for r in self.regions) and self.gcp_project is None:
            yield Problem(("gcpProject",), "required because the stack has GCP regions")

    @check("regions", "tags")
    def _tags(self) -> Iterator[Problem]:
        clouds = {r.cloud for r in self.regions if r.cloud is not INVALID}
        for key, value in self.tags.items():
            for why in tag_problems(key, value, clouds):
                yield Problem(("tags", key), why, value if why.startswith("value") else key)

    @check("serving", "regions")
    def _serving(self) -> Iterator[Problem]:
        spec = self.serving
        if spec is None or not is_valid(spec):
            return
        regions = valid(self.regions)
        complete = len(regions) == len(self.regions)
        known = complete or all(r.name is not INVALID and r.serving is not INVALID for r in self.regions)
        problems = serving_problems(spec, regions if known else None, complete=complete)
        workloads = self._image_workloads()
        if spec.image is None and workloads is not None and "server" not in workloads:
            yield Problem(
                ("serving", "image"),
                "no image; pin one (`image: repo@sha256:...`) or add aicloud:images.workloads.server",
            )
        for loc, message, got in problems:
            yield Problem(("serving", *loc), message, NOTHING if got is None else got)
        if spec.image is None and self.images is not None and workloads and "server" in workloads:
            yield from self._server_variant(spec, regions)

    def _server_variant(self, spec: ServingSpec, regions: list[RegionSpec]) -> Iterator[Problem]:
        """A server built here must carry the torch its replicas run: `--device cuda` on a GPU
        pool needs the CUDA wheel (`VARIANT=cuda`); the CPU build would fail to load the model."""
        image = self.images.workloads["server"]
        if image.pinned or "VARIANT" not in image.effective_build_args("server"):
            return  # pinned, or another Dockerfile whose arguments we do not know
        variant = image.effective_build_args("server")["VARIANT"]
        gpu_regions = []
        for r in regions:
            try:
                if r.serving and plan_endpoint(spec, r).gpus_per_replica:
                    gpu_regions.append(r.name)
            except ValueError:
                continue  # an unknown pool: serving_problems names it
        if gpu_regions and variant != "cuda":
            yield Problem(
                ("images", "workloads", "server", "buildArgs", "VARIANT"),
                f"the server runs on GPUs in {', '.join(gpu_regions)} (serving.resources.gpus / a GPU pool) "
                "but this build installs the CPU torch wheel; allowed: cuda (or serve on CPU pools)",
                variant,
            )

    @check("serving", "storage")
    def _lake_needs_storage(self) -> Iterator[Problem]:
        if self.serving is None or self.storage is not None or not is_valid(self.serving):
            return
        for path, uri in model_uris(self.serving):
            for got in [uri] if isinstance(uri, str) else uri.values():
                if uses_lake(got):
                    yield Problem(
                        ("serving", *path),
                        "lake:// URIs resolve to the stack's lakehouse; add aicloud:storage or give an "
                        "s3:// / gs:// URI",
                        got,
                    )

    def _job_region_known(self, key: str | None) -> bool:
        """Whether the region a job runs in (`key`, else the first primary) is fully valid, so the
        job can be checked against it (a job in an invalid region says nothing more)."""
        for r in self.regions:
            if r.name is INVALID or (key is None and r.primary is INVALID):
                return False
            if r.name == key or (key is None and r.primary):
                return is_valid(r)
        return key is not None  # names no region of the stack: that is the job's error

    def _image_workloads(self) -> set[str] | None:
        """The workloads `aicloud:images` builds or pins; None when that section is invalid."""
        if self.images is None:
            return set()
        workloads = self.images.workloads
        return None if workloads is INVALID else set(workloads)

    @check("storage", "regions")
    def _storage(self) -> Iterator[Problem]:
        regions = valid(self.regions)
        if self.storage is None or len(regions) != len(self.regions):
            return
        for p in storage_problems(self.storage, regions):
            yield Problem(("storage", *p.loc), p.message, p.got)

    @check("training", "regions")
    def _training(self) -> Iterator[Problem]:
        if self.training is None or not is_valid(self.training):
            return
        regions = valid(self.regions)
        jobs = [j for j in self.training.jobs if self._job_region_known(j.region)]
        workloads = self._image_workloads()
        for message in check_against_stack(jobs, regions, workloads):
            yield Problem(("training", "jobs"), message)
        if self.storage is None:
            for j in self.training.jobs:
                if j.dataset:
                    yield Problem(
                        ("training", "jobs"), f"job {j.name!r}: dataset needs the lakehouse (aicloud:storage)"
                    )

    @check("monitoring", "regions")
    def _retraining(self) -> Iterator[Problem]:
        spec = self.monitoring
        if spec is None or not is_valid(spec) or spec.retraining is None:
            return
        if self.serving is None:
            yield Problem(
                ("monitoring", "retraining"),
                "retraining needs aicloud:serving (the model it retrains and the endpoint it rolls out to)",
            )
        if self.storage is None:
            yield Problem(
                ("monitoring", "retraining"),
                "retraining needs aicloud:storage (fresh data, candidates and the decision log)",
            )
        training = self.training
        if spec.retraining.job.backend == "pytorchjob" and (training is None or training.operator == "install"):
            yield Problem(
                ("monitoring", "retraining", "job", "backend"),
                "pytorchjob needs the Kubeflow training operator v1, which publishes no Helm chart to install; use "
                "trainjob (the stack installs Kubeflow Trainer) or indexed-job, or set aicloud:training.operator: "
                "preinstalled on clusters that have it",
                "pytorchjob",
            )
        regions = valid(self.regions)
        if len(regions) == len(self.regions):
            workloads = self._image_workloads()
            for message in retraining_problems(spec.retraining, regions, workloads):
                yield Problem(("monitoring", "retraining", "job"), message)

    @check("deploy", "regions")
    def _deploy(self) -> Iterator[Problem]:
        names = [str(r.name) for r in self.regions]
        if self.deploy.network is not None and self.deploy.network not in names:
            yield Problem(
                ("deploy", "network"), f"not a region of this stack; regions: {', '.join(names)}", self.deploy.network
            )

    @check("serving", "monitoring")
    def _custom_metrics(self) -> Iterator[Problem]:
        serving = self.serving
        if serving is None or not is_valid(serving) or self.monitoring is not None:
            return
        if serving.autoscaling.mode == "metric":
            yield Problem(
                ("serving", "autoscaling", "mode"),
                "'metric' reads the request rate through prometheus-adapter from the stack's Prometheus; add "
                "aicloud:monitoring or use mode 'cpu'",
                "metric",
            )

    @check("ci", "environment", "regions")
    def _ci(self) -> Iterator[Problem]:
        if self.ci is None or not is_valid(self.ci):
            return
        try:
            self.ci.environments(self.environment)
        except ValueError as exc:
            yield Problem(("ci",), str(exc).removeprefix("ci: "))
        for cloud in ("aws", "gcp"):
            if getattr(self.ci, cloud) is not None and all(
                not (r.cloud == cloud and r.primary is True) for r in self.regions
            ):
                if all(r.cloud is not INVALID and r.primary is not INVALID for r in self.regions):
                    yield Problem(("ci", cloud), f"the stack has no {cloud} region to create it in")

    @property
    def safety(self) -> DataSafety:
        """Data safety with the environment's defaults applied."""
        protect = self.data_safety.protect
        return DataSafety(
            protect=(self.environment == "prod") if protect is None else protect,
            retain_on_delete=self.data_safety.retain_on_delete,
        )

    def base_tags(self, stack: str) -> dict[str, str]:
        """Tags every resource carries."""
        return {
            "aicloud:stack": stack,
            "environment": self.environment,
            "owner": self.owner,
            "managed-by": "pulumi-aicloud",
            **self.tags,
        }

    def region(self, name: str) -> RegionSpec:
        return next(r for r in self.regions if r.name == name)

    def primary(self, cloud: str) -> RegionSpec | None:
        return next((r for r in self.regions if r.cloud == cloud and r.primary), None)


class ConfigError(Exception):
    """A stack config that does not validate; `errors` holds one line per problem."""

    def __init__(self, stack: str, errors: list[str]) -> None:
        self.stack = stack
        self.errors = errors
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"stack {self.stack!r}: {len(self.errors)} config error(s):"]
        lines += [f"  - {e}" for e in self.errors]
        return "\n".join(lines)


def _path(loc: tuple[Any, ...], raw: Any) -> str:
    """`regions[0](aws-use1).nodePools[1](gpu).minNodes` from a pydantic error location."""
    out = f"{NAMESPACE}:"
    node = raw
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f"({node['name']})"
        else:
            out += ("" if i == 0 else ".") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling; keys are camelCase)"
    got = err.get("input")
    if got is NOTHING or isinstance(got, dict | list) and err["type"] != CHECK_ERROR:
        return msg
    return f"{msg} (got {got!r})"


def parse_stack_config(raw: Mapping[str, Any], stack: str) -> StackConfig:
    """Validate the `aicloud:` values of a stack (keys without the namespace): every problem at
    once, field-level and stack-level, each as `aicloud:<key path>: <message> (got <value>)`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            stack, [f"{NAMESPACE}: the stack config must be a mapping of keys (got {type(raw).__name__})"]
        )
    data = dict(raw)
    try:
        return StackConfig.model_validate(data)
    except ValidationError as exc:
        errors = []
        for e in exc.errors(include_url=False):
            path = _path(e["loc"], data)
            errors.append(f"{path}: {_message(e)}" if e["loc"] else f"{path} {_message(e)}")
        raise ConfigError(stack, list(dict.fromkeys(errors))) from None


def decode_value(value: Any) -> Any:
    """Decode one config value as the Pulumi engine hands it over (objects and lists as JSON)."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def encode_value(value: Any) -> str:
    """Encode one YAML config value the way the Pulumi engine passes it to a program."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def namespace_values(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The `aicloud:` entries of a flat `ns:key -> value` map, namespace stripped and decoded."""
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix) :]: decode_value(v) for k, v in flat.items() if k.startswith(prefix)}


def stack_file(stack: str, stacks_dir: Path = STACKS_DIR) -> Path:
    return stacks_dir / f"Pulumi.{stack}.yaml"


class _StrictLoader(yaml.SafeLoader):
    """YAML loader that refuses duplicate keys (PyYAML keeps the last one silently)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {line}): YAML keeps only the last one", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _unsecure(value: Any) -> Any:
    """Secure values (`{secure: <ciphertext>}`, as `pulumi config set --secret` writes them) become
    the `[secret]` unknown: the offline plan cannot decrypt them, and never needs to."""
    if isinstance(value, dict):
        if set(value) == {"secure"} and isinstance(value["secure"], str):
            return SECRET
        return {k: _unsecure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsecure(v) for v in value]
    return value


def read_stack_file(path: Path) -> dict[str, str]:
    """The flat, engine-encoded config map of a `Pulumi.<stack>.yaml` file (secure values as
    `[secret]`). Raises `ConfigError` for a file that is not YAML, not a mapping, or repeats a key."""
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    try:
        text = path.read_bytes().decode("utf-8")
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise ConfigError(stack, [f"{path}: not a text file (not UTF-8)"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(stack, [f"{path}: not valid YAML: {exc}".replace("\n", " ")]) from None
    except OSError as exc:
        raise ConfigError(stack, [f"{path}: cannot read: {exc.strerror}"]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(stack, [f"{path}: a stack file is a mapping with a `config:` key (got {type(doc).__name__})"])
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(stack, [f"{path}: `config` must be a mapping of `namespace:key: value`"])
    return {str(k): encode_value(_unsecure(v)) for k, v in config.items()}


def find_project(start: Path | None = None) -> tuple[Path, Path] | None:
    """The Pulumi project around `start` (default: the working directory), the way the Pulumi
    CLI finds it: the nearest `Pulumi.yaml` (or `Pulumi.yml`) in `start` or a parent. Returns the
    project file and its stack config directory (`stackConfigDir`, default the project's own)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in ("Pulumi.yaml", "Pulumi.yml"):
            project = folder / name
            if project.is_file():
                try:
                    doc = yaml.safe_load(project.read_text()) or {}
                except (yaml.YAMLError, OSError, UnicodeDecodeError):
                    doc = {}
                sub = doc.get("stackConfigDir") if isinstance(doc, dict) else None
                return project, (folder / sub if isinstance(sub, str) else folder)
    return None


def stacks_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where stack files live: `explicit` (`--stacks-dir`), else the stack config directory of
    the Pulumi project found from the working directory, else the stacks shipped here."""
    if explicit:
        return Path(explicit)
    found = find_project()
    return found[1] if found is not None else STACKS_DIR


def load_stack(stack: str, stacks_dir: Path = STACKS_DIR) -> tuple[dict[str, str], StackConfig]:
    """Read and validate `<stacks_dir>/Pulumi.<stack>.yaml`; returns the flat config and the schema."""
    path = stack_file(stack, stacks_dir)
    if not path.is_file():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in stacks_dir.glob("Pulumi.*.yaml"))
        raise ConfigError(
            stack,
            [
                f"no stack config file {path}; stacks: {', '.join(known) or 'none'} (stack files are found from the "
                "Pulumi.yaml of the working directory or a parent, its stackConfigDir; or pass --stacks-dir)"
            ],
        )
    flat = read_stack_file(path)
    return flat, parse_stack_config(namespace_values(flat), stack)


def from_pulumi(stack: str) -> StackConfig:
    """The stack config as the running Pulumi program sees it (engine config, then env)."""
    from pulumi.runtime import config as runtime_config

    flat = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_stack_config(namespace_values(flat), stack)
