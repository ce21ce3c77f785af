"""Relaxations of the non-linear layers beyond ReLU/sigmoid/tanh: max pooling, element-wise functions
(GELU in its exact and tanh forms, SiLU, ELU, softplus, LeakyReLU, exp, log, reciprocal, rsqrt, square), products
of two activations and softmax / log-softmax (the log-sum-exp bounds of Wei et al. 2023, see the section at the
end).

Max pooling (``nn.MaxPool1d/2d``, ``nn.AdaptiveMaxPool1d/2d`` with uniform windows): each output is
``y = max_{j in W} x_j`` over its window ``W``. IBP is exact on the end points (max is monotone).
CROWN uses the linear relaxation of Boopathy et al. 2019 (CNN-Cert) as in auto_LiRPA's default
(Xu et al. 2020): with ``i* = argmax_{j in W} l_j``,

* lower: ``y >= x_{i*}`` (any element of the window is below the max);
* upper: ``y <= x_{i*}`` when ``l_{i*} >= max_{j != i*} u_j`` (then ``i*`` is always the max: exact),
  else the constant ``y <= max_{j in W} u_j``.

Windows are taken with ``F.unfold``, so stride, padding (``-inf``, never the max) and dilation are
general and overlapping windows are fine (each output keeps its own index ``i*``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SCALAR_FNS", "LinearRelax", "MaxPoolRelax", "MulRelax", "ScalarFn", "SoftmaxRelax", "maxpool_backward",
           "maxpool_forward", "maxpool_relax", "mul_backward", "mul_range", "scalar_range", "scalar_relax",
           "softmax_backward", "softmax_range", "softmax_relax"]


def _as2d(x: Tensor, dims: int) -> Tensor:
    """(N, C, L) -> (N, C, 1, L) for 1-D pooling; 2-D input unchanged."""
    return x.unsqueeze(-2) if dims == 1 else x


def maxpool_forward(x: Tensor, attrs: dict) -> Tensor:
    """The pooling itself on a batch (N, C, H, W) or (N, C, L)."""
    y = F.max_pool2d(_as2d(x, attrs["dims"]), attrs["kernel"], attrs["stride"], attrs["padding"], attrs["dilation"])
    return y.squeeze(-2) if attrs["dims"] == 1 else y


def _windows(t: Tensor, attrs: dict, fill: float) -> Tensor:
    """(N, C, H, W) -> (N, C, k, L): the k = kh * kw elements of each of the L output windows."""
    n, c = t.shape[0], t.shape[1]
    ph, pw = attrs["padding"]
    if ph or pw:
        t = F.pad(t, (pw, pw, ph, ph), value=fill)
    u = F.unfold(t.reshape(n * c, 1, *t.shape[2:]), attrs["kernel"], dilation=attrs["dilation"], stride=attrs["stride"])
    return u.reshape(n, c, u.shape[1], u.shape[2])


@dataclass
class MaxPoolRelax:
    """Per input n and output o (flattened per sample): ``idx`` (N, O) the flat input index of i*,
    ``exact`` (N, O) whether the upper relaxation is ``x_{i*}`` too, ``ub`` (N, O) the constant
    upper bound where it is not (0 elsewhere)."""

    idx: Tensor
    exact: Tensor
    ub: Tensor

    def rows(self, sl: slice) -> MaxPoolRelax:
        return MaxPoolRelax(self.idx[sl], self.exact[sl], self.ub[sl])


def maxpool_relax(l: Tensor, u: Tensor, attrs: dict) -> MaxPoolRelax:  # noqa: E741
    """The relaxation above from the input bounds ``l``, ``u`` (N, *in_shape)."""
    dims = attrs["dims"]
    l2, u2 = _as2d(l, dims), _as2d(u, dims)
    n, c, h, w = l2.shape
    lw = _windows(l2, attrs, -torch.inf)
    uw = _windows(u2, attrs, -torch.inf)
    pos = torch.arange(c * h * w, device=l.device, dtype=l.dtype).reshape(1, c, h, w)
    iw = _windows(pos, attrs, -1.0)  # (1, C, k, L) flat input index of each window element (-1: padding)
    best_l, arg = lw.max(dim=2, keepdim=True)  # (N, C, 1, L)
    others_u = uw.scatter(2, arg, -torch.inf).amax(dim=2)  # max over the window without i*
    max_u = uw.amax(dim=2)
    exact = best_l.squeeze(2) >= others_u
    idx = iw.expand(n, -1, -1, -1).gather(2, arg).squeeze(2).long()
    ub = torch.where(exact, torch.zeros_like(max_u), max_u)
    return MaxPoolRelax(idx.reshape(n, -1), exact.reshape(n, -1), ub.reshape(n, -1))


def maxpool_backward(la: Tensor | None, ua: Tensor | None, r: MaxPoolRelax, in_shape: tuple[int, ...]
                     ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Push coefficients ``la``/``ua`` (B, S, *out_shape) through max pooling.

    Returns (lower A at the input, upper A at the input, lower bias (N, S), upper bias (N, S)). For the
    lower bound a positive coefficient takes the lower relaxation and a negative one the upper; the
    other way round for the upper bound."""
    nb = r.idx.shape[0]
    d_in = 1
    for s in in_shape:
        d_in *= s
    ex = r.exact.unsqueeze(1)
    ub = r.ub.unsqueeze(1)

    def push(a: Tensor, lower: bool) -> tuple[Tensor, Tensor]:
        b, s = a.shape[0], a.shape[1]
        a2 = a.reshape(b, s, -1)
        if b != nb:
            a2 = a2.expand(nb, s, a2.shape[2])
        # lower pass: positive -> x_{i*}; negative -> x_{i*} if exact else the constant ub
        # upper pass: negative -> x_{i*}; positive -> x_{i*} if exact else the constant ub
        loose = a2.clamp(max=0) if lower else a2.clamp(min=0)
        coef = torch.where(ex, a2, a2 - loose)
        bias = (loose * torch.where(ex, torch.zeros_like(ub), ub)).sum(dim=2)
        out = torch.zeros((nb, s, d_in), dtype=a.dtype, device=a.device)
        out.scatter_add_(2, r.idx.unsqueeze(1).expand(nb, s, -1), coef)
        return out.reshape(nb, s, *in_shape), bias

    new_l = new_u = bias_l = bias_u = None
    if la is not None:
        new_l, bias_l = push(la, True)
    if ua is not None:
        new_u, bias_u = push(ua, False)
    return new_l, new_u, bias_l, bias_u


# ----------------------------------------------------------------------------------------------
# Element-wise scalar functions: exact ranges (IBP) and linear relaxations (CROWN)
# ----------------------------------------------------------------------------------------------
#
# Each function f is described by f, f' and the "breaks": the points where f' changes monotonicity or
# jumps (kinks, inflection points). On each piece between breaks f' is monotone, so for any slope k
# the function g(x) = f(x) - k x is convex or concave there: its extremes over a piece are at the
# piece's ends or at the one point where f'(x) = k, found by bisection. This gives, for any k, the
# exact min and max of f(x) - k x over [l, u], hence the tightest intercepts of lines with slope k
# (sound for any slope). CROWN's lines: for each of the lower and the upper line the slope is chosen
# among the chord, f'(l), f'(u) and f'((l + u) / 2) as the one whose line is closest to f at the
# middle (for a convex f this is the chord above and the tangent at the middle below, as in CROWN,
# Zhang et al. 2018, Section 3.3; for the non-convex GELU and SiLU it splits at the inflection
# points, Shi et al. 2020 / auto_LiRPA's "general activation" bounds).

_BISECT = 60


def _silu_inflection() -> float:
    """The positive root of 2 - x tanh(x / 2) (where SiLU's second derivative vanishes)."""
    lo, hi = 1.0, 4.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 2 - mid * math.tanh(mid / 2) > 0:
            lo = mid
        else:
            hi = mid
    return lo


_SILU_X = _silu_inflection()
_GT_X = 1.4185040087908283  # the positive root of tanh-GELU'' (certify._sound_fns encloses it rigorously)
_SQRT2 = math.sqrt(2.0)


def _gelu(x: Tensor, p: Any) -> Tensor:
    return F.gelu(x)


def _dgelu(x: Tensor, p: Any) -> Tensor:
    return 0.5 * (1 + torch.erf(x / _SQRT2)) + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _gelu_tanh(x: Tensor, p: Any) -> Tensor:
    return F.gelu(x, approximate="tanh")


def _dgelu_tanh(x: Tensor, p: Any) -> Tensor:
    from certify._sound_fns import _dgelu_tanh as d

    return d(x)


def _silu(x: Tensor, p: Any) -> Tensor:
    return F.silu(x)


def _dsilu(x: Tensor, p: Any) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _elu(x: Tensor, p: Any) -> Tensor:
    return F.elu(x, float(p))


def _delu(x: Tensor, p: Any) -> Tensor:
    return torch.where(x > 0, torch.ones_like(x), float(p) * torch.exp(x.clamp(max=0)))


def _softplus(x: Tensor, p: Any) -> Tensor:
    return F.softplus(x, p[0], p[1])


def _dsoftplus(x: Tensor, p: Any) -> Tensor:
    return torch.where(x * p[0] > p[1], torch.ones_like(x), torch.sigmoid(x * p[0]))


def _leaky(x: Tensor, p: Any) -> Tensor:
    return torch.where(x > 0, x, x * p)


def _dleaky(x: Tensor, p: Any) -> Tensor:
    return torch.where(x > 0, torch.ones_like(x), torch.zeros_like(x) + p)


@dataclass(frozen=True)
class ScalarFn:
    """An element-wise function for bound propagation: ``f(x, param)``, its derivative, the points
    where the derivative changes monotonicity or jumps (``breaks(param)``), the open domain's lower end
    (``positive``: defined for x > 0 only) and monotonicity (+1 increasing, -1 decreasing, 0 neither)."""

    name: str
    f: Callable[[Tensor, Any], Tensor]
    df: Callable[[Tensor, Any], Tensor]
    breaks: Callable[[Any], tuple[float, ...]] = lambda p: ()
    monotone: Callable[[Any], int] = lambda p: 1
    positive: bool = False
    #: an upper bound on |f(x+) - f(x-)| at the breaks (softplus's threshold makes it jump by ~2e-9)
    jump: Callable[[Any], float] = lambda p: 0.0


SCALAR_FNS: dict[str, ScalarFn] = {
    "exp": ScalarFn("exp", lambda x, p: torch.exp(x), lambda x, p: torch.exp(x)),
    "log": ScalarFn("log", lambda x, p: torch.log(x), lambda x, p: 1 / x, positive=True),
    "reciprocal": ScalarFn("reciprocal", lambda x, p: 1 / x, lambda x, p: -1 / (x * x), monotone=lambda p: -1,
                           positive=True),
    "rsqrt": ScalarFn("rsqrt", lambda x, p: torch.rsqrt(x), lambda x, p: -0.5 * torch.rsqrt(x) / x,
                      monotone=lambda p: -1, positive=True),
    "square": ScalarFn("square", lambda x, p: x * x, lambda x, p: 2 * x, monotone=lambda p: 0),
    "gelu": ScalarFn("gelu", _gelu, _dgelu, breaks=lambda p: (-_SQRT2, _SQRT2), monotone=lambda p: 0),
    # GELU's tanh form 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))): inflection points at +/- 1.4185
    "gelu_tanh": ScalarFn("gelu_tanh", _gelu_tanh, _dgelu_tanh, breaks=lambda p: (-_GT_X, _GT_X),
                          monotone=lambda p: 0),
    "silu": ScalarFn("silu", _silu, _dsilu, breaks=lambda p: (-_SILU_X, _SILU_X), monotone=lambda p: 0),
    "elu": ScalarFn("elu", _elu, _delu, breaks=lambda p: (0.0,), monotone=lambda p: 1 if float(p) >= 0 else 0),
    "softplus": ScalarFn("softplus", _softplus, _dsoftplus, breaks=lambda p: (p[1] / p[0],),
                         jump=lambda p: math.log1p(math.exp(-p[1])) / p[0] + 1e-15),
    "leaky_relu": ScalarFn("leaky_relu", _leaky, _dleaky, breaks=lambda p: (0.0,),
                           monotone=lambda p: 1 if bool((torch.as_tensor(p) >= 0).all()) else 0),
}


def _extremes(fn: ScalarFn, p: Any, l: Tensor, u: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:  # noqa: E741
    """(min, max) of ``f(x) - k x`` over ``[l, u]`` (float64 tensors broadcast together), with a slack
    that covers the bisection's residual and the evaluation's rounding."""
    ends = [l, *[torch.clamp(torch.full_like(l, b), l, u) for b in fn.breaks(p)], u]
    cands = [l, u, *ends[1:-1]]
    slack = torch.zeros_like(l)
    for a, b in itertools.pairwise(ends):  # f' monotone on [a, b]: one root of f'(x) = k at most
        sa = (fn.df(a, p) - k) > 0
        lo, hi = a, b
        for _ in range(_BISECT):
            mid = (lo + hi) / 2
            same = ((fn.df(mid, p) - k) > 0) == sa
            lo, hi = torch.where(same, mid, lo), torch.where(same, hi, mid)
        mid = (lo + hi) / 2
        cands.append(mid)
        # g is monotone between the root and mid: g moves at most |g'| * width there (g' = f' - k)
        gp = torch.maximum((fn.df(lo, p) - k).abs(), (fn.df(hi, p) - k).abs())
        slack = torch.maximum(slack, torch.nan_to_num(gp * (hi - lo), nan=0.0, posinf=0.0))
    vals = torch.stack([fn.f(c, p) - k * c for c in cands])
    scale = torch.stack([fn.f(c, p).abs() + (k * c).abs() for c in cands]).amax(0)
    slack = slack + 64 * torch.finfo(torch.float64).eps * (1 + scale) + fn.jump(p)
    return vals.amin(0) - slack, vals.amax(0) + slack


def _check_domain(fn: ScalarFn, l: Tensor, where: str) -> None:  # noqa: E741
    if fn.positive and bool((l <= 0).any()):
        raise ValueError(
            f"The input bounds of {fn.name} (at {where!r}) reach {float(l.min()):.3g} <= 0, outside its domain "
            "(x > 0): the function is unbounded over the region; use a smaller eps or another method")


def _param64(p: Any) -> Any:
    return p.to(torch.float64) if isinstance(p, Tensor) else p


def scalar_range(op: str, p: Any, l: Tensor, u: Tensor, where: str = "", floor: float | None = None) -> tuple[Tensor, Tensor]:  # noqa: E741
    """Interval (IBP) bounds of ``f`` over ``[l, u]`` element-wise: the end points for a monotone
    function, else the exact range (end points, breaks and critical points) with rounding slack."""
    fn = SCALAR_FNS[op]
    if floor is not None:  # the input is >= floor by construction (a variance + eps, a sum of exps >= 1)
        l, u = l.clamp(min=floor), u.clamp(min=floor)  # noqa: E741
    _check_domain(fn, l, where)
    mono = fn.monotone(p)
    if mono:
        fl, fu = fn.f(l, p), fn.f(u, p)
        lo, hi = (fl, fu) if mono > 0 else (fu, fl)
        eps = 2 * torch.finfo(l.dtype).eps  # the library function's rounding, outward
        lo, hi = lo - eps * lo.abs(), hi + eps * hi.abs()
        # posinf/neginf kept infinite: nan_to_num's default maps +-inf to the largest finite float, which put an
        # overflowed upper bound (exp(100 x) at x = 1) at 3.4e38 below the network's inf (found by review)
        return (lo.nan_to_num(nan=-math.inf, posinf=math.inf, neginf=-math.inf),
                hi.nan_to_num(nan=math.inf, posinf=math.inf, neginf=-math.inf))
    pp = _param64(p)
    lo, hi = _extremes(fn, pp, l.detach().double(), u.detach().double(), torch.zeros((), dtype=torch.float64))
    lo, hi = lo.to(l.dtype), hi.to(l.dtype)
    # differentiable where the extreme is at an end point (the common case for training)
    fl, fu = fn.f(l, p), fn.f(u, p)
    lo = torch.where(torch.minimum(fl, fu) <= lo, torch.minimum(fl, fu), lo)
    hi = torch.where(torch.maximum(fl, fu) >= hi, torch.maximum(fl, fu), hi)
    eps = torch.finfo(l.dtype).eps
    return lo - eps * lo.abs(), hi + eps * hi.abs()


@dataclass
class LinearRelax:
    """Lines ``d_l x + b_l <= f(x) <= d_u x + b_u`` per element (N, *shape)."""

    d_l: Tensor
    b_l: Tensor
    d_u: Tensor
    b_u: Tensor

    def rows(self, sl: slice) -> LinearRelax:
        return LinearRelax(self.d_l[sl], self.b_l[sl], self.d_u[sl], self.b_u[sl])


def scalar_relax(op: str, p: Any, l: Tensor, u: Tensor, where: str = "", floor: float | None = None) -> LinearRelax:  # noqa: E741
    """Sound linear lower/upper bounds ``d_l x + b_l <= f(x) <= d_u x + b_u`` of ``f`` on ``[l, u]`` (see the
    section comment above): slopes rounded to the working dtype first, intercepts computed exactly for the rounded
    slopes (in float64) and rounded outward.

    Which relaxation: each line's slope is the one among the chord, ``f'(l)``, ``f'(u)``, ``f'(m)`` (``m`` the
    midpoint) whose line, with the tightest intercept, is closest to ``f`` at ``m`` (equivalently: the smallest
    mean gap over ``[l, u]``).

    * Convex ``f`` (exp, reciprocal and rsqrt on x > 0, square, ELU with alpha in [0, 1], softplus): the chord above
      and the tangent at the midpoint below, CROWN's relaxation of a convex function (Zhang et al. 2018,
      "Efficient Neural Network Robustness Certification with General Activation Functions", Section 3.3; as
      auto_LiRPA). These are the supporting lines at ``m`` of ``f``'s concave and convex envelopes: the
      tightest sound lines in mean gap. Concave ``f`` (log): the other way round.
    * LeakyReLU/PReLU with slope ``alpha`` in [0, 1] (convex, piecewise linear): the chord above and, below, the
      slope of the piece holding the midpoint (1 or ``alpha``: auto_LiRPA's adaptive choice, CROWN's ReLU rule).
    * Non-convex GELU (exact and tanh forms) and SiLU: the best of the four slopes above, with the exact intercept
      over the function's convex/concave pieces (the general-activation bounds of Shi et al. 2020, "Robustness
      Verification for Transformers", and auto_LiRPA's). Sound but not always the envelope's supporting line
      (which across an inflection point can be a tangent through an end point, as for sigmoid/tanh in
      ``certify.crown.smooth_relaxation``): on the test networks certify's mean width is 0.69-0.99x auto_LiRPA's
      (which decomposes them into products, tanh and pow), see ``tests/certify/test_layers.py``.
    """
    fn = SCALAR_FNS[op]
    if floor is not None:  # the input is >= floor by construction (a variance + eps, a sum of exps >= 1)
        l, u = l.clamp(min=floor), u.clamp(min=floor)  # noqa: E741
    _check_domain(fn, l, where)
    dtype = l.dtype
    pp = _param64(p)
    l64, u64 = l.detach().double(), u.detach().double()
    width = u64 - l64
    tiny = width <= 1e-9 * (1 + l64.abs())
    mid = (l64 + u64) / 2
    fl, fu = fn.f(l64, pp), fn.f(u64, pp)
    chord = torch.where(tiny, fn.df(mid, pp), (fu - fl) / torch.where(tiny, torch.ones_like(width), width))
    slopes = torch.stack(torch.broadcast_tensors(chord, fn.df(mid, pp), fn.df(l64, pp), fn.df(u64, pp)))
    slopes = torch.where(torch.isfinite(slopes), slopes, chord.expand_as(slopes))
    slopes = slopes.to(dtype).double()  # the slopes used are exactly these
    lo, hi = _extremes(fn, pp, l64.unsqueeze(0), u64.unsqueeze(0), slopes)
    best_l = (slopes * mid + lo).argmax(0, keepdim=True)
    best_u = (slopes * mid + hi).argmin(0, keepdim=True)
    d_l, b_l = slopes.gather(0, best_l)[0], lo.gather(0, best_l)[0]
    d_u, b_u = slopes.gather(0, best_u)[0], hi.gather(0, best_u)[0]
    eps = torch.finfo(dtype).eps
    b_l = (b_l - eps * (b_l.abs() + 1e-30)).to(dtype)
    b_u = (b_u + eps * (b_u.abs() + 1e-30)).to(dtype)
    # outward rounding of the conversion (to nearest: at most half an ulp, covered by the eps above)
    return LinearRelax(d_l.to(dtype), b_l, d_u.to(dtype), b_u)


# ----------------------------------------------------------------------------------------------
# Product of two activations (McCormick planes; Shi et al. 2020, auto_LiRPA's BoundMul)
# ----------------------------------------------------------------------------------------------

def mul_range(lx: Tensor, ux: Tensor, ly: Tensor, uy: Tensor) -> tuple[Tensor, Tensor]:
    """Exact interval of ``x * y`` for x in [lx, ux], y in [ly, uy] (broadcast). An infinite end times 0 is
    0 there (the values are finite reals), not NaN."""
    ps = torch.stack(torch.broadcast_tensors(lx * ly, lx * uy, ux * ly, ux * uy))
    bad = (torch.isnan(lx) | torch.isnan(ux)) | (torch.isnan(ly) | torch.isnan(uy))  # NaN bounds stay NaN
    ps = torch.where(torch.isnan(ps) & ~bad, torch.zeros_like(ps), ps)
    return ps.amin(0), ps.amax(0)


@dataclass
class MulRelax:
    """Input bounds of ``z = x * y`` (N, *z_shape after broadcasting). Lower plane
    ``z >= ly x + lx y - lx ly`` (from (x - lx)(y - ly) >= 0), upper plane
    ``z <= uy x + lx y - lx uy`` (from (x - lx)(y - uy) <= 0)."""

    lx: Tensor
    ux: Tensor
    ly: Tensor
    uy: Tensor

    def rows(self, sl: slice) -> MulRelax:
        return MulRelax(self.lx[sl], self.ux[sl], self.ly[sl], self.uy[sl])


def _sum_to(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``t`` (B, S, *z_shape) over the dimensions where ``shape`` (same length as z_shape) is 1."""
    dims = [2 + d for d, (a, b) in enumerate(zip(shape, t.shape[2:])) if a == 1 and b != 1]
    return t.sum(dim=dims, keepdim=True) if dims else t


def mul_backward(la: Tensor | None, ua: Tensor | None, r: MulRelax, x_shape: tuple[int, ...],
                 y_shape: tuple[int, ...]) -> tuple[list[Tensor | None], list[Tensor | None], Tensor | None,
                                                      Tensor | None]:
    """Push ``la``/``ua`` (B, S, *z_shape) through ``z = x * y``: returns ([A_x, A_y] lower, [A_x, A_y] upper,
    lower bias (N, S), upper bias (N, S)). A positive coefficient of the lower bound takes the lower
    plane, a negative one the upper; the other way round for the upper bound."""
    lx, ly, uy = r.lx.unsqueeze(1), r.ly.unsqueeze(1), r.uy.unsqueeze(1)
    c_low, c_up = -(lx * ly), -(lx * uy)

    def push(a: Tensor, lower: bool) -> tuple[list[Tensor | None], Tensor]:
        pos, neg = a.clamp(min=0), a.clamp(max=0)
        if lower:
            ax = pos * ly + neg * uy
            bias = pos * c_low + neg * c_up
        else:
            ax = pos * uy + neg * ly
            bias = pos * c_up + neg * c_low
        ay = a * lx
        b = bias.reshape(bias.shape[0], bias.shape[1], -1).sum(-1)
        return [_sum_to(ax, x_shape), _sum_to(ay, y_shape)], b

    low: list[Tensor | None] = [None, None]
    up: list[Tensor | None] = [None, None]
    bl = bu = None
    if la is not None:
        low, bl = push(la, True)
    if ua is not None:
        up, bu = push(ua, False)
    return low, up, bl, bu


# ----------------------------------------------------------------------------------------------
# Softmax as one vector-valued node: the log-sum-exp bounds of Wei et al. 2023
# ----------------------------------------------------------------------------------------------
#
# softmax(x)_k = exp(x_k) / sum_j exp(x_j) over the last dimension, x in the box [l, u]. IBP is the exact range
# of each output over the box (softmax_k increases in x_k and decreases in every other x_j):
#
#     p_k = exp(l_k) / (exp(l_k) + sum_{j != k} exp(u_j)) <= softmax_k <= exp(u_k) / (exp(u_k) + sum_{j != k} exp(l_j)) = P_k.
#
# CROWN: the convex lower and concave upper bounds of Wei, Wu, Lin, Huang, Yin, Hsieh, "Convex Bounds on the
# Softmax Function with Applications to Robustness Verification" (AISTATS 2023, Section 4, the "LSE" bounds;
# auto_LiRPA's default for softmax), each replaced by its tangent plane at the box centre x0 = (l + u) / 2:
#
# * lower: with the chord ``kappa_j x_j + beta_j >= exp(x_j)`` of exp on [l_j, u_j] and
#   ``SE(x) = sum_j kappa_j x_j + beta_j >= sum_j exp(x_j)``, ``softmax_k >= L_k(x) = exp(x_k) / SE(x)``; L_k is
#   convex (``exp(t) / s`` is jointly convex for s > 0), so its tangent plane at x0 is below it on the whole box;
# * upper: with the chord ``a_k + c_k q >= exp(q)`` of exp on [log p_k, log P_k] and ``q = log softmax_k(x) =
#   x_k - LSE(x)``, ``softmax_k <= U_k(x) = a_k + c_k (x_k - LSE(x))``; U_k is concave (LSE is convex, c_k >= 0),
#   so its tangent plane at x0 is above it.
#
# The Jacobians are a diagonal minus a rank-one matrix, J = diag(d) - w v^T, applied to coefficients A as
# ``A * d - (A . w) v`` (O(K) per row, never the K x K matrix). Computed in float64 from the detached bounds;
# the slopes are rounded to the working dtype first and the intercepts computed for the rounded slopes, with
# the slope rounding's effect over the box (|dJ| r, r = (u - l) / 2) and the float64 evaluation's error taken off.
# Where auto_LiRPA differs (it adds 1e-8 to denominators and inside logs, unsound by about 1e-8, and replaces a
# chord over an interval narrower than 1e-5 by a tangent, which lies below the function: unsound by the
# interval's width squared), certify keeps the exact chords.


def _exclusive_sums(e: Tensor) -> Tensor:
    """``sum_{j != k} e_j`` along the last dimension for every k, from exclusive prefix and suffix sums: sums of
    non-negative terms, never ``total - e_k`` (which cancels when e_k dominates)."""
    pre = F.pad(e.cumsum(-1)[..., :-1], (1, 0))
    suf = F.pad(e.flip(-1).cumsum(-1)[..., :-1], (1, 0)).flip(-1)
    return pre + suf


def softmax_range(l: Tensor, u: Tensor, log: bool = False) -> tuple[Tensor, Tensor]:  # noqa: E741
    """Interval (IBP) bounds of softmax (``log``: log-softmax) over the last dimension for inputs in the box
    [l, u]: the exact range of each output (see above), computed in float64 and widened by its rounding (that of
    ``exp(x - M)``, relative ``eps |x - M|``, and of the sums) and by the conversion to the dtype; the whole range
    ([0, 1], or [-inf, 0]) in rows with a non-finite end. Differentiable (used by IBP training losses)."""
    dtype = l.dtype
    ok = (torch.isfinite(l) & torch.isfinite(u)).all(-1, keepdim=True)
    l64, u64 = torch.where(ok, l, 0.0).double(), torch.where(ok, u, 0.0).double()
    one = torch.ones((), dtype=torch.float64, device=l.device)
    k = l.shape[-1]
    # lower: shifted by max u (exp(u - M) <= 1; the k with u_k = M has a denominator term 1 unless it underflows)
    m = u64.amax(-1, keepdim=True)
    ls, us = l64 - m, u64 - m
    a, b = torch.exp(ls), torch.exp(us)
    den = a + _exclusive_sums(b)
    pos = den > 0
    safe = torch.where(pos, den, one)
    # upper: shifted by max l (the k with l_k = max l has exp(u_k - max l) >= 1; an overflow gives inf / inf: 1)
    m2 = l64.amax(-1, keepdim=True)
    ls2, us2 = l64 - m2, u64 - m2
    a2, b2 = torch.exp(ls2), torch.exp(us2)
    den2 = b2 + _exclusive_sums(a2)
    good = (den2 > 0) & torch.isfinite(den2)
    safe2 = torch.where(good, den2, one)
    e64 = torch.finfo(torch.float64).eps
    rel_lo = (e64 * (ls.abs() + us.abs().amax(-1, keepdim=True) + k + 8)).detach()
    rel_hi = (e64 * (us2.abs() + ls2.abs().amax(-1, keepdim=True) + k + 8)).detach()
    ed, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps
    if log:
        lo = torch.where(pos, ls - torch.log(safe), torch.full_like(den, -math.inf))
        hi = torch.where(good, us2 - torch.log(safe2), torch.zeros_like(den2))
        lo = lo - rel_lo - ed * lo.abs() - tiny
        hi = (hi + rel_hi + ed * hi.abs() + tiny).clamp(max=0)
        return torch.where(ok, lo.to(dtype), -math.inf), torch.where(ok, hi.to(dtype), 0.0)
    lo = torch.where(pos, a / safe, torch.zeros_like(den))
    hi = torch.where(good, b2 / safe2, torch.ones_like(den2))
    lo = (lo * (1 - rel_lo) * (1 - ed) - tiny).clamp(min=0, max=1)
    hi = (hi * (1 + rel_hi) * (1 + ed) + tiny).clamp(min=0, max=1)
    return torch.where(ok, lo.to(dtype), 0.0), torch.where(ok, hi.to(dtype), 1.0)


@dataclass
class SoftmaxRelax:
    """Linear bounds ``J_L x + b_L <= softmax(x) <= J_U x + b_U`` (softmax over the last dimension) on the input
    box, with ``J_L = diag(dl) - wl vl^T`` and ``J_U = diag(du) - wu vu^T``; every tensor (N, *shape)."""

    dl: Tensor
    wl: Tensor
    vl: Tensor
    bl: Tensor
    du: Tensor
    wu: Tensor
    vu: Tensor
    bu: Tensor

    def rows(self, sl: Any) -> SoftmaxRelax:
        return SoftmaxRelax(*(t[sl] for t in (self.dl, self.wl, self.vl, self.bl, self.du, self.wu, self.vu,
                                              self.bu)))


def _exp_chord(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Slope and intercept of the chord of exp on [lo, hi] (float64, hi <= 0 up to rounding, lo >= -inf): slope
    ``exp(lo) expm1(w) / w`` (w = hi - lo; no cancellation) for w <= 1, ``(exp(hi) - exp(lo)) / w`` beyond;
    ``exp(hi)`` (the derivative) where w = 0; 0 where lo = -inf (the chord of exp on (-inf, hi] is the constant
    exp(hi)). The intercept ``exp(hi) - slope hi``."""
    w = hi - lo
    el, eh = torch.exp(lo), torch.exp(hi)
    ws = torch.where(w > 0, w, torch.ones_like(w))
    small = el * torch.expm1(torch.where(w <= 1, w, torch.zeros_like(w))) / ws
    k = torch.where(w <= 1, small, (eh - el) / ws)
    k = torch.where(w > 0, k, eh)
    k = torch.where(torch.isneginf(lo), torch.zeros_like(k), k)
    return k, eh - k * hi


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1, keepdim=True)


def softmax_relax(l: Tensor, u: Tensor, log: bool = False) -> SoftmaxRelax:  # noqa: E741
    """The tangent planes at the box centre of Wei et al. 2023's convex lower and concave upper bounds of softmax
    over the last dimension (see the section comment), for inputs in [l, u] (N, *shape); rows with a non-finite
    end get constant bounds (the whole range).

    ``log``: log-softmax ``x_k - LSE(x)``, concave: above, its own tangent plane at x0 (slopes ``e_k - softmax(x0)``,
    the tightest linear upper bound touching it at x0); below, the tangent plane at x0 of the convex
    ``x_k - log SE(x) = log L_k(x)`` (the logarithm of the lower bound above; ``SE >= sum_j exp(x_j)``)."""
    dtype = l.dtype
    l64, u64 = l.detach().double(), u.detach().double()
    ok = (torch.isfinite(l64) & torch.isfinite(u64)).all(-1, keepdim=True)
    l64, u64 = torch.where(ok, l64, 0.0), torch.where(ok, u64, 0.0)
    x0 = (l64 + u64) / 2
    r = (u64 - l64) / 2
    m = u64.amax(-1, keepdim=True)
    ls, us, xs = l64 - m, u64 - m, x0 - m
    # lower: L(x) = exp(x_k) / SE(x), tangent at x0
    kappa, beta = _exp_chord(ls, us)
    se0 = (kappa * xs + beta).sum(-1, keepdim=True)
    l0 = torch.exp(xs) / se0
    dl, wl, vl = l0, l0 / se0, kappa
    lsm0 = torch.log_softmax(x0, -1)
    if log:  # lower: x_k - log SE(x) at x0; upper: log-softmax's own tangent plane at x0
        one = torch.ones_like(l0)
        l0, dl, wl, vl = xs - torch.log(se0), one, one, kappa / se0
        du, wu, vu, f_u0 = one, one, torch.exp(lsm0), lsm0
    else:  # upper: U(x) = a + c (x_k - LSE(x)), tangent at x0; [p, P] the exact range (IBP) in float64
        p_lo, p_hi = softmax_range(l64, u64)
        c, a = _exp_chord(torch.log(p_lo), torch.log(p_hi))
        du, wu, vu = c, c, torch.exp(lsm0)
        f_u0 = a + c * lsm0

    # the float64 evaluation's error of the values at x0 (exp(x - M) has relative error eps |x - M|, the sums K eps)
    e64 = torch.finfo(torch.float64).eps
    spread = xs.abs().amax(-1, keepdim=True) + ls.abs().amax(-1, keepdim=True) + l64.shape[-1] + 8

    def line(f0: Tensor, d: Tensor, w: Tensor, v: Tensor, sign: int, ferr: Tensor) -> tuple[Tensor, ...]:
        # slopes rounded to the working dtype; the intercept for the rounded slopes, moved outward by the slope
        # rounding's effect over the box and by the float64 evaluation's error
        dr, wr, vr = (t.to(dtype).double() for t in (d, w, v))
        slack = (d - dr).abs() * r + (w - wr).abs() * _row_dot(v.abs(), r) + wr.abs() * _row_dot((v - vr).abs(), r)
        jx0 = dr * x0 - wr * _row_dot(vr, x0)
        mag = f0.abs() + (dr * x0).abs() + wr.abs() * _row_dot(vr.abs(), x0.abs())
        b = f0 - jx0 - sign * (slack + 64 * e64 * mag + ferr)
        b = b - sign * torch.finfo(dtype).eps * b.abs()  # the conversion's rounding, outward
        return dr, wr, vr, b

    f_l0 = l0.abs() + 1 if log else l0
    dl_, wl_, vl_, bl = line(l0, dl, wl, vl, +1, 16 * e64 * spread * f_l0)
    du_, wu_, vu_, bu = line(f_u0, du, wu, vu, -1, 16 * e64 * spread * (f_u0.abs() + 1))
    zero = torch.zeros_like(dl_)
    out = [torch.where(ok, t, zero) for t in (dl_, wl_, vl_)]
    out.append(torch.where(ok, bl, torch.full_like(bl, -math.inf) if log else zero))
    out += [torch.where(ok, t, zero) for t in (du_, wu_, vu_)]
    out.append(torch.where(ok, bu, zero if log else torch.ones_like(bu)))
    return SoftmaxRelax(*(t.to(dtype) for t in out))


def softmax_backward(la: Tensor | None, ua: Tensor | None, r: SoftmaxRelax
                     ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Push ``la``/``ua`` (B, S, *shape) through softmax over the last dimension: a positive coefficient of the
    lower bound takes the lower plane, a negative one the upper; the other way round for the upper bound.
    Returns (lower A, upper A, lower bias (N, S), upper bias (N, S))."""
    def side(t: SoftmaxRelax, low: bool) -> tuple[Tensor, ...]:
        if low:
            return tuple(x.unsqueeze(1) for x in (t.dl, t.wl, t.vl, t.bl))
        return tuple(x.unsqueeze(1) for x in (t.du, t.wu, t.vu, t.bu))

    lo_side, up_side = side(r, True), side(r, False)

    def apply(a: Tensor, s: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        d, w, v, b = s
        new = a * d - (a * w).sum(-1, keepdim=True) * v
        ab = a * b  # (N, S, *shape): a may be shared by the batch (leading dimension 1)
        bias = ab.reshape(ab.shape[0], ab.shape[1], -1).sum(-1)
        return new, bias

    def push(a: Tensor, lower: bool) -> tuple[Tensor, Tensor]:
        pos, neg = a.clamp(min=0), a.clamp(max=0)
        np_, bp = apply(pos, lo_side if lower else up_side)
        nn_, bn = apply(neg, up_side if lower else lo_side)
        return np_ + nn_, bp + bn

    new_l = new_u = bl = bu = None
    if la is not None:
        new_l, bl = push(la, True)
    if ua is not None:
        new_u, bu = push(ua, False)
    return new_l, new_u, bl, bu
