"""Conformal regression intervals that stay valid under adversarial input perturbations.

A certifier gives, for each input x~ and threat model B (an L-p ball, ``certkit.threat.LpBall``),
sound bounds ``lower(x~) <= f(x') <= upper(x~)`` for every x' in B(x~). Because the ball is
symmetric, the clean input x of an attacked x~ in B(x) lies in B(x~), so f(x) is inside the bounds
computed at x~. Two robust predictors follow (the regression forms of VRCP, Jeary et al. 2024):

    inference   (VRCP-I): q = Q_{1-alpha}(|y_i - f(x_i)|)                          C(x~) = [lower(x~) - q, upper(x~) + q]
    calibration (VRCP-C): q = Q_{1-alpha}(max(y_i - lower(x_i), upper(x_i) - y_i))  C(x~) = [f(x~) - q, f(x~) + q]

Q is the exact split-conformal order statistic. VRCP-C's score is the worst residual over the
calibration point's ball, so its test cost is one forward pass.

Certifiers: :func:`bound_propagation_output_bounds` (``certify.bounds``: IBP, CROWN, CROWN-IBP)
and :func:`smoothed_output_bounds` (Gaussian smoothing of a bounded-output regressor, whose
smoothed mean g satisfies: Phi^{-1}((g - a)/(b - a)) is 1/sigma-Lipschitz in L2, Salman et al.
2019, Lemma 2; Monte Carlo error by Hoeffding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from certify.api import bounds as certify_bounds
from certkit._validation import (
    Array,
    check_calibrated,
    check_eval_mode,
    check_positive,
    check_positive_int,
    check_probability,
)
from certkit.threat import LpBall
from conformal.functional import conformal_quantile
from conformal.regression.intervals import PredictionIntervals, check_same_kind, check_vector

__all__ = [
    "OutputBounds",
    "RobustConformalRegressor",
    "bound_propagation_output_bounds",
    "smoothed_output_bounds",
    "worst_case_residuals",
]

Mode = Literal["inference", "calibration"]


@dataclass(frozen=True)
class OutputBounds:
    """Certified bounds of a regressor over the threat model around each input.

    Attributes:
        predictions: (N,) the regressor's output at the inputs themselves.
        lower, upper: (N,) ``lower <= f(x') <= upper`` for every x' in the ball around each input
            (for :func:`smoothed_output_bounds`: with probability >= 1 - beta per input).
    """

    predictions: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor


def _squeeze_output(out: torch.Tensor, name: str) -> torch.Tensor:
    if out.dim() == 2 and out.shape[1] == 1:
        return out[:, 0]
    if out.dim() == 1:
        return out
    raise ValueError(f"Expected `{name}` to output (N,) or (N, 1) predictions, but got shape {tuple(out.shape)}")


def _check_threat(threat: Any) -> LpBall:
    if not isinstance(threat, LpBall):
        raise TypeError(f"Expected argument `threat` to be a certkit.threat.LpBall, but got {threat!r}")
    return threat


def bound_propagation_output_bounds(model: nn.Module, x: torch.Tensor, threat: LpBall, *,
                                    method: str = "crown") -> OutputBounds:
    """Sound output bounds of a regressor (output (N,) or (N, 1)) over ``threat`` by ``certify.bounds``.

    Args:
        model: torch regressor in eval mode (layers ``certify`` supports).
        x: (N, ...) inputs.
        threat: the L-inf or L2 ball (with optional domain).
        method: ``"ibp"``, ``"crown"`` or ``"crown-ibp"``.
    """
    threat = _check_threat(threat)
    check_eval_mode(model)
    with torch.no_grad():
        pred = _squeeze_output(model(x), "model")
    b = certify_bounds(model, x, threat.eps, norm=threat.norm, method=method, domain=threat.domain)
    return OutputBounds(pred, _squeeze_output(b.lower, "model").detach(), _squeeze_output(b.upper, "model").detach())


def smoothed_output_bounds(model: nn.Module, x: torch.Tensor, *, sigma: float, eps: float,
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

    Used with :class:`RobustConformalRegressor`, the coverage guarantee becomes >= 1 - alpha - beta.

    Args:
        model: torch regressor (output (N,) or (N, 1)); outputs are clipped to ``output_range``.
        x: (N, ...) inputs.
        sigma: noise level > 0.
        eps: L2 radius >= 0.
        output_range: (a, b), a < b.
        n_samples: Monte Carlo draws per input.
        beta: failure probability per input, in (0, 1).
        batch_size: noisy copies per forward pass.
        generator: torch generator of the noise (on ``x``'s device).
    """
    sigma = check_positive(sigma, "sigma")
    if not (isinstance(eps, int | float) and not isinstance(eps, bool) and eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"Expected argument `eps` to be a finite number >= 0, but got {eps!r}")
    n_samples = check_positive_int(n_samples, "n_samples")
    beta = check_probability(beta, "beta")
    batch_size = check_positive_int(batch_size, "batch_size")
    if not (isinstance(output_range, tuple | list) and len(output_range) == 2 and output_range[0] < output_range[1]):
        raise ValueError(f"Expected argument `output_range` to be a pair (a, b) with a < b, but got {output_range!r}")
    a, b = float(output_range[0]), float(output_range[1])
    check_eval_mode(model)
    sums = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for i in range(x.shape[0]):
            done = 0
            while done < n_samples:
                m = min(batch_size, n_samples - done)
                xi = x[i : i + 1].expand(m, *x.shape[1:])
                noise = torch.randn(xi.shape, generator=generator, device=x.device, dtype=x.dtype)
                out = _squeeze_output(model(xi + sigma * noise), "model").clamp(a, b)
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


def worst_case_residuals(targets: Array, lower: Array, upper: Array) -> Array:
    """(N,) ``max(y - lower, upper - y)`` = sup over the ball of |y - f(x')| (the VRCP-C score)."""
    a: Any = targets - lower
    b: Any = upper - targets
    return torch.maximum(a, b) if isinstance(a, torch.Tensor) else (a > b) * a + (a <= b) * b


class RobustConformalRegressor:
    """Split conformal regression intervals with a coverage guarantee under input perturbations.

    Guarantee (VRCP, Jeary et al. 2024, for regression): for exchangeable calibration and test
    points and EVERY perturbation x~ of the test input inside the threat model,
    P[y_test in C(x~)] >= 1 - alpha, marginally (with :func:`smoothed_output_bounds`: >= 1 - alpha - beta).
    The intervals contain the plain split-conformal ones (bounds contain the prediction).

    * ``mode="inference"``: calibrate on clean residuals; widen each test interval by the certified
      bounds around the observed (possibly attacked) input.
    * ``mode="calibration"`` (VRCP-C): calibrate on worst-case residuals over each calibration
      point's ball; test intervals are the plain prediction +- q (no certifier at test time).

    ``calibrate``/``predict`` take predictions and bounds (any certifier: see
    :class:`OutputBounds`); ``calibrate_model``/``predict_model`` compute them with bound
    propagation over ``threat``.

    Args:
        alpha: miscoverage level in (0, 1).
        mode: ``"inference"`` or ``"calibration"``.
        threat: the ball for ``calibrate_model``/``predict_model`` (``certkit.threat.LpBall``).
        method: bound-propagation method for ``*_model``: ``"ibp"``, ``"crown"``, ``"crown-ibp"``.

    Example:
        >>> reg = RobustConformalRegressor(alpha=0.1, threat=LpBall("linf", 0.1))
        >>> intervals = reg.calibrate_model(model, x_cal, y_cal).predict_model(model, x_attacked)  # doctest: +SKIP
    """

    quantile_: float

    def __init__(self, *, alpha: float = 0.1, mode: Mode = "inference", threat: LpBall | None = None,
                 method: str = "crown") -> None:
        self.alpha = check_probability(alpha, "alpha")
        if mode not in ("inference", "calibration"):
            raise ValueError(f"Expected argument `mode` to be 'inference' or 'calibration', but got {mode!r}")
        self.mode = mode
        self.threat = None if threat is None else _check_threat(threat)
        self.method = method

    def calibrate(self, targets: Array, bounds: OutputBounds) -> RobustConformalRegressor:
        """Fit q from (N,) targets and the calibration inputs' :class:`OutputBounds`. Returns self."""
        y = check_vector(targets, "targets")
        n = y.shape[0]
        check_same_kind({"targets": y, "bounds.predictions": bounds.predictions})
        if self.mode == "inference":
            mu = check_vector(bounds.predictions, "bounds.predictions", n)
            scores: Any = abs(y - mu)
        else:
            lo = check_vector(bounds.lower, "bounds.lower", n)
            hi = check_vector(bounds.upper, "bounds.upper", n)
            scores = worst_case_residuals(y, lo, hi)
        self.n_calibration_ = int(n)
        self.quantile_ = conformal_quantile(scores, self.alpha)
        return self

    def predict(self, bounds: OutputBounds) -> PredictionIntervals:
        """Intervals for the (possibly perturbed) test inputs whose :class:`OutputBounds` are given."""
        check_calibrated(self, "quantile_")
        if self.mode == "inference":
            return PredictionIntervals(check_vector(bounds.lower, "bounds.lower") - self.quantile_,
                                       check_vector(bounds.upper, "bounds.upper") + self.quantile_)
        mu = check_vector(bounds.predictions, "bounds.predictions")
        return PredictionIntervals(mu - self.quantile_, mu + self.quantile_)

    def _bounds(self, model: nn.Module, x: torch.Tensor, need_bounds: bool) -> OutputBounds:
        if self.threat is None:
            raise ValueError("Expected argument `threat` (an LpBall) in the constructor to use the *_model methods")
        if not need_bounds:
            check_eval_mode(model)
            with torch.no_grad():
                pred = _squeeze_output(model(x), "model")
            return OutputBounds(pred, pred, pred)
        return bound_propagation_output_bounds(model, x, self.threat, method=self.method)

    def calibrate_model(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> RobustConformalRegressor:
        """Calibrate on (N, ...) inputs and (N,) targets, certifying with ``certify`` when the mode needs it."""
        return self.calibrate(y, self._bounds(model, x, self.mode == "calibration"))

    def predict_model(self, model: nn.Module, x: torch.Tensor) -> PredictionIntervals:
        """Intervals for (N, ...) (possibly perturbed) test inputs."""
        check_calibrated(self, "quantile_")
        return self.predict(self._bounds(model, x, self.mode == "inference"))
