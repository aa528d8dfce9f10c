"""Preparing a model for the hardware it serves on: the serving graph and the precisions.

- :func:`serving_graph` rewrites ``nn.TransformerEncoderLayer`` blocks into an equivalent module
  made of plain ``nn.Linear`` layers around ``scaled_dot_product_attention``. The stock layer
  keeps its attention projections as raw parameters (which dynamic quantization cannot reach) and
  its fused inference fast path rejects quantized Linear modules; the rewrite computes the same
  function (checked to 1e-5 in the tests) and is also faster in fp32 on CPU, so every precision
  serves it.
- ``int8`` on CPU: every Linear layer becomes a :class:`RowwiseInt8Linear`: int8 weights with one
  scale per output channel, and activations quantized to int8 at run time with one scale per
  row (per token), multiplied by ``torch._int_mm`` (int8 x int8 -> exact int32). A row's result
  depends only on that row, so batching is invisible: the same request gives bit-identical logits
  alone or batched with any other rows (``torch.ao`` dynamic quantization picks one activation
  scale per batch, so one request with large values there changed its neighbours' classes).
- ``bf16``: the weights and activations in bfloat16 (the default on CUDA).
- ``int8`` on CUDA: int8 weight-only through torchao, when torchao is installed.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from workloads.models import TabularTransformer

__all__ = [
    "QUANT_ENGINES",
    "EncoderLayer",
    "RowwiseInt8Linear",
    "compute_dtype",
    "prepare_model",
    "resolve_device",
    "resolve_engine",
    "resolve_precision",
    "quantize_rowwise",
    "serving_graph",
]

QUANT_ENGINES = ("rowwise",)
"""CPU int8 kernels this server offers: ``rowwise`` (per-row activation scales, ``torch._int_mm``).
``torch.ao``'s per-batch engines (fbgemm, x86, onednn, qnnpack) are not offered: with one
activation scale per batch, a request's logits depend on what it is batched with."""


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
    """The CPU int8 kernel for ``engine`` (``auto`` -> ``rowwise``); needs ``torch._int_mm``."""
    resolved = "rowwise" if engine == "auto" else engine
    if resolved not in QUANT_ENGINES:
        raise RuntimeError(f"quant_engine {engine!r} is not supported here; allowed: ['auto', *{list(QUANT_ENGINES)}]")
    if not hasattr(torch, "_int_mm"):
        raise RuntimeError(
            f"quant_engine {resolved!r} needs torch._int_mm (torch >= 2.2); this is torch {torch.__version__}"
        )
    return resolved


_MIN_ROW_SCALE = 1e-30
"""Floor of a row's activation scale: an all-zero (or denormal) row quantizes to zeros instead of
dividing by zero."""


class RowwiseInt8Linear(nn.Module):
    """``nn.Linear`` with int8 weights and int8 activations quantized per row at run time.

    Weights: symmetric int8, one scale per output channel (``max |w| / 127``), packed once.
    Activations: each row ``r`` (each token of a 3-D input) gets its own scale
    ``s_r = max |x_r| / 127``; ``q_r = round(x_r / s_r)`` in int8; ``torch._int_mm`` gives the exact
    int32 products; ``y = acc * s_r * s_w + b``. Everything after the integer matmul is
    elementwise, so a row's output never depends on the other rows in the batch.

    A row with non-finite values (an input that overflowed an earlier layer) yields non-finite
    outputs for that row only; the server answers such a request with 400.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).div(127).clamp(min=_MIN_ROW_SCALE)
        qweight = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # [K, N] as a transposed view of the row-major [N, K]: oneDNN's int8 matmul measured faster
        # with this layout than with a contiguous [K, N] copy.
        self.register_buffer("qweight_t", qweight.t())
        self.register_buffer("weight_scale", scale)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(self.out_features)
        self.register_buffer("bias", bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T + b`` for ``x`` of shape ``[..., in_features]`` (float32)."""
        rows = x.reshape(-1, self.in_features)
        scale = rows.abs().amax(dim=1, keepdim=True).div_(127).clamp_(min=_MIN_ROW_SCALE)
        q = rows.div(scale).round_().to(torch.int8)
        out = torch._int_mm(q, self.qweight_t).float().mul_(scale).mul_(self.weight_scale).add_(self.bias)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-row activations"


def quantize_rowwise(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` in ``module`` (in place) by a :class:`RowwiseInt8Linear`."""
    if isinstance(module, nn.Linear):
        return RowwiseInt8Linear(module)
    for name, child in list(module.named_children()):
        setattr(module, name, quantize_rowwise(child))
    return module


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

    CPU int8 uses ``engine`` (``rowwise``, see :class:`RowwiseInt8Linear`).
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
    if engine != "rowwise":
        raise ValueError(f"CPU int8 engine must be one of {list(QUANT_ENGINES)}; got {engine!r}")
    return quantize_rowwise(graph)
