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

**Clustered prompts** (``groups``): when the calibration prompts come in groups that are not
independent (e.g. one act rendered in several frames), the per-prompt guarantee above does not
hold (a missed act counts as several "independent" misses). With ``groups`` the unit of sampling
is the group: if the calibration groups are i.i.d. draws from a distribution of groups, then with
probability >= 1 - delta over that draw, a fresh prompt (a fresh group, then one of its members
uniformly) is flagged with probability >= 1 - epsilon. The rule (``certkit._ranks.group_pac_threshold``):
the largest calibration score whose mean per-group miss fraction M passes the Chernoff-Hoeffding
test exp(-n KL(M || epsilon)) <= delta (Hoeffding 1963, Theorem 1) over the n groups, with the
monotone-family argument of Park et al. for a threshold chosen from the data (proof in that docstring).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from certkit._ranks import group_pac_threshold
from certkit._validation import check_array, check_calibrated, check_probability, check_scores_1d
from certkit.warnings import SmallCalibrationSetWarning
from conformal._base import Calibrator
from conformal.functional import pac_quantile

__all__ = ["SafetyThreshold", "calibrate_filter_threshold"]


def calibrate_filter_threshold(harmful_scores: Any, epsilon: float, delta: float, *, groups: Any = None) -> float:
    """The threshold on ``p_harmful`` with PAC recall >= 1 - epsilon (confidence 1 - delta).

    Args:
        harmful_scores: (N,) harmful probabilities the filter gives N harmful calibration prompts.
        epsilon: allowed miss rate on harmful prompts, in (0, 1).
        delta: allowed failure probability of the calibration draw, in (0, 1).
        groups: optional (N,) group label of each prompt (integers or strings), e.g. the act a
            prompt renders. None: the prompts are i.i.d. (Park et al., ICLR 2020's rule). Given: the
            *groups* are i.i.d. and the guarantee is about a fresh group's uniformly drawn member
            (the module docstring; Hoeffding 1963 over groups). Needs n_groups with
            (1 - epsilon)^n_groups <= delta (59 groups at epsilon = delta = 0.05), else ``-inf``.

    Returns:
        tau such that flagging ``p >= tau`` has recall >= 1 - epsilon with probability
        >= 1 - delta. Without groups it is the (k* + 1)-th smallest calibration score (k* of
        :func:`conformal.pac_rank`), i.e. ``1 - pac_quantile(1 - p)`` computed without
        rounding; with groups, the largest score whose mean per-group miss fraction passes the
        Chernoff-Hoeffding test (with one prompt per group: the order statistic of Chernoff's
        allowance, <= the per-prompt threshold). ``-inf`` (flag everything, with a warning) when
        N (or the number of groups) is too small.
    """
    p = np.asarray(harmful_scores.detach().cpu().numpy() if hasattr(harmful_scores, "detach") else harmful_scores,
                   dtype=np.float64)
    check_scores_1d(p, "harmful_scores")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("Expected argument `harmful_scores` to hold probabilities in [0, 1], but got other values")
    epsilon = check_probability(epsilon, "epsilon")
    delta = check_probability(delta, "delta")
    if groups is not None:
        tau = group_pac_threshold(p, groups, epsilon, delta)
        if math.isinf(tau):
            warnings.warn(
                f"calibrate_filter_threshold: the calibration groups are too few for epsilon={epsilon}, "
                f"delta={delta} ((1 - epsilon)^n_groups > delta); the threshold is -inf and every prompt is flagged",
                SmallCalibrationSetWarning, stacklevel=2)
        return tau
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
        >>> # prompts clustered by act (several frames per act): the group-valid rule
        >>> st = SafetyThreshold().calibrate(filt.predict_proba(harmful_cal), groups=act_ids)  # doctest: +SKIP
    """

    def __init__(self, *, epsilon: float = 0.05, delta: float = 0.05) -> None:
        self.epsilon = check_probability(epsilon, "epsilon")
        self.delta = check_probability(delta, "delta")
        self.threshold_: float | None = None

    def calibrate(self, harmful_scores: Any, groups: Any = None) -> SafetyThreshold:
        """Set ``threshold_`` from the filter's (N,) scores on harmful calibration prompts; ``groups``: optional (N,)
        group labels of clustered prompts (:func:`calibrate_filter_threshold`). Returns self."""
        self.threshold_ = calibrate_filter_threshold(harmful_scores, self.epsilon, self.delta, groups=groups)
        return self

    def calibrate_filter(self, filter: Any, harmful_prompts: list[str], groups: Any = None) -> Any:
        """Score ``harmful_prompts`` with ``filter``, calibrate (``groups``: optional group label per prompt), set the
        filter's threshold; returns the filter."""
        from certify.prompts.protocol import as_filter, check_texts  # (lazy: conformal may import certify)

        if not (hasattr(filter, "predict_proba") and hasattr(filter, "threshold")):
            as_filter(filter)  # raises a TypeError naming `filter` (a string, a class, a factory not called)
            raise TypeError(f"Expected argument `filter` to have `predict_proba` and `threshold` (a filter "
                            f"instance whose threshold is set), but got {type(filter).__name__}")
        prompts = check_texts(harmful_prompts, "harmful_prompts")
        scores = np.asarray(filter.predict_proba(prompts))
        if scores.shape != (len(prompts),):  # a short output would silently calibrate on fewer prompts
            raise ValueError(f"Expected argument `filter` to return one score per prompt, shape ({len(prompts)},), "
                             f"but got shape {scores.shape}")
        self.calibrate(scores, groups=groups)
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
        if isinstance(scores, str | bytes):  # np.asarray("0.5", dtype=float64) would read the string as 0.5
            raise TypeError(f"Expected argument `scores` to be an (N,) array of probabilities, but got {scores!r}")
        try:
            s = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"Expected argument `scores` to be an (N,) array of probabilities, but got {scores!r}") from None
        check_array(s, "scores", ndim=(0, 1))  # NaN is refused: it would read as "not harmful"
        if s.size and (float(s.min()) < 0 or float(s.max()) > 1):  # as calibrate: the scores are probabilities
            raise ValueError(f"Expected argument `scores` to hold probabilities in [0, 1], but got values in "
                             f"[{float(s.min()):.4g}, {float(s.max()):.4g}]")
        return s >= self.threshold_
