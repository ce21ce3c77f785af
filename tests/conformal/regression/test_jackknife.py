"""Jackknife+ and CV+ (Barber et al. 2021): exact order statistics, chunking, the 1 - 2 alpha floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conformal import conformal_rank
from conformal.regression import CVPlus, JackknifePlus, jackknife_plus_bounds

from ._data import draw, least_squares

RNG = np.random.default_rng(1)
X, Y = draw(RNG, 30)
XT, YT = draw(RNG, 7)


def _reference(x: np.ndarray, y: np.ndarray, xt: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Jackknife+ straight from the paper, by sorting (Barber et al. 2021, eq. (6))."""
    n = len(y)
    lo_all, hi_all = [], []
    for i in range(n):
        keep = np.arange(n) != i
        mu = least_squares(x[keep], y[keep])
        r = abs(y[i] - mu(x[i : i + 1])[0])
        lo_all.append(mu(xt) - r)
        hi_all.append(mu(xt) + r)
    lo, hi = np.sort(np.array(lo_all), 0), np.sort(np.array(hi_all), 0)
    k = conformal_rank(n, alpha)
    return lo[n + 1 - k - 1], hi[k - 1]


@pytest.mark.parametrize("chunk", [1, 3, 1024])
def test_jackknife_plus_matches_definition(chunk: int) -> None:
    iv = JackknifePlus(least_squares, alpha=0.2, chunk_size=chunk).calibrate(X, Y).predict(XT)
    lo, hi = _reference(X, Y, XT, 0.2)
    np.testing.assert_allclose(iv.lower, lo, rtol=0, atol=1e-12)
    np.testing.assert_allclose(iv.upper, hi, rtol=0, atol=1e-12)


def test_cv_plus_folds_and_torch() -> None:
    cv = CVPlus(least_squares, alpha=0.2, n_folds=5, generator=torch.Generator().manual_seed(3)).calibrate(X, Y)
    assert sorted(np.bincount(cv.folds_).tolist()) == [6] * 5
    iv = cv.predict(XT)
    # the same intervals from the functional form
    loo = np.stack([m(XT) for m in cv.models_], 1)[:, cv.folds_]
    ref = jackknife_plus_bounds(loo, cv.residuals_, 0.2)
    np.testing.assert_array_equal(iv.lower, ref.lower)
    ref_t = jackknife_plus_bounds(torch.from_numpy(loo), torch.from_numpy(cv.residuals_), 0.2)
    np.testing.assert_array_equal(ref_t.upper.numpy(), ref.upper)

    def fit_t(x: torch.Tensor, y: torch.Tensor):  # type: ignore[no-untyped-def]
        f = least_squares(x.numpy(), y.numpy())
        return lambda z: torch.from_numpy(f(z.numpy()))

    ivt = CVPlus(fit_t, alpha=0.2, n_folds=5, generator=torch.Generator().manual_seed(3)).calibrate(
        torch.from_numpy(X), torch.from_numpy(Y)).predict(torch.from_numpy(XT))
    np.testing.assert_allclose(ivt.lower.numpy(), iv.lower, atol=1e-12)


def test_too_few_points_infinite_and_bad_input() -> None:
    iv = JackknifePlus(least_squares, alpha=0.01).calibrate(X, Y).predict(XT)  # k = ceil(31 * 0.99) = 31 > 30
    assert np.isinf(iv.upper).all() and np.isinf(iv.lower).all()
    with pytest.raises(TypeError, match="`fit`"):
        JackknifePlus(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`n_folds`"):
        CVPlus(least_squares, n_folds=40).calibrate(X, Y)
    with pytest.raises(ValueError, match="`x`"):
        CVPlus(least_squares).calibrate(X[:5], Y)


def _naive_jackknife(x: np.ndarray, y: np.ndarray, xt: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The plain jackknife: full-data fit +- the quantile of leave-one-out residuals (no guarantee)."""
    n = len(y)
    r = np.array([abs(y[i] - least_squares(np.delete(x, i, 0), np.delete(y, i))(x[i : i + 1])[0]) for i in range(n)])
    q = np.sort(r)[conformal_rank(n, alpha) - 1]
    mu = least_squares(x, y)(xt)
    return mu - q, mu + q


@pytest.mark.slow
def test_jackknife_plus_floor_in_unstable_regime() -> None:
    """Near-interpolating least squares (d close to n): the plain jackknife under-covers, jackknife+
    keeps its 1 - 2 alpha floor (Barber et al. 2021, Theorem 1; Figure 2's regime), over 500 splits."""
    n, d, n_test, alpha, splits = 20, 19, 20, 0.1, 500  # d + intercept = n parameters: interpolation
    rng = np.random.default_rng(7)
    cov_plus, cov_naive = [], []
    for _ in range(splits):
        x = rng.normal(size=(n + n_test, d))
        beta = rng.normal(size=d)
        y = x @ (beta / np.linalg.norm(beta)) + rng.normal(size=n + n_test)
        iv = JackknifePlus(least_squares, alpha=alpha).calibrate(x[:n], y[:n]).predict(x[n:])
        cov_plus.append(iv.contains(y[n:]).mean())
        lo, hi = _naive_jackknife(x[:n], y[:n], x[n:], alpha)
        cov_naive.append(((lo <= y[n:]) & (y[n:] <= hi)).mean())
    plus, naive = float(np.mean(cov_plus)), float(np.mean(cov_naive))
    sd = float(np.std(cov_plus)) / np.sqrt(splits)
    assert plus >= 1 - 2 * alpha - 4 * sd, plus
    assert naive < 1 - alpha - 4 * float(np.std(cov_naive)) / np.sqrt(splits), naive  # the regime is hard
    assert plus > naive


@pytest.mark.slow
@pytest.mark.parametrize("method", ["jackknife+", "cv+"])
def test_coverage_over_500_splits(method: str) -> None:
    n, n_test, alpha, splits = 39, 40, 0.1, 500
    rng = np.random.default_rng(11)
    cov = []
    for _ in range(splits):
        x, y = draw(rng, n + n_test)
        reg = (JackknifePlus(least_squares, alpha=alpha) if method == "jackknife+"
               else CVPlus(least_squares, alpha=alpha, n_folds=5, generator=torch.Generator().manual_seed(len(cov))))
        cov.append(reg.calibrate(x[:n], y[:n]).predict(x[n:]).contains(y[n:]).mean())
    mean, sd = float(np.mean(cov)), float(np.std(cov)) / np.sqrt(splits)
    # the guarantee is 1 - 2 alpha (CV+: minus a small term); with a stable fit it is close to 1 - alpha
    assert mean >= 1 - 2 * alpha - 4 * sd
    assert abs(mean - (1 - alpha)) <= 0.03, mean
