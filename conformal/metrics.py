"""Evaluation metrics of prediction sets. Each takes a (N, K) bool mask (or ``PredictionSets``)."""

from __future__ import annotations

import numpy as np
import torch

from certkit._validation import Array, check_labels, check_probability
from conformal.sets import PredictionSets

__all__ = [
    "average_size",
    "class_coverage_gap",
    "coverage",
    "empty_rate",
    "singleton_rate",
    "size_stratified_coverage_violation",
]


def _mask(sets: PredictionSets | Array) -> np.ndarray:
    m = sets.mask if isinstance(sets, PredictionSets) else sets
    m = m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
    if m.ndim != 2 or m.dtype != np.bool_:
        raise ValueError(f"Expected argument `sets` to be a (N, K) bool mask, but got dtype {m.dtype}, shape {m.shape}")
    return m


def _covered(sets: PredictionSets | Array, labels: Array) -> np.ndarray:
    m = _mask(sets)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    check_labels(y, m.shape[0], m.shape[1])
    return m[np.arange(len(y)), y]


def coverage(sets: PredictionSets | Array, labels: Array) -> float:
    """Fraction of inputs whose set contains the true label.

    Examples:
        >>> mask = np.array([[True, True, False], [False, False, True], [False, False, False]])
        >>> coverage(mask, np.array([0, 2, 1]))   # the third set is empty: a miss
        0.6666666666666666
    """
    return float(_covered(sets, labels).mean())


def average_size(sets: PredictionSets | Array) -> float:
    """Mean number of labels per set.

    Examples:
        >>> average_size(np.array([[True, True, False], [False, False, True], [False, False, False]]))
        1.0
    """
    return float(_mask(sets).sum(1).mean())


def singleton_rate(sets: PredictionSets | Array) -> float:
    """Fraction of sets with exactly one label.

    Examples:
        >>> singleton_rate(np.array([[True, True], [False, True], [False, True], [False, False]]))
        0.5
    """
    return float((_mask(sets).sum(1) == 1).mean())


def empty_rate(sets: PredictionSets | Array) -> float:
    """Fraction of empty sets.

    Examples:
        >>> empty_rate(np.array([[True, True], [False, True], [False, True], [False, False]]))
        0.25
    """
    return float((_mask(sets).sum(1) == 0).mean())


def class_coverage_gap(sets: PredictionSets | Array, labels: Array, alpha: float) -> float:
    """CovGap: mean over classes present of |coverage within the class - (1 - alpha)|."""
    check_probability(alpha, "alpha")
    cov = _covered(sets, labels)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    gaps = [abs(cov[y == c].mean() - (1 - alpha)) for c in np.unique(y)]
    return float(np.mean(gaps))


def size_stratified_coverage_violation(
    sets: PredictionSets | Array, labels: Array, alpha: float,
    strata: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (4, 6), (7, 10), (11, 100), (101, 1000)),
) -> float:
    """SSCV (Angelopoulos et al. 2021): max over set-size strata of |coverage in stratum - (1 - alpha)|.

    Strata are inclusive size ranges; empty strata are skipped.
    """
    check_probability(alpha, "alpha")
    cov = _covered(sets, labels)
    size = _mask(sets).sum(1)
    viol = [abs(cov[(size >= lo) & (size <= hi)].mean() - (1 - alpha))
            for lo, hi in strata if ((size >= lo) & (size <= hi)).any()]
    return float(max(viol)) if viol else 0.0
