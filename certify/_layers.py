"""Relaxations of the non-linear layers beyond element-wise activations: max pooling.

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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MaxPoolRelax", "maxpool_backward", "maxpool_forward", "maxpool_relax"]


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
