"""One way to install a Helm chart: pinned chart, version and repository, and a record of it.

Every chart aicloud installs goes through `helm_release`, which takes the pin from
`components/upstream/pins.yaml` (`chart_pin`) so a chart's version lives in one place, handles
OCI charts (`oci://...`: the chart reference is the repository itself, with no index), and writes
the Release so that what it installs can be read back from the plan (or from a policy's view of
the resource) by `release_record`:

    from components.helm import helm_release

    self.keda = helm_release(f"{name}-keda", "keda", namespace="keda", create_namespace=True,
                             release_name="keda", values={...}, opts=child_opts(self))

`release_record(inputs)` turns a Release's inputs (engine names, as the plan records them and a
policy pack sees them) back into a `HelmRelease`: chart, version, repository, namespace, values and
whether the chart is pinned. `stacks.plan.model.Plan.helm_releases()` lists them with the cluster
(region key) and the component each release belongs to, for the readiness check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.upstream import chart_pin, pins

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
"""The Pulumi type of every release `helm_release` creates."""

ChartPin = Mapping[str, str]
"""`{"chart", "version", "repo"}`: what `components.upstream.chart_pin` returns."""


def is_oci(repo: str) -> bool:
    """Whether `repo` is an OCI chart reference (`oci://registry/path/<chart>`)."""
    return repo.startswith("oci://")


def release_args(pin: ChartPin) -> dict[str, Any]:
    """The `chart`/`version`/`repository_opts` arguments of a `helm.v3.Release` for `pin`.

    An https repository is an index: the chart is named and the repository given separately. An
    OCI repository is the chart's own reference: Helm pulls `oci://.../<chart>` at `version`, and
    `repository_opts.repo` must stay unset.
    """
    repo = pin["repo"]
    if is_oci(repo):
        return {"chart": repo, "version": pin["version"]}
    return {"chart": pin["chart"], "version": pin["version"], "repository_opts": {"repo": repo}}


def helm_release(
    logical_name: str,
    chart: str | ChartPin,
    *,
    namespace: str,
    values: Mapping[str, Any] | None = None,
    release_name: str | None = None,
    create_namespace: bool = False,
    opts: pulumi.ResourceOptions | None = None,
) -> k8s.helm.v3.Release:
    """Install `chart` (a name pinned in `components/upstream/pins.yaml`, or, for a chart aicloud
    cannot pin yet, its `{"chart", "version", "repo"}`) as the Release `logical_name`.

    `release_name`: Helm's release name (default: Pulumi auto-names it from `logical_name`).
    `values`: merged by Helm into the chart's defaults (maps merge, lists and scalars replace).
    `create_namespace`: let Helm create `namespace` (default: it must exist or be created first).
    """
    pin = chart_pin(chart) if isinstance(chart, str) else dict(chart)
    kwargs: dict[str, Any] = {**release_args(pin), "namespace": namespace}
    if release_name is not None:
        kwargs["name"] = release_name
    if values is not None:
        kwargs["values"] = values
    if create_namespace:
        kwargs["create_namespace"] = True
    return k8s.helm.v3.Release(logical_name, **kwargs, opts=opts)


@dataclass(frozen=True)
class HelmRelease:
    """What one Release installs, read back from its inputs."""

    chart: str
    """The chart's name (the last segment of an OCI reference)."""
    version: str
    repo: str
    """The https index or the `oci://` reference the chart comes from."""
    namespace: str | None
    release_name: str | None
    values: dict[str, Any] = field(default_factory=dict)
    pinned: bool = False
    """Whether `components/upstream/pins.yaml` pins exactly this chart, version and repository."""

    def to_json(self) -> dict[str, Any]:
        return {
            "chart": self.chart,
            "version": self.version,
            "repo": self.repo,
            "namespace": self.namespace,
            "releaseName": self.release_name,
            "values": self.values,
            "pinned": self.pinned,
        }


def release_record(inputs: Mapping[str, Any]) -> HelmRelease:
    """The `HelmRelease` of a Release's inputs (engine names: `repositoryOpts`, camelCase)."""
    chart = str(inputs.get("chart", ""))
    repo = str((inputs.get("repositoryOpts") or {}).get("repo", ""))
    if is_oci(chart):
        repo, chart = chart, chart.rstrip("/").rsplit("/", 1)[1]
    version = str(inputs.get("version", ""))
    pin = pins()["charts"].get(chart) or {}
    pinned = str(pin.get("version")) == version and str(pin.get("repo", "")).rstrip("/") == repo.rstrip("/")
    return HelmRelease(
        chart=chart,
        version=version,
        repo=repo,
        namespace=inputs.get("namespace"),
        release_name=inputs.get("name"),
        values=dict(inputs.get("values") or {}),
        pinned=pinned,
    )
