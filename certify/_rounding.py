"""Rigorous floating-point error bounds for the ``sound=True`` bound propagation (float64 tensors).

Model of arithmetic (IEEE 754 binary64, round to nearest, gradual underflow; what CPUs and CUDA
do for float64 unless denormals are flushed, which :func:`check_arithmetic` refuses):

* one operation ``+ - * /`` or ``sqrt``: the exact result lies between the neighbours of the
  computed one, so :func:`up` / :func:`down` (one step to the next float) bound it rigorously;
* a sum of ``n`` products in any order, with or without FMA, blocked or pairwise (what BLAS and
  torch reductions do): ``|fl(a . b) - a . b| <= gamma(n) |a| . |b| + n * ETA / 2`` with
  ``gamma(n) = n u / (1 - n u)``, ``u = 2**-53`` and ``ETA = 2**-1074`` the smallest subnormal
  (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002, Lemma 3.1 and
  section 3.1; the ``n ETA / 2`` term bounds the underflow of the products, additions of
  subnormals being exact). Transforms that are not sums of products (Winograd or FFT
  convolutions) are never used on these paths: convolutions go through ``unfold`` / ``fold`` and
  matrix products.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

__all__ = ["ETA", "U", "check_arithmetic", "down", "gamma", "sum_upper", "up", "up_float"]

#: unit roundoff of float64
U = 2.0**-53
#: smallest positive (subnormal) float64
ETA = 2.0**-1074


def up_float(q: Fraction | int | float) -> float:
    """The smallest float64 >= ``q`` (exact rational)."""
    q = Fraction(q)
    f = float(q)
    return f if Fraction(f) >= q else math.nextafter(f, math.inf)


def gamma(n: int) -> float:
    """A float64 >= ``gamma_n = n u / (1 - n u)`` (Higham's constant for a length-n dot product)."""
    nu = Fraction(n) * Fraction(U)
    if nu >= Fraction(1, 2):
        raise ValueError(f"Expected a dot-product length below 2**52, but got {n}")
    return up_float(nu / (1 - nu))


def _sum_factor(n: int) -> float:
    """A float64 >= ``1 / (1 - gamma_n)``."""
    nu = Fraction(n) * Fraction(U)
    return up_float((1 - nu) / (1 - 2 * nu))


def _inf(t: Tensor, sign: float) -> Tensor:
    return torch.tensor(sign * math.inf, dtype=t.dtype, device=t.device)


def up(t: Tensor) -> Tensor:
    """Next float towards +inf: an upper bound of the exact result of the one operation that gave ``t``."""
    return torch.nextafter(t, _inf(t, 1.0))


def down(t: Tensor) -> Tensor:
    """Next float towards -inf: a lower bound of the exact result of the one operation that gave ``t``."""
    return torch.nextafter(t, _inf(t, -1.0))


def sum_upper(p: Tensor, n: int) -> Tensor:
    """Upper bound of the exact value of ``p``, a computed sum of at most ``n`` products of
    non-negative floats: ``p >= (1 - gamma_n) exact - n ETA / 2``, so ``exact <= (p + n ETA) / (1 - gamma_n)``."""
    return up(up(p + n * ETA) * _sum_factor(max(n, 1)))


def check_arithmetic(device: torch.device) -> None:
    """Refuse to run where denormals are flushed to zero (``torch.set_flush_denormal(True)``):
    the underflow terms of the error bounds assume gradual underflow."""
    t = torch.tensor([2.0**-1022], dtype=torch.float64, device=device)
    if float((t * 0.5)[0]) == 0.0:
        raise RuntimeError(
            "sound=True needs gradual underflow, but denormals are flushed to zero "
            "(call torch.set_flush_denormal(False))"
        )
