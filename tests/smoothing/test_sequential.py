"""Anytime-valid certification: the confidence sequence holds at every time, the procedure at its stopping time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import beta, binom, norm
from torch import nn

from smoothing import (
    Smooth,
    certify_sequential,
    certify_sequential_batch,
    confidence_sequence,
    mixture_log_wealth,
)
from smoothing.sequential import cannot_pass_by_budget, one_sided_log_wealth, round_schedule, stopping_rule

SIGMA = 0.25


def linear_model(dim: int = 4) -> nn.Module:
    """f(x) = argmax[x_0, 0]; P[f(x + δ) = 0] = Φ(x_0 / σ), exact radius of g is |x_0|."""
    model = nn.Linear(dim, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, 0] = 1.0
    return model.eval()


def test_confidence_sequence_matches_root_of_the_wealth() -> None:
    alpha = 1e-3
    for s, t in [(5, 10), (95, 100), (9_990, 10_000), (1, 1000)]:
        lower, upper = confidence_sequence(s, t, alpha)
        f = lambda p, s=s, t=t: float(mixture_log_wealth(s, t, p)) - math.log(1 / alpha)  # noqa: E731
        assert float(lower) == pytest.approx(brentq(f, 1e-15, s / t, xtol=1e-15), abs=1e-12)
        assert float(upper) == pytest.approx(brentq(f, s / t, 1 - 1e-15, xtol=1e-15), abs=1e-12)
        assert float(lower) <= s / t <= float(upper)
    lower, upper = confidence_sequence(np.array([0, 7]), np.array([7, 7]), alpha)
    assert lower[0] == 0.0 and upper[1] == 1.0
    # With all successes the mixture gives L_t = exp(-(log(1/α) + log(B(1/2,1/2)/B(t+1/2,1/2))) / t).
    t = 1000
    bound = float(confidence_sequence(t, t, alpha)[0][()])
    assert mixture_log_wealth(t, t, bound) == pytest.approx(math.log(1 / alpha), abs=1e-9)


def test_confidence_sequence_is_wider_than_fixed_n_clopper_pearson() -> None:
    # Time-uniform validity costs width: L_t is below the fixed-n bound at the same alpha.
    for s, t in [(95, 100), (99_000, 100_000), (100_000, 100_000)]:
        lower, _ = confidence_sequence(s, t, 1e-3)
        assert float(lower) < beta.ppf(1e-3, s, t - s + 1)


def test_wealth_crosses_one_over_alpha_at_most_alpha_often_over_all_times() -> None:
    # Ville: P[∃t <= T: M_t(p) >= 1/α] <= α. 10^4 Bernoulli streams of length 400, checked at every t.
    alpha, streams, horizon = 0.05, 10_000, 400
    rng = np.random.default_rng(0)
    for p in (0.3, 0.9):
        s = np.cumsum(rng.random((streams, horizon)) < p, axis=1)
        t = np.arange(1, horizon + 1)
        crossed = (mixture_log_wealth(s, t, p) >= math.log(1 / alpha)).any(axis=1)
        assert crossed.mean() <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / streams)


def _simulate(p: float, target: float, alpha: float, n_max: int, rule: str, seed: int) -> np.ndarray:
    """Run the stopping rule on 10^4 Bernoulli(p) streams at the round checkpoints; return L at stopping."""
    rng = np.random.default_rng(seed)
    checkpoints = round_schedule(64, 1.25, n_max)
    streams = 10_000
    s = np.zeros(streams)
    stopped_at = np.full(streams, np.nan)
    active = np.ones(streams, dtype=bool)
    previous = 0
    for t in checkpoints:
        s = s + rng.binomial(t - previous, p, size=streams)
        previous = t
        if rule == "confidence-sequence":
            lower, upper = confidence_sequence(s, t, alpha)
            done = stopping_rule(lower, upper, t, n_max, target)
        else:  # naive: a fixed-n Clopper-Pearson bound, peeked at after every round
            lower = np.where(s > 0, beta.ppf(alpha, np.maximum(s, 1), t - s + 1), 0.0)
            done = (lower >= target) | (t >= n_max)
        newly = active & done
        stopped_at[newly] = lower[newly]
        active &= ~done
    return stopped_at


def test_sequential_failure_rate_at_most_alpha_at_the_stopping_time() -> None:
    # The worst case for certification: p equals the target probability, so the procedure is wrong
    # exactly when it certifies (L_τ >= target = p). Its failure rate must be <= alpha; the naive
    # procedure (Clopper-Pearson re-checked every round) fails far more often, which shows the test has power.
    alpha, n_max = 0.05, 5_000
    p = target = float(norm.cdf(0.25 / SIGMA))
    tolerance = 3 * math.sqrt(alpha * (1 - alpha) / 10_000)
    lower = _simulate(p, target, alpha, n_max, "confidence-sequence", seed=1)
    assert not np.isnan(lower).any()
    assert (lower > p).mean() <= alpha + tolerance
    naive = _simulate(p, target, alpha, n_max, "naive", seed=1)
    assert (naive > p).mean() > alpha + tolerance


def test_stopping_rule() -> None:
    lower, upper = np.array([0.9, 0.6, 0.2, 0.6]), np.array([0.99, 0.95, 0.45, 0.7])
    assert stopping_rule(lower, upper, 100, 1000, 0.85).tolist() == [True, False, True, True]
    assert stopping_rule(lower, upper, 100, 1000, None).tolist() == [False, False, True, False]
    assert stopping_rule(lower, upper, 1000, 1000, None).all()


def test_round_schedule() -> None:
    assert round_schedule(64, 2.0, 1000) == [64, 128, 256, 512, 1000]
    assert round_schedule(10, 1.01, 13) == [10, 11, 12, 13]
    assert round_schedule(500, 1.5, 100) == [100]


# -- on a model ------------------------------------------------------------------------------------


def test_certifies_requested_radius_with_few_samples_and_soundly() -> None:
    x = torch.zeros(4)
    x[0] = 0.5  # p_A = Φ(2) ≈ 0.977; exact radius 0.5
    smooth = Smooth(linear_model(), 2, SIGMA)
    cert = certify_sequential(smooth, x, radius=0.25, alpha=1e-3, n_max=100_000, generator=torch.Generator().manual_seed(0))
    assert cert.label == 0 and not cert.abstained
    assert 0.25 <= cert.radius <= 0.5
    assert cert.samples < 2_000  # Cohen would spend 100,100
    assert cert.samples == 100 + sum(cert.counts)


def test_budget_mode_constant_model_reaches_the_mixture_bound() -> None:
    x = torch.zeros(4)
    x[0] = 100.0  # f = 0 on every draw
    smooth = Smooth(linear_model(), 2, SIGMA)
    cert = certify_sequential(smooth, x, n_max=10_000, generator=torch.Generator().manual_seed(0))
    expected = SIGMA * norm.ppf(float(confidence_sequence(10_000, 10_000, 1e-3)[0][()]))
    assert cert.samples == 10_100 and cert.radius == pytest.approx(expected, rel=1e-12)


def test_tie_abstains_early_and_batches_are_reproducible() -> None:
    xs = torch.zeros(3, 4)
    xs[:, 0] = torch.tensor([0.0, 1.0, -1.0])
    smooth = Smooth(linear_model(), 2, SIGMA)
    run = lambda seed: certify_sequential_batch(  # noqa: E731
        smooth, xs, radius=0.5, n_max=100_000, batch_size=4096, generator=torch.Generator().manual_seed(seed)
    )
    a, b = run(3), run(3)
    assert a == b
    assert a[0].abstained and a[0].label is None and a[0].samples < 100_000
    assert [c.label for c in a[1:]] == [0, 1] and all(c.radius >= 0.5 for c in a[1:])


def test_guarantee_on_a_model_over_many_inputs() -> None:
    # 2,000 independent runs through the real sampler on the half-space f(x) = [x_0 > 0] at p_A = target
    # (exact radius 0.25): wrong certificates (wrong class or radius > exact) at most alpha often.
    alpha, trials = 0.05, 2_000
    exact = 0.25
    x = torch.zeros(4)
    x[0] = exact
    smooth = Smooth(linear_model(), 2, SIGMA)
    certs = certify_sequential_batch(
        smooth, x.repeat(trials, 1), radius=exact, alpha=alpha, n0=10, n_max=3_000, batch_size=100_000,
        generator=torch.Generator().manual_seed(4),
    )
    wrong = sum(c.label is not None and (c.label != 0 or c.radius > exact) for c in certs)
    assert wrong <= int(binom.isf(1e-4, trials, alpha))
    assert sum(c.label == 0 for c in certs) > 0.5 * trials  # power: most runs certify some radius


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"radius": -0.1}, "radius"), ({"growth": 1.0}, "growth"), ({"n_max": 0}, "n_max"),
     ({"first_round": 0}, "first_round"), ({"alpha": 1.5}, "alpha"), ({"n0": 0}, "n0"), ({"batch_size": 0}, "batch_size")],
)
def test_bad_arguments(kwargs: dict[str, float], name: str) -> None:
    smooth = Smooth(linear_model(), 2, SIGMA)
    with pytest.raises((ValueError, TypeError), match=f"`{name}`"):
        certify_sequential(smooth, torch.zeros(4), **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
def test_digits_sequential_matches_cohen_with_fewer_samples() -> None:
    # Small version of the benchmark claim (50 test images, budget 10^4 instead of 10^5).
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_base_model
    from smoothing import certified_accuracy, certify_dataset

    smooth = Smooth(digits_base_model(SIGMA), 10, SIGMA, input_shape=(1, 8, 8))
    test = load_digits_split("test")
    xs, ys = test.images[::8], test.labels[::8]
    cohen = certify_dataset(smooth, xs, ys, n0=100, n=10_000, alpha=1e-3, batch_size=2000, progress=False)
    seq = certify_dataset(
        smooth, xs, ys, procedure="sequential", radius=0.25, alpha=1e-3, n_max=10_000, batch_size=4096,
        inputs_per_task=50, progress=False,
    )
    assert certified_accuracy(seq, [0.25])[0] >= certified_accuracy(cohen, [0.25])[0] - 0.04
    assert np.mean([r.samples for r in seq]) <= np.mean([r.samples for r in cohen]) / 5


# -- a given label (no selection draws), finer schedules, randomised Clopper-Pearson -------------------


def _stream_failures(
    p_top: float, target: float, alpha: float, n_max: int, n0: int, given: bool, seed: int, one_sided: bool = False,
    budget: bool = False, n0_min: int | None = None,
) -> float:
    """10^4 two-class streams, p(class 0) = p_top >= 1/2, checked on a fine schedule (growth 1.1).

    Without a label, n0 selection draws choose the class whose stream is then tested; with a label,
    class 0 is given; with ``n0_min``, the adaptive selection of ``certify_sequential_batch`` (the first
    n0_min draws decide when unanimous, else all n0). A certificate fails when its L_τ exceeds the true
    probability of its class (the wrong class, or class 0 at a radius above the exact one when p_top = target)."""
    rng = np.random.default_rng(seed)
    streams = 10_000
    if given:
        chosen_p = np.full(streams, p_top)
    elif n0_min is None:
        chosen_p = np.where(rng.binomial(n0, p_top, streams) * 2 >= n0, p_top, 1 - p_top)
    else:
        first = rng.binomial(n0_min, p_top, streams)
        total = first + rng.binomial(n0 - n0_min, p_top, streams)  # used only when the first draws disagree
        class0 = np.where(first == n0_min, True, np.where(first == 0, False, total * 2 >= n0))
        chosen_p = np.where(class0, p_top, 1 - p_top)
    s = np.zeros(streams)
    lower_at_stop = np.full(streams, np.nan)
    active = np.arange(streams)
    previous = 0
    for t in round_schedule(16, 1.1, n_max):
        s[active] += rng.binomial(t - previous, chosen_p[active])
        previous = t
        lower, upper = confidence_sequence(s[active], t, alpha)
        if one_sided:  # certifies "p >= target" only; the certificate's p_lower is then the target
            lower = np.where(one_sided_log_wealth(s[active], t, target) >= math.log(1 / alpha), target, 0.0)
        done = stopping_rule(lower, upper, t, n_max, target)
        if budget:
            done |= cannot_pass_by_budget(s[active], t, upper, n_max, target, alpha,
                                          "one-sided" if one_sided else "confidence-sequence")
        lower_at_stop[active[done]] = lower[done]
        active = active[~done]
    assert len(active) == 0
    return float((lower_at_stop > chosen_p).mean())


@pytest.mark.slow
@pytest.mark.parametrize("given", [True, False], ids=["label-given", "selected"])
def test_failure_rate_at_most_alpha_at_the_stopping_time_with_and_without_a_label(given: bool) -> None:
    alpha, tolerance = 0.05, 3 * math.sqrt(0.05 * 0.95 / 10_000)
    target = float(norm.cdf(0.25 / SIGMA))
    # p_A = target: certifying radius 0.25 is exactly wrong. With few selection draws and p_A near 1/2
    # the selection sometimes picks the minority class, which must then not be certified.
    assert _stream_failures(target, target, alpha, 2_000, 10, given, seed=11) <= alpha + tolerance
    assert _stream_failures(0.55, None, alpha, 2_000, 3, given, seed=12) <= alpha + tolerance  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("given", [True, False], ids=["label-given", "selected"])
@pytest.mark.parametrize("one_sided", [True, False], ids=["one-sided", "confidence-sequence"])
def test_budget_futility_keeps_the_failure_rate_at_most_alpha(given: bool, one_sided: bool) -> None:
    # Budget futility is only a stopping rule: at p_A = target (certifying the radius is exactly wrong)
    # the failure rate at the stopping time stays <= alpha over 10^4 streams.
    alpha, tolerance = 0.05, 3 * math.sqrt(0.05 * 0.95 / 10_000)
    target = float(norm.cdf(0.25 / SIGMA))
    assert _stream_failures(target, target, alpha, 2_000, 10, given, seed=13, one_sided=one_sided,
                            budget=True) <= alpha + tolerance


@pytest.mark.slow
@pytest.mark.parametrize("one_sided", [True, False], ids=["one-sided", "confidence-sequence"])
def test_adaptive_selection_keeps_the_failure_rate_at_most_alpha(one_sided: bool) -> None:
    # n0_min = 2 of n0 = 10: at p = 0.55 the two first draws often name the minority class, which must
    # then not be certified; at p = target certifying the radius is exactly wrong. 10^4 streams each.
    alpha, tolerance = 0.05, 3 * math.sqrt(0.05 * 0.95 / 10_000)
    target = float(norm.cdf(0.25 / SIGMA))
    assert _stream_failures(target, target, alpha, 2_000, 10, False, seed=14, one_sided=one_sided, budget=True,
                            n0_min=2) <= alpha + tolerance
    if not one_sided:
        assert _stream_failures(0.55, None, alpha, 2_000, 10, False, seed=15, n0_min=2) <= alpha + tolerance  # type: ignore[arg-type]


def test_adaptive_selection_skips_most_selection_draws_on_clear_inputs() -> None:
    smooth = Smooth(linear_model(), 2, SIGMA)
    xs = torch.zeros(3, 4)
    xs[:, 0] = torch.tensor([1.0, -1.0, 0.0])  # clear class 0, clear class 1, a tie
    kwargs = {"radius": 0.25, "n_max": 2_000, "batch_size": 100_000, "first_round": 16, "growth": 1.05}
    full = certify_sequential_batch(smooth, xs, generator=torch.Generator().manual_seed(8), **kwargs)  # type: ignore[arg-type]
    fast = certify_sequential_batch(smooth, xs, n0_min=8, generator=torch.Generator().manual_seed(8), **kwargs)  # type: ignore[arg-type]
    assert [c.label for c in fast[:2]] == [0, 1] == [c.label for c in full[:2]]
    for c, f in zip(full[:2], fast[:2]):  # 8 selection draws instead of 100, the same estimation draws
        assert c.samples == 100 + sum(c.counts) and f.samples == 8 + sum(f.counts)
    # The tie: the 8 first draws disagree (all but surely), so all 100 selection draws are spent.
    assert fast[2].abstained and fast[2].samples == 100 + sum(fast[2].counts)
    # Without n0_min the result is unchanged (the same draws as before the option existed).
    assert full == certify_sequential_batch(smooth, xs, n0_min=None, generator=torch.Generator().manual_seed(8), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`n0_min`"):
        certify_sequential(smooth, xs[0], n0_min=0)


def test_budget_futility_gives_up_on_hopeless_inputs_sooner() -> None:
    # p_0 = Φ(0.2 / σ), just below the target Φ(0.25 / σ): never certifiable at 0.25, and within a
    # budget of 5,000 draws not distinguishable from it quickly either; the budget rule stops early.
    smooth = Smooth(linear_model(), 2, SIGMA)
    x = torch.zeros(4)
    x[0] = 0.2
    xs, labels = x.repeat(20, 1), torch.zeros(20, dtype=torch.long)
    kwargs = {"radius": 0.25, "alpha": 1e-3, "n_max": 5_000, "batch_size": 100_000, "labels": labels,
              "test": "one-sided", "first_round": 16, "growth": 1.05}
    plain = certify_sequential_batch(smooth, xs, generator=torch.Generator().manual_seed(1), **kwargs)  # type: ignore[arg-type]
    budget = certify_sequential_batch(smooth, xs, budget_futility=True, generator=torch.Generator().manual_seed(1),
                                      **kwargs)  # type: ignore[arg-type]
    assert all(c.abstained for c in plain + budget)
    assert np.mean([c.samples for c in budget]) < 0.5 * np.mean([c.samples for c in plain])
    # Far above the target: certified as before, at the same cost.
    x[0] = 1.0
    easy = certify_sequential(smooth, x, radius=0.25, label=0, test="one-sided", budget_futility=True,
                              generator=torch.Generator().manual_seed(2))
    assert easy.label == 0 and easy.radius == 0.25
    with pytest.raises(ValueError, match="`radius`"):
        certify_sequential(smooth, x, label=0, budget_futility=True)


def test_given_label_skips_selection_and_certifies_end_to_end_soundly() -> None:
    alpha, exact, trials = 0.05, 0.25, 1000
    x = torch.zeros(4)
    x[0] = exact  # p_0 = Φ(1) = target: any certificate at radius > 0.25 is wrong
    smooth = Smooth(linear_model(), 2, SIGMA)
    certs = certify_sequential_batch(
        smooth, x.repeat(trials, 1), radius=exact, alpha=alpha, n_max=1_000, batch_size=100_000, growth=1.05,
        first_round=16, labels=torch.zeros(trials, dtype=torch.long), generator=torch.Generator().manual_seed(5),
    )
    assert sum(c.label is not None and c.radius > exact for c in certs) <= int(binom.isf(1e-4, trials, alpha))
    assert all(c.samples == sum(c.counts) for c in certs)  # no selection draws
    # Far from the boundary: certified with no selection cost; the wrong label is never certified.
    x[0] = 1.0
    right = certify_sequential(smooth, x, radius=0.25, label=0, generator=torch.Generator().manual_seed(6))
    wrong = certify_sequential(smooth, x, radius=0.25, label=1, generator=torch.Generator().manual_seed(6))
    assert right.label == 0 and right.radius >= 0.25 and right.samples < 100
    assert wrong.abstained and wrong.label is None and wrong.samples < 100
    with pytest.raises(ValueError, match="`labels`"):
        certify_sequential_batch(smooth, x[None], radius=0.25, labels=[2])
    with pytest.raises(ValueError, match="`labels`"):
        certify_sequential_batch(smooth, x[None], radius=0.25, labels=[0, 1])


def test_randomized_clopper_pearson_has_exact_level_at_fixed_n_only() -> None:
    from smoothing import randomized_clopper_pearson_lower

    alpha, n, p, draws = 0.05, 40, 0.8, 100_000
    rng = np.random.default_rng(7)
    k, u = rng.binomial(n, p, draws), rng.random(draws)
    # The bound exceeds p iff the randomised p-value P_p[X > k] + u P_p[X = k] is below alpha (it is
    # increasing in p); checked on a few draws, then used vectorised.
    exceeds = lambda k, n, u: binom.sf(k, n, p) + u * binom.pmf(k, n, p) < alpha  # noqa: E731
    for a, b in zip(k[:200], u[:200]):
        assert (randomized_clopper_pearson_lower(int(a), n, alpha, float(b)) > p) == exceeds(a, n, b)
        assert randomized_clopper_pearson_lower(int(a), n, alpha, float(b)) >= beta.ppf(alpha, max(a, 1), n - a + 1) - 1e-12
    ordinary = beta.ppf(alpha, np.maximum(k, 1), n - k + 1)
    sd = math.sqrt(alpha * (1 - alpha) / draws)
    assert abs(exceeds(k, n, u).mean() - alpha) <= 4 * sd  # exact level alpha
    assert (ordinary > p).mean() < alpha - 4 * sd  # the ordinary bound is conservative here
    # Re-checked as draws arrive (after every 10 draws up to 200) it is no longer valid.
    streams = 10_000
    hits = np.cumsum(rng.random((streams, 200)) < p, axis=1)
    uu = rng.random(streams)
    exceeded = np.zeros(streams, dtype=bool)
    for t in range(10, 201, 10):
        exceeded |= exceeds(hits[:, t - 1], t, uu)
    assert exceeded.mean() > alpha + 4 * math.sqrt(alpha * (1 - alpha) / streams)


def test_randomized_certify_is_sound_and_reproducible() -> None:
    alpha, trials = 0.05, 2000
    exact = SIGMA * float(norm.ppf(0.9))
    x = torch.zeros(4)
    x[0] = exact
    smooth = Smooth(linear_model(), 2, SIGMA)
    certs = smooth.certify_batch(x.repeat(trials, 1), 10, 200, alpha, 100_000, torch.Generator().manual_seed(8),
                                 randomized=True)
    assert sum(c.label is not None and (c.label != 0 or c.radius > exact) for c in certs) <= int(
        binom.isf(1e-4, trials, alpha))
    a = smooth.certify(x, 10, 200, alpha, 1000, torch.Generator().manual_seed(9), randomized=True)
    b = smooth.certify(x, 10, 200, alpha, 1000, torch.Generator().manual_seed(9), randomized=True)
    plain = smooth.certify(x, 10, 200, alpha, 1000, torch.Generator().manual_seed(9))
    assert a == b and a.counts == plain.counts and a.radius >= plain.radius


def test_one_sided_wealth_matches_the_integral_and_its_procedure_certifies_the_radius_sooner() -> None:
    from scipy.integrate import quad

    p0 = 0.9
    for k, t in [(10, 10), (95, 100), (80, 100), (0, 5)]:
        integral = quad(lambda q, k=k, t=t: (q / p0) ** k * ((1 - q) / (1 - p0)) ** (t - k), p0, 1, epsrel=1e-12)[0]
        assert float(one_sided_log_wealth(k, t, p0)) == pytest.approx(math.log(integral / (1 - p0)), rel=1e-9)
    # Under H0 (p <= p0) the wealth is a supermartingale: its expectation after t draws is <= 1.
    for p in (0.5, 0.9):
        k = np.arange(51)
        assert float((binom.pmf(k, 50, p) * np.exp(one_sided_log_wealth(k, 50, 0.9))).sum()) <= 1 + 1e-9
    x = torch.zeros(4)
    x[0] = 2.0  # p_0 ≈ 1
    smooth = Smooth(linear_model(), 2, SIGMA)
    kwargs = {"radius": 0.5, "label": 0, "first_round": 16, "growth": 1.05}
    cs = certify_sequential(smooth, x, generator=torch.Generator().manual_seed(0), **kwargs)  # type: ignore[arg-type]
    one = certify_sequential(smooth, x, test="one-sided", generator=torch.Generator().manual_seed(0), **kwargs)  # type: ignore[arg-type]
    assert one.label == cs.label == 0 and one.radius == 0.5 and cs.radius >= 0.5
    assert one.samples < cs.samples
    assert one.p_lower == pytest.approx(norm.cdf(2.0))
    with pytest.raises(ValueError, match="`radius`"):
        certify_sequential(smooth, x, test="one-sided")
    with pytest.raises(ValueError, match="`test`"):
        certify_sequential(smooth, x, radius=0.5, test="two-sided")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`futility`"):
        certify_sequential(smooth, x, radius=0.5, futility=0.0)
