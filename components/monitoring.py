"""Observability of one cluster: Prometheus, Grafana, GPU metrics, scrape targets and alerts.

`Monitoring` (one per cluster, created under the region's Kubernetes provider) installs:

- **kube-prometheus-stack** (Helm, prometheus-community): the Prometheus operator, Prometheus
  with the configured retention and persistent volume, Alertmanager, kube-state-metrics (with the
  `aicloud.dev/*` node labels allowed through, so GPU panels group by node pool) and Grafana,
  whose sidecar loads every ConfigMap labelled `grafana_dashboard: "1"`.
- **NVIDIA dcgm-exporter** (Helm) on GPU nodes only: it tolerates exactly the taints of every GPU
  pool in the region (`tolerations_for`) and requires the `aicloud.dev/gpu=true` node label, so no
  GPU node goes unwatched and no CPU node runs it. It exports the DCGM fields in `DCGM_METRICS`
  and maps each GPU to the pod using it. The same chart is used on GKE (with GKE's driver paths
  mounted) rather than Google's managed DCGM collection, because the managed collection writes to
  Cloud Monitoring: one in-cluster Prometheus keeps the dashboards and alerts identical on both
  clouds.
- **PodMonitors** for the model server (pods of `components.endpoint.APP`, port `http`, path
  `/metrics`) and the trainer (pods carrying `components.training.JOB_LABEL`, port
  `components.training.METRICS_PORT_NAME`; only rank 0 serves it).
  Pods rather than Services: the endpoint puts several Services in front of the same pods
  (per track and for the whole model), which would scrape every pod more than once.
- **Dashboards** from `components/dashboards/*.json`, one ConfigMap each.
- **A PrometheusRule** with the alerts of `alert_rules` (thresholds from config).
- Optionally an **OpenTelemetry collector** (Helm) receiving OTLP traces.

`MonitoringSpec` is the `aicloud:monitoring` section; `RetrainingSpec` (its `retraining` block)
configures `components.retraining.RetrainingPipeline` in each cloud's primary region.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import Field

from components.base import Spec, child_opts, custom_resource, type_token
from components.dashboards import load_dashboards, with_drift_threshold
from components.foundations import STORAGE_CLASS
from components.helm import helm_release
from components.identity import WORKLOADS
from components.k8s_security import (
    MONITORING_NAMESPACE,
    PROMETHEUS_POD_LABELS,
    Allow,
    from_cidrs,
    from_namespace,
    from_pods,
    from_prometheus,
    secure_namespace,
)
from components.nodepool import (
    GPU_LABEL,
    LABEL_PREFIX,
    POOL_LABEL,
    NodePoolSpec,
    gpu_nodes_only,
    pool_taints,
    tolerations_for,
)
from components.training import Scalar
from components.upstream import chart_pin, chart_truth
from components.validation import Problem, check
from contracts.serving import DRIFT_ROWS_METRIC, FEATURE_PSI_METRIC, REQUEST_DURATION_METRIC, REQUESTS_METRIC

NAMESPACE = MONITORING_NAMESPACE
"""Namespace of Prometheus, Grafana, kube-state-metrics, monitors and rules (Pod Security
`restricted`)."""
NODE_AGENTS_NAMESPACE = "aicloud-node-agents"
"""Namespace of the per-node exporters (node-exporter, DCGM exporter)."""
NODE_AGENTS_REASON = (
    "node agents read the host: node-exporter uses hostNetwork, hostPID and hostPath mounts of /proc, /sys "
    "and /; the DCGM exporter runs as root with SYS_ADMIN and mounts the kubelet's pod-resources socket "
    "(hostPath). Both are forbidden by the baseline and restricted standards, so this namespace holds "
    "nothing else."
)
DCGM_PORT = 9400
NODE_EXPORTER_PORT = 9100
GRAFANA_ADMIN_SECRET = "grafana-admin"
"""Secret holding Grafana's generated admin login (keys `admin-user`, `admin-password`)."""
OPERATOR_POD_LABELS = {"app": "kube-prometheus-stack-operator"}
"""Labels of the Prometheus operator's pod (kube-prometheus-stack names it after the chart)."""
MONITORING_ALLOWS = (
    Allow(
        "stack-internal",
        "Prometheus scrapes its own stack (operator, kube-state-metrics, Alertmanager, Grafana), Grafana "
        "queries Prometheus, Prometheus sends alerts to Alertmanager",
        peers=[from_pods({})],
        ports=[
            (3000, "TCP"),
            (8080, "TCP"),
            (8081, "TCP"),
            (9090, "TCP"),
            (9093, "TCP"),
            (9094, "TCP"),
            (10250, "TCP"),
        ],
    ),
    Allow(
        "prometheus-queries",
        "the retraining trigger reads drift from Prometheus; KEDA's operator reads request rates",
        peers=[
            from_namespace(WORKLOADS["retrain"].namespace, {"app.kubernetes.io/name": "aicloud-retrain"}),
            from_namespace("keda"),
        ],
        ports=[(9090, "TCP")],
        pods=PROMETHEUS_POD_LABELS,
    ),
    Allow(
        "operator-webhook",
        "the API server calls the operator's admission webhook (PrometheusRule validation); its source is "
        "the control plane, which no selector names",
        peers=from_cidrs(["0.0.0.0/0"]),
        ports=[(10250, "TCP")],
        pods=OPERATOR_POD_LABELS,
    ),
)
"""Who may reach the monitoring namespace's pods. Grafana is not exposed: reach it with
`kubectl port-forward` (which NetworkPolicies do not see), never through a front door."""
OTEL_ALLOW = Allow(
    "otlp",
    "the model server and the trainer send traces to the OpenTelemetry collector (OTLP gRPC and HTTP)",
    peers=[from_namespace(WORKLOADS["server"].namespace), from_namespace(WORKLOADS["trainer"].namespace)],
    ports=[(4317, "TCP"), (4318, "TCP")],
    pods={"app.kubernetes.io/name": "opentelemetry-collector"},
)
NODE_AGENTS_ALLOWS = (
    Allow(
        "scrape",
        "Prometheus scrapes the DCGM exporter and node-exporter",
        peers=[from_prometheus()],
        ports=[(DCGM_PORT, "TCP"), (NODE_EXPORTER_PORT, "TCP")],
    ),
)
PROMETHEUS_URL = f"http://prometheus-operated.{NAMESPACE}.svc:9090"
"""Prometheus inside the cluster (the operator's governing Service of every Prometheus)."""
RELEASE_NAME = "kps"
"""Helm release and `fullnameOverride` of kube-prometheus-stack (short object names)."""

KUBE_PROMETHEUS_STACK_CHART = chart_pin("kube-prometheus-stack")
DCGM_EXPORTER_CHART = chart_pin("dcgm-exporter")
OTEL_COLLECTOR_CHART = chart_pin("opentelemetry-collector")

# --------------------------------------------------------------------------- metrics we rely on

DCGM_METRICS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
)
"""(DCGM field, Prometheus type, help) the dcgm-exporter is configured to export (`customMetrics`);
dashboards and alerts may use exactly these names."""

GPU_WORKLOAD_POD = "exported_pod"
GPU_WORKLOAD_NAMESPACE = "exported_namespace"
"""Labels of a DCGM series naming the pod (and its namespace) that uses the GPU. The exporter
writes them as `pod`/`namespace`, but its ServiceMonitor keeps the chart's `honorLabels: false`,
so Prometheus renames them `exported_*` and `pod`/`namespace` name the exporter's own pod (which
every GPU's series carries: `pod!=""` matches them all)."""

KUBE_STATE_METRICS: tuple[str, ...] = (
    "kube_node_labels",
    "kube_pod_container_resource_requests",
)
"""kube-state-metrics families (part of kube-prometheus-stack) that dashboards and alerts use."""

NODE_LABELS_ALLOWED = (POOL_LABEL, GPU_LABEL, f"{LABEL_PREFIX}/role", f"{LABEL_PREFIX}/accelerator")
"""Node labels kube-state-metrics exposes on `kube_node_labels` (as `label_aicloud_dev_pool`...)."""

FEATURE_PSI = FEATURE_PSI_METRIC
DRIFT_ROWS = DRIFT_ROWS_METRIC
REQUEST_LATENCY_BUCKET = f"{REQUEST_DURATION_METRIC}_bucket"
REQUESTS = REQUESTS_METRIC
TRAINER_STEP = "aicloud_trainer_step"
"""Server metric names (the server's own, from `contracts.serving`) and the trainer's used here
(tests check them against `workloads.*` definitions)."""


# --------------------------------------------------------------------------- config


class AlertsSpec(Spec):
    """Alert thresholds (each alert also waits its `for` duration before firing)."""

    latency_p99_seconds: float = Field(default=0.5, gt=0, le=60)
    """Serving SLO: p99 request latency inside the server, seconds (over 5 minutes, for 10m)."""
    error_rate: float = Field(default=0.01, gt=0, lt=1)
    """Share of requests answered 5xx (over 5 minutes, for 10m); 0.01 is 1 %."""
    gpu_idle_percent: float = Field(default=5.0, ge=0, lt=100)
    """A GPU allocated to a pod that stays below this utilisation is idle."""
    gpu_idle_minutes: int = Field(default=30, ge=5, le=24 * 60)
    """How long an allocated GPU must stay idle before the alert fires."""
    drift_psi: float = Field(default=0.2, gt=0, le=10)
    """A feature drifts when its PSI exceeds this (0.1-0.25 moderate, > 0.25 significant)."""
    drift_min_rows: int = Field(default=1000, ge=100)
    """Rows a server replica's drift window must hold before its PSI is trusted."""
    training_stall_minutes: int = Field(default=30, ge=5, le=24 * 60)
    """A training job whose step count does not move for this long has stalled."""


class OtelSpec(Spec):
    """The optional OpenTelemetry collector for traces."""

    enabled: bool = False
    """Install the collector (a Deployment receiving OTLP on 4317/gRPC and 4318/HTTP)."""
    traces_endpoint: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+(:[0-9]{1,5})?$")
    """OTLP/gRPC `host:port` of the trace backend (Tempo, Jaeger...); without it traces are only
    logged by the collector's debug exporter."""


class RetrainJobSpec(Spec):
    """The training job a drift-triggered retraining launches (one per run, on fresh data)."""

    pool: str
    """Node pool of the primary region(s); must exist in each and have GPUs (or `allowCpu`)."""
    nodes: int = Field(default=1, ge=1, le=1000)
    preset: str = Field(default="debug", pattern=r"^[a-z][a-z0-9_-]*$")
    """Trainer preset (must build the same architecture as the served model)."""
    backend: Literal["trainjob", "pytorchjob", "indexed-job"] = "trainjob"
    """As a training job's `backend`; the stack installs Kubeflow Trainer where a `trainjob` runs
    (`pytorchjob` needs `aicloud:training.operator: preinstalled`)."""
    overrides: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    """Trainer `--set` overrides; `data.*`, `export.*` and `out` are set by the pipeline."""
    image: str | None = None
    """Trainer image by digest; default the `trainer` workload of `aicloud:images`."""
    max_restarts: int = Field(default=3, ge=0, le=100)
    allow_cpu: bool = False

    @check("overrides")
    def _owned_keys(self) -> Iterator[Problem]:
        owned = sorted(k for k in self.overrides if k == "out" or k.split(".")[0] in ("data", "export"))
        if owned:
            yield Problem(
                (),
                f"overrides {', '.join(owned)} are set by the retraining pipeline (fresh data, candidate "
                "export); remove them",
            )


class RetrainingSpec(Spec):
    """Drift-triggered retraining: trained in each cloud's primary region, drift read and the
    candidate rolled out in every serving region of that cloud (`components.retraining`)."""

    schedule: str = Field(default="*/30 * * * *", pattern=r"^(\S+\s+){4}\S+$")
    """Cron schedule of the trigger (five fields, UTC)."""
    drift_threshold: float = Field(default=0.1, gt=0, le=10)
    """PSI at or above which a feature counts as drifted: for the server's live PSI and, on the
    fresh data, together with a two-sample test (`workloads.retrain.detect`)."""
    min_samples: int = Field(default=1000, ge=100)
    """Rows needed behind the live PSI and in the fresh-data sample."""
    canary_percent: int = Field(default=10, ge=1, le=50)
    """Traffic share of a candidate that passed the evaluation gate."""
    cooldown_hours: int = Field(default=24, ge=0, le=24 * 30)
    """After a run that ended without a canary (gate rejected, training failed), wait this long."""
    report_max_age_minutes: int = Field(default=90, ge=1, le=24 * 60)
    """Serving regions' drift reports older than this are stale: the coordinator ignores them and
    names them in its decision (keep it above the schedule's interval)."""
    stage_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)
    """Staged rollout: how long the first region's canary must hold before the other serving
    regions get the candidate."""
    fresh_data: str = Field(pattern=r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")
    """Shards prefix of recent data under the lakehouse `features` zone: drift is confirmed on it
    and the candidate is trained on it (with a held-out split the gate scores both models on)."""
    job: RetrainJobSpec


class MonitoringSpec(Spec):
    """The `aicloud:monitoring` section: what every cluster of the stack gets."""

    retention: str = Field(default="15d", pattern=r"^[1-9][0-9]*(h|d|w|y)$")
    """How long Prometheus keeps samples (`15d`, `12w`...)."""
    storage_gib: int = Field(default=100, ge=10, le=16384)
    """Size of Prometheus' persistent volume, GiB; retention also stops at 85 % of it."""
    dashboards: bool = True
    """Install Grafana and the aicloud dashboards."""
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    otel: OtelSpec = Field(default_factory=OtelSpec)
    retraining: RetrainingSpec | None = None
    """Drift-triggered retraining (off when absent)."""


def retraining_problems(spec: RetrainingSpec, regions: list[Any], image_workloads: set[str] | None) -> list[str]:
    """Problems of the retraining job against the stack's (valid) regions: it runs in each cloud's
    primary region, so its pool must exist and fit there (`StackConfig` reports them at
    `monitoring.retraining.job`; whether serving and storage exist is checked there too)."""
    from components.training import TrainingJobSpec, check_against_stack

    job = spec.job
    jobs = [
        TrainingJobSpec(name=f"retrain-{r.name}"[:40], region=r.name, **job.model_dump(exclude_none=True))
        for r in regions
        if r.primary
    ]
    return check_against_stack(jobs, regions, image_workloads)


MonitoringField = MonitoringSpec | None
"""Type of `StackConfig.monitoring` (checked against the stack by `StackConfig`)."""


# --------------------------------------------------------------------------- PromQL and rules


def drift_query(
    min_rows: int, *, by: tuple[str, ...] = ("namespace", "model", "version", "feature"), model: str | None = None
) -> str:
    """PSI per feature (grouped `by`) of server replicas whose drift window holds `min_rows` rows."""
    sel = f'{{model="{model}"}}' if model else ""
    return (
        f"max by ({', '.join(by)}) ({FEATURE_PSI}{sel} and on (instance, model, version) "
        f"({DRIFT_ROWS}{sel} >= {min_rows}))"
    )


def drift_rows_query(min_rows: int, *, model: str) -> str:
    """Rows behind the drift windows that count (replicas holding at least `min_rows`), per model."""
    return f'sum by (model) ({DRIFT_ROWS}{{model="{model}"}} >= {min_rows})'


def alert_rules(alerts: AlertsSpec) -> list[dict[str, Any]]:
    """The alerting rules (Prometheus rule format), thresholds from `alerts`."""
    a = alerts
    return [
        {
            "alert": "AicloudServingLatencyHigh",
            "expr": (
                f"histogram_quantile(0.99, sum by (le, namespace, model) (rate({REQUEST_LATENCY_BUCKET}[5m]))) "
                f"> {a.latency_p99_seconds}"
            ),
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "p99 latency of {{ $labels.model }} is above the SLO",
                "description": f"p99 request latency is {{{{ $value }}}} s (SLO {a.latency_p99_seconds} s).",
            },
        },
        {
            "alert": "AicloudServingErrorRateHigh",
            "expr": (
                f'sum by (namespace, model) (rate({REQUESTS}{{status=~"5.."}}[5m])) '
                f"/ sum by (namespace, model) (rate({REQUESTS}[5m])) > {a.error_rate}"
            ),
            "for": "10m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $labels.model }} answers too many 5xx",
                "description": (
                    f"{{{{ $value | humanizePercentage }}}} of requests fail (threshold {a.error_rate:.2%})."
                ),
            },
        },
        {
            "alert": "AicloudGpuIdleWhileAllocated",
            "expr": (
                f"max by ({GPU_WORKLOAD_NAMESPACE}, {GPU_WORKLOAD_POD}) "
                f'(DCGM_FI_DEV_GPU_UTIL{{{GPU_WORKLOAD_POD}!=""}}) < {a.gpu_idle_percent}'
            ),
            "for": f"{a.gpu_idle_minutes}m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": (
                    f"{{{{ $labels.{GPU_WORKLOAD_NAMESPACE} }}}}/{{{{ $labels.{GPU_WORKLOAD_POD} }}}} "
                    "holds a GPU it does not use"
                ),
                "description": (
                    f"GPU utilisation below {a.gpu_idle_percent} % for {a.gpu_idle_minutes} minutes while allocated; "
                    "free the GPU or scale the workload down."
                ),
            },
        },
        {
            "alert": "AicloudFeatureDrift",
            "expr": f"{drift_query(a.drift_min_rows)} > {a.drift_psi}",
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "input feature {{ $labels.feature }} of {{ $labels.model }} has drifted",
                "description": (
                    f"PSI {{{{ $value }}}} against the training reference (threshold {a.drift_psi}, "
                    f"windows of at least {a.drift_min_rows} rows)."
                ),
            },
        },
        {
            "alert": "AicloudTrainingStalled",
            "expr": f"changes({TRAINER_STEP}[{a.training_stall_minutes}m]) == 0",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "training job {{ $labels.training_job }} makes no progress",
                "description": f"No optimizer step for {a.training_stall_minutes} minutes.",
            },
        },
    ]


def prometheus_rule_manifest(name: str, alerts: AlertsSpec) -> dict[str, Any]:
    """The PrometheusRule holding `alert_rules`."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "aicloud"}},
        "spec": {"groups": [{"name": "aicloud", "rules": alert_rules(alerts)}]},
    }


# --------------------------------------------------------------------------- Helm values


def with_storage_class(values: dict[str, Any], storage_class: str | None) -> dict[str, Any]:
    """`values` with Prometheus's volume claim naming `storage_class` (the cluster's default class,
    named explicitly: EKS has none of its own)."""
    claim = (((values.get("prometheus") or {}).get("prometheusSpec") or {}).get("storageSpec") or {}).get(
        "volumeClaimTemplate"
    )
    if storage_class and isinstance(claim, dict):
        claim["spec"] = {"storageClassName": storage_class, **(claim.get("spec") or {})}
    return values


def prometheus_stack_values(spec: MonitoringSpec) -> dict[str, Any]:
    """kube-prometheus-stack values: retention and volume (`with_storage_class` names its class),
    every monitor/rule selected, Grafana's dashboard sidecar, kube-state-metrics with aicloud's
    node labels."""
    selected = {f"{kind}SelectorNilUsesHelmValues": False for kind in ("serviceMonitor", "podMonitor", "rule", "probe")}
    return {
        "fullnameOverride": RELEASE_NAME,
        "prometheus": {
            "prometheusSpec": {
                "retention": spec.retention,
                # Stop before the volume is full: a full TSDB volume stops ingestion altogether.
                "retentionSize": f"{int(spec.storage_gib * 0.85)}GB",
                "storageSpec": {
                    "volumeClaimTemplate": {
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": f"{spec.storage_gib}Gi"}},
                        }
                    }
                },
                **selected,
            }
        },
        "grafana": {
            "enabled": spec.dashboards,
            # A generated login (Monitoring creates the Secret), never the chart's default admin/admin.
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": "grafana_dashboard",
                    "labelValue": "1",
                    "searchNamespace": "ALL",
                }
            },
        },
        "kube-state-metrics": {"metricLabelsAllowlist": [f"nodes=[{','.join(NODE_LABELS_ALLOWED)}]"]},
        # node-exporter needs the host (privileged): it runs in the node agents' namespace.
        "prometheus-node-exporter": {"namespaceOverride": NODE_AGENTS_NAMESPACE},
    }


def gpu_pools(pools: list[NodePoolSpec]) -> list[NodePoolSpec]:
    return [p for p in pools if p.machine is not None and p.machine.is_gpu]


def dcgm_values(cloud: str, pools: list[NodePoolSpec]) -> dict[str, Any]:
    """dcgm-exporter values: on GPU nodes only, tolerating every GPU pool's taints, exporting
    `DCGM_METRICS`, scraped with the node name as `node` (joins with `kube_node_labels`)."""
    taints = [t for p in gpu_pools(pools) for t in pool_taints(p)]
    metrics_csv = "\n".join(f"{field}, {kind}, {help_}" for field, kind, help_ in DCGM_METRICS) + "\n"
    metrics_volume = {
        "name": "exporter-metrics-volume",
        "configMap": {
            "name": "exporter-metrics-config-map",
            "items": [{"key": "metrics", "path": "default-counters.csv"}],
        },
    }
    metrics_mount = {
        "name": "exporter-metrics-volume",
        "mountPath": "/etc/dcgm-exporter/default-counters.csv",
        "subPath": "default-counters.csv",
    }
    values: dict[str, Any] = {
        "arguments": ["-f", "/etc/dcgm-exporter/default-counters.csv"],
        "customMetrics": metrics_csv,
        "tolerations": tolerations_for(taints),
        "affinity": gpu_nodes_only(),
        "serviceMonitor": {
            "enabled": True,
            "interval": "15s",
            "relabelings": [
                {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}
            ],
        },
        "extraConfigMapVolumes": [metrics_volume],
        "extraVolumeMounts": [metrics_mount],
    }
    if cloud == "gcp":
        # GKE installs the driver on the host under /home/kubernetes/bin/nvidia (COS nodes), which
        # the exporter reads privileged. Helm merges this map into the chart's default container
        # securityContext, whose `allowPrivilegeEscalation: false` the API server refuses next to
        # `privileged: true`: override it explicitly (privileged implies escalation anyway).
        values["securityContext"] = {"privileged": True, "allowPrivilegeEscalation": True}
        values["extraHostVolumes"] = [
            {"name": "nvidia-install-dir-host", "hostPath": "/home/kubernetes/bin/nvidia"},
            {"name": "vulkan-icd-mount", "hostPath": "/home/kubernetes/bin/nvidia/vulkan/icd.d"},
        ]
        values["extraVolumeMounts"] = [
            {"name": "nvidia-install-dir-host", "mountPath": "/usr/local/nvidia", "readOnly": True},
            {"name": "vulkan-icd-mount", "mountPath": "/etc/vulkan/icd.d", "readOnly": True},
            metrics_mount,
        ]
        values["extraEnv"] = [{"name": "DCGM_EXPORTER_KUBERNETES_GPU_ID_TYPE", "value": "device-name"}]
    return values


CRITICAL_PRIORITY_CLASSES = ("system-node-critical", "system-cluster-critical")
"""Priority classes the API server admits outside `kube-system` only under a ResourceQuota that
covers them (GKE configures this limit and ships such a quota in `kube-system` only)."""


def dcgm_priority_class(values: dict[str, Any]) -> str | None:
    """The priority class the dcgm-exporter pods get: ours, else the pinned chart's default."""
    if "priorityClassName" in values:
        return values["priorityClassName"] or None
    truth = chart_truth(DCGM_EXPORTER_CHART["chart"])
    return (truth.values.get("priorityClassName") or None) if truth is not None else None


def critical_pods_quota_manifest(namespace: str, priority_class: str, pods: int) -> dict[str, Any]:
    """A ResourceQuota admitting up to `pods` pods of a critical `priority_class` in `namespace`."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": f"{priority_class}-pods", "namespace": namespace},
        "spec": {
            "hard": {"pods": str(pods)},
            "scopeSelector": {
                "matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": [priority_class]}]
            },
        },
    }


def dcgm_quota(cloud: str, pools: list[NodePoolSpec], values: dict[str, Any]) -> dict[str, Any] | None:
    """On GKE, the quota the exporter's critical priority class needs in `NODE_AGENTS_NAMESPACE` (one pod per
    GPU node at the pools' `maxNodes`, doubled for a rolling update); None where none is needed."""
    priority = dcgm_priority_class(values)
    if cloud != "gcp" or priority not in CRITICAL_PRIORITY_CLASSES:
        return None
    nodes = sum(p.max_nodes for p in gpu_pools(pools))
    return critical_pods_quota_manifest(NODE_AGENTS_NAMESPACE, priority, max(2 * nodes, 2))


def otel_values(otel: OtelSpec) -> dict[str, Any]:
    """OpenTelemetry collector values: OTLP in, the trace backend (or the debug log) out."""
    exporter = (
        {"otlp": {"endpoint": otel.traces_endpoint, "tls": {"insecure": True}}}
        if otel.traces_endpoint
        else {"debug": {"verbosity": "basic"}}
    )
    return {
        "mode": "deployment",
        "image": {"repository": "otel/opentelemetry-collector-k8s"},
        "config": {
            "exporters": exporter,
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": list(exporter)}}},
        },
    }


# --------------------------------------------------------------------------- monitors, dashboards


def pod_monitor_manifest(
    name: str, selector: dict[str, Any], port: str | int, path: str, relabel: dict[str, str]
) -> dict[str, Any]:
    """A PodMonitor in every namespace for pods matching `selector`, scraping the named `port` (or
    the port number, for pods that cannot declare it); `relabel` copies pod labels
    (`__meta_kubernetes_pod_label_*`) onto the series."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "aicloud"}},
        "spec": {
            "namespaceSelector": {"any": True},
            "selector": selector,
            "podMetricsEndpoints": [
                {
                    **({"portNumber": port} if isinstance(port, int) else {"port": port}),
                    "path": path,
                    "interval": "15s",
                    "relabelings": [
                        {"sourceLabels": [source], "targetLabel": target, "action": "replace"}
                        for source, target in relabel.items()
                    ],
                }
            ],
        },
    }


def monitor_manifests() -> list[dict[str, Any]]:
    """PodMonitors for the model server and the trainer, selecting the labels their components set."""
    from components.endpoint import APP, METRICS_PATH
    from components.training import JOB_LABEL, METRICS_PORT_NAME
    from contracts.serving import METRICS_PORT

    return [
        # By number: serverless KServe pods may declare only their inference port.
        pod_monitor_manifest(
            "model-server",
            {"matchLabels": {"app.kubernetes.io/name": APP}},
            METRICS_PORT,
            METRICS_PATH,
            {"__meta_kubernetes_pod_label_aicloud_dev_track": "track"},
        ),
        pod_monitor_manifest(
            "trainer",
            {"matchExpressions": [{"key": JOB_LABEL, "operator": "Exists"}]},
            METRICS_PORT_NAME,
            "/metrics",
            {"__meta_kubernetes_pod_label_aicloud_dev_training_job": "training_job"},
        ),
    ]


def dashboard_config_maps(drift_threshold: float) -> list[dict[str, Any]]:
    """One ConfigMap per dashboard JSON, labelled for Grafana's sidecar."""
    out = []
    for name, dashboard in load_dashboards().items():
        if name == "serving":
            dashboard = with_drift_threshold(dashboard, drift_threshold)
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"aicloud-dashboard-{name}",
                    "namespace": NAMESPACE,
                    "labels": {"grafana_dashboard": "1", "app.kubernetes.io/part-of": "aicloud"},
                },
                "data": {f"aicloud-{name}.json": json.dumps(dashboard, indent=1, sort_keys=True)},
            }
        )
    return out


# --------------------------------------------------------------------------- component


class Monitoring(pulumi.ComponentResource):
    """Prometheus, Grafana, DCGM exporter, monitors, dashboards and alerts in one cluster.

    Create it under the region's Kubernetes provider (`opts.providers`), parented to the region.
    """

    def __init__(
        self,
        name: str,
        spec: MonitoringSpec,
        *,
        cloud: str,
        pools: list[NodePoolSpec],
        region_key: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("observability", "Monitoring"), name, None, opts)
        self.spec = spec
        ns = secure_namespace(
            f"{name}-ns", NAMESPACE, parent=self, labels={"app.kubernetes.io/part-of": "aicloud"},
            allows=[*MONITORING_ALLOWS, *([OTEL_ALLOW] if spec.otel.enabled else [])],
        )  # fmt: skip
        agents = secure_namespace(
            f"{name}-agents-ns", NODE_AGENTS_NAMESPACE, parent=self, level="privileged", reason=NODE_AGENTS_REASON,
            labels={"app.kubernetes.io/part-of": "aicloud"}, allows=NODE_AGENTS_ALLOWS,
        )  # fmt: skip
        admin: list[pulumi.Resource] = []
        if spec.dashboards:
            password = random.RandomPassword(f"{name}-grafana-admin", length=32, special=False, opts=child_opts(self))
            admin.append(
                k8s.core.v1.Secret(
                    f"{name}-grafana-admin",
                    metadata={
                        "name": GRAFANA_ADMIN_SECRET,
                        "namespace": NAMESPACE,
                        "labels": {"app.kubernetes.io/part-of": "aicloud"},
                    },
                    type="Opaque",
                    string_data={"admin-user": "admin", "admin-password": password.result},
                    opts=child_opts(password, depends_on=[ns]),
                )
            )
        self.stack = helm_release(
            f"{name}-kps",
            KUBE_PROMETHEUS_STACK_CHART,
            release_name=RELEASE_NAME,
            namespace=NAMESPACE,
            values=with_storage_class(prometheus_stack_values(spec), STORAGE_CLASS.get(cloud)),
            opts=child_opts(self, depends_on=[ns, agents, *admin]),
        )
        after_crds = child_opts(self, depends_on=[self.stack])
        gpus = gpu_pools(pools)
        self.dcgm: k8s.helm.v3.Release | None = None
        self.dcgm_quota: k8s.core.v1.ResourceQuota | None = None
        if gpus:
            dcgm = dcgm_values(cloud, pools)
            quota = dcgm_quota(cloud, pools, dcgm)
            dcgm_deps: list[pulumi.Resource] = [self.stack]
            if quota is not None:
                self.dcgm_quota = k8s.core.v1.ResourceQuota(
                    f"{name}-dcgm-quota",
                    metadata=quota["metadata"],
                    spec=quota["spec"],
                    opts=child_opts(self, depends_on=[agents]),
                )
                dcgm_deps.append(self.dcgm_quota)
            self.dcgm = helm_release(
                f"{name}-dcgm",
                DCGM_EXPORTER_CHART,
                release_name="dcgm-exporter",
                namespace=NODE_AGENTS_NAMESPACE,
                values=dcgm,
                opts=child_opts(self, depends_on=dcgm_deps),
            )
        monitors = monitor_manifests()
        for manifest in monitors:
            custom_resource(f"{name}-{manifest['metadata']['name']}-monitor", manifest, after_crds)
        rule = prometheus_rule_manifest("aicloud-alerts", spec.alerts)
        custom_resource(f"{name}-alerts", rule, after_crds)
        dashboards = dashboard_config_maps(spec.alerts.drift_psi) if spec.dashboards else []
        for cm in dashboards:
            k8s.core.v1.ConfigMap(
                f"{name}-{cm['metadata']['name'].removeprefix('aicloud-')}",
                metadata=cm["metadata"],
                data=cm["data"],
                opts=child_opts(self, depends_on=[ns]),
            )
        if spec.otel.enabled:
            helm_release(
                f"{name}-otel",
                OTEL_COLLECTOR_CHART,
                release_name="otel-collector",
                namespace=NAMESPACE,
                values=otel_values(spec.otel),
                opts=child_opts(self, depends_on=[ns]),
            )
        self.prometheus_url = PROMETHEUS_URL
        self.register_outputs(
            {
                "region": region_key,
                "cloud": cloud,
                "namespace": NAMESPACE,
                "nodeAgentsNamespace": NODE_AGENTS_NAMESPACE,
                "grafanaAdminSecret": GRAFANA_ADMIN_SECRET if spec.dashboards else None,
                "prometheus": {"retention": spec.retention, "storageGib": spec.storage_gib, "url": PROMETHEUS_URL},
                "charts": {
                    "kube-prometheus-stack": KUBE_PROMETHEUS_STACK_CHART["version"],
                    **({"dcgm-exporter": DCGM_EXPORTER_CHART["version"]} if gpus else {}),
                    **({"opentelemetry-collector": OTEL_COLLECTOR_CHART["version"]} if spec.otel.enabled else {}),
                },
                "dcgmPools": [p.name for p in gpus],
                "dashboards": [cm["metadata"]["name"] for cm in dashboards],
                "monitors": [m["metadata"]["name"] for m in monitors],
                "alerts": [{"name": r["alert"], "expr": r["expr"], "for": r["for"]} for r in alert_rules(spec.alerts)],
                "otel": spec.otel.enabled,
            }
        )
