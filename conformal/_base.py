"""Shared machinery of the calibrators: score resolution, validation, the calibrated-state check."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from certkit._validation import Array, check_array_pair, check_calibrated, check_labels, check_probs
from conformal.functional import at_least, prediction_mask
from conformal.scores import ScoreFunction, aps, get_score, raps, thr, thr_probability_cut
from conformal.sets import PredictionSets

__all__ = ["ScoreCalibrator"]


class ScoreCalibrator:
    """Base of the calibrators: holds the score function and turns thresholds into sets.

    Subclasses implement ``_fit_threshold(cal_scores, labels, num_classes)``.
    """

    threshold_: float | Array | None

    def __init__(self, *, score: str | ScoreFunction = "aps", score_kwargs: dict[str, Any] | None = None,
                 validate: bool = True) -> None:
        self.score = score
        self.score_kwargs = dict(score_kwargs or {})
        self.validate = validate
        self._score_fn = get_score(score)
        self.threshold_ = None

    def scores(self, probs: Array, labels: Array | None = None) -> Array:
        """Nonconformity scores of ``labels`` (N,) or of every label (N, K)."""
        return self._score_fn(probs, labels, **self.score_kwargs)

    def _checked_scores(self, probs: Array, labels: Array | None = None) -> Array:
        # inputs were validated by the caller (or validation is off): skip the built-in scores' own checks
        if self._score_fn in (thr, aps, raps):
            return self._score_fn(probs, labels, validate=False, **self.score_kwargs)
        return self._score_fn(probs, labels, **self.score_kwargs)

    def calibrate(self, probs: Array, labels: Array) -> ScoreCalibrator:
        """Fit the threshold on calibration probabilities (N, K) and true labels (N,). Returns self."""
        if self.validate:
            check_probs(probs)
            check_array_pair(probs, labels, "probs", "labels")
            check_labels(labels, probs.shape[0], probs.shape[1])
        if probs.shape[0] == 0:
            raise ValueError("Expected argument `probs` to hold at least one calibration point, but it is empty")
        self.num_classes_ = int(probs.shape[1])
        self.n_calibration_ = int(probs.shape[0])
        self.threshold_ = self._fit_threshold(self._checked_scores(probs, labels), labels, self.num_classes_)
        return self

    def _fit_threshold(self, cal_scores: Array, labels: Array, num_classes: int) -> float | Array:
        raise NotImplementedError

    def predict(self, probs: Array) -> PredictionSets:
        """Prediction sets {y : s(x, y) <= threshold_} for (N, K) probabilities."""
        check_calibrated(self, "threshold_")
        if self.validate:
            check_probs(probs)
        if probs.ndim != 2 or probs.shape[1] != self.num_classes_:
            raise ValueError(
                f"Expected argument `probs` to have {self.num_classes_} columns (as at calibration), "
                f"but got shape {tuple(probs.shape)}"
            )
        assert self.threshold_ is not None
        threshold = self.threshold_
        if isinstance(probs, torch.Tensor) and isinstance(threshold, np.ndarray):
            threshold = torch.from_numpy(threshold)
        if self._score_fn is thr and not self.score_kwargs:  # one pass: 1 - p <= t  <=>  p >= p*(t), exactly
            return PredictionSets(at_least(probs, thr_probability_cut(threshold, probs.dtype)), threshold)
        return PredictionSets(prediction_mask(self._checked_scores(probs), threshold), threshold)
