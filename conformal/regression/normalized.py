"""Normalised split conformal regression (Papadopoulos et al. 2008; Lei et al. 2018, Section 5.2).

A difficulty estimate sigma(x) > 0 (e.g. a second model's prediction of |y - mu(x)|, or a
k-NN distance) scales the residuals, so intervals are wider where the model is less sure:

    q = the k-th smallest of |y_i - mu(x_i)| / sigma(x_i),  k = ceil((n + 1)(1 - alpha))
    C(x) = [mu(x) - q sigma(x), mu(x) + q sigma(x)]
"""

from __future__ import annotations

from typing import Any

from certkit._params import Params
from certkit._validation import (
    Array,
    check_calibrated,
    check_finite_result,
    check_probability,
    check_real_arrays,
)
from conformal.functional import conformal_quantile
from conformal.regression.intervals import PredictionIntervals, check_same_kind, check_vector

__all__ = ["NormalizedConformalRegressor", "normalized_residuals"]


def normalized_residuals(predictions: Array, targets: Array, difficulty: Array) -> Array:
    """(N,) scores ``|y - mu(x)| / sigma(x)`` (finite inputs, ``difficulty`` > 0)."""
    check_real_arrays(predictions=predictions, targets=targets, difficulty=difficulty)
    if not bool((difficulty > 0).all()):
        raise ValueError("Expected argument `difficulty` to hold values > 0 (sigma(x)), but it does not")
    diff: Any = targets - predictions
    out = abs(diff) / difficulty
    check_finite_result(out, {"predictions": predictions, "targets": targets, "difficulty": difficulty})
    return out  # type: ignore[no-any-return]


class NormalizedConformalRegressor(Params):
    """Split conformal intervals whose width follows a difficulty estimate sigma(x) > 0.

    Guarantee: P[y_test in C(x_test)] >= 1 - alpha marginally, for exchangeable data and any
    sigma fixed before calibration (trained on other data). Adaptivity (conditional coverage)
    is only as good as sigma; the marginal guarantee does not depend on it.

    Args:
        alpha: miscoverage level in (0, 1).

    Example:
        >>> reg = NormalizedConformalRegressor(alpha=0.1).calibrate(mu_cal, y_cal, sigma_cal)  # doctest: +SKIP
        >>> intervals = reg.predict(mu_test, sigma_test)  # doctest: +SKIP
    """

    quantile_: float

    def __init__(self, *, alpha: float = 0.1) -> None:
        self.alpha = check_probability(alpha, "alpha")

    def calibrate(self, predictions: Array, targets: Array, difficulty: Array) -> NormalizedConformalRegressor:
        """Fit q on (N,) predictions, targets and difficulties sigma(x_i) > 0. Returns self."""
        check_same_kind({"predictions": predictions, "targets": targets, "difficulty": difficulty})
        mu = check_vector(predictions, "predictions")
        y = check_vector(targets, "targets", mu.shape[0])
        sigma = check_vector(difficulty, "difficulty", mu.shape[0], positive=True)
        self.n_calibration_ = int(mu.shape[0])
        self.quantile_ = conformal_quantile(normalized_residuals(mu, y, sigma), self.alpha)
        return self

    def predict(self, predictions: Array, difficulty: Array) -> PredictionIntervals:
        """Intervals ``mu(x) -/+ q sigma(x)`` for (N,) test predictions and difficulties."""
        check_calibrated(self, "quantile_")
        check_same_kind({"predictions": predictions, "difficulty": difficulty})
        mu = check_vector(predictions, "predictions")
        sigma = check_vector(difficulty, "difficulty", mu.shape[0], positive=True)
        return PredictionIntervals(mu - self.quantile_ * sigma, mu + self.quantile_ * sigma)
