"""Which predefined Cloud Storage roles a Google service agent gets on a bucket, computed from the
permissions it needs and the roles' permission lists (vendored in components/upstream/gcp-roles,
from the IAM API's role definitions), never from a role's name.

`REQUIRED` names, per use, the bucket permissions the service documents it needs; `roles_for`
picks the combination of `CANDIDATES` that grants all of them with the fewest permissions in
total (least privilege), and `missing` says what a set of roles lacks (what the tests plant).
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

ROLES_DIR = Path(__file__).resolve().parents[1] / "upstream" / "gcp-roles"

CANDIDATES: tuple[str, ...] = (
    "roles/storage.legacyObjectReader",
    "roles/storage.legacyBucketReader",
    "roles/storage.legacyBucketWriter",
    "roles/storage.objectViewer",
    "roles/storage.objectCreator",
    "roles/storage.objectUser",
    "roles/storage.objectAdmin",
)
"""Bucket-level roles a grant may use (never legacyBucketOwner: it can change the bucket's IAM)."""

REQUIRED: dict[str, frozenset[str]] = {
    # Storage Transfer Service, Cloud Storage source ("Configure access to a source": the service
    # agent lists the bucket and reads every object it copies).
    "transfer-source": frozenset({"storage.buckets.get", "storage.objects.list", "storage.objects.get"}),
    # Storage Transfer Service, Cloud Storage sink ("Configure access to a sink": it compares,
    # writes and, when overwriting, deletes objects).
    "transfer-sink": frozenset(
        {
            "storage.buckets.get",
            "storage.objects.list",
            "storage.objects.get",
            "storage.objects.create",
            "storage.objects.delete",
        }
    ),  # fmt: skip
    # BigQuery's BigLake connection service account for Iceberg tables (BigQuery tables for Apache
    # Iceberg: read the bucket, including `storage.buckets.get`, and read and write its objects).
    "biglake": frozenset(
        {
            "storage.buckets.get",
            "storage.objects.list",
            "storage.objects.get",
            "storage.objects.create",
            "storage.objects.delete",
        }
    ),  # fmt: skip
    # The retraining agents (components.retraining): on their region's part of the decision log,
    # list, read and create objects (never overwrite or delete); on candidates, read them.
    "retrain-agent-own-prefix": frozenset({"storage.objects.list", "storage.objects.get", "storage.objects.create"}),
    "retrain-agent-candidates": frozenset({"storage.objects.get"}),
}
"""Bucket permissions each service agent (or prefix-scoped workload) needs, by use."""

CONDITIONAL_USES = frozenset({"retrain-agent-own-prefix", "retrain-agent-candidates"})
"""Uses granted under an IAM condition (an object prefix; the buckets have uniform bucket-level
access, which conditions need). Legacy roles (ACL-era, bucket-wide by design) are kept out of
conditional grants."""


@functools.cache
def role_permissions(role: str) -> frozenset[str]:
    """The permissions of predefined role `role` (`roles/storage.objectViewer`), as vendored."""
    path = ROLES_DIR / f"{role.removeprefix('roles/')}.json"
    if not path.is_file():
        raise KeyError(f"{role}: its permission list is not vendored in {ROLES_DIR}")
    doc = json.loads(path.read_text())
    assert doc["name"] == role, path
    return frozenset(doc["includedPermissions"])


def missing(roles: tuple[str, ...] | list[str], required: frozenset[str]) -> set[str]:
    """Permissions in `required` that none of `roles` grants."""
    granted = set().union(*(role_permissions(r) for r in roles)) if roles else set()
    return set(required) - granted


@functools.cache
def roles_for(use: str) -> tuple[str, ...]:
    """The fewest-permission combination of `CANDIDATES` granting `REQUIRED[use]` (ties: fewer
    roles, then by name)."""
    required = REQUIRED[use]
    pool = [r for r in CANDIDATES if not (use in CONDITIONAL_USES and r.startswith("roles/storage.legacy"))]
    best: tuple[int, int, tuple[str, ...]] | None = None
    for size in range(1, 4):
        for combo in itertools.combinations(pool, size):
            if missing(combo, required):
                continue
            total = len(set().union(*(role_permissions(r) for r in combo)))
            key = (total, size, tuple(sorted(combo)))
            if best is None or key < best:
                best = key
    if best is None:
        raise ValueError(f"no combination of {CANDIDATES} grants {sorted(required)}")
    return best[2]
