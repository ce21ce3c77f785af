"""Regressions for models the converter once got silently wrong: ``torch.cat``/``torch.stack`` of
input-dependent tensors (constant-folded), forward hooks and weight re-parametrisations (ignored), and
an input normalisation with (1, C, 1, 1) buffers (CROWN crashed)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import certify
from certify._graph import UnsupportedLayerError, build_graph

METHODS = ["ibp", "crown", "crown-ibp"]


def _assert_contains(model: nn.Module, x: Tensor, eps: float, method: str, n: int = 2000) -> None:
    """Bounds contain the model's outputs at x (eps = 0 too) and at sampled points of the ball."""
    with torch.no_grad():
        b0 = certify.bounds(model, x, 0.0, method=method)
        y = model(x)
        assert b0.lower.shape == y.shape
        tol = 1e-4 * (1 + y.abs().max())
        assert bool((b0.lower <= y + tol).all() and (y <= b0.upper + tol).all())
        assert float((b0.upper - b0.lower).abs().max()) < 1e-3
        b = certify.bounds(model, x, eps, method=method)
        gen = torch.Generator().manual_seed(0)
        for i in range(x.shape[0]):
            pts = x[i] + eps * (2 * torch.rand((n, *x.shape[1:]), generator=gen) - 1)
            out = model(pts)
            assert bool((out >= b.lower[i] - 1e-5).all() and (out <= b.upper[i] + 1e-5).all())


class CatNet(nn.Module):
    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(4, 6)
        self.head = nn.Linear(12, 3)

    def forward(self, x: Tensor) -> Tensor:
        u, v = torch.relu(self.a(x)), torch.tanh(self.b(x))
        if self.op == "cat":
            h = torch.cat([u, v], dim=1)
        elif self.op == "cat_neg":
            h = torch.cat((v, u), -1)
        else:
            h = torch.stack([u, v], dim=2).flatten(1)
        return self.head(torch.relu(h))


class CatConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 3, padding=1)
        self.head = nn.Linear(5 * 6 * 6, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.cat([torch.relu(self.c1(x)), x], dim=1)  # channel concatenation with the input itself
        return self.head(torch.relu(h).flatten(1))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("op", ["cat", "cat_neg", "stack"])
def test_cat_and_stack_of_graph_values_are_never_constant_folded(op: str, method: str) -> None:
    torch.manual_seed(0)
    model = CatNet(op).eval()
    _assert_contains(model, torch.randn(3, 4), 0.1, method)
    # a batch of one gets one row of bounds (the probe batch of the converter has two)
    assert certify.bounds(model, torch.randn(1, 4), 0.1, method=method).lower.shape == (1, 3)


@pytest.mark.parametrize("method", METHODS)
def test_channel_cat_in_a_cnn(method: str) -> None:
    torch.manual_seed(1)
    model = CatConv().eval()
    _assert_contains(model, torch.rand(2, 2, 6, 6), 0.05, method)


@pytest.mark.parametrize("method", METHODS)
def test_cat_gives_the_bounds_of_the_equivalent_merged_layer(method: str) -> None:
    """relu(cat(A x, B x)) is relu([A; B] x): the same bounds, since cat is exact in every method."""
    torch.manual_seed(2)
    model = CatNet("cat").eval()
    merged = nn.Linear(4, 12)
    with torch.no_grad():
        merged.weight.copy_(torch.cat([model.a.weight, model.b.weight]))
        merged.bias.copy_(torch.cat([model.a.bias, model.b.bias]))
    ref = nn.Sequential(merged, nn.ReLU(), nn.ReLU(), model.head).eval()

    class Wrapped(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return model.head(torch.relu(torch.cat([torch.relu(model.a(x)), torch.relu(model.b(x))], 1)))

    wrapped = Wrapped()
    wrapped.m = model  # type: ignore[assignment]
    x = torch.randn(4, 4)
    got = certify.bounds(wrapped.eval(), x, 0.2, method=method)
    want = certify.bounds(ref, x, 0.2, method=method)
    torch.testing.assert_close(got.lower, want.lower, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.upper, want.upper, rtol=1e-5, atol=1e-5)
    both = certify.bounds(wrapped, x, 0.2, method=method, compare_crown_with_ibp=True)
    ibp = certify.bounds(wrapped, x, 0.2, method="ibp")
    assert bool((both.lower >= torch.maximum(ibp.lower, got.lower) - 1e-6).all())
    assert bool((both.upper <= torch.minimum(ibp.upper, got.upper) + 1e-6).all())


class BatchConst(nn.Module):
    """Adds a tensor built from x.size(0): a constant on the probe batch, wrong on any other."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x) + torch.arange(x.size(0), dtype=x.dtype).unsqueeze(1)


class DataLeak(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x) * x.data.abs().sum()


@pytest.mark.parametrize("model_cls", [BatchConst, DataLeak])
def test_values_derived_from_the_probe_input_are_refused(model_cls: type[nn.Module]) -> None:
    model = model_cls().eval()
    with pytest.raises(UnsupportedLayerError):
        certify.bounds(model, torch.randn(3, 3), 0.1, method="ibp")


# -- hooks and re-parametrisations ---------------------------------------------------------------

def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("kind", ["forward_hook", "pre_hook", "global_hook"])
def test_forward_hooks_are_refused(kind: str) -> None:
    model = _mlp()
    if kind == "forward_hook":
        h = model[0].register_forward_hook(lambda m, i, o: o * 2)
    elif kind == "pre_hook":
        h = model[2].register_forward_pre_hook(lambda m, i: (i[0] * 3,))
    else:
        h = nn.modules.module.register_module_forward_hook(lambda m, i, o: o)
    try:
        with pytest.raises(UnsupportedLayerError, match="hook"):
            certify.bounds(model, torch.randn(2, 5), 0.1, method="crown")
    finally:
        h.remove()
    certify.bounds(model, torch.randn(2, 5), 0.1, method="crown")  # fine once removed


def _step(model: nn.Module) -> None:
    """One optimizer step in training mode (the re-parametrised weight attribute goes stale)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.randn(8, 5)).square().sum().backward()
    opt.step()
    model.eval()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("reparam", ["spectral_norm", "weight_norm", "param_spectral_norm", "param_weight_norm",
                                     "parametrize_custom"])
def test_weight_reparametrisations_are_honoured(reparam: str, method: str) -> None:
    model = _mlp(3)

    class Scale(nn.Module):
        def forward(self, w: Tensor) -> Tensor:
            return 0.5 * w

    for i in (0, 2):
        if reparam == "spectral_norm":
            model[i] = nn.utils.spectral_norm(model[i])
        elif reparam == "weight_norm":
            model[i] = torch.nn.utils.weight_norm(model[i])
        elif reparam == "param_spectral_norm":
            model[i] = nn.utils.parametrizations.spectral_norm(model[i])
        elif reparam == "param_weight_norm":
            model[i] = nn.utils.parametrizations.weight_norm(model[i])
        else:
            nn.utils.parametrize.register_parametrization(model[i], "weight", Scale())
    _step(model)
    _assert_contains(model, torch.randn(3, 5), 0.1, method)


# -- normalisation with (1, C, 1, 1) buffers -------------------------------------------------------

class CifarNormalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


@pytest.mark.parametrize("method", METHODS)
def test_normalisation_with_1c11_buffers(method: str) -> None:
    torch.manual_seed(4)
    model = nn.Sequential(CifarNormalize(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 5)).eval()
    _assert_contains(model, torch.rand(2, 3, 6, 6), 2 / 255, method)
    # and the same on a flat (1, C) normalisation of vectors
    flat = nn.Sequential(_FlatNorm(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    _assert_contains(flat, torch.rand(3, 3), 0.05, method)


class _FlatNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([[0.1, 0.2, 0.3]]))
        self.register_buffer("std", torch.tensor([[0.5, 0.6, 0.7]]))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def test_graph_forward_matches_the_model_on_cat() -> None:
    model = CatNet("stack").eval()
    x = torch.randn(5, 4)
    g = build_graph(model, x)
    torch.testing.assert_close(g.forward(x), model(x), rtol=1e-5, atol=1e-6)
