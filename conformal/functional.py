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
from typing import Any

import numpy as np
import torch

from certkit._ranks import pac_rank as _pac_rank
from certkit._validation import Array, check_array, check_positive_int, check_probability, check_scores_1d
from certkit.warnings import SmallCalibrationSetWarning

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

    Examples:
        Floating point gets this wrong by one for many (n, alpha); the rank is exact:

        >>> conformal_rank(999, 0.059)    # (1000 * 0.941) in floats is 941.0000000000001
        941
        >>> conformal_rank(8, 0.1)        # k = 9 > n = 8: too few scores for alpha = 0.1
        9
    """
    n = check_positive_int(n, "n", minimum=1)
    check_probability(float(alpha) if isinstance(alpha, Fraction) else alpha, "alpha")
    return math.ceil((n + 1) * (1 - _exact(alpha)))


def kth_smallest(scores: Array, k: int) -> float:
    """The k-th smallest entry (1-based) of a 1-D array, in linear time.

    Examples:
        >>> kth_smallest(np.array([0.3, 0.1, 0.2]), 2)
        0.2
    """
    if isinstance(scores, torch.Tensor):
        if scores.device.type == "cpu" and scores.dtype != torch.bfloat16:  # numpy has no bfloat16
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

    Examples:
        >>> scores = np.arange(1, 21) / 20          # 20 calibration scores 0.05, 0.10, ..., 1.00
        >>> conformal_quantile(scores, 0.1)         # k = ceil(21 * 0.9) = 19
        0.95
    """
    check_scores_1d(scores)
    n = int(scores.shape[0])
    k = conformal_rank(n, alpha)
    if k > n:
        warnings.warn(
            f"conformal_quantile: {n} calibration scores are too few for alpha={alpha} "
            f"(rank {k} > n); the threshold is +inf and every set is the full label set",
            SmallCalibrationSetWarning,
            stacklevel=2,
        )
        return math.inf
    return kth_smallest(scores, k)


def pac_rank(n: int, epsilon: float, delta: float) -> int | None:
    """k* = max{k : BinomCDF(k; n, epsilon) <= delta}, the number of calibration errors a PAC set may make.

    Returns None when even k = 0 is infeasible ((1 - epsilon)^n > delta).

    Examples:
        >>> pac_rank(1000, 0.1, 0.05)   # up to 84 of 1000 calibration errors keep the PAC guarantee
        84
        >>> pac_rank(20, 0.1, 0.05) is None   # 0.9^20 = 0.12 > 0.05: 20 points are too few
        True
    """
    return _pac_rank(n, epsilon, delta)  # one implementation in the base, shared with certify.prompts


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

    Examples:
        >>> scores = np.arange(1, 21) / 20
        >>> pac_quantile(scores, epsilon=0.2, delta=0.1)   # k* = 1: the 2nd largest score
        0.95
    """
    check_scores_1d(scores)
    n = int(scores.shape[0])
    k = pac_rank(n, epsilon, delta)
    if k is None:
        warnings.warn(
            f"pac_quantile: {n} calibration scores are too few for epsilon={epsilon}, delta={delta} "
            "((1 - epsilon)^n > delta); the threshold is +inf and every set is the full label set",
            SmallCalibrationSetWarning,
            stacklevel=2,
        )
        return math.inf
    return kth_smallest(scores, n - k)


def _directed_cast(value: float | Array, np_dtype: np.dtype, down: bool) -> np.ndarray:
    """``value`` in ``np_dtype``, rounded down (the largest value <= it) or up (the smallest >= it).

    For x of that dtype, ``x <= v`` iff ``x <= round_down(v)`` and ``x >= v`` iff ``x >= round_up(v)``:
    casting a float64 threshold to float32 by rounding to nearest (what ``torch.as_tensor(t,
    dtype=float32)`` does) would change the membership of the scores between t and its rounding.
    """
    v = np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
    if v.dtype == np_dtype:
        return v
    v = v.astype(np.float64)
    with np.errstate(over="ignore"):
        c = v.astype(np_dtype)
    wrong = (c > v) if down else (c < v)
    return np.where(wrong, np.nextafter(c, np_dtype.type(-np.inf if down else np.inf)), c).astype(np_dtype)


def _float_dtype(a: Array) -> np.dtype | None:
    if isinstance(a, torch.Tensor):
        if a.dtype not in (torch.float16, torch.float32, torch.float64):
            return None
        return torch.empty(0, dtype=a.dtype).numpy().dtype
    dt = np.asarray(a).dtype
    return dt if dt in (np.float16, np.float32, np.float64) else None


def _compare(values: Array, cut: float | Array, down: bool) -> Array:
    op = np.less_equal if down else np.greater_equal
    dt = _float_dtype(values)
    c: Any = cut if dt is None else _directed_cast(cut, dt, down)
    if isinstance(values, torch.Tensor):
        if values.device.type == "cpu" and dt is not None:  # numpy's comparison is faster than torch's on CPU
            c_np = c.detach().numpy() if isinstance(c, torch.Tensor) else np.asarray(c)
            return torch.from_numpy(op(values.detach().numpy(), c_np))
        t = c if isinstance(c, torch.Tensor) else torch.from_numpy(np.atleast_1d(c)).reshape(np.shape(c))
        t = t.to(values.device)
        return values <= t if down else values >= t
    return op(np.asarray(values), c)


def prediction_mask(scores: Array, threshold: float | Array) -> Array:
    """Set membership {y : s(x, y) <= threshold}: (N, K) scores -> (N, K) bool mask.

    ``threshold`` is a scalar or a (K,) vector (one threshold per class, Mondrian). The
    comparison is exact in every float dtype: a threshold of another precision is rounded
    *down* to the scores' dtype, which keeps ``s <= t`` as the real-number comparison.

    Examples:
        >>> prediction_mask(np.array([[0.1, 0.5, 0.9]]), 0.5)
        array([[ True,  True, False]])
        >>> prediction_mask(torch.tensor([[0.1, 0.5, 0.9]]), torch.tensor([0.2, 0.4, 0.9]))   # per class
        tensor([[ True, False,  True]])
    """
    check_array(scores, "scores", kind="real", finite=False)
    if bool(np.isnan(scores).any() if isinstance(scores, np.ndarray) else torch.isnan(scores).any()):
        raise ValueError("Expected argument `scores` to hold no NaN (a NaN score is never in the set), but it has NaN")
    if isinstance(threshold, np.ndarray | torch.Tensor):
        check_array(threshold, "threshold", kind="real", ndim=(0, 1), finite=False)
        if threshold.ndim == 1 and (scores.ndim == 0 or threshold.shape[0] != scores.shape[-1]):
            raise ValueError(
                f"Expected argument `threshold` to be a scalar or have shape (K,) = ({scores.shape[-1:]}), "
                f"but got shape {tuple(threshold.shape)}"
            )
        if bool(np.isnan(threshold).any() if isinstance(threshold, np.ndarray) else torch.isnan(threshold).any()):
            raise ValueError("Expected argument `threshold` to hold no NaN, but it contains NaN")
    else:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating | np.integer):
            raise TypeError(f"Expected argument `threshold` to be a number or a (K,) array, but got {threshold!r}")
        if math.isnan(threshold):
            raise ValueError("Expected argument `threshold` to be a number (+-inf allowed), but got nan")
    return _compare(scores, threshold, down=True)


def at_least(values: Array, cut: float | Array) -> Array:
    """Elementwise ``values >= cut`` (cut scalar or broadcastable), same array type as ``values``.

    Exact in every float dtype (a cut of another precision is rounded *up* to ``values``' dtype).
    """
    return _compare(values, cut, down=False)
