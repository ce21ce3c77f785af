"""Softmax, log-softmax and attention bounds against auto_LiRPA (issue 14: equal bounds under CROWN and CROWN-IBP).

Models: the layer models of ``tests/certify/test_layers.py`` (Linear -> Softmax -> Linear, a log-softmax head, the
hand-written single-head attention, nn.MultiheadAttention with a causal mask, a post-norm transformer block), each
with its weights redrawn by seeds 0-4 (``_redrawn``), 3 random inputs, L-inf eps ``--eps``. For each model, seed
and method (CROWN, CROWN-IBP): certify's mean output width over auto_LiRPA's and the largest relative difference
of the bounds (where auto_LiRPA runs: it refuses LogSoftmax and fails on CROWN of nn.MultiheadAttention and, in
float64, on CROWN through products), certify's mean width, and the median CPU time of one certify call. float64
(``--float32`` for float32)::

    PYTHONPATH=.:/tmp/ext/auto_LiRPA:/tmp/ext/stubs OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_softmax.py

``PYTHONPATH=/work/main:...`` measures another checkout's certify (e.g. the element-wise decomposition before).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import torch

import certify
from certify.auto_lirpa import _CACHE, auto_lirpa_available
from tests.certify.test_layers import _layer_models, _redrawn

MODELS = ["softmax", "log_softmax", "attention", "attention_causal_mask", "transformer_block"]
THEIRS = {"crown": "CROWN", "crown-ibp": "CROWN-IBP"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--float32", action="store_true")
    args = ap.parse_args()
    dtype = torch.float32 if args.float32 else torch.float64
    peer = auto_lirpa_available()
    warnings.simplefilter("ignore")
    print(f"{'model':24s} {'method':9s} {'width/auto_LiRPA (mean, min-max over seeds)':46s} "
          f"{'max rel diff':>12s} {'width':>10s} {'CPU ms':>8s}")
    for name in MODELS:
        if name not in _layer_models():
            continue
        for method in ("crown", "crown-ibp"):
            ratios, diffs, widths, times = [], [], [], []
            for seed in range(args.seeds):
                model, shape = _layer_models()[name]
                model = _redrawn(model, seed).to(dtype).eval()
                x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(seed),
                               dtype=torch.float64).to(dtype)
                ours = certify.bounds(model, x, args.eps, norm=math.inf, method=method)
                wo = float((ours.upper - ours.lower).mean())
                widths.append(wo)
                ts = []
                for _ in range(args.reps):
                    t0 = time.process_time()
                    certify.bounds(model, x, args.eps, norm=math.inf, method=method)
                    ts.append(time.process_time() - t0)
                times.append(statistics.median(ts))
                if not peer:
                    continue
                try:
                    ref = certify.bounds(model, x, args.eps, norm=math.inf, method=f"auto_lirpa:{THEIRS[method]}")
                except Exception:
                    continue
                finally:
                    _CACHE.pop(model, None)
                if not bool(torch.isfinite(ref.lower).all() and torch.isfinite(ref.upper).all()):
                    continue
                ratios.append(wo / float((ref.upper - ref.lower).mean()))
                d = torch.maximum((ours.lower - ref.lower).abs() / ref.lower.abs().clamp(min=1e-6),
                                  (ours.upper - ref.upper).abs() / ref.upper.abs().clamp(min=1e-6))
                diffs.append(float(d.max()))
            ratio = (f"{statistics.mean(ratios):.6f} ({min(ratios):.6f}-{max(ratios):.6f})" if ratios
                     else "auto_LiRPA fails")
            diff = f"{max(diffs):.1e}" if diffs else "-"
            print(f"{name:24s} {method:9s} {ratio:46s} {diff:>12s} {statistics.mean(widths):10.5g} "
                  f"{1000 * statistics.median(times):8.1f}", flush=True)


if __name__ == "__main__":
    main()
