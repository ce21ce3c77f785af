"""Conformal p-values of classification, and prediction sets from them (Vovk et al. 2005, ch. 2).

For n calibration scores s_1..s_n and a candidate label y of a test input with score s(x, y):

    p(x, y) = (1 + #{i : s_i >= s(x, y)}) / (n + 1)                              (conservative)
    p(x, y) = (#{i : s_i > s(x, y)} + U (1 + #{i : s_i = s(x, y)})) / (n + 1)    (smoothed, U ~ U(0, 1))

For the true label p is super-uniform, P[p <= a] <= a (smoothed: exactly uniform), so
{y : p(x, y) > alpha} has coverage >= 1 - alpha; it is *the same set* as the split-conformal
threshold set {y : s(x, y) <= s_(k)}, k = ceil((n + 1)(1 - alpha)), because
1 + #{s_i >= s} > alpha (n + 1)  <=>  #{s_i >= s} >= n + 1 - k  <=>  s <= s_(k).
:func:`pvalue_mask` evaluates that comparison on the integer counts, so the equality is exact
(a float comparison of p with alpha is not, for some n and alpha).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from certkit._validation import (
    Array,
    check_array,
    check_bool,
    check_generator,
    check_positive_int,
    check_probability,
    check_scores_1d,
)
from conformal.functional import conformal_rank

__all__ = ["conformal_pvalues", "pvalue_mask"]


def conformal_pvalues(calibration_scores: Array, test_scores: Array, *, smoothed: bool = False,
                      generator: torch.Generator | None = None) -> Array:
    """Conformal p-values of (N, K) (or any shape) test scores against (n,) calibration scores.

    Args:
        calibration_scores: (n,) nonconformity scores of the calibration points' true labels.
        test_scores: test scores of any shape, e.g. (N, K) for every label (same array type).
        smoothed: the randomised p-value (exactly uniform for the true label), with U ~ U(0, 1)
            per entry from ``generator``.
        generator: torch generator for ``smoothed`` (default: a fresh generator seeded with 0; torch's global
            RNG is never used).

    Returns:
        p-values of ``test_scores``' shape and array type, in (0, 1].
    """
    check_scores_1d(calibration_scores, "calibration_scores")
    smoothed = check_bool(smoothed, "smoothed")
    generator = check_generator(generator)
    if smoothed and generator is None:  # never torch's global RNG (randomness only from `generator`)
        generator = torch.Generator().manual_seed(0)
    if isinstance(calibration_scores, torch.Tensor) != isinstance(test_scores, torch.Tensor):
        raise TypeError("Expected arguments `calibration_scores` and `test_scores` to be both numpy arrays "
                        "or both torch tensors, but got a mix")
    # a NaN test score would get p = 1/(n+1) (searchsorted puts it last), silently leaving its label out
    check_array(test_scores, "test_scores", kind="real", allow_inf=True)
    n = int(calibration_scores.shape[0])
    if isinstance(test_scores, torch.Tensor):
        cal_t: Any = calibration_scores
        cal = torch.sort(cal_t.to(test_scores.device, test_scores.dtype)).values
        flat = test_scores.detach().reshape(-1).contiguous()
        at_least = n - torch.searchsorted(cal, flat, side="left")
        if not smoothed:
            return ((1 + at_least).to(test_scores.dtype) / (n + 1)).reshape(test_scores.shape)
        above = n - torch.searchsorted(cal, flat, side="right")
        u = torch.rand(flat.shape, generator=generator, dtype=torch.float64).to(flat.device, test_scores.dtype)
        return ((above + u * (1 + at_least - above)) / (n + 1)).reshape(test_scores.shape)
    cal_np = np.sort(np.asarray(calibration_scores).astype(np.asarray(test_scores).dtype))
    s = np.asarray(test_scores)
    ge: Any = n - np.searchsorted(cal_np, s, side="left")
    if not smoothed:
        return (1 + ge) / (n + 1)
    gt: Any = n - np.searchsorted(cal_np, s, side="right")
    u_np = torch.rand(s.shape, generator=generator, dtype=torch.float64).numpy()
    return (gt + u_np * (1 + ge - gt)) / (n + 1)


def pvalue_mask(pvalues: Array, alpha: float, n_calibration: int) -> Array:
    """Prediction sets {y : p(x, y) > alpha} from conservative p-values, compared exactly.

    ``p * (n + 1)`` is the integer 1 + #{s_i >= s}; the set keeps the labels whose count exceeds
    alpha (n + 1), i.e. count >= n + 2 - k with the exact rank k = ceil((n + 1)(1 - alpha)).
    Equal to the split-conformal threshold set of the same scores.

    Args:
        pvalues: conservative p-values from :func:`conformal_pvalues` (any shape).
        alpha: miscoverage level in (0, 1).
        n_calibration: n, the number of calibration scores behind the p-values.
    """
    check_probability(alpha, "alpha")
    n = check_positive_int(n_calibration, "n_calibration")
    # NaN compares False (the label silently left out); values outside [0, 1] are not p-values
    check_array(pvalues, "pvalues", kind="real")
    if pvalues.numel() if isinstance(pvalues, torch.Tensor) else pvalues.size:
        lo, hi = float(pvalues.min()), float(pvalues.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"Expected argument `pvalues` to hold p-values in [0, 1], but got values in [{lo:.4g}, {hi:.4g}]")
    need = n + 2 - conformal_rank(n, alpha)  # smallest count 1 + m with 1 + m > alpha (n + 1)
    if isinstance(pvalues, torch.Tensor):
        return torch.round(pvalues.double() * (n + 1)) >= need
    return np.rint(pvalues.astype(np.float64) * (n + 1)) >= need
