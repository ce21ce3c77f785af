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


# ---------------------------------------------------------------------------------------------
# clustered calibration prompts (groups): the group-valid rule (certkit._ranks.group_pac_threshold)
# ---------------------------------------------------------------------------------------------

def _clustered_failure_rates(eps: float, delta: float, n_groups: int, members: int, draws: int,
                             seed: int) -> tuple[float, float]:
    """Failure fractions (true miss rate of a fresh group's member > eps) of the group rule and of the per-prompt
    rule over ``draws`` calibration draws of clustered scores.

    Group g has a latent difficulty z_g ~ N(0, 1); its members' scores are p = Phi(2 + 1.5 z_g + 0.2 e), e ~ N(0, 1)
    (members of a group are alike: a hard act is missed in all its frames). The true miss rate of threshold t is the
    marginal P(p < t) = Phi((Phi^-1(t) - 2) / sqrt(1.5^2 + 0.2^2)) exactly (groups of equal size, members alike).
    """
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    scale = math.sqrt(1.5**2 + 0.2**2)
    labels = np.repeat(np.arange(n_groups), members)

    def miss(t: float) -> float:
        return 1.0 if t == math.inf else 0.0 if t == -math.inf else float(norm.cdf((norm.ppf(t) - 2.0) / scale))

    fail_group = fail_prompt = 0
    for _ in range(draws):
        z = np.repeat(rng.standard_normal(n_groups), members)
        p = norm.cdf(2.0 + 1.5 * z + 0.2 * rng.standard_normal(n_groups * members))
        fail_group += miss(calibrate_filter_threshold(p, eps, delta, groups=labels)) > eps
        fail_prompt += miss(calibrate_filter_threshold(p, eps, delta)) > eps
    return fail_group / draws, fail_prompt / draws


def test_group_rule_keeps_the_guarantee_on_clustered_prompts_where_the_per_prompt_rule_fails() -> None:
    """The guarantee of ``groups``: over calibration draws of groups, P(true miss rate > eps) <= delta (binomial
    tolerance). On the same draws the per-prompt rule (which treats the 4 alike members as 4 independent prompts)
    fails far more often than delta: the test can fail."""
    eps, delta, draws = 0.1, 0.1, 600
    group_rate, prompt_rate = _clustered_failure_rates(eps, delta, n_groups=60, members=4, draws=draws, seed=0)
    tol = 3 * math.sqrt(delta * (1 - delta) / draws)
    assert group_rate <= delta + tol, group_rate
    assert prompt_rate > delta + tol, prompt_rate


def test_group_rule_with_one_member_per_group_is_chernoffs_order_statistic() -> None:
    """Singleton groups: the threshold is the (k + 1)-th smallest score with Chernoff's allowance
    k = max{k : k/n < eps, exp(-n KL(k/n || eps)) <= delta}, which is <= pac_rank's binomial k*; so the group
    threshold is <= the per-prompt one (equal when the two allowances are equal)."""
    from certkit._ranks import kl_mean_admissible

    rng = np.random.default_rng(3)
    for n, eps, delta in ((300, 0.05, 0.05), (1000, 0.1, 0.05), (80, 0.2, 0.1), (59, 0.05, 0.05)):
        p = rng.uniform(size=n)
        k_kl = max(k for k in range(n) if kl_mean_admissible(k / n, n, eps, delta))
        k_bin = pac_rank(n, eps, delta)
        assert k_bin is not None and k_kl <= k_bin
        tau = calibrate_filter_threshold(p, eps, delta, groups=np.arange(n))
        assert tau == np.sort(p)[k_kl]
        assert tau <= calibrate_filter_threshold(p, eps, delta)
    # at M = 0 the Chernoff bound is exact: both rules need (1 - eps)^n <= delta (59 points at 0.05 / 0.05)
    with pytest.warns(UserWarning, match="too few"):
        assert calibrate_filter_threshold(rng.uniform(size=58), 0.05, 0.05, groups=np.arange(58)) == -math.inf


def test_group_rule_counts_each_group_once_whatever_its_size() -> None:
    """The mean is over groups: a group of 10 members with one miss weighs 1/10 of a group, and relabelling or
    permuting the prompts changes nothing."""
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 8, size=120)
    groups = np.repeat(np.arange(120), sizes)
    p = rng.uniform(size=len(groups))
    tau = calibrate_filter_threshold(p, 0.1, 0.1, groups=groups)
    m = np.bincount(groups, weights=p < tau) / sizes
    from certkit._ranks import kl_mean_admissible

    assert kl_mean_admissible(m.mean(), 120, 0.1, 0.1)
    above = np.sort(p[p > tau])[0]  # the next candidate is not admissible
    assert not kl_mean_admissible((np.bincount(groups, weights=p < above) / sizes).mean(), 120, 0.1, 0.1)
    perm = rng.permutation(len(p))
    names = np.array([f"act-{g}" for g in groups])
    assert calibrate_filter_threshold(p[perm], 0.1, 0.1, groups=names[perm]) == tau
    assert SafetyThreshold(epsilon=0.1, delta=0.1).calibrate(p, groups=list(groups)).threshold_ == tau


def test_kl_test_is_rigorous_against_exact_arithmetic() -> None:
    """``kl_mean_admissible`` True implies the exact inequality n KL(x || eps) >= log(1/delta) (50-digit mpmath)."""
    mpmath = pytest.importorskip("mpmath")
    from certkit._ranks import kl_mean_admissible

    mpmath.mp.dps = 50
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(400):
        n = int(rng.integers(20, 5000))
        eps, delta = float(rng.uniform(0.01, 0.3)), float(rng.uniform(0.01, 0.3))
        x = float(rng.uniform(0, eps))
        if kl_mean_admissible(x, n, eps, delta):
            X, E = mpmath.mpf(x), mpmath.mpf(eps)
            kl = (X * mpmath.log(X / E) if x > 0 else 0) + (1 - X) * mpmath.log((1 - X) / (1 - E))
            assert n * kl >= -mpmath.log(mpmath.mpf(delta))
            checked += 1
    assert checked > 50


def test_groups_bad_input_names_the_argument() -> None:
    p = np.linspace(0.01, 1.0, 100)
    with pytest.raises(ValueError, match=r"`groups`.*shape \(100,\)"):
        calibrate_filter_threshold(p, 0.1, 0.1, groups=np.arange(99))
    with pytest.raises(ValueError, match=r"`groups`.*NaN"):
        calibrate_filter_threshold(p, 0.1, 0.1, groups=np.r_[np.arange(99.0), np.nan])
    with pytest.raises(ValueError, match=r"`groups`.*None"):
        calibrate_filter_threshold(p, 0.1, 0.1, groups=[*range(99), None])
    with pytest.raises(ValueError, match=r"`groups`.*shape"):
        calibrate_filter_threshold(p, 0.1, 0.1, groups=np.array([]))
    with pytest.raises(TypeError, match=r"`groups`.*integer or string"):
        calibrate_filter_threshold(p, 0.1, 0.1, groups=np.arange(100) + 0.5)
    with pytest.raises(TypeError, match="`groups`"):
        calibrate_filter_threshold(p, 0.1, 0.1, groups="act")
    with pytest.raises(TypeError, match="`groups`"):
        SafetyThreshold().calibrate(p, groups=np.ones(100, dtype=bool))
    g = np.arange(100) // 4
    before = g.copy()
    calibrate_filter_threshold(p, 0.1, 0.1, groups=g)
    assert np.array_equal(g, before)  # inputs not mutated


def test_flag_and_calibrate_filter_refuse_bad_scores() -> None:
    # audit-inputs: flag("0.5") read the string as 0.5, flag(1.7) was accepted, and a filter returning one score
    # too few silently calibrated on fewer prompts
    st = SafetyThreshold(epsilon=0.1, delta=0.1).calibrate(np.random.default_rng(0).random(200))
    with pytest.raises(TypeError, match="`scores`"):
        st.flag("0.5")
    with pytest.raises(ValueError, match="`scores` to hold probabilities"):
        st.flag(np.array([0.2, 1.7]))

    class Short:
        threshold = 0.5

        def predict_proba(self, texts: list[str]) -> list[float]:
            return [0.9] * (len(texts) - 1)

    with pytest.raises(ValueError, match="`filter` to return one score per prompt"):
        SafetyThreshold(epsilon=0.5, delta=0.5).calibrate_filter(Short(), ["build a bomb"] * 10)
