"""Crash windows of the trainer's checkpoint sequence: a process running the real
`workloads.trainer.checkpoint.save` loop (write the new checkpoint, list, prune the old ones) is
killed with SIGKILL at each point of that sequence, on local storage and on S3 (`moto_server` on
127.0.0.1), and resume must find an intact checkpoint no older than the last completed save.

Kill points (the writer pauses at the chosen one so the kill lands there):

- local: `temp` (temporary file created, nothing written), `rename` (temporary file complete, not
  yet renamed over the target), `written` (new checkpoint in place, nothing pruned), `pruned`
  (first old checkpoint deleted, others not yet);
- S3: `part1` / `part2` (multipart part 1 / 2 on the wire), `complete` (every part uploaded,
  CompleteMultipartUpload not sent), `written`, `pruned`.

Per trial: the step `load_latest` resumes from must be the last completed save or the one in
flight (never older, never a torn or missing object: each checkpoint's tensors hold its own step
number, checked after decoding); then a second, uninterrupted process resumes and saves to the end
(pruning what the killed one left). Left-overs (temporary files, incomplete multipart uploads) are
counted, then removed with `storage.clean_temp`, which must find exactly them.

    python benchmarks/checkpoint_crash.py [--repeats 3] [--steps 6] [--size-mib 11]

It replaces a figure that killed a bare `write_bytes` at a key the trainer never overwrites (it
measured S3's own PUT atomicity and could not fail).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOCAL_POINTS = ("temp", "rename", "written", "pruned")
S3_POINTS = ("part1", "part2", "complete", "written", "pruned")
PART_MIB = 5
BUCKET = "aicloud-crash"

SAVER = textwrap.dedent(
    """
    import os, sys, tempfile, time
    import torch
    from workloads import storage
    from workloads.trainer import checkpoint

    root, first, last, numel, target, target_step, part = sys.argv[1:8]
    first, last, numel, target_step = int(first), int(last), int(numel), int(target_step)
    storage.MULTIPART_THRESHOLD = storage.MULTIPART_PART_SIZE = int(part)
    step = 0

    def mark(name):
        if name == target and step == target_step:
            print("at", name, flush=True)
            time.sleep(30)  # the parent kills us here

    def wrap(module, attr, before=None, after=None):
        real = getattr(module, attr)
        def wrapper(*args, **kwargs):
            if before:
                mark(before)
            out = real(*args, **kwargs)
            if after:
                mark(after)
            return out
        setattr(module, attr, wrapper)

    wrap(tempfile, "mkstemp", after="temp")
    wrap(os, "replace", before="rename")
    wrap(storage, "write_bytes", after="written")
    wrap(storage, "delete", after="pruned")
    if root.startswith("s3://"):
        client = storage.s3_client()
        parts = []
        client.meta.events.register(
            "before-parameter-build.s3.UploadPart", lambda params, **_: parts.append(params["PartNumber"])
        )
        client.meta.events.register("before-send.s3.UploadPart", lambda **_: mark(f"part{parts[-1]}"))
        client.meta.events.register("before-send.s3.CompleteMultipartUpload", lambda **_: mark("complete"))
    for step in range(first, last + 1):
        state = {"step": step, "weights": torch.full((numel,), float(step))}
        checkpoint.save(root, step, state, keep_last=2)
        print("saved", step, flush=True)
    """
)


@dataclass
class Trial:
    backend: str
    point: str
    step: int
    """The step whose save was in flight when the process was killed."""
    killed: bool
    resumed_step: int | None
    """What `load_latest` found (None: nothing)."""
    intact: bool
    """The resumed checkpoint decodes and holds its own step's tensors."""
    leftovers: int
    cleaned: int
    finished: bool
    """A second process resumed and saved to the last step."""

    @property
    def ok(self) -> bool:
        return (
            self.killed
            and self.intact
            and self.resumed_step in (self.step - 1, self.step)
            and self.cleaned == self.leftovers
            and self.finished
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_moto(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
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


def _saver(root: str, first: int, last: int, numel: int, point: str, step: int) -> list[str]:
    return [sys.executable, "-c", SAVER, root, str(first), str(last), str(numel), point, str(step), str(PART_MIB << 20)]


def _run_and_kill(cmd: list[str], env: dict[str, str]) -> bool:
    """Run the saver until it reports the kill point, SIGKILL it; whether it died by our kill."""
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("at "):
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not killed:
        raise RuntimeError(f"the saver never reached its kill point:\n{proc.stderr.read() if proc.stderr else ''}")
    return proc.returncode == -signal.SIGKILL


def _leftovers(root: str) -> int:
    from workloads import storage

    if root.startswith("s3://"):
        bucket, _, prefix = root[5:].partition("/")
        uploads = storage.s3_client().list_multipart_uploads(Bucket=bucket, Prefix=prefix + "/").get("Uploads", [])
        return len(uploads)
    return sum(1 for _, _, names in os.walk(root) for n in names if n.startswith(".aicloud-tmp-"))


def trial(backend: str, point: str, root: str, step: int, steps: int, numel: int, env: dict[str, str]) -> Trial:
    from workloads import storage
    from workloads.trainer import checkpoint

    killed = _run_and_kill(_saver(root, 1, steps, numel, point, step), env)
    found = checkpoint.load_latest(root)
    intact = found is not None and bool((found.state["weights"] == float(found.step)).all())
    leftovers = _leftovers(root)
    cleaned = len(storage.clean_temp(root))
    resume_from = (found.step + 1) if found is not None else 1
    done = subprocess.run(
        _saver(root, resume_from, steps, numel, "-", 0), env=env, cwd=ROOT, capture_output=True, timeout=300
    )
    final = checkpoint.load_latest(root)
    finished = done.returncode == 0 and final is not None and final.step == steps
    finished = finished and [s for s, _ in checkpoint.list_checkpoints(root)] == [steps - 1, steps]
    return Trial(backend, point, step, killed, found.step if found else None, intact, leftovers, cleaned, finished)


def run(
    repeats: int = 3,
    steps: int = 6,
    size_mib: int = 11,
    seed: int = 0,
    backends: tuple[str, ...] = ("local", "s3"),
    points: dict[str, tuple[str, ...]] | None = None,
    verbose: bool = True,
) -> list[Trial]:
    """Every kill point of every backend, `repeats` times at a random step (2..steps-1)."""
    from workloads import storage

    points = points or {"local": LOCAL_POINTS, "s3": S3_POINTS}
    rng = random.Random(seed)
    numel = size_mib * (1 << 20) // 4  # float32 tensor of about size_mib
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(ROOT)
    results: list[Trial] = []
    server = None
    saved_env = dict(os.environ)
    try:
        if "s3" in backends:
            port = _free_port()
            env.update(
                AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}",
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench",
                AWS_DEFAULT_REGION="us-east-1",
            )
            server = _start_moto(port, env)
            os.environ.update(env)
            storage._s3_client_for.cache_clear()
            storage.s3_client().create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            n = 0
            for backend in backends:
                for point in points[backend]:
                    for _ in range(repeats):
                        n += 1
                        root = f"s3://{BUCKET}/t{n}/checkpoints" if backend == "s3" else f"{tmp}/t{n}/checkpoints"
                        # Pruning starts at step 3 (keep_last=2); the last step is left for the resumed run.
                        step = rng.randint(3 if point == "pruned" else 2, steps - 1)
                        t = trial(backend, point, root, step, steps, numel, env)
                        results.append(t)
                        if verbose:
                            print(
                                f"{backend:5} {point:8} killed in step {t.step}: resumed from "
                                f"{t.resumed_step} ({'intact' if t.intact else 'NOT INTACT'}), left-overs "
                                f"{t.leftovers} (cleaned {t.cleaned}), "
                                f"resumed run {'finished' if t.finished else 'FAILED'}"
                                f"{'' if t.ok else '  <-- FAILED'}",
                                flush=True,
                            )
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        storage._s3_client_for.cache_clear()
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="trials per kill point and backend")
    parser.add_argument("--steps", type=int, default=6, help="checkpoints the saver writes")
    parser.add_argument("--size-mib", type=int, default=11, help="checkpoint size (S3: above 2 parts of 5 MiB)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = run(args.repeats, args.steps, args.size_mib, args.seed)
    ok = sum(t.ok for t in results)
    lost = [t.step - t.resumed_step for t in results if t.resumed_step is not None]
    print(
        f"\nresumed intact from the last completed save or the one in flight: {ok}/{len(results)} "
        f"(steps lost per crash: {sorted(set(lost))}; left-overs cleaned by clean_temp: "
        f"{sum(t.cleaned for t in results)}/{sum(t.leftovers for t in results)})"
    )
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
