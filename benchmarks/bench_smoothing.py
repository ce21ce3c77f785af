"""Randomized smoothing benchmark: certify speed against the forward-pass floor, sequential sample savings.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_smoothing.py [--reps 5] [--images 100]

1. Time of ``Smooth.certify`` (n0 = 100, n = 10^5) on the digits CNN against (a) the floor: 10^5
   plain forward passes of the same model at the same batch size on a preallocated batch, and (b) the
   reference loop of Cohen et al.'s ``core.py`` (fresh ``x.repeat`` and noise per batch, host transfer
   and a Python counting loop per batch). The three are timed in rotating order, ``--reps`` times, so
   machine drift cancels; the medians of the per-rep ratios are reported.
2. Certified accuracy at r in {0.25, 0.5} (σ = 0.25, α = 0.001) of Cohen's fixed n = 10^5 against
   the sequential procedure aimed at r (budget 10^5), with the average number of samples per image.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_base_model
from smoothing import Smooth, certified_accuracy, certify_dataset

SIGMA, ALPHA, N0, N, BATCH = 0.25, 0.001, 100, 100_000, 1000


@torch.inference_mode()
def floor(model: torch.nn.Module, x: torch.Tensor, num: int, batch_size: int) -> None:
    batch = x.repeat(batch_size, 1, 1, 1)
    for _ in range(num // batch_size):
        model(batch)


@torch.inference_mode()
def reference(model: torch.nn.Module, x: torch.Tensor, num: int, batch_size: int, num_classes: int) -> np.ndarray:
    """Cohen et al.'s ``_sample_noise``: per batch, a fresh copy and noise, host sync, Python counting."""
    counts = np.zeros(num_classes, dtype=int)
    remaining = num
    while remaining > 0:
        this_batch = min(batch_size, remaining)
        remaining -= this_batch
        batch = x.repeat((this_batch, 1, 1, 1))
        noise = torch.randn_like(batch) * SIGMA
        predictions = model(batch + noise).argmax(1)
        for idx in predictions.cpu().numpy():  # _count_arr
            counts[idx] += 1
    return counts


def bench_speed(reps: int) -> None:
    model = digits_base_model(SIGMA)
    smooth = Smooth(model, 10, SIGMA, input_shape=(1, 8, 8))
    x = load_digits_split("test").images[0]
    runs = {
        "floor": lambda: floor(model, x, N0 + N, BATCH),
        "certkit": lambda: smooth.certify(x, N0, N, ALPHA, BATCH, torch.Generator().manual_seed(0)),
        "reference": lambda: (reference(model, x, N0, BATCH, 10), reference(model, x, N, BATCH, 10)),
    }
    names = list(runs)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}  # process time: robust to other jobs on a shared machine
    for rep in range(reps):
        order = names[rep % 3 :] + names[: rep % 3]  # rotate so drift hits every method alike
        for name in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    print(f"## certify speed (n0={N0}, n={N:,}, batch {BATCH}, {reps} rotating reps, {torch.get_num_threads()} thread(s))")
    print("| run | median wall s | median CPU s |")
    print("|---|---|---|")
    for name in names:
        print(f"| {name} | {statistics.median(wall[name]):.3f} | {statistics.median(cpu[name]):.3f} |")
    for label, t in (("wall", wall), ("CPU", cpu)):
        ours_vs_floor = statistics.median(c / f for c, f in zip(t["certkit"], t["floor"]))
        ref_vs_ours = statistics.median(r / c for r, c in zip(t["reference"], t["certkit"]))
        print(f"{label} time, median of per-rep ratios: certkit / floor = {ours_vs_floor:.3f}x; "
              f"reference / certkit = {ref_vs_ours:.3f}x")


def bench_samples(images: int) -> None:
    smooth = Smooth(digits_base_model(SIGMA), 10, SIGMA, input_shape=(1, 8, 8))
    test = load_digits_split("test")
    step = max(1, len(test) // images)
    xs, ys = test.images[::step][:images], test.labels[::step][:images]
    radii = (0.25, 0.5)
    start = time.perf_counter()
    cohen = certify_dataset(smooth, xs, ys, n0=N0, n=N, alpha=ALPHA, batch_size=BATCH, seed=0, progress=False)
    cohen_s = time.perf_counter() - start
    cohen_acc = certified_accuracy(cohen, radii)
    cohen_samples = np.mean([r.samples for r in cohen])
    print(f"\n## sequential vs Cohen ({len(ys)} test images, every {step}th; sigma={SIGMA}, alpha={ALPHA})")
    print("| radius | Cohen n=1e5 cert. acc. | sequential cert. acc. | Cohen samples/image | sequential samples/image "
          "| sample ratio | Cohen s | sequential s |")
    print("|---|---|---|---|---|---|---|---|")
    for r, acc in zip(radii, cohen_acc):
        start = time.perf_counter()
        seq = certify_dataset(
            smooth, xs, ys, procedure="sequential", radius=r, alpha=ALPHA, n0=N0, n_max=N, batch_size=4096,
            inputs_per_task=25, seed=0, progress=False,
        )
        seq_s = time.perf_counter() - start
        seq_acc = float(certified_accuracy(seq, [r])[0])
        seq_samples = np.mean([x.samples for x in seq])
        print(f"| {r} | {acc:.3f} | {seq_acc:.3f} | {cohen_samples:,.0f} | {seq_samples:,.0f} | "
              f"{cohen_samples / seq_samples:.1f}x | {cohen_s:.0f} | {seq_s:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--skip-samples", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    bench_speed(args.reps)
    if not args.skip_samples:
        bench_samples(args.images)


if __name__ == "__main__":
    main()
