"""Byte-level object storage for the workloads: local paths, ``file://``, ``s3://`` and ``gs://``.

One small API shared by the trainer (datasets, checkpoints, artifacts) and the model server
(artifacts). Every function takes a URI; a string without a scheme is a local path.

- ``write_bytes`` is atomic everywhere: a reader sees either the previous object or the new one,
  never a torn mix. Local files are written to a hidden temporary file in the same directory,
  fsynced and renamed over the target. S3 uses one PUT for small payloads and a multipart upload
  (aborted on any exception) for large ones; S3 makes the object visible only on success. GCS
  uploads are single requests and likewise all-or-nothing.
- ``list_prefix`` has directory semantics: ``list_prefix("s3://b/runs/a")`` lists every object
  under ``runs/a/`` (recursively), never ``runs/ab``. Results are full URIs in the caller's style,
  sorted.
- S3 honours ``AWS_ENDPOINT_URL_S3`` and ``AWS_ENDPOINT_URL`` (in that order), so a local
  ``moto_server`` works; credentials and region come from the usual boto3 chain.
- ``google-cloud-storage`` is imported only for ``gs://`` URIs (``pip install 'aicloud[gcs]'``).
- Missing versus refused. S3 answers a GET or HEAD of a *missing* key with 403 (not 404) to a
  caller without an unconditioned ``s3:ListBucket`` on the bucket (S3 API reference, GetObject /
  HeadObject "Permissions"; aws/aws-cli#2041), which is what a prefix-scoped grant (``s3:ListBucket`` under an
  ``s3:prefix`` condition, e.g. the retraining agents') gets. So on a 403, ``exists`` and
  ``read_bytes`` ask a ListObjectsV2 limited to the key itself (``Prefix=key``, which such a grant
  allows): absent there means missing (``False`` / ``FileNotFoundError``), present means truly
  refused. When the listing is refused too, a ``PermissionError`` names the permissions needed to
  tell the two apart. GCS answers 404 for a missing object to a caller holding
  ``storage.objects.get`` on its name (cloud.google.com/storage/docs/json_api/v1/status-codes;
  prefix-conditioned grants included, since the condition is on the object's name, not on its
  existence), so only a refusal is a 403 there; it is raised as is (``google.api_core`` Forbidden).
- ``lake://<zone>/<key>`` names an object in a lakehouse zone without knowing its bucket: the zone's
  base URI comes from the environment variable ``AICLOUD_LAKE_<ZONE>`` (e.g. ``AICLOUD_LAKE_MODELS=
  s3://acme-prod-models-1a2b``), which the stack sets on the pods it deploys (the buckets are named
  by Pulumi at create time, so a stack's config cannot spell them). Results are in the resolved
  scheme.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from contracts.lake import LAKE_ENV_PREFIX, LAKE_SCHEME, join, lake_env, resolve, split_lake  # noqa: F401 (re-exported)

__all__ = [
    "MULTIPART_THRESHOLD",
    "MULTIPART_PART_SIZE",
    "read_bytes",
    "write_bytes",
    "exists",
    "list_prefix",
    "delete",
    "clean_temp",
    "FILE_MODE",
    "join",
    "local_path",
    "resolve",
    "split_lake",
    "lake_env",
    "s3_client",
]

MULTIPART_THRESHOLD = 64 * 1024 * 1024
"""S3 payloads of at least this many bytes are sent as a multipart upload (else one PUT)."""

MULTIPART_PART_SIZE = 16 * 1024 * 1024
"""Size of each multipart part in bytes (S3 requires at least 5 MiB for all but the last)."""

FILE_MODE = 0o640
"""Mode of local files written by ``write_bytes``: group-readable (checkpoints, artifacts)."""

_TMP_PREFIX = ".aicloud-tmp-"
"""Name prefix of in-flight local temporary files; ``list_prefix`` never reports them."""

Scheme = Literal["file", "s3", "gs"]


@dataclass(frozen=True, slots=True)
class _Location:
    """A parsed URI: the scheme, the bucket (empty for local) and the key or local path."""

    scheme: Scheme
    bucket: str
    key: str
    file_uri: bool
    """For local paths: whether the caller wrote ``file://`` (results keep the caller's style)."""


def _parse(uri: str) -> _Location:
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"storage URI must be a non-empty string, got {uri!r}")
    uri = resolve(uri)
    if "://" not in uri:
        return _Location("file", "", uri, file_uri=False)
    scheme, rest = uri.split("://", 1)
    if scheme == "file":
        if not rest.startswith("/"):
            raise ValueError(f"file URI must be absolute (file:///path), got {uri!r}")
        return _Location("file", "", rest, file_uri=True)
    if scheme in ("s3", "gs"):
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise ValueError(f"{scheme} URI has no bucket: {uri!r}")
        return _Location(scheme, bucket, key, file_uri=False)
    raise ValueError(
        f"unsupported storage scheme {scheme!r} in {uri!r}; allowed: local path, file://, s3://, gs://, lake://"
    )


def _format(loc: _Location, key: str) -> str:
    if loc.scheme == "file":
        return f"file://{key}" if loc.file_uri else key
    return f"{loc.scheme}://{loc.bucket}/{key}"


def local_path(uri: str) -> str | None:
    """The filesystem path of a local URI (plain path or ``file://``), else None."""
    loc = _parse(uri)
    return loc.key if loc.scheme == "file" else None


# --------------------------------------------------------------------------------------- S3
def s3_client() -> Any:
    """The boto3 S3 client this module uses (cached per endpoint and region).

    The endpoint comes from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` when set.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _s3_client_for(endpoint, region)


@functools.lru_cache(maxsize=8)
def _s3_client_for(endpoint: str | None, region: str | None) -> Any:
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region)


def _s3_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _s3_is_missing(exc: Exception) -> bool:
    return _s3_code(exc) in ("404", "NoSuchKey", "NotFound")


def _s3_is_denied(exc: Exception) -> bool:
    return _s3_code(exc) in ("403", "AccessDenied", "Forbidden")


def _s3_listed(bucket: str, key: str, refused: Exception) -> bool:
    """Whether ``key`` exists, by a listing limited to the key itself (after S3 refused a GET or
    HEAD of it with 403, which is also its answer for a missing key without ``s3:ListBucket``).
    The first key under ``Prefix=key`` is ``key`` itself when it exists (shorter sorts first)."""
    try:
        page = s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    except Exception as exc:
        if _s3_is_denied(exc):
            raise PermissionError(
                f"s3://{bucket}/{key}: S3 refused the object (403) and the listing of its key; to tell a "
                f"missing object from a refused one the caller needs s3:ListBucket on arn:aws:s3:::{bucket} "
                f"(s3:prefix {key!r} is enough) besides s3:GetObject on arn:aws:s3:::{bucket}/{key}"
            ) from refused
        raise
    return any(obj.get("Key") == key for obj in page.get("Contents", []))


def _s3_write(bucket: str, key: str, data: bytes) -> None:
    client = s3_client()
    if len(data) < MULTIPART_THRESHOLD:
        client.put_object(Bucket=bucket, Key=key, Body=data)
        return
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        parts = []
        view = memoryview(data)
        for number, start in enumerate(range(0, len(data), MULTIPART_PART_SIZE), start=1):
            chunk = view[start : start + MULTIPART_PART_SIZE]
            etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(chunk))[
                "ETag"
            ]
            parts.append({"PartNumber": number, "ETag": etag})
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        # The object only changes on complete; aborting frees the uploaded parts.
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def _s3_list(bucket: str, prefix: str) -> list[str]:
    paginator = s3_client().get_paginator("list_objects_v2")
    keys: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


# --------------------------------------------------------------------------------------- GCS
def _gcs_bucket(bucket: str) -> Any:
    try:
        from google.cloud import storage as gcs  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ImportError("gs:// URIs need the google-cloud-storage package: pip install 'aicloud[gcs]'") from exc
    return _gcs_client(gcs).bucket(bucket)


@functools.lru_cache(maxsize=1)
def _gcs_client(gcs: Any) -> Any:
    return gcs.Client()


# ------------------------------------------------------------------------------------ public API
def read_bytes(uri: str) -> bytes:
    """Return the whole object at ``uri``; raises ``FileNotFoundError`` if it does not exist."""
    loc = _parse(uri)
    if loc.scheme == "file":
        return Path(loc.key).read_bytes()
    if loc.scheme == "s3":
        try:
            return s3_client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
        except Exception as exc:
            if _s3_is_missing(exc):
                raise FileNotFoundError(uri) from exc
            if _s3_is_denied(exc):
                if not _s3_listed(loc.bucket, loc.key, exc):
                    raise FileNotFoundError(uri) from exc
                raise PermissionError(
                    f"{uri}: the object exists but S3 refused to read it (403): the caller needs "
                    f"s3:GetObject on arn:aws:s3:::{loc.bucket}/{loc.key} (and kms:Decrypt on its key)"
                ) from exc
            raise
    blob = _gcs_bucket(loc.bucket).blob(loc.key)
    if not blob.exists():
        raise FileNotFoundError(uri)
    return blob.download_as_bytes()


def write_bytes(uri: str, data: bytes) -> None:
    """Atomically replace the object at ``uri`` with ``data`` (parents are created locally)."""
    loc = _parse(uri)
    data = bytes(data)
    if loc.scheme == "file":
        _local_write(Path(loc.key), data)
    elif loc.scheme == "s3":
        _s3_write(loc.bucket, loc.key, data)
    else:
        _gcs_bucket(loc.bucket).blob(loc.key).upload_from_string(data)


def _local_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; readers in the owner's group need access
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def exists(uri: str) -> bool:
    """Whether an object (not a directory or prefix) exists at ``uri`` (S3: also under a grant that
    lists only a prefix, see the module docstring; ``PermissionError`` when nothing can tell)."""
    loc = _parse(uri)
    if loc.scheme == "file":
        return Path(loc.key).is_file()
    if loc.scheme == "s3":
        try:
            s3_client().head_object(Bucket=loc.bucket, Key=loc.key)
        except Exception as exc:
            if _s3_is_missing(exc):
                return False
            if _s3_is_denied(exc):
                # 403: missing to a caller without s3:ListBucket, or refused; a listing tells which.
                return _s3_listed(loc.bucket, loc.key, exc)
            raise
        return True
    return bool(_gcs_bucket(loc.bucket).blob(loc.key).exists())


def list_prefix(uri: str) -> list[str]:
    """Full URIs of every object below the directory-like prefix ``uri`` (recursive, sorted).

    A missing prefix gives an empty list. Local in-flight temporary files are never listed.
    """
    loc = _parse(uri)
    if loc.scheme == "file":
        root = Path(loc.key)
        if not root.is_dir():
            return []
        found = [
            str(Path(dirpath) / name)
            for dirpath, _, names in os.walk(root)
            for name in names
            if not name.startswith(_TMP_PREFIX)
        ]
        return sorted(_format(loc, p) for p in found)
    prefix = loc.key.rstrip("/") + "/" if loc.key.strip("/") else ""
    if loc.scheme == "s3":
        keys = _s3_list(loc.bucket, prefix)
    else:
        bucket = _gcs_bucket(loc.bucket)
        keys = [blob.name for blob in bucket.client.list_blobs(loc.bucket, prefix=prefix)]
    return sorted(_format(loc, k) for k in keys)


def clean_temp(uri: str) -> list[str]:
    """Remove what interrupted writes left under the prefix ``uri``: local temporary files of
    ``write_bytes`` and, on S3, incomplete multipart uploads (their parts cost storage). Call it
    only while no writer is active under ``uri``. Returns what was removed (local paths or
    ``s3://bucket/key#upload-id``)."""
    loc = _parse(uri)
    removed: list[str] = []
    if loc.scheme == "file":
        root = Path(loc.key)
        if root.is_dir():
            for dirpath, _, names in os.walk(root):
                for name in names:
                    if name.startswith(_TMP_PREFIX):
                        (Path(dirpath) / name).unlink(missing_ok=True)
                        removed.append(str(Path(dirpath) / name))
    elif loc.scheme == "s3":
        client = s3_client()
        prefix = loc.key.rstrip("/") + "/" if loc.key.strip("/") else ""
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=loc.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=loc.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                removed.append(f"s3://{loc.bucket}/{upload['Key']}#{upload['UploadId']}")
    return sorted(removed)


def delete(uri: str) -> None:
    """Delete the object at ``uri``; deleting a missing object is not an error."""
    loc = _parse(uri)
    if loc.scheme == "file":
        Path(loc.key).unlink(missing_ok=True)
    elif loc.scheme == "s3":
        s3_client().delete_object(Bucket=loc.bucket, Key=loc.key)
    else:
        blob = _gcs_bucket(loc.bucket).blob(loc.key)
        if blob.exists():
            blob.delete()
