"""Split conformal regression: absolute, normalised, CQR and predictive distributions."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from certkit.errors import NotCalibratedError
from conformal import conformal_rank
from conformal.regression import (
    ConformalizedQuantileRegressor,
    ConformalPredictiveSystem,
    NormalizedConformalRegressor,
    PredictionIntervals,
    SplitConformalRegressor,
)

from ._data import draw, least_squares, tolerance

RNG = np.random.default_rng(0)
MU = RNG.normal(size=99)
Y = MU + RNG.normal(size=99)


def test_split_quantile_is_exact_rank_order_statistic() -> None:
    reg = SplitConformalRegressor(alpha=0.1).calibrate(MU, Y)
    k = conformal_rank(99, 0.1)
    assert k == 90  # (n + 1)(1 - alpha) = 90 exactly; floating point gives 91
    assert reg.quantile_ == np.sort(np.abs(Y - MU))[k - 1]
    iv = reg.predict(np.array([0.0, 1.0]))
    np.testing.assert_array_equal(iv.lower, [-reg.quantile_, 1 - reg.quantile_])
    np.testing.assert_allclose(iv.width, 2 * reg.quantile_)


def test_numpy_and_torch_agree() -> None:
    sig = 0.5 + np.abs(MU)
    for make, args_cal, args_test in [
        (SplitConformalRegressor, (MU, Y), (MU,)),
        (NormalizedConformalRegressor, (MU, Y, sig), (MU, sig)),
        (ConformalizedQuantileRegressor, (MU - 1, MU + 1, Y), (MU - 1, MU + 1)),
        (ConformalPredictiveSystem, (MU, Y), (MU,)),
    ]:
        a = make(alpha=0.2).calibrate(*args_cal).predict(*args_test)
        t = make(alpha=0.2).calibrate(*map(torch.from_numpy, args_cal)).predict(*map(torch.from_numpy, args_test))
        assert isinstance(t.lower, torch.Tensor)
        np.testing.assert_array_equal(a.lower, t.lower.numpy())
        np.testing.assert_array_equal(a.upper, t.upper.numpy())


def test_normalized_scales_width() -> None:
    sig = np.full(99, 2.0)
    base = SplitConformalRegressor(alpha=0.1).calibrate(MU, Y).quantile_
    reg = NormalizedConformalRegressor(alpha=0.1).calibrate(MU, Y, sig)
    assert reg.quantile_ == pytest.approx(base / 2)
    np.testing.assert_allclose(reg.predict(np.zeros(2), np.array([1.0, 3.0])).width, [base, 3 * base])


def test_cqr_negative_correction_shrinks() -> None:
    reg = ConformalizedQuantileRegressor(alpha=0.1).calibrate(MU - 10, MU + 10, Y)
    assert reg.quantile_ < 0
    iv = reg.predict(np.zeros(1), np.ones(1))
    assert iv.lower[0] == -reg.quantile_ and iv.upper[0] == 1 + reg.quantile_


def test_cpd_quantiles_and_cdf() -> None:
    cps = ConformalPredictiveSystem(alpha=0.1).calibrate(MU, Y)
    r = np.sort(Y - MU)
    assert cps.quantile(np.zeros(1), 0.5)[0] == r[49]  # ceil(0.5 * 100) = 50
    assert cps.quantile(np.zeros(1), 0.999)[0] == np.inf
    iv = cps.predict(np.zeros(1))
    assert iv.lower[0] == r[4] and iv.upper[0] == r[94]  # floor(5), ceil(95)
    # Q at a calibration residual with tau = 0 counts the residuals strictly below it
    q = cps.cdf(np.zeros(3), r[[0, 10, 98]], tau=0.0)
    np.testing.assert_allclose(q, [0 / 100, 10 / 100, 98 / 100])
    q1 = cps.cdf(np.zeros(3), r[[0, 10, 98]], tau=1.0)
    np.testing.assert_allclose(q1, [2 / 100, 12 / 100, 100 / 100])
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    np.testing.assert_array_equal(cps.cdf(MU, Y, generator=g1), cps.cdf(MU, Y, generator=g2))


def test_too_few_points_gives_infinite_interval() -> None:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        reg = SplitConformalRegressor(alpha=0.05).calibrate(MU[:5], Y[:5])
    assert reg.quantile_ == math.inf and w
    assert np.isinf(reg.predict(MU[:2]).width).all()


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="`targets`"):
        SplitConformalRegressor().calibrate(MU, Y[:5])
    with pytest.raises(ValueError, match="`predictions`"):
        SplitConformalRegressor().calibrate(np.array([np.nan, 1.0]), np.ones(2))
    with pytest.raises(TypeError, match="all numpy arrays or all torch tensors"):
        SplitConformalRegressor().calibrate(MU, torch.from_numpy(Y))
    with pytest.raises(ValueError, match="`difficulty`"):
        NormalizedConformalRegressor().calibrate(MU, Y, np.zeros(99))
    with pytest.raises(ValueError, match="`alpha`"):
        ConformalizedQuantileRegressor(alpha=1.5)
    with pytest.raises(NotCalibratedError):
        SplitConformalRegressor().predict(MU)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        SplitConformalRegressor().calibrate(MU[:, None], Y)
    iv = PredictionIntervals(np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="`targets`"):
        iv.contains(np.zeros(3))


def test_inputs_not_mutated() -> None:
    mu, y = MU.copy(), Y.copy()
    ConformalPredictiveSystem().calibrate(mu, y).predict(mu)
    np.testing.assert_array_equal(mu, MU)
    np.testing.assert_array_equal(y, Y)


def _coverage_run(method: str, splits: int, n: int, n_test: int, alpha: float) -> float:
    rng = np.random.default_rng(123)
    x_tr, y_tr = draw(rng, 200)
    mu = least_squares(x_tr, y_tr)
    covered = []
    for _ in range(splits):
        x, y = draw(rng, n + n_test)
        m = mu(x)
        cal, test = slice(0, n), slice(n, None)
        if method == "split":
            iv = SplitConformalRegressor(alpha=alpha).calibrate(m[cal], y[cal]).predict(m[test])
        elif method == "normalized":
            sig = 0.5 + 0.8 * np.abs(x[:, 0])  # an imperfect difficulty estimate
            iv = NormalizedConformalRegressor(alpha=alpha).calibrate(m[cal], y[cal], sig[cal]).predict(m[test], sig[test])
        elif method == "cqr":
            lo, hi = m - 1.0 - 0.5 * np.abs(x[:, 0]), m + 0.8  # misspecified quantile model
            iv = ConformalizedQuantileRegressor(alpha=alpha).calibrate(lo[cal], hi[cal], y[cal]).predict(lo[test], hi[test])
        else:
            iv = ConformalPredictiveSystem(alpha=alpha).calibrate(m[cal], y[cal]).predict(m[test])
        covered.append(iv.contains(y[test]).mean())
    return float(np.mean(covered))


@pytest.mark.parametrize("method", ["split", "normalized", "cqr", "cpd"])
def test_coverage_within_binomial_tolerance(method: str) -> None:
    n, n_test, alpha, splits = 99, 100, 0.1, 1000
    k = conformal_rank(n, alpha)  # 90: expected coverage exactly 90/100 (central CPD: (95 - 5)/100)
    cov = _coverage_run(method, splits, n, n_test, alpha)
    assert abs(cov - k / (n + 1)) <= tolerance(n, k, n_test, splits), cov
