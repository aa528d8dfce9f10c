"""GPU guardrails: GPU pools are tainted, GPU workloads tolerate the pool they land on and never ask
for GPUs on CPU pools, and the NVIDIA device plugin reaches every GPU pool and only GPU nodes.

These are the failure modes that leave GPUs idle while pods wait: a taint the device plugin does not
tolerate (the GPUs are never advertised), a workload without the pool's toleration (Pending forever),
a device plugin DaemonSet on CPU nodes, ordinary pods filling a GPU node.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pulumi_policy import ReportViolation

from policies.common import (
    GPU_TAINT_KEY,
    KARPENTER_NODEPOOL,
    UNKNOWN,
    PodTemplate,
    Pool,
    Res,
    Rule,
    StackView,
    Taint,
    as_dict,
    as_list,
    dig,
    pod_templates,
    pool_of,
    pools,
    requests_gpu,
    schedulable_on,
    selects_nodes,
    tolerates,
)
from policies.security import k8s_name

HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart", "kubernetes:helm.sh/v3:Chart")
DEVICE_PLUGIN_CHARTS = ("nvidia-device-plugin", "gpu-operator")
GPU_NODE_LABELS = (
    "aicloud.dev/gpu",
    "aicloud.dev/accelerator",
    "nvidia.com/gpu.present",
    "k8s.amazonaws.com/accelerator",
    "cloud.google.com/gke-accelerator",
    "feature.node.kubernetes.io/pci-10de.present",
)
"""Node labels that only GPU nodes carry: a device plugin pinned to one of them stays off CPU nodes."""

BLOCKING = ("NoSchedule", "NoExecute")


def _display(pool: Pool) -> str:
    return pool.label if isinstance(pool.label, str) else pool.res.name


def _taints(taints: list[Taint]) -> str:
    return f"taint{'s' if len(taints) > 1 else ''} {', '.join(map(str, taints))}"


def _gpu_pods(view: StackView) -> Iterator[tuple[Res, PodTemplate]]:
    for res in view.resources:
        for tpl in pod_templates(res):
            if requests_gpu(tpl.spec):
                yield res, tpl


def pool_tainted(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    pool = pool_of(res)
    if pool is None or not pool.is_gpu:
        return
    if res.type == KARPENTER_NODEPOOL:
        raw = dig(res.props, "spec.template.spec.taints")
    else:
        raw = res.props.get("taints") if pool.cloud == "aws" else dig(res.props, "nodeConfig.taints")
    if raw is UNKNOWN or any(t.key == GPU_TAINT_KEY and t.effect in BLOCKING for t in pool.taints):
        return
    report(
        f"GPU node pool '{res.name}' ({pool.machine_type}) has no nvidia.com/gpu NoSchedule taint, so ordinary "
        "pods can fill its GPU nodes. Add the taint nvidia.com/gpu=present:NoSchedule (aicloud's node pool "
        "components add it to every GPU machine type)."
    )


def workload_tolerates_pool(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    every = pools(view)
    for res, tpl in _gpu_pods(view):
        tolerations = tpl.spec.get("tolerations")
        if tolerations is UNKNOWN:
            continue
        landing = [p for p in every if p.is_gpu and view.same_scope(res, p.res) and schedulable_on(tpl.spec, p.labels)]
        missing = {
            _display(p): [t for t in p.taints if t.effect in BLOCKING and not tolerates(tolerations, t)]
            for p in landing
        }
        if not landing or any(not m for m in missing.values()):
            continue
        what = f"{res.kind} '{k8s_name(res)}'"
        if len(missing) == 1:
            ((pool, taints),) = missing.items()
            report(
                f"{what} requests nvidia.com/gpu on node pool '{pool}' but does not tolerate its {_taints(taints)}. "
                "Add the matching tolerations (components.nodepool.tolerations_for builds them from the pool's "
                "taints), or its pods stay Pending.",
                res.urn,
            )
        else:
            details = "; ".join(f"'{pool}' needs {', '.join(map(str, taints))}" for pool, taints in missing.items())
            report(
                f"{what} requests nvidia.com/gpu but tolerates none of the GPU node pools it may land on ({details}). "
                "Add the tolerations of the pool it should use (components.nodepool.tolerations_for builds them), "
                "or its pods stay Pending.",
                res.urn,
            )


def gpu_request_on_gpu_pool(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    every = pools(view)
    for res, tpl in _gpu_pods(view):
        scope = [p for p in every if view.same_scope(res, p.res)]
        if not scope:
            continue  # no pool of its cluster is visible: nothing to judge against
        admitted = [p for p in scope if schedulable_on(tpl.spec, p.labels)]
        if any(p.is_gpu for p in admitted):
            continue
        what = f"{res.kind} '{k8s_name(res)}'"
        if admitted and selects_nodes(tpl.spec):
            names = ", ".join(f"'{_display(p)}' ({p.machine_type})" for p in admitted)
            report(
                f"{what} requests nvidia.com/gpu but can only land on node pools without GPUs: {names}. Its pods "
                "can never schedule; select a GPU pool with nodeSelector aicloud.dev/pool.",
                res.urn,
            )
        elif selects_nodes(tpl.spec):
            report(
                f"{what} requests nvidia.com/gpu but its node selection matches no node pool of its cluster. "
                "Select an existing GPU pool with nodeSelector aicloud.dev/pool.",
                res.urn,
            )
        else:
            report(
                f"{what} requests nvidia.com/gpu but its cluster has no GPU node pool. Add a GPU pool to the "
                "region, or deploy the workload where one exists.",
                res.urn,
            )


def _device_plugins(view: StackView) -> list[Res]:
    return [
        r
        for r in view.resources
        if r.type in HELM_TYPES and any(c in str(r.props.get("chart", "")) for c in DEVICE_PLUGIN_CHARTS)
    ]


def _plugin_tolerations(plugin: Res) -> Any:
    values = plugin.props.get("values")
    if values is UNKNOWN:
        return UNKNOWN
    tolerations = dig(values, "tolerations")
    if tolerations is None:
        tolerations = dig(values, "daemonsets.tolerations")
    return tolerations


def device_plugin_tolerates_pools(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    gpu_pools = [p for p in pools(view) if p.is_gpu]
    for plugin in _device_plugins(view):
        tolerations = _plugin_tolerations(plugin)
        if tolerations is UNKNOWN:
            continue
        for pool in gpu_pools:
            if not view.same_scope(plugin, pool.res):
                continue
            missing = [t for t in pool.taints if t.effect in BLOCKING and not tolerates(tolerations, t)]
            if missing:
                report(
                    f"The NVIDIA device plugin '{plugin.name}' does not tolerate the {_taints(missing)} of GPU node "
                    f"pool '{_display(pool)}', so it never runs there and the pool's GPUs stay invisible to "
                    "Kubernetes. Add the tolerations to the chart's values (components.nodepool."
                    "device_plugin_values builds them from every GPU pool).",
                    plugin.urn,
                )


def device_plugin_selects_pools(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    gpu_pools = [p for p in pools(view) if p.is_gpu]
    for plugin in _device_plugins(view):
        values = plugin.props.get("values")
        if "nvidia-device-plugin" not in str(plugin.props.get("chart", "")) or not isinstance(values, dict):
            continue
        for pool in gpu_pools:
            if view.same_scope(plugin, pool.res) and not schedulable_on(values, pool.labels):
                report(
                    f"The NVIDIA device plugin '{plugin.name}' is never scheduled onto GPU node pool "
                    f"'{_display(pool)}': its node selection excludes the pool's labels, so the pool's GPUs stay "
                    "invisible to Kubernetes. Keep aicloud's aicloud.dev/gpu=true label on every GPU pool, or widen "
                    "the plugin's nodeSelector/affinity to match it.",
                    plugin.urn,
                )


def device_plugin_present(view: StackView, config: dict[str, Any], report: ReportViolation) -> None:
    plugins = _device_plugins(view)
    for pool in pools(view):
        if pool.cloud != "aws" or not pool.is_gpu:
            continue  # GKE installs and manages its own device plugin
        if not any(view.same_scope(plugin, pool.res) for plugin in plugins):
            report(
                f"EKS GPU node pool '{pool.res.name}' has no NVIDIA device plugin in its cluster, so its GPUs are "
                "never advertised to Kubernetes and GPU pods stay Pending. Install the nvidia-device-plugin Helm "
                "chart in the cluster (aicloud's RegionalPlatform does this in every EKS region with GPU pools).",
                pool.res.urn,
            )


def device_plugin_gpu_nodes_only(res: Res, config: dict[str, Any], report: ReportViolation) -> None:
    if "nvidia-device-plugin" not in str(res.props.get("chart", "")):
        return
    values = res.props.get("values")
    if values is UNKNOWN:
        return
    selector = as_dict(dig(values, "nodeSelector"))
    terms = as_list(
        dig(values, "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms")
    )
    pinned_terms = terms and all(
        any(
            dig(e, "key") in GPU_NODE_LABELS and dig(e, "operator") in ("In", "Exists")
            for e in as_list(dig(t, "matchExpressions"))
        )
        for t in terms
    )
    if any(k in GPU_NODE_LABELS for k in selector) or pinned_terms:
        return
    report(
        f"The NVIDIA device plugin '{res.name}' is not pinned to GPU nodes, so its DaemonSet also lands on CPU "
        "nodes. Add a required node affinity (or a nodeSelector) on aicloud.dev/gpu=true to its values."
    )


RULES = [
    Rule(
        "aicloud-gpu-pool-tainted",
        "Every GPU node pool carries the nvidia.com/gpu NoSchedule taint.",
        "gpu",
        pool_tainted,
        types=("aws:eks/nodeGroup:NodeGroup", "gcp:container/nodePool:NodePool", KARPENTER_NODEPOOL),
    ),
    Rule(
        "aicloud-gpu-workload-tolerates-pool",
        "Every workload that requests nvidia.com/gpu tolerates the taints of the GPU pool it selects.",
        "gpu",
        workload_tolerates_pool,
        stack=True,
    ),
    Rule(
        "aicloud-gpu-request-on-gpu-pool",
        "No workload requests nvidia.com/gpu on node pools without GPUs.",
        "gpu",
        gpu_request_on_gpu_pool,
        stack=True,
    ),
    Rule(
        "aicloud-gpu-device-plugin-tolerates-pools",
        "The NVIDIA device plugin tolerates the taints of every GPU pool in its cluster.",
        "gpu",
        device_plugin_tolerates_pools,
        stack=True,
    ),
    Rule(
        "aicloud-gpu-device-plugin-selects-pools",
        "The NVIDIA device plugin's node selection admits every GPU pool in its cluster.",
        "gpu",
        device_plugin_selects_pools,
        stack=True,
    ),
    Rule(
        "aicloud-gpu-device-plugin-present",
        "Every EKS cluster with GPU pools runs the NVIDIA device plugin.",
        "gpu",
        device_plugin_present,
        stack=True,
    ),
    Rule(
        "aicloud-gpu-device-plugin-gpu-nodes-only",
        "The NVIDIA device plugin is pinned to GPU nodes.",
        "gpu",
        device_plugin_gpu_nodes_only,
        types=HELM_TYPES,
    ),
]
