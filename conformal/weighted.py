"""Weighted conformal prediction under a known covariate shift (Tibshirani, Barber, Candès, Ramdas,
NeurIPS 2019, "Conformal prediction under covariate shift").

Calibration points (x_i, y_i) come from P = P_X x P_{Y|X}, the test point from P~ = P~_X x P_{Y|X}:
only the covariate distribution moves. With the likelihood ratio w(x) = dP~_X / dP_X known (up to a
constant factor), the test score is exchangeable with the calibration scores once each point is
weighted by w. The threshold of a test point x is the 1 - alpha quantile of

    sum_i p_i(x) delta_{s_i} + p_{n+1}(x) delta_{+inf},   p_i(x) = w(x_i) / (sum_j w(x_j) + w(x)),
                                                           p_{n+1}(x) = w(x) / (sum_j w(x_j) + w(x)),

i.e. the smallest calibration score s_(j) (sorted ascending) whose cumulative weight
W_j = w_(1) + ... + w_(j) reaches (1 - alpha)(W_n + w(x)), and +inf when none does.

Guarantee (Tibshirani et al., Corollary 1): P~[y in C(x)] >= 1 - alpha for the test point drawn from
P~ and the calibration points from P, i.i.d. With w = 1 this is split conformal, and the threshold
is exactly ``conformal_quantile`` (the comparison with (1 - alpha)(W_n + w(x)) is exact in rational
arithmetic wherever floating point cannot decide it).
"""

from __future__ import annotations

import bisect
import math
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from certkit._validation import (
    Array,
    check_array,
    check_calibrated,
    check_generator,
    check_probability,
)
from conformal._base import ScoreCalibrator
from conformal.functional import _compare
from conformal.scores import ScoreFunction
from conformal.sets import PredictionSets

__all__ = ["WeightedConformal", "weighted_conformal_quantile"]


def _weights(w: Array, name: str, n: int | None = None) -> np.ndarray:
    check_array(w, name, kind="real", ndim=1)
    out = (w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)).astype(np.float64)
    if n is not None and out.shape[0] != n:
        raise ValueError(f"Expected argument `{name}` to have shape ({n},), but got shape {out.shape}")
    if (out < 0).any():
        raise ValueError(f"Expected argument `{name}` to hold likelihood ratios >= 0, but got {out.min()!r}")
    return out


def _exact_ints(values: np.ndarray, exponent: int) -> list[int]:
    """``values * 2**-exponent`` as exact Python integers (every value a multiple of 2**exponent)."""
    out = []
    for v in values.tolist():
        f = Fraction(v) / Fraction(2) ** exponent
        assert f.denominator == 1
        out.append(int(f))
    return out


def _min_exponent(values: np.ndarray) -> int:
    nz = values[values > 0]
    if nz.size == 0:
        return 0
    _, e = np.frexp(nz)
    return int(e.min()) - 53  # every float64 of binary exponent e is a multiple of 2**(e - 53)


def weighted_conformal_quantile(scores: Array, weights: Array, test_weights: Array, alpha: float) -> np.ndarray:
    """Per-test-point thresholds of weighted split conformal prediction (Tibshirani et al. 2019).

    Args:
        scores: (n,) calibration scores of the true labels (numpy or torch).
        weights: (n,) likelihood ratios w(x_i) >= 0 of the calibration inputs (any common scale).
        test_weights: (N,) likelihood ratios w(x) >= 0 of the test inputs (the same scale).
        alpha: miscoverage level in (0, 1).

    Returns:
        (N,) float64 thresholds: the smallest s_(j) with W_j >= (1 - alpha)(W_n + w(x)), +inf when
        no calibration score reaches it (the test point's mass at +inf is needed).

    Examples:
        >>> s = np.arange(1, 21) / 20                       # 20 scores 0.05, ..., 1.00
        >>> weighted_conformal_quantile(s, np.ones(20), np.array([1.0, 1.5]), 0.1)   # w = 1: k = 19
        array([0.95, 1.  ])
    """
    check_array(scores, "scores", kind="real", ndim=1, finite=False)
    s = (scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)).astype(np.float64)
    if s.shape[0] == 0 or np.isnan(s).any():
        raise ValueError("Expected argument `scores` to hold at least one score and no NaN")
    w = _weights(weights, "weights", s.shape[0])
    wt = _weights(test_weights, "test_weights")
    a = Fraction(repr(check_probability(alpha, "alpha")))
    order = np.argsort(s, kind="stable")
    s_sorted, w_sorted = s[order], w[order]
    cum = np.cumsum(w_sorted)
    if not cum[-1] > 0:  # all calibration mass 0: the quantile is 0/0 (a test weight 0 picked the smallest score)
        raise ValueError("Expected argument `weights` to have a positive sum, but all weights are 0")
    total = cum[-1] + wt
    if not (math.isfinite(cum[-1]) and np.isfinite(total).all()):
        raise ValueError("Expected arguments `weights` and `test_weights` to have a finite sum")
    target = float(1 - a) * total
    j = np.searchsorted(cum, target, side="left")  # first j with W_j >= target (float64)
    # floating point decides unless W_j or W_{j-1} lies within the rounding error of the target
    tol = 4 * (len(s) + 4) * np.finfo(np.float64).eps * total
    near = np.abs(cum[np.minimum(j, len(s) - 1)] - target) <= tol
    near |= (j > 0) & (np.abs(cum[np.maximum(j - 1, 0)] - target) <= tol)
    if near.any():  # exact: W_j * b >= (b - a')(W_n + w) in integers, alpha = a'/b
        e = min(_min_exponent(w), _min_exponent(wt[near]))
        w_int = _exact_ints(w_sorted, e)
        cum_int = list(np.cumsum(np.asarray(w_int, dtype=object))) if w_int else []
        num, den = (1 - a).numerator, (1 - a).denominator
        for i, wt_int in zip(np.flatnonzero(near), _exact_ints(wt[near], e), strict=True):
            need = num * (cum_int[-1] + wt_int)
            # first j with W_j * den >= need: cum_int is non-decreasing
            j[i] = bisect.bisect_left([c * den for c in cum_int], need)
    out = np.full(wt.shape[0], math.inf)
    finite = j < len(s)
    out[finite] = s_sorted[j[finite]]
    return out


class WeightedConformal(ScoreCalibrator):
    """Weighted split conformal classifier for a known covariate shift (Tibshirani et al., NeurIPS 2019).

    Guarantee: if the calibration points are i.i.d. from P and the test point from P~ with the same
    P_{Y|X}, and ``weights``/test ``weights`` are the likelihood ratio dP~_X/dP_X (up to one constant
    factor) at the calibration/test inputs, then P~[y_test in C(x_test)] >= 1 - alpha. A wrong
    likelihood ratio voids it (the guarantee degrades with the ratio's error).

    Args:
        score: score name or callable, as in :class:`conformal.SplitConformal`.
        alpha: miscoverage level in (0, 1).
        score_kwargs: keyword arguments of the score.
        validate: check inputs; skip only for trusted inputs.
        randomized: as in :class:`conformal.SplitConformal` (APS/RAPS/SAPS/TopK are randomised by default).

    Learned state: ``calibration_scores_`` (n,), ``calibration_weights_`` (n,), ``n_calibration_`` and
    ``threshold_``, the threshold of a test point of weight 1 (no shift at its input; with unit calibration
    weights it is the split-conformal threshold). ``predict`` thresholds every test point at its own weight.

    Example:
        >>> wc = WeightedConformal(score="thr", alpha=0.1).calibrate(p_cal, y_cal, weights=w_cal)  # doctest: +SKIP
        >>> sets = wc.predict(p_test, weights=w_test)   # sets.threshold: (N,) per test point  # doctest: +SKIP
    """

    def __init__(self, *, score: str | ScoreFunction = "aps", alpha: float = 0.1,
                 score_kwargs: dict[str, Any] | None = None, validate: bool = True,
                 randomized: bool | None = None) -> None:
        super().__init__(score=score, score_kwargs=score_kwargs, validate=validate, randomized=randomized)
        self.alpha = check_probability(alpha, "alpha")

    def calibrate(self, probs: Array, labels: Array, *, weights: Array | None = None,  # type: ignore[override]
                  model: torch.nn.Module | None = None, from_logits: bool = False,
                  generator: torch.Generator | None = None) -> WeightedConformal:
        """Store the calibration scores of (N, K) probabilities and (N,) labels with their (N,) likelihood ratios.

        ``weights`` (required): w(x_i) = dP~_X/dP_X at the calibration inputs. ``model=``, ``from_logits``,
        ``generator`` as in :meth:`conformal.SplitConformal.calibrate`. Returns self.
        """
        if weights is None:
            raise TypeError("Expected argument `weights` (the (N,) likelihood ratios of the calibration inputs), "
                            "but got None; with no shift use conformal.SplitConformal")
        probs = self._inputs(probs, model, from_logits)
        self._pending_weights = _weights(weights, "weights", int(probs.shape[0]))
        if not self._pending_weights.sum() > 0:
            raise ValueError("Expected argument `weights` to have a positive sum, but all weights are 0")
        super().calibrate(probs, labels, generator=generator)
        return self

    def _fit_threshold(self, cal_scores: Array, labels: Array, num_classes: int) -> float:
        s = cal_scores.detach().cpu().numpy() if isinstance(cal_scores, torch.Tensor) else np.asarray(cal_scores)
        self.calibration_scores_ = s.astype(np.float64)
        self.calibration_weights_ = self._pending_weights
        return float(weighted_conformal_quantile(self.calibration_scores_, self.calibration_weights_,
                                                 np.ones(1), self.alpha)[0])

    def predict(self, probs: Array, *, weights: Array | None = None,  # type: ignore[override]
                model: torch.nn.Module | None = None, from_logits: bool = False,
                generator: torch.Generator | None = None) -> PredictionSets:
        """Prediction sets {y : s(x, y) <= q(x)} for (N, K) probabilities, with q(x) the weighted threshold of each
        test point at its likelihood ratio ``weights`` (N,) (required). Returns sets whose ``threshold`` is (N,).

        ``model=``, ``from_logits``, ``generator`` as in :meth:`conformal.SplitConformal.predict`.
        """
        check_calibrated(self, "threshold_")
        check_generator(generator)  # checked even when the score is not randomised (a seed is never ignored)
        if weights is None:
            raise TypeError("Expected argument `weights` (the (N,) likelihood ratios of the test inputs), but got None")
        probs = self._inputs(probs, model, from_logits)
        if probs.ndim != 2 or probs.shape[1] != self.num_classes_:
            raise ValueError(f"Expected argument `probs` to have {self.num_classes_} columns (as at calibration), "
                             f"but got shape {tuple(probs.shape)}")
        wt = _weights(weights, "weights", int(probs.shape[0]))
        q = weighted_conformal_quantile(self.calibration_scores_, self.calibration_weights_, wt, self.alpha)
        scores = self._checked_scores(probs, generator=generator)
        mask = _compare(scores, q[:, None], down=True)
        return PredictionSets(mask, torch.from_numpy(q) if isinstance(probs, torch.Tensor) else q)
