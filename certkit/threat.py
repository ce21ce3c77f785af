"""Threat models: what an adversary may do to an input, as small frozen types.

A certificate is a statement about a *set* of inputs. ``LpBall(norm, eps, domain)`` is the set

    B(x) = {x' : ||x' - x||_norm <= eps}  (intersected with the box ``domain`` = [low, high]^d if given)

used by every certifier in certkit: bound propagation (``certify``; L-inf and L2 balls), PGD attacks
(``certify.attacks``), randomized smoothing (``smoothing``; L2 balls) and the robust conformal sets
(``conformal``). :func:`parse_norm` is the one parser of norm spellings; every public function that
takes ``norm=`` goes through it.

Example:
    >>> from certkit.threat import LpBall
    >>> LpBall("linf", 8 / 255, domain=(0, 1))
    LpBall(norm=inf, eps=0.03137254901960784, domain=(0.0, 1.0))
    >>> LpBall(2, 0.5).norm
    2.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["NORMS", "LpBall", "ThreatModel", "check_domain", "norm_name", "parse_norm", "threat_arguments"]

#: The norms an :class:`LpBall` may use: L1, L2 and L-inf.
NORMS: tuple[float, ...] = (1.0, 2.0, math.inf)

_SPELLINGS = "1, 2, float('inf') or a string such as 'l1', 'l2', 'linf', 'inf', 'L-inf'"


def _norm_str(text: str) -> float | None:
    key = text.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if key.startswith("l"):
        key = key[1:]
    if key in ("inf", "infinity", "\u221e"):
        return math.inf
    try:
        value = float(key)
    except ValueError:
        return None
    return value if value in NORMS else None


def norm_name(norm: float) -> str:
    """Display name of a parsed norm: ``"L1"``, ``"L2"`` or ``"L-inf"``."""
    return "L-inf" if norm == math.inf else f"L{int(norm)}"


def parse_norm(norm: Any, name: str = "norm", supported: tuple[float, ...] = NORMS, why: str = "") -> float:
    """The one parser of norm spellings: returns ``1.0``, ``2.0`` or ``math.inf``.

    Accepts numbers (``1``, ``2``, ``2.0``, ``float("inf")``, ``math.inf``, numpy scalars) and strings
    in any case, with or without an ``l``, a dash or an underscore: ``"1"``, ``"l1"``, ``"2"``,
    ``"l2"``, ``"L2"``, ``"inf"``, ``"linf"``, ``"l-inf"``, ``"L_inf"``, ``"infinity"``.

    Args:
        norm: the spelling to parse.
        name: the argument's name, for the error message.
        supported: the norms the caller can handle (a subset of :data:`NORMS`).
        why: optional reason appended to the error when the norm is valid but unsupported,
            e.g. ``"bound propagation certifies L-inf and L2 balls"``.

    Raises:
        TypeError: ``norm`` is neither a number nor a string (booleans are refused).
        ValueError: an unknown spelling, or a norm outside ``supported``.
    """
    if isinstance(norm, str):
        p = _norm_str(norm)
    elif isinstance(norm, bool) or not isinstance(norm, int | float | np.integer | np.floating):
        raise TypeError(f"Expected argument `{name}` to be one of {_SPELLINGS}, but got {norm!r}")
    else:
        p = float(norm) if float(norm) in NORMS else None
    if p is None:
        raise ValueError(f"Expected argument `{name}` to be one of {_SPELLINGS}, but got {norm!r}")
    if p not in supported:
        allowed = " or ".join("float('inf')" if s == math.inf else str(int(s)) for s in supported)
        reason = f" ({why})" if why else ""
        raise ValueError(f"Expected argument `{name}` to be {allowed}{reason}, but got {norm!r}")
    return p


def check_domain(domain: Any, name: str = "domain") -> tuple[float, float] | None:
    """``None`` or a pair ``(low, high)`` of numbers with ``low < high`` (infinite ends allowed), as floats."""
    if domain is None:
        return None
    if not isinstance(domain, tuple | list) or len(domain) != 2:
        raise TypeError(f"Expected argument `{name}` to be None or a pair (low, high), but got {domain!r}")
    try:
        if any(isinstance(v, bool) for v in domain):
            raise TypeError
        lo, hi = float(domain[0]), float(domain[1])
    except (TypeError, ValueError):
        raise TypeError(f"Expected argument `{name}` to be a pair of numbers (low, high), but got {domain!r}") from None
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"Expected argument `{name}` to hold no NaN, but got {domain!r}")
    if not lo < hi:
        raise ValueError(f"Expected argument `{name}` to satisfy low < high, but got {domain!r}")
    return lo, hi


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.integer | np.floating):
        raise TypeError(f"Expected argument `eps` to be a number >= 0, but got {eps!r}")
    e = float(eps)
    if not (math.isfinite(e) and e >= 0):
        raise ValueError(f"Expected argument `eps` to be a finite number >= 0, but got {eps!r}")
    return e


@dataclass(frozen=True)
class LpBall:
    """The L-p ball ``{x' : ||x' - x||_norm <= eps}`` around each input, intersected with ``domain``.

    Args:
        norm: ``1``, ``2`` or ``float("inf")`` in any spelling :func:`parse_norm` accepts; stored as
            ``1.0``, ``2.0`` or ``math.inf``.
        eps: radius, a finite number >= 0.
        domain: optional box ``(low, high)`` every input lives in (e.g. ``(0, 1)`` for pixels); the
            threat model is then the ball intersected with the box, and inputs must lie inside it.

    Which certifier handles which ball: bound propagation (``certify``) L-inf and L2; Gaussian
    randomized smoothing (``smoothing``) L2 only (it ignores ``domain``: its certificate holds on
    the whole ball, so a fortiori on the part inside the box).
    """

    norm: float
    eps: float
    domain: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", parse_norm(self.norm))
        object.__setattr__(self, "eps", _check_eps(self.eps))
        object.__setattr__(self, "domain", check_domain(self.domain))

    def with_eps(self, eps: float) -> LpBall:
        """The same ball with radius ``eps``."""
        return LpBall(self.norm, eps, self.domain)

    def describe(self) -> str:
        """The threat model in words, e.g. ``"every x~ with L-inf norm ||x~ - x|| <= 0.03 that stays in [0, 1]"``."""
        inside = f" that stays in [{self.domain[0]:g}, {self.domain[1]:g}]" if self.domain is not None else ""
        return f"every perturbation x~ of the test input with {norm_name(self.norm)} norm ||x~ - x|| <= {self.eps:g}{inside}"

    def contains(self, x_perturbed: torch.Tensor, x: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
        """Boolean (N,): whether each row of ``x_perturbed`` lies in the ball around the row of ``x`` (and in ``domain``).

        ``atol`` absorbs float rounding of the distance; use it to check attacks, not to certify.
        """
        d = (x_perturbed - x).flatten(1).to(torch.float64)
        dist = d.abs().amax(1) if self.norm == math.inf else d.norm(p=self.norm, dim=1)
        ok = dist <= self.eps + atol
        if self.domain is not None:
            flat = x_perturbed.flatten(1)
            ok &= (flat >= self.domain[0] - atol).all(1) & (flat <= self.domain[1] + atol).all(1)
        return ok


#: Every threat model certkit knows (a union, so that new ones can be added without breaking annotations).
ThreatModel = LpBall


def threat_arguments(threat: Any, eps: Any, norm: Any, domain: Any, *,
                     default_norm: float = math.inf) -> tuple[Any, float | str, tuple[float, float] | None]:
    """``(eps, norm, domain)`` from ``threat=LpBall(...)`` or from the plain arguments, for functions taking both.

    ``eps`` may stay a per-input tensor when given plainly; ``norm`` None means ``default_norm``.

    Raises:
        TypeError: ``threat`` is not an :class:`LpBall`.
        ValueError: both spellings given, or neither ``eps`` nor ``threat``.
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
        return threat.eps, threat.norm, threat.domain
    if eps is None:
        raise ValueError("Expected argument `eps` (a radius >= 0) or `threat` (a certkit.threat.LpBall), but got neither")
    return eps, default_norm if norm is None else norm, domain
