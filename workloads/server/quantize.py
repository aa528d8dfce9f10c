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
- ``auto`` on CPU (:func:`prepare_auto`): per ``nn.Linear`` layer, whichever of int8
  (:class:`RowwiseInt8Linear`) and fp32 (:class:`BatchInvariantLinear`) is faster for the rows
  that layer sees at the configured batch size, timed at load within a bounded budget; layers the
  budget does not reach follow a measured shape rule (:func:`int8_pays_by_shape`). Per-row int8
  pays on large layers only: on small ones its per-row quantize and dequantize cost more than the
  int8 GEMM saves (a d_model 64 transformer ran 0.62x fp32 at batch 32). Both kernels give a row
  the same bits alone or in any batch, so the mix keeps int8's batch invariance; the chosen
  precision of every layer is logged and reported.
- ``bf16``: the weights and activations in bfloat16 (the default on CUDA).
- ``int8`` on CUDA: int8 weight-only through torchao, when torchao is installed.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workloads.models import TabularTransformer

__all__ = [
    "INT8_MIN_MACS",
    "INT8_MIN_WEIGHTS",
    "QUANT_ENGINES",
    "ROW_BLOCK",
    "BatchInvariantLinear",
    "EncoderLayer",
    "LayerChoice",
    "RowwiseInt8Linear",
    "choose_layers",
    "compute_dtype",
    "int8_pays_by_shape",
    "layer_precisions",
    "prepare_auto",
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
    """``auto`` -> ``int8`` on CPU (per layer where it pays: :func:`prepare_auto`), ``bf16`` on
    CUDA; explicit values pass through."""
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


ROW_BLOCK = 16
"""Rows per block of :class:`BatchInvariantLinear`: its GEMM always sees a multiple of this many
rows. fp32 GEMM kernels (oneDNN/MKL) handle a row count's remainder with other code than full
blocks, so a row's fp32 output changed in its last bits with the batch it came in (up to 6e-6
measured); at a multiple of 16 rows every row went through the same code at any position
(1 to 1,300 rows, one thread). :func:`prepare_auto` checks this on the machine it runs on."""


_SPLIT_ROWS = 128
"""From this many rows on, :class:`BatchInvariantLinear` multiplies the whole blocks in place and
pads only the remainder (below it, copying all rows into one padded block is cheaper)."""


class BatchInvariantLinear(nn.Module):
    """fp32 ``nn.Linear`` whose output for a row does not depend on the other rows: the GEMM only
    ever sees whole blocks of :data:`ROW_BLOCK` rows. The whole blocks are multiplied straight
    from the input; the remainder, if any, is padded with zero rows to one more block (a few
    small tensor operations, whatever the batch size)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().float().clone())
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(self.out_features)
        self.register_buffer("bias", bias.clone())
        self.register_buffer("_zeros", torch.zeros(ROW_BLOCK - 1, self.in_features), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T + b`` for ``x`` of shape ``[..., in_features]`` (float32)."""
        rows = x if x.dim() == 2 else x.reshape(-1, self.in_features)
        count = rows.shape[0]
        tail = count % ROW_BLOCK
        weight_t = self.weight.t()
        if not tail:
            out = torch.addmm(self.bias, rows, weight_t)
        elif count < _SPLIT_ROWS:
            padded = torch.cat((rows, self._zeros[: ROW_BLOCK - tail]))
            out = torch.addmm(self.bias, padded, weight_t)[:count]
        else:
            # Whole blocks straight from the input (no copy), the last rows as one padded block.
            out = rows.new_empty(count, self.out_features)
            full = count - tail
            if full:
                torch.addmm(self.bias, rows[:full], weight_t, out=out[:full])
            block = torch.cat((rows[full:], self._zeros[: ROW_BLOCK - tail]))
            out[full:] = torch.addmm(self.bias, block, weight_t)[:tail]
        return out if x.dim() == 2 else out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp32 in blocks of {ROW_BLOCK} rows"


def quantize_rowwise(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` in ``module`` (in place) by a :class:`RowwiseInt8Linear`."""
    if isinstance(module, nn.Linear):
        return RowwiseInt8Linear(module)
    # every place a layer is used (named_children() lists a repeated module once only)
    _replace_linears(module, {id(m): "int8" for m in module.modules() if isinstance(m, nn.Linear)}, {})
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


INT8_MIN_WEIGHTS = 128 * 1024
"""Shape rule, part 1: per-row int8 pays only on layers with at least this many weights
(in x out). Measured with benchmarks/server_throughput.py ``--crossover`` (one thread): at 32
rows 256 x 256 ran 0.91x fp32 and 256 x 512 1.20x; 1024 x 10 heads and 64-wide layers lose at
every row count (0.2-0.4x)."""
INT8_MIN_MACS = 1024 * 1024
"""Shape rule, part 2: ... and at least this many multiply-adds per call (rows x in x out): at one
row 512 x 512 ran 0.22x fp32 and 1024 x 1024 1.75x."""
CALIBRATION_MARGIN = 0.10
"""A timed layer goes int8 only when int8 is at least this much faster than fp32 (int8 rounds
the logits; a near tie is not worth it)."""
_MIN_SAMPLES = 3
"""Timed blocks per kernel below which a layer's timing is not trusted (the shape rule decides)."""


def int8_pays_by_shape(rows: int, in_features: int, out_features: int) -> bool:
    """The shape rule: whether per-row int8 is expected to beat fp32 for a layer of this shape
    called on ``rows`` rows (used where calibration is off or out of time). Conservative: on
    uncertain shapes it keeps fp32, which is never slower than fp32."""
    weights = in_features * out_features
    return weights >= INT8_MIN_WEIGHTS and rows * weights >= INT8_MIN_MACS


@dataclass(frozen=True, slots=True)
class LayerChoice:
    """The precision :func:`prepare_auto` chose for one ``nn.Linear`` of the serving graph."""

    layer: str
    """Qualified module name in the serving graph (e.g. ``net.0``, ``encoder.1.qkv``)."""
    in_features: int
    out_features: int
    rows: int
    """Rows the layer multiplies per call at the calibration batch size (tokens for a transformer)."""
    precision: str
    """``int8`` (:class:`RowwiseInt8Linear`) or ``fp32`` (:class:`BatchInvariantLinear`)."""
    basis: str
    """``timed`` (measured at load), ``shape rule`` (no time left, or calibration off),
    ``fp32 not batch invariant here`` (the fp32 kernel failed the invariance check: int8) or
    ``not called`` (the forward pass never reached it: fp32)."""
    fp32_us: float | None = None
    int8_us: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _linear_inputs(graph: nn.Module, example: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each ``nn.Linear``'s input rows ``[rows, in_features]`` when ``graph`` runs on ``example``."""
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in graph.named_modules():
        if isinstance(module, nn.Linear):

            def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
                seen.setdefault(name, args[0].detach().reshape(-1, args[0].shape[-1]).clone())

            hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.inference_mode():
            graph(example)
    finally:
        for handle in hooks:
            handle.remove()
    return seen


def _time_pair(fp32: nn.Module, int8: nn.Module, x: torch.Tensor, deadline: float) -> tuple[float, float] | None:
    """Microseconds per call of ``fp32`` and ``int8`` on ``x`` (the fastest of interleaved blocks,
    order alternating, until ``deadline``); None if fewer than ``_MIN_SAMPLES`` blocks each fit."""
    samples: dict[str, list[float]] = {"fp32": [], "int8": []}
    kernels = {"fp32": fp32, "int8": int8}
    with torch.inference_mode():
        for module in kernels.values():
            module(x)  # first-call costs (allocation, kernel selection) stay out of the samples
        per_call = time.perf_counter()
        fp32(x)
        per_call = max(time.perf_counter() - per_call, 1e-6)
        reps = max(1, min(50, int(2e-4 / per_call)))  # blocks of about 0.2 ms
        order = ["fp32", "int8"]
        while time.perf_counter() < deadline:
            for key in order:
                t0 = time.perf_counter()
                for _ in range(reps):
                    kernels[key](x)
                samples[key].append((time.perf_counter() - t0) / reps * 1e6)
            order.reverse()
    if min(len(v) for v in samples.values()) < _MIN_SAMPLES:
        return None
    # The fastest block of each: other processes only ever add time to a block, so the minimum
    # is the kernel's own cost (medians picked the slower kernel on a machine at load 6 on 2 cores).
    return min(samples["fp32"]), min(samples["int8"])


def _rows_invariant(layer: nn.Module, x: torch.Tensor, batch_rows: int) -> bool:
    """Whether ``layer`` gives each probe row the same bits alone as within batches of other rows
    (several sizes, the probes at several positions)."""
    gen = torch.Generator().manual_seed(0)
    probes = x[:3] if len(x) >= 3 else torch.randn(3, x.shape[1], generator=gen)
    with torch.inference_mode():
        alone = torch.cat([layer(probes[i : i + 1]) for i in range(len(probes))])
        for size in sorted({2, 5, 17, 33, batch_rows, batch_rows + 7}):
            batch = torch.randn(size + len(probes), x.shape[1], generator=gen) * 4
            where = torch.randperm(len(batch), generator=gen)[: len(probes)]
            batch[where] = probes
            if not torch.equal(layer(batch)[where], alone):
                return False
    return True


def choose_layers(graph: nn.Module, example: torch.Tensor, *, budget_s: float) -> list[LayerChoice]:
    """Per ``nn.Linear`` of the fp32 serving ``graph``: int8 or fp32 for the rows it sees when the
    graph runs on ``example`` (the calibration batch).

    Each layer's share of ``budget_s`` times both kernels on its real input (interleaved blocks,
    fastest of each); int8 is chosen when it is at least :data:`CALIBRATION_MARGIN` faster.
    Layers left when the budget is spent (or all of them with ``budget_s`` 0) follow
    :func:`int8_pays_by_shape`. An fp32 choice is kept only if the fp32 kernel passes the
    batch-invariance check on this machine; otherwise that layer is int8.
    """
    inputs = _linear_inputs(graph, example)
    linears = {n: m for n, m in graph.named_modules() if isinstance(m, nn.Linear)}
    names = [n for n in linears if n in inputs]
    end = time.perf_counter() + max(budget_s, 0.0)
    choices: list[LayerChoice] = [
        LayerChoice(n, m.in_features, m.out_features, 0, "fp32", "not called")
        for n, m in linears.items()
        if n not in inputs
    ]
    for i, name in enumerate(names):
        linear, x = linears[name], inputs[name]
        fp32, int8 = BatchInvariantLinear(linear), RowwiseInt8Linear(linear)
        rows, shape = x.shape[0], (linear.in_features, linear.out_features)
        timed = None
        now = time.perf_counter()
        if budget_s > 0 and now < end:
            timed = _time_pair(fp32, int8, x, now + (end - now) / (len(names) - i))
        if timed is not None:
            fp32_us, int8_us = timed
            precision = "int8" if int8_us < fp32_us * (1 - CALIBRATION_MARGIN) else "fp32"
            choice = LayerChoice(name, *shape, rows, precision, "timed", round(fp32_us, 2), round(int8_us, 2))
        else:
            precision = "int8" if int8_pays_by_shape(rows, *shape) else "fp32"
            choice = LayerChoice(name, *shape, rows, precision, "shape rule")
        if choice.precision == "fp32" and not _rows_invariant(fp32, x, rows):
            choice = LayerChoice(name, *shape, rows, "int8", "fp32 not batch invariant here", choice.fp32_us,
                                 choice.int8_us)  # fmt: skip
        choices.append(choice)
    order = {name: i for i, name in enumerate(linears)}
    return sorted(choices, key=lambda c: order[c.layer])


def _replace_linears(module: nn.Module, precisions: dict[int, str], done: dict[int, nn.Module]) -> None:
    """Replace each ``nn.Linear`` (by identity: a layer used at two places stays one module)."""
    for name, child in list(module._modules.items()):  # named_children() skips repeated modules
        if child is None:
            continue
        if isinstance(child, nn.Linear):
            if id(child) not in done:
                kernel = RowwiseInt8Linear if precisions[id(child)] == "int8" else BatchInvariantLinear
                done[id(child)] = kernel(child)
            setattr(module, name, done[id(child)])
        else:
            _replace_linears(child, precisions, done)


def prepare_auto(model: nn.Module, example: torch.Tensor, *, budget_s: float) -> tuple[nn.Module, list[LayerChoice]]:
    """The CPU ``auto`` serving module: the serving graph of ``model`` with every ``nn.Linear``
    replaced by the kernel :func:`choose_layers` picked for it (``model`` is left untouched), and
    the choices. ``example`` is the calibration batch ``[B, F]`` (float32)."""
    graph = serving_graph(model)
    choices = choose_layers(graph, example, budget_s=budget_s)
    modules = dict(graph.named_modules())
    _replace_linears(graph, {id(modules[c.layer]): c.precision for c in choices}, {})
    return graph, choices


def layer_precisions(module: nn.Module) -> dict[str, str]:
    """The precision of each linear layer of a prepared module, by qualified name."""
    kinds = {RowwiseInt8Linear: "int8", BatchInvariantLinear: "fp32", nn.Linear: "fp32"}
    out = {}
    for name, child in module.named_modules():
        kind = kinds.get(type(child))
        if kind is not None:
            weight = getattr(child, "weight", None)
            out[name] = "bf16" if weight is not None and weight.dtype == torch.bfloat16 else kind
    return out


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
