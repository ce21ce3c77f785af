"""Split conformal prediction sets (Vovk et al. 2005; Papadopoulos et al. 2002)."""

from __future__ import annotations

from typing import Any

import torch

from certkit._validation import Array, check_calibrated, check_probability, check_probs
from conformal._base import ScoreCalibrator
from conformal.functional import conformal_quantile
from conformal.pvalues import conformal_pvalues
from conformal.scores import ScoreFunction

__all__ = ["SplitConformal"]


class SplitConformal(ScoreCalibrator):
    """Split conformal classifier.

    Guarantee: for exchangeable calibration and test points,
    P[y_test in C(x_test)] >= 1 - alpha (marginal over the calibration and test draws; the
    coverage of a fixed calibration set fluctuates around it, see :class:`PACPredictionSet`).

    Args:
        score: a name of :func:`conformal.scores.get_score` (``"thr"``, ``"aps"``, ``"raps"``, ``"saps"``,
            ``"topk"``, ``"margin"``, ``"cross_entropy"``) or a callable ``(probs, labels=None) -> scores``.
        alpha: miscoverage level in (0, 1).
        score_kwargs: keyword arguments of the score (e.g. ``{"k_reg": 5, "lam": 0.01}`` for RAPS).
        validate: check inputs (two passes over each probability matrix); skip only for trusted inputs.
        randomized: draw u ~ U(0, 1) per input for APS/RAPS/SAPS/TopK (default None: True for them, False
            otherwise),
            from the ``generator`` of ``calibrate``/``predict`` or a generator seeded with 0
            (:class:`conformal._base.ScoreCalibrator`).

    Example:
        >>> sets = SplitConformal(score="aps", alpha=0.1).calibrate(cal_probs, cal_labels).predict(test_probs)  # doctest: +SKIP
    """

    def __init__(self, *, score: str | ScoreFunction = "aps", alpha: float = 0.1,
                 score_kwargs: dict[str, Any] | None = None, validate: bool = True,
                 randomized: bool | None = None) -> None:
        super().__init__(score=score, score_kwargs=score_kwargs, validate=validate, randomized=randomized)
        self.alpha = check_probability(alpha, "alpha")

    def _fit_threshold(self, cal_scores: Array, labels: Array, num_classes: int) -> float:
        self.calibration_scores_ = cal_scores
        return conformal_quantile(cal_scores, self.alpha)

    def predict_p(self, probs: Array, *, smoothed: bool = False, generator: torch.Generator | None = None) -> Array:
        """(N, K) conformal p-values of every label (:func:`conformal.pvalues.conformal_pvalues`).

        ``pvalue_mask(p, alpha, n_calibration_)`` on the conservative p-values is exactly the set
        ``predict`` returns (for a randomised score: with a generator in the same state; the u of
        the score is drawn from ``generator`` (default ``generator_``) before the smoothing draws).
        """
        check_calibrated(self, "threshold_")
        if self.validate:
            check_probs(probs)
        if probs.shape[1] != self.num_classes_:  # p-values of another K would be returned silently
            raise ValueError(f"Expected argument `probs` to have {self.num_classes_} columns (as at calibration), "
                             f"but got shape {tuple(probs.shape)}")
        # a randomised score's u comes from generator_, so that the p-values match ``predict``'s sets
        test_scores = self._checked_scores(probs, generator=generator)
        return conformal_pvalues(self.calibration_scores_, test_scores, smoothed=smoothed, generator=generator)
