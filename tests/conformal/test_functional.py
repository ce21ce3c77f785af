import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.stats import binom

from conformal import conformal_quantile, conformal_rank, pac_quantile, pac_rank, scores


def synthetic(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(n, 10, generator=g, dtype=torch.float64)
    probs = torch.softmax(logits, -1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    return probs, labels


def test_reference_thresholds_n1000() -> None:
    p, y = synthetic(1000)
    assert conformal_quantile(scores.thr(p, y), 0.1) == 0.9385606794511547
    # APS agrees with TorchCP/MAPIE/puncc/crepes up to the order of float64 summation (a few ulps).
    assert conformal_quantile(scores.aps(p, y), 0.1) == pytest.approx(0.9393570808317159, rel=1e-14)


def test_reference_thresholds_small_n() -> None:
    p, y = synthetic(9)
    assert conformal_quantile(scores.thr(p, y), 0.1) == 0.6213265209567141
    p, y = synthetic(8)
    with pytest.warns(UserWarning, match="too few"):
        assert conformal_quantile(scores.thr(p, y), 0.1) == math.inf


def test_pac_reference() -> None:
    p, y = synthetic(1000)
    assert pac_rank(1000, 0.1, 0.05) == 84
    assert pac_quantile(scores.thr(p, y), 0.1, 0.05) == pytest.approx(0.9488187822, abs=5e-11)


def test_rank_is_exact_where_floats_are_not() -> None:
    assert conformal_rank(999, 0.059) == 941
    assert math.ceil((999 + 1) * (1 - 0.059)) == 942  # the float trap this guards against
    mismatches = 0
    for a in range(1, 500):
        alpha = a / 1000
        for n in range(1, 400):
            exact = math.ceil((n + 1) * (1 - Fraction(a, 1000)))
            assert conformal_rank(n, alpha) == exact
            mismatches += exact != math.ceil((n + 1) * (1 - alpha))
    assert mismatches > 0


def test_pac_rank_matches_definition() -> None:
    for n in [1, 5, 30, 100, 1000]:
        for eps in [0.01, 0.05, 0.1, 0.3]:
            for delta in [0.01, 0.05, 0.2]:
                cdf = binom.cdf(np.arange(n + 1), n, eps)
                feasible = np.nonzero(cdf <= delta)[0]
                expected = int(feasible.max()) if len(feasible) else None
                assert pac_rank(n, eps, delta) == expected


def test_pac_infeasible_is_inf() -> None:
    with pytest.warns(UserWarning, match="too few"):
        assert pac_quantile(np.linspace(0, 1, 10), 0.01, 0.05) == math.inf


def test_quantile_numpy_and_torch_agree() -> None:
    s = np.random.default_rng(1).random(1001)
    assert conformal_quantile(s, 0.2) == conformal_quantile(torch.from_numpy(s), 0.2)
    assert conformal_quantile(s, 0.2) == np.sort(s)[conformal_rank(1001, 0.2) - 1]


def test_quantile_beyond_torch_quantile_limit() -> None:
    n = 2**24 + 3  # torch.quantile refuses inputs this large
    s = torch.rand(n, generator=torch.Generator().manual_seed(0))
    k = conformal_rank(n, 0.1)
    assert conformal_quantile(s, 0.1) == float(torch.kthvalue(s, k).values)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_alpha_outside_unit_interval(alpha: float) -> None:
    with pytest.raises(ValueError, match="`alpha`"):
        conformal_quantile(np.ones(10), alpha)


@pytest.mark.parametrize("eps,delta,name", [(0.0, 0.1, "epsilon"), (0.1, 1.0, "delta")])
def test_pac_bad_levels(eps: float, delta: float, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        pac_quantile(np.ones(10), eps, delta)


def test_bad_scores() -> None:
    with pytest.raises(ValueError, match="empty"):
        conformal_quantile(np.array([]), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        conformal_quantile(np.array([0.1, np.nan]), 0.1)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        conformal_quantile(np.ones((3, 2)), 0.1)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        conformal_quantile([0.1, 0.2], 0.1)  # type: ignore[arg-type]


def test_no_warning_when_enough_points() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conformal_quantile(np.ones(9), 0.1)
