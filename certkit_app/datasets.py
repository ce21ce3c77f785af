"""The embedded image dataset: scikit-learn's ``load_digits`` (1,797 real 8x8 handwritten digits).

Pixels are scaled from 0..16 to [0, 1]. The split is fixed: a permutation drawn by
``numpy.random.default_rng(0)`` puts the first 1,000 images in ``train``, the next 397 in
``calibration`` and the last 400 in ``test``. Every table in the README uses this split.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

__all__ = [
    "DIABETES_SPLIT_SIZES",
    "DIGITS_SPLIT_SIZES",
    "DiabetesSplit",
    "DigitsSplit",
    "load_diabetes_split",
    "load_digits_split",
]

DIGITS_SPLIT_SIZES = {"train": 1000, "calibration": 397, "test": 400}
Split = Literal["train", "calibration", "test"]


@dataclass(frozen=True)
class DigitsSplit:
    """One part of the digits split: ``images`` (N, 1, 8, 8) float32 in [0, 1], ``labels`` (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    @property
    def flat(self) -> torch.Tensor:
        """The images as (N, 64) vectors."""
        return self.images.reshape(len(self.images), -1)

    def __len__(self) -> int:
        return len(self.labels)


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    return x, y, perm


def load_digits_split(split: Split) -> DigitsSplit:
    """Return one part (``"train"``, ``"calibration"`` or ``"test"``) of the fixed digits split."""
    if split not in DIGITS_SPLIT_SIZES:
        raise ValueError(f"Expected argument `split` to be one of {sorted(DIGITS_SPLIT_SIZES)}, but got {split!r}")
    x, y, perm = _digits_arrays()
    start = {"train": 0, "calibration": 1000, "test": 1397}[split]
    idx = perm[start : start + DIGITS_SPLIT_SIZES[split]]
    return DigitsSplit(torch.from_numpy(x[idx].copy()), torch.from_numpy(y[idx].copy()))


# -- regression: scikit-learn's ``load_diabetes`` (442 patients, 10 features, disease progression) --

DIABETES_SPLIT_SIZES = {"train": 200, "calibration": 121, "test": 121}
#: The target is standardised with these constants (the mean and std of all 442 targets).
DIABETES_TARGET_MEAN, DIABETES_TARGET_STD = 152.13348416289594, 77.00574586945044


@dataclass(frozen=True)
class DiabetesSplit:
    """One part of the diabetes split: ``x`` (N, 10) float32 standardised features, ``y`` (N,) float32
    standardised target (``(progression - 152.13) / 77.01``)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@lru_cache(maxsize=1)
def _diabetes_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    x = (d.data / d.data.std(0)).astype(np.float32)  # shipped centred; scale to unit variance
    y = ((d.target - DIABETES_TARGET_MEAN) / DIABETES_TARGET_STD).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(y))
    return x, y, perm


def load_diabetes_split(split: Literal["train", "calibration", "test", "all"]) -> DiabetesSplit:
    """One part of the fixed diabetes split (a ``default_rng(0)`` permutation: 200 train, 121
    calibration, 121 test), or ``"all"`` 442 points in the permuted order."""
    x, y, perm = _diabetes_arrays()
    if split == "all":
        return DiabetesSplit(torch.from_numpy(x[perm].copy()), torch.from_numpy(y[perm].copy()))
    if split not in DIABETES_SPLIT_SIZES:
        raise ValueError(f"Expected argument `split` to be one of {[*sorted(DIABETES_SPLIT_SIZES), 'all']}, "
                         f"but got {split!r}")
    start = {"train": 0, "calibration": 200, "test": 321}[split]
    idx = perm[start : start + DIABETES_SPLIT_SIZES[split]]
    return DiabetesSplit(torch.from_numpy(x[idx].copy()), torch.from_numpy(y[idx].copy()))
