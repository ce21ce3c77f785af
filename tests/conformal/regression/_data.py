"""Cheap synthetic regression data with closed-form fits, for the many-split coverage tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BETA = np.array([1.0, -2.0, 0.5])


def draw(rng: np.random.Generator, n: int, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Heteroscedastic linear data: y = x . beta + (0.3 + |x_0|) * eps, eps ~ N(0, 1)."""
    x = rng.normal(size=(n, d))
    beta = np.resize(BETA, d)
    return x, x @ beta + (0.3 + np.abs(x[:, 0])) * rng.normal(size=n)


def least_squares(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Minimum-norm least squares with an intercept: a fit function for jackknife+/CV+."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.lstsq(xa, y, rcond=None)[0]
    return lambda z: np.hstack([z, np.ones((len(z), 1))]) @ w


def tolerance(n: int, k: int, n_test: int, splits: int, z: float = 4.0) -> float:
    """z standard deviations of the mean coverage over ``splits`` splits.

    Per split, the coverage given the calibration draw is Beta(k, n + 1 - k) (continuous scores);
    the n_test test points add binomial noise on top.
    """
    c = k / (n + 1)
    var_beta = k * (n + 1 - k) / ((n + 1) ** 2 * (n + 2))
    return z * float(np.sqrt((var_beta + c * (1 - c) / n_test) / splits))
