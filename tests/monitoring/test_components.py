"""Monitoring and RetrainingPipeline under the mock engine: what each cluster gets, the DCGM
exporter's placement, dashboards and alert thresholds from config, the trigger's CronJob and its
least-privilege RBAC; every rendered Kubernetes object passes strict schema validation."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.k8s_schema import identity_problems, kubernetes_objects, validate_object
from components.monitoring import (
    DCGM_EXPORTER_CHART,
    KUBE_PROMETHEUS_STACK_CHART,
    NAMESPACE,
    AlertsSpec,
    Monitoring,
    MonitoringSpec,
)
from components.nodepool import pool_taints, tolerations_for
from components.retraining import SERVICE_ACCOUNT, RetrainingPipeline
from components.upstream import crd
from contracts.retrain import Settings
from tests.monitoring.specs import TRAINER, aws_region, gcp_region, retraining, serving

K8S_VERSION = "1.33"
RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
CUSTOM = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"


def monitoring(region, spec: MonitoringSpec | None = None):
    provider = k8s.Provider(f"k8s-{region.name}")
    Monitoring(
        f"{region.name}-monitoring",
        spec or MonitoringSpec(),
        cloud=region.cloud,
        pools=list(region.node_pools),
        region_key=region.name,
        opts=pulumi.ResourceOptions(providers=[provider]),
    )


def release(regs, chart: str):
    found = [r for r in regs.of_type(RELEASE) if r.inputs["chart"] == chart]
    return found[0] if found else None


def test_every_kubernetes_object_uses_the_clusters_provider(record):
    regs = record(lambda: monitoring(aws_region()))
    provider = regs.one("pulumi:providers:kubernetes")
    k8s_regs = [r for r in regs if r.custom and r.type.startswith("kubernetes:")]
    assert len(k8s_regs) >= 9
    assert all(r.provider == provider.urn for r in k8s_regs)
    component = regs.one("aicloud:observability:Monitoring")
    assert all(component in regs.ancestors(r) for r in k8s_regs)


def test_kube_prometheus_stack_gets_retention_storage_and_selects_every_monitor(record):
    spec = MonitoringSpec.model_validate({"retention": "30d", "storageGib": 200})
    regs = record(lambda: monitoring(aws_region(), spec))
    kps = release(regs, KUBE_PROMETHEUS_STACK_CHART["chart"])
    assert kps.inputs["version"] == KUBE_PROMETHEUS_STACK_CHART["version"]
    assert kps.inputs["repositoryOpts"]["repo"] == "https://prometheus-community.github.io/helm-charts"
    prom = kps.inputs["values"]["prometheus"]["prometheusSpec"]
    assert prom["retention"] == "30d" and prom["retentionSize"] == "170GB"
    assert prom["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert prom["podMonitorSelectorNilUsesHelmValues"] is False and prom["ruleSelectorNilUsesHelmValues"] is False
    sidecar = kps.inputs["values"]["grafana"]["sidecar"]["dashboards"]
    assert (sidecar["label"], sidecar["labelValue"]) == ("grafana_dashboard", "1")


def test_dcgm_exporter_tolerates_every_gpu_pools_taints_and_runs_on_gpu_nodes_only(record):
    region = aws_region()
    regs = record(lambda: monitoring(region))
    dcgm = release(regs, DCGM_EXPORTER_CHART["chart"])
    values = dcgm.inputs["values"]
    gpu_pools = [p for p in region.node_pools if p.machine.is_gpu]
    assert len(gpu_pools) == 2
    taints = [t for p in gpu_pools for t in pool_taints(p)]
    assert values["tolerations"] == tolerations_for(taints)
    [term] = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "aicloud.dev/gpu", "operator": "In", "values": ["true"]}]
    assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"} in (
        values["serviceMonitor"]["relabelings"]
    )
    outputs = regs.one("aicloud:observability:Monitoring").outputs
    assert outputs["dcgmPools"] == ["train", "serve"]


def test_dcgm_exporter_on_gke_mounts_the_host_driver(record):
    regs = record(lambda: monitoring(gcp_region()))
    values = release(regs, DCGM_EXPORTER_CHART["chart"]).inputs["values"]
    assert values["securityContext"] == {"privileged": True, "allowPrivilegeEscalation": True}
    assert {"name": "nvidia-install-dir-host", "hostPath": "/home/kubernetes/bin/nvidia"} in values["extraHostVolumes"]
    mounts = {m["name"]: m["mountPath"] for m in values["extraVolumeMounts"]}
    assert mounts["nvidia-install-dir-host"] == "/usr/local/nvidia"
    assert mounts["exporter-metrics-volume"] == "/etc/dcgm-exporter/default-counters.csv"


def test_a_cluster_without_gpus_gets_no_dcgm_exporter(record):
    region = aws_region()
    cpu_only = region.model_copy(update={"node_pools": [region.node_pools[0]]})
    regs = record(lambda: monitoring(cpu_only))
    assert release(regs, DCGM_EXPORTER_CHART["chart"]) is None
    assert release(regs, KUBE_PROMETHEUS_STACK_CHART["chart"]) is not None


def test_dashboards_become_configmaps_for_grafanas_sidecar(record):
    spec = MonitoringSpec(alerts=AlertsSpec(drift_psi=0.3))
    regs = record(lambda: monitoring(aws_region(), spec))
    maps = regs.of_type(CONFIG_MAP)
    assert sorted(m.inputs["metadata"]["name"] for m in maps) == [
        "aicloud-dashboard-gpu",
        "aicloud-dashboard-serving",
        "aicloud-dashboard-training",
    ]
    for m in maps:
        assert m.inputs["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m.inputs["metadata"]["namespace"] == NAMESPACE
        [(key, text)] = m.inputs["data"].items()
        assert key.endswith(".json") and json.loads(text)["panels"]
    serving_map = next(m for m in maps if m.inputs["metadata"]["name"].endswith("serving"))
    drift = next(
        p for p in json.loads(next(iter(serving_map.inputs["data"].values())))["panels"] if "Drift" in p["title"]
    )
    assert drift["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 0.3


def test_dashboards_off_means_no_grafana_and_no_configmaps(record):
    regs = record(lambda: monitoring(aws_region(), MonitoringSpec(dashboards=False)))
    assert regs.of_type(CONFIG_MAP) == []
    assert release(regs, KUBE_PROMETHEUS_STACK_CHART["chart"]).inputs["values"]["grafana"]["enabled"] is False


def test_alert_rules_carry_the_configured_thresholds(record):
    alerts = AlertsSpec(
        latency_p99_seconds=0.25, error_rate=0.02, gpu_idle_percent=3, gpu_idle_minutes=45, drift_psi=0.3,
        drift_min_rows=2000, training_stall_minutes=20,
    )  # fmt: skip
    regs = record(lambda: monitoring(aws_region(), MonitoringSpec(alerts=alerts)))
    [rule] = regs.of_type(CUSTOM)
    rules = {r["alert"]: r for r in rule.inputs["spec"]["groups"][0]["rules"]}
    assert set(rules) == {
        "AicloudServingLatencyHigh",
        "AicloudServingErrorRateHigh",
        "AicloudGpuIdleWhileAllocated",
        "AicloudFeatureDrift",
        "AicloudTrainingStalled",
    }
    assert rules["AicloudServingLatencyHigh"]["expr"].endswith("> 0.25")
    assert rules["AicloudServingErrorRateHigh"]["expr"].endswith("> 0.02")
    assert rules["AicloudGpuIdleWhileAllocated"]["expr"].endswith("< 3.0")
    assert rules["AicloudGpuIdleWhileAllocated"]["for"] == "45m"
    assert rules["AicloudFeatureDrift"]["expr"].endswith("> 0.3") and ">= 2000" in rules["AicloudFeatureDrift"]["expr"]
    assert "[20m]" in rules["AicloudTrainingStalled"]["expr"]


def test_pod_monitors_select_the_server_and_trainer_pods_by_their_components_labels(record):
    from components.endpoint import APP
    from components.training import JOB_LABEL, METRICS_PORT_NAME
    from contracts.serving import METRICS_PORT

    regs = record(lambda: monitoring(aws_region()))
    monitors = {m.inputs["metadata"]["name"]: m.inputs["spec"] for m in regs.of_type(POD_MONITOR)}
    server = monitors["model-server"]
    assert server["selector"] == {"matchLabels": {"app.kubernetes.io/name": APP}}
    # the server's own metrics port (not the inference port the front doors reach), by number
    assert server["podMetricsEndpoints"][0]["portNumber"] == METRICS_PORT
    assert server["namespaceSelector"] == {"any": True}
    trainer = monitors["trainer"]
    assert trainer["selector"] == {"matchExpressions": [{"key": JOB_LABEL, "operator": "Exists"}]}
    assert trainer["podMetricsEndpoints"][0]["port"] == METRICS_PORT_NAME


def test_otel_collector_is_off_by_default_and_installed_when_enabled(record):
    assert release(record(lambda: monitoring(aws_region())), "opentelemetry-collector") is None
    spec = MonitoringSpec.model_validate({"otel": {"enabled": True, "tracesEndpoint": "tempo.monitoring.svc:4317"}})
    otel = release(record(lambda: monitoring(aws_region(), spec)), "opentelemetry-collector")
    assert otel.inputs["values"]["config"]["exporters"]["otlp"]["endpoint"] == "tempo.monitoring.svc:4317"


def assert_valid(regs):
    objects = kubernetes_objects(regs)
    assert objects
    for reg, obj in objects:
        assert identity_problems(obj) == [], reg.urn
        assert validate_object(obj, K8S_VERSION) == [], reg.urn


def test_monitoring_objects_pass_strict_schema_validation(record):
    assert_valid(record(lambda: monitoring(aws_region())))


def test_a_misspelt_field_fails_schema_validation():
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "x", "namespace": "monitoring"},
        "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "http", "intervall": "15s"}]},
    }
    assert any("intervall" in p for p in validate_object(bad, K8S_VERSION))


# ------------------------------------------------------------------------------ retraining


def pipeline(strategy="canary", *, backend="deployment", runner=None, install_operator=False):
    provider = k8s.Provider("k8s-aws-use1")
    RetrainingPipeline(
        "aws-use1-retrain",
        retraining(),
        serving=serving(strategy, backend=backend),
        region=aws_region(),
        trainer_image=TRAINER,
        lake_uris={
            "features": pulumi.Output.from_input("s3://acme-features"),
            "checkpoints": "s3://acme-checkpoints",
            "models": "s3://acme-models",
        },
        job_identity=("aicloud-training", "aicloud-trainer"),
        runner_identity=runner,
        install_operator=install_operator,
        opts=pulumi.ResourceOptions(providers=[provider]),
    )


def test_the_trigger_is_a_cronjob_in_the_trainer_image_one_tick_at_a_time(record):
    regs = record(pipeline)
    cron = regs.one("kubernetes:batch/v1:CronJob")
    spec = cron.inputs["spec"]
    assert spec["schedule"] == "*/30 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == TRAINER
    assert container["command"] == ["python", "-m", "workloads.retrain"]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod["nodeSelector"] == {"aicloud.dev/role": "general"}
    assert cron.inputs["metadata"]["namespace"] == "aicloud-training"


def test_the_trigger_may_create_the_training_job_and_patch_the_canary_only(record):
    regs = record(pipeline)
    roles = {
        r.inputs["metadata"]["namespace"]: r.inputs["rules"]
        for r in regs.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    }
    assert roles["aicloud-training"] == [
        {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": ["create", "get"]}
    ]
    assert sorted(roles["aicloud-serving"], key=lambda r: r["resources"]) == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["clf-canary"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["httproutes"],
            "resourceNames": ["clf"],
            "verbs": ["get", "patch"],
        },
    ]
    for binding in regs.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"):
        assert binding.inputs["subjects"] == [
            {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": "aicloud-training"}
        ]
    assert all("*" not in json.dumps(rules) for rules in roles.values())


def test_without_a_canary_the_trigger_gets_no_serving_role(record):
    regs = record(lambda: pipeline("blue-green"))
    namespaces = {
        r.inputs["metadata"]["namespace"] for r in regs.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    }
    assert namespaces == {"aicloud-training"}
    assert regs.one("aicloud:observability:RetrainingPipeline").outputs["rollout"].startswith("manual")


def test_kserve_canary_role_names_the_inference_service(record):
    regs = record(lambda: pipeline(backend="kserve"))
    serving_role = next(
        r for r in regs.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
        if r.inputs["metadata"]["namespace"] == "aicloud-serving"
    )  # fmt: skip
    assert serving_role.inputs["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "resourceNames": ["clf"],
            "verbs": ["get", "patch"],
        }
    ]


def test_a_given_runner_identity_is_bound_instead_of_a_new_service_account(record):
    regs = record(lambda: pipeline(runner=("aicloud-training", "aicloud-retrain-wi")))
    assert regs.of_type("kubernetes:core/v1:ServiceAccount") == []
    for binding in regs.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"):
        assert binding.inputs["subjects"][0]["name"] == "aicloud-retrain-wi"


def test_the_settings_configmap_is_what_the_trigger_loads(record):
    regs = record(pipeline)
    settings_map = next(m for m in regs.of_type(CONFIG_MAP) if m.inputs["metadata"]["name"] == "retrain-clf-settings")
    settings = Settings.from_json(json.loads(settings_map.inputs["data"]["settings.json"]))
    assert settings.fresh_data == "s3://acme-features/clf/fresh"
    assert settings.decisions_uri == "s3://acme-models/clf/retrain/decisions"
    assert settings.candidate_uri == "s3://acme-models/clf/retrain/rt-clf-yymmddhhmm"
    assert settings.current_model == "s3://acme-models/clf/v1"
    assert settings.prometheus_url == "http://prometheus-operated.monitoring.svc:9090"
    [job] = settings.jobs
    assert job["metadata"]["namespace"] == "aicloud-training"
    assert job["kind"] == "TrainJob" and job["spec"]["runtimeRef"]["name"] == "aicloud-retrain-clf"
    runtime = regs.one("kubernetes:trainer.kubeflow.org/v1alpha1:ClusterTrainingRuntime").inputs
    assert runtime["metadata"]["name"] == "aicloud-retrain-clf"
    (replicated,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["template"]["spec"]["template"]["spec"]["serviceAccountName"] == "aicloud-trainer"
    cron = regs.one("kubernetes:batch/v1:CronJob")
    volumes = cron.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "settings", "configMap": {"name": "retrain-clf-settings"}} in volumes


@pytest.mark.parametrize(
    "strategy,backend", [("canary", "deployment"), ("canary", "kserve"), ("blue-green", "deployment")]
)
def test_retraining_objects_pass_strict_schema_validation(record, strategy, backend):
    assert_valid(record(lambda: pipeline(strategy, backend=backend)))


def test_the_training_job_template_passes_strict_schema_validation(record):
    regs = record(pipeline)
    settings_map = next(m for m in regs.of_type(CONFIG_MAP) if m.inputs["metadata"]["name"] == "retrain-clf-settings")
    settings = Settings.from_json(json.loads(settings_map.inputs["data"]["settings.json"]))
    for manifest in settings.jobs:
        assert validate_object(json.loads(json.dumps(manifest).replace("yymmddhhmm", "2611251230")), K8S_VERSION) == []


def test_retraining_installs_the_operator_its_job_needs_only_when_asked(record):
    regs = record(lambda: pipeline(install_operator=True))
    (release,) = regs.of_type(RELEASE)
    assert release.inputs["chart"] == "oci://ghcr.io/kubeflow/charts/kubeflow-trainer"
    assert regs.one("aicloud:observability:RetrainingPipeline").outputs["operator"] is True
    assert record(pipeline).of_type(RELEASE) == []


def test_rbac_names_each_kinds_real_rest_resource():
    """RBAC resources come from the vendored CRDs' spec.names.plural, not kind + "s"."""
    from components.k8s_schema import resource_name
    from components.upstream import crd_index

    for key in crd_index():
        group_version, kind = key.rsplit("/", 1)
        truth = crd(group_version, kind)
        assert resource_name(group_version, kind) == truth.plural
    assert resource_name("gateway.networking.k8s.io/v1", "GatewayClass") == "gatewayclasses"
    assert resource_name("karpenter.k8s.aws/v1", "EC2NodeClass") == "ec2nodeclasses"
    assert resource_name("networking.k8s.io/v1", "NetworkPolicy") == "networkpolicies"
    assert resource_name("networking.k8s.io/v1", "Ingress") == "ingresses"
    assert resource_name("apps/v1", "Deployment") == "deployments"
