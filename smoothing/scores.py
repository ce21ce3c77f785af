"""Monte Carlo smoothed conformity scores: S_hat(x, y) = mean of S(f(x + delta), y) over delta ~ N(0, sigma^2 I).

One draw of ``n_mc`` noise samples per input serves every label: the base model runs ``N * n_mc``
forward passes in all, whatever the number of classes. The per-(x, y) sample variance is returned
too, for empirical-Bernstein margins (RSCP+, Yan et al. 2024).

This module knows nothing about conformal prediction: the score function (probs ``(M, K)`` ->
scores ``(M, K)``) and an optional per-sample ``transform`` are arguments.

Randomised scores (e.g. randomised APS) need one auxiliary uniform u per *input*, shared by all of
that input's noise draws: wrap the score as :class:`PerInputScore` ``(fn, u)`` with ``u`` of shape
``(N,)``; each noisy sample of input j is scored with ``fn(probs, u=u[j])``. Drawn once per input,
independently of the noise, u makes S(x, y; u) a fixed function of the noisy input for that input,
so its smoothed score keeps the 1/sigma-Lipschitz Gaussian quantile (the reference RSCP code draws
u this way, from an unseeded generator; here it is the caller's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from certkit._validation import (
    check_array,
    check_budget,
    check_eval_mode,
    check_generator,
    check_positive_int,
)
from certkit.certifier import SmoothedScores
from smoothing.noise import gaussian_sigma

__all__ = ["PerInputScore", "ScoreFn", "SmoothedScores", "smoothed_scores"]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class PerInputScore:
    """A score with per-input randomness shared across the noise draws of each input.

    Attributes:
        fn: ``fn(probs (M, K), u=(M,)) -> (M, K)`` scores (e.g. ``functools.partial(conformal.scores.aps)``).
        u: ``(N,)`` values, one per input of the ``x`` given to :func:`smoothed_scores` (e.g. u ~ U(0, 1)).
    """

    fn: Callable[..., torch.Tensor]
    u: torch.Tensor

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"Expected argument `fn` to be callable, but got {self.fn!r}")
        if not isinstance(self.u, torch.Tensor) or self.u.ndim != 1:
            raise ValueError(f"Expected argument `u` to be a (N,) tensor, but got {type(self.u).__name__} "
                             f"{tuple(getattr(self.u, 'shape', ()))}")

    def __call__(self, probs: torch.Tensor, u: Any = None) -> torch.Tensor:
        """Scores of ``probs`` with the per-sample values ``u`` ((M,), one per row)."""
        if u is None:
            raise ValueError("Expected argument `u` (one value per row of probs), but got None; "
                             "a PerInputScore is evaluated by smoothed_scores")
        return self.fn(probs, u=u)

# ``SmoothedScores`` lives in the base (``certkit.certifier``), shared with the certifier protocol;
# importing it from here keeps working.


@torch.no_grad()
def smoothed_scores(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    score_fn: ScoreFn | PerInputScore,
    *,
    sigma: float,
    n_mc: int,
    generator: torch.Generator | None = None,
    transform: ScoreFn | None = None,
    batch_size: int = 4096,
    budget: int | None = 10**9,
) -> SmoothedScores:
    """Monte Carlo smoothed scores of every label for each input.

    For each input x_j, draws delta_1..delta_n ~ N(0, sigma^2 I) once, evaluates
    ``s_i = transform(score_fn(softmax(model(x_j + delta_i))))`` (a ``(K,)`` row per sample) and
    returns the mean and unbiased variance over i. ``mean`` is an unbiased estimate of the
    smoothed score S_bar(x, y) = E S(x + delta, y), whose Gaussian-quantile Phi^-1(S_bar) is
    1/sigma-Lipschitz in x when scores lie in [0, 1] (Salman et al. 2019); this function makes
    no confidence statement itself: margins are the caller's (see ``conformal.rscp``).

    Cost: exactly ``N * n_mc`` forward passes, in batches of at most ``batch_size`` samples.

    Args:
        model: base classifier mapping ``(M, *shape)`` inputs to ``(M, K)`` logits; in eval mode.
        x: ``(N, *shape)`` inputs; noise and outputs live on ``x.device``.
        score_fn: maps ``(M, K)`` softmax probabilities to ``(M, K)`` scores (one per label); or a
            :class:`PerInputScore` whose ``u`` ``(N,)`` holds one value per input, shared by its noise draws.
        sigma: noise level > 0 (or a ``smoothing.GaussianNoise``; uniform and Laplace noise are refused).
        n_mc: noise samples per input, >= 2 (the variance needs two).
        generator: source of the noise (on ``x.device``); a fresh nondeterministically seeded one if None.
            Torch's global RNG is never used.
        transform: optional elementwise map applied to each noisy score before averaging (e.g. PTT).
        batch_size: forward-pass batch size in samples.
        budget: the most noise samples ``N * n_mc`` allowed, checked before any is drawn (None: no limit).

    Returns:
        SmoothedScores with ``mean`` and ``variance`` of shape ``(N, K)`` (float64), ``n_mc`` and ``sigma``.

    References:
        Gendler et al., "Adversarially Robust Conformal Prediction", ICLR 2022.
        Yan et al., "Provably Robust Conformal Prediction with Improved Efficiency", ICLR 2024.
    """
    sigma = gaussian_sigma(sigma, "sigma")
    n_mc = check_positive_int(n_mc, "n_mc", minimum=2)
    batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError(
            f"Expected argument `x` to be a torch tensor of shape (N, *shape), but got "
            f"{type(x).__name__} with shape {tuple(getattr(x, 'shape', ()))}"
        )
    check_array(x, "x", tensor=True)
    if isinstance(model, nn.Module):
        check_eval_mode(model)
    if check_generator(generator) is None:
        generator = torch.Generator(device=x.device)
        generator.seed()

    if not callable(score_fn):
        raise TypeError(f"Expected argument `score_fn` to be callable ((M, K) probabilities -> (M, K) scores), "
                        f"but got {type(score_fn).__name__}")
    if transform is not None and not callable(transform):
        raise TypeError(f"Expected argument `transform` to be callable or None, but got {type(transform).__name__}")
    n, shape = x.shape[0], x.shape[1:]
    if n == 0:
        raise ValueError(f"Expected argument `x` to hold at least one input, but got shape {tuple(x.shape)}")
    # closed form first: N * n_mc forward samples (n_mc = 10**12 would otherwise loop for days)
    check_budget(n * n_mc, None if budget is None else check_positive_int(budget, "budget"),
                 "smoothed scores (noise samples, N * n_mc)", "lower `n_mc` or raise `budget`")
    per_input_u: torch.Tensor | None = None
    per_input_fn: Callable[..., torch.Tensor] | None = None
    if isinstance(score_fn, PerInputScore):
        per_input_fn = score_fn.fn
        if score_fn.u.shape[0] != n:
            raise ValueError(f"Expected the PerInputScore's `u` to have shape ({n},) (one value per input), "
                             f"but got {tuple(score_fn.u.shape)}")
        per_input_u = score_fn.u.to(device=x.device)
    per_chunk = max(1, batch_size // n_mc)  # inputs per forward batch when n_mc <= batch_size
    noise = torch.empty((min(batch_size, n_mc * min(per_chunk, n)), *shape), dtype=x.dtype,
                        device=x.device)

    def noisy_scores(x_rows: torch.Tensor, reps: int, first: int) -> torch.Tensor:
        # (B, *shape) inputs x[first : first + B], ``reps`` samples each -> (B * reps, K) float64 scores
        m = x_rows.shape[0] * reps
        eps = noise[:m].normal_(0.0, sigma, generator=generator)
        batch = (eps.view(x_rows.shape[0], reps, *shape) + x_rows.unsqueeze(1)).view(m, *shape)
        probs = torch.softmax(model(batch), dim=-1)
        if per_input_u is not None and per_input_fn is not None:  # each input's u, repeated over its draws
            u_rows = per_input_u[first : first + x_rows.shape[0]].repeat_interleave(reps).to(probs.dtype)
            s = per_input_fn(probs, u=u_rows)
        else:
            s = score_fn(probs)
        if transform is not None:
            s = transform(s)
        return s.to(torch.float64)

    means: list[torch.Tensor] = []
    variances: list[torch.Tensor] = []
    if n_mc <= batch_size:
        for i in range(0, n, per_chunk):
            rows = x[i : i + per_chunk]
            s = noisy_scores(rows, n_mc, i)
            s = s.view(rows.shape[0], n_mc, -1)
            var, mean = torch.var_mean(s, dim=1, correction=1)
            means.append(mean)
            variances.append(var)
    else:
        for j in range(n):
            row = x[j : j + 1]
            total = total_sq = torch.zeros((), dtype=torch.float64, device=x.device)
            # shifted sums (shift = first chunk's mean) keep the one-pass variance accurate
            shift: torch.Tensor | None = None
            for start in range(0, n_mc, batch_size):
                reps = min(batch_size, n_mc - start)
                s = noisy_scores(row, reps, j)
                if shift is None:
                    shift = s.mean(0)
                    total = torch.zeros_like(shift)
                    total_sq = torch.zeros_like(shift)
                d = s - shift
                total = total + d.sum(0)
                total_sq = total_sq + (d * d).sum(0)
            assert shift is not None
            mean_d = total / n_mc
            means.append((shift + mean_d).unsqueeze(0))
            variances.append(((total_sq - n_mc * mean_d * mean_d) / (n_mc - 1)).clamp_min(0).unsqueeze(0))
    mean = torch.cat(means)
    if bool(torch.isnan(mean).any()):  # a NaN mean would otherwise flow silently into the thresholds
        raise ValueError("Expected argument `score_fn` (applied to the softmax of the model's outputs, then "
                         "`transform`) to return scores without NaN, but got NaN")
    return SmoothedScores(mean, torch.cat(variances), n_mc, sigma)
