"""Conformal regression intervals that stay valid under adversarial input perturbations.

A certifier gives, for each input x~ and threat model B (an L-p ball, ``certkit.threat.LpBall``),
sound bounds ``lower(x~) <= f(x') <= upper(x~)`` for every x' in B(x~). Because the ball is
symmetric, the clean input x of an attacked x~ in B(x) lies in B(x~), so f(x) is inside the bounds
computed at x~. Two robust predictors follow (the regression forms of VRCP, Jeary et al. 2024):

    inference   (VRCP-I): q = Q_{1-alpha}(|y_i - f(x_i)|)                          C(x~) = [lower(x~) - q, upper(x~) + q]
    calibration (VRCP-C): q = Q_{1-alpha}(max(y_i - lower(x_i), upper(x_i) - y_i))  C(x~) = [f(x~) - q, f(x~) + q]

Q is the exact split-conformal order statistic. VRCP-C's score is the worst residual over the
calibration point's ball, so its test cost is one forward pass.

Certifiers are consumed through the ``certkit.certifier.OutputCertifier`` protocol
(``output_bounds(model, x, threat) -> OutputBounds``): ``certify.BoundCertifier`` (``certify.bounds``:
IBP, CROWN, CROWN-IBP; deterministic) and ``smoothing.SmoothedRegressionCertifier`` (Gaussian
smoothing of a bounded-output regressor, whose smoothed mean g satisfies: Phi^{-1}((g - a)/(b - a))
is 1/sigma-Lipschitz in L2, Salman et al. 2019, Lemma 2; Monte Carlo error by Hoeffding; with
probability >= 1 - beta per input). :func:`bound_propagation_output_bounds` and
:func:`smoothed_output_bounds` are the same as plain functions.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from certify.certifier import BoundCertifier
from certkit._params import Params
from certkit._validation import (
    Array,
    check_calibrated,
    check_eval_mode,
    check_finite_result,
    check_inputs,
    check_instance,
    check_probability,
    check_real_arrays,
)
from certkit.certifier import OutputBounds, OutputCertifier, squeeze_output
from certkit.threat import LpBall
from conformal.functional import conformal_quantile
from conformal.regression.intervals import PredictionIntervals, check_same_kind, check_vector
from smoothing.regression import smoothed_regression_bounds

__all__ = [
    "OutputBounds",
    "RobustConformalRegressor",
    "bound_propagation_output_bounds",
    "smoothed_output_bounds",
    "worst_case_residuals",
]

Mode = Literal["inference", "calibration"]


def _check_threat(threat: Any) -> LpBall:
    return check_instance(threat, LpBall, "threat", "a certkit.threat.LpBall")  # type: ignore[no-any-return]


def bound_propagation_output_bounds(model: nn.Module, x: torch.Tensor, threat: LpBall, *,
                                    method: str = "crown") -> OutputBounds:
    """Sound output bounds of a regressor (output (N,) or (N, 1)) over ``threat`` by ``certify.bounds``.

    Same as ``certify.BoundCertifier(method=method).output_bounds(model, x, threat)``.

    Args:
        model: torch regressor in eval mode (layers ``certify`` supports).
        x: (N, ...) inputs.
        threat: the L-inf or L2 ball (with optional domain).
        method: ``"ibp"``, ``"crown"`` or ``"crown-ibp"``.
    """
    check_inputs(model, x, "x")
    return BoundCertifier(method=method).output_bounds(model, x, _check_threat(threat))


def smoothed_output_bounds(model: nn.Module, x: torch.Tensor, *, sigma: float, eps: float,
                           output_range: tuple[float, float], n_samples: int = 1000, beta: float = 0.001,
                           batch_size: int = 1000, generator: torch.Generator | None = None) -> OutputBounds:
    """Certified bounds of the Monte Carlo smoothed regressor over the L2 ball of radius ``eps``.

    Same as :func:`smoothing.smoothed_regression_bounds` (see there for the math and the guarantee:
    the bounds hold with probability >= 1 - beta per input), or
    ``smoothing.SmoothedRegressionCertifier(sigma, output_range, ...).output_bounds(model, x, LpBall(2, eps))``.
    Used with :class:`RobustConformalRegressor`, the coverage guarantee becomes >= 1 - alpha - beta.
    """
    return smoothed_regression_bounds(model, x, sigma=sigma, eps=eps, output_range=output_range,
                                      n_samples=n_samples, beta=beta, batch_size=batch_size, generator=generator)


def worst_case_residuals(targets: Array, lower: Array, upper: Array) -> Array:
    """(N,) ``max(y - lower, upper - y)`` = sup over the ball of |y - f(x')| (the VRCP-C score).

    ``targets`` must be finite; an infinite bound gives an infinite score (NaN is refused)."""
    check_real_arrays(targets=targets, lower=lower, upper=upper)
    a: Any = targets - lower
    b: Any = upper - targets
    out = torch.maximum(a, b) if isinstance(a, torch.Tensor) else np.maximum(a, b)
    check_finite_result(out, {"targets": targets, "lower": lower, "upper": upper}, allow_inf=("lower", "upper"))
    return out  # type: ignore[no-any-return]


class RobustConformalRegressor(Params):
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
    :class:`OutputBounds`); ``calibrate_model``/``predict_model`` compute them with
    ``certifier.output_bounds(model, x, threat)`` (any ``certkit.certifier.OutputCertifier``).

    Args:
        alpha: miscoverage level in (0, 1).
        mode: ``"inference"`` or ``"calibration"``.
        threat: the ball for ``calibrate_model``/``predict_model`` (``certkit.threat.LpBall``).
        method: bound-propagation method of the default certifier: ``"ibp"``, ``"crown"``, ``"crown-ibp"``.
        certifier: an ``OutputCertifier`` for ``*_model`` (e.g. ``certify.BoundCertifier``,
            ``smoothing.SmoothedRegressionCertifier``); None: ``certify.BoundCertifier(method=method)``.
            Giving it together with a non-default ``method`` is a ValueError.

    Example:
        >>> reg = RobustConformalRegressor(alpha=0.1, threat=LpBall("linf", 0.1))
        >>> intervals = reg.calibrate_model(model, x_cal, y_cal).predict_model(model, x_attacked)  # doctest: +SKIP
    """

    quantile_: float

    def __init__(self, *, alpha: float = 0.1, mode: Mode = "inference", threat: LpBall | None = None,
                 method: str = "crown", certifier: OutputCertifier | None = None) -> None:
        self.alpha = check_probability(alpha, "alpha")
        if mode not in ("inference", "calibration"):
            raise ValueError(f"Expected argument `mode` to be 'inference' or 'calibration', but got {mode!r}")
        self.mode = mode
        self.threat = None if threat is None else _check_threat(threat)
        if certifier is not None:
            if not isinstance(certifier, OutputCertifier):
                raise TypeError("Expected argument `certifier` to be a certkit.certifier.OutputCertifier (with `name` "
                                f"and `output_bounds(model, x, threat)`) or None, but got {type(certifier).__name__}")
            if method != "crown":
                raise ValueError(f"Expected either argument `certifier` or `method`, not both, but got "
                                 f"method={method!r} and certifier={certifier!r}")
        self.method = method
        self.certifier = certifier

    def _output_certifier(self) -> OutputCertifier:
        """The certifier the ``*_model`` methods use (``certify.BoundCertifier(method=method)`` by default)."""
        return self.certifier if self.certifier is not None else BoundCertifier(method=self.method)

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
                pred = squeeze_output(model(x), "model")
            return OutputBounds(pred, pred, pred)
        return self._output_certifier().output_bounds(model, x, self.threat)

    def calibrate_model(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> RobustConformalRegressor:
        """Calibrate on (N, ...) inputs and (N,) targets, certifying with ``certifier`` when the mode needs it."""
        return self.calibrate(y, self._bounds(model, x, self.mode == "calibration"))

    def predict_model(self, model: nn.Module, x: torch.Tensor) -> PredictionIntervals:
        """Intervals for (N, ...) (possibly perturbed) test inputs."""
        check_calibrated(self, "quantile_")
        return self.predict(self._bounds(model, x, self.mode == "inference"))
