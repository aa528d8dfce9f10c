"""Service agents' bucket roles come from the roles' vendored permission lists: the computed roles
grant every permission each agent needs, the vendored lists are the files their SOURCES.yaml
names, and the grants aicloud shipped before are reported with what they lack."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from components.lakehouse.gcs_roles import CANDIDATES, REQUIRED, ROLES_DIR, missing, role_permissions, roles_for


def test_vendored_role_lists_match_their_recorded_provenance():
    entries = yaml.safe_load((ROLES_DIR / "SOURCES.yaml").read_text())["files"]
    assert sorted(p.name for p in ROLES_DIR.glob("*.json")) == sorted(e["file"] for e in entries)
    for entry in entries:
        assert entry["repository"] == "darkbitio/gcp-iam-role-permissions" and len(entry["commit"]) == 40
        assert entry["path"] == f"roles/{entry['file'].removesuffix('.json')}"
        digest = hashlib.sha256((ROLES_DIR / entry["file"]).read_bytes()).hexdigest()
        assert digest == entry["sha256"], entry["file"]
    assert all(role_permissions(r) for r in CANDIDATES)


@pytest.mark.parametrize("use", sorted(REQUIRED))
def test_computed_roles_grant_everything_the_agent_needs_and_nothing_to_change_iam(use):
    roles = roles_for(use)
    assert missing(roles, REQUIRED[use]) == set()
    granted = set().union(*(role_permissions(r) for r in roles))
    assert not any(p.endswith("setIamPolicy") for p in granted)


def test_planted_shipped_grants_are_reported_with_what_they_lack():
    """What aicloud granted before (issue 12)."""
    assert missing(["roles/storage.legacyBucketOwner"], REQUIRED["transfer-source"]) == {"storage.objects.get"}
    assert missing(["roles/storage.legacyBucketWriter"], REQUIRED["transfer-sink"]) == {"storage.objects.get"}
    assert missing(["roles/storage.objectUser"], REQUIRED["biglake"]) == {"storage.buckets.get"}
