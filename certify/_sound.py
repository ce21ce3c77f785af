"""Sound bound propagation (``sound=True``): IBP, CROWN and CROWN-IBP with rigorous rounding-error bounds.

Guarantee: for every real input ``x'`` in the region (the L-inf or L2 ball of real radius ``eps``
around the float input, intersected with the domain box), the exact real output of the network
whose parameters are the stored floats (each layer evaluated in exact real arithmetic: ``W x + b``,
``(x - mean) / std``, ``gamma (x - mean) / sqrt(var + eps) + beta``, window means, ReLU) lies
inside the returned float64 bounds. Sigmoid and tanh additionally assume torch's float64
``sigmoid``/``tanh``/``log``/``atanh`` are accurate to ``2**-40`` (absolute; they are accurate to a
few ulps), which is not proven here.

How (see :mod:`certify._rounding` for the arithmetic model):

* intervals are float pairs ``[lo, hi]`` read as real intervals; element-wise steps round each
  end outward (one ``nextafter`` per operation);
* an affine layer maps the enclosing centre/radius ``(c, r)`` to ``fl(W c + b)`` and a radius that
  adds the a-priori error of that product, ``|W| (r + gamma |c|) + gamma |b|`` (one product with
  ``|W|``, as IBP does anyway), itself bounded above;
* a CROWN backward pass keeps its bias as a rigorous lower bound: each step ``Lambda' = fl(Lambda W)``
  subtracts ``|Lambda| . h`` with ``h >= (gamma |W| + |W* - W|) |z|max`` (``|z|max`` from the sound
  intervals of the step's input, ``W*`` the exact parameters), so the rounded coefficients are
  as good as exact ones. ReLU upper lines are recomputed so that the rounded slope and intercept
  are a valid relaxation; the lower slope is exactly 0 or 1.
* concretisation bounds ``Lambda . c``, ``|Lambda| . r`` and ``||Lambda||_2`` outward.

Upper bounds are ``-lower(-C)``. Conv layers use ``unfold``/``fold`` and matrix products (sums of
products on every device; no Winograd/FFT algorithms whose error the bound does not cover).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from certify import _memory, _softmax_alt
from certify._graph import ACTIVATIONS, NONLINEAR, SCALAR_OPS, Graph, Node, UnsupportedLayerError
from certify._layers import (
    SCALAR_FNS,
    _check_domain,
    maxpool_backward,
    maxpool_forward,
    maxpool_relax,
    softmax_backward,
)
from certify._rounding import ETA, U, check_arithmetic, down, gamma, sum_upper, up, up_float
from certify._sound_fns import sound_lines, sound_range
from certify._sound_softmax import softmax_step_error, sound_softmax_range, sound_softmax_relax

__all__ = ["sound_bounds"]

INF = math.inf
_G1 = gamma(1)
_G2 = gamma(2)
#: assumed absolute accuracy of torch's float64 sigmoid/tanh/log/atanh (they are accurate to a few ulps)
SMOOTH_SLACK = 2.0**-40
#: dense matrices for conv backward passes up to this many entries (faster than fold at this size; a speed knob)
DENSE_MAX = 1 << 19
#: inputs per chunk: at most this many bytes of (widest node)^2 float64 entries per chunk (a memory cap: lowered
#: at call time to what the memory available allows, ``certify._memory.units``, with ``SOUND_COPIES`` tensors of
#: a chunk's coefficients held at once)
SOUND_CHUNK_BYTES = 1 << 29
SOUND_COPIES = 8


# ----------------------------------------------------------------------------------------------
# exact parameters: stored weights plus a bound on their distance to the exact layer parameters
# ----------------------------------------------------------------------------------------------

def _imul(alo: Tensor, ahi: Tensor, blo: Tensor, bhi: Tensor) -> tuple[Tensor, Tensor]:
    """Outward-rounded interval product (an infinite end times 0 is 0: the values are finite reals)."""
    ps = torch.stack(torch.broadcast_tensors(alo * blo, alo * bhi, ahi * blo, ahi * bhi))
    bad = (torch.isnan(alo) | torch.isnan(ahi)) | (torch.isnan(blo) | torch.isnan(bhi))  # NaN bounds stay NaN
    ps = torch.where(torch.isnan(ps) & ~bad, torch.zeros_like(ps), ps)
    return down(ps.min(0).values), up(ps.max(0).values)


def _idiv_pos(alo: Tensor, ahi: Tensor, blo: Tensor, bhi: Tensor) -> tuple[Tensor, Tensor]:
    """Outward-rounded ``[a] / [b]`` with ``blo > 0``."""
    qs = torch.stack(torch.broadcast_tensors(alo / blo, alo / bhi, ahi / blo, ahi / bhi))
    return down(qs.min(0).values), up(qs.max(0).values)


def _dev(t: Tensor | None, lo: Tensor, hi: Tensor) -> Tensor:
    """Upper bound of ``max |p - t|`` over ``p`` in [lo, hi] (t = the stored rounded value)."""
    base = torch.zeros_like(lo) if t is None else t
    return up(torch.maximum(hi - base, base - lo)).clamp(min=0)


def _params(n: Node) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """(W, dW, b, db): the node's stored weight and bias and bounds on ``|W* - W|``, ``|b* - b|`` for the
    exact parameters ``W*``, ``b*`` (None: exact). Cached on the node."""
    ex = n.attrs.get("exact")
    if ex is None:
        return n.weight, None, n.bias, None
    hit: Any = n.derived.get("sound params")
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    kind = ex[0]
    w, b = n.weight, n.bias
    dw = db = None
    if kind == "normalize":  # (x - mean) / std = x * (1/std) - mean/std
        mean, std = ex[1], ex[2]
        one = torch.ones_like(std)
        wl, wh = _idiv_pos(one, one, std, std)
        bl, bh = _idiv_pos(-mean, -mean, std, std)
        dw, db = _dev(w, wl, wh), _dev(b, bl, bh)
    elif kind == "batchnorm":  # gamma (x - mean) / sqrt(var + eps) + beta
        mean, var, eps, gw, gb = ex[1:]
        vl, vh = down(var + eps), up(var + eps)
        sl, sh = down(torch.sqrt(vl.clamp(min=0))), up(torch.sqrt(vh))
        g = torch.ones_like(var) if gw is None else gw
        if bool((sl <= 0).any()):
            dw = db = torch.full_like(var, INF)
        else:
            wl, wh = _idiv_pos(g, g, sl, sh)  # min/max over the corners: any sign of gamma
            ml, mh = _imul(-mean, -mean, wl, wh)
            zero = torch.zeros_like(var)
            bl, bh = (ml, mh) if gb is None else (down(ml + gb), up(mh + gb))
            dw, db = _dev(w, wl, wh), _dev(b if b is not None else zero, bl, bh)
    elif kind == "avgpool":
        div = torch.tensor(ex[1], dtype=w.dtype, device=w.device)  # type: ignore[union-attr]
        one = torch.ones_like(div)
        wl, wh = _idiv_pos(one, one, div, div)
        dw = _dev(w, wl, wh)
    elif kind == "reciprocal":
        c = ex[1]
        one = torch.ones_like(c)
        q = one / c
        dw = _dev(w, down(q), up(q))
    elif kind == "bounds":  # enclosures of the exact parameters computed when the graph was built
        wl, wh, bl, bh = ex[1:]
        dw = None if wl is None else _dev(w, wl, wh)
        db = None if bl is None else _dev(b, bl, bh)
    elif kind == "scaled_bias":
        s, c = ex[1], ex[2]
        p = c * s
        db = _dev(b, down(p), up(p))
    out = (w, dw, b, db)
    if not torch.is_grad_enabled():
        n.derived["sound params"] = out  # type: ignore[assignment]
    return out


# ----------------------------------------------------------------------------------------------
# linear maps computed as sums of products (conv through unfold/fold)
# ----------------------------------------------------------------------------------------------

def _conv_geom(n: Node) -> dict[str, Any]:
    a = n.attrs
    return {"kernel_size": tuple(n.weight.shape[2:]), "dilation": a["dilation"],  # type: ignore[union-attr]
            "padding": a["padding"], "stride": a["stride"]}


def _fan(n: Node, in_shape: tuple[int, ...]) -> tuple[int, int]:
    """(forward dot length, backward dot length) of an affine node's weight product."""
    w = n.weight
    assert w is not None
    if n.op in ("linear", "dense"):
        return w.shape[1], w.shape[0]
    if n.op == "conv":
        k = math.prod(w.shape[2:])
        return w.shape[1] * k, w.shape[0] // n.attrs["groups"] * k * n.attrs["groups"]
    return 1, 1


def _fwd(n: Node, x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    """``w`` (the node's weight or its absolute value) applied to ``x`` (N, *in_shape), plus ``bias``."""
    b = x.shape[0]
    if n.op == "linear":
        return F.linear(x, w, bias)
    if n.op == "dense":
        return F.linear(x.reshape(b, -1), w, bias).reshape(b, *n.shape)
    if n.op == "conv":
        groups = n.attrs["groups"]
        cols = F.unfold(x, **_conv_geom(n))  # (N, C_in k, L): exact copies
        co = w.shape[0]
        out = torch.matmul(w.reshape(groups, co // groups, -1), cols.reshape(b, groups, -1, cols.shape[-1]))
        out = out.reshape(b, co, *n.shape[1:])
        return out if bias is None else out + bias.reshape(-1, 1, 1)
    raise AssertionError(n.op)


def _dense_of(n: Node, in_shape: tuple[int, ...]) -> Tensor:
    """Exact dense matrix (out_numel, in_numel) of a conv node (each entry a single weight)."""
    w = n.weight
    assert w is not None

    def make() -> Tensor:
        d = math.prod(in_shape)
        eye = torch.eye(d, dtype=w.dtype, device=w.device).reshape(d, *in_shape)
        return _fwd(n, eye, w, None).reshape(d, -1).t().contiguous()

    return n.derive("sound dense", make)


def _bwd(n: Node, a: Tensor, in_shape: tuple[int, ...]) -> Tensor:
    """``a`` (B, S, *n.shape) times the node's weight: coefficients at its input (B, S, *in_shape)."""
    b, s = a.shape[0], a.shape[1]
    w = n.weight
    assert w is not None
    if n.op == "linear":
        return torch.matmul(a, w)
    if n.op == "dense":
        return torch.matmul(a.reshape(b, s, -1), w).reshape(b, s, *in_shape)
    if n.op == "conv":
        if n.numel * math.prod(in_shape) <= DENSE_MAX:
            return torch.matmul(a.reshape(b, s, -1), _dense_of(n, in_shape)).reshape(b, s, *in_shape)
        groups = n.attrs["groups"]
        co = w.shape[0]
        a2 = a.reshape(b * s, groups, co // groups, -1)
        cols = torch.matmul(w.reshape(groups, co // groups, -1).transpose(1, 2), a2)  # (BS, g, Cg k, L)
        out = F.fold(cols.reshape(b * s, -1, a2.shape[-1]), output_size=in_shape[1:], **_conv_geom(n))
        return out.reshape(b, s, *in_shape)
    raise AssertionError(n.op)


def _bias_full(n: Node, b: Tensor) -> Tensor:
    """A bias (or bias error) of node ``n`` as a (1, *n.shape) tensor."""
    if n.op == "dense":
        return b.reshape(1, *n.shape)
    if n.op == "conv":
        b = b.reshape(-1, 1, 1)
    return b.expand(n.shape).unsqueeze(0)


def _fdot(a: Tensor, v: Tensor) -> Tensor:
    """Sum over node dims of ``a`` (B, S, *shape) times ``v`` (M, *shape) -> (max(B, M), S)."""
    b, s = a.shape[0], a.shape[1]
    a2 = a.reshape(b, s, -1)
    v2 = v.reshape(v.shape[0], -1)
    if b == 1 and v2.shape[0] > 1:
        return (a2[0] @ v2.t()).t()
    if v2.shape[0] == 1:
        return a2 @ v2[0]
    return torch.linalg.vecdot(a2, v2.unsqueeze(1))


# ----------------------------------------------------------------------------------------------
# forward: sound intervals of every node
# ----------------------------------------------------------------------------------------------

class Region:
    """The input region in float64: ball (x0, eps, norm) intersected with ``domain``; ``lo``/``hi`` an
    enclosing box of it (rounded outward)."""

    def __init__(self, x0: Tensor, eps: Tensor, norm: float, domain: tuple[float, float] | None) -> None:
        self.x0, self.eps, self.norm, self.domain = x0, eps, norm, domain
        e = eps.reshape(-1, *([1] * (x0.dim() - 1))).expand_as(x0)
        self.lo, self.hi = _add_down(x0, -e), _add_up(x0, e)
        if domain is not None:
            self.lo, self.hi = self.lo.clamp(min=domain[0]), self.hi.clamp(max=domain[1])


def _two_sum_err(a: Tensor, b: Tensor, s: Tensor) -> Tensor:
    """Exact ``(a + b) - s`` for ``s = fl(a + b)`` (Knuth's TwoSum; sign tells the rounding direction)."""
    bb = s - a
    return (a - (s - bb)) + (b - bb)


def _add_down(a: Tensor, b: Tensor) -> Tensor:
    """Largest float <= a + b (exact when the sum is a float)."""
    s = a + b
    return torch.where(_two_sum_err(a, b, s) < 0, down(s), s)


def _add_up(a: Tensor, b: Tensor) -> Tensor:
    s = a + b
    return torch.where(_two_sum_err(a, b, s) > 0, up(s), s)


def _centre_radius(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Floats (c, r) with [lo, hi] inside [c - r, c + r]."""
    c = (lo + hi) * 0.5
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
    return c, up(torch.maximum(hi - c, c - lo))


def _ibp_affine(n: Node, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    w, dw, b, db = _params(n)
    if n.op == "affine":  # element-wise: interval arithmetic with the exact parameters' intervals
        if w is not None:
            dwt = dw if dw is not None else torch.zeros_like(w)
            lo, hi = _imul(lo, hi, down(w - dwt), up(w + dwt))
        if b is not None:
            dbt = db if db is not None else torch.zeros_like(b)
            lo, hi = down(lo + down(b - dbt)), up(hi + up(b + dbt))
        return lo, hi
    assert w is not None
    nf, _ = _fan(n, ())
    g = gamma(nf + 1)
    c, r = _centre_radius(lo, hi)
    yc = _fwd(n, c, w, b)
    ac = c.abs()
    v = up(r + up(g * ac))
    rad = sum_upper(_fwd(n, v, n.derive("|w|", w.abs), None), nf)  # >= |W| r + gamma |W| |c|
    extra = (nf + 1) * ETA
    if b is not None:
        rad = up(rad + up(g * _bias_full(n, b).abs()))
    if dw is not None:  # |W* - W| (|c| + r)
        rad = up(rad + sum_upper(_fwd(n, up(ac + r), dw.expand_as(w), None), nf))
    if db is not None:
        rad = up(rad + _bias_full(n, db))
    rad = up(rad + extra)
    return down(yc - rad), up(yc + rad)


def _ibp_l2_direct(n: Node, region: Region, in_shape: tuple[int, ...]) -> tuple[Tensor, Tensor] | None:
    """Bounds of an affine layer applied directly to the L2 ball: ``W x0 + b -/+ ||W_row||_2 eps`` (a linear layer
    on the last dimension of a (..., E) input too: each token's projection of the ball is the E-dimensional ball)."""
    w, dw, b, db = _params(n)
    if n.op not in ("linear", "dense", "conv") or w is None:
        return None
    nf, _ = _fan(n, ())
    g = gamma(nf + 1)
    x0 = region.x0.reshape(region.x0.shape[0], *in_shape)
    yc = _fwd(n, x0, w, b)
    err = sum_upper(_fwd(n, x0.abs(), n.derive("|w|", w.abs), None), nf)
    err = up(err * g)
    if b is not None:
        err = up(err + up(g * _bias_full(n, b).abs()))
    ones = torch.ones((1, *in_shape), dtype=w.dtype, device=w.device)
    sq = sum_upper(_fwd(n, ones, w * w, None), nf)  # w * w is rounded: bound it by (1 + u) w^2
    norm = up(torch.sqrt(up(sq * (1 + 2 * U))))
    if dw is not None:  # exact W* = W + D, |D| <= dw: ||W*_row|| <= ||W_row|| + ||dw_row||, |D x0| <= dw |x0|
        dwf = dw.expand_as(w)
        sq_d = sum_upper(_fwd(n, ones, up(dwf * dwf), None), nf)
        norm = up(norm + up(torch.sqrt(up(sq_d * (1 + 2 * U)))))
        err = up(err + sum_upper(_fwd(n, x0.abs(), dwf, None), nf))
    if db is not None:
        err = up(err + _bias_full(n, db))
    e = region.eps.reshape(-1, *([1] * len(n.shape)))
    rad = up(up(up(norm * e) + err) + (nf + 1) * ETA)
    return down(yc - rad), up(yc + rad)


def _smooth(op: str, t: Tensor) -> Tensor:
    return torch.sigmoid(t) if op == "sigmoid" else torch.tanh(t)


def _ibp_node(g: Graph, i: int, box: list[tuple[Tensor, Tensor] | None], region: Region,
              direct: list[bool]) -> tuple[Tensor, Tensor]:
    n = g.nodes[i]
    lo, hi = box[n.inputs[0]]  # type: ignore[misc]
    op = n.op
    if op == "cat":
        ins = [box[j] for j in n.inputs]
        d = n.attrs["dim"] + 1
        los = [p[0] for p in ins if p is not None]
        his = [p[1] for p in ins if p is not None]
        return torch.cat(los, dim=d), torch.cat(his, dim=d)
    if op == "reshape":
        b = lo.shape[0]
        return lo.reshape(b, *n.shape), hi.reshape(b, *n.shape)
    if op in ("permute", "slice"):  # entries moved: exact
        from certify._graph import apply_node

        return apply_node(n, [lo]), apply_node(n, [hi])
    if op in ("linear", "conv", "dense", "affine"):
        out = _ibp_affine(n, lo, hi)
        if region.norm == 2 and direct[n.inputs[0]]:
            ex = _ibp_l2_direct(n, region, g.nodes[n.inputs[0]].shape)
            if ex is not None:
                out = (torch.maximum(out[0], ex[0]), torch.minimum(out[1], ex[1]))
        return out
    if op == "add":
        lo2, hi2 = box[n.inputs[1]]  # type: ignore[misc]
        ca, cb = n.attrs["coef"]
        parts = []
        for (pl, ph), c in (((lo, hi), ca), ((lo2, hi2), cb)):
            if c == 1.0:
                parts.append((pl, ph))
            elif c == -1.0:
                parts.append((-ph, -pl))
            else:
                ct = torch.tensor(c, dtype=pl.dtype, device=pl.device)
                parts.append(_imul(pl, ph, ct, ct))
        return down(parts[0][0] + parts[1][0]), up(parts[0][1] + parts[1][1])
    if op == "relu":
        return lo.clamp(min=0), hi.clamp(min=0)
    if op in ("sigmoid", "tanh"):
        floor = 0.0 if op == "sigmoid" else -1.0
        return ((_smooth(op, lo) - SMOOTH_SLACK).clamp(min=floor), (_smooth(op, hi) + SMOOTH_SLACK).clamp(max=1.0))
    if op == "maxpool":  # max is monotone and exact on floats
        return maxpool_forward(lo, n.attrs), maxpool_forward(hi, n.attrs)
    if op in SCALAR_OPS:
        lo, hi = _scalar_input(n, lo, hi)
        return sound_range(op, n.attrs.get("param"), lo, hi)
    if op == "mul":
        lo2, hi2 = box[n.inputs[1]]  # type: ignore[misc]
        return _imul(lo, hi, lo2, hi2)
    if op in ("softmax", "log_softmax"):
        return sound_softmax_range(lo, hi, op == "log_softmax")
    raise AssertionError(op)


def _scalar_input(n: Node, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """The input interval of an element-wise function node: clamped to its floor (a variance + eps, a sum
    of exponentials one of which is exp(0): true in exact arithmetic) and checked against its domain."""
    floor = n.attrs.get("floor")
    if floor is not None:
        lo, hi = lo.clamp(min=floor), hi.clamp(min=floor)
    _check_domain(SCALAR_FNS[n.op], lo, n.name)
    return lo, hi


# ----------------------------------------------------------------------------------------------
# relaxations whose rounded parameters are valid
# ----------------------------------------------------------------------------------------------

class _Relax:
    """Lower line ``d_l z + b_l`` and upper line ``d_u z + b_u`` valid on [l, u] for the float values."""

    def __init__(self, op: str, l: Tensor, u: Tensor, node: Node | None = None) -> None:  # noqa: E741
        if op in SCALAR_OPS:
            assert node is not None
            l, u = _scalar_input(node, l, u)  # noqa: E741
            self.d_l, self.b_l, self.d_u, self.b_u = sound_lines(op, node.attrs.get("param"), l, u)
        elif op == "relu":
            # the default relaxation (certify.crown): upper slope ub/(ub - lb), lower slope 1[d_u > 0.5]
            lb = l.clamp(max=0)
            ub = torch.maximum(u.clamp(min=0), lb + 1e-8)
            d_u = ub / (ub - lb)  # in (0, 1]
            # intercept recomputed outward: the line lies above relu at both ends (relu is convex)
            b_u = torch.maximum(up(-l * d_u), up(u - down(d_u * u)))
            b_u = torch.where((l >= 0) & (d_u == 1), torch.zeros_like(b_u), b_u)
            d_u = torch.where(u <= 0, torch.zeros_like(d_u), d_u)
            b_u = torch.where(u <= 0, torch.zeros_like(b_u), b_u)
            self.d_l, self.d_u, self.b_u = (d_u > 0.5).to(d_u.dtype), d_u, b_u
            self.b_l = torch.zeros_like(b_u)
        else:
            from certify.crown import smooth_relaxation

            self.d_l, b_l, self.d_u, b_u = smooth_relaxation(op, l, u)
            big = torch.maximum(l.abs(), u.abs())
            self.b_l = down(b_l - SMOOTH_SLACK * (2 + self.d_l * big))
            self.b_u = up(b_u + SMOOTH_SLACK * (2 + self.d_u * big))


# ----------------------------------------------------------------------------------------------
# backward (CROWN): lower bound of A . node with a rigorous bias
# ----------------------------------------------------------------------------------------------

class _Ctx:
    """Per-chunk state: sound intervals, relaxations, magnitude bounds and per-node error vectors."""

    def __init__(self, g: Graph, region: Region) -> None:
        self.g, self.region = g, region
        self.box: list[tuple[Tensor, Tensor] | None] = [None] * len(g.nodes)
        self.box[0] = (region.lo, region.hi)
        self.relax: dict[int, Any] = {}
        self._h: dict[int, tuple[Any, ...]] = {}
        #: coefficient rows per backward pass (None: all at once); set where one input's rows exceed the budget
        self.row_step: int | None = None

    def zmax(self, j: int) -> Tensor:
        lo, hi = self.box[j]  # type: ignore[misc]
        m = torch.maximum(lo.abs(), hi.abs())
        return torch.where(torch.isnan(m), torch.full_like(m, INF), m)

    def zsum(self, j: int) -> Tensor:
        """Upper bound (N,) of the sum of ``zmax(j)`` over the node."""
        zj = self.zmax(j)
        return sum_upper(zj.reshape(zj.shape[0], -1).sum(1), max(1, zj[0].numel()))

    def step_error(self, i: int) -> tuple[Tensor, Tensor]:
        """(h, c) for node i: pushing ``Lambda`` through it costs at most ``|Lambda| . h + c`` (per row)."""
        hit = self._h.get(i)
        if hit is not None:
            return hit  # type: ignore[return-value]
        n = self.g.nodes[i]
        j = n.inputs[0]
        zj = self.zmax(j)
        zsum = self.zsum(j)
        d = n.numel
        gd = gamma(d + 1)
        op = n.op
        if op in ("linear", "conv", "dense"):
            w, dw, b, db = _params(n)
            assert w is not None
            nf, m = _fan(n, self.g.nodes[j].shape)
            if n.op == "conv" and n.numel * zj[0].numel() <= DENSE_MAX:
                m = n.numel  # the backward product runs on the dense matrix
            h = up(gamma(m) * sum_upper(_fwd(n, zj, n.derive("|w|", w.abs), None), nf))
            if dw is not None:
                h = up(h + sum_upper(_fwd(n, zj, dw.expand_as(w), None), nf))
            if b is not None:
                h = up(h + up(gd * _bias_full(n, b).abs()))
            if db is not None:
                h = up(h + _bias_full(n, db))
            c = up(up(zsum * (m * ETA)) + d * ETA)
        elif op == "affine":
            w, dw, b, db = _params(n)
            h = torch.zeros_like(zj)
            if w is not None:
                h = up(up(_G1 * w.abs()) * zj)
                if dw is not None:
                    h = up(h + up(dw * zj))
            if b is not None:
                h = up(h + up(gd * b.abs()))
            if db is not None:
                h = up(h + db)
            c = up(up(zsum * ETA) + d * ETA)
        elif op == "maxpool":  # scatter sums of the coefficients and the bias: sums of <= d products
            r = self.relax[i]
            zin = zj.reshape(zj.shape[0], -1).gather(1, r.idx)
            h = up(gamma(d + 1) * up(zin + r.ub.abs())).reshape(zj.shape[0], *n.shape)
            c = torch.full_like(zsum, up_float(d * ETA))
        elif op == "mul":
            h, c = _mul_error(self, i)
        elif op in ("softmax", "log_softmax"):
            h, c = softmax_step_error(self.relax[i], zj, zsum, d)
        elif op in ACTIVATIONS or op in SCALAR_OPS:  # the bias is two dot products of length d, summed
            r = self.relax[i]
            dmax = torch.maximum(r.d_l.abs(), r.d_u.abs())
            bmax = torch.maximum(r.b_l.abs(), r.b_u.abs())
            h = up(up(up(_G2 * dmax) * zj) + up(gamma(2 * d + 1) * bmax))
            c = up(up(zsum * ETA) + d * ETA)
        else:
            raise AssertionError(op)
        h = h.expand(zj.shape[0], *n.shape) if h.shape[1:] != n.shape else h
        self._h[i] = (h, c)
        return h, c


class _MulRelax:
    """McCormick planes of ``z = x * y`` on the boxes [lx, ux] x [ly, uy] (Shi et al. 2020):
    ``z >= ly x + lx y + cl`` and ``z <= uy x + lx y + cu`` with ``cl <= -lx ly`` and ``cu >= -lx uy``
    (the constants rounded outward, so the rounded planes are valid)."""

    def __init__(self, x: tuple[Tensor, Tensor], y: tuple[Tensor, Tensor]) -> None:
        self.lx, self.ux = x
        self.ly, self.uy = y
        self.cl = down(-(self.lx * self.ly))
        self.cu = up(-(self.lx * self.uy))


def _sum_to(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``t`` (B, S, *z_shape) over the dimensions where ``shape`` is 1 (broadcast)."""
    dims = [2 + d for d, (p, q) in enumerate(zip(shape, t.shape[2:])) if p == 1 and q != 1]
    return t.sum(dim=dims, keepdim=True) if dims else t


def _mul_back(r: _MulRelax, a: Tensor, n: Node, nodes: list[Node]) -> list[tuple[int, Tensor]]:
    """Lower pass through ``z = x * y``: positive coefficients take the lower plane, negative ones the upper;
    returns [(x, A_x), (y, A_y), (-1, bias (N, S))]."""
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    ax = pos * r.ly.unsqueeze(1) + neg * r.uy.unsqueeze(1)  # one of the two products is 0: one rounding
    ay = a * r.lx.unsqueeze(1)
    bias = pos * r.cl.unsqueeze(1) + neg * r.cu.unsqueeze(1)
    jx, jy = n.inputs
    return [(jx, _sum_to(ax, nodes[jx].shape)), (jy, _sum_to(ay, nodes[jy].shape)),
            (-1, bias.reshape(bias.shape[0], bias.shape[1], -1).sum(-1))]


def _mul_error(ctx: _Ctx, i: int) -> tuple[Tensor, Tensor]:
    """(h, c) of a product node: each coefficient entry is one rounded product, summed over the
    broadcast dimensions (r terms), and the bias a dot product of length d."""
    n = ctx.g.nodes[i]
    r = ctx.relax[i]
    jx, jy = n.inputs
    d = n.numel
    rx = d // max(1, ctx.g.nodes[jx].numel)
    ry = d // max(1, ctx.g.nodes[jy].numel)
    zx, zy = ctx.zmax(jx), ctx.zmax(jy)
    my = torch.maximum(r.ly.abs(), r.uy.abs())
    cmax = torch.maximum(r.cl.abs(), r.cu.abs())
    h = up(up(up(gamma(rx + 2) * my) * zx) + up(up(gamma(ry + 2) * r.lx.abs()) * zy))
    h = up(h + up(gamma(d + 1) * cmax))
    c = up(up(up(ctx.zsum(jx) * (rx * ETA)) + up(ctx.zsum(jy) * (ry * ETA))) + 2 * d * ETA)
    return h, c


def _lower(ctx: _Ctx, start: int, a0: Tensor, stop: int | None = None, beta0: Tensor | None = None) -> Tensor:
    """Rigorous lower bound (N, S) of ``a0 . node[start]`` (a0 (B, S, *shape), B in {1, N}) over the region.

    ``stop``: concretise at that node with its interval (IBP of a folded spec) instead of the input.
    """
    g = ctx.g
    nodes = g.nodes
    nb = ctx.region.x0.shape[0]
    s = a0.shape[1]
    dt, dev = a0.dtype, a0.device
    # a lower bound of the accumulated bias terms
    beta = torch.zeros((nb, s), dtype=dt, device=dev) if beta0 is None else beta0.expand(nb, s)

    def sub(v: Tensor) -> None:
        nonlocal beta
        beta = down(beta - v)

    def add_bias(t: Tensor) -> None:
        nonlocal beta
        beta = down(beta + t)

    pending: dict[int, Tensor] = {start: a0}
    for i in range(start, 0, -1):
        if i not in pending:
            continue
        a = pending.pop(i)
        if i == stop:
            pending[i] = a
            break
        n = nodes[i]
        op = n.op
        if op == "reshape":
            outs = [(n.inputs[0], a.reshape(a.shape[0], s, *nodes[n.inputs[0]].shape))]
        elif op in ("permute", "slice"):  # entries moved back (exact)
            from certify.crown import _back_affine

            outs = [(n.inputs[0], _back_affine(n, a, nodes[n.inputs[0]].shape)[0])]
        elif op == "cat":  # each input gets its slice (exact)
            sizes = [nodes[j].shape[n.attrs["dim"]] for j in n.inputs]
            outs = list(zip(n.inputs, a.split(sizes, dim=n.attrs["dim"] + 2)))
        elif op == "add":
            outs = []
            for j, c in zip(n.inputs, n.attrs["coef"]):
                if c in (1.0, -1.0):
                    outs.append((j, a if c == 1.0 else -a))
                else:  # one rounding per entry: |fl(a c) - a c| <= gamma_1 |fl(a c)| + ETA
                    t = a * c
                    zj = ctx.zmax(j)
                    sub(up(sum_upper(_fdot(t.abs(), up(_G1 * zj)), zj[0].numel()) + up(ctx.zsum(j) * ETA)))
                    outs.append((j, t))
        else:
            h, cst = ctx.step_error(i)
            aa = a.abs()
            sub(up(sum_upper(_fdot(aa, h), n.numel) + cst.reshape(-1, 1)))
            j = n.inputs[0]
            in_shape = nodes[j].shape
            if op == "maxpool":  # coefficients moved to each window's i* (summed where windows overlap)
                moved, _, bias, _ = maxpool_backward(a, None, ctx.relax[i], in_shape)
                assert moved is not None and bias is not None
                new = moved
                add_bias(bias)
            elif op == "mul":
                pushed = _mul_back(ctx.relax[i], a, n, nodes)
                add_bias(pushed[2][1])
                outs = pushed[:2]
            elif op in ("softmax", "log_softmax"):  # the planes' products (errors in step_error), bias added rounded down
                moved_s, _, bias_s, _ = softmax_backward(a, None, ctx.relax[i])
                assert moved_s is not None and bias_s is not None
                new = moved_s
                add_bias(bias_s)
            elif op in ACTIVATIONS or op in SCALAR_OPS:
                r = ctx.relax[i]
                dl, du = r.d_l.unsqueeze(1), r.d_u.unsqueeze(1)
                neg = a.clamp(max=0)
                new = a * torch.where(a >= 0, dl, du)  # one product per entry, one rounding
                if op == "relu":  # b_l = 0
                    add_bias(_fdot(neg, r.b_u))
                else:
                    add_bias(_fdot(a - neg, r.b_l) + _fdot(neg, r.b_u))
            else:
                w, _, b, _ = _params(n)
                if op == "affine":
                    new = a if w is None else a * w
                else:
                    new = _bwd(n, a, in_shape)
                if b is not None:
                    add_bias(_fdot(a, _bias_full(n, b)))
            if op != "mul":
                outs = [(j, new)]
        for j, t in outs:
            if j in pending:
                tot = pending[j] + t
                zj = ctx.zmax(j)
                sub(sum_upper(_fdot(tot.abs(), up(_G1 * zj)), zj[0].numel()))
                pending[j] = tot
            else:
                pending[j] = t
    if stop and stop in pending:  # (stop 0 is the input: concretised over the region below)
        box = ctx.box[stop]
        assert box is not None
        return down(_concretize_box(pending[stop], box[0], box[1], nb) + beta)
    a_in = pending.get(0)
    if a_in is None:
        return beta
    return down(_concretize(ctx.region, a_in, nb) + beta)


def _concretize_box(a: Tensor, lo: Tensor, hi: Tensor, nb: int) -> Tensor:
    """Lower bound of ``min a . x`` over the box [lo, hi]: ``a . c - |a| . r``, rounded outward."""
    d = lo[0].numel()
    c, r = _centre_radius(lo, hi)
    g = gamma(d)
    v = up(r + up(g * c.abs()))
    dev = up(sum_upper(_fdot(a.abs(), v), d) + d * ETA)
    val = down(_fdot(a, c) - dev)
    return val.expand(nb, a.shape[1]) if val.shape[0] != nb else val


def _concretize(region: Region, a: Tensor, nb: int) -> Tensor:
    val = _concretize_box(a, region.lo, region.hi, nb)
    if region.norm == 2:
        d = region.x0[0].numel()
        g = gamma(d)
        b, s = a.shape[0], a.shape[1]
        sq = sum_upper((a.reshape(b, s, -1) ** 2).sum(2), d)
        norm = up(torch.sqrt(up(sq * (1 + 2 * U))))
        err = up(sum_upper(_fdot(a.abs(), region.x0.abs()), d) * g)
        dev = up(up(up(norm * region.eps.reshape(-1, 1)) + err) + d * ETA)
        v2 = down(_fdot(a, region.x0) - dev)
        val = torch.maximum(val, v2)  # both enclose the region (ball inside the box)
    return val


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------

def _both(ctx: _Ctx, start: int, a: Tensor, need_lower: bool = True, need_upper: bool = True,
          stop: int | None = None, beta0: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
    step = ctx.row_step
    if step is not None and a.shape[1] > step:  # rows are independent: in chunks of ctx.row_step rows
        parts = [_both(ctx, start, a[:, c : c + step], need_lower, need_upper, stop,
                       None if beta0 is None else beta0[:, c : c + step]) for c in range(0, a.shape[1], step)]
        return (torch.cat([p[0] for p in parts], 1) if need_lower else None,  # type: ignore[misc]
                torch.cat([p[1] for p in parts], 1) if need_upper else None)  # type: ignore[misc]
    lo = _lower(ctx, start, a, stop, beta0) if need_lower else None
    hi = -_lower(ctx, start, -a, stop, None if beta0 is None else -beta0) if need_upper else None
    return lo, hi


def _eye_rows(d: int, shape: tuple[int, ...], step: int | None, dt: torch.dtype, dev: torch.device
              ) -> list[tuple[int, Tensor]]:
    """The identity's rows (1, S, *shape), all at once or in chunks of ``step`` rows: (first row, rows)."""
    step = d if step is None else step
    out = []
    for c in range(0, d, step):
        m = min(step, d - c)
        rows = torch.zeros((m, d), dtype=dt, device=dev)
        rows[torch.arange(m, device=dev), torch.arange(c, c + m, device=dev)] = 1.0
        out.append((c, rows.reshape(1, m, *shape)))
    return out


def _rows(ctx: _Ctx, i: int, idx: Tensor) -> tuple[int, Tensor, Tensor | None] | None:
    """Neurons ``idx`` (N, S) of affine node i as (its input j, coefficient rows at j, bias (N, S)), read
    exactly from its weights (no product, no rounding); None where the node is not of that kind."""
    n = ctx.g.nodes[i]
    w, dw, b, db = _params(n)
    if w is None or dw is not None or db is not None or n.op not in ("linear", "dense", "conv"):
        return None
    j = n.inputs[0]
    in_shape = ctx.g.nodes[j].shape
    if n.op == "linear" and len(n.shape) != 1:
        return None
    if n.op == "conv":
        if n.numel * math.prod(in_shape) > DENSE_MAX:
            return None
        w = _dense_of(n, in_shape)
    rows = w[idx].reshape(*idx.shape, *in_shape)
    bias = None if b is None else _bias_full(n, b).reshape(-1)[idx]
    return j, rows, bias


def _flags(g: Graph) -> tuple[list[bool], list[int]]:
    direct: list[bool] = []
    for n in g.nodes:
        direct.append(n.op == "input" or (n.op == "reshape" and direct[n.inputs[0]]))
    n_ops = [0] * len(g.nodes)
    for i, n in enumerate(g.nodes):
        if n.op != "input":
            n_ops[i] = 99 if n.op == "add" else max(n_ops[j] for j in n.inputs) + (n.op != "reshape")
    return direct, n_ops


def _run(g: Graph, region: Region, spec: Tensor | None, method: str, need_lower: bool, need_upper: bool,
         compare_ibp: bool, row_step: int | None = None) -> tuple[Tensor, Tensor]:
    nodes = g.nodes
    nb = region.x0.shape[0]
    ctx = _Ctx(g, region)
    ctx.row_step = row_step
    direct, n_ops = _flags(g)
    pre = set(g.preactivations())
    affine_in = g.affine_in_input()
    crown = method in ("crown", "crown-ibp")
    out = g.output
    # as the default engine: every neuron's bound matters to max pooling, element-wise functions and
    # products (not only those unstable for a ReLU), and their CROWN bounds are intersected with IBP's
    pooled = {n.inputs[0] for n in nodes if n.op == "maxpool"}
    general = {j for n in nodes if n.op in (*SCALAR_OPS, "mul", "softmax", "log_softmax") for j in n.inputs}
    # sigmoid/tanh relax on every neuron's interval: all rows get CROWN bounds (as the default engine)
    smooth_fed = {n.inputs[0] for n in nodes if n.op in ("sigmoid", "tanh")}
    for i in range(1, len(nodes)):
        n = nodes[i]
        if n.op in NONLINEAR and crown:
            ctx.relax[i] = _make_relax(ctx, n)
        lo, hi = _ibp_node(g, i, ctx.box, region, direct)
        elementwise = n.op in NONLINEAR and n.op not in ("maxpool", "mul", "softmax", "log_softmax")
        if (i in pre and method == "crown" and not (affine_in[i] and n_ops[i] <= 1)
                and not (i in pooled and n.op in NONLINEAR) and not (i in general and elementwise)):
            every = i in pooled or i in general
            lo_n, hi_n = _intermediate(ctx, i, lo, hi, exact=affine_in[i] or every or i in smooth_fed,
                                       compare_ibp=compare_ibp)
            # intersected with IBP: every neuron's bound of pooling, element-wise functions (sigmoid and tanh
            # included) and products, and with compare_ibp every bound
            inter = every or i in smooth_fed or compare_ibp
            lo, hi = (torch.maximum(lo, lo_n), torch.minimum(hi, hi_n)) if inter else (lo_n, hi_n)
        ctx.box[i] = (lo, hi)
    dt, dev = region.x0.dtype, region.x0.device
    k = nodes[out].numel
    if spec is None:
        a = torch.eye(k, dtype=dt, device=dev).reshape(1, k, *nodes[out].shape)
    else:
        a = spec.reshape(nb, spec.shape[1], *nodes[out].shape)
    on = nodes[out]
    ibp_stop = on.inputs[0] if on.op in ("linear", "dense", "conv", "affine") else out
    if crown:
        lo_c, hi_c = _both(ctx, out, a, need_lower, need_upper)
        if compare_ibp:
            lo_i, hi_i = _both(ctx, out, a, need_lower, need_upper, stop=ibp_stop)
            lo_c = None if lo_c is None else torch.maximum(lo_c, lo_i)  # type: ignore[arg-type]
            hi_c = None if hi_c is None else torch.minimum(hi_c, hi_i)  # type: ignore[arg-type]
    elif spec is None:
        lo_o, hi_o = ctx.box[out]  # type: ignore[misc]
        lo_c, hi_c = lo_o.reshape(nb, -1), hi_o.reshape(nb, -1)
    else:
        lo_c, hi_c = _both(ctx, out, a, need_lower, need_upper, stop=ibp_stop)
    s = a.shape[1]
    lo_c = torch.full((nb, s), -INF, dtype=dt, device=dev) if lo_c is None else lo_c
    hi_c = torch.full((nb, s), INF, dtype=dt, device=dev) if hi_c is None else hi_c
    return lo_c.expand(nb, s), hi_c.expand(nb, s)


def _make_relax(ctx: _Ctx, n: Node) -> Any:
    lo, hi = ctx.box[n.inputs[0]]  # type: ignore[misc]
    if n.op == "maxpool":  # exact operations on the floats (max, comparisons, indices)
        return maxpool_relax(lo, hi, n.attrs)
    if n.op == "mul":
        return _MulRelax((lo, hi), ctx.box[n.inputs[1]])  # type: ignore[arg-type]
    if n.op in ("softmax", "log_softmax"):
        return sound_softmax_relax(lo, hi, n.op == "log_softmax")
    return _Relax(n.op, lo, hi, n)


def _intermediate(ctx: _Ctx, i: int, lo: Tensor, hi: Tensor, *, exact: bool,
                  compare_ibp: bool) -> tuple[Tensor, Tensor]:
    """CROWN bounds of pre-activation node i: all neurons if it is affine in the input, else the neurons
    unstable under the (sound) IBP bounds, as the default engine does."""
    n = ctx.g.nodes[i]
    nb = lo.shape[0]
    d = n.numel
    dt, dev = lo.dtype, lo.device
    if exact:  # every neuron, in chunks of rows where one input's rows exceed the budget (ctx.row_step)
        parts = [_both(ctx, i, a) for _, a in _eye_rows(d, n.shape, ctx.row_step, dt, dev)]
        cl = torch.cat([p[0] for p in parts], 1)  # type: ignore[misc]
        ch = torch.cat([p[1] for p in parts], 1)  # type: ignore[misc]
        return cl.reshape(lo.shape), ch.reshape(hi.shape)
    l2, h2 = lo.reshape(nb, -1), hi.reshape(nb, -1)
    unstable = (l2 < 0) & (h2 > 0)
    counts = unstable.sum(1)
    s = int(counts.max()) if nb else 0
    if s == 0:
        return lo, hi
    idx = torch.argsort(unstable.to(torch.int8), dim=1, descending=True, stable=True)[:, :s]
    valid = torch.arange(s, device=dev).unsqueeze(0) < counts.unsqueeze(1)
    step = s if ctx.row_step is None else ctx.row_step
    cls, chs = [], []
    for c in range(0, s, step):  # the rows in chunks (ctx.row_step) where one input's rows exceed the budget
        ic = idx[:, c : c + step]
        folded = _rows(ctx, i, ic)
        if folded is not None:
            j, a, b0 = folded
            pl, ph = _both(ctx, j, a, beta0=b0)
        else:
            a = F.one_hot(ic, d).to(dt).reshape(nb, ic.shape[1], *n.shape)
            pl, ph = _both(ctx, i, a)
        assert pl is not None and ph is not None
        cls.append(pl)
        chs.append(ph)
    cl, ch = torch.cat(cls, 1), torch.cat(chs, 1)
    ref_l, ref_h = l2.gather(1, idx), h2.gather(1, idx)
    cl = torch.where(valid, cl, ref_l)
    ch = torch.where(valid, ch, ref_h)
    if compare_ibp:
        cl, ch = torch.maximum(cl, ref_l), torch.minimum(ch, ref_h)
    return l2.scatter(1, idx, cl).reshape(lo.shape), h2.scatter(1, idx, ch).reshape(hi.shape)


SUPPORTED = ("input", "linear", "conv", "dense", "affine", "reshape", "permute", "slice", "add", "cat", *NONLINEAR)


def sound_bounds(g: Graph, x0: Tensor, eps: Tensor, spec: Tensor | None, *, norm: float, method: str,
                 domain: tuple[float, float] | None, need_lower: bool = True, need_upper: bool = True,
                 compare_ibp: bool = False, best_of: bool = True) -> tuple[Tensor, Tensor]:
    """Rigorous float64 bounds (N, S) of ``spec @ f(x')`` (spec (N, S, K) float64; None: the outputs)
    for every real ``x'`` in the region; ``g`` must be built in float64. Processed in chunks of inputs.

    ``best_of``: CROWN / CROWN-IBP on a graph with softmax / log-softmax take the element-wise best of the
    log-sum-exp planes, the element-wise decomposition (CROWN only) and IBP, as the default engine does
    (:mod:`certify._softmax_alt`); each is rigorous, so their intersection is."""
    if x0.dtype != torch.float64:
        raise TypeError(f"Expected float64 inputs for the sound path, got {x0.dtype}")
    if best_of and method in ("crown", "crown-ibp") and _softmax_alt.SOFTMAX_BEST_OF and _softmax_alt.has_softmax(g):
        kw = {"norm": norm, "domain": domain, "need_lower": need_lower, "need_upper": need_upper,
              "compare_ibp": compare_ibp, "best_of": False}
        lo, hi = sound_bounds(g, x0, eps, spec, method=method, **kw)  # type: ignore[arg-type]
        others: list[tuple[Tensor | None, Tensor | None]] = []
        dec = _softmax_alt.decomposed(g, x0.dtype, x0.device) if method == "crown" else None
        if dec is not None:
            try:
                others.append(sound_bounds(dec, x0, eps, spec, method=method, **kw))  # type: ignore[arg-type]
            except MemoryError:  # the decomposition is an optional tightening: without it, the planes and IBP
                pass
        if not compare_ibp:
            others.append(sound_bounds(g, x0, eps, spec, method="ibp", **kw))  # type: ignore[arg-type]
        return _softmax_alt.best(lo, hi, others)
    check_arithmetic(x0.device)
    for n in g.nodes:
        if n.op not in SUPPORTED:
            raise UnsupportedLayerError(
                f"Operation {n.op!r} (at {n.name!r}) has no rounding-error analysis for sound=True yet "
                f"(supported: {', '.join(SUPPORTED[1:])}); use sound=False")
    nb = x0.shape[0]
    widest = max(n.numel for n in g.nodes)
    chunk = max(1, SOUND_CHUNK_BYTES // max(1, widest * widest * 8))
    # one input's coefficients: (rows bounded at once) x (widest node), float64; rows: every neuron of the
    # widest pre-activation (CROWN's intermediate bounds), else the output's rows
    k = g.nodes[g.output].numel if spec is None else spec.shape[1]
    rows = max([k] + ([g.nodes[j].numel for n in g.nodes if n.op in NONLINEAR for j in n.inputs]
                      if method == "crown" else []))
    per_input = rows * widest * 8
    row_step: int | None = None
    what = f"sound=True {method.upper()} (rows x widest node {rows} x {widest}, float64)"
    try:
        chunk = _memory.units(per_input, cap=chunk * per_input, copies=SOUND_COPIES, device=x0.device, what=what)
    except MemoryError:
        # one input's rows exceed the budget: one input at a time, its rows (neurons) in chunks; MemoryError
        # (before allocating) only where one row does not fit
        chunk = 1
        row_step = _memory.units(widest * 8, cap=per_input, copies=SOUND_COPIES, device=x0.device,
                                 what=f"sound=True {method.upper()} (one row of the widest node {widest}, float64)")
    los, his = [], []
    with torch.no_grad():
        for i0 in range(0, nb, chunk):
            sl = slice(i0, i0 + chunk)
            region = Region(x0[sl], eps[sl], norm, domain)
            lo, hi = _run(g, region, None if spec is None else spec[sl], method, need_lower, need_upper,
                          compare_ibp, row_step)
            los.append(lo)
            his.append(hi)
    lo, hi = torch.cat(los), torch.cat(his)
    # NaN (from inf - inf after an overflow) carries no information: widen to the whole line
    return (torch.where(torch.isnan(lo), torch.full_like(lo, -INF), lo),
            torch.where(torch.isnan(hi), torch.full_like(hi, INF), hi))
