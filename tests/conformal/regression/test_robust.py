"""Certified robust regression intervals under a PGD attack on the regressor's output (diabetes MLP)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from certify.attacks import pgd_minimize
from certkit.threat import LpBall
from certkit_app.datasets import load_diabetes_split
from certkit_app.diabetes import diabetes_mlp
from conformal.regression import (
    OutputBounds,
    RobustConformalRegressor,
    SplitConformalRegressor,
    bound_propagation_output_bounds,
    smoothed_output_bounds,
)

ALPHA = 0.1
THREAT = LpBall("linf", 0.15)


@dataclass
class Pool:
    x: torch.Tensor
    y: torch.Tensor
    x_adv: torch.Tensor
    clean: OutputBounds  # bounds over the ball around the clean inputs (VRCP-C calibration)
    attacked: OutputBounds  # bounds over the ball around the attacked inputs (inference mode)


def _attack(f, x: torch.Tensor, y: torch.Tensor, threat: LpBall) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """PGD that pushes the prediction away from the target (maximises |f(x~) - y|) inside the ball."""
    with torch.no_grad():
        away = torch.sign(f(x) - y)
    away[away == 0] = 1
    x_adv, _ = pgd_minimize(lambda z: -away * (f(z) - y), x, threat.eps, norm=threat.norm, steps=40, restarts=2)
    return x_adv


@pytest.fixture(scope="module")
def pool() -> Pool:
    model = diabetes_mlp()
    data = load_diabetes_split("all")
    x, y = data.x[200:], data.y[200:]  # the 242 calibration + test points (the model saw the first 200)
    x_adv = _attack(lambda z: model(z)[:, 0], x, y, THREAT)
    assert bool(THREAT.contains(x_adv, x).all())
    clean = bound_propagation_output_bounds(model, x, THREAT, method="crown")
    attacked = bound_propagation_output_bounds(model, x_adv, THREAT, method="crown")
    return Pool(x, y, x_adv, clean, attacked)


def test_bounds_contain_clean_and_attacked_outputs(pool: Pool) -> None:
    # the clean input lies in the ball around the attacked one: its prediction is inside those bounds
    assert bool((pool.attacked.lower <= pool.clean.predictions + 1e-5).all())
    assert bool((pool.clean.predictions <= pool.attacked.upper + 1e-5).all())
    assert bool((pool.clean.lower <= pool.attacked.predictions + 1e-5).all())
    assert bool((pool.attacked.predictions <= pool.clean.upper + 1e-5).all())


def _split_coverages(pool: Pool, splits: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    n = len(pool.y)
    cov: dict[str, list[float]] = {"clean": [], "plain": [], "inference": [], "calibration": []}
    for _ in range(splits):
        perm = torch.randperm(n, generator=g)
        cal, test = perm[: n // 2], perm[n // 2 :]

        def part(b: OutputBounds, idx: torch.Tensor) -> OutputBounds:
            return OutputBounds(b.predictions[idx], b.lower[idx], b.upper[idx])

        y_cal, y_test = pool.y[cal], pool.y[test]
        plain = SplitConformalRegressor(alpha=ALPHA).calibrate(pool.clean.predictions[cal], y_cal)
        cov["clean"].append(float(plain.predict(pool.clean.predictions[test]).contains(y_test).double().mean()))
        cov["plain"].append(float(plain.predict(pool.attacked.predictions[test]).contains(y_test).double().mean()))
        for mode in ("inference", "calibration"):
            reg = RobustConformalRegressor(alpha=ALPHA, mode=mode).calibrate(y_cal, part(pool.clean, cal))  # type: ignore[arg-type]
            iv = reg.predict(part(pool.attacked, test))
            cov[mode].append(float(iv.contains(y_test).double().mean()))
    return {k: float(np.mean(v)) for k, v in cov.items()}


def test_robust_coverage_under_pgd_over_200_splits(pool: Pool) -> None:
    cov = _split_coverages(pool, 200)
    # clean split conformal is valid (expected 110/122 = 0.902 exactly for 121 calibration points)
    assert abs(cov["clean"] - 110 / 122) < 0.02, cov
    # the attack inside the threat model breaks plain intervals ...
    assert cov["plain"] < 1 - ALPHA - 0.03, cov
    # ... but not the certified ones (the guarantee: >= 1 - alpha for every perturbation in the ball)
    assert cov["inference"] >= 1 - ALPHA, cov
    assert cov["calibration"] >= 1 - ALPHA, cov


def test_model_level_api_matches_score_level(pool: Pool) -> None:
    model = diabetes_mlp()
    for mode in ("inference", "calibration"):
        reg = RobustConformalRegressor(alpha=ALPHA, mode=mode, threat=THREAT)  # type: ignore[arg-type]
        iv = reg.calibrate_model(model, pool.x[:121], pool.y[:121]).predict_model(model, pool.x_adv[121:])
        ref = RobustConformalRegressor(alpha=ALPHA, mode=mode).calibrate(  # type: ignore[arg-type]
            pool.y[:121], OutputBounds(pool.clean.predictions[:121], pool.clean.lower[:121], pool.clean.upper[:121]))
        b = OutputBounds(pool.attacked.predictions[121:], pool.attacked.lower[121:], pool.attacked.upper[121:])
        iv_ref = ref.predict(b)
        torch.testing.assert_close(iv.lower, iv_ref.lower)
        torch.testing.assert_close(iv.upper, iv_ref.upper)
        plain = SplitConformalRegressor(alpha=ALPHA).calibrate(pool.clean.predictions[:121], pool.y[:121])
        p = plain.predict(b.predictions)
        assert bool((iv.lower <= p.lower + 1e-6).all() and (iv.upper >= p.upper - 1e-6).all())  # contains plain


def test_smoothed_regressor_bounds_and_coverage(pool: Pool) -> None:
    model = diabetes_mlp()
    threat = LpBall(2, 0.3)
    sigma, beta = 0.5, 0.01
    x, y = pool.x, pool.y
    f_noisy = lambda z: model(z)[:, 0].clamp(-3, 3)  # noqa: E731
    x_adv = _attack(f_noisy, x, y, threat)
    assert bool(threat.contains(x_adv, x).all())
    kw = {"sigma": sigma, "eps": threat.eps, "output_range": (-3.0, 3.0), "n_samples": 2000, "beta": beta}
    clean = smoothed_output_bounds(model, x, generator=torch.Generator().manual_seed(1), **kw)  # type: ignore[arg-type]
    attacked = smoothed_output_bounds(model, x_adv, generator=torch.Generator().manual_seed(2), **kw)  # type: ignore[arg-type]
    assert bool(((attacked.lower <= clean.predictions) & (clean.predictions <= attacked.upper)).all())
    g = torch.Generator().manual_seed(0)
    covs = []
    for _ in range(100):
        perm = torch.randperm(len(y), generator=g)
        cal, test = perm[:121], perm[121:]
        reg = RobustConformalRegressor(alpha=ALPHA).calibrate(
            y[cal], OutputBounds(clean.predictions[cal], clean.lower[cal], clean.upper[cal]))
        iv = reg.predict(OutputBounds(attacked.predictions[test], attacked.lower[test], attacked.upper[test]))
        covs.append(float(iv.contains(y[test]).double().mean()))
    assert float(np.mean(covs)) >= 1 - ALPHA - beta


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="`mode`"):
        RobustConformalRegressor(mode="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`threat`"):
        RobustConformalRegressor(threat=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`threat`"):
        RobustConformalRegressor()._bounds(torch.nn.Linear(2, 1).eval(), torch.zeros(1, 2), True)
    with pytest.raises(ValueError, match="`output_range`"):
        smoothed_output_bounds(torch.nn.Linear(2, 1).eval(), torch.zeros(1, 2), sigma=0.5, eps=0.1, output_range=(1, 0))
    with pytest.raises(ValueError, match="eval mode"):
        bound_propagation_output_bounds(torch.nn.Linear(2, 1), torch.zeros(1, 2), THREAT)
