"""Verifiably robust conformal prediction (VRCP; Jeary, Kuipers, Hosseini, Paoletti, NeurIPS 2024).

A verifier bounds the score over the perturbation ball, which gives two robust predictors:

    VRCP-I (inference):   tau = Q_{1-alpha}(s(x_i, y_i)),          C(x~) = {y : s_lo(x~, y) <= tau}
    VRCP-C (calibration): tau = Q_{1-alpha}(s_hi(x_i, y_i) u {inf}), C(x~) = {y : s(x~, y) <= tau}

where ``s_lo``/``s_hi`` bound the score over the ball B(x, eps) (``conformal.score_bounds``) and
``Q`` is the exact split-conformal order statistic. Both contain the vanilla split-conformal set
(VRCP Proposition 1): ``s_lo <= s`` and ``s_hi >= s`` pointwise.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from certify.certifier import BoundCertifier
from certkit._validation import (
    Array,
    check_eval_mode,
    check_labels,
    check_module,
    check_probability,
    check_scores_1d,
)
from certkit.certifier import Certifier, MarginBounds
from certkit.threat import LpBall
from conformal._base import Calibrator, resolve_certifier, resolve_threat
from conformal.functional import conformal_quantile, prediction_mask
from conformal.score_bounds import SCORES, ScoreBounds, ScoreName, score_bounds_from_certificate
from conformal.scores import get_score
from conformal.sets import PredictionSets

__all__ = ["VRCP", "BoundCalibrator", "vrcp_mask"]

Mode = Literal["inference", "calibration"]


def vrcp_mask(test_scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Membership ``{y : score(x, y) <= threshold}`` of (N, K) test scores.

    For VRCP-I pass the (N, K) lower bounds ``s_lo`` and the clean threshold; for VRCP-C the
    (N, K) plain scores and the threshold of the upper bounds.
    """
    return prediction_mask(test_scores, threshold)  # type: ignore[return-value]


def _true_label_scores(scores: Any, labels: Any) -> Array:
    """(N,) true-label scores from (N,) scores (``labels`` None) or (N, K) scores with (N,) labels."""
    if not isinstance(scores, np.ndarray | torch.Tensor):
        raise TypeError(f"Expected argument `scores` to be a numpy array or a torch tensor, but got {type(scores).__name__}")
    if labels is None:
        return scores
    if scores.ndim != 2:
        raise ValueError(f"Expected argument `scores` to have shape (N, K) when `labels` are given, but got shape "
                         f"{tuple(scores.shape)}")
    check_labels(labels, scores.shape[0], scores.shape[1])
    if isinstance(scores, torch.Tensor):
        idx = torch.as_tensor(labels, device=scores.device).long()
        return scores.gather(1, idx[:, None]).squeeze(1)
    return np.asarray(scores)[np.arange(scores.shape[0]), np.asarray(labels)]


class BoundCalibrator(Calibrator):
    """Shared machinery of the calibrators over a bound certifier (:class:`VRCP`, :class:`conformal.RobustPAC`).

    The certifier is used only through the ``certkit.certifier.Certifier`` protocol (``kind="bounds"``),
    so any certifier returning :class:`certkit.certifier.MarginBounds` plugs in.
    """

    _param_names: ClassVar[tuple[str, ...] | None]
    _default_mode: ClassVar[str] = "inference"
    threshold_: float | None

    def _init_robust(self, *, score: Any, certifier: Any, threat: Any, mode: Any, score_kwargs: Any, eps: Any,
                     norm: Any, method: Any, domain: Any, sound: Any) -> None:
        if score not in SCORES:
            raise ValueError(f"Expected argument `score` to be one of {list(SCORES)}, but got {score!r}")
        self.score = score
        self.threat = resolve_threat(threat, eps=eps, norm=norm, domain=domain)
        self.certifier = resolve_certifier(certifier, "bounds", type(self).__name__, BoundCertifier,
                                           method=method, sound=sound)
        self.certifier.check_threat(self.threat)
        if mode not in ("inference", "calibration"):
            raise ValueError(f"Expected argument `mode` to be 'inference' or 'calibration', but got {mode!r}")
        self.mode = mode
        self.score_kwargs = dict(score_kwargs or {})
        if set(self.score_kwargs) - {"lam", "k_reg"}:
            raise ValueError(f"Expected argument `score_kwargs` to hold only 'lam' and 'k_reg', but got {score_kwargs!r}")
        self._score_fn = get_score(score)
        self.threshold_ = None

    def _param_defaults(self) -> dict[str, Any]:
        return {**self._signature_defaults(), "certifier": BoundCertifier(), "mode": self._default_mode}

    # convenience views of the threat model and the certifier (read-only)
    @property
    def eps(self) -> float:
        return self.threat.eps

    @property
    def norm(self) -> float:
        return self.threat.norm

    @property
    def domain(self) -> tuple[float, float] | None:
        return self.threat.domain

    @property
    def method(self) -> str | None:
        return getattr(self.certifier, "method", None)

    @property
    def sound(self) -> bool | None:
        return getattr(self.certifier, "sound", None)

    def _fit_threshold(self, scores: Array) -> float:
        raise NotImplementedError

    # -- score level --------------------------------------------------------------------------

    def calibrate(self, scores: Array, labels: Array | None = None, *, model: nn.Module | None = None) -> Any:
        """Fit the threshold. Returns self.

        Args:
            scores: (N,) calibration scores of the true labels (or (N, K) scores with ``labels``):
                ``mode="inference"``: clean scores ``s(x_i, y_i)``; ``mode="calibration"``: their
                upper bounds ``s_hi(x_i, y_i)`` over the balls around the calibration inputs.
                With ``model=``: the (N, ...) calibration inputs, scored by the certifier.
            labels: (N,) labels; required with ``model=`` or (N, K) scores.
            model: eval-mode classifier; then ``scores`` are raw inputs (see :meth:`calibration_scores`).
        """
        # K of (N, K) scores given with labels (unknown for (N,) true-label scores): predict refuses another K
        k = int(scores.shape[1]) if model is None and labels is not None and getattr(scores, "ndim", 0) == 2 else None
        if model is not None:
            if labels is None:
                raise ValueError("Expected argument `labels` with `model=`, but got None")
            scores = self.calibration_scores(model, scores, labels)  # type: ignore[arg-type]
        else:
            scores = _true_label_scores(scores, labels)
        check_scores_1d(scores)
        self.num_classes_ = k
        self.n_calibration_ = int(scores.shape[0])
        self.threshold_ = self._fit_threshold(scores)
        return self

    def predict(self, scores: Array, *, model: nn.Module | None = None) -> PredictionSets:
        """Robust sets from (N, K) test scores: ``mode="inference"``: lower bounds ``s_lo`` over the ball
        around each test input; ``mode="calibration"``: plain scores. With ``model=``, ``scores`` are
        the (N, ...) test inputs (see :meth:`test_scores`)."""
        self._check_calibrated()
        if model is not None:
            scores = self.test_scores(model, scores)  # type: ignore[arg-type]
        if not isinstance(scores, np.ndarray | torch.Tensor) or scores.ndim != 2:
            raise ValueError(
                "Expected argument `scores` to be a (N, K) torch tensor or numpy array, but got "
                f"{type(scores).__name__} {tuple(getattr(scores, 'shape', ()))}"
            )
        k = getattr(self, "num_classes_", None)
        if k is not None and scores.shape[1] != k:
            raise ValueError(f"Expected argument `scores` to have {k} columns (as at calibration), "
                             f"but got shape {tuple(scores.shape)}")
        if bool(np.isnan(scores).any() if isinstance(scores, np.ndarray) else torch.isnan(scores).any()):
            raise ValueError("Expected argument `scores` to hold no NaN, but it contains NaN")
        assert self.threshold_ is not None
        return PredictionSets(prediction_mask(scores, self.threshold_), self.threshold_)

    # -- model level (through the certifier protocol) -----------------------------------------

    def score_bounds(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None) -> ScoreBounds:
        """Bounds of the score over the threat model around each input: (N,) with ``labels``, else (N, K)."""
        check_module(model)
        out = self.certifier.certify(model, x, self.threat, labels=labels)
        if not isinstance(out, MarginBounds):
            raise TypeError(f"Expected the certifier {self.certifier!r} to return MarginBounds, but it returned "
                            f"{type(out).__name__}")
        return score_bounds_from_certificate(self.score, out, **self.score_kwargs)

    def _plain(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            probs = torch.softmax(model(x).to(torch.float64), dim=-1)
        return self._score_fn(probs, labels, **self.score_kwargs)  # type: ignore[return-value]

    def calibration_scores(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) scores to calibrate on: clean (``mode="inference"``) or upper bounds over the ball."""
        check_module(model)  # a string would fail deep inside as "'str' object is not callable"
        check_eval_mode(model)
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"Expected argument `labels` to be a torch tensor, but got {type(labels).__name__}")
        if self.mode == "inference":
            return self._plain(model, x, labels)
        return self.score_bounds(model, x, labels).upper

    def test_scores(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(N, K) scores to predict with: lower bounds over the ball (``mode="inference"``) or plain."""
        check_module(model)  # a string would fail deep inside as "'str' object is not callable"
        check_eval_mode(model)
        if self.mode == "inference":
            return self.score_bounds(model, x).lower
        return self._plain(model, x)

    def calibrate_model(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> Any:
        """Same as ``calibrate(x, labels, model=model)``. Returns self."""
        return self.calibrate(x, labels, model=model)

    def predict_model(self, model: nn.Module, x: torch.Tensor) -> PredictionSets:
        """Same as ``predict(x, model=model)``: robust sets for (possibly perturbed) test inputs (N, ...)."""
        return self.predict(x, model=model)


class VRCP(BoundCalibrator):
    """Verifiably robust conformal prediction (Jeary et al., NeurIPS 2024), VRCP-I and VRCP-C.

    Guarantee: for exchangeable calibration and test points, and EVERY perturbation ``x~`` of the
    test input in the threat model (``||x~ - x||_norm <= eps``, inside ``domain``),
    ``P[y in C(x~)] >= 1 - alpha`` (marginal over calibration and test draws; no failure probability
    beyond that, the bounds are deterministic). The sets contain the vanilla split-conformal sets
    (Proposition 1).

    * ``mode="inference"`` (VRCP-I): calibrate on clean scores, predict with the lower bound of the
      score over the ball around the (possibly perturbed) test input.
    * ``mode="calibration"`` (VRCP-C): calibrate on upper bounds of the calibration scores over
      their balls, predict with plain scores (no verifier at test time).

    ``calibrate``/``predict`` take scores (so any verifier's numbers can be plugged in); with
    ``model=`` they take inputs and compute the scores through the certifier (any object of the
    ``certkit.certifier.Certifier`` protocol with ``kind="bounds"``; default
    ``certify.BoundCertifier()``, CROWN).

    Args:
        score: ``"thr"``, ``"aps"`` or ``"raps"`` (non-randomised).
        alpha: miscoverage level in (0, 1).
        threat: the threat model, a :class:`certkit.threat.LpBall` (or give ``eps``/``norm``/``domain``).
        certifier: a bound certifier (or give ``method``/``sound``).
        mode: ``"inference"`` (VRCP-I) or ``"calibration"`` (VRCP-C).
        score_kwargs: ``lam`` and ``k_reg`` for RAPS.
        eps: radius; with ``norm`` and ``domain`` a convenience spelling of
            ``threat=LpBall(norm, eps, domain)``.
        norm: ``float("inf")`` (default) or ``2`` (any spelling of :func:`certkit.threat.parse_norm`).
        domain: optional input box ``(low, high)`` intersected with the ball.
        method: ``"ibp"``, ``"crown"`` (default) or ``"crown-ibp"``; with ``sound`` a convenience spelling
            of ``certifier=certify.BoundCertifier(method, sound)``.
        sound: bounds rounded outward (default False).

    Example:
        >>> vrcp = VRCP(score="thr", alpha=0.1, threat=LpBall("inf", 0.02, (0, 1)), mode="inference")  # doctest: +SKIP
        >>> sets = vrcp.calibrate(x_cal, y_cal, model=model).predict(x_test, model=model)  # doctest: +SKIP
    """

    _param_names: ClassVar[tuple[str, ...] | None] = ("score", "alpha", "threat", "certifier", "mode", "score_kwargs")

    def __init__(
        self,
        *,
        score: ScoreName = "thr",
        alpha: float = 0.1,
        eps: float | None = None,
        norm: float | str | None = None,
        method: str | None = None,
        mode: Mode = "inference",
        domain: tuple[float, float] | None = None,
        sound: bool | None = None,
        score_kwargs: dict[str, Any] | None = None,
        threat: LpBall | None = None,
        certifier: Certifier | None = None,
    ) -> None:
        self.alpha = check_probability(alpha, "alpha")
        self._init_robust(score=score, certifier=certifier, threat=threat, mode=mode, score_kwargs=score_kwargs,
                          eps=eps, norm=norm, method=method, domain=domain, sound=sound)

    def _fit_threshold(self, scores: Array) -> float:
        return conformal_quantile(scores, self.alpha)
