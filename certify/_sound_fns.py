"""Rigorous bounds of the element-wise functions for ``sound=True`` (float64 tensors).

For a function ``f`` (GELU exact or tanh form, SiLU, ELU, softplus, LeakyReLU/PReLU, exp, log,
reciprocal, rsqrt, square) and any float slope ``k``, :func:`g_range` returns floats ``lo <= hi``
with ``lo <= f(x) - k x <= hi`` for every **real** ``x`` in ``[l, u]``. IBP uses ``k = 0`` (the range
of ``f``); CROWN picks its lines' slopes by a heuristic (any float slope is valid) and takes these
as intercepts, so the lines are sound by construction, whatever the slopes' rounding.

How: the real line is cut at the points where ``f''`` changes sign (and at kinks). On each piece
``g = f - k x`` is convex, concave or linear (a mathematical fact about ``f``, stated per function
below), so

* convex piece ``[a, b]``: ``max g = max(g(a), g(b))``; for any point ``m`` of the piece,
  ``g(x) >= g(m) + g'(m) (x - m)`` (the tangent is below), so ``min g >= g(m) + min over x of
  g'(m) (x - m)``; ``m`` is the minimiser found by bisection, but the bound holds for any ``m``;
* concave piece: the mirror image; linear piece: the end points.

Every value is an enclosure: ``f(x)`` computed by torch in float64 is taken to be within
``ERR (1 + |x| + |f(x)|)`` of the exact value and ``f'(x)`` within ``ERR_D |f'(x)| + ERR``
(the assumption, as for sigmoid/tanh: torch's float64 ``exp``, ``expm1``, ``log``, ``log1p``, ``erf``,
``tanh``, ``sigmoid`` and ``sqrt`` are accurate to a few ulps, and the short formulas below are well
conditioned); products, sums and differences are rounded outward. Break points that are not floats
(``±sqrt 2`` for GELU, SiLU's and tanh-GELU's inflection points, softplus's threshold ``t / beta``)
are enclosed in a float interval (a "sliver"), on which ``g`` is bounded through a Lipschitz bound
of ``f``: ``|g(x) - g(b)| <= (L + |k|) |x - b|`` (plus softplus's jump at its threshold).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from certify._rounding import down, up

__all__ = ["ERR", "ERR_D", "SOUND_FNS", "SoundFn", "g_range", "sound_lines", "sound_range"]

#: assumed accuracy of torch's float64 evaluation of f: |computed - exact| <= ERR (1 + |x| + |f(x)|)
ERR = 2.0**-40
#: relative accuracy assumed of the derivative formulas (plus ERR absolute: the cancellation in 1 + erf(x)
#: for GELU', 1 + x sigmoid(-x) for SiLU' is at most a few ulps of 1); it only enters the tangent slack
ERR_D = 2.0**-30
_BISECT = 45
_SQRT2 = math.sqrt(2.0)
_S2PI = math.sqrt(2.0 / math.pi)
_C = 0.044715


def _bisect_root(h: Callable[[float], float], lo: float, hi: float) -> float:
    """A root of ``h`` in [lo, hi] (h(lo) > 0 > h(hi)) to float precision."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if h(mid) > 0:
            lo = mid
        else:
            hi = mid
    return lo


def _enclosed(h: Callable[[float], float], x0: float, margin: float) -> tuple[float, float]:
    """An interval around the root x0 of a decreasing ``h`` checked by signs ``margin`` away (the
    computed ``h`` is accurate to ~1e-15, far below ``|h'| margin`` at these points)."""
    a, b = x0 - margin, x0 + margin
    if not (h(a) > 1e-12 and h(b) < -1e-12):
        raise AssertionError("inflection point enclosure failed")
    return a, b


def _silu_h(x: float) -> float:  # sign of SiLU'' = sigma (1 - sigma) (2 - x tanh(x / 2)); decreasing for x > 0
    return 2 - x * math.tanh(x / 2)


def _gelu_tanh_h(x: float) -> float:
    """Sign of tanh-GELU'' for x >= 0: f'' = sech(v)^2 (v' - x tanh(v) v'^2 + x v'' / 2) with
    v = s (x + c x^3); the bracket is even in x, positive at 0 and has one positive root (checked
    numerically on a grid in tests/certify/test_sound_layers.py)."""
    v = _S2PI * (x + _C * x**3)
    dv = _S2PI * (1 + 3 * _C * x * x)
    return dv - x * math.tanh(v) * dv * dv + 0.5 * x * 6 * _S2PI * _C * x


_SILU_B = _enclosed(_silu_h, _bisect_root(_silu_h, 1.0, 4.0), 1e-9)
_GT_B = _enclosed(_gelu_tanh_h, _bisect_root(_gelu_tanh_h, 0.5, 3.0), 1e-9)
_SQRT2_B = (math.nextafter(_SQRT2, 0.0), math.nextafter(_SQRT2, 4.0))  # sqrt is correctly rounded


def _sig(x: Tensor) -> Tensor:
    return torch.sigmoid(x)


def _gelu_tanh(x: Tensor) -> Tensor:
    return 0.5 * x * (1 + torch.tanh(_S2PI * (x + _C * x * x * x)))


def _dgelu_tanh(x: Tensor) -> Tensor:
    v = _S2PI * (x + _C * x * x * x)
    sech2 = 1 / torch.cosh(v).square()
    return 0.5 * (1 + torch.tanh(v)) + 0.5 * x * sech2 * _S2PI * (1 + 3 * _C * x * x)


def _softplus(x: Tensor, p: Any) -> Tensor:
    beta = p[0]
    return torch.log1p(torch.exp(beta * x)) / beta


def _neg(b: tuple[float, float]) -> tuple[float, float]:
    return (-b[1], -b[0])


@dataclass(frozen=True)
class SoundFn:
    """``f`` as pieces: ``breaks(p)`` (float enclosures of the cut points, increasing),
    ``curv(p)`` (+1 convex, -1 concave, 0 linear on each of the len(breaks) + 1 pieces),
    ``f``/``df`` per piece (index, x, p), ``lip(p)`` a bound on |f'| near inexact breaks and
    ``jump(p)`` on |f| jumps there (softplus's threshold)."""

    f: Callable[[int, Tensor, Any], Tensor]
    df: Callable[[int, Tensor, Any], Tensor]
    breaks: Callable[[Any], tuple[tuple[float, float], ...]]
    curv: Callable[[Any], tuple[int, ...]]
    lip: Callable[[Any], float] = lambda p: 0.0
    jump: Callable[[Any], float] = lambda p: 0.0


def _elu_curv(p: Any) -> tuple[int, ...]:
    a = float(p)
    return (1 if a > 0 else (-1 if a < 0 else 0), 0)


SOUND_FNS: dict[str, SoundFn] = {
    # convex on the line
    "exp": SoundFn(lambda k, x, p: torch.exp(x), lambda k, x, p: torch.exp(x), lambda p: (), lambda p: (1,)),
    "square": SoundFn(lambda k, x, p: x * x, lambda k, x, p: 2 * x, lambda p: (), lambda p: (1,)),
    # defined for x > 0 (the caller checks l > 0): log concave, 1/x and 1/sqrt(x) convex there
    "log": SoundFn(lambda k, x, p: torch.log(x), lambda k, x, p: 1 / x, lambda p: (), lambda p: (-1,)),
    "reciprocal": SoundFn(lambda k, x, p: 1 / x, lambda k, x, p: -1 / (x * x), lambda p: (), lambda p: (1,)),
    "rsqrt": SoundFn(lambda k, x, p: torch.rsqrt(x), lambda k, x, p: -0.5 * torch.rsqrt(x) / x, lambda p: (),
                     lambda p: (1,)),
    # GELU'' = phi(x) (2 - x^2): concave, convex on [-sqrt 2, sqrt 2], concave; |GELU'| <= 1.13
    "gelu": SoundFn(lambda k, x, p: 0.5 * x * (1 + torch.erf(x / _SQRT2)),
                    lambda k, x, p: 0.5 * (1 + torch.erf(x / _SQRT2)) + x * torch.exp(-0.5 * x * x) / math.sqrt(
                        2 * math.pi),
                    lambda p: (_neg(_SQRT2_B), _SQRT2_B), lambda p: (-1, 1, -1), lip=lambda p: 1.2),
    "gelu_tanh": SoundFn(lambda k, x, p: _gelu_tanh(x), lambda k, x, p: _dgelu_tanh(x),
                         lambda p: (_neg(_GT_B), _GT_B), lambda p: (-1, 1, -1), lip=lambda p: 1.2),
    # SiLU'' = s (1 - s) (2 - x tanh(x / 2)): concave, convex on [-x*, x*], concave; |SiLU'| <= 1.1
    "silu": SoundFn(lambda k, x, p: x * _sig(x), lambda k, x, p: _sig(x) * (1 + x * _sig(-x)),
                    lambda p: (_neg(_SILU_B), _SILU_B), lambda p: (-1, 1, -1), lip=lambda p: 1.2),
    # ELU: alpha (e^x - 1) for x <= 0 (convex for alpha > 0), x for x > 0; continuous
    "elu": SoundFn(lambda k, x, p: float(p) * torch.expm1(x) if k == 0 else x,
                   lambda k, x, p: float(p) * torch.exp(x) if k == 0 else torch.ones_like(x),
                   lambda p: ((0.0, 0.0),), _elu_curv),
    # softplus: log(1 + e^(beta x)) / beta (convex) for beta x <= t, x beyond (linear); jumps at t / beta by
    # log1p(e^-t) / beta
    "softplus": SoundFn(lambda k, x, p: _softplus(x, p) if k == 0 else x,
                        lambda k, x, p: _sig(p[0] * x) if k == 0 else torch.ones_like(x),
                        lambda p: ((math.nextafter(p[1] / p[0], -math.inf), math.nextafter(p[1] / p[0], math.inf)),),
                        lambda p: (1, 0), lip=lambda p: 1.0,
                        jump=lambda p: math.nextafter(math.log1p(math.exp(-p[1])) / p[0] * (1 + 1e-12), math.inf)),
    # LeakyReLU / PReLU: a x for x < 0, x for x >= 0 (a scalar or per-channel tensor)
    "leaky_relu": SoundFn(lambda k, x, p: x * p if k == 0 else x,
                          lambda k, x, p: torch.zeros_like(x) + p if k == 0 else torch.ones_like(x),
                          lambda p: ((0.0, 0.0),), lambda p: (0, 0)),
}


def _finite(t: Tensor, fill: float) -> Tensor:
    return torch.where(torch.isnan(t), torch.full_like(t, fill), t)


def _imul_lo_hi(alo: Tensor, ahi: Tensor, blo: Tensor, bhi: Tensor) -> tuple[Tensor, Tensor]:
    ps = torch.stack(torch.broadcast_tensors(alo * blo, alo * bhi, ahi * blo, ahi * bhi))
    return down(ps.amin(0)), up(ps.amax(0))


class _Eval:
    """Enclosures of ``g(x) = f(x) - k x`` and ``g'(x)`` at float points for one function, parameter
    and slope tensor ``k``."""

    def __init__(self, fn: SoundFn, p: Any, k: Tensor) -> None:
        self.fn, self.p, self.k = fn, p, k

    def g(self, piece: int, x: Tensor) -> tuple[Tensor, Tensor]:
        fv = self.fn.f(piece, x, self.p)
        e = up(up(ERR * up(up(1 + x.abs()) + fv.abs())))
        kx = self.k * x
        return down(down(fv - e) - up(kx)), up(up(fv + e) - down(kx))

    def dg(self, piece: int, x: Tensor) -> tuple[Tensor, Tensor]:
        dv = self.fn.df(piece, x, self.p)
        e = up(up(ERR_D * dv.abs()) + ERR)
        return down(down(dv - e) - self.k), up(up(dv + e) - self.k)


def _piece_range(ev: _Eval, piece: int, curv: int, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Rigorous (min, max) of g over [a, b] (a <= b, floats) on a piece of curvature ``curv``."""
    ga_lo, ga_hi = ev.g(piece, a)
    gb_lo, gb_hi = ev.g(piece, b)
    lo, hi = torch.minimum(ga_lo, gb_lo), torch.maximum(ga_hi, gb_hi)
    if curv == 0:
        return lo, hi
    # bisection for the minimiser (convex) / maximiser (concave) of g: move right while g' has the sign
    # that moves g towards its extreme
    k = ev.k
    left, right = a.expand_as(torch.broadcast_tensors(a, k)[0]), b.expand_as(torch.broadcast_tensors(b, k)[0])
    for _ in range(_BISECT):
        mid = (left + right) / 2
        d = ev.fn.df(piece, mid, ev.p) - k
        go = d < 0 if curv > 0 else d > 0
        left, right = torch.where(go, mid, left), torch.where(go, right, mid)
    m = torch.minimum(torch.maximum((left + right) / 2, a), b)
    gm_lo, gm_hi = ev.g(piece, m)
    d_lo, d_hi = ev.dg(piece, m)
    t_lo, t_hi = _imul_lo_hi(d_lo, d_hi, down(a - m), up(b - m))  # g'(m) (x - m) over x in [a, b]
    if curv > 0:
        return down(gm_lo + t_lo), hi
    return lo, up(gm_hi + t_hi)


def g_range(op: str, p: Any, l: Tensor, u: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:  # noqa: E741
    """Floats ``(lo, hi)`` with ``lo <= f(x) - k x <= hi`` for every real x in [l, u] (all float64,
    broadcast together); see the module docstring. NaN (from infinite bounds) becomes -inf / +inf."""
    fn = SOUND_FNS[op]
    ev = _Eval(fn, p, k)
    brk, curv = fn.breaks(p), fn.curv(p)
    shape = torch.broadcast_shapes(l.shape, u.shape, k.shape)
    lo = torch.full(shape, math.inf, dtype=l.dtype, device=l.device)
    hi = torch.full(shape, -math.inf, dtype=l.dtype, device=l.device)
    edges = [(-math.inf, -math.inf), *brk, (math.inf, math.inf)]

    def merge(hit: Tensor, plo: Tensor, phi: Tensor) -> None:
        nonlocal lo, hi
        # a piece that misses [l, u] adds nothing (its formula may overflow there)
        lo = torch.where(hit, torch.minimum(lo, _finite(plo, -math.inf)), lo)
        hi = torch.where(hit, torch.maximum(hi, _finite(phi, math.inf)), hi)

    for piece in range(len(brk) + 1):
        e0, e1 = edges[piece][1], edges[piece + 1][0]
        a = torch.clamp(torch.full_like(l, e0), l, u)
        b = torch.clamp(torch.full_like(u, e1), l, u)
        plo, phi = _piece_range(ev, piece, curv[piece], a, b)
        merge((l <= e1) & (u >= e0), plo, phi)
    for j, (blo, bhi) in enumerate(brk):
        if blo == bhi:
            continue  # an exact break: covered by both neighbouring pieces' end points
        a = torch.clamp(torch.full_like(l, blo), l, u)
        b = torch.clamp(torch.full_like(u, bhi), l, u)
        glo, ghi = ev.g(j, a)  # the formula left of the break, at the sliver's left end
        slope = up(fn.lip(p) + k.abs())
        w = up(up(slope * up(b - a)) + fn.jump(p))
        merge((l <= bhi) & (u >= blo), down(glo - w), up(ghi + w))
    # NaN bounds of the inputs (none expected) must not give a finite range
    bad = torch.isnan(l) | torch.isnan(u)
    return torch.where(bad, torch.full_like(lo, -math.inf), lo), torch.where(bad, torch.full_like(hi, math.inf), hi)


def sound_range(op: str, p: Any, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:  # noqa: E741
    """Rigorous interval of ``f`` over [l, u] (IBP): :func:`g_range` with slope 0."""
    return g_range(op, p, l, u, torch.zeros((), dtype=l.dtype, device=l.device))


def sound_lines(op: str, p: Any, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # noqa: E741
    """Lines ``d_l x + b_l <= f(x) <= d_u x + b_u`` valid for every real x in [l, u] (CROWN).

    Slopes: for each line the one among the chord, ``f'(l)``, ``f'(u)``, ``f'(mid)`` whose line is
    closest to ``f`` at the middle (as the default engine's ``certify._layers.scalar_relax``); intercepts:
    the rigorous extremes of ``f(x) - k x`` (:func:`g_range`), so the lines are valid whatever the slope."""
    fn = SOUND_FNS[op]
    mid = (l + u) / 2
    width = u - l
    # slopes: heuristics evaluated on the piece holding each point (any float slope is valid)
    brk = fn.breaks(p)

    def piece_of(x: Tensor) -> list[tuple[int, Tensor]]:
        out = []
        for j in range(len(brk) + 1):
            lo_e = -math.inf if j == 0 else brk[j - 1][1]
            hi_e = math.inf if j == len(brk) else brk[j][0]
            out.append((j, (x >= lo_e) & (x <= hi_e)))
        return out

    def deriv(x: Tensor) -> Tensor:
        d = torch.zeros_like(x)
        for j, mask in piece_of(x):
            d = torch.where(mask, fn.df(j, x, p) + torch.zeros_like(x), d)
        return d

    def value(x: Tensor) -> Tensor:
        v = torch.zeros_like(x)
        for j, mask in piece_of(x):
            v = torch.where(mask, fn.f(j, x, p) + torch.zeros_like(x), v)
        return v

    flat = width <= 1e-12 * (1 + l.abs())
    chord = (value(u) - value(l)) / torch.where(flat, torch.ones_like(width), width)
    dm = deriv(mid)
    chord = torch.where(flat, dm, chord)
    slopes = torch.stack(torch.broadcast_tensors(chord, dm, deriv(l), deriv(u)))
    slopes = torch.where(torch.isfinite(slopes), slopes, torch.zeros_like(slopes))
    lo, hi = g_range(op, p, l.unsqueeze(0), u.unsqueeze(0), slopes)
    best_l = (slopes * mid + lo).nan_to_num(nan=-math.inf).argmax(0, keepdim=True)
    best_u = (slopes * mid + hi).nan_to_num(nan=math.inf).argmin(0, keepdim=True)
    return (slopes.gather(0, best_l)[0], lo.gather(0, best_l)[0], slopes.gather(0, best_u)[0],
            hi.gather(0, best_u)[0])
