"""Drift-triggered retraining as infrastructure: a coordinator in each cloud's primary region
(where the lakehouse, the trainer's identity and the training pools are) and an agent in every
serving region of that cloud.

`RetrainingPipeline` creates what runs the loop of `workloads.retrain` in the region's cluster:

- a **ConfigMap** with the trigger's settings (`contracts.retrain.Settings`): the
  PromQL drift query (the same expression the drift alert uses), thresholds, where fresh data,
  candidates and the decision log live in the lakehouse, the **training job manifests** rendered
  by `components.training` (`pytorchjob_manifest` / `indexed_job_manifests`) with a placeholder
  run name, and the **canary patches** rendered from `components.endpoint`'s own manifests
  (`deployment_manifest`, `route_manifest`, `inference_service_manifest`) with placeholders
  for the candidate's URI and the traffic percent;
- a **CronJob** running `python -m workloads.retrain --settings ...` in the trainer image on a
  general (untainted, CPU) pool, one tick at a time (`concurrencyPolicy: Forbid`);
- its **ServiceAccount** and **Roles**: in the training namespace, create and read the training
  job's kinds; in the serving namespace, read and patch exactly the endpoint objects that carry
  the canary (by `resourceNames`). Nothing else.

Across regions (`RetrainingAgent`, one per serving region): cluster APIs and Prometheus are private
to their region, so no region calls another; the coordinator and the agents share state through
the lakehouse, under the decision log's prefix (layout in `contracts.retrain`). Each agent is a
CronJob in the trainer image (`python -m workloads.retrain agent`) that writes its region's drift
report (its own Prometheus: PSI per feature and the rows behind it), applies the coordinator's
rollout instruction for its region once (its own canary, at the configured percent, with the
candidate's URI in the region's copy of the models zone, and only once that copy is complete) and
writes back the outcome (`applied`, `held`, `endpoint-missing`). The coordinator pools the fresh
reports (drift if any region with enough rows drifted; stale reports ignored and named), trains,
gates, and stages the rollout: the first canary region, then the others once its canary held for
`stageMinutes`. Its own Role then holds no serving rules: each agent's Role patches its region's
canary objects only, by `resourceNames`; its identity (IRSA / Workload Identity, from
`components.identity`) may read and create objects under its region's prefix of the decision log
and read candidates, nothing else (`agent_grants`).

Rollout by release strategy: `canary` on backend `deployment` patches the canary Deployment's
server arguments (strategic merge by container name) and the HTTPRoute's weights; on backend
`kserve` the InferenceService's predictor container and `canaryTrafficPercent`. Other strategies
have no weighted canary: a passing candidate is logged `candidate-ready` and nothing is patched.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.base import child_opts, custom_resource, type_token
from components.endpoint import (
    EndpointPlan,
    ServingSpec,
    deployment_manifest,
    inference_service_manifest,
    plan_endpoint,
    route_manifest,
)
from components.identity import API_ACCESS, API_USERS
from components.k8s_schema import resource_name
from components.monitoring import PROMETHEUS_URL, RetrainingSpec, drift_query, drift_rows_query
from components.nodepool import LABEL_PREFIX, NodePoolSpec
from components.platform import RegionSpec
from components.training import (
    RUN_AS,
    TRAINER_SERVICE_ACCOUNT,
    TRAINING_NAMESPACE,
    PoolShape,
    RunLocations,
    TrainingJobSpec,
    TrainingOperator,
    indexed_job_manifests,
    pytorchjob_manifest,
    runtime_name,
    sweep_trials,
    training_runtime_manifest,
    trainjob_manifest,
)
from contracts import lake
from contracts.retrain import (
    MODEL_URI,
    PERCENT,
    STABLE_PERCENT,
    AgentSettings,
    CanaryTarget,
    ObjectRef,
    RegionTarget,
    Settings,
    region_prefix,
)

SERVICE_ACCOUNT = "aicloud-retrain"
"""ServiceAccount of the trigger (in the training namespace)."""
AGENT_SERVICE_ACCOUNT = "aicloud-retrain-agent"
"""ServiceAccount of a serving region's agent (beside the trigger's, in the training namespace)."""
SETTINGS_DIR = "/etc/aicloud-retrain"
RUN_STAMP = "yymmddhhmm"
"""Stands for the run's UTC `yymmddHHMM` stamp in the rendered templates (same length)."""


def run_prefix(model: str) -> str:
    """Run names are `<prefix>-<yymmddHHMM>`: DNS labels of at most 40 characters."""
    return f"rt-{model}"[:29].rstrip("-")


def placeholder(model: str) -> str:
    """The run name as it appears in the templates (replaced by the trigger at launch)."""
    return f"{run_prefix(model)}-{RUN_STAMP}"


@dataclasses.dataclass(frozen=True, slots=True)
class Lake:
    """Lakehouse locations the loop uses (plain strings once the buckets are known)."""

    features: str
    checkpoints: str
    models: str

    def fresh_data(self, spec: RetrainingSpec) -> str:
        return f"{self.features.rstrip('/')}/{spec.fresh_data}"

    def candidate(self, model: str) -> str:
        return f"{self.models.rstrip('/')}/{model}/retrain/{placeholder(model)}"

    def run_dir(self, model: str) -> str:
        return f"{self.checkpoints.rstrip('/')}/retrain/{model}/{placeholder(model)}"

    def decisions(self, model: str) -> str:
        return f"{self.models.rstrip('/')}/{decisions_key(model)}"

    def resolve(self, uri: str) -> str:
        """A `lake://<zone>/<key>` URI of one of these zones as the zone's real URI; others unchanged."""
        return lake.resolve(uri, {"features": self.features, "checkpoints": self.checkpoints, "models": self.models})


def decisions_key(model: str) -> str:
    """Key prefix of the decision log in the models zone."""
    return f"{model}/retrain/decisions"


def candidates_key(model: str) -> str:
    """Key prefix of every run's candidate in the models zone (run names start with the prefix)."""
    return f"{model}/retrain/{run_prefix(model)}-"


def agent_prefix_key(model: str, region_key: str) -> str:
    """Key prefix (in the primary models zone) that the agent of `region_key` reads and writes."""
    return region_prefix(decisions_key(model), region_key)


def agent_grants(model: str, region_key: str) -> list[dict[str, str]]:
    """What a region's agent may do in the lake: list, read and create objects under its region's
    prefix of the decision log (`zone` models of the primary lakehouse), and read candidates (in the
    region's copy of the models zone, `zone` models-copy) to see that one has fully arrived."""
    return [
        {"zone": "models", "prefix": agent_prefix_key(model, region_key), "access": "create"},
        {"zone": "models-copy", "prefix": candidates_key(model), "access": "read"},
    ]


def retrain_runtime(model: str) -> str:
    """The ClusterTrainingRuntime the `trainjob` runs of `model` use (created with the pipeline)."""
    return runtime_name(f"retrain-{model}")


def _training_spec(spec: RetrainingSpec, model: str, image: str) -> TrainingJobSpec:
    job = spec.job
    return TrainingJobSpec(
        name=placeholder(model),
        pool=job.pool,
        nodes=job.nodes,
        preset=job.preset,
        backend=job.backend,
        image=image,
        max_restarts=job.max_restarts,
        allow_cpu=job.allow_cpu,
        overrides={**job.overrides, "export.name": model, "export.version": placeholder(model)},
    )


def runtime_manifest(
    spec: RetrainingSpec, model: str, *, pool: NodePoolSpec, image: Any, service_account: str
) -> dict[str, Any] | None:
    """The ClusterTrainingRuntime of a `trainjob` retraining job (None for other backends)."""
    if spec.job.backend != "trainjob":
        return None
    return training_runtime_manifest(
        _training_spec(spec, model, "trainer-image"),
        name=retrain_runtime(model),
        pool=PoolShape.of(pool),
        image=image,
        service_account=service_account,
    )


def job_manifests(
    spec: RetrainingSpec,
    model: str,
    *,
    pool: NodePoolSpec,
    image: str,
    lake: Lake,
    namespace: str,
    service_account: str,
) -> list[dict[str, Any]]:
    """The objects one retraining run creates, in order (the training job last): the configured
    job on the fresh data, exporting its candidate (named after the served model, versioned by
    the run) to the models zone."""
    job = spec.job
    training = _training_spec(spec, model, image)
    trial = sweep_trials(training)[0]
    common: dict[str, Any] = dict(
        pool=PoolShape.of(pool),
        image=image,
        run=RunLocations(out=lake.run_dir(model), export=lake.candidate(model), data=lake.fresh_data(spec)),
        namespace=namespace,
        service_account=service_account,
    )
    if job.backend == "trainjob":
        common.pop("service_account")
        return [trainjob_manifest(training, trial, runtime=retrain_runtime(model), **common)]
    if job.backend == "pytorchjob":
        return [pytorchjob_manifest(training, trial, **common)]
    batch_job, service = indexed_job_manifests(training, trial, **common)
    return [service, batch_job]


def agent_calls_api(serving: ServingSpec, region: RegionSpec) -> bool:
    """Whether the agent of serving region `region` calls the Kubernetes API: only to patch its
    canary, so only when the endpoint's release strategy has one (its identity mounts no token
    otherwise)."""
    return canary_target(plan_endpoint(serving, region, default_image="server-image")) is not None


def canary_target(plan: EndpointPlan) -> CanaryTarget | None:
    """How the trigger reads and sets the endpoint's canary; None without a canary strategy."""
    if plan.strategy != "canary":
        return None
    stable, canary = plan.track("stable"), plan.track("canary")
    templated = dataclasses.replace(
        plan,
        tracks=(
            dataclasses.replace(stable, weight=STABLE_PERCENT),  # type: ignore[arg-type]
            dataclasses.replace(canary, model_uri=MODEL_URI, weight=PERCENT),  # type: ignore[arg-type]
        ),
    )
    ns = plan.namespace
    if plan.spec.backend == "kserve":
        isvc = inference_service_manifest(templated, SERVICE_ACCOUNT)
        ref = ObjectRef(api_version=isvc["apiVersion"], kind=isvc["kind"], namespace=ns, name=isvc["metadata"]["name"])
        containers = isvc["spec"]["predictor"]["containers"]
        patch = {"spec": {"predictor": {"canaryTrafficPercent": PERCENT, "containers": containers}}}
        return CanaryTarget(
            read=ref, read_path=["spec", "predictor", "canaryTrafficPercent"], patches=[(ref, "merge", patch)]
        )
    deployment = deployment_manifest(templated, templated.track("canary"), SERVICE_ACCOUNT)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    dep_ref = ObjectRef(
        api_version=deployment["apiVersion"], kind="Deployment", namespace=ns, name=deployment["metadata"]["name"]
    )
    dep_patch = {
        "spec": {"template": {"spec": {"containers": [{"name": container["name"], "args": container["args"]}]}}}
    }
    route = route_manifest(templated)
    route_ref = ObjectRef(
        api_version=route["apiVersion"], kind=route["kind"], namespace=ns, name=route["metadata"]["name"]
    )
    backends = route["spec"]["rules"][0]["backendRefs"]
    index = next(i for i, b in enumerate(backends) if b.get("weight") == PERCENT)
    return CanaryTarget(
        read=route_ref,
        read_path=["spec", "rules", 0, "backendRefs", index, "weight"],
        # The candidate is loaded on the canary track first, then traffic moves to it.
        patches=[(dep_ref, "strategic", dep_patch), (route_ref, "merge", {"spec": {"rules": route["spec"]["rules"]}})],
    )


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def role_rules(jobs: list[dict[str, Any]], canary: CanaryTarget | None) -> tuple[list[dict], list[dict]]:
    """RBAC rules of the trigger: (training namespace, serving namespace). Create and read the
    run's kinds; read and patch the canary's objects, by name."""
    training: dict[tuple[str, str], dict[str, Any]] = {}
    for m in jobs:
        key = (_group(m["apiVersion"]), resource_name(m["apiVersion"], m["kind"]))
        training[key] = {"apiGroups": [key[0]], "resources": [key[1]], "verbs": ["create", "get"]}
    serving: dict[tuple[str, str, str], dict[str, Any]] = {}
    if canary is not None:
        for ref in [canary.read, *(r for r, _, _ in canary.patches)]:
            key = (_group(ref.api_version), resource_name(ref.api_version, ref.kind), ref.name)
            serving[key] = {"apiGroups": [key[0]], "resources": [key[1]], "resourceNames": [ref.name], "verbs": []}
        verbs: dict[tuple[str, str, str], set[str]] = {k: {"get"} for k in serving}
        for ref, _, _ in canary.patches:
            verbs[(_group(ref.api_version), resource_name(ref.api_version, ref.kind), ref.name)].add("patch")
        for key, rule in serving.items():
            rule["verbs"] = sorted(verbs[key])
    return list(training.values()), list(serving.values())


def cron_job_manifest(
    spec: RetrainingSpec,
    model: str,
    *,
    image: Any,
    namespace: str,
    service_account: str,
    settings_map: str,
    agent: bool = False,
    calls_api: bool = True,
) -> dict[str, Any]:
    """The trigger (or, `agent`, a serving region's agent): one tick of `python -m
    workloads.retrain` per schedule, never two at once. `calls_api`: whether the pod mounts its
    ServiceAccount token (an agent without a canary to patch never calls the API)."""
    labels = _labels(model, agent=agent)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": (f"retrain-{model}"[:46] + "-agent") if agent else f"retrain-{model}"[:52],
            "namespace": namespace,
            "labels": labels,
            "annotations": {API_ACCESS: API_USERS["retrain-agent" if agent else "retrain"]} if calls_api else {},
        },
        "spec": {
            "schedule": spec.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 1,
                    # Scoring two models on the held-out rows is the longest step (the agent's is short).
                    "activeDeadlineSeconds": 600 if agent else 3600,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": service_account,
                            # The trigger and the agents that patch a canary call the Kubernetes API.
                            "automountServiceAccountToken": calls_api,
                            "restartPolicy": "Never",
                            "nodeSelector": {f"{LABEL_PREFIX}/role": "general"},
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": RUN_AS,
                                "runAsGroup": RUN_AS,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [
                                {
                                    "name": "retrain",
                                    "image": image,
                                    "imagePullPolicy": "IfNotPresent",
                                    "command": ["python", "-m", "workloads.retrain"],
                                    "args": [
                                        *(["agent"] if agent else []),
                                        "--settings",
                                        f"{SETTINGS_DIR}/settings.json",
                                    ],
                                    "env": [
                                        {"name": "HOME", "value": "/tmp"},
                                        {"name": "PYTHONUNBUFFERED", "value": "1"},
                                    ],
                                    "resources": {
                                        "requests": {"cpu": "250m", "memory": "512Mi"},
                                        "limits": {"memory": "2Gi"},
                                    }
                                    if agent
                                    else {
                                        "requests": {"cpu": "500m", "memory": "1Gi"},
                                        "limits": {"memory": "4Gi"},
                                    },
                                    "securityContext": {
                                        "allowPrivilegeEscalation": False,
                                        "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]},
                                    },
                                    "volumeMounts": [
                                        {"name": "settings", "mountPath": SETTINGS_DIR, "readOnly": True},
                                        {"name": "tmp", "mountPath": "/tmp"},
                                    ],
                                }
                            ],
                            "volumes": [
                                {"name": "settings", "configMap": {"name": settings_map}},
                                {"name": "tmp", "emptyDir": {}},
                            ],
                        },
                    },
                },
            },
        },
    }


def _labels(model: str, *, agent: bool = False) -> dict[str, str]:
    # The agent keeps the trigger's name label: the monitoring namespace lets it query Prometheus.
    return {
        "app.kubernetes.io/name": "aicloud-retrain",
        "app.kubernetes.io/instance": model,
        "app.kubernetes.io/part-of": "aicloud",
        "app.kubernetes.io/component": "agent" if agent else "coordinator",
    }


def rbac_manifests(
    model: str,
    rules: tuple[list[dict], list[dict]],
    *,
    namespace: str,
    serving_namespace: str,
    service_account: str,
    create_service_account: bool = True,
    agent: bool = False,
    calls_api: bool = True,
) -> list[dict[str, Any]]:
    """The trigger's (or an agent's) ServiceAccount (unless it runs as an existing one), and per
    namespace a Role with its rules and a RoleBinding to that ServiceAccount. `calls_api`: whether
    the ServiceAccount mounts a token (an agent without a canary never calls the API)."""
    name = (f"retrain-{model}"[:46] + "-agent") if agent else f"retrain-{model}"[:52]
    out: list[dict[str, Any]] = []
    if create_service_account:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": service_account,
                    "namespace": namespace,
                    "labels": _labels(model),
                    "annotations": {API_ACCESS: API_USERS["retrain-agent" if agent else "retrain"]}
                    if calls_api
                    else {},
                },
                "automountServiceAccountToken": calls_api,
            }
        )
    by_namespace: dict[str, list[dict]] = {namespace: list(rules[0])}
    by_namespace.setdefault(serving_namespace, []).extend(rules[1])
    subject = [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]
    for ns, ns_rules in by_namespace.items():
        if not ns_rules:
            continue
        meta = {"name": name, "namespace": ns, "labels": _labels(model, agent=agent)}
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": ns_rules})
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": dict(meta),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subject,
            }
        )
    return out


def _create(logical: str, m: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Create one of the trigger's RBAC objects as its typed resource."""
    if m["kind"] == "ServiceAccount":
        return k8s.core.v1.ServiceAccount(
            logical,
            metadata=m["metadata"],
            automount_service_account_token=m.get("automountServiceAccountToken"),
            opts=opts,
        )
    if m["kind"] == "Role":
        return k8s.rbac.v1.Role(logical, metadata=m["metadata"], rules=m["rules"], opts=opts)
    return k8s.rbac.v1.RoleBinding(
        logical, metadata=m["metadata"], role_ref=m["roleRef"], subjects=m["subjects"], opts=opts
    )


def settings_for(
    spec: RetrainingSpec,
    serving: ServingSpec,
    region: RegionSpec,
    *,
    trainer_image: str,
    server_image: str | None,
    lake: Lake,
    namespace: str,
    job_service_account: str,
    prometheus_url: str = PROMETHEUS_URL,
    regions: list[RegionTarget] | None = None,
) -> Settings:
    """The trigger's settings for `region` (validated by `Settings` itself). `regions`: the
    serving regions whose agents report drift and apply rollouts (`region_target`); without them
    the single-region loop (this cluster's Prometheus and endpoint)."""
    plan = plan_endpoint(serving, region, default_image=server_image) if region.serving else None
    pool = next(p for p in region.node_pools if p.name == spec.job.pool)
    model = serving.model
    return Settings(
        model=model,
        prometheus_url=prometheus_url,
        drift_query=drift_query(spec.min_samples, by=("feature",), model=model),
        drift_threshold=spec.drift_threshold,
        min_samples=spec.min_samples,
        canary_percent=spec.canary_percent,
        current_model=lake.resolve(current_model_uri(serving, region.cloud, plan)),
        candidate_uri=lake.candidate(model),
        decisions_uri=lake.decisions(model),
        jobs=job_manifests(
            spec,
            model,
            pool=pool,
            image=trainer_image,
            lake=lake,
            namespace=namespace,
            service_account=job_service_account,
        ),
        placeholder=placeholder(model),
        run_prefix=run_prefix(model),
        canary=canary_target(plan) if plan is not None else None,
        fresh_data=lake.fresh_data(spec),
        cooldown_minutes=spec.cooldown_hours * 60,
        regions=list(regions or []),
        report_max_age_minutes=spec.report_max_age_minutes,
        stage_minutes=spec.stage_minutes,
    )


def region_target(serving: ServingSpec, region: RegionSpec, models_copy: str) -> RegionTarget:
    """What the coordinator knows of a serving region: where its servers find a run's candidate
    (`models_copy`: the region's models zone, a replica or the primary's) and whether its endpoint
    has a weighted canary."""
    plan = plan_endpoint(serving, region, default_image="server-image")
    model = serving.model
    return RegionTarget(
        region=region.name,
        candidate_uri=f"{models_copy.rstrip('/')}/{model}/retrain/{placeholder(model)}",
        canary=plan.strategy == "canary",
    )


def agent_settings_for(
    spec: RetrainingSpec,
    serving: ServingSpec,
    region: RegionSpec,
    *,
    decisions_uri: str,
    server_image: str | None = None,
    prometheus_url: str = PROMETHEUS_URL,
) -> AgentSettings:
    """A serving region's agent settings: its own Prometheus, its endpoint's canary objects."""
    plan = plan_endpoint(serving, region, default_image=server_image or "server-image")
    model = serving.model
    return AgentSettings(
        model=model,
        region=region.name,
        prometheus_url=prometheus_url,
        drift_query=drift_query(spec.min_samples, by=("feature",), model=model),
        samples_query=drift_rows_query(spec.min_samples, model=model),
        decisions_uri=decisions_uri,
        canary=canary_target(plan),
    )


def current_model_uri(serving: ServingSpec, cloud: str, plan: EndpointPlan | None) -> str:
    """The artifact the endpoint serves to most traffic now: its primary or active track, else
    (KServe, whose stable is its previous revision, or no endpoint in the region) the model the
    stack configures."""
    track = next((t for t in plan.tracks if t.role in ("primary", "active")), None) if plan else None
    if track is not None and track.model_uri:
        return track.model_uri
    uri = serving.model_uri
    return uri if isinstance(uri, str) else uri[cloud]  # type: ignore[index]


def rollout_mode(plan: EndpointPlan | None, region_key: str) -> str:
    """How a passing candidate reaches traffic, in words."""
    if plan is None:
        return f"manual (no endpoint in {region_key})"
    if plan.strategy != "canary":
        return f"manual ({plan.strategy} has no weighted canary)"
    if plan.spec.backend == "kserve":
        return "canary: KServe canaryTrafficPercent"
    return "canary: canary Deployment + HTTPRoute weights"


def _settings_and_cron(
    parent: pulumi.ComponentResource,
    name: str,
    cron: dict[str, Any],
    settings_json: pulumi.Input[str],
    *,
    settings_map: str,
    labels: dict[str, str],
    opts_k8s: pulumi.ResourceOptions,
    deps: list[pulumi.Resource],
    created: list[pulumi.Resource],
) -> None:
    """The ConfigMap `settings_map` holding a trigger's or agent's settings, and the rendered
    CronJob that mounts it, created after `deps`, the ConfigMap and `created` (its RBAC)."""
    config_map = k8s.core.v1.ConfigMap(
        f"{name}-settings",
        metadata={"name": settings_map, "namespace": cron["metadata"]["namespace"], "labels": labels},
        data={"settings.json": settings_json},
        opts=opts_k8s,
    )
    k8s.batch.v1.CronJob(
        f"{name}-cron",
        metadata=cron["metadata"],
        spec=cron["spec"],
        opts=child_opts(parent, depends_on=[*deps, config_map, *created]),
    )


class RetrainingPipeline(pulumi.ComponentResource):
    """The drift-to-retraining loop of one model in one primary region.

    Create it under the region's Kubernetes provider (`opts.providers`), parented to the region.
    `lake_uris` are the `features`, `checkpoints` and `models` zone URIs (outputs are fine);
    `job_identity` is the (namespace, service account) training jobs run as (the trainer's
    workload identity); `runner_identity` the one the trigger runs as when the stack gives it a
    workload identity of its own (else a plain ServiceAccount is created). `regions`: the serving
    regions of this cloud, each with the URI of its copy of the models zone, whose agents
    (`RetrainingAgent`) report drift and apply the rollout; without them the single-region loop
    reads this cluster's Prometheus and patches this cluster's endpoint.
    """

    def __init__(
        self,
        name: str,
        spec: RetrainingSpec,
        *,
        serving: ServingSpec,
        region: RegionSpec,
        trainer_image: pulumi.Input[str],
        lake_uris: dict[str, pulumi.Input[str]],
        server_image: pulumi.Input[str] | None = None,
        job_identity: tuple[str, str] | None = None,
        runner_identity: tuple[str, str] | None = None,
        depends_on: list[pulumi.Resource] | None = None,
        install_operator: bool = False,
        regions: list[tuple[RegionSpec, pulumi.Input[str]]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("observability", "RetrainingPipeline"), name, None, opts)
        model = serving.model
        namespace, job_sa = job_identity or (TRAINING_NAMESPACE, TRAINER_SERVICE_ACCOUNT)
        runner_ns, runner_sa = runner_identity or (namespace, SERVICE_ACCOUNT)
        regions = list(regions or [])
        plan = plan_endpoint(serving, region, default_image="server-image") if region.serving else None
        # Across regions the agents patch their own canaries: the trigger itself patches nothing.
        canary = canary_target(plan) if plan is not None and not regions else None
        shape_jobs = job_manifests(
            spec,
            model,
            pool=next(p for p in region.node_pools if p.name == spec.job.pool),
            image="trainer-image",
            lake=Lake("features", "checkpoints", "models"),
            namespace=namespace,
            service_account=job_sa,
        )
        rules = role_rules(shape_jobs, canary)
        deps = list(depends_on or [])
        # The operator the run's kind needs, where the region does not have it already.
        self.operator = TrainingOperator(f"{name}-operator", opts=child_opts(self)) if install_operator else None
        pool = next(p for p in region.node_pools if p.name == spec.job.pool)
        runtime = runtime_manifest(spec, model, pool=pool, image=trainer_image, service_account=job_sa)
        if runtime is not None:
            custom_resource(
                f"{name}-runtime",
                runtime,
                child_opts(self, depends_on=[*deps, *([self.operator] if self.operator else [])]),
            )
        opts_k8s = child_opts(self, depends_on=deps)
        rbac = rbac_manifests(
            model,
            rules,
            namespace=runner_ns,
            serving_namespace=serving.namespace,
            service_account=runner_sa,
            create_service_account=runner_identity is None,
        )
        created = [_create(f"{name}-{m['kind'].lower()}-{m['metadata']['namespace']}", m, opts_k8s) for m in rbac]
        zone = {k: pulumi.Output.from_input(lake_uris[k]) for k in ("features", "checkpoints", "models")}
        copies = pulumi.Output.all(*[pulumi.Output.from_input(uri) for _, uri in regions])
        settings_json = pulumi.Output.all(
            pulumi.Output.from_input(trainer_image),
            pulumi.Output.from_input(server_image),
            zone["features"],
            zone["checkpoints"],
            zone["models"],
            copies,
        ).apply(
            lambda v: json.dumps(
                settings_for(
                    spec,
                    serving,
                    region,
                    trainer_image=v[0],
                    server_image=v[1],
                    lake=Lake(v[2], v[3], v[4]),
                    namespace=namespace,
                    job_service_account=job_sa,
                    regions=[region_target(serving, r, uri) for (r, _), uri in zip(regions, v[5], strict=True)],
                ).to_json(),
                indent=1,
                sort_keys=True,
            )
        )
        settings_map = f"retrain-{model}-settings"[:63]
        cron = cron_job_manifest(
            spec, model, image=trainer_image, namespace=runner_ns, service_account=runner_sa, settings_map=settings_map
        )
        _settings_and_cron(
            self,
            name,
            cron,
            settings_json,
            settings_map=settings_map,
            labels=_labels(model),
            opts_k8s=opts_k8s,
            deps=deps,
            created=created,
        )
        self.register_outputs(
            {
                "region": region.name,
                "model": model,
                "schedule": spec.schedule,
                "driftThreshold": spec.drift_threshold,
                "minSamples": spec.min_samples,
                "canaryPercent": spec.canary_percent,
                "cooldownHours": spec.cooldown_hours,
                "rollout": rollout_mode(plan, region.name) if not regions else "per region, by its agent (staged)",
                "regions": [r.name for r, _ in regions],
                "reportMaxAgeMinutes": spec.report_max_age_minutes,
                "stageMinutes": spec.stage_minutes,
                "operator": self.operator is not None,
                "job": {
                    "backend": spec.job.backend,
                    "pool": spec.job.pool,
                    "nodes": spec.job.nodes,
                    "preset": spec.job.preset,
                },
                "freshData": zone["features"].apply(lambda f: f"{f.rstrip('/')}/{spec.fresh_data}"),
                "decisions": zone["models"].apply(lambda m: Lake("", "", m).decisions(model)),
                "serviceAccount": f"{runner_ns}/{runner_sa}",
                "rules": {"training": rules[0], "serving": rules[1]},
            }
        )


class RetrainingAgent(pulumi.ComponentResource):
    """The retraining loop's agent in one serving region (see the module docstring).

    Create it under the region's Kubernetes provider. `identity` is the (namespace, service
    account) of its workload identity (`retrain-agent`, granted `agent_grants`); `decisions_uri`
    the coordinator's decision log (the primary lakehouse's models zone, an output is fine).
    """

    def __init__(
        self,
        name: str,
        spec: RetrainingSpec,
        *,
        serving: ServingSpec,
        region: RegionSpec,
        coordinator: str,
        trainer_image: pulumi.Input[str],
        decisions_uri: pulumi.Input[str],
        identity: tuple[str, str] | None = None,
        server_image: pulumi.Input[str] | None = None,
        depends_on: list[pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("observability", "RetrainingAgent"), name, None, opts)
        model = serving.model
        namespace, sa = identity or (TRAINING_NAMESPACE, AGENT_SERVICE_ACCOUNT)
        plan = plan_endpoint(serving, region, default_image="server-image")
        canary = canary_target(plan)
        rules = role_rules([], canary)
        deps = list(depends_on or [])
        opts_k8s = child_opts(self, depends_on=deps)
        rbac = rbac_manifests(
            model,
            rules,
            namespace=namespace,
            serving_namespace=serving.namespace,
            service_account=sa,
            create_service_account=identity is None,
            agent=True,
            calls_api=canary is not None,
        )
        created = [_create(f"{name}-{m['kind'].lower()}-{m['metadata']['namespace']}", m, opts_k8s) for m in rbac]
        settings_json = pulumi.Output.all(
            pulumi.Output.from_input(server_image), pulumi.Output.from_input(decisions_uri)
        ).apply(
            lambda v: json.dumps(
                agent_settings_for(spec, serving, region, server_image=v[0], decisions_uri=v[1]).to_json(),
                indent=1,
                sort_keys=True,
            )
        )
        settings_map = f"retrain-{model}-agent-settings"[:63]
        cron = cron_job_manifest(
            spec,
            model,
            image=trainer_image,
            namespace=namespace,
            service_account=sa,
            settings_map=settings_map,
            agent=True,
            calls_api=canary is not None,
        )
        _settings_and_cron(
            self,
            name,
            cron,
            settings_json,
            settings_map=settings_map,
            labels=_labels(model, agent=True),
            opts_k8s=opts_k8s,
            deps=deps,
            created=created,
        )
        self.register_outputs(
            {
                "region": region.name,
                "coordinator": coordinator,
                "model": model,
                "schedule": spec.schedule,
                "driftSource": f"{PROMETHEUS_URL} (this region's)",
                "rollout": rollout_mode(plan, region.name),
                "canary": canary is not None,
                "prefix": pulumi.Output.from_input(decisions_uri).apply(
                    lambda d: region_prefix(d, region.name)  # type: ignore[arg-type]
                ),
                "serviceAccount": f"{namespace}/{sa}",
                "rules": {"serving": rules[1]},
            }
        )
