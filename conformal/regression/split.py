"""Split conformal regression with absolute residuals (Papadopoulos et al. 2002; Lei et al. 2018).

    q = the k-th smallest of |y_i - mu(x_i)| over the n calibration points, k = ceil((n + 1)(1 - alpha))
    C(x) = [mu(x) - q, mu(x) + q]

The rank is the exact conformal rank of classification (:func:`conformal.conformal_rank`), the
order statistic one ``np.partition`` (``torch.kthvalue`` on accelerators).
"""

from __future__ import annotations

from typing import Any

from certkit._validation import Array, check_calibrated, check_probability
from conformal.functional import conformal_quantile
from conformal.regression.intervals import PredictionIntervals, check_same_kind, check_vector

__all__ = ["SplitConformalRegressor", "absolute_residuals"]


def absolute_residuals(predictions: Array, targets: Array) -> Array:
    """(N,) nonconformity scores ``|y - mu(x)|`` of (N,) predictions and targets."""
    diff: Any = targets - predictions
    return abs(diff)


class SplitConformalRegressor:
    """Split conformal prediction intervals around a fixed regressor's predictions.

    Guarantee: for exchangeable calibration and test points, P[y_test in C(x_test)] >= 1 - alpha,
    marginally over the calibration and test draws (and < 1 - alpha + 1/(n + 1) when the
    residuals have no ties). Intervals have the same width everywhere; see
    :class:`NormalizedConformalRegressor` and :class:`ConformalizedQuantileRegressor` for
    adaptive ones.

    Args:
        alpha: miscoverage level in (0, 1).

    Attributes:
        quantile_: the calibrated half-width q (``inf``, with a warning, when n < (1 - alpha) / alpha).

    Example:
        >>> reg = SplitConformalRegressor(alpha=0.1).calibrate(mu_cal, y_cal)  # doctest: +SKIP
        >>> intervals = reg.predict(mu_test)  # intervals.lower, intervals.upper: (N,)  # doctest: +SKIP
    """

    quantile_: float

    def __init__(self, *, alpha: float = 0.1) -> None:
        self.alpha = check_probability(alpha, "alpha")

    def calibrate(self, predictions: Array, targets: Array) -> SplitConformalRegressor:
        """Fit q on (N,) calibration predictions mu(x_i) and (N,) targets y_i. Returns self."""
        check_same_kind({"predictions": predictions, "targets": targets})
        mu = check_vector(predictions, "predictions")
        y = check_vector(targets, "targets", mu.shape[0])
        self.n_calibration_ = int(mu.shape[0])
        self.quantile_ = conformal_quantile(absolute_residuals(mu, y), self.alpha)
        return self

    def predict(self, predictions: Array) -> PredictionIntervals:
        """Intervals ``[mu(x) - q, mu(x) + q]`` for (N,) test predictions."""
        check_calibrated(self, "quantile_")
        mu = check_vector(predictions, "predictions")
        return PredictionIntervals(mu - self.quantile_, mu + self.quantile_)
