"""Pure functions of split conformal and PAC prediction sets.

Ranks are computed exactly: the conformal rank k = ceil((n + 1)(1 - alpha)) is evaluated in
rational arithmetic on the decimal value the caller wrote (``Fraction(repr(alpha))``), because
floating point is off by one for many (n, alpha): n = 999, alpha = 0.059 gives 942 in floats,
the exact rank is 941. Order statistics use ``np.partition``/``torch.kthvalue`` (linear time,
no size limit, unlike ``torch.quantile``'s 2^24).
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import torch
from scipy.stats import binom

from certkit._validation import Array, check_probability, check_scores_1d

__all__ = [
    "at_least",
    "conformal_quantile",
    "conformal_rank",
    "kth_smallest",
    "pac_quantile",
    "pac_rank",
    "prediction_mask",
]


def _exact(alpha: float | Fraction) -> Fraction:
    # repr() gives the shortest decimal that round-trips: the value the user typed (0.059, not 0.0589999...).
    return alpha if isinstance(alpha, Fraction) else Fraction(repr(float(alpha)))


def conformal_rank(n: int, alpha: float | Fraction) -> int:
    """The rank k = ceil((n + 1)(1 - alpha)) of the split-conformal quantile, in exact arithmetic.

    Args:
        n: number of calibration scores, >= 1.
        alpha: miscoverage level in (0, 1); floats are read as the decimal they print as.

    Returns:
        k, which may exceed n (then no finite threshold gives the guarantee).
    """
    check_probability(float(alpha), "alpha")
    return math.ceil((n + 1) * (1 - _exact(alpha)))


def kth_smallest(scores: Array, k: int) -> float:
    """The k-th smallest entry (1-based) of a 1-D array, in linear time."""
    if isinstance(scores, torch.Tensor):
        if scores.device.type == "cpu":
            return float(np.partition(scores.detach().numpy(), k - 1)[k - 1])
        return float(torch.kthvalue(scores.detach(), k).values)
    return float(np.partition(np.asarray(scores), k - 1)[k - 1])


def conformal_quantile(scores: Array, alpha: float | Fraction) -> float:
    """Split-conformal threshold: the k-th smallest calibration score, k = ceil((n + 1)(1 - alpha)).

    Guarantee (Vovk et al. 2005; Lei et al. 2018): if the calibration scores and a test score are
    exchangeable, P[s_test <= threshold] >= 1 - alpha, marginally over calibration and test draws.

    Args:
        scores: (N,) calibration nonconformity scores of the true labels (numpy or torch).
        alpha: miscoverage level in (0, 1) (a float, read as the decimal it prints as, or a Fraction).

    Returns:
        The threshold, ``+inf`` (with a warning) when k > n, i.e. n < (1 - alpha) / alpha.
    """
    check_scores_1d(scores)
    n = int(scores.shape[0])
    k = conformal_rank(n, alpha)
    if k > n:
        warnings.warn(
            f"conformal_quantile: {n} calibration scores are too few for alpha={alpha} "
            f"(rank {k} > n); the threshold is +inf and every set is the full label set",
            stacklevel=2,
        )
        return math.inf
    return kth_smallest(scores, k)


def pac_rank(n: int, epsilon: float, delta: float) -> int | None:
    """k* = max{k : BinomCDF(k; n, epsilon) <= delta}, the number of calibration errors a PAC set may make.

    Returns None when even k = 0 is infeasible ((1 - epsilon)^n > delta).
    """
    epsilon = check_probability(epsilon, "epsilon")
    delta = check_probability(delta, "delta")
    if binom.cdf(0, n, epsilon) > delta:
        return None
    k = int(binom.ppf(delta, n, epsilon))  # smallest k with cdf(k) >= delta
    while k > 0 and binom.cdf(k, n, epsilon) > delta:
        k -= 1
    while k < n and binom.cdf(k + 1, n, epsilon) <= delta:
        k += 1
    return k


def pac_quantile(scores: Array, epsilon: float, delta: float) -> float:
    """PAC prediction-set threshold (Park, Bastani, Matni, Lee, ICLR 2020).

    The threshold is the (k* + 1)-th largest calibration score, k* = :func:`pac_rank`.
    Guarantee (training-conditional): with probability >= 1 - delta over the draw of the n
    calibration points, P[s_test > threshold] <= epsilon.

    Args:
        scores: (N,) calibration nonconformity scores of the true labels.
        epsilon: allowed miscoverage in (0, 1).
        delta: allowed failure probability of the calibration draw in (0, 1).

    Returns:
        The threshold; ``+inf`` (with a warning) when no k is feasible.
    """
    check_scores_1d(scores)
    n = int(scores.shape[0])
    k = pac_rank(n, epsilon, delta)
    if k is None:
        warnings.warn(
            f"pac_quantile: {n} calibration scores are too few for epsilon={epsilon}, delta={delta} "
            "((1 - epsilon)^n > delta); the threshold is +inf and every set is the full label set",
            stacklevel=2,
        )
        return math.inf
    return kth_smallest(scores, n - k)


def prediction_mask(scores: Array, threshold: float | Array) -> Array:
    """Set membership {y : s(x, y) <= threshold}: (N, K) scores -> (N, K) bool mask.

    ``threshold`` is a scalar or a (K,) vector (one threshold per class, Mondrian).
    """
    if isinstance(scores, torch.Tensor):
        t = threshold if isinstance(threshold, torch.Tensor) else torch.as_tensor(threshold, dtype=scores.dtype)
        if scores.device.type == "cpu":  # numpy's comparison is several times faster than torch's on CPU
            return torch.from_numpy(np.less_equal(scores.detach().numpy(), t.numpy()))
        return scores <= t.to(scores.device)
    return np.asarray(scores) <= np.asarray(threshold)


def at_least(values: Array, cut: float | Array) -> Array:
    """Elementwise ``values >= cut`` (cut scalar or broadcastable), same array type as ``values``."""
    if isinstance(values, torch.Tensor):
        c = cut if isinstance(cut, torch.Tensor) else torch.as_tensor(cut, dtype=values.dtype)
        if values.device.type == "cpu":
            return torch.from_numpy(np.greater_equal(values.detach().numpy(), c.numpy()))
        return values >= c.to(values.device)
    return np.greater_equal(values, cut)
