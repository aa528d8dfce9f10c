"""Fixtures for the workload library tests: an in-process moto S3 with a fresh bucket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from workloads import storage


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto-backed S3 bucket name; the storage module's client cache is reset around it."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    storage._s3_client_for.cache_clear()
    with mock_aws():
        storage.s3_client().create_bucket(Bucket="aicloud-test")
        yield "aicloud-test"
    storage._s3_client_for.cache_clear()
