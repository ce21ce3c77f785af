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


class _Res(nn.Module):
    """conv-BN-act, then a residual block (stride-2 conv shortcut) and an identity residual block."""

    def __init__(self, act: type[nn.Module]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), act())
        self.a1, self.a2 = nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.short = nn.Conv2d(4, 6, 1, stride=2)
        self.b1 = nn.Conv2d(6, 6, 3, padding=2, dilation=2)
        self.b2 = nn.Conv2d(6, 6, 3, padding=1, groups=2)
        self.act = act()
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = self.act(self.short(h) + self.a2(self.act(self.a1(h))))
        h = self.act(h - self.b2(self.act(self.b1(h))))
        return self.head(h)


@pytest.mark.parametrize(("act", "norm"), [(nn.ReLU, math.inf), (nn.ReLU, 2), (nn.Tanh, math.inf)])
def test_patches_through_residual_blocks_equal_the_dense_backward_pass(
        act: type[nn.Module], norm: float, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    net = _Res(act)
    net(torch.zeros(1, 3, 10, 10))
    bn = net.stem[1]
    assert isinstance(bn, nn.BatchNorm2d)
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2)
    net = net.double().eval()
    x = torch.rand((3, 3, 10, 10), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = 0.05 if norm == math.inf else 0.3
    calls = []
    orig = crown._patches_bounds

    def spy(*a, **kw):  # type: ignore[no-untyped-def]
        out = orig(*a, **kw)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(crown, "_patches_bounds", spy)
    for cmp in (False, True):
        ours = certify.bounds(net, x, eps, norm=norm, method="crown", domain=(0.0, 1.0), compare_crown_with_ibp=cmp)
        assert sum(calls) >= 4  # every conv-shaped pre-activation took the patches path
        calls.clear()
        monkeypatch.setattr(crown, "_patches_bounds", lambda *a, **kw: None)
        ref = certify.bounds(net, x, eps, norm=norm, method="crown", domain=(0.0, 1.0), compare_crown_with_ibp=cmp)
        monkeypatch.setattr(crown, "_patches_bounds", spy)
        assert bool((ours.lower < ours.upper).all())
        torch.testing.assert_close(ours.lower, ref.lower, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ours.upper, ref.upper, rtol=1e-10, atol=1e-10)


def test_window_backward_of_strided_convs_in_phase_form_equals_the_dense_pass(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows through a 4x4 stride-2 convolution (cnn_4layer's) go backward as a stride-1 convolution and a
    pixel shuffle when no matrix form is used (float32 windows larger than 3x3; forced here in float64): the
    bounds equal those of the dense backward pass, and the phase form ran on windows."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 8, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 4, stride=2, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 4)).double().eval().requires_grad_(False)
    x = torch.rand((3, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    windows = []
    orig = crown._phase_conv_transpose

    def spy(n, t, shape, padding=None):  # type: ignore[no-untyped-def]
        if padding == (0, 0):
            windows.append(t.shape)
        return orig(n, t, shape, padding)

    monkeypatch.setattr(crown, "PATCH_MAP_MAX_ELEMENTS", 0)
    monkeypatch.setattr(crown, "_phase_conv_transpose", spy)
    ours = certify.bounds(net, x, 0.03, method="crown", domain=(0, 1))
    assert windows
    monkeypatch.setattr(crown, "_patches_bounds", lambda *a, **kw: None)
    ref = certify.bounds(net, x, 0.03, method="crown", domain=(0, 1))
    torch.testing.assert_close(ours.lower, ref.lower, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours.upper, ref.upper, rtol=1e-10, atol=1e-10)
    ibp = certify.bounds(net, x, 0.03, method="ibp", domain=(0, 1))
    assert bool((ours.upper - ours.lower < ibp.upper - ibp.lower - 1e-6).any())  # CROWN rows took part
