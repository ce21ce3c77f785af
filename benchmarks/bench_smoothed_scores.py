"""Cost of Monte Carlo smoothed scores against the floor of N * n_mc forward passes.

Floor: the base model's forward passes alone on N * n_mc pre-drawn noisy inputs, in the same
batches. ``smoothed_scores`` adds noise generation, softmax, the score of every label, the PTT
transform (optional) and the mean/variance. Baseline: the RSCP reference's pattern, one image at a
time (``x.repeat`` + ``randn_like``, numpy scoring per image) and PTT by ``bisect`` per element.

Times are process CPU seconds (``time.process_time``, one thread), best of interleaved runs: wall
time on a shared machine measures the neighbours.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_smoothed_scores.py [--n 400] [--n-mc 256] [--repeats 7]
"""

from __future__ import annotations

import argparse
import bisect
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_base_model
from conformal.ptt import PTT
from conformal.rscp import smoothed_score_fn
from smoothing.scores import smoothed_scores


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def interleaved_best(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best time of each function, running them in turn ``repeats`` times (fair on a machine with drifting load)."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], best_of(fn, 1))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--n-mc", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    n, n_mc, bs = args.n, args.n_mc, args.batch_size

    model = digits_base_model(0.25)
    x = load_digits_split("test").images[:n]
    fn = smoothed_score_fn("thr")
    g = torch.Generator().manual_seed(0)
    noisy = (x.unsqueeze(1) + 0.25 * torch.randn((n, n_mc, *x.shape[1:]), generator=g)).view(-1, *x.shape[1:])

    @torch.no_grad()
    def floor() -> None:
        for i in range(0, noisy.shape[0], bs):
            model(noisy[i : i + bs])

    def ours() -> None:
        smoothed_scores(model, x, fn, sigma=0.25, n_mc=n_mc, generator=g, batch_size=bs)

    ptt = PTT().fit(torch.rand(500, generator=g))

    def ours_ptt() -> None:
        smoothed_scores(model, x, fn, sigma=0.25, n_mc=n_mc, generator=g, batch_size=bs, transform=ptt)

    ref_sorted = sorted(ptt.holdout_.tolist()) if ptt.holdout_ is not None else []

    @torch.no_grad()
    def reference(n_images: int, with_ptt: bool) -> None:
        # the reference's loop: per image, repeat + randn_like, CPU numpy scores, PTT by bisect per element
        for j in range(n_images):
            batch = x[j : j + 1].repeat(n_mc, 1, 1, 1)
            probs = torch.softmax(model(batch + torch.randn_like(batch) * 0.25), 1).numpy()
            s = 1 - probs
            if with_ptt:
                s = np.frompyfunc(lambda v: bisect.bisect(ref_sorted, v) / len(ref_sorted), 1, 1)(s).astype(float)
                s = 1 / (1 + np.exp(-400 * (s - 0.9)))
            s.mean(0), s.var(0, ddof=1)

    t_floor, t_ours, t_ptt = interleaved_best([floor, ours, ours_ptt], args.repeats)
    n_ref = min(n, 100)
    t_ref = best_of(lambda: reference(n_ref, False), 1) * n / n_ref
    t_ref_ptt = best_of(lambda: reference(n_ref, True), 1) * n / n_ref

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    print(f"N = {n} inputs x n_mc = {n_mc} = {n * n_mc} forward passes, batch {bs}, best of {args.repeats} interleaved runs")
    print("| | CPU seconds | / floor |")
    print("|---|---|---|")
    print(f"| floor: N * n_mc forward passes only | {t_floor:.3f} | 1.00 |")
    print(f"| smoothed_scores (THR, all labels, mean + variance) | {t_ours:.3f} | {t_ours / t_floor:.2f} |")
    print(f"| smoothed_scores with PTT transform | {t_ptt:.3f} | {t_ptt / t_floor:.2f} |")
    print(f"| reference-style per-image loop (extrapolated from {n_ref}) | {t_ref:.3f} | {t_ref / t_floor:.2f} |")
    print(f"| reference-style loop with bisect PTT (extrapolated from {n_ref}) | {t_ref_ptt:.3f} | "
          f"{t_ref_ptt / t_floor:.2f} |")
    print(f"speed-up over the reference pattern: {t_ref / t_ours:.1f}x plain, {t_ref_ptt / t_ptt:.1f}x with PTT")


if __name__ == "__main__":
    main()
