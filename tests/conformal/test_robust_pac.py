"""Robust PAC sets: PAC threshold on worst-case scores; failure rate under attack <= delta over many splits."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from certkit.errors import NotCalibratedError
from conformal import scores
from conformal.attacks import pgd_attack
from conformal.functional import pac_quantile
from conformal.robust_pac import RobustPAC, SmoothedRobustPAC
from conformal.rscp import rscp_plus_mask
from conformal.score_bounds import certified_score_bounds
from smoothing.scores import SmoothedScores

EPS = 0.03


@pytest.fixture(scope="module")
def small() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn

    d = load_digits_split("calibration")
    return digits_cnn(), d.images[:60], d.labels[:60], d.images[60:80]


@pytest.mark.parametrize("mode", ["calibration", "inference"])
def test_threshold_is_pac_quantile_of_worst_case_scores(small: tuple, mode: str) -> None:
    model, xc, yc, xt = small
    pac = RobustPAC(epsilon=0.2, delta=0.1, eps=EPS, method="crown", mode=mode, domain=(0, 1))  # type: ignore[arg-type]
    sets = pac.calibrate_model(model, xc, yc).predict_model(model, xt)
    with torch.no_grad():
        clean_cal = scores.thr(torch.softmax(model(xc).double(), -1), yc)
        clean_test = scores.thr(torch.softmax(model(xt).double(), -1))
    if mode == "calibration":
        s_hi = certified_score_bounds(model, xc, EPS, labels=yc, method="crown", domain=(0, 1)).upper
        assert pac.threshold_ == pac_quantile(s_hi, 0.2, 0.1)
        assert bool((s_hi >= clean_cal - 1e-6).all())
    else:
        assert pac.threshold_ == pac_quantile(clean_cal, 0.2, 0.1)
    # robust sets contain the plain PAC sets at every test input
    plain = clean_test <= pac_quantile(clean_cal, 0.2, 0.1)
    assert bool((sets.mask | ~plain).all())


def test_smoothed_pac_uses_rscp_plus_cut() -> None:
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(200, 5, generator=g, dtype=torch.float64)
    var = 0.01 * torch.rand(200, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (200,), generator=g)
    pac = SmoothedRobustPAC(epsilon=0.2, delta=0.1, sigma=0.25, eps=0.1, n_mc=64, beta=0.01)
    pac.calibrate(SmoothedScores(mean, var, 64), labels)
    assert pac.threshold_ == pac_quantile(mean[torch.arange(200), labels], 0.18, 0.1)
    sets = pac.predict(SmoothedScores(mean[:10], var[:10], 64))
    ref = rscp_plus_mask(mean[:10], var[:10], pac.threshold_, sigma=0.25, eps=0.1, n_mc=64, beta=0.01)
    assert torch.equal(sets.mask, ref)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="`epsilon`"):
        RobustPAC(eps=0.1, epsilon=0)
    with pytest.raises(ValueError, match="`delta`"):
        RobustPAC(eps=0.1, delta=1)
    with pytest.raises(ValueError, match="`method`"):
        RobustPAC(eps=0.1, method="smoothing")
    with pytest.raises(NotCalibratedError):
        RobustPAC(eps=0.1).predict(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="`beta`"):
        SmoothedRobustPAC(epsilon=0.1, beta=0.06)
    with pytest.raises(TypeError, match="SmoothedScores"):
        SmoothedRobustPAC().calibrate(torch.zeros(3), torch.zeros(3, dtype=torch.long))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_mc"):
        SmoothedRobustPAC(n_mc=64).calibrate(SmoothedScores(torch.zeros(3, 2), torch.zeros(3, 2), 32),
                                             torch.zeros(3, dtype=torch.long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert RobustPAC(eps=0.1, epsilon=0.01, delta=0.01).calibrate(torch.rand(10)).threshold_ == math.inf


@pytest.mark.slow
def test_pac_failure_rate_under_attack_over_many_splits() -> None:
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn

    model = digits_cnn()
    cal, test = load_digits_split("calibration"), load_digits_split("test")
    x, y = torch.cat([cal.images, test.images]), torch.cat([cal.labels, test.labels])
    x_adv = pgd_attack(model, x, y, EPS, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        s_clean = scores.thr(torch.softmax(model(x).double(), -1), y)
        s_adv = scores.thr(torch.softmax(model(x_adv).double(), -1), y)
    s_hi = certified_score_bounds(model, x, EPS, labels=y, method="crown", domain=(0, 1)).upper
    epsilon, delta, n_splits = 0.1, 0.1, 400
    g = torch.Generator().manual_seed(2)
    fail_robust = fail_plain = 0
    for _ in range(n_splits):
        perm = torch.randperm(len(y), generator=g)
        ci, ti = perm[:400], perm[400:]
        tau = RobustPAC(epsilon=epsilon, delta=delta, eps=EPS).calibrate(s_hi[ci]).threshold_
        assert tau is not None
        fail_robust += int(float((s_adv[ti] > tau).double().mean()) > epsilon)
        fail_plain += int(float((s_adv[ti] > pac_quantile(s_clean[ci], epsilon, delta)).double().mean()) > epsilon)
    tol = 3 * math.sqrt(delta * (1 - delta) / n_splits)
    assert fail_robust / n_splits <= delta + tol
    assert fail_plain / n_splits > delta + tol  # the attack breaks plain PAC sets: the test can fail
