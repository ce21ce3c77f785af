"""Conformal risk control (Angelopoulos, Bates, Fisch, Lei, Schuster 2022, "Conformal risk control").

Split conformal controls the probability of a miss; conformal risk control controls the expectation
of any loss L_i(lambda) that is non-increasing in lambda and bounded by B. With the calibration
losses of n exchangeable points,

    lambda_hat = inf{ lambda : n / (n + 1) * R_n(lambda) + B / (n + 1) <= alpha },   R_n = mean_i L_i

gives E[L_{n+1}(lambda_hat)] <= alpha (Theorem 1), marginally over calibration and test draws; if the
losses are i.i.d., continuous and strictly decreasing in lambda the risk is also at least
alpha - 2B / (n + 1) (Theorem 2), so the procedure is not conservative. On a finite grid the guarantee
is unchanged (the losses restricted to the grid are still monotone); the infimum is the first grid
point that satisfies the inequality.

The shipped loss is the false-negative rate of multi-label sets C_lambda(x) = {k : p_k(x) >= 1 - lambda}
(the paper's multi-label example): L = 1 - |Y ∩ C| / |Y| (0 when Y is empty), which falls as lambda
grows because the sets grow. Any loss of (sets, labels) that does not increase as sets grow may be
passed instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from certkit._validation import (
    Array,
    check_array,
    check_array_pair,
    check_calibrated,
    check_nonnegative,
    check_positive,
    to_numpy,
)
from certkit.warnings import SmallCalibrationSetWarning
from conformal._base import Calibrator
from conformal.multilabel import _check_label_sets
from conformal.sets import PredictionSets

__all__ = [
    "ConformalRiskControl",
    "RiskControlResult",
    "conformal_risk_control",
    "false_negative_rate",
    "multilabel_sets",
]

SetLoss = Callable[[np.ndarray, np.ndarray], Any]


@dataclass(frozen=True)
class RiskControlResult:
    """The outcome of :func:`conformal_risk_control`.

    Attributes:
        lambda_hat: the chosen parameter (a grid value).
        index: its position in the grid.
        empirical_risk: (L,) mean calibration loss at each grid point.
        feasible: False when no grid point satisfies the inequality; ``lambda_hat`` is then the last
            grid point and the guarantee holds only if its loss is <= alpha on every input.
        n: number of calibration points.
        alpha: the risk level.
        bound: B, the loss bound used.
    """

    lambda_hat: float
    index: int
    empirical_risk: np.ndarray
    feasible: bool
    n: int
    alpha: float
    bound: float



def _check_grid(lambdas: Any, size: int | None = None) -> np.ndarray:
    if not isinstance(lambdas, np.ndarray | torch.Tensor | list | tuple):
        raise TypeError(f"Expected argument `lambdas` to be a 1-D array of grid values, but got {type(lambdas).__name__}")
    grid = to_numpy(lambdas)
    if isinstance(lambdas, list | tuple):
        grid = np.asarray(lambdas)
    check_array(grid, "lambdas", kind="real", ndim=1)
    grid = grid.astype(np.float64)
    if grid.shape[0] == 0 or (size is not None and grid.shape[0] != size):
        want = f"({size},)" if size is not None else "(L,) with L >= 1"
        raise ValueError(f"Expected argument `lambdas` to have shape {want}, but got shape {grid.shape}")
    if (np.diff(grid) <= 0).any():
        raise ValueError("Expected argument `lambdas` to be strictly increasing, but it is not")
    return grid


def conformal_risk_control(losses: Array, alpha: float, *, lambdas: Array | None = None,
                           bound: float = 1.0) -> RiskControlResult:
    """Conformal risk control: the smallest lambda of the grid with (n R_n(lambda) + B) / (n + 1) <= alpha.

    Guarantee (Angelopoulos et al. 2022, Theorem 1): for exchangeable calibration and test points
    and losses non-increasing in lambda with values in [0, B], E[L_test(lambda_hat)] <= alpha.

    Args:
        losses: (n, L) losses L_i(lambda_j) on an increasing grid, each row non-increasing, in [0, B].
        alpha: the risk level, in (0, B).
        lambdas: (L,) strictly increasing grid values (default ``0, 1, ..., L-1``).
        bound: B, the upper bound of the loss (> 0).

    Returns:
        RiskControlResult; when no grid point satisfies the inequality (n < B / alpha - 1, or a grid
        that stops too early) ``feasible`` is False, ``lambda_hat`` the last grid point, with a warning.

    Examples:
        >>> losses = np.array([[1.0, 0.5, 0.0]] * 9 + [[1.0, 1.0, 0.0]])   # 10 points, 3 grid values
        >>> conformal_risk_control(losses, alpha=0.6).index   # (10 * 0.55 + 1) / 11 = 0.59 <= 0.6
        1
    """
    bound = check_positive(bound, "bound")
    alpha = check_positive(alpha, "alpha")
    if alpha >= bound:
        raise ValueError(f"Expected argument `alpha` to be in (0, bound={bound}), but got {alpha!r}")
    check_array(losses, "losses", kind="real", ndim=2)
    loss = to_numpy(losses).astype(np.float64)
    n, size = loss.shape
    if n == 0 or size == 0:
        raise ValueError(f"Expected argument `losses` to have shape (n, L) with n, L >= 1, but got {loss.shape}")
    if loss.min() < 0 or loss.max() > bound:
        raise ValueError(f"Expected argument `losses` to hold losses in [0, bound={bound}], "
                         f"but got values in [{loss.min():.4g}, {loss.max():.4g}]")
    if (np.diff(loss, axis=1) > 1e-12 * bound).any():
        raise ValueError("Expected each row of `losses` to be non-increasing in lambda (conformal risk control "
                         "needs a monotone loss), but a loss increases along the grid")
    grid = np.arange(size, dtype=np.float64) if lambdas is None else _check_grid(lambdas, size)
    risk = loss.mean(0)
    ok = (n * risk + bound) / (n + 1) <= alpha
    feasible = bool(ok.any())
    index = int(np.argmax(ok)) if feasible else size - 1
    if not feasible:
        warnings.warn(
            f"conformal_risk_control: no grid point satisfies (n R + B) / (n + 1) <= alpha with n={n}, B={bound}, "
            f"alpha={alpha} (n must be at least B / alpha - 1 = {bound / alpha - 1:.0f}); lambda_hat is the last "
            "grid point, and the guarantee holds only if its loss is <= alpha on every input",
            SmallCalibrationSetWarning,
            stacklevel=2,
        )
    return RiskControlResult(lambda_hat=float(grid[index]), index=index, empirical_risk=risk, feasible=feasible,
                             n=n, alpha=alpha, bound=bound)


def multilabel_sets(probs: Array, lam: float) -> Array:
    """Multi-label sets C_lambda(x) = {k : p_k(x) >= 1 - lambda}, as an (N, K) bool mask.

    Args:
        probs: (N, K) per-label probabilities in [0, 1] (e.g. sigmoid outputs; rows need not sum to 1).
        lam: lambda in [0, 1]; larger lambda, larger sets (lambda = 1 keeps every label).
    """
    lam = check_nonnegative(lam, "lam")
    if lam > 1:
        raise ValueError(f"Expected argument `lam` to be in [0, 1], but got {lam!r}")
    _check_multilabel(probs, None)
    mask: Array = to_numpy(probs).astype(np.float64) >= 1.0 - lam  # float64, as ConformalRiskControl compares
    if isinstance(probs, torch.Tensor):
        mask = torch.from_numpy(mask).to(probs.device)
    return mask


def false_negative_rate(sets: Array, labels: Array) -> np.ndarray:
    """Per-input false-negative rate 1 - |Y ∩ C| / |Y| of (N, K) set masks against (N, K) 0/1 labels.

    Inputs with no positive label have loss 0. Non-increasing as the sets grow.

    Returns:
        (N,) float64 losses in [0, 1].
    """
    # 0/1 (or bool) indicators only: astype(bool) would silently read a label 2 or a score 0.3 as "in"
    check_array_pair(sets, labels, "sets", "labels")
    k = int(sets.shape[-1]) if isinstance(sets, np.ndarray | torch.Tensor) and sets.ndim else 0
    m = _check_label_sets(sets, k, "sets").astype(bool)
    y = _check_label_sets(labels, k, "labels").astype(bool)
    if m.shape != y.shape or m.ndim != 2:
        raise ValueError(f"Expected arguments `sets` and `labels` to be (N, K) arrays of one shape, "
                         f"but got {m.shape} and {y.shape}")
    pos = y.sum(1)
    hit = (m & y).sum(1)
    return np.where(pos > 0, 1.0 - hit / np.maximum(pos, 1), 0.0)  # type: ignore[no-any-return]


def _check_multilabel(probs: Any, labels: Any | None, name: str = "probs") -> None:
    check_array(probs, name, kind="float", ndim=2)
    p = to_numpy(probs)
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"Expected argument `{name}` to have shape (N, K) with N, K >= 1, but got {p.shape}")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"Expected argument `{name}` to hold per-label probabilities in [0, 1], but got values in "
                         f"[{p.min():.4g}, {p.max():.4g}]; pass sigmoid probabilities, not logits")
    if labels is None:
        return
    check_array(labels, "labels", kind="real", ndim=2)
    if isinstance(probs, torch.Tensor) != isinstance(labels, torch.Tensor):
        raise TypeError("Expected `probs` and `labels` to be both numpy arrays or both torch tensors, "
                        f"but got {type(probs).__name__} and {type(labels).__name__}")
    y = to_numpy(labels)
    if y.shape != p.shape:
        raise ValueError(f"Expected argument `labels` to have shape {p.shape} like `probs` (0/1 per label), "
                         f"but got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("Expected argument `labels` to hold 0/1 label indicators, but got other values")


def _losses(probs: np.ndarray, labels: np.ndarray, grid: np.ndarray, loss: SetLoss, bound: float) -> np.ndarray:
    """(N, L) losses of the sets C_lambda over the grid, checked for range and monotonicity."""
    out = np.empty((probs.shape[0], grid.shape[0]), dtype=np.float64)
    for j, lam in enumerate(grid):
        values = np.asarray(to_numpy(loss(probs >= 1.0 - lam, labels)), dtype=np.float64)
        if values.shape != (probs.shape[0],):
            raise ValueError(f"Expected argument `loss` to return ({probs.shape[0]},) losses, "
                             f"but it returned shape {values.shape}")
        out[:, j] = values
    if not np.isfinite(out).all() or out.min() < 0 or out.max() > bound:
        raise ValueError(f"Expected argument `loss` to return losses in [0, bound={bound}], "
                         f"but it returned values in [{np.nanmin(out):.4g}, {np.nanmax(out):.4g}]")
    if (np.diff(out, axis=1) > 1e-12 * bound).any():
        raise ValueError("Expected argument `loss` to be non-increasing as the sets grow (conformal risk control "
                         "needs a monotone loss), but it increased on the calibration data")
    return out


class ConformalRiskControl(Calibrator):
    """Multi-label sets {k : p_k >= 1 - lambda_hat} whose expected loss is at most alpha.

    Guarantee (Angelopoulos et al. 2022, Theorem 1): for exchangeable calibration and test points,
    E[loss(C(x_test), Y_test)] <= alpha, marginally over the calibration and test draws (for the
    default false-negative rate: on average at least a fraction 1 - alpha of the true labels is in
    the set). No failure probability: this is an expectation, not a high-probability bound (see
    :func:`conformal.learn_then_test` for that).

    Args:
        alpha: the risk level, in (0, bound).
        loss: ``"fnr"`` (:func:`false_negative_rate`) or a callable ``loss(sets, labels) -> (N,)`` of
            (N, K) bool numpy masks and (N, K) numpy labels, non-increasing as sets grow, in [0, bound].
        lambdas: (L,) increasing grid of lambda in [0, 1] (default 1001 points from 0 to 1).
        bound: B, the upper bound of the loss (1 for the false-negative rate).
    """

    threshold_: float | None

    def __init__(self, *, alpha: float = 0.1, loss: str | SetLoss = "fnr", lambdas: Array | None = None,
                 bound: float = 1.0) -> None:
        self.bound = check_positive(bound, "bound")
        self.alpha = check_positive(alpha, "alpha")
        if self.alpha >= self.bound:
            raise ValueError(f"Expected argument `alpha` to be in (0, bound={self.bound}), but got {alpha!r}")
        if loss == "fnr":
            self._loss: SetLoss = false_negative_rate
        elif callable(loss) and not isinstance(loss, str):
            self._loss = loss
        else:
            raise ValueError(f"Expected argument `loss` to be 'fnr' or a callable loss(sets, labels), but got {loss!r}")
        self.loss = loss
        grid = np.linspace(0.0, 1.0, 1001) if lambdas is None else _check_grid(lambdas)
        if grid[0] < 0 or grid[-1] > 1:
            raise ValueError(f"Expected argument `lambdas` to lie in [0, 1], but got [{grid[0]}, {grid[-1]}]")
        self.lambdas = lambdas
        self._grid = grid
        self.threshold_ = None

    @property
    def lambda_hat_(self) -> float:
        """The calibrated lambda (sets are {k : p_k >= 1 - lambda_hat_})."""
        check_calibrated(self, "threshold_")
        assert self.threshold_ is not None
        return self.threshold_

    def calibrate(self, probs: Array, labels: Array) -> ConformalRiskControl:
        """Choose lambda_hat on (N, K) calibration probabilities and (N, K) 0/1 labels. Returns self."""
        _check_multilabel(probs, labels)
        p, y = to_numpy(probs).astype(np.float64), to_numpy(labels)
        losses = _losses(p, y, self._grid, self._loss, self.bound)
        self.result_ = conformal_risk_control(losses, self.alpha, lambdas=self._grid, bound=self.bound)
        self.num_labels_ = int(p.shape[1])
        self.n_calibration_ = int(p.shape[0])
        self.threshold_ = self.result_.lambda_hat
        return self

    def predict(self, probs: Array) -> PredictionSets:
        """Sets {k : p_k >= 1 - lambda_hat_} of (N, K) probabilities; ``threshold`` is lambda_hat_ on the
        score 1 - p_k."""
        check_calibrated(self, "threshold_")
        _check_multilabel(probs, None)
        if probs.shape[1] != self.num_labels_:
            raise ValueError(f"Expected argument `probs` to have {self.num_labels_} columns (as at calibration), "
                             f"but got shape {tuple(probs.shape)}")
        assert self.threshold_ is not None
        lam = self.threshold_
        # in float64, as at calibration (a float32 comparison would round 1 - lambda)
        mask: Array = to_numpy(probs).astype(np.float64) >= 1.0 - lam
        if isinstance(probs, torch.Tensor):
            mask = torch.from_numpy(mask).to(probs.device)
        return PredictionSets(mask, lam)

    def risk(self, probs: Array, labels: Array) -> float:
        """The mean loss of the calibrated sets on labelled (N, K) data (an estimate of the controlled risk)."""
        _check_multilabel(probs, labels)
        mask = to_numpy(self.predict(probs).mask)
        return float(math.fsum(np.asarray(to_numpy(self._loss(mask, to_numpy(labels))), dtype=np.float64)) / mask.shape[0])
