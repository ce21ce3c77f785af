"""The CIFAR-shaped networks of the certified-training literature (``tests/certify/cifar_models.py``, also the
benchmarks' networks): soundness of IBP, CROWN-IBP and CROWN, and equality with auto_LiRPA (issue 14).

Random weights, 3x32x32 inputs in [0, 1], L-inf eps 2/255 (the CIFAR benchmark's radius), float32. Soundness is
the shared property of ``test_layers.assert_sound``: sampled points of the ball plus PGD minimising and maximising
every output stay inside the bounds. All slow (about a minute in all on one core).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import certify
from certify.auto_lirpa import auto_lirpa_available
from tests.certify.cifar_models import CIFAR_MODELS
from tests.certify.test_layers import assert_sound

pytestmark = pytest.mark.slow
EPS = 2 / 255


def _x(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
@pytest.mark.parametrize("name", ["cnn_4layer", "resnet_small"])
def test_cifar_bounds_are_sound(name: str, method: str) -> None:
    model = CIFAR_MODELS[name]()
    b = assert_sound(model, _x(2), EPS, norm=math.inf, method=method, samples=5_000)
    assert float(b.width.min()) > 0  # not degenerate


@pytest.mark.parametrize("name", ["cnn_7layer_bn", "cnn_7layer"])
def test_cifar_7layer_crown_ibp_is_sound(name: str) -> None:
    """The 17M-parameter networks: one input, fewer samples (a forward pass costs ~150 MFLOP)."""
    model = CIFAR_MODELS[name]()
    assert_sound(model, _x(1), EPS, norm=math.inf, method="crown-ibp", samples=500, pgd_steps=10)


def test_cifar_builders_are_deterministic_and_leave_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    for name, build in CIFAR_MODELS.items():
        a, b = build().state_dict(), build().state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
        assert not build().training
    assert torch.equal(state, torch.get_rng_state())
    # CROWN-IBP's cnn_7layer (Zhang et al. 2020): conv 3-64-64-128(s2)-128-128, fc 32768-512-10
    shapes = [tuple(p.shape) for p in CIFAR_MODELS["cnn_7layer"]().parameters() if p.dim() > 1]
    assert shapes == [(64, 3, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3), (128, 128, 3, 3), (128, 128, 3, 3),
                      (512, 32768), (10, 512)]


@pytest.mark.skipif(not auto_lirpa_available(), reason="auto_LiRPA is not importable")
@pytest.mark.parametrize(("method", "theirs"), [("ibp", "IBP"), ("crown-ibp", "CROWN-IBP"), ("crown", "CROWN")])
def test_cnn_4layer_agrees_with_auto_lirpa_in_float64(method: str, theirs: str) -> None:
    """Equal bounds (<= 1e-5 relative) in float64, with the default ``intersect_ibp=True``: on this network
    at this radius CROWN's bounds are the tighter everywhere, so the intersection changes nothing."""
    model = CIFAR_MODELS["cnn_4layer"]().double()
    x = _x(2, torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = certify.bounds(model, x, EPS, method=method, domain=(0.0, 1.0))
        ref = certify.bounds(model, x, EPS, method=f"auto_lirpa:{theirs}", domain=(0.0, 1.0))
    scale = float(ref.upper.abs().max()) + 1
    assert float((ours.lower - ref.lower).abs().max()) / scale <= 1e-5
    assert float((ours.upper - ref.upper).abs().max()) / scale <= 1e-5
