"""alpha-CROWN and branch-and-bound on the layers beyond ReLU: sound bounds for every layer family (sampling +
PGD), never looser than CROWN, LeakyReLU/PReLU slopes really optimised; verify_complete never says
``verified`` wrongly on small networks with LeakyReLU or max pooling (a dense grid of the input box + PGD)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import certify
from certify.attacks import pgd_minimize


class _Products(nn.Module):
    """A product of two activations and a softmax-weighted sum (attention's pieces)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.fc = nn.Linear(6, 8), nn.Linear(6, 8), nn.Linear(8 + 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        a, b = torch.tanh(self.a(x)), torch.sigmoid(self.b(x))
        m = (a.reshape(-1, 2, 4) @ b.reshape(-1, 4, 2)).flatten(1)
        return self.fc(torch.cat([a * b, m], dim=1))


class _Attention(nn.Module):
    """Single-head self-attention written by hand (q k^T / sqrt(d), softmax, @ v)."""

    def __init__(self, e: int = 6) -> None:
        super().__init__()
        self.q, self.k, self.v, self.fc = nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, 3)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        return self.fc((a @ v).mean(dim=1))


def _family(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)

    def mlp(act: nn.Module, act2: nn.Module | None = None) -> nn.Module:
        return nn.Sequential(nn.Linear(6, 12), act, nn.Linear(12, 12), act2 if act2 is not None else nn.ReLU(),
                             nn.Linear(12, 3))

    models: dict[str, tuple[nn.Module, tuple[int, ...]]] = {
        "leaky_relu": (mlp(nn.LeakyReLU(0.1), nn.LeakyReLU(0.2)), (6,)),
        "prelu": (nn.Sequential(nn.Conv2d(2, 3, 3), nn.PReLU(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.ReLU(),
                                nn.Linear(8, 3)), (2, 6, 6)),
        "elu": (mlp(nn.ELU()), (6,)),
        "gelu": (mlp(nn.GELU()), (6,)),
        "silu": (mlp(nn.SiLU()), (6,)),
        "softplus": (mlp(nn.Softplus(beta=2.0)), (6,)),
        "maxpool": (nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(3 * 3 * 3, 3)), (2, 6, 6)),
        "softmax": (nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.Softmax(dim=-1), nn.Linear(5, 3)),
                    (6,)),
        "layernorm": (nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.LayerNorm(5), nn.Linear(5, 3)),
                      (6,)),
        "products": (_Products(), (6,)),
        "attention": (_Attention(), (4, 6)),
    }
    model, shape = models[name]
    return model.double().eval(), shape


FAMILIES = ["leaky_relu", "prelu", "elu", "gelu", "silu", "softplus", "maxpool", "softmax", "layernorm", "products",
            "attention"]


@pytest.mark.parametrize("name", FAMILIES)
def test_alpha_crown_is_sound_and_never_looser_than_crown(name: str) -> None:
    model, shape = _family(name)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((2, *shape), generator=gen, dtype=torch.float64)
    eps = 0.1
    b = certify.bounds(model, x, eps, method="alpha-crown", iterations=10)
    crown = certify.bounds(model, x, eps)
    assert bool((b.lower >= crown.lower - 1e-9).all() and (b.upper <= crown.upper + 1e-9).all())
    n = 2000
    u = torch.rand((2, n, *shape), generator=gen, dtype=torch.float64) * 2 - 1
    u[:, : n // 4] = u[:, : n // 4].sign()  # corners
    with torch.no_grad():
        out = model((x.unsqueeze(1) + eps * u).reshape(-1, *shape)).reshape(2, n, -1)
    assert bool((out >= b.lower.unsqueeze(1) - 1e-9).all() and (out <= b.upper.unsqueeze(1) + 1e-9).all())
    k = b.lower.shape[1]
    xr = x.repeat_interleave(2 * k, 0)
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(k).repeat(2)
    idx = torch.arange(k).repeat_interleave(2).repeat(2)
    _, val = pgd_minimize(lambda z: sign * model(z).gather(1, idx[:, None]).squeeze(1), xr, eps, steps=20)
    val = (val * sign).reshape(2, k, 2)
    assert bool((val[..., 0] >= b.lower - 1e-9).all() and (val[..., 1] <= b.upper + 1e-9).all())


def test_leaky_relu_and_prelu_slopes_are_optimised() -> None:
    """The lower slope ``s`` in ``[a, 1]`` of an unstable LeakyReLU/PReLU is a free parameter: optimising it
    tightens the bounds of a network without any ReLU."""
    torch.manual_seed(0)
    for act, act2 in ((nn.LeakyReLU(0.1), nn.LeakyReLU(-0.3)), (nn.PReLU(16), nn.PReLU(16))):
        model = nn.Sequential(nn.Linear(6, 16), act, nn.Linear(16, 16), act2, nn.Linear(16, 3)).double().eval()
        x = torch.rand((3, 6), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        b = certify.bounds(model, x, 0.2, method="alpha-crown")
        crown = certify.bounds(model, x, 0.2)
        crown = certify.Bounds(crown.lower.detach(), crown.upper.detach())
        assert float((b.lower - crown.lower).mean() + (crown.upper - b.upper).mean()) > 1e-3


def _grid(lo: Tensor, hi: Tensor, per_dim: int) -> Tensor:
    axes = [torch.linspace(float(a), float(b), per_dim, dtype=torch.float64) for a, b in zip(lo, hi)]
    return torch.cartesian_prod(*axes).reshape(-1, lo.numel())


@pytest.mark.parametrize("layer", ["leaky_relu", pytest.param("maxpool", marks=pytest.mark.slow)])
def test_verify_complete_never_wrongly_verified(layer: str) -> None:
    """Small networks with a LeakyReLU or a max pooling beside ReLUs, 3 inputs, eps 0.8x / 1.1x the distance to
    the nearest differently classified point of a grid: every ``verified`` has no counterexample on a 31^3 grid
    of the box nor by PGD; every ``falsified`` counterexample is real; both ReLU splitting (other layers relaxed;
    a fully split domain stays undecided) and input splitting run."""
    from certify.attacks import pgd_margins

    whole = _grid(torch.zeros(3), torch.ones(3), 31)
    counts = {"verified": 0, "falsified": 0, "unknown": 0}
    for t in range(6):
        torch.manual_seed(100 + t)
        if layer == "leaky_relu":
            net = nn.Sequential(nn.Linear(3, 10), nn.LeakyReLU(0.1), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 3))
        else:
            net = nn.Sequential(nn.Linear(3, 12), nn.ReLU(), nn.Unflatten(1, (1, 12)), nn.MaxPool1d(2), nn.Flatten(),
                                nn.Linear(6, 3))
        net = net.double().eval()
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Linear):
                    m.weight.mul_(4)
        x = torch.rand(1, 3, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
        with torch.no_grad():
            y = int(net(x).argmax())
            other = whole[net(whole).argmax(1) != y]
        if not other.shape[0]:
            continue
        eps = float((other - x).abs().amax(1).min()) * (0.8 if t % 2 == 0 else 1.1)
        lo, hi = (x[0] - eps).clamp(0, 1), (x[0] + eps).clamp(0, 1)
        with torch.no_grad():
            grid_cex = bool((net(_grid(lo, hi, 31)).argmax(1) != y).any())
        found = pgd_margins(net, x, torch.tensor([y]), eps, domain=(0, 1), steps=50, restarts=3,
                            generator=torch.Generator().manual_seed(t))
        pgd_cex = float(found[0].masked_fill(torch.arange(3) == y, math.inf).min()) <= 0
        for split in ("relu", "input"):
            r = certify.verify_complete(net, x, y, eps, domain=(0, 1), timeout=10, split=split, batch_size=8)
            counts[r.verdict] += 1
            if r.verdict == "verified":
                assert not grid_cex and not pgd_cex, (t, split)
            elif r.verdict == "falsified":
                cex = r.counterexample
                assert cex is not None and float((cex - x).abs().max()) <= eps + 1e-12
                with torch.no_grad():
                    o = net(cex)[0]
                assert float(o[y] - torch.cat([o[:y], o[y + 1 :]]).max()) <= 0
    assert counts["verified"] >= 1 and counts["falsified"] >= 1, counts


def _smooth_net(act: str, arch: str, dtype: torch.dtype, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    f = nn.Sigmoid if act == "sigmoid" else nn.Tanh
    if arch == "mlp":
        net: nn.Module = nn.Sequential(nn.Linear(6, 16), f(), nn.Linear(16, 16), f(), nn.Linear(16, 3))
        shape: tuple[int, ...] = (6,)
    else:
        net = nn.Sequential(nn.Conv2d(2, 4, 3), f(), nn.Conv2d(4, 4, 3), f(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
        shape = (2, 6, 6)
    with torch.no_grad():  # weights large enough for the curvature to matter
        for m in net.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                m.weight.mul_(3)
    return net.to(dtype).eval(), shape


def _ball_samples(x: Tensor, eps: float, norm: float, n: int, gen: torch.Generator) -> Tensor:
    """``n`` points per input of the L-inf or L2 ball (a quarter on its boundary: corners / the sphere)."""
    b = x.shape[0]
    d = x[0].numel()
    if norm == math.inf:
        u = torch.rand((b, n, d), generator=gen, dtype=x.dtype) * 2 - 1
        u[:, : n // 4] = u[:, : n // 4].sign()
    else:
        u = torch.randn((b, n, d), generator=gen, dtype=x.dtype)
        u = u / u.norm(dim=2, keepdim=True)
        u[:, n // 4 :] *= torch.rand((b, n - n // 4, 1), generator=gen, dtype=x.dtype) ** (1 / d)
    return (x.unsqueeze(1) + eps * u.reshape(b, n, *x.shape[1:])).reshape(-1, *x.shape[1:])


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", [math.inf, 2.0])
def test_sigmoid_tanh_alpha_crown_sound_and_never_looser(act: str, arch: str, dtype: torch.dtype, norm: float) -> None:
    """alpha-CROWN with optimised sigmoid/tanh lines: every bound holds on 10^4 sampled points per input and at
    PGD's optimum, and is never looser than CROWN's."""
    model, shape = _smooth_net(act, arch, dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((2, *shape), generator=gen, dtype=dtype)
    eps = 0.1 if norm == math.inf else 0.4
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    with torch.no_grad():
        b = certify.bounds(model, x, eps, norm=norm, method="alpha-crown")
        crown = certify.bounds(model, x, eps, norm=norm)
    assert bool((b.lower >= crown.lower - tol).all() and (b.upper <= crown.upper + tol).all())
    n = 10_000
    with torch.no_grad():
        out = model(_ball_samples(x, eps, norm, n, gen)).reshape(2, n, -1)
    assert bool((out >= b.lower.unsqueeze(1) - tol).all() and (out <= b.upper.unsqueeze(1) + tol).all())
    k = b.lower.shape[1]
    xr = x.repeat_interleave(2 * k, 0)
    sign = torch.tensor([1.0, -1.0], dtype=dtype).repeat(k).repeat(2)
    idx = torch.arange(k).repeat_interleave(2).repeat(2)
    _, val = pgd_minimize(lambda z: sign * model(z).gather(1, idx[:, None]).squeeze(1), xr, eps, norm=norm,
                          steps=30)
    val = (val * sign).reshape(2, k, 2)
    assert bool((val[..., 0] >= b.lower - tol).all() and (val[..., 1] <= b.upper + tol).all())


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_sigmoid_tanh_slopes_are_optimised(act: str) -> None:
    """The slopes of sigmoid/tanh's lower and upper lines are free parameters in (0, kmax]: optimising them
    tightens the bounds of a network without any ReLU (strictly, by a margin CROWN's chord slopes do not reach);
    with no iterations the bounds are CROWN's."""
    model, shape = _smooth_net(act, "mlp", torch.float64)
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        crown = certify.bounds(model, x, 0.2)
        zero = certify.bounds(model, x, 0.2, method="alpha-crown", iterations=0)
        b = certify.bounds(model, x, 0.2, method="alpha-crown")
    torch.testing.assert_close(zero.lower, crown.lower, rtol=0, atol=1e-12)
    torch.testing.assert_close(zero.upper, crown.upper, rtol=0, atol=1e-12)
    gain = float((b.lower - crown.lower).mean() + (crown.upper - b.upper).mean())
    assert gain > 1e-3 * float((crown.upper - crown.lower).mean()), gain


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_sigmoid_tanh_first_iterate_is_crown(act: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Iteration 0 of the optimisation (the slopes at their start) evaluates to CROWN's bound: the chord slope and
    the same closed-form intercepts."""
    import certify.alpha_crown as ac

    model, shape = _smooth_net(act, "cnn", torch.float64)
    x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    first: list[Tensor] = []
    orig = ac._ascend

    def spy(groups: Any, bound: Any, *args: Any, **kw: Any) -> int:
        first.append(bound().detach())
        return orig(groups, bound, *args, **kw)

    monkeypatch.setattr(ac, "_ascend", spy)
    with torch.no_grad():
        certify.bounds(model, x, 0.1, method="alpha-crown", iterations=2)
        crown = certify.bounds(model, x, 0.1)
    k = crown.lower.shape[1]  # the rows are the lower bounds of spec, then of -spec
    torch.testing.assert_close(first[0][:, :k], crown.lower, rtol=0, atol=1e-12)
    torch.testing.assert_close(-first[0][:, k:], crown.upper, rtol=0, atol=1e-12)


@pytest.mark.parametrize("op", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_smooth_intercepts_are_sound_for_any_slope(op: str, dtype: torch.dtype) -> None:
    """The lines of slope ``k`` in ``[tiny, kmax]`` (log-uniform down to 1e-30, and kmax itself) with
    ``_smooth_intercepts``'s intercepts enclose the curve on ``[l, u]`` (checked in float64 on a 513-point grid and
    at the closed-form extremes) and touch it; their gradient in ``k`` is finite, also at ``kmax``."""
    from certify.crown import _smooth_intercepts

    g = torch.Generator().manual_seed(0)
    n = 3000
    kmax = 0.25 if op == "sigmoid" else 1.0
    a = torch.randn(n, generator=g, dtype=torch.float64) * 6
    w = torch.rand(n, generator=g, dtype=torch.float64) ** 3 * 40
    k = torch.exp(torch.rand(n, generator=g, dtype=torch.float64) * (math.log(kmax) - math.log(1e-30))
                  + math.log(1e-30))
    k[:200] = kmax
    l, u, kk = a.to(dtype), (a + w).to(dtype), k.to(dtype).requires_grad_(True)  # noqa: E741
    b_l, b_u = _smooth_intercepts(op, l, u, kk)
    grad = torch.autograd.grad((b_l + b_u).sum(), kk)[0]
    assert bool(torch.isfinite(grad).all())
    f = torch.sigmoid if op == "sigmoid" else torch.tanh
    t = torch.linspace(0, 1, 513, dtype=torch.float64).unsqueeze(1)
    l64, u64, k64 = l.double(), u.double(), kk.detach().double()
    xs = l64 + t * (u64 - l64)
    # the exact extremes of f(x) - k x (in float64), clipped to [l, u]
    if op == "sigmoid":
        disc = (1 - 4 * k64).clamp(min=0).sqrt()
        s1 = (2 * k64 / (1 + disc)).clamp(min=1e-300)
        s2 = ((1 + disc) / 2).clamp(max=1 - 1e-16)
        crit = [torch.log(s1) - torch.log1p(-s1), torch.log(s2) - torch.log1p(-s2)]
    else:
        x2 = torch.atanh((1 - k64).clamp(min=0).sqrt().clamp(max=1 - 1e-16))
        crit = [-x2, x2]
    xs = torch.cat([xs, *[torch.minimum(torch.maximum(c, l64), u64).unsqueeze(0) for c in crit]])
    gap_l = f(xs) - k64 * xs - b_l.detach().double()
    gap_u = k64 * xs + b_u.detach().double() - f(xs)
    assert float(gap_l.min()) >= 0 and float(gap_u.min()) >= 0
    tight = 1e-9 if dtype == torch.float64 else 1e-4  # the slack for rounding: 8 eps (1 + k max(|l|, |u|))
    assert float(gap_l.min(0).values.max()) < tight and float(gap_u.min(0).values.max()) < tight
