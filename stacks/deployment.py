"""`Deployment`: what the stack program has built so far, shared by its capability steps.

It lives apart from `stacks.program` so the steps (`stacks/steps/*`) can name it without importing
the program that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.identity import WorkloadIdentity
from components.image import ImageRef
from components.platform import RegionalPlatform
from stacks.config import StackConfig


@dataclass
class Deployment:
    """What the program has built so far, shared by the capability steps."""

    stack: str
    config: StackConfig
    providers: dict[str, pulumi.ProviderResource] = field(default_factory=dict)
    """The explicit cloud provider of each region, by region key."""
    regions: dict[str, RegionalPlatform] = field(default_factory=dict)
    """The platform (network, cluster, pools) of each region, by region key."""
    images: dict[str, dict[str, ImageRef]] = field(default_factory=dict)
    """Workload images by region key, then workload name (`trainer`, `server`): pull by digest."""
    identities: dict[str, dict[str, WorkloadIdentity]] = field(default_factory=dict)
    """Workload identities by region key, then workload (`trainer`, `server`): namespace and SA."""
    operators: dict[str, set[str]] = field(default_factory=dict)
    """Pinned operator charts (`kubeflow-trainer`) the stack installs, by region key."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """Stack outputs, exported at the end."""

    @property
    def tags(self) -> dict[str, str]:
        return self.config.base_tags(self.stack)
