"""Coverage under attack and set size of vanilla smoothed CP, RSCP, RSCP+, RSCP+ PTT and RSCP+ RCT on digits.

Protocol (Gendler et al. 2022; Yan et al. 2024, RSCP_exp.py defaults): THR score, alpha 0.1,
beta 0.001, n_mc 256, PTT holdout = 197 points of the calibration split; the other 200 calibration
points and the 400 test points are pooled, attacked once by 20-step L2 PGD on the smoothed
true-label score (16 noise samples per step), and split 50 times at random into half calibration /
half test. Coverage is measured on the attacked test half, set size too.

Usage: OMP_NUM_THREADS=1 python benchmarks/eval_rscp.py [--eps 0.125 0.25] [--splits 50] [--score thr|aps|aps-exclusive] [--no-rct]
"""

from __future__ import annotations

import argparse
import time
import warnings

from certkit_app.demos.rscp import evaluate_rscp, format_rows
from certkit_app.digits import digits_base_model, rct_digits_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sigma", type=float, default=0.25)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.125, 0.25])
    ap.add_argument("--n-mc", type=int, default=256)
    ap.add_argument("--splits", type=int, default=50)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--score", choices=["thr", "aps", "aps-exclusive"], default="thr",
                    help="aps = certkit APS u=0 (inclusive); aps-exclusive = u=1, the RSCP reference's form")
    ap.add_argument("--no-rct", action="store_true", help="skip the RCT row (RCT is trained for THR)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="Converting a tensor")
    base = digits_base_model(args.sigma)
    for eps in args.eps:
        t0 = time.perf_counter()
        print(f"\nsigma={args.sigma}, eps={eps}, alpha={args.alpha}, n_mc={args.n_mc}, {args.splits} splits, score {args.score}", flush=True)
        rct = None if args.no_rct else rct_digits_model(args.sigma, eps, args.alpha)
        score, kw = ("aps", {"u": 1.0}) if args.score == "aps-exclusive" else (args.score, {})
        rows = evaluate_rscp(base, sigma=args.sigma, eps=eps, alpha=args.alpha, n_mc=args.n_mc, n_splits=args.splits,
                             rct_model=rct, score=score, score_kwargs=kw, log=lambda s: print(s, flush=True))
        print(format_rows(rows, args.alpha))
        print(f"({time.perf_counter() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
