"""Readiness: will every workload of a stack actually run in the cluster it lands in?

Pulumi's mock runtime accepts any input, so a green plan proves the shape of a stack, not that it
works. This check reads the same resources a policy pack is given (`policies.common.StackView`),
per cluster, against upstream truth vendored at the pinned versions (`components.upstream`):

- custom resources validate against their upstream CRDs, and a chart that installs that CRD and its
  controller is released into the same cluster by the same stack (`readiness-crd-schema`,
  `readiness-crd-controller`); built-in kinds validate against the cluster version's OpenAPI;
- Helm releases name a chart version its repository publishes (`readiness-helm-chart`), set only keys
  the pinned chart has (`readiness-helm-values`), and their values merged into the chart's defaults
  as Helm merges them produce pods the API server admits (`readiness-pod-admission`);
- PVCs have a provisioner, HPAs a metrics API, ScaledObject triggers a Prometheus that exists
  (`readiness-storage`, `readiness-metrics`);
- every pod template fits some node pool of its cluster (selectors, taints, requests against the
  machine's allocatable minus DaemonSets), the worst case at max fits the pools' maximum, and a pool
  that must grow has an autoscaler (`readiness-schedulable`, `readiness-capacity`);
- the ServiceAccounts workloads use exist and carry the identity their cloud role trusts, and each
  role trusts exactly that namespace/name (`readiness-identity`).

A kind with no vendored CRD or a chart with no vendored truth is a finding ("cannot check"), never
skipped. `report(view)` runs everything once per stack; the rules (`RULES`) and the plan's Readiness
section read that report.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import ReportViolation

from components import upstream
from components.capacity import TIER_KINDS, TIER_LABEL
from components.k8s_schema import UnknownKind, is_builtin, object_errors
from policies.common import (
    UNKNOWN,
    PodTemplate,
    Pool,
    Res,
    Rule,
    StackView,
    as_dict,
    as_list,
    dig,
    karpenter_pool,
    machine,
    pod_templates,
    policy_json,
    pool_of,
    schedulable_on,
    tolerates,
)
from policies.readiness.admission import PSA_ENFORCE
from policies.readiness.admission import violations as psa_violations
from policies.readiness.gateways import GATEWAY_GROUP, GKE_GATEWAY_CLASSES, istio_data_plane
from policies.readiness.helm import check_keys, dicts_named, merged_values
from policies.readiness.schedule import RESOURCE_NAMES, allocatable, pod_requests, pods_per_node, surge

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
KARPENTER_NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
DEFAULT_K8S_VERSION = "1.33"

# What each cloud's clusters have without anything installed (cloud documentation).
BUILTIN_APIS = {
    # GKE runs metrics-server and the PD/Filestore CSI drivers itself; its default StorageClass is
    # `standard-rwo` (pd.csi.storage.gke.io).
    "gcp": {"metrics.k8s.io", "csi:pd.csi.storage.gke.io", "csi:filestore.csi.storage.gke.io"},
    # EKS has no metrics-server, no CSI driver and (1.30+) no default StorageClass.
    "aws": set(),
}
BUILTIN_STORAGE_CLASSES = {
    "gcp": {"standard-rwo": "pd.csi.storage.gke.io", "standard": "pd.csi.storage.gke.io",
            "premium-rwo": "pd.csi.storage.gke.io"},
    "aws": {},
}  # fmt: skip
DEFAULT_STORAGE_CLASS = {"gcp": "standard-rwo", "aws": None}
EKS_ADDON_APIS = {
    "aws-ebs-csi-driver": "csi:ebs.csi.aws.com",
    "aws-efs-csi-driver": "csi:efs.csi.aws.com",
    "aws-mountpoint-s3-csi-driver": "csi:s3.csi.aws.com",
    "metrics-server": "metrics.k8s.io",
}
IN_TREE_PROVISIONERS = {"kubernetes.io/aws-ebs": "ebs.csi.aws.com", "kubernetes.io/gce-pd": "pd.csi.storage.gke.io"}
SYSTEM_DAEMONSET_REQUESTS = {
    # Per node, requests of the DaemonSets the cloud itself runs on every node: EKS aws-node
    # (25m) and kube-proxy (100m); GKE kube-proxy (100m), fluentbit-gke (50m, 100Mi) and
    # gke-metrics-agent (8m, 60Mi).
    "aws": {"cpu": 0.125, "memory": 0.0},
    "gcp": {"cpu": 0.158, "memory": 160 * 2**20},
}
CRITICAL_PRIORITY = ("system-node-critical", "system-cluster-critical")


@dataclass
class Finding:
    rule: str
    cluster: str
    resource: str
    """`<type token kind>/<name>` of the resource the finding is about."""
    path: str
    """Key path inside it (`spec.triggers[0].metadata.serverAddress`, `values.securityContext`)."""
    message: str
    urn: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "cluster": self.cluster,
            "resource": self.resource,
            "path": self.path,
            "message": self.message,
            "urn": self.urn,
        }


@dataclass
class Release:
    res: Res
    chart: str
    version: str
    repo: str | None
    namespace: str
    values: dict[str, Any]
    truth: upstream.ChartTruth | None
    merged: dict[str, Any] | None = None


@dataclass
class Workload:
    res: Res
    template: PodTemplate
    namespace: str
    pods_at_max: int
    """Pods of this template at the workload's maximum (autoscaler max + surge, or gang size)."""
    pods_at_min: int
    request: dict[str, float]
    pools: list[tuple[str, int]] = field(default_factory=list)
    """(pool, pods per node) of every pool the pod fits on."""

    @property
    def name(self) -> str:
        where = self.template.where
        part = (
            where.split(".")[2]
            if "ReplicaSpecs" in where
            else where.split("replicatedJobs[", 1)[1].rstrip("]")
            if "replicatedJobs[" in where and self.res.kind == "TrainJob"
            else ""
        )
        return f"{self.res.kind}/{_meta_name(self.res)}" + (f" ({part})" if part else "")


@dataclass
class Cluster:
    key: str
    cloud: str
    version: str
    objects: list[Res] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    pools: list[Pool] = field(default_factory=list)
    addons: list[str] = field(default_factory=list)
    gke_autoscaling: bool = False
    gateway_api: bool = False
    workloads: list[Workload] = field(default_factory=list)

    def apis(self) -> set[str]:
        """APIs and CSI drivers the cluster serves: the cloud's own, its add-ons', its charts'."""
        out = set(BUILTIN_APIS.get(self.cloud, ()))
        out |= {EKS_ADDON_APIS[a] for a in self.addons if a in EKS_ADDON_APIS}
        for rel in self.releases:
            if rel.truth is not None:
                out |= set(rel.truth.provides)
                out |= {f"chart:{rel.truth.name}", *(f"chart:{s}" for s in rel.truth.subcharts.values())}
        if self.gke_autoscaling:
            out.add("node-autoscaler")
        for res in self.objects:
            if res.kind == "CustomResourceDefinition":
                group, kind = dig(res.props, "spec.group"), dig(res.props, "spec.names.kind")
                if isinstance(group, str) and isinstance(kind, str):
                    out.add(f"crd:{group}/{kind}")
        if self.gateway_api:
            # GKE's managed Gateway API: the CRDs and GKE's controller of its own classes.
            out.add(f"crd:{GATEWAY_GROUP}/*")
            out |= {f"gatewayclass:{k}" for k in GKE_GATEWAY_CLASSES}
        return out


@dataclass
class Report:
    clusters: dict[str, Cluster]
    findings: list[Finding]
    crs_validated: int = 0
    objects_validated: int = 0
    helm_keys_checked: int = 0
    helm_keys_unknown: int = 0

    def by_rule(self, rule: str) -> list[Finding]:
        return [f for f in self.findings if f.rule == rule]


def _meta_name(res: Res) -> str:
    name = dig(res.props, "metadata.name")
    return name if isinstance(name, str) else res.name


def _namespace(res: Res) -> str:
    ns = dig(res.props, "metadata.namespace")
    return ns if isinstance(ns, str) else "default"


def _label(res: Res) -> str:
    kind = res.kind if res.type != HELM_RELEASE else "HelmRelease"
    name = res.props.get("name") if res.type == HELM_RELEASE else _meta_name(res)
    return f"{kind}/{name if isinstance(name, str) else res.name}"


# --------------------------------------------------------------------------- inventory


def _cluster_key(view: StackView, res: Res) -> str:
    cluster, region = view.scope(res)
    node = view.by_urn.get(region or cluster or "")
    return node.name if node is not None else "stack"


def inventory(view: StackView) -> dict[str, Cluster]:
    """Per cluster: its Kubernetes objects, Helm releases, node pools and add-ons."""
    clusters: dict[str, Cluster] = {}

    def get(key: str) -> Cluster:
        if key not in clusters:
            clusters[key] = Cluster(key=key, cloud="", version=DEFAULT_K8S_VERSION)
        return clusters[key]

    for res in view.resources:
        t = res.type
        if t == "aws:eks/cluster:Cluster" or t == "gcp:container/cluster:Cluster":
            c = get(_cluster_key(view, res))
            c.cloud = "aws" if t.startswith("aws:") else "gcp"
            version = res.props.get("version") if c.cloud == "aws" else res.props.get("minMasterVersion")
            if isinstance(version, str) and re.match(r"^\d+\.\d+", version):
                c.version = ".".join(version.split(".")[:2])
            if c.cloud == "gcp":
                c.gke_autoscaling = True  # GKE's cluster autoscaler scales pools with `autoscaling`
                c.gateway_api = bool(dig(res.props, "gatewayApiConfig.channel"))
        elif t == "aws:eks/addon:Addon":
            name = res.props.get("addonName")
            if isinstance(name, str):
                get(_cluster_key(view, res)).addons.append(name)
        elif t == KARPENTER_NODEPOOL:
            c = get(_cluster_key(view, res))
            c.objects.append(res)
            pool = karpenter_pool(res)
            if pool is not None:
                c.pools.append(pool)
        elif (pool := pool_of(res)) is not None:
            get(_cluster_key(view, res)).pools.append(pool)
        elif t == HELM_RELEASE:
            c = get(_cluster_key(view, res))
            p = res.props
            chart, repo = p.get("chart"), dig(p, "repositoryOpts.repo")
            version = p.get("version")
            truth = (
                upstream.chart_by_ref(chart, repo if isinstance(repo, str) else None)
                if isinstance(chart, str)
                else None
            )
            rel = Release(
                res=res,
                chart=chart if isinstance(chart, str) else "?",
                version=str(version) if isinstance(version, str | int | float) else "?",
                repo=repo if isinstance(repo, str) else None,
                namespace=p.get("namespace") if isinstance(p.get("namespace"), str) else "default",
                values=as_dict(p.get("values")),
                truth=truth,
            )
            if truth is not None:
                rel.merged = merged_values(truth, rel.values)
            c.releases.append(rel)
        elif t.startswith("kubernetes:") and not t.startswith("pulumi:") and isinstance(res.props.get("kind"), str):
            c = get(_cluster_key(view, res))
            c.objects.append(res)
            c.objects += runtime_objects(res)
    for c in clusters.values():
        if not c.cloud:
            c.cloud = "gcp" if any(p.cloud == "gcp" for p in c.pools) else "aws"
        c.objects += gateway_data_planes(c)
    return clusters


def gateway_data_planes(c: Cluster) -> list[Res]:
    """What the cluster's Gateway implementation creates for each Gateway of its class (Istio: the
    data plane's ServiceAccount and Deployment in the Gateway's namespace), so that those pods are
    checked for admission and placement like the stack's own."""
    istiod = next((r for r in c.releases if r.truth is not None and r.truth.name == "istiod"), None)
    if istiod is None:
        return []
    out = []
    for res in c.objects:
        if res.kind == "Gateway" and dig(res.props, "spec.gatewayClassName") == "istio":
            for doc in istio_data_plane(res.props, istiod.merged or {}):
                type_ = f"kubernetes:{doc['apiVersion'] if '/' in doc['apiVersion'] else 'core/v1'}:{doc['kind']}"
                out.append(Res(type=type_, name=f"{res.name}.dataPlane.{doc['kind']}", urn=res.urn, props=doc))
    return out


def runtime_objects(res: Res) -> list[Res]:
    """Objects a workload creates at run time from a manifest the stack ships: the jobs of the
    retraining loop's settings (`contracts.retrain.Settings.jobs`, a ConfigMap's `settings.json`).
    They must find their controller, schema and nodes like the stack's own objects."""
    if res.kind != "ConfigMap":
        return []
    raw = as_dict(res.props.get("data")).get("settings.json")
    if not isinstance(raw, str) or '"jobs"' not in raw:
        return []
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return []
    out = []
    for i, job in enumerate(as_list(as_dict(doc).get("jobs"))):
        if isinstance(job, dict) and isinstance(job.get("apiVersion"), str) and isinstance(job.get("kind"), str):
            api, kind = job["apiVersion"], job["kind"]
            type_ = f"kubernetes:{api if '/' in api else 'core/' + api}:{kind}"
            out.append(Res(type=type_, name=f"{res.name}.jobs[{i}]", urn=res.urn, props=job))
    return out


# --------------------------------------------------------------------------- custom resources


def _strip_unknown(errors: list[tuple[str, str, Any]]) -> list[tuple[str, str]]:
    return [(where, msg) for where, msg, value in errors if value is not UNKNOWN]


def check_objects(c: Cluster, report: Report) -> None:
    apis = c.apis()
    for res in c.objects:
        api_version, kind = res.props.get("apiVersion"), res.props.get("kind")
        if not isinstance(api_version, str):
            continue
        builtin = is_builtin(api_version, kind, c.version)
        try:
            # The object as sent to the API server: no server-filled `status`, no apply-time attributes
            # a provider adds at the top (the plan's mocks add an auto-`name`).
            manifest = {k: v for k, v in res.props.items() if v is not UNKNOWN and k != "status"}
            problems = _strip_unknown(object_errors(manifest, c.version))
        except UnknownKind:
            report.findings.append(
                Finding(
                    "readiness-crd-schema",
                    c.key,
                    _label(res),
                    "apiVersion",
                    f"cannot check: no upstream CRD of {api_version} {kind} is vendored; add it to "
                    "components/upstream/pins.yaml and run components/upstream/refresh.py.",
                    res.urn,
                )
            )
            continue
        report.objects_validated += 1
        if not builtin:
            report.crs_validated += 1
        for where, msg in problems[:5]:
            what = "its upstream CRD" if not builtin else f"the Kubernetes {c.version} API"
            report.findings.append(
                Finding(
                    "readiness-crd-schema",
                    c.key,
                    _label(res),
                    where.lstrip("."),
                    f"{_label(res)} does not validate against {what}: {msg}.",
                    res.urn,
                )
            )
        if builtin:
            continue
        truth = upstream.crd(api_version, kind)
        assert truth is not None
        group = api_version.split("/")[0]
        if truth.installed_by is not None and f"chart:{truth.installed_by}" in apis:
            continue
        if group == GATEWAY_GROUP:
            _check_gateway_api(c, res, apis, report)
            continue
        if truth.provided_by is not None:
            _check_provided(c, res, truth, report)
            continue
        installer = (
            f"the {truth.installed_by} chart (pinned in components/upstream/pins.yaml)"
            if truth.installed_by
            else "its controller (no chart aicloud pins installs it)"
        )
        report.findings.append(
            Finding(
                "readiness-crd-controller",
                c.key,
                _label(res),
                "kind",
                f"{kind} ({api_version}) has no CRD and controller in cluster {c.key}: the stack installs "
                f"{installer} nowhere in that cluster, so the API server rejects the object; install it "
                "there or do not render it.",
                res.urn,
            )
        )


PROVIDERS = {"gke": ("gcp", "GKE")}
"""`provided_by` of a vendored CRD -> (cloud whose clusters serve it, its name in findings)."""


def _version_key(version: str) -> tuple[int, ...]:
    """`1.30.3-gke.1451000` -> (1, 30, 3, 1451000); `1.33` -> (1, 33)."""
    return tuple(int(n) for n in re.findall(r"\d+", version))


def _check_provided(c: Cluster, res: Res, truth: upstream.CrdTruth, report: Report) -> None:
    """A CRD the cloud serves itself (GKE's ComputeClass): fine in that cloud's clusters from the
    version that serves it; on another cloud, or at a cluster version that may predate it, the API
    server rejects the object."""
    cloud, name = PROVIDERS.get(truth.provided_by or "", (None, str(truth.provided_by)))
    since = truth.provided_since or ""
    first = _version_key(since)
    if c.cloud == cloud:
        # The stack pins a minor (`1.30`) and the cloud picks the patch: a minor below the first
        # serving version's, or equal to it when that needs a later patch, may run without it.
        minor = _version_key(c.version)[:2]
        if minor > first[:2] or (minor == first[:2] and len(first) <= 2):
            return
        why = (
            f"cluster {c.key} runs Kubernetes {c.version}, which {name} may run below {since}; set "
            f"cluster.version to {first[0]}.{first[1] + 1} or later"
        )
    else:
        where = {"aws": "an EKS cluster", "gcp": "a GKE cluster"}.get(c.cloud, f"a {c.cloud} cluster")
        why = f"cluster {c.key} is {where}, where nothing serves it; do not render it there"
    report.findings.append(
        Finding(
            "readiness-crd-controller",
            c.key,
            _label(res),
            "kind",
            f"{res.props.get('kind')} ({res.props.get('apiVersion')}) is served by {name} itself, from "
            f"{since}: {why}, or the API server rejects the object.",
            res.urn,
        )
    )


def _gateway_controllers() -> dict[str, str]:
    """Gateway class -> the pinned chart whose controller serves it (`provides: gatewayclass:<class>`)."""
    out = {}
    for name in upstream.pins()["charts"]:
        truth = upstream.chart_truth(name)
        for api in truth.provides if truth is not None else ():
            if api.startswith("gatewayclass:"):
                out[api.split(":", 1)[1]] = name
    return out


def _check_gateway_api(c: Cluster, res: Res, apis: set[str], report: Report) -> None:
    """A Gateway API object needs its CRD in the cluster (applied by the stack, or GKE's), a
    Gateway the controller of its class, a route a Gateway of this stack to attach to."""
    kind = res.kind
    label = _label(res)

    def finding(path: str, message: str) -> None:
        report.findings.append(Finding("readiness-crd-controller", c.key, label, path, message, res.urn))

    if f"crd:{GATEWAY_GROUP}/{kind}" not in apis and f"crd:{GATEWAY_GROUP}/*" not in apis:
        finding(
            "kind",
            f"{kind} ({GATEWAY_GROUP}) has no CRD in cluster {c.key}: the stack applies no Gateway API CRDs there "
            "(and GKE's gatewayApiConfig is off), so the API server rejects the object; install the Gateway API "
            "implementation with its CRDs, or do not route through a Gateway.",
        )
        return
    if kind == "Gateway":
        cls = dig(res.props, "spec.gatewayClassName")
        if f"gatewayclass:{cls}" not in apis:
            known = _gateway_controllers()
            how = (
                f"the {known[cls]} chart (pinned in components/upstream/pins.yaml)"
                if cls in known
                else f"a controller of class {cls!r} (aicloud pins none; GKE serves {', '.join(GKE_GATEWAY_CLASSES)})"
            )
            finding(
                "spec.gatewayClassName",
                f"Gateway class {cls!r} has no controller in cluster {c.key}: the stack installs {how} nowhere in "
                "that cluster, so the Gateway is never programmed and nothing serves its routes.",
            )
        return
    gateways = {
        (_namespace(o), _meta_name(o)): o for o in c.objects if o.kind == "Gateway" and dig(o.props, "apiVersion", "")
        .startswith(GATEWAY_GROUP)
    }  # fmt: skip
    for i, ref in enumerate(as_list(dig(res.props, "spec.parentRefs"))):
        if dig(ref, "kind", "Gateway") != "Gateway":
            continue
        key = (dig(ref, "namespace") or _namespace(res), dig(ref, "name"))
        parent = gateways.get(key)
        if parent is None:
            finding(
                f"spec.parentRefs[{i}]",
                f"{kind} attaches to Gateway {key[0]}/{key[1]}, which the stack does not render in cluster {c.key}: "
                "no Gateway accepts the route.",
            )
        elif f"gatewayclass:{dig(parent.props, 'spec.gatewayClassName')}" not in apis:
            finding(
                f"spec.parentRefs[{i}]",
                f"{kind} attaches to Gateway {key[0]}/{key[1]}, whose class "
                f"{dig(parent.props, 'spec.gatewayClassName')!r} has no controller in cluster {c.key}: nothing "
                "serves the route.",
            )


# --------------------------------------------------------------------------- Pod Security


def check_pod_security(c: Cluster, report: Report) -> None:
    """Every pod template of the cluster passes the Pod Security level its namespace enforces
    (namespaces the stack creates, with their `pod-security.kubernetes.io/enforce` label)."""
    levels = {
        _meta_name(o): dig(o.props, "metadata.labels", {}).get(PSA_ENFORCE)
        for o in c.objects
        if o.kind == "Namespace" and isinstance(dig(o.props, "metadata.labels"), dict)
    }
    for res in c.objects:
        level = levels.get(_namespace(res))
        if level not in ("baseline", "restricted"):
            continue
        for tpl in pod_templates(res):
            problems = psa_violations(tpl.spec, level)
            if not problems:
                continue
            where, _ = problems[0]
            report.findings.append(
                Finding(
                    "readiness-pod-admission",
                    c.key,
                    _label(res),
                    f"{tpl.where}.{where}",
                    f"namespace {_namespace(res)} enforces Pod Security {level!r}, which rejects these pods: "
                    + "; ".join(f"{w}: {m}" for w, m in problems[:4])
                    + ".",
                    res.urn,
                )
            )


# --------------------------------------------------------------------------- Helm


def check_releases(c: Cluster, report: Report) -> None:
    quotas = {
        _namespace(r)
        for r in c.objects
        if r.kind == "ResourceQuota"
        and any(
            "PriorityClass" == dig(e, "scopeName") for e in as_list(dig(r.props, "spec.scopeSelector.matchExpressions"))
        )
    }
    for rel in c.releases:
        label = _label(rel.res)
        if rel.truth is None:
            report.findings.append(
                Finding(
                    "readiness-helm-chart",
                    c.key,
                    label,
                    "chart",
                    f"cannot check: chart {rel.chart} {rel.version} from {rel.repo or '?'} has no vendored upstream "
                    "truth, so neither that the version is published nor that its values exist can be shown; pin "
                    "a published chart in components/upstream/pins.yaml.",
                    rel.res.urn,
                )
            )
            continue
        t = rel.truth
        if rel.version not in t.published_versions:
            report.findings.append(
                Finding(
                    "readiness-helm-chart",
                    c.key,
                    label,
                    "version",
                    f"chart {t.name} {rel.version} is not published by {t.repo} ({t.published_kind}: "
                    f"newest {', '.join(t.published_versions[-3:])}); `helm install` cannot resolve it.",
                    rel.res.urn,
                )
            )
        elif rel.version != t.version:
            report.findings.append(
                Finding(
                    "readiness-helm-chart",
                    c.key,
                    label,
                    "version",
                    f"chart {t.name} {rel.version} differs from the vendored pin {t.version}: its values were "
                    "checked against another version; pin it in components/upstream/pins.yaml.",
                    rel.res.urn,
                )
            )
        checked, unknown = check_keys(t, rel.values)
        report.helm_keys_checked += checked
        report.helm_keys_unknown += len(unknown)
        for u in unknown:
            report.findings.append(
                Finding(
                    "readiness-helm-values",
                    c.key,
                    label,
                    f"values.{u.path}",
                    f"value key {u.path} does not exist in chart {u.chart} {t.version} (neither in its values.yaml "
                    "nor read by its templates): Helm ignores it silently.",
                    rel.res.urn,
                )
            )
        if t.values_schema is not None and rel.merged is not None:
            import jsonschema

            # A chart's `$schema` may name no draft ("http://json-schema.org/schema#"): Helm 3 then
            # validates as draft 7.
            named = "draft" in str(t.values_schema.get("$schema", ""))
            cls = jsonschema.validators.validator_for(t.values_schema) if named else jsonschema.Draft7Validator
            validator = cls(t.values_schema)
            for err in list(validator.iter_errors(rel.merged))[:5]:
                where = ".".join(str(p) for p in err.absolute_path)
                report.findings.append(
                    Finding(
                        "readiness-helm-values",
                        c.key,
                        label,
                        f"values.{where}",
                        f"merged values fail chart {t.name}'s values.schema.json: {err.message}.",
                        rel.res.urn,
                    )
                )
        _check_pods_of_values(c, rel, quotas, report)


def _admission_problems(sc: dict[str, Any]) -> list[str]:
    out = []
    if sc.get("privileged") is True and sc.get("allowPrivilegeEscalation") is False:
        out.append("privileged: true with allowPrivilegeEscalation: false (the API server rejects the pod)")
    # Kubernetes' ValidateSecurityContext compares the literal string "CAP_SYS_ADMIN".
    caps = as_list(dig(sc, "capabilities.add"))
    if "CAP_SYS_ADMIN" in caps and sc.get("allowPrivilegeEscalation") is False:
        out.append("capability SYS_ADMIN with allowPrivilegeEscalation: false (the API server rejects the pod)")
    return out


def _check_pods_of_values(c: Cluster, rel: Release, quotas: set[str], report: Report) -> None:
    merged = rel.merged or {}
    for where, sc in dicts_named(merged, frozenset({"securityContext", "containerSecurityContext"})):
        for problem in _admission_problems(sc):
            report.findings.append(
                Finding(
                    "readiness-pod-admission",
                    c.key,
                    _label(rel.res),
                    f"values.{where}",
                    f"chart {rel.chart} renders a container with {problem}: its default values merged with ours "
                    "give this combination; set both keys explicitly.",
                    rel.res.urn,
                )
            )
    if c.cloud == "gcp":
        for where, value in _values_named(merged, "priorityClassName"):
            if value in CRITICAL_PRIORITY and rel.namespace != "kube-system" and rel.namespace not in quotas:
                report.findings.append(
                    Finding(
                        "readiness-pod-admission",
                        c.key,
                        _label(rel.res),
                        f"values.{where}",
                        f"chart {rel.chart} runs pods with priority class {value} in namespace {rel.namespace}: GKE "
                        "admits critical priority classes only in kube-system unless a ResourceQuota with a "
                        "PriorityClass scope allows them; install into kube-system, add that quota, or clear "
                        "priorityClassName.",
                        rel.res.urn,
                    )
                )


def _values_named(node: Any, key: str, path: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            where = f"{path}.{k}" if path else str(k)
            if k == key and isinstance(v, str):
                yield where, v
            yield from _values_named(v, key, where)


# --------------------------------------------------------------------------- storage and metrics


def _storage_classes(c: Cluster) -> tuple[dict[str, str], str | None]:
    classes = dict(BUILTIN_STORAGE_CLASSES.get(c.cloud, {}))
    default = DEFAULT_STORAGE_CLASS.get(c.cloud)
    for r in c.objects:
        if r.kind == "StorageClass":
            name, prov = _meta_name(r), r.props.get("provisioner")
            classes[name] = prov if isinstance(prov, str) else "?"
            if dig(r.props, "metadata.annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true":
                default = name
    return classes, default


def _claims(c: Cluster) -> Iterable[tuple[Res, str, Any]]:
    """(resource, key path, storageClassName or None) of every volume claim the cluster's
    objects and releases create."""
    for r in c.objects:
        if r.kind == "PersistentVolumeClaim":
            yield r, "spec.storageClassName", dig(r.props, "spec.storageClassName")
        elif r.kind == "StatefulSet":
            for i, t in enumerate(as_list(dig(r.props, "spec.volumeClaimTemplates"))):
                yield r, f"spec.volumeClaimTemplates[{i}].spec.storageClassName", dig(t, "spec.storageClassName")
    for rel in c.releases:
        for where, tpl in dicts_named(rel.values, frozenset({"volumeClaimTemplate"})):
            yield rel.res, f"values.{where}.spec.storageClassName", dig(tpl, "spec.storageClassName")
        for where, p in dicts_named(rel.merged or {}, frozenset({"persistence"})):
            if p.get("enabled") is True and where in _our_paths(rel.values):
                yield rel.res, f"values.{where}.storageClassName", p.get("storageClassName")


def _our_paths(values: dict[str, Any]) -> set[str]:
    return {w for w, _ in dicts_named(values, frozenset({"persistence"}))}


def check_storage(c: Cluster, report: Report) -> None:
    classes, default = _storage_classes(c)
    apis = c.apis()
    for res, path, sc in _claims(c):
        if sc is UNKNOWN:
            continue
        name = sc if isinstance(sc, str) and sc else default
        if name is None:
            report.findings.append(
                Finding(
                    "readiness-storage",
                    c.key,
                    _label(res),
                    path,
                    f"the volume claim names no StorageClass and cluster {c.key} ({c.cloud}) has no default one: "
                    "it stays Pending; install a CSI driver and a default StorageClass.",
                    res.urn,
                )
            )
            continue
        if name not in classes:
            report.findings.append(
                Finding(
                    "readiness-storage",
                    c.key,
                    _label(res),
                    path,
                    f"StorageClass {name} does not exist in cluster {c.key}: the volume claim stays Pending.",
                    res.urn,
                )
            )
            continue
        driver = IN_TREE_PROVISIONERS.get(classes[name], classes[name])
        if f"csi:{driver}" not in apis:
            report.findings.append(
                Finding(
                    "readiness-storage",
                    c.key,
                    _label(res),
                    path,
                    f"StorageClass {name} provisions with {driver}, which is not installed in cluster {c.key} "
                    "(no EKS add-on or chart provides it): the volume claim stays Pending.",
                    res.urn,
                )
            )


_PROM_HOST = re.compile(r"^https?://([a-z0-9-]+)\.([a-z0-9-]+)(\.svc(\.cluster\.local)?)?(:\d+)?(/.*)?$")


def _prometheus_services(c: Cluster) -> set[tuple[str, str]]:
    """(service, namespace) of every Prometheus the cluster's releases run."""
    out = set()
    for rel in c.releases:
        if rel.truth is None or "monitoring.coreos.com/v1/ServiceMonitor" not in rel.truth.crds:
            continue
        merged = rel.merged or {}
        if dig(merged, "prometheus.enabled") is False:
            continue
        name = merged.get("fullnameOverride") or rel.res.props.get("name") or rel.chart
        out.add(("prometheus-operated", rel.namespace))  # the operator's governing Service
        out.add((f"{name}-prometheus", rel.namespace))
    return out


def check_metrics(c: Cluster, report: Report) -> None:
    apis = c.apis()
    need = {
        "Resource": "metrics.k8s.io",
        "ContainerResource": "metrics.k8s.io",
        "Pods": "custom.metrics.k8s.io",
        "Object": "custom.metrics.k8s.io",
        "External": "external.metrics.k8s.io",
    }
    for r in c.objects:
        if r.kind == "HorizontalPodAutoscaler":
            metrics = as_list(dig(r.props, "spec.metrics")) or [{"type": "Resource"}]  # default: 80% CPU
            for i, m in enumerate(metrics):
                api = need.get(dig(m, "type"))
                if api and api not in apis:
                    report.findings.append(
                        Finding(
                            "readiness-metrics",
                            c.key,
                            _label(r),
                            f"spec.metrics[{i}]",
                            f"the HPA reads {api}, which nothing serves in cluster {c.key} ({c.cloud}): install "
                            f"{'metrics-server' if api == 'metrics.k8s.io' else 'KEDA or prometheus-adapter'} "
                            "there, or the HPA never scales.",
                            r.urn,
                        )
                    )
        elif r.kind == "ScaledObject":
            proms = _prometheus_services(c)
            for i, trig in enumerate(as_list(dig(r.props, "spec.triggers"))):
                kind = dig(trig, "type")
                if kind in ("cpu", "memory") and "metrics.k8s.io" not in apis:
                    report.findings.append(
                        Finding(
                            "readiness-metrics",
                            c.key,
                            _label(r),
                            f"spec.triggers[{i}]",
                            f"a {kind} trigger reads metrics.k8s.io, which nothing serves in cluster {c.key}; "
                            "install metrics-server.",
                            r.urn,
                        )
                    )
                if kind != "prometheus":
                    continue
                address = dig(trig, "metadata.serverAddress")
                if address is UNKNOWN:
                    continue
                m = _PROM_HOST.match(address) if isinstance(address, str) else None
                if m is None or (m.group(1), m.group(2)) not in proms:
                    found = ", ".join(f"http://{s}.{n}.svc:9090" for s, n in sorted(proms)) or "none"
                    report.findings.append(
                        Finding(
                            "readiness-metrics",
                            c.key,
                            _label(r),
                            f"spec.triggers[{i}].metadata.serverAddress",
                            f"the trigger queries {address!r}, but no Prometheus of this stack serves that "
                            f"address in cluster {c.key} (Prometheus here: {found}).",
                            r.urn,
                        )
                    )


# --------------------------------------------------------------------------- scheduling


def _scale_targets(c: Cluster) -> dict[tuple[str, str, str], tuple[int | None, int | None]]:
    """(namespace, kind, name) -> (min, max) replicas its HPA or ScaledObject allows."""
    out = {}
    for r in c.objects:
        if r.kind == "HorizontalPodAutoscaler":
            ref, lo, hi = (
                dig(r.props, "spec.scaleTargetRef"),
                dig(r.props, "spec.minReplicas", 1),
                dig(r.props, "spec.maxReplicas"),
            )
        elif r.kind == "ScaledObject":
            ref = dig(r.props, "spec.scaleTargetRef")
            lo, hi = dig(r.props, "spec.minReplicaCount", 0), dig(r.props, "spec.maxReplicaCount", 100)
        else:
            continue
        kind = dig(ref, "kind", "Deployment")
        out[(_namespace(r), kind, dig(ref, "name"))] = (
            lo if isinstance(lo, int) else None,
            hi if isinstance(hi, int) else None,
        )
    return out


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _replicas(
    res: Res, tpl: PodTemplate, targets: dict[tuple[str, str, str], tuple[int | None, int | None]]
) -> tuple[int, int]:
    """(pods at min, pods at max) of one pod template of a workload."""
    spec = as_dict(res.props.get("spec"))
    kind = res.kind
    if spec.get("suspend") is True or dig(spec, "runPolicy.suspend") is True:
        return 0, 0  # a suspended job (a waiting sweep trial) runs no pods until resumed
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        replicas = _int(spec.get("replicas"), 1)
        lo, hi = targets.get((_namespace(res), kind, _meta_name(res)), (None, None))
        low = lo if lo is not None else replicas
        top = hi if hi is not None else replicas
        return low, top + (surge(spec.get("strategy"), top) if kind == "Deployment" else 0)
    if kind == "Job":
        n = _int(spec.get("parallelism"), 1)
        return n, n
    if kind == "CronJob":
        n = _int(dig(spec, "jobTemplate.spec.parallelism"), 1)
        return 0, n
    if "ReplicaSpecs" in tpl.where:
        role = tpl.where.split(".")[2]
        n = _int(dig(spec, f"{tpl.where.split('.')[1]}.{role}.replicas"), 1)
        elastic = dig(spec, "elasticPolicy.maxReplicas")
        if role == "Worker" and isinstance(elastic, int):
            return n, max(n, elastic - 1 if "Master" in as_dict(dig(spec, tpl.where.split(".")[1])) else elastic)
        return n, n
    if kind == "JobSet":
        total = sum(
            _int(dig(j, "replicas"), 1) * _int(dig(j, "template.spec.parallelism"), 1)
            for j in as_list(spec.get("replicatedJobs"))
        )
        return total, total
    if kind == "TrainJob":
        job = tpl.where.split("replicatedJobs[", 1)[-1].rstrip("]")
        if job == TRAINER_JOB:
            n = _int(dig(spec, "trainer.numNodes"), 1)
        else:
            n = _int(tpl.labels.get(_REPLICAS_KEY), 1)
        return n, n
    if kind == "InferenceService":
        part = as_dict(spec.get(tpl.where.split(".")[1]))
        return _int(part.get("minReplicas"), 1), _int(part.get("maxReplicas"), _int(part.get("minReplicas"), 1)) * 2
    return 1, 1


TRAINER_JOB = "node"
"""The replicated job (and container) of a Kubeflow Trainer runtime that runs the trainer: a
TrainJob's `numNodes` and `resourcesPerNode` apply to it."""
_REPLICAS_KEY = "readiness.aicloud.dev/replicas"


def trainjob_templates(c: Cluster, res: Res, report: Report) -> list[PodTemplate]:
    """The pods of a Kubeflow Trainer `TrainJob`: its runtime's JobSet template (a
    ClusterTrainingRuntime or TrainingRuntime of this stack in the cluster), with the TrainJob's
    `resourcesPerNode` on the trainer container and its `runtimePatches` (node selection,
    tolerations, affinity, service account) on the patched jobs' pods. A runtime the stack does not
    render cannot be checked, and says so."""
    spec = as_dict(res.props.get("spec"))
    ref = as_dict(spec.get("runtimeRef"))
    name, kind = ref.get("name"), ref.get("kind") or "ClusterTrainingRuntime"
    runtime = next(
        (o for o in c.objects if o.kind == kind and _meta_name(o) == name
         and (kind == "ClusterTrainingRuntime" or _namespace(o) == _namespace(res))),
        None,
    )  # fmt: skip
    if runtime is None:
        report.findings.append(
            Finding(
                "readiness-schedulable",
                c.key,
                _label(res),
                "spec.runtimeRef",
                f"cannot check: runtime {kind}/{name} is not rendered by this stack in cluster {c.key}, so the "
                "TrainJob's pods (and whether they fit a pool) are unknown; render the runtime with the stack.",
                res.urn,
            )
        )
        return []
    patches: dict[str, dict[str, Any]] = {}
    for patch in as_list(spec.get("runtimePatches")):
        for job in as_list(dig(patch, "trainingRuntimeSpec.template.spec.replicatedJobs")):
            pod = as_dict(dig(job, "template.spec.template.spec"))
            if isinstance(dig(job, "name"), str):
                patches.setdefault(job["name"], {}).update(pod)
    out = []
    for job in as_list(dig(runtime.props, "spec.template.spec.replicatedJobs")):
        job_name = dig(job, "name")
        pod = dict(as_dict(dig(job, "template.spec.template.spec")))
        for key in ("nodeSelector", "tolerations", "affinity", "serviceAccountName"):
            if key in patches.get(job_name, {}):
                pod[key] = patches[job_name][key]
        if job_name == TRAINER_JOB and isinstance(dig(spec, "trainer.resourcesPerNode"), dict):
            pod["containers"] = [
                {**ctr, "resources": spec["trainer"]["resourcesPerNode"]} if dig(ctr, "name") == TRAINER_JOB else ctr
                for ctr in as_list(pod.get("containers"))
            ]
        replicas = _int(dig(job, "replicas"), 1) * _int(dig(job, "template.spec.parallelism"), 1)
        out.append(PodTemplate(f"runtime {kind}/{name} replicatedJobs[{job_name}]", pod, {_REPLICAS_KEY: replicas}))
    return out


def _daemonset_load(c: Cluster, pool: Pool) -> dict[str, float]:
    """Requests of the DaemonSets that land on every node of `pool`."""
    load = {n: 0.0 for n in RESOURCE_NAMES}
    for n, v in SYSTEM_DAEMONSET_REQUESTS.get(c.cloud, {}).items():
        load[n] += v
    for r in c.objects:
        if r.kind != "DaemonSet":
            continue
        for tpl in pod_templates(r):
            if _fit_reason(tpl.spec, pool) is None:
                for n, v in pod_requests(tpl.spec).items():
                    load[n] += v
    for rel in c.releases:
        merged = rel.merged or {}
        for path in DAEMONSET_VALUES.get(rel.truth.name if rel.truth else "", ()):
            pod = {"containers": [{"resources": as_dict(dig(merged, f"{path}resources"))}],
                   "tolerations": dig(merged, f"{path}tolerations"), "affinity": dig(merged, f"{path}affinity"),
                   "nodeSelector": dig(merged, f"{path}nodeSelector")}  # fmt: skip
            if _fit_reason(pod, pool) is None:
                for n, v in pod_requests(pod).items():
                    load[n] += v
    return load


DAEMONSET_VALUES = {
    # Charts that render a DaemonSet, and where in their values its pod settings sit.
    "dcgm-exporter": ("",),
    "nvidia-device-plugin": ("",),
    "kube-prometheus-stack": ("prometheus-node-exporter.",),
}


def _fit_reason(pod: dict[str, Any], pool: Pool) -> str | None:
    """Why a pod cannot land on `pool`'s nodes by selection and taints (None: it can)."""
    if not schedulable_on(pod, pool.labels):
        return "its node selector / required affinity does not match the pool's labels"
    for t in pool.taints:
        if t.effect in ("NoSchedule", "NoExecute") and not tolerates(pod.get("tolerations"), t):
            return f"it does not tolerate the pool's taint {t}"
    return None


def _pool_free(c: Cluster, pool: Pool) -> dict[str, float] | None:
    m = machine(pool.cloud, pool.machine_type)
    if m is None:
        return None
    free = allocatable(pool.cloud, m.vcpus, m.memory_gib, m.gpus)
    load = _daemonset_load(c, pool)
    return {n: free[n] - load.get(n, 0.0) for n in RESOURCE_NAMES}


def check_scheduling(c: Cluster, report: Report) -> None:
    targets = _scale_targets(c)
    frees = {p.display: _pool_free(c, p) for p in c.pools}
    for res in c.objects:
        if res.kind in ("DaemonSet",):
            continue
        templates = pod_templates(res) if res.kind != "TrainJob" else trainjob_templates(c, res, report)
        for tpl in templates:
            low, high = _replicas(res, tpl, targets)
            w = Workload(res, tpl, _namespace(res), high, low, pod_requests(tpl.spec))
            reasons = []
            for pool in c.pools:
                why = _fit_reason(tpl.spec, pool)
                free = frees[pool.display]
                if why is None and free is None:
                    why = f"cannot check: machine type {pool.machine_type} is not in the catalog"
                if why is None:
                    per_node = pods_per_node(free, w.request)
                    if per_node == 0:
                        short = [n for n in RESOURCE_NAMES if w.request[n] > free[n]]
                        why = (
                            "its requests exceed the machine's allocatable minus DaemonSets ("
                            + ", ".join(f"{n}: asks {_fmt(n, w.request[n])}, {_fmt(n, free[n])} free" for n in short)
                            + ")"
                        )
                    else:
                        w.pools.append((pool.display, per_node))
                        continue
                reasons.append(f"{pool.display}: {why}")
            c.workloads.append(w)
            if not w.pools:
                report.findings.append(
                    Finding(
                        "readiness-schedulable",
                        c.key,
                        _label(res),
                        tpl.where,
                        f"{w.name} fits no node pool of cluster {c.key}: "
                        + ("; ".join(reasons) if reasons else "the cluster has no node pools")
                        + ".",
                        res.urn,
                    )
                )
    _check_capacity(c, report)


def _fmt(name: str, value: float) -> str:
    if name == "memory":
        return f"{value / 2**30:.1f}Gi"
    if name == "cpu":
        return f"{value:.2f}"
    return f"{value:g}"


def _pool_label(pool: Pool) -> str:
    """`NodeGroup/<name>` (EKS managed), `NodePool/<name>` (GKE, or a Karpenter NodePool's own name)."""
    if pool.res.type == KARPENTER_NODEPOOL:
        return _label(pool.res)
    return f"{'NodeGroup' if pool.res.type.startswith('aws:') else 'NodePool'}/{pool.display}"


def _check_capacity(c: Cluster, report: Report) -> None:
    """The worst case of every workload at max fits the pools it can use; a pool whose floor is
    below that demand has an autoscaler."""
    by_pool: dict[str, list[Workload]] = defaultdict(list)
    for w in c.workloads:
        if len(w.pools) == 1:
            by_pool[w.pools[0][0]].append(w)
    apis = c.apis()
    for pool in c.pools:
        ws = by_pool.get(pool.display, [])
        if not ws:
            continue
        need_max = sum(-(-w.pods_at_max // dict(w.pools)[pool.display]) for w in ws)
        need_min = sum(-(-w.pods_at_min // dict(w.pools)[pool.display]) for w in ws)
        hi = pool.max_nodes if isinstance(pool.max_nodes, int) else None
        lo = pool.min_nodes if isinstance(pool.min_nodes, int) else None
        names = ", ".join(f"{w.name} x{w.pods_at_max}" for w in ws if w.pods_at_max)
        if hi is not None and need_max > hi:
            report.findings.append(
                Finding(
                    "readiness-capacity",
                    c.key,
                    _pool_label(pool),
                    "maxNodes",
                    f"at max scale the workloads on pool {pool.display} ({names}, surge and gang size included) "
                    f"need {need_max} nodes; the pool stops at {hi}: pods stay Pending.",
                    pool.res.urn,
                )
            )
        if lo is not None and max(need_max if hi is None else min(need_max, hi), need_min) > lo:
            if "node-autoscaler" not in apis and "chart:cluster-autoscaler" not in apis:
                report.findings.append(
                    Finding(
                        "readiness-capacity",
                        c.key,
                        _pool_label(pool),
                        "minNodes",
                        f"pool {pool.display} starts at {lo} node(s) but its workloads ({names}) need up to "
                        f"{need_max}, and no node autoscaler is installed in cluster {c.key}: the pool never "
                        "grows; install Karpenter or Cluster Autoscaler.",
                        pool.res.urn,
                    )
                )
    _check_tier_groups(c, report)


def _check_tier_groups(c: Cluster, report: Report) -> None:
    """Workloads that fit several pools which are the capacity tiers of one aicloud pool (same
    `aicloud.dev/pool` label, each with `aicloud.dev/capacity-tier`): the tiers together hold the
    workloads at max (each tier is limited by itself), and a gang that must come from one tier has
    one that holds it."""
    by_name = {p.display: p for p in c.pools}
    groups: dict[str, list[Workload]] = defaultdict(list)
    for w in c.workloads:
        members = [by_name[n] for n, _ in w.pools if n in by_name]
        labels = {p.label for p in members}
        if len(members) > 1 and len(labels) == 1 and all(TIER_LABEL in p.labels for p in members):
            groups[next(iter(labels)) or ""].append(w)
    for label, ws in groups.items():
        tiers = sorted(
            (p for p in c.pools if p.label == label and TIER_LABEL in p.labels),
            key=lambda p: (
                TIER_KINDS.index(p.labels[TIER_LABEL]) if p.labels[TIER_LABEL] in TIER_KINDS else 9,
                p.display,
            ),
        )
        highs = [p.max_nodes for p in tiers]
        if not all(isinstance(h, int) for h in highs):
            continue
        per_node = min(n for w in ws for _, n in w.pools)
        need = sum(-(-w.pods_at_max // per_node) for w in ws)
        names = ", ".join(f"{w.name} x{w.pods_at_max}" for w in ws if w.pods_at_max)
        kinds = ", ".join(f"{p.labels[TIER_LABEL]} {p.max_nodes}" for p in tiers)
        if need > sum(highs):
            report.findings.append(
                Finding(
                    "readiness-capacity",
                    c.key,
                    _pool_label(tiers[0]),
                    "maxNodes",
                    f"at max scale the workloads on the capacity tiers of pool {label} ({names}, surge and gang size "
                    f"included) need {need} nodes; its tiers stop at {sum(highs)} ({kinds}): pods stay Pending.",
                    tiers[0].res.urn,
                )
            )


# --------------------------------------------------------------------------- identity

_SA_SUB = re.compile(r"^system:serviceaccount:([^:]+):([^:]+)$")
_WI_MEMBER = re.compile(r"^serviceAccount:[^\[]+\.svc\.id\.goog\[([^/]+)/([^\]]+)\]$")


def _trusted_accounts(view: StackView, c: Cluster) -> list[tuple[Res, str, str, str]]:
    """(role or binding, namespace, name, how) of every cloud identity that trusts a Kubernetes
    ServiceAccount of this cluster (IRSA trust conditions; Workload Identity user bindings)."""
    out = []
    for res in view.resources:
        if res.type == "aws:iam/role:Role" and c.cloud == "aws" and _cluster_key(view, res) == c.key:
            doc = policy_json(res.props.get("assumeRolePolicy"))
            for st in as_list(as_dict(doc).get("Statement")):
                for op, cond in as_dict(as_dict(st).get("Condition")).items():
                    for k, v in as_dict(cond).items():
                        if isinstance(k, str) and k.endswith(":sub"):
                            for sub in v if isinstance(v, list) else [v]:
                                m = _SA_SUB.match(sub) if isinstance(sub, str) else None
                                if m:
                                    out.append((res, m.group(1), m.group(2), op))
        elif res.type in ("gcp:serviceaccount/iAMMember:IAMMember", "gcp:serviceaccount/iAMBinding:IAMBinding"):
            if c.cloud != "gcp" or res.props.get("role") != "roles/iam.workloadIdentityUser":
                continue
            if _cluster_key(view, res) != c.key:
                continue
            members = as_list(res.props.get("members")) or [res.props.get("member")]
            for mem in members:
                m = _WI_MEMBER.match(mem) if isinstance(mem, str) else None
                if m:
                    out.append((res, m.group(1), m.group(2), "workloadIdentityUser"))
    return out


IDENTITY_ANNOTATION = {"aws": "eks.amazonaws.com/role-arn", "gcp": "iam.gke.io/gcp-service-account"}
EKS_ADDON_ACCOUNTS = {"aws-ebs-csi-driver": ("kube-system", "ebs-csi-controller-sa")}
"""ServiceAccounts EKS add-ons create, annotated with the add-on's `serviceAccountRoleArn`."""


def _accounts(c: Cluster) -> dict[tuple[str, str], tuple[Res, dict[str, Any]]]:
    """(namespace, name) -> (creator, annotations) of every ServiceAccount the stack creates in
    the cluster: its own objects, and charts whose values create one (`serviceAccount.create`)."""
    out = {(_namespace(r), _meta_name(r)): (r, as_dict(dig(r.props, "metadata.annotations")))
           for r in c.objects if r.kind == "ServiceAccount"}  # fmt: skip
    for rel in c.releases:
        merged = rel.merged or {}
        # Most charts say `serviceAccount`; the Cluster Autoscaler's chart `rbac.serviceAccount`.
        sa = as_dict(merged.get("serviceAccount")) or as_dict(dig(merged, "rbac.serviceAccount"))
        if sa.get("create") is True:
            name = sa.get("name") or (rel.merged or {}).get("fullnameOverride") or rel.res.props.get("name")
            if isinstance(name, str):
                out[(rel.namespace, name)] = (rel.res, as_dict(sa.get("annotations")))
    return out


def check_identity(view: StackView, c: Cluster, report: Report) -> None:
    accounts = _accounts(c)
    trusted = _trusted_accounts(view, c)
    trusted_names = {(ns, name) for _, ns, name, _ in trusted}
    annotation = IDENTITY_ANNOTATION[c.cloud]
    for res in c.objects:
        for tpl in pod_templates(res):
            sa = tpl.spec.get("serviceAccountName")
            if not isinstance(sa, str) or sa == "default":
                continue
            if (_namespace(res), sa) not in accounts:
                report.findings.append(
                    Finding(
                        "readiness-identity",
                        c.key,
                        _label(res),
                        f"{tpl.where}.serviceAccountName",
                        f"ServiceAccount {_namespace(res)}/{sa} does not exist in cluster {c.key}: the API server "
                        "refuses to create the pods.",
                        res.urn,
                    )
                )
    for (ns, name), (sa, sa_annotations) in accounts.items():
        if annotation not in sa_annotations:
            continue
        if (ns, name) not in trusted_names:
            report.findings.append(
                Finding(
                    "readiness-identity",
                    c.key,
                    _label(sa),
                    f"metadata.annotations.{annotation}",
                    f"ServiceAccount {ns}/{name} names a cloud identity, but no role or binding of this stack "
                    f"trusts system:serviceaccount:{ns}:{name}: token exchange fails.",
                    sa.urn,
                )
            )
    for res, ns, name, how in trusted:
        if "*" in ns or "*" in name or how == "StringLike":
            report.findings.append(
                Finding(
                    "readiness-identity",
                    c.key,
                    _label(res),
                    "assumeRolePolicy",
                    f"{res.name} trusts {ns}/{name} with {how}: it must trust exactly one namespace/name.",
                    res.urn,
                )
            )
        elif (ns, name) in {EKS_ADDON_ACCOUNTS.get(a) for a in c.addons}:
            continue  # the add-on creates and annotates it (its serviceAccountRoleArn)
        elif (ns, name) not in accounts or annotation not in accounts[(ns, name)][1]:
            report.findings.append(
                Finding(
                    "readiness-identity",
                    c.key,
                    _label(res),
                    "trust",
                    f"{res.name} trusts ServiceAccount {ns}/{name}, which this stack does not create in cluster "
                    f"{c.key} with the {annotation} annotation: nothing can use the role.",
                    res.urn,
                )
            )


# --------------------------------------------------------------------------- the report and the rules


def report(view: StackView) -> Report:
    """The readiness of every cluster of the stack (computed once per view)."""
    cached = getattr(view, "_readiness", None)
    if cached is not None:
        return cached
    clusters = inventory(view)
    rep = Report(clusters=clusters, findings=[])
    for c in clusters.values():
        if not c.objects and not c.releases:
            continue
        check_objects(c, rep)
        check_releases(c, rep)
        check_pod_security(c, rep)
        check_storage(c, rep)
        check_metrics(c, rep)
        check_scheduling(c, rep)
        check_identity(view, c, rep)
    view._readiness = rep  # type: ignore[attr-defined]
    return rep


def _rule_check(name: str):
    def check(view: StackView, config: dict[str, Any], report_violation: ReportViolation) -> None:
        for f in report(view).by_rule(name):
            report_violation(f"[{f.cluster}] {f.resource} at {f.path}: {f.message}", f.urn)

    return check


_DESCRIPTIONS = {
    "readiness-crd-schema": "Kubernetes objects validate against the API of their cluster version, custom resources "
    "against their upstream CRD at the pinned version (unknown fields, types, enums, required).",
    "readiness-crd-controller": "Every custom resource's CRD and controller are installed in the same cluster by "
    "the same stack; a Gateway's class has its controller there, a route a Gateway to attach to.",
    "readiness-helm-chart": "Every Helm release names a chart version its repository publishes, with vendored "
    "upstream truth.",
    "readiness-helm-values": "Every Helm value key exists in the pinned chart (or is a pass-through subtree); "
    "merged values pass the chart's values.schema.json.",
    "readiness-pod-admission": "Chart defaults merged with our values produce pods the API server admits, and every "
    "pod (including a Gateway's data plane its controller provisions) passes its namespace's Pod Security level.",
    "readiness-storage": "Every volume claim has a StorageClass whose provisioner is installed.",
    "readiness-metrics": "Every HPA has its metrics API; every ScaledObject trigger points at a Prometheus that "
    "exists in its cluster.",
    "readiness-schedulable": "Every pod template fits some node pool of its cluster (selectors, taints, requests "
    "against allocatable minus DaemonSets).",
    "readiness-capacity": "The worst case of all workloads at max fits each pool's maximum, and a pool that must "
    "grow has a node autoscaler.",
    "readiness-identity": "ServiceAccounts workloads use exist, carry the identity annotation, and their role "
    "trusts exactly that namespace/name.",
}

RULES: list[Rule] = [
    Rule(name=name, description=desc, area="readiness", check=_rule_check(name), stack=True)
    for name, desc in _DESCRIPTIONS.items()
]
