"""Input drift as the population stability index (PSI) per feature.

The trainer stores a *reference* computed from its training inputs (``compute_reference``) in the
serving artifact; the server bins live inputs against it (``bin_counts``, which can be summed over
batches for streaming accumulation) and reports ``psi`` per feature. Rules of thumb: PSI < 0.1 is
stable, 0.1-0.25 a moderate shift, > 0.25 a significant shift.

Reference layout (JSON-serialisable)::

    {"format": "aicloud-drift/1", "bins": B, "count": N,
     "features": [{"edges": [B - 1 inner quantile edges], "proportions": [B values],
                   "mean": float, "std": float}, ...]}

Bin ``k`` of a feature holds values ``v`` with ``edges[k-1] <= v < edges[k]``; the first and last
bins are open-ended, so every finite value lands in a bin.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["EPSILON", "compute_reference", "bin_counts", "psi"]

EPSILON = 1e-4
"""Floor for bin proportions so empty bins give a large but finite PSI term."""

_FORMAT = "aicloud-drift/1"


def _as_2d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, F], got shape {arr.shape}")
    return arr


def compute_reference(x: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reference statistics of training inputs ``x`` ``[N, F]``: quantile bins, mean and std."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    arr = _as_2d(x, "x")
    if arr.shape[0] == 0:
        raise ValueError("x must hold at least one row")
    inner = np.quantile(arr, np.linspace(0.0, 1.0, bins + 1)[1:-1], axis=0).T  # [F, bins - 1]
    reference: dict[str, Any] = {
        "format": _FORMAT,
        "bins": bins,
        "count": int(arr.shape[0]),
        "features": [
            {"edges": edges.tolist(), "proportions": [], "mean": float(m), "std": float(s)}
            for edges, m, s in zip(inner, arr.mean(axis=0), arr.std(axis=0), strict=True)
        ],
    }
    counts = bin_counts(reference, arr)
    for feature, row in zip(reference["features"], counts, strict=True):
        feature["proportions"] = (row / arr.shape[0]).tolist()
    return reference


def bin_counts(reference: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Counts ``[F, bins]`` (int64) of the rows of ``x`` ``[N, F]`` in the reference's bins."""
    arr = _as_2d(x, "x")
    features = reference["features"]
    bins = int(reference["bins"])
    if arr.shape[1] != len(features):
        raise ValueError(f"x has {arr.shape[1]} features, the reference has {len(features)}")
    counts = np.empty((len(features), bins), dtype=np.int64)
    for f, feature in enumerate(features):
        index = np.searchsorted(np.asarray(feature["edges"]), arr[:, f], side="right")
        counts[f] = np.bincount(index, minlength=bins)
    return counts


def psi(reference: dict[str, Any], counts_or_x: np.ndarray) -> np.ndarray:
    """PSI per feature ``[F]`` of observed data against the reference.

    ``counts_or_x`` is either an integer array ``[F, bins]`` of counts (from ``bin_counts``,
    possibly summed over batches) or raw inputs ``[N, F]`` (any float array). Proportions are
    floored at ``EPSILON``. A feature with no observations has PSI ``nan``.
    """
    arr = np.asarray(counts_or_x)
    shape = (len(reference["features"]), int(reference["bins"]))
    counts = arr if np.issubdtype(arr.dtype, np.integer) and arr.shape == shape else None
    if counts is None:
        counts = bin_counts(reference, arr)
    totals = counts.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        actual = np.maximum(counts / totals, EPSILON)
    expected = np.maximum(np.asarray([f["proportions"] for f in reference["features"]]), EPSILON)
    return np.sum((actual - expected) * np.log(actual / expected), axis=1)
