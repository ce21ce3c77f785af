"""PAC threshold for a safety filter: recall >= 1 - epsilon with probability >= 1 - delta."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from certkit.errors import NotCalibratedError
from conformal.functional import pac_rank
from conformal.safety_threshold import SafetyThreshold, calibrate_filter_threshold


def _failure_rate(rule, eps: float, n: int, draws: int, seed: int) -> float:
    """Fraction of calibration draws whose threshold has true recall < 1 - eps.

    Scores of harmful prompts ~ Beta(5, 1) (a filter that is mostly confident); recall of
    threshold t is P(p >= t) = 1 - t^5 exactly.
    """
    rng = np.random.default_rng(seed)
    fails = 0
    for _ in range(draws):
        t = rule(rng.beta(5.0, 1.0, size=n))
        recall = 1.0 if t == -math.inf else 1.0 - max(t, 0.0) ** 5
        fails += recall < 1.0 - eps
    return fails / draws


def test_pac_guarantee_holds_over_calibration_draws() -> None:
    eps, delta, n, draws = 0.1, 0.1, 200, 1500
    rate = _failure_rate(lambda p: calibrate_filter_threshold(p, eps, delta), eps, n, draws, seed=0)
    # Binomial tolerance: 3 standard deviations of the failure fraction at rate delta.
    assert rate <= delta + 3 * math.sqrt(delta * (1 - delta) / draws)


def test_naive_quantile_violates_the_guarantee() -> None:
    """The test has power: the plain empirical eps-quantile fails far more often than delta."""
    eps, delta, n, draws = 0.1, 0.1, 200, 1500
    naive = _failure_rate(lambda p: float(np.quantile(p, eps)), eps, n, draws, seed=0)
    assert naive > delta + 3 * math.sqrt(delta * (1 - delta) / draws)


def test_threshold_is_the_pac_order_statistic() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(size=300)
    k = pac_rank(300, 0.05, 0.05)
    assert k is not None and binom.cdf(k, 300, 0.05) <= 0.05
    tau = calibrate_filter_threshold(p, 0.05, 0.05)
    assert tau == np.sort(p)[k]  # the (k+1)-th smallest score
    assert int((p < tau).sum()) == k  # exactly k* calibration misses


def test_exact_on_ties_and_extremes() -> None:
    p = np.array([0.0, 1.0, 1.0, 0.3, 0.3, 0.3] * 50)
    tau = calibrate_filter_threshold(p, 0.5, 0.1)
    assert tau in set(p.tolist())
    assert (p >= tau).mean() >= 0.5


def test_too_few_scores_flags_everything() -> None:
    with pytest.warns(UserWarning, match="too few"):
        assert calibrate_filter_threshold(np.array([0.9, 0.8]), 0.01, 0.01) == -math.inf


def test_class_and_bad_input() -> None:
    st = SafetyThreshold(epsilon=0.1, delta=0.1)
    with pytest.raises(NotCalibratedError):
        st.flag(np.array([0.5]))
    st.calibrate(np.linspace(0.01, 1.0, 100))
    assert st.threshold_ is not None
    assert st.flag(np.array([st.threshold_, st.threshold_ - 1e-9])).tolist() == [True, False]
    with pytest.raises(ValueError, match="epsilon"):
        SafetyThreshold(epsilon=1.5)
    with pytest.raises(ValueError, match="delta"):
        calibrate_filter_threshold(np.array([0.5] * 10), 0.1, 0.0)
    with pytest.raises(ValueError, match="harmful_scores"):
        calibrate_filter_threshold(np.array([0.5, 1.5]), 0.1, 0.1)
    with pytest.raises(ValueError, match="harmful_scores"):
        calibrate_filter_threshold(np.array([]), 0.1, 0.1)


def test_calibrate_filter_sets_threshold() -> None:
    class F:
        threshold = 0.5

        def predict_proba(self, texts: list[str]) -> np.ndarray:
            return np.array([len(t) / 100 for t in texts])

    f = SafetyThreshold(epsilon=0.2, delta=0.2).calibrate_filter(F(), ["x" * i for i in range(1, 60)])
    assert f.threshold < 0.5 and f.threshold in {i / 100 for i in range(1, 60)}
