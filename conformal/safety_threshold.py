"""A safety filter's decision threshold with a PAC guarantee on harmful recall.

Erase-and-check (``certify.prompts.erase_and_check``) certifies that a harmful prompt the filter
flags stays flagged under adversarial tokens; how many clean harmful prompts the filter
flags is the filter's recall, and its threshold sets it. Here the threshold is chosen on
harmful calibration prompts with the PAC rule of Park, Bastani, Matni and Lee (ICLR 2020),
:func:`conformal.pac_quantile`, on the nonconformity score ``s = 1 - p_harmful``.

**Guarantee** (training-conditional): if the calibration prompts are i.i.d. draws from the
distribution of harmful prompts, then with probability >= 1 - delta over that draw the
filter with ``p_harmful >= threshold`` flags a fresh harmful prompt with probability
>= 1 - epsilon. Combined with erase-and-check, the same fraction is *certified* harmful
under every attack within the threat model. Nothing is said about safe prompts: a
smaller epsilon lowers the threshold and flags more of them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from certkit._validation import check_array, check_calibrated, check_probability, check_scores_1d
from conformal._base import Calibrator
from conformal.functional import pac_quantile

__all__ = ["SafetyThreshold", "calibrate_filter_threshold"]


def calibrate_filter_threshold(harmful_scores: Any, epsilon: float, delta: float) -> float:
    """The threshold on ``p_harmful`` with PAC recall >= 1 - epsilon (confidence 1 - delta).

    Args:
        harmful_scores: (N,) harmful probabilities the filter gives N harmful calibration prompts.
        epsilon: allowed miss rate on harmful prompts, in (0, 1).
        delta: allowed failure probability of the calibration draw, in (0, 1).

    Returns:
        tau such that flagging ``p >= tau`` has recall >= 1 - epsilon with probability
        >= 1 - delta. It is the (k* + 1)-th smallest calibration score (k* of
        :func:`conformal.pac_rank`), i.e. ``1 - pac_quantile(1 - p)`` computed without
        rounding. ``-inf`` (flag everything, with pac_quantile's warning) when N is too small.
    """
    p = np.asarray(harmful_scores.detach().cpu().numpy() if hasattr(harmful_scores, "detach") else harmful_scores,
                   dtype=np.float64)
    check_scores_1d(p, "harmful_scores")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("Expected argument `harmful_scores` to hold probabilities in [0, 1], but got other values")
    epsilon = check_probability(epsilon, "epsilon")
    delta = check_probability(delta, "delta")
    s = 1.0 - p
    q = pac_quantile(s, epsilon, delta)
    if math.isinf(q):
        return -math.inf
    # Map back through the monotone s = 1 - p: the calibration points with s <= q are exactly
    # those with p >= tau, so tau is the matching order statistic of p (no 1 - q rounding).
    return float(p[s <= q].min())


class SafetyThreshold(Calibrator):
    """Calibrates a safety filter's threshold for PAC harmful recall (see the module docstring).

    Args:
        epsilon: allowed miss rate on harmful prompts, in (0, 1).
        delta: allowed failure probability of the calibration draw, in (0, 1).

    Example:
        >>> st = SafetyThreshold(epsilon=0.05, delta=0.05).calibrate(filt.predict_proba(harmful_cal))  # doctest: +SKIP
        >>> filt.set_threshold(st.threshold_)  # doctest: +SKIP
    """

    def __init__(self, *, epsilon: float = 0.05, delta: float = 0.05) -> None:
        self.epsilon = check_probability(epsilon, "epsilon")
        self.delta = check_probability(delta, "delta")
        self.threshold_: float | None = None

    def calibrate(self, harmful_scores: Any) -> SafetyThreshold:
        """Set ``threshold_`` from the filter's scores on harmful calibration prompts. Returns self."""
        self.threshold_ = calibrate_filter_threshold(harmful_scores, self.epsilon, self.delta)
        return self

    def calibrate_filter(self, filter: Any, harmful_prompts: list[str]) -> Any:
        """Score ``harmful_prompts`` with ``filter``, calibrate, set the filter's threshold; returns the filter."""
        self.calibrate(np.asarray(filter.predict_proba(list(harmful_prompts))))
        filter.threshold = self.threshold_
        return filter

    def flag(self, scores: Any) -> np.ndarray:
        """Boolean (N,): ``scores >= threshold_``."""
        check_calibrated(self, "threshold_")
        assert self.threshold_ is not None
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().cpu().numpy()
        if isinstance(scores, np.ndarray):
            check_array(scores, "scores", kind="real", finite=False)
        try:
            s = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"Expected argument `scores` to be an (N,) array of probabilities, but got {scores!r}") from None
        check_array(s, "scores", ndim=(0, 1))  # NaN is refused: it would read as "not harmful"
        return s >= self.threshold_
