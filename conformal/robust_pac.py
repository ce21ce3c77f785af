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
from typing import Any, ClassVar, Literal

import torch

from certkit._validation import Array, check_probability
from certkit.certifier import Certifier, SmoothedScores
from certkit.threat import LpBall
from conformal.functional import pac_quantile
from conformal.rscp import SmoothedCalibrator, rscp_plus_mask
from conformal.score_bounds import ScoreName
from conformal.scores import ScoreFunction, get_score
from conformal.vrcp import BoundCalibrator

__all__ = ["RobustPAC", "SmoothedRobustPAC"]


class RobustPAC(BoundCalibrator):
    """PAC prediction sets robust to bounded perturbations, from a bound certifier.

    Guarantee: with probability >= 1 - delta over the i.i.d. calibration draw,
    ``P[y not in C(x~)] <= epsilon`` for every perturbation ``x~`` in the threat model
    (``||x~ - x||_norm <= eps``, inside ``domain``) chosen by an adversary who sees ``x``. Why: in
    ``mode="calibration"`` the threshold is the PAC threshold of the upper bounds ``s_hi(x_i, y_i)``
    and a miss at ``x~`` needs ``s(x~, y) > tau``, hence ``s_hi(x, y) > tau``; in ``mode="inference"``
    the threshold is that of clean scores and a miss needs ``s_lo(x~, y) > tau``, hence
    ``s(x, y) > tau`` (x is in the ball around x~).

    Same protocol as :class:`conformal.VRCP` (scores, or inputs with ``model=``; any certifier of
    kind ``"bounds"``).

    Args:
        score: ``"thr"``, ``"aps"`` or ``"raps"``.
        epsilon: allowed miscoverage in (0, 1).
        delta: failure probability of the calibration draw in (0, 1).
        threat: a :class:`certkit.threat.LpBall` (or ``eps``, ``norm`` (``float("inf")`` or ``2``), ``domain``).
        certifier: a bound certifier (or ``method``: ``"ibp"``, ``"crown"``, ``"crown-ibp"``; ``sound``).
        mode: ``"calibration"`` (bounds on calibration inputs, plain scores at test) or ``"inference"``.
        score_kwargs: ``lam``, ``k_reg`` for RAPS.
    """

    _param_names: ClassVar[tuple[str, ...] | None] = ("score", "epsilon", "delta", "threat", "certifier", "mode", "score_kwargs")
    _default_mode = "calibration"

    def __init__(
        self,
        *,
        score: ScoreName = "thr",
        epsilon: float = 0.1,
        delta: float = 0.05,
        eps: float | None = None,
        norm: float | str | None = None,
        method: str | None = None,
        mode: Literal["inference", "calibration"] = "calibration",
        domain: tuple[float, float] | None = None,
        sound: bool | None = None,
        score_kwargs: dict[str, Any] | None = None,
        threat: LpBall | None = None,
        certifier: Certifier | None = None,
    ) -> None:
        self._init_robust(score=score, certifier=certifier, threat=threat, mode=mode, score_kwargs=score_kwargs,
                          eps=eps, norm=norm, method=method, domain=domain, sound=sound)
        self.epsilon = check_probability(epsilon, "epsilon")
        self.delta = check_probability(delta, "delta")

    def _fit_threshold(self, scores: Array) -> float:
        return pac_quantile(scores, self.epsilon, self.delta)


class SmoothedRobustPAC(SmoothedCalibrator):
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
        beta: failure probability of each Monte Carlo margin, in (0, epsilon / 2).
        threat: the L2 ball (or ``eps``), as in :class:`conformal.RSCP`.
        certifier: the smoothing certifier (or ``sigma`` and ``n_mc``), as in :class:`conformal.RSCP`.
        score_kwargs: extra arguments of the score, as in :class:`conformal.RSCP`.
    """

    _param_names: ClassVar[tuple[str, ...] | None] = ("score", "epsilon", "delta", "beta", "threat", "certifier", "score_kwargs")
    _allow_tensor_scores = False

    def __init__(
        self,
        *,
        score: str | ScoreFunction = "thr",
        epsilon: float = 0.1,
        delta: float = 0.05,
        sigma: float | None = None,
        eps: float | None = None,
        n_mc: int | None = None,
        beta: float = 0.001,
        score_kwargs: dict[str, Any] | None = None,
        threat: LpBall | None = None,
        certifier: Certifier | None = None,
    ) -> None:
        get_score(score)
        self.epsilon = check_probability(epsilon, "epsilon")
        self.delta = check_probability(delta, "delta")
        self._init_smoothed(score=score, score_kwargs=score_kwargs, certifier=certifier, threat=threat,
                            sigma=sigma, eps=eps, n_mc=n_mc)
        b = check_probability(beta, "beta")
        if not b < self.epsilon / 2:
            raise ValueError(f"Expected argument `beta` to be in (0, epsilon/2) = (0, {self.epsilon / 2}), but got {beta!r}")
        self.beta = b

    def _quantile(self, s: torch.Tensor) -> float:
        # epsilon - 2 beta exactly, then rounded toward 0 (a larger epsilon would loosen the PAC rule).
        exact = Fraction(repr(self.epsilon)) - 2 * Fraction(repr(self.beta))
        eps_cal = float(exact)
        if Fraction(eps_cal) > exact:
            eps_cal = math.nextafter(eps_cal, 0.0)
        return pac_quantile(s, eps_cal, self.delta)

    def _mask(self, scores: SmoothedScores, sigma: float) -> torch.Tensor:
        assert self.threshold_ is not None
        return rscp_plus_mask(scores.mean, scores.variance, self.threshold_, sigma=sigma, eps=self.eps,
                              n_mc=scores.n_mc, beta=self.beta)
