"""Training jobs on GPU node pools: a Kubeflow Trainer `TrainJob`, a Kubeflow `PyTorchJob`, or an
indexed Job where no training operator is installed, plus hyperparameter sweeps.

Every backend runs the same container: `torchrun -m workloads.trainer --preset P --out URI
--set k=v ...` from the trainer image (by digest), one pod per node, one process per GPU.
- `trainjob` (trainer.kubeflow.org/v1alpha1, Kubeflow Trainer v2 on JobSet, the default): a
  `ClusterTrainingRuntime` per job (`aicloud-<job>`, the torch ML policy and the whole pod: pool
  placement, security, shared memory, service account) and one `TrainJob` per trial naming it,
  with the trial's image, arguments and node count. The Trainer's torch plugin sets torchrun's
  static rendezvous (`PET_NNODES`, `PET_NODE_RANK`, `PET_MASTER_ADDR`/`PORT`) on its container
  `node`. Trainer 2.2 has no elastic policy (JobSet is not elastic), so an elastic job must use
  another backend. The stack installs the Trainer from its published chart
  (`kubeflow-trainer`, OCI, with its JobSet subchart; pinned in components/upstream/pins.yaml).
- `pytorchjob` (kubeflow.org/v1): a Master and `nodes - 1` Workers; the training operator sets
  torchrun's rendezvous (`PET_*`) variables. The v1 training operator publishes no Helm chart
  (only kustomize manifests), so this backend needs `operator: preinstalled`. With `elastic`,
  torchrun's c10d rendezvous is hosted by the Master's pod and the job keeps training between
  `minNodes` and `maxNodes` nodes.
- `indexed-job` (batch/v1): `completionMode: Indexed`, `parallelism = completions = nodes`, and a
  headless Service; every pod runs torchrun with c10d rendezvous hosted by pod 0 at its stable
  DNS name `<job>-0.<job>.<namespace>.svc.cluster.local`.

Every pod tolerates exactly the pool's taints, selects the pool by its `aicloud.dev/pool` label,
limits `nvidia.com/gpu` to the GPUs of one node, runs as non-root with a read-only root file
system, mounts a memory-backed `/dev/shm` (NCCL and data loaders need more than Docker's 64 MiB)
and uses the trainer's workload identity service account. With the lakehouse, each trial writes
checkpoints and metrics under `<checkpoints zone>/<trial>` (so a restarted pod resumes), exports
its serving artifact to `<models zone>/<trial>`, and reads `dataset` shards from its zone.

Sweeps: the cartesian product of `sweep.grid` becomes one job per trial, `<job>-t<i>`. Only the
first `maxConcurrent` trials are created active; the rest are created suspended (`spec.suspend`
on a Job or TrainJob, `spec.runPolicy.suspend` on a PyTorchJob) and Pulumi ignores later changes to that
field, so trials are started by hand (`kubectl patch ... suspend=false`) or by a queue such as
Kueue as earlier ones finish, without the next `pulumi up` suspending them again. Config
validation also bounds the active nodes: every job's active trials must fit in its pool at once.

All manifests are built by pure functions returning dicts; the components only create them.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, field_validator

from components.base import Spec, child_opts, custom_resource, type_token
from components.capacity import COMPUTE_CLASS_LABEL, TIER_LABEL, TierKind
from components.catalog import MachineType
from components.helm import helm_release
from components.identity import WORKLOADS
from components.k8s_security import EPHEMERAL_PORTS, Allow, from_pods, from_prometheus, secure_namespace
from components.nodepool import (
    GPU_RESOURCE,
    POOL_LABEL,
    NodePoolSpec,
    pool_node_selector,
    pool_taints,
    tolerations_for,
)
from components.platform import RegionSpec
from components.upstream import chart_pin
from components.validation import INVALID, Problem, check, repeated
from contracts.trainer import EXIT_PREEMPTED, LAUNCH

TRAINER = WORKLOADS["trainer"]
"""The trainer's namespace and service account, the same names as its workload identity's: used
as is when the stack has no lakehouse (no cloud identity then, just the Kubernetes objects)."""
TRAINING_NAMESPACE = TRAINER.namespace
"""Namespace of training jobs."""
TRAINER_SERVICE_ACCOUNT = TRAINER.service_account
"""Service account of training jobs when no workload identity is provided."""
CONTAINER_NAME = "pytorch"
"""The PyTorchJob operator requires its container to be called `pytorch`."""
PYTORCHJOB_PORT = 23456
"""The operator's `pytorchjob-port`; also the elastic c10d rendezvous port on the Master."""
RDZV_PORT = 29400
"""c10d rendezvous port of pod 0 in an indexed Job (torchrun's default)."""
CLUSTER_DOMAIN = "cluster.local"
"""Cluster DNS domain (the default on EKS and GKE); pod 0's FQDN hosts the rendezvous."""
METRICS_PORT = 9090
"""Port of the trainer's Prometheus `/metrics` (`--metrics-port`; only global rank 0 serves it)."""
METRICS_PORT_NAME = "metrics"
"""Container port name the trainer's PodMonitor (components.monitoring) scrapes."""
RUN_AS = 10001
"""Non-root uid/gid the trainer runs as: the `trainer` user of the `trainer` target of `workloads/Dockerfile`."""
JOB_LABEL = "aicloud.dev/training-job"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
"""Karpenter's pod annotation: nodes running such a pod are not consolidated nor drifted (Karpenter
v1 docs, concepts/disruption "Pod-Level Controls")."""
TRAINER_POD_LABELS = {"app.kubernetes.io/name": "trainer"}
"""Labels every trainer pod carries (jobs declared here and those the retraining loop launches)."""
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
"""A training job runs for hours: `pulumi up` must not wait for it to finish."""
MAX_TRIALS = 64
"""Upper bound on the trials of one sweep (each is a Kubernetes object in the plan)."""

TRAINER_OPERATOR = "kubeflow-trainer"
"""The pinned chart of Kubeflow Trainer v2 (TrainJob, ClusterTrainingRuntime, with JobSet)."""
TRAINING_OPERATOR_CHART = chart_pin(TRAINER_OPERATOR)
OPERATOR_NAMESPACE = "kubeflow-system"
"""Namespace of the Trainer's controller (the one its manifests use)."""
OPERATOR_CHARTS: dict[str, str | None] = {"trainjob": TRAINER_OPERATOR, "pytorchjob": None, "indexed-job": None}
"""Backend -> the pinned chart that serves its kinds (None: Kubernetes itself, or no published
chart: the v1 training operator ships kustomize manifests only)."""
NEEDS_OPERATOR = frozenset({"trainjob", "pytorchjob"})
"""Backends whose kinds need a controller besides Kubernetes'."""
TRAINER_API = "trainer.kubeflow.org/v1alpha1"
TRAINJOB_CONTAINER = "node"
"""The container (and replicated job) the Trainer's torch plugin configures in a runtime."""
TRAINJOB_STEP_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
"""Marks the runtime's replicated job that runs the trainer (value `trainer`)."""
TRAINJOB_PATCH_MANAGER = "aicloud.dev/training"
"""Owner of the runtime patch each TrainJob carries (its trial's pod label)."""

_KEY = r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$"
Scalar = str | int | float | bool


class ElasticSpec(Spec):
    """Elastic training: torchrun keeps going on fewer nodes when nodes are lost (spot)."""

    min_nodes: int = Field(ge=1, le=1000)
    """Fewest nodes the job trains on (torchrun `--nnodes` lower bound)."""
    max_nodes: int = Field(ge=1, le=1000)
    """Most nodes; at least `nodes`, at most the pool's `maxNodes`."""

    @check("min_nodes", "max_nodes")
    def _order(self) -> Iterator[Problem]:
        if self.min_nodes > self.max_nodes:
            yield Problem((), f"minNodes ({self.min_nodes}) is greater than maxNodes ({self.max_nodes})")


class SweepSpec(Spec):
    """A hyperparameter grid: one trial per combination of the listed values."""

    grid: dict[str, list[Scalar]] = Field(min_length=1)
    """Trainer keys (as for `--set`) to lists of values, e.g. `{optim.lr: [1e-3, 3e-4]}`."""
    max_concurrent: int = Field(default=1, ge=1, le=MAX_TRIALS)
    """Trials created active; the rest are created suspended (see the module docstring)."""

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        problems = [f"{k}: not a trainer key like `optim.lr`" for k in value if not _is_key(k)]
        problems += [f"{k}: needs at least one value" for k, v in value.items() if not v]
        problems += [f"{k}: is set by the job, not swept" for k in value if k == "out"]
        size = math.prod(len(v) for v in value.values())
        if size > MAX_TRIALS:
            problems.append(f"the grid has {size} trials; at most {MAX_TRIALS} are allowed")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.grid.values())


class TrainingJobSpec(Spec):
    """One training job (or sweep) on a node pool of a primary region."""

    name: str = Field(pattern=r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
    """Job name, a DNS label of at most 40 characters (pod and service names add suffixes)."""
    region: str | None = None
    """Region key; must be a primary region. Default: the first primary region of the stack."""
    pool: str
    """Node pool of that region; a GPU pool, or a CPU pool with `allowCpu: true`."""
    nodes: int = Field(default=1, ge=1, le=1000)
    """Nodes (pods) the job starts with; one pod per node, one process per GPU."""
    preset: str = Field(default="debug", pattern=r"^[a-z][a-z0-9_-]*$")
    """Trainer preset (`python -m workloads.trainer --help` lists them)."""
    overrides: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    """Trainer settings passed as `--set key=value` (values YAML/JSON), e.g. `train.steps: 1000`."""
    image: str | None = None
    """Trainer image pinned by digest; default: the `trainer` workload of `aicloud:images`."""
    out: str | None = Field(default=None, pattern=r"^(s3|gs)://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9](/.*)?$")
    """Run-directory prefix URI (`s3://` or `gs://`); each trial writes checkpoints and metrics
    under `<out>/<trial>`. Default: the lakehouse `checkpoints` zone, else a pod-local directory
    that does not survive the pod (no resume after a restart)."""
    dataset: str | None = Field(default=None, pattern=r"^[a-z]+(/[A-Za-z0-9_.=-]+)+$")
    """Training shards in the lakehouse as `<zone>/<prefix>`, e.g. `features/clicks/v3` (the
    trainer reads the `curated` and `features` zones); sets `data.source=shards` and `data.uri`.
    Needs `aicloud:storage`."""
    backend: Literal["trainjob", "pytorchjob", "indexed-job"] = "trainjob"
    """`trainjob` (Kubeflow Trainer v2, installed from its chart), `pytorchjob` (the v1 training
    operator, which has no chart: needs `operator: preinstalled`) or a plain indexed Job."""
    elastic: ElasticSpec | None = None
    """Elastic node range; default: a fixed number of nodes."""
    max_restarts: int = Field(default=3, ge=0, le=100)
    """Worker-group restarts torchrun attempts, and the Job's pod retries per node."""
    allow_cpu: bool = False
    """Allow a pool without GPUs (one gloo process per node): for smoke tests on CPU pools."""
    node_share: float = Field(default=0.75, gt=0, le=1)
    """Share of a node's vCPUs and memory each pod requests (the rest is left to system pods)."""
    sweep: SweepSpec | None = None
    """Hyperparameter sweep; each trial is a job `<name>-t<i>`."""
    schedule: Literal["none"] = "none"
    """Reserved: `none` only (jobs start when created); cron schedules come with retraining."""
    capacity_tiers: list[TierKind] | None = None
    """Capacity tiers of the pool's chain the job's pods may use (`[reservation, flex]`): a
    required node affinity on `aicloud.dev/capacity-tier`. Default: any tier. A gang (more than
    one node, not elastic) may not require spot alone."""

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems = [f"{k}: not a trainer key like `train.steps`" for k in value if not _is_key(k)]
        problems += ["out: use the job's `out` field" for k in value if k == "out"]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @check("elastic", "nodes", "backend", "dataset", "overrides")
    def _shape(self) -> Iterator[Problem]:
        problems = []
        e = self.elastic
        if e is not None and not e.min_nodes <= self.nodes <= e.max_nodes:
            problems.append(f"nodes ({self.nodes}) must lie within elastic {e.min_nodes}..{e.max_nodes}")
        if e is not None and self.backend == "trainjob":
            problems.append(
                "backend trainjob cannot be elastic (Kubeflow Trainer 2.2 has no elastic policy: JobSet is "
                "not elastic); use backend indexed-job (elastic maxNodes = nodes) or drop elastic"
            )
        if e is not None and self.backend == "pytorchjob" and self.nodes < 2:
            problems.append("elastic pytorchjob needs nodes >= 2 (a Master and at least one Worker)")
        if e is not None and self.backend == "indexed-job" and e.max_nodes != self.nodes:
            problems.append(
                f"an indexed-job runs exactly `nodes` pods: elastic maxNodes ({e.max_nodes}) must equal "
                f"nodes ({self.nodes}); minNodes is how few it keeps training on"
            )
        if self.dataset is not None and ("data.uri" in self.overrides or "data.source" in self.overrides):
            problems.append("dataset conflicts with overrides data.uri / data.source")
        if problems:
            yield Problem((), "; ".join(problems))

    @property
    def peak_nodes(self) -> int:
        """Most nodes one trial of the job can hold at once."""
        return self.elastic.max_nodes if self.elastic else self.nodes


class TrainingSpec(Spec):
    """The `aicloud:training` section: training jobs and the operator they need."""

    operator: Literal["install", "preinstalled"] = "install"
    """`install`: the stack installs Kubeflow Trainer (its published Helm chart) in every region
    that runs a `trainjob`; `preinstalled`: the clusters already have the operators the jobs need
    (the only choice for `pytorchjob`, whose v1 operator publishes no chart)."""
    jobs: list[TrainingJobSpec] = Field(min_length=1)
    """The jobs; names are unique within the stack."""

    @check("jobs")
    def _unique_names(self) -> Iterator[Problem]:
        names = [j.name for j in self.jobs if j.name is not INVALID]
        dupes = repeated(names)
        if dupes:
            yield Problem(("jobs",), f"job names must be unique, repeated: {', '.join(dupes)}")

    @check("jobs", "operator")
    def _operator_for_backends(self) -> Iterator[Problem]:
        if self.operator != "install":
            return
        for i, j in enumerate(self.jobs):
            if j is not INVALID and j.backend == "pytorchjob":
                yield Problem(
                    ("jobs", i, "backend"),
                    "pytorchjob needs the Kubeflow training operator v1, which publishes no Helm chart to install "
                    "(only kustomize manifests); use backend trainjob (Kubeflow Trainer v2, installed from its "
                    "chart) or indexed-job, or set operator: preinstalled on clusters that have it",
                    j.backend,
                )


def _is_key(key: str) -> bool:
    return re.fullmatch(_KEY, key) is not None


def job_region(job: TrainingJobSpec, regions: list[RegionSpec]) -> RegionSpec | None:
    """The region a job runs in: its `region`, else the first primary region."""
    if job.region is None:
        return next((r for r in regions if r.primary), None)
    return next((r for r in regions if r.name == job.region), None)


def check_against_stack(
    jobs: list[TrainingJobSpec], regions: list[RegionSpec], image_workloads: set[str] | None
) -> list[str]:
    """Problems of `jobs` against the stack: region, pool, node counts, image, pool capacity.
    `image_workloads` is None when `aicloud:images` is itself invalid (images are not checked)."""
    problems: list[str] = []
    too_big: set[str] = set()
    active: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for j in jobs:
        where = f"job {j.name!r}"
        region = job_region(j, regions)
        if region is None:
            known = ", ".join(r.name for r in regions if r.primary)
            problems.append(f"{where}: region {j.region!r} is not in the stack (primary regions: {known})")
            continue
        if not region.primary:
            problems.append(
                f"{where}: region {region.name!r} is not a primary region; training runs in primary regions"
            )
            continue
        pool = next((p for p in region.node_pools if p.name == j.pool), None)
        if pool is None:
            pools = ", ".join(p.name for p in region.node_pools)
            problems.append(f"{where}: region {region.name!r} has no node pool {j.pool!r}; pools: {pools}")
            continue
        machine = pool.machine
        if machine is not None and not machine.is_gpu and not j.allow_cpu:
            problems.append(
                f"{where}: pool {pool.name!r} ({pool.machine_type}) has no GPUs; use a GPU pool or set allowCpu: true"
            )
        if j.capacity_tiers:
            chain = [t.kind for t in pool.capacity] if pool.capacity else ["spot" if pool.spot else "on-demand"]
            missing = [t for t in j.capacity_tiers if t not in chain]
            if missing:
                problems.append(
                    f"{where}: capacityTiers {', '.join(missing)} not in pool {pool.name!r}'s capacity chain "
                    f"({', '.join(chain)})"
                )
            elif set(j.capacity_tiers) == {"spot"} and j.elastic is None and j.nodes > 1:
                problems.append(
                    f"{where}: a gang of {j.nodes} nodes on spot alone loses the run to any preemption; add a "
                    "reserved, flex or on-demand tier or make the job elastic"
                )
        if j.peak_nodes > pool.max_nodes:
            too_big.add(j.name)
            problems.append(
                f"{where}: needs up to {j.peak_nodes} nodes but pool {pool.name!r} has maxNodes {pool.max_nodes}"
            )
        if j.image is None and image_workloads is not None and "trainer" not in image_workloads:
            problems.append(
                f"{where}: no image; pin one (`image: repo@sha256:...`) or add aicloud:images.workloads.trainer"
            )
        trials = j.sweep.size if j.sweep else 1
        running = min(trials, j.sweep.max_concurrent) if j.sweep else 1
        active.setdefault((region.name, pool.name), []).append((j.name, running * j.peak_nodes))
    for (region_key, pool_name), loads in active.items():
        pool = next(p for r in regions if r.name == region_key for p in r.node_pools if p.name == pool_name)
        total = sum(n for _, n in loads)
        # A job that alone exceeds the pool has its own error above.
        if total > pool.max_nodes and not any(name in too_big for name, _ in loads):
            detail = ", ".join(f"{name} {n}" for name, n in loads)
            problems.append(
                f"pool {region_key}/{pool_name}: active jobs need up to {total} nodes at once ({detail}) "
                f"but the pool has maxNodes {pool.max_nodes}; lower nodes or sweep.maxConcurrent"
            )
    return problems


# --------------------------------------------------------------------------- pure builders


@dataclass(frozen=True, slots=True)
class PoolShape:
    """What a job needs to know about its node pool."""

    name: str
    gpus: int
    gpu: str | None
    vcpus: int
    memory_gib: float
    taints: tuple[tuple[str, str, str], ...]
    """(key, value, effect) of every taint of the pool."""
    node_selector: tuple[tuple[str, str], ...] = ()
    """(key, value) of what the pods select: the pool label, and the pool's GKE ComputeClass."""
    cloud: str | None = None
    """The pool's cloud (None: a pool validated outside a region)."""

    @classmethod
    def of(cls, spec: NodePoolSpec) -> PoolShape:
        machine: MachineType | None = spec.machine
        assert machine is not None, "spec validation guarantees a catalog machine"
        return cls(
            name=spec.name,
            gpus=machine.gpus,
            gpu=machine.gpu,
            vcpus=machine.vcpus,
            memory_gib=machine.memory_gib,
            taints=tuple((t.key, t.value, t.effect) for t in pool_taints(spec)),
            node_selector=tuple(pool_node_selector(spec).items()),
            cloud=spec.cloud,
        )

    @property
    def procs_per_node(self) -> int:
        """torchrun processes per node: one per GPU, one (gloo) on a CPU pool."""
        return max(self.gpus, 1)

    def tolerations(self) -> list[dict[str, str]]:
        return tolerations_for([{"key": k, "value": v, "effect": e} for k, v, e in self.taints])

    def pod_metadata(self, labels: dict[str, str]) -> dict[str, Any]:
        """Template metadata of the pool's trainer pods: their labels and, on a GKE pool ordered by a
        ComputeClass with active migration, `safe-to-evict: "false"`: GKE's active migration does
        not evict such pods (GKE docs, "About custom ComputeClasses"), so a running gang finishes
        on the tier it started on instead of restarting from its checkpoint when a preferred tier
        frees up.

        On EKS, `karpenter.sh/do-not-disrupt: "true"`: Karpenter drifts a node whenever the EC2NodeClass's
        `al2023@latest` AMI gets a new release and disrupts nodes at `expireAfter`; without the
        annotation a gang running for days is drained and restarted from its checkpoint at every AMI
        release (Karpenter docs, concepts/disruption: an annotated pod's node is neither consolidated
        nor drifted, and is drained only once the pod has finished)."""
        if any(k == COMPUTE_CLASS_LABEL for k, _ in self.node_selector):
            return {"labels": labels, "annotations": {SAFE_TO_EVICT: "false"}}
        if self.cloud == "aws":
            return {"labels": labels, "annotations": {DO_NOT_DISRUPT: "true"}}
        return {"labels": labels}


@dataclass(frozen=True, slots=True)
class Trial:
    """One job of a sweep (or the job itself)."""

    name: str
    overrides: dict[str, Any]
    active: bool


def sweep_trials(job: TrainingJobSpec) -> list[Trial]:
    """The trials of a job: the grid's cartesian product (in key order), first `maxConcurrent` active."""
    if job.sweep is None:
        return [Trial(job.name, dict(job.overrides), True)]
    keys = list(job.sweep.grid)
    combos = itertools.product(*(job.sweep.grid[k] for k in keys))
    return [
        Trial(
            f"{job.name}-t{i}", {**job.overrides, **dict(zip(keys, values, strict=True))}, i < job.sweep.max_concurrent
        )
        for i, values in enumerate(combos)
    ]


def join(*parts: pulumi.Input[str]) -> pulumi.Input[str]:
    """Concatenate strings, or outputs once known (a plain string when every part is one)."""
    if all(isinstance(p, str) for p in parts):
        return "".join(parts)  # type: ignore[arg-type]
    return pulumi.Output.concat(*parts)


@dataclass(frozen=True, slots=True)
class RunLocations:
    """Where one trial reads and writes (each may be an output of another resource)."""

    out: Any
    """Run directory: checkpoints (resume), metrics."""
    export: Any = None
    """Where the serving artifact goes; default (None) the trainer's `<out>/model`."""
    data: Any = None
    """Shards prefix to train on; default (None) the preset's data."""


def trainer_args(preset: str, run: RunLocations, overrides: dict[str, Any]) -> list[Any]:
    """torchrun's arguments: the trainer module, its preset, run directory, metrics port, artifact
    and data locations, then the `--set` overrides."""
    args: list[Any] = ["-m", "workloads.trainer", "--preset", preset, "--out", run.out]
    args += ["--metrics-port", str(METRICS_PORT)]
    if run.export is not None:
        args += ["--set", join("export.uri=", run.export)]
    if run.data is not None:
        args += ["--set", "data.source=shards", "--set", join("data.uri=", run.data)]
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return args


def _quantity_gi(gib: float) -> str:
    return f"{max(1, math.floor(gib))}Gi"


def pod_resources(pool: PoolShape, share: float) -> dict[str, dict[str, Any]]:
    """Requests: a share of the node's CPU and memory, all its GPUs; memory and GPUs limited."""
    requests: dict[str, Any] = {
        "cpu": str(max(1, math.floor(pool.vcpus * share))),
        "memory": _quantity_gi(pool.memory_gib * share),
    }
    limits: dict[str, Any] = {"memory": requests["memory"]}
    if pool.gpus:
        requests[GPU_RESOURCE] = pool.gpus
        limits[GPU_RESOURCE] = pool.gpus
    return {"requests": requests, "limits": limits}


def shm_size(pool: PoolShape, share: float) -> str:
    """Size of the memory-backed /dev/shm: a quarter of the pod's memory (it counts against it)."""
    return _quantity_gi(pool.memory_gib * share / 4)


def pod_spec(
    *,
    pool: PoolShape,
    image: Any,
    args: list[Any],
    service_account: str,
    share: float,
    env: list[dict[str, Any]] | None = None,
    ports: list[dict[str, Any]] | None = None,
    restart_policy: str | None = None,
    subdomain: str | None = None,
    container_name: str = CONTAINER_NAME,
    tiers: list[str] | None = None,
) -> dict[str, Any]:
    """The trainer pod: pinned to the pool (and to `tiers` of its capacity chain, when given),
    tolerating its taints, GPUs, shm, non-root."""
    container: dict[str, Any] = {
        "name": container_name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(LAUNCH),
        "args": args,
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            *(env or []),
        ],
        "resources": pod_resources(pool, share),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    container["ports"] = [
        *(ports or []),
        {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"},
    ]
    spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        # The trainer never calls the Kubernetes API (its cloud credentials come by workload identity).
        "automountServiceAccountToken": False,
        "nodeSelector": dict(pool.node_selector) or {POOL_LABEL: pool.name},
        "tolerations": pool.tolerations(),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "enableServiceLinks": False,
        # Time for the trainer to finish writing a checkpoint when a spot node is reclaimed.
        "terminationGracePeriodSeconds": 120,
        "containers": [container],
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(pool, share)}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    if tiers:
        term = {"matchExpressions": [{"key": TIER_LABEL, "operator": "In", "values": list(tiers)}]}
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    if subdomain:
        spec["subdomain"] = subdomain
    return spec


def _labels(job: str, trial: str) -> dict[str, str]:
    return {
        **TRAINER_POD_LABELS,
        "app.kubernetes.io/managed-by": "pulumi",
        "aicloud.dev/job": job,
        JOB_LABEL: trial,
    }


def pytorchjob_manifest(
    job: TrainingJobSpec,
    trial: Trial,
    *,
    pool: PoolShape,
    image: Any,
    run: RunLocations,
    namespace: str,
    service_account: str,
) -> dict[str, Any]:
    """A kubeflow.org/v1 PyTorchJob: Master + `nodes - 1` Workers, optional elastic policy."""
    labels = _labels(job.name, trial.name)
    template = {
        "metadata": pool.pod_metadata(labels),
        "spec": pod_spec(
            pool=pool,
            image=image,
            args=trainer_args(job.preset, run, trial.overrides),
            service_account=service_account,
            share=job.node_share,
            tiers=job.capacity_tiers,
            ports=[{"name": "pytorchjob-port", "containerPort": PYTORCHJOB_PORT, "protocol": "TCP"}],
        ),
    }
    # ExitCode: the operator retries pods that exit 128-255 (a preempted trainer exits 143) and
    # fails the job on 1-127 (a bug or bad config, which a retry would only repeat).
    replicas: dict[str, Any] = {"Master": {"replicas": 1, "restartPolicy": "ExitCode", "template": template}}
    if job.nodes > 1:
        replicas["Worker"] = {"replicas": job.nodes - 1, "restartPolicy": "ExitCode", "template": template}
    spec: dict[str, Any] = {
        "nprocPerNode": str(pool.procs_per_node),
        "runPolicy": {
            # Free the GPUs of pods still running once the job has finished.
            "cleanPodPolicy": "Running",
            "backoffLimit": job.max_restarts * job.nodes,
            "suspend": not trial.active,
        },
        "pytorchReplicaSpecs": replicas,
    }
    if job.elastic is not None:
        spec["elasticPolicy"] = {
            "rdzvBackend": "c10d",
            # The Master always exists, so the rendezvous never moves with a lost Worker.
            "rdzvHost": f"{trial.name}-master-0",
            "rdzvPort": PYTORCHJOB_PORT,
            "rdzvId": trial.name,
            "minReplicas": job.elastic.min_nodes,
            "maxReplicas": job.elastic.max_nodes,
            "maxRestarts": job.max_restarts,
        }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": trial.name, "namespace": namespace, "labels": labels, "annotations": dict(SKIP_AWAIT)},
        "spec": spec,
    }


def preemption_rules(container: str, action: str) -> list[dict[str, Any]]:
    """Job `podFailurePolicy` rules for a preempted trainer pod: its container exited
    `EXIT_PREEMPTED` (checkpointed after SIGTERM), or the pod was disrupted (`DisruptionTarget`:
    eviction, node drain, spot reclaim)."""
    return [
        {"action": action, "onExitCodes": {"containerName": container, "operator": "In", "values": [EXIT_PREEMPTED]}},
        {"action": action, "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]


def runtime_name(job: str) -> str:
    """The ClusterTrainingRuntime of a `trainjob` job (cluster-scoped: one per job of the stack)."""
    return f"aicloud-{job}"[:63].rstrip("-")


def training_runtime_manifest(
    job: TrainingJobSpec, *, name: str, pool: PoolShape, image: Any, service_account: str
) -> dict[str, Any]:
    """A trainer.kubeflow.org ClusterTrainingRuntime for `job`: the torch ML policy and the pod
    of every node (pool placement, GPUs, shared memory, non-root, the trainer's service account).
    The TrainJobs of its trials set the image, the command and arguments and the node count."""
    labels = _labels(job.name, job.name)
    pod = pod_spec(
        pool=pool,
        image=image,
        args=[],
        service_account=service_account,
        share=job.node_share,
        tiers=job.capacity_tiers,
        restart_policy="Never",
        container_name=TRAINJOB_CONTAINER,
    )
    return {
        "apiVersion": TRAINER_API,
        "kind": "ClusterTrainingRuntime",
        "metadata": {
            "name": name,
            "labels": {"trainer.kubeflow.org/framework": "torch", "app.kubernetes.io/managed-by": "pulumi"},
        },
        "spec": {
            "mlPolicy": {"numNodes": job.nodes, "torch": {}},
            "template": {
                "spec": {
                    # A preempted node (podFailurePolicy above) restarts the JobSet without using
                    # up `maxRestarts`; any other failure uses one.
                    "failurePolicy": {
                        "maxRestarts": job.max_restarts,
                        "rules": [
                            {
                                "name": "preempted",
                                "action": "RestartJobSetAndIgnoreMaxRestarts",
                                "onJobFailureReasons": ["PodFailurePolicy"],
                            }
                        ],
                    },
                    "replicatedJobs": [
                        {
                            "name": TRAINJOB_CONTAINER,
                            "template": {
                                "metadata": {"labels": {TRAINJOB_STEP_LABEL: "trainer"}},
                                "spec": {
                                    # Any failed pod fails its Job: torchrun's static rendezvous
                                    # needs every node to restart together (the JobSet does that).
                                    "backoffLimit": 0,
                                    "podFailurePolicy": {"rules": preemption_rules(TRAINJOB_CONTAINER, "FailJob")},
                                    "template": {"metadata": pool.pod_metadata(labels), "spec": pod},
                                },
                            },
                        }
                    ],
                }
            },
        },
    }


def trainjob_manifest(
    job: TrainingJobSpec, trial: Trial, *, runtime: str, pool: PoolShape, image: Any, run: RunLocations, namespace: str
) -> dict[str, Any]:
    """A trainer.kubeflow.org TrainJob of one trial on the job's runtime: the trial's image,
    torchrun command and arguments, nodes and processes per node, and its pods' trial label."""
    labels = _labels(job.name, trial.name)
    pod_labels = {"metadata": {"labels": {JOB_LABEL: trial.name}}}
    return {
        "apiVersion": TRAINER_API,
        "kind": "TrainJob",
        "metadata": {"name": trial.name, "namespace": namespace, "labels": labels, "annotations": dict(SKIP_AWAIT)},
        "spec": {
            "runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": runtime},
            "suspend": not trial.active,
            "trainer": {
                "image": image,
                "command": list(LAUNCH),
                "args": trainer_args(job.preset, run, trial.overrides),
                "numNodes": job.nodes,
                "numProcPerNode": pool.procs_per_node,
            },
            "runtimePatches": [
                {
                    "manager": TRAINJOB_PATCH_MANAGER,
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {"name": TRAINJOB_CONTAINER, "template": {"spec": {"template": pod_labels}}}
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


def rendezvous_host(trial: str, namespace: str) -> str:
    """Pod 0's FQDN in an indexed Job (hostname `<job>-0` under the headless service `<job>`)."""
    return f"{trial}-0.{trial}.{namespace}.svc.{CLUSTER_DOMAIN}"


def indexed_job_manifests(
    job: TrainingJobSpec,
    trial: Trial,
    *,
    pool: PoolShape,
    image: Any,
    run: RunLocations,
    namespace: str,
    service_account: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An indexed batch/v1 Job (one pod per node) and its headless Service for the rendezvous."""
    labels = _labels(job.name, trial.name)
    nnodes = f"{job.elastic.min_nodes}:{job.elastic.max_nodes}" if job.elastic else str(job.nodes)
    env = [
        {"name": "PET_NNODES", "value": nnodes},
        {"name": "PET_NPROC_PER_NODE", "value": str(pool.procs_per_node)},
        {"name": "PET_RDZV_BACKEND", "value": "c10d"},
        {"name": "PET_RDZV_ENDPOINT", "value": f"{rendezvous_host(trial.name, namespace)}:{RDZV_PORT}"},
        {"name": "PET_RDZV_ID", "value": trial.name},
        {"name": "PET_MAX_RESTARTS", "value": str(job.max_restarts)},
    ]
    pod = pod_spec(
        pool=pool,
        image=image,
        args=trainer_args(job.preset, run, trial.overrides),
        service_account=service_account,
        share=job.node_share,
        tiers=job.capacity_tiers,
        env=env,
        ports=[{"name": "rdzv", "containerPort": RDZV_PORT, "protocol": "TCP"}],
        restart_policy="Never",
        subdomain=trial.name,
    )
    batch_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": trial.name, "namespace": namespace, "labels": labels, "annotations": dict(SKIP_AWAIT)},
        "spec": {
            "completionMode": "Indexed",
            "completions": job.nodes,
            "parallelism": job.nodes,
            "backoffLimit": job.max_restarts * job.nodes,
            # A preempted pod (exit 143, or evicted by a node drain or spot reclaim) is replaced
            # without counting against backoffLimit; torchrun's elastic rendezvous takes it back.
            "podFailurePolicy": {"rules": preemption_rules(CONTAINER_NAME, "Ignore")},
            "suspend": not trial.active,
            "template": {"metadata": pool.pod_metadata(labels), "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": trial.name, "namespace": namespace, "labels": labels, "annotations": dict(SKIP_AWAIT)},
        "spec": {
            "clusterIP": "None",
            "selector": {JOB_LABEL: trial.name},
            # Pod 0's DNS record must exist before it is ready: the rendezvous happens first.
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rdzv", "port": RDZV_PORT, "targetPort": RDZV_PORT, "protocol": "TCP"}],
        },
    }
    return batch_job, service


# --------------------------------------------------------------------------- components


@dataclass(frozen=True)
class TrainerIdentity:
    """The trainer's Kubernetes identity in a region and the lakehouse zones it may use."""

    namespace: str
    service_account: str
    zone_uris: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Lakehouse zone -> bucket URI (`checkpoints`, `models`, `curated`, `features`)."""
    depends_on: tuple[pulumi.Resource, ...] = ()
    """Resources the jobs wait for (the ServiceAccount and its cloud role bindings)."""


def run_locations(job: TrainingJobSpec, trial: Trial, zones: Mapping[str, pulumi.Input[str]]) -> RunLocations:
    """Where a trial writes: `out` or the `checkpoints` zone, the `models` zone for the artifact,
    and the dataset's zone for data, each under the trial's own prefix."""
    base = job.out or zones.get("checkpoints")
    out = join(base, "/", trial.name) if base is not None else f"/tmp/runs/{trial.name}"
    models = zones.get("models")
    data = None
    if job.dataset is not None:
        zone, _, prefix = job.dataset.partition("/")
        if zone not in zones:
            raise ValueError(
                f"training job {job.name!r}: dataset zone {zone!r} is not available to the trainer; "
                f"zones: {', '.join(sorted(zones)) or 'none (no lakehouse)'}"
            )
        data = join(zones[zone], "/", prefix)
    return RunLocations(out=out, export=join(models, "/", trial.name) if models is not None else None, data=data)


class TrainingJob(pulumi.ComponentResource):
    """One training job (or the trials of a sweep) of one region, on one node pool."""

    def __init__(
        self,
        name: str,
        spec: TrainingJobSpec,
        *,
        pool: NodePoolSpec,
        image: pulumi.Input[str],
        identity: TrainerIdentity,
        region_key: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("training", "TrainingJob"), name, None, opts)
        shape = PoolShape.of(pool)
        deps = [*((opts.depends_on if opts else None) or []), *identity.depends_on]  # type: ignore[misc]
        # Waiting trials of a sweep are resumed outside Pulumi: never suspend them again.
        ignore = ["spec.runPolicy.suspend" if spec.backend == "pytorchjob" else "spec.suspend"] if spec.sweep else []
        self.spec = spec
        self.trials = sweep_trials(spec)
        self.objects: list[pulumi.CustomResource] = []
        self.runtime: pulumi.CustomResource | None = None
        if spec.backend == "trainjob":
            runtime = training_runtime_manifest(
                spec, name=runtime_name(spec.name), pool=shape, image=image, service_account=identity.service_account
            )
            self.runtime = custom_resource(f"{name}-runtime", runtime, child_opts(self, depends_on=deps))
        for trial in self.trials:
            role = trial.name.removeprefix(f"{spec.name}-") if spec.sweep else "job"
            common: dict[str, Any] = dict(
                pool=shape,
                image=image,
                run=run_locations(spec, trial, identity.zone_uris),
                namespace=identity.namespace,
                service_account=identity.service_account,
            )
            if spec.backend == "trainjob":
                assert self.runtime is not None
                common.pop("service_account")
                manifest = trainjob_manifest(spec, trial, runtime=runtime_name(spec.name), **common)
                self.objects.append(
                    custom_resource(
                        f"{name}-{role}",
                        manifest,
                        child_opts(self, depends_on=[*deps, self.runtime], ignore_changes=ignore),
                    )
                )
                continue
            if spec.backend == "pytorchjob":
                manifest = pytorchjob_manifest(spec, trial, **common)
                self.objects.append(
                    custom_resource(
                        f"{name}-{role}", manifest, child_opts(self, depends_on=deps, ignore_changes=ignore)
                    )
                )
                continue
            batch_job, service = indexed_job_manifests(spec, trial, **common)
            svc = k8s.core.v1.Service(
                f"{name}-{role}-rdzv",
                metadata=service["metadata"],
                spec=service["spec"],
                opts=child_opts(self, depends_on=deps),
            )
            self.objects.append(
                k8s.batch.v1.Job(
                    f"{name}-{role}",
                    metadata=batch_job["metadata"],
                    spec=batch_job["spec"],
                    opts=child_opts(self, depends_on=[*deps, svc], ignore_changes=ignore),
                )
            )
        self.register_outputs(
            {
                "job": spec.name,
                "region": region_key,
                "backend": spec.backend,
                "pool": pool.name,
                "nodes": spec.nodes,
                "elastic": [spec.elastic.min_nodes, spec.elastic.max_nodes] if spec.elastic else None,
                "gpusPerNode": shape.gpus,
                "gpu": shape.gpu,
                "procsPerNode": shape.procs_per_node,
                "image": image,
                "preset": spec.preset,
                "namespace": identity.namespace,
                "serviceAccount": identity.service_account,
                "trials": [{"name": t.name, "active": t.active, "overrides": t.overrides} for t in self.trials],
            }
        )


TRAINING_ALLOWS = (
    Allow(
        "trainer-peers",
        "trainer pods of a job reach each other: torchrun's rendezvous (indexed Job and PyTorchJob ports) "
        "and NCCL/gloo, whose bootstrap and data sockets bind ephemeral ports (Linux's default range)",
        peers=[from_pods(TRAINER_POD_LABELS)],
        ports=[(RDZV_PORT, "TCP"), (PYTORCHJOB_PORT, "TCP"), (*EPHEMERAL_PORTS, "TCP")],
        pods=TRAINER_POD_LABELS,
    ),
    Allow(
        "trainer-metrics",
        "Prometheus scrapes the trainer's metrics port",
        peers=[from_prometheus()],
        ports=[(METRICS_PORT, "TCP")],
        pods=TRAINER_POD_LABELS,
    ),
)
"""Who may reach the training namespace's pods (it denies everything else; the retraining
trigger there needs no ingress)."""
TRAINING_OPERATOR_ALLOWS = (
    Allow(
        "api-server",
        "the API server calls the admission webhooks of the Trainer and JobSet controllers; its source is the "
        "control plane, which no selector names",
        peers=[{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        ports=[(9443, "TCP")],
    ),
)


class TrainingOperator(pulumi.ComponentResource):
    """Kubeflow Trainer v2 (the TrainJob and ClusterTrainingRuntime controller, with JobSet)
    installed from its published chart."""

    def __init__(self, name: str, *, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("training", "TrainingOperator"), name, None, opts)
        ns = secure_namespace(f"{name}-ns", OPERATOR_NAMESPACE, parent=self, allows=TRAINING_OPERATOR_ALLOWS)
        self.release = helm_release(
            f"{name}-release",
            TRAINER_OPERATOR,
            namespace=OPERATOR_NAMESPACE,
            release_name=TRAINER_OPERATOR,
            opts=child_opts(self, depends_on=[ns]),
        )
        self.register_outputs({"chart": TRAINING_OPERATOR_CHART, "namespace": OPERATOR_NAMESPACE})


class RegionalTraining(pulumi.ComponentResource):
    """Training in one region: the trainer's namespace and service account (unless the
    lakehouse's workload identity provides them), the training operator when needed, the jobs."""

    def __init__(
        self,
        name: str,
        jobs: list[TrainingJobSpec],
        *,
        pools: Mapping[str, NodePoolSpec],
        image: pulumi.Input[str] | None,
        install_operator: bool,
        identity: TrainerIdentity | None = None,
        region_key: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(type_token("training", "RegionalTraining"), name, None, opts)
        if identity is None:
            ns = secure_namespace(
                f"{name}-ns",
                TRAINER.namespace,
                parent=self,
                labels={"app.kubernetes.io/managed-by": "pulumi"},
                allows=TRAINING_ALLOWS,
            )
            sa = k8s.core.v1.ServiceAccount(
                f"{name}-sa",
                metadata={"name": TRAINER.service_account, "namespace": TRAINER.namespace},
                automount_service_account_token=False,
                opts=child_opts(self, depends_on=[ns]),
            )
            identity = TrainerIdentity(TRAINER.namespace, TRAINER.service_account, depends_on=(ns, sa))
        self.identity = identity
        self.operator: TrainingOperator | None = None
        deps: list[pulumi.Resource] = []
        if install_operator and any(j.backend == "trainjob" for j in jobs):
            self.operator = TrainingOperator(f"{name}-operator", opts=child_opts(self))
            deps.append(self.operator)
        self.jobs: dict[str, TrainingJob] = {}
        for j in jobs:
            job_image = j.image or image
            if job_image is None:
                raise ValueError(f"training job {j.name!r} has no image (config validation should have caught it)")
            self.jobs[j.name] = TrainingJob(
                f"{name}-{j.name}",
                j,
                pool=pools[j.pool],
                image=job_image,
                identity=identity,
                region_key=region_key,
                opts=child_opts(self, depends_on=deps),
            )
        self.register_outputs(
            {
                "namespace": identity.namespace,
                "serviceAccount": identity.service_account,
                "jobs": sorted(self.jobs),
                "operator": self.operator is not None,
            }
        )
