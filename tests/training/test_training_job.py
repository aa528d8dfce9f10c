"""TrainingJob under the mock engine: PyTorchJob replicas, pool placement, GPUs, the trainer's
identity, shared memory, the indexed-Job alternative, sweeps, and strict Kubernetes schemas."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from components.helm import release_record
from components.k8s_schema import identity_problems, is_builtin, kubernetes_objects, validate_object
from components.nodepool import NodePoolSpec, pool_taints
from components.training import (
    CLUSTER_DOMAIN,
    OPERATOR_NAMESPACE,
    RDZV_PORT,
    TRAINING_OPERATOR_CHART,
    RegionalTraining,
    TrainerIdentity,
    TrainingJob,
    TrainingJobSpec,
)
from components.upstream import chart_truth, crd

K8S_VERSION = "1.33"
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"123456789012.dkr.ecr.us-west-2.amazonaws.com/aicloud-test/trainer@{DIGEST}"
PYTORCHJOB = "kubernetes:kubeflow.org/v1:PyTorchJob"
TRAINJOB = "kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob"
RUNTIME = "kubernetes:trainer.kubeflow.org/v1alpha1:ClusterTrainingRuntime"
JOB = "kubernetes:batch/v1:Job"
SERVICE = "kubernetes:core/v1:Service"


def gpu_pool(**overrides) -> NodePoolSpec:
    """A 4 x L40S training pool with an extra team taint on top of the GPU taint."""
    raw = {
        "name": "train",
        "machineType": "g6e.12xlarge",
        "role": "training",
        "maxNodes": 4,
        "taints": [{"key": "team", "value": "ml", "effect": "NoExecute"}],
        **overrides,
    }
    return NodePoolSpec.model_validate(raw, context={})


def job_spec(**overrides) -> TrainingJobSpec:
    """A job; `pytorchjob` unless `backend` says otherwise (its rendering is what most tests read)."""
    raw = {"name": "llm", "pool": "train", "nodes": 3, "preset": "mlp", "backend": "pytorchjob", **overrides}
    return TrainingJobSpec.model_validate(raw)


IDENTITY = TrainerIdentity(
    "aicloud-training",
    "aicloud-trainer",
    zone_uris={"checkpoints": "s3://lake-ckpt", "models": "s3://lake-models", "features": "s3://lake-features"},
)


def build(spec: TrainingJobSpec, pool: NodePoolSpec | None = None, identity: TrainerIdentity = IDENTITY):
    return lambda: TrainingJob("t-llm", spec, pool=pool or gpu_pool(), image=IMAGE, identity=identity)


def templates_of(obj: dict) -> dict[str, dict]:
    """Pod templates of a PyTorchJob (by replica type) or Job (`Job`) manifest."""
    spec = obj["spec"]
    if obj["kind"] == "PyTorchJob":
        return {k: v["template"] for k, v in spec["pytorchReplicaSpecs"].items()}
    return {"Job": spec["template"]}


def templates(reg) -> dict[str, dict]:
    """Pod templates of a recorded PyTorchJob or Job."""
    return templates_of(reg.inputs)


def container(template: dict) -> dict:
    (c,) = template["spec"]["containers"]
    return c


def by_trial(regs) -> list:
    """Registrations in trial order (the engine registers them concurrently)."""
    return sorted(regs, key=lambda r: int(r.inputs["metadata"]["name"].rsplit("-t", 1)[1]))


def run_dir(c: dict) -> str:
    return c["args"][c["args"].index("--out") + 1]


def set_args(c: dict) -> dict[str, str]:
    args = c["args"]
    pairs = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    return dict(p.split("=", 1) for p in pairs)


def test_pytorchjob_has_a_master_and_nodes_minus_one_workers(record):
    regs = record(build(job_spec(nodes=3)))
    job = regs.one(PYTORCHJOB)
    replicas = job.inputs["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1
    assert replicas["Worker"]["replicas"] == 2
    assert {r["restartPolicy"] for r in replicas.values()} == {"ExitCode"}
    assert job.inputs["metadata"] == {
        "name": "llm",
        "namespace": "aicloud-training",
        "labels": job.inputs["metadata"]["labels"],
        "annotations": {"pulumi.com/skipAwait": "true"},
    }


def test_a_single_node_job_has_only_a_master(record):
    job = record(build(job_spec(nodes=1))).one(PYTORCHJOB)
    assert set(job.inputs["spec"]["pytorchReplicaSpecs"]) == {"Master"}


def test_pods_tolerate_exactly_the_pool_taints_and_select_the_pool(record):
    pool = gpu_pool()
    job = record(build(job_spec(), pool)).one(PYTORCHJOB)
    expected = {(t.key, t.value, t.effect) for t in pool_taints(pool)}
    assert expected == {("nvidia.com/gpu", "present", "NoSchedule"), ("team", "ml", "NoExecute")}
    for template in templates(job).values():
        tolerations = template["spec"]["tolerations"]
        assert {(t["key"], t["value"], t["effect"]) for t in tolerations} == expected
        assert all(t["operator"] == "Equal" for t in tolerations)
        assert template["spec"]["nodeSelector"] == {"aicloud.dev/pool": "train"}


def test_gpu_limits_and_processes_per_node_equal_the_pools_gpus_per_node(record):
    job = record(build(job_spec())).one(PYTORCHJOB)
    assert job.inputs["spec"]["nprocPerNode"] == "4"  # g6e.12xlarge: 4 x L40S
    for template in templates(job).values():
        resources = container(template)["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == 4
        assert resources["requests"]["nvidia.com/gpu"] == 4
        # 75% of the node's 48 vCPUs and 384 GiB by default; memory is also the limit.
        assert resources["requests"]["cpu"] == "36"
        assert resources["requests"]["memory"] == resources["limits"]["memory"] == "288Gi"


def test_a_cpu_pool_runs_one_process_per_node_without_gpu_resources(record):
    pool = NodePoolSpec.model_validate({"name": "cpu", "machineType": "m6i.xlarge", "maxNodes": 2}, context={})
    job = record(build(job_spec(pool="cpu", nodes=2, allowCpu=True), pool)).one(PYTORCHJOB)
    assert job.inputs["spec"]["nprocPerNode"] == "1"
    for template in templates(job).values():
        resources = container(template)["resources"]
        assert "nvidia.com/gpu" not in resources["requests"] and "nvidia.com/gpu" not in resources["limits"]
        assert template["spec"]["tolerations"] == []


def test_the_container_runs_torchrun_on_the_trainer_image_by_digest(record):
    job = record(build(job_spec(overrides={"train.steps": 500, "optim.lr": 0.0003}))).one(PYTORCHJOB)
    c = container(templates(job)["Master"])
    assert c["name"] == "pytorch"  # the operator's required container name
    assert re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", c["image"]) and c["image"] == IMAGE
    assert c["command"] == ["python", "-m", "workloads.trainer.launch"]
    assert c["args"][:4] == ["-m", "workloads.trainer", "--preset", "mlp"]
    assert set_args(c)["train.steps"] == "500" and set_args(c)["optim.lr"] == "0.0003"
    # Rank 0 serves Prometheus metrics on the port the trainer PodMonitor scrapes by name.
    assert c["args"][c["args"].index("--metrics-port") + 1] == "9090"
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in c["ports"]


def test_trials_write_to_the_lakehouse_checkpoints_and_models_zones(record):
    job = record(build(job_spec(dataset="features/clicks/v3"))).one(PYTORCHJOB)
    c = container(templates(job)["Master"])
    assert run_dir(c) == "s3://lake-ckpt/llm"
    sets = set_args(c)
    assert sets["export.uri"] == "s3://lake-models/llm"
    assert sets["data.source"] == "shards" and sets["data.uri"] == "s3://lake-features/clicks/v3"


def test_without_a_lakehouse_a_dataset_is_refused_and_runs_stay_in_the_pod(record):
    plain = TrainerIdentity("aicloud-training", "trainer")
    c = container(templates(record(build(job_spec(), identity=plain)).one(PYTORCHJOB))["Master"])
    assert run_dir(c) == "/tmp/runs/llm"
    assert "export.uri" not in set_args(c)
    with pytest.raises(Exception, match="dataset zone 'features' is not available"):
        record(build(job_spec(dataset="features/clicks"), identity=plain))


def test_pods_use_the_trainer_service_account_shm_and_run_as_non_root(record):
    job = record(build(job_spec())).one(PYTORCHJOB)
    for template in templates(job).values():
        pod = template["spec"]
        assert pod["serviceAccountName"] == "aicloud-trainer"
        shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"] == "72Gi"
        c = container(template)
        assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_elastic_policy_uses_c10d_on_the_master_within_the_node_range(record):
    spec = job_spec(nodes=3, elastic={"minNodes": 2, "maxNodes": 4}, maxRestarts=5)
    policy = record(build(spec)).one(PYTORCHJOB).inputs["spec"]["elasticPolicy"]
    assert policy == {
        "rdzvBackend": "c10d",
        "rdzvHost": "llm-master-0",
        "rdzvPort": 23456,
        "rdzvId": "llm",
        "minReplicas": 2,
        "maxReplicas": 4,
        "maxRestarts": 5,
    }


def test_indexed_job_runs_one_pod_per_node_with_rendezvous_on_pod_zero(record):
    regs = record(build(job_spec(backend="indexed-job", nodes=3)))
    assert not regs.of_type(PYTORCHJOB)
    job, svc = regs.one(JOB), regs.one(SERVICE)
    spec = job.inputs["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] == 3
    assert spec["suspend"] is False
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == svc.inputs["metadata"]["name"] == "llm"
    assert svc.inputs["spec"]["clusterIP"] == "None"
    assert svc.inputs["spec"]["publishNotReadyAddresses"] is True
    labels = spec["template"]["metadata"]["labels"]
    assert svc.inputs["spec"]["selector"].items() <= labels.items()
    env = {e["name"]: e["value"] for e in container(spec["template"])["env"]}
    assert env["PET_RDZV_ENDPOINT"] == f"llm-0.llm.aicloud-training.svc.{CLUSTER_DOMAIN}:{RDZV_PORT}"
    assert env["PET_RDZV_BACKEND"] == "c10d"
    assert env["PET_NNODES"] == "3" and env["PET_NPROC_PER_NODE"] == "4"
    assert container(spec["template"])["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert job.depends_on and svc.urn in job.depends_on


def test_an_elastic_indexed_job_lets_torchrun_continue_on_fewer_nodes(record):
    spec = job_spec(backend="indexed-job", nodes=3, elastic={"minNodes": 2, "maxNodes": 3}, maxRestarts=2)
    job = record(build(spec)).one(JOB)
    env = {e["name"]: e["value"] for e in container(job.inputs["spec"]["template"])["env"]}
    assert env["PET_NNODES"] == "2:3" and env["PET_MAX_RESTARTS"] == "2"
    assert job.inputs["spec"]["parallelism"] == 3 and job.inputs["spec"]["backoffLimit"] == 6


def test_a_sweep_runs_max_concurrent_trials_and_suspends_the_rest(record):
    grid = {"optim.lr": [0.001, 0.0003, 0.0001], "train.batch_size": [64, 128]}
    regs = record(build(job_spec(nodes=1, sweep={"grid": grid, "maxConcurrent": 2})))
    jobs = by_trial(regs.of_type(PYTORCHJOB))
    assert [j.inputs["metadata"]["name"] for j in jobs] == [f"llm-t{i}" for i in range(6)]
    suspended = [j.inputs["spec"]["runPolicy"]["suspend"] for j in jobs]
    assert suspended == [False, False, True, True, True, True]
    # Waiting trials are resumed outside Pulumi, so the next `up` must not suspend them again.
    assert all(j.ignore_changes == ["spec.runPolicy.suspend"] for j in jobs)
    combos = {
        (s["optim.lr"], s["train.batch_size"]) for s in (set_args(container(templates(j)["Master"])) for j in jobs)
    }
    assert combos == {(lr, bs) for lr in ("0.001", "0.0003", "0.0001") for bs in ("64", "128")}
    outs = {run_dir(container(templates(j)["Master"])) for j in jobs}
    assert len(outs) == 6  # every trial has its own run directory


def test_an_indexed_job_sweep_suspends_jobs_beyond_the_limit(record):
    regs = record(build(job_spec(nodes=1, backend="indexed-job", sweep={"grid": {"optim.lr": [1, 2, 3]}})))
    assert [j.inputs["spec"]["suspend"] for j in by_trial(regs.of_type(JOB))] == [False, True, True]
    assert all(j.ignore_changes == ["spec.suspend"] for j in regs.of_type(JOB))
    assert len(regs.of_type(SERVICE)) == 3


def test_component_outputs_describe_the_job(record):
    out = (
        record(build(job_spec(sweep={"grid": {"optim.lr": [1, 2]}}, nodes=1)))
        .one("aicloud:training:TrainingJob")
        .outputs
    )
    assert out["gpusPerNode"] == 4 and out["gpu"] == "nvidia-l40s" and out["image"] == IMAGE
    assert [t["active"] for t in out["trials"]] == [True, False]


def _regional(install: bool, identity: TrainerIdentity | None, backend: str = "pytorchjob"):
    def program():
        RegionalTraining(
            "r-training",
            [job_spec(backend=backend)],
            pools={"train": gpu_pool()},
            image=IMAGE,
            install_operator=install,
            identity=identity,
        )

    return program


def test_the_trainer_is_installed_from_its_pinned_oci_chart_only_when_asked_and_needed(record):
    regs = record(_regional(True, IDENTITY, "trainjob"))
    release = regs.one("kubernetes:helm.sh/v3:Release")
    record_ = release_record(release.inputs)
    assert (record_.chart, record_.version, record_.repo) == (
        "kubeflow-trainer",
        "2.2.1",
        TRAINING_OPERATOR_CHART["repo"],
    )
    assert record_.pinned and record_.repo.startswith("oci://") and record_.namespace == OPERATOR_NAMESPACE
    truth = chart_truth("kubeflow-trainer")
    assert record_.version in truth.published_versions
    operator = regs.one("aicloud:training:TrainingOperator")
    job = regs.one(TRAINJOB)
    assert any(operator.urn == d or d in {r.urn for r in regs.children_of(operator)} for d in job.depends_on)
    assert not record(_regional(False, IDENTITY, "trainjob")).of_type("kubernetes:helm.sh/v3:Release")
    assert not record(_regional(True, IDENTITY, "indexed-job")).of_type("kubernetes:helm.sh/v3:Release")
    # The v1 operator has no chart: a preinstalled one is assumed (config refuses `install`).
    assert not record(_regional(True, IDENTITY, "pytorchjob")).of_type("kubernetes:helm.sh/v3:Release")


def test_every_kind_a_backend_renders_is_served_by_the_operator_installed_for_it(record):
    """Custom resources without their controller: each rendered kind's vendored CRD names the
    chart that installs it, and that is the chart the region gets."""
    for backend in ("trainjob", "pytorchjob", "indexed-job"):
        regs = record(_regional(True, IDENTITY, backend))
        installed = {release_record(r.inputs).chart for r in regs.of_type("kubernetes:helm.sh/v3:Release")}
        for _, obj in kubernetes_objects(regs):
            if is_builtin(obj["apiVersion"], obj["kind"], K8S_VERSION):
                continue
            truth = crd(obj["apiVersion"], obj["kind"])
            if backend == "pytorchjob":
                assert truth.installed_by is None  # no chart: operator must be preinstalled
            else:
                assert truth.installed_by in installed, (backend, obj["kind"])


def test_planted_pytorchjob_chart_that_was_never_published_is_not_pinned():
    """What aicloud installed before: `training-operator` 1.8.1 from kubeflow.github.io."""
    planted = {
        "chart": "training-operator",
        "version": "1.8.1",
        "repositoryOpts": {"repo": "https://kubeflow.github.io/training-operator"},
    }
    assert not release_record(planted).pinned
    assert chart_truth("training-operator") is None


def test_a_trainjob_runs_the_trial_on_its_jobs_cluster_training_runtime(record):
    regs = record(build(job_spec(backend="trainjob")))
    runtime = regs.one(RUNTIME).inputs
    assert runtime["metadata"]["name"] == "aicloud-llm" and "namespace" not in runtime["metadata"]
    assert runtime["spec"]["mlPolicy"] == {"numNodes": 3, "torch": {}}
    (replicated,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == "node"
    assert replicated["template"]["metadata"]["labels"] == {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
    pod = replicated["template"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["name"] == "node"  # the container the Trainer's torch plugin configures
    assert pod["nodeSelector"] == {"aicloud.dev/pool": "train"} and pod["serviceAccountName"] == "aicloud-trainer"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert not any(e["name"].startswith("PET_") for e in c["env"])  # reserved for the torch plugin
    job = regs.one(TRAINJOB).inputs
    assert job["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "aicloud-llm",
    }
    trainer = job["spec"]["trainer"]
    assert (
        trainer["image"] == IMAGE
        and trainer["command"] == ["python", "-m", "workloads.trainer.launch"]
        and trainer["args"][:2] == ["-m", "workloads.trainer"]
    )
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 4)
    (patch,) = job["spec"]["runtimePatches"]
    (rj,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rj["template"]["spec"]["template"]["metadata"]["labels"] == {"aicloud.dev/training-job": "llm"}


def test_a_trainjob_sweep_suspends_trials_beyond_the_limit_and_ignores_later_resumes(record):
    sweep = {"grid": {"optim.lr": [1, 2, 3]}, "maxConcurrent": 1}
    regs = record(build(job_spec(backend="trainjob", nodes=1, sweep=sweep)))
    jobs = by_trial(regs.of_type(TRAINJOB))
    assert [j.inputs["spec"]["suspend"] for j in jobs] == [False, True, True]
    assert all(j.ignore_changes == ["spec.suspend"] for j in jobs)
    assert len(regs.of_type(RUNTIME)) == 1


def test_without_an_identity_a_namespace_and_service_account_are_created(record):
    regs = record(_regional(False, None))
    ns = regs.one("kubernetes:core/v1:Namespace")
    sa = regs.one("kubernetes:core/v1:ServiceAccount")
    assert ns.inputs["metadata"]["name"] == sa.inputs["metadata"]["namespace"] == "aicloud-training"
    pod = templates(regs.one(PYTORCHJOB))["Master"]["spec"]
    assert pod["serviceAccountName"] == sa.inputs["metadata"]["name"]
    with_identity = record(_regional(False, IDENTITY))
    assert not with_identity.of_type("kubernetes:core/v1:Namespace")
    assert not with_identity.of_type("kubernetes:core/v1:ServiceAccount")


# --------------------------------------------------------------------------- strict schemas


@pytest.mark.parametrize("backend", ["trainjob", "pytorchjob", "indexed-job"])
def test_rendered_objects_pass_strict_kubernetes_schema_validation(record, backend):
    regs = record(_regional(True, None, backend))
    objects = kubernetes_objects(regs)
    kinds = sorted(obj["kind"] for _, obj in objects)
    expected = {
        "trainjob": ["ClusterTrainingRuntime", "TrainJob"],
        "pytorchjob": ["PyTorchJob"],
        "indexed-job": ["Job", "Service"],
    }[backend]
    # the training namespace: default-deny, trainer peers, Prometheus -> metrics
    expected += ["NetworkPolicy"] * 3
    if backend == "trainjob":  # the operator's namespace: default-deny, the API server -> webhooks
        expected += ["Namespace", "NetworkPolicy", "NetworkPolicy"]
    assert kinds == sorted(["Namespace", "ServiceAccount", *expected])
    for _, obj in objects:
        assert validate_object(obj, K8S_VERSION) == []
        assert identity_problems(obj) == []
        if obj["kind"] == "PyTorchJob":
            # The PyTorchJob schema is aicloud's own; check its pod templates against the core API too.
            for replica, template in templates_of(obj).items():
                pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": replica.lower()}}
                kubernetes_validate.validate({**pod_template, "template": template}, f"{K8S_VERSION}.0", strict=True)
        elif is_builtin(obj["apiVersion"], obj["kind"], K8S_VERSION):
            kubernetes_validate.validate(obj, f"{K8S_VERSION}.0", strict=True)


def test_strict_validation_catches_a_misplaced_field(record):
    job = record(build(job_spec(backend="indexed-job"))).one(JOB).inputs
    bad = {**job, "spec": {**job["spec"], "template": {**job["spec"]["template"]}}}
    bad["spec"]["template"]["spec"] = {**job["spec"]["template"]["spec"], "gpus": 4}
    assert any("gpus" in p for p in validate_object(bad, K8S_VERSION))


# --------------------------------------------------------------------------- preemption is retried


def test_a_preempted_trainer_is_retried_by_every_backend(record):
    """The trainer exits 143 after checkpointing on SIGTERM (`workloads.trainer.launch`); each job
    controller must retry that, not count it as the job's failure."""
    indexed = record(build(job_spec(backend="indexed-job"))).one(JOB).inputs["spec"]
    assert indexed["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it
    rules = indexed["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "Ignore",
        "onExitCodes": {"containerName": "pytorch", "operator": "In", "values": [143]},
    }
    assert rules[1]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    pytorchjob = record(build(job_spec())).one(PYTORCHJOB).inputs["spec"]
    assert {r["restartPolicy"] for r in pytorchjob["pytorchReplicaSpecs"].values()} == {"ExitCode"}
    runtime = record(build(job_spec(backend="trainjob"))).one(RUNTIME).inputs["spec"]["template"]["spec"]
    (replicated,) = runtime["replicatedJobs"]
    job = replicated["template"]["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "Never" and job["backoffLimit"] == 0
    assert job["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [143]
    assert runtime["failurePolicy"]["rules"] == [
        {
            "name": "preempted",
            "action": "RestartJobSetAndIgnoreMaxRestarts",
            "onJobFailureReasons": ["PodFailurePolicy"],
        }
    ]
