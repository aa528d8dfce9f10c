"""Fixtures of the observability tests: the workload tests' moto S3 bucket, and small models."""

from __future__ import annotations

from tests.workloads.conftest import s3_bucket  # noqa: F401  (re-exported fixture)
