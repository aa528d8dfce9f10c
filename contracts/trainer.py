"""The contract between the training components and the trainer image: how a pod launches the
trainer and which exit code means "preempted, retry me"."""

from __future__ import annotations

__all__ = ["EXIT_PREEMPTED", "LAUNCH"]

EXIT_PREEMPTED = 143
"""128 + SIGTERM: the trainer checkpointed after a SIGTERM (spot reclaim, drain); a retry resumes."""
LAUNCH = ["python", "-m", "workloads.trainer.launch"]
"""The container command: torchrun (its arguments follow) that exits `EXIT_PREEMPTED` on SIGTERM."""
