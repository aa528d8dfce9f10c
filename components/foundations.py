"""Cluster foundations: what every workload in a cluster assumes exists.

On EKS nothing of this comes with the cluster (EKS 1.30+ has no default StorageClass, no CSI
driver for EBS volumes and no metrics API), so `ClusterFoundations` installs:

- the EBS CSI driver as the EKS add-on `aws-ebs-csi-driver`, with its own IRSA role (the AWS
  managed `AmazonEBSCSIDriverPolicy`), and a default StorageClass `gp3` (encrypted, expandable,
  bound when the pod is scheduled so the volume lands in the pod's zone);
- metrics-server (Helm), the resource metrics API CPU-based HPAs read;
- prometheus-adapter (Helm) when the region's endpoint autoscales on a custom per-pod metric
  (`autoscaling.mode: metric`): the custom metrics API, serving the request rate from Prometheus.
  (`mode: keda` brings KEDA, which reads Prometheus itself; the endpoint installs it.)

GKE ships all three (Compute Engine PD CSI driver with the default `standard-rwo` class, and
metrics-server); its foundations only record what workloads can rely on, plus prometheus-adapter
when needed.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.base import child_opts, merge_tags, type_token
from components.helm import helm_release
from components.identity import irsa_trust_policy
from components.upstream import chart_pin
from contracts.serving import REQUESTS_METRIC

EBS_CSI_ADDON = "aws-ebs-csi-driver"
EBS_CSI_PROVISIONER = "ebs.csi.aws.com"
EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
GKE_PD_PROVISIONER = "pd.csi.storage.gke.io"
STORAGE_CLASS = {"aws": "gp3", "gcp": "standard-rwo"}
"""The default StorageClass of each cloud's clusters: ours on EKS, GKE's own on GKE."""
GKE_BUILTIN_CLASSES = {"standard-rwo": GKE_PD_PROVISIONER, "premium-rwo": GKE_PD_PROVISIONER}
METRICS_SERVER_CHART = chart_pin("metrics-server")
PROMETHEUS_ADAPTER_CHART = chart_pin("prometheus-adapter")
REQUEST_COUNTER = REQUESTS_METRIC
"""The model server's request counter (`contracts.serving`, as `workloads.server.metrics.REQUESTS`)."""


def storage_class_manifest() -> dict[str, Any]:
    """EKS's default StorageClass: encrypted gp3 through the EBS CSI driver."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS["aws"],
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": EBS_CSI_PROVISIONER,
        "parameters": {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
        "reclaimPolicy": "Delete",
    }


def prometheus_adapter_values(metrics: list[str], prometheus_url: str) -> dict[str, Any]:
    """prometheus-adapter values: one custom per-pod metric per name, each the server's request
    rate over two minutes (what `autoscaling.requestsPerSecond` is a target for)."""
    url, _, port = prometheus_url.rpartition(":")
    return {
        "prometheus": {"url": url, "port": int(port)},
        "rules": {
            "default": False,
            "custom": [
                {
                    "seriesQuery": f'{REQUEST_COUNTER}{{namespace!="",pod!=""}}',
                    "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
                    "name": {"matches": f"^{REQUEST_COUNTER}$", "as": metric},
                    "metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
                }
                for metric in metrics
            ],
        },
    }


class ClusterFoundations(pulumi.ComponentResource):
    """Storage driver and default class, metrics API, custom metrics API of one cluster.

    Create it under the region's cloud provider; `k8s_provider` is the cluster's.
    """

    storage_class: str
    """Name of the cluster's default StorageClass (PVCs should name it)."""
    ready: list[pulumi.Resource]
    """What a workload with volumes or autoscalers should be applied after."""

    def __init__(
        self,
        name: str,
        *,
        cloud: str,
        cluster: Any,
        k8s_provider: k8s.Provider,
        custom_metrics: list[str] | None = None,
        prometheus_url: str | None = None,
        tags: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("platform", "ClusterFoundations"), name, None, opts)
        k8s_opts = child_opts(self, provider=k8s_provider)
        self.storage_class = STORAGE_CLASS[cloud]
        self.ready = []
        installed: dict[str, Any] = {}
        if cloud == "aws":
            namespace, sa = EBS_CSI_SERVICE_ACCOUNT
            role = aws.iam.Role(
                f"{name}-ebs-csi",
                assume_role_policy=pulumi.Output.all(cluster.oidc_provider_arn, cluster.oidc_issuer).apply(
                    lambda a: json.dumps(irsa_trust_policy(a[0], a[1], namespace, sa))
                ),
                tags=merge_tags(tags),
                opts=child_opts(self),
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-ebs-csi-policy",
                role=role.name,
                policy_arn="arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
                opts=child_opts(role),
            )
            addon = aws.eks.Addon(
                f"{name}-{EBS_CSI_ADDON}",
                cluster_name=cluster.cluster_name,
                addon_name=EBS_CSI_ADDON,
                service_account_role_arn=role.arn,
                resolve_conflicts_on_update="OVERWRITE",
                opts=child_opts(self),
            )
            sc = storage_class_manifest()
            storage = k8s.storage.v1.StorageClass(
                f"{name}-storage-class",
                metadata=sc["metadata"],
                provisioner=sc["provisioner"],
                parameters=sc["parameters"],
                volume_binding_mode=sc["volumeBindingMode"],
                allow_volume_expansion=sc["allowVolumeExpansion"],
                reclaim_policy=sc["reclaimPolicy"],
                opts=child_opts(self, provider=k8s_provider, depends_on=[addon]),
            )
            metrics = helm_release(
                f"{name}-metrics-server",
                "metrics-server",
                namespace="kube-system",
                release_name="metrics-server",
                opts=k8s_opts,
            )
            self.ready += [addon, storage, metrics]
            installed = {
                "storageDriver": f"EKS add-on {EBS_CSI_ADDON}",
                "metricsApi": f"metrics-server {METRICS_SERVER_CHART['version']}",
            }
        else:
            installed = {"storageDriver": "GKE Compute Engine PD CSI driver (built in)", "metricsApi": "GKE (built in)"}
        if custom_metrics:
            if not prometheus_url:
                raise ValueError(f"{name}: custom metrics {custom_metrics} need Prometheus (aicloud:monitoring)")
            adapter = helm_release(
                f"{name}-prometheus-adapter",
                "prometheus-adapter",
                release_name="prometheus-adapter",
                namespace="kube-system",
                values=prometheus_adapter_values(sorted(custom_metrics), prometheus_url),
                opts=k8s_opts,
            )
            self.ready.append(adapter)
            installed["customMetricsApi"] = f"prometheus-adapter {PROMETHEUS_ADAPTER_CHART['version']}"
        self.register_outputs(
            {
                "cloud": cloud,
                "storageClass": self.storage_class,
                "provisioner": EBS_CSI_PROVISIONER if cloud == "aws" else GKE_PD_PROVISIONER,
                "customMetrics": sorted(custom_metrics or []),
                **installed,
            }
        )
