"""Argument checks with one message template: name the argument, the expected value, what was given."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from certkit.errors import NotCalibratedError

Array = np.ndarray | torch.Tensor

__all__ = [
    "Array",
    "check_array_pair",
    "check_calibrated",
    "check_eval_mode",
    "check_finite",
    "check_generator",
    "check_in_range",
    "check_labels",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_probability",
    "check_probs",
    "check_scores_1d",
    "generator_or_seed",
]


def check_probability(value: Any, name: str) -> float:
    """Return ``value`` as float if it lies in the open interval (0, 1), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"Expected argument `{name}` to be a float in (0, 1), but got {value!r}")
    v = float(value)
    if not (0.0 < v < 1.0):
        raise ValueError(f"Expected argument `{name}` to be in the open interval (0, 1), but got {value!r}")
    return v


def check_in_range(value: Any, name: str, low: float, high: float) -> float:
    """Return ``value`` as float if ``low < value < high`` (open interval), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"Expected argument `{name}` to be a number in ({low}, {high}), but got {value!r}")
    v = float(value)
    if not (low < v < high):
        raise ValueError(f"Expected argument `{name}` to be in the open interval ({low}, {high}), but got {value!r}")
    return v


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as float if it is finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"Expected argument `{name}` to be a positive number, but got {value!r}")
    v = float(value)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"Expected argument `{name}` to be a finite number > 0, but got {value!r}")
    return v


def check_nonnegative(value: Any, name: str) -> float:
    """Return ``value`` as float if it is finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"Expected argument `{name}` to be a number >= 0, but got {value!r}")
    v = float(value)
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"Expected argument `{name}` to be a finite number >= 0, but got {value!r}")
    return v


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as int if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"Expected argument `{name}` to be an integer >= {minimum}, but got {value!r}")
    if value < minimum:
        raise ValueError(f"Expected argument `{name}` to be an integer >= {minimum}, but got {value!r}")
    return int(value)


def check_generator(value: Any, name: str = "generator") -> torch.Generator | None:
    """``value`` if it is a ``torch.Generator`` or None (the one accepted type), else TypeError naming it."""
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"Expected argument `{name}` to be a torch.Generator or None, but got {type(value).__name__}")
    return value


def generator_or_seed(generator: Any, seed: Any, *, where: str, device: torch.device | str | None = None,
                      default_seed: int = 0, stacklevel: int = 3) -> torch.Generator:
    """The generator to draw from, for functions whose ``seed: int`` became ``generator``.

    ``generator`` if given (checked); otherwise a generator (on ``device``, default CPU) seeded with the
    deprecated ``seed`` (with a ``DeprecationWarning`` naming ``where``), or with ``default_seed`` when
    both are None, so that the default stays reproducible. Both given: ``ValueError``.
    """
    if seed is not None:
        warnings.warn(
            f"Argument `seed` of {where} is deprecated and will be removed in the next release; "
            "pass `generator=torch.Generator().manual_seed(seed)` instead",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        if generator is not None:
            raise ValueError("Expected either argument `generator` or the deprecated `seed`, but got both")
        return torch.Generator(device=device or "cpu").manual_seed(int(seed))
    if generator is None:
        return torch.Generator(device=device or "cpu").manual_seed(default_seed)
    check_generator(generator)
    assert isinstance(generator, torch.Generator)
    return generator


def check_finite(x: Array, name: str) -> None:
    """Raise ValueError if ``x`` holds NaN or +-inf."""
    ok = bool(torch.isfinite(x.detach()).all()) if isinstance(x, torch.Tensor) else bool(np.isfinite(x).all())
    if not ok:
        raise ValueError(f"Expected argument `{name}` to hold only finite values, but it contains NaN or inf")


def _check_array(x: Any, name: str) -> None:
    if not isinstance(x, np.ndarray | torch.Tensor):
        raise TypeError(f"Expected argument `{name}` to be a numpy array or a torch tensor, but got {type(x).__name__}")


def check_probs(probs: Any, name: str = "probs", atol: float = 1e-4) -> None:
    """Check ``probs`` is a finite (N, K) array of probabilities whose rows sum to 1 within ``atol``."""
    _check_array(probs, name)
    if probs.ndim != 2:
        raise ValueError(f"Expected argument `{name}` to have shape (N, K), but got shape {tuple(probs.shape)}")
    if probs.shape[1] < 2:
        raise ValueError(f"Expected argument `{name}` to have K >= 2 classes, but got shape {tuple(probs.shape)}")
    if probs.shape[0] == 0:
        return
    # Two passes over the (N, K) matrix: row sums (NaN/inf propagate into them) and the minimum.
    # Entries >= 0 with rows summing to 1 are also <= 1 (+ atol).
    if isinstance(probs, torch.Tensor):
        probs = probs.detach()
    if isinstance(probs, torch.Tensor) and probs.device.type == "cpu" and probs.dtype in (torch.float32, torch.float64):
        probs = probs.numpy()  # numpy reductions are several times faster on CPU
    if isinstance(probs, torch.Tensor):
        row_sums = probs.sum(1)
        finite = bool(torch.isfinite(row_sums).all())
        row_err = float((row_sums - 1).abs().max()) if finite else math.nan
        lo = float(probs.min())
    else:
        row_sums = probs.sum(1)
        finite = bool(np.isfinite(row_sums).all())
        row_err = float(np.abs(row_sums - 1).max()) if finite else math.nan
        lo = float(probs.min())
    if not finite:
        raise ValueError(f"Expected argument `{name}` to hold only finite values, but it contains NaN or inf")
    if lo < 0:
        raise ValueError(f"Expected argument `{name}` to hold probabilities in [0, 1], but got a value {lo}")
    if row_err > atol:
        raise ValueError(
            f"Expected each row of `{name}` to sum to 1 (tolerance {atol}), but a row is off by {row_err:.3g}; "
            "pass softmax probabilities, not logits"
        )


def check_labels(labels: Any, n: int, num_classes: int, name: str = "labels") -> None:
    """Check ``labels`` is an integer (N,) array with values in [0, num_classes)."""
    _check_array(labels, name)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"Expected argument `{name}` to have shape ({n},), but got shape {tuple(labels.shape)}")
    is_int = (not labels.dtype.is_floating_point and labels.dtype != torch.bool) if isinstance(labels, torch.Tensor) \
        else np.issubdtype(labels.dtype, np.integer)
    if not is_int:
        raise TypeError(f"Expected argument `{name}` to hold integer class indices, but got dtype {labels.dtype}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"Expected argument `{name}` to hold class indices in [0, {num_classes - 1}], "
            f"but got values in [{int(labels.min())}, {int(labels.max())}]"
        )


def check_array_pair(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Refuse to mix numpy arrays and torch tensors (results would silently change type)."""
    if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
        raise TypeError(
            f"Expected `{name_a}` and `{name_b}` to be both numpy arrays or both torch tensors, "
            f"but got {type(a).__name__} and {type(b).__name__}"
        )


def check_scores_1d(scores: Any, name: str = "scores") -> None:
    """Check ``scores`` is a non-empty finite (N,) array (+inf is allowed: a certifier may return it)."""
    _check_array(scores, name)
    if scores.ndim != 1:
        raise ValueError(f"Expected argument `{name}` to have shape (N,), but got shape {tuple(scores.shape)}")
    if scores.shape[0] == 0:
        raise ValueError(f"Expected argument `{name}` to hold at least one calibration score, but it is empty")
    nan = bool(torch.isnan(scores).any()) if isinstance(scores, torch.Tensor) else bool(np.isnan(scores).any())
    if nan:
        raise ValueError(f"Expected argument `{name}` to hold no NaN, but it contains NaN")


def check_eval_mode(model: torch.nn.Module, name: str = "model") -> None:
    """Certificates are stated for a fixed function: refuse a module in training mode."""
    if not isinstance(model, torch.nn.Module):
        return
    training = [n or type(model).__name__ for n, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"Expected argument `{name}` to be in eval mode (call `{name}.eval()`), but these modules are "
            f"in training mode: {', '.join(training[:5])}"
        )


def check_calibrated(obj: Any, attr: str) -> None:
    """Raise NotCalibratedError if ``obj`` has no learned attribute ``attr``."""
    if getattr(obj, attr, None) is None:
        raise NotCalibratedError(
            f"This {type(obj).__name__} instance is not calibrated yet: call `calibrate(...)` before using it"
        )
