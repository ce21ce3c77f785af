"""PAC prediction sets (Park, Bastani, Matni, Lee, ICLR 2020)."""

from __future__ import annotations

from typing import Any

from certkit._validation import Array, check_probability
from conformal._base import ScoreCalibrator
from conformal.functional import pac_quantile
from conformal.scores import ScoreFunction

__all__ = ["PACPredictionSet"]


class PACPredictionSet(ScoreCalibrator):
    """Training-conditional (PAC) prediction sets.

    Guarantee: with probability >= 1 - delta over the draw of the calibration set,
    P[y_test not in C(x_test)] <= epsilon (for i.i.d. data). Unlike split conformal, the
    guarantee holds for the calibration set you actually drew, except with probability delta.

    Args:
        score: score name or callable, as in :class:`SplitConformal`.
        epsilon: allowed miscoverage in (0, 1).
        delta: allowed failure probability of the calibration draw in (0, 1).
        score_kwargs: keyword arguments of the score.
        validate: check inputs (two passes over each probability matrix); skip only for trusted inputs.
        randomized: draw u ~ U(0, 1) per input for APS/RAPS/SAPS/TopK (default None: True for them, False
            otherwise),
            from the ``generator`` of ``calibrate``/``predict`` or a generator seeded with 0
            (:class:`conformal._base.ScoreCalibrator`).
    """

    def __init__(self, *, score: str | ScoreFunction = "aps", epsilon: float = 0.1, delta: float = 0.05,
                 score_kwargs: dict[str, Any] | None = None, validate: bool = True,
                 randomized: bool | None = None) -> None:
        super().__init__(score=score, score_kwargs=score_kwargs, validate=validate, randomized=randomized)
        self.epsilon = check_probability(epsilon, "epsilon")
        self.delta = check_probability(delta, "delta")

    def _fit_threshold(self, cal_scores: Array, labels: Array, num_classes: int) -> float:
        return pac_quantile(cal_scores, self.epsilon, self.delta)
