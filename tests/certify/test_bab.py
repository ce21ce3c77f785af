"""Complete verification (branch-and-bound) against an exact mixed-integer oracle; timeouts; arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import certify
from certify.bab import verify_complete


def _mlp(d_in: int, hidden: tuple[int, ...], k: int, seed: int) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    d = d_in
    for h in (*hidden, k):
        lin = nn.Linear(d, h).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(h, d, generator=g, dtype=torch.float64) / math.sqrt(d))
            lin.bias.copy_(torch.randn(h, generator=g, dtype=torch.float64) * 0.1)
        layers += [lin, nn.ReLU()]
        d = h
    return nn.Sequential(*layers[:-1]).eval()


def milp_min_margin(model: nn.Sequential, x: torch.Tensor, y: int, eps: float) -> float:
    """Exact ``min_{x' in box} min_{j != y} f_y(x') - f_j(x')`` by a MILP per j (big-M from IBP bounds)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    lins = [m for m in model if isinstance(m, nn.Linear)]
    lo = (x[0] - eps).clamp(0, 1).numpy()
    hi = (x[0] + eps).clamp(0, 1).numpy()
    d_in = lo.shape[0]
    hidden = [lin.out_features for lin in lins[:-1]]
    # variables: x, then per hidden layer a (post-activation) and d (indicator)
    n_var = d_in + 2 * sum(hidden)
    offs_a, offs_d, o = [], [], d_in
    for h in hidden:
        offs_a.append(o)
        offs_d.append(o + h)
        o += 2 * h
    lb = np.full(n_var, -np.inf)
    ub = np.full(n_var, np.inf)
    lb[:d_in], ub[:d_in] = lo, hi
    integrality = np.zeros(n_var)
    rows, rlo, rhi = [], [], []
    prev_off, prev_n, l_prev, u_prev = 0, d_in, lo, hi
    for li, lin in enumerate(lins[:-1]):
        w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
        wp, wn = np.clip(w, 0, None), np.clip(w, None, 0)
        l_z, u_z = wp @ l_prev + wn @ u_prev + b, wp @ u_prev + wn @ l_prev + b
        oa, od = offs_a[li], offs_d[li]
        for i in range(w.shape[0]):
            def row(coef_z: float, coef_a: float, coef_d: float, i: int = i, w: np.ndarray = w, oa: int = oa,
                    od: int = od, prev_off: int = prev_off, prev_n: int = prev_n) -> np.ndarray:
                r = np.zeros(n_var)
                r[prev_off : prev_off + prev_n] = coef_z * w[i]
                r[oa + i] = coef_a
                r[od + i] = coef_d
                return r
            lb[od + i], ub[od + i] = 0, 1
            integrality[od + i] = 1
            lb[oa + i], ub[oa + i] = 0, max(u_z[i], 0)
            if u_z[i] <= 0:
                ub[oa + i] = 0
                ub[od + i] = 0
                continue
            if l_z[i] >= 0:  # a = z
                rows.append(row(-1, 1, 0)); rlo.append(b[i]); rhi.append(b[i])  # noqa: E702
                lb[od + i] = 1
                continue
            rows.append(row(-1, 1, 0)); rlo.append(b[i]); rhi.append(np.inf)  # a >= z  # noqa: E702
            rows.append(row(-1, 1, -l_z[i])); rlo.append(-np.inf); rhi.append(b[i] - l_z[i])  # a <= z - l(1-d)  # noqa: E702
            r = np.zeros(n_var); r[oa + i] = 1; r[od + i] = -u_z[i]  # noqa: E702
            rows.append(r); rlo.append(-np.inf); rhi.append(0.0)  # a <= u d  # noqa: E702
        prev_off, prev_n = offs_a[li], w.shape[0]
        l_prev, u_prev = np.maximum(l_z, 0), np.maximum(u_z, 0)
    w, b = lins[-1].weight.detach().numpy(), lins[-1].bias.detach().numpy()
    best = math.inf
    cons = LinearConstraint(np.array(rows), np.array(rlo), np.array(rhi)) if rows else None
    for j in range(w.shape[0]):
        if j == y:
            continue
        c = np.zeros(n_var)
        c[prev_off : prev_off + prev_n] = w[y] - w[j]
        res = milp(c, constraints=cons, integrality=integrality, bounds=Bounds(lb, ub))
        assert res.status == 0, res.message
        best = min(best, float(res.fun + b[y] - b[j]))
    return best


def _properties(n_nets: int, per_net: int, seed: int) -> list[tuple[nn.Sequential, torch.Tensor, int, float, str]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    shapes = [(3, (12, 12)), (5, (16, 12)), (10, (16, 16)), (8, (24,))]
    for t in range(n_nets):
        d_in, hidden = shapes[t % len(shapes)]
        net = _mlp(d_in, hidden, 3, seed * 100 + t)
        split = "auto" if t % 2 == 0 else "relu"
        for _ in range(per_net):
            x = torch.rand(1, d_in, generator=g, dtype=torch.float64)
            y = int(net(x).argmax())
            eps = float(torch.rand((), generator=g, dtype=torch.float64)) * 0.3 + 0.01
            out.append((net, x, y, eps, split))
    return out


def _check_against_milp(props: list[tuple[nn.Sequential, torch.Tensor, int, float, str]]) -> dict[str, int]:
    counts = {"verified": 0, "falsified": 0, "unknown": 0}
    for net, x, y, eps, split in props:
        r = verify_complete(net, x, y, eps, domain=(0, 1), timeout=60, split=split)
        counts[r.verdict] += 1
        exact = milp_min_margin(net, x, y, eps)
        if r.verdict == "verified":
            assert exact > -1e-7, (exact, r)
            assert r.lower_bound > 0
        elif r.verdict == "falsified":
            cex = r.counterexample
            assert cex is not None and r.margin is not None and r.margin <= 0
            assert float((cex - x).abs().max()) <= eps * (1 + 1e-12) and float(cex.min()) >= 0 and float(cex.max()) <= 1
            with torch.no_grad():
                out = net(cex)[0]
            assert float(out[y] - torch.cat([out[:y], out[y + 1 :]]).max()) <= 0
            assert exact <= 1e-7
    assert counts["unknown"] == 0, counts
    return counts


def test_complete_verification_matches_milp_small() -> None:
    counts = _check_against_milp(_properties(4, 4, seed=1))
    assert counts["verified"] and counts["falsified"], counts


@pytest.mark.slow
def test_complete_verification_matches_milp_200_properties() -> None:
    counts = _check_against_milp(_properties(16, 13, seed=2))
    assert sum(counts.values()) >= 200
    assert counts["verified"] >= 20 and counts["falsified"] >= 20, counts


def test_branch_and_bound_is_exercised() -> None:
    """With CROWN at the root and no attack, the search itself must decide, with both kinds of splits."""
    searched = {"relu": 0, "input": 0}
    for net, x, y, eps, _ in _properties(2, 8, seed=3):
        exact = milp_min_margin(net, x, y, eps)
        for split in ("relu", "input"):
            r = verify_complete(net, x, y, eps, domain=(0, 1), timeout=60, split=split, iterations=0,
                                attack_steps=0, attack_restarts=1)
            assert r.verdict == ("verified" if exact > 0 else "falsified"), (exact, r)
            searched[split] += r.branches > 1
    assert searched["relu"] >= 2 and searched["input"] >= 2, searched


def test_timeout_returns_unknown() -> None:
    net = _mlp(64, (256, 256, 256), 10, seed=5).float()
    x = torch.rand(1, 64, generator=torch.Generator().manual_seed(0))
    y = int(net(x).argmax())
    margins = [verify_complete(net, x, y, eps, domain=(0, 1), timeout=0.5) for eps in (0.03, 0.05)]
    unknown = [r for r in margins if r.verdict == "unknown"]
    assert unknown, [r.verdict for r in margins]
    for r in unknown:
        assert r.time < 0.5 + 5.0  # generous for a shared CPU; the benchmark measures the overshoot
        assert r.counterexample is None and r.lower_bound <= 0


def test_result_is_frozen_and_arguments_checked() -> None:
    net = _mlp(3, (8,), 2, seed=0)
    x = torch.full((1, 3), 0.5, dtype=torch.float64)
    y = int(net(x).argmax())
    r = verify_complete(net, x, y, 0.01, domain=(0, 1), progress=False)
    assert r.verdict in certify.bab.VERDICTS
    with pytest.raises(AttributeError):
        r.verdict = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="x"):
        verify_complete(net, x.repeat(2, 1), y, 0.01)
    with pytest.raises(ValueError, match="timeout"):
        verify_complete(net, x, y, 0.01, timeout=0)
    with pytest.raises(ValueError, match="split"):
        verify_complete(net, x, y, 0.01, split="neurons")
    with pytest.raises(ValueError, match="y"):
        verify_complete(net, x, 5, 0.01)
    with pytest.raises(ValueError, match="eps"):
        verify_complete(net, x, y, -1.0)
    # a misclassified input is its own counterexample
    r = verify_complete(net, x, 1 - y, 0.01)
    assert r.verdict == "falsified" and torch.equal(r.counterexample, x)  # type: ignore[arg-type]
