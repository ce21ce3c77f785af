"""Propagation tightness (Mao et al., ICLR 2024): closed forms on deep linear networks, a dense-matrix
reference on a CNN, the IBP box it is defined against, and argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import certify
from certify.tightness import Tightness, propagation_tightness, tightness
from certkit_app.digits import make_digits_cnn


def _hadamard(n: int) -> torch.Tensor:
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


def _rotation(theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]])


def _dln(weights: list[torch.Tensor], *, relu: bool = True, seed: int = 0) -> nn.Sequential:
    """Linear layers with the given weights (random biases) and ReLUs in between."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, w in enumerate(weights):
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(torch.randn(w.shape[0], generator=g))
        layers.append(lin)
        if relu and i < len(weights) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_hadamard_dln_closed_form(depth: int) -> None:
    # H symmetric orthogonal with |H_ij| = 1/sqrt(n): H^2 = I and |H|^2 = J (all ones), so
    # |H^L| 1 / |H|^L 1 = n^{-floor(L/2)}.
    n = 8
    model = _dln([_hadamard(n)] * depth)
    x = torch.rand(5, n, generator=torch.Generator().manual_seed(1))
    t = propagation_tightness(model, x, 0.1, relu_adjust=None, domain=None)
    expected = n ** -(depth // 2)
    torch.testing.assert_close(t.ratio, torch.full((5, n), float(expected), dtype=torch.float64))
    assert t.value == pytest.approx(expected, rel=1e-12)
    # radii: numerator |prod W| r and denominator prod |W| r for r = 0.1
    torch.testing.assert_close(t.denominator, torch.full((5, n), 0.1 * n ** (depth / 2), dtype=torch.float64))


@pytest.mark.parametrize(("theta", "depth"), [(0.3, 2), (0.7, 3), (1.1, 4), (2.0, 6)])
def test_rotation_dln_closed_form(theta: float, depth: int) -> None:
    # R(theta)^L = R(L theta); |R(theta)| has eigenvector (1, 1) with eigenvalue |cos| + |sin|.
    model = _dln([_rotation(theta)] * depth)
    expected = (abs(math.cos(depth * theta)) + abs(math.sin(depth * theta))) / (
        abs(math.cos(theta)) + abs(math.sin(theta))
    ) ** depth
    t = tightness(model, torch.zeros(3, 2), 0.05, relu_adjust=None, domain=None)
    assert t == pytest.approx(expected, rel=1e-6)  # weights are float32
    assert expected < 1


def test_single_layer_and_positive_weights_are_tight() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 10, generator=g)
    labels = torch.randint(0, 4, (6,), generator=g)
    single = _dln([torch.randn(4, 10, generator=g)])
    for y in (None, labels):
        t = propagation_tightness(single, x, 0.2, labels=y)
        torch.testing.assert_close(t.ratio, torch.ones_like(t.ratio))
    positive = _dln([torch.rand(16, 10, generator=g), torch.rand(16, 16, generator=g), torch.rand(4, 16, generator=g)])
    for adjust in ("local", None):
        t = propagation_tightness(positive, x, 0.2, relu_adjust=adjust)
        torch.testing.assert_close(t.ratio, torch.ones_like(t.ratio))


def test_local_mask_zeroes_dead_neurons_in_numerator_and_denominator() -> None:
    # Hidden neuron 2 has pre-activation x1 - x2 - 10 < 0: the local linearisation is rank one,
    # so IBP on it is exact (ratio 1), while the DLN keeps the cancelling second path.
    model = _dln([torch.tensor([[1.0, 1.0], [1.0, -1.0]]), torch.tensor([[1.0, 1.0]])])
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([0.0, -10.0]))
    x = torch.tensor([[0.5, 0.5]])
    local = propagation_tightness(model, x, 0.1, relu_adjust="local")
    dln = propagation_tightness(model, x, 0.1, relu_adjust=None)
    torch.testing.assert_close(local.numerator, torch.tensor([[0.2]], dtype=torch.float64))
    torch.testing.assert_close(local.ratio, torch.ones(1, 1, dtype=torch.float64))
    # DLN: W2 W1 = [2, 0] -> 0.2; |W2||W1| = [2, 2] -> 0.4
    torch.testing.assert_close(dln.ratio, torch.full((1, 1), 0.5, dtype=torch.float64))


def _dense(layer: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """Dense matrix of a bias-free layer acting on flattened inputs of per-sample ``shape``."""
    d = math.prod(shape)
    basis = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
    with torch.no_grad():
        out = layer(basis) - layer(torch.zeros_like(basis[:1]))
    return out.reshape(d, -1).T


@pytest.mark.parametrize("relu_adjust", ["local", None])
def test_cnn_matches_dense_matrix_products(relu_adjust: str | None) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = make_digits_cnn().double().eval()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 7, 9])
    eps = 0.07
    got = propagation_tightness(model, x, eps, labels=y, relu_adjust=relu_adjust)

    r = (((x + eps).clamp(max=1) - (x - eps).clamp(min=0)) / 2).flatten(1)
    for n in range(len(x)):
        mats, h, shape = [], x[n : n + 1], x.shape[1:]
        for layer in model:
            if isinstance(layer, nn.Conv2d | nn.Linear):
                mats.append(_dense(layer, tuple(shape)))
            elif isinstance(layer, nn.ReLU):
                mask = (h >= 0).double().flatten() if relu_adjust == "local" else torch.ones(h.numel(), dtype=torch.float64)
                mats.append(torch.diag(mask))
            h = layer(h)
            shape = h.shape[1:]
        spec = torch.eye(10, dtype=torch.float64)[y[n]] - torch.eye(10, dtype=torch.float64)
        spec = spec[torch.arange(10) != y[n]]
        mats[-1] = spec @ mats[-1]
        prod, prod_abs = torch.eye(64, dtype=torch.float64), torch.eye(64, dtype=torch.float64)
        for m in mats:
            prod, prod_abs = m @ prod, m.abs() @ prod_abs
        torch.testing.assert_close(got.numerator[n], prod.abs() @ r[n])
        torch.testing.assert_close(got.denominator[n], prod_abs @ r[n])
    assert bool((got.ratio > 0).all()) and bool((got.ratio <= 1 + 1e-12).all())


def test_batchnorm_contributes_its_scale() -> None:
    g = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(6, 5, generator=g), torch.randn(3, 6, generator=g)
    bn = nn.BatchNorm1d(6)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(6, generator=g))
        bn.running_var.copy_(torch.rand(6, generator=g) + 0.5)
        bn.running_mean.copy_(torch.randn(6, generator=g))
    with_bn = nn.Sequential(nn.Linear(5, 6, bias=False), bn, nn.ReLU(), nn.Linear(6, 3)).eval()
    with torch.no_grad():
        with_bn[0].weight.copy_(w1)
        with_bn[3].weight.copy_(w2)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = _dln([scale[:, None] * w1, w2])
    x = torch.rand(4, 5, generator=g)
    a = propagation_tightness(with_bn, x, 0.1, relu_adjust=None)
    b = propagation_tightness(folded, x, 0.1, relu_adjust=None)
    torch.testing.assert_close(a.ratio, b.ratio)


def test_input_normalisation_contributes_one_over_std() -> None:
    g = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(5, 3, generator=g), torch.randn(2, 5, generator=g)
    std = torch.tensor([0.5, 2.0, 0.25])
    normalised = nn.Sequential(certify.Normalize(torch.tensor([0.1, 0.2, 0.3]), std), _dln([w1, w2])).eval()
    folded = _dln([w1 / std, w2])
    x = torch.rand(4, 3, generator=g)
    a = propagation_tightness(normalised, x, 0.1, relu_adjust=None)
    b = propagation_tightness(folded, x, 0.1, relu_adjust=None)
    torch.testing.assert_close(a.numerator, b.numerator)
    torch.testing.assert_close(a.denominator, b.denominator)
    assert bool((a.ratio < 1).any())


def test_numerator_and_denominator_are_the_optimal_and_ibp_boxes() -> None:
    # With every ReLU stably active over the box the network is affine there: CROWN is exact
    # (the optimal box, the numerator) and IBP returns the denominator.
    g = torch.Generator().manual_seed(0)
    model = _dln([torch.randn(12, 6, generator=g), torch.randn(12, 12, generator=g), torch.randn(4, 12, generator=g)])
    with torch.no_grad():
        model[0].bias.fill_(20.0)
        model[2].bias.fill_(200.0)
    x = torch.rand(5, 6, generator=g, dtype=torch.float32)
    y = torch.randint(0, 4, (5,), generator=g)
    eps = 0.02
    t = propagation_tightness(model, x, eps, labels=y, relu_adjust="local")
    others = torch.arange(4)[None] != y[:, None]
    ibp = certify.margin_bounds(model, x, y, eps, method="ibp", domain=(0.0, 1.0))
    crown = certify.margin_bounds(model, x, y, eps, method="crown", domain=(0.0, 1.0))
    ibp_radius = (ibp.upper - ibp.lower)[others].reshape(5, 3) / 2
    crown_radius = (crown.upper - crown.lower)[others].reshape(5, 3) / 2
    torch.testing.assert_close(t.denominator.float(), ibp_radius, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(t.numerator.float(), crown_radius, rtol=1e-4, atol=1e-4)
    assert bool((t.ratio < 0.999).any())


def test_input_radius_is_clipped_to_the_domain() -> None:
    w = torch.tensor([[1.0, 2.0, -3.0]])
    model = _dln([w])
    x = torch.tensor([[0.0, 0.5, 1.0]])
    t = propagation_tightness(model, x, 0.2)
    # radii 0.1, 0.2, 0.1 -> |W| r = 0.1 + 0.4 + 0.3
    torch.testing.assert_close(t.numerator, torch.tensor([[0.8]], dtype=torch.float64))
    t_free = propagation_tightness(model, x, 0.2, domain=None)
    torch.testing.assert_close(t_free.numerator, torch.tensor([[1.2]], dtype=torch.float64))


def test_tightness_in_unit_interval_and_decreasing_with_depth() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 20, generator=g)
    means = []
    for depth in (1, 2, 4, 8):
        values = []
        for seed in range(3):
            layers: list[nn.Module] = []
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # default (Kaiming-uniform) init
                for i in range(depth):
                    layers += [nn.Linear(20, 20 if i < depth - 1 else 10), nn.ReLU()]
            model = nn.Sequential(*layers[:-1]).eval()
            for adjust in ("local", None):
                t = propagation_tightness(model, x, 0.05, relu_adjust=adjust)
                assert bool((t.ratio > 0).all()) and bool((t.ratio <= 1 + 1e-12).all())
            values.append(tightness(model, x, 0.05, relu_adjust=None))
        means.append(sum(values) / len(values))
    assert means[0] == pytest.approx(1.0)
    assert means[0] > means[1] > means[2] > means[3]


def test_any_chain_the_engine_converts_not_only_sequential() -> None:
    class Chain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = _dln([_hadamard(4)] * 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.flatten(1))

    chain = Chain().eval()
    x = torch.rand(3, 1, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(propagation_tightness(chain, x, 0.1).ratio,
                               propagation_tightness(chain.inner, x.flatten(1), 0.1).ratio)
    with pytest.raises(TypeError, match="skip connection"):

        class Residual(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lin = nn.Linear(4, 4)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.relu(self.lin(x)) + x

        tightness(Residual().eval(), torch.rand(2, 4), 0.1)


def test_result_is_frozen_dataclass_with_batch_mean() -> None:
    model = _dln([_hadamard(4)] * 2)
    t = propagation_tightness(model, torch.rand(3, 4), 0.1)
    assert isinstance(t, Tightness)
    assert t.value == pytest.approx(float(t.ratio.mean()))
    with pytest.raises(AttributeError):
        t.value = 0.0  # type: ignore[misc]


def test_bad_arguments_raise_clear_errors() -> None:
    model = _dln([_hadamard(4)] * 2)
    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match="`eps`"):
        tightness(model, x, 0.0)
    with pytest.raises(ValueError, match="`relu_adjust`"):
        tightness(model, x, 0.1, relu_adjust="shrink")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`labels`"):
        tightness(model, x, 0.1, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="`labels`"):
        tightness(model, x, 0.1, labels=torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="`domain`"):
        tightness(model, x, 0.1, domain=(1.0, 0.0))
    with pytest.raises(TypeError, match="Tanh"):
        tightness(nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)).eval(), x, 0.1)
    with pytest.raises(ValueError, match="eval mode"):
        tightness(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), x, 0.1)
