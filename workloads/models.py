"""Model registry shared by the trainer and the model server.

Every model takes FP32 features ``[B, F]`` and returns FP32 logits ``[B, num_classes]``, so a
serving artifact only needs the architecture name and its keyword arguments to rebuild the module
(``build_model(manifest["model"]["arch"], **manifest["model"]["kwargs"])``).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from torch import nn

__all__ = ["Arch", "ARCHS", "build_model", "TabularTransformer"]

Arch = Literal["mlp", "transformer"]
ARCHS: tuple[str, ...] = get_args(Arch)


def _positive_int(arch: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{arch}: {key} must be a positive integer, got {value!r}")
    return value


def _mlp(*, in_features: int, hidden: list[int], num_classes: int) -> nn.Sequential:
    """``Linear -> ReLU`` per hidden width, then a ``Linear`` to the logits (no activation)."""
    _positive_int("mlp", "in_features", in_features)
    _positive_int("mlp", "num_classes", num_classes)
    if not isinstance(hidden, list | tuple):
        raise ValueError(f"mlp: hidden must be a list of positive integers, got {hidden!r}")
    widths = [in_features, *(_positive_int("mlp", "hidden[]", h) for h in hidden)]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], num_classes))
    return nn.Sequential(*layers)


class TabularTransformer(nn.Module):
    """A small transformer classifier over tabular features.

    Each scalar feature ``x[:, i]`` becomes a token ``x[:, i] * W[i] + b[i]`` (a per-feature linear
    embedding of width ``d_model``); a learned CLS token is prepended, the sequence goes through an
    ``nn.TransformerEncoder`` (batch first) and a ``Linear`` head reads the CLS token.
    """

    def __init__(
        self,
        *,
        in_features: int,
        num_classes: int,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for key, value in (
            ("in_features", in_features),
            ("num_classes", num_classes),
            ("d_model", d_model),
            ("nhead", nhead),
            ("num_layers", num_layers),
            ("dim_feedforward", dim_feedforward),
        ):
            _positive_int("transformer", key, value)
        if d_model % nhead:
            raise ValueError(f"transformer: d_model ({d_model}) must be divisible by nhead ({nhead})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"transformer: dropout must be in [0, 1), got {dropout!r}")
        self.feature_weight = nn.Parameter(torch.randn(in_features, d_model) * d_model**-0.5)
        self.feature_bias = nn.Parameter(torch.zeros(in_features, d_model))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` for features ``[B, F]``."""
        tokens = x.unsqueeze(-1) * self.feature_weight + self.feature_bias  # [B, F, d_model]
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        encoded = self.encoder(torch.cat([cls, tokens], dim=1))
        return self.head(encoded[:, 0])


def build_model(arch: Arch, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised model.

    ``"mlp"``: ``in_features``, ``hidden`` (list of widths), ``num_classes``; the reference model is
    ``build_model("mlp", in_features=256, hidden=[1024, 1024, 1024], num_classes=10)``.
    ``"transformer"``: ``in_features``, ``num_classes`` and optionally ``d_model`` (64), ``nhead``
    (4), ``num_layers`` (2), ``dim_feedforward`` (128), ``dropout`` (0.0); see
    :class:`TabularTransformer`.
    """
    if arch == "mlp":
        builder: Any = _mlp
    elif arch == "transformer":
        builder = TabularTransformer
    else:
        raise ValueError(f"model arch must be one of {list(ARCHS)}, got {arch!r}")
    try:
        return builder(**kwargs)
    except TypeError as exc:  # unknown or missing keyword
        raise ValueError(f"{arch}: bad model kwargs {sorted(kwargs)}: {exc}") from exc
