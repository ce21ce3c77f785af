"""``sound=True`` on max pooling, the element-wise functions, softmax, LayerNorm, products and attention
(masks included), against a high-precision oracle (mpmath, 256-bit binary floats: its error, ~1e-70
relative, is far below any float64 gap the bounds are tested at).

* the rigorous function bounds of ``certify._sound_fns`` (ranges for IBP, lines for CROWN) contain the
  exact ``f(x) - k x`` at the ends, breaks and a dense grid of every interval, and at exact points;
* small networks with every new layer kind: the exact real output (the torch modules evaluated
  layer by layer in mpmath, independently of certify's graph) at the centre, exact corners and
  exact random points of the real region lies inside the sound bounds, for float32 and float64,
  L-inf and L2, IBP, CROWN and CROWN-IBP.
"""

from __future__ import annotations

import itertools
import math
import zlib
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import certify
from certify._sound_fns import SOUND_FNS, g_range, sound_lines, sound_range

mp = pytest.importorskip("mpmath")
mp.mp.prec = 256
METHODS = ("ibp", "crown", "crown-ibp")


# ----------------------------------------------------------------------------------------------
# exact functions
# ----------------------------------------------------------------------------------------------

def _exact_fn(op: str, p: Any) -> Any:
    s2pi = mp.sqrt(2 / mp.pi)
    c = mp.mpf(0.044715)  # torch's constant, as the double it stores
    fns = {
        "exp": mp.exp, "log": mp.log, "reciprocal": lambda x: 1 / x, "rsqrt": lambda x: 1 / mp.sqrt(x),
        "square": lambda x: x * x,
        "gelu": lambda x: x * (1 + mp.erf(x / mp.sqrt(2))) / 2,
        "gelu_tanh": lambda x: x * (1 + mp.tanh(s2pi * (x + c * x**3))) / 2,
        "silu": lambda x: x / (1 + mp.exp(-x)),
        "elu": lambda x: x if x > 0 else mp.mpf(p) * (mp.exp(x) - 1),
        "softplus": lambda x: x if mp.mpf(p[0]) * x > p[1] else mp.log(1 + mp.exp(mp.mpf(p[0]) * x)) / p[0],
        "leaky_relu": lambda x: x if x >= 0 else mp.mpf(p) * x,
    }
    return fns[op]


_PARAMS = {"exp": None, "log": None, "reciprocal": None, "rsqrt": None, "square": None, "gelu": None,
           "gelu_tanh": None, "silu": None, "elu": 0.7, "softplus": (2.0, 5.0), "leaky_relu": 0.1}
_POSITIVE = ("log", "reciprocal", "rsqrt")


def _intervals(op: str, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random intervals, zero-width ones, wide ones and ones around every break point."""
    n = 40
    c = torch.randn(n, generator=gen, dtype=torch.float64) * 3
    w = torch.rand(n, generator=gen, dtype=torch.float64) ** 3 * 4
    w[:5] = 0.0
    w[5:8] = 2.0 ** -torch.arange(30, 33, dtype=torch.float64)
    for k, (blo, bhi) in enumerate(SOUND_FNS[op].breaks(_PARAMS[op])):
        c[8 + 3 * k: 11 + 3 * k] = torch.tensor([blo, bhi, (blo + bhi) / 2], dtype=torch.float64)
    if op == "softplus":
        c[20:24] = 2.5 + torch.tensor([-1e-9, 0.0, 1e-9, 1e-3], dtype=torch.float64)
    if op in _POSITIVE:
        c = c.abs() + 1e-3
        w = torch.minimum(w, c * 0.9)
    return c - w, c + w


def _points(l: float, u: float, extra: tuple[float, ...]) -> list[float]:  # noqa: E741
    pts = [l, u, *[b for b in extra if l <= b <= u]]
    if u > l:
        pts += [l + (u - l) * t for t in np.linspace(0, 1, 25)[1:-1]]
    return [min(max(p, l), u) for p in pts]


@pytest.mark.parametrize("op", list(SOUND_FNS))
def test_function_bounds_contain_the_exact_function(op: str) -> None:
    p = _PARAMS[op]
    f = _exact_fn(op, p)
    gen = torch.Generator().manual_seed(zlib.crc32(op.encode()) % 1000)  # hash() of a str varies per process
    l, u = _intervals(op, gen)  # noqa: E741
    k = torch.randn(l.shape, generator=gen, dtype=torch.float64)
    brk = [b for pair in SOUND_FNS[op].breaks(p) for b in pair]
    r_lo, r_hi = sound_range(op, p, l, u)
    g_lo, g_hi = g_range(op, p, l, u, k)
    d_l, b_l, d_u, b_u = sound_lines(op, p, l, u)
    for i in range(l.shape[0]):
        for x in _points(float(l[i]), float(u[i]), tuple(brk)):
            fx = f(mp.mpf(x))
            xm = mp.mpf(x)
            assert mp.mpf(float(r_lo[i])) <= fx <= mp.mpf(float(r_hi[i])), (op, i, x)
            gx = fx - mp.mpf(float(k[i])) * xm
            assert mp.mpf(float(g_lo[i])) <= gx <= mp.mpf(float(g_hi[i])), (op, i, x)
            assert mp.mpf(float(d_l[i])) * xm + mp.mpf(float(b_l[i])) <= fx, (op, i, x)
            assert fx <= mp.mpf(float(d_u[i])) * xm + mp.mpf(float(b_u[i])), (op, i, x)
    # and tight: the range is within 1e-5 of the sampled extremes on intervals of width <= 4 (plus, for
    # softplus, the size of its jump at the threshold, log1p(e^-5) / 2 here: torch's softplus is discontinuous)
    xs = l.unsqueeze(1) + (u - l).unsqueeze(1) * torch.linspace(0, 1, 2001, dtype=torch.float64)
    from certify._layers import SCALAR_FNS

    ys = SCALAR_FNS[op].f(xs, p)
    tol = 1e-5 + SOUND_FNS[op].jump(p)
    assert float((ys.amin(1) - r_lo).max()) < tol and float((r_hi - ys.amax(1)).max()) < tol


def test_gelu_tanh_has_exactly_two_inflection_points() -> None:
    """The piece structure of tanh-GELU (concave, convex on [-x0, x0], concave) checked on a fine grid
    in high precision; beyond 40 the second derivative's bracket is dominated by -x tanh(v) v'^2 < 0."""
    s2pi = mp.sqrt(2 / mp.pi)
    c = mp.mpf(0.044715)

    def bracket(x: Any) -> Any:
        v, dv = s2pi * (x + c * x**3), s2pi * (1 + 3 * c * x * x)
        return dv - x * mp.tanh(v) * dv * dv + 3 * s2pi * c * x * x

    signs = [bracket(mp.mpf(i) / 100) > 0 for i in range(0, 4001)]
    changes = sum(a != b for a, b in itertools.pairwise(signs))
    assert changes == 1
    from certify._sound_fns import _GT_B

    assert bracket(mp.mpf(_GT_B[0])) > 0 > bracket(mp.mpf(_GT_B[1]))


# ----------------------------------------------------------------------------------------------
# exact network oracle (mpmath)
# ----------------------------------------------------------------------------------------------

def _mp(t: Tensor) -> np.ndarray:
    vals = [mp.mpf(v) for v in t.detach().double().reshape(-1).tolist()]
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out.reshape(tuple(t.shape))


def _vec(f: Any, x: np.ndarray) -> np.ndarray:
    return np.vectorize(f, otypes=[object])(x)


def _linear(m: nn.Linear, x: np.ndarray) -> np.ndarray:
    y = x @ _mp(m.weight).T
    return y if m.bias is None else y + _mp(m.bias)


def _softmax(x: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    e = _vec(mp.exp, x)
    if allowed is not None:
        e = np.where(allowed, e, mp.mpf(0))
    return e / e.sum(axis=-1, keepdims=True)


def _layer_norm(m: nn.LayerNorm, x: np.ndarray) -> np.ndarray:
    k = x.shape[-1]
    mean = x.sum(axis=-1, keepdims=True) / k
    c = x - mean
    var = (c * c).sum(axis=-1, keepdims=True) / k
    y = c / _vec(lambda v: mp.sqrt(v + mp.mpf(m.eps)), var)
    return y * _mp(m.weight) + _mp(m.bias) if m.elementwise_affine else y


def _mha(m: nn.MultiheadAttention, x: np.ndarray, allowed: np.ndarray | None, bias: np.ndarray | None
         ) -> np.ndarray:
    """Self-attention of one sample x (T, E) in exact arithmetic: softmax(q k^T / sqrt(dh) + bias) v over the
    allowed keys."""
    e, h = m.embed_dim, m.num_heads
    dh = e // h
    w, b = _mp(m.in_proj_weight), _mp(m.in_proj_bias)
    q, k, v = (x @ w[j * e:(j + 1) * e].T + b[j * e:(j + 1) * e] for j in range(3))
    outs = []
    for hd in range(h):
        sl = slice(hd * dh, (hd + 1) * dh)
        s = (q[:, sl] @ k[:, sl].T) / mp.sqrt(dh)
        if bias is not None:
            s = s + bias
        outs.append(_softmax(s, allowed) @ v[:, sl])
    o = np.concatenate(outs, axis=1)
    return o @ _mp(m.out_proj.weight).T + _mp(m.out_proj.bias)


def _maxpool(m: nn.MaxPool2d, x: np.ndarray) -> np.ndarray:
    c, hh, ww = x.shape
    k, s, p = m.kernel_size, m.stride, m.padding
    ho, wo = (hh + 2 * p - k) // s + 1, (ww + 2 * p - k) // s + 1
    out = np.empty((c, ho, wo), dtype=object)
    for ci, i, j in itertools.product(range(c), range(ho), range(wo)):
        vals = [x[ci, a, bb] for a in range(i * s - p, i * s - p + k) for bb in range(j * s - p, j * s - p + k)
                if 0 <= a < hh and 0 <= bb < ww]
        out[ci, i, j] = max(vals)
    return out


def _conv(m: nn.Conv2d, x: np.ndarray) -> np.ndarray:
    w, b = _mp(m.weight), _mp(m.bias)
    co, _, kh, kw = w.shape
    p = m.padding[0]
    c, hh, ww = x.shape
    xp = np.full((c, hh + 2 * p, ww + 2 * p), mp.mpf(0), dtype=object)
    xp[:, p:p + hh, p:p + ww] = x
    ho, wo = hh + 2 * p - kh + 1, ww + 2 * p - kw + 1
    out = np.empty((co, ho, wo), dtype=object)
    for i, j in itertools.product(range(ho), range(wo)):
        patch = xp[:, i:i + kh, j:j + kw].reshape(-1)
        out[:, i, j] = w.reshape(co, -1) @ patch + b
    return out


def exact_forward(m: nn.Module, x: np.ndarray) -> np.ndarray:
    """Exact output of ``m`` on one sample (an object array of mpf)."""
    if isinstance(m, nn.Sequential):
        for sub in m:
            x = exact_forward(sub, x)
        return x
    if hasattr(m, "exact"):
        return m.exact(x)  # type: ignore[operator]
    scalar = {nn.LeakyReLU: lambda: _exact_fn("leaky_relu", m.negative_slope),  # type: ignore[attr-defined]
              nn.ELU: lambda: _exact_fn("elu", m.alpha),  # type: ignore[attr-defined]
              nn.SiLU: lambda: _exact_fn("silu", None),
              nn.Softplus: lambda: _exact_fn("softplus", (m.beta, m.threshold)),  # type: ignore[attr-defined]
              nn.GELU: lambda: _exact_fn("gelu" if m.approximate == "none" else "gelu_tanh", None)}  # type: ignore[attr-defined]
    if type(m) in scalar:
        return _vec(scalar[type(m)](), x)
    if isinstance(m, nn.PReLU):
        a = _mp(m.weight)
        return np.where(x >= 0, x, x * a.reshape(-1, *([1] * (x.ndim - 1)))) if a.size > 1 else _vec(
            lambda v: v if v >= 0 else v * a[0], x)
    if isinstance(m, nn.Linear):
        return _linear(m, x)
    if isinstance(m, nn.Conv2d):
        return _conv(m, x)
    if isinstance(m, nn.MaxPool2d):
        return _maxpool(m, x)
    if isinstance(m, nn.Flatten):
        return x.reshape(-1)
    if isinstance(m, nn.ReLU):
        return _vec(lambda v: max(v, mp.mpf(0)), x)
    if isinstance(m, nn.LayerNorm):
        return _layer_norm(m, x)
    if isinstance(m, nn.Softmax):
        return _softmax(x)
    if isinstance(m, nn.LogSoftmax):
        return _vec(mp.log, _softmax(x))
    raise NotImplementedError(type(m).__name__)


class Prod(nn.Module):
    """tanh(a(x)) * sigmoid(b(x)) and a matmul of two activations (products of activations)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        a, b = torch.tanh(self.a(x)), torch.sigmoid(self.b(x))
        return torch.cat([a * b, (a.reshape(-1, 2, 2) @ b.reshape(-1, 2, 2)).flatten(1)], dim=1)

    def exact(self, x: np.ndarray) -> np.ndarray:
        a = _vec(mp.tanh, _linear(self.a, x))
        b = _vec(lambda v: 1 / (1 + mp.exp(-v)), _linear(self.b, x))
        return np.concatenate([a * b, (a.reshape(2, 2) @ b.reshape(2, 2)).reshape(-1)])


class Attn(nn.Module):
    """nn.MultiheadAttention (self-attention) with constant masks, then a linear head."""

    def __init__(self, kind: str, t: int = 3, e: int = 4) -> None:
        super().__init__()
        self.kind = kind
        self.mha = nn.MultiheadAttention(e, 2, batch_first=True)
        self.fc = nn.Linear(t * e, 2)
        self.register_buffer("causal", torch.ones(t, t, dtype=torch.bool).triu(1))
        self.register_buffer("fmask", torch.tensor([[0.0, -math.inf, 0.5], [0.25, 0.0, -1.0], [0.0, 0.0, 0.0]]))
        self.register_buffer("kpm", torch.tensor([[False, False, True]]))

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "none":
            y = self.mha(x, x, x)[0]
        elif self.kind == "causal":
            y = self.mha(x, x, x, attn_mask=self.causal)[0]
        else:
            y = self.mha(x, x, x, attn_mask=self.fmask, key_padding_mask=self.kpm.repeat(x.shape[0], 1))[0]
        return self.fc(y.flatten(1))

    def exact(self, x: np.ndarray) -> np.ndarray:
        t = x.shape[0]
        allowed, bias = None, None
        if self.kind == "causal":
            allowed = ~self.causal.numpy()
        elif self.kind == "float":
            fm = self.fmask.double()
            allowed = (~torch.isneginf(fm) & ~self.kpm[0].reshape(1, t)).numpy()
            bias = _mp(torch.where(torch.isneginf(fm), torch.zeros_like(fm), fm))
        return _linear(self.fc, _mha(self.mha, x, allowed, bias).reshape(-1))


def _nets() -> dict[str, tuple[Any, tuple[int, ...]]]:
    return {
        "pool-activations": (lambda: nn.Sequential(
            nn.Conv2d(1, 2, 2, padding=1), nn.LeakyReLU(0.2), nn.MaxPool2d(2, stride=1, padding=1), nn.Flatten(),
            nn.Linear(2 * 4 * 4, 5), nn.ELU(0.8), nn.Linear(5, 5), nn.GELU(), nn.Linear(5, 4), nn.SiLU(),
            nn.Linear(4, 4), nn.Softplus(beta=2.0, threshold=3.0), nn.Linear(4, 4), nn.PReLU(),
            nn.Linear(4, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 3)), (1, 2, 2)),
        "layernorm-softmax": (lambda: nn.Sequential(
            nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 4), nn.Softmax(dim=-1),
            nn.Linear(4, 4), nn.LogSoftmax(dim=-1)), (4,)),
        "products": (lambda: nn.Sequential(Prod(), nn.Linear(8, 3)), (4,)),
        "attention": (lambda: Attn("none"), (3, 4)),
        "attention-causal": (lambda: Attn("causal"), (3, 4)),
        "attention-float-padding": (lambda: Attn("float"), (3, 4)),
    }


def _region_points(x: Tensor, eps: float, norm: float, gen: torch.Generator, n: int) -> list[np.ndarray]:
    """Exact points of the real region around one input (centre, corners / axis points, random points)."""
    x0 = _mp(x)
    flat = x0.reshape(-1)
    e = mp.mpf(eps)
    d = flat.size
    pts = [x0]
    for _ in range(n):
        if norm == math.inf:
            s = torch.randint(0, 2, (d,), generator=gen).tolist()
            pts.append(np.array([v + (e if b else -e) for v, b in zip(flat, s)], dtype=object).reshape(x0.shape))
            r = (torch.rand(d, generator=gen, dtype=torch.float64) * 2 - 1).tolist()
            pts.append(np.array([v + e * mp.mpf(t) for v, t in zip(flat, r)], dtype=object).reshape(x0.shape))
        else:
            i = int(torch.randint(0, d, (1,), generator=gen))
            for sgn in (e, -e):
                q = flat.copy()
                q[i] = q[i] + sgn
                pts.append(q.reshape(x0.shape))
            g = torch.randn(d, generator=gen, dtype=torch.float64)
            g = (g / g.norm() * 0.999).tolist()
            pts.append(np.array([v + e * mp.mpf(t) for v, t in zip(flat, g)], dtype=object).reshape(x0.shape))
    return pts


def check_contains(model: nn.Module, x: Tensor, eps: float, norm: float, n_random: int = 1) -> None:
    allb = [(m, certify.bounds(model, x, eps, norm=norm, method=m, sound=True)) for m in METHODS]
    gen = torch.Generator().manual_seed(0)
    for i in range(x.shape[0]):
        for p in _region_points(x[i], eps, norm, gen, n_random):
            out = exact_forward(model, p).reshape(-1)
            for m, b in allb:
                lo, hi = b.lower[i].double().tolist(), b.upper[i].double().tolist()
                assert all(mp.mpf(a) <= v <= mp.mpf(c) for a, v, c in zip(lo, out, hi)), (m, i)


def _build(name: str, dtype: torch.dtype) -> tuple[nn.Module, Tensor]:
    make, shape = _nets()[name]
    torch.manual_seed(0)
    model = make()
    gen = torch.Generator().manual_seed(len(name))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.8)
    model = model.to(dtype).eval()
    x = (torch.rand((2, *shape), generator=gen, dtype=torch.float64) * 2 - 1).to(dtype)
    return model, x


@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, marks=pytest.mark.slow), torch.float64])
@pytest.mark.parametrize("name", list(_nets()))
def test_networks_contain_exact_outputs(name: str, dtype: torch.dtype) -> None:
    model, x = _build(name, dtype)
    check_contains(model, x, 0.0, math.inf, n_random=0)
    check_contains(model, x, 0.02, math.inf, n_random=1)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(_nets()))
def test_networks_contain_exact_outputs_sweep(name: str, dtype: torch.dtype) -> None:
    model, x = _build(name, dtype)
    for eps in (1e-6, 0.05):
        check_contains(model, x, eps, math.inf, n_random=3)
        check_contains(model, x, 2 * eps, 2.0, n_random=3)


def test_exact_oracle_agrees_with_torch() -> None:
    """The oracle computes the same functions as the torch modules (to float64 rounding)."""
    for name in _nets():
        model, x = _build(name, torch.float64)
        with torch.no_grad():
            want = model(x)
        for i in range(x.shape[0]):
            got = torch.tensor([float(v) for v in exact_forward(model, _mp(x[i])).reshape(-1)], dtype=torch.float64)
            torch.testing.assert_close(got, want[i], rtol=1e-9, atol=1e-9)


def test_maxpool_sound_crown_is_exact_when_the_winner_is_certain() -> None:
    pool = nn.Sequential(nn.MaxPool2d(2), nn.Flatten()).eval().double()
    x = torch.tensor([[[[5.0, 0.0], [0.1, 0.2]]]], dtype=torch.float64)
    b = certify.bounds(pool, x, 0.5, method="crown", sound=True)
    assert float(b.lower[0, 0]) <= 4.5 <= float(b.lower[0, 0]) + 1e-12
    assert float(b.upper[0, 0]) - 1e-12 <= 5.5 <= float(b.upper[0, 0])


def test_functions_outside_their_domain_are_refused_in_sound_mode() -> None:
    class Log(nn.Module):
        def forward(self, z: Tensor) -> Tensor:
            return torch.log(z)

    with pytest.raises(ValueError, match="log"):
        certify.bounds(Log().eval(), torch.full((1, 3), 0.05, dtype=torch.float64), 0.1, sound=True)


def test_sound_overhead_is_rounding_level_on_a_transformer_block() -> None:
    """The sound bounds of a transformer encoder layer are within 1e-6 (relative) of the default ones."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True, dtype=torch.float64)
    model = nn.Sequential(layer, nn.Flatten(), nn.Linear(32, 3, dtype=torch.float64)).eval()
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s = certify.bounds(model, x, 0.01, method="crown", sound=True)
    d = certify.bounds(model, x, 0.01, method="crown")
    assert bool((s.lower <= d.lower).all() and (s.upper >= d.upper).all())
    assert float(((s.upper - s.lower) / (d.upper - d.lower)).max()) < 1 + 1e-6
