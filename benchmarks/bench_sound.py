"""Cost of ``sound=True``: bound width and time against the default (float32) bounds.

Networks: the digits MLP 64-256-256-10 and the digits CNN (``certkit_app.digits``, test images) and a
CIFAR-shaped cnn_4layer (3x32x32; conv(3,16,4,s2,p1)-ReLU-conv(16,32,4,s2,p1)-ReLU-flatten-
linear(2048,100)-ReLU-linear(100,10), random weights, uniform random images). L-inf, clipped to [0, 1].
Width: mean over inputs and outputs of ``upper - lower``; "extra" is the sound width minus the default
width, relative to the default width. Time: median over repetitions of the wall time of one call.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sound.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import certify
from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn, digits_mlp


def cnn_4layer(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(2048, 100), nn.ReLU(), nn.Linear(100, 10),
    ).eval()


def _time(fn, reps: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    ts, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n-digits", type=int, default=64)
    ap.add_argument("--n-cifar", type=int, default=16)
    ap.add_argument("--reps-cifar", type=int, default=1)
    args = ap.parse_args()
    images = load_digits_split("test").images
    gen = torch.Generator().manual_seed(0)
    cases = [
        ("digits MLP", digits_mlp(), images[: args.n_digits], 0.02),
        ("digits CNN", digits_cnn(), images[: args.n_digits], 0.02),
        ("CIFAR cnn_4layer", cnn_4layer(), torch.rand(args.n_cifar, 3, 32, 32, generator=gen), 2 / 255),
    ]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, reps {args.reps} (CIFAR {args.reps_cifar})")
    print("| network | N | method | eps | width default | width sound | extra | max width sound @ eps 0 "
          "| time default (s) | time sound (s) | sound/default |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, model, x, eps in cases:
        reps = args.reps_cifar if name.startswith("CIFAR") else args.reps
        for method in ("ibp", "crown-ibp", "crown"):
            kw = {"method": method, "domain": (0.0, 1.0)}
            with torch.no_grad():
                t_d, b_d = _time(lambda: certify.bounds(model, x, eps, **kw), reps)  # noqa: B023
                t_s, b_s = _time(lambda: certify.bounds(model, x, eps, sound=True, **kw), reps)  # noqa: B023
                b0 = certify.bounds(model, x, 0.0, sound=True, **kw)
            w_d, w_s = float(b_d.width.double().mean()), float(b_s.width.double().mean())  # type: ignore[attr-defined]
            assert bool((b_s.lower <= b_d.lower + 1e-4 * (1 + b_d.lower.abs())).all())  # type: ignore[attr-defined]
            print(f"| {name} | {x.shape[0]} | {method} | {eps:.4g} | {w_d:.6g} | {w_s:.6g} | {(w_s - w_d) / w_d:+.2e} "
                  f"| {float(b0.width.double().max()):.2e} | {t_d:.4f} | {t_s:.4f} | {t_s / t_d:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
