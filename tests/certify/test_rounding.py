"""Rounding in the default engine (not ``sound=True``): IBP's centre/radius form ``c' -/+ r'`` of an affine layer
is accurate at the scale of the layer's largest values, so where an input entry's ends differ by many orders of
magnitude (a sum of exponentials: ``[1, e^38]``), a small bound is the difference of two huge numbers and came out
on the wrong side of the true one: a user's hand-written softmax returned an upper bound 0.5 where the network
reaches 0.99 (float32), or refused the model because a sum of exponentials ``>= 1`` got a lower bound 0 (issue 14,
found after the session-10 fix of certify's own decomposition). Such nodes are now bounded from the end points
(``certify.ibp.end_point_nodes``); these tests fail on the old code."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import certify
from certify import ibp
from certify._graph import Normalize, build_graph
from tests.certify.test_softmax import HandSoftmax

_METHODS = ("ibp", "crown-ibp", "crown", "alpha-crown")


class _UserSwing(nn.Module):
    """One input x in [-0.5, 1] -> logits (0, a x, -10 x) -> a user's hand-written (log-)softmax (differences,
    exp, sum, reciprocal / -log): the sums hold terms up to e^(1.5 a) next to the exact 1."""

    def __init__(self, a: float, log: bool) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 3, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.0], [a], [-10.0]]))
        self.sm = HandSoftmax(3, log=log)

    def forward(self, x: Tensor) -> Tensor:
        return self.sm(self.lin(x))


def _holds(b: certify.Bounds, y: Tensor, tol: float) -> bool:
    slack = tol * (1 + y.abs())
    return bool((y >= b.lower - slack).all()) and bool((y <= b.upper + slack).all())


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype,a", [(torch.float64, 20.0), (torch.float64, 23.5), (torch.float64, 66.0),
                                     (torch.float32, 8.0), (torch.float32, 26.0)],
                         ids=["float64-20", "float64-23.5", "float64-66", "float32-8", "float32-26"])
def test_hand_written_softmax_bounds_hold(dtype: torch.dtype, a: float, log: bool) -> None:
    """On the old code, with every method of the default engine: float64 a = 23.5 gave an upper bound 0.024 below
    the network's value (a = 20: 1e-4), float32 a = 8 the upper bound 0.5 where the network reaches 0.99 (log-softmax:
    0.69 off), and a = 66 / 26 a ValueError (the reciprocal's input, a sum >= 1, bounded below by 0). Now every
    method runs and its bounds contain the network's values on a grid of 2001 points of the region."""
    model = _UserSwing(a, log).to(dtype).eval()
    x = torch.tensor([[0.25]], dtype=dtype)
    grid = torch.linspace(-0.5, 1.0, 2001, dtype=dtype).unsqueeze(1)
    with torch.no_grad():
        y = model(grid)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    for method in _METHODS:
        b = certify.bounds(model, x, 0.75, method=method)
        assert _holds(b, y, tol), (method, b.lower, b.upper, y.min(0).values, y.max(0).values)


class _ExpSum(nn.Module):
    """x in [0, 1] -> sum_j exp(w_j x + c_j) (w_0 = c_0 = 0: the term 1), optionally its reciprocal."""

    def __init__(self, w: list[float], c: list[float], recip: bool) -> None:
        super().__init__()
        self.recip = recip
        self.lin = nn.Linear(1, len(w))
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor(w).reshape(-1, 1))
            self.lin.bias.copy_(torch.tensor(c))

    def forward(self, x: Tensor) -> Tensor:
        s = torch.exp(self.lin(x)).sum(-1, keepdim=True)
        return torch.reciprocal(s) if self.recip else s


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_sums_of_exponentials_bounds_hold(dtype: torch.dtype) -> None:
    """60 seeded sums of 2-4 exponentials whose largest term reaches about 2^(mantissa bits): on the old code, IBP's
    lower bound of the sum lay above the sum's minimum, beyond 16 ulps of the value, on 9 (float64) / 10 (float32)
    of them (16.0 for a true 7.35 in a first sweep), and the reciprocal was refused (its input's lower bound <= 0)
    on 38 / 38. Now IBP and CROWN-IBP hold to 16 ulps of the value on every one, the sum and its reciprocal (the
    sum's weights are >= 0: its bounds are computed from the end points)."""
    gen = torch.Generator().manual_seed(0)
    top = 37.0 if dtype == torch.float64 else 17.0
    grid = torch.linspace(0, 1, 1001, dtype=dtype).unsqueeze(1)
    x = torch.tensor([[0.5]], dtype=dtype)
    bad = []
    for trial in range(60):
        k = int(torch.randint(2, 5, (1,), generator=gen))
        w = [0.0, *(torch.rand(k - 1, generator=gen) * 2 * top).tolist()]
        c = [0.0, *(torch.rand(k - 1, generator=gen) * 2 - 1).tolist()]
        for recip in (False, True):
            model = _ExpSum(w, c, recip).to(dtype).eval()
            with torch.no_grad():
                y = model(grid)
            for method in ("ibp", "crown-ibp"):
                b = certify.bounds(model, x, 0.5, method=method)
                slack = 16 * torch.finfo(dtype).eps * y.abs()
                if not (bool((y >= b.lower - slack).all()) and bool((y <= b.upper + slack).all())):
                    bad.append((trial, recip, method, float(b.lower), float(y.min()), float(b.upper), float(y.max())))
    assert not bad, bad


class _MixedSign(nn.Module):
    """x in [0, 1] -> h = (exp(w x), relu(x)) -> y = h_0 - 0.5 h_1 (a mixed-sign layer whose input entries span
    [1, e^w] and [0, 1]; y >= 0.5) -> 1 / y (or y itself)."""

    def __init__(self, w: float, recip: bool = True) -> None:
        super().__init__()
        self.recip = recip
        self.a = nn.Linear(1, 2, bias=False)
        self.b = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[w], [1.0]]))
            self.b.weight.copy_(torch.tensor([[1.0, -0.5]]))

    def forward(self, x: Tensor) -> Tensor:
        h = self.a(x)
        h = torch.cat([torch.exp(h[:, :1]), torch.relu(h[:, 1:])], 1)
        return torch.reciprocal(self.b(h)) if self.recip else self.b(h)


@pytest.mark.parametrize("dtype,ws", [(torch.float64, (35.5, 36.0, 37.0, 38.5)), (torch.float32, (15.0, 16.5, 17.0))],
                         ids=["float64", "float32"])
def test_mixed_sign_layer_before_a_reciprocal_is_bounded_from_its_end_points(dtype: torch.dtype,
                                                                             ws: tuple[float, ...]) -> None:
    """The old code's centre/radius lower bound of ``y`` (true 0.5, terms of e^w) rounded to <= 0, and every method
    refused the model (ValueError: the reciprocal's input reaches 0). Now the layer before the reciprocal is bounded
    from its end points: IBP's upper bound of ``1 / y`` is 2 (within the reciprocal's outward rounding), every
    method's bounds hold on a grid."""
    grid = torch.linspace(0, 1, 2001, dtype=dtype).unsqueeze(1)
    x = torch.tensor([[0.5]], dtype=dtype)
    eps = torch.finfo(dtype).eps
    for w in ws:
        model = _MixedSign(w).to(dtype).eval()
        with torch.no_grad():
            y = model(grid)
        for method in _METHODS:
            b = certify.bounds(model, x, 0.5, method=method)
            assert _holds(b, y, 4 * eps), (w, method)
            if method == "ibp":
                assert 2.0 <= float(b.upper.detach()) <= 2.0 * (1 + 8 * eps), (w, b.upper)


@pytest.mark.parametrize("dtype,ws", [(torch.float64, (35.5, 36.0, 37.0, 38.5)), (torch.float32, (15.0, 16.5, 17.0))],
                         ids=["float64", "float32"])
def test_mixed_sign_layer_after_exp_is_bounded_from_its_end_points(dtype: torch.dtype, ws: tuple[float, ...]) -> None:
    """The same layer as the network's output (no sensitive function after it): its input holds ``[1, e^w]`` from an
    exp, so it is bounded from the end points (``certify.ibp.SPREADING``) and IBP's lower bound is 0.5 (the exact
    interval value ``1 - 0.5``) to a few ulps; in the centre/radius form (the old code, and the first version of
    the fix, which took the end points only before sensitive functions) it came out as 0.0 at w = 37 (float64) /
    16.5 (float32): rounding at the scale of ``e^w``."""
    x = torch.tensor([[0.5]], dtype=dtype)
    eps = torch.finfo(dtype).eps
    grid = torch.linspace(0, 1, 2001, dtype=dtype).unsqueeze(1)
    for w in ws:
        model = _MixedSign(w, recip=False).to(dtype).eval()
        with torch.no_grad():
            y = model(grid)
        for method in _METHODS:
            b = certify.bounds(model, x, 0.5, method=method)
            assert _holds(b, y, 4 * eps), (w, method)
        lo = float(certify.bounds(model, x, 0.5, method="ibp").lower.detach())
        assert abs(lo - 0.5) <= 4 * eps, (w, lo)


class _ExpOut(nn.Module):
    """x in [0, 1] -> (exp(w x), exp(0 x)): outputs [1, e^w] and [1, 1]."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[w], [0.0]]))

    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(self.lin(x))


@pytest.mark.parametrize("dtype,ws", [(torch.float64, (36.5, 37.0, 38.0)), (torch.float32, (15.5, 17.0, 17.4))],
                         ids=["float64", "float32"])
def test_margins_of_exp_outputs_are_bounded_from_the_end_points(dtype: torch.dtype, ws: tuple[float, ...]) -> None:
    """The margin ``y_0 - y_1`` of outputs ``[1, e^w]`` and ``[1, 1]`` (its minimum 0 at x = 0): IBP's lower bound is
    0 to a few ulps of 1 (the output box may hold entries of very different ends: the spec is applied from the end
    points); in the centre/radius form it was off by the rounding of ``e^w`` (-1.0 at w = 37 and -2.0 at w = 38 in
    float64, -1.0 / -2.0 at w = 17 / 17.4 in float32: loose, on the safe side in this configuration). Every method's
    margin bounds hold on a grid."""
    x = torch.tensor([[0.5]], dtype=dtype)
    spec = torch.tensor([[[1.0, -1.0]]], dtype=dtype)
    eps = torch.finfo(dtype).eps
    grid = torch.linspace(0, 1, 2001, dtype=dtype).unsqueeze(1)
    for w in ws:
        model = _ExpOut(w).to(dtype).eval()
        with torch.no_grad():
            m = model(grid) @ spec[0].T
        for method in _METHODS:
            b = certify.bounds(model, x, 0.5, method=method, spec=spec)
            assert _holds(b, m, 4 * eps), (w, method, b.lower)
        lo = float(certify.bounds(model, x, 0.5, method="ibp", spec=spec).lower.detach())
        assert -8 * eps <= lo <= 0.0, (w, lo)


class _Mix(nn.Module):
    """Every kind of node IBP bounds from the end points: conv, BatchNorm, Normalize, a negative scalar factor, a
    subtraction, average pooling, linear layers, exp and a reciprocal."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = Normalize([0.4, 0.5], [0.3, 0.2])
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 3 * 3, 8)
        self.fc2 = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn(self.conv(self.norm(x))))
        h = torch.tanh(self.conv2(h) * -0.7 - h)
        h = self.pool(h).flatten(1)
        z = torch.exp(self.fc(h))
        return torch.reciprocal(1.5 + z) @ self.fc2.weight.T


def _mix(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(3)
    m = _Mix()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(-1.5, 1.5)
    return m.to(dtype).eval()


def test_end_point_nodes_are_only_those_where_rounding_can_matter() -> None:
    """The flags: a plain ReLU network (mixed-sign weights, no scale-sensitive function) keeps the centre/radius
    form everywhere (IBP's fast path, unchanged cost); average pooling and sums (weights >= 0) and the affine chain
    before exp/reciprocal/log/rsqrt/softmax take the end points."""
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64)
    relu_net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10),
                             nn.ReLU(), nn.Linear(10, 3)).double().eval()
    g = build_graph(relu_net, x, torch.float64)
    assert not any(ibp.end_point_nodes(g))
    # nor with bounded activations, GELU, max-pooling, or a log-softmax at the end (its error stays at the logits')
    act_net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 10),
                            nn.GELU(), nn.Linear(10, 8), nn.Sigmoid(), nn.Linear(8, 3),
                            nn.LogSoftmax(dim=1)).double().eval()
    g = build_graph(act_net, x, torch.float64)
    flags = ibp.end_point_nodes(g)
    assert [n.op for n, f in zip(g.nodes, flags, strict=True) if f] == ["linear"]  # only the last, before it
    g = build_graph(_mix(torch.float64), x, torch.float64)
    flags = {n.name: f for n, f in zip(g.nodes, ibp.end_point_nodes(g), strict=True)}
    ops = {n.name: n.op for n in g.nodes}
    assert flags["pool"] and flags["fc"]  # weights >= 0; the layer before exp
    assert [k for k, f in flags.items() if f and ops[k] not in ("conv", "linear", "dense", "affine", "add")] == []
    # mixed signs, reaching exp through ReLU / tanh / pooling / fc: end points too (an absolute error passes through
    # those activations at its size; session-11 reviews)
    assert flags["conv"] and flags["conv2"]
    assert any(f and ops[k] == "affine" for k, f in flags.items())  # the constant added before the reciprocal


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_end_point_form_equals_the_centre_radius_form_up_to_rounding(dtype: torch.dtype,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the input boxes have no entries of very different ends, both forms give the same bounds up to rounding:
    every affine node of :class:`_Mix` (conv, BatchNorm with negative scales, Normalize, a negative scalar, a
    subtraction, pooling, grouped conv, linear) bounded from the end points equals the centre/radius form; the
    spec (margins) too. The end points' bounds hold on sampled points."""
    model = _mix(dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 2, 6, 6, generator=gen, dtype=dtype)
    spec = torch.randn(3, 4, 5, generator=gen, dtype=dtype)
    ops = ("linear", "conv", "dense", "affine", "add")

    def run() -> list[certify.Bounds]:
        return [certify.bounds(model, x, 0.02, method=m, spec=s) for m in ("ibp", "crown-ibp") for s in (None, spec)]

    base = run()
    monkeypatch.setattr(ibp, "end_point_nodes", lambda g: [n.op in ops for n in g.nodes])
    ends = run()
    monkeypatch.setattr(ibp, "end_point_nodes", lambda g: [False] * len(g.nodes))
    centre = run()
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for b0, b1, b2 in zip(base, ends, centre, strict=True):
        for t in (b0, b1):
            torch.testing.assert_close(t.lower, b2.lower, rtol=tol, atol=tol)
            torch.testing.assert_close(t.upper, b2.upper, rtol=tol, atol=tol)
    pts = x.unsqueeze(1) + 0.02 * (2 * torch.rand(3, 256, 2, 6, 6, generator=gen, dtype=dtype) - 1)
    with torch.no_grad():
        y = model(pts.reshape(-1, 2, 6, 6)).reshape(3, 256, 5)
    slack = 1e-5 if dtype == torch.float32 else 1e-12
    assert bool((y >= ends[0].lower.unsqueeze(1) - slack).all() and (y <= ends[0].upper.unsqueeze(1) + slack).all())
    m = torch.einsum("nsk,npk->nps", spec, y)
    assert bool((m >= ends[1].lower.unsqueeze(1) - slack).all() and (m <= ends[1].upper.unsqueeze(1) + slack).all())


def test_end_point_bounds_are_differentiable() -> None:
    """Certified training back-propagates through IBP: the end points' form (weights split by sign) passes
    gradients to the parameters, equal to finite differences."""
    model = _mix(torch.float64).train(False)
    x = torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    p = model.fc.weight

    def f(w: Tensor) -> Tensor:
        with torch.no_grad():
            p.copy_(w)
        return certify.bounds(model, x, 0.01, method="ibp").upper.sum()

    w0 = p.detach().clone()
    b = certify.bounds(model, x, 0.01, method="ibp")
    b.upper.sum().backward()
    g = p.grad
    assert g is not None and bool(g.abs().sum() > 0)
    d = torch.zeros_like(w0)
    d[0, 0] = 1e-6
    fd = (f(w0 + d) - f(w0 - d)) / 2e-6
    f(w0)
    assert math.isclose(float(fd), float(g[0, 0]), rel_tol=1e-5, abs_tol=1e-9)


class _ReluLog(nn.Module):
    """softplus -> a mixed-sign Linear -> (max-pooling ->) ReLU -> log: the Linear's small lower bound reaches the
    pole of log through the activation (found by the session-11 review)."""

    def __init__(self, pool: bool) -> None:
        super().__init__()
        self.sp = nn.Softplus()
        self.l1 = nn.Linear(3, 2 if pool else 1)
        with torch.no_grad():
            w = torch.tensor([-0.7485385197745462, -1.064216420146983, 1.2997526217264646])
            self.l1.weight.copy_(w.expand_as(self.l1.weight))
            self.l1.bias.fill_(7.901694436101132)
        self.pool = pool

    def forward(self, z: Tensor) -> Tensor:
        h = self.l1(self.sp(z))
        if self.pool:
            h = nn.functional.max_pool1d(h.unsqueeze(1), 2).flatten(1)
        return torch.log(torch.relu(h))


@pytest.mark.parametrize("pool", [False, True], ids=["relu", "maxpool"])
def test_layer_reaching_log_through_an_activation_is_bounded_from_its_end_points(pool: bool) -> None:
    """The Linear before ReLU/max-pooling -> log is an end-point node: in centre/radius form its lower bound
    (~1e-15 over a box at the scale ~40) rounded to the wrong side and IBP's lower bound of the log was -32.58 where
    the network reaches -33.05 at a corner of the region (float64; fails on the old code)."""
    z = torch.tensor([[-13.73325963704788, -19.449661390680927, 8.662662698053254]], dtype=torch.float64)
    eps = 21.36745906664077
    model = _ReluLog(pool).double().eval().requires_grad_(False)
    w = model.l1.weight[0]
    corner = torch.where(w >= 0, z - eps, z + eps)  # the region's point minimising the Linear
    with torch.no_grad():
        at_corner = model(corner)
    g = build_graph(model, z, torch.float64)
    assert ibp.end_point_nodes(g)[[n.op for n in g.nodes].index("linear")]
    for method in ("ibp", "crown-ibp", "crown"):
        try:
            b = certify.bounds(model, z, eps, method=method)
        except ValueError as e:  # CROWN's max-pooling relaxation reaches 0 before the log: refused, not wrong
            assert method != "ibp" and "outside its domain" in str(e)
            continue
        assert bool((b.lower <= at_corner).all()), (method, b.lower, at_corner)


class _SoftplusExp(nn.Module):
    """logits softplus(e^(a x)), softplus(d) for x in [0, 1]: the exp's box [1, e^a] keeps its spread through the
    softplus, so the margin spec must be bounded from the end points."""

    def __init__(self, a: float, d: float) -> None:
        super().__init__()
        self.a, self.d = a, d

    def forward(self, x: Tensor) -> Tensor:
        e = torch.exp(self.a * x)
        return nn.functional.softplus(torch.cat([e, self.d + 0.0 * e], 1))


@pytest.mark.parametrize("dtype,a", [(torch.float32, 16.75), (torch.float64, 37.0)], ids=["float32", "float64"])
def test_margins_through_a_smooth_activation_of_exp_are_not_verified_wrongly(dtype: torch.dtype, a: float) -> None:
    """x = 0.5, eps = 0.5 on [0, 1]: x' = 0 is in the region and the network gives class 1 there, so no method may
    verify class 0; IBP did (margin lower bound +1 for a true minimum < 0: softplus was not followed as spreading;
    found by the session-11 review; fails on the old code for some d)."""
    x = torch.tensor([[0.5]], dtype=dtype)
    y = torch.tensor([0])
    for d in (1.1, 1.3, 1.5, 2.0, 3.0):
        model = _SoftplusExp(a, d).eval()
        with torch.no_grad():
            wrong = model(torch.zeros(1, 1, dtype=dtype)).argmax(1).item() != 0
        if not wrong:
            continue
        for method in _METHODS:
            assert not bool(certify.verify(model, x, y, 0.5, method=method, domain=(0.0, 1.0))[0]), (d, method)


def test_overflowed_bounds_stay_infinite() -> None:
    """exp(100 x) on x in [0.8, 1.0] (float32): the network reaches inf at x = 1; IBP's upper bound was the largest
    finite float 3.4e38 (``nan_to_num``'s default maps inf to it; found by the session-11 review)."""

    class E(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.exp(100 * x)

    b = certify.bounds(E().eval(), torch.tensor([[0.9]]), 0.1, method="ibp")
    assert math.isinf(b.upper.item()) and b.upper.item() > 0


class _BoundedActReciprocal(nn.Module):
    """softplus -> a mixed-sign Linear -> tanh (or sigmoid - 0.5) -> reciprocal: the Linear's tiny lower bound
    reaches the pole through a bounded Lipschitz activation (found by the second session-11 review)."""

    def __init__(self, w: list[float], b: float, act: str) -> None:
        super().__init__()
        self.sp = nn.Softplus()
        self.l1 = nn.Linear(3, 1)
        with torch.no_grad():
            self.l1.weight.copy_(torch.tensor([w]))
            self.l1.bias.fill_(b)
        self.act = act

    def forward(self, z: Tensor) -> Tensor:
        h = self.l1(self.sp(z))
        if self.act == "silu":  # hand-written: a product node
            return torch.reciprocal(h * torch.sigmoid(h))
        h = torch.tanh(h) if self.act == "tanh" else torch.sigmoid(h) - 0.5
        return torch.reciprocal(h)


@pytest.mark.parametrize("act,z,eps,w,b", [
    ("tanh", [-18.723382654036726, -9.782196804694248, -11.887606608393414], 11.174416542053223,
     [0.2089150663943813, 2.351330868583358, -0.04604491908445873], 0.01836403250854513),
    ("sigmoid", [19.376602384957398, -17.37142378782511, -17.854706445150754], 23.692264556884766,
     [1.6525064215249683, 0.40672216007443845, -0.03919850059603127], 0.20701009941502166),
    ("silu", [-18.723382654036726, -9.782196804694248, -11.887606608393414], 11.174416542053223,
     [0.2089150663943813, 2.351330868583358, -0.04604491908445873], 0.01836403250854513)],
    ids=["tanh", "sigmoid", "hand_silu"])
def test_layer_reaching_a_pole_through_a_bounded_activation_is_bounded_from_its_end_points(
        act: str, z: list[float], eps: float, w: list[float], b: float) -> None:
    """IBP's (and alpha-CROWN's) upper bound of the reciprocal was below the network's value at a corner of the
    region (float64: 270241315.47 for 270241380.33 with sigmoid), so verify(method="ibp") certified a class the
    corner does not get; the Linear before tanh/sigmoid is now an end-point node (fails on the old code)."""
    zt = torch.tensor([z], dtype=torch.float64)
    model = _BoundedActReciprocal(w, b, act).double().eval().requires_grad_(False)
    corner = torch.where(torch.tensor(w, dtype=torch.float64) >= 0, zt - eps, zt + eps)  # minimises the Linear
    with torch.no_grad():
        at_corner = model(corner)
    for method in _METHODS:
        bb = certify.bounds(model, zt, eps, method=method)
        assert bool((bb.upper >= at_corner).all()), (method, bb.upper, at_corner)
