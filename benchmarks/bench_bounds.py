"""Bound propagation speed: certify's IBP / CROWN-IBP / CROWN against a forward pass and auto_LiRPA.

Networks: the digits MLP 64-256-256-10 and the digits CNN (``certkit_app.digits``), batch 256 of test
images, L-inf eps 0.1 clipped to [0, 1]. Each repetition times every run once in a rotating order
and ratios are taken within a repetition (drift and other jobs on a shared machine cancel); the
median over repetitions is reported. auto_LiRPA is optional: put a clone on PYTHONPATH, e.g.

    PYTHONPATH=/tmp/ext/auto_LiRPA OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_bounds.py

Agreement with auto_LiRPA is reported as the max relative difference of the bounds computed in
float64 by both (float32 differences only measure rounding).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch

import certify
from certify.auto_lirpa import auto_lirpa_available
from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn, digits_mlp


def _timer(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds); CPU time is robust to other jobs on a shared machine."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _plain_ibp(model: torch.nn.Sequential, x: torch.Tensor, eps: float) -> Callable[[], object]:
    """The floor: centre/radius IBP written by hand for this Sequential (Flatten/Linear/Conv2d/ReLU), with
    |W|/2 precomputed and no checks, no graph, no caching logic."""
    import torch.nn.functional as F
    from torch import nn

    layers = []
    for m in model:
        if isinstance(m, nn.Linear | nn.Conv2d):
            layers.append((m, m.weight * 0.5, m.weight.abs() * 0.5))
        else:
            layers.append((m, None, None))

    def run() -> object:
        hi, lo = (x + eps).clamp_(max=1.0), (x - eps).clamp_(min=0.0)
        s, d = hi + lo, hi - lo
        c = r = s
        for m, wh, wa in layers:
            if isinstance(m, nn.Linear):
                c, r = F.linear(s, wh, m.bias), F.linear(d, wa)
            elif isinstance(m, nn.Conv2d):
                kw = {"stride": m.stride, "padding": m.padding, "dilation": m.dilation, "groups": m.groups}
                c, r = F.conv2d(s, wh, m.bias, **kw), F.conv2d(d, wa, None, **kw)
            elif isinstance(m, nn.ReLU):
                hi, lo = (c + r).relu_(), (c - r).relu_()
                s, d = hi + lo, hi - lo
            else:  # Flatten
                s, d = m(s), m(d)
        return c - r, c + r

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=300, help="back-to-back (IBP, forward) pairs")
    ap.add_argument("--skip-crown-reps", type=int, default=3, help="repetitions for the slow CROWN runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    have_al = auto_lirpa_available()
    x = load_digits_split("test").images[: args.batch]
    eps, dom = args.eps, (0.0, 1.0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {len(x)}, eps {eps}, "
          f"auto_LiRPA {'available' if have_al else 'NOT available'}")
    for name, make in (("MLP 64-256-256-10", digits_mlp), ("CNN (digits_cnn)", digits_cnn)):
        model = make()
        for p in model.parameters():
            p.requires_grad_(False)
        runs: dict[str, Callable[[], object]] = {"forward": lambda m=model: m(x)}
        for meth in ("ibp", "crown-ibp", "crown"):
            runs[f"certify {meth}"] = lambda m=model, k=meth: certify.bounds(m, x, eps, method=k, domain=dom)
            if have_al:
                theirs = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN"}[meth]
                runs[f"auto_LiRPA {meth}"] = lambda m=model, k=theirs: certify.bounds(
                    m, x, eps, method=f"auto_lirpa:{k}", domain=dom)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
        with torch.no_grad():
            for f in runs.values():  # warm-up (and auto_LiRPA's graph build)
                f()
            keys = list(runs)
            for r in range(args.reps):
                order = keys[r % len(keys):] + keys[: r % len(keys)]
                for k in order:
                    if "crown" in k and "crown-ibp" not in k and r >= args.skip_crown_reps:
                        continue
                    times[k].append(_timer(runs[k]))
        wall = {k: statistics.median(t[0] for t in v) * 1e3 for k, v in times.items() if v}
        cpu = {k: statistics.median(t[1] for t in v) * 1e3 for k, v in times.items() if v}
        print(f"\n## {name}")
        print("| run | median wall ms | median CPU ms |")
        print("|---|---|---|")
        for k in wall:
            print(f"| {k} | {wall[k]:.2f} | {cpu[k]:.2f} |")
        print("| ratio | wall | CPU |")
        print("|---|---|---|")
        print(f"| certify IBP / forward (rotation above) | {wall['certify ibp'] / wall['forward']:.2f} | "
              f"{cpu['certify ibp'] / cpu['forward']:.2f} |")
        # IBP against the forward pass in steady state: back-to-back pairs, so both see the same
        # cache and allocator state (the rotation above puts each right after a different heavy run)
        plain = _plain_ibp(model, x, eps)
        with torch.no_grad():
            lo_p, hi_p = plain()  # type: ignore[misc]
            ours = certify.bounds(model, x, eps, method="ibp", domain=dom)
            assert torch.allclose(lo_p, ours.lower, atol=1e-4) and torch.allclose(hi_p, ours.upper, atol=1e-4)
            for what, fn in (("certify IBP", runs["certify ibp"]), ("hand-written IBP (floor)", plain)):
                pairs = []
                for _ in range(args.pairs):
                    t_ibp = _timer(fn)[0]
                    t_fwd = _timer(runs["forward"])[0]
                    pairs.append((t_ibp, t_fwd))
                med_ratio = statistics.median(a / b for a, b in pairs)
                ibp_ms = statistics.median(a for a, _ in pairs) * 1e3
                fwd_ms = statistics.median(b for _, b in pairs) * 1e3
                print(f"| {what} / forward ({args.pairs} back-to-back pairs: median ratio; medians "
                      f"{ibp_ms:.2f} / {fwd_ms:.2f} ms) | {med_ratio:.2f} | |")
        if have_al:
            for meth in ("ibp", "crown-ibp", "crown"):
                a, b = f"auto_LiRPA {meth}", f"certify {meth}"
                print(f"| speed-up over auto_LiRPA, {meth} | {wall[a] / wall[b]:.2f}x | {cpu[a] / cpu[b]:.2f}x |")
            m64, x64 = make().double(), x.double()
            for meth, theirs in (("ibp", "IBP"), ("crown-ibp", "CROWN-IBP"), ("crown", "CROWN")):
                ours = certify.bounds(m64, x64, eps, method=meth, domain=dom)
                ref = certify.bounds(m64, x64, eps, method=f"auto_lirpa:{theirs}", domain=dom)
                rel = max(float(((a - b).abs() / b.abs().clamp(min=1e-6)).max().detach())
                          for a, b in ((ours.lower, ref.lower), (ours.upper, ref.upper)))
                print(f"| max relative difference of bounds vs auto_LiRPA (float64), {meth} | {rel:.1e} |")


if __name__ == "__main__":
    main()
