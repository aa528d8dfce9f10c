"""The training loop: DDP, mixed precision, accumulation, clipping, LR schedule, checkpoints,
resume, preemption and the artifact export.

Preemption: SIGTERM (what Kubernetes sends on spot reclaim, eviction or deletion; torchrun
forwards it to its workers) only sets a flag. Every rank finishes the step it is in; at the end of
each step the ranks agree (an all-reduce of the flag), write a checkpoint of that step and leave
with :class:`Preempted`, which the CLI turns into exit code 143 (128 + SIGTERM), the code job
controllers treat as retryable. At most the step in flight when the pod is killed outright is lost.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from workloads import storage
from workloads.artifact import save_artifact
from workloads.drift import compute_reference
from workloads.models import build_factory, build_model
from workloads.trainer import checkpoint
from workloads.trainer.config import ConfigError, TrainerConfig, to_dict
from workloads.trainer.data import BatchStream, Dataset, load_dataset
from workloads.trainer.distributed import DistContext, maybe_inject_fault, restart_count
from workloads.trainer.stream import StreamBatches, StreamData, open_stream
from workloads.trainer.telemetry import Telemetry

__all__ = ["TrainResult", "Trainer", "Preempted", "lr_factor", "build_optimizer"]

_CKPT_FORMAT = "aicloud-trainer-ckpt/1"
_EVAL_BATCH = 4096


class Preempted(Exception):
    """The run stopped on SIGTERM after checkpointing; a new attempt resumes from ``step``."""

    def __init__(self, step: int, signal_step: int) -> None:
        super().__init__(f"preempted by SIGTERM: checkpoint at step {step} (signal during step {signal_step + 1})")
        self.step = step
        self.signal_step = signal_step


@dataclass(slots=True)
class TrainResult:
    """What a finished run reports (identical on every rank except ``artifact_uri``)."""

    step: int
    """Optimizer steps completed in total."""
    resumed_from: int | None
    """Step of the checkpoint this attempt resumed from, if any."""
    final_loss: float
    """Training loss of the last logged interval, mean over ranks."""
    artifact_uri: str | None
    """Where the serving artifact was exported (rank 0), else None."""


def lr_factor(step: int, *, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak LR for 0-based optimizer step ``step``.

    Linear warmup reaches 1 at step ``warmup - 1``; cosine decay then ends at ``min_ratio`` on
    the last step ``total - 1``.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(params: Any, config: TrainerConfig) -> torch.optim.Optimizer:
    """The configured optimizer over ``params``."""
    optim = config.optim
    if optim.name == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)


class Trainer:
    """One training attempt: build, resume if possible, train to ``train.steps``, export."""

    def __init__(self, config: TrainerConfig, ctx: DistContext, *, stream: IO[str] | None = None):
        if config.out is None:
            raise ValueError("config.out must be set before training")
        self.config = config
        self.ctx = ctx
        self.out: str = config.out
        self.ckpt_root = storage.join(self.out, "checkpoints")
        self._stream = stream
        self.step = 0
        self._micro_batches = 0
        self._last_loss = math.nan
        self._stop = False
        self._signal_step: int | None = None

    # ------------------------------------------------------------------------------ setup
    def _build(self) -> Dataset | StreamData:
        cfg, ctx = self.config, self.ctx
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        streamed = cfg.data.source in ("parquet", "iceberg")
        data: Dataset | StreamData = (
            open_stream(cfg.data, cfg.train.seed) if streamed else load_dataset(cfg.data, cfg.train.seed)
        )
        torch.manual_seed(cfg.train.seed)  # identical init on every rank
        self.model_kwargs = cfg.model.build_kwargs(cfg.data.in_features, cfg.data.num_classes)
        if cfg.model.factory is not None:
            self.module = build_factory(cfg.model.factory, self.model_kwargs).to(ctx.device)
        else:
            self.module = build_model(cfg.model.arch, **self.model_kwargs).to(ctx.device)
        self.model: nn.Module = self.module
        if ctx.distributed:
            device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.module, device_ids=device_ids)
        self.optimizer = build_optimizer(self.model.parameters(), cfg)
        total, warmup, floor = cfg.train.steps, cfg.optim.warmup_steps, cfg.optim.min_lr_ratio
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total=total, warmup=warmup, min_ratio=floor)
        )
        batching = {
            "batch_size": cfg.train.batch_size,
            "rank": ctx.rank,
            "world_size": ctx.world_size,
            "seed": cfg.train.seed,
            "device": ctx.device,
        }
        self.batches: BatchStream | StreamBatches = (
            StreamBatches(data.source, cfg.data, **batching)
            if isinstance(data, StreamData)
            else BatchStream(data.train_x, data.train_y, **batching)
        )
        precision = cfg.train.precision
        self.bf16 = precision == "bf16" or (precision == "auto" and ctx.device.type == "cuda")
        return data

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.ctx.device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------------ checkpoints
    def _checkpoint_state(self) -> dict[str, Any]:
        """The checkpoint payload; every rank must call this (RNG states are gathered)."""
        rng = {"torch": torch.get_rng_state()}
        if self.ctx.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.ctx.device)
        rngs: list[Any] = [rng]
        if self.ctx.distributed:
            rngs = [None] * self.ctx.world_size
            dist.all_gather_object(rngs, rng)
        return {
            "format": _CKPT_FORMAT,
            "step": self.step,
            "micro_batches": self._micro_batches,
            "loss": self._last_loss,
            "world_size": self.ctx.world_size,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rngs,
            "config": to_dict(self.config),
        }

    def _save_checkpoint(self, telemetry: Telemetry | None) -> None:
        state = self._checkpoint_state()
        if not self.ctx.is_main:
            return
        started = time.perf_counter()
        uri, deleted = checkpoint.save(self.ckpt_root, self.step, state, self.config.checkpoint.keep_last)
        assert telemetry is not None
        telemetry.record(
            "checkpoint",
            step=self.step,
            checkpoint_step=self.step,
            uri=uri,
            seconds=round(time.perf_counter() - started, 4),
            deleted=deleted,
        )
        telemetry.sync()

    def _load_checkpoint(self) -> checkpoint.Checkpoint | None:
        """Find the newest valid checkpoint (rank 0 decides) and restore it on every rank."""
        found = checkpoint.load_latest(self.ckpt_root) if self.ctx.is_main else None
        if self.ctx.distributed:
            choice = [found.uri if found else None]
            dist.broadcast_object_list(choice, src=0)
            if not self.ctx.is_main and choice[0] is not None:
                state = checkpoint.decode(storage.read_bytes(choice[0]))
                found = checkpoint.Checkpoint(state["step"], choice[0], state, [])
        if found is None:
            return None
        state = found.state
        if state.get("format") != _CKPT_FORMAT:
            raise ValueError(f"{found.uri}: unknown checkpoint format {state.get('format')!r}")
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self._micro_batches = int(state["micro_batches"])
        self._last_loss = float(state["loss"])
        if state["world_size"] == self.ctx.world_size:
            rng = state["rng"][self.ctx.rank]
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and self.ctx.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.ctx.device)
        return found

    # ---------------------------------------------------------------------------- training
    def _run_step(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (mean loss, grad norm)."""
        accum = self.config.train.grad_accum
        total = torch.zeros((), device=self.ctx.device)
        for micro in range(accum):
            x, y = self.batches.next()
            last = micro == accum - 1
            no_sync = self.ctx.distributed and not last
            with self.model.no_sync() if no_sync else contextlib.nullcontext():  # type: ignore[operator]
                with self._autocast():
                    logits = self.model(x)
                loss = F.cross_entropy(logits.float(), y)
                (loss / accum if accum > 1 else loss).backward()
            total += loss.detach()
        self._micro_batches += accum
        grad_norm = None
        if self.config.optim.grad_clip > 0:
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / accum, grad_norm

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        if self.ctx.distributed:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.ctx.world_size
        return float(value.item())

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if not self._stop:
            self._stop = True
            self._signal_step = self.step

    def _should_stop(self) -> bool:
        """Whether any rank got SIGTERM (every rank calls this once per step, in step)."""
        if not self.ctx.distributed:
            return self._stop
        flag = torch.tensor([1.0 if self._stop else 0.0], device=self.ctx.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _check_output(self) -> None:
        """Refuse ``checkpoint.resume=false`` on an output that holds an earlier run's checkpoints
        (saving would prune them), and remove temporary files of an interrupted checkpoint."""
        if not self.ctx.is_main:
            return
        existing = checkpoint.list_checkpoints(self.ckpt_root)
        if existing and not self.config.checkpoint.resume:
            steps = ", ".join(str(s) for s, _ in existing[-3:])
            raise ConfigError(
                f"checkpoint.resume: got False but {self.ckpt_root} holds checkpoints of an earlier run "
                f"(steps {steps}); allowed: true (resume it), or a new --out for a fresh run"
            )
        storage.clean_temp(self.ckpt_root)

    def train(self) -> TrainResult:
        """Run to ``train.steps`` (resuming when possible) and export the artifact on rank 0.

        Raises :class:`Preempted` after checkpointing when SIGTERM arrived.
        """
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        else:  # signals can be handled on the main thread only (e.g. tests driving a thread)
            previous = None
        try:
            return self._train_all()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _train_all(self) -> TrainResult:
        cfg, ctx = self.config, self.ctx
        self._check_output()
        data = self._build()
        telemetry = None
        if ctx.is_main:
            telemetry = Telemetry(
                metrics_uri=cfg.metrics.uri or storage.join(self.out, "metrics.jsonl"),
                total_steps=cfg.train.steps,
                port=cfg.metrics.port,
                host=cfg.metrics.host,
                stream=self._stream,
            )
        try:
            return self._train(data, telemetry)
        finally:
            if telemetry is not None:
                telemetry.close()

    def _train(self, data: Dataset | StreamData, telemetry: Telemetry | None) -> TrainResult:
        cfg, ctx = self.config, self.ctx
        global_batch = cfg.train.batch_size * cfg.train.grad_accum * ctx.world_size
        if telemetry is not None:
            telemetry.record(
                "start",
                world_size=ctx.world_size,
                restarts=restart_count(),
                backend=ctx.backend or "none",
                device=str(ctx.device),
                bf16=self.bf16,
                global_batch=global_batch,
                steps=cfg.train.steps,
                train_rows=data.train_rows,
                data=cfg.data.source,
                metrics_port=telemetry.port,
            )
        resumed = self._load_checkpoint() if cfg.checkpoint.resume else None
        if resumed is not None and telemetry is not None:
            telemetry.record("resume", step=self.step, uri=resumed.uri, skipped=resumed.skipped)
        self.batches.seek(self._micro_batches)
        self.model.train()

        every = cfg.checkpoint.every
        window_loss = torch.zeros((), device=ctx.device)
        window_steps, window_time, mark = 0, 0.0, time.perf_counter()
        while self.step < cfg.train.steps:
            loss, grad_norm = self._run_step()
            self.step += 1
            window_loss += loss
            window_steps += 1
            last = self.step == cfg.train.steps
            if self.step % cfg.train.log_every == 0 or last:
                self._last_loss = self._mean_over_ranks(window_loss / window_steps)  # device sync
                window_time += time.perf_counter() - mark
                if telemetry is not None:
                    telemetry.record(
                        "step",
                        step=self.step,
                        epoch=self._micro_batches // self.batches.batches_per_epoch,
                        loss=self._last_loss,
                        lr=self.scheduler.get_last_lr()[0],
                        grad_norm=None if grad_norm is None else float(grad_norm),
                        samples_per_second=window_steps * global_batch / window_time,
                        step_seconds=window_time / window_steps,
                        world_size=ctx.world_size,
                        restarts=restart_count(),
                    )
                window_loss.zero_()
                window_steps, window_time, mark = 0, 0.0, time.perf_counter()
            if self._should_stop() and not last:
                self._save_checkpoint(telemetry)
                signal_step = self._signal_step if self._signal_step is not None else self.step
                if telemetry is not None:
                    telemetry.record("preempted", step=self.step, checkpoint_step=self.step, signal_step=signal_step)
                raise Preempted(self.step, signal_step)
            if every and (self.step % every == 0 or last):
                window_time += time.perf_counter() - mark
                self._save_checkpoint(telemetry)
                mark = time.perf_counter()  # checkpoint time is not training time
            maybe_inject_fault(ctx.rank, self.step)

        artifact_uri = None
        if cfg.export.enabled and ctx.is_main:
            assert telemetry is not None
            artifact_uri = self._export(data, telemetry)
        if telemetry is not None:
            telemetry.record("done", step=self.step, loss=self._last_loss, artifact=artifact_uri)
        resumed_from = resumed.step if resumed else None
        return TrainResult(self.step, resumed_from, self._last_loss, artifact_uri)

    # ------------------------------------------------------------------------------ export
    @torch.no_grad()
    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        self.module.eval()
        loss_sum, correct = 0.0, 0
        for start in range(0, len(x), _EVAL_BATCH):
            xb = x[start : start + _EVAL_BATCH].to(self.ctx.device)
            yb = y[start : start + _EVAL_BATCH].to(self.ctx.device)
            logits = self.module(xb).float()
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(dim=1) == yb).sum())
        self.module.train()
        return loss_sum / len(x), correct / len(x)

    def _export(self, data: Dataset | StreamData, telemetry: Telemetry) -> str:
        cfg = self.config
        if isinstance(data, StreamData):
            heldout_x, heldout_y = data.heldout()
            reference_x = data.reference_sample()
        else:
            heldout_x, heldout_y, reference_x = data.heldout_x, data.heldout_y, data.train_x.numpy()
        heldout_loss, heldout_accuracy = self._evaluate(heldout_x, heldout_y)
        uri = cfg.export.uri or storage.join(self.out, "model")
        n = min(cfg.export.heldout_samples, len(heldout_x))
        metrics = {
            "steps": self.step,
            "train_loss": self._last_loss,
            "heldout_loss": heldout_loss,
            "heldout_accuracy": heldout_accuracy,
            "heldout_rows": len(heldout_x),
            "world_size": self.ctx.world_size,
            "global_batch": cfg.train.batch_size * cfg.train.grad_accum * self.ctx.world_size,
        }
        save_artifact(
            uri,
            model=self.module,
            arch=None if cfg.model.factory else cfg.model.arch,
            factory=cfg.model.factory,
            kwargs=self.model_kwargs,
            heldout_x=heldout_x[:n],
            heldout_y=heldout_y[:n],
            reference=compute_reference(reference_x, bins=cfg.export.drift_bins),
            name=cfg.export.name,
            version=cfg.export.version,
            metrics=metrics,
        )
        telemetry.record("export", uri=uri, **metrics)
        return uri
