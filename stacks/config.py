"""The typed schema of a stack, and how it is read from `stacks/Pulumi.<env>.yaml`.

Everything a stack can say lives under the `aicloud:` namespace of its Pulumi config. The same
code path serves the Pulumi program (config arrives from the engine, objects as JSON strings) and
the offline plan (which reads the YAML file and hands the values over exactly as the engine would).

Validation happens before any resource exists and reports every problem at once, each as
`aicloud:<key path>: <what is wrong and what is allowed> (got <value>)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, model_validator

from components.base import DataSafety, Spec
from components.ci import CiSpec
from components.endpoint import ServingField, model_uris, uses_lake
from components.image import ImagesSpec
from components.lakehouse.spec import StorageField
from components.monitoring import MonitoringField
from components.platform import RegionSpec
from components.training import TrainingSpec
from stacks.policy_settings import PolicySpec

NAMESPACE = "aicloud"
STACKS_DIR = Path(__file__).parent
Environment = Literal["dev", "staging", "prod"]


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
    """Extra tags (AWS) / labels (GCP) for every resource."""
    data_safety: DataSafetySpec = Field(default_factory=DataSafetySpec)
    regions: list[RegionSpec] = Field(min_length=1)
    """The regions of the stack, each with its network, cluster and node pools."""
    policy: PolicySpec = Field(default_factory=PolicySpec)
    """Guardrail settings: allowed regions, GPU cost and size ceilings, enforcement per rule."""
    images: ImagesSpec | None = None
    """Workload images (trainer, server): built and pushed to the stack's registries, or pinned."""
    training: TrainingSpec | None = None
    """Training jobs and sweeps on the GPU pools of the primary regions."""
    serving: ServingField = None
    """Inference endpoints in the serving regions, their releases and global front doors."""
    storage: StorageField = None
    """The lakehouse (zones, tiers, catalog, scratch, streaming, replication) in each cloud's
    primary region, and the trainer's and server's workload identities."""
    monitoring: MonitoringField = None
    """Prometheus, Grafana, DCGM, alerts in every cluster; drift-triggered retraining (`retraining`)."""
    ci: CiSpec | None = None
    """CI access (optional): the GitHub OIDC trust and this stack's deploy and read-only preview
    identities (see components/ci.py)."""

    @model_validator(mode="before")
    @classmethod
    def _context(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(info.context, dict) and isinstance(data, dict):
            allow = data.get("allowSpot", data.get("allow_spot", True))
            info.context["allow_spot"] = allow not in (False, "false", "False", 0)
            info.context["stack"] = data  # the raw section values, for cross-section checks
        return data

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        problems = []
        names = [r.name for r in self.regions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"regions: region names must be unique, repeated: {', '.join(dupes)}")
        places = [(r.cloud, r.region) for r in self.regions]
        twice = sorted({f"{c}/{r}" for c, r in places if places.count((c, r)) > 1})
        if twice:
            problems.append(f"regions: each cloud region may appear once, repeated: {', '.join(twice)}")
        for cloud in sorted({r.cloud for r in self.regions}):
            primaries = [r.name for r in self.regions if r.cloud == cloud and r.primary]
            if len(primaries) != 1:
                problems.append(
                    f"regions: exactly one {cloud} region must be primary: true, found "
                    f"{len(primaries)} ({', '.join(primaries) or 'none'})"
                )
        if any(r.cloud == "gcp" for r in self.regions) and not self.gcp_project:
            problems.append("gcpProject: required because the stack has GCP regions")
        if self.serving is not None and self.storage is None:
            for path, uri in model_uris(self.serving):
                for got in [uri] if isinstance(uri, str) else uri.values():
                    if uses_lake(got):
                        key = ".".join(str(p) for p in ("serving", *path))
                        problems.append(
                            f"{key}: lake:// URIs resolve to the stack's lakehouse; add aicloud:storage "
                            f"or give an s3:// / gs:// URI (got {got!r})"
                        )
        problems += self._ci_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _ci_problems(self) -> list[str]:
        if self.ci is None:
            return []
        problems = []
        try:
            self.ci.environments(self.environment)
        except ValueError as exc:
            problems.append(str(exc))
        for cloud in ("aws", "gcp"):
            if getattr(self.ci, cloud) is not None and self.primary(cloud) is None:
                problems.append(f"ci.{cloud}: the stack has no {cloud} region to create it in")
        return problems

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
    if isinstance(got, dict | list):
        return msg
    return f"{msg} (got {got!r})"


def parse_stack_config(raw: Mapping[str, Any], stack: str) -> StackConfig:
    """Validate the `aicloud:` values of a stack (keys without the namespace)."""
    data = dict(raw)
    try:
        return StackConfig.model_validate(data, context={})
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            path = _path(e["loc"], data)
            for line in _message(e).split("\n"):
                # Stack-level checks name their key in the message itself.
                errors.append(f"{path}{line}" if not e["loc"] else f"{path}: {line}")
        raise ConfigError(stack, errors) from None


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


def read_stack_file(path: Path) -> dict[str, str]:
    """The flat, engine-encoded config map of a `Pulumi.<stack>.yaml` file."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(path.stem.removeprefix("Pulumi."), [f"{path}: not valid YAML: {exc}"]) from None
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(path.stem.removeprefix("Pulumi."), [f"{path}: `config` must be a mapping"])
    return {str(k): encode_value(v) for k, v in config.items()}


def load_stack(stack: str, stacks_dir: Path = STACKS_DIR) -> tuple[dict[str, str], StackConfig]:
    """Read and validate `stacks/Pulumi.<stack>.yaml`; returns the flat config and the schema."""
    path = stack_file(stack, stacks_dir)
    if not path.exists():
        known = sorted(p.stem.removeprefix("Pulumi.") for p in stacks_dir.glob("Pulumi.*.yaml"))
        raise ConfigError(stack, [f"no stack config file {path}; stacks: {', '.join(known)}"])
    flat = read_stack_file(path)
    return flat, parse_stack_config(namespace_values(flat), stack)


def from_pulumi(stack: str) -> StackConfig:
    """The stack config as the running Pulumi program sees it (engine config, then env)."""
    from pulumi.runtime import config as runtime_config

    flat = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_stack_config(namespace_values(flat), stack)
