"""Class-conditional (Mondrian) conformal prediction sets (Vovk 2012; Sadinle et al. 2019)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from certkit._validation import Array, check_probability
from conformal._base import ScoreCalibrator
from conformal.functional import conformal_rank, kth_smallest
from conformal.scores import ScoreFunction

__all__ = ["ClassConditional"]


class ClassConditional(ScoreCalibrator):
    """Mondrian conformal classifier: one threshold per class, from that class's calibration scores.

    Guarantee: for every class y, P[y_test in C(x_test) | y_test = y] >= 1 - alpha (for
    exchangeable data). A class with fewer than (1 - alpha) / alpha calibration points gets
    threshold +inf (with a warning): its label is always included.

    Args:
        score: score name or callable, as in :class:`SplitConformal`.
        alpha: miscoverage level in (0, 1), per class.
        score_kwargs: keyword arguments of the score.
        validate: check inputs (two passes over each probability matrix); skip only for trusted inputs.
        randomized: draw u ~ U(0, 1) per input for APS/RAPS/SAPS/TopK (default None: True for them, False
            otherwise),
            from the ``generator`` of ``calibrate``/``predict`` or a generator seeded with 0
            (:class:`conformal._base.ScoreCalibrator`).
    """

    def __init__(self, *, score: str | ScoreFunction = "aps", alpha: float = 0.1,
                 score_kwargs: dict[str, Any] | None = None, validate: bool = True,
                 randomized: bool | None = None) -> None:
        super().__init__(score=score, score_kwargs=score_kwargs, validate=validate, randomized=randomized)
        self.alpha = check_probability(alpha, "alpha")

    def _fit_threshold(self, cal_scores: Array, labels: Array, num_classes: int) -> Array:
        s = cal_scores.detach().cpu().numpy() if isinstance(cal_scores, torch.Tensor) else np.asarray(cal_scores)
        y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        thresholds = np.full(num_classes, math.inf)
        short = []
        for c in range(num_classes):
            sc = s[y == c]
            if len(sc) == 0 or conformal_rank(len(sc), self.alpha) > len(sc):  # a class absent from calibration too
                short.append(c)
            else:
                thresholds[c] = kth_smallest(sc, conformal_rank(len(sc), self.alpha))
        if short:
            warnings.warn(
                f"ClassConditional: classes {short} have too few calibration points for alpha={self.alpha}; "
                "their threshold is +inf (always included)",
                stacklevel=3,
            )
        if isinstance(cal_scores, torch.Tensor):
            # float64, never the scores' dtype: each finite threshold is a calibration score (exact in float64),
            # and +inf cast to an integer score dtype became its minimum (the class was never included)
            return torch.from_numpy(thresholds)
        return thresholds
