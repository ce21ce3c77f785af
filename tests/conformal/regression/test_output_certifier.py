"""Robust conformal regression consumes certifiers only through ``certkit.certifier.OutputCertifier``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from certify import BoundCertifier
from certify import bounds as certify_bounds
from certkit.certifier import OutputBounds, OutputCertifier
from certkit.threat import LpBall
from conformal.regression import (
    RobustConformalRegressor,
    bound_propagation_output_bounds,
    smoothed_output_bounds,
)
from conformal.regression import robust as robust_module
from smoothing import SmoothedRegressionCertifier

ALPHA = 0.1


class ExactLinear:
    """Exact output bounds of a linear regressor ``w . x + b`` over an L-p ball: ``f(x) +- eps ||w||_q``."""

    name = "exact linear"

    def __init__(self) -> None:
        self.calls = 0

    def output_bounds(self, model: nn.Module, x: torch.Tensor, threat: LpBall) -> OutputBounds:
        self.calls += 1
        assert isinstance(model, nn.Linear)
        w = model.weight.detach()[0]
        dual = 1.0 if threat.norm == math.inf else 2.0 if threat.norm == 2.0 else threat.norm / (threat.norm - 1)
        r = threat.eps * torch.linalg.vector_norm(w, ord=dual)
        with torch.no_grad():
            pred = model(x)[:, 0]
        return OutputBounds(pred, pred - r, pred + r)


def _linear(d: int = 5) -> nn.Linear:
    torch.manual_seed(0)  # the model's init only; the tests' data use their own generators
    return nn.Linear(d, 1).eval()


def _ball_samples(x: torch.Tensor, threat: LpBall, m: int, g: torch.Generator) -> torch.Tensor:
    """``m`` points per input on the boundary or inside the ball (corners for L-inf, sphere for L2)."""
    z = torch.randn((m, *x.shape), generator=g)
    if threat.norm == math.inf:
        z = z.sign()
    else:
        z = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    return x + threat.eps * z


def test_toy_certifier_plugs_in_and_bounds_contain_sampled_outputs() -> None:
    assert isinstance(ExactLinear(), OutputCertifier)
    model, g = _linear(), torch.Generator().manual_seed(1)
    x = torch.randn(2000, 5, generator=g)
    with torch.no_grad():
        y = model(x)[:, 0] + 0.3 * torch.randn(2000, generator=g)
    for threat in (LpBall("linf", 0.2), LpBall(2, 0.5)):
        cert = ExactLinear()
        b = cert.output_bounds(model, x[:50], threat)
        with torch.no_grad():
            outs = model(_ball_samples(x[:50], threat, 64, g))[..., 0]
        assert bool(((b.lower <= outs + 1e-5) & (outs <= b.upper + 1e-5)).all())
        for mode in ("inference", "calibration"):
            reg = RobustConformalRegressor(alpha=ALPHA, mode=mode, threat=threat, certifier=cert)
            reg.calibrate_model(model, x[:1000], y[:1000])
            # worst-case attack: push the output away from the target to the edge of the ball
            w = model.weight.detach()[0]
            with torch.no_grad():
                away = torch.sign(model(x[1000:])[:, 0] - y[1000:]).unsqueeze(1)
            step = w.sign() if threat.norm == math.inf else w / torch.linalg.vector_norm(w)
            x_adv = x[1000:] + threat.eps * away * step
            assert bool(threat.contains(x_adv, x[1000:], atol=1e-5).all())
            iv = reg.predict_model(model, x_adv)
            cov = float(iv.contains(y[1000:]).double().mean())
            assert cov >= 1 - ALPHA - 3 * math.sqrt(ALPHA * (1 - ALPHA) / 1000), (threat, mode, cov)
        assert cert.calls == 3  # once above, once per mode: the regressor used the given certifier


def test_bound_certifier_equals_old_function_and_direct_bounds() -> None:
    model, x = _linear(), torch.randn(20, 5, generator=torch.Generator().manual_seed(2))
    threat = LpBall("linf", 0.1, (-3.0, 3.0))
    for method in ("ibp", "crown"):
        new = BoundCertifier(method=method).output_bounds(model, x, threat)
        old = bound_propagation_output_bounds(model, x, threat, method=method)
        ref = certify_bounds(model, x, threat.eps, norm=threat.norm, method=method, domain=threat.domain)
        for a, b in ((new, old), (new, OutputBounds(model(x)[:, 0].detach(), ref.lower[:, 0], ref.upper[:, 0]))):
            assert torch.equal(a.predictions, b.predictions)
            assert torch.equal(a.lower, b.lower) and torch.equal(a.upper, b.upper)
    # the default certifier of the regressor is BoundCertifier(method=...)
    reg = RobustConformalRegressor(mode="calibration", threat=threat, method="ibp")
    y = torch.zeros(20)
    q_old = RobustConformalRegressor(mode="calibration").calibrate(
        y, bound_propagation_output_bounds(model, x, threat, method="ibp")).quantile_
    assert reg.calibrate_model(model, x, y).quantile_ == q_old


def test_smoothed_certifier_equals_old_function() -> None:
    model, x = _linear(), torch.randn(6, 5, generator=torch.Generator().manual_seed(3))
    kw = {"sigma": 0.5, "output_range": (-2.0, 2.0), "n_samples": 300, "beta": 0.01}
    cert = SmoothedRegressionCertifier(generator=torch.Generator().manual_seed(4), **kw)  # type: ignore[arg-type]
    new = cert.output_bounds(model, x, LpBall(2, 0.25))
    old = smoothed_output_bounds(model, x, eps=0.25, generator=torch.Generator().manual_seed(4), **kw)  # type: ignore[arg-type]
    for a, b in ((new.predictions, old.predictions), (new.lower, old.lower), (new.upper, old.upper)):
        assert torch.equal(a, b)
    assert bool((new.lower < new.predictions).all() and (new.predictions < new.upper).all())
    assert isinstance(cert, OutputCertifier)
    reg = RobustConformalRegressor(threat=LpBall(2, 0.25), certifier=cert)
    assert "SmoothedRegressionCertifier" in repr(reg) and reg.get_params()["certifier__sigma"] == 0.5
    with pytest.raises(ValueError, match=r"`threat`.*L2"):
        cert.output_bounds(model, x, LpBall("linf", 0.1))


def test_bad_certifier() -> None:
    assert robust_module.OutputBounds is OutputBounds
    with pytest.raises(TypeError, match="`certifier`"):
        RobustConformalRegressor(certifier="crown")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`certifier`"):
        RobustConformalRegressor(certifier=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`certifier` or `method`"):
        RobustConformalRegressor(method="ibp", certifier=BoundCertifier())
    with pytest.raises(ValueError, match="`output_range`"):
        SmoothedRegressionCertifier(sigma=0.5, output_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="`sigma`"):
        SmoothedRegressionCertifier(sigma=-1.0, output_range=(0.0, 1.0))
