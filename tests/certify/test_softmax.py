"""Softmax and log-softmax as one vector-valued node, bounded by the log-sum-exp bounds of Wei et al. 2023
("Convex Bounds on the Softmax Function with Applications to Robustness Verification", AISTATS; auto_LiRPA's
default): the planes hold on wide, narrow and huge boxes (default and ``sound=True`` constructions), networks'
bounds hold against 10^4 samples plus PGD, CROWN equals an independent dense implementation of the planes, and
``compare_crown_with_ibp`` is never looser than either (issue 14). Agreement with auto_LiRPA itself:
tests/certify/test_auto_lirpa.py."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import certify
from certify import _softmax_alt
from certify._graph import build_graph
from certify._layers import SoftmaxRelax, softmax_range, softmax_relax
from certify._sound_softmax import sound_softmax_range, sound_softmax_relax
from certify.ibp import InputRegion
from tests.certify.test_layers import HandAttention, assert_sound

_SLOW = pytest.mark.slow

# (centre scale, smallest width, largest width): narrow boxes, wide ones, log-uniform widths, and logits far
# beyond exp's float range (|x| up to ~1500: the shift by the row's maximum must keep them finite)
_KINDS = {"narrow": (3.0, 1e-9, 1e-4), "wide": (30.0, 0.0, 40.0), "mixed": (10.0, 1e-6, 30.0),
          "huge": (400.0, 0.0, 100.0)}


def _box(kind: str, n: int, k: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    scale, w0, w1 = _KINDS[kind]
    c = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    if kind == "mixed":
        w = torch.exp(math.log(w0) + torch.rand(n, k, generator=g, dtype=torch.float64) * math.log(w1 / w0))
    else:
        w = w0 + torch.rand(n, k, generator=g, dtype=torch.float64) * (w1 - w0)
    return c - w / 2, c + w / 2


def _points(lo: Tensor, hi: Tensor, m: int, seed: int) -> Tensor:
    """(m, N, K) points of the box: half uniform, half corners (where the planes are farthest from a convex or
    concave function's tangent point)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(m, *lo.shape, generator=g, dtype=torch.float64)
    t[: m // 2] = (t[: m // 2] > 0.5).to(t.dtype)
    return lo + (hi - lo) * t


def _plane(r: SoftmaxRelax, x: Tensor, lower: bool) -> tuple[Tensor, Tensor]:
    """The plane at x (float64) and the magnitude of its terms (for a rounding-level tolerance)."""
    d, w, v, b = (r.dl, r.wl, r.vl, r.bl) if lower else (r.du, r.wu, r.vu, r.bu)
    d, w, v, b = (t.double() for t in (d, w, v, b))
    val = d * x - w * (v * x).sum(-1, keepdim=True) + b
    mag = (d * x).abs() + w.abs() * (v * x).abs().sum(-1, keepdim=True) + b.abs()
    return val, mag


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k", [1, 2, 5, 16])
@pytest.mark.parametrize("kind", list(_KINDS))
def test_planes_and_ranges_hold_on_the_box(kind: str, k: int, dtype: torch.dtype, log: bool) -> None:
    """Every plane of ``softmax_relax`` (computed from the dtype's bounds, slopes rounded to the dtype) is below /
    above the exact function at 10^4 points per box (half of them corners), and the IBP range contains it, up
    to float64's rounding of evaluating the plane and the function."""
    lo, hi = _box(kind, 16, k, seed=k)
    lo, hi = lo.to(dtype), hi.to(dtype)
    lo, hi = torch.minimum(lo, hi), torch.maximum(lo, hi)
    r = softmax_relax(lo, hi, log)
    plo, phi = softmax_range(lo, hi, log)
    x = _points(lo.double(), hi.double(), 10_000, seed=k + 1)
    f = torch.log_softmax(x, -1) if log else torch.softmax(x, -1)
    below, mag_l = _plane(r, x, True)
    above, mag_u = _plane(r, x, False)
    ulp = torch.finfo(torch.float64).eps
    assert bool((below <= f + 8 * ulp * (1 + f.abs() + mag_l)).all())
    assert bool((above >= f - 8 * ulp * (1 + f.abs() + mag_u)).all())
    assert bool((plo.double() <= f + 8 * ulp * (1 + f.abs())).all())
    assert bool((phi.double() >= f - 8 * ulp * (1 + f.abs())).all())
    assert bool(torch.isfinite(r.dl).all() and torch.isfinite(r.bl).all() and torch.isfinite(r.bu).all())


@pytest.mark.parametrize("k", [1, 2, 5, 16])
@pytest.mark.parametrize("kind", list(_KINDS))
def test_sound_planes_and_ranges_hold_on_the_box(kind: str, k: int) -> None:
    """The ``sound=True`` construction (``certify._sound_softmax``): the same, with no tolerance beyond
    float64's rounding of evaluating the plane and the function at the test's points, and never more than a
    rounding-level ``1e-9 (1 + max |x|)`` wider than the default engine's planes at the box centre (the assumed
    error of exp, ``2**-40 (1 + |t|)``, enters the chords' intercepts)."""
    lo, hi = _box(kind, 16, k, seed=10 + k)
    r = sound_softmax_relax(lo, hi)
    plo, phi = sound_softmax_range(lo, hi)
    x = _points(lo, hi, 10_000, seed=k + 2)
    f = torch.softmax(x, -1)
    below, mag_l = _plane(r, x, True)
    above, mag_u = _plane(r, x, False)
    ulp = torch.finfo(torch.float64).eps
    assert bool((below <= f + 4 * ulp * (f + mag_l)).all())
    assert bool((above >= f - 4 * ulp * (f + mag_u)).all())
    assert bool((plo <= f).all()) and bool((phi >= f).all())
    plain = softmax_relax(lo, hi)
    mid = ((lo + hi) / 2).unsqueeze(0)
    tol = 1e-9 * (1 + torch.maximum(lo.abs(), hi.abs()).amax(-1, keepdim=True))
    assert bool((_plane(r, mid, True)[0] >= _plane(plain, mid, True)[0] - tol).all())
    assert bool((_plane(r, mid, False)[0] <= _plane(plain, mid, False)[0] + tol).all())


def _dense_lse_bounds(model: nn.Sequential, x: Tensor, eps: float, log: bool = False) -> tuple[Tensor, Tensor]:
    """An independent implementation, for Linear -> Softmax -> Linear on an L-inf ball: the planes of Wei et al.
    2023 (Eqs. (39)-(40) and (46)-(47) of the paper, tangent point at the box centre) written with dense K x K
    Jacobians, back-substituted through both linear layers and minimised over the input box. ``log``: Linear ->
    LogSoftmax -> Linear with log-softmax's own tangent plane above and that of ``x_i - log SE(x)`` below."""
    w1, b1, w2, b2 = model[0].weight, model[0].bias, model[2].weight, model[2].bias
    z0 = x @ w1.T + b1
    rad = eps * w1.abs().sum(1)
    lo, hi = z0 - rad, z0 + rad  # exact pre-softmax bounds (one linear layer on a box)
    x0 = (lo + hi) / 2
    eye = torch.eye(lo.shape[1], dtype=x.dtype)
    kappa = (torch.exp(hi) - torch.exp(lo)) / (hi - lo)
    beta = (hi * torch.exp(lo) - lo * torch.exp(hi)) / (hi - lo)
    se = (kappa * x0 + beta).sum(1, keepdim=True)
    lk = torch.exp(x0) / se
    jl = lk.unsqueeze(2) * eye - (lk / se).unsqueeze(2) * kappa.unsqueeze(1)
    bl = lk - (jl @ x0.unsqueeze(2)).squeeze(2)
    if log:
        jl = eye - (kappa / se).unsqueeze(1).expand(-1, lo.shape[1], -1)
        bl = x0 - torch.log(se) - (jl @ x0.unsqueeze(2)).squeeze(2)
    e_l, e_u = torch.exp(lo), torch.exp(hi)
    p_lo = e_l / (e_l + e_u.sum(1, keepdim=True) - e_u)
    p_hi = e_u / (e_u + e_l.sum(1, keepdim=True) - e_l)
    c = (p_hi - p_lo) / (torch.log(p_hi) - torch.log(p_lo))
    a = (p_lo * torch.log(p_hi) - p_hi * torch.log(p_lo)) / (torch.log(p_hi) - torch.log(p_lo))
    sm = torch.softmax(x0, 1)
    ju = c.unsqueeze(2) * (eye - sm.unsqueeze(1))
    bu = a + c * torch.log(sm) - (ju @ x0.unsqueeze(2)).squeeze(2)
    if log:
        ju = eye - sm.unsqueeze(1).expand(-1, lo.shape[1], -1)
        bu = torch.log_softmax(x0, 1) - (ju @ x0.unsqueeze(2)).squeeze(2)
    out_lo, out_hi = [], []
    for sign in (1.0, -1.0):
        coef = sign * w2.unsqueeze(0).expand(x.shape[0], -1, -1)  # (N, S, K)
        pos, neg = coef.clamp(min=0), coef.clamp(max=0)
        a_in = pos @ jl + neg @ ju  # (N, S, K): a lower plane of sign * output in the pre-softmax values
        bias = (pos * bl.unsqueeze(1)).sum(2) + (neg * bu.unsqueeze(1)).sum(2) + sign * b2
        a_x = a_in @ w1
        val = (a_x * x.unsqueeze(1)).sum(2) - eps * a_x.abs().sum(2) + (a_in * b1).sum(2) + bias
        (out_lo if sign > 0 else out_hi).append(sign * val)
    return out_lo[0], out_hi[0]


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("eps", [0.01, 0.1, 0.5])
@pytest.mark.parametrize("method", ["crown", "crown-ibp"])
def test_crown_equals_a_dense_implementation_of_the_lse_bounds(method: str, eps: float, log: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """CROWN and CROWN-IBP on Linear -> (Log)Softmax -> Linear with the log-sum-exp planes alone
    (``SOFTMAX_BEST_OF`` off) equal :func:`_dense_lse_bounds` to 1e-9 (float64). The element-wise decomposition
    ``1 / sum_j exp(x_j - x_i)`` differs by up to 0.1 (softmax) and 2.0 (log-softmax) here."""
    monkeypatch.setattr(_softmax_alt, "SOFTMAX_BEST_OF", False)
    torch.manual_seed(5)
    act = nn.LogSoftmax(dim=-1) if log else nn.Softmax(dim=-1)
    model = nn.Sequential(nn.Linear(6, 5), act, nn.Linear(5, 3)).double().eval()
    with torch.no_grad():
        model[0].weight.mul_(3)
    x = torch.rand(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    b = certify.bounds(model, x, eps, method=method, intersect_ibp=False)  # the planes' own bounds
    lo, hi = _dense_lse_bounds(model, x, eps, log)
    torch.testing.assert_close(b.lower.detach(), lo.detach(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(b.upper.detach(), hi.detach(), rtol=1e-9, atol=1e-9)


class ChannelSoftmax(nn.Module):
    """Softmax over the channels of a conv feature map (dim=1 of (N, C, H, W): permuted to the last dimension)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(2, 4, 3, padding=1), nn.Linear(4 * 5 * 5, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.softmax(self.conv(x), dim=1).flatten(1))


def _nets(saturated: bool = True) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """Networks with softmax; ``saturated``: weights scaled up 3-10x (logits of tens), else as initialised."""
    torch.manual_seed(7)
    soft = nn.Sequential(nn.Linear(6, 8), nn.Softmax(dim=-1), nn.Linear(8, 3))
    logsoft = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5), nn.LogSoftmax(dim=1))
    attn = HandAttention()
    chan = ChannelSoftmax()
    for m, s in ((soft, 10.0), (logsoft, 6.0), (attn, 3.0), (chan, 3.0)):
        with torch.no_grad():  # large logits: most softmax rows saturate over the wide regions
            for p in m.parameters():
                p.mul_(s if saturated else 1.0)
    return {"softmax": (soft, (6,)), "log_softmax": (logsoft, (6,)), "attention": (attn, (4, 6)),
            "channel_softmax": (chan, (2, 5, 5))}


class HandSoftmax(nn.Module):
    """(Log-)softmax over the last dimension written as the element-wise decomposition a user could write (and
    certify used before the log-sum-exp planes): differences ``x_j - x_i`` and the sum over j by constant
    matrices, ``exp``, and ``1 / s`` (``-log s``)."""

    def __init__(self, k: int, log: bool = False) -> None:
        super().__init__()
        self.log = log
        eye = torch.eye(k, dtype=torch.float64)
        self.register_buffer("diff", (eye.unsqueeze(0) - eye.unsqueeze(1)).reshape(k * k, k))
        self.register_buffer("summ", torch.kron(eye, torch.ones((1, k), dtype=torch.float64)))

    def forward(self, x: Tensor) -> Tensor:
        s = torch.exp(x @ self.diff.T) @ self.summ.T
        return -torch.log(s) if self.log else torch.reciprocal(s)


class HandAttentionDecomposed(HandAttention):
    """:class:`HandAttention` with its softmax written as :class:`HandSoftmax`."""

    def __init__(self, t: int = 4) -> None:
        super().__init__()
        self.sm = HandSoftmax(t)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        a = self.sm(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]))
        return self.fc((a @ v).mean(dim=1))


def _decomposed_net(name: str, model: nn.Module) -> nn.Module:
    """The same function as ``model`` (a network of :func:`_nets`) with its softmax as :class:`HandSoftmax`."""
    if name == "softmax":
        return nn.Sequential(model[0], HandSoftmax(8), model[2])
    if name == "log_softmax":
        return nn.Sequential(model[0], model[1], model[2], HandSoftmax(5, log=True))
    hand = HandAttentionDecomposed()
    hand.load_state_dict(model.state_dict(), strict=False)
    return hand


_CASES = [pytest.param(torch.float64, math.inf, False, id="float64-linf"),
          pytest.param(torch.float64, math.inf, True, id="float64-linf-sound"),
          pytest.param(torch.float32, math.inf, False, id="float32-linf", marks=_SLOW),
          pytest.param(torch.float32, math.inf, True, id="float32-linf-sound", marks=_SLOW),
          pytest.param(torch.float64, 2.0, False, id="float64-l2", marks=_SLOW),
          pytest.param(torch.float64, 2.0, True, id="float64-l2-sound", marks=_SLOW),
          pytest.param(torch.float32, 2.0, False, id="float32-l2", marks=_SLOW),
          pytest.param(torch.float32, 2.0, True, id="float32-l2-sound", marks=_SLOW)]


@pytest.mark.parametrize(("dtype", "norm", "sound"), _CASES)
@pytest.mark.parametrize("method", ["ibp", "crown", "crown-ibp"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "attention", "channel_softmax", "softmax@unsaturated",
                                  "attention@unsaturated"])
def test_softmax_nets_are_sound_on_wide_and_narrow_regions(name: str, method: str, dtype: torch.dtype,
                                                           norm: float, sound: bool) -> None:
    """10^4 sampled points per input plus PGD minimising and maximising every output stay inside the bounds, on
    weights scaled up 3-10x (logits of tens; "@unsaturated": as initialised), for narrow (1e-4) and wide regions
    (``sound=True``: no violation at all). CROWN takes the best of the log-sum-exp planes, the decomposition
    and IBP (certify._softmax_alt)."""
    model, shape = _nets(saturated="@" not in name)[name.split("@")[0]]
    model = model.to(dtype).eval()
    x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(8)).to(dtype)
    for eps in ((1e-4, 0.3) if norm == math.inf else (1e-4, 1.0)):
        assert_sound(model, x, eps, norm=norm, method=method, samples=10_000, pgd_steps=10, sound=sound)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "attention", "channel_softmax"])
def test_crown_is_not_looser_than_ibp_and_the_comparison_never_looser_than_either(name: str) -> None:
    """On the saturated softmax networks (float64; L-inf 1e-3 to 0.3 and L2): CROWN and CROWN-IBP are never
    looser than IBP, element by element (the log-sum-exp planes alone lose to IBP on 8-92% of these bounds: IBP
    is intersected, certify._softmax_alt), and ``compare_crown_with_ibp`` is never looser than either."""
    model, shape = _nets()[name]
    model = model.double().eval()
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    for eps, norm in ((1e-3, math.inf), (0.03, math.inf), (0.3, math.inf), (0.3, 2.0)):
        ibp = certify.bounds(model, x, eps, norm=norm, method="ibp")
        for method in ("crown", "crown-ibp"):
            plain = certify.bounds(model, x, eps, norm=norm, method=method)
            both = certify.bounds(model, x, eps, norm=norm, method=method, compare_crown_with_ibp=True)
            assert bool((both.lower >= torch.maximum(plain.lower, ibp.lower) - 1e-12).all())
            assert bool((both.upper <= torch.minimum(plain.upper, ibp.upper) + 1e-12).all())
            assert bool((plain.lower >= ibp.lower - 1e-12).all() and (plain.upper <= ibp.upper + 1e-12).all())


_SAT_CASES = [pytest.param(False, id="default"), pytest.param(True, id="sound", marks=_SLOW)]


@pytest.mark.parametrize("sound", _SAT_CASES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "attention"])
def test_crown_on_saturated_softmax_is_not_wider_than_the_decomposition_nor_ibp(name: str, sound: bool) -> None:
    """On saturated softmax (logits of tens, float64, L-inf 1e-3 to 0.3 and L2), every CROWN bound is at least as
    tight as CROWN's on the same network with its softmax written as the element-wise decomposition
    (:class:`HandSoftmax`, what certify did before the log-sum-exp planes) and as IBP's (``sound=True``: the sound
    bounds of each). The planes alone were up to 52% wider than the decomposition in mean width here, and wider
    than IBP on up to 92% of the bounds."""
    model, shape = _nets()[name]
    model = model.double().eval()
    hand = _decomposed_net(name, model).double().eval()
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(hand(x), model(x), rtol=1e-12, atol=1e-12)
    compared = 0
    for eps, norm in ((1e-3, math.inf), (0.03, math.inf), (0.1, math.inf), (0.3, math.inf), (0.3, 2.0)):
        ours = certify.bounds(model, x, eps, norm=norm, method="crown", sound=sound)
        others = [certify.bounds(model, x, eps, norm=norm, method="ibp", sound=sound)]
        # the default engine uses the decomposition only where its rounding stays small (DECOMPOSITION_RANGE;
        # beyond it, the decomposition's default-engine bounds -- HandSoftmax's too -- can be wrong by more than
        # rounding: test_decomposition_out_of_range_is_not_used_and_bounds_hold); sound=True always uses it
        if sound or _softmax_alt.within_range(build_graph(model, x, torch.float64),
                                              InputRegion(x, torch.tensor([eps], dtype=torch.float64), norm, None)):
            # the decomposition's own CROWN bounds (not intersected with its IBP bounds)
            others.append(certify.bounds(hand, x, eps, norm=norm, method="crown", sound=sound, intersect_ibp=False))
            compared += 1
        for other in others:
            tol = 1e-12 * (1 + other.upper.abs().max())
            assert bool((ours.lower >= other.lower - tol).all()), (eps, norm)
            assert bool((ours.upper <= other.upper + tol).all()), (eps, norm)
    assert compared >= 4


class _Swing(nn.Module):
    """One input x in [-0.5, 1] -> logits (0, a x, -10 x) -> softmax or log-softmax: the differences swing
    from about -76 to +38, so the decomposition's sums hold terms of e^38 next to the exact 1."""

    def __init__(self, a: float, log: bool) -> None:
        super().__init__()
        self.log = log
        self.lin = nn.Linear(1, 3, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.0], [a], [-10.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x)
        return torch.log_softmax(z, -1) if self.log else torch.softmax(z, -1)


@pytest.mark.parametrize("method", ["crown", "alpha-crown"])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype,a", [(torch.float64, 66.0), (torch.float32, 26.0)], ids=["float64", "float32"])
def test_decomposition_out_of_range_is_not_used_and_bounds_hold(dtype: torch.dtype, a: float, log: bool,
                                                                  method: str) -> None:
    """Found by review (session 10): on this network the default engine's bound of the decomposition's sum came
    out as 2.0 for a true minimum of 1.0 (rounding of terms of e^38), and CROWN's best-of returned softmax's upper
    bound 0.5 (log-softmax: -0.693) where the network reaches 1.0 (0.0) at x = 1. Out of DECOMPOSITION_RANGE the
    decomposition is not used and the bounds hold at the region's end points and on a grid."""
    model = _Swing(a, log).to(dtype).eval()
    x = torch.tensor([[0.25]], dtype=dtype)
    assert not _softmax_alt.within_range(build_graph(model, x, dtype),
                                         InputRegion(x, torch.tensor([0.75], dtype=dtype), math.inf, None))
    b = certify.bounds(model, x, 0.75, method=method)
    grid = torch.linspace(-0.5, 1.0, 2001, dtype=dtype).unsqueeze(1)
    with torch.no_grad():
        y = model(grid)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert bool((y <= b.upper + tol).all()) and bool((y >= b.lower - tol).all())


def test_decomposition_is_skipped_beyond_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond ``DECOMPOSITION_MAX`` pairwise differences, CROWN is the element-wise best of the log-sum-exp planes
    and IBP alone (the decomposition's CROWN pass grows as K^3 per softmax row)."""
    model, shape = _nets()["softmax"]
    model = model.double().eval()
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    full = certify.bounds(model, x, 0.1, method="crown")
    monkeypatch.setattr(_softmax_alt, "DECOMPOSITION_MAX", 8 * 8 - 1)  # the net's softmax: 8 x 8 differences
    capped = certify.bounds(model, x, 0.1, method="crown")
    monkeypatch.setattr(_softmax_alt, "SOFTMAX_BEST_OF", False)
    planes = certify.bounds(model, x, 0.1, method="crown")
    ibp = certify.bounds(model, x, 0.1, method="ibp")
    torch.testing.assert_close(capped.lower, torch.maximum(planes.lower, ibp.lower), rtol=0, atol=0)
    torch.testing.assert_close(capped.upper, torch.minimum(planes.upper, ibp.upper), rtol=0, atol=0)
    assert float((full.upper - full.lower).mean()) < float((capped.upper - capped.lower).mean())
