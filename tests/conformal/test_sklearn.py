"""The scikit-learn wrappers: sklearn API (clone, get/set_params, pipelines) and the same sets/intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conformal import SplitConformal
from conformal.regression import CVPlus, JackknifePlus, SplitConformalRegressor
from conformal.sklearn import ConformalClassifier, ConformalRegressor

XC, YC = make_classification(n_samples=900, n_features=8, n_informative=5, n_classes=4, random_state=0)
YC_NAMES = np.array(["a", "b", "c", "d"])[YC]
XR, YR = make_regression(n_samples=600, n_features=5, noise=10.0, random_state=0)


def test_classifier_matches_split_conformal_and_pvalues() -> None:
    est = LogisticRegression(max_iter=500).fit(XC[:300], YC_NAMES[:300])
    # u = 0 (deterministic APS) to compare with a plain SplitConformal; the randomised default is tested in
    # tests/conformal/test_new_scores.py::test_sklearn_predict_set_and_predict_p_share_u
    clf = ConformalClassifier(est, score="aps", alpha=0.1, score_kwargs={"u": 0.0}).fit(XC[300:600], YC_NAMES[300:600])
    ref = SplitConformal(score="aps", alpha=0.1, randomized=False).calibrate(est.predict_proba(XC[300:600]),
                                                                            YC[300:600])
    sets = clf.predict_set(XC[600:])
    np.testing.assert_array_equal(sets, ref.predict(est.predict_proba(XC[600:])).mask)
    np.testing.assert_array_equal(clf.sets_from_p(clf.predict_p(XC[600:])), sets)
    assert list(clf.classes_) == ["a", "b", "c", "d"]
    assert clf.predict(XC[600:]).dtype.kind == "U"
    cover = sets[np.arange(300), YC[600:]].mean()
    assert cover > 0.8


def test_sklearn_api_clone_params_pipeline() -> None:
    clf = ConformalClassifier(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), alpha=0.2,
                              prefit=False, random_state=1)
    assert clf.get_params()["alpha"] == 0.2
    c2 = clone(clf).set_params(alpha=0.05)
    assert c2.alpha == 0.05 and clf.alpha == 0.2
    c2.fit(XC[:600], YC[:600])
    assert c2.predict_set(XC[600:]).sum(1).mean() > clf.fit(XC[:600], YC[:600]).predict_set(XC[600:]).sum(1).mean()
    reg = clone(ConformalRegressor(LinearRegression(), prefit=False, alpha=0.1))
    assert reg.fit(XR[:400], YR[:400]).predict_interval(XR[400:]).shape == (200, 2)


def test_regressor_matches_calibrators() -> None:
    est = LinearRegression().fit(XR[:200], YR[:200])
    reg = ConformalRegressor(est, alpha=0.1).fit(XR[200:400], YR[200:400])
    ref = SplitConformalRegressor(alpha=0.1).calibrate(est.predict(XR[200:400]), YR[200:400])
    iv = ref.predict(est.predict(XR[400:]))
    np.testing.assert_array_equal(reg.predict_interval(XR[400:]), np.stack([iv.lower, iv.upper], 1))

    def fit(x, y):  # type: ignore[no-untyped-def]
        return LinearRegression().fit(x, y).predict

    jk = ConformalRegressor(LinearRegression(), method="jackknife+", alpha=0.1).fit(XR[:60], YR[:60])
    ivj = JackknifePlus(fit, alpha=0.1).calibrate(XR[:60], YR[:60]).predict(XR[400:])
    np.testing.assert_allclose(jk.predict_interval(XR[400:]), np.stack([ivj.lower, ivj.upper], 1))
    cv = ConformalRegressor(LinearRegression(), method="cv+", n_folds=5, random_state=3).fit(XR[:100], YR[:100])
    import torch

    ivc = CVPlus(fit, alpha=0.1, n_folds=5, generator=torch.Generator().manual_seed(3)).calibrate(
        XR[:100], YR[:100]).predict(XR[400:])
    np.testing.assert_allclose(cv.predict_interval(XR[400:]), np.stack([ivc.lower, ivc.upper], 1))


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="`estimator`"):
        ConformalClassifier(LinearRegression()).fit(XC, YC)
    with pytest.raises(ValueError, match="`method`"):
        ConformalRegressor(LinearRegression(), method="nope").fit(XR, YR)
    with pytest.raises(NotFittedError):
        ConformalRegressor(LinearRegression()).predict_interval(XR)
    est = LogisticRegression(max_iter=200).fit(XC[:300], YC[:300])
    with pytest.raises(ValueError, match="`y`"):
        ConformalClassifier(est).fit(XC[300:310], np.full(10, 7))
