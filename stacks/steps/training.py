"""Program steps for workload images and training, and their plan sections.

- `deploy_images`: the stack's registries and one `WorkloadImage` per workload of
  `aicloud:images`; fills `Deployment.images[region key][workload]` with an `ImageRef` (pull by
  digest from the registry nearest that region) for later steps (training, endpoints).
- `deploy_training`: one `RegionalTraining` per primary region that runs jobs, under that
  region's platform and Kubernetes provider, using the trainer's workload identity from the
  lakehouse step when there is one; records the operator it installs (`Deployment.operators`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pulumi

from components.image import ImageRegistry, WorkloadImage, registry_regions
from components.training import TRAINER_OPERATOR, RegionalTraining, TrainerIdentity, TrainingJobSpec, job_region

if TYPE_CHECKING:
    from stacks.deployment import Deployment
    from stacks.plan.model import Plan


def deploy_images(d: Deployment) -> None:
    """Registries and workload images (`aicloud:images`)."""
    spec = d.config.images
    if spec is None:
        return
    registry = ImageRegistry(
        "images",
        spec,
        stack=d.stack,
        regions=registry_regions(d.config.regions, replicate=spec.replicate),
        providers=d.providers,
        gcp_project=d.config.gcp_project,
        safety=d.config.safety,
        tags=d.tags,
    )
    for workload, wspec in spec.workloads.items():
        image = WorkloadImage(
            f"{workload}-image", workload, wspec, registry=registry, opts=pulumi.ResourceOptions(parent=registry)
        )
        for key, ref in image.refs.items():
            d.images.setdefault(key, {})[workload] = ref
        d.outputs[f"image:{workload}:digest"] = image.digest


def _trainer_identity(d: Deployment, key: str) -> TrainerIdentity | None:
    """The trainer's workload identity and lakehouse zones in region `key`, when the storage step
    made one (else `RegionalTraining` creates a plain namespace and service account)."""
    identity = getattr(d, "identities", {}).get(key, {}).get("trainer")
    if identity is None:
        return None
    return TrainerIdentity(
        namespace=identity.namespace,
        service_account=identity.service_account_name,
        zone_uris=dict(identity.zone_uris),
        depends_on=(identity,),
    )


def deploy_training(d: Deployment) -> None:
    """Training jobs (`aicloud:training`), grouped by the primary region they run in."""
    spec = d.config.training
    if spec is None:
        return
    by_region: dict[str, list[TrainingJobSpec]] = defaultdict(list)
    for job in spec.jobs:
        region = job_region(job, d.config.regions)
        assert region is not None, "config validation guarantees the job's region"
        by_region[region.name].append(job)
    for key, jobs in by_region.items():
        platform = d.regions[key]
        trainer = d.images.get(key, {}).get("trainer")
        training = RegionalTraining(
            f"{key}-training",
            jobs,
            pools={name: pool.spec for name, pool in platform.pools.items()},
            image=trainer.ref if trainer is not None else None,
            install_operator=spec.operator == "install",
            identity=_trainer_identity(d, key),
            region_key=key,
            opts=pulumi.ResourceOptions(
                parent=platform, providers=[platform.k8s_provider], depends_on=platform.system_nodes
            ),
        )
        if training.operator is not None:
            d.operators.setdefault(key, set()).add(TRAINER_OPERATOR)


# --------------------------------------------------------------------------- plan sections


def _short_ref(ref: Any) -> str:
    """`<registry host>/…/<name>@sha256:1234abcd…` (or the digest placeholder) for a table cell."""
    text = str(ref)
    repo, _, digest = text.rpartition("@")
    if not repo:
        return text
    parts = repo.split("/")
    if digest.startswith("sha256:"):
        digest = digest[:19] + "…"
    return f"{parts[0]}/…/{parts[-1]}@{digest}" if len(parts) > 2 else f"{repo}@{digest}"


def training_section(plan: Plan) -> dict[str, Any] | None:
    """Per training job: region, backend, pool, nodes x GPUs, trials and the image by digest."""
    rows = []
    suspended = 0
    for _, out in plan.component_outputs("aicloud:training:TrainingJob"):
        nodes = str(out["nodes"])
        if out.get("elastic"):
            nodes += f" ({out['elastic'][0]}-{out['elastic'][1]})"
        gpus = f"{out['gpusPerNode']} {out['gpu']}" if out.get("gpu") else "CPU"
        trials = out["trials"]
        active = sum(1 for t in trials if t["active"])
        suspended += len(trials) - active
        rows.append(
            [
                out.get("region") or "-",
                out["job"],
                out["backend"],
                out["pool"],
                f"{nodes} x {gpus}",
                out["preset"],
                f"{len(trials)} ({active} active)" if len(trials) > 1 else "1",
                _short_ref(out["image"]),
            ]
        )
    if not rows:
        return None
    rows.sort(key=lambda r: (r[0], r[1]))
    notes = ["nodes x GPUs per node; elastic jobs show their node range in parentheses. Images by digest."]
    if suspended:
        notes.append(
            f"{suspended} sweep trial(s) are created suspended (maxConcurrent); resume them with "
            "`kubectl patch` or a queue as earlier trials finish."
        )
    return {
        "title": "Training",
        "columns": ["region", "job", "backend", "pool", "nodes x GPUs", "preset", "trials", "image"],
        "rows": rows,
        "notes": notes,
    }


def _registry(ref: str) -> str:
    """`ECR us-west-2`, `AR europe-west4` or the host of a pinned image, from a reference."""
    host = ref.split("/", 1)[0]
    if ".dkr.ecr." in host:
        return f"ECR {host.split('.')[3]}"
    if host.endswith("-docker.pkg.dev"):
        return f"AR {host.removesuffix('-docker.pkg.dev')}"
    return host


def images_section(plan: Plan) -> dict[str, Any] | None:
    """Per workload image: built or pinned, its tag, and the registries regions pull from."""
    rows = []
    for _, out in plan.component_outputs("aicloud:images:WorkloadImage"):
        refs = out.get("refs") or {}
        pulls = sorted({_registry(str(r)) for r in refs.values()})
        rows.append(
            [
                out["workload"],
                out["source"],
                out.get("dockerfile") or "-",
                out.get("tag") or "-",
                ", ".join(pulls),
                str(out.get("digest")),
            ]
        )
    if not rows:
        return None
    return {
        "title": "Images",
        "columns": ["workload", "source", "dockerfile", "tag", "pulled from", "digest"],
        "rows": rows,
        "notes": [
            "Tags are immutable and name the source content; pods pull by digest from the registry "
            "in (or nearest to) their region."
        ],
    }
