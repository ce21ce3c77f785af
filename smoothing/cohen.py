"""Randomized smoothing: Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized
Smoothing", ICML 2019 (arXiv 1902.02918); ``predict`` follows Hung & Fithian's binomial test.

The smoothed classifier is g(x) = argmax_c P_{δ ~ N(0, σ² I)}[f(x + δ) = c]. If the top class has
probability p_A ≥ p̲_A > 1/2, then g is constant on the L2 ball of radius σ Φ⁻¹(p̲_A) around x.

Sampling is fast by construction: noise is drawn into one reused buffer with the caller's
``torch.Generator``, labels are counted on the model's device with ``bincount``, several inputs
(and the selection and estimation draws) share each forward pass, and the host syncs once per call.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.stats import beta, binom, binomtest, norm
from torch import nn

from certkit._validation import (
    check_array,
    check_bool,
    check_budget,
    check_eval_mode,
    check_finite,
    check_generator,
    check_positive,
    check_positive_int,
    check_probability,
    check_unit_interval,
)
from certkit.threat import LpBall
from smoothing.noise import GaussianNoise, Noise, _check_norm, convert_radius

__all__ = [
    "Certificate",
    "Prediction",
    "Smooth",
    "binomial_p_value",
    "certificate_from_counts",
    "clopper_pearson_lower",
    "min_predict_samples",
    "prediction_from_counts",
    "randomized_clopper_pearson_lower",
    "smoothed_radius",
]


@dataclass(frozen=True)
class Certificate:
    """The outcome of certifying one input.

    Attributes:
        label: the certified class c_A, or ``None`` when the procedure abstains (never a -1 sentinel).
        radius: L2 radius on which g(x) = ``label`` (0.0 when abstained).
        p_lower: the lower confidence bound p̲_A on P[f(x + δ) = c_A] (reported even on abstention).
        counts: per-class counts (K,) of the estimation draws (the selection draws are not included).
        abstained: True when p̲_A < 1/2, i.e. no class could be certified.
        samples: noisy forward passes spent on this input, selection draws included.
        norm: the norm of the certified ball: 2.0 (L2) for Gaussian noise, 1.0 (L1) for uniform or
            Laplace noise (``smoothing.noise``), ``math.inf`` after ``to_norm``.
    """

    label: int | None
    radius: float
    p_lower: float
    counts: tuple[int, ...]
    abstained: bool
    samples: int
    norm: float = 2.0

    @property
    def ball(self) -> LpBall:
        """The certified set as a ``certkit.threat.LpBall`` (norm ``self.norm``, eps ``self.radius``)."""
        return LpBall(self.norm, self.radius)

    def to_norm(self, norm: float | str, dim: int) -> Certificate:
        """The same certificate for the ``norm`` ball in R^dim that fits inside the certified ball.

        E.g. an L2 radius R gives the L-inf radius R / √dim (the dimension factor: an L-inf ball of
        radius ε contains points at L2 distance ε√dim). See ``smoothing.noise.convert_radius``.
        """
        target = float(_check_norm(norm, "norm"))
        return dataclasses.replace(self, radius=convert_radius(self.radius, self.norm, target, dim), norm=target)


@dataclass(frozen=True)
class Prediction:
    """The outcome of ``Smooth.predict`` for one input.

    Attributes:
        label: the predicted class, or ``None`` when the binomial test could not reject a tie.
        p_value: two-sided binomial-test p-value of the top count against the runner-up count.
        counts: per-class counts (K,) of the n draws.
        abstained: True when ``p_value > alpha``.
    """

    label: int | None
    p_value: float
    counts: tuple[int, ...]
    abstained: bool


def _check_binomial(successes: Any, trials: Any, alpha: Any) -> tuple[int, int, float]:
    successes = check_positive_int(successes, "successes", minimum=0)
    trials = check_positive_int(trials, "trials", minimum=0)
    if successes > trials:
        raise ValueError(f"Expected argument `successes` to be <= trials={trials}, but got {successes}")
    return successes, trials, check_probability(alpha, "alpha")


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound Beta⁻¹(alpha; k, n - k + 1); 0 when k = 0.

    This equals ``proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]`` in Cohen's ``core.py``.

    Examples:
        >>> round(clopper_pearson_lower(990, 1000, alpha=0.001), 6)
        0.976036
        >>> clopper_pearson_lower(0, 1000, alpha=0.001)
        0.0
    """
    successes, trials, alpha = _check_binomial(successes, trials, alpha)
    if successes == 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def randomized_clopper_pearson_lower(successes: int, trials: int, alpha: float, u: float) -> float:
    """Randomised one-sided Clopper-Pearson lower bound: the p solving P_p[X > k] + u P_p[X = k] = alpha.

    With u ~ U(0, 1) drawn independently of X ~ Bin(n, p), P[bound > p] = alpha exactly (the randomised
    p-value is uniform), against <= alpha, often much less, for the ordinary bound, which is the u = 1
    case; u = 0 gives the bound for k + 1 successes. Voráček, NeurIPS 2024 (arXiv 2406.17830), Sec. on
    randomised Clopper-Pearson. Valid only for a number of trials fixed in advance: it is NOT a
    confidence sequence and must not be re-checked as draws arrive (``certify_sequential`` uses the
    mixture bound instead). With k = n and u < alpha the bound is 1 (probability <= alpha).
    """
    successes, trials, alpha = _check_binomial(successes, trials, alpha)
    u = check_unit_interval(u, "u")
    k, n = successes, trials

    def excess(p: float) -> float:  # increasing in p
        return float(binom.sf(k, n, p) + u * binom.pmf(k, n, p)) - alpha

    if excess(0.0) >= 0:
        return 0.0
    if excess(1.0) <= 0:
        return 1.0
    low = clopper_pearson_lower(k, n, alpha)  # u = 1: excess(low) = 0 up to rounding, so the root is >= low
    return float(brentq(excess, low * (1 - 1e-12), 1.0, xtol=1e-15, rtol=4 * np.finfo(float).eps))


def smoothed_radius(p_lower: float, sigma: float) -> float:
    """Certified L2 radius σ Φ⁻¹(p̲_A) (Cohen et al. Theorem 1); meaningful for p̲_A >= 1/2.

    Examples:
        >>> round(smoothed_radius(0.99, sigma=0.25), 6)    # 0.25 * 2.326348
        0.581587
        >>> smoothed_radius(0.5, sigma=0.25)
        0.0

    ``p_lower`` must lie in [1/2, 1] (below 1/2 nothing is certified and the formula would give a
    negative radius); ``sigma`` must be > 0.
    """
    p = check_unit_interval(p_lower, "p_lower")
    if p < 0.5:
        raise ValueError(
            f"Expected argument `p_lower` to be in [0.5, 1] (below 1/2 nothing is certified), but got {p_lower!r}"
        )
    return float(check_positive(sigma, "sigma") * norm.ppf(p))


def binomial_p_value(top: int, runner_up: int) -> float:
    """Two-sided binomial-test p-value of ``top`` successes in ``top + runner_up`` trials against p = 1/2.

    Uses ``scipy.stats.binomtest``; Cohen's ``binom_test`` was removed in SciPy 1.12.

    Examples:
        >>> f"{binomial_p_value(560, 440):.4e}"
        '1.6505e-04'
    """
    top = check_positive_int(top, "top", minimum=0)
    runner_up = check_positive_int(runner_up, "runner_up", minimum=0)
    if top + runner_up == 0:
        return 1.0
    return float(binomtest(top, top + runner_up, 0.5).pvalue)


def min_predict_samples(alpha: float) -> int:
    """Smallest n for which ``predict`` can return a class: the best p-value with n draws is 2^(1-n).

    At alpha = 0.001 this is 11 (with n = 10 the smallest p-value is 2⁻⁹ ≈ 0.00195 > alpha, so every
    call abstains; locuslab/smoothing issue #8).

    Examples:
        >>> min_predict_samples(0.001)
        11
    """
    alpha = check_probability(alpha, "alpha")
    n = 1
    while 2.0 ** (1 - n) > alpha:
        n += 1
    return n


def as_noise(sigma: float | Noise, name: str = "sigma") -> Noise:
    """``sigma`` itself when it is a ``smoothing.noise.Noise``, else Gaussian noise N(0, sigma² I)."""
    if isinstance(sigma, Noise):
        return sigma
    if isinstance(sigma, bool) or not isinstance(sigma, int | float):
        raise ValueError(f"Expected argument `{name}` to be a number > 0 or a smoothing.noise.Noise, but got {sigma!r}")
    try:
        return GaussianNoise(sigma)
    except ValueError:
        raise ValueError(f"Expected argument `{name}` to be a number > 0 or a smoothing.noise.Noise, but got {sigma!r}") from None


def certificate_from_counts(
    selection: Sequence[int],
    counts: Sequence[int],
    alpha: float,
    sigma: float | Noise,
    samples: int | None = None,
    u: float | None = None,
) -> Certificate:
    """Cohen's CERTIFY from its two independent draws: ĉ_A = argmax(selection), n_A = counts[ĉ_A].

    With probability at least 1 - alpha over the estimation draws, the returned class (if any) is g(x)
    and g is constant on the returned radius. Ties in ``selection`` go to the lowest class index.
    ``sigma`` is the Gaussian σ (L2 radius σ Φ⁻¹(p̲_A)) or any ``smoothing.noise.Noise``, whose
    ``radius`` and ``norm`` the certificate then carries. ``u`` in [0, 1] (drawn U(0, 1) independently
    of the counts) uses the randomised Clopper-Pearson bound (exact level alpha, slightly larger radii).

    Examples:
        >>> cert = certificate_from_counts([0, 95, 5], [0, 990, 10], alpha=0.001, sigma=0.25)
        >>> cert.label, round(cert.p_lower, 6), round(cert.radius, 6), cert.samples
        (1, 0.976036, 0.494502, 1100)
    """
    noise = as_noise(sigma)
    alpha = check_probability(alpha, "alpha")
    selection, counts = _check_counts(selection, "selection"), _check_counts(counts, "counts")
    if len(selection) != len(counts):
        raise ValueError(
            f"Expected arguments `selection` and `counts` to have the same length (K), but got {len(selection)} "
            f"and {len(counts)}"
        )
    if samples is not None:
        samples = check_positive_int(samples, "samples", minimum=0)
    c_a = max(range(len(selection)), key=lambda c: (selection[c], -c))
    n = sum(counts)
    if u is None:
        p_lower = clopper_pearson_lower(counts[c_a], n, alpha)
    else:
        p_lower = randomized_clopper_pearson_lower(counts[c_a], n, alpha, u)
    abstained = p_lower < 0.5
    return Certificate(
        label=None if abstained else c_a,
        radius=0.0 if abstained else noise.radius(p_lower),
        p_lower=p_lower,
        counts=tuple(counts),
        abstained=abstained,
        samples=sum(selection) + n if samples is None else samples,
        norm=noise.norm,
    )


def _check_counts(counts: Any, name: str) -> list[int]:
    """Per-class counts: a non-empty sequence (or 1-D array) of integers >= 0; floats are refused, not truncated."""
    if isinstance(counts, np.ndarray | torch.Tensor):
        check_array(counts, name, kind="int", ndim=1)
        counts = counts.tolist()
    if isinstance(counts, str | bytes) or not isinstance(counts, Sequence) or len(counts) == 0:
        raise TypeError(f"Expected argument `{name}` to be a non-empty sequence of counts, but got {counts!r}")
    return [check_positive_int(c, name, minimum=0) for c in counts]


def prediction_from_counts(counts: Sequence[int], alpha: float) -> Prediction:
    """Cohen's PREDICT from one draw: return the top class unless the binomial test of the top two
    counts has p-value > alpha. P[returns a class other than g(x)] <= alpha (Hung & Fithian 2019).

    Examples:
        >>> prediction_from_counts([900, 100, 0], alpha=0.001).label
        0
        >>> prediction_from_counts([550, 450, 0], alpha=0.001).abstained   # p-value 0.0017 > alpha
        True
    """
    counts = _check_counts(counts, "counts")
    alpha = check_probability(alpha, "alpha")
    # The reference takes the top two from `argsort()[::-1]`, whose order among tied counts is unspecified;
    # here ties go to the lowest index, so a given draw always gives the same answer.
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    top, runner_up = counts[order[0]], counts[order[1]] if len(counts) > 1 else 0
    p_value = binomial_p_value(top, runner_up)
    abstained = p_value > alpha
    return Prediction(None if abstained else order[0], p_value, tuple(counts), abstained)


SAMPLE_BUDGET = 10**9  # default cap on the noise samples one call may draw


def _check_sample_budget(count: int, budget: Any) -> None:
    if budget is not None:
        budget = check_positive_int(budget, "budget")
    check_budget(count, budget, "randomized smoothing (noise samples, n0 + n per input)",
                 "lower `n`/`n0` or raise `budget`")


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return fallback


class Smooth:
    """A smoothed classifier g around a base classifier f (Cohen et al. 2019).

    Args:
        base_classifier: maps a batch (m, *input_shape) to logits (m, num_classes); must be in eval mode.
        num_classes: number of classes K >= 2.
        sigma: noise level σ > 0 of Gaussian noise N(0, σ² I), which certifies L2 radii (in the input's
            units), or any ``smoothing.noise.Noise``: ``UniformNoise(λ)`` or ``LaplaceNoise(λ)`` certify
            L1 radii (Yang et al. 2020; Teng et al. 2020). ``self.noise`` is the distribution,
            ``self.sigma`` its per-coordinate standard deviation, ``self.norm`` the certified norm.
        input_shape: optional shape of one input (without the batch dimension); when given, inputs
            of any other shape are refused.

    The device is the base classifier's (its first parameter or buffer); inputs are moved there and
    the generator must live there.
    """

    def __init__(
        self,
        base_classifier: nn.Module,
        num_classes: int,
        sigma: float | Noise,
        *,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(base_classifier, nn.Module):
            raise TypeError(
                f"Expected argument `base_classifier` to be a torch.nn.Module, but got {type(base_classifier).__name__}"
            )
        self.base_classifier = base_classifier
        self.num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
        self.noise = as_noise(sigma)
        self.sigma = self.noise.std
        self.norm = self.noise.norm
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)

    def __repr__(self) -> str:
        noise = f"sigma={self.sigma}" if isinstance(self.noise, GaussianNoise) else f"noise={self.noise}"
        return f"Smooth({type(self.base_classifier).__name__}, num_classes={self.num_classes}, {noise})"

    def certify(
        self,
        x: torch.Tensor,
        n0: int,
        n: int,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        randomized: bool = False,
        budget: int | None = SAMPLE_BUDGET,
    ) -> Certificate:
        """Cohen's CERTIFY: n0 draws select ĉ_A, n fresh draws bound p_A from below (Clopper-Pearson).

        Guarantee: P[returns a class other than g(x)] <= alpha, over the draws. When a class is
        returned, g predicts it on the whole L2 ball of the returned radius σ Φ⁻¹(p̲_A) (for other
        noise, the ``self.norm`` ball of radius ``self.noise.radius(p̲_A)``). The procedure
        abstains (``label=None``, ``abstained=True``, radius 0) when p̲_A < 1/2.

        Args:
            x: one input of shape ``input_shape`` (no batch dimension).
            n0: selection draws (Cohen: 100). n: estimation draws (Cohen: 100,000).
            alpha: failure probability in (0, 1). batch_size: rows per forward pass.
            generator: ``torch.Generator`` on the model's device; ``None`` seeds a fresh one from the OS.
            randomized: use the randomised Clopper-Pearson bound (see ``certify_batch``).
            budget: refuse (``certkit.errors.BudgetExceededError``) a call drawing more than this many
                noise samples in all (``n0 + n`` per input), before drawing any; None: no limit.
        """
        return self.certify_batch(
            self._check_input(x, "x").unsqueeze(0), n0, n, alpha, batch_size, generator, randomized=randomized,
            budget=budget,
        )[0]

    def certify_batch(
        self,
        xs: torch.Tensor,
        n0: int,
        n: int,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        randomized: bool = False,
        budget: int | None = SAMPLE_BUDGET,
    ) -> list[Certificate]:
        """``certify`` for each of the B inputs ``xs`` (B, *input_shape), packed into shared forward passes.

        Every input gets its own independent draws, so each certificate carries the guarantee of
        ``certify`` (failure probability alpha per input). Shapes: returns B certificates.

        ``randomized=True`` bounds p_A with the randomised Clopper-Pearson bound
        (``randomized_clopper_pearson_lower``, one U(0, 1) per input from ``generator`` after the
        draws): failure probability exactly alpha instead of at most alpha, slightly larger radii.
        Valid here because n is fixed in advance.
        """
        xs = self._check_inputs(xs)
        n0, n = check_positive_int(n0, "n0"), check_positive_int(n, "n")
        alpha = check_probability(alpha, "alpha")
        batch_size = check_positive_int(batch_size, "batch_size")
        randomized = check_bool(randomized, "randomized")
        b = xs.shape[0]
        _check_sample_budget(b * (n0 + n), budget)
        generator = _generator_for(self.device(), generator)
        # Selection and estimation draws are independent rows of the same passes (no separate tiny launch).
        counts = sample_counts(self, xs, [n0] * b + [n] * b, list(range(b)) * 2, batch_size, generator).tolist()
        us: list[float | None] = [None] * b
        if randomized:
            us = torch.rand(b, generator=generator, device=generator.device, dtype=torch.float64).tolist()
        return [certificate_from_counts(counts[i], counts[b + i], alpha, self.noise, u=us[i]) for i in range(b)]

    def predict(
        self,
        x: torch.Tensor,
        n: int,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        budget: int | None = SAMPLE_BUDGET,
    ) -> Prediction:
        """Cohen's PREDICT: n draws; abstain unless the two-sided binomial test of the top two counts
        has p-value <= alpha.

        Guarantee: P[returns a class other than g(x)] <= alpha. Raises ValueError when n is too small
        for any p-value to reach alpha (n < ``min_predict_samples(alpha)``; e.g. n <= 10 at alpha=0.001).
        """
        return self.predict_batch(self._check_input(x, "x").unsqueeze(0), n, alpha, batch_size, generator,
                                  budget=budget)[0]

    def predict_batch(
        self,
        xs: torch.Tensor,
        n: int,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        budget: int | None = SAMPLE_BUDGET,
    ) -> list[Prediction]:
        """``predict`` for each of the B inputs ``xs`` (B, *input_shape), packed into shared forward passes."""
        xs = self._check_inputs(xs)
        n = check_positive_int(n, "n")
        alpha = check_probability(alpha, "alpha")
        batch_size = check_positive_int(batch_size, "batch_size")
        n_min = min_predict_samples(alpha)
        if n < n_min:
            raise ValueError(
                f"Expected argument `n` to be >= {n_min} at alpha={alpha}, but got {n}: with n draws the "
                f"smallest two-sided binomial p-value is 2^(1-n) = {2.0 ** (1 - n):.3g} > alpha, so predict "
                "would always abstain"
            )
        b = xs.shape[0]
        _check_sample_budget(b * n, budget)
        counts = sample_counts(self, xs, [n] * b, list(range(b)), batch_size, check_generator(generator)).tolist()
        return [prediction_from_counts(c, alpha) for c in counts]

    def device(self) -> torch.device:
        """The base classifier's device (CPU for a module without parameters or buffers)."""
        return _model_device(self.base_classifier, torch.device("cpu"))

    def _check_input(self, x: torch.Tensor, name: str) -> torch.Tensor:
        check_array(x, name, tensor=True)
        if self.input_shape is not None and tuple(x.shape) != self.input_shape:
            raise ValueError(
                f"Expected argument `{name}` to have shape {self.input_shape} (one input, no batch dimension), "
                f"but got shape {tuple(x.shape)}"
            )
        return x

    def _check_inputs(self, xs: torch.Tensor) -> torch.Tensor:
        if not isinstance(xs, torch.Tensor):
            raise TypeError(f"Expected argument `xs` to be a torch.Tensor, but got {type(xs).__name__}")
        if xs.ndim < 1 or xs.shape[0] < 1:
            raise ValueError(f"Expected argument `xs` to have shape (B, *input_shape) with B >= 1, but got {tuple(xs.shape)}")
        if self.input_shape is not None and tuple(xs.shape[1:]) != self.input_shape:
            raise ValueError(
                f"Expected argument `xs` to have shape (B, *{self.input_shape}), but got shape {tuple(xs.shape)}"
            )
        if not xs.is_floating_point():
            raise TypeError(f"Expected argument `xs` to be a floating-point tensor, but got dtype {xs.dtype}")
        check_finite(xs, "xs")
        check_eval_mode(self.base_classifier, "base_classifier")
        return xs


def _generator_for(device: torch.device, generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        fresh = torch.Generator(device=device)
        fresh.seed()  # OS entropy; torch's global RNG is left untouched
        return fresh
    check_generator(generator)
    if generator.device.type != device.type:
        raise ValueError(
            f"Expected argument `generator` to live on the model's device ({device}), but got one on {generator.device}"
        )
    return generator


@torch.inference_mode()
def sample_counts(
    smooth: Smooth,
    xs: torch.Tensor,
    nums: Sequence[int],
    sources: Sequence[int],
    batch_size: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Counts (V, K) of f(x + δ) over ``nums[v]`` independent draws around ``xs[sources[v]]``, for each v.

    All V draws share forward passes of at most ``batch_size`` rows; each row gets fresh noise
    (``smooth.noise``, e.g. N(0, σ² I)) from ``generator``, written into one reused buffer. Counting happens on the device
    (``bincount``); the result is copied to the host once. Returns an int64 CPU tensor.
    """
    # Unlike the reference `_sample_noise` (locuslab/smoothing core.py): the device is the model's, not a
    # hard-coded 'cuda'; noise comes from the caller's generator, not torch's global RNG, so runs are
    # reproducible and other code's random state is untouched; and labels are counted on the device
    # instead of a host copy and a Python loop per batch.
    model = smooth.base_classifier
    device = _model_device(model, xs.device)
    generator = _generator_for(device, generator)
    xs = xs.to(device)
    k, v_count = smooth.num_classes, len(nums)
    sources = [int(s) for s in sources]
    host_ends = list(itertools.accumulate(int(n) for n in nums))
    total = host_ends[-1] if host_ends else 0
    ends = torch.tensor(host_ends, device=device)
    src = torch.tensor(sources, device=device)
    m = max(1, min(batch_size, total))
    batch = torch.empty((m, *xs.shape[1:]), dtype=xs.dtype, device=device)  # the one reused buffer
    rows = torch.arange(m, device=device)
    counts = torch.zeros(v_count * k, dtype=torch.long, device=device)
    for start in range(0, total, m):
        size = min(m, total - start)
        first, last = bisect.bisect_right(host_ends, start), bisect.bisect_right(host_ends, start + size - 1)
        noisy = smooth.noise.sample_(batch[:size], generator)
        owner = None
        if all(sources[v] == sources[first] for v in range(first, last + 1)):
            noisy.add_(xs[sources[first]])  # one input in this pass: broadcast, no gather
        else:
            owner = torch.searchsorted(ends, rows[:size] + start, right=True)  # virtual input of each row
            noisy.add_(xs.index_select(0, src[owner]))
        try:
            logits = model(noisy)
        except RuntimeError as err:
            raise ValueError(
                f"Expected inputs of shape (B, *input_shape) that `base_classifier` accepts, but the forward "
                f"pass on a batch of shape {tuple(noisy.shape)} failed: {err}"
            ) from err
        if logits.ndim != 2 or logits.shape[1] != k:
            raise ValueError(
                f"Expected `base_classifier` to return logits of shape (m, {k}), but got {tuple(logits.shape)}"
            )
        labels = logits.argmax(1)
        if first == last:
            counts[first * k : (first + 1) * k] += torch.bincount(labels, minlength=k)
        else:
            if owner is None:
                owner = torch.searchsorted(ends, rows[:size] + start, right=True)
            counts += torch.bincount(owner * k + labels, minlength=v_count * k)
    return counts.view(v_count, k).cpu()  # the one host sync
