"""workloads.storage: local and S3 (moto) behaviour, including atomicity under failures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workloads import storage


@pytest.fixture(params=["path", "file_uri"])
def local_base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A local base location written both as a plain path and as a file:// URI."""
    return str(tmp_path) if request.param == "path" else f"file://{tmp_path}"


def _roundtrip(base: str) -> None:
    a, b, c = (storage.join(base, p) for p in ("run/a.bin", "run/sub/b.bin", "runs-other/c.bin"))
    assert not storage.exists(a)
    for uri, payload in ((a, b"alpha"), (b, b"beta"), (c, b"gamma")):
        storage.write_bytes(uri, payload)
    assert storage.exists(a) and storage.read_bytes(b) == b"beta"
    storage.write_bytes(a, b"alpha-2")
    assert storage.read_bytes(a) == b"alpha-2"
    # Directory semantics: "run" lists run/ recursively and never the sibling "runs-other".
    assert storage.list_prefix(storage.join(base, "run")) == [a, b]
    assert storage.list_prefix(storage.join(base, "run") + "/") == [a, b]
    assert storage.list_prefix(storage.join(base, "missing")) == []
    storage.delete(a)
    storage.delete(a)  # deleting a missing object is fine
    assert not storage.exists(a)
    assert storage.list_prefix(storage.join(base, "run")) == [b]
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(a)


def test_local_read_write_list_delete(local_base: str) -> None:
    _roundtrip(local_base)


def test_s3_read_write_list_delete(s3_bucket: str) -> None:
    _roundtrip(f"s3://{s3_bucket}/prefix")


def test_join_collapses_seams() -> None:
    assert storage.join("s3://b/runs/", "/r1/", "ckpt/") == "s3://b/runs/r1/ckpt"
    assert storage.join("/tmp/x", "y") == "/tmp/x/y"
    assert storage.join("file:///tmp/x/", "", "y") == "file:///tmp/x/y"


def test_unsupported_scheme_names_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"'ftp'.*allowed: local path, file://, s3://, gs://"):
        storage.read_bytes("ftp://host/x")


def test_s3_honours_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    assert storage.s3_client().meta.endpoint_url == "http://127.0.0.1:9"
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    assert storage.s3_client().meta.endpoint_url == "http://127.0.0.1:1"


def test_s3_multipart_write_roundtrip(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(storage, "MULTIPART_PART_SIZE", 5 * 1024 * 1024)
    payload = os.urandom(11 * 1024 * 1024)  # three parts
    uri = f"s3://{s3_bucket}/big.bin"
    storage.write_bytes(uri, payload)
    assert storage.read_bytes(uri) == payload


def test_s3_failure_mid_multipart_keeps_previous_object(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(storage, "MULTIPART_PART_SIZE", 5 * 1024 * 1024)
    uri = f"s3://{s3_bucket}/ckpt.bin"
    storage.write_bytes(uri, b"previous")
    client = storage.s3_client()
    calls = []

    def fail_second_part(**_: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionResetError("simulated network failure during part 2")

    client.meta.events.register("before-sign.s3.UploadPart", fail_second_part)
    try:
        with pytest.raises(ConnectionResetError):
            storage.write_bytes(uri, os.urandom(11 * 1024 * 1024))
    finally:
        client.meta.events.unregister("before-sign.s3.UploadPart", fail_second_part)
    assert len(calls) == 2
    assert storage.read_bytes(uri) == b"previous"
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_s3_failure_mid_put_keeps_previous_object(s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/small.bin"
    storage.write_bytes(uri, b"previous")
    client = storage.s3_client()

    def fail(**_: object) -> None:
        raise ConnectionResetError("simulated connection reset while streaming the body")

    client.meta.events.register("before-sign.s3.PutObject", fail)
    try:
        with pytest.raises(ConnectionResetError):
            storage.write_bytes(uri, b"new contents")
    finally:
        client.meta.events.unregister("before-sign.s3.PutObject", fail)
    assert storage.read_bytes(uri) == b"previous"


def test_local_write_survives_crash_before_rename(tmp_path: Path) -> None:
    """A process killed (SIGKILL) after writing the temp file but before the rename."""
    target = tmp_path / "ckpt.bin"
    target.write_bytes(b"previous")
    script = textwrap.dedent(
        f"""
        import os, signal
        from workloads import storage
        os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        storage.write_bytes({str(target)!r}, b"torn" * 100000)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert target.read_bytes() == b"previous"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.bin"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".aicloud-tmp-")
    assert storage.list_prefix(str(tmp_path)) == [str(target)]


def test_local_write_error_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"previous")

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        storage.write_bytes(str(target), b"new")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
