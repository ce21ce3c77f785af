"""Split conformal predictive distributions (Vovk, Shen, Manokhin, Xie 2017; Vovk et al. 2019).

With calibration residuals r_i = y_i - mu(x_i), the split conformal predictive system assigns a
test input the distribution function

    Q(y, tau) = (#{i : r_i < y - mu(x)} + tau (#{i : r_i = y - mu(x)} + 1)) / (n + 1)

(a step function with jumps at mu(x) + r_i). Its guarantee is calibration in probability:
Q(y_test, tau) is uniform on [0, 1] for tau ~ U(0, 1), so every quantile and every central
interval it gives is a conformal prediction interval.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import torch

from certkit._params import Params
from certkit._validation import (
    Array,
    check_array,
    check_calibrated,
    check_generator,
    check_probability,
    check_unit_interval,
)
from conformal.functional import _exact
from conformal.regression.intervals import (
    PredictionIntervals,
    ceil_rank,
    check_same_kind,
    check_vector,
    floor_rank,
)

__all__ = ["ConformalPredictiveSystem"]


class ConformalPredictiveSystem(Params):
    """Split conformal predictive distributions around a fixed regressor's predictions.

    Guarantee (Vovk et al. 2019, Theorem 1): for exchangeable calibration and test points, the
    randomized ``Q(y_test, tau)`` is distributed U(0, 1); hence ``quantile(level)`` is an upper
    bound for y with probability >= level and ``predict`` covers with probability >= 1 - alpha.

    Args:
        alpha: miscoverage of the central interval given by :meth:`predict` (alpha/2 each side).

    Example:
        >>> cps = ConformalPredictiveSystem(alpha=0.1).calibrate(mu_cal, y_cal)  # doctest: +SKIP
        >>> median = cps.quantile(mu_test, 0.5); q = cps.cdf(mu_test, y_test, tau=0.5)  # doctest: +SKIP
    """

    residuals_: Array

    def __init__(self, *, alpha: float = 0.1) -> None:
        self.alpha = check_probability(alpha, "alpha")

    def calibrate(self, predictions: Array, targets: Array) -> ConformalPredictiveSystem:
        """Store the sorted (N,) residuals y_i - mu(x_i). Returns self."""
        check_same_kind({"predictions": predictions, "targets": targets})
        mu = check_vector(predictions, "predictions")
        y = check_vector(targets, "targets", mu.shape[0])
        r = y - mu
        self.residuals_ = torch.sort(r).values if isinstance(r, torch.Tensor) else np.sort(r)
        self.n_calibration_ = int(r.shape[0])
        return self

    def _residual(self, rank: int, mu: Array) -> Array:
        """mu + r_(rank), with r_(0) = -inf and r_(n + 1) = +inf."""
        n = self.n_calibration_
        if rank < 1:
            return mu - np.inf
        if rank > n:
            return mu + np.inf
        return mu + self.residuals_[rank - 1]

    def quantile(self, predictions: Array, level: float | Fraction) -> Array:
        """(N,) level-quantile mu(x) + r_(k), k = ceil(level (n + 1)) (exact); +inf when k > n.

        P[y_test <= quantile] >= level.
        """
        check_calibrated(self, "residuals_")
        check_probability(float(level), "level")
        return self._residual(ceil_rank(self.n_calibration_, level), check_vector(predictions, "predictions"))

    def predict(self, predictions: Array) -> PredictionIntervals:
        """Central intervals [mu + r_(floor((n+1) alpha/2)), mu + r_(ceil((n+1)(1 - alpha/2)))] (exact ranks).

        P[y_test in C(x_test)] >= 1 - alpha.
        """
        check_calibrated(self, "residuals_")
        mu = check_vector(predictions, "predictions")
        half = _exact(self.alpha) / 2
        n = self.n_calibration_
        return PredictionIntervals(self._residual(floor_rank(n, half), mu), self._residual(ceil_rank(n, 1 - half), mu))

    def cdf(self, predictions: Array, targets: Array, *, tau: float | Array | None = None,
            generator: torch.Generator | None = None) -> Array:
        """(N,) values Q(y, tau) of the predictive distribution at ``targets``.

        Args:
            predictions: (N,) mu(x).
            targets: (N,) values y at which to evaluate.
            tau: in [0, 1] (scalar or (N,)); drawn U(0, 1) per point from ``generator`` when omitted
                (the randomised, exactly calibrated version).
            generator: torch generator for tau (default: a fresh generator seeded with 0; torch's global RNG is
                never used).
        """
        check_calibrated(self, "residuals_")
        check_same_kind({"predictions": predictions, "targets": targets})
        mu = check_vector(predictions, "predictions")
        y = check_vector(targets, "targets", mu.shape[0])
        n = self.n_calibration_
        generator = check_generator(generator)
        if tau is not None and isinstance(tau, np.ndarray | torch.Tensor):  # a NaN or 2.0 gave values outside [0, 1]
            check_array(tau, "tau", kind="real", ndim=(0, 1))
            if tau.ndim == 1 and tau.shape[0] != mu.shape[0]:
                raise ValueError(f"Expected argument `tau` to be a scalar or have shape ({mu.shape[0]},), "
                                 f"but got shape {tuple(tau.shape)}")
            if tau.numel() if isinstance(tau, torch.Tensor) else tau.size:
                if float(tau.min()) < 0 or float(tau.max()) > 1:
                    raise ValueError("Expected argument `tau` to hold values in [0, 1], but got values outside it")
        elif tau is not None:
            tau = check_unit_interval(tau, "tau")
        if tau is None:
            if generator is None:  # never torch's global RNG (randomness only from `generator`)
                generator = torch.Generator().manual_seed(0)
            u = torch.rand(mu.shape[0], generator=generator, dtype=torch.float64)
            tau_ = u.to(mu.device) if isinstance(mu, torch.Tensor) else u.numpy()
        else:
            tau_ = tau  # type: ignore[assignment]
        d: Any = y - mu
        res: Any = self.residuals_
        if isinstance(d, torch.Tensor):
            below = torch.searchsorted(res, d, side="left")
            ties = torch.searchsorted(res, d, side="right") - below
            return (below + torch.as_tensor(tau_, device=d.device) * (ties + 1)) / (n + 1)
        below_np = np.searchsorted(self.residuals_, d, side="left")
        ties_np = np.searchsorted(self.residuals_, d, side="right") - below_np
        return (below_np + np.asarray(tau_) * (ties_np + 1)) / (n + 1)
