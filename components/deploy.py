"""Where `pulumi up` runs, and how it reaches each cluster API it applies objects to.

The stack program creates each cluster and, in the same run, applies Helm releases and objects to
it, so the machine running `pulumi up` (the deployer) must reach every cluster's API server. Cluster
APIs are private by default. The design (README, "Deploy path"):

- The deploy workflow runs on a **self-hosted runner** (`aicloud:deploy.runsOn`) that lives in a
  standing deploy network outside the stacks, with fixed egress addresses (its NAT gateway's
  Elastic IPs): `aicloud:deploy.egressCidrs`. Every cluster the deployer is not inside gets its
  public API endpoint turned on **for exactly those addresses** (plus the cluster's own
  `publicAccessCidrs`); the API is never open to the internet, nodes and in-VPC clients keep using
  the private endpoint. This works on the very first `pulumi up`, before any stack network exists.
- A runner inside one of the stack's own networks (`aicloud:deploy.network: <region key>`, for
  instance a runner started in that VPC after the first run) reaches that region's cluster over the
  private endpoint; its cluster needs no public endpoint at all.
- GitHub-hosted runners have no fixed address: they can reach only an API open to 0.0.0.0/0, which
  the guardrails forbid. A stack left at `runner: github-hosted` with private clusters is flagged by
  the `aicloud-deployer-reaches-cluster-api` policy before anything is created.

The pull-request `pulumi preview` needs the same network path (README, "Deploy path"): the
provider reads each cluster's API (discovery, OpenAPI schema, live objects) and sends every apply as
a server-side dry-run. `aicloud:deploy.previewRunsOn` names the preview job's runners (default:
`runsOn`); self-hosted preview runners are in the same deploy network as the deployer (same egress
addresses, same `network`), under their own label and ephemeral, so pull-request code never shares a
machine with a later `pulumi up`. `preview_reach` judges them like the deployer; the
`aicloud-preview-reaches-cluster-api` policy reports a cluster the preview cannot reach or read.

`cluster_reach` is the one place that decides reachability; the plan's "Cluster access" section and
the policies use it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
from pydantic import Field, field_validator, model_validator

from components.base import Spec, type_token

Runner = Literal["github-hosted", "self-hosted"]


class DeploySpec(Spec):
    """The `aicloud:deploy` section: where `pulumi up` runs and as whom."""

    runner: Runner = "github-hosted"
    """`github-hosted` (no fixed address: reaches only internet-open APIs) or `self-hosted`."""
    runs_on: list[str] = Field(default_factory=lambda: ["ubuntu-latest"])
    """The `runs-on` labels of the deploy job (`.github/workflows/deploy-stack.yml` reads them)."""
    egress_cidrs: list[str] = Field(default_factory=list)
    """The deployer's fixed egress addresses (self-hosted only); each cluster the deployer is not
    inside allows exactly these on its public API endpoint."""
    network: str | None = None
    """Region key whose network the runner runs inside (it reaches that cluster privately)."""
    preview_runs_on: list[str] | None = Field(default=None, min_length=1)
    """The `runs-on` labels of the pull-request `pulumi preview` job (`.github/workflows/preview.yml`
    reads them); default: `runsOn`. Self-hosted preview runners must live in the deploy network
    (the same egress addresses); give them their own label and run them ephemeral."""
    aws_role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    """The IAM role `pulumi up` assumes (the workflow's AWS_ROLE_ARN); it gets a cluster-admin
    access entry on every EKS cluster."""

    @field_validator("egress_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        bad = []
        for c in value:
            try:
                net = ipaddress.ip_network(c, strict=True)
            except ValueError:
                bad.append(c)
                continue
            if net.prefixlen == 0:
                raise ValueError(f"egressCidrs must not include {c}: that opens the cluster APIs to the internet")
        if bad:
            raise ValueError(f"egressCidrs must be CIDR blocks such as 203.0.113.10/32, got {bad}")
        return value

    @model_validator(mode="after")
    def _runner(self) -> DeploySpec:
        if self.runner == "github-hosted" and (self.egress_cidrs or self.network):
            raise ValueError(
                "runner 'github-hosted' has no fixed address and runs outside every network: egressCidrs and "
                "network need runner: self-hosted"
            )
        if self.runner == "self-hosted" and "self-hosted" not in self.runs_on:
            raise ValueError("runner 'self-hosted' needs 'self-hosted' among runsOn (the job's runner labels)")
        return self

    @property
    def preview_labels(self) -> list[str]:
        """The preview job's runner labels (`previewRunsOn`, else `runsOn`)."""
        return list(self.preview_runs_on or self.runs_on)

    @property
    def preview_runner(self) -> Runner:
        """`self-hosted` when the preview job's labels name a self-hosted runner."""
        return "self-hosted" if "self-hosted" in self.preview_labels else "github-hosted"


@dataclass(frozen=True)
class Reach:
    """How the deployer reaches one cluster's API."""

    route: Literal["private", "allow-listed", "unreachable"]
    detail: str

    @property
    def ok(self) -> bool:
        return self.route != "unreachable"


def deployer_text(spec: DeploySpec) -> str:
    """One line: where in-cluster objects are applied from."""
    if spec.runner == "github-hosted":
        return "GitHub-hosted runner (internet, no fixed address)"
    where = f"inside {spec.network}'s network" if spec.network else "a deploy network"
    egress = f", egress {', '.join(spec.egress_cidrs)}" if spec.egress_cidrs else ""
    return f"self-hosted runner ({where}{egress})"


def previewer_text(spec: DeploySpec) -> str:
    """One line: where the pull-request `pulumi preview` runs."""
    if spec.preview_runner == "github-hosted":
        return "GitHub-hosted runner (internet, no fixed address)"
    if spec.runner != "self-hosted":
        return "self-hosted runner (no deploy network declared: no egress addresses)"
    return deployer_text(spec)


def _covered(cidr: str, allowed: list[str]) -> bool:
    net = ipaddress.ip_network(cidr, strict=False)
    for a in allowed:
        try:
            if net.subnet_of(ipaddress.ip_network(a, strict=False)):  # type: ignore[arg-type]
                return True
        except (TypeError, ValueError):
            continue
    return False


def cluster_reach(
    *,
    region_key: str,
    private_access: bool,
    public: bool,
    public_cidrs: list[str],
    runner: str,
    egress_cidrs: list[str],
    network: str | None,
) -> Reach:
    """Whether a deployer (runner, egress, network) can reach a cluster API with this endpoint access.

    Inside the cluster's own network it uses the private endpoint; elsewhere it needs the public
    endpoint to allow every one of its egress addresses (a GitHub-hosted runner has none: only an
    API open to 0.0.0.0/0 would let it in).
    """
    if network == region_key and runner == "self-hosted":
        if private_access:
            return Reach("private", f"private endpoint, from inside {region_key}'s network")
        return Reach("unreachable", "the runner is inside the network but the private endpoint is off")
    if not public:
        where = "a GitHub-hosted runner" if runner == "github-hosted" else "a runner outside this cluster's network"
        return Reach("unreachable", f"private API endpoint only; {where} cannot reach it")
    if runner == "github-hosted":
        if _covered("0.0.0.0/0", public_cidrs) or not public_cidrs:
            return Reach("allow-listed", "public endpoint open to the internet")
        return Reach(
            "unreachable", "a GitHub-hosted runner has no fixed address, and the public endpoint is allow-listed"
        )
    missing = [c for c in egress_cidrs if not _covered(c, public_cidrs)]
    if not egress_cidrs or missing:
        return Reach(
            "unreachable",
            f"the public endpoint does not allow the runner's egress {', '.join(missing) or '(none declared)'}",
        )
    return Reach("allow-listed", f"public endpoint allow-listed to {', '.join(egress_cidrs)}")


def preview_reach(
    spec: DeploySpec, *, region_key: str, private_access: bool, public: bool, public_cidrs: list[str]
) -> Reach:
    """How the pull-request preview reaches one cluster's API: `cluster_reach` for the preview
    runner, which shares the deploy network (egress, `network`) when both are self-hosted."""
    shared = spec.preview_runner == "self-hosted" and spec.runner == "self-hosted"
    return cluster_reach(
        region_key=region_key,
        private_access=private_access,
        public=public,
        public_cidrs=public_cidrs,
        runner=spec.preview_runner,
        egress_cidrs=list(spec.egress_cidrs) if shared else [],
        network=spec.network if shared else None,
    )


def effective_public_cidrs(spec_public: bool, spec_cidrs: list[str], region_key: str, deploy: DeploySpec) -> list[str]:
    """The allow-list a cluster's public endpoint gets: its own CIDRs plus the deployer's egress
    (unless the deployer is inside this region's network, or has no fixed egress)."""
    extra = [] if deploy.network == region_key else list(deploy.egress_cidrs)
    return list(dict.fromkeys([*(spec_cidrs if spec_public else []), *extra]))


def deploy_outputs(spec: DeploySpec) -> dict[str, Any]:
    return {
        "runner": spec.runner,
        "runsOn": list(spec.runs_on),
        "egressCidrs": list(spec.egress_cidrs),
        "network": spec.network,
        "appliedFrom": deployer_text(spec),
        "previewRunsOn": spec.preview_labels,
        "previewRunner": spec.preview_runner,
        "previewedFrom": previewer_text(spec),
    }


class DeployPath(pulumi.ComponentResource):
    """A record in the stack of where `pulumi up` runs (no cloud resources): the plan shows it and
    the `aicloud-deployer-reaches-cluster-api` policy reads it."""

    def __init__(self, name: str, spec: DeploySpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("platform", "DeployPath"), name, None, opts)
        self.register_outputs(deploy_outputs(spec))
