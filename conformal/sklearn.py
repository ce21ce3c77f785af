"""Thin scikit-learn-compatible wrappers: a fitted estimator plus a conformal calibrator.

``ConformalClassifier`` and ``ConformalRegressor`` are sklearn estimators (``get_params``,
``set_params``, ``sklearn.base.clone``, usable in pipelines and grid searches). With
``prefit=True`` (the default) the wrapped estimator is already trained and ``fit(X, y)``
*calibrates* on the data it is given; with ``prefit=False``, ``fit`` trains a clone of the
estimator on part of the data and calibrates on the rest (or refits per fold for jackknife+/CV+).
The guarantees are those of the calibrators they wrap (:class:`conformal.SplitConformal`,
:mod:`conformal.regression`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import train_test_split

from conformal.pvalues import pvalue_mask
from conformal.regression import CVPlus, JackknifePlus, SplitConformalRegressor
from conformal.split import SplitConformal

__all__ = ["ConformalClassifier", "ConformalRegressor"]


def _check_fitted(obj: Any, attr: str) -> None:
    if not hasattr(obj, attr):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"This {type(obj).__name__} is not calibrated yet: call `fit(X, y)` first")


class _ConformalEstimator(BaseEstimator):  # type: ignore[misc]
    """The fit plumbing both wrappers share: check the estimator, take it as trained or train a clone."""

    estimator: Any
    prefit: bool
    calibration_size: float
    random_state: int

    def _check_estimator(self, kind: str, method: str) -> None:
        if self.estimator is None or not hasattr(self.estimator, method):
            raise TypeError(f"Expected argument `estimator` to be {kind} with {method}, but got {self.estimator!r}")

    def _fit_or_prefit(self, X: Any, y: Any) -> tuple[Any, Any, Any]:
        """``(estimator_, X_cal, y_cal)``: the trained estimator and all of (X, y) when ``prefit``, else a clone
        trained on a random ``1 - calibration_size`` of (X, y) and the rest (seeded by ``random_state``)."""
        if self.prefit:
            return self.estimator, X, y
        X_tr, X_cal, y_tr, y_cal = train_test_split(X, y, test_size=self.calibration_size,
                                                    random_state=self.random_state)
        return clone(self.estimator).fit(X_tr, y_tr), X_cal, y_cal


class ConformalClassifier(_ConformalEstimator):
    """Split conformal prediction sets around a scikit-learn classifier with ``predict_proba``.

    Guarantee: for exchangeable calibration and test points, P[y_test in predict_set(x_test)] >= 1 - alpha.

    Args:
        estimator: a classifier with ``predict_proba`` and ``classes_`` (fitted when ``prefit``).
        score: a score name of :func:`conformal.scores.get_score` (``"thr"``, ``"aps"``, ``"raps"``,
            ``"saps"``, ``"topk"``, ``"margin"``, ``"cross_entropy"``).
        alpha: miscoverage level in (0, 1).
        score_kwargs: keyword arguments of the score (e.g. RAPS ``k_reg``/``lam``).
        prefit: the estimator is already trained; ``fit`` only calibrates.
        calibration_size: fraction of ``fit``'s data held out for calibration when not ``prefit``.
        random_state: seed of that split and of the u of randomised scores (APS, RAPS, SAPS, TopK).

    Randomised scores. The calibration u's are drawn from a generator seeded with ``random_state``;
    every ``predict_set``/``predict_p`` call without a ``generator`` draws the test u's from a fresh
    generator seeded with a second seed derived from ``random_state`` (independent of the first), so
    the same X gets the same u's: ``predict_set(X)`` is ``sets_from_p(predict_p(X))`` and repeated
    calls agree. Pass generators in the same state to both for your own stream.

    Example:
        >>> clf = ConformalClassifier(LogisticRegression().fit(X_train, y_train), alpha=0.1).fit(X_cal, y_cal)  # doctest: +SKIP
        >>> sets = clf.predict_set(X_test)  # (N, K) bool, columns in clf.classes_ order  # doctest: +SKIP
    """

    def __init__(self, estimator: Any = None, *, score: str = "thr", alpha: float = 0.1,
                 score_kwargs: dict[str, Any] | None = None, prefit: bool = True, calibration_size: float = 0.3,
                 random_state: int = 0) -> None:
        self.estimator = estimator
        self.score = score
        self.alpha = alpha
        self.score_kwargs = score_kwargs
        self.prefit = prefit
        self.calibration_size = calibration_size
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> ConformalClassifier:
        """Calibrate on (X, y) (and train a clone of the estimator first when ``prefit=False``). Returns self."""
        self._check_estimator("a classifier", "predict_proba")
        est, X_cal, y_cal = self._fit_or_prefit(X, y)
        self.estimator_ = est
        self.classes_ = np.asarray(est.classes_)
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        try:
            labels = np.array([index[c] for c in np.asarray(y_cal).tolist()], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"Expected argument `y` to hold only the estimator's classes {self.classes_.tolist()}, "
                             f"but got {e.args[0]!r}") from None
        self.calibrator_ = SplitConformal(score=self.score, alpha=self.alpha, score_kwargs=self.score_kwargs)
        self.calibrator_.calibrate(self._probs(X_cal), labels,
                                   generator=torch.Generator().manual_seed(int(self.random_state)))
        return self

    def _test_generator(self, generator: torch.Generator | None) -> torch.Generator:
        """``generator``, or a fresh one seeded from ``random_state`` (its own stream, independent of calibration's)."""
        if generator is not None:
            return generator
        seed = int(np.random.SeedSequence([int(self.random_state), 1]).generate_state(1, np.uint64)[0])
        return torch.Generator().manual_seed(seed)

    def _probs(self, X: Any) -> np.ndarray:
        return np.asarray(self.estimator_.predict_proba(X), dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """The estimator's point predictions."""
        _check_fitted(self, "calibrator_")
        return np.asarray(self.estimator_.predict(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """The estimator's (N, K) class probabilities."""
        _check_fitted(self, "calibrator_")
        return self._probs(X)

    def predict_set(self, X: Any, *, generator: torch.Generator | None = None) -> np.ndarray:
        """(N, K) bool prediction sets, columns in ``classes_`` order (u's of a randomised score: see the class)."""
        _check_fitted(self, "calibrator_")
        return np.asarray(self.calibrator_.predict(self._probs(X), generator=self._test_generator(generator)).mask)

    def predict_p(self, X: Any, *, smoothed: bool = False, generator: torch.Generator | None = None) -> np.ndarray:
        """(N, K) conformal p-values; ``p > alpha`` (see :func:`conformal.pvalue_mask`) is ``predict_set``.

        A randomised score's u's are drawn first, as in ``predict_set`` (the same u's for the same X), then
        the smoothing draws of ``smoothed=True``, from ``generator`` (default: see the class)."""
        _check_fitted(self, "calibrator_")
        g = self._test_generator(generator)
        return np.asarray(self.calibrator_.predict_p(self._probs(X), smoothed=smoothed, generator=g))

    def sets_from_p(self, pvalues: np.ndarray) -> np.ndarray:
        """(N, K) sets {y : p > alpha} from conservative p-values, compared exactly."""
        _check_fitted(self, "calibrator_")
        return np.asarray(pvalue_mask(pvalues, self.alpha, self.calibrator_.n_calibration_))


_METHODS = ("split", "jackknife+", "cv+")


class ConformalRegressor(_ConformalEstimator):
    """Conformal prediction intervals around a scikit-learn regressor.

    Guarantee: for exchangeable data, P[y_test in predict_interval(x_test)] >= 1 - alpha
    (``"split"``) or >= 1 - 2 alpha (``"jackknife+"``, ``"cv+"``: Barber et al. 2021; close to
    1 - alpha in practice).

    Args:
        estimator: a regressor with ``fit``/``predict``.
        method: ``"split"`` (absolute residuals), ``"jackknife+"`` or ``"cv+"`` (these refit clones
            of the estimator on ``fit``'s data, whatever ``prefit`` says).
        alpha: miscoverage level in (0, 1).
        prefit: (``"split"``) the estimator is trained; ``fit`` only calibrates.
        calibration_size: (``"split"``, not ``prefit``) fraction of the data held out for calibration.
        n_folds: (``"cv+"``) number of folds.
        random_state: seed of the split or of the fold assignment.

    Example:
        >>> reg = ConformalRegressor(Ridge().fit(X_train, y_train), alpha=0.1).fit(X_cal, y_cal)  # doctest: +SKIP
        >>> bounds = reg.predict_interval(X_test)  # (N, 2): lower, upper  # doctest: +SKIP
    """

    def __init__(self, estimator: Any = None, *, method: str = "split", alpha: float = 0.1, prefit: bool = True,
                 calibration_size: float = 0.3, n_folds: int = 10, random_state: int = 0) -> None:
        self.estimator = estimator
        self.method = method
        self.alpha = alpha
        self.prefit = prefit
        self.calibration_size = calibration_size
        self.n_folds = n_folds
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> ConformalRegressor:
        """Calibrate (and train, unless ``prefit`` with ``"split"``) on (X, y). Returns self."""
        self._check_estimator("a regressor", "predict")
        if self.method not in _METHODS:
            raise ValueError(f"Expected argument `method` to be one of {list(_METHODS)}, but got {self.method!r}")
        y = np.asarray(y, dtype=np.float64)
        if self.method == "split":
            self.estimator_, X_cal, y_cal = self._fit_or_prefit(X, y)
            self.calibrator_: Any = SplitConformalRegressor(alpha=self.alpha).calibrate(self._predict(X_cal), y_cal)
            return self

        def fit_fn(x_tr: Any, y_tr: Any) -> Any:
            return clone(self.estimator).fit(x_tr, y_tr).predict

        X = np.asarray(X)
        if self.method == "jackknife+":
            self.calibrator_ = JackknifePlus(fit_fn, alpha=self.alpha)
        else:
            self.calibrator_ = CVPlus(fit_fn, alpha=self.alpha, n_folds=self.n_folds,
                                      generator=torch.Generator().manual_seed(self.random_state))
        self.calibrator_.calibrate(X, y)
        self.estimator_ = clone(self.estimator).fit(X, y)
        return self

    def _predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.estimator_.predict(X), dtype=np.float64).reshape(-1)

    def predict(self, X: Any) -> np.ndarray:
        """The estimator's (N,) point predictions (for jackknife+/CV+: a fit on all of ``fit``'s data)."""
        _check_fitted(self, "calibrator_")
        return self._predict(X)

    def predict_interval(self, X: Any) -> np.ndarray:
        """(N, 2) prediction intervals: column 0 the lower ends, column 1 the upper ends."""
        _check_fitted(self, "calibrator_")
        if self.method == "split":
            iv = self.calibrator_.predict(self._predict(X))
        else:
            iv = self.calibrator_.predict(np.asarray(X))
        return np.stack([np.asarray(iv.lower), np.asarray(iv.upper)], 1)
