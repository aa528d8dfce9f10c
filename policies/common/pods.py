"""Kubernetes pods inside any workload resource: templates, containers, GPU requests, scheduling, taints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policies.common.stack import Res
from policies.common.values import GPU_RESOURCE, UNKNOWN, as_dict, as_list, dig

# --------------------------------------------------------------------------- Kubernetes pods


@dataclass
class PodTemplate:
    """A pod spec inside a workload, with the labels its pods get."""

    where: str
    """Where the spec sits, for messages (`spec.template.spec`)."""
    spec: dict[str, Any]
    labels: dict[str, Any]


def _replica_templates(spec: dict[str, Any]) -> list[PodTemplate]:
    out = []
    for key, replicas in spec.items():
        if key.endswith("ReplicaSpecs") and isinstance(replicas, dict):
            for role, rs in replicas.items():
                tpl = dig(rs, "template")
                if isinstance(dig(tpl, "spec"), dict):
                    out.append(
                        PodTemplate(
                            f"spec.{key}.{role}.template.spec", tpl["spec"], as_dict(dig(tpl, "metadata.labels"))
                        )
                    )
    return out


def pod_templates(res: Res) -> list[PodTemplate]:
    """Every pod spec a Kubernetes workload creates (Deployments, Jobs, PyTorchJobs, KServe...)."""
    if not res.type.startswith("kubernetes:") or res.kind.endswith("Patch") or res.kind.endswith("List"):
        return []
    props = res.props
    spec = as_dict(props.get("spec"))
    kind = res.kind
    found: list[PodTemplate] = []
    if kind == "Pod":
        found.append(PodTemplate("spec", spec, as_dict(dig(props, "metadata.labels"))))
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"):
        tpl = as_dict(spec.get("template"))
        if isinstance(tpl.get("spec"), dict):
            found.append(PodTemplate("spec.template.spec", tpl["spec"], as_dict(dig(tpl, "metadata.labels"))))
    elif kind == "CronJob":
        tpl = as_dict(dig(spec, "jobTemplate.spec.template"))
        if isinstance(tpl.get("spec"), dict):
            found.append(
                PodTemplate("spec.jobTemplate.spec.template.spec", tpl["spec"], as_dict(dig(tpl, "metadata.labels")))
            )
    elif kind == "JobSet":
        for i, job in enumerate(as_list(spec.get("replicatedJobs"))):
            tpl = as_dict(dig(job, "template.spec.template"))
            if isinstance(tpl.get("spec"), dict):
                found.append(
                    PodTemplate(
                        f"spec.replicatedJobs[{i}].template.spec.template.spec",
                        tpl["spec"],
                        as_dict(dig(tpl, "metadata.labels")),
                    )
                )
    elif kind == "InferenceService":
        for part in ("predictor", "transformer", "explainer"):
            component = spec.get(part)
            if isinstance(component, dict):
                pod = dict(component)
                model = component.get("model")
                if isinstance(model, dict):
                    pod["containers"] = [*as_list(component.get("containers")), {"name": "kserve-container", **model}]
                found.append(PodTemplate(f"spec.{part}", pod, as_dict(dig(props, "metadata.labels"))))
    else:
        found += _replica_templates(spec)
    return found


def containers(pod: dict[str, Any], *, init: bool = True) -> list[dict[str, Any]]:
    keys = ("initContainers", "containers") if init else ("containers",)
    return [c for key in keys for c in as_list(pod.get(key)) if isinstance(c, dict)]


def gpu_request(container: dict[str, Any]) -> Any:
    """The container's nvidia.com/gpu limit (or request); 0 when none."""
    resources = container.get("resources")
    if resources is UNKNOWN:
        return UNKNOWN
    for part in ("limits", "requests"):
        amount = as_dict(as_dict(resources).get(part)).get(GPU_RESOURCE)
        if amount is UNKNOWN:
            return UNKNOWN
        if amount not in (None, 0, "0"):
            return amount
    return 0


def requests_gpu(pod: dict[str, Any]) -> bool:
    return any(gpu_request(c) not in (0, UNKNOWN) for c in containers(pod))


def _required_terms(pod: dict[str, Any]) -> list[Any]:
    path = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
    return as_list(dig(pod, path))


def selects_nodes(pod: dict[str, Any]) -> bool:
    """Whether the pod is pinned to some nodes (nodeSelector or required node affinity)."""
    return bool(as_dict(pod.get("nodeSelector"))) or bool(_required_terms(pod))


def _expression_matches(expr: Any, labels: dict[str, Any]) -> bool:
    key, op = dig(expr, "key"), dig(expr, "operator")
    values = [v for v in as_list(dig(expr, "values")) if isinstance(v, str)]
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return True  # Gt/Lt: numeric labels aicloud does not set; do not rule the node out


def schedulable_on(pod: dict[str, Any], labels: dict[str, Any]) -> bool:
    """Whether the pod's node selection admits nodes with `labels` (taints aside)."""
    selector = as_dict(pod.get("nodeSelector"))
    if any(labels.get(k) != v for k, v in selector.items() if v is not UNKNOWN):
        return False
    terms = _required_terms(pod)
    if not terms:
        return True
    return any(all(_expression_matches(e, labels) for e in as_list(dig(t, "matchExpressions"))) for t in terms)


_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


def taint(raw: Any) -> Taint | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
        return None
    effect = str(raw.get("effect") or "NoSchedule")
    value = raw.get("value")
    return Taint(raw["key"], value if isinstance(value, str) else "", _EFFECTS.get(effect, effect))


def tolerates(tolerations: Any, t: Taint) -> bool:
    """Kubernetes' matching: key (or empty key with Exists), effect (or any), Exists or equal value."""
    for tol in as_list(tolerations):
        if not isinstance(tol, dict):
            continue
        key, op = tol.get("key") or "", tol.get("operator") or "Equal"
        effect = tol.get("effect") or ""
        if effect and _EFFECTS.get(effect, effect) != t.effect:
            continue
        if not key:
            if op == "Exists":
                return True
            continue
        if key != t.key:
            continue
        if op == "Exists" or (tol.get("value") or "") == t.value:
            return True
    return False
