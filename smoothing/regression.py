"""Gaussian smoothing of a bounded-output regressor as an output certifier (``certkit.certifier.OutputCertifier``).

The smoothed regressor is g(x) = E[clip(f(x + sigma e), a, b)], e ~ N(0, I). Its normalised form
Phi^{-1}((g - a)/(b - a)) is 1/sigma-Lipschitz in L2 (Salman et al. 2019, Lemma 2), so g over the L2
ball of radius eps around x~ lies in [a + (b - a) Phi(Phi^{-1}(u) - eps/sigma), ...]; Hoeffding bounds
the Monte Carlo error of the estimate g_hat on both ends. ``conformal.regression.RobustConformalRegressor``
consumes it through ``output_bounds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from certkit._params import Params
from certkit._validation import (
    check_eval_mode,
    check_generator,
    check_inputs,
    check_positive_int,
    check_probability,
    check_range,
)
from certkit.certifier import OutputBounds, squeeze_output
from certkit.threat import LpBall
from smoothing._identity import eq_by_value_except
from smoothing.noise import gaussian_sigma

__all__ = ["SmoothedRegressionCertifier", "smoothed_regression_bounds"]


def _check_output_range(output_range: object) -> tuple[float, float]:
    return check_range(output_range, "output_range")  # finite: the clipped mean's bounds need a < b finite


def smoothed_regression_bounds(model: nn.Module, x: torch.Tensor, *, sigma: float, eps: float,
                               output_range: tuple[float, float], n_samples: int = 1000, beta: float = 0.001,
                               batch_size: int = 1000, generator: torch.Generator | None = None) -> OutputBounds:
    """Certified bounds of the Monte Carlo smoothed regressor over the L2 ball of radius ``eps``.

    The smoothed regressor is g(x) = E[clip(f(x + sigma e), a, b)], e ~ N(0, I), estimated by
    g_hat(x), the mean of ``n_samples`` fresh draws. Returned for each input x~:

    * ``predictions``: g_hat(x~);
    * ``lower``/``upper``: bounds that contain g_hat(x) (a fresh estimate at any x with
      ||x - x~||_2 <= eps) with probability >= 1 - beta: g(x~) is within h = (b - a) sqrt(log(4/beta) / (2 n))
      of g_hat(x~) (Hoeffding, probability beta/2), Phi^{-1}((g - a)/(b - a)) moves by at most eps/sigma
      (Salman et al. 2019, Lemma 2), and g_hat(x) is within h of g(x) (probability beta/2).

    Args:
        model: torch regressor in eval mode (output (N,) or (N, 1)); outputs are clipped to ``output_range``.
        x: (N, ...) inputs.
        sigma: noise level > 0.
        eps: L2 radius >= 0.
        output_range: (a, b), a < b.
        n_samples: Monte Carlo draws per input.
        beta: failure probability per input, in (0, 1).
        batch_size: noisy copies per forward pass.
        generator: torch generator of the noise (on ``x``'s device); ``None``: a fresh one seeded from
            the OS. Torch's global RNG is never used.

    Returns:
        :class:`certkit.certifier.OutputBounds` with (N,) fields in ``x``'s dtype.
    """
    check_inputs(model, x, "x")
    sigma = gaussian_sigma(sigma, "sigma")
    if not (isinstance(eps, int | float) and not isinstance(eps, bool) and eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"Expected argument `eps` to be a finite number >= 0, but got {eps!r}")
    n_samples = check_positive_int(n_samples, "n_samples")
    beta = check_probability(beta, "beta")
    batch_size = check_positive_int(batch_size, "batch_size")
    a, b = _check_output_range(output_range)
    check_eval_mode(model)
    if check_generator(generator) is None:
        generator = torch.Generator(device=x.device)
        generator.seed()  # OS entropy; torch's global RNG is left untouched
    sums = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for i in range(x.shape[0]):
            done = 0
            while done < n_samples:
                m = min(batch_size, n_samples - done)
                xi = x[i : i + 1].expand(m, *x.shape[1:])
                noise = torch.randn(xi.shape, generator=generator, device=x.device, dtype=x.dtype)
                out = squeeze_output(model(xi + sigma * noise), "model").clamp(a, b)
                sums[i] += out.double().sum()
                done += m
    g_hat = sums / n_samples
    h = (b - a) * math.sqrt(math.log(4 / beta) / (2 * n_samples))
    u_lo = ((g_hat - h - a) / (b - a)).clamp(0, 1)
    u_hi = ((g_hat + h - a) / (b - a)).clamp(0, 1)
    shift = eps / sigma
    lo = a + (b - a) * torch.special.ndtr(torch.special.ndtri(u_lo) - shift) - h
    hi = a + (b - a) * torch.special.ndtr(torch.special.ndtri(u_hi) + shift) + h
    return OutputBounds(g_hat.to(x.dtype), lo.to(x.dtype), hi.to(x.dtype))


@eq_by_value_except("generator")
@dataclass(frozen=True, repr=False, eq=False)
class SmoothedRegressionCertifier(Params):
    """Output bounds of the Gaussian-smoothed, clipped regressor (:func:`smoothed_regression_bounds`).

    Guarantee: with probability >= 1 - beta per input, a fresh Monte Carlo estimate of the smoothed
    regressor at any x' in the L2 ball around x lies in ``[lower, upper]`` (Salman et al. 2019,
    Lemma 2, plus Hoeffding); ``conformal.regression.RobustConformalRegressor`` then covers with
    probability >= 1 - alpha - beta. Certifies L2 balls only (``threat.domain`` is ignored: the
    whole ball is covered).

    Args:
        sigma: noise level > 0.
        output_range: (a, b), a < b: the regressor's outputs are clipped to it.
        n_samples: Monte Carlo draws per input.
        beta: failure probability per input, in (0, 1).
        batch_size: noisy copies per forward pass.
        generator: source of the noise (on the inputs' device); None: a fresh one seeded from the OS per
            call. Torch's global RNG is never used.

    Example:
        >>> SmoothedRegressionCertifier(sigma=0.5, output_range=(0.0, 1.0))
        SmoothedRegressionCertifier(sigma=0.5, output_range=(0.0, 1.0))
    """

    sigma: float
    output_range: tuple[float, float]
    n_samples: int = 1000
    beta: float = 0.001
    batch_size: int = 1000
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", gaussian_sigma(self.sigma, "sigma"))
        object.__setattr__(self, "output_range", _check_output_range(self.output_range))
        object.__setattr__(self, "n_samples", check_positive_int(self.n_samples, "n_samples"))
        object.__setattr__(self, "beta", check_probability(self.beta, "beta"))
        object.__setattr__(self, "batch_size", check_positive_int(self.batch_size, "batch_size"))
        check_generator(self.generator)

    @property
    def name(self) -> str:
        return f"Gaussian smoothing sigma={self.sigma:g}, {self.n_samples} samples per input, beta={self.beta:g}"

    def check_threat(self, threat: LpBall) -> LpBall:
        """Gaussian smoothing certifies L2 balls only."""
        if not isinstance(threat, LpBall):
            raise TypeError(f"Expected argument `threat` to be an LpBall, but got {type(threat).__name__}")
        if threat.norm != 2.0:
            raise ValueError(
                "Expected argument `threat` to be an L2 ball with a smoothing certifier (Gaussian smoothing "
                f"certifies L2 balls only), but got norm {threat.norm!r}; use certify.BoundCertifier for L-inf balls"
            )
        return threat

    def output_bounds(self, model: nn.Module, x: torch.Tensor, threat: LpBall) -> OutputBounds:
        """Bounds of the smoothed regressor over the L2 ball ``threat`` around each ``(N, ...)`` input."""
        self.check_threat(threat)
        return smoothed_regression_bounds(model, x, sigma=self.sigma, eps=float(threat.eps),
                                          output_range=self.output_range, n_samples=self.n_samples, beta=self.beta,
                                          batch_size=self.batch_size, generator=self.generator)
