"""Drift detection on real arrays: PSI per feature plus a two-sample chi-square test.

PSI (``workloads.drift``) says how *large* a shift is; on its own it is noisy for small samples
(its expected value without any shift is about ``(bins - 1) / rows``) and its rule-of-thumb
thresholds miss moderate shifts (a 0.5 standard-deviation mean shift gives PSI 0.2-0.3 on 10
quantile bins). So a feature is flagged only when the shift is both

- **relevant**: its PSI is at least ``min_psi`` (default 0.1, the "moderate shift" boundary), and
- **real**: a chi-square test of homogeneity between the reference sample (``reference["count"]``
  rows spread over the reference's quantile bins) and the live sample, in the same bins, rejects
  at the family-wise level ``alpha`` (Bonferroni: ``alpha / features`` per feature).

Both work on the same bin counts the model server streams, so the server's live PSI and this
check agree on what a bin is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from contracts.retrain import DEFAULT_ALPHA
from workloads import drift

__all__ = ["DEFAULT_ALPHA", "DEFAULT_MIN_PSI", "FeatureDrift", "DriftReport", "chi2_sf", "homogeneity_test", "detect"]

DEFAULT_MIN_PSI = 0.1
"""PSI below this is not worth retraining for, however significant (0.1-0.25 is a moderate shift)."""


def _gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma ``Q(a, x)`` (series below ``a + 1``, else continued fraction)."""
    if x <= 0.0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    # Modified Lentz evaluation of the continued fraction.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(log_prefactor) * h)


def chi2_sf(statistic: float, dof: int) -> float:
    """Survival function ``P(X >= statistic)`` of a chi-square variable with ``dof`` degrees of freedom."""
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    return _gamma_q(dof / 2.0, max(statistic, 0.0) / 2.0)


def homogeneity_test(expected_counts: np.ndarray, observed_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test that two samples binned alike come from one distribution.

    Returns ``(statistic, p_value)``; bins empty in both samples are ignored. With fewer than two
    non-empty bins there is nothing to compare and the p-value is 1.
    """
    ref = np.asarray(expected_counts, dtype=np.float64)
    obs = np.asarray(observed_counts, dtype=np.float64)
    keep = (ref + obs) > 0
    ref, obs = ref[keep], obs[keep]
    n_ref, n_obs = ref.sum(), obs.sum()
    if ref.size < 2 or n_ref <= 0 or n_obs <= 0:
        return 0.0, 1.0
    pooled = (ref + obs) / (n_ref + n_obs)
    statistic = float(
        np.sum((ref - n_ref * pooled) ** 2 / (n_ref * pooled)) + np.sum((obs - n_obs * pooled) ** 2 / (n_obs * pooled))
    )
    return statistic, chi2_sf(statistic, ref.size - 1)


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """The verdict on one input feature."""

    feature: int
    psi: float
    chi2: float
    p_value: float
    drifted: bool


@dataclass(frozen=True, slots=True)
class DriftReport:
    """The verdict of one drift check over every feature."""

    status: Literal["drift", "stable", "insufficient-data"]
    rows: int
    min_rows: int
    min_psi: float
    alpha: float
    features: tuple[FeatureDrift, ...]

    @property
    def drifted(self) -> bool:
        return self.status == "drift"

    @property
    def drifted_features(self) -> list[int]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def max_psi(self) -> float:
        return max((f.psi for f in self.features), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for the decision log)."""
        out = asdict(self)
        out["features"] = [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(f).items()} for f in self.features
        ]
        out["drifted_features"] = self.drifted_features
        out["max_psi"] = round(self.max_psi, 6)
        return out


def detect(
    reference: dict[str, Any],
    x: np.ndarray,
    *,
    min_psi: float = DEFAULT_MIN_PSI,
    alpha: float = DEFAULT_ALPHA,
    min_rows: int = 1000,
) -> DriftReport:
    """Check live rows ``x`` ``[N, F]`` against a drift reference (``workloads.drift`` format).

    Fewer than ``min_rows`` rows give status ``insufficient-data`` (features are still reported).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if min_psi < 0.0:
        raise ValueError(f"min_psi must be >= 0, got {min_psi!r}")
    counts = drift.bin_counts(reference, x)
    rows = int(np.asarray(x).shape[0])
    psi = drift.psi(reference, counts)
    ref_counts = np.asarray([f["proportions"] for f in reference["features"]]) * float(reference["count"])
    per_feature_alpha = alpha / max(1, len(reference["features"]))
    verdicts = []
    for i, (expected, observed) in enumerate(zip(ref_counts, counts, strict=True)):
        statistic, p_value = homogeneity_test(expected, observed)
        value = float(psi[i]) if np.isfinite(psi[i]) else 0.0
        drifted = rows >= min_rows and value >= min_psi and p_value < per_feature_alpha
        verdicts.append(FeatureDrift(i, value, statistic, p_value, drifted))
    if rows < min_rows:
        status: Literal["drift", "stable", "insufficient-data"] = "insufficient-data"
    else:
        status = "drift" if any(v.drifted for v in verdicts) else "stable"
    return DriftReport(status, rows, min_rows, min_psi, alpha, tuple(verdicts))
