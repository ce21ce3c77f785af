"""Compiled ReLU step of the CROWN backward pass (numba, the optional extra ``certkit[fast]``).

Imported only by :func:`certify.crown._relu_kernels`, which returns None when numba is not installed, the
environment variable ``CERTKIT_NO_NUMBA`` is set (non-empty, not ``0``) or the coefficients are below the size floor
(``certify.crown.RELU_KERNEL_MIN``). Compiled on the first call for the dtype it gets (about a second; nothing is
cached on disk) and run on one thread.

Each kernel reads the coefficients once and writes the coefficients at the ReLU's input once, with the intercept's
contribution to the bias and (for a following conv's bias) the per-channel sums of the new coefficients accumulated
in the same pass; torch's form of the same step takes four to five passes (clamp, two multiply-adds, a matrix-vector
product, a sum). Operands are (B, S, P, C) coefficients and (B, P, C) relaxations in one memory order (channels-last
maps: P = H * W positions, C channels; flat nodes: P = 1); the products are those of
:func:`certify.crown._propagate`'s torch form; the sums are accumulated in float64 (per channel, then over channels),
so they differ from torch's float32 sums only by torch's own rounding (maps of fewer than 32 channels:
:func:`relu_back_narrow`, per-channel sums in the coefficients' precision, measured as close to float64 bounds).

:func:`relu_window` is the same step for coefficients kept as windows over each row's receptive field
(:func:`certify.crown._patch_activation`): it reads each window's slopes and intercept from the relaxation maps by
position, where torch's form first gathers three window tensors of them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["relu_back", "relu_back_both", "relu_back_narrow", "relu_back_pair", "relu_back_pair_narrow", "relu_ibp_relax",
           "relu_relax", "relu_window"]


@njit(cache=False, nogil=True, boundscheck=False)
def relu_back(a, dl, gap, bu, upper, out, bias, csum):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """One side of the ReLU step: ``out = a dl + m gap`` and ``bias += sum(m bu)`` with ``m = min(a, 0)`` (lower
    bound) or ``max(a, 0)`` (``upper``), ``csum[b, s, c] = sum over positions of out``; ``gap = du - dl``. ``a`` may
    have one row (B = 1) shared by every input of the relaxation (broadcast as torch does); out, bias and csum have
    the relaxation's B."""
    nc = a.shape[3]  # float64 sums: no error growing with the number of positions
    _relu_back_into(a, dl, gap, bu, upper, out, bias, csum, np.zeros(nc, dtype=np.float64), np.zeros(nc, dtype=np.float64))


@njit(cache=False, nogil=True, boundscheck=False)
def relu_back_narrow(a, dl, gap, bu, upper, out, bias, csum):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """:func:`relu_back` with the per-channel sums in the coefficients' precision, for maps of few channels (fewer
    than 32: float64 sums of one vector of channels measured 3x slower than the rest of the pass)."""
    nc = a.shape[3]
    _relu_back_into(a, dl, gap, bu, upper, out, bias, csum, np.zeros(nc, dtype=a.dtype), np.zeros(nc, dtype=a.dtype))


@njit(cache=False, nogil=True, boundscheck=False)
def _relu_back_into(a, dl, gap, bu, upper, out, bias, csum, acc, cs):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """:func:`relu_back` with the per-channel accumulators ``acc``, ``cs`` (nc,) given: their dtype is the sums'."""
    _, ns, npos, nc = a.shape
    nb = dl.shape[0]
    shared = a.shape[0] == 1
    zero = a.dtype.type(0)
    for b in range(nb):
        ba = 0 if shared else b
        for s in range(ns):
            acc[:] = 0.0
            cs[:] = 0.0
            for p in range(npos):
                if upper:
                    for c in range(nc):
                        x = a[ba, s, p, c]
                        m = max(x, zero)
                        v = x * dl[b, p, c] + m * gap[b, p, c]
                        out[b, s, p, c] = v
                        acc[c] += m * bu[b, p, c]
                        cs[c] += v
                else:
                    for c in range(nc):
                        x = a[ba, s, p, c]
                        m = min(x, zero)
                        v = x * dl[b, p, c] + m * gap[b, p, c]
                        out[b, s, p, c] = v
                        acc[c] += m * bu[b, p, c]
                        cs[c] += v
            bias[b, s] += acc.sum()
            csum[b, s, :] = cs


@njit(cache=False, nogil=True, boundscheck=False)
def relu_back_pair(al, au, dl, gap, bu, out_l, out_u, bias_l, bias_u, cs_l, cs_u):  # type: ignore[no-untyped-def]  # pragma: no cover
    """:func:`relu_back` for the lower (``al``) and the upper (``au``) coefficients in one pass: each entry's slopes and
    intercept are read once for both, and the two sides' sums are independent chains the core overlaps (each side
    alone waits on its per-channel sums). The same operations in the same order per side as two :func:`relu_back`
    calls (bit-identical results)."""
    nc = al.shape[3]
    z = np.float64
    _relu_back_pair_into(al, au, dl, gap, bu, out_l, out_u, bias_l, bias_u, cs_l, cs_u, np.zeros(nc, dtype=z),
                         np.zeros(nc, dtype=z), np.zeros(nc, dtype=z), np.zeros(nc, dtype=z))


@njit(cache=False, nogil=True, boundscheck=False)
def relu_back_pair_narrow(al, au, dl, gap, bu, out_l, out_u, bias_l, bias_u, cs_l, cs_u):  # type: ignore[no-untyped-def]  # pragma: no cover
    """:func:`relu_back_pair` with :func:`relu_back_narrow`'s per-channel sums in the coefficients' precision
    (bit-identical to two :func:`relu_back_narrow` calls)."""
    nc = al.shape[3]
    z = al.dtype
    _relu_back_pair_into(al, au, dl, gap, bu, out_l, out_u, bias_l, bias_u, cs_l, cs_u, np.zeros(nc, dtype=z),
                         np.zeros(nc, dtype=z), np.zeros(nc, dtype=z), np.zeros(nc, dtype=z))


@njit(cache=False, nogil=True, boundscheck=False)
def _relu_back_pair_into(al, au, dl, gap, bu, out_l, out_u, bias_l, bias_u, cs_l, cs_u, accl, csl, accu, csu):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """:func:`relu_back_pair` with the per-channel accumulators given (their dtype is the sums')."""
    _, ns, npos, nc = al.shape
    nb = dl.shape[0]
    shared = al.shape[0] == 1
    zero = al.dtype.type(0)
    for b in range(nb):
        ba = 0 if shared else b
        for s in range(ns):
            accl[:] = 0.0
            csl[:] = 0.0
            accu[:] = 0.0
            csu[:] = 0.0
            for p in range(npos):
                for c in range(nc):
                    d, g, u = dl[b, p, c], gap[b, p, c], bu[b, p, c]
                    x = al[ba, s, p, c]
                    m = min(x, zero)
                    v = x * d + m * g
                    out_l[b, s, p, c] = v
                    accl[c] += m * u
                    csl[c] += v
                    y = au[ba, s, p, c]
                    n = max(y, zero)
                    w = y * d + n * g
                    out_u[b, s, p, c] = w
                    accu[c] += n * u
                    csu[c] += w
            bias_l[b, s] += accl.sum()
            bias_u[b, s] += accu.sum()
            cs_l[b, s, :] = csl
            cs_u[b, s, :] = csu


@njit(cache=False, nogil=True, boundscheck=False)
def relu_back_both(a, dl, du, bu, out_l, out_u, bias_l, bias_u):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Both sides from one coefficient tensor (lower and upper bound not yet separated): with ``p = max(a, 0)``,
    ``n = min(a, 0)``: ``out_l = p dl + n du``, ``out_u = p du + n dl``, ``bias_l += sum(n bu)``,
    ``bias_u += sum(p bu)``. ``a`` may have one row shared by every input (as in :func:`relu_back`)."""
    _, ns, npos, nc = a.shape
    nb = dl.shape[0]
    shared = a.shape[0] == 1
    zero = a.dtype.type(0)
    acc_l = np.zeros(nc, dtype=np.float64)
    acc_u = np.zeros(nc, dtype=np.float64)
    for b in range(nb):
        ba = 0 if shared else b
        for s in range(ns):
            acc_l[:] = 0.0
            acc_u[:] = 0.0
            for p in range(npos):
                for c in range(nc):
                    x = a[ba, s, p, c]
                    ps = max(x, zero)
                    ng = x - ps
                    d_l, d_u, b_u = dl[b, p, c], du[b, p, c], bu[b, p, c]
                    out_l[b, s, p, c] = ps * d_l + ng * d_u
                    out_u[b, s, p, c] = ps * d_u + ng * d_l
                    acc_l[c] += ng * b_u
                    acc_u[c] += ps * b_u
            bias_l[b, s] += acc_l.sum()
            bias_u[b, s] += acc_u.sum()


@njit(cache=False, nogil=True, boundscheck=False, inline="always")
def _relax_one(x, y, zero, one, half, tiny):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """One entry of auto_LiRPA's ReLU relaxation from the ends ``x <= y``: ``(d_l, d_u, b_u)`` (see :func:`relu_relax`)."""
    lb = min(x, zero)
    ub = max(max(y, zero), lb + tiny)
    du = ub / (ub - lb)
    return (one if du > half else zero), du, -lb * du


@njit(cache=False, nogil=True, boundscheck=False)
def relu_relax(lo, hi, d_l, d_u, b_u):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """auto_LiRPA's ReLU relaxation (:func:`certify.crown.relu_relaxation`) in one pass over flat ``lo``, ``hi``:
    ``lb = min(lo, 0)``, ``ub = max(max(hi, 0), lb + 1e-8)``, ``d_u = ub / (ub - lb)``, ``b_u = -lb d_u``,
    ``d_l = [d_u > 0.5]``, the same operations in the same precision (bit-identical results). Returns False, leaving
    the outputs incomplete, when an entry of ``lo`` or ``hi`` is not finite (the caller then runs the torch form,
    which handles infinite and NaN bounds)."""
    zero = lo.dtype.type(0)
    one = lo.dtype.type(1)
    half = lo.dtype.type(0.5)
    tiny = lo.dtype.type(1e-8)
    big = lo.dtype.type(np.inf)
    bad = 0
    for i in range(lo.shape[0]):
        x, y = lo[i], hi[i]
        bad |= not (abs(x) < big and abs(y) < big)
        d_l[i], d_u[i], b_u[i] = _relax_one(x, y, zero, one, half, tiny)
    return bad == 0


@njit(cache=False, nogil=True, boundscheck=False)
def relu_ibp_relax(c, w, lo, hi, d_l, d_u, b_u, out_l, out_u, out_s, out_d):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The IBP pass's ReLU step from a pre-activation interval in centre/width form (flat ``c``, ``w``), in one pass:
    the pre-activation's ends ``lo = c - w/2``, ``hi = c + w/2`` (as :class:`certify.ibp.Interval` forms them), their
    relaxation (:func:`relu_relax`: ``d_l``, ``d_u``, ``b_u``), and the ReLU's interval ``out_l = relu(lo)``,
    ``out_u = relu(hi)`` with its sum/difference form ``out_s = out_u + out_l``, ``out_d = out_u - out_l`` (what a
    following affine layer reads); the same operations in the same precision as torch's form (bit-identical).
    Returns False, leaving the outputs incomplete, when an end is not finite (the caller then runs the torch form)."""
    zero = c.dtype.type(0)
    one = c.dtype.type(1)
    half = c.dtype.type(0.5)
    tiny = c.dtype.type(1e-8)
    big = c.dtype.type(np.inf)
    bad = 0
    for i in range(c.shape[0]):
        r = w[i] * half
        x = c[i] - r
        y = c[i] + r
        bad |= not (abs(x) < big and abs(y) < big)
        lo[i] = x
        hi[i] = y
        d_l[i], d_u[i], b_u[i] = _relax_one(x, y, zero, one, half, tiny)
        ox = x if x > zero else zero  # finite here (else bad): relu without NaN
        oy = y if y > zero else zero
        out_l[i] = ox
        out_u[i] = oy
        out_s[i] = oy + ox
        out_d[i] = oy - ox
    return bad == 0


@njit(cache=False, nogil=True, boundscheck=False)
def relu_window(a, dl, du, bu, lidx, geom, side, out_l, out_u, bias_l, bias_u):  # type: ignore[no-untyped-def]  # pragma: no cover
    """The ReLU step on window coefficients ``a`` (B, S, C, kh, kw) (B = 1: shared by every input) of rows at output
    positions ``lidx`` (R, S) (flat ``oh * wo + ow``; R = 1: the same for every input); the relaxation's maps ``dl``,
    ``du``, ``bu`` are (N, C, H, W) in any memory order; ``geom`` = (wo, sh, sw, ph, pw): window entry (i, j) of the
    row at (oh, ow) is map position (oh sh - ph + i, ow sw - pw + j), zero outside the map. With ``p = max(a, 0)``,
    ``n = a - p``: ``side`` 0 (one coefficient for both bounds): ``out_l = p dl + n du``, ``out_u = p du + n dl``,
    ``bias_l += sum(n bu)``, ``bias_u += sum(p bu)``; ``side`` -1: lower only (``out_l``, ``bias_l``); ``side`` +1:
    ``out_u = p du + n dl``, ``bias_u += sum(p bu)`` only. Outputs (N, S, C, kh, kw) and (N, S); products in the
    coefficients' precision as torch's form, sums in float64."""
    _, ns, nc, kh, kw = a.shape
    nb, _, hh, ww = dl.shape
    wo, sh, sw, ph, pw = geom[0], geom[1], geom[2], geom[3], geom[4]
    shared_a = a.shape[0] == 1
    shared_r = lidx.shape[0] == 1
    zero = a.dtype.type(0)
    for b in range(nb):
        ba = 0 if shared_a else b
        br = 0 if shared_r else b
        for s in range(ns):
            pos = lidx[br, s]
            oh = pos // wo
            y0 = oh * sh - ph
            x0 = (pos - oh * wo) * sw - pw
            acc_l = 0.0
            acc_u = 0.0
            for c in range(nc):
                for i in range(kh):
                    y = y0 + i
                    inside_y = 0 <= y < hh
                    for j in range(kw):
                        x = x0 + j
                        if inside_y and 0 <= x < ww:
                            v = a[ba, s, c, i, j]
                            p = max(v, zero)
                            n = v - p
                            d_l, d_u, b_u = dl[b, c, y, x], du[b, c, y, x], bu[b, c, y, x]
                            if side <= 0:
                                out_l[b, s, c, i, j] = p * d_l + n * d_u
                                acc_l += n * b_u
                            if side >= 0:
                                out_u[b, s, c, i, j] = p * d_u + n * d_l
                                acc_u += p * b_u
                        else:
                            if side <= 0:
                                out_l[b, s, c, i, j] = zero
                            if side >= 0:
                                out_u[b, s, c, i, j] = zero
            if side <= 0:
                bias_l[b, s] += acc_l
            if side >= 0:
                bias_u[b, s] += acc_u
