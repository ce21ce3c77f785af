"""Plain IBP's compiled element-wise steps (certify/_ibp_kernels.py) and the lazily formed input box: bit-identical to
torch's form, taken where they apply and only there."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import certify
import certify.ibp as ibp_mod
from certify.ibp import InputRegion, Interval, relu_consuming


def _kernels() -> object:
    pytest.importorskip("numba")
    if ibp_mod.USE_COMPILED is False:
        pytest.skip("compiled IBP steps switched off")
    k = ibp_mod._ibp_kernels(1 << 30)
    if k is None:
        pytest.skip("compiled kernels switched off (CERTKIT_NO_NUMBA)")
    return k


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    """Bit-identical values (NaN where the other is NaN; a zero's sign aside)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    assert torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("domain", [None, (0.0, 1.0), (0.1, 0.7)])
def test_compiled_box_equals_the_sum_and_difference_of_the_box_ends(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                                   domain: tuple[float, float] | None) -> None:
    """One pass gives ``(u + l, u - l)`` of the eager box ``(max(x - e, lo), min(x + e, hi))`` bit for bit, with one
    radius per input (0 included) and the domain clipping some entries on both sides."""
    _kernels()
    monkeypatch.setattr(ibp_mod, "USE_COMPILED", True)  # below the size floor of the default
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 5, 4, generator=g, dtype=dtype)
    if domain is not None:
        x = x.clamp(*domain)
    eps = torch.tensor([0.0, 0.01, 0.05, 0.1, 0.3, 1e-7, 2.0], dtype=dtype)
    eager = InputRegion(x, eps, math.inf, domain).box
    lazy = InputRegion(x, eps, math.inf, domain, lazy_box=True)
    got = lazy.box_sum_diff()
    assert got is not None and got._l is None and got._u is None
    s, d = eager.sum_diff()
    _same(got._s, s)  # type: ignore[arg-type]
    _same(got._d, d)  # type: ignore[arg-type]
    if domain is not None:
        assert bool((eager.l == domain[0]).any()) and bool((eager.u == domain[1]).any())
    # the lazy box's ends, formed on demand, are the eager ones
    _same(lazy.box.l, eager.l)
    _same(lazy.box.u, eager.u)
    assert lazy.box_sum_diff() is None  # the box is formed now: its ends are what IBP reads


def test_lazy_box_is_formed_at_once_where_autograd_records_it() -> None:
    """A region whose centre or radius requires grad forms its box at construction (so that autograd records it
    whatever the grad mode of a later reader); a plain region not until it is read."""
    x = torch.rand(2, 4)
    eps = torch.full((2,), 0.1)
    assert "_box" not in InputRegion(x, eps, math.inf, None, lazy_box=True).__dict__
    assert "_box" in InputRegion(x, eps, math.inf, None).__dict__
    xg = x.clone().requires_grad_(True)
    r = InputRegion(xg, eps, math.inf, None, lazy_box=True)
    assert "_box" in r.__dict__ and r.box.l.requires_grad
    assert r.box_sum_diff() is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_relu_centre_width_equals_the_torch_form(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    """ReLU of a centre/width interval in place: the compiled pass equals torch's four in-place passes bit for bit,
    with inactive, active and unstable neurons, zero widths, NaN centres and NaN widths."""
    k = _kernels()
    g = torch.Generator().manual_seed(1)
    c = torch.randn(4, 3, 6, 6, generator=g, dtype=dtype)
    w = torch.rand(4, 3, 6, 6, generator=g, dtype=dtype) * 2
    w[0, 0, 0] = 0.0
    c[1, 1, 1, :3] = math.nan
    w[2, 2, 2, :3] = math.nan
    w[3, 0, 1, :2] = math.inf
    monkeypatch.setattr(ibp_mod, "USE_COMPILED", False)
    ref = relu_consuming(Interval(c=c.clone(), d=w.clone()))
    monkeypatch.setattr(ibp_mod, "USE_COMPILED", True)
    cc, ww = c.clone(), w.clone()
    got = relu_consuming(Interval(c=cc, d=ww))
    assert got._c is cc and got._d is ww  # in place, through the kernel
    k.relu_centre_width(c.view(-1).numpy(), w.view(-1).numpy())  # type: ignore[attr-defined]
    for t in (cc, c):
        _same(t, ref._c)  # type: ignore[arg-type]
    for t in (ww, w):
        _same(t, ref._d)  # type: ignore[arg-type]
    assert bool((ref._d == 0).any()) and bool((ref._d > 0).any()) and bool((ref._c + ref._d / 2 > 0).any())


def _cnn() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 8 * 8, 20), nn.ReLU(), nn.Linear(20, 5)).eval()


class _Res(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.c0 = nn.Conv2d(3, 4, 3, padding=1)
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c0(x))
        return self.fc(torch.flatten(h + torch.relu(self.c1(h)), 1))


class _InputRelu(nn.Module):
    """The input read by a max-pooling (not an affine layer): the box's ends are needed, so no sum/difference start."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.fc = nn.Linear(3 * 16 * 16, 4)
        self.fc2 = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.flatten(nn.functional.max_pool2d(x, 2), 1)) + self.fc(torch.flatten(x, 1))


def _nonneg_first() -> nn.Module:
    """The input read by a conv with non-negative weights, which IBP bounds from the end points of its input box
    (``certify.ibp.end_point_nodes``): the box's ends are needed, so no sum/difference start."""
    net = _cnn()
    with torch.no_grad():
        net[0].weight.abs_()
    return net


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("net", ["cnn", "res", "input_relu", "nonneg_first"])
@pytest.mark.parametrize("case", ["linf", "l2", "margins", "chunks"])
def test_compiled_ibp_gives_the_torch_forms_bounds_and_runs(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                            net: str, case: str) -> None:
    """certify.bounds / margin_bounds with IBP: the compiled box and ReLU steps give bit-identical bounds to the torch
    form (``USE_COMPILED`` False), whole batch and in chunks of inputs, L-inf with a domain and L2; both steps ran
    where every reader of the input takes the sum/difference form, and the box step did not where a max-pooling or
    an end-point node (a conv with non-negative weights) reads the input itself (then the box's ends are formed, as
    before)."""
    real = _kernels()
    model = {"cnn": _cnn, "res": _Res, "input_relu": _InputRelu, "nonneg_first": _nonneg_first}[net]().to(dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(9, 3, 16, 16, generator=gen, dtype=dtype)
    eps = torch.linspace(0.001, 0.05, 9, dtype=dtype)
    y = torch.arange(9) % model(x[:1]).shape[1]

    def run() -> certify.Bounds:
        if case == "margins":
            return certify.margin_bounds(model, x, y, eps, method="ibp", domain=(0, 1))
        if case == "l2":
            return certify.bounds(model, x, eps * 4, norm=2, method="ibp")
        return certify.bounds(model, x, eps, method="ibp", domain=(0, 1))

    if case == "chunks":
        monkeypatch.setattr(ibp_mod, "IBP_CHUNK_BYTES", 1)
        monkeypatch.setattr(ibp_mod, "IBP_MIN_CHUNK", 4)  # chunks of 4, 4, 1
    monkeypatch.setattr(ibp_mod, "USE_COMPILED", False)
    ref = run()
    seen = {"box": 0, "relu": 0}

    class Spy:
        def box_sum_diff(self, *args: object) -> None:
            seen["box"] += 1
            real.box_sum_diff(*args)  # type: ignore[attr-defined]

        def relu_centre_width(self, *args: object) -> None:
            seen["relu"] += 1
            real.relu_centre_width(*args)  # type: ignore[attr-defined]

    monkeypatch.setattr(ibp_mod, "USE_COMPILED", True)
    monkeypatch.setattr(ibp_mod, "_ibp_kernels", lambda entries: Spy())
    fast = run()
    _same(fast.lower, ref.lower)
    _same(fast.upper, ref.upper)
    assert bool((ref.upper - ref.lower > 1e-3).any())
    box_read_in_form = net in ("cnn", "res")
    assert seen["box"] == (1 if box_read_in_form else 0)  # one pass for the whole batch, chunks slice it
    assert seen["relu"] >= (0 if net == "input_relu" else 1)


def test_compiled_steps_start_after_the_models_first_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default switch (None) a model's first ``IBP_KERNEL_AFTER`` IBP calls take the torch form (a model
    bounded once never pays numba's import and compilation) and later calls the compiled steps, with the same
    bounds; ``USE_COMPILED = False`` never compiles."""
    real = _kernels()
    model = _cnn()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    calls: list[str] = []

    class Spy:
        def box_sum_diff(self, *args: object) -> None:
            calls.append("box")
            real.box_sum_diff(*args)  # type: ignore[attr-defined]

        def relu_centre_width(self, *args: object) -> None:
            calls.append("relu")
            real.relu_centre_width(*args)  # type: ignore[attr-defined]

    monkeypatch.setattr(ibp_mod, "USE_COMPILED", None)
    monkeypatch.setattr(ibp_mod, "_ibp_kernels", lambda entries: Spy())
    with torch.no_grad():
        first = [certify.bounds(model, x, 0.02, method="ibp", domain=(0, 1)) for _ in range(ibp_mod.IBP_KERNEL_AFTER)]
        assert calls == []
        later = certify.bounds(model, x, 0.02, method="ibp", domain=(0, 1))
        assert calls.count("box") == 1 and calls.count("relu") >= 1
        monkeypatch.setattr(ibp_mod, "USE_COMPILED", False)
        calls.clear()
        off = certify.bounds(model, x, 0.02, method="ibp", domain=(0, 1))
        assert calls == []
    for b in (*first, off):
        _same(b.lower, later.lower)
        _same(b.upper, later.upper)
