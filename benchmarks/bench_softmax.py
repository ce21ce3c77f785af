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

Second table (``--best-of``; issue 14, session 10): on saturated softmax (the networks of
``tests/certify/test_softmax.py``, weights scaled up 3-10x: logits of tens) and on the layer models (not saturated),
CROWN's mean width with the log-sum-exp planes alone (``SOFTMAX_BEST_OF`` off, auto_LiRPA's relaxation), with the
element-wise decomposition alone (CROWN on ``certify._softmax_alt.decomposed``), IBP, and the default (the
element-wise best of the three); the share of bounds where the planes alone are looser than IBP; and the median
CPU ms of the planes alone and of the default::

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_softmax.py --best-of
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable

import torch

import certify
from certify.auto_lirpa import _CACHE, auto_lirpa_available
from tests.certify.test_layers import _layer_models, _redrawn

MODELS = ["softmax", "log_softmax", "attention", "attention_causal_mask", "transformer_block"]
THEIRS = {"crown": "CROWN", "crown-ibp": "CROWN-IBP"}


def _cpu_ms(f: Callable[[], object], reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.process_time()
        f()
        ts.append(time.process_time() - t0)
    return 1000 * statistics.median(ts)


def best_of_table(args: argparse.Namespace) -> None:
    from certify import _softmax_alt
    from certify._graph import cached_graph
    from certify.crown import crown_bounds
    from certify.ibp import InputRegion
    from tests.certify.test_softmax import _nets

    dtype = torch.float32 if args.float32 else torch.float64
    cases: list[tuple[str, torch.nn.Module, tuple[int, ...]]] = []
    for name in ("softmax", "log_softmax", "attention", "channel_softmax"):
        model, shape = _nets()[name]
        cases.append((f"{name} (saturated)", model, shape))
    for name in ("softmax", "attention"):
        model, shape = _layer_models()[name]
        cases.append((f"{name} (layer model)", _redrawn(model, 0), shape))
    print(f"{'model':28s} {'eps':>5s} {'planes':>9s} {'decomp.':>9s} {'IBP':>9s} {'best':>9s} "
          f"{'planes/best':>11s} {'decomp/best':>11s} {'planes>IBP':>10s} {'ms planes':>9s} {'ms best':>8s}")
    for label, model, shape in cases:
        model = model.to(dtype).eval()
        x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(9), dtype=torch.float64).to(dtype)
        for eps in (0.02, 0.1, 0.3):
            def run(m: torch.nn.Module = model, z: torch.Tensor = x, e: float = eps) -> certify.Bounds:
                return certify.bounds(m, z, e, norm=math.inf, method="crown")

            _softmax_alt.SOFTMAX_BEST_OF = False
            try:
                planes = run()
                ms_planes = _cpu_ms(run, args.reps)
            finally:
                _softmax_alt.SOFTMAX_BEST_OF = True
            best = run()
            ms_best = _cpu_ms(run, args.reps)
            ibp = certify.bounds(model, x, eps, norm=math.inf, method="ibp")
            g = cached_graph(model, x, dtype)
            dec = _softmax_alt.decomposed(g, dtype, x.device)
            region = InputRegion(x, torch.full((3,), eps, dtype=dtype), math.inf, None)
            with torch.no_grad():
                dl, du = crown_bounds(dec, region, None, best_of=False) if dec is not None else (None, None)

            def w(lo: torch.Tensor, hi: torch.Tensor) -> float:
                return float((hi - lo).detach().mean())

            wd = w(dl, du) if dl is not None and du is not None else math.nan
            wb = w(best.lower, best.upper)
            lose = float(((ibp.lower > planes.lower).float().mean() + (ibp.upper < planes.upper).float().mean()) / 2)
            print(f"{label:28s} {eps:5.2f} {w(planes.lower, planes.upper):9.4g} {wd:9.4g} "
                  f"{w(ibp.lower, ibp.upper):9.4g} {wb:9.4g} {w(planes.lower, planes.upper) / wb:11.3f} "
                  f"{wd / wb:11.3f} {100 * lose:9.0f}% {ms_planes:9.1f} {ms_best:8.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--float32", action="store_true")
    ap.add_argument("--best-of", action="store_true", help="the planes / decomposition / IBP / best table only")
    args = ap.parse_args()
    if args.best_of:
        warnings.simplefilter("ignore")
        best_of_table(args)
        return
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
