"""Intervals and p-values equal to crepes' and MAPIE's where they implement the same method with the
same exact rank. The peers are not project dependencies: the expected numbers below were produced by
crepes 0.9.1 and MAPIE 1.6.0 (``pip install --target /tmp/peers mapie==1.6.0 crepes==0.9.1``, with
scikit-learn 1.9.1, numpy 2.4.6) on exactly these inputs, and are kept fixed here.

Where a peer's rank differs from the exact one it is a float artefact: crepes takes the index
``int((1 - confidence)(n + 1)) - 1``, which for n = 19 and confidence 0.9 evaluates (1 - 0.9) * 20 =
1.9999999999999996 -> 1 and returns the largest residual (1.366) instead of the exact 18th smallest
(1.01): its interval is one rank too wide. certkit uses the exact rank (test below).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LinearRegression

from conformal.regression import (
    ConformalPredictiveSystem,
    CVPlus,
    JackknifePlus,
    NormalizedConformalRegressor,
    SplitConformalRegressor,
)

MU = np.array([0.126, -0.132, 0.64, 0.105, -0.536, 0.362, 1.304, 0.947, -0.704, -1.265, -0.623, 0.041, -2.325,
               -0.219, -1.246, -0.732, -0.544, -0.316, 0.412, 1.043])
Y = np.array([-0.003, 1.234, -0.025, 0.457, 0.367, 0.456, 0.561, 0.025, -1.162, -1.045, -1.633, -0.168, -2.484,
              0.322, -1.031, -0.377, -1.198, -0.446, 1.196, 2.536])
MT = np.array([-1.259, 1.514, 1.346])
SIG = np.array([0.626, 0.632, 1.14, 0.605, 1.036, 0.862, 1.804, 1.447, 1.204, 1.765, 1.123, 0.541, 2.825, 0.719,
                1.746, 1.232, 1.044, 0.816, 0.912, 1.543])
ST = np.array([1.759, 2.014, 1.846])

# crepes.ConformalRegressor().fit(residuals=Y - MU).predict_int(MT, confidence=c)
CREPES_SPLIT = {
    0.1: [[-2.625, 0.1070000000000002], [0.1479999999999999, 2.88], [-0.020000000000000018, 2.712]],
    0.2: [[-2.181, -0.33699999999999997], [0.5920000000000001, 2.436], [0.42400000000000015, 2.268]],
}
# ... .fit(residuals=Y - MU, sigmas=SIG).predict_int(MT, sigmas=ST, confidence=0.8)
CREPES_NORMALIZED = [[-2.7921824324324325, 0.27418243243243245], [-0.2414459459459457, 3.2694459459459457],
                     [-0.26301351351351343, 2.9550135135135136]]
# crepes.ConformalPredictiveSystem().fit(residuals=Y - MU): predict_int(MT, confidence=0.8),
# predict_percentiles(MT, higher_percentiles=[90, 95]), predict_p(MT, y=[0.1, -0.2, 0.3], smoothing=False)
CREPES_CPS_INT = [[-2.181, 0.1070000000000002], [0.5920000000000001, 2.88], [0.42400000000000015, 2.712]]
CREPES_CPS_HIGH = [[0.1070000000000002, 0.2340000000000002], [2.88, 3.007], [2.712, 2.8390000000000004]]
CREPES_CPS_P = [0.9047619047619048, 0.047619047619047616, 0.047619047619047616]
# mapie.regression.SplitConformalRegressor(identity, confidence_level=[0.9, 0.8], prefit=True)
#   .conformalize(MU[:, None], Y).predict_interval(MT[:, None]): the same numbers as crepes (to 1e-15)
MAPIE_SPLIT = {
    0.1: [[-2.624999999999999, 0.10700000000000043], [0.1479999999999999, 2.88], [-0.019999999999999796, 2.7119999999999997]],
    0.2: [[-2.180999999999999, -0.33699999999999963], [0.592, 2.4359999999999995], [0.42400000000000027, 2.268]],
}
X = np.array([[0.781, 0.264], [-0.314, 1.458], [1.96, 1.802], [1.315, 0.357], [-1.208, -0.004], [0.656, -1.288],
              [0.395, 0.43], [0.696, -1.184], [-0.662, -0.436], [-1.17, 1.739], [-0.496, 0.329], [-0.259, 1.583],
              [1.32, 0.633], [-2.204, 0.052], [0.684, 1.004], [-0.618, 1.822], [-1.32, -0.662], [0.935, 0.049],
              [2.002, 0.189], [-0.633, -0.378], [-1.091, -1.278], [0.63, 0.581], [1.295, -0.755], [1.689, -0.287],
              [1.574, -0.433]])
YY = np.array([-0.218, -1.522, 1.189, 1.119, -1.79, 0.603, -1.437, 2.383, 0.764, -3.073, -1.899, -0.969, -0.593,
               -2.969, 0.301, -4.69, -0.272, 0.304, 1.922, -0.331, 0.389, 0.743, 1.292, 3.397, 2.733])
XT = np.array([[0.844, 1.165], [0.788, 0.844], [0.076, -1.427]])
# mapie.regression.CrossConformalRegressor(LinearRegression(), confidence_level=0.8, method="plus", cv=...)
#   .fit_conformalize(X, YY).predict_interval(XT)
MAPIE_JACKKNIFE_PLUS = [[-1.7953360337266304, 0.9973409155028152], [-1.4924884721221914, 1.2600333694482404],
                        [0.074858050032653, 2.8194246856474905]]  # cv=LeaveOneOut()
MAPIE_CV_PLUS = [[-1.75624504835347, 0.9008672273884956], [-1.4626603711933455, 1.19445190454862],
                 [0.23867766856241568, 2.895789944304381]]  # cv=KFold(5): contiguous folds of 5


def _iv(iv) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.stack([iv.lower, iv.upper], 1)


def test_split_equals_crepes_and_mapie() -> None:
    for alpha in (0.1, 0.2):
        ours = _iv(SplitConformalRegressor(alpha=alpha).calibrate(MU, Y).predict(MT))
        np.testing.assert_allclose(ours, CREPES_SPLIT[alpha], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours, MAPIE_SPLIT[alpha], rtol=0, atol=1e-12)


def test_normalized_equals_crepes() -> None:
    ours = _iv(NormalizedConformalRegressor(alpha=0.2).calibrate(MU, Y, SIG).predict(MT, ST))
    np.testing.assert_allclose(ours, CREPES_NORMALIZED, rtol=0, atol=1e-12)


def test_cps_equals_crepes() -> None:
    cps = ConformalPredictiveSystem(alpha=0.2).calibrate(MU, Y)
    np.testing.assert_allclose(_iv(cps.predict(MT)), CREPES_CPS_INT, rtol=0, atol=1e-12)
    high = np.stack([cps.quantile(MT, 0.9), cps.quantile(MT, 0.95)], 1)
    np.testing.assert_allclose(high, CREPES_CPS_HIGH, rtol=0, atol=1e-12)
    # crepes' non-smoothed p-value is Q(y, tau = 1) = (#{r <= y - mu} + 1) / (n + 1)
    np.testing.assert_allclose(cps.cdf(MT, np.array([0.1, -0.2, 0.3]), tau=1.0), CREPES_CPS_P, rtol=0, atol=1e-15)


def test_crepes_float_rank_is_one_too_wide_where_exact_differs() -> None:
    reg = SplitConformalRegressor(alpha=0.1).calibrate(MU[:19], Y[:19])  # k = ceil(20 * 0.9) = 18 exactly
    assert reg.quantile_ == np.sort(np.abs(Y - MU)[:19])[17] == 1.01
    crepes_n19 = [-2.625, 0.1070000000000002]  # crepes 0.9.1, same call on the first 19 points
    assert crepes_n19[1] - MT[0] > reg.quantile_ + 0.3


def _fit(x: np.ndarray, y: np.ndarray):  # type: ignore[no-untyped-def]
    return LinearRegression().fit(x, y).predict


def test_jackknife_plus_and_cv_plus_equal_mapie() -> None:
    jk = JackknifePlus(_fit, alpha=0.2).calibrate(X, YY).predict(XT)
    np.testing.assert_allclose(_iv(jk), MAPIE_JACKKNIFE_PLUS, rtol=0, atol=1e-10)
    cv = CVPlus(_fit, alpha=0.2, n_folds=5).calibrate(X, YY, folds=np.repeat(np.arange(5), 5)).predict(XT)
    np.testing.assert_allclose(_iv(cv), MAPIE_CV_PLUS, rtol=0, atol=1e-10)
