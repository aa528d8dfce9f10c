"""Process-group setup and teardown, and the test-only fault hook.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; without
them (or with ``WORLD_SIZE=1``) the trainer runs as a single process with no process group.
NCCL is used when training on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from workloads.trainer.config import ConfigError

__all__ = ["DistContext", "setup", "teardown", "restart_count", "FAULT_ENV", "maybe_inject_fault"]

FAULT_ENV = "AICLOUD_TRAINER_FAULT"
"""Test-only fault injection: ``sigkill:rank=R:step=S`` makes rank R SIGKILL itself right after
optimizer step S (and its checkpoint, if one is due), on the first attempt only (elastic restart
count 0). Unset in production."""


@dataclass(frozen=True, slots=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None
    """"nccl" or "gloo" when a process group is up, None for a single process."""

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the only rank that writes)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group is up."""
        return self.backend is not None


def restart_count() -> int:
    """How many times torchrun has restarted this job's workers (0 outside torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def setup(device_preference: str, timeout_s: float = 1800.0) -> DistContext:
    """Pick the device and, under a multi-process launch, join the process group."""
    cuda = torch.cuda.is_available()
    if device_preference == "cuda" and not cuda:
        raise ConfigError("train.device: got 'cuda' but no CUDA device is visible; allowed: 'auto', 'cpu'")
    use_cuda = cuda and device_preference != "cpu"
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    backend = None
    if world_size > 1:
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(
            backend,
            store=_attempt_store(world_size, timeout_s),
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
            device_id=device if use_cuda else None,
        )
    return DistContext(rank, world_size, local_rank, device, backend)


def _attempt_store(world_size: int, timeout_s: float) -> dist.Store:
    """The rendezvous store, namespaced per elastic attempt when torchrun shares its own store.

    torchrun (c10d rendezvous) hands workers the agent's TCPStore, which outlives worker
    restarts; without a namespace, restarted workers read the previous attempt's process-group
    keys and connect to dead peers or hang (pytorch/pytorch#135712). Outside that mode a fresh
    store comes from ``MASTER_ADDR``/``MASTER_PORT`` as with ``init_method="env://"``.
    """
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    rank = int(os.environ.get("RANK", "0"))
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=rank == 0 and not shared,
        timeout=timedelta(seconds=timeout_s),
    )
    return dist.PrefixStore(f"aicloud/attempt_{restart_count()}/", store) if shared else store


def teardown(ctx: DistContext | None, *, clean: bool) -> None:
    """Leave the process group.

    After a clean run every rank meets at a barrier and then destroys the group, so no rank
    tears down gloo/NCCL connections a peer still uses (the source of the intermittent
    "terminate called without an active exception" abort at exit). After a failure the peers
    may be gone, so neither is attempted: the process exits and torchrun handles the rest.
    """
    if ctx is None or not ctx.distributed or not dist.is_initialized() or not clean:
        return
    if ctx.backend == "nccl":
        dist.barrier(device_ids=[ctx.local_rank])
    else:
        dist.barrier()
    dist.destroy_process_group()


def _parse_fault(spec: str) -> tuple[int, int]:
    kind, *parts = spec.split(":")
    fields = dict(p.split("=", 1) for p in parts if "=" in p)
    if kind != "sigkill" or set(fields) != {"rank", "step"}:
        raise ConfigError(f"{FAULT_ENV}: got {spec!r}; allowed: 'sigkill:rank=R:step=S'")
    return int(fields["rank"]), int(fields["step"])


def maybe_inject_fault(rank: int, step: int) -> None:
    """SIGKILL this process if :data:`FAULT_ENV` asks for it at this rank and step."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or restart_count() != 0:
        return
    fault_rank, fault_step = _parse_fault(spec)
    if (rank, step) == (fault_rank, fault_step):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
