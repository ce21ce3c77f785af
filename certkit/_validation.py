"""Argument checks with one message template: name the argument, the expected value, what was given."""

from __future__ import annotations

import importlib
import math
import os
import unicodedata
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from certkit.errors import BudgetExceededError, InvalidPathError, NotCalibratedError
from certkit.warnings import LowPrecisionWarning, SmallCalibrationSetWarning

Array = np.ndarray | torch.Tensor

__all__ = [
    "Array",
    "as_real_array",
    "check_array",
    "check_array_pair",
    "check_bool",
    "check_budget",
    "check_calibrated",
    "check_eval_mode",
    "check_finite",
    "check_finite_result",
    "check_generator",
    "check_groups",
    "check_in_range",
    "check_inputs",
    "check_instance",
    "check_labels",
    "check_model_input",
    "check_model_labels",
    "check_module",
    "check_no_nan",
    "check_nonnegative",
    "check_partition",
    "check_path",
    "check_positive",
    "check_positive_int",
    "check_probability",
    "check_probs",
    "check_range",
    "check_real",
    "check_real_arrays",
    "check_scores_1d",
    "check_seed",
    "check_text",
    "check_token_ids",
    "check_training_data",
    "check_unit_interval",
    "generator_or_seed",
    "has_visible",
    "probs_atol",
    "to_numpy",
    "warn_low_precision",
    "warn_low_precision_training",
    "warn_small_calibration",
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
        hint = ""
        if isinstance(value, np.random.Generator | np.random.RandomState):
            hint = " (numpy generators are not accepted: pass torch.Generator().manual_seed(seed))"
        elif isinstance(value, int | np.integer):
            hint = " (pass torch.Generator().manual_seed(seed), not a seed)"
        raise TypeError(
            f"Expected argument `{name}` to be a torch.Generator or None, but got {type(value).__name__}{hint}"
        )
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
        return torch.Generator(device=device or "cpu").manual_seed(check_seed(seed))
    if generator is None:
        return torch.Generator(device=device or "cpu").manual_seed(default_seed)
    check_generator(generator)
    assert isinstance(generator, torch.Generator)
    return generator


def check_seed(seed: Any, name: str = "seed") -> int:
    """Return ``seed`` as an int >= 0: an integer, or a float with an integral value (``3.0``).

    A non-integral float (``int(2.7)`` would silently truncate it to 2, a different stream), a bool,
    a string and a negative number are refused.
    """
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer | float | np.floating):
        raise TypeError(f"Expected argument `{name}` to be an integer >= 0, but got {seed!r}")
    if isinstance(seed, float | np.floating) and not (math.isfinite(seed) and float(seed).is_integer()):
        raise ValueError(f"Expected argument `{name}` to be an integer >= 0, but got the non-integral {seed!r}")
    if not 0 <= seed <= 2**64 - 1:  # torch's manual_seed takes 64 bits
        raise ValueError(f"Expected argument `{name}` to be an integer in [0, 2**64 - 1], but got {seed!r}")
    return int(seed)


def check_finite(x: Array, name: str) -> None:
    """Raise ValueError if ``x`` holds NaN or +-inf."""
    ok = bool(torch.isfinite(x.detach()).all()) if isinstance(x, torch.Tensor) else bool(np.isfinite(x).all())
    if not ok:
        raise ValueError(f"Expected argument `{name}` to hold only finite values, but it contains NaN or inf")


def _check_array(x: Any, name: str) -> None:
    if not isinstance(x, np.ndarray | torch.Tensor):
        raise TypeError(f"Expected argument `{name}` to be a numpy array or a torch tensor, but got {type(x).__name__}")


def _is_int_dtype(dtype: Any) -> bool:
    if isinstance(dtype, torch.dtype):
        return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool
    return bool(np.issubdtype(dtype, np.integer))


def _is_float_dtype(dtype: Any) -> bool:
    if isinstance(dtype, torch.dtype):
        return dtype.is_floating_point
    return bool(np.issubdtype(dtype, np.floating))


def _check_dtype(x: Any, name: str, kind: str) -> None:
    """``kind`` "float": a real floating dtype; "int": an integer dtype; "real": either. Bool/complex/str refused."""
    ok = {"float": _is_float_dtype, "int": _is_int_dtype,
          "real": lambda d: _is_float_dtype(d) or _is_int_dtype(d)}[kind](x.dtype)
    if not ok:
        want = {"float": "a floating-point", "int": "an integer", "real": "a real (integer or floating-point)"}[kind]
        raise TypeError(f"Expected argument `{name}` to have {want} dtype, but got dtype {x.dtype}")


def check_array(
    x: Any,
    name: str,
    *,
    kind: str = "float",
    ndim: int | Sequence[int] | None = None,
    finite: bool = True,
    tensor: bool | None = None,
    allow_inf: bool = False,
) -> None:
    """The one check for an input array: type (``tensor`` True: torch only, False: numpy only, None: either),
    dtype family (``kind`` "float", "int" or "real"; bool, complex and strings are refused), number of
    dimensions and (``finite``) no NaN/inf (``allow_inf``: no NaN, +-inf allowed, e.g. for bounds).
    Raises TypeError/ValueError naming ``name``.
    """
    if tensor is True and not isinstance(x, torch.Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch.Tensor, but got {type(x).__name__}")
    if tensor is False and not isinstance(x, np.ndarray):
        raise TypeError(f"Expected argument `{name}` to be a numpy array, but got {type(x).__name__}")
    _check_array(x, name)
    _check_dtype(x, name, kind)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"Expected argument `{name}` to have {want} dimensions, but got shape {tuple(x.shape)}")
    if finite and kind != "int":
        if allow_inf:
            check_no_nan(x, name)
        else:
            check_finite(x, name)


def _any_nan(x: Any) -> bool:
    """Whether ``x`` holds NaN; a CPU tensor of a numpy float dtype through numpy (one thread: torch's parallel
    isnan/any on a large tensor costs several times the CPU time of numpy's when threads spin-wait)."""
    if isinstance(x, torch.Tensor):
        if x.device.type == "cpu" and x.dtype in (torch.float16, torch.float32, torch.float64):
            return bool(np.isnan(x.detach().numpy()).any())
        return bool(torch.isnan(x.detach()).any())
    return bool(np.isnan(x).any())


def check_no_nan(x: Array, name: str) -> None:
    """Raise ValueError if ``x`` holds NaN (+-inf allowed: e.g. a trivial bound)."""
    if _any_nan(x):
        raise ValueError(f"Expected argument `{name}` to hold no NaN, but it contains NaN")


def as_real_array(x: Any, name: str, *, ndim: int | None = None, allow_inf: bool = False) -> np.ndarray:
    """``x`` (a sequence of numbers, a numpy array or a CPU tensor) as a float64 numpy array.

    Bool, complex and string values are refused (``np.asarray(..., float64)`` would silently turn
    them into 0/1, drop the imaginary part, or fail deep inside numpy), as are NaN and (unless
    ``allow_inf``) +-inf and a wrong number of dimensions.
    """
    if isinstance(x, str | bytes):
        raise TypeError(f"Expected argument `{name}` to be an array of real numbers, but got {type(x).__name__}")
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except ValueError:  # ragged nesting
        raise ValueError(f"Expected argument `{name}` to be a rectangular array of real numbers") from None
    if a.dtype == object or not (_is_float_dtype(a.dtype) or _is_int_dtype(a.dtype)):
        raise TypeError(f"Expected argument `{name}` to hold real numbers, but got dtype {a.dtype}")
    a = a.astype(np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"Expected argument `{name}` to have {ndim} dimensions, but got shape {a.shape}")
    if allow_inf:
        check_no_nan(a, name)
    else:
        check_finite(a, name)
    return a


def probs_atol(dtype: Any, num_classes: int) -> float:
    """Row-sum tolerance that fits ``dtype``: 1e-4, or K times the dtype's epsilon when that is larger.

    A softmax computed in float16 (eps ~ 1e-3) or bfloat16 (eps ~ 8e-3) rounds each of K entries by
    up to eps/2, so its rows sum to 1 only within about K eps / 2.
    """
    if isinstance(dtype, torch.dtype):
        eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    else:
        eps = float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else 0.0
    return max(1e-4, float(num_classes) * eps)


def check_probs(probs: Any, name: str = "probs", atol: float | None = None) -> None:
    """Check ``probs`` is a finite (N, K) array of probabilities whose rows sum to 1.

    The tolerance is ``atol``, or :func:`probs_atol` of the dtype when None (float16 probabilities
    are accepted). Integer, bool and complex arrays are refused.
    """
    _check_array(probs, name)
    _check_dtype(probs, name, "float")
    if probs.ndim != 2:
        raise ValueError(f"Expected argument `{name}` to have shape (N, K), but got shape {tuple(probs.shape)}")
    if probs.shape[1] < 2:
        raise ValueError(f"Expected argument `{name}` to have K >= 2 classes, but got shape {tuple(probs.shape)}")
    if probs.shape[0] == 0:
        return
    tol = probs_atol(probs.dtype, probs.shape[1]) if atol is None else atol
    # Two passes over the (N, K) matrix: row sums (NaN/inf propagate into them) and the minimum. Entries >= 0
    # whose row sums to 1 within tol are also <= 1 + tol, so the maximum is only computed for the error message.
    if isinstance(probs, torch.Tensor):
        probs = probs.detach()
    if isinstance(probs, torch.Tensor) and probs.device.type == "cpu" and probs.dtype in (torch.float32, torch.float64):
        probs = probs.numpy()  # numpy reductions are several times faster on CPU
    if isinstance(probs, np.ndarray) and _compiled_verdict_ok(probs, tol):
        return  # one compiled pass found the matrix valid (any failure is reported by the numpy path below)
    if isinstance(probs, torch.Tensor):
        row_sums = probs.double().sum(1)
        finite = bool(torch.isfinite(row_sums).all())
        row_err = float((row_sums - 1).abs().max()) if finite else math.nan
        lo = float(probs.min())
    elif probs.dtype in (np.float32, np.float64):
        finite, row_err = _blas_row_sums_check(probs, tol)
        lo = float(probs.min())
    else:
        row_sums = probs.sum(1, dtype=np.float64)
        finite = bool(np.isfinite(row_sums).all())
        row_err = float(np.abs(row_sums - 1).max()) if finite else math.nan
        lo = float(probs.min())
    if not finite:
        raise ValueError(f"Expected argument `{name}` to hold only finite values, but it contains NaN or inf")
    hi = float(probs.max()) if lo < 0 or row_err > tol else 1.0  # (<= 1 + tol when the checks below pass)
    if lo < 0 or hi > 1 + tol:
        raise ValueError(
            f"Expected argument `{name}` to hold probabilities in [0, 1], but got values in [{lo:.4g}, {hi:.4g}]; "
            "pass softmax probabilities, not logits"
        )
    if row_err > tol:
        raise ValueError(
            f"Expected each row of `{name}` to sum to 1 (tolerance {tol:.3g} for dtype {probs.dtype}), "
            f"but a row is off by {row_err:.3g}"
        )


_USE_COMPILED: bool | None = None
"""Whether :func:`check_probs` runs its verdict as one compiled pass (``certkit._kernels``, numba, the extra
``certkit[fast]``): None (default) for float32/float64 matrices of at least ``_COMPILED_MIN_ENTRIES`` entries when
numba imports and the environment variable ``CERTKIT_NO_NUMBA`` is unset (or ``0``), the rule of
``conformal.scores.USE_COMPILED``; False never; True always (ImportError without numba). Same verdict and same
messages either way: a failing matrix is always reported by the numpy path."""
_COMPILED_MIN_ENTRIES = 1 << 20  # N * K from which the default (None) runs the compiled verdict
_KERNELS: list[Any] = []  # the imported kernel module (or None when numba is missing), once


def load_compiled(module: str, entries: int, *, switch: bool | None, switch_name: str, cache: list[Any],
                  min_entries: int) -> Any:
    """The module of numba kernels ``module`` (imported once into ``cache``) for an input of ``entries`` = N * K
    values, or None when the kernels are switched off (``switch`` False, or None with fewer than ``min_entries``
    entries or ``CERTKIT_NO_NUMBA`` set), or numba is not installed. ``switch`` True without numba raises an
    ImportError naming ``switch_name``. Shared by the base's probability check and ``conformal.scores``."""
    if switch is False or (switch is None and (
            entries < min_entries or os.environ.get("CERTKIT_NO_NUMBA", "") not in ("", "0"))):
        return None
    if not cache:
        try:
            cache.append(importlib.import_module(module))
        except ImportError:
            cache.append(None)
    if cache[0] is None and switch:
        raise ImportError(f"{switch_name} is True but numba is not installed (pip install 'certkit[fast]')")
    return cache[0]


def _compiled_checks(entries: int) -> Any:
    """The module ``certkit._kernels`` for a matrix of ``entries`` = N * K values, or None when the compiled
    verdict is switched off, the matrix is below the size floor of the default, or numba is not installed."""
    return load_compiled("certkit._kernels", entries, switch=_USE_COMPILED,
                         switch_name="certkit._validation._USE_COMPILED", cache=_KERNELS,
                         min_entries=_COMPILED_MIN_ENTRIES)


def _compiled_verdict_ok(probs: np.ndarray, tol: float) -> bool:
    """True when the compiled pass (:func:`certkit._kernels.probs_verdict`) finds ``probs`` (N, K), N >= 1,
    valid: finite float64 row sums, entries >= 0, rows summing to 1 within ``tol`` (rows within the float64
    rounding bound of the tolerance re-summed by numpy, as the numpy path does). False: not run (no numba,
    small matrix, another dtype) or a row failed; the caller then runs the numpy check, which raises."""
    if probs.dtype not in (np.float32, np.float64):
        return False
    kernels = _compiled_checks(probs.shape[0] * probs.shape[1])
    if kernels is None:
        return False
    unsure = np.empty(probs.shape[0], dtype=np.int64)
    if probs.flags.c_contiguous:
        m = int(kernels.probs_verdict(probs, float(tol), unsure))
    elif probs.flags.f_contiguous:
        m = int(kernels.probs_verdict_t(probs.T, float(tol), unsure))
    else:  # strided: numpy's reductions handle it
        return False
    if m < 0:
        return False
    if m:
        exact = probs[unsure[:m]].sum(1, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return bool((np.abs(exact - 1) <= tol).all())
    return True


def _blas_row_sums_check(probs: np.ndarray, tol: float) -> tuple[bool, float]:
    """(all row sums finite, max |row sum - 1|) of a float32/float64 matrix, from BLAS row sums in its dtype.

    A matrix-vector product with ones costs a fraction of a float64 reduction. Its rounding error is at most
    gamma_K = K u / (1 - K u) times the sum of |entries| (u the dtype's unit roundoff), so a row is decided
    from it only when ``|s - 1|`` is beyond ``tol`` by more than that bound; the other rows (and rows whose
    low-precision sum overflowed) are summed again in float64, so the result is the float64 check's verdict.
    Returns the float64 error of undecided rows and the BLAS estimate of decided ones (for the message).
    """
    k = probs.shape[1]
    sums = probs @ np.ones(k, dtype=probs.dtype)
    unit = float(np.finfo(probs.dtype).eps) / 2
    gamma = k * unit / (1 - k * unit) if k * unit < 0.5 else math.inf
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(sums.astype(np.float64) - 1)
        bound = 2 * gamma * (1 + err)  # (sum of |p| = sum of p <= |s - 1| + 1 + bound when p >= 0; if not, min < 0 fails)
        unsure = ~((err + bound <= tol) | (err - bound > tol))
    if unsure.any():
        idx = np.flatnonzero(unsure)
        exact = probs[idx].sum(1, dtype=np.float64)
        if not bool(np.isfinite(exact).all()):
            return False, math.nan
        err[idx] = np.abs(exact - 1)
    return True, float(err.max())


def check_labels(labels: Any, n: int | None, num_classes: int | None, name: str = "labels") -> None:
    """Check ``labels`` is an integer (N,) array with values in [0, num_classes) (either bound None: unchecked)."""
    _check_array(labels, name)
    if n is None:
        n = labels.shape[0] if labels.ndim == 1 else -1
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"Expected argument `{name}` to have shape ({n},), but got shape {tuple(labels.shape)}")
    if not _is_int_dtype(labels.dtype):
        raise TypeError(
            f"Expected argument `{name}` to hold integer class indices, but got dtype {labels.dtype} "
            "(float labels are refused, not truncated: convert them with .long() / .astype(int))"
        )
    if isinstance(labels, torch.Tensor) and labels.device.type == "cpu":
        labels = labels.detach().numpy()  # numpy's min/max (one thread): torch's spin-wait with several threads
    if num_classes is None:
        if n and int(labels.min()) < 0:
            raise ValueError(f"Expected argument `{name}` to hold class indices >= 0, but got {int(labels.min())}")
        return
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
    _check_dtype(scores, name, "real")
    if scores.ndim != 1:
        raise ValueError(f"Expected argument `{name}` to have shape (N,), but got shape {tuple(scores.shape)}")
    if scores.shape[0] == 0:
        raise ValueError(f"Expected argument `{name}` to hold at least one calibration score, but it is empty")
    if _any_nan(scores):
        raise ValueError(f"Expected argument `{name}` to hold no NaN, but it contains NaN")


def check_groups(groups: Any, n: int, name: str = "groups") -> np.ndarray:
    """``groups``: (N,) group labels (integers or strings; a list, numpy array or CPU tensor) of N scores, returned as a
    numpy array of labels. Refused, naming ``name`` and the expected value: a length other than ``n``, an empty or
    multi-dimensional array, NaN / None entries, non-integral floats, bool, complex or bytes labels."""
    if isinstance(groups, str | bytes) or groups is None:
        raise TypeError(f"Expected argument `{name}` to be an ({n},) array of integer or string group labels, "
                        f"but got {type(groups).__name__}")
    if isinstance(groups, torch.Tensor):
        groups = groups.detach().cpu().numpy()
    try:
        g = np.asarray(groups)
    except (TypeError, ValueError):
        raise TypeError(f"Expected argument `{name}` to be an ({n},) array of integer or string group labels, "
                        f"but got {type(groups).__name__}") from None
    if g.ndim != 1 or g.shape[0] != n:
        raise ValueError(f"Expected argument `{name}` to have shape ({n},) (one group label per score), "
                         f"but got shape {tuple(g.shape)}")
    if n == 0:
        raise ValueError(f"Expected argument `{name}` to hold at least one group label, but it is empty")
    kind = g.dtype.kind
    if kind == "f":
        if np.isnan(g).any():
            raise ValueError(f"Expected argument `{name}` to hold no NaN (one integer or string label per score), "
                             "but it contains NaN")
        if not np.all(np.isfinite(g) & (g == np.round(g))):
            raise TypeError(f"Expected argument `{name}` to hold integer or string group labels, "
                            f"but got non-integral floats (dtype {g.dtype})")
    elif kind == "O":
        for v in g.tolist():
            if v is None or (isinstance(v, float) and math.isnan(v)):
                raise ValueError(f"Expected argument `{name}` to hold no NaN or None (one integer or string label "
                                 "per score), but it contains one")
            if not isinstance(v, int | str | np.integer) or isinstance(v, bool):
                raise TypeError(f"Expected argument `{name}` to hold integer or string group labels, "
                                f"but got {type(v).__name__}")
        g = np.asarray([str(v) if isinstance(v, str) else int(v) for v in g.tolist()], dtype=object)
    elif kind not in "iuU":
        raise TypeError(f"Expected argument `{name}` to hold integer or string group labels, but got dtype {g.dtype}")
    return g


def check_eval_mode(model: torch.nn.Module, name: str = "model") -> None:
    """Certificates are stated for a fixed function: refuse a module in training mode."""
    if not isinstance(model, torch.nn.Module):
        return
    if not any(m.training for m in model.modules()):  # the common case without building module names
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


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` if it is a bool (numpy bools too); strings such as ``"no"`` are refused, not truthy."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"Expected argument `{name}` to be True or False, but got {value!r}")
    return bool(value)


def check_real(value: Any, name: str) -> float:
    """Return ``value`` as float if it is a finite real number (bools, NaN and +-inf refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"Expected argument `{name}` to be a finite number, but got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"Expected argument `{name}` to be a finite number, but got {value!r}")
    return v


def check_unit_interval(value: Any, name: str) -> float:
    """Return ``value`` as float if it lies in the closed interval [0, 1] (NaN refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"Expected argument `{name}` to be a number in [0, 1], but got {value!r}")
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"Expected argument `{name}` to be in the closed interval [0, 1], but got {value!r}")
    return v


def check_budget(count: int, budget: int | None, what: str, hint: str = "", *, at_least: bool = False) -> None:
    """Refuse a call whose closed-form cost ``count`` exceeds ``budget`` (None: no limit).

    Callers compute ``count`` in closed form (or a lower bound of it, capped just above the budget)
    BEFORE enumerating or allocating anything, so an over-budget call fails at once instead of hanging.
    ``at_least``: ``count`` is a lower bound of the cost (said so in the message).
    """
    if budget is not None and count > budget:
        more = f"; {hint}" if hint else ""
        needs = "needs at least" if at_least else "needs"
        raise BudgetExceededError(f"{what} {needs} {count:,}, which exceeds the budget of {budget:,}{more}")


def check_model_input(model: torch.nn.Module, x: Any, name: str = "x") -> None:
    """Refuse an input on another device, or of another floating dtype, than the model's first parameter/buffer."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch.Tensor, but got {type(x).__name__}")
    for t in [*model.parameters(), *model.buffers()]:
        if not t.is_floating_point():
            continue
        if t.device != x.device:
            raise ValueError(
                f"Expected argument `{name}` to be on the model's device {t.device}, but it is on {x.device}"
            )
        if x.is_floating_point() and x.dtype != t.dtype:
            raise TypeError(
                f"Expected argument `{name}` to have the model's dtype {t.dtype}, but got dtype {x.dtype}; "
                f"convert one of them (e.g. `{name}.to({t.dtype})`)"
            )
        return


def check_token_ids(ids: Any, name: str = "ids", vocab_size: int | None = None) -> tuple[int, ...]:
    """Return ``ids`` as a tuple of ints in [0, vocab_size); bytes, strings, bools, floats and negatives refused.

    A negative id would index the vocabulary from its end, and bytes would be read as ids: both
    would silently certify a different prompt than the caller meant.
    """
    if isinstance(ids, str | bytes | bytearray | memoryview):
        raise TypeError(
            f"Expected argument `{name}` to be a sequence of integer token ids, but got {type(ids).__name__}"
            + ("; decode bytes to str first" if not isinstance(ids, str) else "")
        )
    if isinstance(ids, np.ndarray | torch.Tensor):
        if ids.ndim != 1 or not _is_int_dtype(ids.dtype):
            raise TypeError(
                f"Expected argument `{name}` to be a 1-D integer array of token ids, "
                f"but got dtype {ids.dtype} and shape {tuple(ids.shape)}"
            )
        ids = ids.tolist()
    if not isinstance(ids, Sequence):
        raise TypeError(f"Expected argument `{name}` to be a sequence of integer token ids, but got {type(ids).__name__}")
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"Expected argument `{name}` to hold integer token ids, but got {i!r}")
        if i < 0 or (vocab_size is not None and i >= vocab_size):
            bound = f"[0, {vocab_size})" if vocab_size is not None else ">= 0"
            raise ValueError(f"Expected argument `{name}` to hold token ids {bound}, but got {int(i)}")
        out.append(int(i))
    return tuple(out)


# Whitespace, plus characters that render as nothing: format characters (zero-width space/joiners,
# BOM, soft hyphen, bidi marks), and the blank Hangul fillers and braille blank.
_INVISIBLE_EXTRA = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _visible(ch: str) -> bool:
    return not (ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc", "Zs", "Zl", "Zp") or ch in _INVISIBLE_EXTRA)


def check_text(text: Any, name: str = "prompt") -> str:
    """Return ``text`` if it is a str with at least one visible character and no control characters.

    Refused: bytes (TypeError: decode them first), empty, whitespace-only and invisible-only strings
    (zero-width spaces and other format characters count as invisible, like whitespace), and control
    characters other than tab, newline and carriage return.
    """
    if isinstance(text, bytes | bytearray | memoryview):
        raise TypeError(f"Expected argument `{name}` to be a str, but got {type(text).__name__}; decode it first")
    if not isinstance(text, str):
        raise TypeError(f"Expected argument `{name}` to be a str, but got {type(text).__name__}")
    if not any(_visible(ch) for ch in text):
        raise ValueError(
            f"Expected argument `{name}` to hold at least one visible character, but got {text!r} "
            "(empty, whitespace-only and invisible-only strings are refused)"
        )
    if text.isprintable():  # no control character (Cc) and no lone surrogate (Cs): the checks below pass
        return text
    bad = next((ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r"), None)
    if bad is not None:
        raise ValueError(f"Expected argument `{name}` to hold no control characters, but it contains {bad!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"Expected argument `{name}` to be valid Unicode, but it contains a lone surrogate") from None
    return text


def warn_low_precision(dtype: torch.dtype, name: str, what: str = "bounds", stacklevel: int = 3) -> None:
    """Warn (:class:`certkit.warnings.LowPrecisionWarning`) when ``dtype`` is float16 or bfloat16."""
    if dtype in (torch.float16, torch.bfloat16):
        warnings.warn(
            f"argument `{name}` has dtype {dtype}: {what} computed in it do not account for its rounding "
            "(sampled outputs may leave them); use float32 or float64, or `sound=True` where offered",
            LowPrecisionWarning,
            stacklevel=stacklevel,
        )


def warn_low_precision_training(model: Any, inputs: Any, name: str = "inputs", stacklevel: int = 3) -> None:
    """Warn (:class:`certkit.warnings.LowPrecisionWarning`) when a trainer gets a float16/bfloat16 model or inputs:
    its certified losses (bounds, noise averages) are then computed in a dtype whose rounding they ignore,
    and the certificates of the trained model must be computed in float32/float64 anyway."""
    dtypes = []
    if isinstance(inputs, torch.Tensor):
        dtypes.append((inputs.dtype, f"argument `{name}`"))
    if isinstance(model, torch.nn.Module):
        p = next((t for t in model.parameters() if t.is_floating_point()), None)
        if p is not None:
            dtypes.append((p.dtype, "the model's parameters"))
    for dtype, what in dtypes:
        if dtype in (torch.float16, torch.bfloat16):
            warnings.warn(
                f"{what} have dtype {dtype}: training losses computed in it (bounds, noise averages) do not "
                "account for its rounding; train in float32 (or use torch.autocast) and certify in float32/float64",
                LowPrecisionWarning,
                stacklevel=stacklevel,
            )
            return


def warn_small_calibration(n: int, alpha: float, name: str = "scores", stacklevel: int = 3) -> None:
    """Warn (:class:`certkit.warnings.SmallCalibrationSetWarning`) when ``n < 1/alpha - 1``: the conformal
    quantile is then +inf and every prediction set is trivial."""
    if n < math.ceil(1.0 / alpha - 1.0 - 1e-12):
        warnings.warn(
            f"argument `{name}` holds n={n} calibration points, fewer than 1/alpha - 1 = {1 / alpha - 1:.4g} "
            f"for alpha={alpha}: the conformal threshold is infinite and every set is trivial",
            SmallCalibrationSetWarning,
            stacklevel=stacklevel,
        )


def has_visible(text: str) -> bool:
    """True if ``text`` has a character that is neither whitespace nor invisible (zero-width, format)."""
    return any(_visible(ch) for ch in text)


def check_model_labels(model: Any, x: Any, labels: Any, name: str = "labels", inputs_name: str = "x") -> None:
    """Check integer ``labels`` (N,) index the model's outputs: K from one forward pass of ``x[:1]``
    (no gradient, the model's mode untouched); out-of-range labels would otherwise fail deep in torch. A model
    that fails on ``x[:1]`` (inputs of another shape or dtype) raises a ValueError naming ``inputs_name``."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch tensor of class indices, but got {type(labels).__name__}")
    num_classes = None
    if isinstance(x, torch.Tensor) and x.shape[0] and labels.ndim == 1 and labels.shape[0] == x.shape[0]:
        modes = [(m, m.training) for m in model.modules()] if isinstance(model, torch.nn.Module) else []
        try:
            for m, _ in modes:
                m.eval()  # no batch-norm statistics are updated by this probe
            with torch.no_grad():
                num_classes = int(model(x[:1]).shape[-1])
        except RuntimeError as err:  # torch's own message ("mat1 and mat2 shapes ...") names no argument
            raise ValueError(
                f"Expected argument `{inputs_name}` to have the shape and dtype the model takes, but the model failed "
                f"on one input of shape {tuple(x.shape[1:])} and dtype {x.dtype}: {err}"
            ) from err
        finally:
            for m, training in modes:
                m.train(training)
    check_labels(labels, int(x.shape[0]), num_classes, name)


def check_training_data(model: Any, inputs: Any, labels: Any, inputs_name: str = "inputs") -> None:
    """The trainers' inputs: finite floating-point ``inputs`` (N, ...) and integer ``labels`` (N,) in the
    model's class range, checked before the first step (so a bad label never leaves a half-trained model)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"Expected argument `model` to be a torch.nn.Module, but got {type(model).__name__}")
    check_array(inputs, inputs_name, tensor=True)
    if inputs.ndim < 1:
        raise ValueError(f"Expected argument `{inputs_name}` to have shape (N, ...), but got shape {tuple(inputs.shape)}")
    if isinstance(labels, torch.Tensor) and labels.ndim == 1 and labels.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"Expected arguments `{inputs_name}` and `labels` to have the same length, but got "
            f"{inputs.shape[0]} and {labels.shape[0]}"
        )
    check_model_labels(model, inputs, labels, "labels", inputs_name)
    warn_low_precision_training(model, inputs, inputs_name, stacklevel=4)


def check_module(value: Any, name: str = "model") -> torch.nn.Module:
    """``value`` if it is a ``torch.nn.Module``, else TypeError naming ``name`` (a plain function is refused too:
    certificates need the module's layers)."""
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"Expected argument `{name}` to be a torch.nn.Module, but got {type(value).__name__}")
    return value


def check_instance(value: Any, types: type | tuple[type, ...], name: str, what: str | None = None) -> Any:
    """``value`` if it is an instance of ``types``, else TypeError naming ``name`` and the expected type
    (``what``, default the types' names): for objects certkit builds (a pattern, a trigger, a property)."""
    if not isinstance(value, types):
        if what is None:
            what = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise TypeError(f"Expected argument `{name}` to be {what}, but got {type(value).__name__}")
    return value


def check_inputs(model: Any, x: Any, name: str = "x", *, min_ndim: int = 1) -> torch.Tensor:
    """The inputs of a model: a finite floating-point tensor with at least ``min_ndim`` dimensions, on the
    model's device and in its dtype (:func:`check_model_input`). ``model`` must be a module."""
    check_module(model)
    check_array(x, name, tensor=True)
    if x.ndim < min_ndim:
        raise ValueError(f"Expected argument `{name}` to have at least {min_ndim} dimensions, but got shape "
                         f"{tuple(x.shape)}")
    check_model_input(model, x, name)
    return x  # type: ignore[no-any-return]


def check_path(path: Any, name: str = "path", *, kind: str = "any") -> Any:
    """``path`` (a str or ``os.PathLike``) as a ``pathlib.Path`` that exists (``kind`` "file": a file, "dir": a
    directory, "any": either). A missing path raises :class:`certkit.errors.InvalidPathError` (both a
    ValueError and a FileNotFoundError) naming ``name``."""
    import os
    from pathlib import Path

    if not isinstance(path, str | os.PathLike) or isinstance(path, bytes):
        raise TypeError(f"Expected argument `{name}` to be a path (str or os.PathLike), but got {type(path).__name__}")
    p = Path(path)
    ok = {"file": p.is_file, "dir": p.is_dir, "any": p.exists}[kind]()
    if not ok:
        want = {"file": "an existing file", "dir": "an existing directory", "any": "an existing path"}[kind]
        raise InvalidPathError(f"Expected argument `{name}` to be {want}, but {str(path)!r} is not")
    return p


def check_range(pair: Any, name: str, *, finite: bool = True) -> tuple[float, float]:
    """A pair ``(low, high)`` of real numbers with ``low < high`` (finite unless ``finite`` is False; never NaN)."""
    if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise TypeError(f"Expected argument `{name}` to be a pair (low, high), but got {pair!r}")
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, int | float | np.floating | np.integer):
            raise TypeError(f"Expected argument `{name}` to be a pair of numbers (low, high), but got {pair!r}")
    lo, hi = float(pair[0]), float(pair[1])
    if math.isnan(lo) or math.isnan(hi) or (finite and not (math.isfinite(lo) and math.isfinite(hi))) or not lo < hi:
        fin = "finite " if finite else ""
        raise ValueError(f"Expected argument `{name}` to be a pair of {fin}numbers (low, high) with low < high, "
                         f"but got {pair!r}")
    return lo, hi


def check_partition(parts: Any, name: str = "parts", *, atol: float = 1e-9) -> tuple[float, ...]:
    """A non-empty sequence of fractions >= 0 that sum to 1 (within ``atol``), e.g. train/calibration/test sizes."""
    if isinstance(parts, str | bytes) or not isinstance(parts, Sequence) or not parts:
        raise TypeError(f"Expected argument `{name}` to be a non-empty sequence of fractions, but got {parts!r}")
    out = []
    for v in parts:
        if isinstance(v, bool) or not isinstance(v, int | float | np.floating | np.integer):
            raise TypeError(f"Expected argument `{name}` to hold numbers, but got {v!r}")
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"Expected argument `{name}` to hold fractions >= 0, but got {v!r}")
        out.append(float(v))
    if abs(sum(out) - 1.0) > atol:
        raise ValueError(f"Expected the fractions of argument `{name}` to sum to 1, but they sum to {sum(out)!r}")
    return tuple(out)


def check_real_arrays(**arrays: Any) -> None:
    """Constant-time checks of the inputs of an elementwise function: each a numpy array or a torch tensor of
    a real dtype (bool, complex and strings refused), all from the same library. Pair it with
    :func:`check_finite_result`, which finds a NaN/inf input from the result in one pass."""
    first: tuple[str, Any] | None = None
    for name, a in arrays.items():
        _check_array(a, name)
        _check_dtype(a, name, "real")
        if first is None:
            first = (name, a)
        else:
            check_array_pair(first[1], a, first[0], name)


def check_finite_result(result: Array, arrays: dict[str, Any], allow_inf: Sequence[str] = ()) -> None:
    """One pass over ``result``; only when it holds NaN/inf, each input is checked (NaN refused, +-inf refused
    unless its name is in ``allow_inf``) so that the error names the argument."""
    if isinstance(result, torch.Tensor):
        ok = bool(torch.isfinite(result.detach()).all())
    else:
        ok = bool(np.isfinite(result).all())
    if ok:
        return
    for name, a in arrays.items():
        if name in allow_inf:
            check_no_nan(a, name)
        else:
            check_finite(a, name)


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array: a tensor detached and moved to the CPU (no copy when it is already there)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
