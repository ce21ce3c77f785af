"""Verifiably robust conformal prediction (VRCP; Jeary, Kuipers, Hosseini, Paoletti, NeurIPS 2024).

A verifier bounds the score over the perturbation ball, which gives two robust predictors:

    VRCP-I (inference):   tau = Q_{1-alpha}(s(x_i, y_i)),          C(x~) = {y : s_lo(x~, y) <= tau}
    VRCP-C (calibration): tau = Q_{1-alpha}(s_hi(x_i, y_i) u {inf}), C(x~) = {y : s(x~, y) <= tau}

where ``s_lo``/``s_hi`` bound the score over the ball B(x, eps) (``conformal.score_bounds``) and
``Q`` is the exact split-conformal order statistic. Both contain the vanilla split-conformal set
(VRCP Proposition 1): ``s_lo <= s`` and ``s_hi >= s`` pointwise.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from certify.api import METHODS
from certkit._validation import (
    check_calibrated,
    check_eval_mode,
    check_nonnegative,
    check_probability,
    check_scores_1d,
)
from certkit.threat import parse_norm
from conformal.functional import conformal_quantile, prediction_mask
from conformal.score_bounds import SCORES, ScoreName, certified_score_bounds
from conformal.scores import get_score
from conformal.sets import PredictionSets

__all__ = ["VRCP", "vrcp_mask"]

Mode = Literal["inference", "calibration"]


def vrcp_mask(test_scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Membership ``{y : score(x, y) <= threshold}`` of (N, K) test scores.

    For VRCP-I pass the (N, K) lower bounds ``s_lo`` and the clean threshold; for VRCP-C the
    (N, K) plain scores and the threshold of the upper bounds.
    """
    return prediction_mask(test_scores, threshold)  # type: ignore[return-value]


def _check_method(method: Any) -> str:
    if method not in METHODS:
        raise ValueError(f"Expected argument `method` to be one of {list(METHODS)}, but got {method!r}")
    return str(method)


def _check_norm(norm: Any) -> float:
    return parse_norm(norm, supported=(2.0, math.inf), why="bound propagation certifies L-inf and L2 balls")


class VRCP:
    """Verifiably robust conformal prediction (Jeary et al., NeurIPS 2024), VRCP-I and VRCP-C.

    Guarantee: for exchangeable calibration and test points, and EVERY perturbation ``x~`` of the
    test input with ``||x~ - x||_norm <= eps`` (inside ``domain``), ``P[y in C(x~)] >= 1 - alpha``
    (marginal over calibration and test draws; no failure probability beyond that, the bounds are
    deterministic). The sets contain the vanilla split-conformal sets (Proposition 1).

    * ``mode="inference"`` (VRCP-I): calibrate on clean scores, predict with the lower bound of the
      score over the ball around the (possibly perturbed) test input.
    * ``mode="calibration"`` (VRCP-C): calibrate on upper bounds of the calibration scores over
      their balls, predict with plain scores (no verifier at test time).

    ``calibrate``/``predict`` take scores (so any verifier can be plugged in);
    ``calibrate_model``/``predict_model`` compute them with ``certify`` (IBP, CROWN or CROWN-IBP).

    Args:
        score: ``"thr"``, ``"aps"`` or ``"raps"`` (non-randomised).
        alpha: miscoverage level in (0, 1).
        eps: radius >= 0 of the perturbation ball.
        norm: ``float("inf")`` or ``2``.
        method: certifier of the model layer: ``"ibp"``, ``"crown"`` or ``"crown-ibp"``.
        mode: ``"inference"`` (VRCP-I) or ``"calibration"`` (VRCP-C).
        domain: optional input box ``(low, high)`` intersected with the ball (e.g. ``(0, 1)``).
        sound: ask ``certify`` for outward-rounded float64 bounds (slower).
        score_kwargs: ``lam`` and ``k_reg`` for RAPS.

    Example:
        >>> vrcp = VRCP(score="thr", alpha=0.1, eps=0.02, mode="inference", domain=(0, 1))  # doctest: +SKIP
        >>> sets = vrcp.calibrate_model(model, x_cal, y_cal).predict_model(model, x_test)  # doctest: +SKIP
    """

    threshold_: float | None

    def __init__(
        self,
        *,
        score: ScoreName = "thr",
        alpha: float = 0.1,
        eps: float,
        norm: float = math.inf,
        method: str = "crown",
        mode: Mode = "inference",
        domain: tuple[float, float] | None = None,
        sound: bool = False,
        score_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if score not in SCORES:
            raise ValueError(f"Expected argument `score` to be one of {list(SCORES)}, but got {score!r}")
        self.score = score
        self.alpha = check_probability(alpha, "alpha")
        self.eps = check_nonnegative(eps, "eps")
        self.norm = _check_norm(norm)
        self.method = _check_method(method)
        if mode not in ("inference", "calibration"):
            raise ValueError(f"Expected argument `mode` to be 'inference' or 'calibration', but got {mode!r}")
        self.mode = mode
        self.domain = domain
        self.sound = bool(sound)
        self.score_kwargs = dict(score_kwargs or {})
        if set(self.score_kwargs) - {"lam", "k_reg"}:
            raise ValueError(f"Expected argument `score_kwargs` to hold only 'lam' and 'k_reg', but got {score_kwargs!r}")
        self._score_fn = get_score(score)
        self.threshold_ = None

    # -- score level --------------------------------------------------------------------------

    def calibrate(self, scores: torch.Tensor) -> VRCP:
        """Fit the threshold on (N,) calibration scores. Returns self.

        Args:
            scores: VRCP-I: clean true-label scores ``s(x_i, y_i)``; VRCP-C: their upper bounds
                ``s_hi(x_i, y_i)`` over the balls around the calibration inputs.
        """
        check_scores_1d(scores)
        self.n_calibration_ = int(scores.shape[0])
        self.threshold_ = conformal_quantile(scores, self.alpha)
        return self

    def predict(self, scores: torch.Tensor) -> PredictionSets:
        """Robust sets from (N, K) test scores: VRCP-I: lower bounds ``s_lo``; VRCP-C: plain scores."""
        check_calibrated(self, "threshold_")
        if not isinstance(scores, torch.Tensor) or scores.ndim != 2:
            raise ValueError(
                "Expected argument `scores` to be a (N, K) torch tensor, but got "
                f"{type(scores).__name__} {tuple(getattr(scores, 'shape', ()))}"
            )
        if torch.isnan(scores).any():
            raise ValueError("Expected argument `scores` to hold no NaN, but it contains NaN")
        assert self.threshold_ is not None
        return PredictionSets(vrcp_mask(scores, self.threshold_), self.threshold_)

    # -- model level (thin layer over certify) ------------------------------------------------

    def _bounds(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> Any:
        return certified_score_bounds(model, x, self.eps, score=self.score, labels=labels,  # type: ignore[arg-type]
                                      norm=self.norm, method=self.method, domain=self.domain, sound=self.sound,
                                      **self.score_kwargs)

    def _plain(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            probs = torch.softmax(model(x).to(torch.float64), dim=-1)
        return self._score_fn(probs, labels, **self.score_kwargs)  # type: ignore[return-value]

    def calibration_scores(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) scores to calibrate on: clean (VRCP-I) or upper bounds over the ball (VRCP-C)."""
        check_eval_mode(model)
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"Expected argument `labels` to be a torch tensor, but got {type(labels).__name__}")
        if self.mode == "inference":
            return self._plain(model, x, labels)
        return self._bounds(model, x, labels).upper  # type: ignore[no-any-return]

    def test_scores(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(N, K) scores to predict with: lower bounds over the ball (VRCP-I) or plain (VRCP-C)."""
        check_eval_mode(model)
        if self.mode == "inference":
            return self._bounds(model, x, None).lower  # type: ignore[no-any-return]
        return self._plain(model, x)

    def calibrate_model(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> VRCP:
        """Calibrate from a model and calibration inputs (N, ...) with labels (N,). Returns self."""
        return self.calibrate(self.calibration_scores(model, x, labels))

    def predict_model(self, model: nn.Module, x: torch.Tensor) -> PredictionSets:
        """Robust sets for (possibly perturbed) test inputs (N, ...)."""
        check_calibrated(self, "threshold_")
        return self.predict(self.test_scores(model, x))
