"""The certifier protocol and the calibration protocol.

* Third-party certifiers defined here (not in the library) plug into every robust calibrator and
  into ``certified_sets`` unchanged, through ``certkit.certifier.Certifier`` only.
* Every calibrator has ``get_params`` and a scikit-learn style ``repr`` (non-default parameters only).
* ``calibrate(data, labels, *, model=None)`` returns self, numpy or torch, the same verb everywhere.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn

import certify
import smoothing
from certify import attacks
from certkit.certifier import Certifier, MarginBounds, ScoreFn, SmoothedScores
from certkit.threat import LpBall
from conformal import (
    PTT,
    RSCP,
    VRCP,
    ClassConditional,
    DualThreshold,
    PACCodeSets,
    PACPredictionSet,
    RobustPAC,
    RSCPPlus,
    SafetyThreshold,
    SmoothedRobustPAC,
    SplitConformal,
    certified_sets,
    scores,
)
from conformal.rct import RCTConfig
from conformal.regression import (
    ConformalizedQuantileRegressor,
    ConformalPredictiveSystem,
    CVPlus,
    JackknifePlus,
    NormalizedConformalRegressor,
    SplitConformalRegressor,
)

K, D = 4, 6


@dataclass(frozen=True)
class ExactLinearCertifier:
    """Exact margin bounds of a linear classifier ``Flatten -> Linear`` over an L-inf ball (within a box).

    ``z_y - z_k = (w_y - w_k) . x' + (b_y - b_k)`` is linear, so its extremes over the box
    ``[max(x - eps, lo), min(x + eps, hi)]`` are attained coordinate by coordinate.
    """

    kind: ClassVar[str] = "bounds"
    name: ClassVar[str] = "exact linear bounds"

    def check_threat(self, threat: LpBall) -> LpBall:
        if threat.norm != math.inf:
            raise ValueError("Expected argument `norm` to be float('inf') for the exact linear certifier")
        return threat

    def certify(self, model: nn.Module, x: torch.Tensor, threat: LpBall, *, labels: torch.Tensor | None = None,
                score_fn: ScoreFn | None = None) -> MarginBounds:
        lin = model[-1]
        w, b = lin.weight.detach().double(), lin.bias.detach().double()
        xf = x.flatten(1).double()
        lo, hi = xf - threat.eps, xf + threat.eps
        if threat.domain is not None:
            lo, hi = lo.clamp(min=threat.domain[0]), hi.clamp(max=threat.domain[1])
        dw = w[:, None, :] - w[None, :, :]  # (K, K, D): w_y - w_k
        db = b[:, None] - b[None, :]
        m_lo = (torch.where(dw > 0, lo[:, None, None, :], hi[:, None, None, :]) * dw).sum(-1) + db
        m_hi = (torch.where(dw > 0, hi[:, None, None, :], lo[:, None, None, :]) * dw).sum(-1) + db
        if labels is None:
            return MarginBounds(m_lo, m_hi)
        rows = torch.arange(x.shape[0])
        return MarginBounds(m_lo[rows, labels], m_hi[rows, labels], labels)


@dataclass(frozen=True, eq=False)
class LoopSmoothingCertifier:
    """Gaussian smoothing by a plain Python loop over noise draws (a stand-in for e.g. denoised smoothing)."""

    sigma: float
    n_mc: int
    generator: torch.Generator

    kind: ClassVar[str] = "smoothing"
    name: ClassVar[str] = "loop smoothing"

    def check_threat(self, threat: LpBall) -> LpBall:
        if threat.norm != 2.0:
            raise ValueError("Expected argument `norm` to be 2 (L2 balls only)")
        return threat

    def certify(self, model: nn.Module, x: torch.Tensor, threat: LpBall, *, labels: torch.Tensor | None = None,
                score_fn: ScoreFn | None = None) -> SmoothedScores:
        assert score_fn is not None
        with torch.no_grad():
            draws = torch.stack([score_fn(torch.softmax(model(x + self.sigma * torch.randn(
                x.shape, generator=self.generator, dtype=x.dtype)), -1)).double() for _ in range(self.n_mc)], 1)
        var, mean = torch.var_mean(draws, dim=1, correction=1)
        return SmoothedScores(mean, var, self.n_mc, self.sigma)


def _linear_data(n: int, seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, K)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.rand(n, D, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = (model(x) + 0.5 * torch.randn(n, K, generator=g, dtype=torch.float64)).argmax(1)
    return model, x, y


def test_toy_certifiers_implement_the_protocol() -> None:
    assert isinstance(ExactLinearCertifier(), Certifier)
    assert isinstance(LoopSmoothingCertifier(0.25, 4, torch.Generator()), Certifier)
    assert isinstance(certify.BoundCertifier(), Certifier) and isinstance(smoothing.SmoothingCertifier(), Certifier)


def test_third_party_bound_certifier_plugs_into_vrcp_robust_pac_and_certified_sets() -> None:
    model, x, y = _linear_data(160, 0)
    xc, yc, xt = x[:100], y[:100], x[100:]
    threat = LpBall("inf", 0.05, (0, 1))
    toy, crown = ExactLinearCertifier(), certify.BoundCertifier(method="crown")
    # the toy's bounds are exact, so they are sound: every sampled point of the ball lies inside them
    b = VRCP(threat=threat, certifier=toy, score="aps").score_bounds(model, xt)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        xp = (xt + threat.eps * (2 * torch.rand(xt.shape, generator=g, dtype=xt.dtype) - 1)).clamp(0, 1)
        with torch.no_grad():
            s = scores.aps(torch.softmax(model(xp), -1))
        assert bool((b.lower <= s + 1e-9).all() and (s <= b.upper + 1e-9).all())
    for cls, kw in ((VRCP, {"alpha": 0.2}), (RobustPAC, {"epsilon": 0.2, "delta": 0.1})):
        for mode in ("inference", "calibration"):
            mine = cls(threat=threat, certifier=toy, mode=mode, **kw).calibrate(xc, yc, model=model)
            ref = cls(threat=threat, certifier=crown, mode=mode, **kw).calibrate(xc, yc, model=model)
            assert mine.threshold_ == pytest.approx(ref.threshold_, abs=1e-9)
            m1, m2 = mine.predict(xt, model=model).mask, ref.predict(xt, model=model).mask
            assert int((m1 != m2).sum()) <= 1  # CROWN on one linear layer is exact too (up to rounding)
    for method in ("vrcp-i", "vrcp-c", "pac"):
        out = certified_sets(model, xc, yc, xt, certifier=toy, threat=threat, method=method, alpha=0.2, delta=0.1)
        assert out.sets.mask.shape == (60, K) and out.certifier == "exact linear bounds"
        assert "exact linear bounds" in out.guarantee and out.threat == threat
    with pytest.raises(ValueError, match="`norm`"):
        VRCP(threat=LpBall(2, 0.1), certifier=toy)


def test_third_party_smoothing_certifier_plugs_into_rscp_rscp_plus_smoothed_pac_and_certified_sets() -> None:
    model, x, y = _linear_data(120, 2)
    xc, yc, xt = x[:80], y[:80], x[80:]
    threat = LpBall(2, 0.1)

    def toy() -> LoopSmoothingCertifier:
        return LoopSmoothingCertifier(sigma=0.25, n_mc=32, generator=torch.Generator().manual_seed(3))

    for cls, kw in ((RSCP, {"alpha": 0.2}), (RSCPPlus, {"alpha": 0.2, "beta": 0.01}),
                    (SmoothedRobustPAC, {"epsilon": 0.2, "delta": 0.1, "beta": 0.01})):
        by_model = cls(threat=threat, certifier=toy(), **kw)  # type: ignore[arg-type]
        sets = by_model.calibrate(xc, yc, model=model).predict(xt, model=model)
        # the same numbers through the score level: the calibrator used the certifier and nothing else
        cert = toy()
        by_scores = cls(threat=threat, certifier=cert, **kw)  # type: ignore[arg-type]
        s_cal, s_test = by_scores.score_model(model, xc), by_scores.score_model(model, xt)
        assert s_cal.sigma == 0.25 and s_cal.n_mc == 32
        assert torch.equal(by_scores.calibrate(s_cal, yc).predict(s_test).mask, sets.mask)
        # robustness only adds labels: the eps = 0 sets are contained in the robust ones
        clean = cls(threat=threat.with_eps(0.0), certifier=cert, **kw).calibrate(s_cal, yc)  # type: ignore[arg-type]
        assert bool((clean.predict(s_test).mask <= sets.mask).all())
    for method in ("rscp+", "pac"):
        out = certified_sets(model, xc, yc, xt, certifier=toy(), threat=threat, method=method, alpha=0.2,
                             delta=0.1, beta=0.01)
        assert out.sets.mask.shape == (40, K) and "loop smoothing" in out.guarantee and "L2" in out.guarantee
    with pytest.raises(ValueError, match="L2 balls only"):
        RSCP(threat=LpBall("inf", 0.1), certifier=toy())


def test_wrong_kind_and_non_certifiers_are_clear_errors() -> None:
    toy_s = LoopSmoothingCertifier(0.25, 4, torch.Generator())
    with pytest.raises(ValueError, match="kind 'bounds' for VRCP"):
        VRCP(eps=0.1, certifier=toy_s)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind 'smoothing' for RSCPPlus"):
        RSCPPlus(certifier=ExactLinearCertifier())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Certifier"):
        RobustPAC(eps=0.1, certifier="crown")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`threat` or `eps`"):
        VRCP(eps=0.1, threat=LpBall("inf", 0.1))
    with pytest.raises(ValueError, match="`certifier` or `method`, `sound`"):
        VRCP(eps=0.1, method="ibp", sound=True, certifier=certify.BoundCertifier())
    with pytest.raises(ValueError, match="`certifier` or `sigma`"):
        RSCP(sigma=0.5, certifier=smoothing.SmoothingCertifier())
    with pytest.raises(ValueError, match=r"`eps`.*or `threat`"):
        VRCP()
    with pytest.raises(TypeError, match="`threat`"):
        VRCP(threat=(math.inf, 0.1))  # type: ignore[arg-type]


# -- repr / get_params ---------------------------------------------------------------------------------


def _fit(x: Any, y: Any) -> Any:  # a regression fit function, for CVPlus / JackknifePlus
    return lambda z: z

CALIBRATORS: list[tuple[Any, dict[str, Any], str]] = [
    (SplitConformal, {}, "SplitConformal()"),
    (SplitConformal, {"alpha": 0.05, "score": "thr"}, "SplitConformal(score='thr', alpha=0.05)"),
    (ClassConditional, {"alpha": 0.2}, "ClassConditional(alpha=0.2)"),
    (PACPredictionSet, {"delta": 0.1, "score_kwargs": {"k_reg": 2}},
     "PACPredictionSet(delta=0.1, score_kwargs={'k_reg': 2})"),
    (VRCP, {"eps": 0.1}, "VRCP(threat=LpBall(norm=inf, eps=0.1, domain=None))"),
    (VRCP, {"eps": 0.02, "domain": (0, 1), "method": "ibp", "sound": True, "mode": "calibration"},
     "VRCP(threat=LpBall(norm=inf, eps=0.02, domain=(0.0, 1.0)), certifier=BoundCertifier(method='ibp', "
     "sound=True), mode='calibration')"),
    (RobustPAC, {"threat": LpBall(2, 0.1)}, "RobustPAC(threat=LpBall(norm=2.0, eps=0.1, domain=None))"),
    (RobustPAC, {"eps": 0.1, "mode": "inference", "epsilon": 0.05},
     "RobustPAC(epsilon=0.05, threat=LpBall(norm=inf, eps=0.1, domain=None), mode='inference')"),
    (RSCP, {}, "RSCP()"),
    (RSCP, {"sigma": 0.5, "n_mc": 64}, "RSCP(certifier=SmoothingCertifier(sigma=0.5, n_mc=64))"),
    (RSCPPlus, {"eps": 0.25, "beta": 0.01}, "RSCPPlus(beta=0.01, threat=LpBall(norm=2.0, eps=0.25, domain=None))"),
    (SmoothedRobustPAC, {"delta": 0.1}, "SmoothedRobustPAC(delta=0.1)"),
    (DualThreshold, {"rule": "ltt", "target": 0.05}, "DualThreshold(rule='ltt', target=0.05)"),
    (PTT, {}, "PTT()"),
    (PTT, {"alpha": 0.2, "b": 0.5}, "PTT(alpha=0.2, b=0.5)"),
    (SafetyThreshold, {"epsilon": 0.1}, "SafetyThreshold(epsilon=0.1)"),
    (PACCodeSets, {"method": "milp"}, "PACCodeSets(method='milp')"),
    (SplitConformalRegressor, {"alpha": 0.2}, "SplitConformalRegressor(alpha=0.2)"),
    (ConformalizedQuantileRegressor, {}, "ConformalizedQuantileRegressor()"),
    (NormalizedConformalRegressor, {"alpha": 0.05}, "NormalizedConformalRegressor(alpha=0.05)"),
    (ConformalPredictiveSystem, {}, "ConformalPredictiveSystem()"),
    (CVPlus, {"fit": _fit, "n_folds": 5}, "CVPlus(fit=_fit, n_folds=5)"),
    (JackknifePlus, {"fit": _fit}, "JackknifePlus(fit=_fit)"),
]


@pytest.mark.parametrize(("cls", "kwargs", "expected"), CALIBRATORS)
def test_repr_shows_non_default_parameters_and_get_params_round_trips(cls: Any, kwargs: dict, expected: str) -> None:
    obj = cls(**kwargs)
    assert repr(obj) == expected
    params = obj.get_params(deep=False)
    copy = cls(**params)
    assert repr(copy) == expected and copy.get_params(deep=False).keys() == params.keys()
    assert "object at 0x" not in repr(obj)


def test_get_params_deep_includes_the_certifier() -> None:
    p = VRCP(eps=0.1, method="ibp").get_params()
    assert p["certifier__method"] == "ibp" and p["certifier__sound"] is False and p["threat"] == LpBall("inf", 0.1)
    g = torch.Generator()
    r = RSCP(certifier=smoothing.SmoothingCertifier(generator=g))
    assert r.get_params()["certifier__generator"] is g and "torch.Generator(device='cpu')" in repr(r)
    assert repr(certify.BoundCertifier(method="ibp", sound=True)) == "BoundCertifier(method='ibp', sound=True)"


# -- the calibration protocol ------------------------------------------------------------------------


def test_calibrate_returns_self_and_takes_numpy_or_torch() -> None:
    rng = np.random.default_rng(0)
    cal, test = rng.random(200), rng.random((20, 5))
    for v in (VRCP(eps=0.1), RobustPAC(eps=0.1)):
        assert v.calibrate(cal) is v
        t = v.threshold_
        assert v.calibrate(torch.from_numpy(cal)).threshold_ == t
        assert np.array_equal(v.predict(test).mask, v.predict(torch.from_numpy(test)).mask.numpy())
    full = rng.random((200, 5))
    labels = rng.integers(0, 5, 200)
    v = VRCP(eps=0.1).calibrate(full, labels)  # (N, K) scores and labels: the same as the true-label column
    assert v.threshold_ == VRCP(eps=0.1).calibrate(full[np.arange(200), labels]).threshold_
    r = RSCP()
    assert r.calibrate(cal) is r and r.threshold_ == RSCP().calibrate(torch.from_numpy(cal)).threshold_


def test_model_keyword_is_the_same_as_scoring_first() -> None:
    model, x, y = _linear_data(120, 4)
    probs = torch.softmax(model(x).detach(), -1)
    a = SplitConformal(alpha=0.2).calibrate(x[:80], y[:80], model=model)
    b = SplitConformal(alpha=0.2).calibrate(probs[:80], y[:80])
    assert a.threshold_ == pytest.approx(b.threshold_)
    assert torch.equal(a.predict(x[80:], model=model).mask, b.predict(probs[80:]).mask)
    v = VRCP(eps=0.01, alpha=0.2)
    assert v.calibrate_model(model, x[:80], y[:80]).threshold_ == VRCP(eps=0.01, alpha=0.2).calibrate(
        x[:80], y[:80], model=model).threshold_
    with pytest.raises(ValueError, match="`labels`"):
        v.calibrate(x[:80], model=model)


def test_seed_is_deprecated_in_favour_of_generator() -> None:
    model, x, y = _linear_data(6, 5)
    with pytest.warns(DeprecationWarning, match="`seed`"):
        a, _ = attacks.pgd_attack(model, x, y, 0.1, steps=3, restarts=2, seed=7)
    b, _ = attacks.pgd_attack(model, x, y, 0.1, steps=3, restarts=2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default draws no warning and stays reproducible
        c, _ = attacks.pgd_attack(model, x, y, 0.1, steps=3, restarts=2)
        d, _ = attacks.pgd_attack(model, x, y, 0.1, steps=3, restarts=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(c, d)
    with pytest.raises(ValueError, match="`generator` or the deprecated `seed`"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attacks.pgd_attack(model, x, y, 0.1, seed=1, generator=torch.Generator())
    with pytest.warns(DeprecationWarning, match="seed"):
        RCTConfig(seed=0)
