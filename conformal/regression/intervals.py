"""The result type of the conformal regressors, and the array checks they share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from certkit._validation import Array, as_real_array, check_array
from conformal.functional import _exact

__all__ = ["PredictionIntervals"]


@dataclass(frozen=True)
class PredictionIntervals:
    """Prediction intervals ``[lower, upper]`` (closed), one per input.

    Attributes:
        lower: (N,) lower ends (``-inf`` when too few calibration points for the level).
        upper: (N,) upper ends (``+inf`` likewise).
    """

    lower: Array
    upper: Array

    @property
    def width(self) -> Array:
        """(N,) ``upper - lower``."""
        return self.upper - self.lower

    def __len__(self) -> int:
        return int(self.lower.shape[0])

    def contains(self, targets: Array) -> Array:
        """(N,) bool: ``lower <= y <= upper`` for each target (same array type as the intervals)."""
        y = _as_like(targets, self.lower, "targets")
        if y.shape != self.lower.shape:
            raise ValueError(f"Expected argument `targets` to have shape {tuple(self.lower.shape)}, "
                             f"but got {tuple(y.shape)}")
        return (self.lower <= y) & (y <= self.upper)


def _as_like(x: Any, like: Array, name: str) -> Array:
    if isinstance(like, torch.Tensor):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Expected argument `{name}` to be a torch tensor (as the intervals), but got {type(x)}")
        return x.to(like.device)
    if isinstance(x, torch.Tensor):
        raise TypeError(f"Expected argument `{name}` to be a numpy array (as the intervals), but got a torch tensor")
    return np.asarray(x)


def check_vector(x: Any, name: str, n: int | None = None, *, positive: bool = False) -> Array:
    """``x`` as a finite (N,) float numpy array or torch tensor (lists become numpy)."""
    if not isinstance(x, torch.Tensor):
        if isinstance(x, list | tuple):
            x = as_real_array(x, name)  # bools, complex numbers and strings refused, never cast
        elif not isinstance(x, np.ndarray):
            raise TypeError(f"Expected argument `{name}` to be a numpy array or torch tensor of shape (N,), "
                            f"but got {type(x).__name__}")
    check_array(x, name, kind="real", finite=False)  # O(1): bool, complex and string dtypes refused
    if x.ndim != 1:
        raise ValueError(f"Expected argument `{name}` to have shape (N,), but got {tuple(x.shape)}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"Expected argument `{name}` to have shape ({n},), but got {tuple(x.shape)}")
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            x = x.double()
        if x.device.type == "cpu" and x.dtype != torch.bfloat16:  # numpy's reductions are faster on CPU
            v = x.detach().numpy()
            ok = bool(np.isfinite(v).all()) and (not positive or bool((v > 0).all()))
        else:
            ok = bool(torch.isfinite(x).all()) and (not positive or bool((x > 0).all()))
    else:
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        ok = bool(np.isfinite(x).all()) and (not positive or bool((x > 0).all()))
    if not ok:
        raise ValueError(f"Expected argument `{name}` to hold finite values{' > 0' if positive else ''}")
    return x


def check_same_kind(named: dict[str, Array]) -> None:
    kinds = {isinstance(v, torch.Tensor) for v in named.values()}
    if len(kinds) > 1:
        raise TypeError(f"Expected arguments {', '.join('`' + k + '`' for k in named)} to be all numpy arrays "
                        "or all torch tensors, but got a mix")


def ceil_rank(n: int, level: float | Fraction) -> int:
    """ceil((n + 1) * level) in exact arithmetic (``level`` read as the decimal it prints as)."""
    return math.ceil((n + 1) * _exact(level))


def floor_rank(n: int, level: float | Fraction) -> int:
    """floor((n + 1) * level) in exact arithmetic."""
    return math.floor((n + 1) * _exact(level))

