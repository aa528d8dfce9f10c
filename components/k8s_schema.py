"""Offline, strict schema validation of the Kubernetes objects aicloud renders.

Built-in kinds are checked against the OpenAPI schemas of the cluster's Kubernetes minor version
that `kubernetes-validate` bundles (1.25 and later), in strict mode: a misspelt or misplaced field
is an error, not silently dropped by the API server. Custom resources are checked against the
`openAPIV3Schema` of their upstream CRD at the pinned version (`components.upstream`, vendored by
`components/upstream/refresh.py`), read as the API server does with strict field validation
(`crd_json_schema`); their `metadata` against the bundled `ObjectMeta`. No schema here is written
by hand.

Unlike `kubernetes_validate.validate`, which stops at the first problem and re-reads the schema
files on every call, `validate_object` reports every problem with its JSON path and caches one
validator per (version, apiVersion, kind).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from components import upstream

if TYPE_CHECKING:  # the validation libraries come with kubernetes-validate (a dev dependency)
    import jsonschema
    from referencing import Registry

DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
"""`$id` of the bundled definitions; CRD schemas `$ref` embedded Kubernetes types through it."""

SKIPPED_TYPES = frozenset({"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"})
"""Pulumi types that are not Kubernetes objects (a Helm release renders its chart in-cluster)."""

CLUSTER_SCOPED = frozenset(
    {
        "Namespace", "Node", "PersistentVolume", "StorageClass", "PriorityClass", "RuntimeClass",
        "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "APIService",
        "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding", "IngressClass", "GatewayClass", "CSIDriver",
        "VolumeAttachment", "ClusterIssuer", "ClusterServingRuntime", "ClusterTrainingRuntime",
    }
)  # fmt: skip
"""Kinds that live outside namespaces (everything else must name its namespace)."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"{DEFINITIONS}#/$defs/{name}"}


_DROPPED = frozenset({"description", "default", "example", "x-kubernetes-validations", "x-kubernetes-list-type",
                      "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-embedded-resource",
                      "externalDocs"})  # fmt: skip


def crd_json_schema(node: Any) -> Any:
    """A strict JSON schema (draft 2020-12) from a CRD's `openAPIV3Schema`, as the API server reads
    it with strict field validation: objects with `properties` reject unknown fields unless marked
    `x-kubernetes-preserve-unknown-fields`; `x-kubernetes-int-or-string` accepts both; `nullable`
    accepts null. CEL rules (`x-kubernetes-validations`) are not evaluated."""
    if isinstance(node, list):
        return [crd_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key in ("nullable", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields"):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: crd_json_schema(v) for k, v in value.items()}
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
            if value:  # OpenAPI 3.0 spelling: a flag on minimum/maximum
                bound = "minimum" if key == "exclusiveMinimum" else "maximum"
                out[key] = node[bound]
                out.pop(bound, None)
        elif key in ("minimum", "maximum") and node.get(f"exclusive{key[:1].upper()}{key[1:]}") is True:
            continue
        else:
            out[key] = crd_json_schema(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


class UnknownKind(LookupError):
    """No schema is known for an object's apiVersion and kind."""


@functools.cache
def _schema_dir(version: str) -> Any:
    """The bundled strict schema folder for Kubernetes `version` (`1.33`): the newest bundled
    version not newer than it (the API of a minor release is fixed)."""
    root = importlib.resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    wanted = _minor(version)
    found: list[tuple[tuple[int, int], Any]] = []
    for entry in root.iterdir():
        m = re.match(r"^v(\d+\.\d+)\.\d+-local-strict$", entry.name)
        if m and _minor(m.group(1)) <= wanted:
            found.append((_minor(m.group(1)), entry))
    if not found:
        raise UnknownKind(f"kubernetes-validate bundles no schema for Kubernetes {version}")
    return max(found, key=lambda f: f[0])[1]


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


@functools.cache
def _registry(version: str) -> Registry:
    from referencing import Registry, Resource

    definitions = json.loads(_schema_dir(version).joinpath("_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


def _file_name(api_version: str, kind: str) -> str:
    # `rbac.authorization.k8s.io/v1` -> `rbac-v1`, `apps/v1` -> `apps-v1`, `v1` -> `v1`.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{api}.json"


@functools.cache
def _builtin_validator(version: str, api_version: str, kind: str) -> jsonschema.Validator | None:
    path = _schema_dir(version).joinpath(_file_name(api_version, kind))
    if not path.is_file():
        return None
    import jsonschema
    from referencing import Resource

    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=Resource.from_contents(schema) @ _registry(version))


@functools.cache
def _crd_validator(version: str, api_version: str, kind: str) -> jsonschema.Validator | None:
    truth = upstream.crd(api_version, kind)
    if truth is None:
        return None
    import jsonschema

    schema = crd_json_schema(truth.schema)
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"const": api_version}
    props["kind"] = {"const": kind}
    props["metadata"] = _ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    schema["type"] = "object"
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    schema["additionalProperties"] = False
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return jsonschema.Draft202012Validator(doc, registry=_registry(version))


def is_builtin(api_version: str, kind: str, version: str) -> bool:
    """Whether `kind` is part of Kubernetes `version`'s own API."""
    return _builtin_validator(version, api_version, kind) is not None


def resource_name(api_version: str, kind: str, version: str = "1.33") -> str:
    """The REST resource (plural) of `kind`, as RBAC rules and API paths name it: a custom
    resource's from its vendored upstream CRD (`spec.names.plural`); a built-in kind's by the rule
    the API server's own types follow (apimachinery `meta.UnsafeGuessKindToResource`: `-s`,
    `-es` after `s`, `-ies` after `y`). Raises `UnknownKind` for a kind neither knows."""
    truth = upstream.crd(api_version, kind)
    if truth is not None:
        return truth.plural
    try:
        builtin = is_builtin(api_version, kind, version)
    except ModuleNotFoundError:  # kubernetes-validate is a dev dependency: judge by the API group
        group = api_version.rpartition("/")[0]
        builtin = "." not in group or group.endswith(".k8s.io")
    if not builtin:
        raise UnknownKind(f"no REST resource known for {api_version} {kind}: vendor its CRD")
    lower = kind.lower()
    if lower.endswith("s"):
        return f"{lower}es"
    if lower.endswith("y"):
        return f"{lower[:-1]}ies"
    return f"{lower}s"


_AFTER_APPLY = re.compile(r"^\$\{[^}]+\}$")
"""The offline plan's placeholder for a value known only after apply."""


def object_errors(obj: Mapping[str, Any], version: str) -> list[tuple[str, str, Any]]:
    """Every schema problem of one Kubernetes object for cluster `version` as
    `(json path, message, offending value)`, in path order; empty when the object is valid.

    Raises `UnknownKind` when neither Kubernetes nor a vendored upstream CRD knows the kind.
    """
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return [(".", f"object without apiVersion/kind: {dict(obj)!r:.120}", None)]
    validator = _builtin_validator(version, api_version, kind) or _crd_validator(version, api_version, kind)
    if validator is None:
        raise UnknownKind(
            f"no schema for {api_version} {kind} (Kubernetes {version}); vendor its CRD in "
            "components/upstream/pins.yaml and run components/upstream/refresh.py"
        )
    out = []
    for err in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(e.absolute_path)):
        if err.validator == "pattern" and isinstance(err.instance, str) and _AFTER_APPLY.match(err.instance):
            continue  # an id the cloud assigns (`${subnet.id}` in the offline plan): checked at `up`
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path) or "."
        out.append((where, err.message, err.instance))
    return out


def validate_object(obj: Mapping[str, Any], version: str) -> list[str]:
    """Every schema problem of one Kubernetes object for cluster `version` (`"1.33"`), each as
    `<Kind>/<name> at <json path>: <problem>`; empty when the object is valid.

    Raises `UnknownKind` when neither Kubernetes nor a vendored upstream CRD knows the kind.
    """
    name = (obj.get("metadata") or {}).get("name", "?")
    return [f"{obj.get('kind')}/{name} at {where}: {msg}" for where, msg, _ in object_errors(obj, version)]


def identity_problems(obj: Mapping[str, Any]) -> list[str]:
    """An object must carry an explicit name, and a namespace unless it is cluster-scoped (no
    Pulumi auto-name, no silent landing in `default`)."""
    meta = obj.get("metadata") or {}
    kind = obj.get("kind", "?")
    out = []
    if not meta.get("name"):
        out.append(f"{kind} without metadata.name")
    if kind not in CLUSTER_SCOPED and not meta.get("namespace"):
        out.append(f"{kind}/{meta.get('name', '?')} without metadata.namespace")
    return out


_SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")
"""Pulumi's wire form of a secret value: `{<sig key>: <secret sig>, "value": ...}`."""


def _reveal(value: Any) -> Any:
    """The manifest as the API server would get it: secret-wrapped values unwrapped."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG[0]) == _SECRET_SIG[1]:
            return _reveal(value.get("value"))
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


def kubernetes_objects(resources: Iterable[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """The Kubernetes objects among recorded registrations (`stacks.plan.mocks.Registration`):
    custom resources of a `kubernetes:*` type except Helm releases, with their manifests."""
    out = []
    for reg in resources:
        if not reg.custom or not reg.type.startswith("kubernetes:") or reg.type in SKIPPED_TYPES:
            continue
        out.append((reg, _reveal(dict(reg.inputs))))
    return out
