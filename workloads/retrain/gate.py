"""The evaluation gate and the rollout decision.

A retrained model (the *candidate*) replaces nothing by itself: both it and the model being served
(the *current* one) are scored on the same held-out rows, which come from the fresh data the
candidate was trained on (the candidate's artifact keeps them out of training; the current model
never saw them). Only a candidate at least as accurate as the current model passes, and a passing
candidate is rolled out as a canary at the configured traffic share, never straight to 100 %.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["GateResult", "Rollout", "accuracy", "evaluate_gate", "decide_rollout"]

_CHUNK = 4096
"""Rows per forward pass when scoring."""


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on rows ``x`` ``[N, F]`` with labels ``y`` ``[N]``."""
    if x.shape[0] == 0:
        raise ValueError("cannot score a model on zero rows")
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, x.shape[0], _CHUNK):
            logits = model(x[start : start + _CHUNK].float())
            correct += int((logits.argmax(dim=1) == y[start : start + _CHUNK]).sum())
    return correct / int(x.shape[0])


@dataclass(frozen=True, slots=True)
class GateResult:
    """The candidate's and the current model's scores and whether the candidate may ship."""

    passed: bool
    current_accuracy: float | None
    candidate_accuracy: float | None
    """Top-1 accuracies on the held-out rows (None when there were too few rows to score)."""
    rows: int
    tolerance: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_gate(
    current: nn.Module,
    candidate: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    min_rows: int = 100,
    tolerance: float = 0.0,
) -> GateResult:
    """Score both models on the held-out rows; pass when the candidate is at least as good.

    ``tolerance`` (accuracy points, default 0) lets a candidate trail the current model by that
    much; fewer than ``min_rows`` held-out rows never pass (the comparison would be noise).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    rows = int(x.shape[0])
    if rows < min_rows:
        return GateResult(False, None, None, rows, tolerance, f"only {rows} held-out rows, need {min_rows}")
    cur, cand = accuracy(current, x, y), accuracy(candidate, x, y)
    if cand + tolerance >= cur:
        reason = f"candidate accuracy {cand:.4f} >= current {cur:.4f}" + (f" - {tolerance}" if tolerance else "")
        return GateResult(True, cur, cand, rows, tolerance, reason)
    return GateResult(False, cur, cand, rows, tolerance, f"candidate accuracy {cand:.4f} < current {cur:.4f}")


@dataclass(frozen=True, slots=True)
class Rollout:
    """What to do with a gated candidate."""

    action: Literal["canary", "manual", "hold", "reject"]
    """``canary``: roll out at ``percent``; ``manual``: the endpoint's release strategy has no
    canary, a person promotes the candidate; ``hold``: a canary already runs; ``reject``."""
    percent: int
    """Traffic share for the candidate (0 unless the action is ``canary``)."""
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_rollout(gate: GateResult, *, canary_percent: int, canary_active: bool, can_canary: bool = True) -> Rollout:
    """Canary a passing candidate at ``canary_percent``; never stack a canary on a running one.

    ``can_canary`` is False when the endpoint's release strategy cannot weight traffic (rolling,
    blue-green, A/B): a passing candidate is then left for a person to promote.
    """
    if not 1 <= canary_percent <= 50:
        raise ValueError(f"canary_percent must be in 1..50, got {canary_percent!r}")
    if not gate.passed:
        return Rollout("reject", 0, f"gate failed: {gate.reason}")
    if not can_canary:
        return Rollout("manual", 0, f"gate passed ({gate.reason}); the endpoint has no canary release, promote by hand")
    if canary_active:
        return Rollout("hold", 0, "a canary is already running on the endpoint; promote or roll it back first")
    return Rollout("canary", canary_percent, f"gate passed: {gate.reason}")
