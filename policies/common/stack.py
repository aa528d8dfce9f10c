"""The stack as a graph: `Res` (one resource as a rule sees it) and `StackView` (parents, providers, dependencies)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies.common.values import plain

# --------------------------------------------------------------------------- resources and the stack


@dataclass(eq=False)
class Res:
    """One resource as a rule sees it: plain props and the links a policy pack is given."""

    type: str
    name: str
    urn: str
    props: dict[str, Any]
    protect: bool = False
    provider_props: dict[str, Any] | None = None
    provider_urn: str | None = None
    parent: Res | None = None
    dependencies: list[Res] = field(default_factory=list)
    property_dependencies: dict[str, list[Res]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """Last segment of the type token (`Deployment` of `kubernetes:apps/v1:Deployment`)."""
        return self.type.rsplit(":", 1)[-1]

    def ancestors(self) -> Iterable[Res]:
        node = self.parent
        seen = 0
        while node is not None and seen < 64:
            yield node
            node = node.parent
            seen += 1


CLUSTER_COMPONENTS = ("aicloud:compute:EksCluster", "aicloud:compute:GkeCluster")
REGION_COMPONENT = "aicloud:platform:RegionalPlatform"


class StackView:
    """Every resource of the stack, linked by parent, dependencies and provider."""

    def __init__(self, resources: Sequence[Any]) -> None:
        self.resources: list[Res] = []
        by_urn: dict[str, Res] = {}
        for r in resources:
            provider = getattr(r, "provider", None)
            res = Res(
                type=r.resource_type,
                name=r.name,
                urn=r.urn,
                props=plain(r.props),
                protect=bool(getattr(r.opts, "protect", False)),
                provider_props=plain(provider.props) if provider is not None else None,
                provider_urn=provider.urn if provider is not None else None,
            )
            by_urn[r.urn] = res
            self.resources.append(res)
        self.by_urn = by_urn
        self.providers: dict[str, dict[str, Any]] = {}
        """Provider URN -> provider props, from the resources' providers and provider resources."""
        for r, res in zip(resources, self.resources, strict=True):
            parent = getattr(r, "parent", None)
            if parent is not None:
                res.parent = by_urn.get(parent.urn)
            res.dependencies = [by_urn[d.urn] for d in getattr(r, "dependencies", []) or [] if d.urn in by_urn]
            res.property_dependencies = {
                k: [by_urn[d.urn] for d in v if d.urn in by_urn]
                for k, v in (getattr(r, "property_dependencies", {}) or {}).items()
            }
            if res.provider_urn and res.provider_props is not None:
                self.providers.setdefault(res.provider_urn, res.provider_props)
            if res.type.startswith("pulumi:providers:"):
                self.providers.setdefault(res.urn, res.props)
        self._scopes: dict[str, tuple[str | None, str | None]] = {}

    _last: tuple[Sequence[Any], StackView] | None = None

    @classmethod
    def of(cls, resources: Sequence[Any]) -> StackView:
        """The view of `resources`, reused while the same list is validated by one rule after another
        (the offline plan hands every stack rule one list; the CLI gives each rule its own)."""
        if cls._last is None or cls._last[0] is not resources:
            cls._last = (resources, cls(resources))
        return cls._last[1]

    def of_type(self, *types: str) -> list[Res]:
        return [r for r in self.resources if r.type in types]

    def scope(self, res: Res) -> tuple[str | None, str | None]:
        """(cluster component URN, region component URN) the resource belongs to.

        Kubernetes objects belong to the cluster of their provider; other resources to the cluster
        and region components above them.
        """
        if res.urn in self._scopes:
            return self._scopes[res.urn]
        chains = []
        provider = self.by_urn.get(res.provider_urn or "")
        if provider is not None and provider.type == "pulumi:providers:kubernetes":
            chains.append(provider.ancestors())
        chains.append(res.ancestors())
        cluster = region = None
        for chain in chains:
            for node in chain:
                if cluster is None and node.type in CLUSTER_COMPONENTS:
                    cluster = node.urn
                if region is None and node.type == REGION_COMPONENT:
                    region = node.urn
            if cluster or region:
                break
        self._scopes[res.urn] = (cluster, region)
        return cluster, region

    def same_scope(self, a: Res, b: Res) -> bool:
        """Whether two resources live in the same cluster (or region, when no cluster is known)."""
        ca, ra = self.scope(a)
        cb, rb = self.scope(b)
        if ca and cb:
            return ca == cb
        if ra and rb:
            return ra == rb
        return True

    def referenced(self, res: Res, prop: str, candidates: Sequence[Res]) -> list[Res]:
        """The candidates `res` points at through `prop` (e.g. the bucket of a bucket policy).

        Uses, in order: the property's dependencies, a known value equal to a candidate's name or
        id, the offline plan's `${name.attr}` placeholder, the resource's parent, and its
        dependencies.
        """
        ids = {c.urn for c in candidates}
        deps = [d for d in res.property_dependencies.get(prop, []) if d.urn in ids]
        if deps:
            return deps
        value = res.props.get(prop)
        raw = value if isinstance(value, str) else None
        if raw:
            hits = [c for c in candidates if raw in (c.props.get("bucket"), c.props.get("name"), c.props.get("id"))]
            if hits:
                return hits
        if res.parent is not None and res.parent.urn in ids:
            return [res.parent]
        return [d for d in res.dependencies if d.urn in ids]
