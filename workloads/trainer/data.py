"""Training data: a seeded synthetic task or shards from storage, split and served per rank.

The whole dataset is held in host memory (every rank loads it; the sampler picks each rank's
rows), which suits the tabular workloads this trainer serves.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from workloads import storage
from workloads.trainer.config import DataConfig

__all__ = ["Dataset", "load_dataset", "synthetic", "read_shards", "BatchStream", "SHARD_SUFFIXES"]

SHARD_SUFFIXES = (".pt", ".npz")
"""File suffixes read as shards under ``data.uri``; other files are ignored."""

_TEACHER_WIDTH = 64


@dataclass(slots=True)
class Dataset:
    """Training and held-out rows (CPU tensors: x FP32 ``[n, F]``, y INT64 ``[n]``)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    heldout_x: torch.Tensor
    heldout_y: torch.Tensor

    @property
    def train_rows(self) -> int:
        """Number of training rows."""
        return len(self.train_x)


def synthetic(num_samples: int, in_features: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian inputs labelled by a fixed random teacher network (argmax of its logits).

    The same arguments give the same tensors on every rank and every run; the global RNG is
    untouched.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, in_features, generator=gen)
    w1 = torch.randn(in_features, _TEACHER_WIDTH, generator=gen) / in_features**0.5
    w2 = torch.randn(_TEACHER_WIDTH, num_classes, generator=gen) / _TEACHER_WIDTH**0.5
    y = (torch.tanh(x @ w1) @ w2).argmax(dim=1)
    return x, y


def _read_shard(uri: str) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
    blob = storage.read_bytes(uri)
    if uri.endswith(".pt"):
        payload = torch.load(io.BytesIO(blob), weights_only=True)
    else:
        payload = dict(np.load(io.BytesIO(blob), allow_pickle=False))
    if not isinstance(payload, dict) or "x" not in payload or "y" not in payload:
        raise ValueError(f"shard {uri} must hold a mapping with 'x' and 'y'")
    return payload["x"], payload["y"]


def read_shards(uri: str, in_features: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every ``.pt``/``.npz`` shard under ``uri`` (sorted by name) and validate it."""
    shards = [u for u in storage.list_prefix(uri) if u.endswith(SHARD_SUFFIXES)]
    if not shards:
        raise ValueError(f"data.uri: no {'/'.join(SHARD_SUFFIXES)} shards under {uri!r}")
    xs, ys = [], []
    for shard in shards:
        x, y = _read_shard(shard)
        x = torch.as_tensor(x).to(torch.float32)
        y = torch.as_tensor(y).to(torch.int64)
        if x.ndim != 2 or x.shape[1] != in_features or y.shape != (x.shape[0],):
            raise ValueError(
                f"shard {shard}: x {list(x.shape)} / y {list(y.shape)} do not match "
                f"data.in_features={in_features} (x must be [n, {in_features}], y [n])"
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"shard {shard}: labels must be in [0, data.num_classes={num_classes})")
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def load_dataset(config: DataConfig, seed: int) -> Dataset:
    """Load or generate the rows and split off ``heldout_fraction`` with a seeded permutation."""
    if config.source == "synthetic":
        x, y = synthetic(config.num_samples, config.in_features, config.num_classes, seed)
    else:
        assert config.uri is not None  # checked by DataConfig
        x, y = read_shards(config.uri, config.in_features, config.num_classes)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 1))
    n_heldout = max(1, int(len(x) * config.heldout_fraction))
    heldout, train = order[:n_heldout], order[n_heldout:]
    return Dataset(x[train], y[train], x[heldout], y[heldout])


class BatchStream:
    """This rank's micro-batches in ``DistributedSampler`` order, epoch after epoch.

    The sampler reshuffles every epoch (seeded) and drops the ragged tail so every rank sees
    the same number of batches; within an epoch the last partial batch is dropped too. The
    position is a plain count of micro-batches, so a resumed run continues exactly where the
    checkpoint was taken (``seek``).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        device: torch.device,
    ) -> None:
        self._x, self._y = x, y
        self._batch_size = batch_size
        self._device = device
        self._sampler = DistributedSampler(
            range(len(x)),  # type: ignore[arg-type]  # only len() is used
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.batches_per_epoch = len(self._sampler) // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"train.batch_size: {batch_size} x {world_size} ranks needs more than the "
                f"{len(x)} training rows; lower the batch size or add data"
            )
        self._epoch = -1
        self._indices = torch.empty(0, dtype=torch.int64)
        self._position = 0

    def seek(self, micro_batches_done: int) -> None:
        """Continue as if ``micro_batches_done`` micro-batches had been drawn already."""
        self._load_epoch(micro_batches_done // self.batches_per_epoch)
        self._position = micro_batches_done % self.batches_per_epoch

    def _load_epoch(self, epoch: int) -> None:
        self._sampler.set_epoch(epoch)
        self._indices = torch.tensor(list(iter(self._sampler)), dtype=torch.int64)
        self._epoch = epoch

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next micro-batch ``(x, y)`` on the training device."""
        if self._epoch < 0 or self._position == self.batches_per_epoch:
            self._load_epoch(self._epoch + 1)
            self._position = 0
        start = self._position * self._batch_size
        index = self._indices[start : start + self._batch_size]
        self._position += 1
        non_blocking = self._device.type == "cuda"
        return (
            self._x[index].to(self._device, non_blocking=non_blocking),
            self._y[index].to(self._device, non_blocking=non_blocking),
        )
