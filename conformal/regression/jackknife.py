"""Jackknife+ and CV+ prediction intervals (Barber, Candès, Ramdas, Tibshirani, Ann. Statist. 2021).

Fit the regressor K times, each time without one fold of the n training points (K = n: the
leave-one-out jackknife+). With mu_{-i} the model that did not see point i and R_i = |y_i - mu_{-i}(x_i)|:

    lower(x) = the floor(alpha (n + 1))-th smallest of mu_{-i}(x) - R_i
    upper(x) = the ceil((1 - alpha)(n + 1))-th smallest of mu_{-i}(x) + R_i

Unlike split conformal, every training point is used for both fitting and calibration. The two
order statistics are taken over an (n,) row per test point; test points are processed in chunks,
so memory is O(chunk x n), never n_train x n_test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from certkit._params import Params
from certkit._validation import (
    Array,
    check_array,
    check_calibrated,
    check_generator,
    check_positive_int,
    check_probability,
    check_scores_1d,
)
from conformal.functional import conformal_rank
from conformal.regression.intervals import PredictionIntervals, check_vector

__all__ = ["CVPlus", "FitFunction", "JackknifePlus", "jackknife_plus_bounds"]

#: ``fit(x_train, y_train) -> predict``, where ``predict(x)`` returns (N,) predictions.
FitFunction = Callable[[Any, Any], Callable[[Any], Array]]


def _kth_rows(a: Array, k: int) -> Array:
    """(M,) k-th smallest (1-based) of each row of an (M, n) array."""
    if isinstance(a, torch.Tensor):
        return torch.kthvalue(a, k, dim=1).values
    return np.partition(a, k - 1, axis=1)[:, k - 1]


def jackknife_plus_bounds(loo_predictions: Array, residuals: Array, alpha: float) -> PredictionIntervals:
    """Jackknife+/CV+ intervals from (M, n) out-of-fold predictions mu_{-i}(x) and (n,) residuals R_i.

    Ranks are exact: k = ceil((n + 1)(1 - alpha)) (as :func:`conformal.conformal_rank`) and
    n + 1 - k = floor(alpha (n + 1)). An end is infinite when its rank falls outside 1..n.
    """
    check_scores_1d(residuals, "residuals")
    check_array(loo_predictions, "loo_predictions", kind="real", ndim=2)
    n = int(residuals.shape[0])
    k = conformal_rank(n, alpha)
    j = n + 1 - k
    m = loo_predictions.shape[0]
    if isinstance(loo_predictions, torch.Tensor):
        full = torch.full((m,), torch.inf, dtype=loo_predictions.dtype, device=loo_predictions.device)
        upper = _kth_rows(loo_predictions + residuals, k) if k <= n else full
        lower = _kth_rows(loo_predictions - residuals, j) if j >= 1 else -full
    else:
        full_np = np.full(m, np.inf)
        upper = _kth_rows(loo_predictions + residuals, k) if k <= n else full_np
        lower = _kth_rows(loo_predictions - residuals, j) if j >= 1 else -full_np
    return PredictionIntervals(lower, upper)


def _take(x: Any, idx: np.ndarray) -> Any:
    if isinstance(x, torch.Tensor):
        return x[torch.from_numpy(idx).to(x.device)]
    return x[idx]


def _as_vector(p: Any, like: Any, n: int) -> Array:
    if isinstance(like, torch.Tensor):
        p = torch.as_tensor(p, device=like.device).reshape(-1)
    else:
        p = np.asarray(p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else p).reshape(-1)
    if p.shape[0] != n:
        raise ValueError(f"Expected the predictor returned by `fit` to give ({n},) predictions, got {tuple(p.shape)}")
    return p


class CVPlus(Params):
    """CV+ prediction intervals: K-fold cross-fitting, then the jackknife+ order statistics.

    Guarantee (Barber et al. 2021, Theorems 1 and 4): for exchangeable training and test points
    and a fit that treats training points symmetrically, P[y_test in C(x_test)] >= 1 - 2 alpha
    (jackknife+) and >= 1 - 2 alpha - min(2(1 - 1/K)/(n/K + 1), (1 - K/n)/(K + 1)) (CV+), with no
    assumption on the regressor. In practice coverage is close to 1 - alpha.

    Args:
        fit: ``fit(x_train, y_train) -> predict`` (``predict(x)`` gives (N,) predictions); called
            K times on the training data minus one fold. Refitting is why this class takes a fit
            function instead of predictions.
        alpha: miscoverage level in (0, 1).
        n_folds: K >= 2.
        chunk_size: test points per chunk of the order statistics (memory O(chunk_size x n)).
        generator: torch generator that assigns points to folds (a fixed seed when omitted).
    """

    residuals_: Array

    def __init__(self, fit: FitFunction, *, alpha: float = 0.1, n_folds: int = 10, chunk_size: int = 1024,
                 generator: torch.Generator | None = None) -> None:
        if not callable(fit):
            raise TypeError(f"Expected argument `fit` to be a callable fit(x, y) -> predict, but got {fit!r}")
        self.fit = fit
        self.alpha = check_probability(alpha, "alpha")
        self.n_folds = check_positive_int(n_folds, "n_folds", minimum=2)
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.generator = check_generator(generator)

    def _folds(self, n: int) -> np.ndarray:
        if self.n_folds > n:
            raise ValueError(f"Expected argument `n_folds` to be at most the {n} training points, "
                             f"but got {self.n_folds}")
        g = self.generator if self.generator is not None else torch.Generator().manual_seed(0)
        perm = torch.randperm(n, generator=g).numpy()
        folds = np.empty(n, dtype=np.int64)
        folds[perm] = np.arange(n) % self.n_folds
        return folds

    def calibrate(self, x: Any, y: Array, *, folds: Any = None) -> CVPlus:
        """Fit the K out-of-fold models on (N, ...) inputs and (N,) targets; store their residuals. Returns self.

        ``folds``: optional (N,) fold index in 0..K-1 of each point (e.g. contiguous blocks, as
        scikit-learn's ``KFold``); drawn with ``generator`` when omitted.
        """
        yv = check_vector(y, "y")
        n = int(yv.shape[0])
        if len(x) != n:
            raise ValueError(f"Expected argument `x` to have {n} rows (as `y`), but got {len(x)}")
        if folds is None:
            folds = self._folds(n)
        else:
            folds = np.asarray(folds.detach().cpu().numpy() if isinstance(folds, torch.Tensor) else folds)
            if folds.shape != (n,) or set(np.unique(folds).tolist()) != set(range(self.n_folds)):
                raise ValueError(f"Expected argument `folds` to have shape ({n},) and use every fold index "
                                 f"0..{self.n_folds - 1}, but got shape {folds.shape}")
            folds = folds.astype(np.int64)
        models = []
        residuals = torch.empty_like(yv) if isinstance(yv, torch.Tensor) else np.empty(n, dtype=yv.dtype)
        for f in range(int(folds.max()) + 1):
            held = np.flatnonzero(folds == f)
            kept = np.flatnonzero(folds != f)
            predict = self.fit(_take(x, kept), _take(yv, kept))
            out = _as_vector(predict(_take(x, held)), yv, len(held))
            residuals[torch.from_numpy(held) if isinstance(yv, torch.Tensor) else held] = abs(_take(yv, held) - out)
            models.append(predict)
        self.models_ = models
        self.folds_ = folds
        self.residuals_ = residuals
        self.n_calibration_ = n
        return self

    def predict(self, x: Any) -> PredictionIntervals:
        """Intervals for (N, ...) test inputs, chunk by chunk."""
        check_calibrated(self, "residuals_")
        like = self.residuals_
        lows: list[Any] = []
        highs: list[Any] = []
        for start in range(0, len(x), self.chunk_size):
            xc = x[start : start + self.chunk_size]
            per_fold: list[Any] = [_as_vector(m(xc), like, len(xc)) for m in self.models_]
            loo: Any
            if isinstance(like, torch.Tensor):
                loo = torch.stack(per_fold, 1)[:, torch.from_numpy(self.folds_).to(like.device)]
            else:
                loo = np.stack(per_fold, 1)[:, self.folds_]
            iv = jackknife_plus_bounds(loo, self.residuals_, self.alpha)
            lows.append(iv.lower)
            highs.append(iv.upper)
        if isinstance(like, torch.Tensor):
            return PredictionIntervals(torch.cat(lows), torch.cat(highs))
        return PredictionIntervals(np.concatenate(lows), np.concatenate(highs))


class JackknifePlus(CVPlus):
    """Jackknife+ prediction intervals: CV+ with n folds of one point (n refits).

    Guarantee (Barber et al. 2021, Theorem 1): P[y_test in C(x_test)] >= 1 - 2 alpha for
    exchangeable data and a symmetric fit, with no assumption on the regressor's stability.

    Args:
        fit: ``fit(x_train, y_train) -> predict``, called n times (leave one out).
        alpha: miscoverage level in (0, 1).
        chunk_size: test points per chunk (memory O(chunk_size x n)).
    """

    def __init__(self, fit: FitFunction, *, alpha: float = 0.1, chunk_size: int = 1024) -> None:
        super().__init__(fit, alpha=alpha, n_folds=2, chunk_size=chunk_size)

    def _folds(self, n: int) -> np.ndarray:
        if n < 2:
            raise ValueError(f"Expected at least 2 training points for the jackknife+, but got {n}")
        return np.arange(n, dtype=np.int64)
