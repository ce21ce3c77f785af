"""Demo section: conformal regression on scikit-learn's diabetes data, plain and certified robust."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["demo_regression"]


def _mean(mask: Any) -> float:
    return float(mask.double().mean())


def demo_regression(alpha: float = 0.1, eps: float = 0.15, verbose: bool = True) -> dict[str, tuple[float, float]]:
    """Split conformal and certified robust intervals for the diabetes MLP,
    evaluated on clean and PGD-attacked test inputs (L-inf ``eps`` on standardised features).

    Returns ``{name: (coverage under attack, mean width)}``.
    """
    from certify.attacks import pgd_minimize
    from certkit.threat import LpBall
    from certkit_app.datasets import load_diabetes_split
    from certkit_app.diabetes import diabetes_mlp
    from conformal.regression import RobustConformalRegressor, SplitConformalRegressor

    model = diabetes_mlp()
    cal, test = load_diabetes_split("calibration"), load_diabetes_split("test")
    threat = LpBall(math.inf, eps)

    def f(z: torch.Tensor) -> torch.Tensor:
        return model(z)[:, 0]

    with torch.no_grad():
        mu_cal, mu_test = f(cal.x), f(test.x)
    away = torch.where(mu_test >= test.y, 1.0, -1.0)
    x_adv, _ = pgd_minimize(lambda z: -away * (f(z) - test.y), test.x, eps, norm=threat.norm, steps=40)
    with torch.no_grad():
        mu_adv = f(x_adv)
    plain = SplitConformalRegressor(alpha=alpha).calibrate(mu_cal, cal.y)
    rows: dict[str, tuple[float, float]] = {}
    clean_iv = plain.predict(mu_test)
    rows["split conformal, clean inputs"] = (_mean(clean_iv.contains(test.y)),
                                             float(clean_iv.width.mean()))
    adv_iv = plain.predict(mu_adv)
    rows["split conformal, PGD inputs"] = (_mean(adv_iv.contains(test.y)), float(adv_iv.width.mean()))
    for mode in ("inference", "calibration"):
        reg = RobustConformalRegressor(alpha=alpha, mode=mode, threat=threat, method="crown")  # type: ignore[arg-type]
        iv = reg.calibrate_model(model, cal.x, cal.y).predict_model(model, x_adv)
        rows[f"certified ({mode}), PGD inputs"] = (_mean(iv.contains(test.y)), float(iv.width.mean()))
    if verbose:
        print(f"diabetes MLP (10-32-32-1), calibration n={len(cal)}, test n={len(test)}, alpha={alpha}, "
              f"L-inf eps={eps} on standardised features")
        print(f"{'intervals':<36} {'coverage':>9} {'mean width':>11}")
        for name, (cov, width) in rows.items():
            print(f"{name:<36} {cov:>9.3f} {width:>11.3f}")
    return rows
