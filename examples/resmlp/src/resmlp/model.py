"""The model and its factory, named to aicloud as ``resmlp.model:build``."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """``x + Linear(GELU(Linear(LayerNorm(x))))`` (pre-norm)."""

    def __init__(self, width: int, expansion: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, width * expansion)
        self.down = nn.Linear(width * expansion, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(self.norm(x))))


class ResidualMLP(nn.Module):
    """Features ``[B, F]`` -> logits ``[B, C]`` through ``blocks`` residual blocks of ``width``."""

    def __init__(self, in_features: int, num_classes: int, width: int, blocks: int, expansion: int) -> None:
        super().__init__()
        self.stem = nn.Linear(in_features, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width, expansion) for _ in range(blocks)))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build(*, in_features: int, num_classes: int, width: int = 64, blocks: int = 2, expansion: int = 2) -> ResidualMLP:
    """The factory aicloud calls: ``in_features`` and ``num_classes`` come from the trainer's data
    config, the rest from ``model.kwargs``."""
    for name, value in (("width", width), ("blocks", blocks), ("expansion", expansion)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"resmlp: {name} must be a positive integer, got {value!r}")
    return ResidualMLP(in_features, num_classes, width, blocks, expansion)
