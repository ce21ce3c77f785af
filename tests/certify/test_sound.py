"""``sound=True`` against an exact-arithmetic oracle (``fractions.Fraction``): the exact real output of the
network whose parameters are the stored floats, at exact points of the real input region (the centre,
exact rational corners, sampled points), lies inside the sound bounds; ``verify(sound=True)`` never
certifies a property whose exact margin is <= 0.

The oracle evaluates the torch modules themselves (not certify's graph), layer by layer, in rationals;
sqrt (BatchNorm) and exp (sigmoid/tanh) are evaluated with 100-digit decimals (error ~1e-100, far
below any float gap the bounds could be tested at).
"""

from __future__ import annotations

import itertools
import math
import zlib
from decimal import Decimal, getcontext
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import certify
from certify._graph import Normalize

getcontext().prec = 100
METHODS = ("ibp", "crown", "crown-ibp")


# ----------------------------------------------------------------------------------------------
# exact oracle
# ----------------------------------------------------------------------------------------------

def _frac(t: torch.Tensor) -> np.ndarray:
    vals = [Fraction(v) for v in t.detach().double().reshape(-1).tolist()]  # float -> float64 is exact
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out.reshape(tuple(t.shape))


def _ints(a: np.ndarray) -> tuple[np.ndarray, int]:
    """(integers, d) with a == integers / d."""
    d = math.lcm(*[v.denominator for v in a.reshape(-1)]) if a.size else 1
    return np.vectorize(lambda v: int(v * d), otypes=[object])(a), d


_WEIGHTS: dict[tuple[int, int, tuple[int, ...]], tuple[torch.Tensor, np.ndarray, int]] = {}


def _weight_ints(t: torch.Tensor, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """``_ints`` of a parameter, cached on (identity, version): the oracle reuses layers across points."""
    key = (id(t), t._version, shape)
    hit = _WEIGHTS.get(key)
    if hit is None or hit[0] is not t:  # the entry holds the tensor, so its id cannot be reused meanwhile
        if len(_WEIGHTS) > 64:
            _WEIGHTS.clear()
        ratios = [v.as_integer_ratio() for v in t.detach().double().reshape(-1).tolist()]  # exact; dyadic
        d = max(den for _, den in ratios)
        ints = np.empty(len(ratios), dtype=object)
        ints[:] = [num * (d // den) for num, den in ratios]
        hit = _WEIGHTS[key] = (t, ints.reshape(shape), d)
    return hit[1], hit[2]


def _matmul(a: np.ndarray | tuple[np.ndarray, int], b: np.ndarray) -> np.ndarray:
    """Exact a @ b of Fraction arrays, through integers (one common denominator per operand)."""
    ia, da = _ints(a) if isinstance(a, np.ndarray) else a
    ib, db = _ints(b)
    prod = ia.dot(ib)
    den = da * db
    return np.vectorize(lambda v: Fraction(v, den), otypes=[object])(prod)


def _sqrt(q: Fraction) -> Fraction:
    d = (Decimal(q.numerator) / Decimal(q.denominator)).sqrt()
    return Fraction(d)


def _exp(q: Fraction) -> Fraction:
    return Fraction((Decimal(q.numerator) / Decimal(q.denominator)).exp())


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: tuple, padding: tuple,
          groups: int) -> np.ndarray:
    """x (C, H, W), w (Co, C/g, kh, kw)."""
    c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    ph, pw = padding
    xp = np.full((c, h + 2 * ph, wd + 2 * pw), Fraction(0), dtype=object)
    xp[:, ph:ph + h, pw:pw + wd] = x
    ho = (h + 2 * ph - kh) // stride[0] + 1
    wo = (wd + 2 * pw - kw) // stride[1] + 1
    out = np.empty((co, ho, wo), dtype=object)
    per = co // groups
    for gi in range(groups):
        cols = np.empty((cg * kh * kw, ho * wo), dtype=object)
        for i in range(ho):
            for j in range(wo):
                patch = xp[gi * cg:(gi + 1) * cg, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
                cols[:, i * wo + j] = patch.reshape(-1)
        res = _matmul(w[gi * per:(gi + 1) * per].reshape(per, -1), cols)
        out[gi * per:(gi + 1) * per] = res.reshape(per, ho, wo)
    if b is not None:
        out = out + b.reshape(-1, 1, 1)
    return out


class Residual(nn.Module):
    """``x + body(x)`` (traced by torch.fx into a residual add)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Branches(nn.Module):
    """``cat([a(x), b(x)], dim=1)`` (a ``cat`` node)."""

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], dim=1)


def exact_forward(m: nn.Module, x: np.ndarray) -> np.ndarray:
    """Exact output of module ``m`` on one input ``x`` (Fraction array of the per-sample shape)."""
    if isinstance(m, nn.Sequential):
        for sub in m:
            x = exact_forward(sub, x)
        return x
    if isinstance(m, Residual):
        return x + exact_forward(m.body, x)
    if isinstance(m, Branches):
        return np.concatenate([exact_forward(m.a, x), exact_forward(m.b, x)], axis=0)
    if isinstance(m, nn.Flatten):
        return x.reshape(-1)
    if isinstance(m, nn.Linear):
        y = _matmul(_weight_ints(m.weight, tuple(m.weight.shape)), x.reshape(-1, 1)).reshape(-1)
        return y if m.bias is None else y + _frac(m.bias)
    if isinstance(m, nn.Conv2d):
        pad = m.padding if isinstance(m.padding, tuple) else (0, 0)
        return _conv(x, _frac(m.weight), None if m.bias is None else _frac(m.bias), m.stride, pad, m.groups)
    if isinstance(m, nn.ReLU):
        return np.vectorize(lambda v: max(v, Fraction(0)), otypes=[object])(x)
    if isinstance(m, nn.Sigmoid):
        return np.vectorize(lambda v: 1 / (1 + _exp(-v)), otypes=[object])(x)
    if isinstance(m, nn.Tanh):
        return np.vectorize(lambda v: (_exp(2 * v) - 1) / (_exp(2 * v) + 1), otypes=[object])(x)
    if isinstance(m, Normalize):
        shape = (-1,) + (1,) * (x.ndim - 1)
        mean, std = _frac(m.mean), _frac(m.std)
        if mean.size > 1:
            mean = mean.reshape(shape)
        if std.size > 1:
            std = std.reshape(shape)
        return (x - mean) / std
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        shape = (-1,) + (1,) * (x.ndim - 1)
        sd = np.vectorize(lambda v: _sqrt(v + Fraction(m.eps)), otypes=[object])(_frac(m.running_var))
        y = (x - _frac(m.running_mean).reshape(shape)) / sd.reshape(shape)
        if m.weight is not None:
            y = y * _frac(m.weight).reshape(shape) + _frac(m.bias).reshape(shape)
        return y
    if isinstance(m, nn.AvgPool2d):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        c = x.shape[0]
        w = np.full((c, 1, k, k), Fraction(1), dtype=object)
        s = m.stride if isinstance(m.stride, int) else m.stride[0]
        p = m.padding if isinstance(m.padding, int) else m.padding[0]
        return _conv(x, w, None, (s, s), (p, p), c) / (k * k)
    raise NotImplementedError(type(m).__name__)


def _inside(lo: torch.Tensor, hi: torch.Tensor, vals: np.ndarray) -> bool:
    lo_f, hi_f = _frac(lo), _frac(hi)
    return bool(all(a <= v <= b for a, v, b in zip(lo_f.reshape(-1), vals.reshape(-1), hi_f.reshape(-1))))


def region_points(x: torch.Tensor, eps: float, norm: float, domain: tuple[float, float] | None,
                  n_random: int, gen: torch.Generator) -> list[np.ndarray]:
    """Exact points of the real region around one input x (per-sample shape): the centre, exact corners
    (L-inf; for L2 the exact points x +/- eps e_i) and random points (rationals checked to lie inside)."""
    x0 = _frac(x)
    e = Fraction(eps)
    lo_d = None if domain is None else Fraction(domain[0])
    hi_d = None if domain is None else Fraction(domain[1])

    def clip(p: np.ndarray) -> np.ndarray:
        if domain is None:
            return p
        return np.vectorize(lambda v: min(max(v, lo_d), hi_d), otypes=[object])(p)

    pts = [x0]
    flat = x0.reshape(-1)
    d = flat.size
    for _ in range(n_random):
        if norm == math.inf:
            signs = torch.randint(0, 2, (d,), generator=gen).tolist()
            corner = np.array([v + (e if s else -e) for v, s in zip(flat, signs)], dtype=object)
            pts.append(clip(corner).reshape(x0.shape))
            u = torch.rand(d, generator=gen, dtype=torch.float64).tolist()
            p = np.array([v + e * (2 * Fraction(t) - 1) for v, t in zip(flat, u)], dtype=object)
            pts.append(clip(p).reshape(x0.shape))
        else:
            i = int(torch.randint(0, d, (1,), generator=gen))
            for s in (e, -e):
                p = flat.copy()
                p[i] = p[i] + s
                if domain is None or lo_d <= p[i] <= hi_d:
                    pts.append(p.reshape(x0.shape))
            g = torch.randn(d, generator=gen, dtype=torch.float64)
            g = g / g.norm() * 0.999
            dv = [Fraction(t) * e for t in g.tolist()]
            if sum(v * v for v in dv) <= e * e:
                p = np.array([v + t for v, t in zip(flat, dv)], dtype=object)
                if domain is None or all(lo_d <= v <= hi_d for v in p):
                    pts.append(p.reshape(x0.shape))
    return pts


def check_contains(model: nn.Module, x: torch.Tensor, eps: float, *, norm: float = math.inf,
                   domain: tuple[float, float] | None = None, n_random: int = 3, seed: int = 0,
                   methods: tuple[str, ...] = METHODS, compare: tuple[bool, ...] = (False,)) -> None:
    gen = torch.Generator().manual_seed(seed)
    allb = []
    for m, cmp in itertools.product(methods, compare):
        if cmp and m == "ibp":
            continue
        b = certify.bounds(model, x, eps, norm=norm, method=m, domain=domain, sound=True,
                           compare_crown_with_ibp=cmp)
        assert b.lower.dtype == x.dtype
        allb.append((m, cmp, b))
    for i in range(x.shape[0]):
        for p in region_points(x[i], eps, norm, domain, n_random, gen):
            out = exact_forward(model, p)
            for m, cmp, b in allb:
                assert _inside(b.lower[i], b.upper[i], out), (m, cmp, i)


# ----------------------------------------------------------------------------------------------
# the issue's reproducer and constructed cancellations
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_issue_cancellation_all_orderings(dtype: torch.dtype) -> None:
    """Row [1, -2**-60, -1, 2**-61] in all 24 orders, x = 1, eps = 0: exact output -2**-61 inside the bounds,
    and the margin f0 - f1 (exactly -2**-61 < 0) is never certified."""
    for perm in itertools.permutations([1.0, -2.0**-60, -1.0, 2.0**-61]):
        m = nn.Linear(4, 2, bias=False).to(dtype).eval()
        with torch.no_grad():
            m.weight.zero_()
            m.weight[0] = torch.tensor(perm, dtype=dtype)
        x = torch.ones(1, 4, dtype=dtype)
        exact = _frac(m.weight[0]).sum()
        assert exact == -Fraction(2) ** -61
        for method in METHODS:
            b = certify.bounds(m, x, 0.0, method=method, sound=True)
            assert Fraction(float(b.lower[0, 0])) <= exact <= Fraction(float(b.upper[0, 0])), (perm, method)
            assert not bool(certify.verify(m, x, torch.tensor([0]), 0.0, method=method, sound=True))
            mb = certify.margin_bounds(m, x, torch.tensor([0]), 0.0, method=method, sound=True)
            assert Fraction(float(mb.lower[0, 1])) <= exact <= Fraction(float(mb.upper[0, 1]))


def _spanning_linear(gen: torch.Generator, dtype: torch.dtype, n_in: int = 6, n_out: int = 4) -> nn.Linear:
    """Weights whose magnitudes span 2**-30 .. 2**30 with exact cancellations between the large ones."""
    m = nn.Linear(n_in, n_out).to(dtype).eval()
    with torch.no_grad():
        big = 2.0 ** torch.randint(-30, 31, (n_out, n_in // 2), generator=gen).to(dtype)
        w = torch.cat([big, -big], 1) + 2.0 ** torch.randint(-30, -20, (n_out, n_in), generator=gen).to(dtype) * (
            torch.randint(0, 2, (n_out, n_in), generator=gen).to(dtype) * 2 - 1)
        perm = torch.randperm(n_in, generator=gen)
        m.weight.copy_(w[:, perm])
        m.bias.copy_(2.0 ** torch.randint(-30, 30, (n_out,), generator=gen).to(dtype))
    return m


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spanning_cancellations(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        m = nn.Sequential(_spanning_linear(gen, dtype), nn.ReLU(), _spanning_linear(gen, dtype, 4, 2)).eval()
        x = (torch.rand(2, 6, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype)
        check_contains(m, x, 0.0, n_random=0)
        check_contains(m, x, 2.0**-20, n_random=1)


# ----------------------------------------------------------------------------------------------
# random networks, every layer kind, both norms, both dtypes
# ----------------------------------------------------------------------------------------------

def _randomize(model: nn.Module, gen: torch.Generator) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.7)
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=gen) * 0.3)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def _nets() -> dict[str, Any]:
    return {
        "mlp": (lambda: nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)), (5,)),
        "cnn": (lambda: nn.Sequential(Normalize([0.4, 0.6], [0.3, 0.7]), nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(3, 4, 2, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(1),
                                      nn.Flatten(), nn.Linear(4 * 2 * 2, 3)), (2, 4, 4)),
        "pool-res": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(3, stride=1, padding=1),
                                           Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU())),
                                           nn.Flatten(), nn.BatchNorm1d(2 * 3 * 3), nn.Linear(18, 2)), (1, 3, 3)),
        "cat": (lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(),
                                      Branches(nn.Sequential(nn.Linear(5, 3), nn.ReLU()), nn.Linear(5, 2)),
                                      nn.Linear(5, 2)), (4,)),
        "smooth": (lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 2)), (4,)),
    }


@pytest.mark.parametrize("name", ["mlp", "cnn", "pool-res", "cat", "smooth"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_networks_contain_exact_outputs(name: str, dtype: torch.dtype) -> None:
    make, shape = _nets()[name]
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()) % 1000)  # hash() of a str varies per process
    torch.manual_seed(0)
    model = _randomize(make(), gen).to(dtype)
    x = torch.rand((2, *shape), generator=gen, dtype=torch.float64).to(dtype)
    check_contains(model, x, 0.0, n_random=0)
    check_contains(model, x, 0.01, n_random=1, domain=(0.0, 1.0), compare=(False, True))
    check_contains(model, x, 0.05, norm=2, n_random=1)


@pytest.mark.parametrize("name", ["cnn", "pool-res"])
def test_conv_through_fold_contains_exact_outputs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large convolutions are pushed back with matmul + fold instead of a dense matrix: force that path."""
    import certify._sound as sound_module

    monkeypatch.setattr(sound_module, "DENSE_MAX", 0)
    make, shape = _nets()[name]
    gen = torch.Generator().manual_seed(7)
    for dtype in (torch.float32, torch.float64):
        model = _randomize(make(), gen).to(dtype)
        x = torch.rand((2, *shape), generator=gen, dtype=torch.float64).to(dtype)
        check_contains(model, x, 0.02, n_random=1, domain=(0.0, 1.0), methods=("crown",), compare=(False, True))
        check_contains(model, x, 0.05, norm=2, n_random=1, methods=("crown",))


# ----------------------------------------------------------------------------------------------
# verify never certifies a property whose exact margin is <= 0
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_verify_never_certifies_nonpositive_exact_margin(dtype: torch.dtype) -> None:
    """Two outputs that agree in floats but not exactly: a tie computed as a win must not be certified."""
    gen = torch.Generator().manual_seed(3)
    for _ in range(6):
        lin = _spanning_linear(gen, dtype, 6, 2)
        with torch.no_grad():
            lin.weight[1] = lin.weight[0]
            k = int(torch.randint(0, 6, (1,), generator=gen))
            lin.weight[1, k] = torch.nextafter(lin.weight[0, k], torch.tensor(math.inf, dtype=dtype))  # class 1 wins (x > 0)
            lin.bias[1] = lin.bias[0]
        x = torch.rand(1, 6, generator=gen, dtype=torch.float64).to(dtype) + 0.5
        out = exact_forward(lin, _frac(x[0]))
        margin = out[0] - out[1]
        assert margin < 0
        for method in METHODS:
            assert not bool(certify.verify(lin, x, torch.tensor([0]), 0.0, method=method, sound=True))
    # and what is certified has a positive exact margin at the centre and the corners
    model = _randomize(_nets()["mlp"][0](), gen).to(dtype)
    x = torch.rand(6, 5, generator=gen, dtype=torch.float64).to(dtype)
    y = model(x).argmax(1)
    ok = certify.verify(model, x, y, 0.01, sound=True)
    assert bool(ok.any())
    for i in ok.nonzero().reshape(-1).tolist():
        for p in region_points(x[i], 0.01, math.inf, None, 2, gen):
            out = exact_forward(model, p)
            assert all(out[int(y[i])] - out[j] > 0 for j in range(3) if j != int(y[i]))


def test_certified_radius_and_accuracy_use_sound_bounds() -> None:
    lin = nn.Linear(4, 2, bias=False).eval()
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0] = torch.tensor([1.0, -2.0**-60, -1.0, 2.0**-61])
    x = torch.ones(1, 4)
    y = torch.tensor([0])
    assert float(certify.certified_radius(lin, x, y, sound=True)[0]) == 0.0
    assert certify.verified_accuracy(lin, x, y, 0.0, sound=True, progress=False) == 0.0


def test_round_outward_to_float32_is_tight() -> None:
    """The cast to float32 steps outward only where it rounded inward."""
    from certify.api import _round_outward

    lo = torch.tensor([1.0, 1.0 + 2.0**-40, -1.0 - 2.0**-40], dtype=torch.float64)
    l32, h32 = _round_outward(lo, lo, torch.float32)
    assert l32[0] == 1.0 and h32[0] == 1.0
    assert all(float(a) <= float(v) <= float(b) for a, v, b in zip(l32, lo, h32))


def test_flush_denormal_is_refused() -> None:
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        with pytest.raises(RuntimeError, match="flush"):
            certify.bounds(nn.Linear(2, 2).eval(), torch.zeros(1, 2), 0.1, sound=True)
    finally:
        torch.set_flush_denormal(False)


# ----------------------------------------------------------------------------------------------
# the digits MLP (cached model)
# ----------------------------------------------------------------------------------------------

def _digits() -> tuple[nn.Module, torch.Tensor]:
    from certkit_app.datasets import load_digits_split
    from certkit_app.digits import digits_mlp

    return digits_mlp(), load_digits_split("test").images


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_digits_mlp_contains_exact_outputs(dtype: torch.dtype) -> None:
    model, images = _digits()
    model = model.to(dtype)
    x = images[:1].to(dtype)
    check_contains(model, x, 0.0, n_random=0, methods=("ibp", "crown"))
    check_contains(model, x, 0.01, n_random=1, domain=(0.0, 1.0), methods=("crown",))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_digits_mlp_oracle_sweep(dtype: torch.dtype) -> None:
    model, images = _digits()
    model = model.to(dtype)
    x = images[:4].to(dtype)
    for eps in (0.0, 1e-3, 0.02):
        check_contains(model, x, eps, n_random=2, domain=(0.0, 1.0), compare=(False, True))
        check_contains(model, x, eps * 4, norm=2, n_random=2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_random_networks_oracle_sweep(seed: int) -> None:
    for make, shape in _nets().values():
        gen = torch.Generator().manual_seed(100 + seed)
        for dtype in (torch.float32, torch.float64):
            model = _randomize(make(), gen).to(dtype)
            x = torch.rand((3, *shape), generator=gen, dtype=torch.float64).to(dtype)
            for eps in (0.0, 1e-4, 0.03):
                check_contains(model, x, eps, n_random=2, domain=(0.0, 1.0), compare=(False, True), seed=seed)
                check_contains(model, x, eps * 3, norm=2, n_random=2, seed=seed)
