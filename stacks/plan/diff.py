"""What changes between two plans: resources added, removed, changed (with the changed inputs),
replaced, and renamed.

Both sides are plan JSON (`aicloud plan --json`), so a pull request's plan can be compared with the
base branch's. Resources match by URN; a new resource whose `aliases` name an old URN is the same
resource renamed (Pulumi moves it, it does not recreate it). A change to an input the provider marks
as force-new replaces the resource; `FORCE_NEW` lists those inputs for the resource types aicloud
uses (from the providers' schemas: Terraform `ForceNew` for pulumi-aws/pulumi-gcp, immutable fields
for Kubernetes). A replaced provider replaces everything it manages. Inputs in a resource's
`ignoreChanges` are not changes (an autoscaler owns them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

FORCE_NEW: dict[str, tuple[str, ...]] = {
    # Explicit providers: a new region or project is a new provider, and every resource moves with it.
    "pulumi:providers:aws": ("region",),
    "pulumi:providers:gcp": ("project", "region"),
    # AWS network
    "aws:ec2/vpc:Vpc": ("cidrBlock", "instanceTenancy"),
    "aws:ec2/subnet:Subnet": ("vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"),
    "aws:ec2/routeTable:RouteTable": ("vpcId",),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": ("subnetId", "gatewayId"),
    "aws:ec2/natGateway:NatGateway": ("subnetId", "allocationId", "connectivityType"),
    "aws:ec2/eip:Eip": ("domain",),
    "aws:ec2/securityGroup:SecurityGroup": ("name", "namePrefix", "vpcId", "description"),
    # AWS compute
    "aws:eks/cluster:Cluster": (
        "name",
        "roleArn",
        "vpcConfig.subnetIds",
        "vpcConfig.securityGroupIds",
        "kubernetesNetworkConfig",
        "encryptionConfig.provider.keyArn",
        "accessConfig.bootstrapClusterCreatorAdminPermissions",
    ),
    "aws:eks/nodeGroup:NodeGroup": (
        "clusterName",
        "nodeGroupName",
        "nodeRoleArn",
        "subnetIds",
        "instanceTypes",
        "amiType",
        "capacityType",
        "diskSize",
    ),
    "aws:eks/addon:Addon": ("clusterName", "addonName"),
    "aws:ec2/launchTemplate:LaunchTemplate": ("name", "namePrefix"),
    "aws:iam/role:Role": ("name", "namePrefix", "path"),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("role", "policyArn"),
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": ("url",),
    # AWS data
    "aws:kms/key:Key": ("customerMasterKeySpec", "keySpec", "keyUsage", "multiRegion"),
    "aws:s3/bucket:Bucket": ("bucket", "bucketPrefix", "objectLockEnabled"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": ("bucket",),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ("bucket",),
    "aws:s3/bucketPolicy:BucketPolicy": ("bucket",),
    "aws:s3/bucketVersioning:BucketVersioning": ("bucket",),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ("bucket",),
    "aws:ecr/repository:Repository": ("name", "encryptionConfigurations"),
    "aws:fsx/lustreFileSystem:LustreFileSystem": (
        "subnetIds",
        "securityGroupIds",
        "deploymentType",
        "storageType",
        "kmsKeyId",
        "importPath",
        "exportPath",
    ),
    "aws:glue/catalogDatabase:CatalogDatabase": ("name", "catalogId"),
    "aws:glue/catalogTable:CatalogTable": ("name", "databaseName", "catalogId"),
    "aws:globalaccelerator/listener:Listener": ("acceleratorArn",),
    "aws:globalaccelerator/endpointGroup:EndpointGroup": ("listenerArn", "endpointGroupRegion"),
    "aws:lb/loadBalancer:LoadBalancer": ("name", "namePrefix", "internal", "loadBalancerType"),
    "aws:lb/targetGroup:TargetGroup": ("name", "namePrefix", "port", "protocol", "vpcId", "targetType"),
    # GCP
    "gcp:compute/network:Network": ("name", "autoCreateSubnetworks"),
    "gcp:compute/subnetwork:Subnetwork": ("name", "network", "region", "ipCidrRange"),
    "gcp:compute/router:Router": ("name", "network", "region"),
    "gcp:compute/routerNat:RouterNat": ("name", "router", "region"),
    "gcp:container/cluster:Cluster": (
        "name",
        "location",
        "network",
        "subnetwork",
        "networkingMode",
        "ipAllocationPolicy",
        "privateClusterConfig.enablePrivateNodes",
        "privateClusterConfig.masterIpv4CidrBlock",
    ),
    # The brief's conservative choice: any nodeConfig change is treated as a replacement (the
    # provider updates a few nodeConfig fields in place, most force a new pool).
    "gcp:container/nodePool:NodePool": ("name", "cluster", "location", "nodeConfig.*"),
    "gcp:serviceaccount/account:Account": ("accountId", "project"),
    "gcp:projects/iAMMember:IAMMember": ("project", "role", "member"),
    "gcp:storage/bucket:Bucket": ("name", "location", "project"),
    "gcp:kms/keyRing:KeyRing": ("name", "location", "project"),
    "gcp:kms/cryptoKey:CryptoKey": ("name", "keyRing", "purpose"),
    "gcp:bigquery/dataset:Dataset": ("datasetId", "location", "project"),
    "gcp:bigquery/table:Table": ("datasetId", "tableId", "project"),
    "gcp:artifactregistry/repository:Repository": ("repositoryId", "location", "format", "mode"),
    "gcp:filestore/instance:Instance": ("name", "location", "tier", "networks", "fileShares.name"),
    # Kubernetes: a new name or namespace is a new object; these spec fields are immutable.
    "kubernetes:*": ("metadata.name", "metadata.namespace"),
    "kubernetes:apps/v1:Deployment": ("spec.selector",),
    "kubernetes:apps/v1:StatefulSet": ("spec.selector", "spec.serviceName", "spec.volumeClaimTemplates"),
    "kubernetes:apps/v1:DaemonSet": ("spec.selector",),
    "kubernetes:batch/v1:Job": ("spec.template", "spec.selector", "spec.completionMode"),
    "kubernetes:core/v1:Service": ("spec.clusterIP",),
    "kubernetes:helm.sh/v3:Release": ("name", "namespace"),
}
"""Inputs whose change replaces the resource, per type (`a.b` covers `a.b` and below; `a.*` all of `a`)."""


def force_new_paths(type_: str) -> tuple[str, ...]:
    extra = FORCE_NEW["kubernetes:*"] if type_.startswith("kubernetes:") else ()
    return FORCE_NEW.get(type_, ()) + extra


def _covers(pattern: str, path: str) -> bool:
    base = pattern.removesuffix(".*")
    return path == base or path.startswith((base + ".", base + "["))


@dataclass
class Change:
    """One input that differs: its path and both values (None where absent)."""

    path: str
    old: Any
    new: Any


def input_changes(old: Any, new: Any, path: str = "") -> list[Change]:
    """Every differing path between two input trees (lists compare item by item when both are
    lists of objects of the same length, else as a whole)."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[Change] = []
        for key in sorted(set(old) | set(new), key=str):
            out += input_changes(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and len(old) == len(new)
        and all(isinstance(x, dict) for x in old + new)
    ):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += input_changes(a, b, f"{path}[{i}]")
        return out
    return [Change(path, old, new)]


_PLACEHOLDER = re.compile(r"\$\{([^}]*)\.([^.}]*)\}")


def _renamed(value: Any, names: dict[str, str]) -> Any:
    """`value` with the offline plan's `${new-name.attr}` placeholders written with the old names,
    so a resource that only refers to a renamed (aliased) one does not look changed: the cloud
    resource behind the alias, and its id, stay the same."""
    if isinstance(value, str) and "${" in value:
        return _PLACEHOLDER.sub(lambda m: "${" + names.get(m.group(1), m.group(1)) + "." + m.group(2) + "}", value)
    if isinstance(value, dict):
        return {k: _renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    return value


def _ignored(path: str, ignore: list[str]) -> bool:
    return any(_covers(p, path) for p in ignore)


@dataclass
class Entry:
    """One resource in a diff."""

    kind: str
    """`added`, `removed`, `changed`, `replaced` or `renamed`."""
    urn: str
    type: str
    name: str
    region: str = ""
    changes: list[Change] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    """Why a replacement happens: the force-new inputs that changed, or the provider."""
    old_urn: str | None = None


@dataclass
class PlanDiff:
    """The difference between an old and a new plan."""

    old_stack: str
    new_stack: str
    entries: list[Entry]
    unchanged: int

    def of(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]

    @property
    def counts(self) -> dict[str, int]:
        kinds = ("added", "removed", "changed", "replaced", "renamed")
        return {k: len(self.of(k)) for k in kinds} | {"unchanged": self.unchanged}

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old_stack,
            "new": self.new_stack,
            "counts": self.counts,
            "resources": [
                {
                    "kind": e.kind,
                    "urn": e.urn,
                    "oldUrn": e.old_urn,
                    "type": e.type,
                    "name": e.name,
                    "region": e.region,
                    "changes": [{"path": c.path, "old": c.old, "new": c.new} for c in e.changes],
                    "reasons": e.reasons,
                }
                for e in self.entries
            ],
        }


def _custom(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["urn"]: r for r in plan.get("resources", []) if r.get("custom")}


def diff_plans(old: dict[str, Any], new: dict[str, Any]) -> PlanDiff:
    """Compare two plan JSON documents (custom resources; components hold no cloud state)."""
    before, after = _custom(old), _custom(new)
    matched: dict[str, str] = {}  # new urn -> old urn
    for urn in after:
        if urn in before:
            matched[urn] = urn
    taken = set(matched.values())
    for urn, res in after.items():
        if urn in matched:
            continue
        alias = next((a for a in res.get("aliases") or [] if a in before and a not in taken), None)
        if alias:
            matched[urn] = alias
            taken.add(alias)

    names = {after[n]["name"]: before[o]["name"] for n, o in matched.items() if n != o}
    entries: list[Entry] = []
    replaced_providers: set[str] = set()
    for new_urn, old_urn in matched.items():
        a, b = before[old_urn], after[new_urn]
        ignore = list(b.get("ignoreChanges") or [])
        inputs = _renamed(b.get("inputs"), names) if names else b.get("inputs")
        changes = [c for c in input_changes(a.get("inputs"), inputs) if not _ignored(c.path, ignore)]
        for opt in ("protect", "retainOnDelete"):
            if bool(a.get(opt)) != bool(b.get(opt)):
                changes.append(Change(f"({opt})", bool(a.get(opt)), bool(b.get(opt))))
        forcing = sorted({c.path for c in changes if any(_covers(p, c.path) for p in force_new_paths(b["type"]))})
        if forcing and b["type"].startswith("pulumi:providers:"):
            replaced_providers.add(new_urn)
        entry = Entry(
            kind="replaced" if forcing else "renamed" if new_urn != old_urn else "changed" if changes else "",
            urn=new_urn,
            type=b["type"],
            name=b["name"],
            region=b.get("region", ""),
            changes=changes,
            reasons=forcing,
            old_urn=old_urn if new_urn != old_urn else None,
        )
        entries.append(entry)
    for entry in entries:
        provider = after[entry.urn].get("provider")
        if entry.kind != "replaced" and provider in replaced_providers:
            entry.kind = "replaced"
            entry.reasons = [f"provider {provider.rsplit('::', 1)[-1]} is replaced"]
    unchanged = sum(1 for e in entries if not e.kind)
    entries = [e for e in entries if e.kind]
    for kind, side, gone in (("added", after, set(matched)), ("removed", before, taken)):
        entries += [
            Entry(kind, urn, r["type"], r["name"], r.get("region", "")) for urn, r in side.items() if urn not in gone
        ]
    order = {"replaced": 0, "removed": 1, "added": 2, "changed": 3, "renamed": 4}
    entries.sort(key=lambda e: (order[e.kind], e.region, e.type, e.name))
    return PlanDiff(old.get("stack", "?"), new.get("stack", "?"), entries, unchanged)


# --------------------------------------------------------------------------- rendering


def _value(v: Any, limit: int = 60) -> str:
    if v is None:
        return "(none)"
    text = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _change_text(c: Change) -> str:
    return f"{c.path}: {_value(c.old)} → {_value(c.new)}"


SYMBOLS = {"added": "+", "removed": "-", "changed": "~", "replaced": "+-", "renamed": ">"}


def render_text(diff: PlanDiff) -> str:
    """The terminal view: counts, then one line per resource and one per changed input."""
    counts = diff.counts
    lines = [
        f"Diff {diff.old_stack} -> {diff.new_stack}: "
        + ", ".join(f"{counts[k]} {k}" for k in ("added", "removed", "changed", "replaced", "renamed", "unchanged"))
    ]
    for e in diff.entries:
        label = f"{SYMBOLS[e.kind]:>2} {e.kind:<8} {e.region:<10} {e.type} {e.name}"
        if e.old_urn:
            label += f" (was {e.old_urn.rsplit('::', 1)[-1]})"
        lines.append(label)
        if e.reasons:
            lines.append(f"      replaced because: {', '.join(e.reasons)}")
        lines += [f"      {_change_text(c)}" for c in e.changes[:12]]
        if len(e.changes) > 12:
            lines.append(f"      … and {len(e.changes) - 12} more input(s)")
    return "\n".join(lines) + "\n"


def render_markdown(diff: PlanDiff, *, limit: int = 20_000) -> str:
    """The diff as a Markdown section for the review page, kept under `limit` characters."""
    counts = diff.counts
    head = [
        f"### Changes against `{diff.old_stack}` base plan",
        "",
        " · ".join(f"**{counts[k]}** {k}" for k in ("added", "removed", "changed", "replaced", "renamed", "unchanged")),
        "",
    ]
    if not diff.entries:
        return "\n".join([*head, "No resource changes."])
    rows = ["| | resource | region | what changes |", "|---|---|---|---|"]
    shown = 0
    size = sum(len(x) + 1 for x in head + rows)
    for e in diff.entries:
        what = "; ".join([*(f"**replaced**: {r}" for r in e.reasons), *(_change_text(c) for c in e.changes[:6])])
        if e.old_urn:
            was = e.old_urn.rsplit("::", 1)[-1]
            what = f"renamed from `{was}` (alias, not recreated)" + (f"; {what}" if what else "")
        if len(e.changes) > 6:
            what += f"; … {len(e.changes) - 6} more"
        cell = what.replace("|", "\\|")
        row = f"| {SYMBOLS[e.kind]} | `{e.type}` {e.name} | {e.region} | {cell} |"
        if size + len(row) > limit:
            break
        rows.append(row)
        size += len(row) + 1
        shown += 1
    if shown < len(diff.entries):
        rows.append(f"\n_… {len(diff.entries) - shown} more resource change(s); run `aicloud diff` for all._")
    return "\n".join(head + rows)
