"""Preparing a model for the hardware it serves on: the serving graph and the precisions.

- :func:`serving_graph` rewrites ``nn.TransformerEncoderLayer`` blocks into an equivalent module
  made of plain ``nn.Linear`` layers around ``scaled_dot_product_attention``. The stock layer
  keeps its attention projections as raw parameters (which dynamic quantization cannot reach) and
  its fused inference fast path rejects quantized Linear modules; the rewrite computes the same
  function (checked to 1e-5 in the tests) and is also faster in fp32 on CPU, so every precision
  serves it.
- ``int8`` on CPU: ``torch.ao.quantization.quantize_dynamic`` with ``qint8`` weights on every
  Linear layer (activations quantized per batch at run time) on the chosen engine.
- ``bf16``: the weights and activations in bfloat16 (the default on CUDA).
- ``int8`` on CUDA: int8 weight-only through torchao, when torchao is installed.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from workloads.models import TabularTransformer

__all__ = [
    "EncoderLayer",
    "compute_dtype",
    "prepare_model",
    "resolve_device",
    "resolve_engine",
    "resolve_precision",
    "serving_graph",
]

_ENGINE_PREFERENCE = ("fbgemm", "x86", "onednn", "qnnpack")
"""Engine order for ``auto``: fbgemm measured fastest on x86 CPUs for the reference MLP (see
benchmarks/server_throughput.py); qnnpack is the ARM engine."""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit ``cuda`` must be available."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA device")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``int8`` on CPU, ``bf16`` on CUDA; explicit values pass through."""
    if precision != "auto":
        return precision
    return "int8" if device.type == "cpu" else "bf16"


def resolve_engine(engine: str) -> str:
    """The quantized engine to use: the requested one (if supported) or the preferred one."""
    supported = torch.backends.quantized.supported_engines
    if engine == "auto":
        for candidate in _ENGINE_PREFERENCE:
            if candidate in supported:
                return candidate
        raise RuntimeError(f"no quantized engine available; torch supports {supported}")
    if engine not in supported:
        raise RuntimeError(f"quant_engine {engine!r} is not supported here; allowed: {supported}")
    return engine


class EncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` (self-attention, no mask, eval) built from ``nn.Linear``.

    With ``first_token_only`` the layer returns only the first token's output (``[B, 1, d]``):
    keys and values still come from every token, but the query, attention output, feed-forward
    and norms run on one row. That is exact for a model that reads only the first (CLS) token
    after its last layer, and saves most of that layer's work.
    """

    def __init__(self, layer: nn.TransformerEncoderLayer, *, first_token_only: bool = False) -> None:
        super().__init__()
        attn = layer.self_attn
        if not attn._qkv_same_embed_dim or attn.in_proj_bias is None or attn.bias_k is not None:
            raise ValueError("serving_graph supports attention with one biased in_proj only")
        self.nhead = attn.num_heads
        self.batch_first = attn.batch_first
        self.first_token_only = first_token_only
        d_model = attn.embed_dim
        weight, bias = attn.in_proj_weight.detach(), attn.in_proj_bias.detach()
        # One fused projection when every token needs q, k and v; q (first token) and kv apart
        # otherwise. Kept apart, each is still one nn.Linear, so int8 quantization reaches it.
        self.q = _linear(weight[:d_model], bias[:d_model]) if first_token_only else None
        self.kv = _linear(weight[d_model:], bias[d_model:]) if first_token_only else None
        self.qkv = None if first_token_only else _linear(weight, bias)
        self.out = nn.Linear(d_model, d_model, bias=attn.out_proj.bias is not None)
        self.out.load_state_dict(attn.out_proj.state_dict())
        self.linear1, self.linear2 = layer.linear1, layer.linear2
        self.norm1, self.norm2 = layer.norm1, layer.norm2
        self.norm_first = layer.norm_first
        self.activation = layer.activation

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        head_dim = d_model // self.nhead
        if self.qkv is not None:
            q, k, v = self.qkv(x).view(batch, seq, 3, self.nhead, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q = self.q(x[:, :1]).view(batch, 1, self.nhead, head_dim).transpose(1, 2)
            k, v = self.kv(x).view(batch, seq, 2, self.nhead, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.out(attended.transpose(1, 2).reshape(batch, q.shape[2], d_model))

    def _feedforward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped layer's ``forward(x)`` in eval mode (first token only if so built)."""
        if not self.batch_first:
            x = x.transpose(0, 1)
        residual = x[:, :1] if self.first_token_only else x
        if self.norm_first:
            x = residual + self._attention(self.norm1(x))
            x = x + self._feedforward(self.norm2(x))
        else:
            x = self.norm1(residual + self._attention(x))
            x = self.norm2(x + self._feedforward(x))
        return x if self.batch_first else x.transpose(0, 1)


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    linear.weight = nn.Parameter(weight.clone())
    linear.bias = nn.Parameter(bias.clone())
    return linear


def serving_graph(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every ``nn.TransformerEncoder`` rewritten as a
    sequence of :class:`EncoderLayer` (plus its final norm); other modules are unchanged.

    In a :class:`~workloads.models.TabularTransformer`, whose head reads only the CLS token, the
    last layer computes only that token.
    """
    graph = copy.deepcopy(model).eval()
    for parent in list(graph.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.TransformerEncoder):
                reads_cls_only = isinstance(parent, TabularTransformer) and child_name == "encoder"
                last = len(child.layers) - 1
                layers: list[nn.Module] = [
                    EncoderLayer(layer, first_token_only=reads_cls_only and i == last)
                    for i, layer in enumerate(child.layers)
                ]
                if child.norm is not None:
                    layers.append(child.norm)
                setattr(parent, child_name, nn.Sequential(*layers))
    return graph


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the prepared module takes as input (inputs arrive as float32)."""
    if precision == "bf16" or (precision == "int8" and device.type == "cuda"):
        return torch.bfloat16
    return torch.float32


def _torchao_int8_weight_only(model: nn.Module) -> nn.Module:
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as exc:
        raise RuntimeError(
            "precision 'int8' on CUDA needs torchao (pip install torchao); use 'bf16' or 'auto'"
        ) from exc
    quantize_(model, Int8WeightOnlyConfig())
    return model


def prepare_model(model: nn.Module, *, precision: str, device: torch.device, engine: str) -> nn.Module:
    """The serving module for ``precision`` on ``device`` (``model`` itself is left untouched).

    CPU int8 selects ``engine`` as ``torch.backends.quantized.engine`` (process-wide).
    """
    graph = serving_graph(model).to(device)
    if precision == "fp32":
        return graph
    if precision == "bf16":
        return graph.to(torch.bfloat16)
    if precision != "int8":
        raise ValueError(f"precision must be one of fp32, int8, bf16; got {precision!r}")
    if device.type == "cuda":
        return _torchao_int8_weight_only(graph.to(torch.bfloat16))
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        # torch.ao dynamic quantization warns that it is deprecated in favour of torchao, whose
        # CPU int8 path without torch.compile measured slower than fp32 here.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(graph, {nn.Linear}, dtype=torch.qint8)
