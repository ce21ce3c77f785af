"""One entry point for certified prediction sets: model + certifier + conformal method + threat model.

    certified_sets(model, x_cal, y_cal, x_test, certifier="crown", method="vrcp-i", norm=inf, eps=0.03)

returns the sets with a plain-language statement of what is guaranteed and with which failure
probability. Certifiers: bound propagation (``"ibp"``, ``"crown"``, ``"crown-ibp"``; L-inf and L2
balls) and randomized smoothing (``"smoothing"``; L2 balls only). Methods:

* ``"vrcp-i"``, ``"vrcp-c"``: VRCP (Jeary et al., NeurIPS 2024), bound certifiers.
* ``"rscp+"``: RSCP+ (Yan et al., ICLR 2024), smoothing.
* ``"pac"``: robust PAC sets (Park et al. 2020 threshold on worst-case scores), either certifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from certify.api import METHODS as BOUND_METHODS
from certkit._validation import check_nonnegative, check_probability
from certkit.threat import parse_norm
from conformal.sets import PredictionSets

__all__ = ["BOUND_CERTIFIERS", "METHODS", "CertifiedSets", "certified_sets", "check_threat_model"]

BOUND_CERTIFIERS: tuple[str, ...] = BOUND_METHODS  # the one list, ``certify.api.METHODS``
METHODS: dict[str, tuple[str, ...]] = {
    **{m: ("vrcp-i", "vrcp-c", "pac") for m in BOUND_CERTIFIERS},
    "smoothing": ("rscp+", "pac"),
}


@dataclass(frozen=True)
class CertifiedSets:
    """Certified prediction sets and what they guarantee.

    Attributes:
        sets: the (N, K) prediction sets of the test inputs.
        guarantee: the guarantee in plain language.
        miscoverage: the bound on ``P[y not in C(x~)]`` for every allowed perturbation ``x~``.
        failure_probability: probability over the calibration draw that the miscoverage bound does
            not hold (``delta`` for PAC sets; 0.0 for marginal guarantees, which hold on average over
            calibration draws rather than for a given draw).
        kind: ``"marginal"`` or ``"pac"`` (training-conditional).
        method, certifier: as requested.
        norm, eps: the threat model.
    """

    sets: PredictionSets
    guarantee: str
    miscoverage: float
    failure_probability: float
    kind: Literal["marginal", "pac"]
    method: str
    certifier: str
    norm: float
    eps: float


def check_threat_model(certifier: str, method: str, norm: Any) -> float:
    """Check that the certifier supports the method and the norm; returns the norm as a float.

    Raises:
        ValueError: naming the mismatch, e.g. an L-inf ball with randomized smoothing (L2 only).
    """
    if certifier not in METHODS:
        raise ValueError(f"Expected argument `certifier` to be one of {list(METHODS)}, but got {certifier!r}")
    p = parse_norm(norm, supported=(2.0, math.inf), why="bound propagation certifies L-inf and L2 balls, smoothing L2")
    if method not in METHODS[certifier]:
        raise ValueError(
            f"Expected argument `method` to be one of {list(METHODS[certifier])} with certifier={certifier!r}, "
            f"but got {method!r}"
        )
    if certifier == "smoothing" and p != 2.0:
        raise ValueError(
            "Expected argument `norm` to be 2 with certifier='smoothing' (Gaussian randomized smoothing certifies "
            f"L2 balls only), but got {norm!r}; use a bound-propagation certifier ('ibp', 'crown', 'crown-ibp') "
            "for L-inf balls"
        )
    return p


def _ball(norm: float, eps: float, domain: tuple[float, float] | None) -> str:
    name = "L-inf" if norm == math.inf else "L2"
    inside = f" that stays in [{domain[0]}, {domain[1]}]" if domain is not None else ""
    return f"every perturbation x~ of the test input with {name} norm ||x~ - x|| <= {eps:g}{inside}"


def certified_sets(
    model: nn.Module,
    x_cal: torch.Tensor,
    y_cal: torch.Tensor,
    x_test: torch.Tensor,
    *,
    certifier: str = "crown",
    method: str = "vrcp-i",
    eps: float,
    norm: float | str = math.inf,
    alpha: float = 0.1,
    delta: float = 0.05,
    score: str = "thr",
    domain: tuple[float, float] | None = None,
    sigma: float = 0.25,
    n_mc: int = 256,
    beta: float = 0.001,
    generator: torch.Generator | None = None,
    score_kwargs: dict[str, Any] | None = None,
    sound: bool = True,
) -> CertifiedSets:
    """Calibrate on (``x_cal``, ``y_cal``) and return certified sets for ``x_test`` with their guarantee.

    Guarantees (exchangeable / i.i.d. calibration and test points; ``x~`` any perturbation in the ball):

    * ``"vrcp-i"``/``"vrcp-c"``: ``P[y in C(x~)] >= 1 - alpha``, marginally (Jeary et al. 2024).
    * ``"rscp+"``: ``P[y in C(x~)] >= 1 - alpha``, marginally over the data and the Monte Carlo noise
      (Yan et al. 2024; L2 only).
    * ``"pac"``: with probability >= 1 - delta over the calibration draw, ``P[y not in C(x~)] <= alpha``.

    Args:
        model: eval-mode classifier returning (N, K) logits.
        x_cal: (N, ...) calibration inputs; ``y_cal``: (N,) labels.
        x_test: (M, ...) test inputs (possibly perturbed).
        certifier: ``"ibp"``, ``"crown"``, ``"crown-ibp"`` or ``"smoothing"``.
        method: ``"vrcp-i"``, ``"vrcp-c"``, ``"rscp+"`` or ``"pac"`` (see :data:`METHODS`).
        eps: radius >= 0 of the threat model; ``norm``: ``float("inf")`` or ``2``.
        alpha: miscoverage level in (0, 1) (epsilon of PAC sets).
        delta: PAC failure probability in (0, 1).
        score: ``"thr"``, ``"aps"`` (or ``"raps"`` with bound certifiers).
        domain: input box intersected with the ball (bound certifiers), e.g. ``(0, 1)``.
        sigma, n_mc, beta, generator: smoothing noise, Monte Carlo samples, margin failure
            probability and noise generator (``certifier="smoothing"``).
        score_kwargs: extra arguments of the score.
        sound: bound certifiers compute in float64 and round the bounds outward, so the certificate
            also holds against floating-point rounding (default; ``False`` is faster).

    Returns:
        CertifiedSets with (M, K) sets and the guarantee.

    Raises:
        ValueError: on a certifier/method/threat-model mismatch (e.g. L-inf with smoothing).
    """
    p = check_threat_model(certifier, method, norm)
    eps = check_nonnegative(eps, "eps")
    alpha = check_probability(alpha, "alpha")
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected argument `model` to be a torch.nn.Module, but got {type(model).__name__}")
    for name, t in (("x_cal", x_cal), ("y_cal", y_cal), ("x_test", x_test)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"Expected argument `{name}` to be a torch tensor, but got {type(t).__name__}")
    if y_cal.shape != (x_cal.shape[0],):
        raise ValueError(f"Expected argument `y_cal` to have shape ({x_cal.shape[0]},), but got {tuple(y_cal.shape)}")
    ball = _ball(p, eps, domain if certifier != "smoothing" else None)
    common = dict(method=method, certifier=certifier, norm=p, eps=eps)
    if certifier != "smoothing":
        if method == "pac":
            from conformal.robust_pac import RobustPAC

            delta = check_probability(delta, "delta")
            pac = RobustPAC(score=score, epsilon=alpha, delta=delta, eps=eps, norm=p, method=certifier,  # type: ignore[arg-type]
                            mode="calibration", domain=domain, score_kwargs=score_kwargs, sound=sound)
            sets = pac.calibrate_model(model, x_cal, y_cal).predict_model(model, x_test)
            text = (f"With probability >= {1 - delta:g} over the draw of the {len(y_cal)} i.i.d. calibration points, "
                    f"for {ball}, the set misses the true label with probability <= {alpha:g} (robust PAC "
                    f"prediction set: Park et al. 2020 threshold on {certifier.upper()} upper bounds of the "
                    "calibration scores).")
            return CertifiedSets(sets, text, alpha, delta, "pac", **common)  # type: ignore[arg-type]
        from conformal.vrcp import VRCP

        mode = "inference" if method == "vrcp-i" else "calibration"
        vrcp = VRCP(score=score, alpha=alpha, eps=eps, norm=p, method=certifier, mode=mode,  # type: ignore[arg-type]
                    domain=domain, score_kwargs=score_kwargs, sound=sound)
        sets = vrcp.calibrate_model(model, x_cal, y_cal).predict_model(model, x_test)
        text = (f"For {ball}, the set contains the true label with probability >= {1 - alpha:g}, marginally over "
                f"exchangeable calibration and test points ({method.upper()}, Jeary et al. 2024; the score is "
                f"bounded by {certifier.upper()}; the bounds are deterministic"
                f"{' and rounded outward, sound against floating-point error' if sound else ''}).")
        return CertifiedSets(sets, text, alpha, 0.0, "marginal", **common)  # type: ignore[arg-type]

    from conformal.robust_pac import SmoothedRobustPAC
    from conformal.rscp import RSCPPlus

    predictor: RSCPPlus | SmoothedRobustPAC
    if method == "rscp+":
        predictor = RSCPPlus(score=score, alpha=alpha, sigma=sigma, eps=eps, n_mc=n_mc, beta=beta,
                             score_kwargs=score_kwargs)
    else:
        delta = check_probability(delta, "delta")
        predictor = SmoothedRobustPAC(score=score, epsilon=alpha, delta=delta, sigma=sigma, eps=eps, n_mc=n_mc,
                                      beta=beta, score_kwargs=score_kwargs)
    cal_scores = predictor.score_model(model, x_cal, generator=generator)
    predictor.calibrate(cal_scores, y_cal)
    sets = predictor.predict(predictor.score_model(model, x_test, generator=generator))
    if method == "rscp+":
        text = (f"For {ball}, the set contains the true label with probability >= {1 - alpha:g}, marginally over "
                f"exchangeable calibration and test points and the Monte Carlo noise (RSCP+, Yan et al. 2024; "
                f"Gaussian smoothing sigma={sigma:g}, {n_mc} samples per input, margins at beta={beta:g}).")
        return CertifiedSets(sets, text, alpha, 0.0, "marginal", **common)  # type: ignore[arg-type]
    text = (f"With probability >= {1 - delta:g} over the draw of the {len(y_cal)} i.i.d. calibration points and "
            f"their noise, for {ball}, the set misses the true label with probability <= {alpha:g} (robust PAC "
            f"set on RSCP+ smoothed scores, sigma={sigma:g}, {n_mc} samples per input).")
    return CertifiedSets(sets, text, alpha, delta, "pac", **common)  # type: ignore[arg-type]
