"""Anytime-valid certification for randomized smoothing with a confidence sequence.

Cohen's CERTIFY spends a fixed n = 100,000 draws on every input, although most inputs are decided
after a few hundred: an input with p_A = 1 is certified at radius 0.5 (σ = 0.25) after about 500
draws. This module samples in rounds of growing size and stops as soon as the outcome is decided,
using a confidence sequence for p_A, which stays valid at a data-dependent stopping time (Voráček,
"Treatment of Statistical Estimation Problems in Randomized Smoothing for
Adversarial Robustness", NeurIPS 2024, arXiv 2406.17830;
Howard et al., "Time-uniform, nonparametric, nonasymptotic confidence sequences", AoS 2021).

The confidence sequence is the beta-binomial mixture (Robbins 1970): for a Beta(a, b) prior,

    M_t(p) = B(a + S_t, b + t - S_t) / (B(a, b) p^S_t (1 - p)^(t - S_t))

is a nonnegative martingale with mean 1 under X_i ~ Bernoulli(p), so by Ville's inequality
P[∃t: M_t(p) >= 1/α] <= α, and C_t = {p : M_t(p) < 1/α} covers p at every t simultaneously with
probability >= 1 - α. log M_t is convex in p, so C_t = (L_t, U_t) is an interval. One two-sided
mixture bounds both ends with a single application of Ville's inequality, so the threshold is log(1/α)
(two separate one-sided tests would each need log(2/α)). The default prior is Krichevsky-Trofimov,
Beta(1/2, 1/2). Only L_t is a claim; U_t only decides when to stop, and any stopping rule keeps the
guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from scipy.special import betaln, xlog1py, xlogy
from scipy.stats import beta as beta_dist

from certkit._validation import check_instance, check_nonnegative, check_positive_int, check_probability
from smoothing.cohen import Certificate, Smooth, _generator_for, sample_counts

__all__ = [
    "cannot_pass_by_budget",
    "certify_sequential",
    "certify_sequential_batch",
    "confidence_sequence",
    "mixture_log_wealth",
    "one_sided_log_wealth",
    "round_schedule",
    "stopping_rule",
]

KT_PRIOR = (0.5, 0.5)
Test = Literal["confidence-sequence", "one-sided"]


def mixture_log_wealth(
    successes: np.ndarray | int, trials: np.ndarray | int, p: np.ndarray | float, prior: tuple[float, float] = KT_PRIOR
) -> np.ndarray:
    """log M_t(p) of the beta-binomial mixture martingale, elementwise over broadcast arrays.

    Under X_i ~ Bernoulli(p), exp of this is a nonnegative martingale in t with mean 1, so
    P[∃t: log M_t(p) >= log(1/α)] <= α (Ville's inequality).
    """
    a, b = prior
    s, t = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return np.asarray(betaln(a + s, b + t - s) - betaln(a, b) - xlogy(s, p) - xlog1py(t - s, -p))


def one_sided_log_wealth(successes: np.ndarray | int, trials: np.ndarray | int, p0: float) -> np.ndarray:
    """log W_t of the one-sided test of H0: p <= p0 against p > p0, elementwise.

    W_t = 1/(1 - p0) ∫_{p0}^1 (q/p0)^S_t ((1 - q)/(1 - p0))^(t - S_t) dq, the likelihood ratio mixed over
    a uniform prior on the alternatives. For every q >= p0 the factor (q/p0)^X ((1-q)/(1-p0))^(1-X) has
    mean p q/p0 + (1 - p)(1 - q)/(1 - p0) <= 1 when p <= p0, so W_t is a nonnegative supermartingale
    under H0 and P[∃t: W_t >= 1/α] <= α (Ville). It spends no prior mass below p0, so it decides
    "p_A >= Φ(r/σ)" sooner than the two-sided confidence sequence (Voráček 2024 tests p_A against the
    target in the same spirit, with a KT prior).
    """
    s, t = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    f = t - s
    # ∫_{p0}^1 q^S (1-q)^F dq = B(S+1, F+1) P[Beta(S+1, F+1) > p0]
    return np.asarray(
        -np.log1p(-p0) - xlogy(s, p0) - xlog1py(f, -p0) + betaln(s + 1, f + 1) + beta_dist.logsf(p0, s + 1, f + 1)
    )


def _lower_end(s: np.ndarray, t: np.ndarray, threshold: float, prior: tuple[float, float]) -> np.ndarray:
    # log M_t is decreasing on (0, S/t], +inf at 0 when S > 0 and <= 0 at S/t (a mixture never beats the
    # maximum likelihood), so the lower end is the unique crossing. Bisection keeps `lo` rejected, so the
    # returned value is <= the exact end: rounding can only make the bound more conservative.
    lo = np.zeros_like(s)
    hi = np.divide(s, t, out=np.zeros_like(s), where=t > 0)
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        rejected = mixture_log_wealth(s, t, mid, prior) >= threshold
        lo, hi = np.where(rejected, mid, lo), np.where(rejected, hi, mid)
    return np.where(s > 0, lo, 0.0)


def confidence_sequence(
    successes: np.ndarray | int, trials: np.ndarray | int, alpha: float, prior: tuple[float, float] = KT_PRIOR
) -> tuple[np.ndarray, np.ndarray]:
    """Time-uniform (1 - alpha) confidence interval (L_t, U_t) for a Bernoulli mean after t trials.

    Guarantee: P[∃t: p <= L_t or p >= U_t] <= alpha, so the bound holds at any stopping time, however
    it depends on the data. Shapes broadcast; returns float64 arrays (lower, upper).

    Examples:
        >>> lower, upper = confidence_sequence(990, 1000, alpha=0.001)
        >>> round(float(lower), 4), round(float(upper), 4)
        (0.968, 0.9985)
    """
    alpha = check_probability(alpha, "alpha")
    s, t = np.broadcast_arrays(np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64))
    if np.any(s < 0) or np.any(s > t):
        raise ValueError("Expected 0 <= successes <= trials elementwise")
    threshold = math.log(1.0 / alpha)
    lower = _lower_end(s, t, threshold, prior)
    upper = 1.0 - _lower_end(t - s, t, threshold, prior[::-1])
    return lower, upper


def round_schedule(first_round: int, growth: float, n_max: int) -> list[int]:
    """Cumulative sample counts t_1 < t_2 < ... = n_max at which the confidence sequence is checked."""
    first_round = check_positive_int(first_round, "first_round")
    n_max = check_positive_int(n_max, "n_max")
    if isinstance(growth, bool) or not isinstance(growth, int | float) or not growth > 1:
        raise ValueError(f"Expected argument `growth` to be a number > 1, but got {growth!r}")
    checkpoints = [min(first_round, n_max)]
    while checkpoints[-1] < n_max:
        checkpoints.append(min(n_max, max(checkpoints[-1] + 1, math.ceil(checkpoints[-1] * growth))))
    return checkpoints


def stopping_rule(
    lower: np.ndarray, upper: np.ndarray, trials: int, n_max: int, target: float | None
) -> np.ndarray:
    """Whether each stream's outcome is decided: L_t >= target (certified at the requested radius),
    U_t < max(target, 1/2) (that can no longer happen), or the budget is spent. Any rule is valid,
    since the confidence sequence holds at every t; this one only decides how many draws are spent."""
    futile_below = 0.5 if target is None else max(target, 0.5)
    done = (upper < futile_below) | (trials >= n_max)
    if target is not None:
        done |= lower >= target
    return np.asarray(done)


def cannot_pass_by_budget(
    successes: np.ndarray, trials: int, upper: np.ndarray, n_max: int, target: float, alpha: float, test: Test
) -> np.ndarray:
    """Budget futility: whether a stream could not pass its test by ``n_max`` draws even if the remaining
    ``n_max - trials`` draws succeeded at the optimistic rate ``upper`` (an upper confidence end of p).

    The projection is S_t + U_t (n_max - t) successes in n_max trials; the stream is hopeless when the
    test (``one_sided_log_wealth >= log(1/α)``, or the confidence sequence's lower end >= ``target``)
    fails there. Both are increasing in the successes, so a stream that could still pass is kept. It is
    only a stopping rule: the guarantee holds for any stopping rule, so using it costs no validity;
    it spends fewer draws on inputs with p just below (or too close above) the target to be certified
    within the budget, the draws that dominate the average at larger radii.
    """
    projected = np.asarray(successes, dtype=np.float64) + np.asarray(upper, dtype=np.float64) * (n_max - trials)
    if test == "one-sided":
        return np.asarray(one_sided_log_wealth(projected, n_max, target) < math.log(1.0 / alpha))
    return np.asarray(confidence_sequence(projected, n_max, alpha)[0] < target)


def _check_labels(labels: Sequence[int] | torch.Tensor, b: int, num_classes: int) -> torch.Tensor:
    try:
        top = torch.as_tensor(labels).cpu()
    except (TypeError, ValueError, RuntimeError):
        top = None
    if top is None or top.shape != (b,) or top.is_floating_point() or top.dtype == torch.bool:
        raise ValueError(f"Expected argument `labels` to be {b} integer class labels, but got {labels!r:.80}")
    if b and (int(top.min()) < 0 or int(top.max()) >= num_classes):
        raise ValueError(f"Expected argument `labels` to lie in [0, {num_classes}), but got {labels!r:.80}")
    return top.long()


def certify_sequential(
    smooth: Smooth,
    x: torch.Tensor,
    *,
    radius: float | None = None,
    alpha: float = 0.001,
    n0: int = 100,
    n_max: int = 100_000,
    batch_size: int = 1000,
    first_round: int = 64,
    growth: float = 1.25,
    label: int | None = None,
    test: Test = "confidence-sequence",
    futility: float | None = None,
    budget_futility: bool = False,
    n0_min: int | None = None,
    generator: torch.Generator | None = None,
) -> Certificate:
    """Certify one input with as few draws as the confidence sequence needs. See ``certify_sequential_batch``
    (``label`` given: is g(x) = ``label`` on the ball of ``radius``? No selection draws are spent)."""
    check_instance(smooth, Smooth, "smooth", "a smoothing.Smooth")  # (a string failed with an AttributeError)
    xs = smooth._check_input(x, "x").unsqueeze(0)
    return certify_sequential_batch(
        smooth, xs, radius=radius, alpha=alpha, n0=n0, n_max=n_max, batch_size=batch_size,
        first_round=first_round, growth=growth, labels=None if label is None else [label], test=test,
        futility=futility, budget_futility=budget_futility, n0_min=n0_min, generator=generator,
    )[0]


def certify_sequential_batch(
    smooth: Smooth,
    xs: torch.Tensor,
    *,
    radius: float | None = None,
    alpha: float = 0.001,
    n0: int = 100,
    n_max: int = 100_000,
    batch_size: int = 1000,
    first_round: int = 64,
    growth: float = 1.25,
    labels: Sequence[int] | torch.Tensor | None = None,
    test: Test = "confidence-sequence",
    futility: float | None = None,
    budget_futility: bool = False,
    n0_min: int | None = None,
    generator: torch.Generator | None = None,
) -> list[Certificate]:
    """Sequential CERTIFY for each of the B inputs ``xs`` (B, *input_shape), sharing forward passes.

    As in Cohen et al., n0 separate draws select ĉ_A. Fresh draws then arrive in rounds (cumulative
    counts ``round_schedule(first_round, growth, n_max)``); after each round the confidence sequence
    (L_t, U_t) for p_A = P[f(x + δ) = ĉ_A] is updated and sampling stops as soon as

    * ``radius`` is given and L_t >= Φ(radius / σ) (``smooth.noise.p_for_radius(radius)``): certified
      at ``radius`` (or more);
    * U_t < Φ(radius / σ) (or U_t < 1/2 without ``radius``): the outcome can no longer change;
    * t = ``n_max``: the best radius reachable within the budget.

    The certificate reports p̲_A = L_t at the stopping time and radius σ Φ⁻¹(L_t), abstaining when
    L_t < 1/2 (``label=None``). Guarantee: P[returns a class other than g(x) or a radius on which g is
    not constant] <= alpha, for any stopping rule, because L_t <= p_A holds for all t at once with
    probability >= 1 - alpha (Ville) and the selection draws are independent of the estimation draws.
    ``samples`` counts the n0 selection draws plus the estimation draws used.

    ``labels`` (B,) given: the robust-at-radius question "is g(x_i) = labels[i] on the ball of
    ``radius``?" needs no selection, so the n0 draws are skipped (``samples`` = estimation draws) and
    the confidence sequence bounds p_y = P[f(x + δ) = labels[i]]. The certificate names labels[i]
    when L_t >= 1/2 and abstains otherwise; the guarantee is the same (the label is fixed before any
    draw, which is all the selection step is for). This is what certified accuracy at a radius asks.

    ``test="one-sided"`` (needs ``radius``) answers only that question, with the one-sided test
    ``one_sided_log_wealth`` of p_A <= Φ(radius/σ): it certifies when log W_t >= log(1/α) and then
    reports exactly ``radius`` with p̲_A = Φ(radius/σ); otherwise it abstains (p̲_A = 0, no claim).
    Same guarantee (Ville), fewer draws than the confidence sequence for inputs that clear the target.

    ``futility`` (default ``alpha``): also stop once the (1 - futility) confidence sequence's upper end
    is below the target. Any futility level keeps the guarantee (it only decides when to give up);
    a larger one gives up sooner on inputs that would be certified late, if ever.

    ``budget_futility=True`` (needs ``radius``): also stop once the test could not pass by ``n_max``
    even if the remaining draws succeeded at the rate of that upper end (``cannot_pass_by_budget``).
    Same guarantee; on digits at r = 0.5 it cuts the average draws by about a quarter at the cost of
    one or two certified images in 400 (BENCHMARKS.md).

    ``n0_min`` (without ``labels``): adaptive selection. Draw ``n0_min`` selection draws first; when
    they all name one class, select it and skip the other ``n0 - n0_min``; otherwise draw those too
    and select from all n0 (``samples`` counts the selection draws actually spent). Same guarantee:
    the selection and its own stopping rule see only the selection draws, which are independent of
    the estimation draws, so ĉ_A is fixed before the confidence sequence sees any draw. (Reusing the
    selection draws in the estimate would not be valid without a correction, e.g. a union bound over
    the K classes at α/K; this rule needs none.) It saves most of the n0 draws on clear inputs: a
    wrong class is selected only if it wins all ``n0_min`` draws.
    """
    check_instance(smooth, Smooth, "smooth", "a smoothing.Smooth")
    xs = smooth._check_inputs(xs)
    alpha = check_probability(alpha, "alpha")
    n0, n_max = check_positive_int(n0, "n0"), check_positive_int(n_max, "n_max")
    batch_size = check_positive_int(batch_size, "batch_size")
    checkpoints = round_schedule(first_round, growth, n_max)
    target = None if radius is None else smooth.noise.p_for_radius(check_nonnegative(radius, "radius"))
    if test not in ("confidence-sequence", "one-sided"):
        raise ValueError(f"Expected argument `test` to be 'confidence-sequence' or 'one-sided', but got {test!r}")
    if test == "one-sided" and (target is None or not target > 0.5):
        raise ValueError(f"Expected argument `radius` to be > 0 with test='one-sided', but got {radius!r}")
    futility = alpha if futility is None else check_probability(futility, "futility")
    if not isinstance(budget_futility, bool):
        raise TypeError(f"Expected argument `budget_futility` to be a bool, but got {budget_futility!r}")
    if budget_futility and target is None:
        raise ValueError("Expected argument `radius` with budget_futility=True (the budget is spent toward a radius)")
    if n0_min is not None:
        n0_min = check_positive_int(n0_min, "n0_min")
    generator = _generator_for(smooth.device(), generator)

    b = xs.shape[0]
    selection_draws = np.zeros(b, dtype=np.int64)  # the label is given: no selection draws
    if labels is None:
        first_n0 = n0 if n0_min is None else min(n0_min, n0)
        # Round 1 shares its passes with the selection draws (independent rows of the same batches).
        first = sample_counts(smooth, xs, [first_n0] * b + [checkpoints[0]] * b, list(range(b)) * 2, batch_size,
                              generator)
        selection, counts = first[:b].clone(), first[b:].clone()
        selection_draws[:] = first_n0
        unsure = (selection.max(1).values < first_n0).nonzero().flatten()  # not unanimous: the rest of n0
        if first_n0 < n0 and len(unsure):
            more = sample_counts(smooth, xs, [n0 - first_n0] * len(unsure), unsure.tolist(), batch_size, generator)
            selection[unsure] += more
            selection_draws[unsure.numpy()] = n0
        top = selection.argmax(1)  # ties go to the lowest index
    else:
        top = _check_labels(labels, b, smooth.num_classes)
        counts = sample_counts(smooth, xs, [checkpoints[0]] * b, list(range(b)), batch_size, generator).clone()
    results: list[Certificate | None] = [None] * b
    active = np.arange(b)
    for r, t in enumerate(checkpoints):
        if r > 0:
            step = t - checkpoints[r - 1]
            new = sample_counts(smooth, xs, [step] * len(active), active.tolist(), batch_size, generator)
            counts[torch.from_numpy(active)] += new
        successes = counts[torch.from_numpy(active), top[torch.from_numpy(active)]].numpy()
        lower, upper = confidence_sequence(successes, t, alpha)
        if futility != alpha:
            upper = confidence_sequence(successes, t, futility)[1]
        if test == "one-sided":
            assert target is not None
            passed = one_sided_log_wealth(successes, t, target) >= math.log(1.0 / alpha)
            lower = np.where(passed, target, 0.0)  # the only claim of the one-sided test
        done = stopping_rule(lower, upper, t, n_max, target)
        if budget_futility:
            assert target is not None
            done |= cannot_pass_by_budget(successes, t, upper, n_max, target, alpha, test)
        for i, p_lower in zip(active[done], lower[done]):
            abstained = bool(p_lower < 0.5)
            results[i] = Certificate(
                label=None if abstained else int(top[i]),
                radius=0.0 if abstained else (
                    float(radius) if test == "one-sided" and radius is not None else smooth.noise.radius(float(p_lower))
                ),
                p_lower=float(p_lower),
                counts=tuple(int(c) for c in counts[i].tolist()),
                abstained=abstained,
                samples=int(selection_draws[i]) + t,
                norm=smooth.norm,
            )
        active = active[~done]
        if len(active) == 0:
            break
    return [c for c in results if c is not None]
