"""The retraining trigger's drift detector against the figure: it must flag a 0.5 standard-deviation
mean shift on one feature with 1,000 samples, and raise no alarm on 20 unshifted samples of 1,000.

The reference is what the trainer stores in a serving artifact: ``workloads.drift.compute_reference``
of the training inputs (quantile bins). Every seed draws its own reference and samples, so the
shifted feature, the reference and the noise all vary. For comparison it also reports PSI alone at
the usual thresholds (0.1 / 0.2 / 0.25), which shows why the detector adds a two-sample test.

    python benchmarks/drift_detector.py [--seeds 20] [--features 16] [--reference-rows 8000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workloads.drift import compute_reference  # noqa: E402
from workloads.retrain.detect import DEFAULT_ALPHA, DEFAULT_MIN_PSI, detect  # noqa: E402

PSI_ONLY = (0.1, 0.2, 0.25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds for the shifted case (default 20)")
    parser.add_argument("--unshifted", type=int, default=20, help="unshifted samples (default 20)")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--rows", type=int, default=1000, help="live rows per sample (default 1000)")
    parser.add_argument("--reference-rows", type=int, default=8000)
    parser.add_argument("--shift", type=float, default=0.5, help="mean shift in standard deviations")
    args = parser.parse_args()

    def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        # Features with different scales and offsets: the shift is in each feature's own sd.
        scale = np.linspace(0.5, 3.0, args.features)
        return rng.standard_normal((n, args.features)) * scale + np.arange(args.features), scale

    hits, psi_hits, elapsed, psis = 0, dict.fromkeys(PSI_ONLY, 0), [], []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        train, scale = sample(rng, args.reference_rows)
        reference = compute_reference(train)
        live, _ = sample(rng, args.rows)
        feature = seed % args.features
        live[:, feature] += args.shift * scale[feature]
        t0 = time.perf_counter()
        report = detect(reference, live, min_rows=args.rows)
        elapsed.append(time.perf_counter() - t0)
        hits += report.drifted and report.drifted_features == [feature]
        psis.append(report.features[feature].psi)
        for t in PSI_ONLY:
            psi_hits[t] += report.features[feature].psi >= t

    rng = np.random.default_rng(10_000)
    train, _ = sample(rng, args.reference_rows)
    reference = compute_reference(train)
    alarms, alarm_psi, worst_p = 0, dict.fromkeys(PSI_ONLY, 0), 1.0
    for _ in range(args.unshifted):
        live, _ = sample(rng, args.rows)
        report = detect(reference, live, min_rows=args.rows)
        alarms += report.drifted
        worst_p = min(worst_p, min(f.p_value for f in report.features))
        for t in PSI_ONLY:
            alarm_psi[t] += report.max_psi >= t

    # Small samples: PSI alone is biased upwards by about (bins - 1) / rows; the test accounts for it.
    small = 200
    small_psi_alarms = small_alarms = 0
    for _ in range(args.unshifted):
        live, _ = sample(rng, small)
        report = detect(reference, live, min_rows=small)
        small_alarms += report.drifted
        small_psi_alarms += report.max_psi >= DEFAULT_MIN_PSI

    print(
        f"detector: PSI >= {DEFAULT_MIN_PSI} and chi-square p < {DEFAULT_ALPHA}/{args.features} features; "
        f"{args.features} features, reference {args.reference_rows} rows, live {args.rows} rows"
    )
    print(
        f"shifted by {args.shift} sd on one feature: detected (that feature only) in {hits}/{args.seeds} seeds "
        f"= {hits / args.seeds:.0%}; PSI of the shifted feature {min(psis):.3f}..{max(psis):.3f}"
    )
    print(f"unshifted: false alarms {alarms}/{args.unshifted}; smallest per-feature p-value {worst_p:.2e}")
    for t in PSI_ONLY:
        print(
            f"  PSI alone >= {t:<4}: detects {psi_hits[t]}/{args.seeds}, false alarms {alarm_psi[t]}/{args.unshifted}"
        )
    print(
        f"unshifted, {small} rows: PSI alone >= {DEFAULT_MIN_PSI} raises {small_psi_alarms}/{args.unshifted} "
        f"alarms, the detector {small_alarms}/{args.unshifted}"
    )
    print(f"time per check: {1000 * float(np.median(elapsed)):.2f} ms (median)")
    ok = hits == args.seeds and alarms == 0
    print("figure reached" if ok else "figure NOT reached")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
