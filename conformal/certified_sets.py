"""One entry point for certified prediction sets: model + certifier + conformal method + threat model.

    certified_sets(model, x_cal, y_cal, x_test, certifier="crown", method="vrcp-i", norm=inf, eps=0.03)
    certified_sets(model, x_cal, y_cal, x_test, certifier=BoundCertifier("crown", sound=True),
                   threat=LpBall(inf, 0.03, (0, 1)), method="vrcp-i")

returns the sets with a plain-language statement of what is guaranteed and with which failure
probability. Certifiers: any object of the ``certkit.certifier.Certifier`` protocol, or a name:
bound propagation (``"ibp"``, ``"crown"``, ``"crown-ibp"``; L-inf and L2 balls;
``certify.BoundCertifier``) and randomized smoothing (``"smoothing"``; L2 balls only;
``smoothing.SmoothingCertifier``). Methods, by the certifier's kind:

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
from certify.certifier import BoundCertifier
from certkit._validation import check_inputs, check_model_labels, check_probability
from certkit.certifier import Certifier
from certkit.threat import LpBall, parse_norm
from conformal._base import resolve_certifier, resolve_threat
from conformal.sets import PredictionSets
from smoothing.certifier import SmoothingCertifier

__all__ = ["BOUND_CERTIFIERS", "METHODS", "METHODS_BY_KIND", "CertifiedSets", "certified_sets", "check_threat_model"]

BOUND_CERTIFIERS: tuple[str, ...] = BOUND_METHODS  # the one list, ``certify.api.METHODS``
#: The conformal methods each kind of certifier supports.
METHODS_BY_KIND: dict[str, tuple[str, ...]] = {"bounds": ("vrcp-i", "vrcp-c", "pac"), "smoothing": ("rscp+", "pac")}
#: The methods of each certifier name.
METHODS: dict[str, tuple[str, ...]] = {
    **{m: METHODS_BY_KIND["bounds"] for m in BOUND_CERTIFIERS},
    "smoothing": METHODS_BY_KIND["smoothing"],
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
        method: as requested; ``certifier``: its name (as given, or the object's ``name``).
        norm, eps: the threat model; ``threat``: the same as an :class:`certkit.threat.LpBall`.
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
    threat: LpBall | None = None


def check_threat_model(certifier: str, method: str, norm: Any) -> float:
    """Check that the named certifier supports the method and the norm; returns the norm as a float.

    Raises:
        ValueError: naming the mismatch, e.g. an L-inf ball with randomized smoothing (L2 only).
    """
    if certifier not in METHODS:
        raise ValueError(f"Expected argument `certifier` to be one of {list(METHODS)}, but got {certifier!r}")
    p = parse_norm(norm, supported=(2.0, math.inf), why="bound propagation certifies L-inf and L2 balls, smoothing L2")
    _check_method(method, METHODS[certifier], repr(certifier))
    if certifier == "smoothing":
        SmoothingCertifier().check_threat(LpBall(p, 0.0))
    return p


def _check_method(method: Any, allowed: tuple[str, ...], certifier: str) -> str:
    if method not in allowed:
        raise ValueError(
            f"Expected argument `method` to be one of {list(allowed)} with certifier={certifier}, but got {method!r}"
        )
    return str(method)


def _certifier(certifier: Any, *, sigma: Any, n_mc: Any, generator: Any, sound: Any) -> Certifier:
    if isinstance(certifier, str):
        if certifier not in METHODS:
            raise ValueError(f"Expected argument `certifier` to be one of {list(METHODS)} or a Certifier object, "
                             f"but got {certifier!r}")
        if certifier == "smoothing":
            return SmoothingCertifier(sigma=0.25 if sigma is None else sigma, n_mc=256 if n_mc is None else n_mc,
                                      generator=generator)
        return BoundCertifier(method=certifier, sound=True if sound is None else sound)
    kind = getattr(certifier, "kind", None)
    if kind not in METHODS_BY_KIND:
        raise TypeError(
            "Expected argument `certifier` to be a name or a certkit.certifier.Certifier (kind 'bounds' or "
            f"'smoothing'), but got {certifier!r}"
        )
    return resolve_certifier(certifier, kind, "certified_sets", BoundCertifier, sigma=sigma, n_mc=n_mc,
                             generator=generator, sound=sound)


def certified_sets(
    model: nn.Module,
    x_cal: torch.Tensor,
    y_cal: torch.Tensor,
    x_test: torch.Tensor,
    *,
    certifier: str | Certifier = "crown",
    method: str = "vrcp-i",
    threat: LpBall | None = None,
    eps: float | None = None,
    norm: float | str | None = None,
    alpha: float = 0.1,
    delta: float = 0.05,
    score: str = "thr",
    domain: tuple[float, float] | None = None,
    beta: float = 0.001,
    score_kwargs: dict[str, Any] | None = None,
    sigma: float | None = None,
    n_mc: int | None = None,
    generator: torch.Generator | None = None,
    sound: bool | None = None,
) -> CertifiedSets:
    """Calibrate on (``x_cal``, ``y_cal``) and return certified sets for ``x_test`` with their guarantee.

    Guarantees (exchangeable / i.i.d. calibration and test points; ``x~`` any perturbation in the threat model):

    * ``"vrcp-i"``/``"vrcp-c"``: ``P[y in C(x~)] >= 1 - alpha``, marginally (Jeary et al. 2024).
    * ``"rscp+"``: ``P[y in C(x~)] >= 1 - alpha``, marginally over the data and the Monte Carlo noise
      (Yan et al. 2024; L2 only).
    * ``"pac"``: with probability >= 1 - delta over the calibration draw, ``P[y not in C(x~)] <= alpha``.

    Args:
        model: eval-mode classifier returning (N, K) logits.
        x_cal: (N, ...) calibration inputs; ``y_cal``: (N,) labels.
        x_test: (M, ...) test inputs (possibly perturbed).
        certifier: a :class:`certkit.certifier.Certifier` (e.g. ``certify.BoundCertifier(...)``,
            ``smoothing.SmoothingCertifier(...)``) or a name: ``"ibp"``, ``"crown"``, ``"crown-ibp"``
            (then ``sound`` applies, default True: float64 bounds rounded outward, so the certificate
            also holds against floating-point rounding) or ``"smoothing"`` (then ``sigma`` (0.25),
            ``n_mc`` (256) and ``generator`` apply).
        method: ``"vrcp-i"``, ``"vrcp-c"``, ``"pac"`` (bound certifiers) or ``"rscp+"``, ``"pac"``
            (smoothing certifiers); see :data:`METHODS_BY_KIND`.
        threat: the threat model, a :class:`certkit.threat.LpBall`; or give ``eps`` (radius >= 0),
            ``norm`` (``float("inf")``, the default, or ``2``) and ``domain`` (input box intersected with
            the ball, e.g. ``(0, 1)``; smoothing certifies the whole ball and ignores it).
        alpha: miscoverage level in (0, 1) (epsilon of PAC sets).
        delta: PAC failure probability in (0, 1).
        score: ``"thr"``, ``"aps"`` (or ``"raps"`` with bound certifiers).
        beta: failure probability of each Monte Carlo margin (smoothing certifiers).
        score_kwargs: extra arguments of the score.

    Returns:
        CertifiedSets with (M, K) sets and the guarantee.

    Raises:
        ValueError: on a certifier/method/threat-model mismatch (e.g. L-inf with smoothing).
    """
    from conformal.robust_pac import RobustPAC, SmoothedRobustPAC
    from conformal.rscp import RSCPPlus
    from conformal.vrcp import VRCP

    cert = _certifier(certifier, sigma=sigma, n_mc=n_mc, generator=generator, sound=sound)
    label = certifier if isinstance(certifier, str) else cert.name
    th = resolve_threat(threat, eps=eps, norm=norm, domain=domain)
    _check_method(method, METHODS_BY_KIND[cert.kind], repr(certifier) if isinstance(certifier, str) else repr(cert))
    cert.check_threat(th)
    alpha = check_probability(alpha, "alpha")
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected argument `model` to be a torch.nn.Module, but got {type(model).__name__}")
    for name, t in (("x_cal", x_cal), ("y_cal", y_cal), ("x_test", x_test)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"Expected argument `{name}` to be a torch tensor, but got {type(t).__name__}")
    check_inputs(model, x_cal, "x_cal")
    check_inputs(model, x_test, "x_test")
    check_model_labels(model, x_cal, y_cal, "y_cal", "x_cal")
    if y_cal.shape != (x_cal.shape[0],):
        raise ValueError(f"Expected argument `y_cal` to have shape ({x_cal.shape[0]},), but got {tuple(y_cal.shape)}")
    if method == "pac":
        delta = check_probability(delta, "delta")
    common = dict(method=method, certifier=label, norm=th.norm, eps=th.eps, threat=th)
    n = len(y_cal)
    predictor: Any
    if cert.kind == "bounds":
        ball = th.describe()
        if method == "pac":
            predictor = RobustPAC(score=score, epsilon=alpha, delta=delta, mode="calibration",  # type: ignore[arg-type]
                                  score_kwargs=score_kwargs, threat=th, certifier=cert)
        else:
            predictor = VRCP(score=score, alpha=alpha, mode="inference" if method == "vrcp-i" else "calibration",  # type: ignore[arg-type]
                             score_kwargs=score_kwargs, threat=th, certifier=cert)
    else:
        ball = LpBall(th.norm, th.eps).describe()  # smoothing certifies the whole ball
        if method == "pac":
            predictor = SmoothedRobustPAC(score=score, epsilon=alpha, delta=delta, beta=beta, score_kwargs=score_kwargs,
                                          threat=th, certifier=cert)
        else:
            predictor = RSCPPlus(score=score, alpha=alpha, beta=beta, score_kwargs=score_kwargs, threat=th,
                                 certifier=cert)
    sets = predictor.calibrate(x_cal, y_cal, model=model).predict(x_test, model=model)
    sound_text = getattr(cert, "sound", False)
    if method in ("vrcp-i", "vrcp-c"):
        text = (f"For {ball}, the set contains the true label with probability >= {1 - alpha:g}, marginally over "
                f"exchangeable calibration and test points ({method.upper()}, Jeary et al. 2024; the score is "
                f"bounded by {cert.name}; the bounds are deterministic"
                f"{' and rounded outward, sound against floating-point error' if sound_text else ''}).")
        return CertifiedSets(sets, text, alpha, 0.0, "marginal", **common)  # type: ignore[arg-type]
    if method == "rscp+":
        text = (f"For {ball}, the set contains the true label with probability >= {1 - alpha:g}, marginally over "
                f"exchangeable calibration and test points and the Monte Carlo noise (RSCP+, Yan et al. 2024; "
                f"{cert.name}, margins at beta={beta:g}).")
        return CertifiedSets(sets, text, alpha, 0.0, "marginal", **common)  # type: ignore[arg-type]
    if cert.kind == "bounds":
        text = (f"With probability >= {1 - delta:g} over the draw of the {n} i.i.d. calibration points, "
                f"for {ball}, the set misses the true label with probability <= {alpha:g} (robust PAC "
                f"prediction set: Park et al. 2020 threshold on {cert.name} upper bounds of the "
                "calibration scores).")
    else:
        text = (f"With probability >= {1 - delta:g} over the draw of the {n} i.i.d. calibration points and "
                f"their noise, for {ball}, the set misses the true label with probability <= {alpha:g} (robust PAC "
                f"set on RSCP+ smoothed scores, {cert.name}).")
    return CertifiedSets(sets, text, alpha, delta, "pac", **common)  # type: ignore[arg-type]
