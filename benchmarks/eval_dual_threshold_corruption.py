"""Dual-threshold abstention on digits under Gaussian corruption of rising severity (issue 16).

Protocol and columns: :mod:`certkit_app.demos.dual_threshold`. The numbers are in BENCHMARKS.md and
docs/conformal/dual-threshold.md.

Usage: OMP_NUM_THREADS=1 python benchmarks/eval_dual_threshold_corruption.py [--splits 20] [--alpha 0.1]
"""

from __future__ import annotations

import argparse
import time
import warnings

from certkit_app.demos.dual_threshold import evaluate_corruption, format_rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--delta", type=float, default=0.1)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # nanmean of all-abstained splits
    t0 = time.perf_counter()
    rows = evaluate_corruption(args.splits, args.alpha, args.delta)
    print(f"digits CNN, alpha={args.alpha}, delta={args.delta}, {args.splits} splits "
          f"({time.perf_counter() - t0:.1f} s)\n")
    print(format_rows(rows))


if __name__ == "__main__":
    main()
