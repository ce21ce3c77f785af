"""CROWN's patches path (conv -> ReLU -> conv from the input; convs too large to densify) gives the bounds
of the dense backward pass, and is sound."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import certify
import certify.crown as crown
from tests.certify.test_layers import assert_sound


def _net(bn: bool, stride: int, pad: int, k: int) -> nn.Sequential:
    torch.manual_seed(1)
    layers: list[nn.Module] = [nn.Conv2d(3, 8, k, stride=stride, padding=pad)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(16))
    layers += [nn.ReLU(), nn.Flatten(), nn.LazyLinear(4)]
    net = nn.Sequential(*layers)
    net(torch.zeros(1, 3, 32, 32))
    for m in net:
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return net.double().eval()


@pytest.mark.parametrize(("bn", "stride", "pad", "k"), [
    (False, 2, 1, 4), pytest.param(True, 1, 1, 3, marks=pytest.mark.slow), (True, 2, 0, 3)])
def test_patches_equal_the_dense_backward_pass(bn: bool, stride: int, pad: int, k: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    net = _net(bn, stride, pad, k)
    x = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    calls = []
    orig = crown._patches_bounds

    def spy(*a, **kw):  # type: ignore[no-untyped-def]
        out = orig(*a, **kw)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(crown, "_patches_bounds", spy)
    for cmp in (False, True):
        ours = certify.bounds(net, x, 0.02, method="crown", compare_crown_with_ibp=cmp)
        assert any(calls)  # the patches path ran
        monkeypatch.setattr(crown, "_patches_bounds", lambda *a, **kw: None)
        ref = certify.bounds(net, x, 0.02, method="crown", compare_crown_with_ibp=cmp)
        monkeypatch.setattr(crown, "_patches_bounds", spy)
        torch.testing.assert_close(ours.lower, ref.lower, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ours.upper, ref.upper, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_patches_path_is_sound() -> None:
    net = _net(True, 2, 1, 4)
    x = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert_sound(net, x, 0.02, norm=math.inf, method="crown", samples=2_000, pgd_steps=10)
