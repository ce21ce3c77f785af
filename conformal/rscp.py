"""Randomly smoothed conformal prediction: RSCP (Gendler et al. 2022) and RSCP+ (Yan et al. 2024).

The smoothed score S_bar(x, y) = E_delta S(x + delta, y), delta ~ N(0, sigma^2 I), of a score with
values in [0, 1] has a 1/sigma-Lipschitz Gaussian quantile Phi^-1(S_bar) (Salman et al. 2019), so
an L2 perturbation of size eps moves Phi^-1(S_bar(x, y)) by at most eps / sigma. Subtracting
eps / sigma before comparing with the calibration threshold makes the set robust:

    RSCP:   C(x)  = {y : Phi^-1(S_hat(x, y)) - eps/sigma <= Phi^-1(tau)}
    RSCP+:  C+(x) = {y : Phi^-1(max(S_hat - b_B, 0)) - eps/sigma <= Phi^-1(min(tau+ + b_H, 1))}

RSCP treats the Monte Carlo mean S_hat as the exact S_bar (its guarantee is heuristic). RSCP+
accounts for the Monte Carlo error: tau+ is calibrated at alpha - 2 beta, the calibration side is
inflated by the Hoeffding margin b_H and each test score deflated by its empirical-Bernstein
margin b_B, so that P[y in C+(x + delta)] >= 1 - alpha for every ||delta||_2 <= eps.

With ``eps = 0`` :class:`RSCP` is vanilla split conformal on smoothed scores.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from fractions import Fraction
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from certkit._validation import (
    check_array,
    check_eval_mode,
    check_labels,
    check_module,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_probability,
)
from certkit.certifier import Certifier, SmoothedScores
from certkit.threat import LpBall
from conformal._base import Calibrator, resolve_certifier, resolve_threat
from conformal.functional import conformal_quantile
from conformal.scores import ScoreFunction, aps, get_score, raps
from conformal.sets import PredictionSets
from smoothing.certifier import SmoothingCertifier
from smoothing.scores import PerInputScore

_DEFAULT_EPS = 0.125

__all__ = [
    "RSCP",
    "RSCPPlus",
    "SmoothedCalibrator",
    "bernstein_margin",
    "hoeffding_margin",
    "per_input_score",
    "robust_mask",
    "rscp_plus_mask",
    "smoothed_score_fn",
    "unit_raps",
]


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


def hoeffding_margin(n_mc: int, beta: float) -> float:
    """Hoeffding margin b_H = sqrt(ln(1/beta) / (2 n_mc)) for a mean of n_mc scores in [0, 1].

    With probability >= 1 - beta over the noise, S_bar(x, y) <= S_hat(x, y) + b_H.

    Args:
        n_mc: number of Monte Carlo samples behind S_hat, >= 2.
        beta: failure probability in (0, 1).

    Returns:
        The margin, a float.
    """
    n_mc = check_positive_int(n_mc, "n_mc", minimum=2)
    beta = check_probability(beta, "beta")
    return math.sqrt(math.log(1 / beta) / (2 * n_mc))


def bernstein_margin(variance: torch.Tensor, n_mc: int, beta: float) -> torch.Tensor:
    """Empirical-Bernstein margin b_B = sqrt(2 V ln(2/beta) / n_mc) + 7 ln(2/beta) / (3 (n_mc - 1)).

    Maurer and Pontil (2009), Theorem 4: for n_mc i.i.d. scores in [0, 1] with sample variance V,
    S_bar >= S_hat - b_B with probability >= 1 - beta.

    Args:
        variance: sample variances V (any shape, e.g. ``(N, K)``), unbiased (divisor n_mc - 1).
        n_mc: number of samples, >= 2.
        beta: failure probability in (0, 1).

    Returns:
        Margins with the shape of ``variance``.
    """
    n_mc = check_positive_int(n_mc, "n_mc", minimum=2)
    beta = check_probability(beta, "beta")
    log_term = math.log(2 / beta)
    return torch.sqrt(2 * variance.clamp_min(0) * log_term / n_mc) + 7 * log_term / (3 * (n_mc - 1))


def _unit_scores(mean: torch.Tensor, name: str, tol: float = 1e-6) -> torch.Tensor:
    """``mean`` in float64, checked to lie in [0, 1] (up to float rounding of an average, then clamped).

    The 1/sigma-Lipschitz bound of Phi^-1(S) and the Hoeffding/Bernstein margins hold only for scores
    in [0, 1]: a score outside (e.g. RAPS, whose penalty exceeds 1) would silently void the guarantee.
    """
    m = mean.detach().to(torch.float64)
    if bool(torch.isnan(m).any()):
        raise ValueError(f"Expected argument `{name}` to hold no NaN, but it contains NaN")
    if m.numel() and (float(m.min()) < -tol or float(m.max()) > 1 + tol):
        raise ValueError(
            f"Expected argument `{name}` to hold smoothed scores in [0, 1] (the RSCP guarantee needs bounded scores), "
            f"but got values in [{float(m.min()):.4g}, {float(m.max()):.4g}]; use score='thr' or 'aps', not 'raps'"
        )
    return m.clamp(0, 1)


def robust_mask(mean: torch.Tensor, threshold: float, *, sigma: float, eps: float) -> torch.Tensor:
    """RSCP membership {y : Phi^-1(S(x, y)) - eps/sigma <= Phi^-1(threshold)}.

    Computed in float64 in the Phi^-1 domain (Phi^-1(0) = -inf is always in, Phi^-1(1) = +inf
    never, unless the threshold is >= 1, which admits every label).

    Args:
        mean: ``(N, K)`` smoothed scores in [0, 1].
        threshold: calibrated threshold on the smoothed score (may be +inf).
        sigma: smoothing noise level > 0.
        eps: L2 radius >= 0 the sets must withstand.

    Returns:
        ``(N, K)`` bool mask.
    """
    sigma = check_positive(sigma, "sigma")
    eps = check_nonnegative(eps, "eps")
    s = torch.special.ndtri(_unit_scores(mean, "mean"))
    if threshold >= 1:
        return torch.ones_like(s, dtype=torch.bool)
    t = torch.special.ndtri(torch.tensor(max(threshold, 0.0), dtype=torch.float64, device=s.device))
    return s - eps / sigma <= t


def rscp_plus_mask(
    mean: torch.Tensor,
    variance: torch.Tensor,
    threshold: float,
    *,
    sigma: float,
    eps: float,
    n_mc: int,
    beta: float,
) -> torch.Tensor:
    """RSCP+ membership {y : Phi^-1(max(S_hat - b_B, 0)) - eps/sigma <= Phi^-1(min(tau + b_H, 1))}.

    Args:
        mean: ``(N, K)`` Monte Carlo means S_hat.
        variance: ``(N, K)`` sample variances of the same samples.
        threshold: tau, calibrated at level alpha - 2 beta on calibration S_hat.
        sigma: noise level > 0.
        eps: L2 radius >= 0.
        n_mc: samples behind each mean (calibration and test alike), >= 2.
        beta: failure probability of each margin, in (0, 1).

    Returns:
        ``(N, K)`` bool mask.
    """
    # The reference (RSCP_exp.py, get_scores) hard-codes beta = 0.001 for b_B whatever --beta is,
    # so its --beta changes only alpha' and b_H: a bug. Both margins use the same beta here, which
    # is what the union bound behind the 1 - alpha guarantee needs.
    if bool(torch.isnan(variance).any()):
        raise ValueError("Expected argument `variance` to hold no NaN, but it contains NaN")
    lower = (_unit_scores(mean, "mean") - bernstein_margin(variance.to(torch.float64), n_mc, beta)).clamp_min(0)
    upper = min(threshold + hoeffding_margin(n_mc, beta), 1.0)
    return robust_mask(lower, upper, sigma=sigma, eps=eps)


def unit_raps(probs: torch.Tensor, labels: Any = None, *, k_reg: int = 5, lam: float = 0.01, **kwargs: Any) -> Any:
    """RAPS divided by its maximum 1 + lam * max(0, K - k_reg): a score in [0, 1] with RAPS's sets.

    A fixed increasing map of RAPS, so conformal sets on it are RAPS sets; the RSCP bounds need [0, 1].
    """
    k = probs.shape[1]
    return raps(probs, labels, k_reg=k_reg, lam=lam, **kwargs) / (1.0 + lam * max(0, k - k_reg))


def smoothed_score_fn(score: str | ScoreFunction = "thr", **score_kwargs: Any) -> Callable[..., torch.Tensor]:
    """A score of every label, probs ``(M, K)`` -> scores ``(M, K)``, for :func:`smoothing.smoothed_scores`.

    ``"thr"`` is 1 - p_y. ``"aps"`` is certkit's APS (:func:`conformal.scores.aps`) with ``u = 0``,
    the inclusive form of Romano et al., unless ``u`` is given. ``smoothed_score_fn("aps", u=1.0)``
    is the exclusive form (all of p_y subtracted) that the RSCP/RSCP+ reference computes when it
    is given no u. ``"raps"`` is RAPS scaled into [0, 1] (:func:`unit_raps`). The randomised forms
    need one u per input shared by all its noise draws, which a per-sample score cannot see: pass
    ``randomized=True`` to the calibrator (it wraps the score as a :class:`smoothing.scores.PerInputScore`),
    or build one with :func:`per_input_score`.
    """
    if score_kwargs.get("randomized"):
        raise ValueError(
            "Expected argument `randomized` to be False for smoothed_score_fn (one u must be shared by all noise "
            "draws of an input): pass randomized=True to RSCP/RSCPPlus, or use per_input_score, but got True"
        )
    fn: Callable[..., Any] = unit_raps if score == "raps" else get_score(score)
    return partial(fn, **score_kwargs) if score_kwargs else fn  # type: ignore[return-value]


def per_input_score(score: str | ScoreFunction, u: torch.Tensor, **score_kwargs: Any) -> PerInputScore:
    """The randomised ``score`` (``"aps"`` or ``"raps"``) with one u per input, for :func:`smoothing.smoothed_scores`.

    Args:
        score: ``"aps"`` or ``"raps"`` (scaled into [0, 1]) or a callable accepting ``u=``.
        u: ``(N,)`` values in [0, 1], one per input (e.g. ``torch.rand(N, generator=g)``), shared by
            every noise draw of that input; valid because u is drawn independently of the noise.
        score_kwargs: further arguments of the score (``k_reg``, ``lam``).
    """
    if score == "thr":
        raise ValueError("Expected argument `score` to be 'aps', 'raps' or a callable taking u, but got 'thr' "
                         "(THR has no randomised form)")
    if "u" in score_kwargs or "randomized" in score_kwargs:
        raise ValueError("Expected no `u`/`randomized` in score_kwargs of per_input_score (u is given), but got them")
    return PerInputScore(smoothed_score_fn(score, **score_kwargs), u)


# ---------------------------------------------------------------------------------------------
# Calibrators
# ---------------------------------------------------------------------------------------------


def _check_unit_scores(s: torch.Tensor, name: str) -> None:
    """Smoothed scores must lie in [0, 1]: the Lipschitz bound on Phi^-1(S_bar) (Salman et al.) needs it."""
    check_array(s, name)
    if s.numel() and (float(s.min()) < 0 or float(s.max()) > 1):
        raise ValueError(
            f"Expected argument `{name}` to hold smoothed scores in [0, 1], but got values in "
            f"[{float(s.min()):.4g}, {float(s.max()):.4g}]"
        )


def _true_label_means(scores: SmoothedScores | torch.Tensor, labels: torch.Tensor | None, n_mc: int | None,
                      allow_tensor: bool = True) -> torch.Tensor:
    if isinstance(scores, SmoothedScores):
        if n_mc is not None and scores.n_mc != n_mc:
            raise ValueError(
                f"Expected argument `scores` to be estimated with n_mc={n_mc} samples (as configured), "
                f"but got n_mc={scores.n_mc}"
            )
        if labels is None:
            raise ValueError("Expected argument `labels` to be a (N,) tensor of true labels, but got None")
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"Expected argument `labels` to be a torch tensor, but got {type(labels).__name__}")
        check_labels(labels, scores.mean.shape[0], scores.mean.shape[1])
        return scores.mean.gather(1, labels.long().to(scores.mean.device)[:, None]).squeeze(1)
    if not allow_tensor:
        raise TypeError(f"Expected argument `scores` to be a SmoothedScores, but got {type(scores).__name__}")
    if isinstance(scores, np.ndarray):
        scores = torch.from_numpy(scores)
    if isinstance(scores, torch.Tensor) and scores.ndim == 2:
        raise TypeError(
            "Expected argument `scores` to be SmoothedScores (smoothed over Gaussian noise), but got a (N, K) "
            "array: probabilities of clean inputs carry no smoothing. Pass the raw inputs with the model, "
            "`calibrate(x, labels, model=model)`, or score them first, `calibrate(self.score_model(model, x), labels)`"
        )
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1 or scores.shape[0] == 0:
        raise ValueError(
            "Expected argument `scores` to be a SmoothedScores or a non-empty (N,) tensor of true-label "
            f"smoothed scores, but got {type(scores).__name__} {tuple(getattr(scores, 'shape', ()))}"
        )
    if labels is not None:
        raise ValueError("Expected argument `labels` to be None when `scores` are true-label scores, but got labels")
    return scores


def _smoothed_randomized(score: Any, randomized: bool | None, score_kwargs: dict[str, Any]) -> bool:
    if randomized is not None and not isinstance(randomized, bool):
        raise TypeError(f"Expected argument `randomized` to be True, False or None, but got {randomized!r}")
    randomizable = score in ("aps", "raps", aps, raps)
    if "u" in score_kwargs:
        if randomized:
            raise ValueError("Expected either argument `randomized=True` or score_kwargs `u`, but got both")
        return False
    if randomized and not randomizable:
        raise ValueError(f"Expected argument `randomized` to be False or None for score {score!r} "
                         "(only 'aps' and 'raps' have a randomised form), but got True")
    return randomizable if randomized is None else randomized


class SmoothedCalibrator(Calibrator):
    """Shared machinery of the calibrators over a smoothing certifier (RSCP, RSCP+, smoothed robust PAC).

    The certifier is used only through the ``certkit.certifier.Certifier`` protocol (``kind="smoothing"``):
    any certifier returning :class:`certkit.certifier.SmoothedScores` plugs in. The L2 radius comes from
    the threat model, the noise level ``sigma`` from the smoothed scores themselves.
    """

    threshold_: float | None
    _allow_tensor_scores: ClassVar[bool] = True

    def _init_smoothed(self, *, score: Any, score_kwargs: Any, certifier: Any, threat: Any, sigma: Any,
                       eps: Any, n_mc: Any, randomized: bool | None = None) -> None:
        self.score = score
        self.score_kwargs = dict(score_kwargs or {})
        self._score_fn = smoothed_score_fn(score, **self.score_kwargs)
        self.randomized = randomized
        self._randomize = _smoothed_randomized(score, randomized, self.score_kwargs)
        self.threat = resolve_threat(threat, eps=eps, norm=None, domain=None, default_norm=2.0,
                                     default_eps=_DEFAULT_EPS)
        self.certifier = resolve_certifier(certifier, "smoothing", type(self).__name__, SmoothingCertifier,
                                           sigma=sigma, n_mc=n_mc)
        self.certifier.check_threat(self.threat)
        self.threshold_ = None

    def _param_defaults(self) -> dict[str, Any]:
        return {**self._signature_defaults(), "certifier": SmoothingCertifier(),
                "threat": LpBall(2, _DEFAULT_EPS)}

    # convenience views (read-only)
    @property
    def eps(self) -> float:
        """The L2 radius of the threat model."""
        return self.threat.eps

    @property
    def sigma(self) -> float | None:
        """The certifier's noise level, if it has one (the smoothed scores carry theirs)."""
        return getattr(self.certifier, "sigma", None)

    @property
    def n_mc(self) -> int | None:
        """The certifier's number of Monte Carlo samples, if it has one (the smoothed scores carry theirs)."""
        return getattr(self.certifier, "n_mc", None)

    def score_model(
        self,
        model: nn.Module,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        batch_size: int | None = None,
    ) -> SmoothedScores:
        """Smoothed scores ``(N, K)`` of every label, from the certifier with this calibrator's score.

        A randomised score (``randomized``) draws one u ~ U(0, 1) per input from ``generator`` (default:
        ``generator_``, a generator seeded with 0 on first use), shared by all noise draws of that input.
        ``generator``, ``transform`` (e.g. a fitted :class:`conformal.ptt.PTT`, the same for calibration
        and test) and ``batch_size`` override the certifier's for this call.
        """
        cert = self.certifier
        overrides = {k: v for k, v in (("generator", generator), ("transform", transform),
                                       ("batch_size", batch_size)) if v is not None}
        if overrides:
            if not dataclasses.is_dataclass(cert) or not set(overrides) <= {f.name for f in dataclasses.fields(cert)}:
                raise ValueError(f"Expected no per-call {sorted(overrides)} with certifier {cert!r}; configure it instead")
            cert = dataclasses.replace(cert, **overrides)  # type: ignore[type-var]
        check_module(model)  # a string would fail deep inside as "'str' object is not callable"
        check_eval_mode(model)
        score_fn: Any = self._score_fn
        if self._randomize:  # one u per input, shared by its noise draws (smoothing.scores.PerInputScore)
            g = generator if generator is not None else getattr(self, "generator_", None)
            if g is None:
                g = self.generator_ = torch.Generator().manual_seed(0)
            score_fn = PerInputScore(self._score_fn, torch.rand(x.shape[0], generator=g, dtype=torch.float64,
                                                                device=g.device))
        out = cert.certify(model, x, self.threat, score_fn=score_fn)
        if not isinstance(out, SmoothedScores):
            raise TypeError(f"Expected the certifier {cert!r} to return SmoothedScores, but it returned "
                            f"{type(out).__name__}")
        return out

    def _sigma_of(self, scores: SmoothedScores | None) -> float:
        own, carried = self.sigma, None if scores is None else scores.sigma
        if own is not None and carried is not None and own != carried:
            raise ValueError(
                f"Expected argument `scores` to be estimated at sigma={own} (as configured), but got sigma={carried}"
            )
        sigma = carried if carried is not None else own
        if sigma is None:
            raise ValueError("Expected argument `scores` to carry the noise level `sigma` (the certifier has none)")
        return sigma

    def _calibration_level(self) -> float | Fraction:
        raise NotImplementedError

    def _quantile(self, s: torch.Tensor) -> float:
        raise NotImplementedError

    def calibrate(self, scores: SmoothedScores | torch.Tensor, labels: torch.Tensor | None = None, *,
                  model: nn.Module | None = None) -> Any:
        """Fit the threshold on calibration smoothed scores. Returns self.

        Args:
            scores: ``SmoothedScores`` of every label ``(N, K)`` with ``labels`` (N,); or (RSCP) a ``(N,)``
                tensor of true-label Monte Carlo means S_hat(x_i, y_i) estimated with ``n_mc`` samples;
                or, with ``model=``, the (N, ...) calibration inputs, scored by the certifier.
            labels: true labels (required with SmoothedScores and with ``model=``).
            model: eval-mode base classifier; then ``scores`` are raw inputs (:meth:`score_model`).
        """
        if model is not None:
            if labels is None:
                raise ValueError("Expected argument `labels` with `model=`, but got None")
            scores = self.score_model(model, scores)  # type: ignore[arg-type]
        s = _true_label_means(scores, labels, self.n_mc, self._allow_tensor_scores)
        _check_unit_scores(s, "scores")
        self.sigma_ = self._sigma_of(scores if isinstance(scores, SmoothedScores) else None)
        self.n_mc_ = scores.n_mc if isinstance(scores, SmoothedScores) else self.n_mc
        self.n_calibration_ = int(s.shape[0])
        # K of the calibration scores (unknown for a (N,) tensor of true-label means): predict refuses another K
        self.num_classes_ = int(scores.mean.shape[1]) if isinstance(scores, SmoothedScores) else None
        self.threshold_ = self._quantile(s.detach().to(torch.float64).cpu())
        return self

    def _mask(self, scores: SmoothedScores, sigma: float) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, scores: SmoothedScores | torch.Tensor, *, model: nn.Module | None = None) -> PredictionSets:
        """Robust prediction sets for test smoothed scores ``(N, K)`` (or inputs, with ``model=``); ``threshold`` is tau."""
        self._check_calibrated()
        if model is not None:
            scores = self.score_model(model, scores)  # type: ignore[arg-type]
        if not isinstance(scores, SmoothedScores) or scores.mean.ndim != 2:
            raise TypeError(
                f"Expected argument `scores` to be a SmoothedScores of shape (N, K), but got {type(scores).__name__}"
            )
        n_mc = self.n_mc if self.n_mc is not None else self.n_mc_
        if n_mc is not None and scores.n_mc != n_mc:
            raise ValueError(
                f"Expected argument `scores` to be estimated with n_mc={n_mc} samples (as configured), "
                f"but got n_mc={scores.n_mc}"
            )
        k = getattr(self, "num_classes_", None)
        if k is not None and scores.mean.shape[1] != k:
            raise ValueError(f"Expected argument `scores` to have {k} columns (as at calibration), "
                             f"but got shape {tuple(scores.mean.shape)}")
        sigma = self._sigma_of(scores)
        if self.sigma_ != sigma:
            raise ValueError(f"Expected argument `scores` to be estimated at the calibration noise level "
                             f"sigma={self.sigma_}, but got sigma={sigma}")
        assert self.threshold_ is not None
        return PredictionSets(self._mask(scores, sigma), self.threshold_)

    def calibrate_model(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> Any:
        """Same as ``calibrate(x, labels, model=model)``. Returns self."""
        return self.calibrate(x, labels, model=model)

    def predict_model(self, model: nn.Module, x: torch.Tensor) -> PredictionSets:
        """Same as ``predict(x, model=model)``."""
        return self.predict(x, model=model)


class RSCP(SmoothedCalibrator):
    """Randomly smoothed conformal prediction (Gendler et al., ICLR 2022).

    Calibrates tau = the k-th smallest calibration S_hat(x_i, y_i), k = ceil((n + 1)(1 - alpha)),
    and predicts C(x) = {y : Phi^-1(S_hat(x, y)) - eps/sigma <= Phi^-1(tau)}.

    Guarantee: if S_hat were the exact smoothed score S_bar, P[y in C(x + delta)] >= 1 - alpha for
    every ||delta||_2 <= eps (marginally over exchangeable calibration and test points). S_hat
    is a Monte Carlo estimate, so the stated coverage is not guaranteed (RSCPPlus fixes this).
    ``eps = 0`` gives vanilla split conformal on smoothed scores (valid for clean inputs only).

    The threshold is the exact order statistic (``conformal_quantile``), not the reference's
    interpolated ``mquantiles`` at (1 - alpha)(1 + 1/n), which can undershoot the valid rank.

    Args:
        score: ``"thr"``, ``"aps"`` (u = 0, inclusive form) or a callable; see :func:`smoothed_score_fn`.
            Used only to score models (``model=``, :meth:`score_model`); ``calibrate``/``predict`` take
            smoothed scores.
        alpha: miscoverage level in (0, 1).
        threat: the L2 ball the sets withstand, a :class:`certkit.threat.LpBall` with norm 2 (or ``eps``,
            a radius >= 0; default 0.125).
        certifier: a smoothing certifier (default ``smoothing.SmoothingCertifier()``; or ``sigma``, the
            noise level > 0, default 0.25, and ``n_mc``, Monte Carlo samples per input >= 2, default 256).
        score_kwargs: extra arguments of the score (e.g. ``{"u": 1.0}`` for the reference's APS form).
        randomized: draw one u ~ U(0, 1) per input, shared by its noise draws, for ``"aps"``/``"raps"``
            (default None: True for them; the u = 0 form gives much larger sets on confident models). The
            u's come from the ``generator`` of :meth:`score_model` or ``generator_`` (seeded with 0).
    """

    _param_names: ClassVar[tuple[str, ...] | None] = ("score", "alpha", "threat", "certifier", "score_kwargs",
                                                      "randomized")

    def __init__(
        self,
        *,
        score: str | ScoreFunction = "thr",
        alpha: float = 0.1,
        sigma: float | None = None,
        eps: float | None = None,
        n_mc: int | None = None,
        score_kwargs: dict[str, Any] | None = None,
        threat: LpBall | None = None,
        certifier: Certifier | None = None,
        randomized: bool | None = None,
    ) -> None:
        self.alpha = check_probability(alpha, "alpha")
        self._init_smoothed(score=score, score_kwargs=score_kwargs, certifier=certifier, threat=threat,
                            sigma=sigma, eps=eps, n_mc=n_mc, randomized=randomized)

    def _calibration_alpha(self) -> float | Fraction:
        return self.alpha

    def _quantile(self, s: torch.Tensor) -> float:
        return conformal_quantile(s, self._calibration_alpha())

    def _mask(self, scores: SmoothedScores, sigma: float) -> torch.Tensor:
        assert self.threshold_ is not None
        return robust_mask(scores.mean, self.threshold_, sigma=sigma, eps=self.eps)


class RSCPPlus(RSCP):
    """RSCP+ (Yan, Zhang, Kang, ICLR 2024): RSCP with Monte Carlo error accounted for.

    Calibrates tau+ at level alpha' = alpha - 2 beta on calibration S_hat, then predicts
    C+(x) = {y : Phi^-1(max(S_hat - b_B, 0)) - eps/sigma <= Phi^-1(min(tau+ + b_H, 1))} with the
    Hoeffding margin b_H (:func:`hoeffding_margin`) and the per-(x, y) empirical-Bernstein
    margin b_B (:func:`bernstein_margin`), both at failure probability beta.

    Guarantee: P[y_true in C+(x + delta)] >= 1 - alpha for every ||delta||_2 <= eps, marginally
    over exchangeable calibration/test points and the Monte Carlo noise (beta for the test
    margin, beta for the calibration margin, alpha - 2 beta for conformal miscoverage).

    Args:
        beta: failure probability of each Monte Carlo margin, in (0, alpha / 2).
        score: the base score, as in :class:`RSCP`.
        alpha: miscoverage level in (0, 1).
        threat: the L2 ball (or ``eps``), as in :class:`RSCP`.
        certifier: the smoothing certifier (or ``sigma`` and ``n_mc``), as in :class:`RSCP`.
        score_kwargs: extra arguments of the score, as in :class:`RSCP`.
        randomized: as in :class:`RSCP`.
    """

    _param_names: ClassVar[tuple[str, ...] | None] = ("score", "alpha", "beta", "threat", "certifier", "score_kwargs",
                                                      "randomized")

    def __init__(
        self,
        *,
        score: str | ScoreFunction = "thr",
        alpha: float = 0.1,
        sigma: float | None = None,
        eps: float | None = None,
        n_mc: int | None = None,
        beta: float = 0.001,
        score_kwargs: dict[str, Any] | None = None,
        threat: LpBall | None = None,
        certifier: Certifier | None = None,
        randomized: bool | None = None,
    ) -> None:
        super().__init__(score=score, alpha=alpha, sigma=sigma, eps=eps, n_mc=n_mc, score_kwargs=score_kwargs,
                         threat=threat, certifier=certifier, randomized=randomized)
        beta_f = check_probability(beta, "beta")
        if not beta_f < self.alpha / 2:
            raise ValueError(f"Expected argument `beta` to be in (0, alpha/2) = (0, {self.alpha / 2}), but got {beta!r}")
        self.beta = beta_f

    def _calibration_alpha(self) -> Fraction:
        # alpha' = alpha - 2 beta in exact rational arithmetic on the decimals the user wrote
        # (0.1 - 2 * 0.001 = 0.098 exactly); any rounding up would lower the rank: anti-conservative.
        return Fraction(repr(self.alpha)) - 2 * Fraction(repr(self.beta))

    def _mask(self, scores: SmoothedScores, sigma: float) -> torch.Tensor:
        assert self.threshold_ is not None
        return rscp_plus_mask(scores.mean, scores.variance, self.threshold_, sigma=sigma, eps=self.eps,
                              n_mc=scores.n_mc, beta=self.beta)
