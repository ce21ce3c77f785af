"""Time per test input of VRCP-I (CROWN, IBP) against RSCP+ (n_mc = 256) and K plain forward passes.

Same model (the standard digits CNN), same 400 test inputs, one thread. VRCP-I bounds the score of
all K labels over the ball (K(K-1)/2 margin specifications through CROWN); RSCP+ runs n_mc noisy
forward passes per input; the floor is K forward passes per input (one per label), and one pass
is what VRCP-C and vanilla CP pay at test time.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_vrcp.py [--n 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch

from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn
from conformal.rscp import smoothed_score_fn
from conformal.score_bounds import certified_score_bounds
from smoothing.scores import smoothed_scores


def _best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = digits_cnn()
    x = load_digits_split("test").images[: args.n]
    n, k = x.shape[0], 10
    g = torch.Generator().manual_seed(0)
    fn = smoothed_score_fn("thr")

    def forward_k() -> None:
        with torch.no_grad():
            for _ in range(k):
                model(x)

    def forward_1() -> None:
        with torch.no_grad():
            model(x)

    timings = {
        # cheap rows: many more repeats, so that load spikes on a shared machine do not set the floor
        "1 plain forward pass (vanilla CP, VRCP-C at test time)": _best(forward_1, 20 * args.repeats),
        f"K = {k} plain forward passes (floor)": _best(forward_k, 20 * args.repeats),
        "VRCP-I, IBP (all labels, L-inf eps 0.03)": _best(
            lambda: certified_score_bounds(model, x, 0.03, method="ibp", domain=(0, 1)), args.repeats),
        "VRCP-I, CROWN (all labels, L-inf eps 0.03)": _best(
            lambda: certified_score_bounds(model, x, 0.03, method="crown", domain=(0, 1)), args.repeats),
        "VRCP-I, CROWN-IBP (all labels, L-inf eps 0.03)": _best(
            lambda: certified_score_bounds(model, x, 0.03, method="crown-ibp", domain=(0, 1)), args.repeats),
        "VRCP-C calibration, CROWN (true label only)": _best(
            lambda: certified_score_bounds(model, x, 0.03, labels=torch.zeros(n, dtype=torch.long),
                                           method="crown", domain=(0, 1)), args.repeats),
        "RSCP+ smoothed scores, n_mc = 256": _best(
            lambda: smoothed_scores(model, x, fn, sigma=0.25, n_mc=256, generator=g), args.repeats),
    }
    floor = timings[f"K = {k} plain forward passes (floor)"]
    crown = timings["VRCP-I, CROWN (all labels, L-inf eps 0.03)"]
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, "
          f"{n} inputs, best of {args.repeats}")
    print("| computation | ms per input | x K forward passes | x VRCP-I (CROWN) |")
    print("|---|---|---|---|")
    for name, t in timings.items():
        print(f"| {name} | {1e3 * t / n:.3f} | {t / floor:.1f} | {t / crown:.2f} |")


if __name__ == "__main__":
    main()
