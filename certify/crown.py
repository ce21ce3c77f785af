"""CROWN (Zhang et al. 2018) and CROWN-IBP (Zhang et al. 2020): backward linear relaxation.

A linear bound ``A @ node + bias`` is pushed from the output (or an intermediate node) back to
the input, replacing each activation by linear lower/upper relaxations, then concretised over
the input region:

* L-inf (intersected with a box domain): ``A c -/+ |A| r`` with the clipped box centre/radius;
* L2: ``A x0 -/+ ||A||_2 eps`` (and, with a domain, the better of that and the box bound).

ReLU uses auto_LiRPA's default ("adaptive") relaxation: ``lb_r = min(l, 0)``,
``ub_r = max(max(u, 0), lb_r + 1e-8)``, upper slope ``d_u = ub_r / (ub_r - lb_r)`` with intercept
``-lb_r d_u``, lower slope ``d_l = 1[d_u > 0.5]``. Sigmoid and tanh use CROWN's tangent-line relaxation
(Zhang et al. 2018; chord on one side, tangent at the midpoint or through the far end point on the other: see
:func:`smooth_relaxation`), as auto_LiRPA.

Intermediate bounds (method ``"crown"``): a pre-activation that IBP bounds exactly (one linear/conv
layer of the input box, followed by element-wise affine maps such as BatchNorm; for L2 a layer on the
input itself) keeps its IBP bounds; the others get IBP reference bounds from the bounds known so far,
and a CROWN backward pass is run only for the neurons that are unstable under them (per input; the
other neurons keep the reference bounds, which changes nothing downstream since a stable ReLU's
relaxation is exact). Inputs of max pooling and of other non-linear ops get every neuron bounded.
An interval that overflows the floating-point range gives -/+inf bounds, never NaN. Method ``"crown-ibp"`` uses IBP for all intermediate bounds and CROWN at the
output only.

A conv layer on a small input is turned into an equivalent dense matrix for the backward pass
(exact; BLAS matrix products are faster than transposed convolutions at this size); larger
ones are propagated with ``conv_transpose2d``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from certify import _memory, _softmax_alt
from certify._graph import ACTIVATIONS, NONLINEAR, SCALAR_OPS, SOFTMAX_OPS, Graph, Node, densify
from certify._layers import (
    LinearRelax,
    MaxPoolRelax,
    MulRelax,
    SoftmaxRelax,
    maxpool_backward,
    maxpool_relax,
    mul_backward,
    scalar_relax,
    softmax_backward,
    softmax_relax,
)
from certify.ibp import InputRegion, Interval, direct_input_flags, node_interval, spec_interval
from certkit._validation import load_compiled

__all__ = ["CHUNK_BYTES", "DENSE_CONV_MAX_ELEMENTS", "crown_bounds", "relu_relaxation", "smooth_relaxation"]

#: A conv layer whose dense matrix has at most this many entries is densified for CROWN (a speed knob).
DENSE_CONV_MAX_ELEMENTS = 1 << 19
#: Coefficient tensors larger than this (bytes) are split into chunks of inputs (a speed knob: cache
#: locality). The memory caps of this module (``PREFIX_BYTES``, ``ALL_NEURONS_BYTES``, ``PATCH_BYTES``) are
#: lowered at call time to what the memory available allows (``certify._memory``; ``certify.memory_budget``).
CHUNK_BYTES = 1 << 21
#: closed-form counts of the tensors of a chunk's size one backward step holds at once (lower and upper
#: coefficients, the relaxation's slopes and intercepts gathered to them, positive and negative parts, the
#: products), used to size chunks from the memory available (``certify._memory.units``)
BACKWARD_COPIES = 8
PATCH_COPIES = 16


def _node_what(g: Graph, i: int, stage: str) -> str:
    """``stage`` of node ``i``, for a MemoryError's message."""
    n = g.nodes[i]
    return f"{stage} of node {i} ({n.op} {n.name!r}, shape {tuple(n.shape)})"


def _use_channels_last(g: Graph, t: Tensor) -> bool:
    """Whether coefficients ``t`` of ``g``'s conv-shaped nodes are kept channels-last (memory order (B, S, H, W, C))
    in the backward pass: on CPU in float32 with oneDNN, whose NHWC kernels run 3x3 transposed convolutions
    1.1-1.8x faster than NCHW ones (those reorder their operands every call), when no conv of ``g`` takes the
    phase form (:func:`_phase_form`; its pixel shuffle and 2x2 kernels measured slower channels-last). The
    element-wise relaxation steps keep the layout; dot products flatten both operands in that order. Same bounds
    up to the order of summation."""
    if not (t.dtype == torch.float32 and t.device.type == "cpu" and torch.backends.mkldnn.is_available()):
        return False
    hit = g.derived.get("channels-last")
    if hit is None:
        convs = [n for n in g.nodes if n.op == "conv" and len(n.shape) == 3]
        hit = g.derived["channels-last"] = bool(convs) and not any(_phase_form(n) for n in convs)
    return hit  # type: ignore[no-any-return]


def _cl_like(t: Tensor) -> bool:
    """``t`` (B, S, C, H, W) stored channels-last (channels innermost)."""
    return t.dim() == 5 and t.shape[2] > 1 and t.stride(2) == 1


def _flat_pair(a: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``a`` (B, S, *shape) -> (B, S, D) and ``v`` (N, *shape) -> (N, D), flattened over shape in one common
    order: channels-last for channels-last coefficients (no copy of ``a``), else the logical order."""
    b, s = a.shape[0], a.shape[1]
    if v.dim() == 4 and _cl_like(a):
        return a.permute(0, 1, 3, 4, 2).reshape(b, s, -1), v.permute(0, 2, 3, 1).reshape(v.shape[0], -1)
    return a.reshape(b, s, -1), v.reshape(v.shape[0], -1)


def _surely_finite(*ts: Tensor) -> bool:
    """True only if every entry of the tensors is finite: one summing pass each, no allocation (a NaN or an
    infinite entry makes the sum NaN or infinite). False can also mean that the sum of finite entries
    overflowed: the caller then checks exactly."""
    total = 0.0
    for t in ts:  # Python floats: one tensor op and one read per tensor (a tensor sum of sums costs ~3x more)
        total += float(t.detach().sum())
    return math.isfinite(total)


def _all_finite(*ts: Tensor) -> bool:
    """Every entry of the tensors is finite (the summing pass first, the exact check only when it fails)."""
    return _surely_finite(*ts) or all(bool(torch.isfinite(t).all()) for t in ts)


def _any_nan(*ts: Tensor) -> bool:
    """Some entry of the tensors is NaN (the summing pass first, the exact check only when it fails)."""
    return not _surely_finite(*ts) and any(bool(torch.isnan(t).any()) for t in ts)


def relu_relaxation(l: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # noqa: E741
    """auto_LiRPA's default ReLU relaxation: (lower slope d_l, upper slope d_u, upper intercept b_u)."""
    fast = _relu_relaxation_compiled(l, u)
    if fast is not None:
        return fast
    lb_r = l.clamp(max=0)
    ub_r = torch.maximum(u.clamp(min=0), lb_r + 1e-8)
    d_u = ub_r / (ub_r - lb_r)
    b_u = -lb_r * d_u
    d_l = (d_u > 0.5).to(d_u.dtype)
    if not _all_finite(l, u):
        return _relu_relaxation_unbounded(l, u, d_l, d_u, b_u)
    return d_l, d_u, b_u


def _flat_block(t: Tensor, like: Tensor) -> Any:
    """A dense tensor's memory as a flat numpy view (any dense layout; ``like``'s strides must be ``t``'s)."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset()).numpy() if t.stride() == like.stride() else None


def _relu_relaxation_compiled(l: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:  # noqa: E741
    """:func:`relu_relaxation` in one compiled pass (:func:`certify._crown_kernels.relu_relax`, bit-identical), or
    None where it does not apply (kernels off or absent, autograd recording, not CPU float32/float64, bounds not
    both channels-last maps (as for :func:`_relu_kernel_step`), a bound that is not finite)."""
    if (l.device.type != "cpu" or l.dtype not in (torch.float32, torch.float64) or u.dtype != l.dtype
            or l.shape != u.shape or l.stride() != u.stride()):
        return None
    if torch.is_grad_enabled() and (l.requires_grad or u.requires_grad):
        return None
    if not (l.dim() == 4 and l.shape[1] > 1 and l.is_contiguous(memory_format=torch.channels_last)):
        return None  # channels-last maps only (see _relu_kernel_step)
    kern = _relu_kernels(l.numel())
    if kern is None:
        return None
    d_l, d_u, b_u = torch.empty_like(l), torch.empty_like(l), torch.empty_like(l)
    views = [_flat_block(t, l) for t in (l, u, d_l, d_u, b_u)]
    if any(v is None for v in views) or not kern.relu_relax(*views):
        return None
    return d_l, d_u, b_u


#: the IBP pass of CROWN / CROWN-IBP takes a ReLU whose input interval is in centre/width form (a convolution's,
#: BatchNorm's or residual sum's output) in one compiled pass: the input's ends, their relaxation, the ReLU's interval
#: and its sum/difference form (:func:`certify._crown_kernels.relu_ibp_relax`; its outputs are bit-identical to the
#: torch form's eleven passes; the final bounds equal the unfused path's up to rounding: a review saw 2 ulp (float32)
#: on 2 of ~920 small fuzzed networks with the kernel thresholds lowered to 1, the consumer not traced; on channels-last maps where the compiled relaxation applies, see :func:`_relu_relaxation_compiled`)
FUSED_IBP_RELU = True


def _fused_ibp_relu(src: Interval) -> tuple[_Relax, Interval] | None:
    """(the ReLU's relaxation, its IBP interval) from its input's interval ``src`` in one compiled pass, with
    ``src``'s ends set on it (as reading ``src.l``, ``src.u`` would), or None where the pass does not apply
    (``FUSED_IBP_RELU`` off, ``src`` not in centre/width form, autograd recording, not channels-last CPU
    float32/float64 maps of one layout, kernels off or absent, an end not finite: then nothing is changed)."""
    c, w = src._c, src._d
    if (not FUSED_IBP_RELU or c is None or w is None or src._r is not None or src._l is not None
            or src._u is not None or c.device.type != "cpu" or c.dtype not in (torch.float32, torch.float64)
            or w.dtype != c.dtype or c.shape != w.shape or c.stride() != w.stride()):
        return None
    if torch.is_grad_enabled() and (c.requires_grad or w.requires_grad):
        return None
    if not (c.dim() == 4 and c.shape[1] > 1 and c.is_contiguous(memory_format=torch.channels_last)):
        return None
    kern = _relu_kernels(c.numel())
    if kern is None:
        return None
    outs = [torch.empty_like(c) for _ in range(9)]
    views = [_flat_block(t, c) for t in (c, w, *outs)]
    if any(v is None for v in views) or not kern.relu_ibp_relax(*views):
        return None
    lo, hi, d_l, d_u, b_u, out_l, out_u, out_s, out_d = outs
    src._l, src._u = lo, hi
    r = _Relax.__new__(_Relax)
    r.d_l, r.d_u, r.b_u, r.b_l = d_l, d_u, b_u, None
    return r, Interval(l=out_l, u=out_u, s=out_s, d=out_d)


def _relu_relaxation_unbounded(l: Tensor, u: Tensor, d_l: Tensor, d_u: Tensor,  # noqa: E741
                               b_u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The limits of the ReLU relaxation where a bound is infinite (an overflowed interval; the formulas give
    inf/inf or 0 * inf there): ``l = -inf``: ``relu(x) <= max(u, 0)`` (slope 0); ``u = +inf``:
    ``relu(x) <= x - min(l, 0)`` (slope 1); both: slope 1 with intercept +inf (no finite line exists); a NaN
    bound (no information) counts as infinite."""
    lo_inf = ~(l > -math.inf)  # NaN counts as -inf
    hi_inf = ~(u < math.inf)
    d_u = torch.where(hi_inf, torch.ones_like(d_u), torch.where(lo_inf, torch.zeros_like(d_u), d_u))
    b_u = torch.where(hi_inf, torch.where(lo_inf, torch.full_like(b_u, math.inf), -l.clamp(max=0)),
                      torch.where(lo_inf, u.clamp(min=0).nan_to_num(math.inf), b_u))
    d_l = torch.where(lo_inf | hi_inf, (d_u > 0.5).to(d_u.dtype), d_l)
    return d_l, d_u, b_u


def smooth_relaxation(op: str, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # noqa: E741
    """CROWN's linear relaxation of sigmoid/tanh on ``[l, u]``: ``(d_l, b_l, d_u, b_u)`` with
    ``d_l x + b_l <= f(x) <= d_u x + b_u`` on ``[l, u]``.

    The tangent-line relaxation of Zhang et al. 2018 (CROWN for general activations, "Efficient Neural Network
    Robustness Certification with General Activation Functions", NeurIPS), as auto_LiRPA's default: on the convex
    part (``u <= 0``) the tangent at the midpoint below and the chord above, on the concave part (``l >= 0``) the
    other way round; across 0 the chord where it stays on its side of the curve, else the tangent through the far
    end point (the tangent point found by a root search, :func:`_envelope_lower_slope`), or the tangent at the midpoint
    where that lies on the convex side of the tangent point. Each line is the supporting line, at the midpoint, of
    the convex (lower) or concave (upper) envelope of ``f`` on ``[l, u]``: among all sound lines it has the largest
    (lower) or smallest (upper) value at the midpoint, i.e. the smallest mean gap to ``f`` over ``[l, u]``. So it is
    never looser in that sense than the parallel chord lines used before (:func:`_parallel_relaxation`), though not
    pointwise (two tangents of a convex curve cross). The slopes are clamped to ``[tiny, kmax]`` (0.25 sigmoid, 1
    tanh) and the intercepts are the exact extremes of ``f(x) - k x`` (:func:`_smooth_intercepts`), so the lines
    are sound whatever the rounding of the tangent point. An infinite end (an overflowed interval; NaN counts as
    infinite) gives the constant limit lines ``f(l) <= f <= f(u)`` (``f(-inf)`` = 0 or -1, ``f(inf)`` = 1).
    """
    finite = _all_finite(l, u)
    if not finite:
        lo_inf, hi_inf = ~(l > -math.inf), ~(u < math.inf)
        unb = lo_inf | hi_inf
        l0, u0 = l, u
        l, u = torch.where(unb, torch.zeros_like(l), l), torch.where(unb, torch.zeros_like(u), u)  # noqa: E741
    kmax = 0.25 if op == "sigmoid" else 1.0
    tiny = torch.finfo(l.dtype).tiny
    # the lower line's slope on [l, u] and, by symmetry, the upper's as the lower on [-u, -l], in one pass
    k = _envelope_lower_slope(op, torch.stack([l, -u]), torch.stack([u, -l])).clamp(min=tiny, max=kmax)
    b_l, b_u = _smooth_intercepts(op, l, u, k)
    d_l, b_l, d_u, b_u = k[0], b_l[0], k[1], b_u[1]
    if not finite:
        f = torch.sigmoid if op == "sigmoid" else torch.tanh
        d_l = torch.where(unb, torch.zeros_like(d_l), d_l)
        d_u = torch.where(unb, torch.zeros_like(d_u), d_u)
        b_l = torch.where(unb, torch.where(lo_inf, torch.full_like(l, -1.0 if op == "tanh" else 0.0), f(l0)), b_l)
        b_u = torch.where(unb, torch.where(hi_inf, torch.ones_like(u), f(u0)), b_u)
    return d_l, b_l, d_u, b_u


def _dsmooth(op: str, fx: Tensor) -> Tensor:
    """The derivative of sigmoid/tanh from its value: ``s (1 - s)``, ``1 - t^2``."""
    return fx * (1 - fx) if op == "sigmoid" else 1 - fx * fx


def _envelope_lower_slope(op: str, l: Tensor, u: Tensor) -> Tensor:  # noqa: E741
    """Slope of the supporting line at the midpoint ``m`` of the convex envelope of sigmoid/tanh on finite
    ``[l, u]`` (CROWN's lower line; the upper one is this on ``[-u, -l]``, by the odd symmetry around 0):
    ``u <= 0`` (convex part): the tangent at ``m``; ``l >= 0`` (concave part): the chord; ``l < 0 < u``: the chord
    if it lies below ``f`` (chord slope ``< f'(l)``), else the tangent at ``m`` if ``m`` lies left of the tangent
    point ``d`` (the point ``d <= 0`` whose tangent passes through ``(u, f(u))``), else the tangent at ``d``.

    ``d`` is found by a root search (:func:`_tangent_point`; ``h(d) = f(d) + f'(d) (u - d) - f(u)`` increases on
    ``d <= 0``) to the dtype's resolution, as the paper's binary search; auto_LiRPA reads it from a table of the
    tangent points of ``u`` rounded up to a 0.01 grid (a sound but looser tangent point; its bounds equal these
    when the table is exact). An interval narrower than ``1e-6 (1 + |l|)`` takes ``f'(m)`` as its chord slope
    (the difference quotient cancels)."""
    f = torch.sigmoid if op == "sigmoid" else torch.tanh
    mid = (l + u) / 2
    fl, fu = f(l), f(u)
    k_m = _dsmooth(op, f(mid))
    width = u - l
    tiny = width <= 1e-6 * (1 + l.abs())
    k_c = torch.where(tiny, k_m, (fu - fl) / torch.where(tiny, torch.ones_like(width), width))
    k = torch.where(u <= 0, k_m, k_c)
    cross = (l < 0) & (u > 0) & (k_c >= _dsmooth(op, fl))  # across 0, and the chord is not below f
    if not bool(cross.any()):
        return k
    lc, uc, mc, fuc = l[cross], u[cross], mid[cross], fu[cross]
    # bracket [a, b] of d with h(a) <= 0 <= h(b): a = l (h(l) <= 0 as the chord is not below f) or, for a far
    # end, -2 log(1/tiny), where f and f' underflow (h = -f(u) < 0); b = min(m, 0) unless d > m
    b = mc.clamp(max=0)
    fb = f(b)
    at_mid = (mc <= 0) & (fb + _dsmooth(op, fb) * (uc - b) < fuc)  # h(m) < 0: d > m, the tangent at m
    a = lc.clamp(min=-2 * math.log(1 / torch.finfo(l.dtype).tiny))
    d = _tangent_point(op, uc, fuc, a, b)
    k = k.clone()
    k[cross] = torch.where(at_mid, k_m[cross], _dsmooth(op, f(d)))
    return k


def _tangent_point(op: str, u: Tensor, fu: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """The root in ``[a, b]`` (``a < b <= 0 < u``, ``h(a) <= 0 <= h(b)``; 1-D) of the increasing
    ``h(d) = f(d) + f'(d) (u - d) - f(u)``: safeguarded Newton (a step leaving the bracket is replaced by
    bisection), from ``-log(1 + u / 2)`` (sigmoid; half of that at ``2 u`` for tanh), the root's asymptote for
    small and for large ``u``; an entry stops when its step or bracket is below the dtype's resolution or ``h`` is
    at its rounding noise (at most ``bits + 8`` steps; ~20 on random intervals, most entries far fewer)."""
    scale = 1.0 if op == "sigmoid" else 0.5
    d = (-torch.log1p(u / (2 * scale)) * scale).clamp(min=a, max=b)
    eps = torch.finfo(u.dtype).eps
    out = d.clone()
    idx = None  # the entries still searched (None: all)
    for _ in range(torch.finfo(u.dtype).bits + 8):
        if op == "sigmoid":
            fd = torch.sigmoid(d)
            d1 = fd * (1 - fd)
            d2 = d1 * (1 - 2 * fd)
        else:
            fd = torch.tanh(d)
            d1 = 1 - fd * fd
            d2 = -2 * fd * d1
        hd = fd + d1 * (u - d) - fu
        right = hd >= 0
        a, b = torch.where(right, a, d), torch.where(right, d, b)
        new = d - hd / (d2 * (u - d))
        new = torch.where((new >= a) & (new <= b), new, (a + b) / 2)  # NaN or outside: bisection
        # converged: the step or the bracket below the resolution, or h(d) at its rounding noise
        tol = 4 * eps * (1 + d.abs())
        done = ((new - d).abs() <= tol) | (b - a <= tol) | (hd.abs() <= 4 * eps * (fu.abs() + fd.abs()
                                                                                     + (d1 * (u - d)).abs()))
        n_done = int(done.sum())
        if n_done == done.numel():
            if idx is None:
                return new
            out[idx] = new
            return out
        if n_done:  # go on with the open entries only
            keep = (~done).nonzero().squeeze(1)
            if idx is None:
                out = new.clone()
                idx = keep
            else:
                out[idx] = new
                idx = idx[keep]
            new, a, b, u, fu = new[keep], a[keep], b[keep], u[keep], fu[keep]
        d = new
    if idx is None:
        return d
    out[idx] = d
    return out


def _parallel_relaxation(op: str, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # noqa: E741
    """The former relaxation of sigmoid/tanh (kept to compare against): two parallel lines with the chord slope
    ``k``, intercepts ``b_l <= f(x) - k x <= b_u`` (finite ``[l, u]``)."""
    f = torch.sigmoid if op == "sigmoid" else torch.tanh
    width = u - l
    tiny = width <= 1e-6 * (1 + l.abs())
    fm = f((l + u) / 2)
    deriv = fm * (1 - fm) if op == "sigmoid" else 1 - fm * fm
    k = torch.where(tiny, deriv, (f(u) - f(l)) / torch.where(tiny, torch.ones_like(width), width))
    k = k.clamp(min=torch.finfo(k.dtype).tiny, max=0.25 if op == "sigmoid" else 1.0)
    b_l, b_u = _smooth_intercepts(op, l, u, k)
    return k, b_l, b_u


def _smooth_intercepts(op: str, l: Tensor, u: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:  # noqa: E741
    """Intercepts ``b_l <= min`` and ``b_u >= max`` over ``[l, u]`` (finite) of ``f(x) - k x`` for sigmoid/tanh,
    for any slope ``k`` in ``(0, kmax]`` (0.25 sigmoid, 1 tanh; broadcasting with ``l``/``u``), so that
    ``k x + b_l <= f(x) <= k x + b_u`` on ``[l, u]``. The extremes lie at the end points or where ``f'(x) = k``
    (closed form for both functions), with an outward slack for rounding. The candidate points are computed from
    ``k`` detached: the value is the same, and the gradient in ``k`` is Danskin's ``-x*`` (a.e.), never NaN at
    ``k = kmax`` (alpha-CROWN optimises ``k``)."""
    f = torch.sigmoid if op == "sigmoid" else torch.tanh
    kd = k.detach()
    if op == "sigmoid":
        disc = (1 - 4 * kd).clamp(min=0).sqrt()
        s1, s2 = (1 - disc) / 2, (1 + disc) / 2
        s1 = s1.clamp(min=torch.finfo(k.dtype).tiny)
        s2 = s2.clamp(max=1 - torch.finfo(k.dtype).eps)
        x1, x2 = torch.log(s1) - torch.log1p(-s1), torch.log(s2) - torch.log1p(-s2)
    else:
        t = (1 - kd).clamp(min=0).sqrt().clamp(max=1 - torch.finfo(k.dtype).eps)
        x2 = torch.atanh(t)
        x1 = -x2
    cands = [l, u, torch.minimum(torch.maximum(x1, l), u), torch.minimum(torch.maximum(x2, l), u)]
    gs = torch.stack(torch.broadcast_tensors(*[f(c) - k * c for c in cands]))
    slack = 8 * torch.finfo(k.dtype).eps * (1 + k * torch.maximum(l.abs(), u.abs()))
    return gs.min(0).values - slack, gs.max(0).values + slack


class _Relax:
    """Per-activation-node relaxation cache: slopes (lower, upper) and intercepts (lower, upper).

    Hook for optimised relaxations (``certify.alpha_crown``; the default path never sets it):
    with ``per_spec`` the lower slope ``d_l`` is (N, S, *shape), one per specification row (sigmoid/tanh: the
    upper slope and both intercepts too, lower and upper lines with their own slopes), and a
    ``beta`` (N, S, *shape) is added to the lower bound's coefficients at the activation's input
    (beta-CROWN's Lagrangian term for split constraints).
    """

    per_spec = False
    beta: Tensor | None = None

    def __init__(self, op: str, l: Tensor, u: Tensor) -> None:  # noqa: E741
        if op == "relu":
            self.d_l, self.d_u, self.b_u = relu_relaxation(l, u)
            self.b_l: Tensor | None = None
        else:
            self.d_l, self.b_l, self.d_u, self.b_u = smooth_relaxation(op, l, u)


#: :func:`_flat_dot` takes one matrix-vector product per input for at most this many inputs of at least this length
MV_LOOP_MAX = (8, 8192)


def _flat_dot(a: Tensor, v: Tensor) -> Tensor:
    """sum over node dims of ``a`` (B, S, *shape) times ``v`` (N, *shape) -> (max(B,N), S)."""
    b = a.shape[0]
    a2, v2 = _flat_pair(a, v)
    if b == 1 and v2.shape[0] > 1:
        out = (a2[0] @ v2.t()).t()
    elif b == v2.shape[0] and b <= MV_LOOP_MAX[0] and a2.shape[2] >= MV_LOOP_MAX[1]:
        # few long rows (a chunk of one to a few inputs): one matrix-vector product per input reads ``a`` once;
        # vecdot writes and reads a product of a's size (~2-3x slower here), bmm takes a slow batched path
        out = torch.stack([torch.mv(a2[k], v2[k]) for k in range(b)])
    else:
        # a batch of matrix-vector products: vecdot is ~5x faster than bmm for these shapes on CPU
        out = torch.linalg.vecdot(a2, v2.unsqueeze(1))
    if bool(torch.isnan(out).any()):
        # an infinite intercept (an overflowed interval) times a zero coefficient contributes nothing: 0 * inf
        # is 0 here, not NaN (a NaN operand stays NaN)
        terms = a2 * v2.unsqueeze(1)
        out = torch.where(a2 == 0, 0.0, terms).sum(-1)
    return out


def _spec_dot(a: Tensor, v: Tensor) -> Tensor:
    """:func:`_flat_dot` where ``v`` may also be (N, S, *shape), one per specification row."""
    if v.dim() == a.dim():
        return (a * v).flatten(2).sum(2)
    return _flat_dot(a, v)


def _bias_dot(a: Tensor, bias: Tensor, shape: tuple[int, ...]) -> Tensor:
    """sum over node dims of ``a`` (B, S, *shape) times a constant ``bias`` broadcastable to shape -> (B, S)."""
    if not bias.dim():
        return a.reshape(a.shape[0], a.shape[1], -1) @ bias.expand(math.prod(shape))
    a2, bb = _flat_pair(a, bias.expand(shape).unsqueeze(0))
    return a2 @ bb[0]


def _back_affine(n: Node, a: Tensor, in_shape: tuple[int, ...], cl: bool = False,
                 map_shape: tuple[int, ...] | None = None) -> tuple[Tensor, Tensor | None]:
    """Push ``a`` (B, S, *n.shape) through affine node ``n``: returns (A at its input, bias term (B, S)). With
    ``cl`` (:func:`_use_channels_last`) conv-shaped coefficients leave a conv or a reshape channels-last. ``map_shape``
    (C, H, W) (see :func:`_flattened_map`): the input of linear node ``n`` is a flattened map; the coefficients come
    out as (B, S, C, H, W) channels-last, straight from a product with the weight's columns in (H, W, C) order (no
    copy to channels-last afterwards; the same products)."""
    b, s = a.shape[0], a.shape[1]
    op = n.op
    if op == "linear":
        w = n.weight
        if map_shape is not None:
            c, h, wd = map_shape
            new = _onednn_matmul(n, a, map_shape) if cl else None
            if new is None:
                new = torch.matmul(a, _weight_t(n, map_shape).t())
            new = new.reshape(b, s, h, wd, c).permute(0, 1, 4, 2, 3)
        else:
            new = _onednn_matmul(n, a) if cl else None
            if new is None:
                new = torch.matmul(a, w)  # type: ignore[arg-type]
        bias = None
        if n.bias is not None:
            bias = torch.matmul(a, n.bias)
            if bias.dim() > 2:
                bias = bias.reshape(b, s, -1).sum(-1)
        return new, bias
    if op == "dense":
        a2 = a.reshape(b, s, -1)
        new = torch.matmul(a2, n.weight).reshape(b, s, *in_shape)  # type: ignore[arg-type]
        bias = torch.matmul(a2, n.bias) if n.bias is not None else None
        return new, bias
    if op == "conv":
        w = n.weight
        assert w is not None
        st, pad, dil = n.attrs["stride"], n.attrs["padding"], n.attrs["dilation"]
        k = w.shape[2:]
        out_pad = []
        for d in range(2):
            full = (n.shape[1 + d] - 1) * st[d] - 2 * pad[d] + dil[d] * (k[d] - 1) + 1
            out_pad.append(in_shape[1 + d] - full)
        x = a.reshape(b * s, *n.shape)
        cl = cl and len(n.shape) == 3
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)  # no copy once the coefficients are channels-last
        if cl and _pointwise(n):
            new = _pointwise_conv_transpose(n, x, in_shape)
        elif _phase_form(n):
            new = _phase_conv_transpose(n, x, in_shape)
        else:
            new = F.conv_transpose2d(x, _channels_last_weight(n) if cl else w, None, stride=st, padding=pad,
                                     output_padding=tuple(out_pad), groups=n.attrs["groups"], dilation=dil)
        new = new.reshape(b, s, *in_shape)
        bias = None
        if n.bias is not None:
            sums = a.__dict__.get("channel sums")  # from the compiled ReLU step (_relu_kernel_step), else one pass
            bias = (sums if sums is not None else a.sum(dim=(3, 4))) @ n.bias
        return new, bias
    if op == "affine":
        new = a * n.weight if n.weight is not None else a
        bias = _bias_dot(a, n.bias, n.shape) if n.bias is not None else None
        return new, bias
    if op == "reshape":
        new = a.reshape(b, s, *in_shape)
        if cl and len(in_shape) == 3 and in_shape[0] > 1 and not _cl_like(new):
            # e.g. a flatten before a linear layer: the conv-shaped coefficients become channels-last here, once
            new = new.reshape(b * s, *in_shape).contiguous(memory_format=torch.channels_last).reshape(new.shape)
        return new, None
    if op == "permute":
        inv = [0] * len(in_shape)
        for pos, src in enumerate(n.attrs["perm"]):
            inv[src] = pos
        return a.permute(0, 1, *[2 + pos for pos in inv]), None
    if op == "slice":
        new = torch.zeros((b, s, *in_shape), dtype=a.dtype, device=a.device)
        new[(slice(None), slice(None), *n.attrs["index"])] = a
        return new, None
    raise AssertionError(op)


#: matrix products of the backward pass with at least this many multiply-adds and inner dimension go to oneDNN
ONEDNN_MATMUL_MIN = (1 << 27, 256)


def _weight_t(n: Node, hwc: tuple[int, ...] | None = None) -> Tensor:
    """Linear node ``n``'s weight transposed, (D_in, D_out) contiguous, cached on the node; with ``hwc`` = (C, H, W)
    its rows (the input entries of a flattened (C, H, W) map) in (H, W, C) order (channels-last)."""
    w = n.weight
    assert w is not None
    if hwc is None:
        return n.derive("weight^T", lambda: w.t().contiguous())
    c, h, wd = hwc
    return n.derive("weight^T, rows (H, W, C)",
                    lambda: w.reshape(-1, c, h, wd).permute(2, 3, 1, 0).reshape(c * h * wd, -1).contiguous())


def _onednn_matmul(n: Node, a: Tensor, hwc: tuple[int, ...] | None = None) -> Tensor | None:
    """``a @ W`` (a (B, S, D_out), W linear node ``n``'s (D_out, D_in) weight) through oneDNN's inner product, or
    None where it does not apply: large products in float32 on CPU with nothing for autograd to record (MKL's
    sgemm, which ``torch.matmul`` calls, takes its AVX2 path on non-Intel CPUs; oneDNN uses AVX-512 where the CPU
    has it: 1.7-1.8x faster for the 512 x 32768 layer of CIFAR CNNs). Same product up to the order of summation.
    The transposed weight is cached on the node (dense, or in oneDNN's layout for the older op); ``hwc``: its
    columns in channels-last order (:func:`_weight_t`)."""
    w = n.weight
    if (w is None or a.dim() != 3 or w.shape[0] < ONEDNN_MATMUL_MIN[1] or a.dtype != torch.float32
            or a.device.type != "cpu" or not torch.backends.mkldnn.is_available()
            or a.shape[0] * a.shape[1] * w.numel() < ONEDNN_MATMUL_MIN[0]
            or (torch.is_grad_enabled() and (a.requires_grad or w.requires_grad))):
        return None
    b, s = a.shape[0], a.shape[1]
    pointwise = _onednn_linear_pointwise()
    if pointwise is not None:  # dense operands and result: no conversion to and from oneDNN's tensor (~15% faster)
        out: Tensor = pointwise(a.reshape(b * s, -1).contiguous(), _weight_t(n, hwc), None, "none", [], "")
        return out.reshape(b, s, -1)
    linear = getattr(torch._C._nn, "mkldnn_linear", None)
    if linear is None:
        return None
    wm = n.derive("weight^T oneDNN" + ("" if hwc is None else ", rows (H, W, C)"),
                  lambda: _weight_t(n, hwc).to_mkldnn())
    out = linear(a.reshape(b * s, -1).contiguous().to_mkldnn(), wm, None).to_dense()
    return out.reshape(b, s, -1)


#: use ``torch.ops.mkldnn._linear_pointwise`` (dense operands) for :func:`_onednn_matmul` where torch has it
ONEDNN_POINTWISE = True


def _onednn_linear_pointwise() -> Any:
    """torch's oneDNN linear op on dense tensors (``torch.ops.mkldnn._linear_pointwise``, an internal op of the
    inductor backend: ``(input, weight (out, in), bias, "none", [], "")``), or None where this torch lacks it."""
    if not ONEDNN_POINTWISE:
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def _channels_last_weight(n: Node) -> Tensor:
    """Conv node ``n``'s weight in channels-last layout (cached on the node): with channels-last coefficients,
    oneDNN then runs its NHWC kernels without reordering the weight every call."""
    w = n.weight
    assert w is not None
    return n.derive("weight channels-last", lambda: w.contiguous(memory_format=torch.channels_last))


def _pointwise(n: Node) -> bool:
    """Whether conv node ``n`` is a 1x1 convolution without padding, dilation or groups (e.g. a ResNet's strided
    shortcut), whose transposed convolution :func:`_pointwise_conv_transpose` does as one matrix product."""
    w = n.weight
    assert w is not None
    return (tuple(w.shape[2:]) == (1, 1) and tuple(n.attrs["padding"]) == (0, 0) and n.attrs["groups"] == 1)


def _pointwise_conv_transpose(n: Node, x: Tensor, in_shape: tuple[int, ...]) -> Tensor:
    """The transposed convolution of a 1x1 conv node ``n`` (:func:`_pointwise`) on channels-last ``x``
    (M, C_out, h, w) -> channels-last (M, *in_shape): input position ``(st_h y, st_w x)`` receives
    ``W^T x[:, :, y, x]``, every other position 0 (a stride-s 1x1 transposed convolution is a scatter; oneDNN
    runs it as a convolution at ~3% of its peak)."""
    w = n.weight
    assert w is not None
    sh, sw = n.attrs["stride"]
    m, _, h, wd = x.shape
    y = x.permute(0, 2, 3, 1) @ w.reshape(w.shape[0], w.shape[1])  # (M, h, w, C_in)
    if (sh, sw) == (1, 1) and (h, wd) == tuple(in_shape[1:]):
        return y.permute(0, 3, 1, 2)
    out = y.new_zeros(m, in_shape[1], in_shape[2], in_shape[0])
    out[:, : (h - 1) * sh + 1 : sh, : (wd - 1) * sw + 1 : sw] = y
    return out.permute(0, 3, 1, 2)


def _phase_form(n: Node) -> bool:
    """Whether conv node ``n``'s transposed convolution can take :func:`_phase_conv_transpose`'s form."""
    st, dil = n.attrs["stride"], n.attrs["dilation"]
    w = n.weight
    assert w is not None
    return (st[0] == st[1] > 1 and tuple(dil) == (1, 1) and n.attrs["groups"] == 1
            and w.shape[2] % st[0] == 0 and w.shape[3] % st[1] == 0)


def _phase_conv_transpose(n: Node, x: Tensor, in_shape: tuple[int, ...],
                          padding: tuple[int, int] | None = None) -> Tensor:
    """The transposed convolution of conv node ``n`` (stride s on both axes, kernel a multiple of s, no
    dilation or groups) on ``x`` (M, C_out, H, W) -> (M, *in_shape), as one stride-1 convolution and a pixel
    shuffle (the "sub-pixel" form of a strided transposed convolution): input position ``y = s q + a - p``
    receives ``sum_t x[q - t] w[s t + a]``, a correlation with the kernel ``w[s (T - 1 - j) + a]``, j < T = k / s,
    for each of the s*s phases (a, b) — no zero taps, and on CPU 1.1-3x faster than ``conv_transpose2d`` for
    the 4x4 stride-2 layers of CIFAR CNNs (few output channels: the transposed convolution's scatter
    dominates). Equal up to the order of summation. ``padding`` (default: the conv's) is where the input map
    starts in the full transposed output ((0, 0): the whole output, as for windows)."""
    w = n.weight
    assert w is not None
    st = n.attrs["stride"][0]
    th, tw = w.shape[2] // st, w.shape[3] // st
    y = F.conv2d(x, _phase_weight(n), padding=(th - 1, tw - 1))
    ph, pw = n.attrs["padding"] if padding is None else padding
    h, wd = in_shape[1], in_shape[2]
    m, _, hq, wq = y.shape
    # the phases straight into the cropped map: input row st q + a - ph of phase a (one strided copy per phase,
    # ~30% faster than pixel_shuffle then cropping, and the result is contiguous)
    rows = [((a - ph) % st, ((a - ph) % st + ph - a) // st) for a in range(st)]
    cols = [((b - pw) % st, ((b - pw) % st + pw - b) // st) for b in range(st)]
    if all(q0 + len(range(y0, h, st)) <= hq for y0, q0 in rows) and all(
            r0 + len(range(z0, wd, st)) <= wq for z0, r0 in cols):
        v = y.reshape(m, -1, st, st, hq, wq)
        res = y.new_empty(m, v.shape[1], h, wd)
        for a, (y0, q0) in enumerate(rows):
            for b, (z0, r0) in enumerate(cols):
                res[:, :, y0::st, z0::st] = v[:, :, a, b, q0:q0 + len(range(y0, h, st)), r0:r0 + len(range(z0, wd, st))]
        return res
    out = F.pixel_shuffle(y, st)
    short_h, short_w = max(0, ph + h - out.shape[2]), max(0, pw + wd - out.shape[3])
    if short_h or short_w:  # input rows/columns no output reaches (output_padding): zero coefficients
        out = F.pad(out, (0, short_w, 0, short_h))
    return out[:, :, ph:ph + h, pw:pw + wd]


def _input_phase_conv(g: Graph, norm: float) -> int | None:
    """The conv node whose coefficients at the input are concretised in phase layout, or None: for L-inf, when the
    input's only consumer is a conv in phase form (:func:`_phase_form`) or, with ``BLOCKED_INPUT_CONV``, a stride-1
    conv in blocked form (:func:`_blocked_factor`). Its backward pass then stops after one convolution
    (:func:`_phase_input_back`) and the input box is brought to that layout once per region
    (:func:`_phase_layout`): the pixel shuffle of every row of coefficients is saved; entries of the layout
    outside the input map meet a zero centre and radius, so the bound is the same (up to summation order)."""
    if norm != math.inf:
        return None
    key = ("input phase conv", BLOCKED_INPUT_CONV, BLOCKED_CHANNELS, INPUT_AFFINE_FOLD)  # benchmarks flip them
    hit = g.derived.get(key, -1)
    if hit == -1:
        hit = None
        chain = _input_affine_chain(g)
        k = chain[-1] if chain else 0
        cons = [i for i, n in enumerate(g.nodes) if k in n.inputs]
        if len(cons) == 1 and g.nodes[cons[0]].op == "conv":
            n = g.nodes[cons[0]]
            if _phase_form(n) or _blocked_factor(n, g.nodes[0].shape) is not None:
                hit = cons[0]
        g.derived[key] = hit
    return hit  # type: ignore[no-any-return]


#: a per-channel affine input normalisation before the first conv (``(x - mean) / std`` with (1, C, 1, 1) buffers,
#: or an eval-mode BatchNorm) is applied to the coefficients in the first conv's phase or blocked layout
#: (:func:`_input_affine_back`), so normalised models take those forms too
INPUT_AFFINE_FOLD = True


def _input_affine_chain(g: Graph) -> list[int]:
    """The per-channel affine nodes (weight and bias None, (C, 1, 1) or (1, 1, 1)) that follow ``g``'s input one
    after the other, each the sole consumer of the one before (the input's normalisation), in forward order; empty
    when ``INPUT_AFFINE_FOLD`` is off or there are none."""
    if not INPUT_AFFINE_FOLD or len(g.nodes[0].shape) != 3:
        return []
    hit = g.derived.get("input affine chain")
    if hit is None:
        c = g.nodes[0].shape[0]
        hit = []
        k = 0
        while True:
            cons = [i for i, n in enumerate(g.nodes) if k in n.inputs]
            if len(cons) != 1 or g.output == k:
                break
            n = g.nodes[cons[0]]
            if n.op != "affine" or tuple(n.inputs) != (k,) or tuple(n.shape) != tuple(g.nodes[0].shape) or any(
                    t is not None and (t.dim() != 3 or tuple(t.shape) not in ((c, 1, 1), (1, 1, 1)))
                    for t in (n.weight, n.bias)):
                break
            hit.append(cons[0])
            k = cons[0]
        g.derived["input affine chain"] = hit
    return hit  # type: ignore[no-any-return]


def _input_affine_back(g: Graph, conv: Node, a: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """Coefficients ``a`` (B, S, C s s, H', W') at the input-side affine chain's output (:func:`_input_affine_chain`)
    in conv node ``conv``'s phase or blocked layout (:func:`_phase_input_back`) -> at the input, in the same layout,
    and the chain's bias term (B, S): per affine node, nearest the conv first, ``bias += sum(a t)`` and ``a = a w``
    with its weight w and bias t brought to the layout (:func:`_phase_layout`: zero outside the map, where the
    layout's entries stand for the conv's zero padding, which no normalisation reaches). The products and sums of
    the ordinary affine step (:func:`_back_affine`), in another order."""
    bias = None
    if a is None:
        return a, bias
    nodes = g.nodes
    shape = tuple(nodes[0].shape)
    for k in reversed(_input_affine_chain(g)):
        n = nodes[k]
        lay = [None if t is None else n.derive(f"{which} in layout of {conv.name} ({BLOCKED_CHANNELS})",
                                               partial(_phase_layout_param, t, shape, conv))
               for which, t in (("weight", n.weight), ("bias", n.bias))]
        if lay[1] is not None:
            term = (a * lay[1]).sum(dim=(2, 3, 4))
            bias = term if bias is None else bias + term
        if lay[0] is not None:
            a = a * lay[0]
    return a, bias


def _phase_layout_param(t: Tensor, shape: tuple[int, ...], conv: Node) -> Tensor:
    """A per-channel (C, 1, 1) or (1, 1, 1) tensor ``t`` as an input map of ``shape`` in ``conv``'s layout."""
    return _phase_layout(t.expand(*shape).unsqueeze(0), conv)


#: the input conv's transposed convolution in blocked form (:func:`_blocked_factor`) where it has few input channels
BLOCKED_INPUT_CONV = True
#: the blocked form's output channels (the input's channels times s * s) at most
BLOCKED_CHANNELS = 16


def _blocked_factor(n: Node, in_shape: tuple[int, ...]) -> int | None:
    """The block side s of conv node ``n``'s blocked form, or None. The transposed convolution of a stride-1 conv
    (no dilation or groups, kernel >= 3, padding < kernel) to an input of few channels C (a network's first layer:
    1 or 3) runs in oneDNN at ~15-20% of its rate for 16 channels (it vectorises over channels). In blocked form the
    coefficients at the input come out in space-to-depth layout (C s s, H / s, W / s) (``pixel_unshuffle``'s): one
    stride-s convolution with C s s output channels and an (s + k - 1)^2 kernel that holds each output phase's taps
    (zero elsewhere; :func:`_blocked_weight`). It does (s + k - 1)^2 / k^2 times the multiply-adds (16/9 for 3x3,
    s = 2) at 2-3x the rate: CIFAR's 16->3 3x3 step on 30 rows 0.83 -> 0.34 ms, 64->3 0.87 -> 0.41 ms (10 rows).
    s is the largest of 4, 2 with C s s <= ``BLOCKED_CHANNELS`` that divides H and W. CPU only (GPU libraries not
    measured). The same products and sums (zero taps add exact zeros)."""
    if (not BLOCKED_INPUT_CONV or len(n.shape) != 3 or len(in_shape) != 3 or n.weight is None or n.weight.dim() != 4
            or n.weight.device.type != "cpu"):  # measured on oneDNN only
        return None
    k = tuple(n.weight.shape[2:])
    if (tuple(n.attrs["stride"]) != (1, 1) or tuple(n.attrs["dilation"]) != (1, 1) or n.attrs["groups"] != 1
            or min(k) < 3 or any(not 0 <= p < kk for p, kk in zip(n.attrs["padding"], k))):
        return None
    c, h, w = in_shape
    for s in (4, 2):
        if c * s * s <= BLOCKED_CHANNELS and h % s == 0 and w % s == 0:
            return s
    return None


def _blocked_weight(n: Node, s: int) -> Tensor:
    """The (C_in s s, C_out, s + k_h - 1, s + k_w - 1) kernel of conv node ``n``'s blocked form (cached on the node):
    output channel (c, a, b) (phase (a, b) of input channel c) holds the flipped kernel shifted by (a, b), i.e.
    entry (t, u) is ``w[:, c, k_h - 1 - t + a, k_w - 1 - u + b]`` where that is a tap, else 0."""
    w = n.weight
    assert w is not None
    co, ci, kh, kw = w.shape

    def make() -> Tensor:
        wf = w.flip(2, 3)
        shifted = [F.pad(wf, (b, s - 1 - b, a, s - 1 - a)) for a in range(s) for b in range(s)]  # (a, b) order
        wb = torch.stack(shifted)  # (s s, C_out, C_in, T_h, T_w)
        return wb.permute(2, 0, 1, 3, 4).reshape(ci * s * s, co, s + kh - 1, s + kw - 1).contiguous()

    return n.derive(f"blocked weight {s}", make)


def _phase_weight(n: Node) -> Tensor:
    """The (C_in s s, C_out, k/s, k/s) stride-1 kernel of :func:`_phase_conv_transpose` (cached on the node)."""
    w = n.weight
    assert w is not None
    co, ci, kh, kw = w.shape
    st = n.attrs["stride"][0]
    th, tw = kh // st, kw // st

    def make() -> Tensor:
        # wp[(c, a, b), o, j, l] = w[o, c, st (th - 1 - j) + a, st (tw - 1 - l) + b]
        w6 = w.reshape(co, ci, th, st, tw, st).flip(2, 4)
        return w6.permute(1, 3, 5, 0, 2, 4).reshape(ci * st * st, co, th, tw).contiguous()

    return n.derive("phase_weight", make)


def _phase_input_back(n: Node, a: Tensor, in_shape: tuple[int, ...] = ()) -> tuple[Tensor, Tensor | None]:
    """Coefficients ``a`` (B, S, *n.shape) at conv node ``n``'s output -> at its input (shape ``in_shape``) in phase
    layout (B, S, C_in s s, H + k/s - 1, W + k/s - 1) (the pixel shuffle of :func:`_phase_conv_transpose` not
    applied) or, for a stride-1 conv, in blocked layout (B, S, C_in s s, H / s, W / s) (:func:`_blocked_factor`),
    and the bias term (B, S)."""
    w = n.weight
    assert w is not None
    b, s = a.shape[0], a.shape[1]
    x = a.reshape(b * s, *n.shape)
    blk = _blocked_factor(n, in_shape) if tuple(n.attrs["stride"]) == (1, 1) else None
    if blk is not None:
        ph, pw = n.attrs["padding"]
        p = F.conv2d(x, _blocked_weight(n, blk), stride=blk, padding=(w.shape[2] - 1 - ph, w.shape[3] - 1 - pw))
    else:
        th, tw = w.shape[2] // n.attrs["stride"][0], w.shape[3] // n.attrs["stride"][1]
        p = F.conv2d(x, _phase_weight(n), padding=(th - 1, tw - 1))
    bias = None
    if n.bias is not None:
        sums = a.__dict__.get("channel sums")  # from the compiled ReLU step (_relu_kernel_step), else one pass
        bias = (sums if sums is not None else a.sum(dim=(3, 4))) @ n.bias
    return p.reshape(b, s, *p.shape[1:]), bias


def _phase_layout(t: Tensor, n: Node) -> Tensor:
    """An input-shaped tensor ``t`` (N, C, H, W) in conv node ``n``'s phase layout (N, C s s, H', W'):
    entry ((c, a, b), q, r) is ``t[c, s q + a - p_h, s r + b - p_w]``, zero outside the map."""
    w = n.weight
    assert w is not None
    if tuple(n.attrs["stride"]) == (1, 1):  # blocked form (see _blocked_factor): space-to-depth
        blk = _blocked_factor(n, tuple(t.shape[1:]))
        assert blk is not None
        return F.pixel_unshuffle(t, blk)
    st = n.attrs["stride"][0]
    ph, pw = n.attrs["padding"]
    hq, wq = n.shape[1] + w.shape[2] // st - 1, n.shape[2] + w.shape[3] // st - 1
    h, wd = t.shape[2], t.shape[3]
    padded = F.pad(t, (pw, st * wq - pw - wd, ph, st * hq - ph - h))  # negative: rows no output reaches
    return F.pixel_unshuffle(padded, st)


def _back_cat(nodes: list[Node], n: Node, la: Tensor | None,
              ua: Tensor | None) -> list[tuple[int, Tensor | None, Tensor | None]]:
    """Push coefficients through a ``cat`` node: each input gets its slice of A (exact)."""
    sizes = [nodes[j].shape[n.attrs["dim"]] for j in n.inputs]
    dim = n.attrs["dim"] + 2  # (B, S, *shape)
    pl = la.split(sizes, dim=dim) if la is not None else [None] * len(sizes)
    pu = pl if ua is la else (ua.split(sizes, dim=dim) if ua is not None else [None] * len(sizes))
    return [(j, tl, tu) for j, tl, tu in zip(n.inputs, pl, pu)]


#: a convolution's coefficients take the sum with coefficients already pending at its input in place
IN_PLACE_MERGE = True


def _merge(t: Tensor | None, p: Tensor | None, in_place: bool) -> Tensor | None:
    """``t + p`` for coefficients ``t`` reaching a node that has ``p`` pending; into ``t`` when ``in_place`` (``t`` a
    fresh tensor no one else holds) and the sum has ``t``'s shape and dtype."""
    if t is None:
        return None
    if in_place and p is not None and t.dtype == p.dtype and t.device == p.device and p.dim() == t.dim() and all(
            a == b or b == 1 for a, b in zip(t.shape, p.shape)):
        return t.add_(p)
    return t + p  # type: ignore[operator]


def _add_bias(acc: Tensor | None, t: Tensor | None) -> Tensor | None:
    if t is None:
        return acc
    return t if acc is None else acc + t


def _back_pair(back: Callable[[Tensor], tuple[Tensor, Tensor | None]], la: Tensor | None, ua: Tensor | None,
               lbias: Tensor | None, ubias: Tensor | None
               ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """One backward step of an affine node for the lower and upper coefficients (once when they are the same
    tensor), with the constant terms added to the running biases."""
    new_l = new_u = bl = None
    if la is not None:
        new_l, bl = back(la)
        lbias = _add_bias(lbias, bl)
    if ua is not None:
        if ua is la:
            new_u, ubias = new_l, _add_bias(ubias, bl)
        else:
            new_u, bu = back(ua)
            ubias = _add_bias(ubias, bu)
    return new_l, new_u, lbias, ubias


AnyRelax = _Relax | MaxPoolRelax | LinearRelax | MulRelax | SoftmaxRelax


def _make_relax(n: Node, ivs: list[Interval | None]) -> AnyRelax:
    src = ivs[n.inputs[0]]
    assert src is not None
    if n.op == "maxpool":
        return maxpool_relax(src.l, src.u, n.attrs)
    if n.op in SCALAR_OPS:
        return scalar_relax(n.op, n.attrs.get("param"), src.l, src.u, n.name, n.attrs.get("floor"))
    if n.op == "mul":
        other = ivs[n.inputs[1]]
        assert other is not None
        return MulRelax(src.l, src.u, other.l, other.u)
    if n.op in SOFTMAX_OPS:
        return softmax_relax(src.l, src.u, n.op == "log_softmax")
    return _Relax(n.op, src.l, src.u)


#: run the IBP pass of CROWN/CROWN-IBP channels-last where the backward pass is (see :func:`_ibp_input`)
IBP_CHANNELS_LAST = True


def _ibp_input(g: Graph, region: InputRegion) -> Interval:
    """The input interval the IBP pass of :func:`crown_bounds` starts from: the region's box, channels-last
    (memory order (N, H, W, C)) where the backward pass keeps its coefficients channels-last
    (:func:`_use_channels_last`). Every conv, BatchNorm and relaxation computed from it is then channels-last
    too: oneDNN's NHWC forward kernels are 1.2-7x faster than its NCHW ones on CIFAR-sized maps (those reorder
    every operand), and the relaxations need no conversion for the backward pass (:func:`_relax_layout`).
    Same intervals up to the order of summation inside the convolutions."""
    box = region.box
    if not (IBP_CHANNELS_LAST and region.x0.dim() == 4) or not _use_channels_last(g, region.x0):
        return box
    if torch.is_grad_enabled() and (box.l.requires_grad or box.u.requires_grad):
        return box
    cl = torch.channels_last
    return Interval(l=box.l.contiguous(memory_format=cl), u=box.u.contiguous(memory_format=cl))


def _relax_layout(r: _Relax, a: Tensor | None) -> _Relax:
    """``r`` with its (N, C, H, W) slopes and intercepts in channels-last layout when the coefficients ``a`` are
    channels-last (:func:`_use_channels_last`; converted once per relaxation object, cached on it), so the
    element-wise steps read every operand in one order; else ``r`` itself."""
    if a is None or not _cl_like(a) or r.d_l.dim() != 4:
        return r
    hit = r.__dict__.get("channels-last")
    parent = r.__dict__.get("rows of")
    if hit is None and parent is not None:  # a chunk's rows: the whole batch's tensors are converted once
        whole = _relax_layout(parent[0], a)
        hit = r.__dict__["channels-last"] = _relax_rows(whole, parent[1])  # type: ignore[assignment]
    if hit is None:
        out = _Relax.__new__(_Relax)
        conv = {}  # one copy per distinct tensor (d_l and d_u are the same tensor for sigmoid/tanh)
        for k in ("d_l", "d_u", "b_u", "b_l"):
            t = getattr(r, k)
            if t is not None and id(t) not in conv:
                conv[id(t)] = t.contiguous(memory_format=torch.channels_last)
            setattr(out, k, None if t is None else conv[id(t)])
        hit = r.__dict__["channels-last"] = out
    return hit  # type: ignore[no-any-return]


def _relax_rows(r: AnyRelax, sl: slice) -> AnyRelax:
    if isinstance(r, MaxPoolRelax | LinearRelax | MulRelax | SoftmaxRelax):
        return r.rows(sl)
    out = _Relax.__new__(_Relax)
    out.d_l, out.d_u, out.b_u = r.d_l[sl], r.d_u[sl], r.b_u[sl]  # per input: (N, *shape)
    out.b_l = None if r.b_l is None else r.b_l[sl]
    if r.per_spec or r.beta is not None:
        out.per_spec = r.per_spec
        out.beta = None if r.beta is None else r.beta[sl]
    out.__dict__["rows of"] = (r, sl)
    return out


def _rows(t: Tensor | None, sl: slice) -> Tensor | None:
    """Rows ``sl`` of a per-input tensor; a tensor shared by all inputs (leading dim 1) stays whole."""
    return t if t is None or t.shape[0] == 1 else t[sl]


def backward(g: Graph, start: int, a0: Tensor | None, b0: Tensor | None, region: InputRegion,
             relax: Mapping[int, AnyRelax], *, need_lower: bool = True, need_upper: bool = True,
             start_node_done: bool = False, start_input: int | None = None) -> tuple[Tensor | None, Tensor | None]:
    """Bounds of ``A @ node[start] (+ b0)`` over the region, A = ``a0`` (B, S, *shape).

    If ``start_node_done`` then ``a0`` is already the coefficient at ``start_input`` (the start
    node's input) and ``b0`` the accumulated bias.

    Inputs are independent, so a batch whose coefficient tensors would exceed
    ``CHUNK_BYTES`` is processed in chunks of inputs: the element-wise relaxation passes then
    run on cache-resident tensors (about 1.3x faster on the digits CNN), with identical results.
    The nodes nearest the start run on the whole batch first (:func:`_whole_batch_prefix`): the
    narrow ones, and a linear layer where the coefficients widen, whose product then reads its weight
    matrix once for the batch rather than once per chunk. A chunk also fits the memory available
    (``certify._memory.units``: ``BACKWARD_COPIES`` tensors of its size); MemoryError, before allocating,
    if one input's coefficients do not.
    """
    n_in = region.x0.shape[0]
    pending, lbias, ubias, first = _initial_state(start, a0, b0, need_lower=need_lower, need_upper=need_upper,
                                                  start_node_done=start_node_done, start_input=start_input)
    if a0 is not None and n_in >= 1:
        widest = max(nd.numel for nd in g.nodes[: start + 1])
        per_input = a0.shape[1] * widest * a0.element_size()
        chunk = _memory.units(per_input, cap=CHUNK_BYTES, copies=BACKWARD_COPIES, device=a0.device,
                              what=_node_what(g, start, f"CROWN's backward pass of {a0.shape[1]} rows"))
        if chunk < n_in:
            first, lbias, ubias = _propagate(g, pending, lbias, ubias, region, relax, first,
                                             stop=_whole_batch_prefix(g, n_in, a0.shape[1], a0.element_size(),
                                                                      a0.device))
            parts = []
            for i0 in range(0, n_in, chunk):
                sl = slice(i0, i0 + chunk)
                sub = InputRegion(region.x0[sl], region.eps[sl], region.norm, region.domain)
                # the chunk's own rows of the region's box: an explicit input box (lower/upper, set on
                # region.box) is not the ball around its centre
                sub.box = Interval(l=_rows(region.box.l, sl), u=_rows(region.box.u, sl))  # type: ignore[arg-type]
                sub_pending: dict[int, list[Tensor | None]] = {}
                for j, (pl, pu) in pending.items():
                    tl = _rows(pl, sl)
                    sub_pending[j] = [tl, tl if pu is pl else _rows(pu, sl)]
                sub_relax = {k: _relax_rows(r, sl) for k, r in relax.items()}
                _, lb, ub = _propagate(g, sub_pending, _rows(lbias, sl), _rows(ubias, sl), sub, sub_relax, first)
                la, ua = sub_pending.get(0, [None, None])
                parts.append((_concretize(sub, la, lb, -1, _input_phase_conv(g, sub.norm), g),
                              _concretize(sub, ua, ub, +1, _input_phase_conv(g, sub.norm), g)))
            lo_parts = [p[0] for p in parts]
            hi_parts = [p[1] for p in parts]
            return (None if lo_parts[0] is None else torch.cat(lo_parts),  # type: ignore[arg-type]
                    None if hi_parts[0] is None else torch.cat(hi_parts))  # type: ignore[arg-type]
    _, lbias, ubias = _propagate(g, pending, lbias, ubias, region, relax, first)
    la, ua = pending.get(0, [None, None])
    phase_in = _input_phase_conv(g, region.norm)
    return _concretize(region, la, lbias, -1, phase_in, g), _concretize(region, ua, ubias, +1, phase_in, g)


def _initial_state(start: int, a0: Tensor | None, b0: Tensor | None, *, need_lower: bool, need_upper: bool,
                   start_node_done: bool, start_input: int | None
                   ) -> tuple[dict[int, list[Tensor | None]], Tensor | None, Tensor | None, int]:
    """(pending coefficients, lower bias, upper bias, first node to process) of a backward pass."""
    # pending[j] = [lA, uA]; identical objects while no relaxation separated them
    la = a0 if need_lower else None
    ua = a0 if need_upper else None
    if start_node_done:
        assert start_input is not None
        return {start_input: [la, ua]}, b0, b0, start_input
    return {start: [la, ua]}, b0, b0, start


#: coefficients of the whole batch (bytes) that the nodes run before chunking by inputs may produce (a memory
#: cap: lowered at call time to what the memory available allows, ``certify._memory.units``)
PREFIX_BYTES = 1 << 28


def _whole_batch_prefix(g: Graph, n_in: int, rows: int, elem: int, device: torch.device | None = None) -> Any:
    """Where a chunked backward pass starts chunking: a predicate on the next node to process, true for the
    first node that should run per chunk. Before it run, on the whole batch, the nodes whose coefficients at
    their inputs are small for the whole batch (``CHUNK_BYTES``: chunking gains nothing there) and the
    linear/dense nodes whose coefficients for the whole batch stay under ``PREFIX_BYTES`` (one matrix product
    for the batch reads the weight matrix once; per chunk, a large weight was read once per chunk). The
    result is the same: every op acts on each input's rows independently."""
    nodes = g.nodes
    # bytes (units of one byte): PREFIX_BYTES, or less where BACKWARD_COPIES such tensors would not fit
    prefix = _memory.units(1, cap=PREFIX_BYTES, copies=BACKWARD_COPIES, device=device or torch.device("cpu"),
                           what="CROWN's whole-batch prefix")

    def chunk_from(i: int) -> bool:
        n = nodes[i]
        produced = n_in * rows * elem * max((nodes[j].numel for j in n.inputs), default=0)
        if n.op in ("linear", "dense"):
            return produced > prefix
        return produced > CHUNK_BYTES

    return chunk_from


def _propagate(g: Graph, pending: dict[int, list[Tensor | None]], lbias: Tensor | None, ubias: Tensor | None,
               region: InputRegion, relax: Mapping[int, AnyRelax], first: int, *,
               stop: Any = None) -> tuple[int, Tensor | None, Tensor | None]:
    """Process the nodes from ``first`` down to node 1, moving coefficients from ``pending[i]`` to node i's
    inputs (``pending`` is updated in place) and accumulating the biases. With ``stop``, return before the
    first pending node ``i`` with ``stop(i)``. Returns (the next node to process, lower bias, upper bias)."""
    nodes = g.nodes
    phase_in = _input_phase_conv(g, region.norm)
    owned: set[int] = set()  # nodes whose pending coefficients are fresh tensors of this call that no one else holds
    for i in range(first, 0, -1):
        if i not in pending:
            continue
        if stop is not None and stop(i):
            return i, lbias, ubias
        la, ua = pending.pop(i)
        n = nodes[i]
        op = n.op
        fresh = False  # whether the coefficients in ``outs`` are fresh tensors (see _merge)
        owned.discard(i)
        into = _scatter_target(g, n, la, ua, pending, owned) if op == "conv" else None
        if into is not None:
            # a strided 1x1 conv (a ResNet's shortcut) whose input already has coefficients of this pass pending:
            # its scatter goes into them (no zero-filled buffer for the whole map, no full-size sum)
            lbias, ubias = _scatter_pair(n, la, ua, into, nodes[n.inputs[0]].shape, lbias, ubias)
            continue
        if op == "maxpool":
            new_l, new_u, bl, bu = maxpool_backward(la, ua, relax[i], nodes[n.inputs[0]].shape)  # type: ignore[arg-type]
            lbias, ubias = _add_bias(lbias, bl), _add_bias(ubias, bu)
            outs = [(n.inputs[0], new_l, new_u)]
        elif op in SCALAR_OPS:
            r = relax[i]
            assert isinstance(r, LinearRelax)
            new_l, new_u, bl, bu = _back_lines(la, ua, r)
            lbias, ubias = _add_bias(lbias, bl), _add_bias(ubias, bu)
            outs = [(n.inputs[0], new_l, new_u)]
        elif op in SOFTMAX_OPS:
            r = relax[i]
            assert isinstance(r, SoftmaxRelax)
            new_l, new_u, bl, bu = softmax_backward(la, ua, r)
            lbias, ubias = _add_bias(lbias, bl), _add_bias(ubias, bu)
            outs = [(n.inputs[0], new_l, new_u)]
        elif op == "mul":
            r = relax[i]
            assert isinstance(r, MulRelax)
            low, upp, bl, bu = mul_backward(la, ua, r, nodes[n.inputs[0]].shape, nodes[n.inputs[1]].shape)
            lbias, ubias = _add_bias(lbias, bl), _add_bias(ubias, bu)
            outs = [(n.inputs[0], low[0], upp[0]), (n.inputs[1], low[1], upp[1])]
        elif op in ACTIVATIONS:
            r = relax[i]
            assert isinstance(r, _Relax)
            new_l = new_u = None
            hooked = r.per_spec or r.beta is not None
            fused = _fused_relu_affine(nodes, n, la, ua, r, pending) if op == "relu" and not hooked else None
            if fused is not None:
                lbias = _add_bias(lbias, fused[0])
                ubias = _add_bias(ubias, fused[1])
                continue
            if not hooked:
                r = _relax_layout(r, la if la is not None else ua)
            dl, du = (r.d_l if r.per_spec else r.d_l.unsqueeze(1)), r.d_u.unsqueeze(1)
            # in-place updates (fewer fresh large buffers) only where autograd records nothing
            ip = not torch.is_grad_enabled() or not any(
                t is not None and t.requires_grad for t in (la, ua, r.d_l, r.d_u, r.b_u))
            kernel = _relu_kernel_step(la, ua, r) if op == "relu" and not hooked else None
            if kernel is not None:
                new_l, new_u, bl, bu = kernel
                lbias, ubias = _add_bias(lbias, bl), _add_bias(ubias, bu)
            elif op == "relu" and la is not None and la is ua:
                # one pass for the sign split serves both bounds
                pos = la.clamp(min=0)
                neg = la - pos
                lbias = _add_bias(lbias, _flat_dot(neg, r.b_u))
                ubias = _add_bias(ubias, _flat_dot(pos, r.b_u))
                new_l = (pos * dl).addcmul_(neg, du)
                # in place where shapes allow (fewer fresh large buffers)
                new_u = pos.mul_(du).addcmul_(neg, dl) if ip and la.shape[0] == dl.shape[0] else torch.addcmul(pos * du, neg, dl)
            else:
                if la is not None:
                    neg = la.clamp(max=0)
                    if op == "relu":
                        lbias = _add_bias(lbias, _flat_dot(neg, r.b_u))
                        if ip and la.shape[0] == dl.shape[0]:
                            new_l = neg.mul_(_relu_gap(r, dl, du)).addcmul_(la, dl)
                        else:
                            new_l = torch.addcmul(la * dl, neg, _relu_gap(r, dl, du))
                    else:  # sigmoid/tanh (per_spec: optimised lines (certify.alpha_crown), all (N, S, *shape))
                        pos = la - neg
                        new_l = pos * dl + neg * (r.d_u if r.per_spec else du)
                        lbias = _add_bias(lbias, _spec_dot(pos, r.b_l) + _spec_dot(neg, r.b_u))  # type: ignore[arg-type]
                if ua is not None:
                    pos = ua.clamp(min=0)
                    if op == "relu":
                        ubias = _add_bias(ubias, _flat_dot(pos, r.b_u))
                        if ip and ua.shape[0] == dl.shape[0]:
                            new_u = pos.mul_(_relu_gap(r, dl, du)).addcmul_(ua, dl)
                        else:
                            new_u = torch.addcmul(ua * dl, pos, _relu_gap(r, dl, du))
                    else:
                        neg = ua - pos
                        new_u = pos * (r.d_u if r.per_spec else du) + neg * dl
                        ubias = _add_bias(ubias, _spec_dot(pos, r.b_u) + _spec_dot(neg, r.b_l))  # type: ignore[arg-type]
            if r.beta is not None and new_l is not None:
                new_l = new_l + r.beta
            outs = [(n.inputs[0], new_l, new_u)]
        elif op == "add":
            ca, cb = n.attrs["coef"]

            def sc(t: Tensor | None, c: float) -> Tensor | None:
                return None if t is None else (t if c == 1.0 else t * c)

            outs = []
            for j, c in zip(n.inputs, (ca, cb)):
                tl = sc(la, c)
                tu = tl if ua is la else sc(ua, c)
                outs.append((j, tl, tu))
        elif op == "cat":
            outs = _back_cat(nodes, n, la, ua)
        elif i == phase_in or (op == "affine" and n.inputs[0] == phase_in and BLOCKED_INPUT_CONV
                               and _conv_affine_fold(g, i) is not None):
            # coefficients at the input stay in phase layout (see _input_phase_conv); a BatchNorm after that conv
            # is folded into its weights (one step, as below)
            back = n if i == phase_in else _conv_affine_fold(g, i)
            assert back is not None
            new_l, new_u, lbias, ubias = _back_pair(partial(_phase_input_back, back, in_shape=nodes[0].shape),
                                                    la, ua, lbias, ubias)
            if _input_affine_chain(g):  # the input's normalisation, in the same layout
                same = new_u is new_l
                new_l, tl = _input_affine_back(g, back, new_l)
                new_u, tu = (new_l, tl) if same else _input_affine_back(g, back, new_u)
                lbias, ubias = _add_bias(lbias, tl), _add_bias(ubias, tu)
            outs = [(0, new_l, new_u)]
        else:
            folded = _conv_affine_fold(g, i) if op == "affine" and n.inputs[0] != phase_in else None
            if folded is not None:  # a conv's following BatchNorm (per-channel affine) in its weights: one step
                n = folded
            in_shape = nodes[n.inputs[0]].shape
            cl = _use_channels_last(g, la if la is not None else ua)  # type: ignore[arg-type]
            ms = _flattened_map(g, i) if cl and op == "linear" else None
            new_l = new_u = None
            if (op in ("linear", "dense") and la is not None and ua is not None and la is not ua
                    and la.shape == ua.shape):
                # lower and upper coefficients through one product (one kernel call on twice the rows)
                s_ = la.shape[1]
                both, bb = _back_affine(n, torch.cat([la, ua], dim=1), in_shape, cl=cl, map_shape=ms)
                new_l, new_u = both[:, :s_], both[:, s_:]
                if bb is not None:
                    lbias, ubias = _add_bias(lbias, bb[:, :s_]), _add_bias(ubias, bb[:, s_:])
            else:
                new_l, new_u, lbias, ubias = _back_pair(partial(_back_affine, n, in_shape=in_shape, cl=cl,
                                                                map_shape=ms), la, ua, lbias, ubias)
            outs = [(n.inputs[0], new_l, new_u)]
            # a convolution's coefficients are fresh tensors of this step: a sum with coefficients already pending
            # at its input may go into them (no fresh buffer for each residual merge)
            fresh = n.op == "conv" and IN_PLACE_MERGE and (not torch.is_grad_enabled() or not any(
                t is not None and t.requires_grad for t in (new_l, new_u)))
        for j, tl, tu in outs:
            if j in pending:
                pl, pu = pending[j]
                if tl is tu and pl is pu:
                    nl = nu = _merge(tl, pl, fresh)
                else:
                    nl = _merge(tl, pl, fresh and tl is not tu)
                    nu = _merge(tu, pu, fresh)
                pending[j] = [nl, nu]
                # the sums are fresh tensors when they went into this step's fresh ones
                own = fresh and nl is not pl and nu is not pu
            else:
                pending[j] = [tl, tu]
                own = fresh and (len(outs) == 1 or all(o[0] == j for o in outs))
            if own:
                owned.add(j)
            else:
                owned.discard(j)
    return 0, lbias, ubias


#: a strided 1x1 convolution adds its scattered coefficients into those already pending at its input
SCATTER_INTO_PENDING = True


def _scatter_target(g: Graph, n: Node, la: Tensor | None, ua: Tensor | None,
                    pending: dict[int, list[Tensor | None]], owned: set[int]) -> list[Tensor | None] | None:
    """The coefficients pending at conv node ``n``'s input that its transposed convolution may be added into in
    place (:func:`_scatter_pair`), or None: ``n`` a 1x1 conv taken as a scatter (:func:`_pointwise`, channels-last
    coefficients), its input's pending coefficients fresh tensors of this pass (``owned``: no one else holds them)
    of the same shape, dtype and device, paired like ``la``/``ua`` (the same tensor for both bounds exactly when
    ``la is ua``), and nothing for autograd to record."""
    j = n.inputs[0]
    if not SCATTER_INTO_PENDING or j not in owned or j not in pending:
        return None
    a = la if la is not None else ua
    if a is None or len(n.shape) != 3 or not _pointwise(n) or not _use_channels_last(g, a):
        return None
    pl, pu = pending[j]
    if (la is None) != (pl is None) or (ua is None) != (pu is None) or (la is ua) != (pl is pu):
        return None
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (la, ua, pl, pu, n.weight, n.bias)):
        return None
    want = (a.shape[0], a.shape[1], *g.nodes[j].shape)
    if any(p is not None and (tuple(p.shape) != want or p.dtype != a.dtype or p.device != a.device
                              or not _cl_like(p)) for p in (pl, pu)):
        return None
    return pending[j]


def _scatter_pair(n: Node, la: Tensor | None, ua: Tensor | None, into: list[Tensor | None],
                  in_shape: tuple[int, ...], lbias: Tensor | None, ubias: Tensor | None
                  ) -> tuple[Tensor | None, Tensor | None]:
    """The backward step of a 1x1 conv node ``n`` (:func:`_scatter_target`): ``W^T a`` added in place into the
    pending coefficients ``into`` at the strided input positions it reaches. The same sums as
    :func:`_pointwise_conv_transpose` followed by :func:`_merge` (each entry ``p + y``, or ``p`` where the scatter
    wrote 0), without the zero-filled map and the full-size sum. Returns the biases with ``n``'s bias terms."""
    w = n.weight
    assert w is not None
    w2 = w.reshape(w.shape[0], w.shape[1])
    sh, sw = n.attrs["stride"]
    biases: list[Tensor | None] = []
    for a, p in ([(la, into[0])] if la is ua else [(la, into[0]), (ua, into[1])]):
        if a is None or p is None:
            biases.append(None)
            continue
        b, s = a.shape[0], a.shape[1]
        x = a.reshape(b * s, *n.shape).contiguous(memory_format=torch.channels_last)
        h, wd = x.shape[2], x.shape[3]
        y = x.permute(0, 2, 3, 1) @ w2  # (B S, h, w, C_in), as in _pointwise_conv_transpose
        # p (B, S, C_in, H, W) seen as (B, S, H, W, C_in): a view whatever its strides, so the sum lands in p
        dst = p.permute(0, 1, 3, 4, 2)[:, :, : (h - 1) * sh + 1 : sh, : (wd - 1) * sw + 1 : sw]
        dst.add_(y.reshape(b, s, h, wd, -1))
        bias = None
        if n.bias is not None:
            sums = a.__dict__.get("channel sums")
            bias = (sums if sums is not None else a.sum(dim=(3, 4))) @ n.bias
        biases.append(bias)
    lbias = _add_bias(lbias, biases[0])
    ubias = _add_bias(ubias, biases[0] if la is ua else biases[1])
    return lbias, ubias


#: linear layers on a flattened map produce channels-last coefficients directly (see :func:`_flattened_map`)
FLATTEN_CHANNELS_LAST = True


def _flattened_map(g: Graph, i: int) -> tuple[int, ...] | None:
    """(C, H, W) when linear node ``i`` (a vector layer) reads a reshape of a (C, H, W) map (C > 1, H W > 1) that
    nothing else reads, else None: its backward step then gives the reshape (B, S, C, H, W) channels-last
    coefficients, which the reshape passes on without a copy (see :func:`_back_affine`)."""
    if not FLATTEN_CHANNELS_LAST:
        return None
    hit = g.derived.get(("flattened map", i), -1)
    if hit == -1:
        n = g.nodes[i]
        j = n.inputs[0]
        hit = None
        if len(n.shape) == 1 and g.nodes[j].op == "reshape" and j > 0:
            src = g.nodes[g.nodes[j].inputs[0]].shape
            sole = [k for k, m in enumerate(g.nodes) if j in m.inputs] == [i]
            if sole and len(src) == 3 and src[0] > 1 and src[1] * src[2] > 1 and len(g.nodes[j].shape) == 1:
                hit = tuple(src)
        g.derived[("flattened map", i)] = hit
    return hit  # type: ignore[no-any-return]


def _conv_affine_fold(g: Graph, i: int) -> Node | None:
    """For a per-channel affine node ``i`` (eval-mode BatchNorm) whose input is a conv node consumed by it alone: a
    conv node equal to the two (weight ``W s``, bias ``b s + t``, cached on the graph), whose backward step replaces
    both (one pass over the coefficients fewer, and no separate bias product); else None. Not used where autograd
    records the weights. Same bounds up to rounding."""
    n = g.nodes[i]
    j = n.inputs[0]
    conv = g.nodes[j]
    if conv.op != "conv" or len(conv.shape) != 3 or conv.weight is None:
        return None
    c = conv.shape[0]
    if any(t is not None and tuple(t.shape) not in ((c, 1, 1), (1, 1, 1)) for t in (n.weight, n.bias)):
        return None
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (n.weight, n.bias, conv.weight, conv.bias)):
        return None
    key = ("conv-affine fold", i)
    if key not in g.derived:
        sole = [k for k, m in enumerate(g.nodes) if j in m.inputs] == [i]
        fold = None
        if sole:
            scale = n.weight.reshape(-1) if n.weight is not None else None
            w = conv.weight if scale is None else conv.weight * scale.reshape(-1, 1, 1, 1)
            b = conv.bias if conv.bias is not None else torch.zeros(c, dtype=w.dtype, device=w.device)
            if scale is not None:
                b = b * scale
            if n.bias is not None:
                b = b + n.bias.reshape(-1)
            fold = Node("conv", conv.inputs, conv.shape, f"{conv.name}+{n.name}", w, b.expand(c).contiguous(),
                        dict(conv.attrs))
        g.derived[key] = fold
    return g.derived[key]  # type: ignore[no-any-return]


#: the compiled ReLU step (:mod:`certify._crown_kernels`, numba): None (default) uses it for coefficient tensors of at
#: least ``RELU_KERNEL_MIN`` entries when numba is installed; False never; True always (ImportError without numba)
USE_COMPILED: bool | None = None
RELU_KERNEL_MIN = 1 << 16
#: the compiled ReLU step takes the lower and upper coefficients in one pass (:func:`certify._crown_kernels.relu_back_pair`)
PAIR_KERNEL = True
#: maps with fewer channels sum per channel in the coefficients' precision (float64 sums of one vector of channels
#: are slow); wider ones in float64
NARROW_CHANNELS = 32
_KERNELS: list[Any] = []


def _relu_kernels(entries: int) -> Any:
    """The module :mod:`certify._crown_kernels` for coefficients of ``entries`` values, or None (switched off, below
    the size floor of the default, or numba not installed)."""
    return load_compiled("certify._crown_kernels", entries, switch=USE_COMPILED,
                         switch_name="certify.crown.USE_COMPILED", cache=_KERNELS, min_entries=RELU_KERNEL_MIN)


def _kernel_view(t: Tensor, batch_dims: int) -> Any:
    """``t`` ((B, S) or (B,) then a node's shape) as a numpy (.., P, C) view in memory order, or None: channels-last
    maps give (P = H * W, C), other contiguous tensors (P = 1, C = all entries)."""
    lead = t.shape[:batch_dims]
    if t.dim() == batch_dims + 3 and t.shape[batch_dims] > 1:
        perm = (*range(batch_dims), batch_dims + 1, batch_dims + 2, batch_dims)
        v = t.permute(*perm)
        if v.is_contiguous():
            return v.numpy().reshape(*lead, -1, t.shape[batch_dims])
    if t.is_contiguous():
        return t.numpy().reshape(*lead, 1, -1)
    return None


def _kernel_relax(r: _Relax) -> tuple[Any, Any, Any, Any] | None:
    """numpy views (N, P, C) of a ReLU relaxation's ``d_l``, ``d_u``, ``b_u`` and ``d_u - d_l`` for the compiled step,
    or None (an infinite intercept: the torch form's dot product takes 0 * inf as 0; or layouts that differ);
    computed once per relaxation object (a chunk's rows are views of the whole batch's)."""
    hit = r.__dict__.get("kernel views")
    if hit is None:
        parent = r.__dict__.get("rows of")
        if parent is not None:
            whole = _kernel_relax(parent[0])
            hit = False if whole is None else tuple(v[parent[1]] for v in whole)
        elif r.d_l.dtype != r.b_u.dtype or r.d_u.dtype != r.b_u.dtype or not _all_finite(r.b_u):
            hit = False
        else:
            views = [_kernel_view(t, 1) for t in (r.d_l, r.d_u, r.b_u, r.d_u - r.d_l)]
            ok = all(v is not None and v.shape == views[0].shape for v in views)
            hit = tuple(views) if ok else False
        r.__dict__["kernel views"] = hit
    return hit if isinstance(hit, tuple) else None


def _relu_kernel_step(la: Tensor | None, ua: Tensor | None, r: _Relax
                      ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None] | None:
    """The ReLU step of :func:`_propagate` through the compiled kernels (one pass over the coefficients per side,
    the bias terms and a following conv's per-channel sums in the same pass; see :mod:`certify._crown_kernels`):
    (A lower, A upper, bias lower, bias upper), or None where it does not apply (kernels off or absent, autograd
    recording, CPU float32/float64 only, one relaxation row per coefficient row, layouts that differ, an infinite
    intercept: then the torch form runs). Same values up to the order of summation."""
    a0 = la if la is not None else ua
    if a0 is None or a0.dim() < 3 or a0.device.type != "cpu" or a0.dtype not in (torch.float32, torch.float64):
        return None
    if a0.shape[0] not in (1, r.d_l.shape[0]) or a0.dtype != r.d_l.dtype or (
            la is not None and ua is not None and la is not ua and la.shape != ua.shape):
        return None
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (la, ua, r.d_l, r.d_u, r.b_u)):
        return None
    if not (r.d_l.dim() == 4 and r.d_l.shape[1] > 1 and r.d_l.shape[2] * r.d_l.shape[3] > 1
            and r.d_l.is_contiguous(memory_format=torch.channels_last)):
        # channels-last maps only: where the backward pass is channels-last (large conv nets), not on flat or NCHW
        # coefficients of small nets (torch's passes measured as fast there, and numba's import and compilation,
        # ~150 MB of memory, is not paid)
        return None
    kern = _relu_kernels(a0.numel())
    if kern is None:
        return None
    views = _kernel_relax(r)
    if views is None:
        return None
    dl, du, bu, gap = views
    b, s = r.d_l.shape[0], a0.shape[1]

    def fresh(a: Tensor) -> Tensor:  # an output laid out as ``a``, with the relaxation's batch
        return torch.empty_like(a) if a.shape[0] == b else torch.empty_like(a.expand(b, *a.shape[1:]))

    if la is not None and la is ua:
        av = _kernel_view(la, 2)
        if av is None or av.shape[2:] != dl.shape[1:]:
            return None
        out_l, out_u = fresh(la), fresh(la)
        bias_l, bias_u = la.new_zeros(b, s), la.new_zeros(b, s)
        kern.relu_back_both(av, dl, du, bu, _kernel_view(out_l, 2), _kernel_view(out_u, 2), bias_l.numpy(),
                            bias_u.numpy())
        return out_l, out_u, bias_l, bias_u
    if PAIR_KERNEL and la is not None and ua is not None and la is not ua:
        avl, avu = _kernel_view(la, 2), _kernel_view(ua, 2)
        if avl is None or avu is None or avl.shape != avu.shape or avl.shape[2:] != dl.shape[1:]:
            return None
        out_l, out_u = fresh(la), fresh(ua)
        bias_l, bias_u = la.new_zeros(b, s), la.new_zeros(b, s)
        cs_l, cs_u = la.new_empty(b, s, avl.shape[3]), la.new_empty(b, s, avl.shape[3])
        step2 = kern.relu_back_pair if avl.shape[3] >= NARROW_CHANNELS else kern.relu_back_pair_narrow
        step2(avl, avu, dl, gap, bu, _kernel_view(out_l, 2), _kernel_view(out_u, 2), bias_l.numpy(), bias_u.numpy(),
              cs_l.numpy(), cs_u.numpy())
        if la.dim() == 5 and avl.shape[3] == la.shape[2]:
            out_l.__dict__["channel sums"] = cs_l  # a following conv's bias term reads them (_back_affine)
            out_u.__dict__["channel sums"] = cs_u
        return out_l, out_u, bias_l, bias_u
    res: list[Tensor | None] = []
    for a, upper in ((la, False), (ua, True)):
        if a is None:
            res += [None, None]
            continue
        av = _kernel_view(a, 2)
        if av is None or av.shape[2:] != dl.shape[1:]:
            return None
        out = fresh(a)
        bias = a.new_zeros(b, s)
        cs = a.new_empty(b, s, av.shape[3])
        step = kern.relu_back if av.shape[3] >= NARROW_CHANNELS else kern.relu_back_narrow
        step(av, dl, gap, bu, upper, _kernel_view(out, 2), bias.numpy(), cs.numpy())
        if a.dim() == 5 and av.shape[3] == a.shape[2]:
            out.__dict__["channel sums"] = cs  # a following conv's bias term reads them (_back_affine)
        res += [out, bias]
    return res[0], res[2], res[1], res[3]


def _relu_gap(r: _Relax, dl: Tensor, du: Tensor) -> Tensor:
    """``du - dl`` of a ReLU relaxation, computed once per relaxation object (and chunk), not per bound and pass."""
    if r.per_spec:
        return du - dl
    gap = r.__dict__.get("gap")
    if gap is None:
        gap = r.__dict__["gap"] = du - dl
    return gap  # type: ignore[no-any-return]


def _back_lines(la: Tensor | None, ua: Tensor | None, r: LinearRelax
                ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Push coefficients through ``d_l x + b_l <= f(x) <= d_u x + b_u``: for the lower bound a positive
    coefficient takes the lower line and a negative one the upper line; the other way round for the
    upper bound. Returns (A lower, A upper, bias lower (N, S), bias upper (N, S))."""
    # per_spec (certify.alpha_crown): an optimised lower slope per specification row, (N, S, *shape)
    dl, du = (r.d_l if getattr(r, "per_spec", False) else r.d_l.unsqueeze(1)), r.d_u.unsqueeze(1)
    new_l = new_u = bl = bu = None
    if la is not None:
        pos, neg = la.clamp(min=0), la.clamp(max=0)
        new_l = pos * dl + neg * du
        bl = _flat_dot(pos, r.b_l) + _flat_dot(neg, r.b_u)
    if ua is not None:
        pos, neg = ua.clamp(min=0), ua.clamp(max=0)
        new_u = pos * du + neg * dl
        bu = _flat_dot(pos, r.b_u) + _flat_dot(neg, r.b_l)
    return new_l, new_u, bl, bu


def _scaled_product(a: Tensor, scale: Tensor, wext: Tensor) -> Tensor:
    """``a`` (B, S, D) (B = 1: shared by all inputs) times ``diag(scale[n]) @ wext`` for each input n
    (scale (N, D), wext (D, K)) -> (N, S, K)."""
    b, s, d = a.shape
    nb = scale.shape[0]
    if b == 1:
        m = scale.t().unsqueeze(2) * wext.unsqueeze(1)  # (D, N, K)
        return (a[0] @ m.reshape(d, -1)).reshape(s, nb, -1).transpose(0, 1)
    return torch.bmm(a, scale.unsqueeze(2) * wext.unsqueeze(0))


def _fused_relu_affine(nodes: list[Node], n: Node, la: Tensor | None, ua: Tensor | None, r: _Relax,
                       pending: dict[int, list[Tensor | None]]) -> tuple[Tensor | None, Tensor | None] | None:
    """ReLU relaxation fused with the dense/linear node ``j`` feeding it, when the coefficient
    rows outnumber j's inputs (no (N, S, D) elementwise work; the per-input slopes scale j's weight).

    With ``neg = min(A, 0)``, ``pos = max(A, 0)``: lower ``A d_l + neg (d_u - d_l)``, upper
    ``A d_l + pos (d_u - d_l)``; if one A serves both bounds, with ``|A|``:
    lower/upper ``(A (d_l+d_u) +/- |A| (d_l-d_u)) / 2``. Stores the coefficients at j's input in
    ``pending`` and returns the (lower, upper) bias terms, or None if not applicable.
    """
    a0 = la if la is not None else ua
    if a0 is None:
        return None
    j = n.inputs[0]
    nj = nodes[j]
    if not (nj.op == "dense" or (nj.op == "linear" and len(nj.shape) == 1)) or nj.weight is None:
        return None
    w = nj.weight
    d, dk = w.shape
    b, s = a0.shape[0], a0.shape[1]
    nb = r.d_l.shape[0]
    if s < dk or (b != 1 and b != nb) or (la is not None and ua is not None and la.shape != ua.shape):
        return None
    if not bool(torch.isfinite(r.b_u).all()):  # (A b +/- |A| b) / 2 would meet inf - inf
        return None
    k = nj.inputs[0]
    in_shape = nodes[k].shape
    bias = nj.bias
    wext = w if bias is None else nj.derive("[w|b]", lambda: torch.cat([w, bias.reshape(d, 1)], dim=1))
    dl, du = r.d_l.reshape(nb, d), r.d_u.reshape(nb, d)
    lo = hi = None
    lbias = ubias = None
    if la is ua:
        a2 = a0.reshape(b, s, d)
        aa = a2.abs()
        p = _scaled_product(a2, dl + du, wext)
        q = _scaled_product(aa, dl - du, wext)
        lo, hi = (p + q) * 0.5, (p - q) * 0.5
        rb_a, rb_abs = _flat_dot(a0, r.b_u), _flat_dot(aa, r.b_u)
        lbias, ubias = (rb_a - rb_abs) * 0.5, (rb_a + rb_abs) * 0.5
    else:
        gap = du - dl
        if la is not None:
            a2 = la.reshape(b, s, d)
            neg = a2.clamp(max=0)
            lo = _scaled_product(a2, dl, wext) + _scaled_product(neg, gap, wext)
            lbias = _flat_dot(neg, r.b_u)
        if ua is not None:
            a2 = ua.reshape(b, s, d)
            pos = a2.clamp(min=0)
            hi = _scaled_product(a2, dl, wext) + _scaled_product(pos, gap, wext)
            ubias = _flat_dot(pos, r.b_u)
    new_l = None if lo is None else lo[..., :dk].reshape(nb, s, *in_shape)
    new_u = None if hi is None else hi[..., :dk].reshape(nb, s, *in_shape)
    if nj.bias is not None:
        lbias = None if lo is None else lbias + lo[..., dk]  # type: ignore[operator]
        ubias = None if hi is None else ubias + hi[..., dk]  # type: ignore[operator]
    if k in pending:
        pl, pu = pending[k]
        new_l = None if new_l is None else new_l + pl  # type: ignore[operator]
        new_u = None if new_u is None else new_u + pu  # type: ignore[operator]
    pending[k] = [new_l, new_u]
    return lbias, ubias


def _concretize(region: InputRegion, a: Tensor | None, bias: Tensor | None, sign: int, phase_in: int | None = None,
                g: Graph | None = None) -> Tensor | None:
    """min (sign=-1) or max (sign=+1) of ``a @ x + bias`` over the region (``a`` in the phase layout of conv
    node ``phase_in`` of ``g`` when that is given, see :func:`_input_phase_conv`)."""
    if a is None:
        return None
    n = region.x0.shape[0]
    b, s = a.shape[0], a.shape[1]
    if phase_in is not None:
        assert g is not None and region.norm == math.inf
        # once per region and box (lower and upper bounds, every pass over this region); a new box is new work
        cache = region.__dict__.setdefault("phase_box", {})
        hit = cache.get(phase_in)
        if hit is None or hit[0] is not region.box:
            c, r = _phase_layout(region.box.c, g.nodes[phase_in]), _phase_layout(region.box.r, g.nodes[phase_in])
            if _cl_like(a):  # the coefficients' order: the dot products then flatten both without a copy
                c, r = c.contiguous(memory_format=torch.channels_last), r.contiguous(memory_format=torch.channels_last)
            hit = cache[phase_in] = (region.box, c, r)
        c, r = hit[1], hit[2]
        val = _flat_dot(a, c) + sign * _flat_dot(a.abs(), r)
    elif region.norm == math.inf:
        box = region.box
        val = _flat_dot(a, box.c) + sign * _flat_dot(a.abs(), box.r)
    else:
        a2 = a.reshape(b, s, -1)
        val = _flat_dot(a, region.x0) + sign * a2.norm(dim=2) * region.eps.reshape(-1, 1)
        if region.domain is not None:
            box = region.box
            vb = _flat_dot(a, box.c) + sign * _flat_dot(a.abs(), box.r)
            val = torch.maximum(val, vb) if sign < 0 else torch.minimum(val, vb)
    if bias is not None:
        val = val + bias
    if val.shape[0] != n:
        val = val.expand(n, s)
    return val


def _start(n: Node, mode: str, data: Tensor | None, batch: int,
           in_shape: tuple[int, ...] = ()) -> tuple[Tensor, Tensor | None, bool]:
    """Initial coefficients for bounding ``C @ node`` (mode 'spec', data C (N, S, K)), the node itself
    (mode 'eye') or selected neurons (mode 'index', data (N, S) flat indices).

    Returns (A, bias, done): if ``done``, A is already at the node's input (folded into a linear node).
    """
    foldable = n.op == "dense" or (n.op == "linear" and len(n.shape) == 1)
    w = n.weight
    if foldable:
        assert w is not None
        if mode == "eye":
            a = w.unsqueeze(0)
            bias = None if n.bias is None else n.bias.unsqueeze(0)
        elif mode == "index":
            a = w[data]  # (N, S, in)
            bias = None if n.bias is None else n.bias[data]
        else:
            a = torch.matmul(data, w)  # type: ignore[arg-type]
            bias = None if n.bias is None else torch.matmul(data, n.bias)  # type: ignore[arg-type]
        if n.op == "dense":
            a = a.reshape(a.shape[0], a.shape[1], *in_shape)
        return a, bias, True
    d = n.numel
    if mode == "eye":
        a = torch.eye(d, dtype=w.dtype if w is not None else torch.get_default_dtype()).reshape(1, d, *n.shape)
    elif mode == "index":
        assert data is not None
        rows = torch.zeros((batch, data.shape[1], d), dtype=w.dtype if w is not None else torch.get_default_dtype(),
                           device=data.device)
        a = rows.scatter_(2, data.reshape(batch, data.shape[1], 1), 1.0).reshape(batch, data.shape[1], *n.shape)
    else:
        assert data is not None
        a = data.reshape(batch, data.shape[1], *n.shape)
    return a, None, False


def crown_bounds(g: Graph, region: InputRegion, spec: Tensor | None, *, ibp_intermediate: bool = False,
                 need_lower: bool = True, need_upper: bool = True,
                 compare_ibp: bool = False, hook: Any = None, best_of: bool = True) -> tuple[Tensor, Tensor]:
    """CROWN (or CROWN-IBP) bounds of ``spec @ output`` (spec (N, S, K); None = identity), shape (N, S).

    ``best_of``: on a graph with softmax / log-softmax (and no ``hook``), the element-wise best of the log-sum-exp
    planes, the element-wise decomposition and IBP (:func:`certify._softmax_alt.crown_best_of`).

    ``compare_ibp`` (auto_LiRPA's ``compare_crown_with_ibp``): intersect every CROWN bound, intermediate
    and final, with the IBP bound computed from the bounds known so far (sound, and never looser than
    either; it matters for IBP-trained networks, where IBP can be the tighter of the two).

    ``hook`` (used by ``certify.alpha_crown``): ``hook.preactivation(i, interval)`` may tighten each
    pre-activation's bounds (branch-and-bound split constraints) and ``hook.final(gd, ivs, relax, a, b0,
    start_input)`` receives the state of the final backward pass."""
    if best_of and hook is None and _softmax_alt.SOFTMAX_BEST_OF and _softmax_alt.has_softmax(g):
        return _softmax_alt.crown_best_of(crown_bounds, g, region, spec, ibp_intermediate=ibp_intermediate,
                                          need_lower=need_lower, need_upper=need_upper, compare_ibp=compare_ibp)
    nodes = g.nodes
    batch = region.x0.shape[0]
    dtype, device = region.x0.dtype, region.x0.device
    if device.type == "cpu":
        _memory.warm_allocator()  # once per process (see certify._memory.warm_allocator)
    # dense conv matrices speed up bounding a fixed network; when autograd tracks the weights (a training
    # loss) the gradient through the dense matrix is far dearer than through the conv itself
    tracked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for n in g.nodes
                                              for t in (n.weight, n.bias))
    gd = g if tracked else densify(g, DENSE_CONV_MAX_ELEMENTS)
    pre = set(g.preactivations())
    direct = direct_input_flags(g) if region.norm == 2 else None
    affine_in = g.affine_in_input()
    exact = _ibp_exact(g, region.norm)
    consumers = g.consumers()
    relu_fed = [bool(c) and all(nodes[k].op == "relu" for k in c) for c in consumers]
    # sigmoid/tanh relax on every neuron's interval (no stable neuron): all rows get CROWN bounds (as auto_LiRPA)
    smooth_fed = [any(nodes[k].op in ("sigmoid", "tanh") for k in c) for c in consumers]
    pooled = {n.inputs[0] for n in nodes if n.op == "maxpool"}
    # inputs of the other non-linear ops (not ReLU): every neuron's bound matters, and the CROWN bound is
    # intersected with the IBP one (it keeps e.g. a variance's lower bound >= eps for rsqrt; softmax: auto_LiRPA
    # does not intersect, so certify's bounds are equal or tighter)
    general = {j for n in nodes if n.op in (*SCALAR_OPS, "mul", *SOFTMAX_OPS) for j in n.inputs}
    ivs: list[Interval | None] = [None] * len(nodes)
    ivs[0] = _ibp_input(g, region)
    relax: dict[int, AnyRelax] = {}
    for i in range(1, len(nodes)):
        if i == g.output:
            break
        n = nodes[i]
        if (n.op == "relu" and hook is None and i not in pre
                and (fused := _fused_ibp_relu(ivs[n.inputs[0]])) is not None):  # type: ignore[arg-type]
            relax[i], ivs[i] = fused  # finite (else not fused): nothing for _no_nan to replace
            continue
        if n.op in NONLINEAR:
            relax[i] = _make_relax(n, ivs)
        iv = _no_nan(node_interval(g, i, ivs, region, direct))
        ref = iv
        elementwise = n.op in NONLINEAR and n.op not in ("maxpool", "mul", *SOFTMAX_OPS)
        if (i in pre and not ibp_intermediate and not exact[i]
                and not (i in pooled and n.op in NONLINEAR)  # pooling relu(x): relu of x's bounds
                and not (i in general and elementwise)):  # f(x) for an element-wise f: f's range on x's bounds
            # every neuron's bound matters to max pooling and sigmoid/tanh (not only those unstable for a ReLU)
            # a ReLU's relaxation depends only on the sign of a stable neuron's bounds: only the unstable ones
            # (under the reference bounds) are bounded, whatever the node
            full = i in pooled or smooth_fed[i] or (affine_in[i] and not relu_fed[i])
            rows = "all_ref" if i in general else ("all" if full else "unstable")
            p_iv = _patches_bounds(g, i, iv, region, relax, batch=batch, rows=rows, compare_ibp=compare_ibp)
            if p_iv is not None:
                iv = p_iv
            elif i in general:
                iv = _intermediate_all(gd, i, iv, region, relax, batch=batch)
            else:
                iv = _intermediate(gd, i, iv, region, relax, exact=full, batch=batch,
                                   compare_ibp=compare_ibp)
            if iv is not ref:
                iv = _no_nan(iv, ref)
                if rows == "all" and (smooth_fed[i] or compare_ibp):
                    # sigmoid/tanh inputs (as every other smooth function's, "all_ref") and, with compare_ibp,
                    # every bound: CROWN's intersected with the reference (IBP) one (sound; never looser)
                    iv = Interval(l=torch.maximum(iv.l, ref.l), u=torch.minimum(iv.u, ref.u))
        if hook is not None and i in pre:
            iv = hook.preactivation(i, iv)
        ivs[i] = iv
    out = nodes[g.output]
    mode = "eye" if spec is None else "spec"
    a, b0, done = _start(gd.nodes[g.output], mode, spec, batch, nodes[out.inputs[0]].shape)
    a = a.to(dtype=dtype, device=device)
    if out.op in NONLINEAR and not done:
        relax[g.output] = _make_relax(out, ivs)
    if hook is not None:
        hook.final(gd, ivs, relax, a, b0, out.inputs[0] if done else None)
    lo, hi = backward(gd, g.output, a, b0, region, relax, need_lower=need_lower, need_upper=need_upper,
                      start_node_done=done, start_input=out.inputs[0] if done else None)
    if lo is None:
        lo = torch.full_like(hi, -math.inf)  # type: ignore[arg-type]
    if hi is None:
        hi = torch.full_like(lo, math.inf)
    if compare_ibp:
        ivs[g.output] = _no_nan(node_interval(g, g.output, ivs, region, direct))
        lo_ibp, hi_ibp = spec_interval(g, ivs, spec, region, direct)
        lo, hi = torch.fmax(lo, lo_ibp), torch.fmin(hi, hi_ibp)  # fmax/fmin: a NaN side gives way
    return _no_nan_bounds(lo, hi)


def _no_nan_bounds(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """A NaN bound (inf - inf or 0 * inf after an interval overflowed the floating-point range) carries no
    information: it becomes -inf (lower) / +inf (upper), so the bounds stay sound instead of NaN. NaN
    propagates through every step of the backward pass, so no finite bound was computed from one."""
    if _any_nan(lo, hi):
        lo = lo.nan_to_num(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
        hi = hi.nan_to_num(nan=math.inf, posinf=math.inf, neginf=-math.inf)
    return lo, hi


def _no_nan(iv: Interval, ref: Interval | None = None) -> Interval:
    """``iv`` with NaN bounds replaced by ``ref``'s (a sound reference, e.g. IBP) and remaining NaN by -/+inf."""
    if iv._l is None and iv._u is None:
        # held as centre/width (or sum/difference): finite parts give bounds that may overflow to -/+inf but are
        # never NaN, so the bounds need not be formed here (a node that no relaxation reads never forms them)
        parts = [t for t in (iv._c, iv._r, iv._s, iv._d) if t is not None]
        if len(parts) == 2 and _surely_finite(*parts):
            return iv
    lo, hi = iv.l, iv.u
    if not _any_nan(lo, hi):
        return iv
    if ref is not None:
        lo, hi = torch.where(torch.isnan(lo), ref.l, lo), torch.where(torch.isnan(hi), ref.u, hi)
    lo, hi = _no_nan_bounds(lo, hi)
    return Interval(l=lo, u=hi)


def _ibp_exact(g: Graph, norm: float) -> list[bool]:
    """Whether IBP bounds each neuron of a node exactly (the range over the region; CROWN cannot do better).

    The region's box (L-inf, clipped to a box domain) mapped coordinate-wise (reshape, permute, slice,
    an element-wise affine map such as BatchNorm or a normalisation) is a box; one linear/conv layer maps a
    box to bounds attained per neuron (``W c +/- |W| r``), and an element-wise affine map of exact bounds
    stays exact. For L2 the ball is not a box: only a layer on the input itself (up to a reshape) is exact
    (``W x0 +/- ||W_row||_2 eps``, intersected with the box bound exactly as CROWN's concretisation does)."""
    nodes = g.nodes
    exact: list[bool] = []
    box: list[bool] = []  # the node's values over the region form a box (exact under any linear map)
    for n in nodes:
        ins = n.inputs
        if n.op == "input":
            e, b = True, True
        elif n.op in ("reshape", "permute", "slice") or (
                n.op == "affine" and n.shape == nodes[ins[0]].shape):  # one input coordinate per output
            e = exact[ins[0]]
            b = box[ins[0]] and (norm == math.inf or n.op == "reshape")
        elif n.op in ("linear", "conv", "dense"):
            e, b = box[ins[0]], False
        else:  # add, cat, non-linear ops
            e, b = False, False
        exact.append(e)
        box.append(b)
    return exact


#: bytes of coefficients one backward pass for all neurons of a node may hold (chunks of neurons beyond; a
#: memory cap: lowered at call time to what the memory available allows, :func:`_row_step`)
ALL_NEURONS_BYTES = 1 << 28


def _row_step(g: Graph, i: int, batch: int, dtype: torch.dtype, device: torch.device, stage: str) -> int:
    """Neurons (rows) of node ``i`` per backward pass: the coefficients of the whole batch under
    ``ALL_NEURONS_BYTES``, and one input's (the backward pass chunks inputs) times ``BACKWARD_COPIES`` under
    the memory budget; MemoryError (before allocating) if one row of one input does not fit."""
    widest = max(nd.numel for nd in g.nodes[: i + 1])
    per_row_input = max(1, widest * torch.finfo(dtype).bits // 8)
    step = max(1, ALL_NEURONS_BYTES // max(1, batch * per_row_input))
    return _memory.units(per_row_input, cap=step * per_row_input, copies=BACKWARD_COPIES, device=device,
                         what=_node_what(g, i, stage))


def _intermediate_all(g: Graph, i: int, ref: Interval, region: InputRegion, relax: Mapping[int, AnyRelax], *,
                      batch: int) -> Interval:
    """CROWN bounds of every neuron of node ``i``, in chunks of neurons sized so that the widest
    coefficient tensor stays under ``ALL_NEURONS_BYTES``, intersected with the reference (IBP) bounds."""
    n = g.nodes[i]
    dtype, device = region.x0.dtype, region.x0.device
    d = n.numel
    step = min(d, _row_step(g, i, batch, dtype, device, "CROWN's intermediate bounds"))
    l_ref, u_ref = ref.l.reshape(batch, -1), ref.u.reshape(batch, -1)
    los, his = [], []
    in_shape = g.nodes[n.inputs[0]].shape if n.inputs else ()
    for c0 in range(0, d, step):
        cols = torch.arange(c0, min(d, c0 + step), device=device)
        a, b0, done = _start(n, "index", cols.unsqueeze(0), 1, in_shape)
        lo, hi = backward(g, i, a.to(dtype=dtype), b0, region, relax,
                          start_node_done=done, start_input=n.inputs[0] if done else None)
        assert lo is not None and hi is not None
        los.append(lo)
        his.append(hi)
    lo = torch.maximum(torch.cat(los, dim=1), l_ref)
    hi = torch.minimum(torch.cat(his, dim=1), u_ref)
    return Interval(l=lo.reshape(batch, *n.shape), u=hi.reshape(batch, *n.shape))


def _intermediate(g: Graph, i: int, ref: Interval, region: InputRegion, relax: Mapping[int, AnyRelax], *,
                  exact: bool, batch: int, compare_ibp: bool = False) -> Interval:
    """CROWN bounds of pre-activation node ``i``: all neurons if ``exact`` (affine in the input),
    else only the neurons unstable under the reference bounds ``ref``."""
    n = g.nodes[i]
    dtype, device = region.x0.dtype, region.x0.device
    if exact:
        a, b0, done = _start(n, "eye", None, batch, g.nodes[n.inputs[0]].shape if n.inputs else ())
        lo, hi = backward(g, i, a.to(dtype=dtype, device=device), b0, region, relax,
                          start_node_done=done, start_input=n.inputs[0] if done else None)
        assert lo is not None and hi is not None
        return Interval(l=lo.reshape(batch, *n.shape), u=hi.reshape(batch, *n.shape))
    l_ref, u_ref = ref.l.reshape(batch, -1), ref.u.reshape(batch, -1)
    unstable = (l_ref < 0) & (u_ref > 0)
    counts = unstable.sum(1)
    s = int(counts.max()) if batch else 0
    if s == 0:
        return ref
    union = unstable.any(0)
    n_union = int(union.sum())
    # chunks of neurons so that the coefficient tensors (batch x rows x widest node) stay under the budget
    step = _row_step(g, i, batch, dtype, device, "CROWN's intermediate bounds")
    if n_union <= 1.25 * s:
        # (nearly) the same neurons are unstable across the batch: one coefficient matrix shared by
        # all inputs until the first activation (no per-input gather); results are used only where
        # the neuron is unstable for that input, so bounds do not depend on the rest of the batch
        cols = union.nonzero().squeeze(1)
        idx = cols.unsqueeze(0).expand(batch, n_union)
        valid = unstable[:, cols]
        shared = True
    else:
        idx = torch.argsort(unstable.to(torch.int8), dim=1, descending=True, stable=True)[:, :s]
        valid = torch.arange(s, device=device).unsqueeze(0) < counts.unsqueeze(1)
        shared = False
    los, his = [], []
    for c0 in range(0, idx.shape[1], step):
        sub = idx[:1, c0:c0 + step] if shared else idx[:, c0:c0 + step]
        a, b0, done = _start(n, "index", sub, sub.shape[0], g.nodes[n.inputs[0]].shape)
        lo_c, hi_c = backward(g, i, a.to(dtype=dtype), b0, region, relax,
                              start_node_done=done, start_input=n.inputs[0] if done else None)
        assert lo_c is not None and hi_c is not None
        los.append(lo_c)
        his.append(hi_c)
    lo, hi = torch.cat(los, dim=1), torch.cat(his, dim=1)
    lo = torch.where(valid, lo, l_ref.gather(1, idx))
    hi = torch.where(valid, hi, u_ref.gather(1, idx))
    if compare_ibp:  # only where computed for this input, so that bounds never depend on the batch
        lo = torch.maximum(lo, l_ref.gather(1, idx))
        hi = torch.minimum(hi, u_ref.gather(1, idx))
    l_new = l_ref.scatter(1, idx, lo)
    u_new = u_ref.scatter(1, idx, hi)
    return Interval(l=l_new.reshape(batch, *n.shape), u=u_new.reshape(batch, *n.shape))


# ----------------------------------------------------------------------------------------------
# Patches: CROWN bounds of a conv feature map's neurons, each row kept as a window of its receptive field
# ----------------------------------------------------------------------------------------------

#: bytes one patch coefficient tensor (inputs x rows x channels x window) may take; rows are chunked beyond
#: (a memory cap: lowered at call time to what the memory available allows, with ``PATCH_COPIES`` tensors of
#: that size per step; where one row for the whole batch does not fit, inputs are chunked too)
PATCH_BYTES = 1 << 25

_Geom = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # window (kh, kw), stride, padding


def _channel_affine(n: Node) -> tuple[Tensor | None, Tensor | None] | None:
    """(scale, shift) of an ``affine`` node that acts per channel of (C, H, W) (weights (C, 1, 1) or
    scalars), else None."""
    for t in (n.weight, n.bias):
        if t is not None and not (t.dim() == 0 or (t.dim() == 3 and t.shape[1:] == (1, 1))):
            return None
    return n.weight, n.bias


def _per_channel(t: Tensor | None, c: int, like: Tensor, default: float) -> Tensor:
    if t is None:
        return torch.full((c,), default, dtype=like.dtype, device=like.device)
    return t.reshape(-1).expand(c)


def _patch_plan(g: Graph, i: int, relax: Mapping[int, AnyRelax]) -> dict[int, tuple[bool, _Geom]] | None:
    """Window geometry of every node the backward pass from node ``i`` (C, H, W) reaches: the row of output
    position ``o`` covers positions ``o * stride - padding + [0, window)`` of that node. ``diag``: the node is
    reached only through element-wise ops (one coefficient per row, on the row's own neuron). None if the pass
    meets an op without a window form (then the dense backward pass is used)."""
    nodes = g.nodes
    if len(nodes[i].shape) != 3 or len(nodes[0].shape) != 3:
        return None
    plan: dict[int, tuple[bool, _Geom]] = {i: (True, ((1, 1), (1, 1), (0, 0)))}
    for j in range(i, 0, -1):
        if j not in plan:
            continue
        n = nodes[j]
        diag, (k, s, p) = plan[j]
        if n.op == "conv":
            w = n.weight
            if w is None or w.dim() != 4:
                return None
            a = n.attrs
            sc, pc, dil = a["stride"], a["padding"], a["dilation"]
            if not all(isinstance(v, tuple) and len(v) == 2 for v in (sc, pc, dil)):
                return None
            kc = w.shape[2:]
            geom = (tuple((k[d] - 1) * sc[d] + dil[d] * (kc[d] - 1) + 1 for d in range(2)),
                    tuple(s[d] * sc[d] for d in range(2)), tuple(p[d] * sc[d] + pc[d] for d in range(2)))
            ins = [(n.inputs[0], False, geom)]
        elif n.op == "affine" and _channel_affine(n) is not None:
            ins = [(n.inputs[0], diag, (k, s, p))]
        elif n.op in ACTIVATIONS and isinstance(relax.get(j), _Relax):
            r = relax[j]
            assert isinstance(r, _Relax)
            if r.per_spec or r.beta is not None:
                return None
            ins = [(n.inputs[0], diag, (k, s, p))]
        elif n.op == "add" and all(nodes[q].shape == n.shape for q in n.inputs):
            ins = [(q, diag, (k, s, p)) for q in n.inputs]
        else:
            return None
        for q, d2, g2 in ins:
            if len(nodes[q].shape) != 3:
                return None
            if q not in plan:
                plan[q] = (d2, g2)  # type: ignore[assignment]
                continue
            d1, (k1, s1, p1) = plan[q]
            if s1 != g2[1]:
                return None
            pp = tuple(max(p1[d], g2[2][d]) for d in range(2))
            right = tuple(max(k1[d] - p1[d], g2[0][d] - g2[2][d]) for d in range(2))
            plan[q] = (d1 and d2, (tuple(pp[d] + right[d] for d in range(2)), s1, pp))  # type: ignore[assignment]
    return plan if 0 in plan else None


def _window_rows(t: Tensor, geom: _Geom, out_hw: tuple[int, int], lidx: Tensor) -> Tensor:
    """The windows of ``t`` (M, C, H, W) (zero outside the map) seen by rows at output positions ``lidx``
    (R, S) (R = 1: the same rows for every input) -> (max(M, R), S, C, kh, kw)."""
    (kh, kw), (sh, sw), (ph, pw) = geom
    m, c, h, w = t.shape
    ho, wo = out_hw
    rh, rw = max(0, (ho - 1) * sh + kh - ph - h), max(0, (wo - 1) * sw + kw - pw - w)
    tp = F.pad(t, (pw, rw, ph, rh)) if (pw or rw or ph or rh) else t
    wp = tp.shape[3]
    oh, ow = lidx // wo, lidx % wo
    base = oh * (sh * wp) + ow * sw
    offs = (torch.arange(kh, device=t.device).unsqueeze(1) * wp + torch.arange(kw, device=t.device)).reshape(-1)
    idx = base.unsqueeze(-1) + offs  # (R, S, kh kw)
    r, s = lidx.shape
    flat = tp.reshape(m, c, -1)
    if r == 1:
        out = flat[:, :, idx[0]]  # (M, C, S, kk)
    elif m == 1:
        out = flat[0][:, idx].transpose(0, 1)  # (R, C, S, kk)
    else:
        out = torch.gather(flat, 2, idx.reshape(r, 1, -1).expand(r, c, -1)).reshape(r, c, s, kh * kw)
    return out.transpose(1, 2).reshape(out.shape[0], s, c, kh, kw)


def _fit(pt: Tensor, have: _Geom, want: _Geom) -> Tensor:
    """Embed a window tensor (..., kh, kw) of geometry ``have`` into the larger window ``want`` (same stride)."""
    (k1, _, p1), (k2, _, p2) = have, want
    if k1 == k2 and p1 == p2:
        return pt
    lh, lw = p2[0] - p1[0], p2[1] - p1[1]
    return F.pad(pt, (lw, k2[1] - k1[1] - lw, lh, k2[0] - k1[0] - lh))


def _select_rows(unstable: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Rows to bound for a batch with per-input masks ``unstable`` (N, D): (flat indices (R, S), valid
    (N, S), shared). If (nearly) the same neurons are unstable across the batch, one row set serves every
    input (R = 1); results are used only where valid, so bounds never depend on the rest of the batch."""
    counts = unstable.sum(1)
    s = int(counts.max())
    union = unstable.any(0)
    n_union = int(union.sum())
    if n_union <= 1.25 * s:
        cols = union.nonzero().squeeze(1)
        return cols.unsqueeze(0), unstable[:, cols], True
    idx = torch.argsort(unstable.to(torch.int8), dim=1, descending=True, stable=True)[:, :s]
    valid = torch.arange(s, device=unstable.device).unsqueeze(0) < counts.unsqueeze(1)
    return idx, valid, False


def _patches_bounds(g: Graph, i: int, ref: Interval, region: InputRegion, relax: Mapping[int, AnyRelax], *,
                    batch: int, rows: str, compare_ibp: bool = False) -> Interval | None:
    """CROWN bounds of the neurons of conv-shaped node ``i`` (C, H, W) with each row of coefficients kept as a
    window over its receptive field (auto_LiRPA's "patches" mode, Xu et al. 2020, "Automatic perturbation
    analysis for scalable certified robustness and beyond"), through any graph of convolutions, per-channel
    affine maps (BatchNorm), element-wise activations and residual additions. Identical to the dense backward
    pass (the entries of a window outside its map are kept at zero); the cost of a row is the size of its
    receptive field, not of the feature map.

    ``rows``: ``"all"`` (every neuron, plain CROWN), ``"all_ref"`` (every neuron, intersected with ``ref``) or
    ``"unstable"`` (as :func:`_intermediate`: neurons unstable under ``ref``; the others keep ``ref``).
    None when the backward pass meets an op without a window form."""
    plan = _patch_plan(g, i, relax)
    if plan is None:
        return None
    nodes = g.nodes
    n = nodes[i]
    d = n.numel
    dtype, device = region.x0.dtype, region.x0.device
    l_ref, u_ref = ref.l.reshape(batch, -1), ref.u.reshape(batch, -1)
    if rows == "unstable":
        unstable = (l_ref < 0) & (u_ref > 0)
        if batch == 0 or not bool(unstable.any()):
            return ref
        idx, valid, shared = _select_rows(unstable)
    else:
        idx, valid, shared = torch.arange(d, device=device).unsqueeze(0), None, True  # type: ignore[assignment]
    widest = max(nodes[j].shape[0] * (1 if dg else math.prod(gm[0])) for j, (dg, gm) in plan.items())
    per_pair = max(1, widest * torch.finfo(dtype).bits // 8)  # one row of one input
    step = max(1, PATCH_BYTES // (max(1, batch) * per_pair))
    # (row, input) pairs per pass: PATCH_BYTES, and PATCH_COPIES such tensors under the memory budget
    pairs = _memory.units(per_pair, cap=step * max(1, batch) * per_pair, copies=PATCH_COPIES, device=device,
                          what=_node_what(g, i, "CROWN's intermediate bounds in window form"))
    in_step = batch if pairs >= batch else pairs
    step = max(1, pairs // max(1, batch)) if pairs >= batch else 1
    lo, hi = _patch_chunks(g, i, plan, idx, shared, region, relax, step, in_step)
    if rows == "all":
        return Interval(l=lo.reshape(batch, *n.shape), u=hi.reshape(batch, *n.shape))
    if rows == "all_ref":
        return Interval(l=torch.maximum(lo, l_ref).reshape(batch, *n.shape),
                        u=torch.minimum(hi, u_ref).reshape(batch, *n.shape))
    assert valid is not None
    gidx = idx.expand(batch, -1) if shared else idx
    lr, ur = l_ref.gather(1, gidx), u_ref.gather(1, gidx)
    lo, hi = torch.where(valid, lo, lr), torch.where(valid, hi, ur)
    if compare_ibp:  # only where computed for this input, so that bounds never depend on the batch
        lo, hi = torch.maximum(lo, lr), torch.minimum(hi, ur)
    return Interval(l=l_ref.scatter(1, gidx, lo).reshape(batch, *n.shape),
                    u=u_ref.scatter(1, gidx, hi).reshape(batch, *n.shape))


def _patch_chunks(g: Graph, i: int, plan: Mapping[int, tuple[bool, _Geom]], idx: Tensor, shared: bool,
                  region: InputRegion, relax: Mapping[int, AnyRelax], step: int, in_step: int) -> tuple[Tensor, Tensor]:
    """:func:`_patch_pass` for rows ``idx`` (R, S) in chunks of ``step`` rows and ``in_step`` inputs -> bounds
    (N, S); inputs and rows are independent, so the bounds are those of one pass."""
    batch = region.x0.shape[0]
    parts: list[tuple[InputRegion, Mapping[int, AnyRelax], Tensor]] = [(region, relax, idx)]
    if in_step < batch:
        parts = []
        for i0 in range(0, batch, max(1, in_step)):
            sl = slice(i0, i0 + in_step)
            sub = InputRegion(region.x0[sl], region.eps[sl], region.norm, region.domain)
            sub.box = Interval(l=_rows(region.box.l, sl), u=_rows(region.box.u, sl))  # type: ignore[arg-type]
            parts.append((sub, {k: _relax_rows(r, sl) for k, r in relax.items()}, idx if shared else idx[sl]))
    lo_in, hi_in = [], []
    for sub, sub_relax, sub_idx in parts:
        los, his = [], []
        for c0 in range(0, sub_idx.shape[1], step):
            lo_c, hi_c = _patch_pass(g, i, plan, sub_idx[:, c0:c0 + step], sub, sub_relax)
            los.append(lo_c)
            his.append(hi_c)
        lo_in.append(torch.cat(los, dim=1))
        hi_in.append(torch.cat(his, dim=1))
    return torch.cat(lo_in), torch.cat(hi_in)


def _patch_pass(g: Graph, i: int, plan: Mapping[int, tuple[bool, _Geom]], idx: Tensor, region: InputRegion,
                relax: Mapping[int, AnyRelax], slopes: Mapping[int, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """One backward pass in window form for rows ``idx`` (R, S) (flat neuron indices of node ``i``; R = 1:
    the same rows for every input) -> lower and upper bounds (N, S).

    A coefficient is either "diag" (R', S): a multiple of the row's own neuron, or a window
    (R', S, C, kh, kw) in the geometry ``plan`` gives the node; lower and upper are the same object until
    an activation separates them. ``slopes`` (alpha-CROWN's intermediate bounds, ``certify.alpha_crown``):
    per activation node reached in window form, lower slopes (N, S, C, kh, kw) per row in its plan geometry,
    used on the neurons its relaxation leaves unstable (``0 < d_u < 1``) instead of ``d_l``."""
    nodes = g.nodes
    _, ho, wo = nodes[i].shape
    lidx, cidx = idx % (ho * wo), idx // (ho * wo)
    dtype = region.x0.dtype
    one = torch.ones(idx.shape, dtype=dtype, device=idx.device)
    pending: dict[int, list[Tensor]] = {i: [one, one]}
    lbias: Tensor | int = 0
    ubias: Tensor | int = 0

    def full(t: Tensor, j: int) -> Tensor:
        """A diag coefficient as a window of node j's plan geometry."""
        c = nodes[j].shape[0]
        z = torch.zeros((*t.shape, c), dtype=t.dtype, device=t.device)
        z = z.scatter(-1, cidx.expand(t.shape).unsqueeze(-1), t.unsqueeze(-1)).reshape(*t.shape, c, 1, 1)
        return _fit(z, ((1, 1), (1, 1), (0, 0)), plan[j][1])

    def push(j: int, tl: Tensor, tu: Tensor, geom: _Geom | None) -> None:
        """Add contributions (diag if ``geom`` is None) to node j's pending coefficients."""
        same = tl is tu
        if geom is None and not plan[j][0]:
            tl = full(tl, j)
            tu = tl if same else full(tu, j)
        elif geom is not None:
            tl = _fit(tl, geom, plan[j][1])
            tu = tl if same else _fit(tu, geom, plan[j][1])
        if j in pending:
            pl, pu = pending[j]
            nl = tl + pl
            nu = nl if (same and pl is pu) else tu + pu
            pending[j] = [nl, nu]
        else:
            pending[j] = [tl, tu]

    for j in range(i, 0, -1):
        if j not in pending:
            continue
        la, ua = pending.pop(j)
        n = nodes[j]
        diag, geom = plan[j]
        if n.op == "conv":
            w = n.weight
            assert w is not None
            a = n.attrs
            cout = w.shape[0]
            b = _per_channel(n.bias, cout, w, 0.0)
            new = []
            for t in ([la] if la is ua else [la, ua]):
                if diag:
                    if a["groups"] == 1 and a["dilation"] == (1, 1):
                        pt = t[..., None, None, None] * w[cidx]
                        bt = t * b[cidx]
                        new.append((pt, bt))
                        continue
                    t = full(t, j)
                new.append((_conv_back(n, t), t.sum((-1, -2)) @ b))
            q = n.inputs[0]
            c_geom = ((new[0][0].shape[-2], new[0][0].shape[-1]), tuple(geom[1][d] * a["stride"][d] for d in range(2)),
                      tuple(geom[2][d] * a["stride"][d] + a["padding"][d] for d in range(2)))
            skip_mask = nodes[q].op in ACTIVATIONS or (q == 0 and region.norm == math.inf)
            mask = None if skip_mask else _window_rows(
                torch.ones((1, 1, *nodes[q].shape[1:]), dtype=dtype, device=idx.device), c_geom, (ho, wo), lidx)  # type: ignore[arg-type]
            # entries outside the map must stay zero for the next op, unless it zeroes them itself (an
            # activation multiplies by windows of its slopes, zero outside; the L-inf box is zero outside)
            outs = [pt if mask is None else pt * mask for pt, _ in new]
            lbias = lbias + new[0][1]
            ubias = ubias + new[-1][1]
            push(q, outs[0], outs[-1], c_geom)  # type: ignore[arg-type]
        elif n.op == "affine":
            sa = _channel_affine(n)
            assert sa is not None
            c = n.shape[0]
            like = region.x0
            sc, sh = _per_channel(sa[0], c, like, 1.0), _per_channel(sa[1], c, like, 0.0)
            new = []
            for t in ([la] if la is ua else [la, ua]):
                if diag:
                    new.append((t * sc[cidx], t * sh[cidx]))
                else:
                    new.append((t * sc.reshape(c, 1, 1), t.sum((-1, -2)) @ sh))
            lbias = lbias + new[0][1]
            ubias = ubias + new[-1][1]
            push(n.inputs[0], new[0][0], new[-1][0], None if diag else geom)
        elif n.op == "add":
            for q, cf in zip(n.inputs, n.attrs["coef"]):
                tl = la if cf == 1.0 else la * cf
                tu = tl if ua is la else (ua if cf == 1.0 else ua * cf)
                push(q, tl, tu, None if diag else geom)
        else:  # element-wise activation
            r = relax[j]
            assert isinstance(r, _Relax)
            new_l, new_u, bl, bu = _patch_activation(la, ua, r, idx if diag else None, geom, (ho, wo), lidx,
                                                     None if slopes is None or diag else slopes.get(j))
            lbias = lbias + bl
            ubias = ubias + bu
            push(n.inputs[0], new_l, new_u, None if diag else geom)
    la, ua = pending[0]
    diag, geom = plan[0]
    if diag:
        la, ua = full(la, 0), (full(ua, 0) if ua is not la else None)  # type: ignore[assignment]
        ua = la if ua is None else ua
        diag, geom = False, ((1, 1), (1, 1), (0, 0))
    return (_patch_concretize(region, la, geom, (ho, wo), lidx, -1) + lbias,
            _patch_concretize(region, ua, geom, (ho, wo), lidx, +1) + ubias)


#: a conv's backward map on windows (rows: window entries at its output, columns: at its input) is used as a
#: matrix (one BLAS product) when it has at most this many entries, else a transposed convolution
PATCH_MAP_MAX_ELEMENTS = 1 << 22
#: float32 windows of at least this many channels on both sides of a conv go backward as transposed convolutions
#: (oneDNN's kernels outrun the matrix product there; speed knob)
PATCH_MAP_WIDE_CHANNELS = 32
#: the transposed convolutions of window coefficients run in calls of at most this many bytes (operand and result;
#: speed knob: smaller calls stay in cache)
PATCH_CONV_BYTES = 1 << 23


def _conv_back(n: Node, t: Tensor) -> Tensor:
    """Window coefficients ``t`` (R, S, C_out, kh, kw) at conv node ``n``'s output -> at its input
    (R, S, C_in, kh', kw'), kh' = (kh - 1) stride + dilation (k - 1) + 1 (the transposed convolution of each
    window; entries outside the input map are not zeroed here)."""
    w = n.weight
    assert w is not None
    a = n.attrs
    r_, s_, cout, kh, kw = t.shape
    st, dil = a["stride"], a["dilation"]
    kh2, kw2 = (kh - 1) * st[0] + dil[0] * (w.shape[2] - 1) + 1, (kw - 1) * st[1] + dil[1] * (w.shape[3] - 1) + 1
    cin = w.shape[1] * a["groups"]
    # measured (CPU, one thread): the product wins for small windows and in float64 (about 2-3x for 3x3 windows of
    # 16 channels, 6x for 1x1), the transposed convolution for larger float32 windows and for float32 windows of
    # 32+ channels on both sides, where oneDNN's kernels run 3.5-5x faster than the product (64 -> 64 and
    # 128 -> 128 channels, 3x3 windows; 1x1 windows still go faster as the product)
    wide = t.dtype == torch.float32 and kh * kw > 1 and min(cin, cout) >= PATCH_MAP_WIDE_CHANNELS
    if (cout * kh * kw * cin * kh2 * kw2 <= PATCH_MAP_MAX_ELEMENTS and (kh * kw <= 9 or t.dtype == torch.float64)
            and not wide):
        def make() -> Tensor:
            basis = torch.eye(cout * kh * kw, dtype=w.dtype, device=w.device).reshape(-1, cout, kh, kw)
            return F.conv_transpose2d(basis, w, None, stride=st, dilation=dil, groups=a["groups"]).reshape(
                cout * kh * kw, -1)
        m = n.derive(f"patch_map_{kh}x{kw}", make)
        return (t.reshape(r_ * s_, -1) @ m).reshape(r_, s_, cin, kh2, kw2)
    flat = t.reshape(r_ * s_, cout, kh, kw)
    if _phase_form(n):
        pt = _phase_conv_transpose(n, flat, (cin, kh2, kw2), (0, 0))
        return pt.reshape(r_, s_, cin, kh2, kw2)
    # in calls of at most PATCH_CONV_BYTES (operand and result): oneDNN's transposed convolutions of a few
    # thousand windows ran 1.3-1.6x faster per window than one call on tens of MB (16 -> 3 and 128 -> 128 channels)
    rows = max(1, PATCH_CONV_BYTES // ((cout * kh * kw + cin * kh2 * kw2) * t.element_size()))
    if rows >= r_ * s_:
        pt = F.conv_transpose2d(flat, w, None, stride=st, dilation=dil, groups=a["groups"])
        return pt.reshape(r_, s_, cin, kh2, kw2)
    out = t.new_empty((r_ * s_, cin, kh2, kw2))
    for r0 in range(0, r_ * s_, rows):
        out[r0:r0 + rows] = F.conv_transpose2d(flat[r0:r0 + rows], w, None, stride=st, dilation=dil,
                                               groups=a["groups"])
    return out.reshape(r_, s_, cin, kh2, kw2)


def _patch_activation(la: Tensor, ua: Tensor, r: _Relax, diag_idx: Tensor | None, geom: _Geom,
                      out_hw: tuple[int, int], lidx: Tensor, slope: Tensor | None = None
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Window coefficients through ``d_l x + b_l <= f(x) <= d_u x + b_u`` (b_l = 0 for ReLU): a positive
    coefficient takes the lower line for the lower bound and the upper line for the upper bound; the other way
    round for a negative one. ``slope`` (N, S, C, kh, kw): per-row lower slopes of a ReLU (alpha-CROWN), used
    where the relaxation is unstable (``0 < d_u < 1``; never outside the map, where ``d_u`` is zero).
    Returns (A lower, A upper, bias lower, bias upper)."""
    nb = r.d_l.shape[0]
    if diag_idx is None and slope is None:
        fast = _relu_window_step(la, ua, r, geom, out_hw, lidx)
        if fast is not None:
            return fast
    if diag_idx is not None:
        sel = diag_idx.expand(nb, -1)
        dl, du, bu = (t.reshape(nb, -1).gather(1, sel) for t in (r.d_l, r.d_u, r.b_u))
        bl = None if r.b_l is None else r.b_l.reshape(nb, -1).gather(1, sel)
    else:
        dl, du, bu = (_window_rows(t, geom, out_hw, lidx) for t in (r.d_l, r.d_u, r.b_u))
        bl = None if r.b_l is None else _window_rows(r.b_l, geom, out_hw, lidx)
        if slope is not None:
            dl = torch.where((du > 0) & (du < 1), slope, dl)
    dims = tuple(range(2, dl.dim()))

    def dot(x: Tensor, y: Tensor | None) -> Tensor:
        if y is None:
            return torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.linalg.vecdot(x.flatten(2), y.flatten(2)) if dims else x * y

    pos = la.clamp(min=0)
    neg = la - pos
    new_l = pos * dl + neg * du
    bias_l = dot(pos, bl) + dot(neg, bu)
    if ua is not la:
        pos = ua.clamp(min=0)
        neg = ua - pos
    new_u = pos * du + neg * dl
    bias_u = dot(pos, bu) + dot(neg, bl)
    return new_l, new_u, bias_l, bias_u


def _relu_window_step(la: Tensor, ua: Tensor, r: _Relax, geom: _Geom, out_hw: tuple[int, int], lidx: Tensor
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """:func:`_patch_activation` of a ReLU through the compiled kernel :func:`certify._crown_kernels.relu_window`
    (one pass per side that reads the slopes and intercept of each window entry from the relaxation's maps, where
    torch's form gathers three window tensors and makes five to seven passes), or None where it does not apply
    (kernels off, absent or below their size floor, autograd recording, not CPU float32/float64, an intercept that
    is not finite: then torch's form runs). Same coefficients bit for bit, bias sums in float64."""
    nb = r.d_l.shape[0]
    if r.b_l is not None or r.d_l.dim() != 4 or la.dim() != 5 or la.device.type != "cpu":
        return None
    if la.dtype not in (torch.float32, torch.float64) or any(t.dtype != la.dtype for t in (ua, r.d_l, r.d_u, r.b_u)):
        return None
    if la.shape[0] not in (1, nb) or ua.shape != la.shape or lidx.shape[0] not in (1, nb):
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in (la, ua, r.d_l, r.d_u, r.b_u)):
        return None
    kern = _relu_kernels(la.numel())
    if kern is None:
        return None
    finite = r.__dict__.get("finite intercept")
    if finite is None:
        finite = r.__dict__["finite intercept"] = _all_finite(r.b_u)
    if not finite:
        return None
    (kh, kw), (sh, sw), (ph, pw) = geom
    if la.shape[3:] != (kh, kw):
        return None
    shape = (nb, *la.shape[1:])
    g = torch.tensor([out_hw[1], sh, sw, ph, pw], dtype=torch.int64).numpy()
    maps = (r.d_l.numpy(), r.d_u.numpy(), r.b_u.numpy())
    li = lidx.numpy()
    out_l, out_u = la.new_empty(shape), la.new_empty(shape)
    bias_l, bias_u = la.new_zeros(nb, shape[1]), la.new_zeros(nb, shape[1])
    if la is ua:
        kern.relu_window(la.numpy(), *maps, li, g, 0, out_l.numpy(), out_u.numpy(), bias_l.numpy(), bias_u.numpy())
    else:
        kern.relu_window(la.numpy(), *maps, li, g, -1, out_l.numpy(), out_l.numpy(), bias_l.numpy(), bias_l.numpy())
        kern.relu_window(ua.numpy(), *maps, li, g, 1, out_u.numpy(), out_u.numpy(), bias_u.numpy(), bias_u.numpy())
    return out_l, out_u, bias_l, bias_u


def _patch_concretize(region: InputRegion, a: Tensor, geom: _Geom, out_hw: tuple[int, int], lidx: Tensor,
                      sign: int) -> Tensor:
    """min (sign=-1) or max (sign=+1) over the region of the rows' window coefficients ``a`` at the input."""
    nb = region.x0.shape[0]

    def dot(x: Tensor, y: Tensor) -> Tensor:
        return torch.linalg.vecdot(x.flatten(2), y.flatten(2))

    box = region.box
    c = _window_rows(box.c, geom, out_hw, lidx)
    if region.norm == math.inf:
        val = dot(a, c) + sign * dot(a.abs(), _window_rows(box.r, geom, out_hw, lidx))
    else:
        x0 = _window_rows(region.x0, geom, out_hw, lidx)
        val = dot(a, x0) + sign * a.flatten(2).norm(dim=2) * region.eps.reshape(-1, 1)
        if region.domain is not None:
            vb = dot(a, c) + sign * dot(a.abs(), _window_rows(box.r, geom, out_hw, lidx))
            val = torch.maximum(val, vb) if sign < 0 else torch.minimum(val, vb)
    return val.expand(nb, -1) if val.shape[0] != nb else val
