"""Atomic checkpoint writes to S3 under crashes: a writer process is killed (SIGKILL) in the middle
of `workloads.storage.write_bytes` of a new checkpoint, and the previous checkpoint at the same key
must still be readable and byte-for-byte intact. The figure: 100% of 20 trials.

Runs against `moto_server` on 127.0.0.1 (a random free port), started and stopped here. Each trial
writes a previous checkpoint (one PUT), then starts a writer of a new checkpoint and kills it, in
turn: right after multipart part k completed, while part k is being sent (5 MiB parts, k random),
or while a single-PUT checkpoint (smaller than a part) is being sent. Killed writers cannot abort
their multipart uploads; the count of
uploads they leave behind is reported (the lakehouse's `AbortIncompleteMultipartUpload` lifecycle
rule frees them) and they are aborted here so trials stay independent. A control writer that is
not killed must replace the object, showing the writes were real.

    python benchmarks/storage_atomicity.py [--trials 20] [--size-mib 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workloads import storage  # noqa: E402

PART_MIB = 5
BUCKET = "aicloud-atomicity"
KEY = "runs/bench/checkpoint.pt"

WRITER = textwrap.dedent(
    """
    import os, sys
    from workloads import storage
    storage.MULTIPART_THRESHOLD = storage.MULTIPART_PART_SIZE = {part} * 1024 * 1024
    client = storage.s3_client()
    current = []
    def building(params, **_):
        current.append(params["PartNumber"])
    def sending(**_):
        print("sending", current[-1], flush=True)
    def uploaded(**_):
        print("uploaded", current[-1], flush=True)
    client.meta.events.register("before-parameter-build.s3.UploadPart", building)
    client.meta.events.register("before-send.s3.UploadPart", sending)
    client.meta.events.register("after-call.s3.UploadPart", uploaded)
    client.meta.events.register("before-send.s3.PutObject", lambda **_: print("sending put", flush=True))
    storage.write_bytes(sys.argv[1], os.urandom(int(sys.argv[2])))
    print("complete", flush=True)
    """
)
"""The writer process: `workloads.storage.write_bytes` with 5 MiB parts, announcing each request."""


@dataclass
class Trial:
    number: int
    mode: str
    kill_at_part: int
    intact: bool
    killed: bool
    dangling_uploads: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONPATH=str(ROOT),
    )
    return env


def start_moto(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`moto_server` on 127.0.0.1:`port`, ready to serve (waits at most 20 s)."""
    proc = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("moto_server exited at start") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not open its port within 20 s")


def _crash_writer(uri: str, size: int, mode: str, part: int, env: dict[str, str]) -> bool:
    """Start a writer of `size` bytes and SIGKILL it: `after` part `part` uploaded, `during` its
    sending, or during the single `put`. Returns whether it was killed before completing."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(part=PART_MIB), uri, str(size)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    trigger = {"after": f"uploaded {part}", "during": f"sending {part}", "put": "sending put"}[mode]
    killed = False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == trigger:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            if line.strip() == "complete":
                break
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return killed and proc.returncode == -signal.SIGKILL


def _complete_writer(uri: str, size: int, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-c", WRITER.format(part=PART_MIB), uri, str(size)],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )


def run(trials: int = 20, size_mib: int = 16, seed: int = 0, verbose: bool = True) -> list[Trial]:
    """Run the trials against a fresh moto_server; returns one record per trial."""
    rng = random.Random(seed)
    port = _free_port()
    env = _env(port)
    saved = {k: os.environ.get(k) for k in env}
    server = start_moto(port, env)
    os.environ.update(env)
    storage._s3_client_for.cache_clear()
    results: list[Trial] = []
    try:
        client = storage.s3_client()
        client.create_bucket(Bucket=BUCKET)
        uri = f"s3://{BUCKET}/{KEY}"
        size = size_mib * 1024 * 1024
        parts = -(-size // (PART_MIB * 1024 * 1024))
        for number in range(1, trials + 1):
            previous = f"checkpoint {number} ".encode() + os.urandom(1024 * 1024)
            storage.write_bytes(uri, previous)
            mode = ("after", "during", "put")[(number - 1) % 3]
            part = {"after": rng.randint(1, parts - 1), "during": rng.randint(1, parts), "put": 1}[mode]
            small = PART_MIB * 1024 * 1024 - 1024  # below the multipart threshold: one PUT
            killed = _crash_writer(uri, small if mode == "put" else size, mode, part, env)
            current = storage.read_bytes(uri)
            intact = hashlib.sha256(current).digest() == hashlib.sha256(previous).digest()
            uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
            for upload in uploads:
                client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
            results.append(Trial(number, mode, part, intact, killed, len(uploads)))
            if verbose:
                where = "during the single PUT" if mode == "put" else f"{mode} part {part}/{parts}"
                print(
                    f"trial {number:2d}: killed {where}: "
                    f"{'previous checkpoint intact' if intact else 'PREVIOUS CHECKPOINT LOST OR TORN'}"
                    f"{'' if killed else ' (writer was not killed)'}; dangling uploads {len(uploads)}"
                )
        _complete_writer(uri, size, env)
        if len(storage.read_bytes(uri)) != size:
            raise RuntimeError("control: an uninterrupted writer did not replace the checkpoint")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        storage._s3_client_for.cache_clear()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--size-mib", type=int, default=16, help="size of the new checkpoint (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    args = parser.parse_args()
    started = time.monotonic()
    results = run(args.trials, args.size_mib, args.seed)
    crashed = [t for t in results if t.killed]
    intact = sum(t.intact for t in crashed)
    print()
    print(f"writers killed mid-write: {len(crashed)}/{len(results)}")
    print(f"previous checkpoint intact after the crash: {intact}/{len(crashed)} trials")
    print(f"multipart uploads left by killed writers: {sum(t.dangling_uploads for t in results)}")
    print("control: an uninterrupted writer replaced the checkpoint")
    print(f"elapsed: {time.monotonic() - started:.1f} s")
    return 0 if crashed and len(crashed) == len(results) and intact == len(crashed) else 1


if __name__ == "__main__":
    raise SystemExit(main())
