"""Split conformal prediction sets (Vovk et al. 2005; Papadopoulos et al. 2002)."""

from __future__ import annotations

from typing import Any

from certkit._validation import Array, check_probability
from conformal._base import ScoreCalibrator
from conformal.functional import conformal_quantile
from conformal.scores import ScoreFunction

__all__ = ["SplitConformal"]


class SplitConformal(ScoreCalibrator):
    """Split conformal classifier.

    Guarantee: for exchangeable calibration and test points,
    P[y_test in C(x_test)] >= 1 - alpha (marginal over the calibration and test draws; the
    coverage of a fixed calibration set fluctuates around it, see :class:`PACPredictionSet`).

    Args:
        score: ``"thr"``, ``"aps"``, ``"raps"`` or a callable ``(probs, labels=None) -> scores``.
        alpha: miscoverage level in (0, 1).
        score_kwargs: keyword arguments of the score (e.g. ``{"k_reg": 5, "lam": 0.01}`` for RAPS).
        validate: check inputs (two passes over each probability matrix); skip only for trusted inputs.

    Example:
        >>> sets = SplitConformal(score="aps", alpha=0.1).calibrate(cal_probs, cal_labels).predict(test_probs)  # doctest: +SKIP
    """

    def __init__(self, *, score: str | ScoreFunction = "aps", alpha: float = 0.1,
                 score_kwargs: dict[str, Any] | None = None, validate: bool = True) -> None:
        super().__init__(score=score, score_kwargs=score_kwargs, validate=validate)
        self.alpha = check_probability(alpha, "alpha")

    def _fit_threshold(self, cal_scores: Array, labels: Array, num_classes: int) -> float:
        return conformal_quantile(cal_scores, self.alpha)
