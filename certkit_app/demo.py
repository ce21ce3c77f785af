"""``make demo``: the end-to-end job on the embedded digits data, section by section.

Run with ``python -m certkit_app.demo``. Each section prints a table; models train on first use
(cached afterwards, see ``certkit_app.digits``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["demo_prediction_sets", "main"]


def _rule(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 74 - len(title)), flush=True)


def demo_prediction_sets() -> None:
    """Clean accuracy of the digits CNN, then split-conformal and PAC sets for THR, APS and RAPS."""
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn
    from conformal import PACPredictionSet, SplitConformal, metrics, predict_proba

    print("loading the digits CNN (trains in ~30 s on first use, then cached) ...", flush=True)
    model = digits_cnn()
    cal, test = load_digits_split("calibration"), load_digits_split("test")
    p_cal, p_test = predict_proba(model, cal.images).double(), predict_proba(model, test.images).double()
    acc = float((p_test.argmax(1) == test.labels).double().mean())
    print(f"digits CNN clean test accuracy: {acc:.3f}  (calibration n={len(cal)}, test n={len(test)})")
    print("\nprediction sets at alpha = 0.1 (split conformal) and epsilon = 0.1, delta = 0.05 (PAC)")
    print(f"{'score':<6} {'method':<8} {'coverage':>9} {'avg size':>9} {'singletons':>11}")
    for score in ("thr", "aps", "raps"):
        kwargs = {"randomized": True, "generator": torch.Generator().manual_seed(0)} if score != "thr" else {}
        for name, cp in (("split", SplitConformal(score=score, alpha=0.1, score_kwargs=kwargs)),
                         ("PAC", PACPredictionSet(score=score, epsilon=0.1, delta=0.05, score_kwargs=kwargs))):
            sets = cp.calibrate(p_cal, cal.labels).predict(p_test)
            print(f"{score:<6} {name:<8} {metrics.coverage(sets, test.labels):>9.3f} "
                  f"{metrics.average_size(sets):>9.2f} {metrics.singleton_rate(sets):>11.3f}")


def _sections() -> list[tuple[str, Callable[[], object]]]:
    # Imported here so that importing this module stays cheap.
    from certkit_app.demos.availability import demo_availability
    from certkit_app.demos.bounds import demo_bounds
    from certkit_app.demos.certified_sets import demo_certified_sets
    from certkit_app.demos.certified_training import demo_certified_training
    from certkit_app.demos.colep import demo_colep
    from certkit_app.demos.complete import demo_complete_verification
    from certkit_app.demos.erase_and_check import demo_erase_and_check
    from certkit_app.demos.layers import demo_layers
    from certkit_app.demos.nap import demo_nap
    from certkit_app.demos.regression import demo_regression
    from certkit_app.demos.rscp import demo_rscp
    from certkit_app.demos.smoothing import demo_smoothing

    return [
        ("1. Prediction sets (conformal core)", demo_prediction_sets),
        ("2. Bound propagation: verified accuracy, IBP vs CROWN", demo_bounds),
        ("3. Certified training (CROWN-IBP) and IBP tightness", demo_certified_training),
        ("4. Randomized smoothing: certified accuracy (sigma = 0.25)", demo_smoothing),
        ("5. Robust conformal prediction from smoothing: RSCP / RSCP+", demo_rscp),
        ("6. Erase-and-check prompt certification", demo_erase_and_check),
        ("7. Certified prediction sets from bounds: VRCP", demo_certified_sets),
        ("8. Conformal regression: plain and certified robust intervals", demo_regression),
        ("9. Complete verification: CROWN, alpha-CROWN, branch-and-bound", demo_complete_verification),
        ("10. COLEP: learning-reasoning conformal prediction vs RSCP+", demo_colep),
        ("11. Availability attacks on certifiers and the fallback-rate monitor", demo_availability),
        ("12. Neural activation patterns as specifications (NAPs)", demo_nap),
        ("13. Bounds on real layers: a max-pooling CNN and a transformer block", demo_layers),
    ]


def main() -> None:
    """Run every section of the demo in order, timing each."""
    sections = _sections()
    start = time.perf_counter()
    for title, fn in sections:
        _rule(title)
        t0 = time.perf_counter()
        fn()
        print(f"[{title}: {time.perf_counter() - t0:.1f} s]", flush=True)
    print(f"\ndemo finished in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
