"""CROWN / CROWN-IBP: relaxations, exactness, soundness (random points and PGD), tightness vs IBP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import certify
import certify.crown as crown_mod
from certify._graph import cached_graph
from certify.attacks import pgd_margins
from certify.crown import relu_relaxation, smooth_relaxation
from certkit_app.datasets import load_digits_split
from certkit_app.digits import digits_cnn, digits_mlp


def test_relu_relaxation_matches_auto_lirpa_rule() -> None:
    l = torch.tensor([-2.0, -1.0, -1.0, 0.0, 0.5, -3.0, -1.0])  # noqa: E741
    u = torch.tensor([1.0, 1.0, 3.0, 2.0, 1.0, -1.0, 0.0])
    d_l, d_u, b_u = relu_relaxation(l, u)
    torch.testing.assert_close(d_u[:3], torch.tensor([1 / 3, 0.5, 0.75]))
    torch.testing.assert_close(b_u[:3], torch.tensor([2 / 3, 0.5, 0.75]))
    assert d_l.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]  # tie u = -l -> 0
    assert d_u[3:5].tolist() == [1.0, 1.0] and b_u[3:5].tolist() == [0.0, 0.0]  # stable active
    assert d_u[5].item() == 0.0 and b_u[5].item() == 0.0  # stable inactive
    # the lines enclose relu on [l, u]
    for i in range(len(l)):
        xs = torch.linspace(float(l[i]), float(u[i]), 101)
        assert (torch.relu(xs) <= d_u[i] * xs + b_u[i] + 1e-6).all()
        assert (torch.relu(xs) >= d_l[i] * xs - 1e-6).all()


def _smooth_intervals(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Random intervals: centres N(0, 4^2), widths from 1e-9 to 60 (log-uniform), one-sided on either side of 0,
    around 0, far out (|x| up to 500, where f' underflows in float32), touching 0, points."""
    g = torch.Generator().manual_seed(0)
    n = 4000
    c = torch.randn(n, generator=g, dtype=torch.float64) * 4
    w = 10 ** (torch.rand(n, generator=g, dtype=torch.float64) * 10.8 - 9)
    l, u = c - w / 2, c + w / 2  # noqa: E741
    far = torch.linspace(-500, 500, 41, dtype=torch.float64)
    extra_l = torch.cat([far, -far.abs() - 3, torch.zeros(5), -torch.rand(5, generator=g, dtype=torch.float64),
                         torch.tensor([0.3, -2.0, 1e-3, -1e-3, -40.0, -1e-8])])
    extra_u = torch.cat([far + 2, -far.abs() + 80, torch.rand(5, generator=g, dtype=torch.float64) * 5, torch.zeros(5),
                         torch.tensor([0.3, -2.0, 40.0, 1e-3, 1e-3, 1e-8])])
    return torch.cat([l, extra_l]).to(dtype), torch.cat([u, extra_u]).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("op", ["sigmoid", "tanh"])
def test_smooth_relaxation_is_sound_and_never_looser_than_the_chord_lines(op: str, dtype: torch.dtype) -> None:
    """CROWN's tangent-line relaxation of sigmoid/tanh (``smooth_relaxation``): on random intervals (tiny, wide,
    one-sided, across 0, far out) both lines enclose f, evaluated in float64 on 1025 points of each interval (the
    curve's float values, and the float64 curve for the float32 lines); they touch the curve; and at the midpoint
    (hence in mean gap over [l, u], which is the gap at the midpoint for a line) neither line is looser than the
    former parallel chord lines (``_parallel_relaxation``); on intervals far from 0 it is strictly tighter."""
    from certify.crown import _parallel_relaxation

    l, u = _smooth_intervals(dtype)  # noqa: E741
    d_l, b_l, d_u, b_u = smooth_relaxation(op, l, u)
    assert all(t.dtype == dtype and bool(torch.isfinite(t).all()) for t in (d_l, b_l, d_u, b_u))
    kmax = 0.25 if op == "sigmoid" else 1.0
    assert bool((d_l > 0).all() & (d_l <= kmax).all() & (d_u > 0).all() & (d_u <= kmax).all())
    f = torch.sigmoid if op == "sigmoid" else torch.tanh
    t = torch.linspace(0, 1, 1025, dtype=torch.float64).unsqueeze(1)
    L, U = l.double(), u.double()
    xs = (L + t * (U - L)).to(dtype)  # points of the interval in the lines' dtype
    x64 = xs.double()
    fx = torch.minimum(f(x64), f(xs).double()), torch.maximum(f(x64), f(xs).double())
    lo = d_l.double() * x64 + b_l.double()
    hi = d_u.double() * x64 + b_u.double()
    assert bool((lo <= fx[0]).all()), float((lo - fx[0]).max())
    assert bool((hi >= fx[1]).all()), float((fx[1] - hi).max())
    # tight: each line comes within the sampling resolution (and rounding) of the curve
    res = ((U - L) / 1024) ** 2 + 1e-5 * (dtype == torch.float32) + 1e-12
    assert bool(((fx[0] - lo).min(0).values <= res).all() & ((hi - fx[1]).min(0).values <= res).all())
    # never looser than the parallel chord lines at the midpoint
    k, p_l, p_u = _parallel_relaxation(op, l, u)
    m = ((L + U) / 2).to(dtype).double()
    tol = 8 * torch.finfo(dtype).eps * (1 + k.double() * m.abs())
    gain_l = (d_l.double() * m + b_l.double()) - (k.double() * m + p_l.double())
    gain_u = (k.double() * m + p_u.double()) - (d_u.double() * m + b_u.double())
    assert bool((gain_l >= -tol).all() & (gain_u >= -tol).all()), (float(gain_l.min()), float(gain_u.min()))
    assert float(gain_l.mean() + gain_u.mean()) > 1e-3


@pytest.mark.parametrize("op", ["sigmoid", "tanh"])
def test_smooth_relaxation_with_infinite_ends_gives_limit_lines(op: str) -> None:
    """An infinite (overflowed) end gives the constant lines f(l) <= f <= f(u) (f(-inf) = 0 / -1, f(inf) = 1),
    a NaN end counts as infinite: never NaN slopes or intercepts; finite intervals beside them are unchanged."""
    inf, nan = math.inf, math.nan
    l = torch.tensor([-inf, -inf, -2.0, nan, -1.0, 0.5], dtype=torch.float64)  # noqa: E741
    u = torch.tensor([3.0, inf, inf, 1.0, 2.0, 4.0], dtype=torch.float64)
    d_l, b_l, d_u, b_u = smooth_relaxation(op, l, u)
    assert not any(bool(torch.isnan(t).any()) for t in (d_l, b_l, d_u, b_u))
    f = torch.sigmoid if op == "sigmoid" else torch.tanh
    floor = 0.0 if op == "sigmoid" else -1.0
    assert d_l[:4].tolist() == [0.0] * 4 and d_u[:4].tolist() == [0.0] * 4
    assert b_l[:4].tolist() == [floor, floor, float(f(torch.tensor(-2.0, dtype=torch.float64))), floor]
    assert b_u[:4].tolist() == [float(f(torch.tensor(3.0, dtype=torch.float64))), 1.0, 1.0,
                                float(f(torch.tensor(1.0, dtype=torch.float64)))]
    ref = smooth_relaxation(op, l[4:], u[4:])
    for a, b in zip((d_l, b_l, d_u, b_u), ref, strict=True):
        assert torch.equal(a[4:], b)


def _digits(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits_split("test")
    return d.images[:n], d.labels[:n]


def _random_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        certify.Normalize([0.3], [0.4]),
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1), nn.ReLU(),
        nn.AvgPool2d(2), nn.Conv2d(6, 8, 1, groups=2), nn.Tanh(),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 10), nn.Sigmoid(), nn.Linear(10, 5),
    ).eval()
    g = torch.Generator().manual_seed(seed)
    bn = model[2]
    bn.running_mean.copy_(torch.randn(4, generator=g) * 0.2)
    bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    return model


class _ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(256, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c1(x))
        h = torch.relu(h + self.c3(torch.relu(self.c2(h))))
        return self.fc(torch.flatten(h, 1))


def _points(x: torch.Tensor, eps: float, m: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand((x.shape[0], m, *x.shape[1:]), generator=g) * 2 - 1
    u = torch.where(torch.rand(u.shape[:2], generator=g).reshape(*u.shape[:2], *([1] * (x.dim() - 1))) < 0.5,
                    torch.sign(u), u)
    return (x.unsqueeze(1) + eps * u).clamp(0, 1).reshape(-1, *x.shape[1:])


@pytest.mark.parametrize("make", [_random_cnn, lambda s: (torch.manual_seed(s), _ResNet().eval())[1]])
def test_sound_on_random_networks(make) -> None:  # type: ignore[no-untyped-def]
    model = make(11)
    x = torch.rand(4, 1, 8, 8)
    eps = 0.05
    pts = _points(x, eps, 2500, 12)  # 10^4 points
    with torch.no_grad():
        out = model(pts).reshape(4, 2500, -1)
    widths = {}
    for method in ("ibp", "crown-ibp", "crown"):
        b = certify.bounds(model, x, eps, method=method, domain=(0, 1))
        assert (out >= b.lower.unsqueeze(1) - 1e-5).all(), method
        assert (out <= b.upper.unsqueeze(1) + 1e-5).all(), method
        widths[method] = b
    # CROWN never looser than IBP here
    assert (widths["crown"].lower >= widths["ibp"].lower - 1e-5).all()
    assert (widths["crown"].upper <= widths["ibp"].upper + 1e-5).all()


@pytest.mark.parametrize("zoo", [digits_mlp, digits_cnn])
def test_sound_on_digits_models(zoo) -> None:  # type: ignore[no-untyped-def]
    model = zoo()
    x, y = _digits(8)
    eps = 0.03
    pts = _points(x, eps, 1280, 13)  # 10,240 points
    with torch.no_grad():
        out = model(pts).reshape(8, 1280, -1)
        true = out.gather(2, y.reshape(8, 1, 1).expand(8, 1280, 1))
        margins = true - out
    found = pgd_margins(model, x, y, eps, domain=(0, 1), steps=20)
    for method in ("ibp", "crown-ibp", "crown"):
        b = certify.bounds(model, x, eps, method=method, domain=(0, 1))
        assert (out >= b.lower.unsqueeze(1) - 1e-5).all() and (out <= b.upper.unsqueeze(1) + 1e-5).all()
        mb = certify.margin_bounds(model, x, y, eps, method=method, domain=(0, 1))
        assert (margins >= mb.lower.unsqueeze(1) - 1e-5).all()
        assert (margins <= mb.upper.unsqueeze(1) + 1e-5).all()
        assert (mb.lower <= found + 1e-5).all()


def test_crown_tighter_than_ibp_on_digits() -> None:
    x, y = _digits(16)
    for zoo in (digits_mlp, digits_cnn):
        model = zoo()
        for eps in (0.005, 0.02, 0.05):
            mi = certify.margin_bounds(model, x, y, eps, method="ibp", domain=(0, 1))
            mc = certify.margin_bounds(model, x, y, eps, method="crown", domain=(0, 1))
            assert (mc.lower >= mi.lower - 1e-5).all()
            assert (mc.upper <= mi.upper + 1e-5).all()
            assert float((mc.lower - mi.lower).detach().mean()) > 0


def _exact_linear_bounds(model: nn.Module, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact output bounds when the network is affine on the region: f(x) -/+ |J| eps."""
    lo, hi = [], []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda z: model(z.unsqueeze(0))[0], xi).reshape(-1, xi.numel())
        f = model(xi.unsqueeze(0))[0]
        dev = jac.abs().sum(1) * eps
        lo.append(f - dev)
        hi.append(f + dev)
    return torch.stack(lo), torch.stack(hi)


def test_crown_exact_without_unstable_relu() -> None:
    model = digits_cnn().double()
    x = _digits(4)[0].double()
    eps = 1e-5
    # no unstable ReLU at this radius (IBP bounds of every pre-activation have a fixed sign)
    b = certify.bounds(model, x, eps, method="crown")
    lo, hi = _exact_linear_bounds(model, x, eps)
    torch.testing.assert_close(b.lower, lo, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(b.upper, hi, rtol=1e-9, atol=1e-10)
    ibp = certify.bounds(model, x, eps, method="ibp")
    assert float((ibp.upper - ibp.lower).mean().detach()) > float((b.upper - b.lower).mean().detach()) * 1.01


def test_dense_and_transposed_conv_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _random_cnn(21).double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    for method in ("crown", "crown-ibp"):
        dense = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
        monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
        conv = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
        monkeypatch.undo()
        torch.testing.assert_close(dense.lower, conv.lower, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(dense.upper, conv.upper, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm", [math.inf, 2])
def test_dense_and_phase_form_conv_paths_agree(monkeypatch: pytest.MonkeyPatch, norm: float) -> None:
    """4x4 stride-2 convolutions (CIFAR CNNs) go backward as a stride-1 convolution and a pixel shuffle when not
    densified: the bounds equal the dense matrices' (the phase form ran: counted)."""
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(2, 4, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 4, stride=2, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3 * 3, 7), nn.ReLU(), nn.Linear(7, 3)).double().eval()
    model.requires_grad_(False)  # (weights that autograd tracks are never densified)
    x = torch.rand(5, 2, 12, 12, dtype=torch.float64)
    eps = 0.05 if norm == math.inf else 0.5
    calls = []
    real = crown_mod._phase_conv_transpose

    def spy(*args: object) -> torch.Tensor:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    for method in ("crown", "crown-ibp"):
        dense = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
        monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
        monkeypatch.setattr(crown_mod, "_phase_conv_transpose", spy)
        conv = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
        monkeypatch.undo()
        torch.testing.assert_close(dense.lower, conv.lower, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(dense.upper, conv.upper, rtol=1e-10, atol=1e-10)
        assert bool((dense.upper - dense.lower > 0.05).any())
    assert calls


@pytest.mark.parametrize("norm", [math.inf, 2])
def test_chunked_backward_equals_whole_batch(monkeypatch: pytest.MonkeyPatch, norm: float) -> None:
    """Processing the batch in chunks of inputs (cache locality) must not change any bound."""
    model = _random_cnn(22).double()
    x = torch.rand(7, 1, 8, 8, dtype=torch.float64)
    y = torch.arange(7) % 5
    eps = torch.linspace(0.01, 0.05, 7, dtype=torch.float64)
    for method in ("crown", "crown-ibp"):
        whole = certify.margin_bounds(model, x, y, eps, norm=norm, method=method, domain=(0, 1))
        monkeypatch.setattr(crown_mod, "CHUNK_BYTES", 1)  # one input per chunk
        chunked = certify.margin_bounds(model, x, y, eps, norm=norm, method=method, domain=(0, 1))
        monkeypatch.undo()
        torch.testing.assert_close(whole.lower, chunked.lower, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(whole.upper, chunked.upper, rtol=1e-12, atol=1e-12)
        assert bool((whole.lower < 0).any())  # unstable neurons took part


@pytest.mark.parametrize("norm", [math.inf, 2])
def test_chunked_backward_with_a_whole_batch_prefix_equals_whole_batch(monkeypatch: pytest.MonkeyPatch,
                                                                      norm: float) -> None:
    """A chunked backward pass first runs the narrow nodes nearest the output and the linear layer where the
    coefficients widen on the whole batch, then slices the pending coefficients and biases per chunk: the
    bounds equal the unchunked ones (residual branch: two pending nodes are sliced)."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.fc1, self.fc2, self.fc3 = nn.Linear(512, 6), nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.c1(x))
            h = torch.relu(h + self.c2(h))
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(h.flatten(1))))))

    torch.manual_seed(5)
    model = Net().double().eval().requires_grad_(False)
    x = torch.rand(7, 1, 8, 8, dtype=torch.float64)
    eps = torch.linspace(0.05, 0.2, 7, dtype=torch.float64) * (1 if norm == math.inf else 8)
    prefixed: list[int] = []
    real = crown_mod._whole_batch_prefix

    def spy(*args: object) -> object:
        stop = real(*args)  # type: ignore[arg-type]

        def wrapped(i: int) -> bool:
            out = stop(i)
            if not out:
                prefixed.append(i)
            return out

        return wrapped

    for method in ("crown", "crown-ibp"):
        whole = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
        # one input per chunk; the whole batch's coefficients of width <= 6 stay under the budget
        monkeypatch.setattr(crown_mod, "CHUNK_BYTES", 7 * 3 * 6 * 8)
        monkeypatch.setattr(crown_mod, "_whole_batch_prefix", spy)
        chunked = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
        monkeypatch.undo()
        torch.testing.assert_close(whole.lower, chunked.lower, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(whole.upper, chunked.upper, rtol=1e-12, atol=1e-12)
        assert bool((whole.upper - whole.lower > 0.1).any())
    ops = {cached_graph(model, x).nodes[i].op for i in prefixed}
    assert {"relu", "linear"} <= ops or {"relu", "dense"} <= ops


def test_l2_soundness_and_domain() -> None:
    model = digits_mlp()
    x, y = _digits(4)
    eps = 0.3
    found = pgd_margins(model, x, y, eps, norm=2, domain=(0, 1), steps=30)
    for method in ("ibp", "crown-ibp", "crown"):
        free = certify.margin_bounds(model, x, y, eps, norm=2, method=method)
        boxed = certify.margin_bounds(model, x, y, eps, norm=2, method=method, domain=(0, 1))
        assert (boxed.lower >= free.lower - 1e-5).all()  # the domain only shrinks the region
        assert (boxed.lower <= found + 1e-5).all()


def test_verify_matches_margin_lower_bound_on_digits() -> None:
    model = digits_cnn()
    x, y = _digits(32)
    for method in ("crown", "crown-ibp"):
        mb = certify.margin_bounds(model, x, y, 0.02, method=method, domain=(0, 1))
        v = certify.verify(model, x, y, 0.02, method=method, domain=(0, 1))
        expected = ((mb.lower > 0) | nn.functional.one_hot(y, 10).bool()).all(1)
        assert torch.equal(v, expected)


def test_norm_inf_constant() -> None:
    assert certify.bounds(nn.Linear(2, 2).eval(), torch.zeros(1, 2), 0.1, norm="inf").lower.shape == (1, 2)
    assert math.isinf(float("inf"))


def _ibp_beats_crown() -> nn.Module:
    """relu(x + 0.3) on x in [-0.7, 0.7]: pre-activation in [-0.4, 1.0], so CROWN's adaptive lower line
    (slope 1, since u > -l) gives -0.4 where IBP gives the exact 0."""
    model = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1)).eval()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(0.3)
        model[2].weight.fill_(1.0)
        model[2].bias.fill_(0.0)
    return model


def test_compare_crown_with_ibp_exact_values() -> None:
    model, x = _ibp_beats_crown().double(), torch.zeros(1, 1, dtype=torch.float64)
    with torch.no_grad():
        crown = certify.bounds(model, x, 0.7, method="crown", intersect_ibp=False)  # the raw CROWN bound
        ibp = certify.bounds(model, x, 0.7, method="ibp")
        both = certify.bounds(model, x, 0.7, method="crown", compare_crown_with_ibp=True)
        both_cibp = certify.bounds(model, x, 0.7, method="crown-ibp", compare_crown_with_ibp=True)
    assert float(crown.lower) == pytest.approx(-0.4) and float(ibp.lower) == 0.0
    assert float(both.lower) == 0.0 and float(both.upper) == pytest.approx(1.0)
    assert float(both_cibp.lower) == 0.0
    # the default (intersect_ibp=True) intersects the final bounds only: also IBP's 0 here
    assert float(certify.bounds(model, x, 0.7, method="crown").lower) == 0.0


@pytest.mark.parametrize("method", ["crown", "crown-ibp"])
def test_compare_crown_with_ibp_is_sound_and_inside_ibp(method: str) -> None:
    for seed in range(3):
        model = _random_cnn(30 + seed)
        x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
        both = certify.bounds(model, x, 0.05, method=method, domain=(0, 1), compare_crown_with_ibp=True)
        ibp = certify.bounds(model, x, 0.05, method="ibp", domain=(0, 1))
        assert bool((both.lower >= ibp.lower - 1e-6).all() and (both.upper <= ibp.upper + 1e-6).all())
        g = torch.Generator().manual_seed(seed)
        pts = (x.unsqueeze(1) + (torch.rand(6, 2000, 1, 8, 8, generator=g) * 2 - 1) * 0.05).clamp(0, 1)
        with torch.no_grad():
            out = model(pts.reshape(-1, 1, 8, 8)).reshape(6, 2000, -1)
        assert bool((out >= both.lower.unsqueeze(1) - 1e-5).all() and (out <= both.upper.unsqueeze(1) + 1e-5).all())


def test_compare_crown_with_ibp_through_every_entry_point() -> None:
    model, x = _ibp_beats_crown(), torch.zeros(2, 1)
    two = nn.Sequential(model, nn.Linear(1, 2)).eval()
    with torch.no_grad():
        two[1].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        two[1].bias.copy_(torch.tensor([0.0, -0.05]))
    y = torch.zeros(2, dtype=torch.long)
    # margin f_0 - f_1 = 2 relu(x + 0.3) + 0.05 > 0 everywhere, but plain CROWN's lower line dips below 0
    assert not bool(certify.verify(two, x, y, 0.7, intersect_ibp=False).any())
    assert bool(certify.verify(two, x, y, 0.7, compare_crown_with_ibp=True, intersect_ibp=False).all())
    assert bool(certify.verify(two, x, y, 0.7).all())  # the default: intersected with IBP's final bounds
    assert certify.verified_accuracy(two, x, y, 0.7, progress=False, compare_crown_with_ibp=True) == 1.0
    r = certify.certified_radius(two, x, y, max_eps=2.0, compare_crown_with_ibp=True)
    assert bool((r >= certify.certified_radius(two, x, y, max_eps=2.0) - 1e-6).all())
    m = certify.margin_bounds(two, x, y, 0.7, compare_crown_with_ibp=True)
    assert bool((m.lower[:, 1] > 0).all())
    with pytest.raises(TypeError, match="compare_crown_with_ibp"):
        certify.bounds(two, x, 0.1, compare_crown_with_ibp="yes")  # type: ignore[arg-type]


def test_compare_crown_with_ibp_bounds_do_not_depend_on_the_batch() -> None:
    model = digits_mlp().double()
    x, _ = _digits(12)
    x = x.double()
    for method in ("crown", "crown-ibp"):
        batch = certify.bounds(model, x, 0.05, method=method, domain=(0, 1), compare_crown_with_ibp=True)
        for i in (0, 5, 11):
            one = certify.bounds(model, x[i : i + 1], 0.05, method=method, domain=(0, 1), compare_crown_with_ibp=True)
            torch.testing.assert_close(one.lower, batch.lower[i : i + 1], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(one.upper, batch.upper[i : i + 1], rtol=1e-10, atol=1e-10)


def test_relu_relaxation_with_infinite_bounds_encloses_relu() -> None:
    """An interval that overflowed (an infinite end) gets the limit lines, never NaN slopes or intercepts."""
    inf = math.inf
    l = torch.tensor([-inf, -inf, -2.0, -inf, 1.0, -inf])  # noqa: E741
    u = torch.tensor([3.0, inf, inf, -1.0, inf, 0.0])
    d_l, d_u, b_u = relu_relaxation(l, u)
    assert not bool(torch.isnan(d_l).any() | torch.isnan(d_u).any() | torch.isnan(b_u).any())
    xs = torch.linspace(-1e6, 1e6, 20001)
    for i in range(len(l)):
        x = xs[(xs >= l[i]) & (xs <= u[i])]
        assert (torch.relu(x) <= d_u[i] * x + b_u[i]).all()
        assert (torch.relu(x) >= d_l[i] * x).all()
    assert d_u[0].item() == 0.0 and b_u[0].item() == 3.0  # l = -inf: relu(x) <= u
    assert d_u[2].item() == 1.0 and b_u[2].item() == 2.0  # u = inf: relu(x) <= x - l
    assert b_u[1].item() == inf and b_u[3].item() == 0.0 and b_u[5].item() == 0.0


class _Overflow(nn.Module):
    """``exp(30 (x - x) + 80)`` (5.5e34 at every point; its IBP interval ends at exp(110): inf in float32) into
    a ReLU and a sigmoid, then a stacked transformer encoder whose IBP attention scores overflow."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(8, 8), nn.Linear(8, 8)
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True,
                                                                    activation="gelu"), 2,
                                         enable_nested_tensor=False)
        self.head = nn.Linear(4 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.exp(30 * (x - x) + 80) * 1e-35
        h = self.l2(torch.sigmoid(self.l1(torch.relu(e - 0.5))))
        return self.head(self.enc(x + h).flatten(1))


@pytest.mark.parametrize("method", ["ibp", "crown", "crown-ibp"])
def test_overflowing_intervals_give_infinite_bounds_not_nan(method: str) -> None:
    """Where an interval overflows the floating-point range (inf - inf, 0 * inf), the bounds are -/+inf
    (sound, uninformative), never NaN; every sampled output stays inside them."""
    torch.manual_seed(0)
    model = _Overflow().eval()
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(1))
    for sound in (False, True):
        b = certify.bounds(model, x, 0.5, method=method, sound=sound)
        assert not bool(torch.isnan(b.lower).any() | torch.isnan(b.upper).any())
        pts = x.unsqueeze(1) + 0.5 * (torch.rand(2, 500, 4, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1)
        with torch.no_grad():
            out = model(pts.reshape(-1, 4, 8)).reshape(2, 500, -1)
        assert bool(torch.isfinite(out).all())
        assert bool((out >= b.lower.unsqueeze(1) - 1e-4).all() & (out <= b.upper.unsqueeze(1) + 1e-4).all())


def test_chunked_backward_keeps_an_explicit_input_box(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk of inputs is bounded over its own rows of an explicit, non-symmetric box (lower/upper), not
    over the ball around the box's centre: chunked bounds equal the whole batch's."""
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).double().eval()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(7, 6, generator=g, dtype=torch.float64)
    lower = x - 0.3 * torch.rand(7, 6, generator=g, dtype=torch.float64) ** 4
    upper = x + 0.3 * torch.rand(7, 6, generator=g, dtype=torch.float64) ** 4
    for method in ("crown", "crown-ibp"):
        whole = certify.box_bounds(model, lower, upper, method=method)
        monkeypatch.setattr(crown_mod, "CHUNK_BYTES", 1)  # one input per chunk
        chunked = certify.box_bounds(model, lower, upper, method=method)
        monkeypatch.undo()
        torch.testing.assert_close(whole, chunked, rtol=1e-12, atol=1e-12)


class _BnFirst(nn.Module):
    """Pre-activations IBP bounds exactly (conv/linear of the input box, then BatchNorm or a normalisation)
    and ones it does not (after a normalisation for L2, a sum of two convolutions, a second layer)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.norm = certify.Normalize([0.4], [0.3])
        self.c1, self.c2, self.bn1 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c3, self.bn3 = nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4)
        self.fc, self.bn4, self.out = nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Linear(16, 3)
        for bn in (self.bn1, self.bn3, self.bn4):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.2)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        a = torch.relu(self.bn1(self.c1(h)))
        b = torch.relu(self.c1(x) + self.c2(x))
        h = torch.relu(self.bn3(self.c3(a + b)))
        return self.out(torch.relu(self.bn4(self.fc(h.flatten(1)))))


@pytest.mark.parametrize("norm", [math.inf, 2])
def test_pre_activations_ibp_bounds_exactly_skip_crown_with_equal_bounds(monkeypatch: pytest.MonkeyPatch,
                                                                          norm: float) -> None:
    """A pre-activation that IBP bounds exactly (one conv/linear layer of the input box, then element-wise affine
    maps) is not given CROWN rows, and only unstable neurons are: the bounds equal those of bounding every such
    node with CROWN, for L-inf and L2 (where only a layer on the input itself is exact)."""
    torch.manual_seed(0)
    model = _BnFirst().double().eval()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    eps = 0.05 if norm == math.inf else 0.3
    fast = certify.bounds(model, x, eps, norm=norm, method="crown", domain=(0, 1))
    flags = crown_mod._ibp_exact(certify._graph.cached_graph(model, x, torch.float64), norm)
    assert any(flags[1:]) and not all(flags)  # the model has both kinds of node
    monkeypatch.setattr(crown_mod, "_ibp_exact", lambda g, n: [False] * len(g.nodes))
    full = certify.bounds(model, x, eps, norm=norm, method="crown", domain=(0, 1))
    torch.testing.assert_close(fast.lower, full.lower, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fast.upper, full.upper, rtol=1e-10, atol=1e-10)
    assert bool((fast.upper - fast.lower > 1e-3).all())


@pytest.mark.parametrize("k,stride,pad,size", [(4, 2, 1, 8), (4, 2, 0, 9), (2, 2, 0, 7), (6, 3, 2, 10), (4, 2, 3, 6),
                                               (4, 4, 1, 11), (4, 2, (1, 0), (8, 7))])
def test_phase_form_transposed_convolution_equals_conv_transpose(k: int, stride: int, pad: object,
                                                                 size: object) -> None:
    """The strided transposed convolution as a stride-1 convolution and a pixel shuffle equals
    ``conv_transpose2d`` (with the output padding that restores the input's size), float64."""
    from certify._ir import Node
    from certify.crown import _phase_conv_transpose

    g = torch.Generator().manual_seed(11)
    h, w_ = size if isinstance(size, tuple) else (size, size)
    conv = nn.Conv2d(3, 5, k, stride=stride, padding=pad).double()  # type: ignore[arg-type]
    out_shape = conv(torch.zeros(1, 3, h, w_, dtype=torch.float64)).shape[1:]
    node = Node("conv", (0,), tuple(out_shape), "c", weight=conv.weight.detach(), bias=None,
                attrs={"stride": conv.stride, "padding": conv.padding, "dilation": (1, 1), "groups": 1})
    a = torch.randn(4, *out_shape, generator=g, dtype=torch.float64)
    ref = torch.autograd.grad(conv(x := torch.zeros(4, 3, h, w_, dtype=torch.float64, requires_grad=True)), x, a)[0]
    got = _phase_conv_transpose(node, a, (3, h, w_))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_surely_finite_never_calls_a_non_finite_tensor_finite() -> None:
    """The one-pass finiteness test (a sum) is True only when every entry is finite; an overflowing sum of
    finite entries answers False, and the exact check that follows keeps the finite path (same relaxation)."""
    from certify.crown import _surely_finite

    assert _surely_finite(torch.ones(3), torch.zeros(2, 2))
    for bad in (math.nan, math.inf, -math.inf):
        t = torch.ones(5)
        t[2] = bad
        assert not _surely_finite(t, torch.ones(2)) and not _surely_finite(torch.ones(2), t)
    big = torch.full((4,), 3e38)
    assert not _surely_finite(big)  # the sum overflows
    lo, hi = -big, big.clone()
    lo[0], hi[1] = -1.0, 2.0
    _, d_u, b_u = relu_relaxation(lo, hi)
    assert bool(torch.isfinite(d_u).all()) and bool(torch.isfinite(b_u).all())
    torch.testing.assert_close(d_u, hi / (hi - lo))


@pytest.mark.parametrize("k,stride,pad,size", [(4, 2, 1, 12), (4, 2, 0, 13), (2, 2, 0, 9), (4, 2, 2, 10)])
def test_first_conv_concretised_in_phase_layout_equals_the_dense_pass(monkeypatch: pytest.MonkeyPatch, k: int,
                                                                      stride: int, pad: int, size: int) -> None:
    """When the input feeds only a strided conv in phase form, the coefficients at the input stay in phase layout
    and the input box is brought to that layout (zero outside the map, rows no output reaches dropped): the
    bounds equal the dense pass's, for the final pass and intermediate CROWN rows, chunked or not; L2 keeps the
    ordinary path."""
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(2, 4, k, stride=stride, padding=pad), nn.ReLU(), nn.Flatten(), nn.LazyLinear(6),
                          nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.rand(5, 2, size, size, dtype=torch.float64)
    model(x)
    model.eval().requires_grad_(False)
    calls = []
    real = crown_mod._phase_input_back

    def spy(*args: object, **kw: object) -> object:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    for norm, eps in ((math.inf, 0.05), (2, 0.5)):
        for method in ("crown", "crown-ibp"):
            dense = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
            for chunk in (None, 1):
                calls.clear()
                monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
                monkeypatch.setattr(crown_mod, "_phase_input_back", spy)
                if chunk:
                    monkeypatch.setattr(crown_mod, "CHUNK_BYTES", chunk)
                conv = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
                monkeypatch.undo()
                assert bool(calls) == (norm == math.inf)
                torch.testing.assert_close(dense.lower, conv.lower, rtol=1e-10, atol=1e-10)
                torch.testing.assert_close(dense.upper, conv.upper, rtol=1e-10, atol=1e-10)
            assert bool((dense.upper - dense.lower > 0.02).any())


@pytest.mark.parametrize("cin,k,pad,size", [(3, 3, 1, 8), (1, 3, 1, 8), (3, 3, 0, 12), (1, 5, 2, 12), (3, 5, 1, 8),
                                             (2, (3, 5), (1, 2), (8, 12)), (3, 4, 3, 6), (1, 3, 2, (4, 8))])
def test_blocked_input_conv_step_equals_conv_transpose(cin: int, k: object, pad: object, size: object) -> None:
    """The stride-1 input conv's backward step in blocked form (one stride-s convolution, coefficients in
    space-to-depth layout) is ``conv_transpose2d``'s result in ``pixel_unshuffle``'s layout (float64), and the box
    is brought to the same layout; s = 4 for one channel, 2 for two or three."""
    from certify._ir import Node
    from certify.crown import _blocked_factor, _phase_input_back, _phase_layout

    g = torch.Generator().manual_seed(12)
    h, w_ = size if isinstance(size, tuple) else (size, size)
    conv = nn.Conv2d(cin, 5, k, padding=pad).double()  # type: ignore[arg-type]
    out_shape = tuple(conv(torch.zeros(1, cin, h, w_, dtype=torch.float64)).shape[1:])
    node = Node("conv", (0,), out_shape, "c", weight=conv.weight.detach(), bias=conv.bias.detach(),
                attrs={"stride": conv.stride, "padding": conv.padding, "dilation": (1, 1), "groups": 1})
    s = _blocked_factor(node, (cin, h, w_))
    assert s == (4 if cin == 1 and h % 4 == 0 and w_ % 4 == 0 else 2)
    a = torch.randn(2, 3, *out_shape, generator=g, dtype=torch.float64)
    got, bias = _phase_input_back(node, a, (cin, h, w_))
    assert got.shape == (2, 3, cin * s * s, h // s, w_ // s)
    ref = torch.nn.functional.conv_transpose2d(a.reshape(6, *out_shape), conv.weight.detach(), padding=conv.padding)
    torch.testing.assert_close(got.reshape(6, *got.shape[2:]), torch.nn.functional.pixel_unshuffle(ref, s),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bias, a.sum(dim=(3, 4)) @ conv.bias.detach(), rtol=1e-12, atol=1e-12)
    box = torch.rand(4, cin, h, w_, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_phase_layout(box, node), torch.nn.functional.pixel_unshuffle(box, s))


@pytest.mark.parametrize("cin,size,bn", [(3, 8, False), (3, 8, True), (1, 8, True), (1, 10, False), (3, 9, False)])
def test_first_conv_concretised_in_blocked_layout_equals_the_ordinary_pass(monkeypatch: pytest.MonkeyPatch, cin: int,
                                                                           size: int, bn: bool) -> None:
    """A stride-1 first conv on few channels takes the blocked form (``BLOCKED_INPUT_CONV``, with a BatchNorm after it
    folded into the same step): CROWN, CROWN-IBP and alpha-CROWN bounds equal those of the ordinary transposed
    convolution (float64, chunked or not) and contain the network's outputs; L2 and maps that s does not divide keep
    the ordinary path (counted)."""
    torch.manual_seed(4)
    layers: list[nn.Module] = [nn.Conv2d(cin, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(6), nn.ReLU(),
               nn.Linear(6, 3)]
    model = nn.Sequential(*layers).double()
    x = torch.rand(5, cin, size, size, dtype=torch.float64)
    model(x)
    if bn:
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 1.5)
        model[1].weight.data.uniform_(0.5, 1.5)
    model.eval().requires_grad_(False)
    calls = []
    real = crown_mod._blocked_weight

    def spy(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
    monkeypatch.setattr(crown_mod, "_blocked_weight", spy)
    for norm, eps in ((math.inf, 0.03), (2, 0.3)):
        for method in ("crown", "crown-ibp", "alpha-crown"):
            kw = {"iterations": 3} if method == "alpha-crown" else {}
            monkeypatch.setattr(crown_mod, "BLOCKED_INPUT_CONV", False)
            calls.clear()
            plain = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1), **kw)
            assert not calls
            monkeypatch.setattr(crown_mod, "BLOCKED_INPUT_CONV", True)
            for chunk in (crown_mod.CHUNK_BYTES, 1):
                monkeypatch.setattr(crown_mod, "CHUNK_BYTES", chunk)
                calls.clear()
                got = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1), **kw)
                assert bool(calls) == (norm == math.inf and size % 2 == 0)
                torch.testing.assert_close(got.lower, plain.lower, rtol=1e-10, atol=1e-10)
                torch.testing.assert_close(got.upper, plain.upper, rtol=1e-10, atol=1e-10)
            monkeypatch.setattr(crown_mod, "CHUNK_BYTES", 1 << 21)
            assert bool((plain.upper - plain.lower > 1e-3).any())
            pts = (x.unsqueeze(1) + eps * (2 * torch.rand(5, 64, *x.shape[1:], dtype=torch.float64) - 1)).clamp(0, 1)
            if norm == math.inf:
                ys = model(pts.reshape(-1, *x.shape[1:])).reshape(5, 64, -1)
                assert bool((ys >= got.lower.unsqueeze(1) - 1e-9).all() and (ys <= got.upper.unsqueeze(1) + 1e-9).all())


@pytest.mark.parametrize("first", ["dilation", "groups", "padding", "strided+bn"])
def test_first_convs_outside_the_blocked_form_keep_exact_bounds(monkeypatch: pytest.MonkeyPatch, first: str) -> None:
    """First convs the blocked form must not take (dilated, grouped, padding >= kernel) keep the ordinary transposed
    convolution; a BatchNorm after a strided first conv (phase form) is folded into its step under the same switch.
    Bounds with the switch on equal those with it off (float64) and contain sampled outputs."""
    g = torch.Generator().manual_seed(11)
    conv = {"dilation": nn.Conv2d(2, 4, 3, padding=2, dilation=2), "groups": nn.Conv2d(2, 4, 3, padding=1, groups=2),
            "padding": nn.Conv2d(2, 4, 3, padding=3), "strided+bn": nn.Conv2d(2, 4, 4, stride=2, padding=1)}[first]
    layers: list[nn.Module] = [conv]
    if first == "strided+bn":
        bn = nn.BatchNorm2d(4)
        bn.running_mean.uniform_(-0.2, 0.2, generator=g)
        bn.running_var.uniform_(0.5, 1.5, generator=g)
        bn.weight.data.uniform_(-1.5, 1.5, generator=g)
        layers.append(bn)
    layers += [nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten()]
    body = nn.Sequential(*layers).double().eval()
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64, generator=g)
    width = body(x).shape[1]
    model = nn.Sequential(body, nn.Linear(width, 5), nn.ReLU(), nn.Linear(5, 3)).double().eval().requires_grad_(False)
    calls = []
    real = crown_mod._blocked_weight

    def spy(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    folded = []
    real_back = crown_mod._phase_input_back

    def back(n: object, *args: object, **kw: object) -> object:
        folded.append("+" in n.name)  # type: ignore[attr-defined]  # the conv+BatchNorm node of _conv_affine_fold
        return real_back(n, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
    monkeypatch.setattr(crown_mod, "_blocked_weight", spy)
    monkeypatch.setattr(crown_mod, "_phase_input_back", back)
    for method in ("crown", "crown-ibp"):
        monkeypatch.setattr(crown_mod, "BLOCKED_INPUT_CONV", False)
        plain = certify.bounds(model, x, 0.05, method=method, domain=(0, 1))
        monkeypatch.setattr(crown_mod, "BLOCKED_INPUT_CONV", True)
        folded.clear()
        got = certify.bounds(model, x, 0.05, method=method, domain=(0, 1))
        assert not calls
        assert any(folded) == (first == "strided+bn")
        torch.testing.assert_close(got.lower, plain.lower, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got.upper, plain.upper, rtol=1e-10, atol=1e-10)
        assert bool((plain.upper - plain.lower > 1e-3).any())
        pts = (x.unsqueeze(1) + 0.05 * (2 * torch.rand(3, 256, 2, 8, 8, dtype=torch.float64, generator=g) - 1)).clamp(0, 1)
        ys = model(pts.reshape(-1, 2, 8, 8)).reshape(3, 256, -1)
        assert bool((ys >= got.lower.unsqueeze(1) - 1e-9).all() and (ys <= got.upper.unsqueeze(1) + 1e-9).all())


class _ShortcutBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.short = nn.Conv2d(cin, cout, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.short(x) + self.c2(torch.relu(self.c1(x)))


def _channels_last_net() -> nn.Module:
    torch.manual_seed(11)
    net = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), _ShortcutBlock(5, 6), nn.ReLU(),
                        nn.Flatten(), nn.Linear(6 * 6 * 6, 9), nn.ReLU(), nn.Linear(9, 3))
    bn = net[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    bn.weight.data.uniform_(0.5, 1.5)
    return net.double().eval().requires_grad_(False)


@pytest.mark.parametrize("norm", [math.inf, 2])
@pytest.mark.parametrize("chunk", [None, 1])
def test_channels_last_backward_equals_the_generic_path(monkeypatch: pytest.MonkeyPatch, norm: float,
                                                        chunk: int | None) -> None:
    """Channels-last coefficients (3x3 and strided convs, BatchNorm, a strided 1x1 shortcut as a matrix product and
    scatter, residual additions, chunks of inputs whose relaxations are converted once for the batch) give the
    generic path's bounds in float64 (the path is forced on; by default it runs in float32 on CPU only), and the
    path ran: coefficients left a conv channels-last, relaxations were converted, the shortcut took the product."""
    model = _channels_last_net()
    x = torch.rand(4, 2, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    eps = 0.03 if norm == math.inf else 0.3
    seen = {"pointwise": 0, "relax": 0, "scatter into pending": 0}
    real_pw, real_layout = crown_mod._pointwise_conv_transpose, crown_mod._relax_layout
    real_scatter = crown_mod._scatter_pair

    def scatter(*args: object) -> object:
        seen["scatter into pending"] += 1
        return real_scatter(*args)  # type: ignore[arg-type]

    def pointwise(*args: object) -> torch.Tensor:
        seen["pointwise"] += 1
        out = real_pw(*args)  # type: ignore[arg-type]
        assert out.stride(1) == 1  # channels-last
        return out

    def layout(r: object, a: object) -> object:
        out = real_layout(r, a)  # type: ignore[arg-type]
        seen["relax"] += out is not r
        return out

    for method, into in (("crown", False), ("crown-ibp", False), ("crown", True), ("crown-ibp", True)):
        monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
        if chunk is not None:
            monkeypatch.setattr(crown_mod, "CHUNK_BYTES", chunk)
        monkeypatch.setattr(crown_mod, "_use_channels_last", lambda g, t: False)
        ref = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
        monkeypatch.setattr(crown_mod, "_use_channels_last", lambda g, t: True)
        monkeypatch.setattr(crown_mod, "_pointwise_conv_transpose", pointwise)
        monkeypatch.setattr(crown_mod, "_relax_layout", layout)
        # the shortcut's scatter alone, or added into the main branch's coefficients (crown.SCATTER_INTO_PENDING)
        monkeypatch.setattr(crown_mod, "SCATTER_INTO_PENDING", into)
        monkeypatch.setattr(crown_mod, "_scatter_pair", scatter)
        cl = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
        monkeypatch.undo()
        torch.testing.assert_close(cl.lower, ref.lower, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(cl.upper, ref.upper, rtol=1e-10, atol=1e-10)
        assert bool((ref.upper - ref.lower > 0.01).any())
    assert seen["pointwise"] and seen["relax"] and seen["scatter into pending"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk", [None, 1])
@pytest.mark.parametrize(("channels_last", "narrow"), [(False, 32), (True, 32), (True, 0)])
def test_compiled_relu_step_equals_the_torch_form(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                  chunk: int | None, channels_last: bool, narrow: int) -> None:
    """The compiled ReLU step (numba; one pass per side with the intercept's bias term and a following conv's
    per-channel sums) and the compiled relaxation give the torch form's bounds for CROWN and CROWN-IBP, whole batch
    and chunks of one input, lower and upper bound separated or not yet, with residual additions and BatchNorm; they
    ran (every kernel, and the conv read its channel sums) on channels-last coefficients and did not on NCHW ones."""
    pytest.importorskip("numba")
    model = _channels_last_net().to(dtype)
    x = torch.rand(4, 2, 12, 12, dtype=dtype, generator=torch.Generator().manual_seed(5))
    real = crown_mod._relu_kernels(1 << 30) if crown_mod.USE_COMPILED is not False else None
    if real is None:
        pytest.skip("compiled kernels switched off (CERTKIT_NO_NUMBA)")
    seen = {"relu_back": 0, "relu_back_both": 0, "relu_relax": 0, "sums": 0}

    class Spy:
        def relu_back(self, *args: object) -> None:
            seen["relu_back"] += 1
            real.relu_back(*args)

        def relu_back_narrow(self, *args: object) -> None:
            seen["relu_back"] += 1
            real.relu_back_narrow(*args)

        def relu_back_both(self, *args: object) -> None:
            seen["relu_back_both"] += 1
            real.relu_back_both(*args)

        def relu_back_pair(self, *args: object) -> None:  # both sides in one pass (PAIR_KERNEL)
            seen["relu_back"] += 1
            real.relu_back_pair(*args)

        def relu_back_pair_narrow(self, *args: object) -> None:
            seen["relu_back"] += 1
            real.relu_back_pair_narrow(*args)

        def relu_relax(self, *args: object) -> bool:
            seen["relu_relax"] += 1
            return bool(real.relu_relax(*args))

        def relu_ibp_relax(self, *args: object) -> bool:  # the IBP pass's ReLU with its relaxation (FUSED_IBP_RELU)
            seen["relu_relax"] += 1
            return bool(real.relu_ibp_relax(*args))

        def relu_window(self, *args: object) -> None:  # window-form intermediate bounds (test_crown_patches.py)
            real.relu_window(*args)

    real_affine = crown_mod._back_affine

    def affine(n: object, a: torch.Tensor, *args: object, **kw: object) -> object:
        seen["sums"] += "channel sums" in a.__dict__
        return real_affine(n, a, *args, **kw)  # type: ignore[arg-type]

    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for method in ("crown", "crown-ibp"):
        monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
        monkeypatch.setattr(crown_mod, "_use_channels_last", lambda g, t: channels_last)
        if chunk is not None:
            monkeypatch.setattr(crown_mod, "CHUNK_BYTES", chunk)
        monkeypatch.setattr(crown_mod, "USE_COMPILED", False)
        ref = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
        monkeypatch.setattr(crown_mod, "USE_COMPILED", True)
        monkeypatch.setattr(crown_mod, "NARROW_CHANNELS", narrow)  # 32: per-channel sums in float32 here; 0: float64
        monkeypatch.setattr(crown_mod, "_relu_kernels", lambda entries: Spy())
        monkeypatch.setattr(crown_mod, "_back_affine", affine)
        fast = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
        monkeypatch.undo()
        scale = float(ref.upper.abs().max())
        torch.testing.assert_close(fast.lower, ref.lower, rtol=tol, atol=tol * scale)
        torch.testing.assert_close(fast.upper, ref.upper, rtol=tol, atol=tol * scale)
        assert bool((ref.upper - ref.lower > 0.01).any())
    # channels-last maps only: NCHW/flat coefficients keep the torch form (and the conv its own sums)
    assert bool(seen["relu_back"]) == bool(seen["relu_back_both"]) == bool(seen["relu_relax"]) == channels_last
    assert bool(seen["sums"]) == channels_last


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nc,shared", [(16, False), (16, True), (40, False), (3, True)])
def test_paired_relu_kernel_is_bit_identical_to_one_side_at_a_time(dtype: torch.dtype, nc: int, shared: bool) -> None:
    """The ReLU step's kernel for both sides in one pass (``relu_back_pair``, ``relu_back_pair_narrow``) writes the
    same coefficients, bias terms and per-channel sums, bit for bit, as one call per side (``relu_back`` lower then
    upper, or the narrow pair), with a batch-shared coefficient row or not."""
    pytest.importorskip("numba")
    kern = crown_mod._relu_kernels(1 << 30) if crown_mod.USE_COMPILED is not False else None
    if kern is None:
        pytest.skip("compiled kernels switched off (CERTKIT_NO_NUMBA)")
    g = torch.Generator().manual_seed(3)
    nb, ns, npos = 3, 4, 37
    ab = 1 if shared else nb
    al, au = (torch.randn(ab, ns, npos, nc, generator=g, dtype=dtype).numpy() for _ in range(2))
    lo = -torch.rand(nb, npos, nc, generator=g, dtype=dtype) * torch.randint(0, 2, (nb, npos, nc), generator=g)
    hi = lo + torch.rand(nb, npos, nc, generator=g, dtype=dtype) * 2
    d_l, d_u, b_u = relu_relaxation(lo, hi)
    dl, gap, bu = d_l.numpy(), (d_u - d_l).numpy(), b_u.numpy()
    assert 0 < float((d_u - d_l != 0).double().mean()) < 1  # unstable and stable entries

    def fresh() -> list[object]:
        return [np.zeros((nb, ns, npos, nc), dtype=al.dtype), np.full((nb, ns), 0.25, dtype=al.dtype),
                np.zeros((nb, ns, nc), dtype=al.dtype)]

    for pair, single in ((kern.relu_back_pair, kern.relu_back), (kern.relu_back_pair_narrow, kern.relu_back_narrow)):
        lo_ref, up_ref = fresh(), fresh()
        single(al, dl, gap, bu, False, *lo_ref)
        single(au, dl, gap, bu, True, *up_ref)
        lo_got, up_got = fresh(), fresh()
        pair(al, au, dl, gap, bu, lo_got[0], up_got[0], lo_got[1], up_got[1], lo_got[2], up_got[2])
        for x, y in zip(lo_ref + up_ref, lo_got + up_got, strict=True):
            assert np.array_equal(x, y)  # type: ignore[arg-type]
        assert float(np.abs(lo_got[1] - 0.25).max()) > 0  # the bias terms were accumulated onto the given ones


def test_paired_relu_step_gives_the_one_side_bounds_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """CROWN and CROWN-IBP bounds with the ReLU step's two sides in one kernel pass (``PAIR_KERNEL``) equal those
    with one pass per side, bit for bit (residual block, BatchNorm, narrow maps), and the paired kernel ran."""
    pytest.importorskip("numba")
    if crown_mod._relu_kernels(1 << 30) is None:
        pytest.skip("compiled kernels switched off (CERTKIT_NO_NUMBA)")
    model = _channels_last_net()
    x = torch.rand(4, 2, 12, 12, generator=torch.Generator().manual_seed(6))
    monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
    monkeypatch.setattr(crown_mod, "_use_channels_last", lambda g, t: True)
    monkeypatch.setattr(crown_mod, "USE_COMPILED", True)
    real = crown_mod._relu_kernels
    calls = []

    class Spy:
        def __getattr__(self, name: str) -> object:
            if name.startswith("relu_back_pair"):
                calls.append(name)
            return getattr(real(1 << 30), name)

    monkeypatch.setattr(crown_mod, "_relu_kernels", lambda entries: Spy())
    for method in ("crown", "crown-ibp"):
        monkeypatch.setattr(crown_mod, "PAIR_KERNEL", False)
        calls.clear()
        one = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
        assert not calls
        monkeypatch.setattr(crown_mod, "PAIR_KERNEL", True)
        both = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
        assert calls
        assert torch.equal(one.lower, both.lower) and torch.equal(one.upper, both.upper)
        assert bool((one.upper - one.lower > 0.01).any())


def test_compiled_relu_step_leaves_infinite_intercepts_to_the_torch_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """A relaxation with an infinite intercept (an overflowed interval) is not given to the kernels (the torch form
    takes 0 * inf as 0 in its dot product); finite ones are."""
    pytest.importorskip("numba")
    monkeypatch.setattr(crown_mod, "USE_COMPILED", True)
    if crown_mod._relu_kernels(1) is None:
        pytest.skip("compiled kernels switched off")
    cl = torch.channels_last
    lo = (-torch.rand(2, 3, 4, 4) - 0.1).contiguous(memory_format=cl)
    hi = (torch.rand(2, 3, 4, 4) + 0.1).contiguous(memory_format=cl)
    a = torch.randn(10, 3, 4, 4).contiguous(memory_format=cl).reshape(2, 5, 3, 4, 4)
    r = crown_mod._Relax("relu", lo, hi)
    assert crown_mod._relu_kernel_step(a, a, r) is not None
    r = crown_mod._Relax("relu", lo, hi)
    r.b_u = r.b_u.clone()
    r.b_u[0, 0, 0, 0] = math.inf  # relu_relaxation keeps intercepts finite; other relaxations need not
    assert crown_mod._relu_kernel_step(a, a, r) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_compiled_relu_relaxation_is_bit_identical(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                    channels_last: bool) -> None:
    """The compiled ReLU relaxation returns the torch form's slopes and intercepts bit for bit (stable, unstable,
    zero-width and near-zero bounds), in the bounds' layout; bounds that are not finite, and NCHW bounds, go to the
    torch form."""
    pytest.importorskip("numba")
    monkeypatch.setattr(crown_mod, "USE_COMPILED", True)
    if crown_mod._relu_kernels(1) is None:
        pytest.skip("compiled kernels switched off")
    gen = torch.Generator().manual_seed(2)
    lo = torch.randn(3, 4, 5, 6, dtype=dtype, generator=gen)
    hi = lo + 2 * torch.rand(3, 4, 5, 6, dtype=dtype, generator=gen)
    lo[0, 0, 0, :3], hi[0, 0, 1, :3] = 0.0, 0.0
    lo[0, 1, 0, 0], hi[0, 1, 0, 0] = -1e-9, 1e-9
    hi[1, 0, 0, :2] = lo[1, 0, 0, :2]
    if channels_last:
        lo, hi = lo.contiguous(memory_format=torch.channels_last), hi.contiguous(memory_format=torch.channels_last)
    fast = crown_mod._relu_relaxation_compiled(lo, hi)
    if not channels_last:  # channels-last maps only
        assert fast is None
        return
    assert fast is not None
    monkeypatch.setattr(crown_mod, "USE_COMPILED", False)
    ref = crown_mod.relu_relaxation(lo, hi)
    for a, b in zip(fast, ref, strict=True):
        assert torch.equal(a, b) and a.stride() == lo.stride()
    lo[0, 0, 0, 0] = -math.inf
    monkeypatch.setattr(crown_mod, "USE_COMPILED", True)
    assert crown_mod._relu_relaxation_compiled(lo, hi) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("onednn", [(0, 1), (1 << 62, 1 << 30)])
def test_linear_on_flattened_map_gives_channels_last_coefficients(monkeypatch: pytest.MonkeyPatch,
                                                                    dtype: torch.dtype, onednn: tuple[int, int]) -> None:
    """A linear layer on a flattened conv map, backward with its weight's columns in (H, W, C) order (coefficients
    channels-last with no copy at the flatten), gives the bounds of the product in (C, H, W) order, through oneDNN or
    torch.matmul; and the path ran."""
    model = _channels_last_net().to(dtype)
    x = torch.rand(4, 2, 12, 12, dtype=dtype, generator=torch.Generator().manual_seed(9))
    monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
    monkeypatch.setattr(crown_mod, "_use_channels_last", lambda g, t: True)
    monkeypatch.setattr(crown_mod, "ONEDNN_MATMUL_MIN", onednn)
    ran = []
    real = crown_mod._flattened_map

    def spy(g: object, i: int) -> object:
        out = real(g, i)  # type: ignore[arg-type]
        ran.append(out)
        return out

    monkeypatch.setattr(crown_mod, "_flattened_map", spy)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for method in ("crown", "crown-ibp"):
        monkeypatch.setattr(crown_mod, "FLATTEN_CHANNELS_LAST", False)
        ref = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
        monkeypatch.setattr(crown_mod, "FLATTEN_CHANNELS_LAST", True)
        got = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
        scale = float(ref.upper.abs().max())
        torch.testing.assert_close(got.lower, ref.lower, rtol=tol, atol=tol * scale)
        torch.testing.assert_close(got.upper, ref.upper, rtol=tol, atol=tol * scale)
    assert (6, 6, 6) in ran


@pytest.mark.parametrize("method", ["crown", "crown-ibp"])
def test_channels_last_ibp_pass_equals_the_generic_path(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """CROWN's IBP pass run channels-last from the input box (float32 on CPU, where the backward pass is
    channels-last) gives the NCHW pass's bounds up to float32 summation order, and its relaxations came out
    channels-last (no conversion for the backward pass)."""
    model = _channels_last_net().float()
    x = torch.rand(4, 2, 12, 12, generator=torch.Generator().manual_seed(7))
    monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
    monkeypatch.setattr(crown_mod, "_use_channels_last", lambda g, t: True)
    monkeypatch.setattr(crown_mod, "IBP_CHANNELS_LAST", False)
    ref = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
    monkeypatch.setattr(crown_mod, "IBP_CHANNELS_LAST", True)
    layouts = []
    real = crown_mod._make_relax

    def make(n: object, ivs: object) -> object:
        r = real(n, ivs)  # type: ignore[arg-type]
        if r.d_l.dim() == 4:
            layouts.append(r.d_l.is_contiguous(memory_format=torch.channels_last) and not r.d_l.is_contiguous())
        return r

    monkeypatch.setattr(crown_mod, "_make_relax", make)
    fast = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
    scale = float(ref.upper.abs().max())
    torch.testing.assert_close(fast.lower, ref.lower, rtol=1e-5, atol=1e-6 * scale)
    torch.testing.assert_close(fast.upper, ref.upper, rtol=1e-5, atol=1e-6 * scale)
    # CROWN-IBP: every relaxation; CROWN: the first (the later ones come from CROWN's own intermediate bounds)
    assert layouts and (all(layouts) if method == "crown-ibp" else layouts[0])


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
def test_pointwise_transposed_convolution_equals_conv_transpose(stride: int, size: int) -> None:
    """A 1x1 conv's transposed convolution as one matrix product and a strided scatter equals conv_transpose2d,
    including an input row/column that no output reaches (even size, stride 2)."""
    from certify._ir import Node

    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 1, stride=stride).double()
    out_hw = (size - 1) // stride + 1
    node = Node("conv", (0,), (4, out_hw, out_hw), "c", weight=conv.weight.detach(), bias=None,
                attrs={"stride": (stride, stride), "padding": (0, 0), "dilation": (1, 1), "groups": 1})
    assert crown_mod._pointwise(node)
    a = torch.randn(5, 4, out_hw, out_hw, dtype=torch.float64)
    got = crown_mod._pointwise_conv_transpose(node, a.contiguous(memory_format=torch.channels_last), (3, size, size))
    full = (out_hw - 1) * stride + 1
    want = torch.nn.functional.conv_transpose2d(a, conv.weight.detach(), stride=stride, output_padding=size - full)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_onednn_matmul_equals_matmul(monkeypatch: pytest.MonkeyPatch) -> None:
    """The oneDNN product of a large linear layer's backward step equals torch.matmul (float32 rounding), and is not
    used where it does not apply (float64, autograd recording)."""
    from certify._ir import Node

    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this torch build")
    monkeypatch.setattr(crown_mod, "ONEDNN_MATMUL_MIN", (0, 1))
    torch.manual_seed(4)
    w = torch.randn(40, 300)
    node = Node("linear", (0,), (40,), "fc", weight=w, bias=None, attrs={})
    a = torch.randn(3, 7, 40)
    for pointwise in (True, False):  # the dense-operand op where torch has it, else oneDNN tensors
        monkeypatch.setattr(crown_mod, "ONEDNN_POINTWISE", pointwise)
        got = crown_mod._onednn_matmul(node, a)
        assert got is not None
        torch.testing.assert_close(got, a @ w, rtol=1e-5, atol=1e-5)
    node64 = Node("linear", (0,), (40,), "fc", weight=w.double(), bias=None, attrs={})
    assert crown_mod._onednn_matmul(node64, a.double()) is None
    assert crown_mod._onednn_matmul(node, a.clone().requires_grad_(True)) is None


@pytest.mark.parametrize("b", [1, 3])
def test_flat_dot_per_input_products_equal_vecdot(monkeypatch: pytest.MonkeyPatch, b: int) -> None:
    """One matrix-vector product per input (few long rows) equals the batched vecdot, channels-last included."""
    torch.manual_seed(5)
    a = torch.randn(b, 4, 6, 5, 5, dtype=torch.float64)
    v = torch.randn(b, 6, 5, 5, dtype=torch.float64)
    want = (a * v.unsqueeze(1)).flatten(2).sum(2)
    monkeypatch.setattr(crown_mod, "MV_LOOP_MAX", (8, 1))
    got = crown_mod._flat_dot(a, v)
    cl = a.reshape(b * 4, 6, 5, 5).contiguous(memory_format=torch.channels_last).reshape(a.shape)
    got_cl = crown_mod._flat_dot(cl, v)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_cl, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", [math.inf, 2])
def test_batchnorm_folded_into_the_conv_backward_equals_two_steps(monkeypatch: pytest.MonkeyPatch,
                                                                  norm: float) -> None:
    """A conv and the BatchNorm after it go backward as one conv with the folded weight and bias: the bounds equal
    the two separate steps' (float64), and the fold was taken."""
    model = _channels_last_net()
    x = torch.rand(3, 2, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    eps = 0.03 if norm == math.inf else 0.3
    real = crown_mod._conv_affine_fold
    taken = []

    def spy(g: object, i: int) -> object:
        out = real(g, i)  # type: ignore[arg-type]
        taken.append(out is not None)
        return out

    monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
    for method in ("crown", "crown-ibp"):
        monkeypatch.setattr(crown_mod, "_conv_affine_fold", lambda g, i: None)
        ref = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
        monkeypatch.setattr(crown_mod, "_conv_affine_fold", spy)
        got = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
        torch.testing.assert_close(got.lower, ref.lower, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got.upper, ref.upper, rtol=1e-10, atol=1e-10)
    assert any(taken)


class _MergeNet(nn.Module):
    """Coefficients meet at a node from two convolutions in every combination the in-place merge handles: an
    identity shortcut (the add's own coefficients pending), two conv branches, a conv whose lower and upper
    coefficients are one tensor arriving where they are already separate (and the reverse), and a strided 1x1
    shortcut."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.c0 = nn.Conv2d(2, 4, 3, padding=1)
        self.a1, self.a2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.d = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 4, 3, padding=1)
        self.s1, self.s2 = nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 1, stride=2)
        self.e, self.f = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c0(x)
        h = h + self.a2(torch.relu(self.a1(torch.relu(h))))  # identity shortcut
        h = self.c(torch.relu(h)) + self.d(h)  # separate coefficients pending where c's arrive (after the ReLU)
        h = torch.relu(h)
        h = self.s2(h) + self.s1(h)  # two conv branches (a strided 1x1 shortcut)
        h = self.e(h) + self.f(h)  # near the output: lower and upper coefficients still one tensor on both sides
        # e's coefficients (lower and upper one tensor) reach h after the ReLU's separate ones are pending
        return self.fc((self.e(h) + self.c(torch.relu(h))).flatten(1))


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("norm", [math.inf, 2])
@pytest.mark.parametrize("method", ["crown", "crown-ibp"])
def test_in_place_merge_equals_the_generic_sum(monkeypatch: pytest.MonkeyPatch, method: str, norm: float,
                                               chunked: bool) -> None:
    """A convolution's fresh coefficients take the sum with the coefficients pending at its input in place
    (``crown.IN_PLACE_MERGE``): bit-identical bounds to the generic ``t + p`` (float64, the same additions), with
    chunks of inputs and without, and the in-place path was taken."""
    model = _MergeNet().double().eval().requires_grad_(False)  # autograd recording: no in-place updates
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    eps = 0.05 if norm == math.inf else 0.3
    monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
    if chunked:
        monkeypatch.setattr(crown_mod, "CHUNK_BYTES", 1)
    monkeypatch.setattr(crown_mod, "IN_PLACE_MERGE", False)
    ref = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
    monkeypatch.setattr(crown_mod, "IN_PLACE_MERGE", True)
    real, taken = crown_mod._merge, []

    def spy(t: object, p: object, in_place: bool) -> object:
        taken.append(in_place)
        return real(t, p, in_place)  # type: ignore[arg-type]

    monkeypatch.setattr(crown_mod, "_merge", spy)
    got = certify.bounds(model, x, eps, norm=norm, method=method, domain=(0, 1))
    assert torch.equal(got.lower, ref.lower) and torch.equal(got.upper, ref.upper)
    assert any(taken) and not all(taken)


class _ShortcutLastNet(nn.Module):
    """A strided 1x1 shortcut whose coefficients arrive at its input before the main branch's (the reverse of
    :class:`_MergeNet`'s order), with a bias, and a stride-1 1x1 conv after the main branch's."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(12)
        self.c0 = nn.Conv2d(2, 4, 3, padding=1)
        self.s1, self.s2 = nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 1, stride=2)
        self.e, self.f = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c0(x))
        h = torch.relu(self.s1(h) + self.s2(h))
        return self.fc((self.f(h) + self.e(h)).flatten(1))  # f traced first: e's coefficients arrive first


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("method", ["crown", "crown-ibp"])
@pytest.mark.parametrize("net", [_MergeNet, _ShortcutLastNet])
def test_scatter_into_pending_equals_the_scatter_and_sum(monkeypatch: pytest.MonkeyPatch, net: type[nn.Module],
                                                         method: str, chunked: bool, grad: bool) -> None:
    """A 1x1 conv's transposed convolution (the matrix product and scatter of channels-last coefficients) adds
    into the coefficients pending at its input in place when those are fresh tensors of the pass
    (``crown.SCATTER_INTO_PENDING``): bit-identical bounds to the zero-filled scatter and the sum, with chunks of
    inputs and without, taken where the main branch's coefficients arrived first, not where the shortcut's did,
    nor when autograd records (parameters requiring gradients); the model and the input are left unchanged."""
    model = net().double().eval().requires_grad_(grad)
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x0 = x.clone()
    monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
    monkeypatch.setattr(crown_mod, "_use_channels_last", lambda g, t: True)
    if chunked:
        monkeypatch.setattr(crown_mod, "CHUNK_BYTES", 1)
    monkeypatch.setattr(crown_mod, "SCATTER_INTO_PENDING", False)
    ref = certify.bounds(model, x, 0.05, method=method, domain=(0, 1))
    monkeypatch.setattr(crown_mod, "SCATTER_INTO_PENDING", True)
    real, taken = crown_mod._scatter_pair, []

    def spy(n: object, *args: object) -> object:
        taken.append(tuple(n.attrs["stride"]))  # type: ignore[attr-defined]
        return real(n, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(crown_mod, "_scatter_pair", spy)
    got = certify.bounds(model, x, 0.05, method=method, domain=(0, 1))
    assert torch.equal(got.lower, ref.lower) and torch.equal(got.upper, ref.upper)
    assert torch.equal(x, x0) and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    if grad:
        assert not taken
    else:
        # _MergeNet: the strided shortcut s2 runs after s1 (its coefficients go into s1's); _ShortcutLastNet: the
        # stride-1 1x1 conv f after e, while its strided shortcut's coefficients arrive first (the generic path)
        assert set(taken) == ({(2, 2)} if net is _MergeNet else {(1, 1)})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["crown-ibp", "crown"])
def test_fused_ibp_relu_gives_the_torch_forms_bounds_and_runs(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                              method: str) -> None:
    """The IBP pass's ReLU in one compiled pass (the input's ends, their relaxation, the ReLU's interval and its
    sum/difference form; ``crown.FUSED_IBP_RELU``) gives bit-identical bounds to the torch form, after a conv + BatchNorm
    and after a residual sum, CROWN-IBP and CROWN (whose refined pre-activation bounds are not in centre/width form:
    those ReLUs keep the torch form); it ran on the channels-last maps and left the pre-activations' ends set."""
    pytest.importorskip("numba")
    if crown_mod._relu_kernels(1 << 30) is None:
        pytest.skip("compiled kernels switched off (CERTKIT_NO_NUMBA)")
    model = _channels_last_net().to(dtype)
    x = torch.rand(4, 2, 12, 12, dtype=dtype, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(crown_mod, "RELU_KERNEL_MIN", 1)
    monkeypatch.setattr(crown_mod, "_use_channels_last", lambda g, t: True)
    monkeypatch.setattr(crown_mod, "FUSED_IBP_RELU", False)
    ref = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
    monkeypatch.setattr(crown_mod, "FUSED_IBP_RELU", True)
    ran: list[bool] = []
    real = crown_mod._fused_ibp_relu

    def spy(src: object) -> object:
        out = real(src)  # type: ignore[arg-type]
        ran.append(out is not None)
        if out is not None:
            assert src._l is not None and src._u is not None  # type: ignore[attr-defined]
        return out

    monkeypatch.setattr(crown_mod, "_fused_ibp_relu", spy)
    fast = certify.bounds(model, x, 0.03, method=method, domain=(0, 1))
    assert torch.equal(fast.lower, ref.lower) and torch.equal(fast.upper, ref.upper)
    assert bool((ref.upper - ref.lower > 0.01).any())
    # CROWN-IBP: both map ReLUs (conv + BatchNorm, residual sum); CROWN: the first (the input conv's bounds are exact
    # IBP), not the second (its input's bounds are CROWN's, in end-point form)
    assert ran[:2] == ([True, True] if method == "crown-ibp" else [True, False])


def test_fused_ibp_relu_leaves_non_finite_intervals_to_the_torch_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """An interval with an infinite or NaN end is not fused (the torch form handles them) and is left unchanged."""
    pytest.importorskip("numba")
    monkeypatch.setattr(crown_mod, "RELU_KERNEL_MIN", 1)
    if crown_mod._relu_kernels(1) is None:
        pytest.skip("compiled kernels switched off")
    cl = torch.channels_last
    for bad in (math.inf, math.nan):
        c = torch.randn(2, 3, 4, 4).contiguous(memory_format=cl)
        w = torch.rand(2, 3, 4, 4).contiguous(memory_format=cl)
        c[1, 2, 3, 3] = bad
        src = crown_mod.Interval(c=c, d=w)
        assert crown_mod._fused_ibp_relu(src) is None
        assert src._l is None and src._u is None
    src = crown_mod.Interval(c=torch.randn(2, 3, 4, 4).contiguous(memory_format=cl),
                             d=torch.rand(2, 3, 4, 4).contiguous(memory_format=cl))
    fused = crown_mod._fused_ibp_relu(src)
    assert fused is not None
    r, iv = fused
    ref_r = crown_mod._Relax("relu", src._c - src._d / 2, src._c + src._d / 2)
    for a, b in ((r.d_l, ref_r.d_l), (r.d_u, ref_r.d_u), (r.b_u, ref_r.b_u), (iv.l, torch.relu(src.l)),
                 (iv.u, torch.relu(src.u)), (iv._s, iv.u + iv.l), (iv._d, iv.u - iv.l)):
        assert torch.equal(a, b)


class _BufferNorm(nn.Module):
    """The usual CIFAR input normalisation: ``(x - mean) / std`` with (1, C, 1, 1) buffers."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.linspace(0.4, 0.5, c).reshape(1, c, 1, 1))
        self.register_buffer("std", torch.linspace(0.2, 0.3, c).reshape(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # type: ignore[operator]


@pytest.mark.parametrize("norm_kind,first", [("buffers", "blocked"), ("certify.Normalize", "blocked"),
                                             ("batchnorm", "blocked"), ("buffers", "strided"),
                                             ("buffers+batchnorm", "blocked"), ("buffers", "padding 0")])
def test_input_normalisation_takes_the_first_convs_blocked_or_phase_form(monkeypatch: pytest.MonkeyPatch,
                                                                        norm_kind: str, first: str) -> None:
    """A per-channel input normalisation before the first conv (``INPUT_AFFINE_FOLD``) is applied to the coefficients
    in the conv's blocked or phase layout: the first conv's step takes that form (counted), and CROWN, CROWN-IBP and
    alpha-CROWN bounds equal those of the ordinary path (switch off, float64, chunked or not), contain sampled points
    and PGD's extremes of every output; with padding 0 they also equal the unnormalised model whose first conv has
    the normalisation folded into its weights and bias."""
    torch.manual_seed(6)
    c = 3
    conv = {"blocked": nn.Conv2d(c, 4, 3, padding=1), "strided": nn.Conv2d(c, 4, 4, stride=2, padding=1),
            "padding 0": nn.Conv2d(c, 4, 3, padding=0)}[first]
    norms: list[nn.Module] = []
    for kind in norm_kind.split("+"):
        if kind == "buffers":
            norms.append(_BufferNorm(c))
        elif kind == "certify.Normalize":
            norms.append(certify.Normalize([0.49, 0.48, 0.45], [0.25, 0.24, 0.26]))
        else:
            bn = nn.BatchNorm2d(c)
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.2, 2.0)
            bn.weight.data.uniform_(-1.5, 1.5)  # negative and near-zero scales too
            bn.bias.data.uniform_(-1, 1)
            norms.append(bn)
    model = nn.Sequential(*norms, conv, nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.LazyLinear(6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.rand(4, c, 8, 8, dtype=torch.float64)
    model(x)
    model.eval().requires_grad_(False)
    calls: list[int] = []
    real = crown_mod._input_affine_back

    def spy(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(crown_mod, "DENSE_CONV_MAX_ELEMENTS", 0)
    monkeypatch.setattr(crown_mod, "_input_affine_back", spy)
    eps = 0.03
    for method in ("crown", "crown-ibp", "alpha-crown"):
        kw = {"iterations": 3} if method == "alpha-crown" else {}
        monkeypatch.setattr(crown_mod, "INPUT_AFFINE_FOLD", False)
        calls.clear()
        plain = certify.bounds(model, x, eps, method=method, domain=(0, 1), **kw)
        assert not calls
        monkeypatch.setattr(crown_mod, "INPUT_AFFINE_FOLD", True)
        for chunk in (crown_mod.CHUNK_BYTES, 1):
            monkeypatch.setattr(crown_mod, "CHUNK_BYTES", chunk)
            calls.clear()
            got = certify.bounds(model, x, eps, method=method, domain=(0, 1), **kw)
            assert calls, "the first conv's step did not take the blocked/phase form"
            torch.testing.assert_close(got.lower, plain.lower, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(got.upper, plain.upper, rtol=1e-10, atol=1e-10)
        monkeypatch.setattr(crown_mod, "CHUNK_BYTES", 1 << 21)
        assert bool((plain.upper - plain.lower > 1e-3).any())
        pts = (x.unsqueeze(1) + eps * (2 * torch.rand(4, 256, *x.shape[1:], dtype=torch.float64) - 1)).clamp(0, 1)
        ys = model(pts.reshape(-1, *x.shape[1:])).reshape(4, 256, -1)
        assert bool((ys >= got.lower.unsqueeze(1) - 1e-9).all() and (ys <= got.upper.unsqueeze(1) + 1e-9).all())
        for k in range(3):
            for sign in (1.0, -1.0):
                def objective(z: torch.Tensor, k: int = k, sign: float = sign) -> torch.Tensor:
                    return sign * model(z)[:, k]
                _, best = crown_mod_pgd(objective, x, eps)
                bound = got.lower[:, k] if sign > 0 else -got.upper[:, k]
                assert bool((best >= bound - 1e-9).all())
    if first == "padding 0":  # no zero padding: the normalisation folds into the conv's weights exactly
        folded = nn.Conv2d(c, 4, 3, padding=0).double()
        scale, shift = torch.ones(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
        for m in norms:  # x -> x * scale + shift, composed in order
            if isinstance(m, _BufferNorm):
                s, t = 1 / m.std.reshape(-1), -m.mean.reshape(-1) / m.std.reshape(-1)  # type: ignore[operator]
            else:
                raise AssertionError(m)
            scale, shift = scale * s, shift * s + t
        folded.weight.data = conv.weight.detach() * scale.reshape(1, c, 1, 1)
        folded.bias.data = conv.bias.detach() + (conv.weight.detach() * shift.reshape(1, c, 1, 1)).sum(dim=(1, 2, 3))
        plain_model = nn.Sequential(folded, *list(model)[len(norms) + 1:]).eval().requires_grad_(False)
        torch.testing.assert_close(plain_model(x), model(x), rtol=1e-10, atol=1e-10)
        for method in ("crown", "crown-ibp"):
            got = certify.bounds(model, x, eps, method=method, domain=(0, 1))
            ref = certify.bounds(plain_model, x, eps, method=method, domain=(0, 1))
            torch.testing.assert_close(got.lower, ref.lower, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(got.upper, ref.upper, rtol=1e-9, atol=1e-9)


def crown_mod_pgd(objective: object, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD's smallest value of ``objective`` over the L-inf ball of ``eps`` around ``x`` in [0, 1] (3 restarts)."""
    from certify.attacks import pgd_minimize

    return pgd_minimize(objective, x, eps, domain=(0.0, 1.0), steps=30, restarts=3,  # type: ignore[arg-type]
                        generator=torch.Generator().manual_seed(0))
