"""Split conformal regression with absolute residuals (Papadopoulos et al. 2002; Lei et al. 2018).

    q = the k-th smallest of |y_i - mu(x_i)| over the n calibration points, k = ceil((n + 1)(1 - alpha))
    C(x) = [mu(x) - q, mu(x) + q]

The rank is the exact conformal rank of classification (:func:`conformal.conformal_rank`), the
order statistic one ``np.partition`` (``torch.kthvalue`` on accelerators).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from certkit._params import Params
from certkit._validation import (
    Array,
    check_calibrated,
    check_finite_result,
    check_probability,
    check_real_arrays,
)
from conformal.functional import conformal_quantile, conformal_rank
from conformal.regression.intervals import PredictionIntervals, check_same_kind, check_vector

__all__ = ["SplitConformalRegressor", "absolute_residuals"]


def absolute_residuals(predictions: Array, targets: Array) -> Array:
    """(N,) nonconformity scores ``|y - mu(x)|`` of (N,) predictions and targets (finite, real)."""
    check_real_arrays(predictions=predictions, targets=targets)
    if isinstance(predictions, torch.Tensor) and isinstance(targets, torch.Tensor) and _cpu(predictions, targets):
        # numpy's elementwise kernels are several times faster than torch's on CPU at this size
        d = np.subtract(targets.detach().numpy(), predictions.detach().numpy())
        out: Any = torch.from_numpy(np.abs(d, out=d))
    else:
        diff: Any = targets - predictions
        out = abs(diff)
    check_finite_result(out, {"predictions": predictions, "targets": targets})
    return out  # type: ignore[no-any-return]


def _cpu(*xs: torch.Tensor) -> bool:
    return all(x.device.type == "cpu" and x.dtype == xs[0].dtype for x in xs)


def quantile_of_fresh_scores(scores: Array, alpha: float) -> float:
    """:func:`conformal.conformal_quantile` of a score array the caller owns (partitioned in place: no copy)."""
    if isinstance(scores, torch.Tensor) and scores.device.type != "cpu":
        return conformal_quantile(scores, alpha)
    a = scores.detach().numpy() if isinstance(scores, torch.Tensor) else scores
    n = int(a.shape[0])
    k = conformal_rank(n, alpha)
    if n == 0 or k > n:
        return conformal_quantile(scores, alpha)  # raises (empty) or warns and returns inf
    a.partition(k - 1)
    return float(a[k - 1])


def plus_minus(center: Array, half_width: float) -> PredictionIntervals:
    """The intervals ``[center - w, center + w]`` (numpy or torch, same type as ``center``)."""
    if isinstance(center, torch.Tensor) and _cpu(center):
        c = center.detach().numpy()
        return PredictionIntervals(torch.from_numpy(c - half_width), torch.from_numpy(c + half_width))
    return PredictionIntervals(center - half_width, center + half_width)


class SplitConformalRegressor(Params):
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
        self.quantile_ = quantile_of_fresh_scores(absolute_residuals(mu, y), self.alpha)
        return self

    def predict(self, predictions: Array) -> PredictionIntervals:
        """Intervals ``[mu(x) - q, mu(x) + q]`` for (N,) test predictions."""
        check_calibrated(self, "quantile_")
        mu = check_vector(predictions, "predictions")
        return plus_minus(mu, self.quantile_)
