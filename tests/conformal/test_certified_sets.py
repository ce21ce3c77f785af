"""The single entry point: sets + guarantee, and clear errors on certifier/threat-model mismatches."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from conformal.certified_sets import CertifiedSets, certified_sets, check_threat_model
from conformal.vrcp import VRCP


@pytest.fixture(scope="module")
def small() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_cnn

    d = load_digits_split("calibration")
    return digits_cnn(), d.images[:60], d.labels[:60], d.images[60:75]


@pytest.mark.parametrize("method", ["vrcp-i", "vrcp-c", "pac"])
def test_bound_certifiers(small: tuple, method: str) -> None:
    model, xc, yc, xt = small
    out = certified_sets(model, xc, yc, xt, certifier="crown", method=method, eps=0.02, norm=math.inf,
                         alpha=0.2, delta=0.1, domain=(0, 1))
    assert isinstance(out, CertifiedSets) and out.sets.mask.shape == (15, 10)
    assert "0.02" in out.guarantee and "L-inf" in out.guarantee
    if method == "pac":
        assert out.kind == "pac" and out.failure_probability == 0.1 and "0.9" in out.guarantee
    else:
        assert out.kind == "marginal" and out.failure_probability == 0.0 and ">= 0.8" in out.guarantee
        mode = "inference" if method == "vrcp-i" else "calibration"
        ref = VRCP(alpha=0.2, eps=0.02, mode=mode, domain=(0, 1)).calibrate_model(model, xc, yc)  # type: ignore[arg-type]
        assert torch.equal(ref.predict_model(model, xt).mask, out.sets.mask)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.eps = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("method", ["rscp+", "pac"])
def test_smoothing_certifier(small: tuple, method: str) -> None:
    model, xc, yc, xt = small
    out = certified_sets(model, xc, yc, xt, certifier="smoothing", method=method, eps=0.1, norm=2, alpha=0.2,
                         n_mc=16, beta=0.01, generator=torch.Generator().manual_seed(0))
    assert out.sets.mask.shape == (15, 10) and "L2" in out.guarantee and out.norm == 2.0


def test_threat_model_mismatch_is_a_clear_error(small: tuple) -> None:
    model, xc, yc, xt = small
    with pytest.raises(ValueError, match="L2 balls only"):
        certified_sets(model, xc, yc, xt, certifier="smoothing", method="rscp+", eps=0.1, norm=math.inf)
    with pytest.raises(ValueError, match="L2 balls only"):
        check_threat_model("smoothing", "pac", "linf")
    with pytest.raises(ValueError, match=r"`method`.*certifier='crown'"):
        certified_sets(model, xc, yc, xt, certifier="crown", method="rscp+", eps=0.1)
    with pytest.raises(ValueError, match=r"`method`.*certifier='smoothing'"):
        check_threat_model("smoothing", "vrcp-i", 2)
    with pytest.raises(ValueError, match="`certifier`"):
        check_threat_model("lp", "vrcp-i", 2)
    with pytest.raises(ValueError, match="`norm`"):
        check_threat_model("crown", "vrcp-i", 1)
    assert check_threat_model("ibp", "vrcp-c", "l2") == 2.0
    with pytest.raises(ValueError, match="`eps`"):
        certified_sets(model, xc, yc, xt, eps=-1.0)
    with pytest.raises(TypeError, match="`x_test`"):
        certified_sets(model, xc, yc, xt.numpy(), eps=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`y_cal`"):
        certified_sets(model, xc, yc[:5], xt, eps=0.1)
