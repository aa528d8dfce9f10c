"""``python -m workloads.trainer.launch [torchrun args]``: torchrun with a retryable exit on SIGTERM.

Kubernetes sends SIGTERM to the container's first process only. torchrun forwards it to its
workers (each finishes its step, checkpoints and exits 143, see :mod:`workloads.trainer.loop`),
waits for them, and then exits 1 with a traceback of its own ``SignalException``: a code job
controllers count as a permanent failure. This launcher runs torchrun as a child, forwards
SIGTERM/SIGINT to it, waits, and exits 143 (128 + SIGTERM) after a SIGTERM, so Kubeflow's
``restartPolicy: ExitCode`` and a Job's ``podFailurePolicy`` retry the pod, which resumes from the
checkpoint. Every other outcome keeps torchrun's exit code.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from workloads.trainer.cli import EXIT_PREEMPTED

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run torchrun with ``argv`` and return the exit code described above."""
    args = sys.argv[1:] if argv is None else argv
    child = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args])
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    code = child.wait()
    if signal.SIGTERM in received:
        return EXIT_PREEMPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
