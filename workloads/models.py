"""Model registry shared by the trainer and the model server, and user model factories.

Every model takes FP32 features ``[B, F]`` and returns FP32 logits ``[B, num_classes]``, so a
serving artifact only needs the architecture name (or a factory's import path) and its keyword
arguments to rebuild the module.

A team's own model is named by an import path ``"package.module:callable"`` (:func:`build_factory`);
nothing in aicloud has to know it, only the images must have the package installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from typing import Any, Literal, get_args

import torch
from torch import nn

__all__ = [
    "Arch",
    "ARCHS",
    "FACTORY_RE",
    "FactoryError",
    "build_model",
    "build_factory",
    "load_factory",
    "factory_package",
    "TabularTransformer",
]

FACTORY_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
"""``package.module:callable`` (the callable may be a dotted attribute path, e.g. ``Class.build``)."""


class FactoryError(ValueError):
    """A model factory cannot be imported, called, or did not return an ``nn.Module``."""


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


def load_factory(path: str) -> Any:
    """The callable named by ``"package.module:callable"``; raises FactoryError naming what is missing."""
    if not isinstance(path, str) or not FACTORY_RE.match(path):
        raise FactoryError(f"model factory {path!r} is not an import path 'package.module:callable'")
    module_name, _, attr_path = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise FactoryError(
            f"model factory {path!r}: cannot import module {module_name!r} ({exc}); install the package "
            "that provides it (locally: pip install -e <path>; images: aicloud:images packages)"
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise FactoryError(f"model factory {path!r}: module {module_name!r} has no attribute {attr_path!r}")
        target = getattr(target, part)
    if not callable(target):
        raise FactoryError(f"model factory {path!r} is not callable")
    return target


def build_factory(path: str, kwargs: dict[str, Any]) -> nn.Module:
    """``load_factory(path)(**kwargs)``, checked to be an ``nn.Module``."""
    factory = load_factory(path)
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise FactoryError(f"model factory {path!r} rejected its keyword arguments {sorted(kwargs)}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise FactoryError(f"model factory {path!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def factory_package(path: str) -> dict[str, str | None]:
    """The installed distribution that provides the factory's top-level package and its version
    (for a package that is not an installed distribution, e.g. on ``PYTHONPATH``: its import
    name and its ``__version__`` or None)."""
    top = path.partition(":")[0].split(".")[0]
    names = importlib.metadata.packages_distributions().get(top, [])
    if not names:  # not installed (e.g. on PYTHONPATH): the package's own __version__, if any
        version = getattr(importlib.import_module(top), "__version__", None)
        return {"name": top, "version": None if version is None else str(version)}
    name = sorted(names)[0]
    return {"name": name, "version": importlib.metadata.version(name)}
