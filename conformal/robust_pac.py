"""Robust PAC prediction sets: the PAC threshold (Park et al., ICLR 2020) on worst-case scores.

Two certifiers give worst-case scores:

* bound propagation (``certify``; L-inf or L2): ``s_hi(x, y) >= s(x', y)`` for every ``x'`` in the ball.
  Calibrating the PAC threshold on ``s_hi`` (or on clean scores, then predicting with ``s_lo``,
  as VRCP-I does) makes the training-conditional guarantee hold for every perturbation.
* randomized smoothing (L2 only; Gendler et al. 2022, Yan et al. 2024): the RSCP+ sets with the
  PAC threshold in place of the conformal quantile.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Literal

import torch
from torch import nn

from certkit._validation import (
    check_calibrated,
    check_eval_mode,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_probability,
    check_scores_1d,
)
from conformal.functional import pac_quantile, prediction_mask
from conformal.rscp import rscp_plus_mask, smoothed_score_fn
from conformal.score_bounds import ScoreName
from conformal.scores import ScoreFunction, get_score
from conformal.sets import PredictionSets
from smoothing.scores import SmoothedScores, smoothed_scores

__all__ = ["RobustPAC", "SmoothedRobustPAC"]


class RobustPAC:
    """PAC prediction sets robust to bounded perturbations, from bound propagation.

    Guarantee: with probability >= 1 - delta over the i.i.d. calibration draw,
    ``P[y not in C(x~)] <= epsilon`` for every perturbation ``x~`` with ``||x~ - x||_norm <= eps``
    (inside ``domain``) chosen by an adversary who sees ``x``. Why: in ``mode="calibration"`` the
    threshold is the PAC threshold of the upper bounds ``s_hi(x_i, y_i)`` and a miss at ``x~`` needs
    ``s(x~, y) > tau``, hence ``s_hi(x, y) > tau``; in ``mode="inference"`` the threshold is that of
    clean scores and a miss needs ``s_lo(x~, y) > tau``, hence ``s(x, y) > tau`` (x is in the ball
    around x~).

    Args:
        score: ``"thr"``, ``"aps"`` or ``"raps"``.
        epsilon: allowed miscoverage in (0, 1).
        delta: failure probability of the calibration draw in (0, 1).
        eps: radius >= 0; ``norm``: ``float("inf")`` or ``2``.
        method: ``"ibp"``, ``"crown"`` or ``"crown-ibp"``.
        mode: ``"calibration"`` (bounds on calibration inputs, plain scores at test) or ``"inference"``.
        domain: optional input box intersected with the ball.
        sound: outward-rounded float64 bounds from ``certify``.
        score_kwargs: ``lam``, ``k_reg`` for RAPS.
    """

    threshold_: float | None

    def __init__(
        self,
        *,
        score: ScoreName = "thr",
        epsilon: float = 0.1,
        delta: float = 0.05,
        eps: float,
        norm: float = math.inf,
        method: str = "crown",
        mode: Literal["inference", "calibration"] = "calibration",
        domain: tuple[float, float] | None = None,
        sound: bool = False,
        score_kwargs: dict[str, Any] | None = None,
    ) -> None:
        from conformal.vrcp import VRCP

        # VRCP validates the shared hyperparameters (score, eps, norm, method, mode, score_kwargs).
        self._vrcp = VRCP(score=score, alpha=0.5, eps=eps, norm=norm, method=method, mode=mode, domain=domain,
                          sound=sound, score_kwargs=score_kwargs)
        self.score, self.eps, self.norm, self.method, self.mode = score, self._vrcp.eps, self._vrcp.norm, method, mode
        self.domain, self.sound, self.score_kwargs = domain, bool(sound), dict(score_kwargs or {})
        self.epsilon = check_probability(epsilon, "epsilon")
        self.delta = check_probability(delta, "delta")
        self.threshold_ = None

    def calibrate(self, scores: torch.Tensor) -> RobustPAC:
        """Fit the PAC threshold on (N,) scores: upper bounds (``mode="calibration"``) or clean scores. Returns self."""
        check_scores_1d(scores)
        self.n_calibration_ = int(scores.shape[0])
        self.threshold_ = pac_quantile(scores, self.epsilon, self.delta)
        return self

    def predict(self, scores: torch.Tensor) -> PredictionSets:
        """Sets from (N, K) test scores: plain (``mode="calibration"``) or lower bounds (``"inference"``)."""
        check_calibrated(self, "threshold_")
        if not isinstance(scores, torch.Tensor) or scores.ndim != 2:
            raise ValueError(
                "Expected argument `scores` to be a (N, K) torch tensor, but got "
                f"{type(scores).__name__} {tuple(getattr(scores, 'shape', ()))}"
            )
        if bool(torch.isnan(scores).any()):
            raise ValueError("Expected argument `scores` to hold no NaN, but it contains NaN")
        assert self.threshold_ is not None
        return PredictionSets(prediction_mask(scores, self.threshold_), self.threshold_)

    def calibration_scores(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) scores to calibrate on (see :meth:`conformal.VRCP.calibration_scores`)."""
        return self._vrcp.calibration_scores(model, x, labels)

    def test_scores(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(N, K) scores to predict with (see :meth:`conformal.VRCP.test_scores`)."""
        return self._vrcp.test_scores(model, x)

    def calibrate_model(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> RobustPAC:
        """Calibrate from a model and calibration inputs (N, ...) with labels (N,). Returns self."""
        return self.calibrate(self.calibration_scores(model, x, labels))

    def predict_model(self, model: nn.Module, x: torch.Tensor) -> PredictionSets:
        """Robust PAC sets for (possibly perturbed) test inputs (N, ...)."""
        check_calibrated(self, "threshold_")
        return self.predict(self.test_scores(model, x))


class SmoothedRobustPAC:
    """PAC prediction sets robust to L2 perturbations, from randomized smoothing (RSCP+ with a PAC threshold).

    Calibrates ``tau`` = PAC threshold at ``(epsilon - 2 beta, delta)`` of the calibration Monte Carlo
    means ``S_hat(x_i, y_i)``, then predicts the RSCP+ set
    ``{y : Phi^-1(max(S_hat - b_B, 0)) - eps/sigma <= Phi^-1(min(tau + b_H, 1))}``
    (``conformal.rscp.rscp_plus_mask``; Yan, Zhang, Kang, ICLR 2024).

    Guarantee: with probability >= 1 - delta over the calibration draw (inputs and their noise),
    ``P[y not in C(x~)] <= epsilon`` for every ``||x~ - x||_2 <= eps``, the probability being over the
    test point and its noise. Why: a miss at ``x~`` needs a Bernstein margin to fail (beta), or the
    clean smoothed score to exceed ``tau + b_H`` (Lipschitz property of Phi^-1(S_bar)), which needs a
    Hoeffding margin to fail (beta) or the test point's own Monte Carlo mean, exchangeable with the
    calibration means, to exceed ``tau`` (epsilon - 2 beta w.p. 1 - delta, by the PAC threshold).

    Args:
        score: ``"thr"`` or ``"aps"`` (values in [0, 1]); smoothed per noise sample.
        epsilon: allowed miscoverage in (0, 1), > 2 beta.
        delta: failure probability of the calibration draw in (0, 1).
        sigma: smoothing noise > 0; ``eps``: L2 radius >= 0; ``n_mc``: samples per input (>= 2).
        beta: failure probability of each Monte Carlo margin, in (0, epsilon / 2).
        score_kwargs: extra arguments of the score.
    """

    threshold_: float | None

    def __init__(
        self,
        *,
        score: str | ScoreFunction = "thr",
        epsilon: float = 0.1,
        delta: float = 0.05,
        sigma: float = 0.25,
        eps: float = 0.125,
        n_mc: int = 256,
        beta: float = 0.001,
        score_kwargs: dict[str, Any] | None = None,
    ) -> None:
        get_score(score)
        self.score = score
        self.score_kwargs = dict(score_kwargs or {})
        self._score_fn = smoothed_score_fn(score, **self.score_kwargs)
        self.epsilon = check_probability(epsilon, "epsilon")
        self.delta = check_probability(delta, "delta")
        self.sigma = check_positive(sigma, "sigma")
        self.eps = check_nonnegative(eps, "eps")
        self.n_mc = check_positive_int(n_mc, "n_mc", minimum=2)
        b = check_probability(beta, "beta")
        if not b < self.epsilon / 2:
            raise ValueError(f"Expected argument `beta` to be in (0, epsilon/2) = (0, {self.epsilon / 2}), but got {beta!r}")
        self.beta = b
        self.threshold_ = None

    def score_model(self, model: nn.Module, x: torch.Tensor, *, generator: torch.Generator | None = None,
                    transform: Any = None, batch_size: int = 4096) -> SmoothedScores:
        """Monte Carlo smoothed scores (N, K) of every label (``smoothing.smoothed_scores``)."""
        check_eval_mode(model)
        return smoothed_scores(model, x, self._score_fn, sigma=self.sigma, n_mc=self.n_mc, generator=generator,
                               transform=transform, batch_size=batch_size)

    def calibrate(self, scores: SmoothedScores, labels: torch.Tensor) -> SmoothedRobustPAC:
        """Fit the PAC threshold on calibration smoothed scores (N, K) and labels (N,). Returns self."""
        if not isinstance(scores, SmoothedScores):
            raise TypeError(f"Expected argument `scores` to be a SmoothedScores, but got {type(scores).__name__}")
        if scores.n_mc != self.n_mc:
            raise ValueError(f"Expected argument `scores` to be estimated with n_mc={self.n_mc}, but got {scores.n_mc}")
        if not isinstance(labels, torch.Tensor) or labels.shape != (scores.mean.shape[0],):
            raise ValueError(f"Expected argument `labels` to be a tensor of shape ({scores.mean.shape[0]},), but got "
                             f"{type(labels).__name__} {tuple(getattr(labels, 'shape', ()))}")
        s = scores.mean.gather(1, labels.long().to(scores.mean.device)[:, None]).squeeze(1)
        self.n_calibration_ = int(s.shape[0])
        # epsilon - 2 beta exactly, then rounded toward 0 (a larger epsilon would loosen the PAC rule).
        exact = Fraction(repr(self.epsilon)) - 2 * Fraction(repr(self.beta))
        eps_cal = float(exact)
        if Fraction(eps_cal) > exact:
            eps_cal = math.nextafter(eps_cal, 0.0)
        self.threshold_ = pac_quantile(s.detach().to(torch.float64).cpu(), eps_cal, self.delta)
        return self

    def predict(self, scores: SmoothedScores) -> PredictionSets:
        """Robust PAC sets for test smoothed scores (N, K)."""
        check_calibrated(self, "threshold_")
        if not isinstance(scores, SmoothedScores) or scores.n_mc != self.n_mc:
            raise ValueError(f"Expected argument `scores` to be a SmoothedScores with n_mc={self.n_mc}, but got "
                             f"{type(scores).__name__}")
        assert self.threshold_ is not None
        mask = rscp_plus_mask(scores.mean, scores.variance, self.threshold_, sigma=self.sigma, eps=self.eps,
                              n_mc=self.n_mc, beta=self.beta)
        return PredictionSets(mask, self.threshold_)

