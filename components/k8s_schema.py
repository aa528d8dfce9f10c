"""Offline, strict schema validation of the Kubernetes objects aicloud renders.

Built-in kinds are checked against the OpenAPI schemas of the cluster's Kubernetes minor version
that `kubernetes-validate` bundles (1.25 and later), in strict mode: a misspelt or misplaced field
is an error, not silently dropped by the API server. Custom resources are not in those schemas;
`CRD_SCHEMAS` holds small strict JSON schemas for the CRDs aicloud renders (KEDA `ScaledObject`,
Gateway API `Gateway` and `HTTPRoute`, KServe `InferenceService`, AWS Load Balancer Controller
`TargetGroupBinding`, Kubeflow `PyTorchJob`), covering the fields aicloud uses. Embedded Kubernetes types (containers,
tolerations, metadata, pod security context...) reference the same bundled definitions, so they
are checked as strictly as in a Deployment. Other modules add schemas for their own CRDs with
`register_crd_schema`.

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


def _obj(properties: Mapping[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    """A strict object schema: only `properties`, `required` ones present."""
    out: dict[str, Any] = {"type": "object", "properties": dict(properties), "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


def _arr(items: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
    return {"type": "array", "items": dict(items), **kw}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253}


def _resource(api_version: str, kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return _obj(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": spec,
        },
        required=("apiVersion", "kind", "metadata", "spec"),
    )


_POD_FIELDS = {
    "serviceAccountName": _STR,
    "terminationGracePeriodSeconds": _INT,
    "securityContext": _ref("io.k8s.api.core.v1.PodSecurityContext"),
    "nodeSelector": _STR_MAP,
    "tolerations": _arr(_ref("io.k8s.api.core.v1.Toleration")),
    "topologySpreadConstraints": _arr(_ref("io.k8s.api.core.v1.TopologySpreadConstraint")),
    "containers": _arr(_ref("io.k8s.api.core.v1.Container"), minItems=1, maxItems=1),
    "volumes": _arr(_ref("io.k8s.api.core.v1.Volume")),
}

_PARENT_REF = _obj(
    {"name": _NAME, "namespace": _NAME, "sectionName": _STR, "group": _STR, "kind": _STR, "port": _PORT},
    required=("name",),
)
_BACKEND_REF = _obj(
    {
        "name": _NAME,
        "namespace": _NAME,
        "port": _PORT,
        "weight": {"type": "integer", "minimum": 0, "maximum": 1000000},
        "group": _STR,
        "kind": _STR,
    },
    required=("name",),
)
_HEADER_MATCH = _obj(
    {
        "type": {"enum": ["Exact", "RegularExpression"]},
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$", "maxLength": 256},
        "value": {"type": "string", "minLength": 1, "maxLength": 4096},
    },
    required=("name", "value"),
)
_PATH_MATCH = _obj({"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]}, "value": _STR})

CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    # KEDA 2.x: https://keda.sh/docs/latest/reference/scaledobject-spec/
    ("keda.sh/v1alpha1", "ScaledObject"): _resource(
        "keda.sh/v1alpha1",
        "ScaledObject",
        _obj(
            {
                "scaleTargetRef": _obj(
                    {"apiVersion": _STR, "kind": _STR, "name": _NAME, "envSourceContainerName": _STR},
                    required=("name",),
                ),
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": _obj(
                    {
                        "horizontalPodAutoscalerConfig": _obj(
                            {
                                "name": _STR,
                                "behavior": _ref("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"),
                            }
                        ),
                        "restoreToOriginalReplicaCount": _BOOL,
                    }
                ),
                "triggers": _arr(
                    _obj(
                        {
                            "type": {"type": "string", "minLength": 1},
                            "name": _STR,
                            "metadata": _STR_MAP,
                            "authenticationRef": _obj({"name": _NAME, "kind": _STR}, required=("name",)),
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        },
                        required=("type", "metadata"),
                    ),
                    minItems=1,
                ),
            },
            required=("scaleTargetRef", "triggers"),
        ),
    ),
    # Gateway API v1 (standard channel, v1.2+ for `infrastructure`).
    ("gateway.networking.k8s.io/v1", "Gateway"): _resource(
        "gateway.networking.k8s.io/v1",
        "Gateway",
        _obj(
            {
                "gatewayClassName": _NAME,
                "listeners": _arr(
                    _obj(
                        {
                            "name": _NAME,
                            "hostname": _STR,
                            "port": _PORT,
                            "protocol": {"enum": ["HTTP", "HTTPS", "TLS", "TCP", "UDP"]},
                            "allowedRoutes": _obj(
                                {"namespaces": _obj({"from": {"enum": ["All", "Same", "Selector"]}})}
                            ),
                        },
                        required=("name", "port", "protocol"),
                    ),
                    minItems=1,
                    maxItems=64,
                ),
                "infrastructure": _obj({"labels": _STR_MAP, "annotations": _STR_MAP}),
            },
            required=("gatewayClassName", "listeners"),
        ),
    ),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): _resource(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        _obj(
            {
                "parentRefs": _arr(_PARENT_REF, minItems=1, maxItems=32),
                "hostnames": _arr(_STR),
                "rules": _arr(
                    _obj(
                        {
                            "matches": _arr(
                                _obj({"path": _PATH_MATCH, "headers": _arr(_HEADER_MATCH, maxItems=16)}),
                                maxItems=64,
                            ),
                            "backendRefs": _arr(_BACKEND_REF, maxItems=16),
                        }
                    ),
                    maxItems=16,
                ),
            },
            required=("parentRefs",),
        ),
    ),
    # KServe v1beta1 predictor with a custom container (pod fields inline).
    ("serving.kserve.io/v1beta1", "InferenceService"): _resource(
        "serving.kserve.io/v1beta1",
        "InferenceService",
        _obj(
            {
                "predictor": _obj(
                    {
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 0},
                        "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
                        "scaleTarget": {"type": "integer", "minimum": 1},
                        "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
                        **_POD_FIELDS,
                    },
                    required=("containers",),
                )
            },
            required=("predictor",),
        ),
    ),
    # Kubeflow training operator v1 (components/training.py renders it).
    ("kubeflow.org/v1", "PyTorchJob"): _resource(
        "kubeflow.org/v1",
        "PyTorchJob",
        _obj(
            {
                "pytorchReplicaSpecs": {
                    "type": "object",
                    "propertyNames": {"enum": ["Master", "Worker"]},
                    "additionalProperties": _obj(
                        {
                            "replicas": {"type": "integer", "minimum": 0},
                            "restartPolicy": {"enum": ["Always", "OnFailure", "Never", "ExitCode"]},
                            "template": _ref("io.k8s.api.core.v1.PodTemplateSpec"),
                        },
                        required=("template",),
                    ),
                },
                "runPolicy": _obj(
                    {
                        "cleanPodPolicy": {"enum": ["All", "Running", "None"]},
                        "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                        "backoffLimit": {"type": "integer", "minimum": 0},
                        "suspend": _BOOL,
                        "managedBy": _STR,
                    }
                ),
                "elasticPolicy": _obj(
                    {
                        "minReplicas": {"type": "integer", "minimum": 1},
                        "maxReplicas": {"type": "integer", "minimum": 1},
                        "rdzvBackend": {"enum": ["c10d", "etcd", "etcd-v2"]},
                        "rdzvHost": _STR,
                        "rdzvPort": _PORT,
                        "rdzvId": _STR,
                        "rdzvConf": _arr(_obj({"key": _STR, "value": _STR})),
                        "standalone": _BOOL,
                        "maxRestarts": {"type": "integer", "minimum": 0},
                        "metrics": _arr(_ref("io.k8s.api.autoscaling.v2.MetricSpec")),
                    }
                ),
                "nprocPerNode": _STR,
            },
            required=("pytorchReplicaSpecs",),
        ),
    ),
    # AWS Load Balancer Controller v2.
    ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding"): _resource(
        "elbv2.k8s.aws/v1beta1",
        "TargetGroupBinding",
        _obj(
            {
                "targetGroupARN": {"type": "string", "minLength": 1},
                "targetType": {"enum": ["instance", "ip"]},
                "serviceRef": _obj({"name": _NAME, "port": {"type": ["integer", "string"]}}, required=("name", "port")),
                "networking": _obj(
                    {
                        "ingress": _arr(
                            _obj(
                                {
                                    "from": _arr(
                                        _obj(
                                            {
                                                "securityGroup": _obj({"groupID": _STR}, required=("groupID",)),
                                                "ipBlock": _obj({"cidr": _STR}, required=("cidr",)),
                                            }
                                        ),
                                        minItems=1,
                                    ),
                                    "ports": _arr(
                                        _obj(
                                            {
                                                "protocol": {"enum": ["TCP", "UDP"]},
                                                "port": {"type": ["integer", "string"]},
                                            }
                                        )
                                    ),
                                },
                                required=("from",),
                            )
                        )
                    }
                ),
            },
            required=("targetGroupARN", "serviceRef"),
        ),
    ),
}


def register_crd_schema(api_version: str, kind: str, spec_schema: Mapping[str, Any]) -> None:
    """Add the strict schema of a custom resource's `spec` (built with `$ref`s to `DEFINITIONS`
    for embedded Kubernetes types) so `validate_object` checks it."""
    CRD_SCHEMAS[(api_version, kind)] = _resource(api_version, kind, spec_schema)
    _crd_validator.cache_clear()


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
    schema = CRD_SCHEMAS.get((api_version, kind))
    if schema is None:
        return None
    import jsonschema

    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return jsonschema.Draft202012Validator(doc, registry=_registry(version))


def is_builtin(api_version: str, kind: str, version: str) -> bool:
    """Whether `kind` is part of Kubernetes `version`'s own API."""
    return _builtin_validator(version, api_version, kind) is not None


def validate_object(obj: Mapping[str, Any], version: str) -> list[str]:
    """Every schema problem of one Kubernetes object for cluster `version` (`"1.33"`), each as
    `<Kind>/<name> at <json path>: <problem>`; empty when the object is valid.

    Raises `UnknownKind` when neither Kubernetes nor `CRD_SCHEMAS` knows the kind.
    """
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return [f"object without apiVersion/kind: {dict(obj)!r:.120}"]
    validator = _builtin_validator(version, api_version, kind) or _crd_validator(version, api_version, kind)
    if validator is None:
        raise UnknownKind(
            f"no schema for {api_version} {kind} (Kubernetes {version}); add one with "
            "components.k8s_schema.register_crd_schema"
        )
    name = (obj.get("metadata") or {}).get("name", "?")
    problems = []
    for err in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(e.absolute_path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path) or "."
        problems.append(f"{kind}/{name} at {where}: {err.message}")
    return problems


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


def kubernetes_objects(resources: Iterable[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """The Kubernetes objects among recorded registrations (`stacks.plan.mocks.Registration`):
    custom resources of a `kubernetes:*` type except Helm releases, with their manifests."""
    out = []
    for reg in resources:
        if not reg.custom or not reg.type.startswith("kubernetes:") or reg.type in SKIPPED_TYPES:
            continue
        out.append((reg, dict(reg.inputs)))
    return out
