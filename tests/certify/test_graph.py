"""The converted-graph cache: reused while the model is unchanged, rebuilt whenever it changes."""

from __future__ import annotations

import copy
import gc
import math
import weakref

import pytest
import torch
from torch import nn

import certify
from certify._graph import _GRAPH_CACHE, build_graph, cached_graph
from certify.ibp import InputRegion, interval_forward, spec_interval


def _cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 3 * 3, 16), nn.ReLU(), nn.Linear(16, 5),
    ).eval()


def _fresh_bounds(model: nn.Module, x: torch.Tensor, method: str) -> certify.Bounds:
    """Bounds on a deep copy (a model the cache has never seen)."""
    return certify.bounds(copy.deepcopy(model), x, 0.05, method=method, domain=(0, 1))


def _assert_same(a: certify.Bounds, b: certify.Bounds) -> None:
    torch.testing.assert_close(a.lower, b.lower, rtol=0, atol=0)
    torch.testing.assert_close(a.upper, b.upper, rtol=0, atol=0)


def _no_grad_params(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def test_graph_is_reused_while_the_model_is_unchanged() -> None:
    model = _no_grad_params(_cnn(0))
    x = torch.rand(3, 1, 8, 8)
    g1 = cached_graph(model, x)
    assert cached_graph(model, x) is g1
    assert cached_graph(model, x.double(), torch.float64) is not g1  # other dtype: other entry
    assert cached_graph(model, torch.rand(7, 1, 8, 8)) is g1  # the batch size is not part of the key
    assert cached_graph(model, x) is g1


@pytest.mark.parametrize("method", ["ibp", "crown", "crown-ibp"])
@pytest.mark.parametrize(
    "change",
    ["inplace_weight", "load_state_dict", "replace_module", "assign_data", "bn_running_stats", "swap_activation",
     "write_through_data", "buffer_write_through_data"],
)
def test_bounds_follow_every_change_of_the_model(method: str, change: str) -> None:
    model = _no_grad_params(_cnn(1))
    x = torch.rand(4, 1, 8, 8)
    before = certify.bounds(model, x, 0.05, method=method, domain=(0, 1))
    _assert_same(before, certify.bounds(model, x, 0.05, method=method, domain=(0, 1)))  # cached: identical
    if change == "inplace_weight":
        with torch.no_grad():
            model[0].weight.mul_(1.5)  # what optimizer.step() does
    elif change == "load_state_dict":
        model.load_state_dict(_cnn(2).state_dict())
    elif change == "replace_module":
        model[6] = _no_grad_params(nn.Linear(6 * 3 * 3, 16)).eval()
    elif change == "assign_data":
        model[7 + 1].weight.data = torch.randn(5, 16)
    elif change == "write_through_data":  # manual SGD / EMA style: bumps no version counter
        for p in model.parameters():
            p.data.mul_(1.5)
    elif change == "buffer_write_through_data":
        model[1].running_var.data.mul_(3.0)
    elif change == "bn_running_stats":
        model.train()
        model(torch.rand(16, 1, 8, 8) * 3)  # updates BatchNorm's running mean/var in place
        model.eval()
    else:
        model[2] = nn.Tanh().eval()  # a module without parameters
    after = certify.bounds(model, x, 0.05, method=method, domain=(0, 1))
    _assert_same(after, _fresh_bounds(model, x, method))
    assert not torch.equal(after.lower, before.lower)


def test_bounds_stay_differentiable_and_are_not_cached_under_autograd() -> None:
    model = _cnn(3)  # parameters require grad
    x = torch.rand(2, 1, 8, 8)
    grads = []
    for _ in range(2):  # a second backward must not reuse the first call's autograd graph
        b = certify.bounds(model, x, 0.05, method="crown-ibp", domain=(0, 1))
        model.zero_grad()
        (b.upper - b.lower).sum().backward()
        grads.append(model[0].weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert float(grads[0].abs().sum()) > 0
    with torch.no_grad():
        model[0].weight.add_(0.1)
    b = certify.bounds(model, x, 0.05, method="crown-ibp", domain=(0, 1))
    _assert_same(b, _fresh_bounds(model, x, "crown-ibp"))


def test_buffer_reusing_ibp_equals_the_plain_pass() -> None:
    """``interval_forward(keep_all=False)`` reuses dead buffers in place; it must change nothing."""
    model = _no_grad_params(_cnn(4))
    x = torch.rand(5, 1, 8, 8)
    g = build_graph(model, x)
    region = InputRegion(x, torch.full((5,), 0.05), math.inf, (0.0, 1.0))
    with torch.no_grad():
        plain = spec_interval(g, interval_forward(g, region, keep_all=True), None)
        reused = spec_interval(g, interval_forward(g, region, keep_all=False), None)
    torch.testing.assert_close(plain[0], reused[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(plain[1], reused[1], rtol=1e-6, atol=1e-6)
    out = model(x)
    assert bool((reused[0] <= out + 1e-5).all() and (out <= reused[1] + 1e-5).all())


def test_cache_does_not_keep_models_alive() -> None:
    model = _no_grad_params(_cnn(5))
    cached_graph(model, torch.rand(1, 1, 8, 8))
    assert model in _GRAPH_CACHE
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("model_grad", [False, True])
def test_ibp_is_differentiable_in_the_input(model_grad: bool) -> None:
    """Gradients w.r.t. x (e.g. for attacks on the bound) must flow whether or not the weights need grad:
    the in-place fast path is used only when autograd records nothing."""
    model = _cnn(6)
    if not model_grad:
        _no_grad_params(model)
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64) * 0.8 + 0.1
    model = model.double()
    grads = []
    for mdl in (model, copy.deepcopy(model).requires_grad_(True)):
        xx = x.clone().requires_grad_(True)
        b = certify.bounds(mdl, xx, 0.05, method="ibp", domain=(0, 1))
        (b.upper * torch.arange(1, 6, dtype=torch.float64)).sum().backward()
        grads.append(xx.grad)
    torch.testing.assert_close(grads[0], grads[1])
    assert float(grads[0].abs().sum()) > 0


class _AliasNet(nn.Module):
    """``relu(h) + (h + 1)``: the constant add passes h's radius tensor through, so the ReLU must not
    reuse h's buffers in place (it is not h's only consumer)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        shifted = h + 1.0  # traced before the ReLU, so the ReLU is h's last consumer
        return torch.relu(h) + shifted


def test_in_place_ibp_never_overwrites_a_shared_buffer() -> None:
    torch.manual_seed(7)
    model = _no_grad_params(_AliasNet().eval())
    with torch.no_grad():
        model.fc.bias.fill_(-10.0)
    x = torch.rand(5, 4)
    with torch.no_grad():
        fast = certify.bounds(model, x, 0.1, method="ibp", domain=(0, 1))
    plain = certify.bounds(copy.deepcopy(model).requires_grad_(True), x, 0.1, method="ibp", domain=(0, 1))
    torch.testing.assert_close(fast.lower, plain.lower.detach())
    torch.testing.assert_close(fast.upper, plain.upper.detach())
    assert float((fast.upper - fast.lower).min()) > 0.05


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.scale = torch.tensor(2.0)  # a plain tensor attribute, not a buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


def test_plain_tensor_attributes_are_never_served_stale() -> None:
    model, x = _no_grad_params(_Scaled().eval()), torch.rand(2, 4)
    with torch.no_grad():
        certify.bounds(model, x, 0.1)
        model.scale = torch.tensor(5.0)
        _assert_same(certify.bounds(model, x, 0.1), certify.bounds(copy.deepcopy(model), x, 0.1))
        model.scale.mul_(2)
        _assert_same(certify.bounds(model, x, 0.1), certify.bounds(copy.deepcopy(model), x, 0.1))


def test_inference_mode_cache_does_not_leak_into_autograd() -> None:
    model = _no_grad_params(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval())
    x = torch.rand(3, 4)
    with torch.inference_mode():
        inside = certify.bounds(model, x, 0.1, method="crown")
    xg = x.clone().requires_grad_()
    b = certify.bounds(model, xg, 0.1, method="crown")
    b.lower.sum().backward()
    assert xg.grad is not None
    torch.testing.assert_close(inside.lower, b.lower.detach())


def test_concurrent_first_calls_on_traced_models() -> None:
    from concurrent.futures import ThreadPoolExecutor

    models = [_no_grad_params(_AliasNet().eval()) for _ in range(4)]
    x = torch.rand(3, 4)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda m: certify.bounds(m, x, 0.1, method="crown"), models))
    for m, b in zip(models, results):
        _assert_same(b, certify.bounds(copy.deepcopy(m), x, 0.1, method="crown"))
