"""Conformalized quantile regression (CQR; Romano, Patterson, Candès, NeurIPS 2019).

Given lower and upper conditional-quantile estimates (q_lo(x), q_hi(x)) (e.g. at levels alpha/2
and 1 - alpha/2), CQR corrects them by one calibrated amount:

    E_i = max(q_lo(x_i) - y_i, y_i - q_hi(x_i))
    Q = the k-th smallest E_i, k = ceil((n + 1)(1 - alpha))
    C(x) = [q_lo(x) - Q, q_hi(x) + Q]

Q may be negative (the quantile model over-covers): the band then shrinks.
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
from conformal.functional import conformal_quantile
from conformal.regression.intervals import PredictionIntervals, check_same_kind, check_vector

__all__ = ["ConformalizedQuantileRegressor", "cqr_scores"]


def cqr_scores(lower: Array, upper: Array, targets: Array) -> Array:
    """(N,) CQR scores ``max(q_lo(x) - y, y - q_hi(x))`` (Romano et al. 2019, eq. 6).

    ``targets`` must be finite; an infinite quantile prediction gives an infinite score (NaN is refused)."""
    check_real_arrays(lower=lower, upper=upper, targets=targets)
    a: Any = lower - targets
    b: Any = targets - upper
    out = torch.maximum(a, b) if isinstance(a, torch.Tensor) else np.maximum(a, b)
    check_finite_result(out, {"lower": lower, "upper": upper, "targets": targets}, allow_inf=("lower", "upper"))
    return out  # type: ignore[no-any-return]


class ConformalizedQuantileRegressor(Params):
    """CQR prediction intervals from a quantile regressor's lower and upper predictions.

    Guarantee (Romano et al. 2019, Theorem 1): for exchangeable data,
    P[y_test in C(x_test)] >= 1 - alpha, and <= 1 - alpha + 1/(n + 1) when the scores have no ties.
    The interval adapts to heteroscedasticity as far as the quantile model does.

    Args:
        alpha: miscoverage level in (0, 1).

    Example:
        >>> reg = ConformalizedQuantileRegressor(alpha=0.1).calibrate(lo_cal, hi_cal, y_cal)  # doctest: +SKIP
        >>> intervals = reg.predict(lo_test, hi_test)  # doctest: +SKIP
    """

    quantile_: float

    def __init__(self, *, alpha: float = 0.1) -> None:
        self.alpha = check_probability(alpha, "alpha")

    def calibrate(self, lower: Array, upper: Array, targets: Array) -> ConformalizedQuantileRegressor:
        """Fit the correction Q on (N,) quantile predictions ``lower``/``upper`` and targets. Returns self."""
        check_same_kind({"lower": lower, "upper": upper, "targets": targets})
        lo = check_vector(lower, "lower")
        hi = check_vector(upper, "upper", lo.shape[0])
        y = check_vector(targets, "targets", lo.shape[0])
        self.n_calibration_ = int(lo.shape[0])
        self.quantile_ = conformal_quantile(cqr_scores(lo, hi, y), self.alpha)
        return self

    def predict(self, lower: Array, upper: Array) -> PredictionIntervals:
        """Intervals ``[q_lo(x) - Q, q_hi(x) + Q]`` for (N,) test quantile predictions."""
        check_calibrated(self, "quantile_")
        check_same_kind({"lower": lower, "upper": upper})
        lo = check_vector(lower, "lower")
        hi = check_vector(upper, "upper", lo.shape[0])
        return PredictionIntervals(lo - self.quantile_, hi + self.quantile_)
