"""Hypothesis property tests of the pure functions behind the guarantees (issue 13)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta, binom

from certify.prompts import num_subsequences
from certify.prompts.erase_and_check import _count_capped, _patterns
from certkit.errors import BudgetExceededError
from conformal import conformal_rank, pac_rank
from smoothing import clopper_pearson_lower, smoothed_radius

FAST = settings(max_examples=60, deadline=None)
alphas = st.fractions(min_value=Fraction(1, 1000), max_value=Fraction(999, 1000))


@FAST
@given(n=st.integers(1, 2000), alpha=alphas)
def test_conformal_rank_is_the_brute_force_rank(n: int, alpha: Fraction) -> None:
    # the smallest k with k >= (n + 1)(1 - alpha), found by counting in exact arithmetic
    k = next(k for k in itertools.count(0) if k >= (n + 1) * (1 - alpha))
    assert conformal_rank(n, alpha) == k


@FAST
@given(n=st.integers(1, 400), eps=st.floats(0.01, 0.5), delta=st.floats(0.001, 0.5))
def test_pac_rank_is_the_largest_feasible_count(n: int, eps: float, delta: float) -> None:
    k = pac_rank(n, eps, delta)
    feasible = [j for j in range(n + 1) if binom.cdf(j, n, eps) <= delta]
    assert k == (max(feasible) if feasible else None)


@FAST
@given(trials=st.integers(1, 500), data=st.data(), alpha=st.floats(1e-4, 0.5))
def test_clopper_pearson_lower_is_a_beta_quantile_in_unit_interval(trials: int, data: st.DataObject,
                                                                    alpha: float) -> None:
    k = data.draw(st.integers(0, trials))
    low = clopper_pearson_lower(k, trials, alpha)
    assert 0.0 <= low <= k / trials
    if k:  # coverage identity: P[Bin(n, low) >= k] = alpha, i.e. Beta(k, n - k + 1).cdf(low) = alpha
        assert math.isclose(beta.cdf(low, k, trials - k + 1), alpha, rel_tol=1e-6)
        assert math.isclose(binom.sf(k - 1, trials, low), alpha, rel_tol=1e-5, abs_tol=1e-12)
    if k < trials:  # monotone in the number of successes
        assert clopper_pearson_lower(k + 1, trials, alpha) >= low


@FAST
@given(p=st.floats(0.5, 1.0), q=st.floats(0.5, 1.0), sigma=st.floats(1e-3, 10.0))
def test_smoothed_radius_is_monotone_and_zero_at_half(p: float, q: float, sigma: float) -> None:
    lo, hi = sorted((p, q))
    assert 0.0 <= smoothed_radius(lo, sigma) <= smoothed_radius(hi, sigma)
    assert smoothed_radius(0.5, sigma) == 0.0


@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 9), d=st.integers(0, 5), k=st.integers(1, 4),
       mode=st.sampled_from(["suffix", "insertion", "infusion"]))
def test_budget_closed_form_equals_enumeration(n: int, d: int, k: int, mode: str) -> None:
    ids = tuple(range(n))  # distinct ids: every erasure pattern is a distinct sequence
    count = sum(1 for _ in _patterns(ids, mode, d, k))
    assert num_subsequences(n, mode, d, k) == count
    assert _count_capped(n, mode, d, k, math.inf) == count
    cap = max(count - 1, 0)  # a count past the cap is reported as > cap (never below it)
    assert (_count_capped(n, mode, d, k, cap) > cap) == (count > cap)


def test_kth_order_statistic_gives_coverage_on_a_grid() -> None:
    # conformal_rank(n, alpha) is the smallest rank whose order statistic covers >= 1 - alpha of n + 1
    for n in (9, 19, 99):
        for alpha in (0.05, 0.1, 0.2):
            k = conformal_rank(n, alpha)
            assert k / (n + 1) >= 1 - alpha - 1e-12 and (k - 1) / (n + 1) < 1 - alpha
    assert np.isfinite(smoothed_radius(0.999, 0.25))


@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 12), d=st.integers(0, 6), k=st.integers(1, 4),
       mode=st.sampled_from(["suffix", "insertion", "infusion"]), budget=st.integers(0, 400))
def test_budgeted_count_is_exact_or_refused_exactly_when_over_budget(n: int, d: int, k: int, mode: str,
                                                                     budget: int) -> None:
    exact = num_subsequences(n, mode, d, k)
    if exact <= budget:
        assert num_subsequences(n, mode, d, k, budget=budget) == exact
    else:
        with pytest.raises(BudgetExceededError, match=f"{budget:,}"):
            num_subsequences(n, mode, d, k, budget=budget)


@pytest.mark.parametrize("n, mode, d, k", [
    (10**12, "suffix", 10**12, 1), (10**12, "insertion", 10**12, 1), (10**12, "insertion", 10**12, 7),
    (10**12, "infusion", 10**12, 1), (10**6, "infusion", 10**5, 1), (10**4, "insertion", 100, 10),
    (10**5, "infusion", 10**5, 1),
])
def test_num_subsequences_on_huge_arguments_returns_or_refuses_never_hangs(n: int, mode: str, d: int, k: int) -> None:
    # closed forms (suffix, one insertion block, 2^n) are returned; a count whose exact computation would take
    # hours is refused; with a budget, the refusal names the budget (decided from a count capped at it)
    try:
        count = num_subsequences(n, mode, d, k)
    except BudgetExceededError as e:
        assert "elementary steps" in str(e)
    else:
        if mode == "suffix":
            assert count == d + 1
        if mode == "insertion" and k == 1:
            assert count == 1 + d * (n + 1) - d * (d + 1) // 2
        if mode == "infusion" and d >= n:
            assert count == 2**n
    with pytest.raises(BudgetExceededError, match="exceeds the budget of 100,000"):
        num_subsequences(n, mode, d, k, budget=100_000)
