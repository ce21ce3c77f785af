"""Bound propagation as a certifier object (the ``certkit.certifier.Certifier`` protocol, ``kind="bounds"``).

``BoundCertifier(method="crown", sound=True).certify(model, x, LpBall(inf, 0.03, (0, 1)))`` returns
deterministic bounds on every logit margin ``z_y - z_k`` over the ball around each input; the robust
conformal calibrators (``conformal.VRCP``, ``conformal.RobustPAC``) turn them into score bounds.
``output_bounds(model, x, threat)`` bounds a scalar regressor's output instead (the
``certkit.certifier.OutputCertifier`` protocol, used by ``conformal.regression.RobustConformalRegressor``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from certify.api import _check_method, bounds, margin_bounds
from certkit._params import Params
from certkit._validation import check_eval_mode, check_positive_int
from certkit.certifier import CertifierKind, MarginBounds, OutputBounds, ScoreFn, squeeze_output
from certkit.threat import LpBall, parse_norm

__all__ = ["BoundCertifier", "pairwise_margin_bounds"]


def _pair_spec(k: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows e_i - e_j for the K(K-1)/2 pairs i < j, and the pair indices."""
    i, j = torch.triu_indices(k, k, offset=1, device=device)
    eye = torch.eye(k, dtype=dtype, device=device)
    return eye[i] - eye[j], i, j


def pairwise_margin_bounds(
    model: nn.Module,
    x: torch.Tensor,
    eps: float | torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    norm: float | str = math.inf,
    method: str = "crown",
    domain: tuple[float, float] | None = None,
    sound: bool = False,
    batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on the margins ``z_y - z_k`` over the ball of radius ``eps`` around each input.

    With ``labels``, the (N, K) margins of those labels (:func:`certify.margin_bounds`); without, all
    (N, K, K) pairwise margins from one :func:`certify.bounds` call on the K(K-1)/2 pair differences
    (the upper bound of ``z_i - z_j`` is minus the lower bound of ``z_j - z_i``).

    Returns:
        ``(margin_lower, margin_upper)``, float64.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise TypeError(f"Expected argument `x` to be a (N, ...) torch tensor, but got {type(x).__name__}")
    n = x.shape[0]
    e = eps if isinstance(eps, torch.Tensor) and eps.ndim == 1 else None
    chunks = []
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        eps_b = e[sl] if e is not None else eps
        if labels is not None:
            b = margin_bounds(model, x[sl], labels[sl], eps_b, norm=norm, method=method, domain=domain, sound=sound)
            chunks.append((b.lower.detach().to(torch.float64), b.upper.detach().to(torch.float64)))
            continue
        with torch.no_grad():
            k = int(model(x[:1]).shape[-1])
        spec, i, j = _pair_spec(k, x.dtype, x.device)
        b = bounds(model, x[sl], eps_b, norm=norm, method=method, domain=domain, sound=sound, spec=spec)
        lo, hi = b.lower.detach().to(torch.float64), b.upper.detach().to(torch.float64)
        m_lo = torch.zeros((lo.shape[0], k, k), dtype=torch.float64, device=x.device)
        m_hi = torch.zeros_like(m_lo)
        m_lo[:, i, j], m_hi[:, i, j] = lo, hi
        m_lo[:, j, i], m_hi[:, j, i] = -hi, -lo
        chunks.append((m_lo, m_hi))
    if not chunks:
        raise ValueError(f"Expected argument `x` to hold at least one input, but got shape {tuple(x.shape)}")
    return torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])


@dataclass(frozen=True, repr=False)
class BoundCertifier(Params):
    """Deterministic margin bounds by bound propagation (IBP, CROWN, CROWN-IBP or an auto_LiRPA method).

    Guarantee: for every ``x'`` in the threat model around ``x``, ``lower <= z_y(x') - z_k(x') <= upper``
    (no failure probability; with ``sound=True`` also against floating-point rounding).

    Args:
        method: ``"ibp"`` (Gowal et al. 2018), ``"crown"`` (Zhang et al. 2018), ``"crown-ibp"``
            (Zhang et al. 2020) or ``"auto_lirpa:<METHOD>"`` (see :data:`certify.api.METHODS`).
        sound: float64 bounds rounded outward (slower; see :func:`certify.bounds`).
        batch_size: inputs per bound computation (CROWN holds K(K-1)/2 specifications per input).

    Example:
        >>> from certkit.threat import LpBall
        >>> BoundCertifier(method="ibp", sound=True)
        BoundCertifier(method='ibp', sound=True)
        >>> BoundCertifier().check_threat(LpBall("l2", 0.1))
        LpBall(norm=2.0, eps=0.1, domain=None)
    """

    method: str = "crown"
    sound: bool = False
    batch_size: int = 128

    kind: ClassVar[CertifierKind] = "bounds"

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", _check_method(self.method))
        if not isinstance(self.sound, bool):
            raise TypeError(f"Expected argument `sound` to be True or False, but got {self.sound!r}")
        object.__setattr__(self, "batch_size", check_positive_int(self.batch_size, "batch_size"))

    @property
    def name(self) -> str:
        """``"CROWN"``, ``"IBP"``, ... as written in guarantees."""
        return self.method.upper()

    def check_threat(self, threat: LpBall) -> LpBall:
        """Bound propagation certifies L-inf and L2 balls (with an optional input domain)."""
        if not isinstance(threat, LpBall):
            raise TypeError(f"Expected argument `threat` to be an LpBall, but got {type(threat).__name__}")
        parse_norm(threat.norm, supported=(2.0, math.inf), why="bound propagation certifies L-inf and L2 balls")
        return threat

    def certify(
        self,
        model: nn.Module,
        x: torch.Tensor,
        threat: LpBall,
        *,
        labels: torch.Tensor | None = None,
        score_fn: ScoreFn | None = None,
    ) -> MarginBounds:
        """Margin bounds over ``threat`` around each of the ``(N, ...)`` inputs ``x``.

        Returns:
            :class:`certkit.certifier.MarginBounds`: ``(N, K)`` with ``labels``, else ``(N, K, K)``.
            ``score_fn`` is ignored (margins bound every score; ``conformal.score_bounds`` converts).
        """
        self.check_threat(threat)
        lo, hi = pairwise_margin_bounds(model, x, threat.eps, labels=labels, norm=threat.norm, method=self.method,
                                        domain=threat.domain, sound=self.sound, batch_size=self.batch_size)
        return MarginBounds(lo, hi, labels)

    def output_bounds(self, model: nn.Module, x: torch.Tensor, threat: LpBall) -> OutputBounds:
        """Sound bounds of a regressor's output (``(N,)`` or ``(N, 1)``) over ``threat`` by :func:`certify.bounds`.

        Guarantee (deterministic): ``lower[n] <= f(x') <= upper[n]`` for every ``x'`` in the ball
        around ``x[n]`` (intersected with ``threat.domain``); with ``sound=True`` also against rounding.

        Args:
            model: torch regressor in eval mode (layers ``certify`` supports).
            x: ``(N, ...)`` inputs.
            threat: the L-inf or L2 ball (with optional domain).

        Returns:
            :class:`certkit.certifier.OutputBounds` with ``(N,)`` fields in ``x``'s dtype.
        """
        self.check_threat(threat)
        check_eval_mode(model)
        with torch.no_grad():
            pred = squeeze_output(model(x), "model")
        b = bounds(model, x, threat.eps, norm=threat.norm, method=self.method, domain=threat.domain, sound=self.sound)
        return OutputBounds(pred, squeeze_output(b.lower, "model").detach(), squeeze_output(b.upper, "model").detach())
