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


def _window_case(dtype: torch.dtype, shared_rows: bool, one_coef_row: bool, channels_last: bool
                 ) -> tuple[torch.Tensor, crown._Relax, crown._Geom, tuple[int, int], torch.Tensor]:
    """Random window coefficients (B, S, C, 4, 4) of rows at a 2-strided, 1-padded geometry over a (3, 4, 6, 5) ReLU
    relaxation (windows partly outside the map; stable and unstable neurons), rows at random output positions."""
    gen = torch.Generator().manual_seed(7)
    nb, c, h, w, s = 3, 4, 6, 5, 11
    lo = torch.randn(nb, c, h, w, dtype=dtype, generator=gen)
    hi = lo + 2 * torch.rand(nb, c, h, w, dtype=dtype, generator=gen)
    lo[0, 0, :2], hi[1, 1, :2] = 0.5, -0.5  # stable neurons both ways
    if channels_last:
        lo, hi = lo.contiguous(memory_format=torch.channels_last), hi.contiguous(memory_format=torch.channels_last)
    r = crown._Relax("relu", lo, hi)
    geom: crown._Geom = ((4, 4), (2, 2), (1, 1))
    out_hw = (3, 3)
    lidx = torch.randint(0, 9, (1 if shared_rows else nb, s), generator=gen)
    a = torch.randn(1 if one_coef_row else nb, s, c, 4, 4, dtype=dtype, generator=gen)
    return a, r, geom, out_hw, lidx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shared_rows", "one_coef_row", "channels_last"),
                         [(True, True, False), (False, False, False), (True, False, True), (False, True, True)])
def test_compiled_window_relu_step_equals_the_torch_form(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                         shared_rows: bool, one_coef_row: bool,
                                                         channels_last: bool) -> None:
    """The compiled ReLU step on window coefficients (``crown._relu_window_step``) gives torch's form's coefficients
    bit for bit and its bias terms up to the order of summation, with one coefficient for both bounds and with
    separate ones, for rows shared by the batch or per input, windows partly outside the map, maps in either memory
    order."""
    pytest.importorskip("numba")
    monkeypatch.setattr(crown, "USE_COMPILED", True)
    if crown._relu_kernels(1) is None:
        pytest.skip("compiled kernels switched off")
    a, r, geom, out_hw, lidx = _window_case(dtype, shared_rows, one_coef_row, channels_last)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    for la, ua in ((a, a), (a, -0.5 * a)):
        fast = crown._relu_window_step(la, ua, r, geom, out_hw, lidx)
        assert fast is not None
        monkeypatch.setattr(crown, "_relu_window_step", lambda *args: None)
        ref = crown._patch_activation(la, ua, r, None, geom, out_hw, lidx)
        monkeypatch.undo()
        monkeypatch.setattr(crown, "USE_COMPILED", True)
        for f, t in zip(fast[:2], ref[:2], strict=True):
            assert f.shape == t.shape and torch.equal(f, t)
        for f, t in zip(fast[2:], ref[2:], strict=True):
            assert f.shape == t.shape
            torch.testing.assert_close(f, t, rtol=tol, atol=tol * float(t.abs().max()))
        assert bool((fast[2] != 0).any()) and bool((fast[3] != 0).any())


def test_compiled_window_relu_step_leaves_other_cases_to_the_torch_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """An infinite intercept, coefficients that record gradients, or kernels switched off: the torch form runs."""
    pytest.importorskip("numba")
    monkeypatch.setattr(crown, "USE_COMPILED", True)
    if crown._relu_kernels(1) is None:
        pytest.skip("compiled kernels switched off")
    a, r, geom, out_hw, lidx = _window_case(torch.float64, False, False, False)
    assert crown._relu_window_step(a, a, r, geom, out_hw, lidx) is not None
    g = a.clone().requires_grad_(True)
    assert crown._relu_window_step(g, g, r, geom, out_hw, lidx) is None
    r.b_u = r.b_u.clone()
    r.__dict__.pop("finite intercept", None)
    r.b_u[0, 0, 0, 0] = math.inf
    assert crown._relu_window_step(a, a, r, geom, out_hw, lidx) is None
    monkeypatch.setattr(crown, "USE_COMPILED", False)
    a, r, geom, out_hw, lidx = _window_case(torch.float64, False, False, False)
    assert crown._relu_window_step(a, a, r, geom, out_hw, lidx) is None


def _res_net_stats() -> nn.Module:
    """A seeded ``_Res`` with its stem BatchNorm's running statistics drawn away from (0, 1), in evaluation mode."""
    torch.manual_seed(3)
    net = _Res(nn.ReLU)
    net(torch.zeros(1, 3, 10, 10))
    bn = net.stem[1]
    assert isinstance(bn, nn.BatchNorm2d)
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2)
    return net.eval()


def _res_net(dtype: torch.dtype) -> nn.Module:
    return _res_net_stats().to(dtype).requires_grad_(False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("patch_bytes", [None, 1])
def test_compiled_window_relu_step_gives_the_torch_forms_bounds(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                               patch_bytes: int | None) -> None:
    """CROWN with the compiled window ReLU step equals CROWN with torch's form (residual blocks, strided, dilated and
    grouped convs, BatchNorm; whole batch and chunks of one row and one input), and the kernel ran on both sides."""
    pytest.importorskip("numba")
    monkeypatch.setattr(crown, "USE_COMPILED", True)
    real = crown._relu_kernels(1)
    if real is None:
        pytest.skip("compiled kernels switched off")
    net = _res_net(dtype)
    x = torch.rand((3, 3, 10, 10), generator=torch.Generator().manual_seed(0), dtype=dtype)
    sides: list[int] = []

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def relu_window(self, *args: object) -> None:
            sides.append(int(args[6]))  # type: ignore[call-overload]
            real.relu_window(*args)

    if patch_bytes is not None:
        monkeypatch.setattr(crown, "PATCH_BYTES", patch_bytes)
    monkeypatch.setattr(crown, "_relu_kernels", lambda entries: Spy())
    fast = certify.bounds(net, x, 0.05, method="crown", domain=(0.0, 1.0))
    assert set(sides) == {-1, 0, 1}
    monkeypatch.setattr(crown, "_relu_window_step", lambda *args: None)
    ref = certify.bounds(net, x, 0.05, method="crown", domain=(0.0, 1.0))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    scale = float(ref.upper.abs().max())
    torch.testing.assert_close(fast.lower, ref.lower, rtol=tol, atol=tol * scale)
    torch.testing.assert_close(fast.upper, ref.upper, rtol=tol, atol=tol * scale)
    assert bool((ref.upper - ref.lower > 0.01).any())


def test_window_transposed_convolutions_in_calls_and_wide_channels_equal_the_dense_pass(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 window coefficients through transposed convolutions in calls of a few rows (``PATCH_CONV_BYTES``),
    and through transposed convolutions instead of the window map's product (``PATCH_MAP_WIDE_CHANNELS``), give the
    dense backward pass's bounds; the split calls happened."""
    net = _res_net(torch.float32)
    x = torch.rand((3, 3, 10, 10), generator=torch.Generator().manual_seed(0))
    calls: list[int] = []
    orig = crown.F.conv_transpose2d

    def spy(t: torch.Tensor, *args: object, **kw: object) -> torch.Tensor:
        calls.append(t.shape[0])
        return orig(t, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(crown, "_patches_bounds", lambda *a, **kw: None)
    ref = certify.bounds(net, x, 0.05, method="crown", domain=(0.0, 1.0))
    monkeypatch.undo()
    scale = float(ref.upper.abs().max())
    for settings in ({"PATCH_MAP_MAX_ELEMENTS": 0, "PATCH_CONV_BYTES": 1},
                     {"PATCH_MAP_MAX_ELEMENTS": 0, "PATCH_CONV_BYTES": 3000},
                     {"PATCH_MAP_WIDE_CHANNELS": 1}):
        for k, v in settings.items():
            monkeypatch.setattr(crown, k, v)
        monkeypatch.setattr(crown.F, "conv_transpose2d", spy)
        calls.clear()
        ours = certify.bounds(net, x, 0.05, method="crown", domain=(0.0, 1.0))
        monkeypatch.undo()
        assert calls
        if settings.get("PATCH_CONV_BYTES") == 1:
            assert max(calls) == 1  # one window per call
        torch.testing.assert_close(ours.lower, ref.lower, rtol=1e-5, atol=1e-5 * scale)
        torch.testing.assert_close(ours.upper, ref.upper, rtol=1e-5, atol=1e-5 * scale)
