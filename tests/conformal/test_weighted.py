"""Weighted conformal under a known covariate shift (Tibshirani et al. 2019)."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from conformal import SplitConformal, WeightedConformal, conformal_quantile, weighted_conformal_quantile
from conformal.functional import conformal_rank

K, SHIFT = 4, 1.5


def _draw(n: int, mean: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x ~ N(mean, 1); the label is class floor(4 x) mod 4 except with probability q = sigmoid(3 (x - 1.5)), when
    it is uniform: inputs far right are noisy. The model is overconfident (it believes the noise is q / 3).
    Returns (x, probs, labels)."""
    x = mean + torch.randn(n, generator=g, dtype=torch.float64)
    c = torch.floor(4 * x).long() % K
    q = torch.sigmoid(3 * (x - 1.5))
    qm = q / 3
    probs = qm[:, None] / K + (1 - qm)[:, None] * torch.nn.functional.one_hot(c, K).double()
    noisy = torch.rand(n, generator=g, dtype=torch.float64) < q
    labels = torch.where(noisy, torch.randint(0, K, (n,), generator=g), c)
    return x, probs, labels


def _ratio(x: torch.Tensor) -> torch.Tensor:
    """dN(SHIFT, 1) / dN(0, 1) at x."""
    return torch.exp(SHIFT * x - SHIFT**2 / 2)


def test_unit_weights_are_split_conformal_exactly() -> None:
    """w = 1 everywhere gives the split-conformal rank k = ceil((n + 1)(1 - alpha)), in exact arithmetic,
    including the (n, alpha) where floating point is off by one."""
    rng = np.random.default_rng(0)
    for n in (999, 19, 20, 99, 100, 1000, 4999):
        s = rng.random(n)
        for alpha in (0.059, 0.1, 0.05, 0.2, 0.01, 0.3, 0.007):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = conformal_quantile(s, alpha)
            assert weighted_conformal_quantile(s, np.ones(n), np.ones(1), alpha)[0] == ref
            # any common scale of the weights: the same threshold
            assert weighted_conformal_quantile(s, np.full(n, 0.1), np.full(1, 0.1), alpha)[0] == ref
    assert conformal_rank(999, 0.059) == 941


def test_weighted_quantile_by_hand_and_exact_boundary() -> None:
    s = np.array([0.1, 0.2, 0.3, 0.4])
    w = np.array([1.0, 2.0, 3.0, 4.0])
    # total 10 + w_t; alpha = 0.25: target 0.75 (10 + w_t); cum 1, 3, 6, 10
    np.testing.assert_array_equal(weighted_conformal_quantile(s, w, np.array([0.0, 2.0, 3.0, 3.4]), 0.25),
                                  [0.4, 0.4, 0.4, math.inf])
    # alpha = 0.5, w_t = 10: target 0.5 (10 + 10) = 10 = W_4 exactly; one ulp more needs the mass at +inf
    t = weighted_conformal_quantile(s, w, np.array([10.0, np.nextafter(10.0, 11.0)]), 0.5)
    np.testing.assert_array_equal(t, [0.4, math.inf])
    # fl(10/3) > 10/3: 0.75 (10 + fl(10/3)) > 10 in exact arithmetic, so +inf
    assert math.isinf(weighted_conformal_quantile(s, w, np.array([10 / 3]), 0.25)[0])
    # target = cum exactly: 0.75 (6 + 2) = 6 -> the 3rd score; floats decide near it by rational arithmetic
    assert weighted_conformal_quantile(np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0]), np.array([2.0]),
                                       0.25)[0] == 0.3
    # 0.1 + 0.2 != 0.3 in floats: exact sums decide
    sw = np.array([0.1, 0.2, 0.7])
    got = weighted_conformal_quantile(np.array([1.0, 2.0, 3.0]), sw, np.array([0.0]), 0.7)
    exact = next(j for j in range(3) if sum(Fraction(v) for v in sw[: j + 1]) >= Fraction(3, 10) * sum(
        Fraction(v) for v in sw))
    assert got[0] == [1.0, 2.0, 3.0][exact]


def test_bad_input() -> None:
    s = np.array([0.1, 0.2])
    with pytest.raises(ValueError, match="`weights`"):
        weighted_conformal_quantile(s, np.array([1.0, -1.0]), np.ones(1), 0.1)
    with pytest.raises(ValueError, match="`weights`"):
        weighted_conformal_quantile(s, np.ones(3), np.ones(1), 0.1)
    with pytest.raises(ValueError, match="`test_weights`"):
        weighted_conformal_quantile(s, np.ones(2), np.array([np.nan]), 0.1)
    with pytest.raises(ValueError, match="`alpha`"):
        weighted_conformal_quantile(s, np.ones(2), np.ones(1), 1.5)
    p = torch.softmax(torch.randn(20, 3, generator=torch.Generator().manual_seed(0)), 1)
    y = torch.zeros(20, dtype=torch.long)
    with pytest.raises(TypeError, match="`weights`"):
        WeightedConformal().calibrate(p, y)
    with pytest.raises(ValueError, match="positive sum"):
        WeightedConformal().calibrate(p, y, weights=torch.zeros(20))
    wc = WeightedConformal(score="thr").calibrate(p, y, weights=torch.ones(20))
    with pytest.raises(TypeError, match="`weights`"):
        wc.predict(p)
    with pytest.raises(ValueError, match=r"shape \(20,\)"):
        wc.predict(p, weights=torch.ones(3))


def test_protocol_matches_split_conformal_without_shift() -> None:
    g = torch.Generator().manual_seed(1)
    _, p, y = _draw(1000, 0.0, g)
    wc = WeightedConformal(score="aps", alpha=0.1)
    assert repr(wc) == "WeightedConformal()"
    assert wc.calibrate(p[:500], y[:500], weights=torch.ones(500)) is wc
    sc = SplitConformal(score="aps", alpha=0.1).calibrate(p[:500], y[:500])
    assert wc.threshold_ == sc.threshold_
    a = wc.predict(p[500:], weights=torch.ones(500), generator=torch.Generator().manual_seed(2))
    b = sc.predict(p[500:], generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.mask, b.mask) and a.threshold.shape == (500,)


def _coverage(reps: int, n_cal: int = 500, n_test: int = 500, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(reps,) coverage on shifted test data of weighted and of plain split conformal (THR)."""
    g = torch.Generator().manual_seed(0)
    wcov, scov = np.empty(reps), np.empty(reps)
    for r in range(reps):
        x_cal, p_cal, y_cal = _draw(n_cal, 0.0, g)
        x_te, p_te, y_te = _draw(n_test, SHIFT, g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wc = WeightedConformal(score="thr", alpha=alpha).calibrate(p_cal, y_cal, weights=_ratio(x_cal))
            sc = SplitConformal(score="thr", alpha=alpha).calibrate(p_cal, y_cal)
            wcov[r] = float(wc.predict(p_te, weights=_ratio(x_te)).contains(y_te).double().mean())
            scov[r] = float(sc.predict(p_te).contains(y_te).double().mean())
    return wcov, scov


def test_coverage_under_shift_few_draws() -> None:
    wcov, scov = _coverage(30)
    assert scov.mean() < 0.8  # unweighted: the guarantee fails under the shift
    assert wcov.mean() > 0.87


@pytest.mark.slow
def test_coverage_under_known_shift_500_draws() -> None:
    """Mean coverage on the shifted test distribution over 500 draws >= 1 - alpha within 4 standard errors
    (the per-draw coverage's own spread, measured); plain split conformal falls far below it."""
    alpha, reps = 0.1, 500
    wcov, scov = _coverage(reps, alpha=alpha)
    se = wcov.std(ddof=1) / math.sqrt(reps)
    assert wcov.mean() >= 1 - alpha - 4 * se
    assert scov.mean() < 1 - alpha - 0.1


def test_all_zero_weights_are_refused_by_the_quantile() -> None:
    # audit-inputs: zero calibration mass and a zero test weight made the quantile 0/0 (it returned the smallest score)
    with pytest.raises(ValueError, match=r"`weights`.*positive sum"):
        weighted_conformal_quantile(np.array([0.1, 0.5, 0.9]), np.zeros(3), np.zeros(2), 0.1)
