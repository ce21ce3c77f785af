"""alpha-CROWN and branch-and-bound on the layers beyond ReLU: sound bounds for every layer family (sampling +
PGD), never looser than CROWN, LeakyReLU/PReLU slopes really optimised; verify_complete never says
``verified`` wrongly on small networks with LeakyReLU or max pooling (a dense grid of the input box + PGD)."""

from __future__ import annotations

import math

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
