"""The calibration protocol shared by every calibrator, and the machinery of the score calibrators.

Every calibrator in ``conformal`` follows one protocol (:class:`Calibrator`):

* hyperparameters are keyword arguments of the constructor, validated there; ``get_params()`` returns
  them and ``repr`` shows those that differ from their defaults (as scikit-learn does);
* ``calibrate(data, labels, *, model=None)`` fits on calibration data and returns ``self``; ``data``
  is what the calibrator scores (probabilities, scores, smoothed scores), or, with ``model=``, the
  raw inputs the model (and the calibrator's certifier) turn into those;
* ``predict(data, *, model=None)`` returns the prediction sets of test data (no labels);
* learned state ends in ``_`` (``threshold_``, ``n_calibration_``); using it before ``calibrate``
  raises :class:`certkit.NotCalibratedError`;
* randomness is drawn only from a ``generator: torch.Generator | None``.

numpy arrays and torch tensors are both accepted where the data are probabilities or scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from certkit._params import Params
from certkit._validation import (
    Array,
    check_array_pair,
    check_bool,
    check_calibrated,
    check_labels,
    check_probs,
)
from certkit.certifier import Certifier, CertifierKind
from certkit.threat import LpBall
from conformal.functional import at_least, prediction_mask
from conformal.scores import ScoreFunction, aps, get_score, raps, thr, thr_probability_cut
from conformal.sets import PredictionSets

__all__ = ["Calibrator", "ScoreCalibrator", "resolve_certifier", "resolve_threat"]

_CUT_DTYPES = (torch.float16, torch.float32, torch.float64, np.float16, np.float32, np.float64)


class Calibrator(Params):
    """Base of every calibrator: ``get_params``, a scikit-learn style ``repr``, the calibrated-state check.

    See the module docstring for the protocol (``calibrate(data, labels, *, model=None) -> self``,
    ``predict(data, *, model=None)``, learned state ending in ``_``).
    """

    threshold_: Any = None

    @property
    def is_calibrated(self) -> bool:
        """Whether :meth:`calibrate` has run."""
        return getattr(self, "threshold_", None) is not None

    def _check_calibrated(self) -> None:
        check_calibrated(self, "threshold_")


def resolve_threat(threat: Any, *, eps: Any, norm: Any, domain: Any, default_norm: float = math.inf,
                   default_eps: float | None = None) -> LpBall:
    """The threat model from ``threat=LpBall(...)`` or from the convenience arguments ``eps``/``norm``/``domain``.

    Raises:
        ValueError: both spellings given, or neither (and no ``default_eps``).
    """
    if threat is not None:
        if not isinstance(threat, LpBall):
            raise TypeError(f"Expected argument `threat` to be a certkit.threat.LpBall, but got {type(threat).__name__}")
        given = [n for n, v in (("eps", eps), ("norm", norm), ("domain", domain)) if v is not None]
        if given:
            raise ValueError(
                f"Expected either argument `threat` or {', '.join(f'`{g}`' for g in given)}, but got both; "
                "put the radius, norm and domain in the LpBall"
            )
        return threat
    if eps is None:
        if default_eps is None:
            raise ValueError("Expected argument `eps` (a radius >= 0) or `threat` (a certkit.threat.LpBall), "
                             "but got neither")
        eps = default_eps
    return LpBall(default_norm if norm is None else norm, eps, domain)


def resolve_certifier(certifier: Any, kind: CertifierKind, owner: str, default: Callable[..., Any],
                      **convenience: Any) -> Certifier:
    """The certifier from ``certifier=...`` or built by ``default(**convenience)``; checked to be of ``kind``.

    ``convenience`` holds the constructor's convenience arguments (None when not given); they may not
    be combined with a certifier object.
    """
    given = {k: v for k, v in convenience.items() if v is not None}
    if certifier is None:
        return default(**given)  # type: ignore[no-any-return]
    if given:
        raise ValueError(
            f"Expected either argument `certifier` or {', '.join(f'`{g}`' for g in given)}, but got both; "
            "configure the certifier object instead"
        )
    if not isinstance(certifier, Certifier):
        raise TypeError(
            "Expected argument `certifier` to implement certkit.certifier.Certifier (attributes `kind`, `name`, "
            f"methods `check_threat`, `certify`), but got {type(certifier).__name__}"
        )
    if certifier.kind != kind:
        raise ValueError(
            f"Expected argument `certifier` to be of kind {kind!r} for {owner}, but got a {certifier.kind!r} "
            f"certifier {certifier!r}"
        )
    return certifier


class ScoreCalibrator(Calibrator):
    """Base of the calibrators: holds the score function and turns thresholds into sets.

    Subclasses implement ``_fit_threshold(cal_scores, labels, num_classes)``.
    """

    threshold_: float | Array | None

    def __init__(self, *, score: str | ScoreFunction = "aps", score_kwargs: dict[str, Any] | None = None,
                 validate: bool = True) -> None:
        self.score = score
        self.score_kwargs = dict(score_kwargs or {})
        self.validate = check_bool(validate, "validate")
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

    def calibrate(self, probs: Array, labels: Array, *, model: torch.nn.Module | None = None) -> ScoreCalibrator:
        """Fit the threshold on calibration probabilities (N, K) and true labels (N,). Returns self.

        With ``model=``, ``probs`` are the (N, ...) calibration inputs and the probabilities are
        ``conformal.predict_proba(model, inputs)``.
        """
        if model is not None:
            probs = _model_probs(model, probs)
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

    def predict(self, probs: Array, *, model: torch.nn.Module | None = None) -> PredictionSets:
        """Prediction sets {y : s(x, y) <= threshold_} for (N, K) probabilities (or inputs, with ``model=``)."""
        check_calibrated(self, "threshold_")
        if model is not None:
            probs = _model_probs(model, probs)
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
        if self._score_fn is thr and not self.score_kwargs and probs.dtype in _CUT_DTYPES:
            # one pass: 1 - p <= t  <=>  p >= p*(t), exactly (conformal.scores.thr_probability_cut)
            return PredictionSets(at_least(probs, thr_probability_cut(threshold, probs.dtype)), threshold)
        return PredictionSets(prediction_mask(self._checked_scores(probs), threshold), threshold)


def _model_probs(model: torch.nn.Module, inputs: Any) -> torch.Tensor:
    from conformal.model import predict_proba

    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"Expected the inputs to be a torch tensor with `model=`, but got {type(inputs).__name__}")
    return predict_proba(model, inputs)
