"""Softmax for ``sound=True``: the log-sum-exp bounds of Wei et al. 2023 with rigorous rounding (float64).

The relaxation is the default engine's (``certify._layers.softmax_relax``; see the comment there for the
mathematics): below, the tangent plane at a point y0 of the box of ``L_k(y) = exp(y_k) / SE(y)`` (convex;
``SE(y) = sum_j kappa_j y_j + beta_j >= sum_j exp(y_j)``); above, the tangent plane of ``U_k(y) = a_k + c_k
(y_k - LSE(y))`` (concave; ``a + c q >= exp(q)`` on ``[log p_k, log P_k]``). Here every constant is made valid
for the floats actually used:

* the chords' slopes ``kappa``, ``c`` are any floats (a heuristic: the float chord); their intercepts are the
  rigorous maxima of ``exp(t) - slope t`` over the interval (:func:`certify._sound_fns.g_range`), so ``SE`` and
  ``a + c q`` are upper bounds of exp for every real point, whatever the slopes' rounding;
* the planes' slopes are floats ``J~`` near the exact gradient ``J`` of ``L_k`` / ``U_k`` at y0, and
  ``|J~ - J|`` is bounded from enclosures of the gradient's parts; over the box, ``|(J~ - J)(y - y0)| <=
  |J~ - J| r`` (r >= |y - y0|) is taken off the intercept, which uses an enclosure of ``L_k(y0)`` / ``U_k(y0)``;
* softmax is shift-invariant: the planes are built for ``y = x - M`` (M a float, the row's largest upper
  bound, so that exp neither overflows nor loses the largest terms) and moved back to x with the
  intercept's ``- M (J~ 1)`` enclosed.

The assumptions on torch's float64 functions: ``exp`` at single points accurate to ``ERR = 2**-40`` relative
(plus 2**-1022 absolute, for subnormal results; :func:`_exp_enc`), ``log`` and the chords' intercepts as stated in
:mod:`certify._sound_fns` (``ERR (1 + |t| + |f(t)|)`` absolute).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from certify._layers import SoftmaxRelax, _exclusive_sums, _exp_chord
from certify._rounding import ETA, down, gamma, sum_upper, up, up_float
from certify._sound_fns import ERR, g_range

__all__ = ["softmax_step_error", "sound_softmax_range", "sound_softmax_relax"]

_TINY = 2.0**-1022


def _sum_lower(p: Tensor, n: int) -> Tensor:
    """Lower bound of the exact value of ``p``, a computed sum of at most ``n`` non-negative floats
    (``|p - exact| <= gamma_n exact + n ETA / 2``), never below 0."""
    return down(down(p - n * ETA) / up_float(1 + gamma(max(n, 1)))).clamp(min=0)


def _exp_enc(t: Tensor) -> tuple[Tensor, Tensor]:
    """Enclosure of exp(t) at float points, assuming torch's float64 exp accurate to ``ERR`` relative for
    normal results and to the smallest normal float absolute below them (exp is accurate to about one ulp; the
    absolute form of :mod:`certify._sound_fns` would lose every exp(t) below ~1e-12, i.e. every probability of
    a saturated softmax row)."""
    e = torch.exp(t)
    err = up(up(ERR * e) + _TINY)
    return down(e - err).clamp(min=0), up(e + err)


def _log_enc(t: Tensor) -> tuple[Tensor, Tensor]:
    """Enclosure of log(t) at float points t >= 0 (log 0 = -inf)."""
    v = torch.log(t)
    err = up(ERR * up(up(1 + t.abs()) + v.abs()))
    lo = torch.where(t > 0, down(v - err), torch.full_like(v, -math.inf))
    return lo, torch.where(t > 0, up(v + err), torch.full_like(v, -math.inf))


def _shift(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(ok rows, M, enclosure of lo - M, of hi - M); rows with a non-finite end are computed on zeros. M is the
    row's largest box centre: then sum_j exp(y0_j) >= 1 at the centre y0, so the absolute error assumed of exp
    (ERR (1 + |t| + exp(t))) is a relative one for the sums the planes divide by."""
    ok = (torch.isfinite(lo) & torch.isfinite(hi)).all(-1, keepdim=True)
    lo, hi = torch.where(ok, lo, 0.0), torch.where(ok, hi, 0.0)
    m = ((lo + hi) / 2).amax(-1, keepdim=True)
    return ok, m, down(lo - m), up(hi - m)


def _range_shifted(ly: Tensor, uy: Tensor) -> tuple[Tensor, Tensor]:
    k = ly.shape[-1]
    a_lo, _ = _exp_enc(ly)
    _, b_hi = _exp_enc(uy)
    # lower: exp(l_k) / (exp(l_k) + sum_{j != k} exp(u_j)), smallest numerator over largest denominator
    den = up(a_lo + sum_upper(_exclusive_sums(b_hi), k))
    fine = (den > 0) & torch.isfinite(den)  # an overflow (a box wider than ~1400) gives the whole range
    p_lo = torch.where(fine, down(a_lo / torch.where(fine, den, 1.0)), 0.0).clamp(min=0, max=1)
    _, a_hi = _exp_enc(uy)
    b_lo, _ = _exp_enc(ly)
    den2 = down(a_hi + _sum_lower(_exclusive_sums(b_lo), k))
    fine2 = (den2 > 0) & torch.isfinite(den2)
    p_hi = torch.where(fine2, up(a_hi / torch.where(fine2, den2, 1.0)), 1.0).clamp(min=0, max=1)
    return p_lo, p_hi


def _log_range_shifted(ly: Tensor, uy: Tensor) -> tuple[Tensor, Tensor]:
    """Log-softmax's range in log space (no underflow to -inf): ``l_k - log(exp(l_k) + sum_{j != k} exp(u_j))``
    (increasing in l_k, decreasing in the u_j: the enclosures' ends are taken accordingly) and the mirror."""
    k = ly.shape[-1]
    _, a_hi = _exp_enc(ly)
    _, b_hi = _exp_enc(uy)
    den = up(a_hi + sum_upper(_exclusive_sums(b_hi), k))
    lo = torch.where(torch.isfinite(den), down(ly - _log_enc(den)[1]), -math.inf)
    a_lo, _ = _exp_enc(uy)
    b_lo, _ = _exp_enc(ly)
    den2 = down(a_lo + _sum_lower(_exclusive_sums(b_lo), k))
    fine = (den2 > 0) & torch.isfinite(den2)
    hi = torch.where(fine, up(uy - _log_enc(torch.where(fine, den2, 1.0))[0]), 0.0).clamp(max=0)
    return torch.minimum(lo, hi), hi


def sound_softmax_range(lo: Tensor, hi: Tensor, log: bool = False) -> tuple[Tensor, Tensor]:
    """Rigorous interval of softmax (``log``: log-softmax; last dimension) over the box [lo, hi]: ``exp(l_k) /
    (exp(l_k) + sum_{j != k} exp(u_j)) <= softmax_k <= exp(u_k) / (exp(u_k) + sum_{j != k} exp(l_j))``; the whole
    range ([0, 1], [-inf, 0]) in rows with a non-finite end."""
    ok, _, ly, uy = _shift(lo, hi)
    if log:
        q_lo, q_hi = _log_range_shifted(ly, uy)
        return torch.where(ok, q_lo, -math.inf), torch.where(ok, q_hi, 0.0)
    p_lo, p_hi = _range_shifted(ly, uy)
    return torch.where(ok, p_lo, 0.0), torch.where(ok, p_hi, 1.0)


def _dot_enc(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Enclosure of ``sum_j a_j b_j`` along the last dimension (keepdim)."""
    k = a.shape[-1]
    v = (a * b).sum(-1, keepdim=True)
    err = up(sum_upper(up(gamma(k) * (a.abs() * b.abs()).sum(-1, keepdim=True)), k) + k * ETA)
    return down(v - err), up(v + err)


def _plane_intercept(d: Tensor, w: Tensor, v: Tensor, y0: Tensor, f0: Tensor, slack: Tensor, m: Tensor,
                     lower: bool) -> Tensor:
    """Intercept in x = y + M of the plane ``f0 + J~ (y - y0) -/+ slack`` (J~ = diag(d) - w v^T, w >= 0),
    rounded outward: lower plane ``J~ x + b <= ...`` (``lower``) or upper plane."""
    t_lo, t_hi = _dot_enc(v, y0)  # v . y0
    dy_lo, dy_hi = down(d * y0), up(d * y0)
    # J~ y0 = d y0 - w (v . y0), enclosed (w >= 0)
    jy_lo = down(dy_lo - up(torch.maximum(w * t_hi, w * t_lo)))
    jy_hi = up(dy_hi - down(torch.minimum(w * t_lo, w * t_hi)))
    # J~ 1 = d - w sum(v), enclosed; then M (J~ 1)
    s_lo, s_hi = _dot_enc(v, torch.ones_like(v))
    q_lo = down(d - up(torch.maximum(w * s_hi, w * s_lo)))
    q_hi = up(d - down(torch.minimum(w * s_lo, w * s_hi)))
    mq_lo = down(torch.minimum(m * q_lo, m * q_hi))
    mq_hi = up(torch.maximum(m * q_lo, m * q_hi))
    # plane in y: J~ y + f0 - J~ y0 -/+ slack; in x: J~ x + (that intercept) - M (J~ 1)
    if lower:
        return down(down(down(f0 - jy_hi) - slack) - mq_hi)
    return up(up(up(f0 - jy_lo) + slack) - mq_lo)


def sound_softmax_relax(lo: Tensor, hi: Tensor, log: bool = False) -> SoftmaxRelax:
    """Planes ``J_L x + b_L <= softmax(x) <= J_U x + b_U`` valid for every real x in the float box [lo, hi]
    (float64, last dimension; see the module docstring); constant planes (the range) in rows with a non-finite
    end. ``log``: log-softmax, with the planes of ``certify._layers.softmax_relax(..., log=True)``: above, its
    tangent plane at y0 (the upper construction with c = 1, a = 0: ``U_k(y) = y_k - LSE(y)`` itself); below, the
    tangent plane of ``y_k - log SE(y)``."""
    ok, m, ly, uy = _shift(lo, hi)
    k = ly.shape[-1]
    y0 = torch.clamp((ly + uy) / 2, ly, uy)
    r = torch.maximum(up(uy - y0), up(y0 - ly))  # >= |y - y0| on the box
    # lower: SE(y) = sum_j kappa_j y_j + beta_j >= sum_j exp(y_j) (beta rigorous for the float kappa)
    kappa, _ = _exp_chord(ly, uy)
    kappa = kappa.clamp(min=0)
    beta = g_range("exp", None, ly, uy, kappa)[1]
    s = (kappa * y0 + beta).sum(-1, keepdim=True)
    err = up(sum_upper((kappa * y0).abs().sum(-1, keepdim=True) + beta.abs().sum(-1, keepdim=True), 2 * k)
             * gamma(2 * k) + 2 * k * ETA)
    se_lo, se_hi = down(s - err), up(s + err)
    e_lo, e_hi = _exp_enc(y0)
    good = se_lo > 0
    se_lo_s = torch.where(good, se_lo, torch.ones_like(se_lo))
    l_lo, l_hi = down(e_lo / se_hi), up(e_hi / se_lo_s)
    v_lo, v_hi = down(l_lo / se_hi), up(l_hi / se_lo_s)
    zero = torch.zeros_like(y0)
    p_lo, p_hi = _log_range_shifted(ly, uy) if log else _range_shifted(ly, uy)
    if log:  # y_k - log SE(y): value >= y0_k - log(se_hi); slopes e_k - kappa / SE(y0)
        one = torch.ones_like(y0)
        ks = kappa / s
        ks_lo, ks_hi = down(kappa / se_hi), up(kappa / se_lo_s)
        dlt_k = torch.maximum(up(ks - ks_lo), up(ks_hi - ks)).clamp(min=0)
        slack_l = sum_upper(up(dlt_k * r).sum(-1, keepdim=True), k)
        f_lo = down(y0 - _log_enc(se_hi)[1])
        bl = _plane_intercept(one, one, ks, y0, f_lo, slack_l, m, True)
        good = good & torch.isfinite(bl) & torch.isfinite(ks)
        dl, wl, vl = (torch.where(good, t, zero) for t in (one, one, ks))
    else:
        l0 = torch.exp(y0) / s  # the float slopes: near the exact gradient's parts
        vv = l0 / s
        dlt_l = torch.maximum(up(l0 - l_lo), up(l_hi - l0)).clamp(min=0)
        dlt_v = torch.maximum(up(vv - v_lo), up(v_hi - vv)).clamp(min=0)
        kr = sum_upper(up(kappa * r).sum(-1, keepdim=True), k)
        slack_l = up(up(dlt_l * r) + up(dlt_v * kr))
        bl = _plane_intercept(l0, vv, kappa, y0, l_lo, slack_l, m, True)
        good = good & torch.isfinite(bl) & torch.isfinite(l0) & torch.isfinite(vv)
        dl, wl, vl = (torch.where(good, t, zero) for t in (l0, vv, kappa))
    bl = torch.where(good, bl, p_lo)  # else the constant lower bound
    # upper: a + c q >= exp(q) on [log p, log P] (a rigorous for the float c); U(y) = a + c (y_k - LSE(y))
    if log:  # U(y) = y_k - LSE(y) itself
        c, a = torch.ones_like(y0), torch.zeros_like(y0)
    else:
        q_lo, _ = _log_enc(p_lo)
        _, q_hi = _log_enc(p_hi)
        q_hi = q_hi.clamp(max=0)
        q_lo = torch.minimum(q_lo, q_hi)
        c, _ = _exp_chord(q_lo, q_hi)
        c = torch.where(torch.isfinite(c), c, zero).clamp(min=0)
        a = torch.where(torch.isneginf(q_lo), p_hi, g_range("exp", None, q_lo, q_hi, c)[1])
    ex_lo, ex_hi = _exp_enc(y0)
    sm_lo_sum = _sum_lower(ex_lo.sum(-1, keepdim=True), k)
    sm_hi_sum = sum_upper(ex_hi.sum(-1, keepdim=True), k)
    lse_lo, _ = _log_enc(sm_lo_sum)
    sig = torch.softmax(y0, -1)
    sig_lo = down(ex_lo / sm_hi_sum)
    sig_hi = up(ex_hi / torch.where(sm_lo_sum > 0, sm_lo_sum, torch.ones_like(sm_lo_sum)))
    dlt_s = torch.maximum(up(sig - sig_lo), up(sig_hi - sig)).clamp(min=0)
    u0 = up(a + up(c * up(y0 - lse_lo)))  # >= U_k(y0) (c >= 0, LSE(y0) >= lse_lo)
    slack_u = up(c * sum_upper(up(dlt_s * r).sum(-1, keepdim=True), k))
    bu = _plane_intercept(c, c, sig, y0, u0, slack_u, m, False)
    good_u = (sm_lo_sum > 0) & torch.isfinite(bu) & torch.isfinite(u0)
    du, wu, vu = (torch.where(good_u, t, zero) for t in (c, c, sig))
    bu = torch.where(good_u, bu, p_hi)
    out = [dl, wl, vl, bl, du, wu, vu, bu]
    consts = [0.0, 0.0, 0.0, -math.inf if log else 0.0, 0.0, 0.0, 0.0, 0.0 if log else 1.0]
    return SoftmaxRelax(*(torch.where(ok, t, cst) for t, cst in zip(out, consts)))


def softmax_step_error(r: SoftmaxRelax, zj: Tensor, zsum: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """(h, c) of a softmax node: pushing coefficients A (at its output, rows of length K) through the planes as
    ``certify._layers.softmax_backward`` does (``A * d - (A . w) v`` per side, pos + neg, at most K + 4 rounded
    operations per entry) and the bias (two dot products of length d, summed) costs at most
    ``|A| . h + c``, with ``zj`` (N, *shape) the bound of |input| and ``zsum`` (N,) its sum."""
    k = zj.shape[-1]
    dmax = torch.maximum(r.dl.abs(), r.du.abs())
    wmax = torch.maximum(r.wl.abs(), r.wu.abs())
    vmax = torch.maximum(r.vl.abs(), r.vu.abs())
    bmax = torch.maximum(r.bl.abs(), r.bu.abs())
    vz = sum_upper(up(vmax * zj).sum(-1, keepdim=True), k)
    g = gamma(k + 4)
    h = up(up(g * up(up(dmax * zj) + up(wmax * vz))) + up(gamma(2 * d + 1) * bmax))
    # underflow of the products: at most K + 4 per entry, each below ETA / 2, times |z| and the largest |v| (>= 1)
    vm = up_float(max(1.0, float(vmax.max()) if vmax.numel() else 1.0))
    c = up(up(up(zsum * ((k + 4) * ETA)) * vm) + 4 * d * ETA)
    return h, c
