"""IBP: closed forms on single layers, soundness on random networks, differentiability."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import certify
from certify._graph import build_graph


def _rand_box(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, float]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), 0.1


def _closed_form(layer: nn.Module, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre/radius closed form of an affine layer: f(c) -/+ |f - f(0)|(r)."""
    w_abs = {
        nn.Linear: lambda r: nn.functional.linear(r, layer.weight.abs()),
        nn.Conv2d: lambda r: nn.functional.conv2d(r, layer.weight.abs(), None, layer.stride, layer.padding,
                                                  layer.dilation, layer.groups),
    }[type(layer)]
    c = layer(x)
    r = w_abs(torch.full_like(x, eps))
    return c - r, c + r


@pytest.mark.parametrize(
    "layer,shape",
    [
        (nn.Linear(7, 5), (4, 7)),
        (nn.Conv2d(3, 4, 3), (2, 3, 9, 9)),
        (nn.Conv2d(3, 6, 3, stride=2, padding=1), (2, 3, 9, 9)),
        (nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), dilation=2, groups=2), (2, 4, 10, 9)),
    ],
)
def test_ibp_closed_form_affine(layer: nn.Module, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    layer = layer.double().eval()
    x = torch.randn(shape, dtype=torch.float64)
    lo, hi = certify.bounds(layer, x, 0.1, method="ibp")
    clo, chi = _closed_form(layer, x, 0.1)
    torch.testing.assert_close(lo, clo.reshape(len(x), -1))
    torch.testing.assert_close(hi, chi.reshape(len(x), -1))
    # a single affine layer on an L-inf box: IBP is exact, CROWN equals it
    b = certify.bounds(layer, x, 0.1, method="crown")
    torch.testing.assert_close(b.lower, lo)
    torch.testing.assert_close(b.upper, hi)


def test_ibp_closed_form_batchnorm_normalize_avgpool() -> None:
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(3)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(-2, 2)  # negative scales flip the interval
    bn.bias.data.uniform_(-1, 1)
    model = nn.Sequential(certify.Normalize([0.1, 0.2, 0.3], [0.5, 0.25, 2.0]), bn, nn.AvgPool2d(2)).eval().double()
    x = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    lo, hi = certify.bounds(model, x, 0.05, method="ibp")
    # every layer is elementwise-affine or an average: the box image is exact and computed by
    # pushing the two corners of the box per coordinate
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) / torch.tensor([0.5, 0.25, 2.0])
    c = model(x)
    r = nn.functional.avg_pool2d(torch.full_like(x, 0.05) * scale.abs().reshape(1, 3, 1, 1).double(), 2)
    torch.testing.assert_close(lo, (c - r).flatten(1))
    torch.testing.assert_close(hi, (c + r).flatten(1))


@pytest.mark.parametrize("act", [nn.ReLU(), nn.Sigmoid(), nn.Tanh()])
def test_ibp_monotone_activation(act: nn.Module) -> None:
    x = torch.linspace(-3, 3, 13).reshape(13, 1).double()
    lo, hi = certify.bounds(nn.Sequential(act).eval(), x, 0.5, method="ibp")
    torch.testing.assert_close(lo, act(x - 0.5))
    torch.testing.assert_close(hi, act(x + 0.5))


def test_ibp_domain_clipping() -> None:
    lin = nn.Linear(4, 3).double().eval()
    x = torch.tensor([[0.0, 0.05, 0.5, 1.0]], dtype=torch.float64)
    lo, hi = certify.bounds(lin, x, 0.1, method="ibp", domain=(0, 1))
    box_lo, box_hi = (x - 0.1).clamp(0, 1), (x + 0.1).clamp(0, 1)
    c, r = (box_lo + box_hi) / 2, (box_hi - box_lo) / 2
    torch.testing.assert_close(lo, lin(c) - r @ lin.weight.abs().t())
    torch.testing.assert_close(hi, lin(c) + r @ lin.weight.abs().t())


def test_ibp_l2_first_layer_exact() -> None:
    torch.manual_seed(2)
    lin = nn.Linear(6, 4).double().eval()
    x = torch.randn(5, 6, dtype=torch.float64)
    lo, hi = certify.bounds(lin, x, 0.3, norm=2, method="ibp")
    dev = lin.weight.norm(dim=1) * 0.3
    torch.testing.assert_close(lo, lin(x) - dev)
    torch.testing.assert_close(hi, lin(x) + dev)
    # conv on the input: row norms include the zero padding
    conv = nn.Conv2d(2, 3, 3, padding=1).double().eval()
    xc = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    lo, hi = certify.bounds(conv, xc, 0.2, norm=2, method="ibp")
    dense = torch.func.jacrev(lambda z: conv(z.reshape(1, 2, 5, 5)).reshape(-1))(torch.zeros(50, dtype=torch.float64))
    dev = dense.norm(dim=1) * 0.2
    torch.testing.assert_close(lo, conv(xc).flatten(1) - dev)
    torch.testing.assert_close(hi, conv(xc).flatten(1) + dev)
    # a linear layer on the tokens of a (T, E) input (per-token projection, as in attention): each token's
    # projection of the ball is the E-dimensional ball of the same radius (was the ball's box: up to sqrt(E)x wider)
    xt = torch.randn(3, 4, 6, dtype=torch.float64)
    eps = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    lo, hi = certify.bounds(lin, xt, eps, norm=2, method="ibp")
    dev = lin.weight.norm(dim=1) * eps.reshape(3, 1, 1)
    torch.testing.assert_close(lo, (lin(xt) - dev).flatten(1))
    torch.testing.assert_close(hi, (lin(xt) + dev).flatten(1))
    sound = certify.bounds(lin, xt, eps, norm=2, method="ibp", sound=True)  # the same, rounded outward
    assert bool((sound.lower <= lo).all() and (sound.upper >= hi).all())
    assert float(torch.maximum(lo - sound.lower, sound.upper - hi).max()) <= 1e-12


def _random_mlp(seed: int, act: type[nn.Module] = nn.ReLU) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 20), act(), nn.Linear(20, 16), nn.BatchNorm1d(16), act(),
                         nn.Dropout(0.3), nn.Linear(16, 5)).eval()


def _randomize_bn(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)


def _samples_in_region(x: torch.Tensor, eps: float, norm: float, domain: tuple[float, float] | None, m: int,
                       seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xs = x.unsqueeze(1).expand(x.shape[0], m, *x.shape[1:])
    if norm == math.inf:
        # half the samples at corners of the box (where extremes of piecewise-linear nets lie)
        u = torch.rand(xs.shape, generator=g, dtype=x.dtype) * 2 - 1
        corners = torch.sign(u)
        u = torch.where(torch.arange(m).reshape(1, m, *([1] * (x.dim() - 1))) % 2 == 0, corners, u)
        pts = xs + eps * u
    else:
        d = torch.randn(xs.shape, generator=g, dtype=x.dtype)
        d = d / d.flatten(2).norm(dim=2).reshape(*d.shape[:2], *([1] * (x.dim() - 1)))
        rad = torch.rand((*d.shape[:2], *([1] * (x.dim() - 1))), generator=g, dtype=x.dtype) ** 0.2
        pts = xs + eps * rad * d
    if domain is not None:
        pts = pts.clamp(*domain)
    return pts.reshape(-1, *x.shape[1:])


@pytest.mark.parametrize("act", [nn.ReLU, nn.Sigmoid, nn.Tanh])
@pytest.mark.parametrize("norm", [math.inf, 2])
def test_ibp_sound_random_mlp(act: type[nn.Module], norm: float) -> None:
    model = _random_mlp(3, act)
    _randomize_bn(model, 3)
    x = torch.rand(4, 12)
    eps = 0.15 if norm == math.inf else 0.4
    b = certify.bounds(model, x, eps, norm=norm, method="ibp", domain=(0, 1))
    pts = _samples_in_region(x, eps, norm, (0, 1), 2500, seed=4)  # 10^4 points in all
    with torch.no_grad():
        out = model(pts).reshape(4, 2500, -1)
    assert (out >= b.lower.unsqueeze(1) - 1e-5).all()
    assert (out <= b.upper.unsqueeze(1) + 1e-5).all()


def test_ibp_is_differentiable_wrt_parameters() -> None:
    model = _random_mlp(5)
    x, y = torch.rand(8, 12), torch.randint(0, 5, (8,))
    for method in ("ibp", "crown-ibp", "crown"):
        model.zero_grad()
        mb = certify.margin_bounds(model, x, y, 0.05, method=method)
        loss = nn.functional.cross_entropy(-mb.lower, y)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0  # type: ignore[union-attr]


def test_ibp_gradient_matches_finite_difference() -> None:
    model = _random_mlp(6).double()
    x = torch.rand(3, 12, dtype=torch.float64)
    w = model[1].weight

    def f() -> torch.Tensor:
        return certify.bounds(model, x, 0.05, method="ibp").upper.sum()

    f().backward()
    assert w.grad is not None
    g = w.grad[2, 3].item()
    h = 1e-6
    with torch.no_grad():
        w[2, 3] += h
        up = f().item()
        w[2, 3] -= 2 * h
        down = f().item()
        w[2, 3] += h
    assert g == pytest.approx((up - down) / (2 * h), rel=1e-4, abs=1e-6)


def test_graph_matches_model_forward() -> None:
    model = _random_mlp(7)
    _randomize_bn(model, 7)
    x = torch.rand(5, 12)
    g = build_graph(model, x)
    torch.testing.assert_close(g.forward(x), model(x))


def test_ibp_eps_zero_is_the_forward_pass() -> None:
    model = _random_mlp(8)
    x = torch.rand(5, 12)
    for method in ("ibp", "crown", "crown-ibp"):
        b = certify.bounds(model, x, 0.0, method=method)
        torch.testing.assert_close(b.lower, model(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.upper, model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tail", ["relu", "residual"])
def test_ibp_margin_bounds_when_the_output_is_not_a_linear_layer(tail: str) -> None:
    """The margin spec folds into a last linear layer; otherwise IBP needs the output's own interval."""
    torch.manual_seed(11)
    if tail == "relu":
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU()).eval()
    else:
        class Res(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.a, self.b = nn.Linear(6, 4), nn.Linear(4, 4)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                h = torch.relu(self.a(x))
                return h + self.b(h)

        model = Res().eval()
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 3, 0])
    m = certify.margin_bounds(model, x, y, 0.05, method="ibp", domain=(0, 1))
    pts = (x.unsqueeze(1) + (torch.rand(5, 500, 6) * 2 - 1) * 0.05).clamp(0, 1)
    with torch.no_grad():
        out = model(pts.reshape(-1, 6)).reshape(5, 500, 4)
    margins = out.gather(2, y.view(5, 1, 1).expand(5, 500, 1)) - out
    assert bool((margins >= m.lower.detach().unsqueeze(1) - 1e-5).all())
    assert bool((margins <= m.upper.detach().unsqueeze(1) + 1e-5).all())
    certify.verify(model, x, y, 0.05, method="ibp", domain=(0, 1))


@pytest.mark.parametrize("case", ["linf", "l2", "margins", "relu_output", "box"])
def test_ibp_in_chunks_of_inputs_equals_the_whole_batch(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """IBP runs the batch in chunks of inputs (cache, allocator reuse): each chunk reads its own rows of the
    region (ball, explicit box) and of the specification, so the bounds equal the whole batch's (float64)."""
    import certify.ibp as ibp_mod

    torch.manual_seed(6)
    layers: list[nn.Module] = [nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 5)]
    if case == "relu_output":
        layers.append(nn.ReLU())
    model = nn.Sequential(*layers).double().eval()
    g = torch.Generator().manual_seed(7)
    x = torch.rand(11, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.linspace(0.01, 0.2, 11, dtype=torch.float64)
    y = torch.arange(11) % 5

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        if case == "box":
            lower = x - 0.2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
            return certify.box_bounds(model, lower, x + 0.1, method="ibp")
        if case == "margins":
            b = certify.margin_bounds(model, x, y, eps, method="ibp", domain=(0, 1))
        else:
            b = certify.bounds(model, x, eps, norm=2 if case == "l2" else math.inf, method="ibp",
                               domain=None if case == "l2" else (0, 1))
        return b.lower, b.upper

    whole = run()
    calls = []
    real = ibp_mod.interval_forward

    def spy(*args: object, **kw: object) -> object:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ibp_mod, "IBP_CHUNK_BYTES", 1)
    monkeypatch.setattr(ibp_mod, "IBP_MIN_CHUNK", 3)  # chunks of 3, 3, 3, 2
    monkeypatch.setattr(ibp_mod, "interval_forward", spy)
    chunked = run()
    assert len(calls) == 4
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert bool((whole[1] - whole[0] > 0.05).any())
