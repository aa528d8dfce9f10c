"""The aicloud stack program: turns a validated `StackConfig` into resources.

`deploy()` is called by `stacks/__main__.py` under `pulumi preview/up` and by the offline plan
under Pulumi's mock runtime: one program, two runners. Capabilities are steps run in order over a
shared `Deployment` (`stacks.deployment`); each step lives beside the others in `STEPS` and may read what earlier ones
built (the regions, their clusters and node pools).
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp

from components.base import gcp_labels, rename_transformation
from components.deploy import DeployPath
from components.monitoring import PROMETHEUS_URL
from components.platform import RegionalPlatform, RegionSpec
from stacks.config import StackConfig
from stacks.deployment import Deployment
from stacks.steps.ci import deploy_ci
from stacks.steps.monitoring import deploy_monitoring
from stacks.steps.platform import deploy_access
from stacks.steps.serving import deploy_serving
from stacks.steps.storage import deploy_storage
from stacks.steps.training import deploy_images, deploy_training

__all__ = ["STEPS", "Deployment", "Step", "deploy", "deploy_compute", "region_provider"]


def region_provider(d: Deployment, key: str) -> pulumi.ProviderResource:
    """An explicit provider pinned to the region: nothing falls back to a default region."""
    spec = d.config.region(key)
    if spec.cloud == "aws":
        return aws.Provider(f"aws-{key}", region=spec.region, default_tags={"tags": d.tags})
    return gcp.Provider(
        f"gcp-{key}",
        project=d.config.gcp_project,
        region=spec.region,
        default_labels=gcp_labels(d.tags),
    )


def custom_metrics(config: StackConfig, region: RegionSpec) -> list[str]:
    """Per-pod custom metrics the region's autoscalers read (the endpoint's HPA in `metric` mode)."""
    serving = config.serving
    if serving is None or not region.serving or serving.backend != "deployment":
        return []
    return [serving.autoscaling.metric] if serving.autoscaling.mode == "metric" else []


def deploy_compute(d: Deployment) -> None:
    """Providers, networks, clusters, node pools, autoscalers and foundations of every region."""
    DeployPath("deploy", d.config.deploy)
    for spec in d.config.regions:
        provider = region_provider(d, spec.name)
        d.providers[spec.name] = provider
        platform = RegionalPlatform(
            spec.name,
            spec,
            safety=d.config.safety,
            tags=d.tags,
            gcp_project=d.config.gcp_project,
            deploy=d.config.deploy,
            custom_metrics=custom_metrics(d.config, spec),
            prometheus_url=PROMETHEUS_URL if d.config.monitoring is not None else None,
            environment=d.config.environment,
            opts=pulumi.ResourceOptions(providers=[provider]),
        )
        d.regions[spec.name] = platform
        d.outputs[f"{spec.name}:cluster"] = platform.cluster.cluster_name
        d.outputs[f"{spec.name}:kubeconfig"] = pulumi.Output.secret(platform.cluster.kubeconfig)


Step = Callable[[Deployment], None]

# The capabilities, in the order they are built. Later steps may use what earlier ones made.
STEPS: list[Step] = [
    deploy_compute,
    deploy_storage,
    deploy_images,
    deploy_training,
    deploy_serving,
    deploy_monitoring,
    deploy_ci,
    deploy_access,
]


def deploy(stack: str, config: StackConfig) -> Deployment:
    """Build the whole stack and export its outputs."""
    d = Deployment(stack=stack, config=config)
    renames = {r.name: r.renamed_from for r in config.regions if r.renamed_from}
    if renames:
        pulumi.runtime.register_stack_transformation(rename_transformation(renames))
    for step in STEPS:
        step(d)
    for key, value in d.outputs.items():
        pulumi.export(key, value)
    return d
