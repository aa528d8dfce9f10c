"""`lake://<zone>/<key>`: objects in a lakehouse zone named without their bucket (Pulumi names the
buckets at create time), resolved through `AICLOUD_LAKE_<ZONE>` on the pod."""

from __future__ import annotations

from pathlib import Path

import pytest

from workloads import storage


def test_a_lake_uri_resolves_through_its_zones_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AICLOUD_LAKE_MODELS", "s3://acme-prod-models-1a2b/")
    assert storage.lake_env("models") == "AICLOUD_LAKE_MODELS"
    assert storage.resolve("lake://models/classifier/v7") == "s3://acme-prod-models-1a2b/classifier/v7"
    assert storage.resolve("lake://models") == "s3://acme-prod-models-1a2b/"
    # Anything else passes through untouched.
    for uri in ("s3://b/k", "gs://b/k", "file:///tmp/x", "relative/path"):
        assert storage.resolve(uri) == uri


def test_an_unconfigured_zone_names_the_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AICLOUD_LAKE_FEATURES", raising=False)
    with pytest.raises(ValueError, match=r"lake://features/x.*AICLOUD_LAKE_FEATURES is not set"):
        storage.read_bytes("lake://features/x")
    with pytest.raises(ValueError, match="has no zone"):
        storage.resolve("lake:///x")
    monkeypatch.setenv("AICLOUD_LAKE_FEATURES", "lake://features")
    with pytest.raises(ValueError, match="must be a real URI"):
        storage.resolve("lake://features/x")


def test_reads_writes_and_lists_go_to_the_resolved_local_zone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AICLOUD_LAKE_MODELS", f"file://{tmp_path}")
    storage.write_bytes("lake://models/clf/v1/model.pt", b"weights")
    assert (tmp_path / "clf/v1/model.pt").read_bytes() == b"weights"
    assert storage.exists("lake://models/clf/v1/model.pt")
    assert storage.read_bytes("lake://models/clf/v1/model.pt") == b"weights"
    assert storage.list_prefix("lake://models/clf") == [f"file://{tmp_path}/clf/v1/model.pt"]


def test_a_lake_uri_reaches_the_zones_bucket_on_s3(monkeypatch: pytest.MonkeyPatch, s3_bucket: str) -> None:
    monkeypatch.setenv("AICLOUD_LAKE_MODELS", f"s3://{s3_bucket}/zone")
    storage.write_bytes("lake://models/clf/v2/config.json", b"{}")
    assert storage.read_bytes(f"s3://{s3_bucket}/zone/clf/v2/config.json") == b"{}"
    assert storage.list_prefix("lake://models/clf") == [f"s3://{s3_bucket}/zone/clf/v2/config.json"]
